/* Upstream connections: name resolution (resolve overrides, RFC 6761 special names, evdns),
 * non-blocking TCP connects tried address by address, parent-proxy handshakes (HTTP CONNECT
 * and SOCKS5) and the per-worker keep-alive pool. Runs only on its worker's thread; never
 * blocks and never logs (callers log with the status and reason handed back). */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "gretel/http1.h"
#include "gretel/net.h"
#include "gretel/stream.h"
#include "gretel/tls.h"
#include "gretel/util.h"

#define MAX_ADDRS 8
#define PARENT_HEAD_MAX 16384

enum conn_state {
    C_START,
    C_DNS,
    C_TCP,
    C_PARENT_CONNECT,
    C_SOCKS_GREET,
    C_SOCKS_REPLY,
    C_TLS,
    C_READY
};

struct gt_connect {
    gt_worker *w;
    gt_connect_cb cb;
    void *arg;
    char host[256];   /* the origin asked for */
    uint16_t port;
    char dial_host[256]; /* what we resolve: origin or parent */
    uint16_t dial_port;
    enum gt_forward_kind fwd;
    bool tunnel;
    enum conn_state state;
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addrlens[MAX_ADDRS];
    size_t naddrs, next;
    int last_errno;
    struct evdns_getaddrinfo_request *dns_req;
    gt_stream *st;
    struct event *timer, *start;
    unsigned timeout_ms;
    bool has_override;
    bool deny_loopback;
    unsigned loopback_skipped;
    gt_sockaddr override;
    char key[540];
    char why[256];
    gt_tls *tls;       /* non-NULL: TLS to the origin, verified, with SNI tls_name */
    char tls_name[256];
    bool offer_h2;
};

static void finish(gt_connect *c, gt_upstream *up, int status, const char *why)
{
    gt_connect_cb cb = c->cb;
    void *arg = c->arg;
    if (c->dns_req) {
        evdns_getaddrinfo_cancel(c->dns_req); /* calls on_dns with CANCEL; ignored there */
        c->dns_req = NULL;
    }
    gt_stream_free(c->st);
    event_free(c->timer);
    event_free(c->start);
    /* `why` may point into c: hand it over before freeing */
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", why ? why : "");
    free(c);
    cb(arg, up, status, up ? NULL : msg);
}

static void fail(gt_connect *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(gt_connect *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    finish(c, NULL, status, c->why);
}

static void try_next_addr(gt_connect *c);

/* Success is delivered from a timer, never from inside the stream's own callback, so the
 * session starts from a clean stack: it may queue, validate and still abandon the request
 * (a chunked-framing error in the first bytes must leave the origin untouched) before any
 * byte is written. */
static void succeed_later(gt_connect *c)
{
    c->state = C_READY;
    gt_stream_setcb(c->st, NULL, NULL, NULL, NULL);
    gt_stream_disable_read(c->st);
    struct timeval zero = {0, 0};
    evtimer_add(c->start, &zero);
}

static void succeed(gt_connect *c)
{
    gt_upstream *up = gt_xcalloc(1, sizeof(*up));
    up->w = c->w;
    up->st = c->st;
    c->st = NULL;
    up->via_http_proxy = c->fwd == GT_FORWARD_HTTP && !c->tunnel;
    up->guarded_loopback = !c->has_override && c->fwd == GT_FORWARD_NONE &&
                           gt_sockaddr_is_loopback((struct sockaddr *)&c->addrs[c->next - 1]);
    gt_sockaddr_format((struct sockaddr *)&c->addrs[c->next - 1], up->peer, sizeof(up->peer));
    snprintf(up->key, sizeof(up->key), "%s", c->key);
    up->h2 = c->tls && gt_tls_is_h2(gt_stream_ssl(up->st));
    gt_stream_setcb(up->st, NULL, NULL, NULL, NULL);
    gt_stream_set_timeouts(up->st, 0, 0);
    gt_stream_disable_read(up->st);
    finish(c, up, 0, NULL);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_connect *c = arg;
    const char *phase = c->state == C_DNS   ? "resolving"
                        : c->state == C_TCP ? "connecting to"
                        : c->state == C_TLS ? "in the TLS handshake with"
                                            : "handshaking with parent proxy for";
    fail(c, 504, "timeout %s %s:%u after %ums", phase, c->host, c->port, c->timeout_ms);
}

/* --- TLS to the origin --- */

static void on_tls_event(gt_stream *st, int what, void *arg)
{
    gt_connect *c = arg;
    if (what & GT_STREAM_TLS_DONE) {
        succeed_later(c);
        return;
    }
    char why[200];
    bool cert = gt_tls_failure_reason(gt_stream_ssl(st), why, sizeof(why));
    if (!(what & GT_STREAM_TLS))
        snprintf(why, sizeof(why), "connection closed during the TLS handshake");
    fail(c, cert ? GT_STATUS_CERT_FAILED : 502, "%s:%u: %s", c->tls_name, c->port, why);
}

static void start_tls(gt_connect *c)
{
    SSL *ssl = gt_tls_client_ssl(c->tls, c->tls_name, c->offer_h2);
    if (!ssl) {
        fail(c, 502, "cannot start TLS towards %s", c->tls_name);
        return;
    }
    c->state = C_TLS;
    gt_stream_setcb(c->st, NULL, NULL, on_tls_event, c);
    gt_stream_set_read_hwm(c->st, 0);
    if (gt_stream_start_tls(c->st, ssl, false) < 0)
        fail(c, 502, "cannot start TLS towards %s", c->tls_name);
}

/* The byte stream to the origin is there (direct, or through a parent's tunnel). */
static void transport_ready(gt_connect *c)
{
    if (c->tls)
        start_tls(c);
    else
        succeed_later(c);
}

/* --- parent proxy handshakes --- */

static void send_socks_request(gt_connect *c)
{
    struct evbuffer *out = gt_stream_output(c->st);
    size_t hl = strlen(c->host);
    unsigned char hdr[5] = {5, 1, 0, 3, (unsigned char)hl};
    unsigned char port[2] = {(unsigned char)(c->port >> 8), (unsigned char)(c->port & 0xff)};
    evbuffer_add(out, hdr, sizeof(hdr));
    evbuffer_add(out, c->host, hl);
    evbuffer_add(out, port, 2);
    gt_stream_flush(c->st);
    c->state = C_SOCKS_REPLY;
}

static const char *socks_error(unsigned code)
{
    static const char *const msg[] = {"succeeded", "general failure", "not allowed by ruleset",
                                      "network unreachable", "host unreachable",
                                      "connection refused", "TTL expired",
                                      "command not supported", "address type not supported"};
    return code < 9 ? msg[code] : "unknown error";
}

static void on_parent_read(gt_stream *st, void *arg)
{
    gt_connect *c = arg;
    struct evbuffer *in = gt_stream_input(st);
    size_t len = evbuffer_get_length(in);
    if (c->state == C_PARENT_CONNECT) {
        size_t n = len < PARENT_HEAD_MAX ? len : PARENT_HEAD_MAX;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        gt_http1_header hdrs[64];
        gt_http1_response res = {.headers = hdrs, .num_headers = 64};
        gt_http1_error err;
        int r = gt_http1_parse_response(buf, n, &res, &err);
        if (r == GT_HTTP1_INCOMPLETE) {
            if (len >= PARENT_HEAD_MAX)
                fail(c, 502, "parent proxy sent an oversized reply to CONNECT");
            return;
        }
        if (r < 0) {
            fail(c, 502, "parent proxy sent an invalid reply to CONNECT: %s", err.reason);
            return;
        }
        if (res.status < 200 || res.status > 299) {
            fail(c, 502, "parent proxy refused CONNECT %s:%u with status %d", c->host, c->port,
                 res.status);
            return;
        }
        evbuffer_drain(in, (size_t)r);
        transport_ready(c);
        return;
    }
    if (c->state == C_SOCKS_GREET) {
        if (len < 2)
            return;
        unsigned char rep[2];
        evbuffer_remove(in, rep, 2);
        if (rep[0] != 5 || rep[1] != 0) {
            fail(c, 502, "SOCKS5 parent proxy requires an authentication method gretel lacks");
            return;
        }
        send_socks_request(c);
        return;
    }
    if (c->state == C_SOCKS_REPLY) {
        unsigned char h[5];
        if (len < 5)
            return;
        evbuffer_copyout(in, h, 5);
        if (h[0] != 5) {
            fail(c, 502, "SOCKS5 parent proxy sent an invalid reply");
            return;
        }
        if (h[1] != 0) {
            fail(c, 502, "SOCKS5 parent proxy could not reach %s:%u: %s", c->host, c->port,
                 socks_error(h[1]));
            return;
        }
        size_t need = h[3] == 1 ? 10 : h[3] == 4 ? 22 : h[3] == 3 ? 7u + h[4] : 0;
        if (need == 0) {
            fail(c, 502, "SOCKS5 parent proxy sent an unknown address type");
            return;
        }
        if (len < need)
            return;
        evbuffer_drain(in, need);
        transport_ready(c);
    }
}

static void on_parent_event(gt_stream *st, int what, void *arg)
{
    (void)st;
    gt_connect *c = arg;
    if (what & (GT_STREAM_EOF | GT_STREAM_ERROR))
        fail(c, 502, "parent proxy closed the connection during its handshake");
}

static void start_parent_handshake(gt_connect *c)
{
    gt_stream_setcb(c->st, on_parent_read, NULL, on_parent_event, c);
    gt_stream_set_read_hwm(c->st, PARENT_HEAD_MAX + 1);
    gt_stream_enable_read(c->st);
    struct evbuffer *out = gt_stream_output(c->st);
    if (c->fwd == GT_FORWARD_HTTP) {
        bool v6 = strchr(c->host, ':') != NULL;
        evbuffer_add_printf(out, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n\r\n",
                            v6 ? "[" : "", c->host, v6 ? "]" : "", c->port, v6 ? "[" : "",
                            c->host, v6 ? "]" : "", c->port);
        c->state = C_PARENT_CONNECT;
    } else {
        static const unsigned char greet[3] = {5, 1, 0}; /* version 5, no authentication */
        evbuffer_add(out, greet, sizeof(greet));
        c->state = C_SOCKS_GREET;
    }
    gt_stream_flush(c->st);
}

/* --- TCP --- */

static void on_tcp_event(gt_stream *st, int what, void *arg)
{
    gt_connect *c = arg;
    if (what & GT_STREAM_CONNECTED) {
        int one = 1;
        setsockopt(gt_stream_fd(st), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Plain requests through an HTTP parent need no handshake: they go in absolute-form. */
        if (c->fwd == GT_FORWARD_SOCKS5 || (c->fwd == GT_FORWARD_HTTP && c->tunnel))
            start_parent_handshake(c);
        else
            transport_ready(c);
        return;
    }
    c->last_errno = gt_stream_error(st);
    gt_stream_free(c->st);
    c->st = NULL;
    try_next_addr(c);
}

static void try_next_addr(gt_connect *c)
{
    while (c->next < c->naddrs) {
        size_t i = c->next++;
        if (c->deny_loopback && !c->has_override && c->fwd == GT_FORWARD_NONE &&
            gt_sockaddr_is_loopback((struct sockaddr *)&c->addrs[i])) {
            /* A client on another host must not reach services bound to gretel's own
             * loopback (router admin pages, local databases) through the proxy. */
            c->loopback_skipped++;
            continue;
        }
        c->state = C_TCP;
        int e = 0;
        c->st = gt_stream_connect(c->w->base, (struct sockaddr *)&c->addrs[i], c->addrlens[i], &e);
        if (c->st) {
            gt_stream_setcb(c->st, NULL, NULL, on_tcp_event, c);
            return;
        }
        c->last_errno = e;
    }
    if (c->loopback_skipped == c->naddrs) {
        fail(c, 403, "%s:%u is gretel's own machine, not reachable for clients on other hosts "
                     "(loopback_upstream)", c->host, c->port);
        return;
    }
    char a[64] = "?";
    if (c->naddrs)
        gt_sockaddr_format((struct sockaddr *)&c->addrs[c->naddrs - 1], a, sizeof(a));
    const char *who = c->fwd != GT_FORWARD_NONE ? "parent proxy " : "";
    switch (c->last_errno) {
    case ECONNREFUSED:
        fail(c, 502, "connection refused by %s%s (%s:%u)", who, a, c->dial_host, c->dial_port);
        break;
    case ENETUNREACH:
    case EHOSTUNREACH:
        fail(c, 502, "%s%s is unreachable (%s)", who, a, strerror(c->last_errno));
        break;
    case ETIMEDOUT:
        fail(c, 504, "connect to %s%s timed out", who, a);
        break;
    default:
        fail(c, 502, "cannot connect to %s%s: %s", who, a,
             c->last_errno ? strerror(c->last_errno) : "no usable address");
    }
}

static void add_addr(gt_connect *c, const struct sockaddr *sa, socklen_t len, uint16_t port)
{
    if (c->naddrs >= MAX_ADDRS || len > sizeof(c->addrs[0]))
        return;
    memcpy(&c->addrs[c->naddrs], sa, len);
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)&c->addrs[c->naddrs])->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)&c->addrs[c->naddrs])->sin6_port = htons(port);
    c->addrlens[c->naddrs++] = len;
}

static void on_dns(int result, struct evutil_addrinfo *res, void *arg)
{
    gt_connect *c = arg;
    if (result == EVUTIL_EAI_CANCEL) {
        if (res)
            evutil_freeaddrinfo(res);
        return; /* finish() cancelled us; c is gone */
    }
    c->dns_req = NULL;
    if (result != 0) {
        if (result == EVUTIL_EAI_NONAME || result == EVUTIL_EAI_NODATA)
            fail(c, 502, "DNS: no such host '%s'", c->dial_host);
        else if (result == EVUTIL_EAI_AGAIN)
            fail(c, 502, "DNS lookup of '%s' failed: name server did not answer",
                 c->dial_host);
        else
            fail(c, 502, "DNS lookup of '%s' failed: %s", c->dial_host,
                 evutil_gai_strerror(result));
        return;
    }
    /* IPv4 first: on a home network a broken IPv6 route is the usual failure, and the
     * fall-through to the next address covers the other case. */
    for (int pass = 0; pass < 2; pass++)
        for (struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next)
            if ((pass == 0) == (ai->ai_family == AF_INET))
                add_addr(c, ai->ai_addr, (socklen_t)ai->ai_addrlen, c->dial_port);
    evutil_freeaddrinfo(res);
    if (c->naddrs == 0) {
        fail(c, 502, "DNS: '%s' has no usable address", c->dial_host);
        return;
    }
    try_next_addr(c);
}

static bool ends_with_label(const char *host, const char *label)
{
    size_t h = strlen(host), l = strlen(label);
    if (h == l)
        return strcasecmp(host, label) == 0;
    return h > l && host[h - l - 1] == '.' && strcasecmp(host + h - l, label) == 0;
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_connect *c = arg;
    if (c->state == C_READY) {
        succeed(c);
        return;
    }
    unsigned char tmp[16];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (c->has_override) {
        uint16_t p = c->dial_port;
        const struct sockaddr *sa = (const struct sockaddr *)&c->override.ss;
        uint16_t op = sa->sa_family == AF_INET
                          ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                          : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        add_addr(c, sa, c->override.len, op ? op : p);
        try_next_addr(c);
        return;
    }
    if (inet_pton(AF_INET, c->dial_host, tmp) == 1) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        v4->sin_family = AF_INET;
        memcpy(&v4->sin_addr, tmp, 4);
        add_addr(c, (struct sockaddr *)v4, sizeof(*v4), c->dial_port);
        try_next_addr(c);
        return;
    }
    if (inet_pton(AF_INET6, c->dial_host, tmp) == 1) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        v6->sin6_family = AF_INET6;
        memcpy(&v6->sin6_addr, tmp, 16);
        add_addr(c, (struct sockaddr *)v6, sizeof(*v6), c->dial_port);
        try_next_addr(c);
        return;
    }
    /* RFC 6761: .invalid never resolves and localhost is always loopback; neither is asked of
     * a name server, so nothing about them leaves the machine. */
    if (ends_with_label(c->dial_host, "invalid")) {
        fail(c, 502, "DNS: no such host '%s' (.invalid is never resolved)", c->dial_host);
        return;
    }
    if (ends_with_label(c->dial_host, "localhost")) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        add_addr(c, (struct sockaddr *)v4, sizeof(*v4), c->dial_port);
        try_next_addr(c);
        return;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    c->state = C_DNS;
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(c->w->dns, c->dial_host, NULL, &hints, on_dns, c);
    /* evdns may answer synchronously (hosts file, cache): then req is NULL and c may be gone. */
    if (req)
        c->dns_req = req;
}

void gt_upstream_key(const gt_config *cfg, gt_slice host, uint16_t port, char *key, size_t len)
{
    if (cfg->forward_kind == GT_FORWARD_HTTP)
        snprintf(key, len, "http-parent|%s:%u", cfg->forward_host, cfg->forward_port);
    else if (cfg->forward_kind == GT_FORWARD_SOCKS5)
        snprintf(key, len, "socks5|%.*s:%u", (int)host.len, host.p, port);
    else
        snprintf(key, len, "%.*s:%u", (int)host.len, host.p, port);
    for (char *p = key; *p; p++)
        *p = gt_ascii_lower(*p);
}

void gt_upstream_key_tls(gt_slice host, uint16_t port, const char *sni, char *key, size_t len)
{
    snprintf(key, len, "tls|%.*s:%u|%s", (int)host.len, host.p, port, sni);
    for (char *p = key; *p; p++)
        *p = gt_ascii_lower(*p);
}

static void connect_any(gt_worker *w, const gt_config *cfg, gt_slice host, uint16_t port,
                        bool tunnel, bool deny_loopback, gt_tls *tls, const char *sni,
                        bool offer_h2, gt_connect_cb cb, void *arg, gt_connect **handle)
{
    gt_connect *c = gt_xcalloc(1, sizeof(*c));
    c->offer_h2 = offer_h2;
    c->deny_loopback = deny_loopback;
    c->w = w;
    c->cb = cb;
    c->arg = arg;
    c->tunnel = tunnel;
    c->fwd = cfg->forward_kind;
    c->timeout_ms = cfg->connect_timeout_ms;
    snprintf(c->host, sizeof(c->host), "%.*s", (int)host.len, host.p);
    for (char *p = c->host; *p; p++)
        *p = gt_ascii_lower(*p);
    c->port = port;
    if (c->fwd != GT_FORWARD_NONE) {
        snprintf(c->dial_host, sizeof(c->dial_host), "%s", cfg->forward_host);
        c->dial_port = cfg->forward_port;
    } else {
        snprintf(c->dial_host, sizeof(c->dial_host), "%s", c->host);
        c->dial_port = port;
    }
    if (tls) {
        c->tls = tls;
        snprintf(c->tls_name, sizeof(c->tls_name), "%s", sni);
        gt_upstream_key_tls(host, port, sni, c->key, sizeof(c->key));
    } else {
        gt_upstream_key(cfg, host, port, c->key, sizeof(c->key));
    }
    /* resolve overrides apply to the name being dialled (origin, or the parent proxy) */
    const gt_resolve_rule *rr = gt_config_resolve_lookup(cfg, gt_slice_cstr(c->dial_host));
    if (rr) {
        c->has_override = true;
        c->override = rr->addr;
    }
    c->timer = evtimer_new(w->base, on_timeout, c);
    c->start = evtimer_new(w->base, on_start, c);
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    /* Start from the loop, never inside the caller's stack: the callback contract says so. */
    struct timeval zero = {0, 0};
    evtimer_add(c->start, &zero);
    *handle = c;
}

void gt_upstream_connect(gt_worker *w, const gt_config *cfg, gt_slice host, uint16_t port,
                         bool tunnel, bool deny_loopback, gt_connect_cb cb, void *arg,
                         gt_connect **handle)
{
    connect_any(w, cfg, host, port, tunnel, deny_loopback, NULL, NULL, false, cb, arg, handle);
}

void gt_upstream_connect_tls(gt_worker *w, const gt_config *cfg, gt_slice host, uint16_t port,
                             const char *sni, bool offer_h2, bool deny_loopback,
                             gt_connect_cb cb, void *arg, gt_connect **handle)
{
    /* through a parent HTTP proxy, TLS needs a CONNECT tunnel of its own */
    connect_any(w, cfg, host, port, true, deny_loopback, w->sh->tls, sni, offer_h2, cb, arg,
                handle);
}

void gt_upstream_connect_cancel(gt_connect *c)
{
    if (!c)
        return;
    if (c->dns_req) {
        evdns_getaddrinfo_cancel(c->dns_req);
        c->dns_req = NULL;
    }
    gt_stream_free(c->st);
    event_free(c->timer);
    event_free(c->start);
    free(c);
}

/* --- pool --- */

static unsigned hash_key(const char *k)
{
    unsigned h = 2166136261u; /* FNV-1a: short keys, no adversary controls the pool size */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h;
}

static void pool_remove(gt_worker *w, gt_upstream *up)
{
    LIST_REMOVE(up, bucket_link);
    TAILQ_REMOVE(&w->lru, up, lru_link);
    w->pool_size--;
}

void gt_upstream_free(gt_upstream *up)
{
    if (!up)
        return;
    gt_stream_free(up->st);
    free(up);
}

/* An idle pooled connection that becomes readable was closed by the origin (or it sent
 * something unasked, which makes it unusable): either way, drop it. */
static void on_idle_read(gt_stream *st, void *arg)
{
    (void)st;
    gt_upstream *up = arg;
    pool_remove(up->w, up);
    gt_upstream_free(up);
}

static void on_idle_event(gt_stream *st, int what, void *arg)
{
    (void)st, (void)what;
    gt_upstream *up = arg;
    pool_remove(up->w, up);
    gt_upstream_free(up);
}

gt_upstream *gt_pool_take(gt_worker *w, const char *key)
{
    unsigned h = hash_key(key);
    gt_upstream *up;
    LIST_FOREACH(up, &w->pool[h % GT_POOL_BUCKETS], bucket_link)
    {
        if (up->key_hash == h && strcmp(up->key, key) == 0) {
            pool_remove(w, up);
            /* Reading stays enabled (no epoll change): the taker sets its callbacks before
             * the loop runs again. */
            gt_stream_setcb(up->st, NULL, NULL, NULL, NULL);
            gt_stream_set_timeouts(up->st, 0, 0);
            up->reused = true;
            return up;
        }
    }
    return NULL;
}

void gt_pool_put(gt_worker *w, gt_upstream *up, const gt_config *cfg)
{
    if (cfg->pool_max_idle == 0 || w->draining ||
        evbuffer_get_length(gt_stream_input(up->st)) != 0 ||
        evbuffer_get_length(gt_stream_output(up->st)) != 0) {
        gt_upstream_free(up);
        return;
    }
    while (w->pool_size >= cfg->pool_max_idle) {
        gt_upstream *old = TAILQ_FIRST(&w->lru);
        pool_remove(w, old);
        gt_upstream_free(old);
    }
    up->key_hash = hash_key(up->key);
    LIST_INSERT_HEAD(&w->pool[up->key_hash % GT_POOL_BUCKETS], up, bucket_link);
    TAILQ_INSERT_TAIL(&w->lru, up, lru_link);
    w->pool_size++;
    gt_stream_setcb(up->st, on_idle_read, NULL, on_idle_event, up);
    gt_stream_trim(up->st);
    gt_stream_set_timeouts(up->st, cfg->pool_idle_timeout_ms, 0);
    gt_stream_set_write_lowat(up->st, 0);
    gt_stream_enable_read(up->st);
}

void gt_pool_clear(gt_worker *w)
{
    gt_upstream *up;
    while ((up = TAILQ_FIRST(&w->lru)) != NULL) {
        pool_remove(w, up);
        gt_upstream_free(up);
    }
}
