/* Unit tests for src/http1/chunked.c: decoding split at every byte, and every malformed
 * framing gretel must refuse to forward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "gretel/http1.h"
#include "gretel/util.h"

/* Decodes `in` fed in pieces of `step` bytes; returns the status and the data in out. */
static int decode(const char *in, size_t len, size_t step, char *out, size_t *outlen,
                  size_t *consumed)
{
    gt_http1_chunked c;
    gt_http1_chunked_init(&c);
    size_t pos = 0, o = 0;
    int r = GT_CHUNKED_MORE;
    while (pos < len) {
        size_t avail = len - pos < step ? len - pos : step;
        if (c.data_left) {
            size_t n = avail < c.data_left ? avail : (size_t)c.data_left;
            memcpy(out + o, in + pos, n);
            o += n;
            pos += n;
            gt_http1_chunked_consumed(&c, n);
            continue;
        }
        size_t used;
        gt_http1_error err;
        r = gt_http1_chunked_feed(&c, in + pos, avail, &used, &err);
        pos += used;
        if (r == GT_HTTP1_ERROR || r == GT_CHUNKED_DONE)
            break;
    }
    *outlen = o;
    *consumed = pos;
    return r;
}

static void test_valid_every_split(void **st)
{
    (void)st;
    const char *in = "5;ext=\"v\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                     "X-Trailer: t\r\n\r\nNEXT";
    size_t len = strlen(in);
    for (size_t step = 1; step <= len; step++) {
        char out[128];
        size_t ol, used;
        int r = decode(in, len, step, out, &ol, &used);
        assert_int_equal(r, GT_CHUNKED_DONE);
        assert_int_equal(ol, 31);
        assert_memory_equal(out, "helloabcdefghijklmnopqrstuvwxyz", 31);
        assert_int_equal(used, len - 4); /* stops before the next message */
    }
}

static void test_bws_before_ext(void **st)
{
    (void)st;
    const char *in = "3 ;x\r\nabc\r\n0\r\n\r\n";
    char out[16];
    size_t ol, used;
    assert_int_equal(decode(in, strlen(in), 64, out, &ol, &used), GT_CHUNKED_DONE);
}

static const char *const bad[] = {
    "x\r\n",                                   /* not hex */
    "\r\n",                                    /* empty size */
    "-1\r\n",                                  /* sign */
    "10000000000000000\r\n",                   /* 17 digits: overflow */
    "fffffffffffffffff\r\n",                   /* overflow */
    "5\nhello\r\n0\r\n\r\n",                   /* bare LF after size */
    "5\rhello\r\n0\r\n\r\n",                   /* bare CR after size */
    "5\r\nhelloX\r\n0\r\n\r\n",                /* data longer than size */
    "5\r\nhello\n0\r\n\r\n",                   /* bare LF after data */
    "5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n",      /* bare LF in trailer */
    "5\r\nhello\r\n0\r\n folded\r\n\r\n",      /* obs-fold in trailer */
    "5 x\r\nhello\r\n0\r\n\r\n",               /* junk after size */
    "5;\001\r\nhello\r\n0\r\n\r\n",            /* control in extension */
    "5\r\nhello\r\n0\r\n\r\r",                 /* bare CR at end */
};

static void test_invalid(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[64];
        size_t ol, used;
        int r = decode(bad[i], strlen(bad[i]), 1, out, &ol, &used);
        if (r != GT_HTTP1_ERROR)
            fail_msg("accepted case %zu: %s", i, bad[i]);
    }
}

static void test_trailer_cap(void **st)
{
    (void)st;
    char in[40000];
    size_t n = (size_t)snprintf(in, sizeof(in), "0\r\nX: ");
    memset(in + n, 'a', 20000);
    n += 20000;
    memcpy(in + n, "\r\n\r\n", 4);
    n += 4;
    char out[8];
    size_t ol, used;
    assert_int_equal(decode(in, n, 4096, out, &ol, &used), GT_HTTP1_ERROR);
}

static void test_large_size(void **st)
{
    (void)st;
    gt_http1_chunked c;
    gt_http1_chunked_init(&c);
    size_t used;
    gt_http1_error err;
    const char *in = "3FFFFFFFFFFFFFFF\r\n";
    assert_int_equal(gt_http1_chunked_feed(&c, in, strlen(in), &used, &err), GT_CHUNKED_DATA);
    assert_int_equal(c.data_left, 0x3FFFFFFFFFFFFFFFull);
    gt_http1_chunked_init(&c);
    in = "4000000000000000\r\n"; /* 2^62: over the cap */
    assert_int_equal(gt_http1_chunked_feed(&c, in, strlen(in), &used, &err), GT_HTTP1_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_every_split), cmocka_unit_test(test_bws_before_ext),
        cmocka_unit_test(test_invalid),           cmocka_unit_test(test_trailer_cap),
        cmocka_unit_test(test_large_size),
    };
    return cmocka_run_group_tests_name("http1_chunked", tests, NULL, NULL);
}
