/* Lists benchmark and agreement (scripts/bench/lists.sh): loads list files into a
 * gt_abp_set, decides every request of a batch file (url TAB source TAB type, as
 * requests-dev), timing each decision with its URL parsing and registrable-domain lookup
 * (done when a filter asks for the party) included, as the reference engine's figures
 * are, and measured the same way: WARMUP untimed passes, then REPEAT timed passes over
 * every request, quantiles over all the timed decisions. With a reference decisions file
 * (requests-dev.ghostery-decisions.tsv, decompressed), prints the block/not-block
 * agreement and writes the differing lines to stderr when GT_SHOW_DIFF is set; with
 * GT_SHOW_SLOW=NS, the requests whose best time is above NS. The last line is JSON.
 * Usage: lists_bench REQUESTS.tsv [REFERENCE.tsv] -- LIST...
 * Env: WARMUP (1), REPEAT (20). */
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
    const char *cache = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            sep = i;
            break;
        }
    for (int i = 1; i + 1 < sep; i++)
        if (strcmp(argv[i], "--cache") == 0) {
            cache = argv[i + 1];
            memmove(argv + i, argv + i + 2, (size_t)(argc - i - 2) * sizeof(char *));
            argc -= 2;
            sep -= 2;
            break;
        }
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
    double cache_ms = 0;
    if (cache) {
        /* written from the set just built, then the set restored from it (timed) and used
         * for the decisions below, so that they also check the cache */
        char err[512];
        if (gt_abp_set_save(set, cache, err, sizeof(err)) < 0) {
            fprintf(stderr, "lists_bench: %s\n", err);
            return 2;
        }
        gt_abp_set_free(set);
        bool hit = false;
        double c0 = now_ns();
        gt_abp_set_load_cached(&set, (const char *const *)argv + sep + 1,
                               (size_t)(argc - sep - 1), cache, &d, &hit);
        cache_ms = (now_ns() - c0) / 1e6;
        if (!hit) {
            fprintf(stderr, "lists_bench: the cache just written was not used\n");
            return 2;
        }
    }
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
    size_t warmup = getenv("WARMUP") ? (size_t)atol(getenv("WARMUP")) : 1;
    size_t repeat = getenv("REPEAT") ? (size_t)atol(getenv("REPEAT")) : 20;
    if (repeat == 0)
        repeat = 1;
    double *all = calloc(n * repeat + 1, sizeof(double)), *best = calloc(n + 1, sizeof(double));
    size_t na = 0;
    double wall0 = now_ns();
    for (size_t pass = 0; pass < warmup + repeat; pass++)
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
            if (pass < warmup)
                continue;
            all[na++] = el;
            if (pass == warmup || el < best[i])
                best[i] = el;
        }
    double wall_s = (now_ns() - wall0) / 1e9;
    double total = 0;
    for (size_t i = 0; i < na; i++)
        total += all[i];
    if (getenv("GT_SHOW_SLOW")) /* the slowest requests, to see what costs */
        for (size_t i = 0; i < n; i++)
            if (best[i] > atof(getenv("GT_SHOW_SLOW")))
                fprintf(stderr, "%.0f\t%s\t%s\t%s\n", best[i], rs[i].url, rs[i].src, rs[i].type);
    qsort(all, na, sizeof(double), cmp_d);
    double med = na ? all[na / 2] : 0, p99 = na ? all[(size_t)((double)na * 0.99)] : 0,
           p999 = na ? all[(size_t)((double)na * 0.999)] : 0, avg = na ? total / (double)na : 0;
    size_t blocks = 0, allows = 0;
    for (size_t i = 0; i < n; i++) {
        blocks += ver[i] == GT_ABP_BLOCK;
        allows += ver[i] == GT_ABP_ALLOW;
    }
    printf("lists: %zu filters (by host %zu, by token %zu, by domain or every request %zu), "
           "load %.1f ms (from the compiled cache %.1f ms), RSS %ld KiB (+%ld KiB for the lists)\n",
           gt_abp_set_count(set), bh, bt, al, load_ms, cache_ms, rss1, rss1 - rss0);
    printf("requests: %zu x %zu passes (%zu warm-up), block %zu, allow %zu; per decision median "
           "%.0f ns, p99 %.0f ns, p99.9 %.0f ns, average %.0f ns; %.0f requests/s\n",
           n, repeat, warmup, blocks, allows, med, p99, p999, avg,
           wall_s > 0 ? (double)na / wall_s : 0);
    size_t agree = 0, fp_ = 0, fn_ = 0, nref = 0;
    if (reffile) {
        FILE *rf = fopen(reffile, "r");
        while (rf && (len = getline(&line, &lcap, rf)) > 0 && nref < n) {
            bool ref_block = strncmp(line, "block", 5) == 0;
            bool ours = ver[nref] == GT_ABP_BLOCK;
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
            nref++;
        }
        if (rf)
            fclose(rf);
        printf("agreement with the reference on block/not-block: %zu of %zu (%.2f%%); gretel "
               "blocks %zu the reference does not, passes %zu it blocks\n",
               agree, nref, nref ? 100.0 * (double)agree / (double)nref : 0.0, fp_, fn_);
    }
    printf("{\"filters\":%zu,\"load_ms\":%.1f,\"cache_load_ms\":%.1f,\"rss_kb\":%ld,\"rss_lists_kb\":%ld,"
           "\"requests\":%zu,\"repeat\":%zu,\"median_ns\":%.0f,\"p99_ns\":%.0f,"
           "\"p999_ns\":%.0f,\"avg_ns\":%.0f,\"rps\":%.0f,\"blocked\":%zu,\"agree\":%zu,"
           "\"compared\":%zu}\n",
           gt_abp_set_count(set), load_ms, cache_ms, rss1, rss1 - rss0, n, repeat, med, p99, p999, avg,
           wall_s > 0 ? (double)na / wall_s : 0, blocks, agree, nref);
    for (size_t i = 0; i < n; i++) {
        free(rs[i].url);
        free(rs[i].src);
        free(rs[i].type);
    }
    free(rs);
    free(ver);
    free(all);
    free(best);
    free(line);
    gt_abp_set_free(set);
    gt_diags_free(&d);
    gt_rules_psl_free(psl);
    return 0;
}
