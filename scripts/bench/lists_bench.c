/* Lists benchmark and agreement (scripts/bench/lists.sh): loads list files into a
 * gt_abp_set, decides every request of a batch file (url TAB source TAB type, as
 * requests-dev), timing each decision with its URL parsing and registrable-domain lookup
 * (done when a filter asks for the party) included, as the reference engine's figures are. With a reference decisions file
 * (requests-dev.ghostery-decisions.tsv, decompressed), prints the block/not-block
 * agreement and writes the differing lines to stderr when GT_SHOW_DIFF is set.
 * Usage: lists_bench REQUESTS.tsv [REFERENCE.tsv] -- LIST... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gretel/lists.h"
#include "gretel/rules.h"
#include "gretel/util.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    char *url, *src, *type;
} req;

int main(int argc, char **argv)
{
    int sep = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0)
            sep = i;
    if (sep < 2 || sep == argc - 1) {
        fprintf(stderr, "usage: lists_bench REQUESTS.tsv [REFERENCE.tsv] -- LIST...\n");
        return 2;
    }
    const char *reqfile = argv[1], *reffile = sep > 2 ? argv[2] : NULL;
    gt_psl *psl = gt_rules_psl_load();
    long rss0 = rss_kb();
    double t0 = now_ns();
    gt_abp_set *set;
    gt_diags d;
    gt_diags_init(&d);
    gt_abp_set_load(&set, (const char *const *)argv + sep + 1, (size_t)(argc - sep - 1), &d);
    double load_ms = (now_ns() - t0) / 1e6;
    long rss1 = rss_kb();
    gt_diags_print(&d, stderr);
    size_t bh, bt, al;
    gt_abp_set_stats(set, &bh, &bt, &al);

    FILE *fp = fopen(reqfile, "r");
    if (!fp) {
        perror(reqfile);
        return 2;
    }
    req *rs = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, fp)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = 0;
        char *a = strchr(line, '\t'), *b = a ? strchr(a + 1, '\t') : NULL;
        if (!a || !b)
            continue;
        *a = *b = 0;
        if (n == cap) {
            cap = cap ? cap * 2 : 16384;
            rs = realloc(rs, cap * sizeof(*rs));
        }
        rs[n].url = strdup(line);
        rs[n].src = strdup(a + 1);
        rs[n].type = strdup(b + 1);
        n++;
    }
    fclose(fp);
    gt_abp_verdict *ver = calloc(n ? n : 1, sizeof(*ver));
    double *ns = calloc(n ? n : 1, sizeof(double));
    size_t passes = 5;
    for (size_t pass = 0; pass < passes; pass++)
        for (size_t i = 0; i < n; i++) {
            double s0 = now_ns();
            gt_abp_request rq = {.url = gt_slice_cstr(rs[i].url),
                                 .host = gt_rules_url_host(gt_slice_cstr(rs[i].url)),
                                 .source_host = gt_rules_url_host(gt_slice_cstr(rs[i].src)),
                                 .method = GT_S("GET"), .psl = psl,
                                 .source_url = gt_slice_cstr(rs[i].src)};
            int t = gt_rules_type_parse(gt_slice_cstr(rs[i].type));
            rq.type = t < 0 ? GT_TYPE_OTHER : (gt_reqtype)t;
            /* the party (registrable domains, libpsl) is worked out when a filter asks */
            ver[i] = gt_abp_set_decide(set, &rq, NULL, NULL);
            double el = now_ns() - s0;
            if (pass == 0 || el < ns[i])
                ns[i] = el; /* the best of the passes: timer and cache noise out */
        }
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += ns[i];
    if (getenv("GT_SHOW_SLOW")) /* the slowest requests, to see what costs */
        for (size_t i = 0; i < n; i++)
            if (ns[i] > atof(getenv("GT_SHOW_SLOW")))
                fprintf(stderr, "%.0f\t%s\t%s\t%s\n", ns[i], rs[i].url, rs[i].src, rs[i].type);
    qsort(ns, n, sizeof(double), cmp_d);
    size_t blocks = 0, allows = 0;
    for (size_t i = 0; i < n; i++) {
        blocks += ver[i] == GT_ABP_BLOCK;
        allows += ver[i] == GT_ABP_ALLOW;
    }
    printf("lists: %zu filters (by host %zu, by token %zu, every request %zu), load %.1f ms, "
           "RSS %ld KiB (+%ld KiB for the lists)\n",
           gt_abp_set_count(set), bh, bt, al, load_ms, rss1, rss1 - rss0);
    printf("requests: %zu, block %zu, allow %zu; per decision median %.0f ns, p99 %.0f ns, "
           "%.0f requests/s\n",
           n, blocks, allows, n ? ns[n / 2] : 0, n ? ns[(size_t)((double)n * 0.99)] : 0,
           total > 0 ? (double)n / (total / 1e9) : 0);
    if (reffile) {
        FILE *rf = fopen(reffile, "r");
        size_t i = 0, agree = 0, fp_ = 0, fn_ = 0;
        while (rf && (len = getline(&line, &lcap, rf)) > 0 && i < n) {
            bool ref_block = strncmp(line, "block", 5) == 0;
            bool ours = ver[i] == GT_ABP_BLOCK;
            if (ref_block == ours)
                agree++;
            else {
                if (ours)
                    fp_++;
                else
                    fn_++;
                if (getenv("GT_SHOW_DIFF"))
                    fprintf(stderr, "%s\t%s", ours ? "ours-block" : "ours-pass", line);
            }
            i++;
        }
        if (rf)
            fclose(rf);
        printf("agreement with the reference on block/not-block: %zu of %zu (%.2f%%); gretel "
               "blocks %zu the reference does not, passes %zu it blocks\n",
               agree, i, i ? 100.0 * (double)agree / (double)i : 0.0, fp_, fn_);
    }
    for (size_t i = 0; i < n; i++) {
        free(rs[i].url);
        free(rs[i].src);
        free(rs[i].type);
    }
    free(rs);
    free(ver);
    free(ns);
    free(line);
    gt_abp_set_free(set);
    gt_diags_free(&d);
    gt_rules_psl_free(psl);
    return 0;
}
