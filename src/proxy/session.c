/* One client connection speaking HTTP/1.1 to gretel as a proxy: read a head, decide, then
 * answer locally, forward to an origin (streaming bodies both ways with back-pressure),
 * or hand the connection to a CONNECT tunnel. Requests are handled one at a time in order,
 * so pipelined requests are answered in order. This file is one state machine
 * (enum sess_state) and runs only on its worker's thread; every failure path ends in
 * session_destroy(). */
#include <nghttp2/nghttp2.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gretel/http1.h"
#include "gretel/lists.h"
#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/store.h"
#include "gretel/control.h"
#include "gretel/products.h"
#include "gretel/proxy.h"
#include "gretel/stream.h"
#include "gretel/tls.h"
#include "gretel/util.h"
#include "h2origin.h"
#include <fnmatch.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Buffering per direction before the other side stops being read: 256 KiB keeps a 1 Gbit/s
 * LAN link busy at sub-millisecond RTTs while bounding memory per connection. */
#define IO_HWM (256 * 1024)
/* How long a connection we are closing keeps reading (and discarding) so that the client
 * sees our last response instead of a TCP reset. */
#define LINGER_MS 2000
/* Connections accepted past max_connections get a 503; past this many more, none. */
#define OVER_LIMIT_SLACK 64
/* Request bodies of requests gretel answers itself are read and dropped up to this size so
 * the connection stays usable (a blocked beacon's POST body, a control-page form); larger
 * ones close the connection instead. */
#define DISCARD_MAX (1024 * 1024)

enum sess_state {
    S_HEAD,       /* waiting for (the rest of) a request head */
    S_CONNECTING, /* upstream connect in progress */
    S_FORWARD,    /* request and response in flight */
    S_DISCARD,    /* answered locally; reading and dropping the request body */
    S_CLOSING,    /* last response being flushed, then linger, then destroy */
    /* TLS interception of a CONNECT tunnel (after our 200): */
    S_TLS_HELLO,     /* reading the ClientHello for its SNI */
    S_TLS_UPSTREAM,  /* connecting and verifying the origin */
    S_TLS_HANDSHAKE, /* our handshake with the client, on a minted leaf */
};

struct gt_session {
    gt_worker *w;
    unsigned id;
    gt_stream *cs; /* the client connection */
    char client[64];
    char local[64]; /* the address the client reached us on, "1.2.3.4:8119" */
    bool client_is_loopback;
    enum sess_state st;
    LIST_ENTRY(gt_session) link;
    struct event *timer;
    /* Activated when a request ends with more input buffered: the next head is read from
     * the loop, never from inside the previous request's call chain (a pipelined run of
     * any length uses a bounded stack). */
    struct event *resume;
    bool timer_is_head; /* armed as header deadline (vs idle) */
    size_t scanned;     /* bytes of input already searched for the end of the head */
    bool denied, over_limit, draining, close_after, linger_started;
    bool client_eof; /* the client half-closed: answer what it sent, then close */
    uint64_t discarded; /* S_DISCARD: body bytes dropped so far */
    bool abort_pending; /* client gone mid-request: destroy from the timer */
    unsigned nreq;

    /* the request in flight */
    gt_snapshot *snap;
    uint64_t t0;
    char method[24];
    char host[260];
    uint16_t port;
    char *url; /* only kept at log_level debug */
    bool is_head, is_connect, client_10, keepalive;
    bool websocket; /* a WebSocket opening handshake, relayed as an upgrade (RFC 6455) */
    gt_http1_body rq;
    gt_body_relay rq_body;
    bool rq_done, rq_sent_any;
    struct evbuffer *head; /* serialized upstream head (kept for one retry) */
    gt_connect *connect;
    gt_upstream *up;
    bool retried, up_got_bytes;

    /* the response in flight */
    bool rs_head_done, rs_started, rs_done, dechunk, up_reusable;
    gt_http1_body rs;
    int rs_minor;
    gt_body_relay rs_body;
    int status;
    uint64_t bytes_out;
    const char *decision;
    const gt_rule *rule; /* the deciding rule (lives in snap's ruleset), or NULL */
    const char *list_file; /* or the deciding list filter's file (in snap's lists) and line */
    unsigned list_line;
    gt_reqtype type;
    gt_slice body_view; /* the request body read ahead for body~ rules (in the input) */
    /* a page's schema.org product ids, read as its HTML passes (page_products) */
    char *sniff_url; /* the page's URL, while its response is awaited */
    gt_sniff *sniff;

    /* TLS interception: set once the CONNECT was answered and the client's TLS is ours */
    bool mitm;            /* requests arrive decrypted, in origin-form */
    bool raw_after_200;   /* a tunnel whose 200 was already sent (not TLS, or bypassed) */
    char mitm_host[256];  /* the CONNECT target: where the origin connection goes */
    uint16_t mitm_port;
    char sni[256];        /* the name the client asked for; the leaf is minted for it */
    int tls_err_status;   /* the origin could not be reached or verified: every request */
    char tls_err[300];    /*   inside gets this error page, then the connection closes */

    /* the current request forwarded over the origin's shared HTTP/2 session */
    gt_h2o_req *oreq;
    bool o_chunked;       /* the response goes to the client chunked */
    bool o_done;          /* the response is complete */
    size_t o_unacked;     /* response bytes queued to the client, not yet acknowledged */
    struct evbuffer *o_trailers;
};

static bool process_heads(gt_session *s) GT_MUST_CHECK;
static long body_wanted(gt_session *s, const gt_http1_request *req, size_t head_len,
                        size_t have);
static void on_up_read(gt_stream *st, void *arg);
static void on_up_write(gt_stream *st, void *arg);
static void on_up_event(gt_stream *st, int what, void *arg);
static bool start_forward(gt_session *s, gt_upstream *up) GT_MUST_CHECK;
static bool deny_loopback(const gt_session *s);

static const gt_config *cfg_of(const gt_session *s)
{
    return s->snap ? s->snap->cfg : s->w->snap->cfg;
}

/* How much client input is read before reading pauses: IO_HWM, or more when a request
 * head plus the body a body~ rule inspects (both limits are config) needs more, so that
 * every head and inspected body the config accepts can arrive whole. */
static size_t read_hwm(const gt_session *s)
{
    const gt_config *cfg = cfg_of(s);
    size_t need = (size_t)cfg->max_header_size + cfg->body_inspect_max + GT_CONTROL_BODY_MAX;
    return need > IO_HWM ? need : IO_HWM;
}

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void session_destroy(gt_session *s)
{
    gt_worker *w = s->w;
    gt_sniff_free(s->sniff);
    free(s->sniff_url);
    gt_upstream_connect_cancel(s->connect);
    gt_upstream_free(s->up);
    if (s->oreq)
        gt_h2o_cancel(s->oreq);
    if (s->o_trailers)
        evbuffer_free(s->o_trailers);
    gt_stream_free(s->cs);
    if (s->timer)
        event_free(s->timer);
    if (s->resume)
        event_free(s->resume);
    if (s->head)
        evbuffer_free(s->head);
    gt_snapshot_release(s->snap);
    free(s->url);
    LIST_REMOVE(s, link);
    w->nsessions--;
    atomic_fetch_sub_explicit(&w->sh->counters.open_conns, 1, memory_order_relaxed);
    free(s);
    gt_worker_session_gone(w);
}

/* --- the product ids of pages (src/products/sniff.c, for the control page) --- */

/* The response ended (whole or not): what the page declared goes to the control page. */
static void sniff_done(gt_session *s, bool complete)
{
    gt_proxy_sniff_finish(s->w->sh, s->sniff, s->sniff_url,
                          gt_slice_cstr(s->mitm ? s->mitm_host : s->host), complete);
    s->sniff = NULL;
    gt_free(&s->sniff_url);
}

/* --- request bookkeeping --- */

static void log_request(gt_session *s)
{
    uint64_t ms = gt_now_ms() - s->t0;
    if (gt_log_enabled(GT_LOG_DEBUG) && s->url)
        gt_logbuf_write(&s->w->logbuf, GT_LOG_DEBUG,
                        "req conn=%u client=%s method=%s host=%s status=%d bytes=%llu ms=%llu "
                        "decision=%s rule=%s:%u url=%s",
                        s->id, s->client, s->method, s->host[0] ? s->host : "-", s->status,
                        (unsigned long long)s->bytes_out, (unsigned long long)ms, s->decision,
                        s->list_file ? s->list_file : gt_rule_file(s->rule),
                        s->list_file ? s->list_line : gt_rule_line(s->rule), s->url);
    else if (gt_log_enabled(GT_LOG_INFO))
        gt_logbuf_write(&s->w->logbuf, GT_LOG_INFO,
                        "req conn=%u client=%s method=%s host=%s status=%d bytes=%llu ms=%llu "
                        "decision=%s rule=%s:%u",
                        s->id, s->client, s->method[0] ? s->method : "-",
                        s->host[0] ? s->host : "-", s->status, (unsigned long long)s->bytes_out,
                        (unsigned long long)ms, s->decision,
                        s->list_file ? s->list_file : gt_rule_file(s->rule),
                        s->list_file ? s->list_line : gt_rule_line(s->rule));
}

/* Ends the current request: logs it and resets per-request state. */
static void end_request(gt_session *s)
{
    sniff_done(s, false); /* a response that did not end whole says nothing */
    log_request(s);
    gt_counters_decision(&s->w->sh->counters, s->decision);
    atomic_fetch_add_explicit(&s->w->sh->counters.bytes_to_clients, s->bytes_out,
                              memory_order_relaxed);
    gt_snapshot_release(s->snap);
    s->snap = NULL;
    gt_free(&s->url);
    s->method[0] = s->host[0] = '\0';
    s->port = 0;
    s->is_head = s->is_connect = s->websocket = false;
    s->rq_done = s->rq_sent_any = s->retried = s->up_got_bytes = false;
    s->rs_head_done = s->rs_started = s->rs_done = s->dechunk = s->up_reusable = false;
    s->o_chunked = s->o_done = false;
    s->o_unacked = 0;
    if (s->o_trailers)
        evbuffer_drain(s->o_trailers, evbuffer_get_length(s->o_trailers));
    s->status = 0;
    s->bytes_out = 0;
    s->decision = "pass";
    s->rule = NULL;
    s->list_file = NULL;
    s->type = GT_TYPE_OTHER;
    s->scanned = 0;
    if (s->head)
        evbuffer_drain(s->head, evbuffer_get_length(s->head));
}

static void arm_idle(gt_session *s)
{
    const gt_config *cfg = cfg_of(s);
    /* The first request of a connection gets the header timeout: an opened-but-silent
     * connection is how slowloris starts. Later ones get the keep-alive idle timeout. */
    struct timeval tv = tv_ms(s->nreq == 0 ? cfg->header_timeout_ms : cfg->idle_timeout_ms);
    s->timer_is_head = false;
    evtimer_add(s->timer, &tv);
}

static void arm_head_deadline(gt_session *s)
{
    struct timeval tv = tv_ms(cfg_of(s)->header_timeout_ms);
    s->timer_is_head = true;
    evtimer_add(s->timer, &tv);
}

/* Half-close, then keep reading briefly so unread client bytes do not turn our close into
 * a reset that destroys the response in flight. */
static void start_linger(gt_session *s)
{
    if (s->linger_started)
        return;
    s->linger_started = true;
    gt_stream_shutdown_write(s->cs);
    /* a client that already half-closed has nothing more to send: end at once */
    struct timeval tv = tv_ms(s->client_eof ? 0 : LINGER_MS);
    evtimer_add(s->timer, &tv);
}

static void enter_closing(gt_session *s)
{
    s->st = S_CLOSING;
    evtimer_del(s->timer);
    if (s->up) {
        gt_upstream_free(s->up);
        s->up = NULL;
    }
    gt_upstream_connect_cancel(s->connect);
    s->connect = NULL;
    /* the last response still has to reach a slow client, within the usual write bound */
    gt_stream_set_timeouts(s->cs, 0, cfg_of(s)->upstream_timeout_ms);
    gt_stream_set_write_lowat(s->cs, 0);
    gt_stream_enable_read(s->cs);
    gt_stream_flush(s->cs);
    if (evbuffer_get_length(gt_stream_output(s->cs)) == 0)
        start_linger(s);
}

/* Where the current request's life ends: keep the connection for the next or close it.
 * Never ends the session and never reads the next request itself: a pipelined head
 * already buffered is read by process_heads' own loop when we are inside it, else from
 * the loop (s->resume). */
static void next_or_close(gt_session *s)
{
    bool close = s->close_after || !s->keepalive || s->draining || !s->rq_done;
    end_request(s);
    s->nreq++;
    if (close) {
        enter_closing(s);
        return;
    }
    s->st = S_HEAD;
    gt_stream_set_timeouts(s->cs, 0, 0);
    gt_stream_set_write_lowat(s->cs, IO_HWM / 2);
    gt_stream_enable_read(s->cs);
    arm_idle(s);
    if (evbuffer_get_length(gt_stream_input(s->cs)))
        event_active(s->resume, EV_TIMEOUT, 0);
    else if (s->client_eof)
        enter_closing(s);
    else
        gt_stream_trim(s->cs); /* keep-alive wait: an idle TLS client holds no buffers */
}

/* Answers the current request locally. The connection closes when asked, or when a request
 * body would otherwise have to be skipped. */
static void respond_local(gt_session *s, int status, const char *why, bool close,
                          const char *decision)
{
    if (s->rq.framing != GT_BODY_NONE && !s->rq_done)
        close = true;
    struct evbuffer *out = gt_stream_output(s->cs);
    size_t before = evbuffer_get_length(out);
    gt_proxy_error_response(out, status, why, s->is_head, close);
    s->bytes_out += evbuffer_get_length(out) - before;
    gt_stream_flush(s->cs);
    s->status = status;
    s->decision = decision;
    if (close)
        s->close_after = true;
    atomic_fetch_add_explicit(&s->w->sh->counters.local_responses, 1, memory_order_relaxed);
    if (status >= 500)
        gt_log(GT_LOG_WARN, "conn=%u client=%s host=%s status=%d error=\"%s\"", s->id, s->client,
               s->host[0] ? s->host : "-", status, why);
    else if (status >= 400)
        gt_log(GT_LOG_INFO, "conn=%u client=%s status=%d error=\"%s\"", s->id, s->client, status,
               why);
    /* nothing of this request's body was consumed: mark it so next_or_close closes */
    if (s->rq.framing != GT_BODY_NONE)
        s->rq_done = false;
    else
        s->rq_done = true;
    next_or_close(s);
}

/* True when the body of a request answered locally can be read and dropped, keeping the
 * connection (known small length, or chunked: checked while reading). */
static bool body_discardable(const gt_session *s)
{
    return s->rq.framing == GT_BODY_CHUNKED ||
           (s->rq.framing == GT_BODY_LENGTH && s->rq.length <= DISCARD_MAX);
}

static void discard_body(gt_session *s)
{
    struct evbuffer *in = gt_stream_input(s->cs);
    if (!s->head)
        s->head = evbuffer_new();
    uint64_t moved = 0;
    gt_http1_error err;
    int r = gt_body_relay_move(&s->rq_body, in, s->head, DISCARD_MAX, &moved, &err);
    evbuffer_drain(s->head, evbuffer_get_length(s->head));
    s->discarded += moved;
    if (r < 0 || s->discarded > DISCARD_MAX) {
        s->close_after = true; /* the response is complete; only the connection ends */
        s->rq_done = true;
        next_or_close(s);
        return;
    }
    if (s->rq_body.done) {
        s->rq_done = true;
        next_or_close(s);
        return;
    }
    if (s->client_eof) {
        s->close_after = true; /* the body will never complete: flush the answer, close */
        s->rq_done = true;
        enter_closing(s);
        return;
    }
    gt_stream_resume_read(s->cs);
}

/* Ends a locally answered request: drops its body first when there is one. */
static void finish_local(gt_session *s)
{
    if (s->rq.framing == GT_BODY_NONE || s->close_after) {
        s->rq_done = s->rq.framing == GT_BODY_NONE;
        next_or_close(s);
        return;
    }
    s->st = S_DISCARD;
    s->discarded = 0;
    gt_stream_set_timeouts(s->cs, cfg_of(s)->upstream_timeout_ms, 0);
    discard_body(s);
}

/* A small status page for requests addressed to gretel itself, until the control page
 * (bought list, set-up, metrics) takes this place. */
static gt_slice header_value(const gt_http1_request *req, const char *name)
{
    for (size_t i = 0; i < req->num_headers; i++)
        if (gt_slice_caseeq(req->headers[i].name, gt_slice_cstr(name)))
            return req->headers[i].value;
    return GT_S("");
}

/* gretel's own pages (src/control). target: the path and query; host: the Host the client
 * used. Called before the head is drained (the slices point into the input); a POST's body
 * is in s->body_view (read ahead by process_heads) and discarded afterwards like any
 * locally answered request's. */
static void respond_self(gt_session *s, const gt_http1_request *req, gt_slice target,
                         gt_slice host, size_t head_len)
{
    /* the pages print the host the client used (PAC URLs): only a host[:port] */
    gt_http1_uri hu;
    gt_http1_error herr;
    if (gt_http1_parse_host_field(host, 80, &hu, &herr) < 0) {
        evbuffer_drain(gt_stream_input(s->cs), head_len);
        s->body_view = GT_S("");
        respond_local(s, 400, "invalid Host field", true, "error");
        return;
    }
    const char *q = memchr(target.p, '?', target.len);
    gt_ctl_request rq = {
        .method = req->method,
        .path = q ? gt_slice_make(target.p, (size_t)(q - target.p)) : target,
        .query = q ? gt_slice_make(q + 1, (size_t)(target.p + target.len - q - 1)) : GT_S(""),
        .host = host,
        .origin = header_value(req, "origin"),
        .referer = header_value(req, "referer"),
        .content_type = header_value(req, "content-type"),
        .authorization = header_value(req, "authorization"),
        .csrf_header = header_value(req, "x-csrf-token"),
        .accept = header_value(req, "accept"),
        .body = s->body_view,
        .local = s->local,
    };
    if (!rq.path.len)
        rq.path = GT_S("/");
    gt_ctl_response resp = {.body = evbuffer_new()};
    gt_control_handle(s->w->sh->control, s->w->sh, s->snap, &rq, &resp);
    evbuffer_drain(gt_stream_input(s->cs), head_len);
    s->body_view = GT_S("");
    struct evbuffer *out = gt_stream_output(s->cs);
    size_t before = evbuffer_get_length(out);
    bool close = (s->rq.framing != GT_BODY_NONE && !body_discardable(s)) || !s->keepalive ||
                 s->draining;
    if (close)
        s->close_after = true;
    size_t n = evbuffer_get_length(resp.body);
    const char *body = (const char *)evbuffer_pullup(resp.body, -1);
    gt_proxy_local_response(out, resp.status, resp.content_type, body ? body : "", n, s->is_head,
                            close, resp.headers);
    evbuffer_free(resp.body);
    s->bytes_out += evbuffer_get_length(out) - before;
    gt_stream_flush(s->cs);
    s->status = resp.status;
    s->decision = "local";
    finish_local(s);
}

/* Answers a request a rule blocked or redirected with the rule's local resource, keeping
 * the connection: the blocked request's body is read and dropped (finish_local). */
/* Answers a request a rule blocked or redirected with the rule's local resource, keeping
 * the connection: the blocked request's body is read and dropped (finish_local). A blocked
 * CONNECT (tunnel) gets a 403 and the connection closes: nothing can be said inside. */
static void respond_blocked(gt_session *s, const gt_decision *d, bool tunnel)
{
    const gt_resource *res = tunnel ? gt_rules_resource(GT_RESP_403, GT_TYPE_OTHER)
                                    : gt_rules_resource(d->resp, s->type);
    const char *action = tunnel ? "block" : gt_decide_action_name(d->action);
    char xg[400];
    snprintf(xg, sizeof(xg), "%s; rule=%s:%u%s", action, gt_decision_file(d),
             gt_decision_line(d), d->bought ? "; bought" : "");
    struct evbuffer *out = gt_stream_output(s->cs);
    size_t before = evbuffer_get_length(out);
    bool close = tunnel || (s->rq.framing != GT_BODY_NONE && !body_discardable(s)) ||
                 !s->keepalive || s->draining;
    if (close)
        s->close_after = true;
    gt_proxy_block_response(out, res, xg, s->is_head, close);
    gt_control_note_block(s->w->sh->control, gt_slice_cstr(s->host));
    s->bytes_out += evbuffer_get_length(out) - before;
    gt_stream_flush(s->cs);
    s->status = res->status;
    s->decision = action;
    s->rule = d->rule;
    s->list_file = d->list_file;
    s->list_line = d->list_line;
    atomic_fetch_add_explicit(&s->w->sh->counters.local_responses, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->w->sh->counters.blocked, 1, memory_order_relaxed);
    finish_local(s);
}

/* Runs the rules on a parsed request (src/proxy/decide.c) and keeps what the log needs. */
static void decide(gt_session *s, const gt_http1_request *req, const gt_http1_uri *uri,
                   gt_decision *d)
{
    gt_proxy_decide(s->w, s->snap, req, gt_slice_cstr(s->host), uri, s->body_view, s->id, d,
                    &s->type);
    s->rule = d->rule;
    s->list_file = d->list_file;
    s->list_line = d->list_line;
    if (d->action != GT_DECIDE_PASS)
        s->decision = gt_decide_action_name(d->action);
}

/* --- upstream failures --- */

/* Answers the current request with an error, or, when part of the response is already
 * with the client, ends the session (returns false). */
static GT_MUST_CHECK bool upstream_failed(gt_session *s, int status, const char *why)
{
    gt_counters_upstream_error(&s->w->sh->counters, status, why);
    if (status == GT_STATUS_CERT_FAILED)
        status = 502;
    if (s->up) {
        gt_upstream_free(s->up);
        s->up = NULL;
    }
    if (s->rs_started) {
        /* Part of the response is already with the client: the only honest signal left is
         * to close the connection so the client sees a truncated message. */
        gt_log(GT_LOG_WARN, "conn=%u client=%s host=%s error=\"%s\" after %llu bytes: closing",
               s->id, s->client, s->host, why, (unsigned long long)s->bytes_out);
        s->status = s->status ? s->status : status;
        s->decision = "error";
        log_request(s);
        session_destroy(s);
        return false;
    }
    s->st = S_HEAD; /* respond_local continues from a request-level state */
    respond_local(s, status, why, !s->rq_done, "error");
    return true;
}

/* Opens a new connection for the current request: to host:port, or inside interception
 * to the intercepted origin over verified TLS. */
static void connect_origin(gt_session *s, gt_connect_cb cb)
{
    if (s->mitm)
        gt_upstream_connect_tls(s->w, cfg_of(s), gt_slice_cstr(s->mitm_host), s->mitm_port,
                                s->sni, false, deny_loopback(s), cb, s, &s->connect);
    else
        gt_upstream_connect(s->w, cfg_of(s), gt_slice_cstr(s->host), s->port, false,
                            deny_loopback(s), cb, s, &s->connect);
}

/* --- forwarding: request body --- */

static GT_MUST_CHECK bool pump_request(gt_session *s)
{
    if (s->oreq) {
        gt_h2o_resume_body(s->oreq); /* the origin's session pulls the body (o_body) */
        return true;
    }
    if (s->rq_done || !s->up)
        return true;
    struct evbuffer *in = gt_stream_input(s->cs);
    struct evbuffer *out = gt_stream_output(s->up->st);
    for (;;) {
        uint64_t moved = 0;
        gt_http1_error err;
        if (gt_body_relay_move(&s->rq_body, in, out, IO_HWM, &moved, &err) < 0) {
            s->close_after = true;
            return upstream_failed(s, 400, err.reason);
        }
        if (moved)
            s->rq_sent_any = true;
        if (s->rq_body.done || evbuffer_get_length(out) < IO_HWM)
            break;
        gt_stream_flush(s->up->st);
        if (evbuffer_get_length(out) < IO_HWM / 2)
            continue; /* the socket took it */
        /* back-pressure: the origin is slower than the client; the upstream's write event
         * (registered, since its socket is full) resumes us below its low mark */
        gt_stream_disable_read(s->cs);
        gt_stream_set_write_lowat(s->up->st, IO_HWM / 2);
        break;
    }
    s->rq_done = s->rq_body.done;
    gt_stream_flush(s->up->st);
    gt_stream_resume_read(s->cs);
    if (!s->rq_done && s->client_eof && evbuffer_get_length(in) == 0 && !s->abort_pending) {
        /* The rest of the body will never come. Destroyed from the loop: our callers still
         * hold the session. */
        s->abort_pending = true;
        struct timeval zero = {0, 0};
        evtimer_add(s->timer, &zero);
        return true;
    }
    if (s->rq_done) {
        unsigned t = cfg_of(s)->upstream_timeout_ms;
        gt_stream_set_timeouts(s->up->st, t, t);
        /* the client is now only read for EOF and pipelined heads, left in its buffer */
        gt_stream_set_timeouts(s->cs, 0, t);
    }
    return true;
}

/* --- forwarding: response --- */

/* The client's connection and the origin's become a tunnel (net/tunnel.c) that takes over
 * the client's connection slot; the session ends. */
static void hand_to_tunnel(gt_session *s, gt_upstream *up, const char *label, unsigned idle_ms,
                           uint64_t t0)
{
    gt_stream *cb = s->cs, *ob = up->st;
    up->st = NULL;
    gt_upstream_free(up);
    s->cs = NULL;
    evtimer_del(s->timer);
    /* undo the count session_destroy subtracts: the slot is the tunnel's now */
    atomic_fetch_add_explicit(&s->w->sh->counters.open_conns, 1, memory_order_relaxed);
    gt_tunnel_start(s->w, cb, ob, idle_ms, label, t0);
    gt_stream_flush(cb);
    session_destroy(s);
}

/* The origin accepted a WebSocket upgrade: its 101 goes to the client, and both
 * connections become a tunnel (net/tunnel.c), the session ends. Returns false (the
 * session is gone). */
static GT_MUST_CHECK bool websocket_switch(gt_session *s, const gt_http1_response *res,
                                           size_t head_len)
{
    struct evbuffer *out = gt_stream_output(s->cs);
    size_t before = evbuffer_get_length(out);
    gt_proxy_switching_head(out, res);
    s->bytes_out += evbuffer_get_length(out) - before;
    evbuffer_drain(gt_stream_input(s->up->st), head_len);
    s->status = 101;
    unsigned idle = cfg_of(s)->tunnel_idle_timeout_ms;
    char label[400];
    snprintf(label, sizeof(label), "conn=%u client=%s host=%s websocket", s->id, s->client,
             s->host);
    uint64_t t0 = s->t0;
    end_request(s); /* logged and counted as the 101 it is */
    gt_upstream *up = s->up;
    s->up = NULL;
    hand_to_tunnel(s, up, label, idle, t0);
    return false;
}

/* 1: the head is relayed; 0: not yet (or the request was answered with an error);
 * -1: the session is gone. */
static GT_MUST_CHECK int parse_response_head(gt_session *s)
{
    const gt_config *cfg = cfg_of(s);
    struct evbuffer *in = gt_stream_input(s->up->st);
    struct evbuffer *out = gt_stream_output(s->cs);
    gt_http1_header *hdrs = s->w->resp_fields; /* GT_MAX_FIELDS_CAP, this call only */
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        size_t n = len < cfg->max_header_size ? len : cfg->max_header_size;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        gt_http1_response res = {.headers = hdrs, .num_headers = cfg->max_headers};
        gt_http1_error err;
        int r = gt_http1_parse_response(buf, n, &res, &err);
        if (r == GT_HTTP1_INCOMPLETE) {
            if (len >= cfg->max_header_size)
                return upstream_failed(s, 502, "response header block from upstream too large")
                           ? 0
                           : -1;
            return 0;
        }
        if (r < 0) {
            char why[160];
            snprintf(why, sizeof(why), "invalid response from upstream: %s", err.reason);
            return upstream_failed(s, 502, why) ? 0 : -1;
        }
        if (res.status == 101) {
            if (s->websocket && s->rq_done)
                return websocket_switch(s, &res, (size_t)r) ? 0 : -1;
            return upstream_failed(s, 502, "upstream switched protocols without being asked")
                       ? 0
                       : -1;
        }
        if (res.status < 200) {
            /* Interim responses: 100 only if the client asked for it, others (103) to
             * HTTP/1.1 clients; HTTP/1.0 clients cannot receive them (RFC 9110 §15.2). */
            gt_http1_body none = {.framing = GT_BODY_NONE};
            if (!s->client_10 && (res.status != 100 || s->rq.expect_continue))
                gt_proxy_response_head(out, &res, &none, false, false, false, s->mitm);
            evbuffer_drain(in, (size_t)r);
            continue;
        }
        if (gt_http1_response_body(&res, s->is_head, &s->rs, &err) < 0)
            return upstream_failed(s, 502, err.reason) ? 0 : -1;
        s->rs_minor = res.minor_version;
        s->status = res.status;
        s->dechunk = s->rs.framing == GT_BODY_CHUNKED && s->client_10;
        /* Responses delimited by close cannot be delimited for the client either (short of
         * re-chunking), so the client connection closes with them. */
        bool close = s->close_after || !s->keepalive || s->draining ||
                     s->rs.framing == GT_BODY_EOF || s->dechunk;
        if (close)
            s->close_after = true;
        size_t before = evbuffer_get_length(out);
        gt_proxy_response_head(out, &res, &s->rs, close, s->client_10, s->dechunk, s->mitm);
        s->bytes_out += evbuffer_get_length(out) - before;
        /* the head's fields point into the input: read before it is drained */
        if (s->sniff_url && res.status == 200 && !s->is_head)
            s->sniff = gt_proxy_sniff_start(res.headers, res.num_headers,
                                            s->rs.framing == GT_BODY_CHUNKED && !s->dechunk);
        evbuffer_drain(in, (size_t)r);
        s->rs_head_done = s->rs_started = true;
        gt_body_relay_init(&s->rs_body, &s->rs, s->dechunk);
        s->up_reusable = !s->rs.conn_close && !(s->rs_minor == 0 && !s->rs.conn_keep_alive) &&
                         s->rs.framing != GT_BODY_EOF && !s->rs.had_cl_and_te;
        return 1;
    }
}

static void response_done(gt_session *s)
{
    s->rs_done = true;
    gt_upstream *up = s->up;
    s->up = NULL;
    bool reusable = s->up_reusable && s->rq_done &&
                    evbuffer_get_length(gt_stream_input(up->st)) == 0 &&
                    evbuffer_get_length(gt_stream_output(up->st)) == 0;
    gt_stream_flush(s->cs);
    if (reusable) {
        gt_stream_setcb(up->st, NULL, NULL, NULL, NULL);
        gt_pool_put(s->w, up, cfg_of(s));
    } else {
        gt_upstream_free(up);
    }
    next_or_close(s);
}

/* Moves response body bytes to the client; false when the session is gone. */
static GT_MUST_CHECK bool relay_response(gt_session *s)
{
    struct evbuffer *in = gt_stream_input(s->up->st);
    struct evbuffer *out = gt_stream_output(s->cs);
    for (;;) {
        gt_http1_error err;
        size_t from = evbuffer_get_length(out);
        if (gt_body_relay_move(&s->rs_body, in, out, IO_HWM, &s->bytes_out, &err) < 0)
            return upstream_failed(s, 502, err.reason);
        gt_proxy_sniff_tail(s->sniff, out, from);
        if (s->rs_body.done) {
            sniff_done(s, true);
            response_done(s);
            return true;
        }
        if (evbuffer_get_length(out) < IO_HWM)
            break;
        gt_stream_flush(s->cs);
        if (evbuffer_get_length(out) < IO_HWM / 2)
            continue; /* the socket took it */
        /* back-pressure: the client is slower than the origin; the client's write event
         * (registered, the socket is full) resumes us below its low mark */
        gt_stream_disable_read(s->up->st);
        break;
    }
    gt_stream_flush(s->cs);
    gt_stream_resume_read(s->up->st);
    return true;
}

static void on_up_read(gt_stream *st, void *arg)
{
    (void)st;
    gt_session *s = arg;
    s->up_got_bytes = true;
    if (!s->rs_head_done) {
        int r = parse_response_head(s);
        if (r < 0)
            return;
        if (r == 0) {
            if (s->up)
                gt_stream_flush(s->cs); /* interim responses */
            return;
        }
    }
    if (!relay_response(s))
        return;
}

static void on_up_write(gt_stream *st, void *arg)
{
    gt_session *s = arg;
    if (s->st == S_FORWARD && !s->rq_done && !gt_stream_reading(s->cs)) {
        gt_stream_set_write_lowat(st, 0);
        gt_stream_enable_read(s->cs);
        if (!pump_request(s))
            return;
    }
}

static void on_retry_connected(void *arg, gt_upstream *up, int status, const char *why);

static void on_up_event(gt_stream *st, int what, void *arg)
{
    gt_session *s = arg;
    int sockerr = gt_stream_error(st);
    if ((what & GT_STREAM_EOF) && s->rs_head_done && s->rs.framing == GT_BODY_EOF) {
        if (!relay_response(s))
            return;
        if (s->up) {
            s->up_reusable = false;
            response_done(s);
        }
        return;
    }
    /* A pooled connection the origin closed just as we reused it: safe to retry once on a
     * fresh connection when nothing came back and no request body was sent. */
    if (!s->up_got_bytes && s->up && s->up->reused && !s->retried && !s->rq_sent_any &&
        s->rq.framing == GT_BODY_NONE && (what & (GT_STREAM_EOF | GT_STREAM_ERROR))) {
        gt_log(GT_LOG_INFO, "conn=%u host=%s: pooled upstream %s was closed; retrying on a new "
                            "connection", s->id, s->host, s->up->peer);
        gt_upstream_free(s->up);
        s->up = NULL;
        s->retried = true;
        s->st = S_CONNECTING;
        connect_origin(s, on_retry_connected);
        return;
    }
    char why[160];
    if (what & GT_STREAM_TIMEOUT)
        snprintf(why, sizeof(why), "upstream %s %s for %ums", s->up ? s->up->peer : "",
                 (what & GT_STREAM_WRITING) ? "took no request bytes" : "sent nothing",
                 cfg_of(s)->upstream_timeout_ms);
    else if (what & GT_STREAM_EOF)
        snprintf(why, sizeof(why), "upstream %s closed the connection %s",
                 s->up ? s->up->peer : "", s->rs_head_done ? "mid-response" : "before responding");
    else
        snprintf(why, sizeof(why), "upstream %s connection failed: %s", s->up ? s->up->peer : "",
                 strerror(sockerr ? sockerr : ECONNRESET));
    if (!upstream_failed(s, (what & GT_STREAM_TIMEOUT) ? 504 : 502, why))
        return;
}

/* Sends the request head and starts the body; false when the session is gone. */
static GT_MUST_CHECK bool start_forward(gt_session *s, gt_upstream *up)
{
    s->up = up;
    s->st = S_FORWARD;
    gt_stream_setcb(up->st, on_up_read, on_up_write, on_up_event, s);
    gt_stream_set_read_hwm(up->st, IO_HWM);
    gt_stream_set_write_lowat(up->st, 0);
    struct evbuffer *out = gt_stream_output(up->st);
    /* Keep a copy of the head while a retry is still possible; otherwise hand it over. */
    if (up->reused && !s->retried && s->rq.framing == GT_BODY_NONE)
        evbuffer_add(out, evbuffer_pullup(s->head, -1), evbuffer_get_length(s->head));
    else
        evbuffer_add_buffer(out, s->head);
    unsigned t = cfg_of(s)->upstream_timeout_ms;
    gt_stream_set_timeouts(up->st, 0, t);
    gt_stream_set_timeouts(s->cs, t, t);
    gt_stream_enable_read(up->st);
    gt_stream_enable_read(s->cs);
    if (!pump_request(s))
        return false;
    if (s->up && s->rq.framing == GT_BODY_NONE)
        gt_stream_flush(s->up->st);
    return true;
}

static void on_connected(void *arg, gt_upstream *up, int status, const char *why)
{
    gt_session *s = arg;
    s->connect = NULL;
    if (!up) {
        if (!upstream_failed(s, status, why))
            return;
        return;
    }
    atomic_fetch_add_explicit(&s->w->sh->counters.connects, 1, memory_order_relaxed);
    if (!start_forward(s, up))
        return;
}

static void on_retry_connected(void *arg, gt_upstream *up, int status, const char *why)
{
    on_connected(arg, up, status, why);
}

/* --- forwarding over the origin's shared HTTP/2 session (h1 client, h2 origin) --- */

static void o_finish(gt_session *s)
{
    if (s->o_done)
        return;
    s->o_done = true;
    struct evbuffer *out = gt_stream_output(s->cs);
    size_t before = evbuffer_get_length(out);
    if (s->o_chunked) {
        evbuffer_add(out, "0\r\n", 3);
        if (s->o_trailers)
            evbuffer_add_buffer(out, s->o_trailers);
        evbuffer_add(out, "\r\n", 2);
    }
    s->bytes_out += evbuffer_get_length(out) - before;
    gt_stream_flush(s->cs);
}

/* The request and the response are both complete: the next request, or the close. */
static void o_maybe_next(gt_session *s)
{
    if (!s->o_done || (!s->rq_done && s->oreq))
        return; /* the origin's session is still pulling the request body */
    if (!s->rq_done)
        s->close_after = true; /* answered before the body was all sent: it is not read */
    if (s->oreq) {
        /* the stream may still be open at the origin's end; nothing more is wanted */
        gt_h2o_req *r = s->oreq;
        s->oreq = NULL;
        gt_h2o_cancel(r);
    }
    s->rs_done = true;
    next_or_close(s);
}

/* An HTTP/2 origin's head as HTTP/1.1: the status line and the fields, no blank line. */
static void add_status_and_fields(struct evbuffer *out, int status, const nghttp2_nv *nv,
                                  size_t n)
{
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, gt_http_reason(status));
    for (size_t i = 0; i < n; i++) {
        evbuffer_add(out, nv[i].name, nv[i].namelen);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, nv[i].value, nv[i].valuelen);
        evbuffer_add(out, "\r\n", 2);
    }
}

static void o_head(void *arg, int status, const nghttp2_nv *nv, size_t n, bool end)
{
    gt_session *s = arg;
    struct evbuffer *out = gt_stream_output(s->cs);
    size_t before = evbuffer_get_length(out);
    bool has_cl = false;
    for (size_t i = 0; i < n; i++)
        if (nv[i].namelen == 14 && memcmp(nv[i].name, "content-length", 14) == 0)
            has_cl = true;
    bool bodyless = end || s->is_head || status == 204 || status == 304;
    /* an HTTP/1.0 client cannot take chunks: its response ends with the connection */
    s->o_chunked = !bodyless && !has_cl && !s->client_10;
    if (!bodyless && !has_cl && s->client_10)
        s->close_after = true;
    bool close = s->close_after || !s->keepalive || s->draining;
    if (close)
        s->close_after = true;
    add_status_and_fields(out, status, nv, n);
    if (s->o_chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    else if (end && !has_cl && !s->is_head && status != 204 && status != 304)
        evbuffer_add(out, "Content-Length: 0\r\n", 19);
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (s->client_10)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    evbuffer_add(out, "\r\n", 2);
    s->bytes_out += evbuffer_get_length(out) - before;
    s->status = status;
    s->rs_head_done = s->rs_started = true;
    if (s->sniff_url && status == 200 && !bodyless) {
        gt_slice ct = GT_S(""), ce = GT_S("");
        for (size_t i = 0; i < n; i++) {
            gt_slice name = gt_slice_make((const char *)nv[i].name, nv[i].namelen);
            gt_slice value = gt_slice_make((const char *)nv[i].value, nv[i].valuelen);
            if (gt_slice_eq(name, GT_S("content-type")))
                ct = value;
            else if (gt_slice_eq(name, GT_S("content-encoding")))
                ce = value;
        }
        s->sniff = gt_sniff_new(ct, ce, false);
    }
    gt_stream_flush(s->cs);
    if (end) {
        o_finish(s);
        o_maybe_next(s);
    }
}

static void o_data(void *arg, const uint8_t *p, size_t n)
{
    gt_session *s = arg;
    struct evbuffer *out = gt_stream_output(s->cs);
    if (s->o_chunked)
        evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add(out, p, n);
    if (s->o_chunked)
        evbuffer_add(out, "\r\n", 2);
    s->bytes_out += n;
    gt_sniff_feed(s->sniff, p, n);
    gt_stream_flush(s->cs);
    /* the origin may send more once the client's socket took this */
    if (evbuffer_get_length(out) <= IO_HWM / 2)
        gt_h2o_consumed(s->oreq, n);
    else
        s->o_unacked += n;
}

static void o_trailers(void *arg, const nghttp2_nv *nv, size_t n)
{
    gt_session *s = arg;
    if (!s->o_chunked)
        return; /* only chunked HTTP/1.1 can carry them */
    if (!s->o_trailers)
        s->o_trailers = evbuffer_new();
    for (size_t i = 0; i < n; i++) {
        evbuffer_add(s->o_trailers, nv[i].name, nv[i].namelen);
        evbuffer_add(s->o_trailers, ": ", 2);
        evbuffer_add(s->o_trailers, nv[i].value, nv[i].valuelen);
        evbuffer_add(s->o_trailers, "\r\n", 2);
    }
}

static void o_end(void *arg)
{
    gt_session *s = arg;
    sniff_done(s, true);
    o_finish(s);
    o_maybe_next(s);
}

static void o_closed(void *arg)
{
    gt_session *s = arg;
    s->oreq = NULL;
    o_finish(s);
    o_maybe_next(s);
}

static void o_fail(void *arg, int status, const char *why)
{
    gt_session *s = arg;
    s->oreq = NULL;
    if (s->o_done) {
        o_maybe_next(s);
        return;
    }
    if (!upstream_failed(s, status, why))
        return;
}

static void o_fallback(void *arg)
{
    gt_session *s = arg;
    s->oreq = NULL;
    gt_body_relay_init(&s->rq_body, &s->rq, false); /* nothing of the body was read yet */
    s->st = S_CONNECTING;
    gt_stream_disable_read(s->cs);
    connect_origin(s, on_connected);
}

static ssize_t o_body(void *arg, uint8_t *buf, size_t len, bool *eof)
{
    gt_session *s = arg;
    /* s->head (drained when the request went out) stages decoded body bytes: the relay may
     * move more than asked, and what it moved it has counted */
    struct evbuffer *in = gt_stream_input(s->cs);
    if (evbuffer_get_length(s->head) < len && !s->rq_body.done) {
        uint64_t moved = 0;
        gt_http1_error err;
        if (gt_body_relay_move(&s->rq_body, in, s->head, len, &moved, &err) < 0) {
            s->close_after = true; /* bad chunked framing: the origin gets a cut body */
            *eof = true;
            s->rq_done = true;
            return 0;
        }
    }
    int n = evbuffer_remove(s->head, buf, len);
    if (n < 0)
        n = 0;
    if (s->rq_body.done && evbuffer_get_length(s->head) == 0) {
        *eof = true;
        s->rq_done = true;
    }
    gt_stream_resume_read(s->cs);
    return n;
}

/* An interim response from the HTTP/2 origin: as parse_response_head relays them from an
 * HTTP/1.1 one (100 only when asked for, none to HTTP/1.0 clients, RFC 9110 §15.2). */
static void o_interim(void *arg, int status, const nghttp2_nv *nv, size_t n)
{
    gt_session *s = arg;
    if (s->client_10 || status == 101 || (status == 100 && !s->rq.expect_continue))
        return;
    struct evbuffer *out = gt_stream_output(s->cs);
    add_status_and_fields(out, status, nv, n);
    evbuffer_add(out, "\r\n", 2);
    gt_stream_flush(s->cs);
}

static const gt_h2o_cbs o_cbs = {o_head, o_data, o_trailers, o_end, o_closed, o_fail, o_fallback,
                                 o_body, o_interim};

/* An HTTP/1.1 request inside interception, over the origin's HTTP/2 session (one is up
 * already, verified). The head gretel built is read back into HTTP/2 fields. */
static bool forward_h2o(gt_session *s, const char *key)
{
    size_t len = evbuffer_get_length(s->head);
    const char *buf = (const char *)evbuffer_pullup(s->head, (ev_ssize_t)len);
    /* the fields and their lower-cased names: on the heap (nghttp2 copies them on submit) */
    enum { NV_MAX = 260, LOWER_MAX = 16384 };
    nghttp2_nv *nv = gt_xmalloc(NV_MAX * sizeof(*nv) + LOWER_MAX);
    char *lower = (char *)(nv + NV_MAX);
    size_t n = gt_proxy_h2_request_fields(buf, len, nv, NV_MAX, lower, LOWER_MAX);
    if (n == 0) {
        free(nv);
        return false;
    }
    bool body = s->rq.framing != GT_BODY_NONE;
    /* the body reaches the origin as DATA payload: chunk framing is taken off */
    gt_body_relay_init(&s->rq_body, &s->rq, true);
    s->oreq = gt_h2o_submit(s->w, key, gt_slice_cstr(s->mitm_host), s->mitm_port, s->sni,
                            deny_loopback(s), nv, n, body, &o_cbs, s);
    free(nv);
    if (!s->oreq) {
        gt_body_relay_init(&s->rq_body, &s->rq, false);
        return false;
    }
    evbuffer_drain(s->head, len);
    s->rq_done = !body;
    s->o_done = false;
    s->st = S_FORWARD;
    unsigned t = cfg_of(s)->upstream_timeout_ms;
    gt_stream_set_timeouts(s->cs, t, t);
    gt_stream_enable_read(s->cs);
    return true;
}

/* --- CONNECT --- */

static void on_tunnel_connected(void *arg, gt_upstream *up, int status, const char *why)
{
    gt_session *s = arg;
    s->connect = NULL;
    if (!up && s->raw_after_200) {
        /* the client already has its 200: closing is all that can be said */
        gt_log(GT_LOG_INFO, "conn=%u client=%s host=%s: %s, closing", s->id, s->client,
               s->host, why);
        session_destroy(s);
        return;
    }
    if (!up) {
        gt_counters_upstream_error(&s->w->sh->counters, status, why);
        s->st = S_HEAD;
        respond_local(s, status, why, true, "error");
        return;
    }
    if (!s->raw_after_200) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        evbuffer_add(gt_stream_output(s->cs), ok, sizeof(ok) - 1);
        s->status = 200;
        s->bytes_out = sizeof(ok) - 1;
        s->decision = "tunnel";
        log_request(s);
    }
    char label[400];
    snprintf(label, sizeof(label), "conn=%u client=%s host=%s:%u", s->id, s->client, s->host,
             s->port);
    hand_to_tunnel(s, up, label, cfg_of(s)->tunnel_idle_timeout_ms, s->t0);
}

/* --- TLS interception ---
 * CONNECT (allowed by the rules) -> 200 -> the ClientHello names the host (SNI) -> the
 * origin is connected and verified first -> a leaf for that name is minted (or cached) ->
 * our handshake with the client -> requests go through the same pipeline as plain HTTP.
 * Verifying the origin before answering the client means a bad origin certificate is
 * never papered over with a trusted one: the client gets an untrusted certificate (its
 * browser warns) and, past the warning, a 502 page saying what was wrong. */

/* Hosts never intercepted (pinned apps, banks): mitm_bypass globs, case-insensitive. */
static bool bypassed(const gt_config *cfg, const char *host)
{
    for (size_t i = 0; i < cfg->mitm_bypass.n; i++)
        if (fnmatch(cfg->mitm_bypass.v[i], host, FNM_CASEFOLD) == 0)
            return true;
    return false;
}

static void start_raw_tunnel(gt_session *s)
{
    s->raw_after_200 = true;
    s->st = S_CONNECTING;
    evtimer_del(s->timer);
    gt_stream_disable_read(s->cs); /* what was read stays buffered for the tunnel */
    snprintf(s->host, sizeof(s->host), "%s", s->mitm_host);
    s->port = s->mitm_port;
    s->snap = gt_snapshot_ref(s->w->snap);
    s->t0 = gt_now_ms();
    gt_upstream_connect(s->w, cfg_of(s), gt_slice_cstr(s->mitm_host), s->mitm_port, true,
                        deny_loopback(s), on_tunnel_connected, s, &s->connect);
}

static GT_MUST_CHECK bool client_handshake(gt_session *s, SSL *ssl)
{
    if (!ssl || gt_stream_start_tls(s->cs, ssl, true) < 0) {
        gt_log(GT_LOG_WARN, "conn=%u host=%s: cannot set up TLS towards the client", s->id,
               s->sni);
        session_destroy(s);
        return false;
    }
    s->st = S_TLS_HANDSHAKE;
    const gt_config *cfg = s->w->snap->cfg;
    gt_stream_set_timeouts(s->cs, cfg->header_timeout_ms, cfg->upstream_timeout_ms);
    gt_stream_enable_read(s->cs);
    arm_head_deadline(s);
    return true;
}

static GT_MUST_CHECK bool mitm_present_leaf(gt_session *s);

/* The origin is there (up) or failed (status, why): answer the client's handshake. */
static void on_mitm_upstream(void *arg, gt_upstream *up, int status, const char *why)
{
    gt_session *s = arg;
    s->connect = NULL;
    gt_tls *tls = s->w->sh->tls;
    if (!up) {
        gt_counters_upstream_error(&s->w->sh->counters, status, why);
        s->tls_err_status = status;
        snprintf(s->tls_err, sizeof(s->tls_err), "%s", why);
        gt_log(GT_LOG_WARN, "conn=%u client=%s host=%s: %s", s->id, s->client, s->sni, why);
        if (status == GT_STATUS_CERT_FAILED) {
            atomic_fetch_add_explicit(&s->w->sh->counters.tls_origin_rejected, 1,
                                      memory_order_relaxed);
            if (!client_handshake(s, gt_tls_untrusted_ssl(tls, s->sni, why)))
                return;
            return;
        }
    } else if (up->h2) {
        /* Verified, and h2: it becomes the origin's shared HTTP/2 session */
        char key[540];
        gt_upstream_key_tls(gt_slice_cstr(s->mitm_host), s->mitm_port, s->sni, key, sizeof(key));
        gt_h2o_adopt(s->w, key, up, gt_slice_cstr(s->mitm_host), s->mitm_port, s->sni,
                     deny_loopback(s));
    } else {
        /* Verified: the first request inside takes it from the pool. */
        if (s->w->snap->cfg->http2) {
            char key[540];
            gt_upstream_key_tls(gt_slice_cstr(s->mitm_host), s->mitm_port, s->sni, key,
                                sizeof(key));
            gt_h2o_mark_h1(s->w, key);
        }
        gt_pool_put(s->w, up, s->w->snap->cfg);
    }
    if (!mitm_present_leaf(s))
        return;
}

/* Our handshake with the client on the leaf for its SNI (from the cache, or minted now). */
static GT_MUST_CHECK bool mitm_present_leaf(gt_session *s)
{
    gt_tls *tls = s->w->sh->tls;
    char err[160];
    bool minted = false;
    X509 *leaf = gt_certs_get(tls->certs, s->sni, &minted, err, sizeof(err));
    if (!leaf) {
        gt_log(GT_LOG_WARN, "conn=%u host=%s: %s", s->id, s->sni, err);
        session_destroy(s);
        return false;
    }
    if (minted)
        atomic_fetch_add_explicit(&s->w->sh->counters.certs_minted, 1, memory_order_relaxed);
    SSL *ssl = gt_tls_server_ssl(tls, leaf);
    X509_free(leaf);
    /* h2 only towards a reachable, verified origin: error pages are plain HTTP/1.1 */
    if (ssl && s->w->snap->cfg->http2 && !s->tls_err_status)
        gt_tls_allow_h2(ssl);
    return client_handshake(s, ssl);
}

static GT_MUST_CHECK bool mitm_connect_origin(gt_session *s)
{
    const gt_config *cfg = s->w->snap->cfg;
    char key[540];
    gt_upstream_key_tls(gt_slice_cstr(s->mitm_host), s->mitm_port, s->sni, key, sizeof(key));
    gt_upstream *up = gt_pool_take(s->w, key);
    if (up && up->guarded_loopback && deny_loopback(s)) {
        gt_pool_put(s->w, up, cfg);
        up = NULL;
    }
    if (up || (cfg->http2 && gt_h2o_ready(s->w, key, deny_loopback(s)))) {
        /* already verified for this name: no second handshake with the origin */
        if (up)
            gt_pool_put(s->w, up, cfg);
        return mitm_present_leaf(s);
    }
    s->st = S_TLS_UPSTREAM;
    evtimer_del(s->timer);
    gt_stream_disable_read(s->cs);
    gt_upstream_connect_tls(s->w, cfg, gt_slice_cstr(s->mitm_host), s->mitm_port, s->sni,
                            cfg->http2, deny_loopback(s), on_mitm_upstream, s, &s->connect);
    return true;
}

/* Reads the ClientHello the client sent after our 200; false when the session ended (a
 * malformed or truncated hello, or the TLS set-up failed). */
static GT_MUST_CHECK bool tls_hello(gt_session *s)
{
    struct evbuffer *in = gt_stream_input(s->cs);
    size_t len = evbuffer_get_length(in);
    size_t n = len < 40000 ? len : 40000;
    const uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)n);
    gt_client_hello h;
    int rc = gt_tls_parse_client_hello(buf, n, &h);
    if (rc == GT_HELLO_INCOMPLETE) {
        if (n >= 40000 || s->client_eof) {
            session_destroy(s);
            return false;
        }
        return true;
    }
    if (rc == GT_HELLO_BAD) {
        gt_log(GT_LOG_INFO, "conn=%u client=%s host=%s: malformed TLS ClientHello, closing",
               s->id, s->client, s->mitm_host);
        session_destroy(s);
        return false;
    }
    if (rc == GT_HELLO_NOT_TLS) {
        start_raw_tunnel(s); /* another protocol on 443 (or a port in connect_ports) */
        return true;
    }
    /* the SNI becomes the rule host and part of every URL inside: a host name only */
    if (h.has_sni && !gt_http1_host_valid(gt_slice_cstr(h.sni), false)) {
        gt_log(GT_LOG_INFO, "conn=%u client=%s host=%s: TLS SNI is not a host name, closing",
               s->id, s->client, s->mitm_host);
        session_destroy(s);
        return false;
    }
    snprintf(s->sni, sizeof(s->sni), "%s", h.has_sni ? h.sni : s->mitm_host);
    if (bypassed(s->w->snap->cfg, s->sni)) {
        start_raw_tunnel(s);
        return true;
    }
    return mitm_connect_origin(s);
}

/* Answers CONNECT with 200 and waits for the ClientHello; false when the session ended
 * on a hello that came with the CONNECT. */
static GT_MUST_CHECK bool start_intercept(gt_session *s)
{
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    evbuffer_add(gt_stream_output(s->cs), ok, sizeof(ok) - 1);
    gt_stream_flush(s->cs);
    snprintf(s->mitm_host, sizeof(s->mitm_host), "%.255s", s->host);
    s->mitm_port = s->port;
    s->status = 200;
    s->bytes_out = sizeof(ok) - 1;
    s->decision = "intercept";
    s->rq_done = true;
    end_request(s);
    s->nreq++;
    s->st = S_TLS_HELLO;
    arm_head_deadline(s);
    gt_stream_enable_read(s->cs);
    if (evbuffer_get_length(gt_stream_input(s->cs)))
        return tls_hello(s);
    return true;
}

/* The handshake with the client is done: HTTP inside. False when the session is gone
 * (HTTP/2 took the connection over, or the first request ended it). */
static GT_MUST_CHECK bool mitm_ready(gt_session *s)
{
    s->mitm = true;
    atomic_fetch_add_explicit(&s->w->sh->counters.tls_handshakes, 1, memory_order_relaxed);
    if (gt_tls_is_h2(gt_stream_ssl(s->cs))) {
        /* HTTP/2: src/proxy/h2.c takes the connection and its slot */
        gt_h2_peer p;
        memset(&p, 0, sizeof(p));
        snprintf(p.client, sizeof(p.client), "%s", s->client);
        p.client_is_loopback = s->client_is_loopback;
        snprintf(p.sni, sizeof(p.sni), "%s", s->sni);
        snprintf(p.mitm_host, sizeof(p.mitm_host), "%s", s->mitm_host);
        p.mitm_port = s->mitm_port;
        p.id = s->id;
        gt_stream *cs = s->cs;
        s->cs = NULL;
        evtimer_del(s->timer);
        atomic_fetch_add_explicit(&s->w->sh->counters.open_conns, 1, memory_order_relaxed);
        gt_h2_start(s->w, cs, &p);
        session_destroy(s);
        return false;
    }
    s->st = S_HEAD;
    gt_stream_set_timeouts(s->cs, 0, 0);
    gt_stream_set_read_hwm(s->cs, read_hwm(s));
    gt_stream_set_write_lowat(s->cs, IO_HWM / 2);
    arm_idle(s);
    if (evbuffer_get_length(gt_stream_input(s->cs)))
        return process_heads(s);
    return true;
}

/* --- request heads --- */

/* True when host:port names gretel itself: its documented name, the address this client
 * reached it on, or one of its listen addresses. Such requests are never forwarded. */
static bool host_is_self(gt_session *s, gt_slice host, uint16_t port)
{
    if (gt_slice_caseeq(host, GT_S("gretel.proxy")))
        return true;
    char hp[300];
    bool v6 = memchr(host.p, ':', host.len) != NULL;
    snprintf(hp, sizeof(hp), "%s%.*s%s:%u", v6 ? "[" : "", (int)host.len, host.p, v6 ? "]" : "",
             port);
    if (strcasecmp(hp, s->local) == 0)
        return true;
    const gt_config *cfg = cfg_of(s);
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (strcasecmp(hp, cfg->listen[i].text) == 0)
            return true;
    return false;
}

/* Whether the request is for gretel's own pages (before the head is handled): an
 * origin-form target whose Host names gretel, or an http:// URL of gretel. */
static bool is_self_request(gt_session *s, const gt_http1_request *req)
{
    if (s->mitm || !req->target.len)
        return false;
    gt_http1_error err;
    gt_http1_uri u;
    if (req->target.p[0] == '/') {
        for (size_t i = 0; i < req->num_headers; i++)
            if (gt_slice_caseeq(req->headers[i].name, GT_S("host")))
                return gt_http1_parse_authority(req->headers[i].value, &u, &err) == 0
                           ? host_is_self(s, u.host, u.port)
                           : host_is_self(s, req->headers[i].value, 80);
        return false;
    }
    return gt_http1_parse_absolute(req->target, &u, &err) == 0 && !u.is_https &&
           host_is_self(s, u.host, u.port);
}

/* Whether this client's requests may reach servers on gretel's own machine. */
static bool deny_loopback(const gt_session *s)
{
    switch (cfg_of(s)->loopback_upstream) {
    case GT_LOOPBACK_ON:
        return false;
    case GT_LOOPBACK_OFF:
        return true;
    case GT_LOOPBACK_AUTO:
    default:
        return !s->client_is_loopback;
    }
}

/* One parsed request head: answered here, forwarded, or a CONNECT started. The slices of
 * `req` point into the client's input until the head is drained. False when the session
 * is gone. */
static GT_MUST_CHECK bool handle_request(gt_session *s, gt_http1_request *req, size_t head_len)
{
    struct evbuffer *in = gt_stream_input(s->cs);
    const gt_config *cfg = s->w->snap->cfg;
    gt_http1_error err;
    gt_http1_uri uri;
    s->snap = gt_snapshot_ref(s->w->snap);
    s->t0 = gt_now_ms();
    s->decision = "pass";
    s->rule = NULL;
    s->type = GT_TYPE_OTHER;
    atomic_fetch_add_explicit(&s->w->sh->counters.requests, 1, memory_order_relaxed);
    snprintf(s->method, sizeof(s->method), "%.*s", (int)req->method.len, req->method.p);
    s->is_head = gt_slice_eq(req->method, GT_S("HEAD"));
    s->is_connect = gt_slice_eq(req->method, GT_S("CONNECT"));
    s->client_10 = req->minor_version == 0;
    if (gt_log_enabled(GT_LOG_DEBUG))
        s->url = gt_xslicedup(req->target);

    int r = gt_http1_request_body(req, &s->rq, &err);
    s->keepalive = s->client_10 ? s->rq.conn_keep_alive : !s->rq.conn_close;
    if (r < 0) {
        s->rq.framing = GT_BODY_LENGTH; /* unknown framing: the connection must close */
        evbuffer_drain(in, head_len);
        respond_local(s, err.status, err.reason, true, "error");
        return true;
    }
    gt_body_relay_init(&s->rq_body, &s->rq, false);

    if (s->denied) {
        evbuffer_drain(in, head_len);
        atomic_fetch_add_explicit(&s->w->sh->counters.denied, 1, memory_order_relaxed);
        gt_log(GT_LOG_WARN, "denied client=%s: not in allow_clients", s->client);
        respond_local(s, 403, "client address not allowed (allow_clients)", true, "deny");
        return true;
    }
    if (s->over_limit) {
        evbuffer_drain(in, head_len);
        respond_local(s, 503, "too many connections (max_connections)", true, "error");
        return true;
    }
    /* RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host. */
    size_t nhost = 0;
    gt_slice host_hdr = {0};
    for (size_t i = 0; i < req->num_headers; i++)
        if (gt_slice_caseeq(req->headers[i].name, GT_S("host"))) {
            nhost++;
            host_hdr = req->headers[i].value;
        }
    if (nhost > 1 || (nhost == 0 && !s->client_10)) {
        evbuffer_drain(in, head_len);
        respond_local(s, 400, nhost ? "more than one Host field" : "missing Host field", true,
                      "error");
        return true;
    }

    /* Slices point into the client's input buffer: everything needed later is copied into
     * the session before the head is drained. */
    if (s->is_connect) {
        r = gt_http1_parse_authority(req->target, &uri, &err);
        if (r == 0) {
            snprintf(s->host, sizeof(s->host), "%.*s", (int)uri.host.len, uri.host.p);
            for (char *p = s->host; *p; p++)
                *p = gt_ascii_lower(*p);
            s->port = uri.port;
        }
        evbuffer_drain(in, head_len);
        if (r < 0) {
            respond_local(s, 400, err.reason, true, "error");
            return true;
        }
        if (s->rq.framing != GT_BODY_NONE) {
            respond_local(s, 400, "CONNECT with a body", true, "error");
            return true;
        }
        if (!gt_config_connect_port_allowed(cfg, s->port)) {
            char why[96];
            snprintf(why, sizeof(why), "CONNECT to port %u is not allowed (connect_ports)",
                     s->port);
            respond_local(s, 403, why, true, "deny");
            return true;
        }
        if (host_is_self(s, gt_slice_cstr(s->host), s->port)) {
            respond_local(s, 400, "CONNECT to gretel itself", true, "error");
            return true;
        }
        /* Without interception only the host is known: host-level rules still keep a
         * tracker's HTTPS from ever connecting. */
        gt_rules_request crq = {.method = GT_S("CONNECT"), .scheme = GT_S("https"),
                                .host = gt_slice_cstr(s->host), .port = s->port,
                                .path = GT_S("/"), .host_only = true};
        gt_decision *cd = &s->w->decision;
        gt_rules_decide(s->snap->rules, s->w->scratch, &crq, NULL, NULL, cd);
        gt_lists_apply(s->snap->lists, &crq, s->w->sh->psl, s->w->scratch, cd); /* ||host^ filters */
        if (cd->action == GT_DECIDE_BLOCK || cd->action == GT_DECIDE_REDIRECT) {
            respond_blocked(s, cd, true);
            return true;
        }
        if (cfg->mitm && s->w->sh->tls && !s->mitm && !bypassed(cfg, s->host)) {
            return start_intercept(s);
        }
        s->st = S_CONNECTING;
        evtimer_del(s->timer);
        gt_stream_disable_read(s->cs); /* early tunnel bytes wait in the buffer */
        gt_upstream_connect(s->w, cfg, gt_slice_cstr(s->host), s->port, true, deny_loopback(s),
                            on_tunnel_connected, s, &s->connect);
        return true;
    }

    if (s->mitm) {
        /* Inside interception: origin-form targets of the intercepted origin. */
        if (s->tls_err_status) {
            evbuffer_drain(in, head_len);
            snprintf(s->host, sizeof(s->host), "%s", s->sni);
            respond_local(s, 502, s->tls_err, true, "error");
            return true;
        }
        /* The rules see the name the tunnel was opened for (its SNI, else the CONNECT
         * host: docs/RULES.md), never a Host field naming something else; a Host that is
         * not an authority at all is refused. */
        gt_http1_uri hu;
        if (nhost && gt_http1_parse_host_field(host_hdr, 443, &hu, &err) < 0) {
            evbuffer_drain(in, head_len);
            respond_local(s, 400, "invalid Host field", true, "error");
            return true;
        }
        gt_slice target = req->target;
        if (target.len > 8 && gt_slice_caseeq(gt_slice_make(target.p, 8), GT_S("https://"))) {
            gt_http1_uri au;
            if (gt_http1_parse_absolute(target, &au, &err) < 0 ||
                !gt_slice_caseeq(au.host, gt_slice_cstr(s->sni)) || au.port != s->mitm_port) {
                evbuffer_drain(in, head_len);
                respond_local(s, 421, "request for another host than this tunnel's", true,
                              "error");
                return true;
            }
        } else if (target.len && target.p[0] == '/') {
            bool v6 = strchr(s->sni, ':') != NULL;
            size_t need = strlen(s->sni) + target.len + 24;
            char *u = gt_worker_url_buf(s->w, need);
            int m = s->mitm_port == 443
                        ? snprintf(u, need, "https://%s%s%s%.*s", v6 ? "[" : "", s->sni,
                                   v6 ? "]" : "", (int)target.len, target.p)
                        : snprintf(u, need, "https://%s%s%s:%u%.*s", v6 ? "[" : "", s->sni,
                                   v6 ? "]" : "", s->mitm_port, (int)target.len, target.p);
            req->target = gt_slice_make(u, m > 0 ? (size_t)m : 0);
        } else {
            evbuffer_drain(in, head_len);
            respond_local(s, 400, "inside an intercepted HTTPS connection requests are "
                                  "origin-form (or https:// absolute-form)",
                          true, "error");
            return true;
        }
    } else if (req->target.len && req->target.p[0] == '/') {
        /* origin-form: only meaningful for gretel's own pages */
        gt_http1_uri hu;
        bool self = nhost && gt_http1_parse_authority(host_hdr, &hu, &err) == 0
                        ? host_is_self(s, hu.host, hu.port)
                        : (nhost && host_is_self(s, host_hdr, 80));
        if (self) {
            snprintf(s->host, sizeof(s->host), "%.*s", (int)host_hdr.len, host_hdr.p);
            respond_self(s, req, req->target, host_hdr, head_len);
            return true;
        }
        evbuffer_drain(in, head_len);
        respond_local(s, 400,
                      "origin-form request: set gretel as the HTTP proxy of your browser "
                      "(it expects absolute URLs)",
                      true, "error");
        return true;
    }
    r = gt_http1_parse_absolute(req->target, &uri, &err);
    if (r < 0) {
        evbuffer_drain(in, head_len);
        respond_local(s, err.status, err.reason, true, "error");
        return true;
    }
    snprintf(s->host, sizeof(s->host), "%.*s", (int)uri.host.len, uri.host.p);
    for (char *p = s->host; *p; p++)
        *p = gt_ascii_lower(*p);
    s->port = uri.port;
    if (uri.is_https && !s->mitm) {
        evbuffer_drain(in, head_len);
        respond_local(s, 400, "https:// URLs go through CONNECT, not as plain requests", true,
                      "error");
        return true;
    }
    if (!s->mitm && host_is_self(s, uri.host, uri.port)) {
        /* the Host the client wrote, else the URL's authority: the PAC and set-up pages
         * name gretel the way this client reached it */
        gt_slice authority = nhost ? host_hdr : uri.host;
        respond_self(s, req, uri.path.len ? uri.path : GT_S("/"), authority, head_len);
        return true;
    }
    gt_decision *d = &s->w->decision;
    decide(s, req, &uri, d);
    if (d->action == GT_DECIDE_BLOCK || d->action == GT_DECIDE_REDIRECT) {
        evbuffer_drain(in, head_len);
        respond_blocked(s, d, false);
        return true;
    }
    if (!s->head)
        s->head = evbuffer_new();
    s->websocket = gt_proxy_is_websocket_upgrade(req);
    gt_proxy_request_head(s->head, req, &uri, cfg->forward_kind == GT_FORWARD_HTTP && !s->mitm,
                          &s->rq, d, s->websocket);
    /* a page load: its product ids are read as it passes (before the head is drained:
     * req->target points into the input) */
    gt_free(&s->sniff_url);
    if (cfg->page_products && s->type == GT_TYPE_DOCUMENT && s->w->sh->control &&
        gt_slice_eq(req->method, GT_S("GET")))
        s->sniff_url = gt_xslicedup(req->target);
    evbuffer_drain(in, head_len);

    char key[540];
    if (s->mitm)
        gt_upstream_key_tls(gt_slice_cstr(s->mitm_host), s->mitm_port, s->sni, key, sizeof(key));
    else
        gt_upstream_key(cfg, gt_slice_cstr(s->host), s->port, key, sizeof(key));
    /* inside interception, an origin whose HTTP/2 session is up serves this request too */
    /* (a WebSocket upgrade needs an HTTP/1.1 connection: RFC 8441 towards origins is not
     * spoken) */
    if (s->mitm && cfg->http2 && !s->websocket && gt_h2o_ready(s->w, key, deny_loopback(s))) {
        evtimer_del(s->timer);
        if (forward_h2o(s, key))
            return true;
    }
    gt_upstream *up = gt_pool_take(s->w, key);
    if (up && up->guarded_loopback && deny_loopback(s)) {
        /* pooled for a local client; this one goes through the checked connect (403) */
        gt_pool_put(s->w, up, cfg);
        up = NULL;
    }
    evtimer_del(s->timer);
    if (up)
        return start_forward(s, up);
    s->st = S_CONNECTING;
    gt_stream_disable_read(s->cs); /* the body waits until the origin is there */
    connect_origin(s, on_connected);
    return true;
}

/* Whether to read a request's body before deciding: -1 no, -2 no although body~ rules
 * would look at it (counted: /metrics), 0 not all here yet, else its length (all in the
 * buffer). Only Content-Length bodies up to body_inspect_max, only when some rule has a
 * body~ condition, and never for Expect: 100-continue (the client waits for us before
 * sending). */
static bool is_self_request(gt_session *s, const gt_http1_request *req);

static long body_wanted(gt_session *s, const gt_http1_request *req, size_t head_len,
                        size_t have)
{
    const gt_snapshot *snap = s->w->snap;
    /* a form posted to gretel's own page is read whole (it is small) */
    size_t max = gt_slice_eq(req->method, GT_S("POST")) && is_self_request(s, req)
                     ? GT_CONTROL_BODY_MAX
                     : 0;
    if (!max && (!gt_ruleset_wants_body(snap->rules) || snap->cfg->body_inspect_max == 0))
        return -1;
    if (!max)
        max = snap->cfg->body_inspect_max;
    gt_http1_body b;
    gt_http1_error err;
    if (gt_http1_request_body(req, &b, &err) < 0 || b.framing == GT_BODY_NONE ||
        (b.framing == GT_BODY_LENGTH && b.length == 0))
        return -1;
    if (b.framing != GT_BODY_LENGTH || b.length > max || b.expect_continue)
        return -2;
    if (have >= head_len + b.length)
        return (long)b.length;
    return s->client_eof ? -1 : 0;
}

/* True if buf[from..len) holds the end of a head ("\n\r\n" or "\n\n"). */
static bool has_head_end(const char *buf, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl)
            return false;
        i = (size_t)(nl - buf);
        if (i + 1 < len && buf[i + 1] == '\n')
            return true;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return true;
    }
    return false;
}

/* Reads and handles the buffered request heads, one at a time, until one is incomplete,
 * a request is in flight, or the client's unread responses reach IO_HWM. Iterative: a
 * pipelined run of any length uses one frame. False when the session is gone. */
static bool process_heads(gt_session *s)
{
    gt_http1_header *hdrs = s->w->req_fields; /* GT_MAX_FIELDS_CAP, worker-owned */
    while (s->st == S_HEAD) {
        struct evbuffer *in = gt_stream_input(s->cs);
        size_t len = evbuffer_get_length(in);
        if (len == 0) {
            if (s->client_eof)
                enter_closing(s);
            return true;
        }
        /* pipelined responses pile up if the client does not read: on_client_write goes
         * on once they drain */
        if (evbuffer_get_length(gt_stream_output(s->cs)) >= IO_HWM)
            return true;
        const gt_config *cfg = s->w->snap->cfg;
        if (!s->timer_is_head)
            arm_head_deadline(s);
        size_t cap = cfg->max_header_size;
        size_t n = len < cap ? len : cap;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        size_t from = s->scanned > 2 ? s->scanned - 2 : 0;
        bool complete = has_head_end(buf, from, n) || (n >= 2 && buf[0] == '\n');
        gt_http1_request req = {.headers = hdrs, .num_headers = cfg->max_headers};
        gt_http1_error err;
        int r = GT_HTTP1_INCOMPLETE;
        if (complete || n >= cap) {
            r = gt_http1_parse_request(buf, n, &req, &err);
        } else if (from < n && memchr(buf + from, '\n', n - from)) {
            /* A head can be wrong before its end arrives: check it whenever a line is
             * complete. Only then, so a head trickled in byte by byte costs a parse per
             * line (at most max_headers of them), not one per read. */
            r = gt_http1_parse_request(buf, n, &req, &err);
            if (r != GT_HTTP1_ERROR)
                r = GT_HTTP1_INCOMPLETE;
        }
        s->scanned = n;
        if (r == GT_HTTP1_INCOMPLETE) {
            if (n < cap && s->client_eof) {
                /* a partial head and no more bytes coming: nothing to answer */
                evbuffer_drain(in, len);
                enter_closing(s);
                return true;
            }
            if (n < cap)
                return true; /* wait for more (header deadline is running) */
            s->snap = gt_snapshot_ref(s->w->snap);
            s->t0 = gt_now_ms();
            s->rq.framing = GT_BODY_LENGTH; /* unknown: close after answering */
            bool line_done = memchr(buf, '\n', n) != NULL;
            evbuffer_drain(in, len);
            respond_local(s, line_done ? 431 : 414,
                          line_done ? "request header block too large" : "request line too long",
                          true, "error");
            return true;
        }
        if (r == GT_HTTP1_ERROR) {
            s->snap = gt_snapshot_ref(s->w->snap);
            s->t0 = gt_now_ms();
            s->rq.framing = GT_BODY_LENGTH;
            atomic_fetch_add_explicit(&s->w->sh->counters.client_errors, 1, memory_order_relaxed);
            evbuffer_drain(in, len);
            char why[160];
            snprintf(why, sizeof(why), "%s (at byte %zu)", err.reason, err.offset);
            respond_local(s, err.status, why, true, "error");
            return true;
        }
        s->scanned = 0;
        /* Rules that look at bodies decide once a small body is here (the head is parsed
         * again over the enlarged buffer: pulling it up may move the bytes). */
        long want = body_wanted(s, &req, (size_t)r, len);
        if (want == 0)
            return true; /* wait for the rest of the body (header deadline is running) */
        if (want == -2)
            atomic_fetch_add_explicit(&s->w->sh->counters.bodies_not_inspected, 1,
                                      memory_order_relaxed);
        s->body_view = GT_S("");
        if (want > 0) {
            size_t total = (size_t)r + (size_t)want;
            buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)total);
            req.num_headers = cfg->max_headers;
            if (gt_http1_parse_request(buf, (size_t)r, &req, &err) != r)
                abort(); /* the same bytes parsed a moment ago */
            s->body_view = gt_slice_make(buf + r, (size_t)want);
        }
        if (!handle_request(s, &req, (size_t)r))
            return false;
    }
    return true;
}

/* --- client callbacks --- */

static void on_client_read(gt_stream *st, void *arg)
{
    gt_session *s = arg;
    switch (s->st) {
    case S_HEAD:
        if (!process_heads(s))
            return;
        break;
    case S_FORWARD:
        if (!pump_request(s))
            return;
        break;
    case S_DISCARD:
        discard_body(s);
        break;
    case S_TLS_HELLO:
        if (!tls_hello(s))
            return;
        break;
    case S_CONNECTING:
    case S_TLS_UPSTREAM:
    case S_TLS_HANDSHAKE:
        break;
    case S_CLOSING: {
        /* discard what the client still sends while our last response drains */
        struct evbuffer *in = gt_stream_input(st);
        evbuffer_drain(in, evbuffer_get_length(in));
        break;
    }
    }
}

static void on_client_write(gt_stream *st, void *arg)
{
    gt_session *s = arg;
    struct evbuffer *out = gt_stream_output(st);
    switch (s->st) {
    case S_CLOSING:
        if (evbuffer_get_length(out) == 0)
            start_linger(s);
        break;
    case S_FORWARD:
        if (s->oreq && s->o_unacked && evbuffer_get_length(out) <= IO_HWM / 2) {
            gt_h2o_consumed(s->oreq, s->o_unacked);
            s->o_unacked = 0;
        }
        if (s->up && !gt_stream_reading(s->up->st) && evbuffer_get_length(out) <= IO_HWM / 2) {
            gt_stream_enable_read(s->up->st);
            if (!relay_response(s))
                return;
        }
        break;
    case S_HEAD:
        if (evbuffer_get_length(gt_stream_input(st)) && !process_heads(s))
            return;
        break;
    case S_DISCARD:
    case S_CONNECTING:
    case S_TLS_HELLO:
    case S_TLS_UPSTREAM:
    case S_TLS_HANDSHAKE:
        break;
    }
}

/* Logs a request the client abandoned (status 499, as nginx records it). */
static void log_abort(gt_session *s, const char *why)
{
    gt_log(GT_LOG_INFO, "conn=%u client=%s host=%s: %s, closing", s->id, s->client, s->host,
           why);
    if (s->snap) {
        s->status = s->status ? s->status : 499;
        s->decision = "aborted";
        log_request(s);
    }
}

static void on_client_event(gt_stream *st, int what, void *arg)
{
    gt_session *s = arg;
    if (what & GT_STREAM_TLS_DONE) {
        if (!mitm_ready(s))
            return;
        return;
    }
    if (s->st == S_TLS_HANDSHAKE || s->st == S_TLS_HELLO || s->st == S_TLS_UPSTREAM) {
        if (s->st == S_TLS_HANDSHAKE && (what & GT_STREAM_TLS)) {
            /* Usually the client refusing our certificate (the CA is not trusted there, or
             * an app pins its keys): worth a line, it is the first thing users will ask. */
            char why[200];
            gt_tls_failure_reason(gt_stream_ssl(st), why, sizeof(why));
            gt_log(GT_LOG_INFO, "conn=%u client=%s host=%s: client TLS handshake failed: %s",
                   s->id, s->client, s->sni, why);
            atomic_fetch_add_explicit(&s->w->sh->counters.tls_client_failures, 1,
                                      memory_order_relaxed);
        } else if (s->st == S_TLS_HELLO && (what & GT_STREAM_EOF) &&
                   evbuffer_get_length(gt_stream_input(st))) {
            s->client_eof = true;
            if (!tls_hello(s)) /* decides from what is buffered, or closes */
                return;
            return;
        }
        session_destroy(s);
        return;
    }
    if (what & GT_STREAM_EOF) {
        /* A half-close ends the requests, not the responses: everything complete that the
         * client sent is still answered (RFC 9112 §9.6), then the connection closes. */
        s->client_eof = true;
        if (s->st == S_FORWARD && s->rq_done)
            return; /* next_or_close closes once the input holds no further request */
        if (s->st == S_HEAD) {
            if (evbuffer_get_length(gt_stream_input(st))) {
                if (!process_heads(s)) /* closes when only a partial head is left */
                    return;
            } else {
                enter_closing(s);
            }
            return;
        }
        if (s->st == S_CLOSING && !s->linger_started)
            return; /* keep flushing our last response; the linger timer ends it */
        if (s->st == S_DISCARD) {
            discard_body(s); /* finishes from what is buffered, or closes */
            return;
        }
    }
    if (s->st == S_FORWARD || s->st == S_CONNECTING)
        log_abort(s, (what & GT_STREAM_TIMEOUT) ? "client stalled" : "client closed mid-request");
    session_destroy(s);
}

/* The next pipelined request, read from the loop (next_or_close). */
static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_session *s = arg;
    if (s->st == S_HEAD && !process_heads(s))
        return;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_session *s = arg;
    if (s->abort_pending) {
        log_abort(s, "client closed mid-request");
        session_destroy(s);
        return;
    }
    if (s->st == S_CLOSING) {
        session_destroy(s);
        return;
    }
    if (s->st == S_HEAD && s->timer_is_head &&
        evbuffer_get_length(gt_stream_input(s->cs)) > 0) {
        s->snap = gt_snapshot_ref(s->w->snap);
        s->t0 = gt_now_ms();
        s->rq.framing = GT_BODY_LENGTH;
        struct evbuffer *in = gt_stream_input(s->cs);
        evbuffer_drain(in, evbuffer_get_length(in));
        respond_local(s, 408, "request header not received in time (header_timeout)", true,
                      "error");
        return;
    }
    session_destroy(s); /* idle keep-alive connection, or silent new one */
}

void gt_session_accept(gt_worker *w, int fd, const struct sockaddr *sa, int salen)
{
    (void)salen;
    const gt_config *cfg = w->snap->cfg;
    unsigned open = atomic_fetch_add_explicit(&w->sh->counters.open_conns, 1,
                                              memory_order_relaxed) + 1;
    if (open > cfg->max_connections + OVER_LIMIT_SLACK) {
        atomic_fetch_sub_explicit(&w->sh->counters.open_conns, 1, memory_order_relaxed);
        close(fd);
        return;
    }
    gt_session *s = gt_xcalloc(1, sizeof(*s));
    s->w = w;
    s->id = w->id + (w->next_id++) * w->sh->nworkers;
    s->decision = "pass";
    s->rule = NULL;
    s->type = GT_TYPE_OTHER;
    gt_sockaddr_format(sa, s->client, sizeof(s->client));
    s->client_is_loopback = gt_sockaddr_is_loopback(sa);
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0)
        gt_sockaddr_format((struct sockaddr *)&local, s->local, sizeof(s->local));
    s->over_limit = open > cfg->max_connections;
    s->denied = !gt_config_client_allowed(cfg, sa);
    if (s->over_limit)
        gt_log(GT_LOG_WARN, "client=%s over max_connections=%u: answering 503", s->client,
               cfg->max_connections);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->cs = gt_stream_new(w->base, fd); /* owns fd from here */
    s->timer = evtimer_new(w->base, on_timer, s);
    s->resume = event_new(w->base, -1, 0, on_resume, s);
    LIST_INSERT_HEAD(&w->sessions, s, link);
    w->nsessions++;
    if (!s->cs || !s->timer || !s->resume) {
        session_destroy(s);
        return;
    }
    gt_stream_setcb(s->cs, on_client_read, on_client_write, on_client_event, s);
    gt_stream_set_read_hwm(s->cs, read_hwm(s));
    gt_stream_set_write_lowat(s->cs, IO_HWM / 2);
    gt_stream_enable_read(s->cs);
    arm_idle(s);
}

void gt_sessions_drain(gt_worker *w)
{
    gt_session *s, *next;
    for (s = LIST_FIRST(&w->sessions); s; s = next) {
        next = LIST_NEXT(s, link);
        s->draining = true;
        if (s->st == S_HEAD && evbuffer_get_length(gt_stream_input(s->cs)) == 0)
            session_destroy(s);
    }
}

void gt_sessions_destroy_all(gt_worker *w)
{
    gt_session *s;
    while ((s = LIST_FIRST(&w->sessions)) != NULL)
        session_destroy(s);
}
