/* HTTP/2 towards browsers inside TLS interception (ALPN h2), with libnghttp2's server
 * session. Each stream is one request: it goes through the same decision as an HTTP/1.1
 * request (gt_proxy_decide), is answered locally on its stream (blocked, redirected,
 * errors) while the others continue, or is forwarded to the intercepted origin as
 * HTTP/1.1 over a verified TLS connection from the worker's pool (RFC 9113 §8.2.2: no
 * connection-specific fields either way, cookies joined, framing rebuilt).
 *
 * Flow control is tied to the other side: a request body is acknowledged
 * (nghttp2_session_consume) only once the origin's socket took it, and an origin is read
 * only while its stream's buffer for the client is below a mark; nghttp2's stream windows
 * then hold the client back. Limits against abuse: SETTINGS (concurrent streams, header
 * list size, window), nghttp2's own flood checks (SETTINGS, PING and RST_STREAM rates,
 * CONTINUATION count), and a cap on buffered bytes per stream.
 *
 * One gt_h2conn per client connection, owned by its worker (w->h2conns); it owns its
 * streams, and each stream owns its upstream connection or pending connect. Every path
 * ends in stream_free (from nghttp2's stream-close callback) and conn_free. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gretel/http1.h"
#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/control.h"
#include "gretel/products.h"
#include "gretel/proxy.h"
#include "gretel/stream.h"
#include "gretel/util.h"
#include "h2origin.h"

#define IO_HWM (256 * 1024)
#define MAX_FIELDS 256

/* HTTP/2 fields built from an HTTP/1.1 head, with their lower-cased names: 26 KB, so on
 * the heap for the length of one submit (nghttp2 copies them). */
typedef struct {
    nghttp2_nv nv[MAX_FIELDS + 4];
    char lower[16384];
} nvbuf;

typedef struct h2stream h2stream;

struct gt_h2conn {
    gt_worker *w;
    gt_stream *cs;
    nghttp2_session *ng;
    gt_h2_peer peer;
    LIST_HEAD(, h2stream) streams;
    unsigned nstreams;
    uint64_t t0;
    bool dead;     /* being torn down: callbacks must not touch it */
    bool draining; /* GOAWAY sent */
    bool in_io;    /* inside a read/write pass: free later */
    bool free_after;
    struct event *flush_ev; /* a flush from the loop, after a batch of origin frames */
    LIST_ENTRY(gt_h2conn) link;
};

struct h2stream {
    gt_h2conn *c;
    int32_t id;
    LIST_ENTRY(h2stream) link;
    /* request head: names and values in one buffer, offsets until the head is complete */
    char *hbuf;
    size_t hlen, hcap;
    struct { size_t n, nl, v, vl; } f[MAX_FIELDS];
    size_t nf;
    size_t method, method_l, authority, authority_l, path, path_l, scheme, scheme_l;
    bool too_big, bad;
    bool req_end;        /* END_STREAM seen from the client */
    bool body_wait;      /* decided once its body is here (body~ rules, body_inspect_max) */
    /* the request */
    gt_snapshot *snap;
    uint64_t t0;
    char method_s[24], host[260];
    const gt_rule *rule;
    const char *list_file; /* or a list filter decided: its file and line */
    unsigned list_line;
    const char *decision;
    gt_reqtype type;
    int status;
    uint64_t bytes_out;
    bool is_head;
    gt_http1_body rq;
    struct evbuffer *head;    /* the HTTP/1.1 head for the origin */
    struct evbuffer *rq_wait; /* request body that arrived before the origin was there */
    size_t unconsumed;        /* request body bytes not yet acknowledged to the client */
    gt_connect *connect;
    gt_upstream *up;
    bool rq_sent_end;
    /* or through the origin's shared HTTP/2 session (src/proxy/h2origin.c) */
    gt_h2o_req *oreq;
    bool via_h2o;
    nghttp2_nv *trailers; /* the origin's trailers, sent after the last DATA */
    size_t ntrailers;
    char *trailer_buf;
    /* the response */
    bool rs_head_done, rs_done, rs_submitted, up_reusable, up_paused, deferred;
    gt_http1_body rs;
    gt_body_relay rs_body;
    struct evbuffer *rs_buf; /* response body bytes for DATA frames */
    struct evbuffer *rs_trailers; /* a chunked HTTP/1.1 response's trailer section */
    /* a page load: its schema.org product ids, read as its HTML passes (page_products) */
    char *sniff_url;
    struct gt_sniff *sniff;
};

/* The page's sniffer, ended (whole or not): its ids to the control page. */
static void sniff_done(h2stream *h, bool complete)
{
    if (h->sniff)
        gt_proxy_sniff_finish(h->c->w->sh, h->sniff, h->sniff_url, gt_slice_cstr(h->host),
                              complete);
    h->sniff = NULL;
    free(h->sniff_url);
    h->sniff_url = NULL;
}

static void conn_flush(gt_h2conn *c);
static void conn_free(gt_h2conn *c);

/* Flushes from the loop rather than now: what one read from an origin delivers (the last
 * DATA and the end of the stream, usually) then leaves in one frame with END_STREAM. A
 * separate empty DATA frame makes some clients (curl) reset the stream, and resets count
 * against the client's rapid-reset allowance. */
static void conn_flush_soon(gt_h2conn *c)
{
    if (c->flush_ev && !event_pending(c->flush_ev, EV_TIMEOUT, NULL)) {
        struct timeval zero = {0, 0};
        evtimer_add(c->flush_ev, &zero);
    }
}

static const gt_config *cfg_of(const h2stream *h)
{
    return h->snap ? h->snap->cfg : h->c->w->snap->cfg;
}

/* --- streams --- */

static void log_stream(h2stream *h)
{
    if (!h->snap)
        return;
    gt_counters_decision(&h->c->w->sh->counters, h->decision ? h->decision : "pass");
    gt_logbuf_write(&h->c->w->logbuf, GT_LOG_INFO,
                    "req conn=%u client=%s method=%s host=%s status=%d bytes=%llu ms=%llu "
                    "decision=%s rule=%s:%u proto=h2 stream=%d",
                    h->c->peer.id, h->c->peer.client, h->method_s[0] ? h->method_s : "-",
                    h->host[0] ? h->host : "-", h->status, (unsigned long long)h->bytes_out,
                    (unsigned long long)(gt_now_ms() - h->t0), h->decision ? h->decision : "pass",
                    h->list_file ? h->list_file : gt_rule_file(h->rule),
                    h->list_file ? h->list_line : gt_rule_line(h->rule), h->id);
}

static void stream_free(h2stream *h)
{
    sniff_done(h, false);
    log_stream(h);
    LIST_REMOVE(h, link);
    h->c->nstreams--;
    gt_upstream_connect_cancel(h->connect);
    if (h->oreq)
        gt_h2o_cancel(h->oreq);
    /* body bytes received and never acknowledged still count against the connection's
     * window: give them back, or a connection of aborted uploads stalls */
    if (h->unconsumed && !h->c->dead)
        nghttp2_session_consume_connection(h->c->ng, h->unconsumed);
    free(h->trailers);
    free(h->trailer_buf);
    if (h->up) {
        /* the response was complete and the origin reusable: back to the pool */
        if (h->rs_done && h->up_reusable && h->rq_sent_end)
            gt_pool_put(h->c->w, h->up, cfg_of(h));
        else
            gt_upstream_free(h->up);
    }
    if (h->head)
        evbuffer_free(h->head);
    if (h->rq_wait)
        evbuffer_free(h->rq_wait);
    if (h->rs_buf)
        evbuffer_free(h->rs_buf);
    if (h->rs_trailers)
        evbuffer_free(h->rs_trailers);
    gt_snapshot_release(h->snap);
    free(h->hbuf);
    free(h);
}

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)user;
    h2stream *h = src->ptr;
    int n = evbuffer_remove(h->rs_buf, buf, length);
    if (n < 0)
        n = 0;
    h->bytes_out += (uint64_t)n;
    if (h->oreq && n)
        gt_h2o_consumed(h->oreq, (size_t)n);
    if (evbuffer_get_length(h->rs_buf) == 0 && h->rs_done) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (h->ntrailers) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(ng, id, h->trailers, h->ntrailers);
        }
    }
    else if (n == 0) {
        h->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (h->up_paused && h->up && evbuffer_get_length(h->rs_buf) < IO_HWM / 2) {
        h->up_paused = false;
        gt_stream_enable_read(h->up->st);
    }
    return n;
}

/* :status (written into st) followed by the given fields, as far as nv holds. */
static size_t status_fields(int status, const nghttp2_nv *extra, size_t nextra, nghttp2_nv *nv,
                            char st[8])
{
    snprintf(st, 8, "%d", status);
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE};
    size_t n = 1;
    for (size_t i = 0; i < nextra && n < MAX_FIELDS + 4; i++)
        nv[n++] = extra[i];
    return n;
}

/* Submits a response head (and body source) on a stream. */
static void submit(h2stream *h, int status, const nghttp2_nv *extra, size_t nextra, bool body)
{
    nghttp2_nv nv[MAX_FIELDS + 4];
    char st[8];
    size_t n = status_fields(status, extra, nextra, nv, st);
    nghttp2_data_provider prd = {.source.ptr = h, .read_callback = data_read};
    h->status = status;
    h->rs_submitted = true;
    nghttp2_submit_response(h->c->ng, h->id, nv, n, body ? &prd : NULL);
}

/* An interim response (100 Continue, 103 Early Hints) before the final head; 101 never
 * (HTTP/2 has no upgrade). */
static void submit_interim(h2stream *h, int status, const nghttp2_nv *extra, size_t nextra)
{
    if (status == 101 || h->rs_submitted)
        return;
    nghttp2_nv nv[MAX_FIELDS + 4];
    char st[8];
    size_t n = status_fields(status, extra, nextra, nv, st);
    nghttp2_submit_headers(h->c->ng, NGHTTP2_FLAG_NONE, h->id, NULL, nv, n, NULL);
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

/* Answers a stream locally: the body is copied into the stream's buffer. */
static void respond_local(h2stream *h, int status, const char *ctype, const char *body,
                          size_t len, const char *xgretel)
{
    if (!h->rs_buf)
        h->rs_buf = evbuffer_new();
    evbuffer_add(h->rs_buf, body, len);
    h->rs_done = true;
    char cl[24];
    snprintf(cl, sizeof(cl), "%zu", len);
    nghttp2_nv nv[4] = {NV("cache-control", "no-store"), NV("content-length", cl)};
    size_t n = 2;
    if (ctype)
        nv[n++] = (nghttp2_nv)NV("content-type", ctype);
    if (xgretel)
        nv[n++] = (nghttp2_nv)NV("x-gretel", xgretel);
    bool has_body = len > 0 && !h->is_head && status != 204 && status != 304;
    if (!has_body)
        evbuffer_drain(h->rs_buf, evbuffer_get_length(h->rs_buf));
    submit(h, status, nv, n, has_body);
    atomic_fetch_add_explicit(&h->c->w->sh->counters.local_responses, 1, memory_order_relaxed);
}

static void respond_error(h2stream *h, int status, const char *why)
{
    char body[512];
    int n = snprintf(body, sizeof(body), "gretel: %d %s: %s\n", status, gt_http_reason(status),
                     why);
    h->decision = "error";
    if (status >= 500)
        gt_log(GT_LOG_WARN, "conn=%u client=%s host=%s stream=%d status=%d error=\"%s\"",
               h->c->peer.id, h->c->peer.client, h->host[0] ? h->host : "-", h->id, status, why);
    respond_local(h, status, "text/plain; charset=utf-8", body,
                  (size_t)(n < (int)sizeof(body) ? n : (int)sizeof(body) - 1), NULL);
}

/* --- forwarding to the origin (HTTP/1.1) --- */

static bool deny_loopback(const gt_h2conn *c, const gt_config *cfg)
{
    switch (cfg->loopback_upstream) {
    case GT_LOOPBACK_ON:
        return false;
    case GT_LOOPBACK_OFF:
        return true;
    case GT_LOOPBACK_AUTO:
    default:
        return !c->peer.client_is_loopback;
    }
}

/* Moves request body bytes to the origin; acknowledges to the client what its socket took. */
static void pump_request(h2stream *h)
{
    if (!h->up)
        return;
    struct evbuffer *out = gt_stream_output(h->up->st);
    if (h->rq_wait && evbuffer_get_length(h->rq_wait))
        evbuffer_add_buffer(out, h->rq_wait);
    if (h->req_end && !h->rq_sent_end) {
        if (h->rq.framing == GT_BODY_CHUNKED)
            evbuffer_add(out, "0\r\n\r\n", 5);
        h->rq_sent_end = true;
    }
    gt_stream_flush(h->up->st);
    if (h->unconsumed && evbuffer_get_length(out) < IO_HWM) {
        nghttp2_session_consume(h->c->ng, h->id, h->unconsumed);
        h->unconsumed = 0;
    }
}

static void finish_response(h2stream *h)
{
    h->rs_done = true;
    sniff_done(h, true);
    if (h->up) {
        bool reusable = h->up_reusable && h->rq_sent_end &&
                        evbuffer_get_length(gt_stream_input(h->up->st)) == 0 &&
                        evbuffer_get_length(gt_stream_output(h->up->st)) == 0;
        gt_upstream *up = h->up;
        h->up = NULL;
        if (reusable) {
            gt_stream_setcb(up->st, NULL, NULL, NULL, NULL);
            gt_pool_put(h->c->w, up, cfg_of(h));
        } else {
            gt_upstream_free(up);
        }
    }
    if (h->deferred) {
        h->deferred = false;
        nghttp2_session_resume_data(h->c->ng, h->id);
    }
}

static void upstream_failed(h2stream *h, int status, const char *why)
{
    gt_counters_upstream_error(&h->c->w->sh->counters, status, why);
    if (h->up) {
        gt_upstream_free(h->up);
        h->up = NULL;
    }
    if (h->rs_submitted) {
        /* part of the response is out: only a reset tells the client it is incomplete */
        gt_log(GT_LOG_WARN, "conn=%u host=%s stream=%d error=\"%s\" mid-response: reset",
               h->c->peer.id, h->host, h->id, why);
        h->decision = "error";
        nghttp2_submit_rst_stream(h->c->ng, NGHTTP2_FLAG_NONE, h->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    respond_error(h, status == GT_STATUS_CERT_FAILED ? 502 : status, why);
}

/* The origin's response head, as HTTP/2 fields: lower-case names, no connection-specific
 * fields (RFC 9113 §8.2.2), no Alt-Svc (QUIC would leave the proxy), framing by DATA. */
/* An HTTP/1.1 response's fields as HTTP/2 fields: lower-case names (into nb->lower), no
 * connection-specific fields (RFC 9113 §8.2.2) or fields Connection lists, no Alt-Svc;
 * Content-Length only when keep_cl (it describes the DATA that follows). */
static size_t h2_fields(const gt_http1_header *hdrs, size_t n, bool keep_cl, nvbuf *nb)
{
    size_t lo = 0, nn = 0;
    bool lists_others = false;
    for (size_t i = 0; i < n; i++)
        if (gt_slice_caseeq(hdrs[i].name, GT_S("connection")) &&
            !gt_slice_caseeq(gt_slice_trim(hdrs[i].value), GT_S("close")) &&
            !gt_slice_caseeq(gt_slice_trim(hdrs[i].value), GT_S("keep-alive")))
            lists_others = true;
    for (size_t i = 0; i < n && nn < MAX_FIELDS; i++) {
        gt_slice name = hdrs[i].name;
        if (gt_http1_is_hop_by_hop(name) || gt_slice_caseeq(name, GT_S("transfer-encoding")) ||
            gt_slice_caseeq(name, GT_S("alt-svc")) ||
            (lists_others && gt_http1_connection_lists(hdrs, n, name)))
            continue;
        if (gt_slice_caseeq(name, GT_S("content-length")) && !keep_cl)
            continue;
        if (lo + name.len > sizeof(nb->lower))
            break;
        for (size_t k = 0; k < name.len; k++)
            nb->lower[lo + k] = gt_ascii_lower(name.p[k]);
        nb->nv[nn++] = (nghttp2_nv){(uint8_t *)nb->lower + lo, (uint8_t *)hdrs[i].value.p,
                                    name.len, hdrs[i].value.len, NGHTTP2_NV_FLAG_NONE};
        lo += name.len;
    }
    return nn;
}

static bool response_head(h2stream *h)
{
    const gt_config *cfg = cfg_of(h);
    struct evbuffer *in = gt_stream_input(h->up->st);
    gt_http1_header *hdrs = h->c->w->resp_fields; /* worker-owned, this call only */
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return false;
        size_t n = len < cfg->max_header_size ? len : cfg->max_header_size;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        gt_http1_response res = {.headers = hdrs, .num_headers = MAX_FIELDS};
        gt_http1_error err;
        int r = gt_http1_parse_response(buf, n, &res, &err);
        if (r == GT_HTTP1_INCOMPLETE) {
            if (len >= cfg->max_header_size)
                upstream_failed(h, 502, "response header block from upstream too large");
            return false;
        }
        if (r < 0) {
            char why[160];
            snprintf(why, sizeof(why), "invalid response from upstream: %s", err.reason);
            upstream_failed(h, 502, why);
            return false;
        }
        if (res.status == 101) {
            upstream_failed(h, 502, "upstream switched protocols without being asked");
            return false;
        }
        if (res.status < 200) {
            /* interim responses (100, 103 Early Hints) go on as non-final HEADERS */
            nvbuf *nb = gt_xmalloc(sizeof(*nb));
            size_t nn = h2_fields(hdrs, res.num_headers, false, nb);
            submit_interim(h, res.status, nb->nv, nn);
            free(nb);
            evbuffer_drain(in, (size_t)r);
            continue;
        }
        if (gt_http1_response_body(&res, h->is_head, &h->rs, &err) < 0) {
            upstream_failed(h, 502, err.reason);
            return false;
        }
        nvbuf *nb = gt_xmalloc(sizeof(*nb));
        bool keep_cl = h->rs.framing == GT_BODY_LENGTH || h->is_head || res.status == 304;
        size_t nn = h2_fields(hdrs, res.num_headers, keep_cl, nb);
        nghttp2_nv *nv = nb->nv;
        h->rs_head_done = true;
        h->up_reusable = !h->rs.conn_close && !(res.minor_version == 0 && !h->rs.conn_keep_alive) &&
                         h->rs.framing != GT_BODY_EOF && !h->rs.had_cl_and_te;
        gt_body_relay_init(&h->rs_body, &h->rs, true);
        if (h->rs.framing == GT_BODY_CHUNKED) {
            /* its trailers go on as HEADERS after the last DATA (data_read) */
            h->rs_trailers = evbuffer_new();
            h->rs_body.trailers = h->rs_trailers;
        }
        if (h->sniff_url && res.status == 200 && !h->is_head)
            h->sniff = gt_proxy_sniff_start(hdrs, res.num_headers, false); /* dechunked */
        if (!h->rs_buf)
            h->rs_buf = evbuffer_new();
        bool body = h->rs.framing != GT_BODY_NONE;
        /* nghttp2 copies the fields at submission; the data source reads rs_buf later */
        submit(h, res.status, nv, nn, body);
        free(nb);
        evbuffer_drain(in, (size_t)r);
        if (!body)
            finish_response(h);
        return true;
    }
}

static void o_trailers(void *arg, const nghttp2_nv *nv, size_t n);

/* A chunked response's trailer section (validated by the chunked decoder: no control
 * characters, no obs-fold) as HTTP/2 trailer fields, through the same path as an HTTP/2
 * origin's (o_trailers). Fields that may not be trailers over HTTP/2 are dropped. */
static void take_trailers(h2stream *h)
{
    if (!h->rs_trailers || evbuffer_get_length(h->rs_trailers) <= 2)
        return;
    size_t len = evbuffer_get_length(h->rs_trailers);
    const char *p = (const char *)evbuffer_pullup(h->rs_trailers, (ev_ssize_t)len);
    gt_http1_header *f = h->c->w->resp_fields; /* worker-owned, this call only */
    size_t n = 0;
    gt_slice rest = gt_slice_make(p, len), line;
    while (n < GT_MAX_FIELDS_CAP && gt_slice_next(&rest, '\n', &line)) {
        if (line.len && line.p[line.len - 1] == '\r')
            line.len--;
        const char *colon = line.len ? memchr(line.p, ':', line.len) : NULL;
        if (!colon || colon == line.p)
            continue;
        gt_slice name = gt_slice_make(line.p, (size_t)(colon - line.p));
        gt_slice value = gt_slice_trim(gt_slice_make(colon + 1, (size_t)(line.p + line.len - colon - 1)));
        if (!gt_http1_is_token(name) || gt_slice_caseeq(name, GT_S("host")) ||
            gt_slice_caseeq(name, GT_S("te")))
            continue; /* not a field name HTTP/2 can carry, or not one a trailer may be */
        f[n++] = (gt_http1_header){name, value};
    }
    nvbuf *nb = gt_xmalloc(sizeof(*nb));
    size_t nn = h2_fields(f, n, false, nb);
    if (nn)
        o_trailers(h, nb->nv, nn);
    free(nb);
}

static void relay_response(h2stream *h)
{
    if (!h->up)
        return;
    struct evbuffer *in = gt_stream_input(h->up->st);
    uint64_t moved = 0;
    gt_http1_error err;
    size_t from = evbuffer_get_length(h->rs_buf);
    if (gt_body_relay_move(&h->rs_body, in, h->rs_buf, IO_HWM, &moved, &err) < 0) {
        upstream_failed(h, 502, err.reason);
        return;
    }
    gt_proxy_sniff_tail(h->sniff, h->rs_buf, from);
    if (moved && h->deferred) {
        h->deferred = false;
        nghttp2_session_resume_data(h->c->ng, h->id);
    }
    if (h->rs_body.done) {
        take_trailers(h);
        finish_response(h);
        return;
    }
    if (evbuffer_get_length(h->rs_buf) >= IO_HWM) {
        /* the client reads slower than the origin sends: stop reading the origin */
        h->up_paused = true;
        gt_stream_disable_read(h->up->st);
    }
}

static void on_up_read(gt_stream *st, void *arg)
{
    (void)st;
    h2stream *h = arg;
    gt_h2conn *c = h->c;
    if (!h->rs_head_done && !response_head(h)) {
        conn_flush(c);
        return;
    }
    relay_response(h);
    conn_flush(c);
}

static void on_up_write(gt_stream *st, void *arg)
{
    (void)st;
    h2stream *h = arg;
    pump_request(h);
    conn_flush(h->c);
}

static void on_up_event(gt_stream *st, int what, void *arg)
{
    h2stream *h = arg;
    gt_h2conn *c = h->c;
    if ((what & GT_STREAM_EOF) && h->rs_head_done && h->rs.framing == GT_BODY_EOF) {
        relay_response(h);
        if (h->up) {
            h->up_reusable = false;
            finish_response(h);
        }
        conn_flush(c);
        return;
    }
    char why[200];
    int err = gt_stream_error(st);
    if (what & GT_STREAM_TIMEOUT)
        snprintf(why, sizeof(why), "upstream %s sent nothing for %ums", h->up ? h->up->peer : "",
                 cfg_of(h)->upstream_timeout_ms);
    else if (what & GT_STREAM_EOF)
        snprintf(why, sizeof(why), "upstream %s closed the connection %s",
                 h->up ? h->up->peer : "", h->rs_head_done ? "mid-response" : "before responding");
    else
        snprintf(why, sizeof(why), "upstream %s connection failed: %s", h->up ? h->up->peer : "",
                 strerror(err ? err : ECONNRESET));
    upstream_failed(h, (what & GT_STREAM_TIMEOUT) ? 504 : 502, why);
    conn_flush(c);
}

static void start_forward(h2stream *h, gt_upstream *up)
{
    h->up = up;
    gt_stream_setcb(up->st, on_up_read, on_up_write, on_up_event, h);
    gt_stream_set_read_hwm(up->st, IO_HWM);
    gt_stream_set_write_lowat(up->st, IO_HWM / 2);
    evbuffer_add_buffer(gt_stream_output(up->st), h->head);
    unsigned t = cfg_of(h)->upstream_timeout_ms;
    gt_stream_set_timeouts(up->st, t, t);
    gt_stream_enable_read(up->st);
    pump_request(h);
}

static void on_connected(void *arg, gt_upstream *up, int status, const char *why)
{
    h2stream *h = arg;
    h->connect = NULL;
    if (!up) {
        upstream_failed(h, status, why);
    } else {
        atomic_fetch_add_explicit(&h->c->w->sh->counters.connects, 1, memory_order_relaxed);
        start_forward(h, up);
    }
    conn_flush(h->c);
}

/* --- forwarding over the origin's HTTP/2 session --- */

static void o_head(void *arg, int status, const nghttp2_nv *nv, size_t n, bool end)
{
    h2stream *h = arg;
    if (!h->rs_buf)
        h->rs_buf = evbuffer_new();
    if (h->sniff_url && status == 200 && !end && !h->is_head) {
        gt_http1_header *hf = h->c->w->resp_fields; /* worker-owned, this call only */
        size_t k = 0;
        for (size_t i = 0; i < n && k < MAX_FIELDS; i++)
            hf[k++] = (gt_http1_header){gt_slice_make((const char *)nv[i].name, nv[i].namelen),
                                        gt_slice_make((const char *)nv[i].value, nv[i].valuelen)};
        h->sniff = gt_proxy_sniff_start(hf, k, false);
    }
    h->rs_head_done = true;
    if (end)
        h->rs_done = true;
    submit(h, status, nv, n, !end); /* fields are copied by nghttp2 */
    conn_flush_soon(h->c);
}

static void o_data(void *arg, const uint8_t *p, size_t n)
{
    h2stream *h = arg;
    evbuffer_add(h->rs_buf, p, n);
    if (h->sniff)
        gt_sniff_feed(h->sniff, p, n);
    if (h->deferred) {
        h->deferred = false;
        nghttp2_session_resume_data(h->c->ng, h->id);
    }
    conn_flush_soon(h->c);
}

static void o_trailers(void *arg, const nghttp2_nv *nv, size_t n)
{
    h2stream *h = arg;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += nv[i].namelen + nv[i].valuelen;
    free(h->trailers);
    free(h->trailer_buf);
    h->trailers = gt_xcalloc(n ? n : 1, sizeof(*nv));
    h->trailer_buf = gt_xmalloc(total ? total : 1);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(h->trailer_buf + off, nv[i].name, nv[i].namelen);
        memcpy(h->trailer_buf + off + nv[i].namelen, nv[i].value, nv[i].valuelen);
        h->trailers[i] = (nghttp2_nv){(uint8_t *)h->trailer_buf + off,
                                      (uint8_t *)h->trailer_buf + off + nv[i].namelen,
                                      nv[i].namelen, nv[i].valuelen, NGHTTP2_NV_FLAG_NONE};
        off += nv[i].namelen + nv[i].valuelen;
    }
    h->ntrailers = n;
}

static void o_end(void *arg)
{
    h2stream *h = arg;
    h->rs_done = true;
    sniff_done(h, true);
    if (h->deferred) {
        h->deferred = false;
        nghttp2_session_resume_data(h->c->ng, h->id);
    }
    conn_flush_soon(h->c);
}

static void o_closed(void *arg)
{
    h2stream *h = arg;
    h->oreq = NULL;
    if (!h->rs_done)
        o_end(h);
}

static void o_fail(void *arg, int status, const char *why)
{
    h2stream *h = arg;
    h->oreq = NULL;
    upstream_failed(h, status, why);
    conn_flush_soon(h->c);
}

static void forward_h1(h2stream *h);

static void o_fallback(void *arg)
{
    h2stream *h = arg;
    h->oreq = NULL;
    h->via_h2o = false;
    /* what the client sent meanwhile is raw; HTTP/1.1 wants it framed */
    if (h->rq_wait && evbuffer_get_length(h->rq_wait) && h->rq.framing == GT_BODY_CHUNKED) {
        struct evbuffer *framed = evbuffer_new();
        evbuffer_add_printf(framed, "%zx\r\n", evbuffer_get_length(h->rq_wait));
        evbuffer_add_buffer(framed, h->rq_wait);
        evbuffer_add(framed, "\r\n", 2);
        evbuffer_free(h->rq_wait);
        h->rq_wait = framed;
    }
    forward_h1(h);
    conn_flush_soon(h->c);
}

static ssize_t o_body(void *arg, uint8_t *buf, size_t len, bool *eof)
{
    h2stream *h = arg;
    int n = h->rq_wait ? evbuffer_remove(h->rq_wait, buf, len) : 0;
    if (n < 0)
        n = 0;
    if (n > 0) {
        /* the client may send as much again: its WINDOW_UPDATE goes out from the loop */
        nghttp2_session_consume(h->c->ng, h->id, (size_t)n);
        h->unconsumed -= (size_t)n;
        conn_flush_soon(h->c);
    }
    if (h->req_end && (!h->rq_wait || evbuffer_get_length(h->rq_wait) == 0)) {
        *eof = true;
        h->rq_sent_end = true;
    }
    return n;
}

static void o_interim(void *arg, int status, const nghttp2_nv *nv, size_t n)
{
    h2stream *h = arg;
    submit_interim(h, status, nv, n);
    conn_flush_soon(h->c);
}

static const gt_h2o_cbs o_cbs = {o_head, o_data, o_trailers, o_end, o_closed, o_fail, o_fallback,
                                 o_body, o_interim};

/* Sends the request over the origin's HTTP/2 session. The head is the HTTP/1.1 head gretel
 * built (rules' rewrites applied), read back into HTTP/2 fields, so both paths forward the
 * same request. False: use HTTP/1.1. */
static bool forward_h2(h2stream *h, const char *key, bool deny)
{
    gt_h2conn *c = h->c;
    size_t len = evbuffer_get_length(h->head);
    const char *buf = (const char *)evbuffer_pullup(h->head, (ev_ssize_t)len);
    nvbuf *nb = gt_xmalloc(sizeof(*nb));
    size_t n = gt_proxy_h2_request_fields(buf, len, nb->nv, MAX_FIELDS + 4, nb->lower,
                                          sizeof(nb->lower));
    if (n == 0) {
        free(nb);
        return false;
    }
    bool body = h->rq.framing != GT_BODY_NONE;
    h->via_h2o = true;
    h->oreq = gt_h2o_submit(c->w, key, gt_slice_cstr(c->peer.mitm_host), c->peer.mitm_port,
                            c->peer.sni, deny, nb->nv, n, body, &o_cbs, h);
    free(nb); /* nghttp2 copied the fields */
    if (!h->oreq) {
        h->via_h2o = false;
        return false;
    }
    if (!body)
        h->rq_sent_end = true;
    return true;
}

/* --- requests --- */

static gt_slice at(const h2stream *h, size_t off, size_t len)
{
    return gt_slice_make(h->hbuf + off, len);
}

/* Decides a complete request head and answers or forwards it. */
static void stream_request(h2stream *h)
{
    gt_h2conn *c = h->c;
    gt_worker *w = c->w;
    h->snap = gt_snapshot_ref(w->snap);
    h->t0 = gt_now_ms();
    h->decision = "pass";
    atomic_fetch_add_explicit(&w->sh->counters.requests, 1, memory_order_relaxed);
    const gt_config *cfg = h->snap->cfg;
    gt_slice method = at(h, h->method, h->method_l);
    snprintf(h->method_s, sizeof(h->method_s), "%.*s", (int)method.len, method.p);
    h->is_head = gt_slice_eq(method, GT_S("HEAD"));
    if (h->too_big) {
        respond_error(h, 431, "request header list too large");
        return;
    }
    if (h->bad || !h->method_l || !h->path_l || gt_slice_eq(method, GT_S("CONNECT"))) {
        respond_error(h, h->bad ? 400 : 405, h->bad ? "malformed request" : "CONNECT inside HTTP/2");
        return;
    }
    /* The rules see the name the tunnel was opened for (its SNI, else the CONNECT host:
     * docs/RULES.md), never an :authority naming something else; an :authority that is
     * not host[:port] at all is refused. */
    gt_http1_uri au;
    gt_http1_error err;
    if (h->authority_l &&
        gt_http1_parse_host_field(at(h, h->authority, h->authority_l), 443, &au, &err) < 0) {
        respond_error(h, 400, "bad :authority");
        return;
    }
    gt_slice path = at(h, h->path, h->path_l);
    if (path.len == 0 || path.p[0] != '/') {
        respond_error(h, 400, "bad :path");
        return;
    }
    /* the request as HTTP/1.1 sees it: regular fields, cookies joined (RFC 9113 §8.2.3);
     * the joined cookie and the URL live in the worker's URL buffer while it is decided */
    gt_http1_header *hdrs = w->req_fields; /* worker-owned, this call only */
    size_t nh = 0, cookie_need = 0;
    for (size_t i = 0; i < h->nf; i++)
        if (gt_slice_eq(at(h, h->f[i].n, h->f[i].nl), GT_S("cookie")))
            cookie_need += h->f[i].vl + 2;
    const char *sni = c->peer.sni;
    bool v6 = strchr(sni, ':') != NULL;
    size_t url_need = strlen(sni) + path.len + 24;
    char *cookie = gt_worker_url_buf(w, cookie_need + url_need);
    char *url = cookie + cookie_need;
    size_t cl = 0;
    bool has_cookie = false;
    for (size_t i = 0; i < h->nf && nh < GT_MAX_FIELDS_CAP - 1; i++) {
        gt_slice n = at(h, h->f[i].n, h->f[i].nl), v = at(h, h->f[i].v, h->f[i].vl);
        if (gt_slice_eq(n, GT_S("cookie"))) {
            if (cl) {
                memcpy(cookie + cl, "; ", 2);
                cl += 2;
            }
            memcpy(cookie + cl, v.p, v.len);
            cl += v.len;
            has_cookie = true;
            continue;
        }
        hdrs[nh++] = (gt_http1_header){n, v};
    }
    if (has_cookie)
        hdrs[nh++] = (gt_http1_header){GT_S("cookie"), gt_slice_make(cookie, cl)};
    int un = c->peer.mitm_port == 443
                 ? snprintf(url, url_need, "https://%s%s%s%.*s", v6 ? "[" : "", sni,
                            v6 ? "]" : "", (int)path.len, path.p)
                 : snprintf(url, url_need, "https://%s%s%s:%u%.*s", v6 ? "[" : "", sni,
                            v6 ? "]" : "", c->peer.mitm_port, (int)path.len, path.p);
    gt_http1_uri uri;
    if (un < 0 || (size_t)un >= url_need ||
        gt_http1_parse_absolute(gt_slice_make(url, (size_t)un), &uri, &err) < 0) {
        respond_error(h, 400, "bad :authority or :path");
        return;
    }
    snprintf(h->host, sizeof(h->host), "%.*s", (int)uri.host.len, uri.host.p);
    for (char *p = h->host; *p; p++)
        *p = gt_ascii_lower(*p);
    gt_http1_request req = {.method = method, .target = path, .minor_version = 1,
                            .headers = hdrs, .num_headers = nh};
    /* framing for the origin: the client's Content-Length, else chunked while the
     * stream is open (HTTP/2 bodies need no length) */
    h->rq.framing = GT_BODY_NONE;
    for (size_t i = 0; i < nh; i++)
        if (gt_slice_caseeq(hdrs[i].name, GT_S("content-length"))) {
            uint64_t v;
            if (gt_parse_u64(gt_slice_trim(hdrs[i].value), UINT64_MAX / 2, &v) < 0) {
                respond_error(h, 400, "bad content-length");
                return;
            }
            h->rq.framing = GT_BODY_LENGTH;
            h->rq.length = v;
        }
    if (h->rq.framing == GT_BODY_NONE && !h->req_end)
        h->rq.framing = GT_BODY_CHUNKED;
    gt_decision *d = &w->decision;
    /* a body read ahead for body~ rules (wants_body) is whole in rq_wait */
    gt_slice body = GT_S("");
    if (h->req_end && h->rq_wait && evbuffer_get_length(h->rq_wait)) {
        size_t bl = evbuffer_get_length(h->rq_wait);
        body = gt_slice_make((const char *)evbuffer_pullup(h->rq_wait, (ev_ssize_t)bl), bl);
    }
    gt_proxy_decide(w, h->snap, &req, gt_slice_cstr(h->host), &uri, body, c->peer.id, d,
                    &h->type);
    h->rule = d->rule;
    h->list_file = d->list_file;
    h->list_line = d->list_line;
    if (d->action == GT_DECIDE_BLOCK || d->action == GT_DECIDE_REDIRECT) {
        const gt_resource *res = gt_rules_resource(d->resp, h->type);
        const char *action = gt_decide_action_name(d->action);
        char xg[400];
        snprintf(xg, sizeof(xg), "%s; rule=%s:%u%s", action, gt_decision_file(d),
                 gt_decision_line(d), d->bought ? "; bought" : "");
        h->decision = action;
        atomic_fetch_add_explicit(&w->sh->counters.blocked, 1, memory_order_relaxed);
        gt_control_note_block(w->sh->control, gt_slice_cstr(h->host));
        respond_local(h, res->status, res->content_type, res->body ? res->body : "",
                      res->body ? res->body_len : 0, xg);
        return;
    }
    if (d->action != GT_DECIDE_PASS)
        h->decision = gt_decide_action_name(d->action);
    h->head = evbuffer_new();
    gt_proxy_request_head(h->head, &req, &uri, false, &h->rq, d, false);
    if (cfg->page_products && h->type == GT_TYPE_DOCUMENT && w->sh->control &&
        gt_slice_eq(method, GT_S("GET")))
        h->sniff_url = gt_xstrdup(url);
    h->rq_sent_end = h->rq.framing == GT_BODY_NONE;
    char key[540];
    gt_upstream_key_tls(gt_slice_cstr(c->peer.mitm_host), c->peer.mitm_port, c->peer.sni, key,
                        sizeof(key));
    /* HTTP/2 to the origin (one shared session per origin and worker) unless it is known
     * to speak only http/1.1 */
    if (cfg->http2 && !gt_h2o_known_h1(w, key) && forward_h2(h, key, deny_loopback(c, cfg)))
        return;
    forward_h1(h);
}

/* HTTP/1.1 to the origin: a pooled verified connection, or a new one. */
static void forward_h1(h2stream *h)
{
    gt_h2conn *c = h->c;
    gt_worker *w = c->w;
    const gt_config *cfg = cfg_of(h);
    char key[540];
    gt_upstream_key_tls(gt_slice_cstr(c->peer.mitm_host), c->peer.mitm_port, c->peer.sni, key,
                        sizeof(key));
    bool deny = deny_loopback(c, cfg);
    gt_upstream *up = gt_pool_take(w, key);
    if (up && up->guarded_loopback && deny) {
        gt_pool_put(w, up, cfg);
        up = NULL;
    }
    if (up) {
        start_forward(h, up);
        return;
    }
    gt_upstream_connect_tls(w, cfg, gt_slice_cstr(c->peer.mitm_host), c->peer.mitm_port,
                            c->peer.sni, false, deny, on_connected, h, &h->connect);
}

/* --- request bodies read before deciding (body~ rules) --- */

/* Whether to hold the decision until the request body is here, as the HTTP/1.1 session
 * does (body_wanted in session.c): only when some rule has a body~ condition, and only for
 * a Content-Length body up to body_inspect_max that also fits the stream's flow-control
 * window (the client can send it whole without our WINDOW_UPDATE); others are decided on
 * the head. */
static bool wants_body(const h2stream *h)
{
    const gt_snapshot *snap = h->c->w->snap;
    const gt_config *cfg = snap->cfg;
    if (!gt_ruleset_wants_body(snap->rules) || cfg->body_inspect_max == 0)
        return false;
    size_t max = cfg->body_inspect_max < cfg->h2_window ? cfg->body_inspect_max : cfg->h2_window;
    bool ok = false;
    for (size_t i = 0; i < h->nf; i++) {
        gt_slice n = gt_slice_make(h->hbuf + h->f[i].n, h->f[i].nl);
        if (!gt_slice_eq(n, GT_S("content-length")))
            continue;
        uint64_t v;
        gt_slice val = gt_slice_trim(gt_slice_make(h->hbuf + h->f[i].v, h->f[i].vl));
        ok = gt_parse_u64(val, UINT64_MAX / 2, &v) == 0 && v > 0 && v <= max;
        break;
    }
    if (!ok) /* a body (the stream is open) the body~ rules will not see: /metrics says */
        atomic_fetch_add_explicit(&h->c->w->sh->counters.bodies_not_inspected, 1,
                                  memory_order_relaxed);
    return ok;
}

/* After a request decided on its read-ahead body: a local answer drops the body (its
 * window reopened), a forwarded request sends it on. */
static void after_body_wait(h2stream *h)
{
    if (!h->rq_wait)
        return;
    if (h->rs_submitted || h->rq_sent_end) {
        evbuffer_drain(h->rq_wait, evbuffer_get_length(h->rq_wait));
        if (h->unconsumed)
            nghttp2_session_consume(h->c->ng, h->id, h->unconsumed);
        h->unconsumed = 0;
        return;
    }
    if (h->via_h2o) {
        if (h->oreq)
            gt_h2o_resume_body(h->oreq);
    } else {
        pump_request(h);
    }
}

/* --- nghttp2 callbacks --- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    gt_h2conn *c = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2stream *h = gt_xcalloc(1, sizeof(*h));
    h->c = c;
    h->id = frame->hd.stream_id;
    LIST_INSERT_HEAD(&c->streams, h, link);
    c->nstreams++;
    nghttp2_session_set_stream_user_data(ng, h->id, h);
    gt_stream_set_timeouts(c->cs, 0, c->w->snap->cfg->upstream_timeout_ms);
    return 0;
}

static size_t keep(h2stream *h, const uint8_t *p, size_t n)
{
    if (h->hlen + n > h->hcap) {
        size_t cap = h->hcap ? h->hcap * 2 : 1024;
        while (cap < h->hlen + n)
            cap *= 2;
        h->hbuf = gt_xrealloc(h->hbuf, cap);
        h->hcap = cap;
    }
    memcpy(h->hbuf + h->hlen, p, n);
    size_t off = h->hlen;
    h->hlen += n;
    return off;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    gt_h2conn *c = user;
    h2stream *h = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!h || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers of a request: not forwarded */
    if (h->hlen + namelen + valuelen > c->w->snap->cfg->max_header_size || h->nf >= MAX_FIELDS) {
        h->too_big = true;
        return 0;
    }
    size_t no = keep(h, name, namelen), vo = keep(h, value, valuelen);
    if (namelen && name[0] == ':') {
        gt_slice n = gt_slice_make((const char *)name, namelen);
        if (gt_slice_eq(n, GT_S(":method")))
            h->method = vo, h->method_l = valuelen;
        else if (gt_slice_eq(n, GT_S(":path")))
            h->path = vo, h->path_l = valuelen;
        else if (gt_slice_eq(n, GT_S(":authority")))
            h->authority = vo, h->authority_l = valuelen;
        else if (gt_slice_eq(n, GT_S(":scheme")))
            h->scheme = vo, h->scheme_l = valuelen;
        return 0;
    }
    /* "host" as a regular field duplicates :authority; the origin gets Host from it */
    if (namelen == 4 && memcmp(name, "host", 4) == 0) {
        if (!h->authority_l)
            h->authority = vo, h->authority_l = valuelen;
        return 0;
    }
    h->f[h->nf].n = no;
    h->f[h->nf].nl = namelen;
    h->f[h->nf].v = vo;
    h->f[h->nf].vl = valuelen;
    h->nf++;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    (void)user;
    h2stream *h = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!h)
        return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        h->req_end = end;
        if (!end && wants_body(h)) {
            h->body_wait = true; /* decided at END_STREAM, with the body (on_data_chunk) */
            return 0;
        }
        stream_request(h);
        return 0;
    }
    if (end && h->body_wait) {
        h->body_wait = false;
        h->req_end = true;
        stream_request(h);
        after_body_wait(h);
        return 0;
    }
    if (end && (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
        h->req_end = true;
        if (h->via_h2o) {
            if (h->oreq)
                gt_h2o_resume_body(h->oreq);
        } else {
            pump_request(h);
        }
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags, (void)user;
    h2stream *h = nghttp2_session_get_stream_user_data(ng, id);
    if (!h || h->rs_submitted || h->rq_sent_end) {
        /* answered already (blocked, error): the body is dropped, the window reopened */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    if (!h->rq_wait)
        h->rq_wait = evbuffer_new();
    if (h->body_wait) {
        /* read ahead, not yet acknowledged: within the stream's window by wants_body */
        evbuffer_add(h->rq_wait, data, len);
        h->unconsumed += len;
        return 0;
    }
    if (h->via_h2o) {
        /* HTTP/2 to the origin: DATA pulled by its session, acknowledged when taken */
        evbuffer_add(h->rq_wait, data, len);
        h->unconsumed += len;
        if (h->oreq)
            gt_h2o_resume_body(h->oreq);
        return 0;
    }
    if (h->rq.framing == GT_BODY_CHUNKED)
        evbuffer_add_printf(h->rq_wait, "%zx\r\n", len);
    evbuffer_add(h->rq_wait, data, len);
    if (h->rq.framing == GT_BODY_CHUNKED)
        evbuffer_add(h->rq_wait, "\r\n", 2);
    h->unconsumed += len;
    pump_request(h);
    return 0;
}

/* RFC 9113 §8.1: a server that sent a whole response before the request ended may send
 * RST_STREAM(NO_ERROR) so that the client stops sending; without it an upload the origin
 * answered early (or gretel answered, blocked) goes on until the client's own timeout. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    (void)user;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
        return 0;
    h2stream *h = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (h && !h->req_end)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, h->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)code;
    gt_h2conn *c = user;
    h2stream *h = nghttp2_session_get_stream_user_data(ng, id);
    if (!h)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (!h->rs_done && h->snap && !h->status)
        h->status = 499, h->decision = "aborted";
    stream_free(h);
    if (c->nstreams == 0 && !c->dead)
        gt_stream_set_timeouts(c->cs, c->w->snap->cfg->idle_timeout_ms, 0);
    return 0;
}

/* --- the connection --- */

static void conn_free(gt_h2conn *c)
{
    if (c->in_io) {
        c->free_after = true;
        return;
    }
    c->dead = true;
    if (c->flush_ev)
        event_free(c->flush_ev);
    c->flush_ev = NULL;
    nghttp2_session_del(c->ng); /* closes every stream through on_stream_close */
    c->ng = NULL;
    h2stream *h;
    while ((h = LIST_FIRST(&c->streams)) != NULL)
        stream_free(h);
    gt_stream_free(c->cs);
    LIST_REMOVE(c, link);
    c->w->nh2--;
    atomic_fetch_sub_explicit(&c->w->sh->counters.open_conns, 1, memory_order_relaxed);
    gt_worker *w = c->w;
    free(c);
    gt_worker_session_gone(w);
}

/* Serializes what nghttp2 has to send, up to the client's buffer mark, and ends the
 * connection when neither side has anything left to say. */
static void conn_flush(gt_h2conn *c)
{
    if (c->dead || !c->ng)
        return;
    struct evbuffer *out = gt_stream_output(c->cs);
    for (;;) {
        if (evbuffer_get_length(out) >= IO_HWM) {
            gt_stream_flush(c->cs);
            /* the socket is full: its write callback (below the low mark) resumes us */
            if (evbuffer_get_length(out) > IO_HWM / 2)
                break;
        }
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->ng, &data);
        if (n < 0) {
            conn_free(c);
            return;
        }
        if (n == 0)
            break;
        evbuffer_add(out, data, (size_t)n);
    }
    gt_stream_flush(c->cs);
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        evbuffer_get_length(out) == 0)
        conn_free(c);
}

static void on_client_read(gt_stream *st, void *arg)
{
    gt_h2conn *c = arg;
    struct evbuffer *in = gt_stream_input(st);
    c->in_io = true;
    while (evbuffer_get_length(in) && !c->free_after) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t r = nghttp2_session_mem_recv(c->ng, v.iov_base, v.iov_len);
        if (r < 0) {
            /* a protocol error nghttp2 answered with GOAWAY (or a flood): send what is
             * queued, then close */
            gt_log(GT_LOG_INFO, "conn=%u client=%s: HTTP/2 error: %s", c->peer.id,
                   c->peer.client, nghttp2_strerror((int)r));
            /* floods get ENHANCE_YOUR_CALM; other errors a PROTOCOL_ERROR, unless nghttp2
             * queued its own GOAWAY already (then this call does nothing) */
            bool flood = r == NGHTTP2_ERR_FLOODED || r == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
            nghttp2_session_terminate_session(
                c->ng, flood ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
            evbuffer_drain(in, evbuffer_get_length(in));
            const uint8_t *data;
            ssize_t n;
            while ((n = nghttp2_session_mem_send(c->ng, &data)) > 0)
                evbuffer_add(gt_stream_output(c->cs), data, (size_t)n);
            gt_stream_flush(c->cs);
            c->free_after = true;
            break;
        }
        evbuffer_drain(in, (size_t)r);
    }
    c->in_io = false;
    if (c->free_after) {
        conn_free(c);
        return;
    }
    conn_flush(c);
}

static void on_client_write(gt_stream *st, void *arg)
{
    (void)st;
    conn_flush(arg);
}

static void on_client_event(gt_stream *st, int what, void *arg)
{
    (void)st, (void)what;
    gt_h2conn *c = arg;
    conn_free(c); /* EOF, error or idle timeout: nothing more can be said on it */
}

static void on_flush_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    conn_flush(arg);
}

void gt_h2_start(gt_worker *w, gt_stream *cs, const gt_h2_peer *peer)
{
    const gt_config *cfg = w->snap->cfg;
    gt_h2conn *c = gt_xcalloc(1, sizeof(*c));
    c->w = w;
    c->cs = cs;
    c->peer = *peer;
    c->t0 = gt_now_ms();
    LIST_INIT(&c->streams);
    LIST_INSERT_HEAD(&w->h2conns, c, link);
    w->nh2++;
    c->flush_ev = evtimer_new(w->base, on_flush_ev, c);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    /* request bodies are acknowledged when the origin took them, not on receipt */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* floods: these are nghttp2's defaults made explicit, so they are documented here */
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    int rv = nghttp2_session_server_new2(&c->ng, cb, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        conn_free(c);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->h2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->h2_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    /* the connection window: room for every stream's window at once */
    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                          (int32_t)(cfg->h2_window > (1u << 24) ? (1u << 30)
                                                                                : cfg->h2_window * 16u));
    gt_stream_setcb(cs, on_client_read, on_client_write, on_client_event, c);
    gt_stream_set_read_hwm(cs, IO_HWM);
    gt_stream_set_write_lowat(cs, IO_HWM / 2);
    gt_stream_set_timeouts(cs, cfg->idle_timeout_ms, cfg->upstream_timeout_ms);
    gt_stream_enable_read(cs);
    conn_flush(c);
    if (evbuffer_get_length(gt_stream_input(cs)))
        gt_stream_trigger_read(cs);
}

void gt_h2_drain(gt_worker *w)
{
    gt_h2conn *c, *next;
    for (c = LIST_FIRST(&w->h2conns); c; c = next) {
        next = LIST_NEXT(c, link);
        if (!c->draining) {
            c->draining = true;
            nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(c->ng),
                                  NGHTTP2_NO_ERROR, NULL, 0);
            conn_flush(c); /* frees the connection when nothing is open */
        }
    }
}

void gt_h2_destroy_all(gt_worker *w)
{
    gt_h2conn *c;
    while ((c = LIST_FIRST(&w->h2conns)) != NULL)
        conn_free(c);
    gt_h2o_destroy_all(w);
}
