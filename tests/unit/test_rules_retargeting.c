/* The retargeting pack (rules/retargeting.rules) against the wire-format examples of
 * tests/data/retargeting-examples.tsv: every example's product ids must come out
 * exactly (in order, each once), an example whose ids are bought must be blocked, and the
 * ids of completed purchases (and only those) must be flagged for auto-marking.
 * Each request is built as the proxy sees it: method, URL, Content-Type, body, and the
 * page it fired on as Referer. Skipped when the shared data is not on this machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "gretel/rules.h"
#include "gretel/util.h"

static const char *data_file(void)
{
    static char path[512];
    /* the project's own copy (tests/data/README.md); make test runs from the top */
    const char *dirs[] = {getenv("GRETEL_DATA"), "tests/data"};
    for (size_t i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        snprintf(path, sizeof(path), "%s/retargeting-examples.tsv", dirs[i]);
        if (access(path, R_OK) == 0)
            return path;
    }
    return NULL;
}

static bool all_bought(void *arg, gt_slice key)
{
    (void)arg, (void)key;
    return true;
}

static void test_examples(void **st)
{
    (void)st;
    const char *path = data_file();
    assert_non_null(path); /* tests/data carries it: a missing copy is a failure, not a skip */
    gt_psl *psl = gt_rules_psl_load();
    const char *files[] = {"rules/retargeting.rules"};
    gt_rules_source src = {files, 1, NULL, 0, false, false};
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = NULL;
    assert_int_equal(gt_ruleset_load(&rs, &src, psl, &d), 0);
    gt_rules_scratch *sc = gt_rules_scratch_new();
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0, n = 0, bad = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        gt_slice rest = gt_slice_make(line, (size_t)len), col[9] = {{0}};
        for (int i = 0; i < 9 && gt_slice_next(&rest, '\t', &col[i]); i++)
            ;
        if (gt_slice_eq(col[0], GT_S("method")))
            continue; /* header */
        n++;
        /* the body column is percent-encoded once more than on the wire */
        char *body = malloc(col[3].len + 1);
        size_t bl = gt_rules_percent_decode(col[3], body, false);
        char host[256] = "";
        gt_slice url = col[1];
        gt_slice h = gt_rules_url_host(url);
        for (size_t i = 0; i < h.len && i < 255; i++)
            host[i] = gt_ascii_lower(h.p[i]);
        host[h.len < 255 ? h.len : 255] = 0;
        const char *p = strstr(url.p, "://") + 3;
        while (p < url.p + url.len && *p != '/')
            p++;
        gt_rules_field fields[2] = {{GT_S("Referer"), col[8]}, {GT_S("Content-Type"), col[2]}};
        bool post = gt_slice_eq(col[0], GT_S("POST"));
        gt_rules_request rq = {
            .method = col[0], .scheme = GT_S("https"), .host = gt_slice_cstr(host),
            .path = p < url.p + url.len ? gt_slice_make(p, (size_t)(url.p + url.len - p)) : GT_S("/"),
            .source = col[8], .type = post ? GT_TYPE_PING : GT_TYPE_IMAGE, .fields = fields,
            .nfields = 2, .body = gt_slice_make(body, bl), .body_type = col[2]};
        gt_decision dec;
        gt_rules_decide(rs, sc, &rq, NULL, NULL, &dec);
        char got[1024] = "";
        size_t o = 0;
        for (size_t k = 0; k < dec.nproducts; k++) {
            if (dec.products[k].alias) /* other forms of the named ids: not in the list */
                continue;
            gt_slice key = dec.products[k].key;
            const char *colon = memchr(key.p, ':', key.len);
            size_t il = (size_t)(key.p + key.len - colon - 1);
            o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%.*s", o ? "," : "", (int)il,
                                  colon + 1);
        }
        /* purchases: exactly the ids of a completed purchase are to be marked bought */
        char purchased[1024] = "";
        size_t po = 0;
        for (size_t k = 0; k < dec.nproducts; k++) {
            if (!dec.products[k].purchased || dec.products[k].alias)
                continue;
            gt_slice key = dec.products[k].key;
            const char *colon = memchr(key.p, ':', key.len);
            size_t il = (size_t)(key.p + key.len - colon - 1);
            po += (size_t)snprintf(purchased + po, sizeof(purchased) - po, "%s%.*s", po ? "," : "",
                                   (int)il, colon + 1);
        }
        bool is_purchase = gt_slice_eq(col[7], GT_S("1"));
        gt_slice want_p = is_purchase ? col[6] : GT_S("");
        if (strlen(purchased) != want_p.len || memcmp(purchased, want_p.p, want_p.len) != 0) {
            bad++;
            fprintf(stderr, "example %zu (%.*s %.*s): purchased '%s', expected '%.*s'\n", n,
                    (int)col[4].len, col[4].p, (int)col[5].len, col[5].p, purchased,
                    (int)want_p.len, want_p.p);
        }
        if (strlen(got) != col[6].len || memcmp(got, col[6].p, col[6].len) != 0) {
            bad++;
            fprintf(stderr, "example %zu (%.*s %.*s): ids '%s', expected '%.*s'\n", n,
                    (int)col[4].len, col[4].p, (int)col[5].len, col[5].p, got, (int)col[6].len,
                    col[6].p);
        } else if (col[6].len) {
            /* with its products bought, the pixel is answered locally */
            gt_rules_decide(rs, sc, &rq, all_bought, NULL, &dec);
            if (dec.action != GT_DECIDE_BLOCK || !dec.bought) {
                bad++;
                fprintf(stderr, "example %zu: bought products but not blocked\n", n);
            }
        }
        free(body);
    }
    free(line);
    fclose(f);
    fprintf(stderr, "retargeting examples: %zu, wrong: %zu\n", n, bad);
    assert_int_equal(n, 43);
    assert_int_equal(bad, 0);
    assert_true(n > 0);
    gt_rules_scratch_free(sc);
    gt_ruleset_release(rs);
    gt_rules_psl_free(psl);
    gt_diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_examples)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
