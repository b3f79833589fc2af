/* Heads gretel writes: forwarded requests and responses with hop-by-hop fields removed
 * (RFC 9110 §7.6.1), and local responses. Owns nothing; appends to the caller's evbuffer.
 * Must never add anything that identifies the user (no Via, no X-Forwarded-For). */
#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <string.h>

#include "gretel/control.h"
#include "gretel/net.h"
#include "gretel/products.h"
#include "gretel/proxy.h"
#include "gretel/util.h"

const char *gt_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void gt_proxy_local_response(struct evbuffer *out, int status, const char *content_type,
                             const char *body, size_t body_len, bool head_only, bool close,
                             const char *extra)
{
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n%s%s\r\n",
                        status, gt_http_reason(status), content_type, body_len,
                        extra ? extra : "", close ? "Connection: close\r\n" : "");
    if (!head_only && body_len)
        evbuffer_add(out, body, body_len);
}

void gt_proxy_error_response(struct evbuffer *out, int status, const char *why, bool head_only,
                             bool close)
{
    char body[512];
    int n = snprintf(body, sizeof(body), "gretel: %d %s: %s\n", status, gt_http_reason(status),
                     why ? why : "");
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = sizeof(body) - 1;
    gt_proxy_local_response(out, status, "text/plain; charset=utf-8", body, (size_t)n, head_only,
                            close, NULL);
}

void gt_proxy_block_response(struct evbuffer *out, const gt_resource *res, const char *xgretel,
                             bool head_only, bool close)
{
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", res->status, gt_http_reason(res->status));
    /* RFC 9110 §8.6: no Content-Length (and no content) in a 204 */
    if (res->status != 204)
        evbuffer_add_printf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                            res->content_type ? res->content_type : "text/plain",
                            res->body_len);
    evbuffer_add_printf(out, "Cache-Control: no-store\r\nX-Gretel: %s\r\n%s\r\n", xgretel,
                        close ? "Connection: close\r\n" : "");
    if (!head_only && res->status != 204 && res->body_len)
        evbuffer_add(out, res->body, res->body_len);
}

static void add_slice(struct evbuffer *out, gt_slice s)
{
    evbuffer_add(out, s.p, s.len);
}

static void add_field(struct evbuffer *out, gt_slice name, gt_slice value)
{
    add_slice(out, name);
    evbuffer_add(out, ": ", 2);
    add_slice(out, value);
    evbuffer_add(out, "\r\n", 2);
}

/* The longest origin a trimmed Referer keeps (scheme://host:port); a longer one is dropped
 * rather than trimmed: no real origin is that long. */
#define REFERER_ORIGIN_MAX 600

/* Writes the trimmed Referer (scheme://host[:port]/, never userinfo) or nothing. */
static void add_trimmed_referer(struct evbuffer *out, gt_slice name, gt_slice value)
{
    gt_slice o = gt_rules_referer_origin(value);
    const char *sep = o.len ? memmem(o.p, o.len, "://", 3) : NULL;
    if (!sep)
        return; /* no origin to keep: the field goes */
    const char *auth = sep + 3, *end = o.p + o.len;
    const char *at = memrchr(auth, '@', (size_t)(end - auth));
    if (at)
        auth = at + 1;
    size_t slen = (size_t)(sep + 3 - o.p), alen = (size_t)(end - auth);
    if (!alen || slen + alen + 1 > REFERER_ORIGIN_MAX)
        return;
    add_slice(out, name);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, o.p, slen);
    evbuffer_add(out, auth, alen);
    evbuffer_add(out, "/\r\n", 3);
}

/* What a rewrite decision does to one request field: false keep it as it is; true it was
 * dropped, or its replacement is already written to out. Nothing on the stack is sized by
 * the input: a filtered Cookie goes through the heap. */
static bool rewrite_field(const gt_decision *d, gt_slice name, gt_slice value,
                          struct evbuffer *out)
{
    /* X-Gretel is gretel's own answer header: a client's copy never goes upstream */
    if (gt_slice_caseeq(name, GT_S("x-gretel")))
        return true;
    if (!d)
        return false;
    bool cookie_ops = false;
    for (size_t i = 0; i < d->nhdr_ops; i++) {
        const gt_hdr_op *op = &d->hdr_ops[i];
        switch (op->kind) {
        case GT_HDR_REMOVE:
        case GT_HDR_SET: /* re-emitted once after the copied fields */
            if (gt_slice_caseeq(name, op->name))
                return true;
            break;
        case GT_HDR_REMOVE_COOKIE:
            cookie_ops = cookie_ops || gt_slice_caseeq(name, GT_S("cookie"));
            break;
        case GT_HDR_TRIM_REFERER:
            if (gt_slice_caseeq(name, GT_S("referer"))) {
                add_trimmed_referer(out, name, value);
                return true;
            }
            break;
        }
    }
    if (!cookie_ops)
        return false;
    /* kept cookies are re-joined with "; ": at most twice the input */
    char *buf = gt_xmalloc(2 * value.len + 2);
    size_t n = gt_rules_filter_cookies(d, value, buf);
    if (n)
        add_field(out, name, gt_slice_make(buf, n));
    free(buf);
    return true;
}

/* Copies fields except hop-by-hop ones, those named by Connection, those the caller
 * re-emits itself (Host, framing), and what a rewrite decision removes or replaces. */
static void copy_fields(struct evbuffer *out, const gt_http1_header *h, size_t n, bool drop_host,
                        bool drop_cl, const gt_decision *d, bool is_request, bool drop_alt_svc)
{
    /* Most messages have no Connection field, or only "close"/"keep-alive": then no other
     * field can be listed in it and the per-field lookup (quadratic in the field count) is
     * skipped. */
    bool lists_others = false;
    for (size_t i = 0; i < n && !lists_others; i++) {
        if (!gt_slice_caseeq(h[i].name, GT_S("connection")))
            continue;
        gt_slice rest = h[i].value, item;
        while (gt_slice_next(&rest, ',', &item)) {
            gt_slice t = gt_slice_trim(item);
            if (t.len && !gt_slice_caseeq(t, GT_S("close")) &&
                !gt_slice_caseeq(t, GT_S("keep-alive")))
                lists_others = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        gt_slice name = h[i].name;
        if (gt_http1_is_hop_by_hop(name))
            continue;
        if (drop_host && gt_slice_caseeq(name, GT_S("host")))
            continue;
        if (drop_cl && gt_slice_caseeq(name, GT_S("content-length")))
            continue;
        /* An intercepted browser that learns Alt-Svc: h3 would leave the proxy for QUIC. */
        if (drop_alt_svc && gt_slice_caseeq(name, GT_S("alt-svc")))
            continue;
        if (lists_others && gt_http1_connection_lists(h, n, name))
            continue;
        if (is_request && rewrite_field(d, name, h[i].value, out))
            continue;
        add_field(out, name, h[i].value);
    }
    for (size_t i = 0; d && i < d->nhdr_ops; i++)
        if (d->hdr_ops[i].kind == GT_HDR_SET) {
            add_slice(out, d->hdr_ops[i].name);
            evbuffer_add(out, ": ", 2);
            add_slice(out, d->hdr_ops[i].value);
            evbuffer_add(out, "\r\n", 2);
        }
}

static void add_authority(struct evbuffer *out, const gt_http1_uri *uri, uint16_t default_port)
{
    if (uri->host_is_ipv6)
        evbuffer_add(out, "[", 1);
    add_slice(out, uri->host);
    if (uri->host_is_ipv6)
        evbuffer_add(out, "]", 1);
    if (uri->port != default_port)
        evbuffer_add_printf(out, ":%u", uri->port);
}

void gt_proxy_request_head(struct evbuffer *out, const gt_http1_request *req,
                           const gt_http1_uri *uri, bool absolute_form,
                           const gt_http1_body *body, const gt_decision *d, bool websocket)
{
    uint16_t defport = uri->is_https ? 443 : 80;
    add_slice(out, req->method);
    evbuffer_add(out, " ", 1);
    if (absolute_form) {
        add_slice(out, uri->scheme);
        evbuffer_add(out, "://", 3);
        add_authority(out, uri, defport);
    }
    gt_slice path = d && d->path_changed ? d->new_path : uri->path;
    if (path.len == 0 || path.p[0] != '/')
        evbuffer_add(out, "/", 1);
    add_slice(out, path);
    evbuffer_add(out, " HTTP/1.1\r\nHost: ", 17);
    add_authority(out, uri, defport);
    evbuffer_add(out, "\r\n", 2);
    /* Content-Length is re-emitted once, normalised ("5, 5" becomes "5"). */
    copy_fields(out, req->headers, req->num_headers, true, true, d, true, false);
    if (body->framing == GT_BODY_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    else if (body->framing == GT_BODY_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)body->length);
    else if (gt_slice_caseeq(req->method, GT_S("POST")) ||
             gt_slice_caseeq(req->method, GT_S("PUT")))
        /* a body-less POST/PUT still states its length, as RFC 9110 §8.6 asks of senders */
        evbuffer_add(out, "Content-Length: 0\r\n", 19);
    /* hop-by-hop, so re-emitted for this hop: the one upgrade gretel relays */
    static const char upgrade[] = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
    if (websocket)
        evbuffer_add(out, upgrade, sizeof(upgrade) - 1);
    evbuffer_add(out, "\r\n", 2);
}

bool gt_proxy_is_websocket_upgrade(const gt_http1_request *req)
{
    if (!gt_slice_eq(req->method, GT_S("GET")) || req->minor_version != 1)
        return false;
    bool conn_upgrade = false, ws = false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const gt_http1_header *h = &req->headers[i];
        if (gt_slice_caseeq(h->name, GT_S("connection"))) {
            gt_slice rest = h->value, item;
            while (gt_slice_next(&rest, ',', &item))
                if (gt_slice_caseeq(gt_slice_trim(item), GT_S("upgrade")))
                    conn_upgrade = true;
        } else if (gt_slice_caseeq(h->name, GT_S("upgrade"))) {
            ws = gt_slice_caseeq(gt_slice_trim(h->value), GT_S("websocket"));
        }
    }
    return conn_upgrade && ws;
}

void gt_proxy_switching_head(struct evbuffer *out, const gt_http1_response *res)
{
    static const char status[] = "HTTP/1.1 101 Switching Protocols\r\n";
    static const char upgrade[] = "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    evbuffer_add(out, status, sizeof(status) - 1);
    copy_fields(out, res->headers, res->num_headers, false, true, NULL, false, false);
    evbuffer_add(out, upgrade, sizeof(upgrade) - 1);
}

void gt_proxy_response_head(struct evbuffer *out, const gt_http1_response *res,
                            const gt_http1_body *body, bool close, bool client_is_10,
                            bool dechunk, bool intercepted)
{
    evbuffer_add_printf(out, "HTTP/1.1 %d ", res->status);
    if (res->reason.len)
        add_slice(out, res->reason);
    else
        evbuffer_add_printf(out, "%s", gt_http_reason(res->status));
    evbuffer_add(out, "\r\n", 2);
    /* Content-Length stays as sent for bodiless responses (HEAD, 304) where it describes
     * the representation; otherwise it is re-emitted to match the relayed framing. */
    bool drop_cl = body->framing != GT_BODY_NONE || body->had_cl_and_te;
    copy_fields(out, res->headers, res->num_headers, false, drop_cl, NULL, false, intercepted);
    if (body->framing == GT_BODY_CHUNKED && !dechunk)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    else if (body->framing == GT_BODY_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)body->length);
    if (res->status >= 200) {
        if (close)
            evbuffer_add(out, "Connection: close\r\n", 19);
        else if (client_is_10)
            evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    }
    evbuffer_add(out, "\r\n", 2);
}

size_t gt_proxy_h2_request_fields(const char *head, size_t len, nghttp2_nv *nv, size_t cap,
                                  char *lower, size_t lower_cap)
{
    gt_http1_header hdrs[256];
    gt_http1_request req = {.headers = hdrs, .num_headers = 256};
    gt_http1_error err;
    if (cap < 4 || gt_http1_parse_request(head, len, &req, &err) != (int)len)
        return 0;
    gt_slice authority = GT_S("");
    for (size_t i = 0; i < req.num_headers; i++)
        if (gt_slice_caseeq(hdrs[i].name, GT_S("host")))
            authority = hdrs[i].value;
    size_t n = 0, lo = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)req.method.p, 7, req.method.len, 0};
    nv[n++] = (nghttp2_nv){(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0};
    nv[n++] = (nghttp2_nv){(uint8_t *)":authority", (uint8_t *)authority.p, 10, authority.len, 0};
    nv[n++] = (nghttp2_nv){(uint8_t *)":path", (uint8_t *)req.target.p, 5, req.target.len, 0};
    for (size_t i = 0; i < req.num_headers; i++) {
        gt_slice name = hdrs[i].name;
        if (gt_slice_caseeq(name, GT_S("host")) || gt_slice_caseeq(name, GT_S("transfer-encoding")) ||
            gt_http1_is_hop_by_hop(name))
            continue;
        if (n >= cap || lo + name.len > lower_cap)
            return 0;
        for (size_t k = 0; k < name.len; k++)
            lower[lo + k] = gt_ascii_lower(name.p[k]);
        nv[n++] = (nghttp2_nv){(uint8_t *)lower + lo, (uint8_t *)hdrs[i].value.p, name.len,
                               hdrs[i].value.len, 0};
        lo += name.len;
    }
    return n;
}

/* --- a page's product ids as its response passes --- */

struct gt_sniff *gt_proxy_sniff_start(const gt_http1_header *h, size_t n, bool chunked)
{
    gt_slice ct = GT_S(""), ce = GT_S("");
    for (size_t i = 0; i < n; i++) {
        if (gt_slice_caseeq(h[i].name, GT_S("content-type")))
            ct = h[i].value;
        else if (gt_slice_caseeq(h[i].name, GT_S("content-encoding")))
            ce = h[i].value;
    }
    return gt_sniff_new(ct, ce, chunked);
}

void gt_proxy_sniff_tail(struct gt_sniff *s, struct evbuffer *b, size_t from)
{
    size_t len = evbuffer_get_length(b);
    struct evbuffer_ptr at;
    if (!s || len <= from || evbuffer_ptr_set(b, &at, from, EVBUFFER_PTR_SET) < 0)
        return;
    /* the bytes are read where they lie (no copy) */
    struct evbuffer_iovec v[8];
    int n = evbuffer_peek(b, (ev_ssize_t)(len - from), &at, v, 8);
    while (n > 0) {
        int k = n < 8 ? n : 8;
        size_t got = 0;
        for (int i = 0; i < k; i++) {
            gt_sniff_feed(s, v[i].iov_base, v[i].iov_len);
            got += v[i].iov_len;
        }
        from += got;
        if (from >= len || k == n || evbuffer_ptr_set(b, &at, from, EVBUFFER_PTR_SET) < 0)
            break;
        n = evbuffer_peek(b, (ev_ssize_t)(len - from), &at, v, 8);
    }
}

void gt_proxy_sniff_finish(struct gt_shared *sh, struct gt_sniff *s, const char *url,
                           gt_slice host, bool complete)
{
    if (s && complete && url) {
        char keys[8][GT_SNIFF_KEY_MAX], site[256];
        size_t sl = gt_rules_registrable_domain(sh->psl, host, site, sizeof(site));
        size_t n = gt_sniff_keys(s, gt_slice_make(site, sl), keys, 8);
        if (n)
            gt_control_note_page(sh->control, gt_slice_cstr(url), keys, n);
    }
    gt_sniff_free(s);
}
