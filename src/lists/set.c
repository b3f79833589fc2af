/* A compiled set of list filters with the index the leading engines use: `||host^`
 * filters in a table by host (looked up by every suffix of the request's host), filters
 * bound to positive `domain=` sources and nothing else in a table by source domain, the
 * others filed under one token their pattern requires (an alphanumeric run that cannot be
 * part of a longer one: delimited by separators or anchors, not by `*`), and the few with
 * none of these tried on every request. A request's URL is tokenised once; each token's
 * bucket is checked. Decision: an `important` block wins, then an exception cancels a
 * block, then a block. Owns the list files' text (filters point into it).
 *
 * Layout, for a request's few cache misses: each bucket is a contiguous run of small
 * "hot" records (entry index, types, literal) so that a candidate is usually turned
 * down by its types or by a literal the URL lacks without touching the filter itself;
 * filters are stored compactly (offsets into their line) and expanded only to match. */
#include <errno.h>
#include <stdio.h>
#include <glob.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "gretel/lists.h"
#include "gretel/util.h"
#include "internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif


static gt_slice eslice(const gt_abp_set *s, const entry *e, int k)
{
    return gt_slice_make(s->bufs[e->fileix] + e->text_off + e->off[k], e->len[k]);
}

/* The filter as gt_abp_match takes it (slices into the list file's text). */
static void expand(const gt_abp_set *s, const entry *e, gt_abp_filter *f)
{
    f->flags = e->flags;
    f->types = e->types;
    f->pattern = eslice(s, e, F_PATTERN);
    f->domains = eslice(s, e, F_DOMAINS);
    f->redirect = eslice(s, e, F_REDIRECT);
    f->methods = eslice(s, e, F_METHODS);
    f->removeparam = eslice(s, e, F_REMOVEPARAM);
    f->re = e->re ? s->res[e->re - 1] : NULL;
}

/* Stores a parsed filter; false when a slice lies past what the compact form holds (a
 * line over 64 KiB). Takes the filter's regex. */
static bool add_entry(gt_abp_set *s, gt_abp_filter *f, gt_slice text, size_t fileix,
                      unsigned line)
{
    if (text.len > UINT16_MAX) {
        gt_abp_filter_free(f);
        return false;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = gt_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    entry *e = &s->v[s->n++];
    memset(e, 0, sizeof(*e));
    e->flags = f->flags;
    e->types = f->types;
    e->text_off = (uint32_t)(text.p - s->bufs[fileix]);
    e->text_len = (uint16_t)text.len;
    e->fileix = (uint16_t)fileix;
    e->line = line;
    const gt_slice *sl[F_NSLICES] = {&f->pattern, &f->domains, &f->redirect, &f->methods,
                                     &f->removeparam};
    for (int k = 0; k < F_NSLICES; k++)
        if (sl[k]->len) {
            e->off[k] = (uint16_t)(sl[k]->p - text.p);
            e->len[k] = (uint16_t)sl[k]->len;
        }
    if (f->re) {
        if (s->nres == s->res_cap) {
            s->res_cap = s->res_cap ? s->res_cap * 2 : 256;
            s->res = gt_xrealloc(s->res, s->res_cap * sizeof(void *));
        }
        s->res[s->nres++] = f->re;
        e->re = (uint32_t)s->nres;
        f->re = NULL;
    }
    return true;
}

/* Alphanumeric bytes to their lower case, every other byte to 0: the URL is lower-cased,
 * cut into tokens and hashed in one pass with it. */
#define LC2(c) [c] = (uint8_t)((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c))
#define LC_RANGE10(c) LC2(c), LC2(c + 1), LC2(c + 2), LC2(c + 3), LC2(c + 4), LC2(c + 5), \
                      LC2(c + 6), LC2(c + 7), LC2(c + 8), LC2(c + 9)
static const uint8_t tok_lc[256] = {
    LC_RANGE10('0'),
    LC_RANGE10('A'), LC_RANGE10('A' + 10), LC2('U'), LC2('V'), LC2('W'), LC2('X'), LC2('Y'), LC2('Z'),
    LC_RANGE10('a'), LC_RANGE10('a' + 10), LC2('u'), LC2('v'), LC2('w'), LC2('x'), LC2('y'), LC2('z'),
};

/* A word of 8 bytes with its ASCII capitals lower-cased, all at once (SWAR): hashing
 * needs no lower-cased copy of what it hashes. */
static inline uint64_t lower8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t low7 = w & ~high;
    uint64_t ge_a = low7 + 0x3f * ones;       /* high bit: byte >= 'A' */
    uint64_t gt_z = low7 + 0x25 * ones;       /* high bit: byte > 'Z' */
    uint64_t upper = ge_a & ~gt_z & ~w & high; /* ASCII only: the byte's own high bit clear */
    return w | (upper >> 2);                   /* 0x80 >> 2 = 0x20 */
}

/* 1 to 8 bytes as a word, without reading past them (overlapping loads). */
static inline uint64_t load_upto8(const char *p, size_t n)
{
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return ((uint64_t)a << 32) | b;
    }
    return ((uint64_t)(uint8_t)p[0] << 16) | ((uint64_t)(uint8_t)p[n >> 1] << 8) |
           (uint8_t)p[n - 1];
}

static inline uint64_t mix64(uint64_t x)
{
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 31);
}

/* The hash of a token, host or filter text, case-insensitive (ASCII): 8 bytes a step,
 * so that a URL's tokens cost a multiply or two each, not one per byte. Collisions cost
 * time only: every candidate they bring is matched in full. The values depend on the
 * machine's byte order; nothing stores them across machines. */
static uint32_t hash_lc(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (; n > 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ lower8(w));
    }
    if (n)
        h = mix64(h ^ lower8(load_upto8(p, n)));
    return (uint32_t)(h ^ (h >> 32));
}

/* The URL lower-cased into out (which has room for n rounded up to 16, plus 16) and
 * a bit per byte, set for the alphanumeric ones, into mask (n / 64 + 1 words). The
 * tokeniser then walks bit runs instead of branching on every byte, which on real URLs
 * mispredicts at each token's end. Bytes past n are zeros: never part of a token. */
static void lower_and_classify(const unsigned char *u, size_t n, char *out, uint64_t *mask)
{
    size_t words = n / 64 + 1;
    memset(mask, 0, words * sizeof(uint64_t));
    size_t i = 0;
#ifdef __SSE2__
    const __m128i flip = _mm_set1_epi8((char)0x80);
    const __m128i A1 = _mm_set1_epi8((char)(('A' - 1) ^ 0x80)), Z1 = _mm_set1_epi8((char)(('Z' + 1) ^ 0x80));
    const __m128i a1 = _mm_set1_epi8((char)(('a' - 1) ^ 0x80)), z1 = _mm_set1_epi8((char)(('z' + 1) ^ 0x80));
    const __m128i d1 = _mm_set1_epi8((char)(('0' - 1) ^ 0x80)), d9 = _mm_set1_epi8((char)(('9' + 1) ^ 0x80));
    const __m128i x20 = _mm_set1_epi8(0x20);
    for (; i + 16 <= n; i += 16) {
        __m128i c = _mm_loadu_si128((const __m128i *)(u + i));
        __m128i t = _mm_xor_si128(c, flip); /* signed compares order bytes as unsigned */
        __m128i up = _mm_and_si128(_mm_cmpgt_epi8(t, A1), _mm_cmplt_epi8(t, Z1));
        __m128i lo = _mm_or_si128(c, _mm_and_si128(up, x20));
        _mm_storeu_si128((__m128i *)(out + i), lo);
        __m128i tl = _mm_xor_si128(lo, flip);
        __m128i al = _mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(tl, a1), _mm_cmplt_epi8(tl, z1)),
                                  _mm_and_si128(_mm_cmpgt_epi8(tl, d1), _mm_cmplt_epi8(tl, d9)));
        mask[i / 64] |= (uint64_t)(uint32_t)_mm_movemask_epi8(al) << (i % 64);
    }
#endif
    for (; i < n; i++) {
        uint8_t l = tok_lc[u[i]];
        out[i] = l ? (char)l : (char)u[i];
        if (l)
            mask[i / 64] |= 1ull << (i % 64);
    }
    memset(out + n, 0, 16);
}

/* The first position from i on whose bit is set (want) or clear (!want); n if none. */
static size_t next_bit(const uint64_t *mask, size_t i, size_t n, bool want)
{
    while (i < n) {
        uint64_t w = want ? mask[i / 64] : ~mask[i / 64];
        w &= ~0ull << (i % 64);
        if (w) {
            size_t j = (i & ~(size_t)63) + (size_t)__builtin_ctzll(w);
            return j < n ? j : n;
        }
        i = (i & ~(size_t)63) + 64;
    }
    return n;
}

static bool alnum(unsigned char c)
{
    return tok_lc[c] != 0;
}

/* A hash as a table key: never 0, which marks an empty slot. */
static uint32_t key_of(uint32_t h)
{
    return h ? h : 1;
}

static inline uint32_t bloom_b2(uint32_t key)
{
    return (key * 0x9e3779b1u) >> 7;
}

static const slot *kt_find(const ktable *t, uint32_t key)
{
    size_t b1 = key & t->bloom_mask, b2 = bloom_b2(key) & t->bloom_mask;
    if (!((t->bloom[b1 / 64] >> (b1 % 64)) & (t->bloom[b2 / 64] >> (b2 % 64)) & 1))
        return NULL;
    for (size_t k = key & t->mask;; k = (k + 1) & t->mask) {
        if (t->keys[k] == key)
            return &t->s[k];
        if (!t->keys[k])
            return NULL;
    }
}

/* The slot of key, made when missing (the table was sized for every key: never full). */
static slot *kt_slot(ktable *t, uint32_t key)
{
    size_t k = key & t->mask;
    while (t->keys[k] && t->keys[k] != key)
        k = (k + 1) & t->mask;
    t->keys[k] = key;
    size_t b1 = key & t->bloom_mask, b2 = bloom_b2(key) & t->bloom_mask;
    t->bloom[b1 / 64] |= 1ull << (b1 % 64);
    t->bloom[b2 / 64] |= 1ull << (b2 % 64);
    return &t->s[k];
}

static void kt_init(ktable *t, size_t nkeys)
{
    size_t cap = 16;
    while (cap < nkeys * 2)
        cap *= 2;
    t->keys = gt_xcalloc(cap, sizeof(uint32_t));
    t->s = gt_xcalloc(cap, sizeof(slot));
    t->mask = cap - 1;
    /* 4 bits per slot (8 or more per key): about 3% of absent keys get through */
    t->bloom = gt_xcalloc(cap * 4 / 64, sizeof(uint64_t));
    t->bloom_mask = cap * 4 - 1;
}

static void kt_free(ktable *t)
{
    free(t->keys);
    free(t->s);
    free(t->bloom);
}

/* Lays the table's runs out from *at on (counts known), leaving each count at 0 for
 * placement to fill again. */
static void kt_layout(ktable *t, uint32_t *at)
{
    for (size_t k = 0; k <= t->mask; k++)
        if (t->keys[k]) {
            t->s[k].start = *at;
            *at += t->s[k].count;
            t->s[k].count = 0;
        }
}

/* Whether hay contains needle, found by memchr on the needle's byte at k (its rarest in
 * URLs, see anchor_of), then compared whole. For the short needles and URLs here this
 * beats memmem, whose set-up is paid on every call. */
static bool contains(const char *hay, size_t hn, const char *needle, size_t nn, size_t k)
{
    if (nn > hn)
        return false;
    const char *p = hay + k, *end = hay + (hn - nn) + k + 1;
    while (p < end) {
        p = memchr(p, needle[k], (size_t)(end - p));
        if (!p)
            return false;
        if (memcmp(p - k, needle, nn) == 0)
            return true;
        p++;
    }
    return false;
}

/* The offset of the literal's byte that is rarest in URLs (by the byte frequencies of
 * requests-dev, commonest first; bytes not listed are rarer still), so that the search
 * stops at few false starts. */
static uint8_t anchor_of(const char *lit, size_t n)
{
    static const char common[] = "taes2c/0ido%np.1rlmf3g=bhu&594w68-7v_yj:xkzq?,";
    size_t best = 0, best_rank = 0;
    for (size_t i = 0; i < n && i < 255; i++) {
        const char *c = memchr(common, lit[i], sizeof(common) - 1);
        size_t rank = c ? (size_t)(c - common) : sizeof(common);
        if (i == 0 || rank > best_rank) {
            best = i;
            best_rank = rank;
        }
    }
    return (uint8_t)best;
}

/* The host a `||host^...` filter names whole: followed by ^, / or :, or by a right
 * anchor (`||ads.example` alone matches ads.example.org too, so it is not whole). */
static bool whole_host(const gt_abp_filter *f, gt_slice *host)
{
    if (f->flags & GT_ABP_HOST_ONLY) {
        *host = f->pattern;
        return true;
    }
    if (!(f->flags & GT_ABP_HOST_ANCHOR) || (f->flags & GT_ABP_REGEX))
        return false;
    const char *p = f->pattern.p;
    size_t n = f->pattern.len, i = 0;
    while (i < n && (alnum((unsigned char)p[i]) || p[i] == '-' || p[i] == '.' || p[i] == '_'))
        i++;
    if (i == 0 || (i < n && p[i] != '^' && p[i] != '/' && p[i] != ':'))
        return false;
    if (i == n && !(f->flags & GT_ABP_RIGHT_ANCHOR))
        return false;
    *host = gt_slice_make(p, i);
    return true;
}

/* Calls fn for every token the pattern requires whole: an alphanumeric run of 2+ bytes
 * delimited by separators or anchors (never by '*', which could extend it). Regex filters
 * offer the token the rule index would file them under (src/rules/pattern.c). */
typedef void (*tok_fn)(void *arg, const char *t, size_t n);

static void each_token(const gt_abp_filter *f, tok_fn fn, void *arg)
{
    if (f->flags & GT_ABP_REGEX) {
        char buf[128];
        bool prefix = false;
        size_t tl = gt_rules_required_token(f->pattern.p + 1, f->pattern.len - 2, buf,
                                            sizeof(buf), &prefix);
        if (tl >= 2 && !prefix)
            fn(arg, buf, tl);
        return;
    }
    const char *p = f->pattern.p;
    size_t n = f->pattern.len;
    bool left = f->flags & (GT_ABP_LEFT_ANCHOR | GT_ABP_HOST_ANCHOR);
    bool right = f->flags & GT_ABP_RIGHT_ANCHOR;
    for (size_t i = 0; i < n;) {
        if (!alnum((unsigned char)p[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && alnum((unsigned char)p[j]))
            j++;
        bool ok_l = i == 0 ? left : p[i - 1] != '*';
        bool ok_r = j == n ? right : p[j] != '*';
        if (ok_l && ok_r && j - i >= 2)
            fn(arg, p + i, j - i);
        i = j;
    }
}

/* How many filters offer each token (a small open-addressing count table). */
typedef struct {
    uint32_t *key, *count;
    size_t mask, n;
} tcount;

static void tcount_add(tcount *t, uint32_t h)
{
    if ((t->n + 1) * 2 > t->mask + 1) {
        size_t cap = (t->mask + 1) * 2;
        uint32_t *nk = gt_xcalloc(cap, sizeof(uint32_t)), *nc = gt_xcalloc(cap, sizeof(uint32_t));
        for (size_t i = 0; i <= t->mask; i++)
            if (t->key[i])
                for (size_t k = t->key[i] & (cap - 1);; k = (k + 1) & (cap - 1))
                    if (!nk[k]) {
                        nk[k] = t->key[i];
                        nc[k] = t->count[i];
                        break;
                    }
        free(t->key);
        free(t->count);
        t->key = nk;
        t->count = nc;
        t->mask = cap - 1;
    }
    h |= 1;
    for (size_t k = h & t->mask;; k = (k + 1) & t->mask) {
        if (t->key[k] == h) {
            t->count[k]++;
            return;
        }
        if (!t->key[k]) {
            t->key[k] = h;
            t->count[k] = 1;
            t->n++;
            return;
        }
    }
}

static uint32_t tcount_get(const tcount *t, uint32_t h)
{
    h |= 1;
    for (size_t k = h & t->mask; t->key[k]; k = (k + 1) & t->mask)
        if (t->key[k] == h)
            return t->count[k];
    return 0;
}

static void count_tok(void *arg, const char *t, size_t n)
{
    tcount_add(arg, hash_lc(t, n));
}

typedef struct {
    const tcount *counts;
    uint32_t best_key, best_count;
    size_t best_len;
    const char *best_p; /* where it is in the pattern (regex filters: elsewhere) */
} tok_choice;

/* The rarest token among the filters (ties: the longer), so that buckets stay small. */
static void choose_tok(void *arg, const char *t, size_t n)
{
    tok_choice *c = arg;
    uint32_t h = hash_lc(t, n), cnt = tcount_get(c->counts, h);
    if (!c->best_len || cnt < c->best_count || (cnt == c->best_count && n > c->best_len)) {
        c->best_key = h;
        c->best_count = cnt;
        c->best_len = n;
        c->best_p = t;
    }
}

/* The text of a filter without its badfilter option, for comparing with others. */
static size_t normal_text(gt_slice line, char *out, size_t cap)
{
    size_t o = 0;
    gt_slice s = gt_slice_trim(line);
    const char *dollar = NULL;
    for (size_t i = s.len; i-- > 0;)
        if (s.p[i] == '$') {
            dollar = s.p + i;
            break;
        }
    size_t head = dollar ? (size_t)(dollar - s.p) : s.len;
    if (head >= cap)
        return 0;
    memcpy(out, s.p, head);
    o = head;
    if (dollar) {
        gt_slice rest = gt_slice_make(dollar + 1, (size_t)(s.p + s.len - dollar - 1)), opt;
        bool first = true;
        while (gt_slice_next(&rest, ',', &opt)) {
            if (gt_slice_caseeq(opt, GT_S("badfilter")) || opt.len == 0)
                continue;
            if (o + opt.len + 2 >= cap)
                return 0;
            out[o++] = first ? '$' : ',';
            first = false;
            memcpy(out + o, opt.p, opt.len);
            o += opt.len;
        }
    }
    return o;
}

typedef struct {
    uint32_t *h;
    size_t mask, n;
} hset;

static void hset_add(hset *t, uint32_t h)
{
    if ((t->n + 1) * 2 > t->mask + 1) {
        size_t cap = (t->mask + 1) * 2;
        uint32_t *nh = gt_xcalloc(cap, sizeof(uint32_t));
        for (size_t i = 0; i <= t->mask; i++)
            if (t->h[i])
                for (size_t k = t->h[i] & (cap - 1);; k = (k + 1) & (cap - 1))
                    if (!nh[k]) {
                        nh[k] = t->h[i];
                        break;
                    }
        free(t->h);
        t->h = nh;
        t->mask = cap - 1;
    }
    h |= 1;
    for (size_t k = h & t->mask;; k = (k + 1) & t->mask) {
        if (t->h[k] == h)
            return;
        if (!t->h[k]) {
            t->h[k] = h;
            t->n++;
            return;
        }
    }
}

static bool hset_has(const hset *t, uint32_t h)
{
    if (!t->h)
        return false;
    h |= 1;
    for (size_t k = h & t->mask; t->h[k]; k = (k + 1) & t->mask)
        if (t->h[k] == h)
            return true;
    return false;
}

/* The longest run of the pattern without '*' or '^' (for regex filters: the bytes every
 * match contains), lower-cased, into out; 0 when under 3 bytes or the filter is
 * match-case (then the URL is not searched lower-cased). */
static size_t literal(const gt_abp_filter *f, char *out, size_t cap, size_t *at)
{
    *at = SIZE_MAX; /* its offset in the pattern, when it is a run of the pattern */
    if (f->flags & (GT_ABP_MATCH_CASE | GT_ABP_HOST_ONLY))
        return 0;
    const char *p = f->pattern.p;
    size_t n = f->pattern.len, bi = 0, bl = 0;
    char rlit[256];
    if (f->flags & GT_ABP_REGEX) {
        /* the regex is caseless, so its literal is compared lower-cased, like the URL */
        bl = n >= 2 ? gt_rules_required_literal(p + 1, n - 2, rlit, sizeof(rlit)) : 0;
        p = rlit;
    } else {
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && p[j] != '*' && p[j] != '^')
                j++;
            if (j - i > bl) {
                bi = i;
                bl = j - i;
            }
            i = j + 1;
        }
    }
    if (bl < 3 || bl > cap || bl > UINT16_MAX)
        return 0; /* too short to be worth a search */
    if (!(f->flags & GT_ABP_REGEX))
        *at = bi;
    for (size_t k = 0; k < bl; k++) {
        char c = p[bi + k];
        out[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return bl;
}

/* Calls fn with each positive domain= entry, when the filter can be filed by them: it
 * has at least one, and none is an entity ("example.*") that no exact key could find. */
typedef void (*dom_fn)(void *arg, uint32_t key);

static bool each_domain(const gt_abp_filter *f, dom_fn fn, void *arg)
{
    gt_slice rest = f->domains, d;
    size_t pos = 0;
    while (gt_slice_next(&rest, '|', &d)) {
        if (!d.len || d.p[0] == '~')
            continue;
        if (memchr(d.p, '*', d.len))
            return false;
        pos++;
    }
    if (!pos)
        return false;
    rest = f->domains;
    while (fn && gt_slice_next(&rest, '|', &d))
        if (d.len && d.p[0] != '~')
            fn(arg, key_of(hash_lc(d.p, d.len)));
    return true;
}

typedef struct {
    ktable *t;
    hot *hot;
    uint32_t ix;
    const hot *tmpl;
} placer;

static void count_dom(void *arg, uint32_t key)
{
    kt_slot(((placer *)arg)->t, key)->count++;
}

static void place_dom(void *arg, uint32_t key)
{
    placer *p = arg;
    slot *sl = kt_slot(p->t, key);
    p->hot[sl->start + sl->count++] = *p->tmpl;
}

/* The 64-bit hash of every byte, 8 at a time (the cache's fingerprint). */
static uint64_t hash64(uint64_t h, const void *data, size_t n)
{
    const char *p = data;
    h ^= n;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ull;
    }
    if (n)
        h = mix64(h ^ load_upto8(p, n)) + 0x9e3779b97f4a7c15ull;
    return h;
}

gt_abp_set *gt_lists_read_files(const char *const *files, size_t nfiles, gt_diags *d)
{
    gt_abp_set *s = gt_xcalloc(1, sizeof(*s));
    s->bufs = gt_xcalloc(nfiles ? nfiles : 1, sizeof(char *));
    s->blen = gt_xcalloc(nfiles ? nfiles : 1, sizeof(size_t));
    s->files = gt_xcalloc(nfiles ? nfiles : 1, sizeof(char *));
    uint64_t fp_ = 0x67726574656c4c31ull; /* "gretelL1" */
    for (size_t fi = 0; fi < nfiles; fi++) {
        FILE *fp = fopen(files[fi], "rb");
        if (!fp) {
            gt_diags_add(d, 0, files[fi], 0, 0, "cannot open: %s", strerror(errno));
            continue;
        }
        fseek(fp, 0, SEEK_END);
        long sz = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        char *buf = gt_xmalloc((size_t)(sz > 0 ? sz : 0) + 1);
        size_t got = fread(buf, 1, (size_t)(sz > 0 ? sz : 0), fp);
        fclose(fp);
        buf[got] = 0;
        if (s->nbufs >= 65535 || got >= UINT32_MAX) {
            gt_diags_add(d, 0, files[fi], 0, 0, "too many or too large list files");
            free(buf);
            continue;
        }
        s->bufs[s->nbufs] = buf;
        s->blen[s->nbufs] = got;
        s->files[s->nbufs] = gt_xstrdup(files[fi]);
        s->nbufs++;
        fp_ = hash64(fp_, files[fi], strlen(files[fi]) + 1);
        fp_ = hash64(fp_, buf, got);
    }
    s->fingerprint = fp_;
    return s;
}

int gt_abp_set_load(gt_abp_set **out, const char *const *files, size_t nfiles, gt_diags *d)
{
    gt_abp_set *s = gt_lists_read_files(files, nfiles, d);
    gt_lists_build(s, d);
    *out = s;
    return 0;
}

void gt_lists_build(gt_abp_set *s, gt_diags *d)
{
    hset bad = {gt_xcalloc(1024, sizeof(uint32_t)), 1023, 0};
    /* pass 1: parse, remember badfilter texts */
    for (size_t fileix = 0; fileix < s->nbufs; fileix++) {
        char *buf = s->bufs[fileix];
        size_t got = s->blen[fileix];
        const char *fname = s->files[fileix];
        bool abp = strstr(buf, "[Adblock") || strstr(buf, "\n!") || buf[0] == '!' ||
                   strstr(buf, "||") || strstr(buf, "##");
        unsigned lineno = 0;
        for (char *p = buf; p < buf + got;) {
            char *nl = memchr(p, '\n', (size_t)(buf + got - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(buf + got - p);
            gt_slice line = gt_slice_make(p, len);
            lineno++;
            p += len + 1;
            if (len && line.p[len - 1] == '\r')
                line.len--;
            char host[256];
            bool ip_first = len && line.p[0] >= '0' && line.p[0] <= '9' &&
                            memchr(line.p, ' ', line.len);
            if (!abp && line.len && line.p[0] == '#')
                continue;
            gt_abp_filter f;
            if ((!abp || (ip_first && !memchr(line.p, '#', line.len))) &&
                gt_hosts_line(line, host, sizeof(host))) {
                /* a hosts entry: the host and its subdomains, as ||host^ */
                memset(&f, 0, sizeof(f));
                f.flags = GT_ABP_HOST_ANCHOR | GT_ABP_HOST_ONLY;
                const char *hp = NULL; /* the host inside the line (matching ignores case) */
                for (size_t i = 0; i + strlen(host) <= line.len; i++)
                    if (strncasecmp(line.p + i, host, strlen(host)) == 0) {
                        hp = line.p + i;
                        break;
                    }
                if (!hp)
                    continue;
                f.pattern = gt_slice_make(hp, strlen(host));
            } else {
                const char *why;
                if (gt_abp_parse(line, &f, &why) != GT_ABP_NETWORK) {
                    gt_abp_filter_free(&f);
                    continue;
                }
                if (f.flags & GT_ABP_BADFILTER) {
                    char t[4096];
                    size_t tl = normal_text(line, t, sizeof(t));
                    if (tl)
                        hset_add(&bad, hash_lc(t, tl));
                    gt_abp_filter_free(&f);
                    continue;
                }
            }
            if (!add_entry(s, &f, line, fileix, lineno))
                gt_diags_add(d, 1, fname, lineno, 1, "filter longer than 65535 bytes: skipped");
        }
    }
    /* pass 2: drop badfiltered, choose each filter's place and key */
    tcount counts = {gt_xcalloc(1024, sizeof(uint32_t)), gt_xcalloc(1024, sizeof(uint32_t)), 1023,
                     0};
    for (size_t i = 0; i < s->n; i++) {
        gt_abp_filter f;
        gt_slice host;
        expand(s, &s->v[i], &f);
        if (!whole_host(&f, &host))
            each_token(&f, count_tok, &counts);
    }
    enum { C_DROP, C_HOST, C_TOK, C_DOM, C_ALWAYS, C_RMPARAM, C_RMHOST };
    size_t nn = s->n ? s->n : 1;
    uint8_t *cls = gt_xcalloc(nn, 1);
    uint32_t *key = gt_xcalloc(nn, sizeof(uint32_t)), *litoff = gt_xcalloc(nn, sizeof(uint32_t));
    uint16_t *litlen = gt_xcalloc(nn, sizeof(uint16_t)), *litat = gt_xcalloc(nn, sizeof(uint16_t));
    char *tlits = NULL;
    size_t tl_len = 0, tl_cap = 0, nhost = 0, ntok = 0, ndom = 0, nrmhost = 0, nhot = 0,
           lits_total = 0;
    for (size_t i = 0; i < s->n; i++) {
        entry *e = &s->v[i];
        gt_abp_filter f;
        expand(s, e, &f);
        if (bad.n) {
            /* $badfilter cancels the filter written the same way without it */
            char t[4096];
            gt_slice text = gt_slice_make(s->bufs[e->fileix] + e->text_off, e->text_len);
            size_t tl = normal_text(text, t, sizeof(t));
            if (tl && hset_has(&bad, hash_lc(t, tl))) {
                s->stats[3]++;
                continue;
            }
        }
        /* a filter with nothing to match on would block everything: never a verdict */
        if (!f.pattern.len && !(f.flags & GT_ABP_REGEX) && !f.domains.len && !f.types &&
            !(f.flags & GT_ABP_REMOVEPARAM))
            continue;
        char lit[512];
        size_t lat, ll = literal(&f, lit, sizeof(lit), &lat);
        litat[i] = AT_NONE;
        if (tl_len + ll > tl_cap) {
            tl_cap = tl_cap ? tl_cap * 2 : 65536;
            tlits = gt_xrealloc(tlits, tl_cap);
        }
        memcpy(tlits + tl_len, lit, ll);
        litoff[i] = (uint32_t)tl_len;
        litlen[i] = (uint16_t)ll;
        tl_len += ll;
        gt_slice host;
        tok_choice tc = {&counts, 0, 0, 0};
        size_t copies = 1;
        bool dom_ok = false;
        if ((f.flags & GT_ABP_REMOVEPARAM) && whole_host(&f, &host)) {
            /* rewrites, indexed apart: by host (most of them), else tried on every query */
            key[i] = key_of(hash_lc(host.p, host.len));
            cls[i] = C_RMHOST;
            nrmhost++;
            s->nrmhost++;
        } else if (f.flags & GT_ABP_REMOVEPARAM) {
            cls[i] = C_RMPARAM;
        } else if (whole_host(&f, &host)) {
            key[i] = key_of(hash_lc(host.p, host.len));
            if (ll && lat == 0 && host.p == f.pattern.p)
                litat[i] = 0; /* the literal starts with the host */
            cls[i] = C_HOST;
            nhost++;
        } else if (!(dom_ok = each_domain(&f, NULL, NULL)) &&
                   (each_token(&f, choose_tok, &tc), tc.best_len)) {
            key[i] = key_of(tc.best_key);
            if (tc.best_len > s->tok_max)
                s->tok_max = tc.best_len;
            size_t to = (size_t)(tc.best_p - f.pattern.p);
            if (ll && lat != SIZE_MAX && !(f.flags & GT_ABP_REGEX) && to >= lat &&
                to + tc.best_len <= lat + ll && to - lat < AT_NONE)
                litat[i] = (uint16_t)(to - lat); /* the token inside the literal */
            cls[i] = C_TOK;
            ntok++;
        } else if (dom_ok) {
            /* a filter for some sites only: found by the page's domain, the most selective
             * key it has (a token as common as "com" would bring it to most requests, and
             * its domain list is long to check) */
            cls[i] = C_DOM;
            copies = 0;
            gt_slice rest = f.domains, dm;
            while (gt_slice_next(&rest, '|', &dm))
                copies += dm.len && dm.p[0] != '~';
            ndom += copies;
        } else {
            cls[i] = C_ALWAYS;
        }
        nhot += copies;
        lits_total += copies * ll;
    }
    /* pass 3: count each key's filters, lay the runs out, then place (in list order) */
    kt_init(&s->host, nhost);
    kt_init(&s->tok, ntok);
    kt_init(&s->dom, ndom);
    kt_init(&s->rmhost, nrmhost);
    placer pl = {&s->dom, NULL, 0, NULL};
    for (size_t i = 0; i < s->n; i++) {
        gt_abp_filter f;
        switch (cls[i]) {
        case C_HOST: kt_slot(&s->host, key[i])->count++; break;
        case C_TOK: kt_slot(&s->tok, key[i])->count++; break;
        case C_DOM:
            expand(s, &s->v[i], &f);
            each_domain(&f, count_dom, &pl);
            break;
        case C_ALWAYS: s->nalways++; break;
        case C_RMPARAM: s->nrmparam++; break;
        case C_RMHOST: kt_slot(&s->rmhost, key[i])->count++; break;
        default: break;
        }
    }
    uint32_t at = 0;
    kt_layout(&s->host, &at);
    kt_layout(&s->tok, &at);
    kt_layout(&s->dom, &at);
    kt_layout(&s->rmhost, &at);
    s->always = at;
    at += s->nalways;
    s->rmparam = at;
    at += s->nrmparam;
    s->nhot = at;
    s->hot = gt_xcalloc(at ? at : 1, sizeof(hot));
    pl.hot = s->hot;
    uint32_t na = 0, nr = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (cls[i] == C_DROP)
            continue;
        const entry *e = &s->v[i];
        hot h = {.ix = (uint32_t)i, .types = e->types, .lit = litoff[i], .lit_len = litlen[i],
                 .lit_at = litat[i],
                 .verdict = (e->flags & GT_ABP_EXCEPTION)   ? V_EXCEPTION
                            : (e->flags & GT_ABP_IMPORTANT) ? V_IMPORTANT
                                                            : V_BLOCK};
        slot *sl;
        gt_abp_filter f;
        switch (cls[i]) {
        case C_HOST:
            sl = kt_slot(&s->host, key[i]);
            s->hot[sl->start + sl->count++] = h;
            s->stats[0]++;
            break;
        case C_TOK:
            sl = kt_slot(&s->tok, key[i]);
            s->hot[sl->start + sl->count++] = h;
            s->stats[1]++;
            break;
        case C_DOM:
            expand(s, e, &f);
            pl.tmpl = &h;
            each_domain(&f, place_dom, &pl);
            s->stats[4]++;
            break;
        case C_ALWAYS:
            s->hot[s->always + na++] = h;
            s->stats[2]++;
            break;
        case C_RMPARAM:
            s->hot[s->rmparam + nr++] = h;
            break;
        case C_RMHOST:
            sl = kt_slot(&s->rmhost, key[i]);
            s->hot[sl->start + sl->count++] = h;
            break;
        default: break;
        }
    }
    /* the literals in bucket order, next to each other for the request's searches */
    s->lits = gt_xmalloc(lits_total ? lits_total : 1);
    s->lits_len = lits_total;
    size_t lo = 0;
    for (size_t k = 0; k < s->nhot; k++) {
        hot *h = &s->hot[k];
        memcpy(s->lits + lo, tlits + h->lit, h->lit_len);
        h->lit = (uint32_t)lo;
        h->anchor = anchor_of(s->lits + lo, h->lit_len);
        lo += h->lit_len;
    }
    free(tlits);
    free(cls);
    free(key);
    free(litoff);
    free(litlen);
    free(litat);
    free(bad.h);
    free(counts.key);
    free(counts.count);
    /* the entries' array at its size: a hundred thousand of them */
    if (s->n && s->n < s->cap) {
        s->v = gt_xrealloc(s->v, s->n * sizeof(*s->v));
        s->cap = s->n;
    }
}

void gt_abp_set_free(gt_abp_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nres; i++) {
        gt_abp_filter f = {.re = s->res[i]};
        gt_abp_filter_free(&f);
    }
    for (size_t i = 0; i < s->nbufs; i++) {
        free(s->bufs[i]);
        free(s->files[i]);
    }
    free(s->res);
    free(s->bufs);
    free(s->blen);
    free(s->files);
    if (s->map) {
        munmap(s->map, s->map_len); /* the index was the compiled cache, mapped */
    } else {
        free(s->v);
        free(s->hot);
        free(s->lits);
        kt_free(&s->tok);
        kt_free(&s->host);
        kt_free(&s->dom);
        kt_free(&s->rmhost);
    }
    free(s);
}

/* For the watcher: changes when a list file (or what a pattern matches) changes. */
uint64_t gt_abp_set_stamp(const gt_abp_set *s, const char *const *patterns, size_t npatterns)
{
    uint64_t h = 0x6c69737473ull;
    for (size_t i = 0; s && i < s->nbufs; i++) {
        struct stat st;
        memset(&st, 0, sizeof(st));
        int r = stat(s->files[i], &st);
        uint64_t v[5] = {(uint64_t)r, (uint64_t)st.st_ino, (uint64_t)st.st_size,
                         (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
        h = hash64(h, s->files[i], strlen(s->files[i]));
        h = hash64(h, v, sizeof(v));
    }
    for (size_t i = 0; i < npatterns; i++) {
        glob_t g;
        if (!strpbrk(patterns[i], "*?[") || glob(patterns[i], 0, NULL, &g) != 0)
            continue;
        for (size_t k = 0; k < g.gl_pathc; k++)
            h = hash64(h, g.gl_pathv[k], strlen(g.gl_pathv[k]) + 1);
        globfree(&g);
    }
    return h;
}

size_t gt_abp_set_files(const gt_abp_set *s, const char **names, size_t *filters, size_t cap)
{
    if (!s)
        return 0;
    for (size_t i = 0; i < s->nbufs && i < cap; i++) {
        names[i] = s->files[i];
        filters[i] = 0;
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].fileix < cap)
            filters[s->v[i].fileix]++;
    return s->nbufs;
}

size_t gt_abp_set_count(const gt_abp_set *s)
{
    return s->n;
}

void gt_abp_set_stats(const gt_abp_set *s, size_t *by_host, size_t *by_token, size_t *always)
{
    *by_host = s->stats[0];
    *by_token = s->stats[1];
    *always = s->stats[2] + s->stats[4];
}

typedef struct {
    const entry *block, *important, *exception;
    gt_slice lurl; /* the URL lower-cased, for the literal prefilter */
} verdict;

#ifdef GT_LISTS_STATS
unsigned long gt_st_visit, gt_st_match, gt_st_hit, gt_st_lit, gt_st_cont, gt_st_pos;
#define ST(x) (x++)
#else
#define ST(x) ((void)0)
#endif

/* Tries a run of candidates. pos: where the run's key (token or host) was found in the
 * lower-cased URL (SIZE_MAX: not known); repeat: the key was tried before at another
 * place (then only candidates whose literal is checked at pos can differ). */
static void consider(const gt_abp_set *s, const hot *h, uint32_t n, gt_abp_request *rq,
                     verdict *v, size_t pos, bool repeat)
{
    for (const hot *end = h + n; h < end; h++) {
        ST(gt_st_visit);
        /* skip what cannot change the verdict any more */
        if (h->verdict == V_EXCEPTION ? v->exception != NULL
            : h->verdict == V_IMPORTANT ? v->important != NULL
                                        : v->block != NULL)
            continue;
        if (h->types && !(h->types & (1u << rq->type)))
            continue;
        ST(gt_st_lit);
        bool at_pos = h->lit_len && h->lit_at != AT_NONE && pos != SIZE_MAX && v->lurl.len;
        if (repeat && !at_pos)
            continue;
        if (at_pos) {
            /* the literal where the key is: one comparison instead of a search */
            ST(gt_st_pos);
            if (pos < h->lit_at || pos - h->lit_at + h->lit_len > v->lurl.len ||
                memcmp(v->lurl.p + pos - h->lit_at, s->lits + h->lit, h->lit_len) != 0)
                continue;
        } else if (h->lit_len && v->lurl.len && (ST(gt_st_cont), 1) &&
                   !contains(v->lurl.p, v->lurl.len, s->lits + h->lit, h->lit_len, h->anchor)) {
            continue;
        }
        const entry *e = &s->v[h->ix];
        gt_abp_filter f;
        expand(s, e, &f);
        ST(gt_st_match);
        if (!gt_abp_match(&f, rq))
            continue;
        ST(gt_st_hit);
        if (h->verdict == V_EXCEPTION)
            v->exception = e;
        else if (h->verdict == V_IMPORTANT)
            v->important = e;
        else
            v->block = e;
    }
}

static void consider_slot(const gt_abp_set *s, const slot *sl, gt_abp_request *rq, verdict *v,
                          size_t pos, bool repeat)
{
    if (sl)
        consider(s, s->hot + sl->start, sl->count, rq, v, pos, repeat);
}

/* The verdict and the deciding entry (NULL for PASS). */
static gt_abp_verdict decide_entry(const gt_abp_set *s, const gt_abp_request *rq_in,
                                   const entry **out)
{
    verdict v = {0};
    gt_abp_request rqc = *rq_in;
    gt_abp_request *rq = &rqc;
    char lurl[4096 + 32];
    uint64_t amask[4096 / 64 + 1];
    const unsigned char *u = (const unsigned char *)rq->url.p;
    size_t n = rq->url.len;
    bool lowered = n <= 4096;
    if (lowered) {
        lower_and_classify(u, n, lurl, amask);
        v.lurl = gt_slice_make(lurl, n);
        rqc.lurl = v.lurl;
        u = (const unsigned char *)lurl;
    }
    /* the host and each parent (a.b.example, b.example, example), with where each
     * starts in the URL when the host is a part of it */
    size_t hpos = rq->host.p >= rq->url.p && rq->host.p + rq->host.len <= rq->url.p + n
                      ? (size_t)(rq->host.p - rq->url.p)
                      : SIZE_MAX;
    for (gt_slice h = rq->host; h.len;) {
        consider_slot(s, kt_find(&s->host, key_of(hash_lc(h.p, h.len))), rq, &v,
                      hpos == SIZE_MAX ? SIZE_MAX : hpos + (size_t)(h.p - rq->host.p), false);
        const char *dot = memchr(h.p, '.', h.len);
        if (!dot)
            break;
        h = gt_slice_make(dot + 1, h.len - (size_t)(dot + 1 - h.p));
    }
    /* the source page's host and each parent, for filters bound to domain= only */
    for (gt_slice h = rq->source_host; h.len && s->stats[4];) {
        consider_slot(s, kt_find(&s->dom, key_of(hash_lc(h.p, h.len))), rq, &v, SIZE_MAX, false);
        const char *dot = memchr(h.p, '.', h.len);
        if (!dot)
            break;
        h = gt_slice_make(dot + 1, h.len - (size_t)(dot + 1 - h.p));
    }
    /* every alphanumeric token of the URL, at each place it is found (a token that comes
     * back, ".js" forty times in a combo URL, costs a comparison per candidate) */
    const slot *seen[64];
    size_t nseen = 0;
    for (size_t i = 0; i < n;) {
        size_t j;
        if (lowered) {
            i = next_bit(amask, i, n, true);
            j = next_bit(amask, i, n, false);
        } else {
            /* a URL past 4 KiB: byte by byte */
            if (!tok_lc[u[i]]) {
                i++;
                continue;
            }
            for (j = i + 1; j < n && tok_lc[u[j]];)
                j++;
        }
        const slot *sl = j - i >= 2 && j - i <= s->tok_max
                             ? kt_find(&s->tok, key_of(hash_lc((const char *)u + i, j - i)))
                             : NULL;
        if (sl) {
            bool again = false;
            for (size_t k = 0; k < nseen && !again; k++)
                again = seen[k] == sl;
            if (!again && nseen < sizeof(seen) / sizeof(seen[0]))
                seen[nseen++] = sl;
            consider_slot(s, sl, rq, &v, i, again);
        }
        i = j;
    }
    consider(s, s->hot + s->always, s->nalways, rq, &v, SIZE_MAX, false);
    *out = v.important ? v.important : v.exception && v.block ? v.exception : v.block;
    if (v.important)
        return GT_ABP_BLOCK;
    if (v.block)
        return v.exception ? GT_ABP_ALLOW : GT_ABP_BLOCK;
    return GT_ABP_PASS;
}

gt_abp_verdict gt_abp_set_decide(const gt_abp_set *s, const gt_abp_request *rq,
                                 const char **file, unsigned *line)
{
    const entry *e = NULL;
    gt_abp_verdict v = decide_entry(s, rq, &e);
    if (e && file) {
        *file = s->files[e->fileix];
        *line = e->line;
    }
    return v;
}

/* A list filter's $redirect= resource as one of gretel's, by its kind (noop.js,
 * 1x1.gif, noopframe, ...); GT_RESP_DEFAULT when gretel has nothing like it. */
static gt_resp_kind redirect_kind(gt_slice r)
{
    static const struct {
        const char *suffix;
        gt_resp_kind k;
    } map[] = {{".js", GT_RESP_JS},     {"noopjs", GT_RESP_JS},    {".gif", GT_RESP_GIF},
               {"1x1", GT_RESP_GIF},    {".png", GT_RESP_PNG},     {"2x2", GT_RESP_PNG},
               {".css", GT_RESP_CSS},   {".json", GT_RESP_JSON},   {".html", GT_RESP_HTML},
               {"noopframe", GT_RESP_HTML}, {".txt", GT_RESP_TEXT}, {"nooptext", GT_RESP_TEXT},
               {"empty", GT_RESP_204}};
    /* a ":priority" suffix (uBlock's) is not part of the name */
    const char *colon = memchr(r.p, ':', r.len);
    if (colon)
        r.len = (size_t)(colon - r.p);
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        size_t n = strlen(map[i].suffix);
        if (r.len >= n && strncasecmp(r.p + r.len - n, map[i].suffix, n) == 0)
            return map[i].k;
    }
    return GT_RESP_DEFAULT;
}

/* Whether a filter says nothing but "this host": `||host^` (or `||host^|`) or a hosts
 * entry, with no type, party, domain or method condition. Only those can judge a CONNECT,
 * where nothing but the host is known. */
static bool pure_host(const gt_abp_filter *f)
{
    if (f->types || f->domains.len || f->methods.len || f->redirect.len || (f->flags & GT_ABP_REMOVEPARAM) ||
        (f->flags & (GT_ABP_THIRD_PARTY | GT_ABP_FIRST_PARTY | GT_ABP_REGEX | GT_ABP_MATCH_CASE)))
        return false;
    if (f->flags & GT_ABP_HOST_ONLY)
        return true;
    if (!(f->flags & GT_ABP_HOST_ANCHOR) || f->pattern.len < 2)
        return false;
    /* the host, then exactly one '^' */
    return f->pattern.p[f->pattern.len - 1] == '^' &&
           !memchr(f->pattern.p, '^', f->pattern.len - 1) &&
           !memchr(f->pattern.p, '/', f->pattern.len) && !memchr(f->pattern.p, '*', f->pattern.len);
}

/* A CONNECT: the host and each parent, pure host filters only. */
static const entry *decide_host_only(const gt_abp_set *s, gt_slice host, bool *allowed)
{
    const entry *block = NULL, *important = NULL, *exception = NULL;
    for (gt_slice h = host; h.len;) {
        const slot *sl = kt_find(&s->host, key_of(hash_lc(h.p, h.len)));
        for (uint32_t k = 0; sl && k < sl->count; k++) {
            const entry *e = &s->v[s->hot[sl->start + k].ix];
            gt_abp_filter f;
            gt_slice eh;
            expand(s, e, &f);
            if (!pure_host(&f) || !whole_host(&f, &eh) || eh.len != h.len ||
                strncasecmp(eh.p, h.p, h.len) != 0)
                continue;
            if (e->flags & GT_ABP_EXCEPTION)
                exception = exception ? exception : e;
            else if (e->flags & GT_ABP_IMPORTANT)
                important = important ? important : e;
            else
                block = block ? block : e;
        }
        const char *dot = memchr(h.p, '.', h.len);
        if (!dot)
            break;
        h = gt_slice_make(dot + 1, h.len - (size_t)(dot + 1 - h.p));
    }
    *allowed = !important && block && exception;
    return important ? important : exception && block ? NULL : block;
}

/* --- $removeparam: a rewrite of the query (uBlock Origin's semantics) --- */

#define RM_MAX 32

typedef struct {
    const entry *rm[RM_MAX], *ex[RM_MAX];
    size_t nrm, nex;
} rm_found;

static void rm_consider(const gt_abp_set *s, const hot *h, uint32_t n, gt_abp_request *rq,
                        rm_found *fo)
{
    for (const hot *end = h + n; h < end; h++) {
        if (h->types && !(h->types & (1u << rq->type)))
            continue;
        if (h->lit_len && rq->lurl.len &&
            !contains(rq->lurl.p, rq->lurl.len, s->lits + h->lit, h->lit_len, h->anchor))
            continue;
        const entry *e = &s->v[h->ix];
        gt_abp_filter f;
        expand(s, e, &f);
        if (!gt_abp_match(&f, rq))
            continue;
        if (h->verdict == V_EXCEPTION) {
            if (fo->nex < RM_MAX)
                fo->ex[fo->nex++] = e;
        } else if (fo->nrm < RM_MAX) {
            fo->rm[fo->nrm++] = e;
        }
    }
}

/* A $removeparam value's test of one query parameter ("name=value", or "name"): empty
 * removes every parameter, "~name" every one but name, "/re/[i]" those whose text the
 * regular expression finds, else the parameter of that name. */
static bool rm_removes(gt_slice spec, const pcre2_code *re, gt_slice part, gt_slice name)
{
    if (!spec.len)
        return true;
    if (re) {
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int r = md ? pcre2_match(re, (PCRE2_SPTR)(part.p ? part.p : ""), part.len, 0, 0, md, NULL)
                   : -1;
        pcre2_match_data_free(md);
        return r >= 0;
    }
    if (spec.p[0] == '~')
        return !gt_slice_eq(name, gt_slice_make(spec.p + 1, spec.len - 1));
    return gt_slice_eq(name, spec);
}

/* The query of path without what the request's $removeparam filters remove, into out
 * (room for path.len); its length, or 0 when nothing changes. *by: the first filter (in
 * list order) that removed something. */
static size_t apply_removeparam(const gt_abp_set *s, gt_abp_request *rq, gt_slice path,
                                char *out, const entry **by)
{
    const char *q = memchr(path.p, '?', path.len);
    if (!q)
        return 0;
    rm_found fo = {.nrm = 0};
    for (gt_slice h = rq->host; h.len;) {
        const slot *sl = kt_find(&s->rmhost, key_of(hash_lc(h.p, h.len)));
        if (sl)
            rm_consider(s, s->hot + sl->start, sl->count, rq, &fo);
        const char *dot = memchr(h.p, '.', h.len);
        if (!dot)
            break;
        h = gt_slice_make(dot + 1, h.len - (size_t)(dot + 1 - h.p));
    }
    rm_consider(s, s->hot + s->rmparam, s->nrmparam, rq, &fo);
    /* exceptions: a bare @@...$removeparam keeps every parameter; one with a value keeps
     * what the filters with that same value would remove */
    gt_slice spec[RM_MAX];
    pcre2_code *re[RM_MAX];
    const entry *from[RM_MAX];
    size_t nspec = 0;
    for (size_t i = 0; i < fo.nrm; i++) {
        gt_slice v = eslice(s, fo.rm[i], F_REMOVEPARAM);
        bool kept = false;
        for (size_t k = 0; k < fo.nex && !kept; k++) {
            gt_slice ev = eslice(s, fo.ex[k], F_REMOVEPARAM);
            if (!ev.len)
                return 0;
            kept = gt_slice_eq(ev, v);
        }
        if (kept)
            continue;
        re[nspec] = NULL;
        const char *close = v.len >= 2 && v.p[0] == '/' ? memrchr(v.p + 1, '/', v.len - 1) : NULL;
        if (close) {
            /* compiled here, per request that meets it: such filters are few and site-bound */
            int code;
            PCRE2_SIZE off;
            bool icase = memchr(close, 'i', (size_t)(v.p + v.len - close)) != NULL;
            re[nspec] = pcre2_compile((PCRE2_SPTR)v.p + 1, (size_t)(close - v.p - 1),
                                      icase ? PCRE2_CASELESS : 0, &code, &off, NULL);
            if (!re[nspec])
                continue; /* a broken pattern removes nothing */
        }
        spec[nspec] = v;
        from[nspec] = fo.rm[i];
        nspec++;
    }
    size_t o = (size_t)(q - path.p), kept = 0;
    bool removed = false;
    memcpy(out, path.p, o);
    gt_slice rest = gt_slice_make(q + 1, path.len - o - 1), part;
    const char *hash = memchr(rest.p, '#', rest.len);
    gt_slice frag = GT_S("");
    if (hash) {
        frag = gt_slice_make(hash, (size_t)(rest.p + rest.len - hash));
        rest.len = (size_t)(hash - rest.p);
    }
    while (gt_slice_next(&rest, '&', &part)) {
        const char *eq = memchr(part.p, '=', part.len);
        gt_slice name = eq ? gt_slice_make(part.p, (size_t)(eq - part.p)) : part;
        bool rm = false;
        for (size_t i = 0; i < nspec && part.len; i++)
            if (rm_removes(spec[i], re[i], part, name)) {
                /* named by the first filter in list order that removed anything */
                if (!*by || from[i] < *by)
                    *by = from[i];
                rm = true;
            }
        if (rm) {
            removed = true;
            continue;
        }
        out[o++] = kept++ ? '&' : '?';
        memcpy(out + o, part.p, part.len);
        o += part.len;
    }
    memcpy(out + o, frag.p, frag.len);
    o += frag.len;
    for (size_t i = 0; i < nspec; i++)
        pcre2_code_free(re[i]);
    if (!removed)
        *by = NULL;
    return removed ? o : 0;
}

static void apply_url(const gt_abp_set *s, const gt_rules_request *rq, const gt_psl *psl,
                      gt_rules_scratch *sc, gt_decision *d, const char *url, char *lurl,
                      size_t n, gt_slice scheme);

void gt_lists_apply(const gt_abp_set *s, const gt_rules_request *rq, const gt_psl *psl,
                    gt_rules_scratch *sc, gt_decision *d)
{
    if (!s || (d->action != GT_DECIDE_PASS && d->action != GT_DECIDE_REWRITE))
        return;
    if (rq->host_only) {
        /* HTTPS without interception: a tracker's host refused before any byte goes out,
         * by the filters that name nothing but the host */
        bool allowed;
        const entry *e = decide_host_only(s, rq->host, &allowed);
        if (e) {
            d->action = GT_DECIDE_BLOCK;
            d->resp = GT_RESP_DEFAULT;
            d->rule = NULL;
            d->list_file = s->files[e->fileix];
            d->list_line = e->line;
        }
        return;
    }
    /* the URL and its lower-cased copy: on the stack for the usual lengths, on the heap
     * for long ones (every URL is matched, however long) */
    enum { URL_STACK = 4096 };
    char url_stack[URL_STACK], lurl_stack[URL_STACK];
    gt_slice scheme = rq->scheme.len ? rq->scheme : GT_S("http");
    bool dflt = rq->port == 0 || (rq->port == 80 && gt_slice_eq(scheme, GT_S("http"))) ||
                (rq->port == 443 && gt_slice_eq(scheme, GT_S("https")));
    char port[8] = "";
    if (!dflt)
        snprintf(port, sizeof(port), ":%u", rq->port);
    size_t need = scheme.len + 3 + rq->host.len + sizeof(port) + rq->path.len + 1;
    char *heap = need > URL_STACK ? gt_xmalloc(2 * need) : NULL;
    char *url = heap ? heap : url_stack, *lurl = heap ? heap + need : lurl_stack;
    int n = snprintf(url, need, "%.*s://%.*s%s%.*s", (int)scheme.len, scheme.p,
                     (int)rq->host.len, rq->host.p, port, (int)rq->path.len, rq->path.p);
    if (n < 0 || (size_t)n >= need) {
        free(heap);
        return;
    }
    apply_url(s, rq, psl, sc, d, url, lurl, (size_t)n, scheme);
    free(heap);
}

/* gt_lists_apply for one request's URL (url, n) with room for its lower-cased copy. */
static void apply_url(const gt_abp_set *s, const gt_rules_request *rq, const gt_psl *psl,
                      gt_rules_scratch *sc, gt_decision *d, const char *url, char *lurl,
                      size_t n, gt_slice scheme)
{
    gt_abp_request ar = {.url = gt_slice_make(url, (size_t)n),
                         .host = gt_slice_make(url + scheme.len + 3, rq->host.len),
                         .source_host = gt_rules_url_host(rq->source),
                         .method = rq->method.len ? rq->method : GT_S("GET"),
                         .type = rq->type,
                         .party = rq->party,
                         .psl = psl,
                         .source_url = rq->source};
    const entry *e = NULL;
    if (decide_entry(s, &ar, &e) != GT_ABP_BLOCK || !e) {
        /* forwarded: the query without what $removeparam filters remove (on top of the
         * rules' own rewrite, when there is one) */
        gt_slice base = d->path_changed ? d->new_path : rq->path;
        if (!sc || !(s->nrmparam || s->nrmhost) ||
            !memchr(base.p, '?', base.len))
            return;
        for (size_t i = 0; i < (size_t)n; i++)
            lurl[i] = tok_lc[(uint8_t)url[i]] ? (char)tok_lc[(uint8_t)url[i]] : url[i];
        ar.lurl = gt_slice_make(lurl, (size_t)n);
        char *out = gt_rules_scratch_take(sc, base.len);
        const entry *by = NULL;
        size_t len = out ? apply_removeparam(s, &ar, base, out, &by) : 0;
        if (!len)
            return;
        d->path_changed = true;
        d->new_path = gt_slice_make(out, len);
        if (d->action == GT_DECIDE_PASS) {
            d->action = GT_DECIDE_REWRITE;
            d->list_file = s->files[by->fileix];
            d->list_line = by->line;
        }
        return;
    }
    /* the deciding filter's redirect, when it names one */
    gt_abp_filter f;
    expand(s, e, &f);
    gt_resp_kind rk = f.redirect.len ? redirect_kind(f.redirect) : GT_RESP_DEFAULT;
    d->action = rk != GT_RESP_DEFAULT ? GT_DECIDE_REDIRECT : GT_DECIDE_BLOCK;
    d->resp = rk;
    d->rule = NULL;
    d->list_file = s->files[e->fileix];
    d->list_line = e->line;
    /* a blocked request is not forwarded: its rewrites no longer matter */
    d->path_changed = false;
    d->nhdr_ops = 0;
}
