/* Bought-store benchmark: fills a store in a temp dir with N products (default 1,000,000),
 * builds the filter, then times gt_store_is_bought for keys that are not bought (the common
 * case: the filter answers) and for bought ones (filter, then an LMDB read transaction), and
 * a plain LMDB lookup with the filter stale. Prints one JSON line with medians and p99 in
 * ns, the fill rate and the size on disk. Usage: store_bench DIR [N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gretel/store.h"
#include "gretel/util.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void timed(gt_store *s, size_t n, size_t lookups, unsigned seed, bool bought,
                  uint64_t *med, uint64_t *p99, size_t *hits)
{
    uint64_t *ns = gt_xcalloc(lookups, sizeof(uint64_t));
    char key[64];
    *hits = 0;
    srand(seed);
    for (size_t i = 0; i < lookups; i++) {
        size_t k = (size_t)rand() % n;
        /* bought keys are even-numbered shop items; odd numbers were never marked */
        int len = snprintf(key, sizeof(key), "shop%zu.example:SKU-%zu", k % 1000,
                           bought ? k * 2 : k * 2 + 1);
        uint64_t a = now_ns();
        bool b = gt_store_is_bought(s, gt_slice_make(key, (size_t)len));
        ns[i] = now_ns() - a;
        *hits += b;
    }
    qsort(ns, lookups, sizeof(uint64_t), cmp);
    *med = ns[lookups / 2];
    *p99 = ns[lookups * 99 / 100];
    free(ns);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: store_bench DIR [N]\n");
        return 2;
    }
    size_t n = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 1000000;
    char err[512];
    gt_store *s = NULL;
    if (gt_store_open(&s, argv[1], err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t batch = 100000;
    gt_store_rec *recs = gt_xcalloc(batch, sizeof(*recs));
    uint64_t t0 = now_ns();
    for (size_t base = 0; base < n; base += batch) {
        size_t m = n - base < batch ? n - base : batch;
        for (size_t i = 0; i < m; i++) {
            size_t k = base + i;
            snprintf(recs[i].key, sizeof(recs[i].key), "shop%zu.example:SKU-%zu", k % 1000,
                     k * 2);
            snprintf(recs[i].source, sizeof(recs[i].source), "manual");
            recs[i].added = 1795000000;
        }
        if (gt_store_mark_all(s, recs, m, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    double fill_s = (double)(now_ns() - t0) / 1e9;
    t0 = now_ns();
    gt_store_refresh(s);
    double refresh_ms = (double)(now_ns() - t0) / 1e6;
    uint64_t nb_med, nb_p99, b_med, b_p99, st_med, st_p99;
    size_t nb_hits, b_hits, st_hits;
    timed(s, n, 200000, 1, false, &nb_med, &nb_p99, &nb_hits);
    timed(s, n, 200000, 2, true, &b_med, &b_p99, &b_hits);
    /* a mark after the last refresh: the filter is stale, every lookup goes to LMDB */
    gt_store_mark(s, GT_S("x.example:stale"), GT_S(""), GT_S("manual"), 0, err, sizeof(err));
    timed(s, n, 200000, 3, false, &st_med, &st_p99, &st_hits);
    char path[4096];
    snprintf(path, sizeof(path), "%s/data.mdb", argv[1]);
    struct stat sb;
    stat(path, &sb);
    printf("{\"products\":%zu,\"fill_s\":%.2f,\"filter_build_ms\":%.1f,"
           "\"not_bought_median_ns\":%llu,\"not_bought_p99_ns\":%llu,\"false_positives\":%zu,"
           "\"bought_median_ns\":%llu,\"bought_p99_ns\":%llu,\"bought_found\":%zu,"
           "\"lmdb_median_ns\":%llu,\"lmdb_p99_ns\":%llu,\"disk_mb\":%.1f}\n",
           n, fill_s, refresh_ms, (unsigned long long)nb_med, (unsigned long long)nb_p99,
           nb_hits, (unsigned long long)b_med, (unsigned long long)b_p99, b_hits,
           (unsigned long long)st_med, (unsigned long long)st_p99,
           (double)sb.st_blocks * 512 / 1e6);
    free(recs);
    gt_store_close(s);
    return 0;
}
