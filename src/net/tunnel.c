/* CONNECT tunnels: a raw byte relay between the client and the origin (or parent proxy).
 * Owns both bufferevents from gt_tunnel_start until it frees them. Bytes move between
 * evbuffers without copying (evbuffer_remove_buffer hands over whole chains); a side whose
 * peer's output passes the high watermark stops reading until that output drains. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/util.h"

/* Per-direction buffering cap: enough to keep a loopback or LAN link busy, small enough
 * that a thousand tunnels stay within a few tens of MiB at worst. */
#define TUNNEL_HWM (256 * 1024)

struct gt_tunnel {
    gt_worker *w;
    struct bufferevent *side[2]; /* 0 client, 1 origin */
    bool eof[2];                 /* side i sent EOF (we shut down writing towards 1-i) */
    uint64_t bytes[2];           /* bytes read from side i */
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
    for (int i = 0; i < 2; i++)
        if (t->side[i])
            bufferevent_free(t->side[i]);
    event_free(t->idle_timer);
    atomic_fetch_sub_explicit(&t->w->sh->counters.open_conns, 1, memory_order_relaxed);
    gt_worker *w = t->w;
    free(t);
    gt_worker_session_gone(w);
}

static int side_of(gt_tunnel *t, struct bufferevent *bev)
{
    return bev == t->side[0] ? 0 : 1;
}

static void arm_idle(gt_tunnel *t)
{
    struct timeval tv = {t->idle_ms / 1000, (t->idle_ms % 1000) * 1000};
    evtimer_add(t->idle_timer, &tv);
}

/* Once one side has sent EOF and all its bytes reached the other, half-close towards the
 * other (shutdown SHUT_WR) so protocols relying on half-close keep working; when both have
 * ended, or output can no longer be written, the tunnel ends. */
static void maybe_finish(gt_tunnel *t)
{
    for (int i = 0; i < 2; i++) {
        struct bufferevent *dst = t->side[1 - i];
        if (t->eof[i] && evbuffer_get_length(bufferevent_get_output(dst)) == 0)
            shutdown(bufferevent_getfd(dst), SHUT_WR);
    }
    if (t->eof[0] && t->eof[1] &&
        evbuffer_get_length(bufferevent_get_output(t->side[0])) == 0 &&
        evbuffer_get_length(bufferevent_get_output(t->side[1])) == 0)
        tunnel_free(t, "closed");
}

static void on_read(struct bufferevent *bev, void *arg)
{
    gt_tunnel *t = arg;
    int i = side_of(t, bev);
    struct bufferevent *dst = t->side[1 - i];
    struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(dst);
    size_t n = evbuffer_get_length(in);
    t->bytes[i] += n;
    t->last_activity = gt_now_ms();
    evbuffer_remove_buffer(in, out, n);
    if (evbuffer_get_length(out) >= TUNNEL_HWM) {
        /* Back-pressure: stop reading here until the peer has taken half of it. */
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(dst, EV_WRITE, TUNNEL_HWM / 2, 0);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    gt_tunnel *t = arg;
    int i = side_of(t, bev);
    struct bufferevent *src = t->side[1 - i];
    t->last_activity = gt_now_ms();
    if (!t->eof[1 - i] && !(bufferevent_get_enabled(src) & EV_READ)) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(src, EV_READ);
    }
    maybe_finish(t);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    gt_tunnel *t = arg;
    int i = side_of(t, bev);
    if (what & BEV_EVENT_EOF) {
        /* relay whatever arrived with the EOF, then mark this direction finished */
        on_read(bev, t);
        t->eof[i] = true;
        bufferevent_disable(bev, EV_READ);
        maybe_finish(t);
        return;
    }
    tunnel_free(t, (what & BEV_EVENT_ERROR) ? (i == 0 ? "client-error" : "origin-error")
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
    struct timeval tv = {(t->idle_ms - quiet) / 1000, ((t->idle_ms - quiet) % 1000) * 1000};
    evtimer_add(t->idle_timer, &tv);
}

void gt_tunnel_start(gt_worker *w, struct bufferevent *client, struct bufferevent *origin,
                     unsigned idle_ms, const char *label, uint64_t t0_ms)
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
        bufferevent_setcb(t->side[i], on_read, on_write, on_event, t);
        bufferevent_set_timeouts(t->side[i], NULL, NULL);
        bufferevent_setwatermark(t->side[i], EV_READ, 0, TUNNEL_HWM);
        bufferevent_setwatermark(t->side[i], EV_WRITE, 0, 0);
        bufferevent_enable(t->side[i], EV_READ | EV_WRITE);
    }
    arm_idle(t);
    /* Bytes that arrived before the tunnel existed (a client's early ClientHello, or data
     * a parent proxy sent after its 200) are relayed now. */
    for (int i = 0; i < 2; i++)
        if (evbuffer_get_length(bufferevent_get_input(t->side[i])))
            on_read(t->side[i], t);
}

void gt_tunnels_drain(gt_worker *w)
{
    gt_tunnel *t, *next;
    for (t = LIST_FIRST(&w->tunnels); t; t = next) {
        next = LIST_NEXT(t, link);
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
