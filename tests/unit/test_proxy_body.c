/* Unit tests for src/proxy/body.c: every framing, bodies split across arrivals, the output
 * cap, bytes of the next message left in place, de-chunking, and framing errors. */
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

#include "gretel/proxy.h"
#include "gretel/util.h"

static size_t take(struct evbuffer *b, char *dst, size_t cap)
{
    size_t n = evbuffer_get_length(b);
    assert_true(n < cap);
    evbuffer_remove(b, dst, n);
    dst[n] = '\0';
    return n;
}

/* Feeds `wire` in pieces of `step` bytes and returns what came out. */
static int run(enum gt_http1_framing f, uint64_t len, bool dechunk, const char *wire,
               size_t step, char *out, size_t cap, size_t *left_in, bool *done)
{
    gt_http1_body body = {.framing = f, .length = len};
    gt_body_relay r;
    gt_body_relay_init(&r, &body, dechunk);
    struct evbuffer *in = evbuffer_new(), *o = evbuffer_new();
    size_t n = strlen(wire), pos = 0;
    uint64_t moved = 0;
    int rv = 0;
    while (pos < n && rv == 0 && !r.done) {
        size_t k = n - pos < step ? n - pos : step;
        evbuffer_add(in, wire + pos, k);
        pos += k;
        gt_http1_error err;
        rv = gt_body_relay_move(&r, in, o, 1 << 20, &moved, &err);
    }
    *left_in = evbuffer_get_length(in) + (n - pos);
    *done = r.done;
    take(o, out, cap);
    evbuffer_free(in);
    evbuffer_free(o);
    return rv;
}

/* De-chunking with a trailer buffer: the trailer section (and only it, with its final
 * CRLF) is kept aside, whatever the split; without one it is dropped. */
static void test_dechunk_keeps_trailers(void **st)
{
    (void)st;
    const char *wire = "3;x=1\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\nNEXT";
    for (size_t step = 1; step < 40; step++) {
        gt_http1_body body = {.framing = GT_BODY_CHUNKED};
        gt_body_relay r;
        gt_body_relay_init(&r, &body, true);
        struct evbuffer *in = evbuffer_new(), *o = evbuffer_new(), *t = evbuffer_new();
        r.trailers = t;
        size_t n = strlen(wire), pos = 0;
        uint64_t moved = 0;
        while (pos < n && !r.done) {
            size_t k = n - pos < step ? n - pos : step;
            evbuffer_add(in, wire + pos, k);
            pos += k;
            gt_http1_error err;
            assert_int_equal(gt_body_relay_move(&r, in, o, 1 << 20, &moved, &err), 0);
        }
        assert_true(r.done);
        char out[64];
        take(o, out, sizeof(out));
        assert_string_equal(out, "abc");
        take(t, out, sizeof(out));
        assert_string_equal(out, "X-Sum: 1\r\nY: 2\r\n\r\n");
        evbuffer_free(in);
        evbuffer_free(o);
        evbuffer_free(t);
    }
}

static void test_length(void **st)
{
    (void)st;
    char out[256];
    size_t left;
    bool done;
    for (size_t step = 1; step < 20; step++) {
        assert_int_equal(run(GT_BODY_LENGTH, 11, false, "hello worldGET / ...", step, out,
                             sizeof(out), &left, &done), 0);
        assert_string_equal(out, "hello world");
        assert_true(done);
        assert_int_equal(left, 9); /* the pipelined request stays */
    }
}

static void test_chunked_passthrough_and_dechunk(void **st)
{
    (void)st;
    const char *wire = "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\nNEXT";
    char out[256];
    size_t left;
    bool done;
    for (size_t step = 1; step < 12; step++) {
        assert_int_equal(run(GT_BODY_CHUNKED, 0, false, wire, step, out, sizeof(out), &left,
                             &done), 0);
        assert_string_equal(out, "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n");
        assert_true(done);
        assert_int_equal(left, 4);
        assert_int_equal(run(GT_BODY_CHUNKED, 0, true, wire, step, out, sizeof(out), &left,
                             &done), 0);
        assert_string_equal(out, "hello world");
        assert_true(done);
    }
}

static void test_eof_and_none(void **st)
{
    (void)st;
    char out[256];
    size_t left;
    bool done;
    assert_int_equal(run(GT_BODY_EOF, 0, false, "all of it", 3, out, sizeof(out), &left, &done),
                     0);
    assert_string_equal(out, "all of it");
    assert_false(done); /* only the connection's end finishes it */
    assert_int_equal(run(GT_BODY_NONE, 0, false, "GET / next", 3, out, sizeof(out), &left,
                         &done), 0);
    assert_string_equal(out, "");
    assert_true(done);
    assert_int_equal(left, 10);
}

static void test_bad_chunk_stops(void **st)
{
    (void)st;
    char out[256];
    size_t left;
    bool done;
    assert_int_equal(run(GT_BODY_CHUNKED, 0, false, "3\r\nabc\r\nzz\r\n", 64, out, sizeof(out),
                         &left, &done), GT_HTTP1_ERROR);
    assert_false(done);
    assert_null(strstr(out, "zz")); /* nothing after the bad byte went out */
}

static void test_output_cap(void **st)
{
    (void)st;
    gt_http1_body body = {.framing = GT_BODY_LENGTH, .length = 300000};
    gt_body_relay r;
    gt_body_relay_init(&r, &body, false);
    struct evbuffer *in = evbuffer_new(), *o = evbuffer_new();
    char *blob = calloc(1, 300000);
    evbuffer_add(in, blob, 100000);
    evbuffer_add(in, blob, 200000);
    free(blob);
    uint64_t moved = 0;
    gt_http1_error err;
    assert_int_equal(gt_body_relay_move(&r, in, o, 50000, &moved, &err), 0);
    assert_true(evbuffer_get_length(o) >= 50000);
    assert_false(r.done);
    evbuffer_drain(o, evbuffer_get_length(o));
    while (!r.done) {
        assert_int_equal(gt_body_relay_move(&r, in, o, 1 << 20, &moved, &err), 0);
    }
    assert_int_equal(moved, 300000);
    evbuffer_free(in);
    evbuffer_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length),
        cmocka_unit_test(test_dechunk_keeps_trailers),
        cmocka_unit_test(test_chunked_passthrough_and_dechunk),
        cmocka_unit_test(test_eof_and_none),
        cmocka_unit_test(test_bad_chunk_stops),
        cmocka_unit_test(test_output_cap),
    };
    return cmocka_run_group_tests_name("proxy_body", tests, NULL, NULL);
}
