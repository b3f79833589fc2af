/* HTTP/2 towards origins: one nghttp2 client session per origin (host:port|sni) per worker,
 * shared by every client stream of that worker that goes there, so a page of 100
 * resources costs the origin one connection instead of a hundred. The first request for an
 * unknown origin connects with ALPN h2 + http/1.1; requests arriving meanwhile wait on it.
 * If the origin chooses http/1.1 the origin is remembered as such and every waiting request
 * falls back to the HTTP/1.1 path (the connection goes to the pool for the first of them).
 *
 * Requests come from src/proxy/h2.c (HTTP/2 clients) through the callbacks in
 * gt_h2o_cbs. Response bodies are bounded by the stream window gretel offers the origin
 * (h2_window); request bodies are pulled by nghttp2 through a data source. An origin's
 * failure fails each of its requests (502 before a response head, a reset after). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/stream.h"
#include "gretel/util.h"
#include "h2origin.h"

#define IO_HWM (256 * 1024)

struct gt_h2o_req {
    gt_h2origin *o;
    int32_t sid; /* 0 until submitted */
    const gt_h2o_cbs *cbs;
    void *arg;
    nghttp2_nv *nv; /* copy of the request head while waiting for the connection */
    size_t nnv;
    char *nvbuf;
    bool has_body;
    bool head_seen, deferred, body_started;
    bool remote_end; /* the origin sent END_STREAM: its response is whole */
    size_t pending; /* response bytes delivered to the client side, not yet taken by it */
    /* the response head and trailers as they arrive */
    char *hbuf;
    size_t hlen, hcap;
    size_t off[128][4];
    size_t nf;
    int status;
    LIST_ENTRY(gt_h2o_req) link;
};

struct gt_h2origin {
    gt_worker *w;
    char key[540];
    gt_upstream *up;
    gt_connect *connect;
    nghttp2_session *ng;
    bool h1_only; /* the origin chose http/1.1: a marker kept for the next requests */
    bool goaway;  /* the origin sent GOAWAY: no new requests here, a new session instead */
    bool dead;
    bool in_recv; /* inside nghttp2_session_mem_recv: sending waits until it returns */
    /* how to reach it, for a new session after GOAWAY */
    char host[256], sni[256];
    uint16_t port;
    bool deny_loopback;    /* the check the connect was opened under */
    bool guarded_loopback; /* its connection reached this machine by name */
    unsigned nreq;
    LIST_HEAD(, gt_h2o_req) reqs;
    struct event *flush_ev; /* window updates go out from the loop */
    LIST_ENTRY(gt_h2origin) link;
};

static void origin_flush(gt_h2origin *o);

/* Sends from the loop: callers are inside their own callbacks, and a failing origin must
 * not call them back before they return. */
static void origin_flush_soon(gt_h2origin *o)
{
    if (o->flush_ev && !event_pending(o->flush_ev, EV_TIMEOUT, NULL)) {
        struct timeval zero = {0, 0};
        evtimer_add(o->flush_ev, &zero);
    }
}

/* Whether a request from a client under `deny` (loopback_upstream) may ride this session:
 * the key names the origin, not the check that let its connection reach this machine. A
 * session opened for a local client to a name that resolved to 127.0.0.1 is not for a
 * client on another host. */
static bool may_use(const gt_h2origin *o, bool deny)
{
    return !deny || o->deny_loopback || (o->up && !o->guarded_loopback);
}

static gt_h2origin *find(gt_worker *w, const char *key)
{
    gt_h2origin *o;
    LIST_FOREACH(o, &w->h2origins, link)
        if (!o->goaway && !o->dead && strcmp(o->key, key) == 0)
            return o;
    return NULL;
}

static gt_h2origin *new_origin(gt_worker *w, const char *key);
static void on_connected(void *arg, gt_upstream *up, int status, const char *why);
static bool submit_req(gt_h2o_req *r);

static void req_free(gt_h2o_req *r)
{
    LIST_REMOVE(r, link);
    r->o->nreq--;
    free(r->nv);
    free(r->nvbuf);
    free(r->hbuf);
    free(r);
}

/* Ends the origin: every request still attached hears why. The struct survives as an
 * h1-only marker when the origin only spoke http/1.1. */
static void origin_fail(gt_h2origin *o, int status, const char *why)
{
    if (o->dead)
        return;
    o->dead = true;
    gt_h2o_req *r;
    while ((r = LIST_FIRST(&o->reqs)) != NULL) {
        const gt_h2o_cbs *cbs = r->cbs;
        void *arg = r->arg;
        req_free(r);
        cbs->fail(arg, status, why);
    }
    if (o->ng)
        nghttp2_session_del(o->ng);
    o->ng = NULL;
    if (o->flush_ev)
        event_free(o->flush_ev);
    o->flush_ev = NULL;
    gt_upstream_connect_cancel(o->connect);
    o->connect = NULL;
    gt_upstream_free(o->up);
    o->up = NULL;
    LIST_REMOVE(o, link);
    free(o);
}

/* --- nghttp2 client callbacks --- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags, (void)user;
    gt_h2o_req *r = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!r)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        uint64_t st;
        if (gt_parse_u64(gt_slice_make((const char *)value, valuelen), 999, &st) == 0)
            r->status = (int)st;
        return 0;
    }
    /* Alt-Svc would send the browser to QUIC, around the proxy */
    if (namelen == 7 && memcmp(name, "alt-svc", 7) == 0)
        return 0;
    if (r->nf >= 128)
        return 0;
    size_t need = r->hlen + namelen + valuelen;
    if (need > r->hcap) {
        size_t cap = r->hcap ? r->hcap * 2 : 1024;
        while (cap < need)
            cap *= 2;
        r->hbuf = gt_xrealloc(r->hbuf, cap);
        r->hcap = cap;
    }
    r->off[r->nf][0] = r->hlen;
    r->off[r->nf][1] = namelen;
    memcpy(r->hbuf + r->hlen, name, namelen);
    r->hlen += namelen;
    r->off[r->nf][2] = r->hlen;
    r->off[r->nf][3] = valuelen;
    memcpy(r->hbuf + r->hlen, value, valuelen);
    r->hlen += valuelen;
    r->nf++;
    return 0;
}

/* Hands the collected fields over. The callee may cancel (free) r: nothing here touches r
 * after the call, and the fields it reads live in r's buffer until then. */
static void deliver_fields(gt_h2o_req *r, bool trailers, bool end, bool interim)
{
    nghttp2_nv nv[128];
    size_t n = r->nf;
    for (size_t i = 0; i < n; i++)
        nv[i] = (nghttp2_nv){(uint8_t *)r->hbuf + r->off[i][0], (uint8_t *)r->hbuf + r->off[i][2],
                             r->off[i][1], r->off[i][3], NGHTTP2_NV_FLAG_NONE};
    r->nf = 0;
    r->hlen = 0;
    const gt_h2o_cbs *cbs = r->cbs;
    void *arg = r->arg;
    int status = r->status;
    if (interim) {
        cbs->interim(arg, status, nv, n);
    } else if (trailers) {
        cbs->trailers(arg, nv, n);
        if (end)
            cbs->end(arg);
    } else {
        cbs->head(arg, status, nv, n, end); /* `end`: the response has no body */
    }
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        /* streams above last_stream_id come back REFUSED and are retried on a new session */
        ((gt_h2origin *)user)->goaway = true;
        return 0;
    }
    gt_h2o_req *r = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!r)
        return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end)
        r->remote_end = true;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        /* the first HEADERS is HCAT_RESPONSE; after an interim (1xx) one, nghttp2 files the
         * final head under HCAT_HEADERS, like trailers: what was seen tells them apart */
        if (frame->headers.cat != NGHTTP2_HCAT_RESPONSE &&
            frame->headers.cat != NGHTTP2_HCAT_HEADERS)
            return 0;
        if (!r->head_seen) {
            if (r->status >= 100 && r->status < 200) {
                deliver_fields(r, false, false, true); /* interim: relayed, the head follows */
                return 0;
            }
            r->head_seen = true;
            deliver_fields(r, false, end, false);
        } else {
            deliver_fields(r, true, end, false);
        }
        return 0;
    }
    if (frame->hd.type == NGHTTP2_DATA && end)
        r->cbs->end(r->arg);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags, (void)user;
    gt_h2o_req *r = nghttp2_session_get_stream_user_data(ng, sid);
    if (r) {
        r->pending += len;
        r->cbs->data(r->arg, data, len);
    } else {
        nghttp2_session_consume(ng, sid, len); /* nobody wants it: reopen the window */
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *user)
{
    (void)user;
    gt_h2o_req *r = nghttp2_session_get_stream_user_data(ng, sid);
    if (!r)
        return 0;
    nghttp2_session_set_stream_user_data(ng, sid, NULL);
    /* what the client side still holds of this stream no longer limits the others */
    if (r->pending)
        nghttp2_session_consume_connection(ng, r->pending);
    r->pending = 0;
    if (code == NGHTTP2_REFUSED_STREAM && !r->head_seen && !r->body_started) {
        /* RFC 9113 §8.7: not processed, safe to send again, on a session that takes it */
        gt_h2origin *o = r->o, *n = find(o->w, o->key);
        if (!n) {
            n = new_origin(o->w, o->key);
            snprintf(n->host, sizeof(n->host), "%s", o->host);
            snprintf(n->sni, sizeof(n->sni), "%s", o->sni);
            n->port = o->port;
            n->deny_loopback = o->deny_loopback;
            gt_upstream_connect_tls(o->w, o->w->snap->cfg, gt_slice_cstr(n->host), n->port, n->sni,
                                    true, n->deny_loopback, on_connected, n, &n->connect);
        }
        LIST_REMOVE(r, link);
        o->nreq--;
        r->o = n;
        r->sid = 0;
        LIST_INSERT_HEAD(&n->reqs, r, link);
        n->nreq++;
        if (n->ng && !submit_req(r)) {
            const gt_h2o_cbs *cbs = r->cbs;
            void *arg = r->arg;
            req_free(r);
            cbs->fail(arg, 502, "cannot resubmit a refused request");
        }
        return 0;
    }
    const gt_h2o_cbs *cbs = r->cbs;
    void *arg = r->arg;
    bool whole = r->remote_end;
    req_free(r);
    if (code != NGHTTP2_NO_ERROR) {
        char why[120];
        snprintf(why, sizeof(why), "origin reset the stream: %s", nghttp2_http2_strerror(code));
        cbs->fail(arg, 502, why);
    } else if (!whole) {
        /* RST_STREAM(NO_ERROR) is how an origin stops an upload it no longer needs, after
         * a whole response (RFC 9113 §8.1); before END_STREAM the response is cut short */
        cbs->fail(arg, 502, "origin closed the stream before its response ended");
    } else {
        cbs->closed(arg);
    }
    return 0;
}

static ssize_t body_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)ng, (void)sid, (void)user;
    gt_h2o_req *r = src->ptr;
    bool eof = false;
    ssize_t n = r->cbs->body(r->arg, buf, length, &eof);
    if (n > 0)
        r->body_started = true;
    if (eof)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0) {
        r->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return n;
}

static bool submit_req(gt_h2o_req *r)
{
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = body_read};
    /* the head stays copied until the stream closes: a refused stream is sent again */
    int32_t sid = nghttp2_submit_request(r->o->ng, NULL, r->nv, r->nnv, r->has_body ? &prd : NULL,
                                         r);
    if (sid < 0)
        return false;
    r->sid = sid;
    return true;
}

/* --- the origin connection --- */

static void on_up_read(gt_stream *st, void *arg)
{
    gt_h2origin *o = arg;
    struct evbuffer *in = gt_stream_input(st);
    while (evbuffer_get_length(in) && !o->dead) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        o->in_recv = true;
        ssize_t r = nghttp2_session_mem_recv(o->ng, v.iov_base, v.iov_len);
        o->in_recv = false;
        if (r < 0) {
            char why[120];
            snprintf(why, sizeof(why), "HTTP/2 error from origin: %s", nghttp2_strerror((int)r));
            origin_fail(o, 502, why);
            return;
        }
        evbuffer_drain(in, (size_t)r);
    }
    origin_flush(o);
}

static void on_up_write(gt_stream *st, void *arg)
{
    (void)st;
    origin_flush(arg);
}

static void on_up_event(gt_stream *st, int what, void *arg)
{
    gt_h2origin *o = arg;
    char why[160];
    if (what & GT_STREAM_TIMEOUT)
        snprintf(why, sizeof(why), "origin %s idle or silent too long", o->up ? o->up->peer : "");
    else if (what & GT_STREAM_EOF)
        snprintf(why, sizeof(why), "origin %s closed the HTTP/2 connection", o->up ? o->up->peer : "");
    else
        snprintf(why, sizeof(why), "origin %s connection failed: %s", o->up ? o->up->peer : "",
                 strerror(gt_stream_error(st) ? gt_stream_error(st) : ECONNRESET));
    origin_fail(o, (what & GT_STREAM_TIMEOUT) ? 504 : 502, why);
}

/* Serializes what the session has for the origin; an origin with nothing left to do and
 * no requests waits idle for pool_idle_timeout, then goes. */
static void origin_flush(gt_h2origin *o)
{
    if (o->dead || !o->ng || o->in_recv)
        return;
    struct evbuffer *out = gt_stream_output(o->up->st);
    for (;;) {
        if (evbuffer_get_length(out) >= IO_HWM) {
            gt_stream_flush(o->up->st);
            /* the socket is full: its write callback (below the low mark) resumes us */
            if (evbuffer_get_length(out) > IO_HWM / 2)
                break;
        }
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(o->ng, &data);
        if (n < 0) {
            origin_fail(o, 502, nghttp2_strerror((int)n));
            return;
        }
        if (n == 0)
            break;
        evbuffer_add(out, data, (size_t)n);
    }
    gt_stream_flush(o->up->st);
    if (!nghttp2_session_want_read(o->ng) && !nghttp2_session_want_write(o->ng)) {
        origin_fail(o, 502, "origin ended the HTTP/2 connection (GOAWAY)");
        return;
    }
    const gt_config *cfg = o->w->snap->cfg;
    gt_stream_set_timeouts(o->up->st, o->nreq ? cfg->upstream_timeout_ms : cfg->pool_idle_timeout_ms,
                           cfg->upstream_timeout_ms);
}

static void on_flush_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    origin_flush(arg);
}

static void start_session(gt_h2origin *o)
{
    const gt_config *cfg = o->w->snap->cfg;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_continuations(opt, 8);
    /* the origin's windows open as the client takes the bytes (gt_h2o_consumed), so a
     * slow client holds the origin back instead of gretel buffering for it */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rv = nghttp2_session_client_new2(&o->ng, cb, o, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        origin_fail(o, 502, "cannot start an HTTP/2 session");
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->h2_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header_size},
    };
    nghttp2_submit_settings(o->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(o->ng, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    o->flush_ev = evtimer_new(o->w->base, on_flush_ev, o);
    gt_stream_setcb(o->up->st, on_up_read, on_up_write, on_up_event, o);
    gt_stream_set_read_hwm(o->up->st, IO_HWM);
    gt_stream_set_write_lowat(o->up->st, IO_HWM / 2);
    gt_stream_enable_read(o->up->st);
    gt_h2o_req *r, *next;
    for (r = LIST_FIRST(&o->reqs); r; r = next) {
        next = LIST_NEXT(r, link);
        if (!submit_req(r)) {
            const gt_h2o_cbs *cbs = r->cbs;
            void *arg = r->arg;
            req_free(r);
            cbs->fail(arg, 502, "cannot submit the request to the origin");
        }
    }
    origin_flush(o);
    if (evbuffer_get_length(gt_stream_input(o->up->st)))
        gt_stream_trigger_read(o->up->st);
}

static void on_connected(void *arg, gt_upstream *up, int status, const char *why)
{
    gt_h2origin *o = arg;
    o->connect = NULL;
    if (!up) {
        origin_fail(o, status, why);
        return;
    }
    atomic_fetch_add_explicit(&o->w->sh->counters.connects, 1, memory_order_relaxed);
    if (!up->h2) {
        /* http/1.1 only: remember, hand the connection to the pool, and let every waiting
         * request take the HTTP/1.1 path (the first one finds this connection there) */
        o->h1_only = true;
        gt_pool_put(o->w, up, o->w->snap->cfg);
        gt_h2o_req *r;
        while ((r = LIST_FIRST(&o->reqs)) != NULL) {
            const gt_h2o_cbs *cbs = r->cbs;
            void *a = r->arg;
            req_free(r);
            cbs->fallback(a);
        }
        return;
    }
    o->up = up;
    o->guarded_loopback = up->guarded_loopback;
    start_session(o);
}

/* --- API --- */

static gt_h2origin *new_origin(gt_worker *w, const char *key)
{
    gt_h2origin *o = gt_xcalloc(1, sizeof(*o));
    o->w = w;
    snprintf(o->key, sizeof(o->key), "%s", key);
    LIST_INIT(&o->reqs);
    LIST_INSERT_HEAD(&w->h2origins, o, link);
    return o;
}

gt_h2o_req *gt_h2o_submit(gt_worker *w, const char *key, gt_slice host, uint16_t port,
                          const char *sni, bool deny_loopback, const nghttp2_nv *nv, size_t nnv,
                          bool has_body, const gt_h2o_cbs *cbs, void *arg)
{
    gt_h2origin *o = find(w, key);
    if (o && (o->h1_only || !may_use(o, deny_loopback)))
        return NULL; /* the caller takes the HTTP/1.1 path, and its checked connect */
    if (!o) {
        o = new_origin(w, key);
        snprintf(o->host, sizeof(o->host), "%.*s", (int)host.len, host.p);
        snprintf(o->sni, sizeof(o->sni), "%s", sni);
        o->port = port;
        o->deny_loopback = deny_loopback;
        gt_upstream_connect_tls(w, w->snap->cfg, host, port, sni, true, deny_loopback,
                                on_connected, o, &o->connect);
    }
    gt_h2o_req *r = gt_xcalloc(1, sizeof(*r));
    r->o = o;
    r->cbs = cbs;
    r->arg = arg;
    r->has_body = has_body;
    LIST_INSERT_HEAD(&o->reqs, r, link);
    o->nreq++;
    /* the head is copied: nghttp2 copies at submission, which may be later */
    size_t total = 0;
    for (size_t i = 0; i < nnv; i++)
        total += nv[i].namelen + nv[i].valuelen;
    r->nv = gt_xcalloc(nnv ? nnv : 1, sizeof(*nv));
    r->nvbuf = gt_xmalloc(total ? total : 1);
    size_t off = 0;
    for (size_t i = 0; i < nnv; i++) {
        memcpy(r->nvbuf + off, nv[i].name, nv[i].namelen);
        r->nv[i].name = (uint8_t *)r->nvbuf + off;
        r->nv[i].namelen = nv[i].namelen;
        off += nv[i].namelen;
        memcpy(r->nvbuf + off, nv[i].value, nv[i].valuelen);
        r->nv[i].value = (uint8_t *)r->nvbuf + off;
        r->nv[i].valuelen = nv[i].valuelen;
        off += nv[i].valuelen;
        r->nv[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    r->nnv = nnv;
    if (o->ng) {
        if (!submit_req(r)) {
            req_free(r);
            return NULL;
        }
        origin_flush_soon(o);
    }
    return r;
}

void gt_h2o_resume_body(gt_h2o_req *r)
{
    if (r->deferred && r->o->ng && r->sid) {
        r->deferred = false;
        nghttp2_session_resume_data(r->o->ng, r->sid);
        origin_flush_soon(r->o);
    }
}

void gt_h2o_consumed(gt_h2o_req *r, size_t n)
{
    gt_h2origin *o = r->o;
    if (!o->ng || !r->sid || n == 0)
        return;
    if (n > r->pending)
        n = r->pending;
    r->pending -= n;
    nghttp2_session_consume(o->ng, r->sid, n);
    origin_flush_soon(o); /* the caller may be inside the client session's own send */
}

void gt_h2o_cancel(gt_h2o_req *r)
{
    gt_h2origin *o = r->o;
    if (o->ng && r->sid) {
        nghttp2_session_set_stream_user_data(o->ng, r->sid, NULL);
        nghttp2_submit_rst_stream(o->ng, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_CANCEL);
        if (r->pending)
            nghttp2_session_consume_connection(o->ng, r->pending);
    }
    req_free(r);
    origin_flush_soon(o);
}

void gt_h2o_adopt(gt_worker *w, const char *key, gt_upstream *up, gt_slice host, uint16_t port,
                  const char *sni, bool deny_loopback)
{
    gt_h2origin *o = find(w, key);
    if (o && o->h1_only) {
        LIST_REMOVE(o, link); /* the origin has learnt h2 since */
        free(o);
        o = NULL;
    }
    if (o && (o->ng || !o->connect)) {
        gt_upstream_free(up); /* one session per origin is enough */
        return;
    }
    if (!o) {
        o = new_origin(w, key);
        snprintf(o->host, sizeof(o->host), "%.*s", (int)host.len, host.p);
        snprintf(o->sni, sizeof(o->sni), "%s", sni);
        o->port = port;
        o->deny_loopback = deny_loopback;
    }
    gt_upstream_connect_cancel(o->connect); /* a pending connect loses to this one */
    o->connect = NULL;
    o->up = up;
    o->deny_loopback = deny_loopback;
    o->guarded_loopback = up->guarded_loopback;
    start_session(o);
}

void gt_h2o_mark_h1(gt_worker *w, const char *key)
{
    if (find(w, key))
        return;
    /* markers are tiny, but a long run visits many origins: forget them all at a cap */
    unsigned n = 0;
    gt_h2origin *o, *next;
    LIST_FOREACH(o, &w->h2origins, link)
        n += o->h1_only;
    if (n >= 4096)
        for (o = LIST_FIRST(&w->h2origins); o; o = next) {
            next = LIST_NEXT(o, link);
            if (o->h1_only) {
                LIST_REMOVE(o, link);
                free(o);
            }
        }
    new_origin(w, key)->h1_only = true;
}

bool gt_h2o_ready(gt_worker *w, const char *key, bool deny_loopback)
{
    gt_h2origin *o = find(w, key);
    return o && o->ng && !o->dead && may_use(o, deny_loopback);
}

bool gt_h2o_known_h1(gt_worker *w, const char *key)
{
    gt_h2origin *o = find(w, key);
    return o && o->h1_only;
}

void gt_h2o_destroy_all(gt_worker *w)
{
    gt_h2origin *o;
    while ((o = LIST_FIRST(&w->h2origins)) != NULL) {
        if (o->h1_only) {
            LIST_REMOVE(o, link);
            free(o);
            continue;
        }
        origin_fail(o, 502, "gretel is shutting down");
    }
}
