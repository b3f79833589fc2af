/* The ruleset's lookup tables: a 64-bit hash of a host suffix or a literal token maps to
 * the run of rules filed under it. Built once per ruleset, read-only afterwards, so
 * workers share it without locks. A hash collision only adds a candidate: every candidate
 * is checked against its conditions. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* FNV-1a, 64-bit; 0 is reserved for empty slots. */
uint64_t gt_rules_hash(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h ? h : 1;
}

uint64_t gt_rules_hash_lower(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)gt_ascii_lower(p[i]);
        h *= 0x100000001b3ULL;
    }
    return h ? h : 1;
}

uint64_t gt_rules_prefix_hash(const char *p, size_t n)
{
    /* a different space than whole tokens: "imp2" as a prefix is not the token "imp2" */
    uint64_t h = gt_rules_hash_lower(p, n) ^ (0x9e3779b97f4a7c15ULL * (n + 1));
    return h ? h : 1;
}

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
    ix->keys = gt_xcalloc(ix->cap, sizeof(uint64_t));
    ix->start = gt_xcalloc(ix->cap, sizeof(uint32_t));
    ix->count = gt_xcalloc(ix->cap, sizeof(uint32_t));
    ix->items = gt_xcalloc(n ? n : 1, sizeof(uint32_t));
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
        while (ix->keys[slot])
            slot = (slot + 1) & (ix->cap - 1);
        ix->keys[slot] = ps[i].key;
        ix->start[slot] = (uint32_t)start;
        ix->count[slot] = (uint32_t)(out - start);
        i = j;
    }
    ix->nitems = out;
    free(ps);
}

void gt_rules_index_free(rule_index *ix)
{
    free(ix->keys);
    free(ix->start);
    free(ix->count);
    free(ix->items);
    memset(ix, 0, sizeof(*ix));
}

const uint32_t *gt_rules_index_get(const rule_index *ix, uint64_t h, size_t *n)
{
    *n = 0;
    if (!ix->cap)
        return NULL;
    size_t slot = h & (ix->cap - 1);
    while (ix->keys[slot]) {
        if (ix->keys[slot] == h) {
            *n = ix->count[slot];
            return ix->items + ix->start[slot];
        }
        slot = (slot + 1) & (ix->cap - 1);
    }
    return NULL;
}
