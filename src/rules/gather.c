/* Candidate rules for a request, from the ruleset's indexes: host suffixes, the URL's
 * alphanumeric tokens (scanned 16 bytes at a time, filtered by their first four bytes before
 * hashing), prefix tokens, the always-checked rules and their per-part gates. Deduplicated
 * with a per-rule epoch. Reads the ruleset; writes only the scratch. */
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "internal.h"

static void add_cands(gt_rules_scratch *sc, const uint32_t *v, size_t n)
{
    if (n == 0)
        return;
    if (sc->ncands + n > sc->cands_cap) {
        size_t cap = sc->cands_cap ? sc->cands_cap : 256;
        while (cap < sc->ncands + n)
            cap *= 2;
        sc->cands = gt_xrealloc(sc->cands, cap * sizeof(uint32_t));
        sc->cands_cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        if (sc->seen[v[i]] != sc->epoch) {
            sc->seen[v[i]] = sc->epoch;
            sc->cands[sc->ncands++] = v[i];
        }
}

/* Marks each alphanumeric byte of s in sc->bits (bit i of word i/64): 16 bytes per step with
 * SSE2, where a byte-at-a-time loop would mispredict at every token edge. */
static void classify(gt_rules_scratch *sc, gt_slice s)
{
    size_t words = s.len / 64 + 2;
    if (words > sc->bits_cap) {
        free(sc->bits);
        sc->bits_cap = words * 2;
        sc->bits = gt_xmalloc(sc->bits_cap * sizeof(uint64_t));
    }
    memset(sc->bits, 0, words * sizeof(uint64_t));
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9), a = _mm_set1_epi8('a'),
                  z = _mm_set1_epi8(25), fold = _mm_set1_epi8(0x20);
    for (; i + 16 <= s.len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i d = _mm_sub_epi8(v, zero);
        __m128i l = _mm_sub_epi8(_mm_or_si128(v, fold), a);
        __m128i is = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(d, nine), d),
                                  _mm_cmpeq_epi8(_mm_min_epu8(l, z), l));
        uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(is);
        sc->bits[i / 64] |= m << (i % 64);
    }
    if (i < s.len) {
        /* the tail through a zero-padded block: zeros are not alphanumeric */
        unsigned char tail[16] = {0};
        memcpy(tail, p + i, s.len - i);
        __m128i v = _mm_loadu_si128((const __m128i *)tail);
        __m128i d = _mm_sub_epi8(v, zero);
        __m128i l = _mm_sub_epi8(_mm_or_si128(v, fold), a);
        __m128i is = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(d, nine), d),
                                  _mm_cmpeq_epi8(_mm_min_epu8(l, z), l));
        uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(is);
        sc->bits[i / 64] |= m << (i % 64);
        if (i % 64 > 48)
            sc->bits[i / 64 + 1] |= m >> (64 - i % 64);
        i = s.len;
    }
#endif
    for (; i < s.len; i++) {
        unsigned char c = p[i];
        if ((unsigned char)(c - '0') < 10 || (unsigned char)((c | 0x20) - 'a') < 26)
            sc->bits[i / 64] |= 1ULL << (i % 64);
    }
}

/* Hashes the alphanumeric runs of s that pass the token filter: the whole token (>= 2
 * bytes) and, when the ruleset has prefix rules, its first GT_PREFIX_SHORT and
 * GT_PREFIX_LONG bytes. Entries carry a kind bit (1 = prefix). */
static void tokens_of(const gt_ruleset *rs, gt_rules_scratch *sc, gt_slice s, bool prefixes)
{
    if (!s.len)
        return;
    /* at most one whole token and two prefixes per 3 bytes (a token and its separator) */
    size_t need = sc->ntokens + (s.len / 3 + 1) * 3;
    if (need > sc->tokens_cap) {
        size_t cap = sc->tokens_cap ? sc->tokens_cap : 256;
        while (cap < need)
            cap *= 2;
        sc->tokens = gt_xrealloc(sc->tokens, cap * sizeof(uint64_t));
        sc->tokens_cap = cap;
    }
    classify(sc, s);
    const char *end = s.p + s.len;
    uint64_t *t = sc->tokens + sc->ntokens;
    size_t nw = (s.len + 63) / 64, pos = 0;
    while (pos < s.len) {
        /* next set bit at or after pos: a token start */
        size_t w = pos / 64;
        uint64_t word = sc->bits[w] & (~0ULL << (pos % 64));
        while (!word && ++w < nw)
            word = sc->bits[w];
        if (!word)
            break;
        size_t st = w * 64 + (size_t)__builtin_ctzll(word);
        /* next clear bit after st: the token's end */
        uint64_t inv = ~sc->bits[w] & (~0ULL << (st % 64));
        while (!inv && ++w < nw)
            inv = ~sc->bits[w];
        size_t en = inv ? w * 64 + (size_t)__builtin_ctzll(inv) : s.len;
        if (en > s.len)
            en = s.len;
        pos = en;
        size_t l = en - st;
        const char *tp = s.p + st;
        unsigned fkey = gt_rules_filter_key(tp, l, end);
        if (!(rs->tok_filter[fkey / 64] & (1ULL << (fkey % 64))))
            continue;
        if (l >= 2)
            *t++ = gt_rules_token_hash_in(tp, l, end) << 1;
        if (prefixes && l >= GT_PREFIX_SHORT)
            *t++ = gt_rules_token_hash_in(tp, GT_PREFIX_SHORT, end) << 1 | 1;
        if (prefixes && l >= GT_PREFIX_LONG)
            *t++ = gt_rules_token_hash_in(tp, GT_PREFIX_LONG, end) << 1 | 1;
    }
    sc->ntokens = (size_t)(t - sc->tokens);
}

void gt_rules_gather(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rules_request *rq,
                   reqctx *x)
{
    sc->ncands = 0;
    /* a fresh epoch instead of clearing the per-rule marks: O(1) per decision */
    if (sc->seen_cap < rs->nrules || ++sc->epoch == 0) {
        free(sc->seen);
        sc->seen_cap = rs->nrules > sc->seen_cap ? rs->nrules : sc->seen_cap;
        sc->seen = gt_xcalloc(sc->seen_cap ? sc->seen_cap : 1, sizeof(uint32_t));
        sc->epoch = 1;
    }
    size_t n;
    const uint32_t *v;
    /* every suffix of the host at a dot, from one backwards pass: com, example.com, ... */
    if (rs->by_host.nitems) {
        const char *h = rq->host.p, *lim = h + rq->host.len;
        uint64_t hh = GT_RULES_HOST_SEED;
        size_t end = rq->host.len;
        for (;;) {
            const char *dot = NULL;
            for (size_t j = end; j > 0; j--) /* hosts are short: no libc call */
                if (h[j - 1] == '.') {
                    dot = h + j - 1;
                    break;
                }
            size_t st = dot ? (size_t)(dot - h) + 1 : 0;
            hh = gt_rules_host_step(hh, h + st, end - st, lim);
            v = gt_rules_index_get(&rs->by_host, hh, &n);
            add_cands(sc, v, n);
            if (!dot)
                break;
            end = st - 1;
        }
    }
    if (rs->by_token.nitems || rs->by_prefix.nitems) {
        bool pre = rs->by_prefix.nitems > 0;
        sc->ntokens = 0;
        tokens_of(rs, sc, rq->scheme.len ? rq->scheme : GT_S("http"), pre);
        tokens_of(rs, sc, rq->host, pre);
        tokens_of(rs, sc, rq->path, pre);
        /* index keys keep 63 bits: the low bit of each entry says which index it is for */
        for (size_t i = 0; i < sc->ntokens; i++) {
            uint64_t t = sc->tokens[i];
            v = gt_rules_index_get((t & 1) ? &rs->by_prefix : &rs->by_token,
                                   gt_rules_token_key(t >> 1), &n);
            add_cands(sc, v, n);
        }
    }
    add_cands(sc, rs->always, rs->nalways);
    for (size_t i = 0; i < rs->ngates; i++) {
        rule_cond gate = {.kind = rs->gates[i].kind, .re = rs->gates[i].any,
                          .jit = rs->gates[i].jit};
        size_t fi = 0;
        gt_slice subj = gt_rules_ctx_subject(&gate, x, sc, &fi);
        int r = gt_rules_re_match(rs, sc, &gate, subj, 0);
        /* a gate that hit PCRE2's limits decides nothing: its rules are tried one by one */
        if (r > 0 || r != PCRE2_ERROR_NOMATCH)
            add_cands(sc, rs->gates[i].rules, rs->gates[i].nrules);
    }
}
