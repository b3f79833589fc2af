/* Rule engine benchmark: loads rule files (timed), reads a request set in the batch format,
 * then times gt_rules_decide per request over several passes. Prints one JSON line:
 * load time, compiled size, heap growth and RSS growth of the load, per-decision median,
 * p99, p99.9 and mean in ns (decide only, and with the URL split a proxy does first; the
 * party is derived inside the decision when a rule asks, as in the proxy), decisions per
 * second, and the decision mix.
 * Usage: rules_bench REQUESTS.tsv[.gz via stdin: -] PASSES RULEFILE... */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gretel/rules.h"
#include "gretel/util.h"

typedef struct {
    char *line;
    gt_slice url, source, type;
} req_line;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char l[256];
    long kb = 0;
    while (f && fgets(l, sizeof(l), f))
        if (strncmp(l, "VmRSS:", 6) == 0)
            kb = strtol(l + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The same derivation explain --batch does: scheme, host, port, path; party via libpsl. */
static bool build(const gt_psl *psl, const req_line *l, gt_rules_request *rq, char *host,
                  size_t hcap)
{
    memset(rq, 0, sizeof(*rq));
    gt_slice u = l->url;
    const char *c = memchr(u.p, ':', u.len);
    if (!c || c + 3 > u.p + u.len || c[1] != '/' || c[2] != '/')
        return false;
    rq->scheme = gt_slice_make(u.p, (size_t)(c - u.p));
    gt_slice h = gt_rules_url_host(u);
    if (!h.len || h.len >= hcap)
        return false;
    for (size_t i = 0; i < h.len; i++)
        host[i] = gt_ascii_lower(h.p[i]);
    rq->host = gt_slice_make(host, h.len);
    const char *p = c + 3, *end = u.p + u.len;
    while (p < end && *p != '/' && *p != '?')
        p++;
    rq->path = p < end ? gt_slice_make(p, (size_t)(end - p)) : GT_S("/");
    rq->method = GT_S("GET");
    rq->source = l->source;
    int t = l->type.len ? gt_rules_type_parse(l->type) : 0;
    rq->type = t < 0 ? GT_TYPE_OTHER : (gt_reqtype)t;
    (void)psl; /* the party is derived by the engine when a rule asks, as in the proxy */
    return true;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: rules_bench REQUESTS|- PASSES RULEFILE...\n");
        return 2;
    }
    FILE *in = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 2;
    }
    int passes = (int)strtol(argv[2], NULL, 10);
    if (passes < 1)
        passes = 1;
    size_t n = 0, cap = 16384;
    req_line *reqs = gt_xcalloc(cap, sizeof(*reqs));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, in)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (n == cap) {
            cap *= 2;
            reqs = gt_xrealloc(reqs, cap * sizeof(*reqs));
        }
        req_line *r = &reqs[n++];
        r->line = gt_xstrndup(line, (size_t)len);
        gt_slice rest = gt_slice_cstr(r->line), f[3] = {{0}};
        for (int i = 0; i < 3 && gt_slice_next(&rest, '\t', &f[i]); i++)
            ;
        r->url = f[0];
        r->source = f[1];
        r->type = f[2];
    }
    free(line);
    gt_psl *psl = gt_rules_psl_load();
    /* load: timed, with heap and RSS growth */
    struct mallinfo2 m0 = mallinfo2();
    long rss0 = rss_kb();
    uint64_t t0 = now_ns();
    gt_rules_source src = {(const char *const *)argv + 3, (size_t)argc - 3, NULL, 0, false,
                           false};
    gt_diags d;
    gt_diags_init(&d);
    gt_ruleset *rs = NULL;
    if (gt_ruleset_load(&rs, &src, psl, &d) < 0) {
        gt_diags_print(&d, stderr);
        return 2;
    }
    uint64_t load_ns = now_ns() - t0;
    struct mallinfo2 m1 = mallinfo2();
    long rss1 = rss_kb();
    gt_rules_scratch *sc = gt_rules_scratch_new();
    /* requests are derived once; the decision alone is timed in the first series */
    gt_rules_request *rqs = gt_xcalloc(n, sizeof(*rqs));
    char (*hosts)[256] = gt_xcalloc(n, 256);
    bool *ok = gt_xcalloc(n, sizeof(bool));
    size_t nok = 0;
    for (size_t i = 0; i < n; i++)
        if ((ok[i] = build(psl, &reqs[i], &rqs[i], hosts[i], 256)))
            nok++;
    uint64_t *ns = gt_xcalloc(nok * (size_t)passes, sizeof(uint64_t));
    uint64_t *ns_ctx = gt_xcalloc(nok * (size_t)passes, sizeof(uint64_t));
    size_t k = 0, kc = 0;
    gt_decision dec;
    size_t counts[5] = {0};
    /* the timer's own cost, subtracted from each sample */
    uint64_t tmin = UINT64_MAX;
    for (int i = 0; i < 1000; i++) {
        uint64_t a = now_ns(), b = now_ns();
        if (b - a < tmin)
            tmin = b - a;
    }
    for (size_t i = 0; i < n; i++) /* warm-up: JIT code and caches */
        if (ok[i])
            gt_rules_decide(rs, sc, &rqs[i], NULL, NULL, &dec);
    /* A proxy decides on a head it has just parsed: the bytes are in cache. Each request is
     * copied into one reused buffer and split there (untimed), then the decision is timed;
     * otherwise 13,905 scattered lines would measure cache misses on the input, not rules. */
    char *hot = gt_xmalloc(1 << 20);
    char hot_host[256];
    uint64_t wall0 = now_ns();
    uint64_t untimed = 0;
    for (int p = 0; p < passes; p++)
        for (size_t i = 0; i < n; i++) {
            if (!ok[i])
                continue;
            uint64_t c0 = now_ns();
            req_line hl = reqs[i];
            size_t ll = strlen(reqs[i].line);
            if (ll >= (1 << 20))
                continue;
            memcpy(hot, reqs[i].line, ll + 1);
            hl.url = gt_slice_make(hot + (reqs[i].url.p - reqs[i].line), reqs[i].url.len);
            hl.source = gt_slice_make(hot + (reqs[i].source.p ? reqs[i].source.p - reqs[i].line : 0),
                                      reqs[i].source.len);
            gt_rules_request hrq;
            build(psl, &hl, &hrq, hot_host, sizeof(hot_host));
            uint64_t a = now_ns();
            untimed += a - c0;
            gt_rules_decide(rs, sc, &hrq, NULL, NULL, &dec);
            uint64_t b = now_ns();
            ns[k++] = b - a > tmin ? b - a - tmin : 0;
            if (p == 0)
                counts[dec.action]++;
        }
    uint64_t wall = now_ns() - wall0 - untimed;
    if (getenv("RULES_BENCH_SLOW")) { /* the slowest requests of the first pass, for tuning */
        for (size_t i = 0, j = 0; i < n; i++) {
            if (!ok[i])
                continue;
            if (ns[j] > 5000) {
                gt_rules_decide(rs, sc, &rqs[i], NULL, NULL, &dec);
                fprintf(stderr, "%llu ns cands=%u len=%zu %.*s\n", (unsigned long long)ns[j],
                        dec.candidates, reqs[i].url.len, (int)(reqs[i].url.len > 150 ? 150 : reqs[i].url.len),
                        reqs[i].url.p);
            }
            j++;
        }
    }
    /* from the scattered (cold) request lines, with the URL split: an upper bound */
    bool ctx_series = getenv("RULES_BENCH_NO_CTX") == NULL; /* for profiling decide alone */
    for (int p = 0; ctx_series && p < passes; p++)
        for (size_t i = 0; i < n; i++) {
            gt_rules_request rq;
            char host[256];
            uint64_t a = now_ns();
            if (!build(psl, &reqs[i], &rq, host, sizeof(host)))
                continue;
            gt_rules_decide(rs, sc, &rq, NULL, NULL, &dec);
            uint64_t b = now_ns();
            ns_ctx[kc++] = b - a > tmin ? b - a - tmin : 0;
        }
    qsort(ns, k, sizeof(uint64_t), cmp_u64);
    qsort(ns_ctx, kc, sizeof(uint64_t), cmp_u64);
    double mean = 0, mean_ctx = 0;
    for (size_t i = 0; i < k; i++)
        mean += (double)ns[i];
    for (size_t i = 0; i < kc; i++)
        mean_ctx += (double)ns_ctx[i];
    gt_ruleset_stats rst;
    gt_ruleset_get_stats(rs, &rst);
    printf("{\"by_host\":%zu,\"by_token\":%zu,\"by_prefix\":%zu,\"gated\":%zu,"
           "\"always\":%zu,",
           rst.by_host, rst.by_token, rst.by_prefix, rst.gated, rst.always);
    printf("\"rules\":%zu,\"requests\":%zu,\"passes\":%d,\"load_ms\":%.1f,"
           "\"compiled_kib\":%zu,\"heap_kib\":%zu,\"rss_growth_kib\":%ld,"
           "\"median_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu,\"mean_ns\":%.0f,"
           "\"ctx_median_ns\":%llu,\"ctx_p99_ns\":%llu,\"ctx_mean_ns\":%.0f,"
           "\"decisions_per_s\":%.0f,\"block\":%zu,\"allow\":%zu,\"rewrite\":%zu,"
           "\"redirect\":%zu,\"pass\":%zu,\"timer_ns\":%llu}\n",
           gt_ruleset_count(rs), nok, passes, (double)load_ns / 1e6,
           gt_ruleset_memory(rs) / 1024, (m1.uordblks - m0.uordblks) / 1024, rss1 - rss0,
           (unsigned long long)ns[k / 2], (unsigned long long)ns[k * 99 / 100],
           (unsigned long long)ns[k * 999 / 1000], mean / (double)k,
           (unsigned long long)(kc ? ns_ctx[kc / 2] : 0),
           (unsigned long long)(kc ? ns_ctx[kc * 99 / 100] : 0), kc ? mean_ctx / (double)kc : 0, (double)k / ((double)wall / 1e9), counts[GT_DECIDE_BLOCK],
           counts[GT_DECIDE_ALLOW], counts[GT_DECIDE_REWRITE], counts[GT_DECIDE_REDIRECT],
           counts[GT_DECIDE_PASS], (unsigned long long)tmin);
    gt_rules_scratch_free(sc);
    gt_ruleset_release(rs);
    gt_rules_psl_free(psl);
    gt_diags_free(&d);
    for (size_t i = 0; i < n; i++)
        free(reqs[i].line);
    free(reqs);
    free(rqs);
    free(hosts);
    free(ok);
    free(ns);
    free(ns_ctx);
    free(hot);
    return 0;
}
