/* The ruleset's lookup tables: a 64-bit hash of a host suffix or a literal token maps to
 * the run of rules filed under it. Built once per ruleset, read-only afterwards, so
 * workers share it without locks. A hash collision only adds a candidate: every candidate
 * is checked against its conditions. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
    uint64_t key;
    uint32_t val;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->val < y->val ? -1 : x->val > y->val;
}

void gt_rules_index_build(rule_index *ix, const uint64_t *keys, const uint32_t *vals, size_t n)
{
    memset(ix, 0, sizeof(*ix));
    pair *ps = gt_xcalloc(n ? n : 1, sizeof(pair));
    for (size_t i = 0; i < n; i++)
        ps[i] = (pair){keys[i], vals[i]};
    qsort(ps, n, sizeof(pair), cmp_pair);
    size_t nkeys = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || ps[i].key != ps[i - 1].key)
            nkeys++;
    ix->cap = 16;
    while (ix->cap < nkeys * 2)
        ix->cap *= 2;
    ix->slots = gt_xcalloc(ix->cap, sizeof(index_slot));
    ix->items = gt_xcalloc(n ? n : 1, sizeof(uint32_t));
    ix->filter = gt_xcalloc(INDEX_FILTER_BITS / 64, sizeof(uint64_t));
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        size_t start = out;
        while (j < n && ps[j].key == ps[i].key) {
            if (j == i || ps[j].val != ps[j - 1].val)
                ix->items[out++] = ps[j].val;
            j++;
        }
        size_t slot = ps[i].key & (ix->cap - 1);
        while (ix->slots[slot].key)
            slot = (slot + 1) & (ix->cap - 1);
        ix->slots[slot] = (index_slot){ps[i].key, (uint32_t)start, (uint32_t)(out - start)};
        size_t bit = (ps[i].key >> 40) & (INDEX_FILTER_BITS - 1);
        ix->filter[bit / 64] |= 1ULL << (bit % 64);
        i = j;
    }
    ix->nitems = out;
    free(ps);
}

void gt_rules_index_free(rule_index *ix)
{
    free(ix->slots);
    free(ix->items);
    free(ix->filter);
    memset(ix, 0, sizeof(*ix));
}

uint64_t gt_rules_host_hash(const char *p, size_t n)
{
    uint64_t h = GT_RULES_HOST_SEED;
    size_t end = n;
    for (size_t i = n; i > 0; i--)
        if (p[i - 1] == '.') {
            h = gt_rules_host_step(h, p + i, end - i, p + n);
            end = i - 1;
        }
    return gt_rules_host_step(h, p, end, p + n);
}
