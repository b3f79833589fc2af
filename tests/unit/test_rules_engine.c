/* Unit tests for the rule engine (src/rules/): the language (every condition and action,
 * errors with FILE:LINE:COL), the precedence table, product extraction with decoders,
 * rewrites, groups and includes, lint warnings, the indexes and file fingerprints.
 * Rule files are written to a temp dir; requests are built by hand. Table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/rules/decode.h"
#include "gretel/rules.h"
#include "gretel/util.h"

static char tmpdir[64];
static gt_psl *psl;

static int setup_all(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/gretel-rules-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    psl = gt_rules_psl_load();
    return psl ? 0 : -1;
}

static int teardown_all(void **st)
{
    (void)st;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    gt_rules_psl_free(psl);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text as one rule file; returns NULL when it has errors (diags kept in *d). */
static gt_ruleset *load_groups(const char *text, gt_diags *d, const char *const *groups,
                               size_t ngroups, bool lint)
{
    const char *path = write_file("t.rules", text);
    const char *files[] = {path};
    gt_rules_source src = {files, 1, groups, ngroups, lint};
    gt_ruleset *rs = NULL;
    gt_ruleset_load(&rs, &src, psl, d);
    return rs;
}

static gt_ruleset *load(const char *text, gt_diags *d)
{
    return load_groups(text, d, NULL, 0, false);
}

typedef struct {
    const char *url, *source, *type, *method, *body;
    const char *hdr_name, *hdr_value;
} req_spec;

typedef struct {
    gt_rules_request rq;
    char host[256];
    gt_rules_field fields[2];
} req_buf;

static void build(req_buf *b, const req_spec *s)
{
    memset(b, 0, sizeof(*b));
    const char *u = s->url;
    const char *p = strstr(u, "://");
    assert_non_null(p);
    b->rq.scheme = gt_slice_make(u, (size_t)(p - u));
    const char *h = p + 3, *e = h + strcspn(h, "/:?");
    memcpy(b->host, h, (size_t)(e - h));
    b->rq.host = gt_slice_make(b->host, (size_t)(e - h));
    if (*e == ':') {
        b->rq.port = (uint16_t)strtoul(e + 1, NULL, 10);
        e += strcspn(e, "/?");
    }
    b->rq.path = *e ? gt_slice_cstr(e) : GT_S("/");
    b->rq.source = gt_slice_cstr(s->source ? s->source : "");
    b->rq.method = gt_slice_cstr(s->method ? s->method : "GET");
    b->rq.type = s->type ? (gt_reqtype)gt_rules_type_parse(gt_slice_cstr(s->type)) : GT_TYPE_OTHER;
    b->rq.body = gt_slice_cstr(s->body ? s->body : "");
    size_t n = 0;
    if (s->hdr_name) {
        b->fields[n].name = gt_slice_cstr(s->hdr_name);
        b->fields[n++].value = gt_slice_cstr(s->hdr_value);
    }
    if (s->source) {
        b->fields[n].name = GT_S("Referer");
        b->fields[n++].value = gt_slice_cstr(s->source);
    }
    b->rq.fields = b->fields;
    b->rq.nfields = n;
    gt_rules_request_complete(psl, &b->rq);
}

static bool bought_set(void *arg, gt_slice key)
{
    for (const char *const *k = arg; *k; k++)
        if (gt_slice_eq(key, gt_slice_cstr(*k)))
            return true;
    return false;
}

static void decide(gt_ruleset *rs, const req_spec *s, const char *const *bought, gt_decision *d)
{
    static gt_rules_scratch *sc;
    if (!sc)
        sc = gt_rules_scratch_new();
    req_buf b;
    build(&b, s);
    gt_rules_decide(rs, sc, &b.rq, bought ? bought_set : NULL, (void *)bought, d);
    if (!rs) {
        gt_rules_scratch_free(sc);
        sc = NULL;
    }
}

/* --- every condition: one rule, one request, match or not --- */

typedef struct {
    const char *rule;
    req_spec req;
    bool match;
} cond_case;

static const cond_case cond_cases[] = {
    {"block domain=ads.example", {"http://ads.example/x"}, true},
    {"block domain=ads.example", {"http://a.b.ads.example/x"}, true},
    {"block domain=ads.example", {"http://badads.example/x"}, false},
    {"block domain=ads.example,trk.example", {"http://x.trk.example/"}, true},
    {"block host=ads.example", {"http://ads.example/x"}, true},
    {"block host=ads.example", {"http://www.ads.example/x"}, false},
    {"block host~^ad[0-9]+\\.", {"http://ad12.cdn.example/"}, true},
    {"block host~^ad[0-9]+\\.", {"http://ads.cdn.example/"}, false},
    {"block path~^/pixel/", {"http://x.example/pixel/1?a=b"}, true},
    {"block path~^/pixel/", {"http://x.example/img/pixel/1"}, false},
    {"block path~\\.gif$", {"http://x.example/a.gif?x=1"}, true},
    {"block query~(?:^|&)ev=Purchase", {"http://x.example/tr?id=1&ev=Purchase"}, true},
    {"block query~(?:^|&)ev=Purchase", {"http://x.example/tr?id=1&prev=Purchase"}, false},
    {"block url~^https://x\\.example:8443/", {"https://x.example:8443/a"}, true},
    {"block url~^https://x\\.example/", {"https://x.example:443/a"}, true},
    {"block method=POST", {"http://x.example/", NULL, NULL, "POST"}, true},
    {"block method=post,put", {"http://x.example/", NULL, NULL, "GET"}, false},
    {"block type=script", {"http://x.example/a", NULL, "script"}, true},
    {"block type=xhr,ping", {"http://x.example/a", NULL, "beacon"}, true},
    {"block !type=document", {"http://x.example/a", NULL, "document"}, false},
    {"block !type=document", {"http://x.example/a", NULL, "image"}, true},
    {"block party=third", {"http://cdn.trk.example/a", "https://www.shop.example/p"}, true},
    {"block party=third", {"http://cdn.shop.example/a", "https://www.shop.example/p"}, false},
    {"block party=first", {"http://img.shop.co.uk/a", "https://www.shop.co.uk/"}, true},
    {"block party=third", {"http://a.example/x"}, false}, /* unknown party matches neither */
    {"block source=shop.example", {"http://t.example/", "https://www.shop.example/p"}, true},
    {"block source=shop.example", {"http://t.example/", "https://shop.example.org/"}, false},
    {"block source~/checkout/", {"http://t.example/", "https://s.example/checkout/done"}, true},
    {"block header:user-agent~Bot", {"http://x.example/", .hdr_name = "User-Agent",
                                     .hdr_value = "SomeBot/1"}, true},
    {"block header:user-agent~Bot", {"http://x.example/"}, false}, /* absent header */
    {"block !header:cookie~session=", {"http://x.example/"}, true},
    {"block body~\"event\":\"purchase\"",
     {"http://x.example/c", NULL, "ping", "POST", "{\"event\":\"purchase\"}"}, true},
    {"block body~purchase", {"http://x.example/c", NULL, "ping", "POST", "view"}, false},
    {"block param=utm_*", {"http://x.example/?a=1&UTM_Source=x"}, true},
    {"block param=fbclid", {"http://x.example/?xfbclid=1"}, false},
    {"block scheme=https", {"http://x.example/"}, false},
    {"block scheme=https", {"https://x.example/"}, true},
    {"block port=8080", {"http://x.example:8080/"}, true},
    {"block port=443", {"https://x.example/"}, true},
    {"block domain=x.example path~^/a type=image party=third",
     {"http://x.example/a.png", "https://other.example/", "image"}, true},
    {"block domain=x.example path~^/a type=image party=third",
     {"http://x.example/a.png", "https://other.example/", "script"}, false},
};

static void test_conditions(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(cond_cases) / sizeof(cond_cases[0]); i++) {
        const cond_case *c = &cond_cases[i];
        gt_diags d;
        gt_diags_init(&d);
        gt_ruleset *rs = load(c->rule, &d);
        if (!rs || d.errors) {
            gt_diags_print(&d, stderr);
            fail_msg("case %zu: rule '%s' did not load", i, c->rule);
        }
        gt_decision dec;
        decide(rs, &c->req, NULL, &dec);
        if ((dec.action == GT_DECIDE_BLOCK) != c->match)
            fail_msg("case %zu: rule '%s' on %s: expected %s, got %s", i, c->rule, c->req.url,
                     c->match ? "block" : "pass", gt_decide_action_name(dec.action));
        gt_ruleset_release(rs);
        gt_diags_free(&d);
    }
}

/* --- errors: FILE:LINE:COL and message --- */

typedef struct {
    const char *text;
    unsigned line, col;
    const char *msg_part;
} err_case;

static const err_case err_cases[] = {
    {"block domain=a.example\nblock path~(unclosed\n", 2, 21, "invalid regex"},
    {"frobnicate domain=a.example\n", 1, 1, "unknown action"},
    {"block domain=a.example colour=red\n", 1, 24, "unknown condition or option"},
    {"block domain=\n", 1, 14, "needs a value"},
    {"block domain=a..b\n", 1, 14, "not a host name"},
    {"block type=banana\n", 1, 12, "unknown request type"},
    {"block party=fourth\n", 1, 13, "party must be"},
    {"block path=/x\n", 1, 7, "takes '~'"},
    {"redirect domain=a.example\n", 1, 1, "redirect needs to="},
    {"redirect domain=a.example to=nothing.js\n", 1, 30, "unknown response"},
    {"block domain=a.example respond=teapot\n", 1, 32, "unknown response"},
    {"rewrite domain=a.example\n", 1, 1, "rewrite needs"},
    {"block remove-param=x\n", 1, 7, "rewrite option"},
    {"allow domain=a.example important\n", 1, 24, "important"},
    {"block-if-bought domain=a.example\n", 1, 1, "(?<id>"},
    {"block domain=a.example decode=percent\n", 1, 1, "need a (?<id>"},
    {"block-if-bought query~id=(?<id>\\w+) decode=rot13\n", 1, 44, "unknown decoder"},
    {"block-if-bought query~id=(?<id>\\w+) scope=planet\n", 1, 43, "scope must be"},
    {"include nothere.rules\n", 1, 9, "no such file"},
    {"group\n", 1, 1, "group takes"},
    {"rewrite set-header=NoColon\n", 1, 20, "set-header needs"},
    {"rewrite remove-header=Host\n", 1, 23, "Host header"},
    {"block !query~(?<id>x)\n", 1, 7, "negated"},
    {"block domain=a.example alias\n", 1, 1, "'alias' needs"},
};

static void test_errors(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
        const err_case *c = &err_cases[i];
        gt_diags d;
        gt_diags_init(&d);
        gt_ruleset *rs = load(c->text, &d);
        if (rs)
            fail_msg("case %zu: '%s' loaded without error", i, c->text);
        bool found = false;
        for (size_t k = 0; k < d.n; k++)
            if (!d.v[k].is_warning && strstr(d.v[k].msg, c->msg_part)) {
                found = true;
                if (d.v[k].line != c->line || d.v[k].col != c->col)
                    fail_msg("case %zu: '%s' at %u:%u, expected %u:%u", i, d.v[k].msg,
                             d.v[k].line, d.v[k].col, c->line, c->col);
                assert_non_null(strstr(d.v[k].file, "t.rules"));
            }
        if (!found) {
            gt_diags_print(&d, stderr);
            fail_msg("case %zu: no error containing '%s'", i, c->msg_part);
        }
        gt_diags_free(&d);
    }
}

/* --- precedence: bought > important > allow > block/redirect; rewrites when forwarded --- */

static void test_precedence(void **st)
{
    (void)st;
    const char *rules = "block domain=t.example\n"                                      /* 1 */
                        "allow domain=t.example path~^/ok/\n"                           /* 2 */
                        "block domain=t.example path~^/ok/must important respond=gif\n" /* 3 */
                        "block-if-bought domain=t.example query~(?:^|&)pid=(?<id>[^&]+) "
                        "scope=site:shop.example\n"                                     /* 4 */
                        "rewrite remove-param=utm_*\n"                                  /* 5 */
                        "redirect domain=r.example to=noop.js\n"                        /* 6 */
                        "allow domain=r.example path~^/fine\n"                          /* 7 */
                        "log domain=t.example\n";                                       /* 8 */
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = load(rules, &d);
    assert_non_null(rs);
    static const char *const bought[] = {"shop.example:42", NULL};
    struct {
        const char *url;
        gt_decide_action action;
        unsigned line;
        bool is_bought;
    } cases[] = {
        {"http://t.example/x", GT_DECIDE_BLOCK, 1, false},
        {"http://t.example/ok/x?utm_source=a", GT_DECIDE_ALLOW, 2, false},
        {"http://t.example/ok/must", GT_DECIDE_BLOCK, 3, false},
        /* the bought product beats the allow and the important block */
        {"http://t.example/ok/must?pid=42", GT_DECIDE_BLOCK, 4, true},
        {"http://t.example/ok/x?pid=42", GT_DECIDE_BLOCK, 4, true},
        /* not bought: block-if-bought does not fire; the allow decides */
        {"http://t.example/ok/x?pid=7", GT_DECIDE_ALLOW, 2, false},
        {"http://other.example/?utm_medium=x&a=1", GT_DECIDE_REWRITE, 5, false},
        {"http://other.example/?a=1", GT_DECIDE_PASS, 0, false},
        {"http://r.example/x", GT_DECIDE_REDIRECT, 6, false},
        {"http://r.example/fine", GT_DECIDE_ALLOW, 7, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gt_decision dec;
        req_spec s = {cases[i].url};
        decide(rs, &s, (const char *const *)bought, &dec);
        if (dec.action != cases[i].action || gt_rule_line(dec.rule) != cases[i].line ||
            dec.bought != cases[i].is_bought)
            fail_msg("case %zu %s: got %s line %u bought %d", i, cases[i].url,
                     gt_decide_action_name(dec.action), gt_rule_line(dec.rule), dec.bought);
    }
    /* allowed requests still get their rewrites; the log rule is reported */
    gt_decision dec;
    req_spec s = {"http://t.example/ok/x?utm_source=a&k=v"};
    decide(rs, &s, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_ALLOW);
    assert_true(dec.path_changed);
    assert_true(gt_slice_eq(dec.new_path, GT_S("/ok/x?k=v")));
    assert_int_equal(dec.nlogs, 1);
    assert_int_equal(gt_rule_line(dec.logs[0]), 8);
    gt_ruleset_release(rs);
    gt_diags_free(&d);
}

/* --- product extraction and decoders, on the wire formats of RETARGETING.md --- */

typedef struct {
    const char *rule;
    req_spec req;
    const char *keys; /* comma-joined */
} extract_case;

static const extract_case extract_cases[] = {
    /* Meta: cd[content_ids] as an enc'ed JSON array, brackets literal or encoded */
    {"block-if-bought domain=facebook.com path~^/tr/?$ "
     "query~(?:^|&)cd(?:\\[|%5B)content_ids(?:\\]|%5D)=(?<id>[^&]+) decode=percent,json",
     {"https://www.facebook.com/tr/?id=1&ev=ViewContent&cd[content_ids]=%5B%22LW-10452%22%2C"
      "%22LW-2%22%5D", "https://www.shop.example/p/1"},
     "shop.example:LW-10452,shop.example:LW-2"},
    {"block-if-bought domain=facebook.com "
     "query~(?:^|&)cd(?:\\[|%5B)content_ids(?:\\]|%5D)=(?<id>[^&]+) decode=percent,json",
     {"https://www.facebook.com/tr?cd%5Bcontent_ids%5D=%5B4711%5D", "https://shop.co.uk/"},
     "shop.co.uk:4711"},
    /* page URL inside the request (dl=) scopes the ids when there is no Referer */
    {"block-if-bought domain=facebook.com query~(?:^|&)dl=(?<page>[^&]+) "
     "query~(?:^|&)cd\\[content_ids\\]=(?<id>[^&]+) decode=percent,json",
     {"https://www.facebook.com/tr/?dl=https%3A%2F%2Fwww.outdoor.example%2Fp&"
      "cd[content_ids]=%5B%22A1%22%5D"},
     ""},
    /* Google Ads data=: enc'ed key=value pairs joined by ';', ids comma-separated, "\," */
    {"block-if-bought domain=doubleclick.net "
     "query~(?:^|&)data=[^&]*?(?:^|%3B)(?:id|ecomm_prodid)%3D(?<id>[^&]*?)(?:%3B|&|$) "
     "decode=percent,split",
     {"https://googleads.g.doubleclick.net/pagead/viewthroughconversion/1/?data=event%3D"
      "view_item%3Bid%3DEL-4471%2CEL-4472&x=1", "https://shop.example/"},
     "shop.example:EL-4471,shop.example:EL-4472"},
    /* Criteo vb: items triple-encoded */
    {"block-if-bought domain=criteo.com query~i%25253D(?<id>[^%]+) "
     "decode=percent*",
     {"https://sslwidget.criteo.com/event?a=1&p1=e%3Dvb%26p%3D%255Bi%25253DMM-1%252526pr"
      "%25253D59.95%252526q%25253D1%252Ci%25253DMM-2%252526pr%25253D1%252526q%25253D1%255D",
      "https://www.mm.example/cart"},
     "mm.example:MM-1,mm.example:MM-2"},
    /* GA4: pr1=id<enc>~nm..., field order varies, global namespace scope */
    {"block-if-bought path~/g/collect$ query~(?:^|&)pr\\d+=(?:[^&~]*~)*?id(?<id>[^~&]+) "
     "decode=percent scope=ns:gtin",
     {"https://region1.google-analytics.com/g/collect?v=2&pr1=nmShirt~id04006381333931~pr1"
      "&pr2=afShop~id036000291452&pr3=id12345"},
     /* UPC-A padded to 14 digits; 12345 is no GTIN and names no product */
     "gtin:04006381333931,gtin:00036000291452"},
    /* base64url and unquote */
    {"block-if-bought query~(?:^|&)p=(?<id>[A-Za-z0-9_-]+) decode=base64url,unquote "
     "scope=site:s.example",
     {"http://t.example/?p=IlNLVS05Ig"}, "s.example:SKU-9"},
    /* a shop page names its product (action product: no decision, no log line) */
    {"product path~^/products/(?<id>[a-z-]+)$ scope=host",
     {"https://www.shop.example.com/products/red-boots"}, "example.com:red-boots"},
    /* an alias rule: the variant inside P-V */
    {"block-if-bought query~(?:^|&)p=[0-9]+-(?<id>[0-9]+) alias scope=site:s.example",
     {"http://t.example/?p=81-4501"}, "s.example:4501"},
    /* body of a beacon */
    {"block-if-bought body~\"content_ids\":(?<id>\\[[^\\]]*\\]) decode=json",
     {"http://t.example/c", "https://shop.example/", "ping", "POST",
      "{\"content_ids\":[\"B-1\",2]}"},
     "shop.example:B-1,shop.example:2"},
};

static void test_extract(void **st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(extract_cases) / sizeof(extract_cases[0]); i++) {
        const extract_case *c = &extract_cases[i];
        gt_diags d;
        gt_diags_init(&d);
        gt_ruleset *rs = load(c->rule, &d);
        if (!rs) {
            gt_diags_print(&d, stderr);
            fail_msg("case %zu did not load", i);
        }
        gt_decision dec;
        decide(rs, &c->req, NULL, &dec);
        char got[1024] = "";
        size_t o = 0;
        for (size_t k = 0; k < dec.nproducts; k++)
            o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%.*s", k ? "," : "",
                                  (int)dec.products[k].key.len, dec.products[k].key.p);
        const char *want = c->keys;
        if (i == 2)
            want = "outdoor.example:A1";
        if (strcmp(got, want) != 0)
            fail_msg("case %zu: keys '%s', expected '%s'", i, got, want);
        gt_ruleset_release(rs);
        gt_diags_free(&d);
    }
}

static void test_decoders(void **st)
{
    (void)st;
    char out[64];
    assert_int_equal(gt_rules_percent_decode(GT_S("a%20b%2"), out, false), 5);
    assert_memory_equal(out, "a b%2", 5);
    assert_int_equal(gt_rules_percent_decode(GT_S("a+b%zz"), out, true), 6);
    assert_memory_equal(out, "a b%zz", 6);
    assert_int_equal(gt_rules_base64_decode(GT_S("aGVsbG8"), out), 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(gt_rules_base64_decode(GT_S("aGVsbG8="), out), 5);
    assert_int_equal(gt_rules_base64_decode(GT_S("a$b"), out), (size_t)-1);
    /* split honours "\," and trims */
    rule_decoder dec = {D_SPLIT, (char *)","};
    gt_slice vals[8];
    char buf[256];
    size_t n = gt_rules_decode_run(&dec, 1, GT_S("A\\, B, C ,,D"), buf, sizeof(buf), vals, 8);
    assert_int_equal(n, 3);
    assert_true(gt_slice_eq(vals[0], GT_S("A, B")));
    assert_true(gt_slice_eq(vals[1], GT_S("C")));
    assert_true(gt_slice_eq(vals[2], GT_S("D")));
    /* json: objects give their id, numbers their decimal text, nesting flattens */
    rule_decoder js = {D_JSON, NULL};
    n = gt_rules_decode_run(&js, 1, GT_S("[{\"id\":\"X\",\"quantity\":2},[7],\"Y\"]"), buf,
                            sizeof(buf), vals, 8);
    assert_int_equal(n, 3);
    assert_true(gt_slice_eq(vals[0], GT_S("X")));
    assert_true(gt_slice_eq(vals[1], GT_S("7")));
    assert_true(gt_slice_eq(vals[2], GT_S("Y")));
}

/* --- rewrites --- */

static void test_rewrites(void **st)
{
    (void)st;
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = load("rewrite remove-param=utm_*,fbclid remove-param~^mc_\n"
                          "rewrite domain=x.example remove-header=x-track set-header=DNT:1 "
                          "remove-cookie=tid remove-cookie~^_ga trim-referer\n",
                          &d);
    assert_non_null(rs);
    gt_decision dec;
    req_spec s = {"http://y.example/p?utm_source=a&keep=1&fbclid=2&mc_eid=3&fbclidx=4"};
    decide(rs, &s, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_REWRITE);
    assert_true(gt_slice_eq(dec.new_path, GT_S("/p?keep=1&fbclidx=4")));
    assert_int_equal(gt_rule_line(dec.rule), 1);
    req_spec s2 = {"http://y.example/p?utm_source=a"};
    decide(rs, &s2, NULL, &dec);
    assert_true(gt_slice_eq(dec.new_path, GT_S("/p")));
    req_spec s3 = {"http://x.example/p", "https://news.example/article/1?s=x", .hdr_name = "X-Track",
                   .hdr_value = "1"};
    decide(rs, &s3, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_REWRITE);
    assert_int_equal(dec.nhdr_ops, 3); /* remove x-track, set DNT, trim referer (no cookie) */
    char out[256];
    gt_hdr_op ops[2] = {{.kind = GT_HDR_REMOVE_COOKIE, .name = GT_S("tid")},
                        {.kind = GT_HDR_REMOVE_COOKIE, .name = GT_S("z")}};
    gt_decision cd = {0};
    memcpy(cd.hdr_ops, ops, sizeof(ops));
    cd.nhdr_ops = 2;
    size_t n = gt_rules_filter_cookies(&cd, GT_S("a=1;tid=2; b=3;z"), out);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a=1; b=3", 8);
    assert_true(gt_slice_eq(gt_rules_referer_origin(GT_S("https://a.example:8443/p?q")),
                            GT_S("https://a.example:8443")));
    assert_true(gt_slice_eq(gt_rules_referer_origin(GT_S("https://[::1]:8443/p")),
                            GT_S("https://[::1]:8443")));
    req_spec s4 = {"http://z.example/p?a=1"};
    decide(rs, &s4, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_PASS);
    assert_false(dec.path_changed);
    gt_ruleset_release(rs);
    gt_diags_free(&d);
}

/* --- groups, includes, lint, fingerprints --- */

static void test_groups_includes(void **st)
{
    (void)st;
    write_file("inc.rules", "block domain=inc.example\n");
    gt_diags d;
    gt_diags_init(&d);
    const char *text = "include inc.rules\n"
                       "group ads\nblock domain=a.example\nend group\n"
                       "group extra off\nblock domain=e.example\n";
    gt_ruleset *rs = load(text, &d);
    assert_non_null(rs);
    assert_int_equal(gt_ruleset_count(rs), 2);
    gt_decision dec;
    req_spec inc = {"http://inc.example/"}, a = {"http://a.example/"}, e = {"http://e.example/"};
    decide(rs, &inc, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_BLOCK);
    assert_non_null(strstr(gt_rule_file(dec.rule), "inc.rules"));
    decide(rs, &e, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_PASS);
    gt_ruleset_release(rs);
    const char *groups[] = {"-ads", "extra"};
    rs = load_groups(text, &d, groups, 2, false);
    assert_non_null(rs);
    decide(rs, &a, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_PASS);
    decide(rs, &e, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_BLOCK);
    gt_ruleset_release(rs);
    /* an include loop is an error, not a hang */
    write_file("loop.rules", "include loop.rules\n");
    gt_diags d2;
    gt_diags_init(&d2);
    assert_null(load("include loop.rules\n", &d2));
    assert_true(d2.errors > 0);
    gt_diags_free(&d2);
    gt_diags_free(&d);
}

static void test_lint(void **st)
{
    (void)st;
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = load_groups("block domain=a.example type=script\n"
                                 "block type=script domain=a.example\n"
                                 "allow domain=b.example\n"
                                 "block domain=b.example path~^/x\n"
                                 "block domain=b.example path~^/y important\n"
                                 "block path~^/(a+)+$\n"
                                 "block type=script !type=script\n",
                                 &d, NULL, 0, true);
    assert_non_null(rs);
    assert_int_equal(d.errors, 0);
    const char *want[] = {"2:duplicate of", "4:unreachable: allow rule", "6:may backtrack",
                          "7:unreachable: the type"};
    for (size_t i = 0; i < 4; i++) {
        bool found = false;
        unsigned line = (unsigned)strtoul(want[i], NULL, 10);
        const char *msg = strchr(want[i], ':') + 1;
        for (size_t k = 0; k < d.n; k++)
            found = found || (d.v[k].line == line && strstr(d.v[k].msg, msg));
        if (!found) {
            gt_diags_print(&d, stderr);
            fail_msg("no warning '%s' on line %u", msg, line);
        }
    }
    assert_int_equal(d.warnings, 4); /* and nothing about the important rule on line 5 */
    gt_ruleset_release(rs);
    gt_diags_free(&d);
}

static void test_required_token(void **st)
{
    (void)st;
    struct {
        const char *pat, *tok;
    } cases[] = {
        {"^/pixel/", "pixel"},
        {"/ads?/", ""},
        {"\\.doubleclick\\.net/", "doubleclick"},
        {"^/tr/?$", ""},
        {"ad[0-9]+\\.", ""},
        {"(?i)/Banner/", "banner"},
        {"a|b", ""},
        {"^https?://x\\.", "x"},
        {"/g/collect$", "collect"},
        {"track(?:ing)?/", ""},
        {"/v1/events\\b", "prefix:events"},
        {"[?&]utm_", ""},
        {"^/api/(?:x|y)/beacon", "prefix:beacon"},
        {"/imp2572[_-]?[0-9]+\\.js$", "prefix:imp2572"},
        {"^https?://[^/]+/(?:[^/]+/)?match136433/", "match136433"},
        {"/(?:a|b)track/", ""},
        {"/tracking", "prefix:tracking"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64] = "";
        bool prefix;
        size_t n = gt_rules_required_token(cases[i].pat, strlen(cases[i].pat), out, sizeof(out),
                                           &prefix);
        char got[80];
        snprintf(got, sizeof(got), "%s%s", prefix ? "prefix:" : "", n ? out : "");
        if (strcmp(got, cases[i].tok) != 0)
            fail_msg("'%s': token '%s', expected '%s'", cases[i].pat, got, cases[i].tok);
    }
}

/* Inputs the pattern fuzzer (tests/fuzz/fuzz_pattern.c) found: each matches its subject,
 * so the token the index files the rule under must be in it, and the required literal. */
static void test_pattern_regressions(void **st)
{
    (void)st;
    static const struct {
        const char *pat, *subj;
    } cases[] = {
        {"\x1c?(\b)c?d{0,}e", "abbbddd&)p"},          /* {0,} skipped whole */
        {"x(?x)#^imp2572)", "nex"},                     /* extended mode: '#' comments */
        {"(?:^|b)(?|b|.?|&)ixel/", "pixel/1"},          /* a group with branches */
        {"(?*^||@yy)p=[+]{0,}", "a&p=d"},               /* (?* lookahead is a group */
        {".(?!:tok0/k0/&)2572(|i[_-]?[0-9]+\\.js)", "e//imp2572-1"}, /* lookahead */
        {"./?(){2,}()?" "?()+.?" "?(){2((2+^)*)", "b0"}, /* "{2(" is a literal brace */
        {"^x/(?:[]+/)?to/", "x/to/"},                   /* "[]" starts a class */
        {"\\c(?:.|", ""},                              /* \c takes the next byte */
        {"[=*ae\\g{[.5[]-|", "s]"},                    /* escapes inside a class */
        {"(?i)/B(?^:)an{0", "/Ban{0("},                 /* an empty group */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *pat = cases[i].pat, *subj = cases[i].subj;
        int code;
        PCRE2_SIZE off;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)pat, strlen(pat), PCRE2_DUPNAMES, &code, &off, NULL);
        if (!re)
            continue; /* not a pattern gretel would accept either */
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
        int r = pcre2_match(re, (PCRE2_SPTR)subj, strlen(subj), 0, 0, md, NULL);
        if (r > 0) {
            char tok[128], lit[256];
            bool prefix;
            size_t tl = gt_rules_required_token(pat, strlen(pat), tok, sizeof(tok), &prefix);
            if (tl >= 2) {
                char low[256];
                size_t n = strlen(subj);
                for (size_t k = 0; k <= n; k++)
                    low[k] = gt_ascii_lower(subj[k]);
                if (!strstr(low, tok))
                    fail_msg("'%s' matches '%s' but claims token '%s'", pat, subj, tok);
            }
            size_t ll = gt_rules_required_literal(pat, strlen(pat), lit, sizeof(lit));
            if (ll && !memmem(subj, strlen(subj), lit, ll))
                fail_msg("'%s' matches '%s' but claims literal '%.*s'", pat, subj, (int)ll, lit);
        }
        pcre2_match_data_free(md);
        pcre2_code_free(re);
    }
}

static void test_index_scales(void **st)
{
    (void)st;
    /* 3000 host rules and 3000 regex rules: a request evaluates only its own few */
    size_t cap = 1 << 20, o = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 3000; i++) {
        o += (size_t)snprintf(text + o, cap - o, "block domain=h%d.example\n", i);
        o += (size_t)snprintf(text + o, cap - o, "block path~^/seg%d/\\d+$\n", i);
    }
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = load(text, &d);
    free(text);
    assert_non_null(rs);
    assert_int_equal(gt_ruleset_count(rs), 6000);
    gt_decision dec;
    req_spec a = {"http://www.h1234.example/x"}, b = {"http://x.example/seg777/42"},
             c = {"http://x.example/seg777/x"};
    decide(rs, &a, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_BLOCK);
    assert_int_equal(gt_rule_line(dec.rule), 2469);
    assert_true(dec.candidates <= 2);
    decide(rs, &b, NULL, &dec);
    assert_int_equal(gt_rule_line(dec.rule), 1556);
    assert_true(dec.candidates <= 2);
    decide(rs, &c, NULL, &dec);
    assert_int_equal(dec.action, GT_DECIDE_PASS);
    gt_ruleset_release(rs);
    gt_diags_free(&d);
}

static void test_stamp(void **st)
{
    (void)st;
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = load("block domain=a.example\n", &d);
    assert_non_null(rs);
    uint64_t s1 = gt_ruleset_stamp(rs);
    assert_int_equal(s1, gt_ruleset_stamp(rs));
    write_file("t.rules", "block domain=b.example\n# longer now\n");
    assert_int_not_equal(s1, gt_ruleset_stamp(rs));
    gt_ruleset_release(rs);
    gt_diags_free(&d);
}

static void test_resources(void **st)
{
    (void)st;
    const gt_resource *r = gt_rules_resource(GT_RESP_DEFAULT, GT_TYPE_DOCUMENT);
    assert_int_equal(r->status, 403);
    r = gt_rules_resource(GT_RESP_DEFAULT, GT_TYPE_IMAGE);
    assert_int_equal(r->status, 204);
    assert_int_equal(r->body_len, 0);
    r = gt_rules_resource(GT_RESP_GIF, GT_TYPE_IMAGE);
    assert_int_equal(r->body_len, 43);
    assert_memory_equal(r->body, "GIF89a", 6);
    r = gt_rules_resource(GT_RESP_PNG, GT_TYPE_IMAGE);
    assert_memory_equal(r->body, "\x89PNG", 4);
}

static void test_cleanup(void **st)
{
    (void)st;
    gt_decision dec;
    req_spec s = {"http://x.example/"};
    decide(NULL, &s, NULL, &dec); /* frees the shared scratch */
    assert_int_equal(dec.action, GT_DECIDE_PASS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conditions),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_precedence),     cmocka_unit_test(test_extract),
        cmocka_unit_test(test_decoders),       cmocka_unit_test(test_rewrites),
        cmocka_unit_test(test_groups_includes), cmocka_unit_test(test_lint),
        cmocka_unit_test(test_required_token), cmocka_unit_test(test_pattern_regressions),
        cmocka_unit_test(test_index_scales),
        cmocka_unit_test(test_stamp),          cmocka_unit_test(test_resources),
        cmocka_unit_test(test_cleanup),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
