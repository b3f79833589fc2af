/* src/lists/abp.c: what each kind of list line is, what one network filter means for one
 * request (anchors, separators, wildcards, options), hosts lines, and conformance with the
 * shared matching corpus (tests/data/abp-cases-dev.tsv): every listed filter, parsed
 * on its own, must match its request. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gretel/lists.h"
#include "gretel/rules.h"

static gt_psl *psl;

static bool mm(const char *filter, const char *url, const char *method)
{
    gt_abp_filter f;
    const char *why;
    assert_int_equal(gt_abp_parse(gt_slice_cstr(filter), &f, &why), GT_ABP_NETWORK);
    gt_abp_request rq = {.url = gt_slice_cstr(url), .host = gt_rules_url_host(gt_slice_cstr(url)),
                         .method = gt_slice_cstr(method), .type = GT_TYPE_XMLHTTPREQUEST};
    bool r = gt_abp_match(&f, &rq);
    gt_abp_filter_free(&f);
    return r;
}

static bool m(const char *filter, const char *url, const char *source, const char *type)
{
    gt_abp_filter f;
    const char *why;
    gt_abp_kind k = gt_abp_parse(gt_slice_cstr(filter), &f, &why);
    if (k != GT_ABP_NETWORK)
        fail_msg("'%s' parsed as %s (%s)", filter, gt_abp_kind_name(k), why ? why : "");
    gt_abp_request rq = {.url = gt_slice_cstr(url), .host = gt_rules_url_host(gt_slice_cstr(url))};
    rq.source_host = source ? gt_rules_url_host(gt_slice_cstr(source)) : GT_S("");
    int t = gt_rules_type_parse(gt_slice_cstr(type));
    rq.type = t < 0 ? GT_TYPE_OTHER : (gt_reqtype)t;
    gt_reqview v = {.host = rq.host, .referer = source ? gt_slice_cstr(source) : GT_S("")};
    rq.party = gt_rules_party_of(psl, &v);
    bool r = gt_abp_match(&f, &rq);
    gt_abp_filter_free(&f);
    return r;
}

static void test_kinds(void **st)
{
    (void)st;
    struct {
        const char *line;
        gt_abp_kind k;
    } cases[] = {
        {"", GT_ABP_EMPTY},
        {"! Title: EasyList", GT_ABP_COMMENT},
        {"[Adblock Plus 2.0]", GT_ABP_COMMENT},
        {"example.com##.ad", GT_ABP_COSMETIC},
        {"##.banner", GT_ABP_COSMETIC},
        {"example.com#@#.ad", GT_ABP_COSMETIC},
        {"example.com#?#div:has(.ad)", GT_ABP_COSMETIC},
        {"example.com##+js(abort-on-property-read, x)", GT_ABP_SCRIPTLET},
        {"example.com$$script[src]", GT_ABP_HTML},
        {"||example.com^$csp=script-src 'none'", GT_ABP_CSP},
        {"||ads.example^$popup", GT_ABP_POPUP},
        {"@@||example.com^$generichide", GT_ABP_COSMETIC},
        {"||example.com^$rewrite=abp-resource:blank-js", GT_ABP_NETWORK},
        {"||example.com^$rewrite=https://evil.example/", GT_ABP_UNSUPPORTED},
        {"||example.com^$sitekey=abc", GT_ABP_UNSUPPORTED},
        {"||yt.example/api/stats$xhr,method=post", GT_ABP_NETWORK},
        {"/[a-/", GT_ABP_INVALID},
        {"||ads.example^", GT_ABP_NETWORK},
        {"@@||cdn.example/ads.js$script,domain=a.example|~b.a.example", GT_ABP_NETWORK},
        {"/banner/*/img^", GT_ABP_NETWORK},
        {"/^https?:\\/\\/ad\\./$script", GT_ABP_NETWORK},
        {"||track.example^$removeparam=utm_source", GT_ABP_NETWORK},
        {"$script,third-party,domain=x.example", GT_ABP_NETWORK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gt_abp_filter f;
        const char *why;
        gt_abp_kind k = gt_abp_parse(gt_slice_cstr(cases[i].line), &f, &why);
        if (k != cases[i].k)
            fail_msg("'%s': %s, want %s", cases[i].line, gt_abp_kind_name(k),
                     gt_abp_kind_name(cases[i].k));
        gt_abp_filter_free(&f);
    }
}

static void test_semantics(void **st)
{
    (void)st;
    /* || anchors at the host or one of its labels, never inside a label or the path */
    assert_true(m("||ads.example^", "https://ads.example/x.js", NULL, "script"));
    assert_true(m("||ads.example^", "https://cdn.ads.example/x.js", NULL, "script"));
    assert_false(m("||ads.example^", "https://badads.example/x.js", NULL, "script"));
    assert_false(m("||ads.example^", "https://site.example/ads.example/", NULL, "script"));
    assert_false(m("||ads.example^", "https://ads.example.org/", NULL, "script"));
    /* ^ is a separator or the end */
    assert_true(m("||ads.example^", "https://ads.example", NULL, "script"));
    assert_true(m("/banner^", "https://x.example/banner?x", NULL, "image"));
    assert_false(m("/banner^", "https://x.example/banners", NULL, "image"));
    assert_false(m("/banner^", "https://x.example/banner.gif", NULL, "image")); /* '.' is not */
    /* | anchors, * wildcards */
    assert_true(m("|https://x.example/a*z|", "https://x.example/abcz", NULL, "other"));
    assert_false(m("|https://x.example/a*z|", "https://x.example/abcz?", NULL, "other"));
    assert_false(m("|x.example", "https://x.example/", NULL, "other"));
    assert_true(m("ad*.js", "https://x.example/adsbygoogle.js", NULL, "script"));
    /* case: insensitive unless match-case */
    assert_true(m("/AdBanner/", "https://x.example/adbanner/1", NULL, "image"));
    assert_false(m("/AdBanner/$match-case", "https://x.example/adbanner/1", NULL, "image"));
    /* types; documents only when named */
    assert_true(m("/track$image", "https://x.example/track.gif", NULL, "image"));
    assert_false(m("/track$image", "https://x.example/track.js", NULL, "script"));
    assert_true(m("/track$~image", "https://x.example/track.js", NULL, "script"));
    assert_true(m("/track", "https://x.example/track", NULL, "document"));
    assert_false(m("/track$script", "https://x.example/track", NULL, "document"));
    assert_true(m("/track$document", "https://x.example/track", NULL, "document"));
    assert_true(m("/x$xmlhttprequest", "https://x.example/x", NULL, "xhr"));
    /* party and domain= (the most specific entry wins) */
    assert_true(m("||t.example^$third-party", "https://t.example/p", "https://news.example/", "image"));
    assert_false(m("||t.example^$third-party", "https://t.example/p", "https://www.t.example/", "image"));
    assert_true(m("||t.example^$~third-party", "https://t.example/p", "https://www.t.example/", "image"));
    assert_true(m("/ad.js$domain=a.example", "https://c.example/ad.js", "https://www.a.example/", "script"));
    assert_false(m("/ad.js$domain=a.example", "https://c.example/ad.js", "https://b.example/", "script"));
    assert_false(m("/ad.js$domain=a.example|~b.a.example", "https://c.example/ad.js",
                   "https://b.a.example/", "script"));
    assert_true(m("/ad.js$domain=~b.example", "https://c.example/ad.js", "https://a.example/", "script"));
    /* a WebSocket is requested as http(s): |ws:// and |wss:// filters are meant for it */
    assert_true(m("|wss://$websocket", "https://chat.example/s", NULL, "websocket"));
    assert_true(m("|ws://", "https://chat.example/s", NULL, "websocket"));
    assert_false(m("|ws://chat.", "https://other.example/s", NULL, "websocket"));
    assert_false(m("|ws://", "https://x.example/", NULL, "script"));
    /* method= */
    assert_true(mm("||yt.example/stats$method=post", "https://yt.example/stats?x", "POST"));
    assert_false(mm("||yt.example/stats$method=post", "https://yt.example/stats?x", "GET"));
    assert_true(mm("||yt.example/stats$method=~get", "https://yt.example/stats", "PUT"));
    assert_false(mm("||yt.example/stats$method=~get|~head", "https://yt.example/stats", "HEAD"));
    /* regex filters */
    assert_true(m("/^https:\\/\\/[a-z]+\\.example\\/ads?\\//$image",
                  "https://cdn.example/ad/1.png", NULL, "image"));
    assert_false(m("/^https:\\/\\/[a-z]+\\.example\\/ads?\\//$image",
                   "https://cdn.example/add/1.png", NULL, "image"));
}

static void test_hosts(void **st)
{
    (void)st;
    char out[256];
    assert_int_equal(gt_hosts_line(GT_S("0.0.0.0 ads.example"), out, sizeof(out)), 11);
    assert_string_equal(out, "ads.example");
    assert_int_equal(gt_hosts_line(GT_S("127.0.0.1  Tracker.Example  # note"), out, sizeof(out)),
                     15);
    assert_string_equal(out, "tracker.example");
    assert_int_equal(gt_hosts_line(GT_S("metrics.example"), out, sizeof(out)), 15);
    assert_int_equal(gt_hosts_line(GT_S("127.0.0.1 localhost"), out, sizeof(out)), 0);
    assert_int_equal(gt_hosts_line(GT_S("# comment"), out, sizeof(out)), 0);
    assert_int_equal(gt_hosts_line(GT_S("10.0.0.1 router.example"), out, sizeof(out)), 0);
    assert_int_equal(gt_hosts_line(GT_S("||ads.example^"), out, sizeof(out)), 0);
}

static gt_abp_verdict decide(const gt_abp_set *set, const char *url, const char *src,
                             const char *type, const char **file, unsigned *line)
{
    gt_abp_request rq = {.url = gt_slice_cstr(url), .host = gt_rules_url_host(gt_slice_cstr(url)),
                         .source_host = gt_rules_url_host(gt_slice_cstr(src)),
                         .method = GT_S("GET")};
    int t = gt_rules_type_parse(gt_slice_cstr(type));
    rq.type = t < 0 ? GT_TYPE_OTHER : (gt_reqtype)t;
    gt_reqview v = {.host = rq.host, .referer = gt_slice_cstr(src)};
    rq.party = gt_rules_party_of(psl, &v);
    return gt_abp_set_decide(set, &rq, file, line);
}

/* A compiled set: host table, token index, precedence, badfilter, hosts files. */
/* What the set of test_set decides, however it was made (built or restored). */
static void check_set(const gt_abp_set *set, const char *a, const char *b)
{
    size_t bh, bt, al;
    gt_abp_set_stats(set, &bh, &bt, &al);
    assert_true(bh >= 2 && bt >= 1 && al >= 1);
    const char *file;
    unsigned line;
    assert_int_equal(decide(set, "https://x.ads.example/a.js", "https://news.example/", "script",
                            &file, &line),
                     GT_ABP_BLOCK);
    assert_string_equal(file, a);
    assert_int_equal(line, 3);
    assert_int_equal(decide(set, "https://ads.example/allowed/1.png", "https://news.example/",
                            "image", &file, &line),
                     GT_ABP_ALLOW);
    assert_int_equal(line, 4);
    /* important beats the exception */
    assert_int_equal(decide(set, "https://ads.example/forced/x", "https://news.example/", "other",
                            &file, &line),
                     GT_ABP_BLOCK);
    assert_int_equal(line, 5);
    assert_int_equal(decide(set, "https://site.example/banner/7/img?x", "https://site.example/",
                            "image", NULL, NULL),
                     GT_ABP_BLOCK);
    /* badfilter cancelled line 8 */
    assert_int_equal(decide(set, "https://cdn.example/track.js", "https://news.example/",
                            "script", NULL, NULL),
                     GT_ABP_PASS);
    assert_int_equal(decide(set, "https://site.example/x-ad-unit-1.js", "https://site.example/",
                            "script", NULL, NULL),
                     GT_ABP_BLOCK);
    assert_int_equal(decide(set, "https://cdn.example/p.png", "https://www.imgs.example/", "image",
                            &file, &line),
                     GT_ABP_BLOCK);
    assert_int_equal(line, 11);
    assert_int_equal(decide(set, "https://cdn.example/p.js", "https://www.imgs.example/", "script",
                            NULL, NULL),
                     GT_ABP_PASS);
    /* the hosts file: the host and its subdomains */
    assert_int_equal(decide(set, "https://eu.metrics.example/p", "https://site.example/", "ping",
                            &file, &line),
                     GT_ABP_BLOCK);
    assert_string_equal(file, b);
    assert_int_equal(decide(set, "https://metrics.example.org/p", "https://site.example/", "ping",
                            NULL, NULL),
                     GT_ABP_PASS);
    assert_int_equal(decide(set, "https://site.example/page", "https://site.example/", "document",
                            NULL, NULL),
                     GT_ABP_PASS);
}

static void test_set(void **st)
{
    (void)st;
    char dir[] = "/tmp/gretel-lists-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[600], b[600];
    snprintf(a, sizeof(a), "%s/list.txt", dir);
    snprintf(b, sizeof(b), "%s/hosts.txt", dir);
    FILE *f = fopen(a, "w");
    fputs("[Adblock Plus 2.0]\n! test\n"
          "||ads.example^\n"                       /* 3 */
          "@@||ads.example/allowed/$image\n"       /* 4 */
          "||ads.example/forced/$important\n"      /* 5 */
          "@@||ads.example/forced/\n"              /* 6 */
          "/banner/*/img^$image\n"                 /* 7 */
          "||cdn.example/track.js$script,third-party\n" /* 8 */
          "||cdn.example/track.js$script,third-party,badfilter\n"
          "-ad-unit-\n"                            /* 10: token "ad" */
          "$image,domain=imgs.example\n"           /* 11: no token: every request */
          "example.org##.ad\n",
          f);
    fclose(f);
    f = fopen(b, "w");
    fputs("# hosts\n0.0.0.0 metrics.example\n", f);
    fclose(f);
    const char *files[] = {a, b};
    gt_abp_set *set = NULL;
    gt_diags d;
    gt_diags_init(&d);
    assert_int_equal(gt_abp_set_load(&set, files, 2, &d), 0);
    assert_int_equal(d.errors, 0);
    check_set(set, a, b);

    /* the compiled cache: the same decisions restored from it */
    char cache[700];
    snprintf(cache, sizeof(cache), "%s/lists.cache", dir);
    char err[800];
    assert_int_equal(gt_abp_set_save(set, cache, err, sizeof(err)), 0);
    gt_abp_set_free(set);
    bool hit = false;
    assert_int_equal(gt_abp_set_load_cached(&set, files, 2, cache, &d, &hit), 0);
    assert_true(hit);
    check_set(set, a, b);
    gt_abp_set_free(set);

    /* a list that changed is never matched by the stale index: rebuilt and rewritten */
    f = fopen(a, "a");
    fputs("||late.example^\n", f);
    fclose(f);
    assert_int_equal(gt_abp_set_load_cached(&set, files, 2, cache, &d, &hit), 0);
    assert_false(hit);
    check_set(set, a, b);
    assert_int_equal(decide(set, "https://late.example/x", "https://news.example/", "script",
                            NULL, NULL),
                     GT_ABP_BLOCK);
    gt_abp_set_free(set);
    assert_int_equal(gt_abp_set_load_cached(&set, files, 2, cache, &d, &hit), 0);
    assert_true(hit);
    assert_int_equal(decide(set, "https://late.example/x", "https://news.example/", "script",
                            NULL, NULL),
                     GT_ABP_BLOCK);
    gt_abp_set_free(set);

    /* a damaged cache (torn, or bytes changed inside) is turned down, never followed */
    struct stat cst;
    assert_int_equal(stat(cache, &cst), 0);
    assert_int_equal(truncate(cache, cst.st_size - 100), 0);
    assert_int_equal(gt_abp_set_load_cached(&set, files, 2, cache, &d, &hit), 0);
    assert_false(hit);
    check_set(set, a, b);
    gt_abp_set_free(set);
    FILE *cf = fopen(cache, "r+b");
    assert_non_null(cf);
    fseek(cf, 200, SEEK_SET); /* inside the entries: offsets far outside their lines */
    for (int i = 0; i < 400; i++)
        fputc(0xff, cf);
    fclose(cf);
    assert_int_equal(gt_abp_set_load_cached(&set, files, 2, cache, &d, &hit), 0);
    assert_false(hit);
    check_set(set, a, b);
    gt_abp_set_free(set);
    /* an unwritable place: a warning, and the set all the same */
    size_t warn = d.n;
    assert_int_equal(gt_abp_set_load_cached(&set, files, 2, "/nonexistent-dir/lists.cache", &d, &hit),
                     0);
    assert_false(hit);
    assert_true(d.n > warn && d.v[d.n - 1].is_warning);
    check_set(set, a, b);
    gt_abp_set_free(set);
    assert_int_equal(d.errors, 0);
    unlink(cache);
    gt_diags_free(&d);
    unlink(a);
    unlink(b);
    rmdir(dir);
}

/* $removeparam through gt_lists_apply, as the proxy and explain use it: the new query,
 * exceptions, the rules' own rewrite kept, and a block that wins over any rewrite. */
static const char *rewrite_of(const gt_abp_set *set, gt_rules_scratch *sc, const char *host,
                              const char *path, const char *source, gt_decision *d)
{
    gt_rules_request rq = {.method = GT_S("GET"), .scheme = GT_S("https"),
                           .host = gt_slice_cstr(host), .path = gt_slice_cstr(path),
                           .source = gt_slice_cstr(source), .type = GT_TYPE_DOCUMENT};
    gt_rules_decide(NULL, sc, &rq, NULL, NULL, d);
    gt_lists_apply(set, &rq, psl, sc, d);
    static char out[512];
    snprintf(out, sizeof(out), "%.*s", (int)d->new_path.len, d->new_path.p);
    return d->path_changed ? out : "";
}

static void test_removeparam(void **st)
{
    (void)st;
    char dir[] = "/tmp/gretel-rmparam-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[600];
    snprintf(a, sizeof(a), "%s/privacy.txt", dir);
    FILE *f = fopen(a, "w");
    fputs("[Adblock Plus 2.0]\n"
          "||shop.example^$removeparam=utm_source\n"      /* 2 */
          "||shop.example^$removeparam=/^fbclid=/i\n"     /* 3 */
          "@@||shop.example/keep/$removeparam=utm_source\n"
          "||news.example^$removeparam\n"                 /* 5: every parameter */
          "@@||news.example/all/$removeparam\n"           /* 6: keeps them all */
          "$removeparam=gclid\n"                          /* 7: any site */
          "||shop.example^$removeparam=~id,domain=only.example\n" /* 8 */
          "||blocked.example^\n"                          /* 9 */
          "||blocked.example^$removeparam=a\n",
          f);
    fclose(f);
    const char *files[] = {a};
    gt_abp_set *set = NULL;
    gt_diags dg;
    gt_diags_init(&dg);
    assert_int_equal(gt_abp_set_load(&set, files, 1, &dg), 0);
    gt_rules_scratch *sc = gt_rules_scratch_new();
    gt_decision d;
    assert_string_equal(rewrite_of(set, sc, "www.shop.example", "/p?a=1&utm_source=x&FBCLID=z&b=2",
                                   "", &d),
                        "/p?a=1&b=2");
    assert_int_equal(d.action, GT_DECIDE_REWRITE);
    assert_int_equal(d.list_line, 2);
    assert_string_equal(rewrite_of(set, sc, "shop.example", "/keep/p?utm_source=x&fbclid=z", "", &d),
                        "/keep/p?utm_source=x");
    assert_int_equal(d.list_line, 3);
    assert_string_equal(rewrite_of(set, sc, "news.example", "/x?a=1&b=2#top", "", &d), "/x#top");
    assert_string_equal(rewrite_of(set, sc, "news.example", "/all/x?a=1&b=2", "", &d), "");
    assert_int_equal(d.action, GT_DECIDE_PASS);
    assert_string_equal(rewrite_of(set, sc, "other.example", "/?gclid=1&q=2", "", &d), "/?q=2");
    assert_string_equal(rewrite_of(set, sc, "other.example", "/?q=2", "", &d), "");
    assert_string_equal(rewrite_of(set, sc, "other.example", "/nothing", "", &d), "");
    assert_string_equal(rewrite_of(set, sc, "shop.example", "/x?id=3&utm=4&z=5",
                                   "https://only.example/", &d),
                        "/x?id=3");
    assert_string_equal(rewrite_of(set, sc, "shop.example", "/x?id=3&utm=4&z=5",
                                   "https://elsewhere.example/", &d),
                        "");
    /* a blocked request is answered locally: nothing to rewrite */
    assert_string_equal(rewrite_of(set, sc, "blocked.example", "/x?a=1", "", &d), "");
    assert_int_equal(d.action, GT_DECIDE_BLOCK);
    assert_int_equal(d.list_line, 9);
    /* without a scratch there is nowhere to write: the request goes on unchanged */
    gt_rules_request rq = {.method = GT_S("GET"), .scheme = GT_S("https"),
                           .host = GT_S("other.example"), .path = GT_S("/?gclid=1"),
                           .type = GT_TYPE_DOCUMENT};
    gt_rules_decide(NULL, sc, &rq, NULL, NULL, &d);
    gt_lists_apply(set, &rq, psl, NULL, &d);
    assert_false(d.path_changed);
    gt_rules_scratch_free(sc);
    gt_abp_set_free(set);
    gt_diags_free(&dg);
    unlink(a);
    rmdir(dir);
}

static FILE *open_data(const char *name)
{
    char p[512];
    /* the project's own copy (tests/data/README.md); make test runs from the top */
    const char *dirs[] = {getenv("GRETEL_DATA"), "tests/data"};
    for (size_t i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        snprintf(p, sizeof(p), "%s/%s", dirs[i], name);
        FILE *f = fopen(p, "r");
        if (f)
            return f;
    }
    return NULL;
}

/* Every case of the corpus: each filter, on its own, must match (or except) the request. */
static void test_corpus(void **st)
{
    (void)st;
    FILE *fp = open_data("abp-cases-dev.tsv");
    assert_non_null(fp); /* tests/data carries it: a missing copy is a failure, not a skip */
    char *line = NULL;
    size_t cap = 0;
    long n;
    unsigned filters = 0, matched = 0, unsupported = 0, cases = 0;
    while ((n = getline(&line, &cap, fp)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = 0;
        char *url = line, *src = strchr(url, '\t');
        if (!src)
            continue;
        *src++ = 0;
        char *type = strchr(src, '\t');
        if (!type)
            continue;
        *type++ = 0;
        char *js = strchr(type, '\t');
        if (!js)
            continue;
        *js++ = 0;
        if (strcmp(url, "url") == 0)
            continue; /* header */
        json_error_t je;
        json_t *arr = json_loads(js, 0, &je);
        if (!json_is_array(arr)) {
            json_decref(arr);
            continue;
        }
        cases++;
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v)
        {
            const char *text = json_string_value(v);
            if (!text)
                continue;
            gt_abp_filter f;
            const char *why;
            gt_abp_kind k = gt_abp_parse(gt_slice_cstr(text), &f, &why);
            filters++;
            if (k != GT_ABP_NETWORK) {
                if (getenv("GT_SHOW_MISSES"))
                    fprintf(stderr, "not used (%s%s%s): %s\n", gt_abp_kind_name(k),
                            why ? ": " : "", why ? why : "", text);
                unsupported++;
                gt_abp_filter_free(&f);
                continue;
            }
            gt_abp_request rq = {.url = gt_slice_cstr(url),
                                 .host = gt_rules_url_host(gt_slice_cstr(url)),
                                 .source_host = gt_rules_url_host(gt_slice_cstr(src))};
            int t = gt_rules_type_parse(gt_slice_cstr(type));
            rq.type = t < 0 ? GT_TYPE_OTHER : (gt_reqtype)t;
            gt_reqview view = {.host = rq.host, .referer = gt_slice_cstr(src)};
            rq.party = gt_rules_party_of(psl, &view);
            if (gt_abp_match(&f, &rq))
                matched++;
            else if (getenv("GT_SHOW_MISSES"))
                fprintf(stderr, "miss: %s\t%s\t%s\t%s\n", text, url, src, type);
            gt_abp_filter_free(&f);
        }
        json_decref(arr);
    }
    free(line);
    fclose(fp);
    unsigned usable = filters - unsupported;
    printf("abp-cases-dev: %u cases, %u filters, %u matched of %u usable (%.2f%%), %u not "
           "network filters or not honoured\n",
           cases, filters, matched, usable, usable ? 100.0 * matched / usable : 0.0, unsupported);
    /* every filter of every case (docs/LISTS.md) */
    assert_true(cases > 4000);
    assert_int_equal(unsupported, 0);
    assert_int_equal(matched, usable);
}

static int setup(void **st)
{
    (void)st;
    psl = gt_rules_psl_load();
    return psl ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    gt_rules_psl_free(psl);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_semantics),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_removeparam),
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
