/* The compiled cache of a list set: its index (entries, buckets, literals, key tables)
 * written as one file, so that a restart with unchanged lists skips parsing and indexing
 * (about 120 ms for EasyList + EasyPrivacy). The list files are still read: filters point
 * into their text, and the cache is keyed by a fingerprint of their names and contents, so a
 * changed list can never be matched by a stale index. The file holds native integers and
 * hashes of this build on this machine (the header says which layout); anything that does
 * not match exactly, or does not add up, is ignored and rebuilt. Regex filters (a few dozen)
 * are compiled again on load: compiled patterns are not portable. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gretel/util.h"
#include "internal.h"

#define CACHE_MAGIC "GTLISTC2"

typedef struct {
    char magic[8];
    uint32_t endian; /* 0x01020304 as written */
    uint32_t sz_entry, sz_hot, sz_slot;
    uint64_t fingerprint;
    uint64_t n, nhot, lits_len, cap[4], tok_max; /* cap: each key table's, in tables() order */
    uint64_t always, nalways, rmparam, nrmparam, nrmhost;
    uint64_t stats[5];
    uint64_t payload; /* bytes after the header */
} head;

/* The set's key tables, in the file's order. */
static void tables(gt_abp_set *s, ktable *t[4])
{
    t[0] = &s->tok;
    t[1] = &s->host;
    t[2] = &s->dom;
    t[3] = &s->rmhost;
}

static size_t bloom_words(size_t cap)
{
    return cap * 4 / 64;
}

/* Where the key tables start: after the literals, at the next multiple of 8 (the Bloom
 * words are 64-bit; the mapping itself is page-aligned). */
static size_t tables_at(uint64_t n, uint64_t nhot, uint64_t lits_len)
{
    size_t at = sizeof(head) + n * sizeof(entry) + nhot * sizeof(hot) + lits_len;
    return (at + 7) & ~(size_t)7;
}

static size_t table_bytes(size_t cap)
{
    return cap * (sizeof(uint32_t) + sizeof(slot)) + bloom_words(cap) * sizeof(uint64_t);
}

static bool put(FILE *fp, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, fp) == n;
}

static bool put_table(FILE *fp, const ktable *t)
{
    size_t cap = t->mask + 1;
    return put(fp, t->keys, cap * sizeof(uint32_t)) && put(fp, t->s, cap * sizeof(slot)) &&
           put(fp, t->bloom, bloom_words(cap) * sizeof(uint64_t));
}

int gt_abp_set_save(const gt_abp_set *s, const char *path, char *err, size_t errlen)
{
    head h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.endian = 0x01020304u;
    h.sz_entry = sizeof(entry);
    h.sz_hot = sizeof(hot);
    h.sz_slot = sizeof(slot);
    h.fingerprint = s->fingerprint;
    h.n = s->n;
    h.nhot = s->nhot;
    h.lits_len = s->lits_len;
    ktable *t[4];
    tables((gt_abp_set *)s, t);
    size_t tb = 0;
    for (int i = 0; i < 4; i++) {
        h.cap[i] = t[i]->mask + 1;
        tb += table_bytes(h.cap[i]);
    }
    h.tok_max = s->tok_max;
    h.always = s->always;
    h.nalways = s->nalways;
    h.rmparam = s->rmparam;
    h.nrmparam = s->nrmparam;
    h.nrmhost = s->nrmhost;
    for (int i = 0; i < 5; i++)
        h.stats[i] = s->stats[i];
    size_t tat = tables_at(s->n, s->nhot, s->lits_len);
    size_t pad = tat - (sizeof(h) + s->n * sizeof(entry) + s->nhot * sizeof(hot) + s->lits_len);
    h.payload = tat - sizeof(h) + tb;
    static const char zeros[8];
    /* written beside, then renamed over: a reader sees the old file or the whole new one */
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!fp) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return GT_EIO;
    }
    bool ok = put(fp, &h, sizeof(h)) && put(fp, s->v, s->n * sizeof(entry)) &&
              put(fp, s->hot, s->nhot * sizeof(hot)) && put(fp, s->lits, s->lits_len) &&
              put(fp, zeros, pad);
    for (int i = 0; i < 4; i++)
        ok = ok && put_table(fp, t[i]);
    ok = fflush(fp) == 0 && ok;
    ok = fsync(fileno(fp)) == 0 && ok;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
        unlink(tmp);
        return GT_EIO;
    }
    return 0;
}

static bool pow2(uint64_t x)
{
    return x >= 16 && x <= (1u << 30) && (x & (x - 1)) == 0;
}

/* The table's arrays in place in the mapping at *at. */
static void map_table(ktable *t, char **at, size_t cap)
{
    t->keys = (uint32_t *)*at;
    *at += cap * sizeof(uint32_t);
    t->s = (slot *)*at;
    *at += cap * sizeof(slot);
    t->bloom = (uint64_t *)*at;
    *at += bloom_words(cap) * sizeof(uint64_t);
    t->mask = cap - 1;
    t->bloom_mask = cap * 4 - 1;
}

static bool table_ok(const ktable *t, size_t nhot)
{
    for (size_t k = 0; k <= t->mask; k++)
        if (t->keys[k] && (t->s[k].start > nhot || t->s[k].count > nhot - t->s[k].start))
            return false;
    return true;
}

/* Whether every index of the restored set stays inside it: a cache file is the user's own,
 * but a torn or foreign one must be turned down, never followed out of bounds. */
static bool consistent(const gt_abp_set *s)
{
    size_t nres = 0;
    for (size_t i = 0; i < s->n; i++) {
        const entry *e = &s->v[i];
        if (e->fileix >= s->nbufs || e->text_off > s->blen[e->fileix] ||
            e->text_len > s->blen[e->fileix] - e->text_off)
            return false;
        for (int k = 0; k < F_NSLICES; k++)
            if (e->len[k] && (e->off[k] > e->text_len || e->len[k] > e->text_len - e->off[k]))
                return false;
        /* a regex filter has its compiled pattern and nothing else has one: matching
         * follows the flag */
        if (e->re > s->n || !(e->flags & GT_ABP_REGEX) != !e->re)
            return false;
        if (e->re > nres)
            nres = e->re;
    }
    for (size_t k = 0; k < s->nhot; k++) {
        const hot *h = &s->hot[k];
        if (h->ix >= s->n || h->lit > s->lits_len || h->lit_len > s->lits_len - h->lit ||
            (h->lit_len && h->anchor >= h->lit_len))
            return false;
    }
    return table_ok(&s->tok, s->nhot) && table_ok(&s->host, s->nhot) &&
           table_ok(&s->dom, s->nhot) && table_ok(&s->rmhost, s->nhot) && s->always <= s->nhot &&
           s->nalways <= s->nhot - s->always && s->rmparam <= s->nhot &&
           s->nrmparam <= s->nhot - s->rmparam;
}

/* The set's index from the cache file, when it was written for exactly these files: the
 * file is mapped and used in place (read-only, shared with the page cache), which costs
 * a fraction of reading a dozen megabytes into fresh memory. */
static bool restore(gt_abp_set *s, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    head h;
    bool ok = fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(h) &&
              pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
              memcmp(h.magic, CACHE_MAGIC, 8) == 0 && h.endian == 0x01020304u &&
              h.sz_entry == sizeof(entry) && h.sz_hot == sizeof(hot) &&
              h.sz_slot == sizeof(slot) && h.fingerprint == s->fingerprint &&
              h.n < UINT32_MAX && h.nhot < UINT32_MAX && h.lits_len < UINT32_MAX &&
              pow2(h.cap[0]) && pow2(h.cap[1]) && pow2(h.cap[2]) && pow2(h.cap[3]) &&
              h.always <= UINT32_MAX && h.nalways <= UINT32_MAX && h.rmparam <= UINT32_MAX &&
              h.nrmparam <= UINT32_MAX && h.nrmhost <= h.nhot &&
              h.payload == tables_at(h.n, h.nhot, h.lits_len) - sizeof(h) +
                               table_bytes(h.cap[0]) + table_bytes(h.cap[1]) +
                               table_bytes(h.cap[2]) + table_bytes(h.cap[3]) &&
              (uint64_t)st.st_size == sizeof(h) + h.payload;
    void *map = ok ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)
                   : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED)
        return false;
    /* entries and buckets are 4-byte aligned (the header's size is a multiple of 8, theirs
     * of 4); the tables start 8-aligned (tables_at) */
    char *at = (char *)map + sizeof(h);
    s->map = map;
    s->map_len = (size_t)st.st_size;
    s->n = s->cap = h.n;
    s->v = (entry *)at;
    at += h.n * sizeof(entry);
    s->nhot = h.nhot;
    s->hot = (hot *)at;
    at += h.nhot * sizeof(hot);
    s->lits_len = h.lits_len;
    s->lits = at;
    at = (char *)map + tables_at(h.n, h.nhot, h.lits_len);
    ktable *t[4];
    tables(s, t);
    for (int i = 0; i < 4; i++)
        map_table(t[i], &at, h.cap[i]);
    s->tok_max = h.tok_max;
    s->always = (uint32_t)h.always;
    s->nalways = (uint32_t)h.nalways;
    s->rmparam = (uint32_t)h.rmparam;
    s->nrmparam = (uint32_t)h.nrmparam;
    s->nrmhost = (uint32_t)h.nrmhost;
    for (int i = 0; i < 5; i++)
        s->stats[i] = h.stats[i];
    if (!consistent(s))
        return false;
    /* the regexes, compiled again from their lines (parsing gives the same flags) */
    for (size_t i = 0; i < s->n; i++) {
        entry *e = &s->v[i];
        if (!e->re)
            continue;
        if (e->re > s->nres) {
            s->res = gt_xrealloc(s->res, e->re * sizeof(void *));
            memset(s->res + s->nres, 0, (e->re - s->nres) * sizeof(void *));
            s->nres = s->res_cap = e->re;
        }
        gt_abp_filter f;
        const char *why;
        gt_slice line = gt_slice_make(s->bufs[e->fileix] + e->text_off, e->text_len);
        if (gt_abp_parse(line, &f, &why) != GT_ABP_NETWORK || !f.re || s->res[e->re - 1]) {
            gt_abp_filter_free(&f);
            return false;
        }
        s->res[e->re - 1] = f.re;
    }
    return true;
}

/* Drops whatever a failed restore left, keeping the files' text. */
static void forget_index(gt_abp_set *s)
{
    for (size_t i = 0; i < s->nres; i++)
        if (s->res[i]) {
            gt_abp_filter f = {.re = s->res[i]};
            gt_abp_filter_free(&f);
        }
    free(s->res);
    if (s->map)
        munmap(s->map, s->map_len);
    s->map = NULL;
    s->map_len = 0;
    s->res = NULL;
    s->v = NULL;
    s->hot = NULL;
    s->lits = NULL;
    memset(&s->tok, 0, sizeof(s->tok));
    memset(&s->host, 0, sizeof(s->host));
    memset(&s->dom, 0, sizeof(s->dom));
    memset(&s->rmhost, 0, sizeof(s->rmhost));
    s->nres = s->res_cap = s->n = s->cap = s->nhot = s->lits_len = s->tok_max = 0;
    s->always = s->nalways = s->rmparam = s->nrmparam = s->nrmhost = 0;
    memset(s->stats, 0, sizeof(s->stats));
}

int gt_abp_set_load_cached(gt_abp_set **out, const char *const *files, size_t nfiles,
                           const char *cache_path, gt_diags *d, bool *from_cache)
{
    gt_abp_set *s = gt_lists_read_files(files, nfiles, d);
    *from_cache = false;
    if (cache_path && restore(s, cache_path)) {
        *from_cache = true;
        *out = s;
        return 0;
    }
    forget_index(s);
    gt_lists_build(s, d);
    char err[4400];
    if (cache_path && gt_abp_set_save(s, cache_path, err, sizeof(err)) < 0)
        gt_diags_add(d, 1, cache_path, 0, 0, "cannot write the lists' compiled cache: %s", err);
    *out = s;
    return 0;
}
