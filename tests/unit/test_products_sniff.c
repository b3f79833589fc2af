/* src/products/sniff.c: the product ids a page declares in its schema.org JSON-LD, read
 * from the response body as it passes: plain, chunked, gzip and deflate, split anywhere;
 * what it must not read (not HTML, brotli) and what it must survive (broken JSON, a page
 * past the 1 MiB it keeps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "gretel/products.h"

static const char page[] =
    "<!doctype html><html><head><title>Zeder candle</title>\n"
    "<script type=\"application/ld+json\">{\"@context\":\"https://schema.org\","
    "\"@type\":\"Product\",\"name\":\"Zeder candle\",\"gtin13\":\"4006381333931\","
    "\"sku\":\"ZC-42\",\"offers\":{\"@type\":\"Offer\",\"sku\":\"ZC-42-RED\",\"price\":\"9.90\"}}"
    "</script>\n<script>var x = '<script>';</script>\n"
    "<SCRIPT TYPE='application/ld+json'>{\"@graph\":[{\"@type\":\"BreadcrumbList\"},"
    "{\"@type\":[\"Product\",\"Thing\"],\"gtin\":12345678905,\"productID\":\"isbn:316148410X\"}]}"
    "</SCRIPT>\n<script type=\"application/ld+json\">{ broken json </script>\n"
    "</head><body>...</body></html>\n";

static size_t keys_of(gt_sniff *s, char (*keys)[GT_SNIFF_KEY_MAX])
{
    return gt_sniff_keys(s, GT_S("shop.example"), keys, 8);
}

static void check_page_keys(char (*keys)[GT_SNIFF_KEY_MAX], size_t n)
{
    assert_int_equal(n, 5);
    assert_string_equal(keys[0], "gtin:04006381333931");
    assert_string_equal(keys[1], "shop.example:ZC-42");
    assert_string_equal(keys[2], "shop.example:ZC-42-RED"); /* offers.sku */
    assert_string_equal(keys[3], "gtin:00012345678905");    /* a number, zeros restored */
    assert_string_equal(keys[4], "isbn:9783161484100");     /* productID "isbn:..." */
}

/* Feeds data in pieces of every size from 1 to 97 bytes, cycling. */
static void feed_split(gt_sniff *s, const void *data, size_t n)
{
    const char *p = data;
    size_t step = 1;
    while (n) {
        size_t k = step < n ? step : n;
        gt_sniff_feed(s, p, k);
        p += k;
        n -= k;
        step = step % 97 + 1;
    }
}

static void test_plain_and_split(void **st)
{
    (void)st;
    char keys[8][GT_SNIFF_KEY_MAX];
    gt_sniff *s = gt_sniff_new(GT_S("text/html; charset=utf-8"), GT_S(""), false);
    assert_non_null(s);
    feed_split(s, page, sizeof(page) - 1);
    check_page_keys(keys, keys_of(s, keys));
    gt_sniff_free(s);
}

static void test_chunked(void **st)
{
    (void)st;
    char body[8192];
    size_t o = 0, left = sizeof(page) - 1;
    const char *p = page;
    while (left) {
        size_t k = left < 100 ? left : 100;
        o += (size_t)sprintf(body + o, "%zx;ext=1\r\n", k);
        memcpy(body + o, p, k);
        o += k;
        memcpy(body + o, "\r\n", 2);
        o += 2;
        p += k;
        left -= k;
    }
    o += (size_t)sprintf(body + o, "0\r\nX-Trailer: 1\r\n\r\n");
    char keys[8][GT_SNIFF_KEY_MAX];
    gt_sniff *s = gt_sniff_new(GT_S("text/html"), GT_S("identity"), true);
    feed_split(s, body, o);
    check_page_keys(keys, keys_of(s, keys));
    gt_sniff_free(s);
}

static size_t deflated(const char *in, size_t n, unsigned char *out, size_t cap, int window)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, window, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    return len;
}

static void test_gzip_and_deflate(void **st)
{
    (void)st;
    unsigned char z[8192];
    char keys[8][GT_SNIFF_KEY_MAX];
    /* gzip (windowBits 31), chunked on top, as nginx sends it */
    size_t zn = deflated(page, sizeof(page) - 1, z, sizeof(z), 31);
    char body[16384];
    size_t o = 0;
    for (size_t i = 0; i < zn; i += 64) {
        size_t k = zn - i < 64 ? zn - i : 64;
        o += (size_t)sprintf(body + o, "%zX\r\n", k);
        memcpy(body + o, z + i, k);
        o += k;
        memcpy(body + o, "\r\n", 2);
        o += 2;
    }
    memcpy(body + o, "0\r\n\r\n", 5);
    o += 5;
    gt_sniff *s = gt_sniff_new(GT_S("text/html"), GT_S("gzip"), true);
    feed_split(s, body, o);
    check_page_keys(keys, keys_of(s, keys));
    gt_sniff_free(s);
    /* deflate (zlib wrapper, windowBits 15) */
    zn = deflated(page, sizeof(page) - 1, z, sizeof(z), 15);
    s = gt_sniff_new(GT_S("text/html"), GT_S("deflate"), false);
    feed_split(s, z, zn);
    check_page_keys(keys, keys_of(s, keys));
    gt_sniff_free(s);
    /* a stream cut short still gives what was decoded; garbage gives nothing, safely */
    zn = deflated(page, sizeof(page) - 1, z, sizeof(z), 31);
    s = gt_sniff_new(GT_S("text/html"), GT_S("gzip"), false);
    gt_sniff_feed(s, z, zn / 2);
    (void)keys_of(s, keys);
    gt_sniff_free(s);
    s = gt_sniff_new(GT_S("text/html"), GT_S("gzip"), false);
    gt_sniff_feed(s, "not gzip at all", 15);
    assert_int_equal(keys_of(s, keys), 0);
    gt_sniff_free(s);
}

static void test_what_it_does_not_read(void **st)
{
    (void)st;
    assert_null(gt_sniff_new(GT_S("application/json"), GT_S(""), false));
    assert_null(gt_sniff_new(GT_S("image/png"), GT_S(""), false));
    assert_null(gt_sniff_new(GT_S("text/html"), GT_S("br"), false));
    assert_null(gt_sniff_new(GT_S("text/html"), GT_S("gzip, br"), false));
    assert_null(gt_sniff_new(GT_S(""), GT_S(""), false));
    /* a page with no Product, and ids that are no valid keys */
    char keys[8][GT_SNIFF_KEY_MAX];
    static const char other[] =
        "<script type=\"application/ld+json\">{\"@type\":\"Organization\",\"sku\":\"X\"}</script>"
        "<script type=\"application/ld+json\">{\"@type\":\"Product\",\"gtin13\":\"4006381333932\","
        "\"sku\":\"\"}</script>";
    gt_sniff *s = gt_sniff_new(GT_S("text/html"), GT_S(""), false);
    gt_sniff_feed(s, other, sizeof(other) - 1);
    assert_int_equal(keys_of(s, keys), 0); /* wrong check digit, empty sku */
    gt_sniff_free(s);
    /* shop ids need the page's domain */
    s = gt_sniff_new(GT_S("text/html"), GT_S(""), false);
    gt_sniff_feed(s, page, sizeof(page) - 1);
    assert_int_equal(gt_sniff_keys(s, GT_S(""), keys, 8), 3);
    gt_sniff_free(s);
}

static void test_limits(void **st)
{
    (void)st;
    /* the product data past the first MiB is not seen; a huge body costs nothing more */
    char keys[8][GT_SNIFF_KEY_MAX];
    gt_sniff *s = gt_sniff_new(GT_S("text/html"), GT_S(""), false);
    char *filler = malloc(1 << 16);
    memset(filler, 'a', 1 << 16);
    for (int i = 0; i < 20; i++)
        gt_sniff_feed(s, filler, 1 << 16);
    gt_sniff_feed(s, page, sizeof(page) - 1);
    assert_int_equal(keys_of(s, keys), 0);
    gt_sniff_free(s);
    /* an unclosed script and a deep JSON nest end quietly */
    s = gt_sniff_new(GT_S("text/html"), GT_S(""), false);
    static const char open[] = "<script type=\"application/ld+json\">{\"@type\":\"Product\"";
    gt_sniff_feed(s, open, sizeof(open) - 1);
    assert_int_equal(keys_of(s, keys), 0);
    gt_sniff_free(s);
    s = gt_sniff_new(GT_S("text/html"), GT_S(""), false);
    gt_sniff_feed(s, "<script type=\"application/ld+json\">", 35);
    for (int i = 0; i < 5000; i++)
        gt_sniff_feed(s, "[", 1);
    gt_sniff_feed(s, "</script>", 9);
    assert_int_equal(keys_of(s, keys), 0);
    gt_sniff_free(s);
    free(filler);
    gt_sniff_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_split),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_gzip_and_deflate),
        cmocka_unit_test(test_what_it_does_not_read),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
