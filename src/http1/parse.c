/* Strict HTTP/1.x head parser (RFC 9110 §5, RFC 9112 §2-§6): request and status lines,
 * field lines, body framing, absolute-form and authority-form targets. Owns nothing, never
 * allocates, never reads past `len`. Everything a request-smuggling attack needs to be
 * ambiguous (bare CR or LF, obs-fold, whitespace before the colon, CL with TE, differing CL,
 * non-final chunked) is an error here, so the proxy never forwards it. */
#include <arpa/inet.h>
#include <string.h>

#include "gretel/http1.h"
#include "gretel/util.h"

/* tchar per RFC 9110 §5.6.2 */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* field-vchar, SP, HTAB, obs-text (RFC 9110 §5.5): everything but CTLs other than HTAB. */
static inline bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* request-target bytes: visible ASCII; raw bytes >= 0x80 are tolerated since some clients
 * send unencoded UTF-8 and forwarding them changes nothing about message framing. */
static inline bool is_target_char(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

static int fail(gt_http1_error *err, int status, const char *reason, size_t off)
{
    err->status = status;
    err->reason = reason;
    err->offset = off;
    return GT_HTTP1_ERROR;
}

/* Parses field lines from `pos` to the empty line. Returns the head length. */
static int parse_fields(const char *buf, size_t len, size_t pos, gt_http1_header *hdrs,
                        size_t *num, int bad_status, gt_http1_error *err)
{
    size_t cap = *num, n = 0;
    for (;;) {
        if (pos >= len)
            return GT_HTTP1_INCOMPLETE;
        unsigned char c = (unsigned char)buf[pos];
        if (c == '\r') {
            if (pos + 1 >= len)
                return GT_HTTP1_INCOMPLETE;
            if (buf[pos + 1] != '\n')
                return fail(err, bad_status, "bare CR in header block", pos);
            *num = n;
            return (int)(pos + 2);
        }
        if (c == '\n')
            return fail(err, bad_status, "bare LF in header block", pos);
        if (c == ' ' || c == '\t')
            return fail(err, bad_status, "obsolete line folding (obs-fold) is not accepted", pos);
        size_t name_start = pos;
        while (pos < len && tchar[(unsigned char)buf[pos]])
            pos++;
        if (pos >= len)
            return GT_HTTP1_INCOMPLETE;
        if (buf[pos] != ':') {
            if (buf[pos] == ' ' || buf[pos] == '\t')
                return fail(err, bad_status, "whitespace between header name and colon", pos);
            return fail(err, bad_status, "invalid character in header name", pos);
        }
        if (pos == name_start)
            return fail(err, bad_status, "empty header name", pos);
        size_t name_end = pos++;
        while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t'))
            pos++;
        size_t val_start = pos;
        /* Fast scan of the value: stop at the first byte that is not a plain field char. */
        while (pos < len && is_field_char((unsigned char)buf[pos]))
            pos++;
        if (pos >= len)
            return GT_HTTP1_INCOMPLETE;
        if (buf[pos] == '\n')
            return fail(err, bad_status, "bare LF in header value", pos);
        if (buf[pos] != '\r')
            return fail(err, bad_status, "control character in header value", pos);
        if (pos + 1 >= len)
            return GT_HTTP1_INCOMPLETE;
        if (buf[pos + 1] != '\n')
            return fail(err, bad_status, "bare CR in header value", pos);
        size_t val_end = pos;
        while (val_end > val_start && (buf[val_end - 1] == ' ' || buf[val_end - 1] == '\t'))
            val_end--;
        if (n == cap)
            return fail(err, bad_status == 400 ? 431 : bad_status, "too many header fields",
                        name_start);
        hdrs[n].name = gt_slice_make(buf + name_start, name_end - name_start);
        hdrs[n].value = gt_slice_make(buf + val_start, val_end - val_start);
        n++;
        pos += 2;
    }
}

/* "HTTP/1.x" at buf+pos; returns minor version, or INCOMPLETE / ERROR. */
static int parse_version(const char *buf, size_t len, size_t pos, int bad_status,
                         gt_http1_error *err)
{
    static const char proto[] = "HTTP/";
    for (size_t i = 0; i < 8; i++) {
        if (pos + i >= len)
            return GT_HTTP1_INCOMPLETE;
        char c = buf[pos + i];
        if (i < 5) {
            if (c != proto[i])
                return fail(err, bad_status, "invalid HTTP version", pos + i);
        } else if (i == 6) {
            if (c != '.')
                return fail(err, bad_status, "invalid HTTP version", pos + i);
        } else if (c < '0' || c > '9') {
            return fail(err, bad_status, "invalid HTTP version", pos + i);
        }
    }
    if (buf[pos + 5] != '1')
        return fail(err, bad_status == 400 ? 505 : bad_status, "HTTP version not supported",
                    pos + 5);
    /* HTTP/1.x with x > 1 is handled as 1.1 (RFC 9110 §2.5). */
    return buf[pos + 7] == '0' ? 0 : 1;
}

static int expect_crlf(const char *buf, size_t len, size_t pos, int bad_status,
                       gt_http1_error *err)
{
    if (pos >= len)
        return GT_HTTP1_INCOMPLETE;
    if (buf[pos] != '\r')
        return fail(err, bad_status,
                    buf[pos] == '\n' ? "bare LF ends the start line" : "junk after HTTP version",
                    pos);
    if (pos + 1 >= len)
        return GT_HTTP1_INCOMPLETE;
    if (buf[pos + 1] != '\n')
        return fail(err, bad_status, "bare CR in start line", pos);
    return 0;
}

int gt_http1_parse_request(const char *buf, size_t len, gt_http1_request *req,
                           gt_http1_error *err)
{
    size_t pos = 0;
    /* RFC 9112 §2.2: ignore empty lines before the request line (some clients send an extra
     * CRLF after a body). Bounded by the caller's header cap like any other byte. */
    while (pos < len && buf[pos] == '\r') {
        if (pos + 1 >= len)
            return GT_HTTP1_INCOMPLETE;
        if (buf[pos + 1] != '\n')
            return fail(err, 400, "bare CR before request line", pos);
        pos += 2;
    }
    size_t m0 = pos;
    while (pos < len && tchar[(unsigned char)buf[pos]])
        pos++;
    if (pos >= len)
        return GT_HTTP1_INCOMPLETE;
    if (buf[pos] != ' ' || pos == m0)
        return fail(err, 400, "invalid request method", pos);
    req->method = gt_slice_make(buf + m0, pos - m0);
    size_t t0 = ++pos;
    while (pos < len && is_target_char((unsigned char)buf[pos]))
        pos++;
    if (pos >= len)
        return GT_HTTP1_INCOMPLETE;
    if (buf[pos] != ' ' || pos == t0)
        return fail(err, 400,
                    (buf[pos] == '\r' || buf[pos] == '\n') ? "request line without HTTP version"
                                                          : "invalid character in request target",
                    pos);
    req->target = gt_slice_make(buf + t0, pos - t0);
    pos++;
    int minor = parse_version(buf, len, pos, 400, err);
    if (minor < 0)
        return minor;
    req->minor_version = minor;
    pos += 8;
    int r = expect_crlf(buf, len, pos, 400, err);
    if (r < 0)
        return r;
    pos += 2;
    return parse_fields(buf, len, pos, req->headers, &req->num_headers, 400, err);
}

int gt_http1_parse_response(const char *buf, size_t len, gt_http1_response *res,
                            gt_http1_error *err)
{
    size_t pos = 0;
    int minor = parse_version(buf, len, pos, 502, err);
    if (minor < 0)
        return minor;
    res->minor_version = minor;
    pos = 8;
    if (pos >= len)
        return GT_HTTP1_INCOMPLETE;
    if (buf[pos] != ' ')
        return fail(err, 502, "invalid status line", pos);
    pos++;
    int status = 0;
    for (int i = 0; i < 3; i++, pos++) {
        if (pos >= len)
            return GT_HTTP1_INCOMPLETE;
        if (buf[pos] < '0' || buf[pos] > '9')
            return fail(err, 502, "invalid status code", pos);
        status = status * 10 + (buf[pos] - '0');
    }
    if (status < 100)
        return fail(err, 502, "invalid status code", pos - 3);
    res->status = status;
    if (pos >= len)
        return GT_HTTP1_INCOMPLETE;
    size_t r0 = pos;
    if (buf[pos] == ' ') {
        r0 = ++pos;
        while (pos < len && is_field_char((unsigned char)buf[pos]))
            pos++;
    }
    /* A missing reason phrase (and its SP) is common enough in the wild to tolerate. */
    res->reason = gt_slice_make(buf + r0, pos - r0);
    int r = expect_crlf(buf, len, pos, 502, err);
    if (r < 0)
        return r;
    pos += 2;
    return parse_fields(buf, len, pos, res->headers, &res->num_headers, 502, err);
}

/* --- framing --- */

typedef struct {
    bool has_cl, has_te, te_chunked_last, te_other, te_chunked_twice, cl_bad;
    uint64_t cl;
    bool close, keep_alive, expect_continue;
} framing_scan;

/* Largest Content-Length accepted: far beyond any real body, far from overflow. */
#define CL_MAX (1ull << 62)

static void scan_framing(const gt_http1_header *h, size_t n, framing_scan *s)
{
    memset(s, 0, sizeof(*s));
    bool chunked_seen = false;
    for (size_t i = 0; i < n; i++) {
        gt_slice name = h[i].name;
        if (gt_slice_caseeq(name, GT_S("content-length"))) {
            /* A list of identical values ("5, 5") is one value (RFC 9110 §8.6). */
            gt_slice rest = h[i].value, item;
            if (rest.len == 0)
                s->cl_bad = true;
            while (gt_slice_next(&rest, ',', &item)) {
                uint64_t v;
                if (gt_parse_u64(gt_slice_trim(item), CL_MAX, &v) < 0) {
                    s->cl_bad = true;
                    continue;
                }
                if (s->has_cl && v != s->cl)
                    s->cl_bad = true;
                s->has_cl = true;
                s->cl = v;
            }
        } else if (gt_slice_caseeq(name, GT_S("transfer-encoding"))) {
            s->has_te = true;
            gt_slice rest = h[i].value, item;
            while (gt_slice_next(&rest, ',', &item)) {
                gt_slice t = gt_slice_trim(item);
                if (t.len == 0)
                    continue;
                if (gt_slice_caseeq(t, GT_S("chunked"))) {
                    if (chunked_seen)
                        s->te_chunked_twice = true;
                    chunked_seen = true;
                    s->te_chunked_last = true;
                } else {
                    s->te_other = true;
                    s->te_chunked_last = false;
                }
            }
        } else if (gt_slice_caseeq(name, GT_S("connection")) ||
                   gt_slice_caseeq(name, GT_S("proxy-connection"))) {
            /* Proxy-Connection is how HTTP/1.0-era clients ask a proxy for keep-alive;
             * it means the same for the client's hop and is never forwarded. */
            gt_slice rest = h[i].value, item;
            while (gt_slice_next(&rest, ',', &item)) {
                gt_slice t = gt_slice_trim(item);
                if (gt_slice_caseeq(t, GT_S("close")))
                    s->close = true;
                else if (gt_slice_caseeq(t, GT_S("keep-alive")))
                    s->keep_alive = true;
            }
        } else if (gt_slice_caseeq(name, GT_S("expect"))) {
            if (gt_slice_caseeq(h[i].value, GT_S("100-continue")))
                s->expect_continue = true;
        }
    }
}

int gt_http1_request_body(const gt_http1_request *req, gt_http1_body *body, gt_http1_error *err)
{
    framing_scan s;
    scan_framing(req->headers, req->num_headers, &s);
    memset(body, 0, sizeof(*body));
    body->conn_close = s.close;
    body->conn_keep_alive = s.keep_alive;
    body->expect_continue = s.expect_continue;
    if (s.has_te) {
        if (s.has_cl)
            return fail(err, 400, "both Content-Length and Transfer-Encoding", 0);
        if (req->minor_version == 0)
            return fail(err, 400, "Transfer-Encoding in an HTTP/1.0 request", 0);
        if (s.te_chunked_twice)
            return fail(err, 400, "chunked applied twice", 0);
        if (!s.te_chunked_last)
            return fail(err, 400, "chunked is not the final transfer coding", 0);
        if (s.te_other)
            return fail(err, 501, "transfer coding not implemented (only chunked)", 0);
        body->framing = GT_BODY_CHUNKED;
        return 0;
    }
    if (s.cl_bad)
        return fail(err, 400, "invalid or conflicting Content-Length", 0);
    if (s.has_cl && s.cl > 0) {
        body->framing = GT_BODY_LENGTH;
        body->length = s.cl;
    } else {
        body->framing = GT_BODY_NONE;
    }
    return 0;
}

int gt_http1_response_body(const gt_http1_response *res, bool request_was_head,
                           gt_http1_body *body, gt_http1_error *err)
{
    framing_scan s;
    scan_framing(res->headers, res->num_headers, &s);
    memset(body, 0, sizeof(*body));
    body->conn_close = s.close;
    body->conn_keep_alive = s.keep_alive;
    if (request_was_head || res->status < 200 || res->status == 204 || res->status == 304) {
        body->framing = GT_BODY_NONE;
        return 0;
    }
    if (s.has_te) {
        if (s.te_chunked_twice)
            return fail(err, 502, "chunked applied twice in response", 0);
        body->had_cl_and_te = s.has_cl;
        /* A response whose final coding is not chunked is delimited by close (§6.3 item 4). */
        body->framing = s.te_chunked_last ? GT_BODY_CHUNKED : GT_BODY_EOF;
        return 0;
    }
    if (s.cl_bad)
        return fail(err, 502, "invalid or conflicting Content-Length in response", 0);
    if (s.has_cl) {
        body->framing = s.cl ? GT_BODY_LENGTH : GT_BODY_NONE;
        body->length = s.cl;
        return 0;
    }
    body->framing = GT_BODY_EOF;
    return 0;
}

bool gt_http1_is_hop_by_hop(gt_slice n)
{
    switch (n.len) {
    case 2:
        return gt_slice_caseeq(n, GT_S("te"));
    case 7:
        return gt_slice_caseeq(n, GT_S("trailer")) || gt_slice_caseeq(n, GT_S("upgrade"));
    case 10:
        return gt_slice_caseeq(n, GT_S("connection")) || gt_slice_caseeq(n, GT_S("keep-alive"));
    case 16:
        return gt_slice_caseeq(n, GT_S("proxy-connection"));
    case 17:
        return gt_slice_caseeq(n, GT_S("transfer-encoding"));
    case 18:
        return gt_slice_caseeq(n, GT_S("proxy-authenticate"));
    case 19:
        return gt_slice_caseeq(n, GT_S("proxy-authorization"));
    default:
        return false;
    }
}

bool gt_http1_connection_lists(const gt_http1_header *h, size_t n, gt_slice name)
{
    for (size_t i = 0; i < n; i++) {
        if (!gt_slice_caseeq(h[i].name, GT_S("connection")))
            continue;
        gt_slice rest = h[i].value, item;
        while (gt_slice_next(&rest, ',', &item))
            if (gt_slice_caseeq(gt_slice_trim(item), name))
                return true;
    }
    return false;
}

/* --- targets --- */

bool gt_http1_host_valid(gt_slice host, bool ipv6)
{
    if (host.len == 0 || host.len > 253)
        return false;
    if (ipv6) {
        char buf[64];
        unsigned char a[16];
        if (host.len >= sizeof(buf))
            return false;
        memcpy(buf, host.p, host.len);
        buf[host.len] = '\0';
        return inet_pton(AF_INET6, buf, a) == 1;
    }
    /* DNS names: labels of 1..63 letters, digits, '-' or '_', separated by single dots
     * (one trailing dot allowed). A name whose last label is numeric must be a valid IPv4
     * literal: "127..1" or "1.2.3" would otherwise go to a name server as a query. */
    size_t label = 0;
    bool last_numeric = true;
    for (size_t i = 0; i < host.len; i++) {
        char c = host.p[i];
        if (c == '.') {
            if (label == 0)
                return false;
            if (i + 1 < host.len) {
                label = 0;
                last_numeric = true;
            }
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '_')
            return false;
        if (!(c >= '0' && c <= '9'))
            last_numeric = false;
        if (++label > 63)
            return false;
    }
    if (last_numeric) {
        char buf[64];
        unsigned char a[4];
        size_t n = host.len;
        if (n && host.p[n - 1] == '.')
            n--;
        if (n >= sizeof(buf))
            return false;
        memcpy(buf, host.p, n);
        buf[n] = '\0';
        return inet_pton(AF_INET, buf, a) == 1;
    }
    return true;
}

static int parse_hostport(gt_slice a, bool require_port, uint16_t def_port, gt_http1_uri *uri,
                          gt_http1_error *err)
{
    gt_slice host, port = GT_S("");
    uri->host_is_ipv6 = false;
    if (a.len && a.p[0] == '[') {
        const char *rb = memchr(a.p, ']', a.len);
        if (!rb)
            return fail(err, 400, "unterminated IPv6 literal in target", 0);
        host = gt_slice_make(a.p + 1, (size_t)(rb - a.p - 1));
        gt_slice after = gt_slice_make(rb + 1, (size_t)(a.p + a.len - rb - 1));
        if (after.len) {
            if (after.p[0] != ':')
                return fail(err, 400, "junk after IPv6 literal", 0);
            port = gt_slice_make(after.p + 1, after.len - 1);
            if (port.len == 0 && require_port)
                return fail(err, 400, "missing port", 0);
        }
        uri->host_is_ipv6 = true;
    } else {
        const char *colon = memchr(a.p, ':', a.len);
        if (colon) {
            host = gt_slice_make(a.p, (size_t)(colon - a.p));
            port = gt_slice_make(colon + 1, (size_t)(a.p + a.len - colon - 1));
        } else {
            host = a;
        }
    }
    if (!gt_http1_host_valid(host, uri->host_is_ipv6))
        return fail(err, 400, "invalid host in request target", 0);
    uint64_t pn = def_port;
    if (port.len) {
        if (gt_parse_u64(port, 65535, &pn) < 0 || pn == 0)
            return fail(err, 400, "invalid port in request target", 0);
    } else if (require_port) {
        return fail(err, 400, "CONNECT target needs host:port", 0);
    }
    uri->host = host;
    uri->port = (uint16_t)pn;
    return 0;
}

int gt_http1_parse_absolute(gt_slice t, gt_http1_uri *uri, gt_http1_error *err)
{
    memset(uri, 0, sizeof(*uri));
    size_t skip;
    if (t.len >= 7 && gt_slice_caseeq(gt_slice_make(t.p, 7), GT_S("http://"))) {
        skip = 7;
        uri->scheme = gt_slice_make(t.p, 4);
    } else if (t.len >= 8 && gt_slice_caseeq(gt_slice_make(t.p, 8), GT_S("https://"))) {
        skip = 8;
        uri->scheme = gt_slice_make(t.p, 5);
        uri->is_https = true;
    } else {
        return fail(err, 400, "unsupported scheme in request target (http only)", 0);
    }
    const char *a0 = t.p + skip, *end = t.p + t.len, *p = a0;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    gt_slice auth = gt_slice_make(a0, (size_t)(p - a0));
    if (memchr(auth.p, '@', auth.len))
        return fail(err, 400, "credentials in request target are not accepted", skip);
    if (memchr(t.p, '#', t.len))
        return fail(err, 400, "fragment in request target", 0);
    int r = parse_hostport(auth, false, uri->is_https ? 443 : 80, uri, err);
    if (r < 0)
        return r;
    uri->path = gt_slice_make(p, (size_t)(end - p));
    return 0;
}

bool gt_http1_is_token(gt_slice s)
{
    if (!s.len)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!tchar[(unsigned char)s.p[i]])
            return false;
    return true;
}

int gt_http1_parse_host_field(gt_slice t, uint16_t def_port, gt_http1_uri *uri,
                              gt_http1_error *err)
{
    memset(uri, 0, sizeof(*uri));
    if (!t.len || memchr(t.p, '/', t.len) || memchr(t.p, '@', t.len) ||
        memchr(t.p, '?', t.len) || memchr(t.p, '#', t.len))
        return fail(err, 400, "Host must be host[:port]", 0);
    return parse_hostport(t, false, def_port, uri, err);
}

int gt_http1_parse_authority(gt_slice t, gt_http1_uri *uri, gt_http1_error *err)
{
    memset(uri, 0, sizeof(*uri));
    if (memchr(t.p, '/', t.len) || memchr(t.p, '@', t.len))
        return fail(err, 400, "CONNECT target must be host:port", 0);
    return parse_hostport(t, true, 0, uri, err);
}
