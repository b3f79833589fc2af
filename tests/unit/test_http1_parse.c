/* Unit tests for src/http1/parse.c: request/response heads, framing, targets. Table-driven:
 * every smuggling vector gretel rejects has a row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "gretel/http1.h"
#include "gretel/util.h"

#define CAP 32

static int parse_req(const char *s, gt_http1_request *req, gt_http1_header *h,
                     gt_http1_error *err)
{
    req->headers = h;
    req->num_headers = CAP;
    return gt_http1_parse_request(s, strlen(s), req, err);
}

static void test_simple_get(void **st)
{
    (void)st;
    gt_http1_header h[CAP];
    gt_http1_request req;
    gt_http1_error err;
    const char *s = "GET http://a.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\n"
                    "Accept:  */*  \r\n\r\nTRAILING";
    int r = parse_req(s, &req, h, &err);
    assert_int_equal(r, (int)(strstr(s, "TRAILING") - s));
    assert_true(gt_slice_eq(req.method, GT_S("GET")));
    assert_true(gt_slice_eq(req.target, GT_S("http://a.example/x?y=1")));
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.num_headers, 2);
    assert_true(gt_slice_eq(h[1].name, GT_S("Accept")));
    assert_true(gt_slice_eq(h[1].value, GT_S("*/*")));
}

static void test_incomplete_every_prefix(void **st)
{
    (void)st;
    const char *s = "POST http://a/ HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    size_t n = strlen(s);
    gt_http1_header h[CAP];
    for (size_t i = 0; i < n; i++) {
        gt_http1_request req = {.headers = h, .num_headers = CAP};
        gt_http1_error err;
        assert_int_equal(gt_http1_parse_request(s, i, &req, &err), GT_HTTP1_INCOMPLETE);
    }
    gt_http1_request req = {.headers = h, .num_headers = CAP};
    gt_http1_error err;
    assert_int_equal(gt_http1_parse_request(s, n, &req, &err), (int)n);
    assert_int_equal(req.minor_version, 0);
}

static void test_leading_crlf_skipped(void **st)
{
    (void)st;
    gt_http1_header h[CAP];
    gt_http1_request req;
    gt_http1_error err;
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(parse_req(s, &req, h, &err), (int)strlen(s));
    assert_true(gt_slice_eq(req.method, GT_S("GET")));
}

static const struct bad_case {
    const char *name, *head;
    int status;
} bad_requests[] = {
    {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n", 400},
    {"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
    {"bare LF line end", "GET / HTTP/1.1\nHost: x\n\n", 400},
    {"bare LF in header", "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400},
    {"bare CR in value", "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400},
    {"bare CR in start line", "GET / HTTP/1.1\rHost: x\r\n\r\n", 400},
    {"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\001b\r\n\r\n", 400},
    {"invalid name char", "GET / HTTP/1.1\r\nHo(st: x\r\n\r\n", 400},
    {"empty name", "GET / HTTP/1.1\r\n: x\r\n\r\n", 400},
    {"no version", "GET /\r\n\r\n", 400},
    {"double space", "GET  / HTTP/1.1\r\n\r\n", 400},
    {"lowercase proto", "GET / http/1.1\r\n\r\n", 400},
    {"http2 version", "GET / HTTP/2.0\r\n\r\n", 505},
    {"junk after version", "GET / HTTP/1.1x\r\n\r\n", 400},
    {"space in target", "GET /a b HTTP/1.1\r\n\r\n", 400},
    {"control in target", "GET /a\001 HTTP/1.1\r\n\r\n", 400},
    {"bad method", "G(T / HTTP/1.1\r\n\r\n", 400},
    {"leading space", " GET / HTTP/1.1\r\n\r\n", 400},
};

static void test_bad_requests(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++) {
        gt_http1_header h[CAP];
        gt_http1_request req;
        gt_http1_error err = {0};
        int r = parse_req(bad_requests[i].head, &req, h, &err);
        if (r != GT_HTTP1_ERROR || err.status != bad_requests[i].status)
            fail_msg("%s: r=%d status=%d", bad_requests[i].name, r, err.status);
        assert_non_null(err.reason);
    }
}

static void test_too_many_headers(void **st)
{
    (void)st;
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < CAP + 1; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    gt_http1_header h[CAP];
    gt_http1_request req;
    gt_http1_error err;
    assert_int_equal(parse_req(buf, &req, h, &err), GT_HTTP1_ERROR);
    assert_int_equal(err.status, 431);
}

static int body_of(const char *head, gt_http1_body *b, gt_http1_error *err)
{
    gt_http1_header h[CAP];
    gt_http1_request req;
    int r = parse_req(head, &req, h, err);
    assert_true(r > 0);
    return gt_http1_request_body(&req, b, err);
}

static const struct framing_case {
    const char *name, *head;
    int ok; /* 1 ok, else the error status */
    enum gt_http1_framing framing;
    uint64_t length;
} framing_cases[] = {
    {"none", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1, GT_BODY_NONE, 0},
    {"cl", "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", 1, GT_BODY_LENGTH, 12},
    {"cl zero", "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1, GT_BODY_NONE, 0},
    {"cl list same", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 1, GT_BODY_LENGTH, 5},
    {"cl twice same", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 1,
     GT_BODY_LENGTH, 5},
    {"cl differing", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, 0,
     0},
    {"cl list differing", "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", 400, 0, 0},
    {"cl negative", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, 0, 0},
    {"cl plus", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400, 0, 0},
    {"cl hex", "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", 400, 0, 0},
    {"cl huge", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, 0, 0},
    {"cl empty", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400, 0, 0},
    {"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 1, GT_BODY_CHUNKED, 0},
    {"chunked case", "POST / HTTP/1.1\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", 1, GT_BODY_CHUNKED,
     0},
    {"cl+te", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     0, 0},
    {"te not final", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, 0, 0},
    {"te twice chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n", 400, 0, 0},
    {"te identity", "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 400, 0, 0},
    {"te gzip chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, 0, 0},
    {"te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0},
    {"te chunked-false", "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 400, 0, 0},
};

static void test_request_framing(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(framing_cases) / sizeof(framing_cases[0]); i++) {
        const struct framing_case *c = &framing_cases[i];
        gt_http1_body b;
        gt_http1_error err = {0};
        int r = body_of(c->head, &b, &err);
        if (c->ok == 1) {
            if (r != 0 || b.framing != c->framing || (c->length && b.length != c->length))
                fail_msg("%s: r=%d framing=%d len=%llu", c->name, r, b.framing,
                         (unsigned long long)b.length);
        } else if (r != GT_HTTP1_ERROR || err.status != c->ok) {
            fail_msg("%s: expected %d, got r=%d status=%d", c->name, c->ok, r, err.status);
        }
    }
}

static void test_connection_tokens(void **st)
{
    (void)st;
    gt_http1_body b;
    gt_http1_error err;
    assert_int_equal(body_of("GET / HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n", &b, &err), 0);
    assert_true(b.conn_keep_alive);
    assert_int_equal(body_of("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n", &b, &err), 0);
    assert_true(b.conn_close);
    assert_int_equal(body_of("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
                             &b, &err), 0);
    assert_true(b.expect_continue);
}

static void test_response(void **st)
{
    (void)st;
    gt_http1_header h[CAP];
    gt_http1_response res = {.headers = h, .num_headers = CAP};
    gt_http1_error err;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    int r = gt_http1_parse_response(s, strlen(s), &res, &err);
    assert_int_equal(r, (int)strlen(s) - 5);
    assert_int_equal(res.status, 200);
    gt_http1_body b;
    assert_int_equal(gt_http1_response_body(&res, false, &b, &err), 0);
    assert_int_equal(b.framing, GT_BODY_LENGTH);
    assert_int_equal(b.length, 5);
    assert_true(b.conn_close);
    assert_int_equal(gt_http1_response_body(&res, true, &b, &err), 0);
    assert_int_equal(b.framing, GT_BODY_NONE);

    const char *nr = "HTTP/1.1 204\r\n\r\n";
    res.num_headers = CAP;
    assert_int_equal(gt_http1_parse_response(nr, strlen(nr), &res, &err), (int)strlen(nr));
    assert_int_equal(res.status, 204);
    assert_int_equal(gt_http1_response_body(&res, false, &b, &err), 0);
    assert_int_equal(b.framing, GT_BODY_NONE);

    const char *eof = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    res.num_headers = CAP;
    assert_true(gt_http1_parse_response(eof, strlen(eof), &res, &err) > 0);
    assert_int_equal(gt_http1_response_body(&res, false, &b, &err), 0);
    assert_int_equal(b.framing, GT_BODY_EOF);

    const char *both = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    res.num_headers = CAP;
    assert_true(gt_http1_parse_response(both, strlen(both), &res, &err) > 0);
    assert_int_equal(gt_http1_response_body(&res, false, &b, &err), 0);
    assert_int_equal(b.framing, GT_BODY_CHUNKED);
    assert_true(b.had_cl_and_te);

    const char *bad = "HTTP/1.1 2x0 OK\r\n\r\n";
    res.num_headers = CAP;
    assert_int_equal(gt_http1_parse_response(bad, strlen(bad), &res, &err), GT_HTTP1_ERROR);
    assert_int_equal(err.status, 502);
}

static void test_absolute_targets(void **st)
{
    (void)st;
    gt_http1_uri u;
    gt_http1_error err;
    assert_int_equal(gt_http1_parse_absolute(GT_S("http://Example.COM:8080/a?b"), &u, &err), 0);
    assert_true(gt_slice_eq(u.host, GT_S("Example.COM")));
    assert_int_equal(u.port, 8080);
    assert_true(gt_slice_eq(u.path, GT_S("/a?b")));
    assert_int_equal(gt_http1_parse_absolute(GT_S("http://[::1]/"), &u, &err), 0);
    assert_true(u.host_is_ipv6);
    assert_true(gt_slice_eq(u.host, GT_S("::1")));
    assert_int_equal(u.port, 80);
    assert_int_equal(gt_http1_parse_absolute(GT_S("http://h?q"), &u, &err), 0);
    assert_true(gt_slice_eq(u.path, GT_S("?q")));
    assert_int_equal(gt_http1_parse_absolute(GT_S("https://h/"), &u, &err), 0);
    assert_true(u.is_https);
    assert_int_equal(u.port, 443);
    const char *bad[] = {"ftp://h/", "http://u:p@h/", "http://h:0/", "http://h:70000/",
                         "http://h/#frag", "http://h_%/", "http:///x", "http://h:x/",
                         "http://127..1/", "http://1.2.3/", "http://.a.example/",
                         "http://a..example/", "http://[1::2::3]/", "http://300.1.1.1/",
                         "http://[::1/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (gt_http1_parse_absolute(gt_slice_cstr(bad[i]), &u, &err) != GT_HTTP1_ERROR)
            fail_msg("accepted %s", bad[i]);
    const char *good[] = {"http://a.example./", "http://x-1.a_b.example/", "http://10.0.0.1/",
                          "http://[::ffff:1.2.3.4]/", "http://3com.example/"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (gt_http1_parse_absolute(gt_slice_cstr(good[i]), &u, &err) != 0)
            fail_msg("rejected %s", good[i]);
    assert_int_equal(gt_http1_parse_authority(GT_S("h.example:443"), &u, &err), 0);
    assert_int_equal(u.port, 443);
    assert_int_equal(gt_http1_parse_authority(GT_S("[2001:db8::1]:8443"), &u, &err), 0);
    assert_int_equal(u.port, 8443);
    assert_int_equal(gt_http1_parse_authority(GT_S("h.example"), &u, &err), GT_HTTP1_ERROR);
    assert_int_equal(gt_http1_parse_authority(GT_S("h/x:443"), &u, &err), GT_HTTP1_ERROR);
}

static void test_hop_by_hop(void **st)
{
    (void)st;
    const char *hop[] = {"Connection", "keep-alive", "Proxy-Connection", "Proxy-Authorization",
                         "TE", "Trailer", "Upgrade", "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        assert_true(gt_http1_is_hop_by_hop(gt_slice_cstr(hop[i])));
    assert_false(gt_http1_is_hop_by_hop(GT_S("Host")));
    assert_false(gt_http1_is_hop_by_hop(GT_S("Cookie")));
    gt_http1_header h[1] = {{GT_S("Connection"), GT_S("close, X-Secret")}};
    assert_true(gt_http1_connection_lists(h, 1, GT_S("x-secret")));
    assert_false(gt_http1_connection_lists(h, 1, GT_S("x-other")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),        cmocka_unit_test(test_incomplete_every_prefix),
        cmocka_unit_test(test_leading_crlf_skipped), cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_too_many_headers),  cmocka_unit_test(test_request_framing),
        cmocka_unit_test(test_connection_tokens), cmocka_unit_test(test_response),          cmocka_unit_test(test_absolute_targets),
        cmocka_unit_test(test_hop_by_hop),
    };
    return cmocka_run_group_tests_name("http1_parse", tests, NULL, NULL);
}
