/* Unit tests for src/proxy/heads.c: what gretel forwards. Hop-by-hop fields and those the
 * Connection field names never reach the origin; nothing is added about the user. */
#include <nghttp2/nghttp2.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "gretel/http1.h"
#include "gretel/proxy.h"
#include "gretel/util.h"

/* Takes everything out of `out` (and frees it) as a NUL-terminated string. */
static char *drain_str(struct evbuffer *out)
{
    size_t n = evbuffer_get_length(out);
    char *s = malloc(n + 1);
    evbuffer_remove(out, s, n);
    s[n] = '\0';
    evbuffer_free(out);
    return s;
}

static char *head_with(const char *raw, bool absolute, const gt_decision *d);

static char *head_for(const char *raw, bool absolute)
{
    return head_with(raw, absolute, NULL);
}

static char *head_with(const char *raw, bool absolute, const gt_decision *d)
{
    gt_http1_header h[64];
    gt_http1_request req = {.headers = h, .num_headers = 64};
    gt_http1_error err;
    assert_true(gt_http1_parse_request(raw, strlen(raw), &req, &err) > 0);
    gt_http1_uri uri;
    assert_int_equal(gt_http1_parse_absolute(req.target, &uri, &err), 0);
    gt_http1_body b;
    assert_int_equal(gt_http1_request_body(&req, &b, &err), 0);
    struct evbuffer *out = evbuffer_new();
    gt_proxy_request_head(out, &req, &uri, absolute, &b, d, gt_proxy_is_websocket_upgrade(&req));
    return drain_str(out);
}

/* A rewrite decision: the new path, removed and set fields, cookies, a trimmed Referer;
 * and X-Gretel from a client never goes upstream. */
static void test_request_head_rewrites(void **st)
{
    (void)st;
    gt_decision d;
    memset(&d, 0, sizeof(d));
    d.action = GT_DECIDE_REWRITE;
    d.path_changed = true;
    d.new_path = GT_S("/p?keep=1");
    d.hdr_ops[0] = (gt_hdr_op){.kind = GT_HDR_REMOVE, .name = GT_S("x-track")};
    d.hdr_ops[1] = (gt_hdr_op){.kind = GT_HDR_SET, .name = GT_S("DNT"), .value = GT_S("1")};
    d.hdr_ops[2] = (gt_hdr_op){.kind = GT_HDR_REMOVE_COOKIE, .name = GT_S("tid")};
    d.hdr_ops[3] = (gt_hdr_op){.kind = GT_HDR_TRIM_REFERER, .name = GT_S("referer")};
    d.nhdr_ops = 4;
    char *s = head_with("GET http://o.example/p?utm_source=x&keep=1 HTTP/1.1\r\n"
                        "Host: o.example\r\nX-Track: 1\r\nDNT: 0\r\nX-Gretel: spoof\r\n"
                        "Cookie: a=1; tid=2\r\nReferer: https://news.example/a/b?c\r\n\r\n",
                        false, &d);
    assert_string_equal(s, "GET /p?keep=1 HTTP/1.1\r\nHost: o.example\r\nCookie: a=1\r\n"
                           "Referer: https://news.example/\r\nDNT: 1\r\n\r\n");
    free(s);
    /* a Cookie field left empty is dropped, not sent empty */
    d.nhdr_ops = 3;
    s = head_with("GET http://o.example/ HTTP/1.1\r\nHost: o.example\r\nCookie: tid=2\r\n\r\n",
                  false, &d);
    assert_null(strstr(s, "Cookie"));
    free(s);
    /* trim-referer keeps scheme and authority, never userinfo, and drops an origin longer
     * than any real one (a 20,000-byte userinfo overflowed a stack buffer before) */
    d.hdr_ops[0] = (gt_hdr_op){.kind = GT_HDR_TRIM_REFERER, .name = GT_S("referer")};
    d.nhdr_ops = 1;
    s = head_with("GET http://o.example/ HTTP/1.1\r\nHost: o.example\r\n"
                  "Referer: http://user:pw@news.example:8080/a?b\r\n\r\n", false, &d);
    assert_non_null(strstr(s, "\r\nReferer: http://news.example:8080/\r\n"));
    free(s);
    size_t n = 20000;
    char *raw = malloc(n + 200);
    int k = snprintf(raw, n + 200, "GET http://o.example/ HTTP/1.1\r\nHost: o.example\r\n"
                                   "Referer: http://");
    memset(raw + k, 'u', n);
    memcpy(raw + k + n, "@news.example/x\r\n\r\n", sizeof("@news.example/x\r\n\r\n"));
    s = head_with(raw, false, &d);
    assert_non_null(strstr(s, "\r\nReferer: http://news.example/\r\n"));
    free(s);
    k = snprintf(raw, n + 200, "GET http://o.example/ HTTP/1.1\r\nHost: o.example\r\n"
                               "Referer: http://");
    memset(raw + k, 'h', 700);
    memcpy(raw + k + 700, ".example/x\r\n\r\n", sizeof(".example/x\r\n\r\n"));
    s = head_with(raw, false, &d);
    assert_null(strstr(s, "Referer"));
    free(s);
    free(raw);
}

/* A WebSocket opening handshake keeps its upgrade for the next hop; other upgrades (h2c)
 * and Connection-listed fields go. */
static void test_websocket_upgrade_head(void **st)
{
    (void)st;
    char *s = head_for("GET http://o.example/ws HTTP/1.1\r\nHost: o.example\r\n"
                       "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n", false);
    assert_string_equal(s, "GET /ws HTTP/1.1\r\nHost: o.example\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n"
                           "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    free(s);
    s = head_for("GET http://o.example/ HTTP/1.1\r\nHost: o.example\r\n"
                 "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                 "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", false);
    assert_string_equal(s, "GET / HTTP/1.1\r\nHost: o.example\r\n\r\n");
    free(s);
    s = head_for("POST http://o.example/ws HTTP/1.1\r\nHost: o.example\r\n"
                 "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
                 false);
    assert_null(strstr(s, "Upgrade"));
    free(s);
}

static void test_block_response(void **st)
{
    (void)st;
    struct evbuffer *out = evbuffer_new();
    gt_proxy_block_response(out, gt_rules_resource(GT_RESP_204, GT_TYPE_PING),
                            "block; rule=a.rules:3", false, false);
    char *s = drain_str(out);
    assert_string_equal(s, "HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\n"
                           "X-Gretel: block; rule=a.rules:3\r\n\r\n");
    free(s);
    out = evbuffer_new();
    gt_proxy_block_response(out, gt_rules_resource(GT_RESP_JS, GT_TYPE_SCRIPT),
                            "redirect; rule=b.rules:9", true, true);
    s = drain_str(out);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\n"
                           "Content-Length: 18\r\nCache-Control: no-store\r\n"
                           "X-Gretel: redirect; rule=b.rules:9\r\nConnection: close\r\n\r\n");
    free(s);
}

static void test_request_head(void **st)
{
    (void)st;
    char *s = head_for("GET http://Origin.example:8080/p?q=1 HTTP/1.1\r\n"
                       "Host: wrong.example\r\n"
                       "Proxy-Connection: keep-alive\r\n"
                       "Proxy-Authorization: Basic eA==\r\n"
                       "Connection: X-Drop, keep-alive\r\n"
                       "X-Drop: secret\r\n"
                       "Keep-Alive: 300\r\n"
                       "TE: trailers\r\n"
                       "Upgrade: websocket\r\n"
                       "Cookie: a=b\r\n\r\n",
                       false);
    assert_string_equal(s, "GET /p?q=1 HTTP/1.1\r\nHost: Origin.example:8080\r\n"
                           "Cookie: a=b\r\n\r\n");
    free(s);
}

static void test_request_head_absolute_and_body(void **st)
{
    (void)st;
    char *s = head_for("POST http://h?x HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n", true);
    assert_string_equal(s, "POST http://h/?x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n");
    free(s);
    s = head_for("PUT http://[::1]:81/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                 false);
    assert_string_equal(s, "PUT / HTTP/1.1\r\nHost: [::1]:81\r\nTransfer-Encoding: chunked\r\n\r\n");
    free(s);
    s = head_for("POST http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", false);
    assert_non_null(strstr(s, "Content-Length: 0\r\n"));
    assert_null(strstr(s, "Via"));
    assert_null(strstr(s, "Forwarded"));
    free(s);
}

static char *resp_for_x(const char *raw, bool head_req, bool close, bool c10, bool intercepted)
{
    gt_http1_header h[64];
    gt_http1_response res = {.headers = h, .num_headers = 64};
    gt_http1_error err;
    assert_true(gt_http1_parse_response(raw, strlen(raw), &res, &err) > 0);
    gt_http1_body b;
    assert_int_equal(gt_http1_response_body(&res, head_req, &b, &err), 0);
    struct evbuffer *out = evbuffer_new();
    gt_proxy_response_head(out, &res, &b, close, c10, c10 && b.framing == GT_BODY_CHUNKED,
                           intercepted);
    return drain_str(out);
}

static char *resp_for(const char *raw, bool head_req, bool close, bool c10)
{
    return resp_for_x(raw, head_req, close, c10, false);
}

static void test_response_head(void **st)
{
    (void)st;
    char *s = resp_for("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                       "Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nETag: \"e\"\r\n\r\n",
                       false, false, false);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nTransfer-Encoding: chunked\r\n\r\n");
    free(s);
    /* HTTP/1.0 client: no chunking, close */
    s = resp_for("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, true, true);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    free(s);
    /* HEAD keeps the representation's Content-Length */
    s = resp_for("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true, false, false);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    free(s);
    /* CL with TE: CL dropped */
    s = resp_for("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
                 false, true, false);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    free(s);
    /* Alt-Svc passes on plain HTTP; inside interception it would lead the browser to QUIC,
     * around the proxy, so it is dropped there */
    const char *alt = "HTTP/1.1 200 OK\r\nAlt-Svc: h3=\":443\"\r\nContent-Length: 0\r\n\r\n";
    s = resp_for_x(alt, false, false, false, false);
    assert_non_null(strstr(s, "Alt-Svc: h3"));
    free(s);
    s = resp_for_x(alt, false, false, false, true);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    free(s);
}

static void test_h2_request_fields(void **st)
{
    (void)st;
    static const char head[] = "POST /a/b?x=1 HTTP/1.1\r\nHost: shop.example:8443\r\n"
                               "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                               "X-Mixed-Case: V\r\nConnection: keep-alive\r\nTE: trailers\r\n"
                               "Cookie: a=1; b=2\r\n\r\n";
    nghttp2_nv nv[16];
    char lower[256];
    size_t n = gt_proxy_h2_request_fields(head, sizeof(head) - 1, nv, 16, lower, sizeof(lower));
    /* pseudo-fields first, then the regular ones lower-cased; no Host, TE, Connection or
     * Transfer-Encoding (RFC 9113 §8.2.2) */
    const char *want[][2] = {{":method", "POST"}, {":scheme", "https"},
                             {":authority", "shop.example:8443"}, {":path", "/a/b?x=1"},
                             {"content-type", "text/plain"}, {"x-mixed-case", "V"},
                             {"cookie", "a=1; b=2"}};
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(nv[i].namelen, strlen(want[i][0]));
        assert_memory_equal(nv[i].name, want[i][0], nv[i].namelen);
        assert_int_equal(nv[i].valuelen, strlen(want[i][1]));
        assert_memory_equal(nv[i].value, want[i][1], nv[i].valuelen);
    }
    /* too small a table, or a head that does not parse: 0, never a partial list */
    assert_int_equal(gt_proxy_h2_request_fields(head, sizeof(head) - 1, nv, 5, lower,
                                                sizeof(lower)), 0);
    assert_int_equal(gt_proxy_h2_request_fields(head, sizeof(head) - 1, nv, 16, lower, 8), 0);
    assert_int_equal(gt_proxy_h2_request_fields("GET / HTTP/1.1\r\n", 16, nv, 16, lower,
                                                sizeof(lower)), 0);
}

static void test_local_response(void **st)
{
    (void)st;
    struct evbuffer *out = evbuffer_new();
    gt_proxy_error_response(out, 502, "connection refused", false, true);
    size_t n = evbuffer_get_length(out);
    char s[1024];
    evbuffer_remove(out, s, n);
    s[n] = '\0';
    assert_non_null(strstr(s, "HTTP/1.1 502 Bad Gateway\r\n"));
    assert_non_null(strstr(s, "Connection: close\r\n"));
    assert_non_null(strstr(s, "\r\n\r\ngretel: 502 Bad Gateway: connection refused\n"));
    evbuffer_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_request_head_rewrites),
        cmocka_unit_test(test_websocket_upgrade_head),
        cmocka_unit_test(test_block_response),
        cmocka_unit_test(test_request_head_absolute_and_body),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_local_response),
        cmocka_unit_test(test_h2_request_fields),
    };
    return cmocka_run_group_tests_name("proxy_heads", tests, NULL, NULL);
}
