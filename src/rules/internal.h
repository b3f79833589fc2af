/* What the files of src/rules/ share: the compiled rule, its conditions, the ruleset with
 * its indexes, and the per-thread scratch. Nothing outside src/rules/ includes this. */
#ifndef GT_RULES_INTERNAL_H
#define GT_RULES_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdatomic.h>
#include <endian.h>
#include <string.h>
#include <sys/types.h>

#include "gretel/rules.h"

enum rule_action {
    A_BLOCK,
    A_ALLOW,
    A_REWRITE,
    A_REDIRECT,
    A_LOG,
    A_BLOCK_IF_BOUGHT,
    A_PRODUCT, /* names the product a URL is about (shop pages): extraction only */
    A_MARK_BOUGHT, /* a completed purchase: its products are to be marked bought */
};

enum cond_kind {
    C_DOMAIN,     /* host equals or is a subdomain of one of names */
    C_HOST,       /* host equals one of names */
    C_HOST_RE,
    C_PATH_RE,    /* path without query */
    C_QUERY_RE,   /* query without '?' */
    C_URL_RE,     /* scheme://host[:port]/path?query */
    C_METHOD,
    C_TYPE,
    C_PARTY,
    C_SOURCE,     /* source page host is (a subdomain of) one of names */
    C_SOURCE_RE,  /* source page URL */
    C_HEADER_RE,  /* header `hdr` value; absent header does not match */
    C_BODY_RE,
    C_PARAM,      /* query has a parameter with one of these names */
    C_SCHEME,
    C_PORT,
};

typedef struct {
    uint8_t kind;
    bool neg;
    unsigned col;      /* 1-based column of the token in its line */
    char *text;        /* the token as written, for explain and lint */
    char **names;      /* C_DOMAIN, C_HOST, C_SOURCE, C_METHOD, C_PARAM, C_SCHEME: lower-case */
    size_t nnames;
    uint32_t typemask; /* C_TYPE */
    uint8_t party;     /* C_PARTY */
    uint16_t *ports;   /* C_PORT */
    pcre2_code *re;    /* *_RE */
    char *hdr;         /* C_HEADER_RE: field name */
    int id_group;      /* capture number of (?<id>...), 0 if none */
    int page_group;    /* capture number of (?<page>...), 0 if none */
    bool jit;
    char *lit;         /* bytes every match contains (memmem before the regex), or NULL */
    size_t lit_len;
} rule_cond;

enum decoder_kind { D_PERCENT, D_PERCENT_ALL, D_FORM, D_JSON, D_SPLIT, D_BASE64, D_UNQUOTE,
                    D_LOWER, D_UPPER, D_UNBRACKET };
typedef struct {
    uint8_t kind;
    char *arg; /* D_SPLIT: separator */
} rule_decoder;

enum scope_kind { SCOPE_NONE, SCOPE_PAGE, SCOPE_SITE, SCOPE_NS, SCOPE_HOST };

enum rw_kind { RW_PARAM, RW_PARAM_RE, RW_HDR_REMOVE, RW_HDR_SET, RW_COOKIE, RW_COOKIE_RE,
               RW_TRIM_REFERER };
typedef struct {
    uint8_t kind;
    char *name;  /* param glob, header name, cookie name */
    size_t name_len;
    bool glob;   /* name has a '*' */
    char *value; /* RW_HDR_SET */
    pcre2_code *re;
    bool jit;
} rule_rw;

struct gt_rule {
    unsigned idx; /* position in the ruleset: file order, which breaks precedence ties */
    const char *file;
    unsigned line;
    char *text;
    const char *group; /* NULL when the rule belongs to no group */
    uint8_t action;
    bool important;
    uint8_t resp; /* gt_resp_kind for block/redirect */
    rule_cond *conds;
    size_t nconds;
    rule_rw *rws;
    size_t nrws;
    rule_decoder *decoders;
    size_t ndecoders;
    uint8_t scope;
    char *scope_arg;
    bool has_extract; /* some regex condition has an id group */
    bool alias;       /* its keys are other forms of ids another rule names (e.g. the
                         variant inside Shopify's P-V): checked, not reported as named */
};

/* Open-addressing hash from a 64-bit key hash to a run of rule indexes, with a bit filter
 * in front: most of a URL's tokens name no rule, and one bit test (8 KiB, stays in cache)
 * answers them without touching the table. */
typedef struct {
    uint64_t key; /* 0 = empty */
    uint32_t start, count;
} index_slot;

#define INDEX_FILTER_BITS 65536
typedef struct {
    index_slot *slots;
    uint32_t *items;
    uint64_t *filter; /* INDEX_FILTER_BITS bits */
    size_t cap; /* power of two */
    size_t nitems;
} rule_index;

typedef struct {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} watched_file;

struct gt_ruleset {
    atomic_uint refs;
    gt_rule *rules;
    size_t nrules, cap;
    char **files; /* interned file names rules point at */
    size_t nfiles;
    char **patterns; /* the globs as given, re-expanded by gt_ruleset_changed */
    size_t npatterns;
    watched_file *watched;
    size_t nwatched;
    rule_index by_host;  /* registrable domain / host suffixes of domain= and host= */
    rule_index by_token; /* a literal token every match must contain */
    rule_index by_prefix; /* a literal every match must start a token with */
    uint64_t *tok_filter; /* 65536 bits by gt_rules_filter_key, for by_token and by_prefix */
    gt_ruleset_stats stats;
    uint32_t *always;    /* rules with neither */
    size_t nalways;
    /* Rules filed nowhere that need a regex on one of these parts: one combined pattern per
     * part (an alternation of their regexes) is tried first, and only when it matches are
     * the rules tried one by one. Most requests then pay one scan, not one per rule. */
    struct {
        uint8_t kind;      /* C_PATH_RE, C_QUERY_RE, C_URL_RE, C_HOST_RE */
        pcre2_code *any;
        bool jit;
        uint32_t *rules;
        size_t nrules;
    } gates[4];
    size_t ngates;
    bool wants_body;
    size_t mem;
    pcre2_match_context *mctx; /* match limits: a runaway pattern fails closed-to-pass */
    const gt_psl *psl;
};


struct gt_rules_scratch {
    pcre2_match_data *md;
    uint64_t *tokens;   /* whole-token hashes of the URL, then prefix hashes: grows with the */
    size_t ntokens, tokens_cap; /* longest URL seen, never truncated */
    uint64_t *bits;     /* alphanumeric-byte bitmap of the part being tokenized */
    size_t bits_cap;
    uint32_t *cands; /* grows to the largest candidate set seen; never truncated */
    size_t ncands, cands_cap;
    uint32_t *order; /* candidates grouped by precedence class, file order within */
    size_t order_cap;
    uint32_t *seen;  /* per rule: the epoch it was last added as a candidate (dedupe) */
    size_t seen_cap;
    uint32_t epoch;
    /* request derivations, valid during one decide */
    char host_re_buf[512];
    char *url; /* scheme://host[:port]path for url= patterns */
    size_t url_cap;
    /* where a decision's rewritten path and product keys live */
    char *out;
    size_t out_len, out_cap;
    char *tmp;
    size_t tmp_cap;
};


/* The request as the engine derives it during one decision (decide.c, match.c). */
typedef struct {
    const gt_rules_request *rq;
    gt_slice path_only, query;
    gt_slice source_host; /* lower-case copy in srcbuf, derived on first use */
    bool source_done;
    char srcbuf[256];
    gt_slice url;
    bool url_built;
    gt_party party;
    bool party_done;
} reqctx;

/* match.c */
void gt_rules_ctx_init(reqctx *c, const gt_rules_request *rq);
gt_slice gt_rules_ctx_source_host(reqctx *c);
/* The subject a regex condition looks at; for header conditions *field_i walks the fields
 * (set to (size_t)-1 when no further field of that name exists). */
gt_slice gt_rules_ctx_subject(const rule_cond *c, reqctx *x, gt_rules_scratch *sc,
                              size_t *field_i);
bool gt_rules_glob_match(const char *pat, gt_slice s);
bool gt_rules_rule_matches(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rule *r,
                           reqctx *x);
/* gather.c: fills sc->cands */
void gt_rules_gather(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rules_request *rq,
                     reqctx *x);
/* rewrite.c: applies the matched rewrite rules (file order); true if the request changes */
bool gt_rules_apply_rewrites(const gt_ruleset *rs, gt_rules_scratch *sc, reqctx *x,
                             const gt_rule *const *rws, size_t nrw, gt_decision *d);
/* decide.c: scratch buffers */
void gt_rules_ensure(char **buf, size_t *cap, size_t need);
char *gt_rules_out_take(gt_rules_scratch *sc, size_t n);

/* Runs a condition's pattern (JIT when compiled) with the ruleset's match limits. */
static inline int gt_rules_re_match(const gt_ruleset *rs, gt_rules_scratch *sc, const rule_cond *c, gt_slice s,
                    size_t start)
{
    if (c->jit)
        return pcre2_jit_match(c->re, (PCRE2_SPTR)(s.p ? s.p : ""), s.len, start, 0, sc->md,
                               rs->mctx);
    return pcre2_match(c->re, (PCRE2_SPTR)(s.p ? s.p : ""), s.len, start, 0, sc->md, rs->mctx);
}

/* parse.c */
int gt_rules_parse_file(gt_ruleset *rs, const char *path, gt_diags *d, unsigned depth,
                        const gt_rules_source *src);
void gt_rules_rule_free(gt_rule *r);

/* pattern.c */
pcre2_code *gt_rules_compile_re(const char *pat, size_t len, const char *file, unsigned line,
                                unsigned col, gt_diags *d, bool *jit);

/* Prefix tokens are filed under their first GT_PREFIX_LONG bytes when they have that many,
 * else their first GT_PREFIX_SHORT; a request's tokens are looked up by both prefixes. */
#define GT_PREFIX_SHORT 4
#define GT_PREFIX_LONG 8
/* The hash of an alphanumeric token, ASCII case folded, 8 bytes per step (tokens are hashed
 * for every request, so per-byte hashing would dominate a decision). A prefix key is the
 * token hash of the first GT_PREFIX_SHORT or GT_PREFIX_LONG bytes. Only for [A-Za-z0-9]. */
static inline uint64_t gt_rules_token_mix(uint64_t h, uint64_t w)
{
    h = (h ^ (w | 0x2020202020202020ULL)) * 0x9fb21c651e98df25ULL;
    return h ^ (h >> 29);
}

/* limit: how far past p bytes may be read (p + n <= limit), so the tail of a token can be
 * loaded as one word and masked instead of assembled byte by byte. */
static inline uint64_t gt_rules_token_hash_in(const char *p, size_t n, const char *limit)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xc2b2ae3d27d4eb4fULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = gt_rules_token_mix(h, le64toh(w));
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        if (limit - p >= 8) {
            memcpy(&w, p, 8);
            w = le64toh(w) & (~0ULL >> (64 - 8 * n));
        } else {
            for (size_t i = 0; i < n; i++)
                w |= (uint64_t)(unsigned char)p[i] << (8 * i);
        }
        /* the fold mask must cover only the token's bytes: pad bytes stay zero */
        h = (h ^ (w | (0x2020202020202020ULL >> (64 - 8 * n)))) * 0x9fb21c651e98df25ULL;
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t gt_rules_token_hash(const char *p, size_t n)
{
    return gt_rules_token_hash_in(p, n, p + n);
}
/* Token and prefix index keys drop the top bit (the request side packs a kind bit) and keep
 * the low bit set (0 marks an empty slot). */
static inline uint64_t gt_rules_token_key(uint64_t h)
{
    return (h & 0x7fffffffffffffffULL) | 1;
}
/* How selective a token is: longer is better, a prefix slightly worse than a whole token
 * of the same length, and tokens on most URLs ("js", "www", "images") worst. */
unsigned gt_rules_token_score(const char *t, size_t n, bool is_prefix);
/* Heuristic: a quantified group that itself contains an unbounded quantifier, such as
 * (a+)+ or (\w+\s?)*, which backtracks exponentially on a near-miss. */
bool gt_rules_re_risky(const char *pat, size_t len);

/* index.c */
void gt_rules_index_build(rule_index *ix, const uint64_t *keys, const uint32_t *vals, size_t n);
void gt_rules_index_free(rule_index *ix);
/* Rule indexes stored under h, or NULL with *n = 0. Inline: called per URL token. */
static inline const uint32_t *gt_rules_index_get(const rule_index *ix, uint64_t h, size_t *n)
{
    *n = 0;
    if (!ix->cap)
        return NULL;
    size_t bit = (h >> 40) & (INDEX_FILTER_BITS - 1);
    if (!(ix->filter[bit / 64] & (1ULL << (bit % 64))))
        return NULL;
    size_t slot = h & (ix->cap - 1);
    while (ix->slots[slot].key) {
        if (ix->slots[slot].key == h) {
            *n = ix->slots[slot].count;
            return ix->items + ix->slots[slot].start;
        }
        slot = (slot + 1) & (ix->cap - 1);
    }
    return NULL;
}
/* The token filter's key: the first (up to) four bytes of a token, case folded, mixed into
 * 16 bits. One bit per key tells whether any token or prefix rule could start with those
 * bytes; most of a URL's tokens are rejected by it before being hashed in full. */
static inline unsigned gt_rules_filter_key(const char *p, size_t n, const char *limit)
{
    uint32_t w = 0;
    size_t k = n < 4 ? n : 4;
    if (limit - p >= 4) {
        memcpy(&w, p, 4);
        w = le32toh(w) & (uint32_t)(~0ULL >> (64 - 8 * k));
    } else {
        for (size_t i = 0; i < k; i++)
            w |= (uint32_t)(unsigned char)p[i] << (8 * i);
    }
    w |= 0x20202020u >> (32 - 8 * k);
    return (unsigned)(((uint64_t)(w ^ (uint32_t)k) * 0x9e3779b97f4a7c15ULL) >> 48);
}

/* A host name's hash, built label by label from the right, so that every suffix at a dot
 * (com, example.com, b.example.com, ...) falls out of one pass over the request's host:
 * H(label.rest) = step(H(rest), token hash of label). */
static inline uint64_t gt_rules_host_step(uint64_t h, const char *label, size_t n,
                                          const char *limit)
{
    h = (h ^ gt_rules_token_hash_in(label, n, limit)) * 0x9fb21c651e98df25ULL;
    h ^= h >> 31;
    return h ? h : 1;
}
#define GT_RULES_HOST_SEED 0x243f6a8885a308d3ULL
uint64_t gt_rules_host_hash(const char *p, size_t n);

/* scratch helpers (decide.c) */
char *gt_rules_scratch_reserve(gt_rules_scratch *sc, size_t n);

/* lint.c */
void gt_rules_lint(const gt_ruleset *rs, gt_diags *d);

#endif
