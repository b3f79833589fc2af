/* CONNECT tunnels: a raw byte relay between the client and the origin (or parent proxy).
 * Owns both streams from gt_tunnel_start until it frees them. Bytes move between evbuffers
 * without copying (evbuffer_remove_buffer hands over whole chains); a side whose peer's
 * output passes the high watermark stops reading until that output drains. Half-closes are
 * passed on, so protocols that rely on them keep working. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/stream.h"
#include "gretel/util.h"

/* Per-direction buffering cap: enough to keep a loopback or LAN link busy, small enough
 * that a thousand busy tunnels stay within a few hundred MiB at worst. */
#define TUNNEL_HWM (256 * 1024)

struct gt_tunnel {
    gt_worker *w;
    gt_stream *side[2]; /* 0 client, 1 origin */
    bool eof[2];        /* side i sent EOF (passed on as a shutdown towards 1-i) */
    uint64_t bytes[2];  /* bytes read from side i */
    uint64_t t0, last_activity;
    unsigned idle_ms;
    struct event *idle_timer;
    char label[400];
    LIST_ENTRY(gt_tunnel) link;
};

static void tunnel_free(gt_tunnel *t, const char *why)
{
    gt_log(GT_LOG_INFO, "tunnel %s up=%llu down=%llu ms=%llu end=%s", t->label,
           (unsigned long long)t->bytes[0], (unsigned long long)t->bytes[1],
           (unsigned long long)(gt_now_ms() - t->t0), why);
    LIST_REMOVE(t, link);
    t->w->ntunnels--;
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
    }
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
    if (evbuffer_get_length(gt_stream_output(st)) == 0)
        maybe_finish(t);
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
