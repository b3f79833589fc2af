/* CONNECT tunnels: a raw byte relay between the client and the origin (or parent proxy).
 * Owns both streams from gt_tunnel_start until it frees them. A tunnel starts on evbuffers
 * (chains handed over, no copy in user space); once it has carried SPLICE_AFTER bytes and
 * both sides are idle it switches to splice(2) through a pipe per direction, so bulk
 * transfers never enter user space. Either way a side stops reading while its peer cannot
 * take more, and half-closes are passed on. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/stream.h"
#include "gretel/util.h"

/* Per-direction buffering cap: enough to keep a loopback or LAN link busy, small enough
 * that a thousand busy tunnels stay within a few hundred MiB at worst. */
#define TUNNEL_HWM (256 * 1024)
/* Short tunnels (most of a browser's) stay on evbuffers: two pipes cost four descriptors
 * and two system calls per move, which pays off only for bulk transfers. */
#define SPLICE_AFTER (512 * 1024)
#define SPLICE_CHUNK (1 << 20)

/* One direction in splice mode: src socket -> pipe -> dst socket. */
typedef struct {
    int pipe[2];
    size_t in_pipe;      /* bytes spliced in but not yet out */
    struct event *rev;   /* src readable */
    struct event *wev;   /* dst writable, while the pipe holds data */
} splice_dir;

struct gt_tunnel {
    gt_worker *w;
    gt_stream *side[2]; /* 0 client, 1 origin */
    bool eof[2];        /* side i sent EOF (passed on as a shutdown towards 1-i) */
    uint64_t bytes[2];  /* bytes read from side i */
    uint64_t t0, last_activity;
    unsigned idle_ms;
    struct event *idle_timer;
    bool spliced;
    splice_dir dir[2];   /* dir[i]: from side i to side 1-i */
    char label[400];
    LIST_ENTRY(gt_tunnel) link;
};

static void splice_teardown(gt_tunnel *t)
{
    for (int i = 0; i < 2; i++) {
        splice_dir *d = &t->dir[i];
        if (d->rev)
            event_free(d->rev);
        if (d->wev)
            event_free(d->wev);
        d->rev = d->wev = NULL;
        for (int k = 0; k < 2; k++)
            if (d->pipe[k] >= 0)
                close(d->pipe[k]);
        d->pipe[0] = d->pipe[1] = -1;
    }
}

static void tunnel_free(gt_tunnel *t, const char *why)
{
    gt_log(GT_LOG_INFO, "tunnel %s up=%llu down=%llu ms=%llu mode=%s end=%s", t->label,
           (unsigned long long)t->bytes[0], (unsigned long long)t->bytes[1],
           (unsigned long long)(gt_now_ms() - t->t0), t->spliced ? "splice" : "buffer", why);
    LIST_REMOVE(t, link);
    t->w->ntunnels--;
    splice_teardown(t); /* before the streams close the sockets the events watch */
    gt_stream_free(t->side[0]);
    gt_stream_free(t->side[1]);
    event_free(t->idle_timer);
    atomic_fetch_sub_explicit(&t->w->sh->counters.open_conns, 1, memory_order_relaxed);
    gt_worker *w = t->w;
    free(t);
    gt_worker_session_gone(w);
}

static int side_of(gt_tunnel *t, gt_stream *st)
{
    return st == t->side[0] ? 0 : 1;
}

static void arm_idle(gt_tunnel *t)
{
    struct timeval tv = {t->idle_ms / 1000, (t->idle_ms % 1000) * 1000};
    evtimer_add(t->idle_timer, &tv);
}

/* Ends the tunnel once both directions have finished and nothing is left to send. */
static bool maybe_finish(gt_tunnel *t)
{
    if (t->eof[0] && t->eof[1] && evbuffer_get_length(gt_stream_output(t->side[0])) == 0 &&
        evbuffer_get_length(gt_stream_output(t->side[1])) == 0) {
        tunnel_free(t, "closed");
        return true;
    }
    return false;
}

static void splice_finish_check(gt_tunnel *t)
{
    if (t->eof[0] && t->eof[1] && t->dir[0].in_pipe == 0 && t->dir[1].in_pipe == 0)
        tunnel_free(t, "closed");
}

/* Moves what the pipe of direction i holds to the destination. Returns false when the
 * tunnel was freed. */
static bool splice_out(gt_tunnel *t, int i)
{
    splice_dir *d = &t->dir[i];
    int dst = gt_stream_fd(t->side[1 - i]);
    while (d->in_pipe) {
        ssize_t m = splice(d->pipe[0], NULL, dst, NULL, d->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m > 0) {
            d->in_pipe -= (size_t)m;
            continue;
        }
        if (m < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        tunnel_free(t, i == 0 ? "origin-error" : "client-error");
        return false;
    }
    if (d->in_pipe) {
        /* destination full: wait for it, stop reading the source meanwhile */
        event_del(d->rev);
        event_add(d->wev, NULL);
    } else {
        event_del(d->wev);
        if (t->eof[i])
            shutdown(dst, SHUT_WR);
        else
            event_add(d->rev, NULL);
    }
    return true;
}

static void on_splice_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    gt_tunnel *t = arg;
    int i = fd == gt_stream_fd(t->side[0]) ? 0 : 1;
    splice_dir *d = &t->dir[i];
    ssize_t n = splice((int)fd, NULL, d->pipe[1], NULL, SPLICE_CHUNK,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        tunnel_free(t, i == 0 ? "client-error" : "origin-error");
        return;
    }
    t->last_activity = gt_now_ms();
    if (n == 0) {
        t->eof[i] = true;
        event_del(d->rev);
    } else {
        t->bytes[i] += (uint64_t)n;
        d->in_pipe += (size_t)n;
    }
    if (splice_out(t, i))
        splice_finish_check(t);
}

static void on_splice_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    gt_tunnel *t = arg;
    int i = fd == gt_stream_fd(t->side[1]) ? 0 : 1; /* fd is the destination of dir i */
    t->last_activity = gt_now_ms();
    if (splice_out(t, i))
        splice_finish_check(t);
}

/* Switches an idle, busy-enough tunnel to splice(2). Stays on evbuffers if anything is
 * buffered, a side has ended, or pipes cannot be had (descriptor limit). */
static void maybe_splice(gt_tunnel *t)
{
    if (t->spliced || t->bytes[0] + t->bytes[1] < SPLICE_AFTER)
        return;
    /* TLS (a WebSocket inside interception) has to pass through OpenSSL */
    if (gt_stream_ssl(t->side[0]) || gt_stream_ssl(t->side[1]))
        return;
    for (int i = 0; i < 2; i++)
        if (t->eof[i] || evbuffer_get_length(gt_stream_input(t->side[i])) ||
            evbuffer_get_length(gt_stream_output(t->side[i])) ||
            !gt_stream_reading(t->side[i]))
            return;
    for (int i = 0; i < 2; i++) {
        t->dir[i].pipe[0] = t->dir[i].pipe[1] = -1;
        if (pipe2(t->dir[i].pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
            splice_teardown(t);
            return;
        }
    }
    for (int i = 0; i < 2; i++) {
        gt_stream_disable_read(t->side[i]);
        t->dir[i].rev = event_new(t->w->base, gt_stream_fd(t->side[i]), EV_READ | EV_PERSIST,
                                  on_splice_read, t);
        t->dir[i].wev = event_new(t->w->base, gt_stream_fd(t->side[1 - i]),
                                  EV_WRITE | EV_PERSIST, on_splice_write, t);
        event_add(t->dir[i].rev, NULL);
    }
    t->spliced = true;
}

static void relay(gt_tunnel *t, int i)
{
    gt_stream *src = t->side[i], *dst = t->side[1 - i];
    struct evbuffer *in = gt_stream_input(src), *out = gt_stream_output(dst);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return;
    t->bytes[i] += n;
    t->last_activity = gt_now_ms();
    evbuffer_remove_buffer(in, out, n);
    gt_stream_flush(dst);
    if (evbuffer_get_length(out) >= TUNNEL_HWM) {
        /* back-pressure: stop reading here until the peer has taken half of it */
        gt_stream_disable_read(src);
        gt_stream_set_write_lowat(dst, TUNNEL_HWM / 2);
        return;
    }
    maybe_splice(t);
}

static void on_read(gt_stream *st, void *arg)
{
    gt_tunnel *t = arg;
    relay(t, side_of(t, st));
}

static void on_write(gt_stream *st, void *arg)
{
    gt_tunnel *t = arg;
    int i = side_of(t, st); /* st drained: the other side may read again */
    t->last_activity = gt_now_ms();
    if (!t->eof[1 - i] && !gt_stream_reading(t->side[1 - i])) {
        gt_stream_set_write_lowat(st, 0);
        gt_stream_enable_read(t->side[1 - i]);
        relay(t, 1 - i);
    }
    if (evbuffer_get_length(gt_stream_output(st)) == 0 && !maybe_finish(t))
        maybe_splice(t);
}

static void on_event(gt_stream *st, int what, void *arg)
{
    gt_tunnel *t = arg;
    int i = side_of(t, st);
    if (what & GT_STREAM_EOF) {
        relay(t, i);
        t->eof[i] = true;
        gt_stream_shutdown_write(t->side[1 - i]); /* FIN once what we relayed is sent */
        maybe_finish(t);
        return;
    }
    tunnel_free(t, (what & GT_STREAM_ERROR) ? (i == 0 ? "client-error" : "origin-error")
                                             : "error");
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_tunnel *t = arg;
    uint64_t quiet = gt_now_ms() - t->last_activity;
    if (quiet >= t->idle_ms) {
        tunnel_free(t, "idle");
        return;
    }
    uint64_t left = t->idle_ms - quiet;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
    evtimer_add(t->idle_timer, &tv);
}

void gt_tunnel_start(gt_worker *w, gt_stream *client, gt_stream *origin, unsigned idle_ms,
                     const char *label, uint64_t t0_ms)
{
    gt_tunnel *t = gt_xcalloc(1, sizeof(*t));
    t->w = w;
    for (int i = 0; i < 2; i++)
        t->dir[i].pipe[0] = t->dir[i].pipe[1] = -1;
    t->side[0] = client;
    t->side[1] = origin;
    t->t0 = t0_ms;
    t->last_activity = gt_now_ms();
    t->idle_ms = idle_ms;
    snprintf(t->label, sizeof(t->label), "%s", label);
    t->idle_timer = evtimer_new(w->base, on_idle, t);
    LIST_INSERT_HEAD(&w->tunnels, t, link);
    w->ntunnels++;
    for (int i = 0; i < 2; i++) {
        gt_stream_setcb(t->side[i], on_read, on_write, on_event, t);
        gt_stream_set_timeouts(t->side[i], 0, 0);
        gt_stream_set_read_hwm(t->side[i], TUNNEL_HWM);
        gt_stream_set_write_lowat(t->side[i], 0);
        gt_stream_enable_read(t->side[i]);
    }
    arm_idle(t);
    /* A side whose EOF was already read (a client that half-closed right after its
     * CONNECT) gets no further events: pass its end on now. */
    for (int i = 0; i < 2; i++)
        if (gt_stream_at_eof(t->side[i])) {
            t->eof[i] = true;
            gt_stream_shutdown_write(t->side[1 - i]);
        }
    /* Bytes that arrived before the tunnel existed (a client's early ClientHello, or data a
     * parent proxy sent after its 200) are relayed from the loop. */
    for (int i = 0; i < 2; i++)
        if (evbuffer_get_length(gt_stream_input(t->side[i])))
            gt_stream_trigger_read(t->side[i]);
}

void gt_tunnels_drain(gt_worker *w)
{
    gt_tunnel *t;
    LIST_FOREACH(t, &w->tunnels, link)
    {
        t->idle_ms = 1000;
        arm_idle(t);
    }
}

void gt_tunnels_destroy_all(gt_worker *w)
{
    gt_tunnel *t;
    while ((t = LIST_FIRST(&w->tunnels)) != NULL)
        tunnel_free(t, "shutdown");
}
