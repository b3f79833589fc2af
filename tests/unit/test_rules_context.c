/* Unit tests for src/rules/context.c: request type and party from what a proxy sees, type
 * names and aliases, registrable domains with the real public suffix list. Table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "gretel/rules.h"
#include "gretel/util.h"

typedef struct {
    const char *dest, *mode, *method, *accept, *ctype, *path, *upgrade, *ping_to;
    gt_reqtype want;
} type_case;

static const type_case type_cases[] = {
    {"document", "navigate", "GET", "text/html", "", "/", "", "", GT_TYPE_DOCUMENT},
    {"iframe", "navigate", "GET", "text/html", "", "/ad", "", "", GT_TYPE_SUBDOCUMENT},
    {"script", "no-cors", "GET", "*/*", "", "/x", "", "", GT_TYPE_SCRIPT},
    {"serviceworker", "same-origin", "GET", "*/*", "", "/sw.js", "", "", GT_TYPE_SCRIPT},
    {"image", "no-cors", "GET", "image/avif,image/webp,*/*", "", "/p", "", "", GT_TYPE_IMAGE},
    {"style", "no-cors", "GET", "text/css", "", "/s", "", "", GT_TYPE_STYLESHEET},
    {"font", "cors", "GET", "*/*", "", "/f", "", "", GT_TYPE_FONT},
    {"video", "no-cors", "GET", "*/*", "", "/v", "", "", GT_TYPE_MEDIA},
    {"embed", "no-cors", "GET", "*/*", "", "/e", "", "", GT_TYPE_OBJECT},
    {"empty", "cors", "GET", "application/json", "", "/api", "", "", GT_TYPE_XMLHTTPREQUEST},
    {"empty", "no-cors", "POST", "*/*", "text/plain", "/collect", "", "", GT_TYPE_PING},
    {"empty", "no-cors", "POST", "*/*", "text/ping", "/p", "", "https://a/", GT_TYPE_PING},
    {"websocket", "websocket", "GET", "", "", "/ws", "", "", GT_TYPE_WEBSOCKET},
    {"", "", "GET", "", "", "/ws", "websocket", "", GT_TYPE_WEBSOCKET},
    {"report", "no-cors", "POST", "*/*", "", "/r", "", "", GT_TYPE_OTHER},
    /* no Sec-Fetch-*: Accept, then the extension */
    {"", "", "GET", "text/html,application/xhtml+xml;q=0.9", "", "/", "", "", GT_TYPE_DOCUMENT},
    {"", "", "GET", "image/png", "", "/x.js", "", "", GT_TYPE_IMAGE},
    {"", "", "GET", "*/*", "", "/lib/app.min.js?v=3", "", "", GT_TYPE_SCRIPT},
    {"", "", "GET", "*/*", "", "/a.b/pixel.GIF", "", "", GT_TYPE_IMAGE},
    {"", "", "GET", "*/*", "", "/fonts/x.woff2", "", "", GT_TYPE_FONT},
    {"", "", "GET", "*/*", "", "/dir.js/file", "", "", GT_TYPE_OTHER},
    {"", "", "GET", "", "", "/", "", "", GT_TYPE_OTHER},
    {"", "", "POST", "", "text/ping", "/", "", "", GT_TYPE_PING},
};

static void test_type_of(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(type_cases) / sizeof(type_cases[0]); i++) {
        const type_case *c = &type_cases[i];
        gt_reqview v = {
            .method = gt_slice_cstr(c->method),
            .path = gt_slice_cstr(c->path),
            .sec_fetch_dest = gt_slice_cstr(c->dest),
            .sec_fetch_mode = gt_slice_cstr(c->mode),
            .accept = gt_slice_cstr(c->accept),
            .content_type = gt_slice_cstr(c->ctype),
            .upgrade = gt_slice_cstr(c->upgrade),
            .ping_to = gt_slice_cstr(c->ping_to),
        };
        gt_reqtype got = gt_rules_type_of(&v);
        if (got != c->want)
            fail_msg("case %zu (%s %s %s): got %s, want %s", i, c->dest, c->accept, c->path,
                     gt_rules_type_name(got), gt_rules_type_name(c->want));
    }
}

static void test_type_names(void **st)
{
    (void)st;
    for (int t = 0; t < GT_TYPE_COUNT; t++)
        assert_int_equal(gt_rules_type_parse(gt_slice_cstr(gt_rules_type_name((gt_reqtype)t))), t);
    assert_int_equal(gt_rules_type_parse(GT_S("main_frame")), GT_TYPE_DOCUMENT);
    assert_int_equal(gt_rules_type_parse(GT_S("sub_frame")), GT_TYPE_SUBDOCUMENT);
    assert_int_equal(gt_rules_type_parse(GT_S("xhr")), GT_TYPE_XMLHTTPREQUEST);
    assert_int_equal(gt_rules_type_parse(GT_S("fetch")), GT_TYPE_XMLHTTPREQUEST);
    assert_int_equal(gt_rules_type_parse(GT_S("beacon")), GT_TYPE_PING);
    assert_int_equal(gt_rules_type_parse(GT_S("imageset")), GT_TYPE_IMAGE);
    assert_int_equal(gt_rules_type_parse(GT_S("Script")), GT_TYPE_SCRIPT);
    assert_int_equal(gt_rules_type_parse(GT_S("popup")), -1);
    assert_int_equal(gt_rules_type_parse(GT_S("")), -1);
}

static void test_registrable_domain(void **st)
{
    (void)st;
    gt_psl *p = gt_rules_psl_load();
    assert_non_null(p);
    static const char *const cases[][2] = {
        {"www.amazon.co.uk", "amazon.co.uk"}, {"A.B.Example.COM.", "example.com"},
        {"shop.myshopify.com", "shop.myshopify.com"}, {"co.uk", "co.uk"},
        {"localhost", "localhost"}, {"192.168.1.10", "192.168.1.10"}, {"::1", "::1"},
        {"x.y.github.io", "y.github.io"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        size_t n = gt_rules_registrable_domain(p, gt_slice_cstr(cases[i][0]), out, sizeof(out));
        if (n != strlen(cases[i][1]) || strcmp(out, cases[i][1]) != 0)
            fail_msg("%s -> %s, want %s", cases[i][0], out, cases[i][1]);
    }
    char small[4];
    assert_int_equal(gt_rules_registrable_domain(p, GT_S("example.com"), small, sizeof(small)), 0);
    gt_rules_psl_free(p);
}

static void test_url_host(void **st)
{
    (void)st;
    assert_true(gt_slice_eq(gt_rules_url_host(GT_S("https://shop.example:8443/p?q")),
                            GT_S("shop.example")));
    assert_true(gt_slice_eq(gt_rules_url_host(GT_S("http://u:p@h.example/")), GT_S("h.example")));
    assert_true(gt_slice_eq(gt_rules_url_host(GT_S("https://[2001:db8::1]:1/")),
                            GT_S("2001:db8::1")));
    assert_true(gt_slice_eq(gt_rules_url_host(GT_S("https://h.example")), GT_S("h.example")));
    assert_int_equal(gt_rules_url_host(GT_S("/relative")).len, 0);
    assert_int_equal(gt_rules_url_host(GT_S("null")).len, 0);
    assert_int_equal(gt_rules_url_host(GT_S("")).len, 0);
}

static void test_party(void **st)
{
    (void)st;
    gt_psl *p = gt_rules_psl_load();
    static const struct {
        const char *site, *referer, *origin, *host;
        gt_party want;
    } cases[] = {
        {"cross-site", "https://shop.example/", "", "shop.example", GT_PARTY_THIRD},
        {"same-site", "", "", "ads.example", GT_PARTY_FIRST},
        {"same-origin", "", "", "a.example", GT_PARTY_FIRST},
        {"none", "", "", "a.example", GT_PARTY_FIRST},
        {"", "https://www.shop.co.uk/basket", "", "static.shop.co.uk", GT_PARTY_FIRST},
        {"", "https://www.shop.co.uk/basket", "", "connect.facebook.net", GT_PARTY_THIRD},
        {"", "", "https://news.example", "cdn.news.example", GT_PARTY_FIRST},
        {"", "", "null", "a.example", GT_PARTY_UNKNOWN},
        {"", "", "", "a.example", GT_PARTY_UNKNOWN},
        {"", "https://a.github.io/", "", "b.github.io", GT_PARTY_THIRD},
        /* decided without the suffix list (same host; last two labels differ), and the
         * cases that need it */
        {"", "https://Shop.Example./x", "", "shop.example", GT_PARTY_FIRST},
        {"", "https://a.shop.co.uk/", "", "b.other.co.uk", GT_PARTY_THIRD},
        {"", "https://github.io/", "", "a.github.io", GT_PARTY_THIRD},
        {"", "https://10.0.0.1/", "", "11.0.0.1", GT_PARTY_THIRD},
        {"", "https://10.0.0.1/", "", "10.0.0.1", GT_PARTY_FIRST},
        {"", "https://[::1]/", "", "::2", GT_PARTY_THIRD},
        {"", "https://localhost/", "", "x.localhost", GT_PARTY_THIRD},
        {"", "https://example.com/", "", "www.example.com", GT_PARTY_FIRST},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gt_reqview v = {.sec_fetch_site = gt_slice_cstr(cases[i].site),
                        .referer = gt_slice_cstr(cases[i].referer),
                        .origin = gt_slice_cstr(cases[i].origin),
                        .host = gt_slice_cstr(cases[i].host)};
        if (gt_rules_party_of(p, &v) != cases[i].want)
            fail_msg("party case %zu", i);
    }
    gt_rules_psl_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_of),   cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_registrable_domain), cmocka_unit_test(test_url_host),
        cmocka_unit_test(test_party),
    };
    return cmocka_run_group_tests_name("rules_context", tests, NULL, NULL);
}
