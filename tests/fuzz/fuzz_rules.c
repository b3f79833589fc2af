/* libFuzzer entry for the rule language (src/rules/parse.c, pattern.c, ruleset.c) and the
 * decision over it: any rule file either loads or yields diagnostics with a line inside the
 * file, never a crash or leak; a ruleset that loads decides fixed requests and one built
 * from the input, and explains its deciding rule. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gretel/rules.h"
#include "gretel/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decide_one(const gt_ruleset *rs, gt_rules_scratch *sc, const char *host,
                       const char *path, const char *source, gt_reqtype type)
{
    gt_rules_field f[2] = {{GT_S("Cookie"), GT_S("a=1; tid=2")},
                           {GT_S("Referer"), gt_slice_cstr(source)}};
    gt_rules_request rq = {.method = GT_S("POST"), .scheme = GT_S("https"),
                           .host = gt_slice_cstr(host), .path = gt_slice_cstr(path),
                           .source = gt_slice_cstr(source), .type = type, .fields = f,
                           .nfields = 2, .body = GT_S("{\"content_ids\":[\"A\",1]}")};
    gt_decision d;
    gt_rules_decide(rs, sc, &rq, NULL, NULL, &d);
    for (size_t i = 0; i < d.nproducts; i++)
        assert(d.products[i].key.len > 0);
    if (d.path_changed)
        assert(d.new_path.len <= rq.path.len);
    if (d.rule) {
        char buf[4096];
        size_t n = gt_rules_explain_rule(rs, sc, d.rule, &rq, buf, sizeof(buf));
        assert(n < sizeof(buf));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gt_psl *psl;
    static gt_rules_scratch *sc;
    static char path[64];
    if (!psl) {
        psl = gt_rules_psl_load();
        sc = gt_rules_scratch_new();
        snprintf(path, sizeof(path), "/tmp/gretel-fuzz-rules-%d.rules", (int)getpid());
    }
    if (size > 64 * 1024)
        return 0;
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    const char *files[] = {path};
    gt_rules_source src = {files, 1, NULL, 0, true};
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = NULL;
    int rv = gt_ruleset_load(&rs, &src, psl, &d);
    assert((rv == 0) == (rs != NULL));
    for (size_t i = 0; i < d.n; i++)
        if (strcmp(d.v[i].file, path) == 0)
            assert(d.v[i].line <= lines);
    if (rs) {
        decide_one(rs, sc, "www.ads.example", "/pixel/1?utm_source=x&id=7&ev=Purchase",
                   "https://shop.example/p", GT_TYPE_IMAGE);
        decide_one(rs, sc, "a.b", "/", "", GT_TYPE_DOCUMENT);
        /* the input's first line as a path, so patterns meet their own literals */
        char p[512] = "/";
        size_t n = 0;
        while (n < size && n < sizeof(p) - 2 && data[n] != '\n' && data[n] != 0)
            n++;
        memcpy(p + 1, data, n);
        p[n + 1] = 0;
        decide_one(rs, sc, "x.example", p, "http://x.example/", GT_TYPE_SCRIPT);
    }
    gt_ruleset_release(rs);
    gt_diags_free(&d);
    return 0;
}
