/* A compiled set of list filters with the index the leading engines use: `||host^`
 * filters in a table by host (looked up by every suffix of the request's host), the
 * others filed under one token their pattern requires (an alphanumeric run that cannot be
 * part of a longer one: delimited by separators or anchors, not by `*`), and the few with
 * no such token tried on every request. A request's URL is tokenised once; each token's
 * bucket is checked. Decision: an `important` block wins, then an exception cancels a
 * block, then a block. Owns the list files' text (filters point into it). */
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "gretel/lists.h"
#include "gretel/util.h"

typedef struct {
    gt_abp_filter f;
    uint32_t lit, lit_len; /* the longest literal run of the pattern, lower-cased, in
                              s->lits: a request's lower-cased URL must contain it */
    uint32_t key;          /* full hash of the host or token it is filed under: other keys
                              sharing the bucket are skipped without a look */
    /* where it was written: file index, line, and the line's bytes in that file's buffer
     * (for $badfilter), compact because there are a hundred thousand of these */
    uint32_t text_off;
    uint16_t text_len; /* 0 for lines past 64 KiB: never cancelled by a badfilter */
    uint16_t fileix;
    unsigned line;
    uint32_t next; /* bucket chain, UINT32_MAX ends */
} entry;

struct gt_abp_set {
    char *lits;
    size_t lits_len, lits_cap;
    char **bufs;
    size_t nbufs;
    char **files;
    entry *v;
    size_t n, cap;
    uint32_t *tok;  /* token buckets: head index per slot */
    uint32_t *host; /* host buckets */
    size_t tok_mask, host_mask;
    uint32_t always; /* chain of filters tried on every request */
    size_t stats[4]; /* by host, by token, always, badfiltered */
};

#define NONE UINT32_MAX

static uint32_t hash_lc(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        h = (h ^ c) * 16777619u;
    }
    return h;
}

static bool alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
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
    }
}

static void add_entry(gt_abp_set *s, const gt_abp_filter *f, gt_slice text, size_t fileix,
                      unsigned line)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = gt_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    entry *e = &s->v[s->n++];
    e->f = *f;
    e->text_off = (uint32_t)(text.p - s->bufs[fileix]);
    e->text_len = text.len < 65536 ? (uint16_t)text.len : 0;
    e->fileix = (uint16_t)fileix;
    e->line = line;
    e->next = NONE;
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

/* The longest run of the pattern without '*' or '^' (for regex filters: none), kept
 * lower-cased unless the filter is match-case. */
static void set_literal(gt_abp_set *s, entry *e)
{
    e->lit_len = 0;
    if (e->f.flags & GT_ABP_MATCH_CASE)
        return;
    const char *p = e->f.pattern.p;
    size_t n = e->f.pattern.len, bi = 0, bl = 0;
    char rlit[256];
    if (e->f.flags & GT_ABP_REGEX) {
        /* a regex filter: the bytes every match contains (the regex is caseless, so they
         * are compared lower-cased, like the URL) */
        bl = gt_rules_required_literal(p + 1, n - 2, rlit, sizeof(rlit));
        p = rlit;
        bi = 0;
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
    if (bl < 3)
        return; /* too short to be worth a search */
    if (s->lits_len + bl > s->lits_cap) {
        s->lits_cap = s->lits_cap ? s->lits_cap * 2 : 65536;
        while (s->lits_cap < s->lits_len + bl)
            s->lits_cap *= 2;
        s->lits = gt_xrealloc(s->lits, s->lits_cap);
    }
    for (size_t k = 0; k < bl; k++) {
        char c = p[bi + k];
        s->lits[s->lits_len + k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    e->lit = (uint32_t)s->lits_len;
    e->lit_len = (uint32_t)bl;
    s->lits_len += bl;
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

static size_t pow2(size_t n)
{
    size_t p = 1024;
    while (p < n * 2)
        p *= 2;
    return p;
}

int gt_abp_set_load(gt_abp_set **out, const char *const *files, size_t nfiles, gt_diags *d)
{
    gt_abp_set *s = gt_xcalloc(1, sizeof(*s));
    s->bufs = gt_xcalloc(nfiles ? nfiles : 1, sizeof(char *));
    s->files = gt_xcalloc(nfiles ? nfiles : 1, sizeof(char *));
    hset bad = {gt_xcalloc(1024, sizeof(uint32_t)), 1023, 0};
    /* pass 1: read, parse, remember badfilter texts */
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
        s->files[s->nbufs] = gt_xstrdup(files[fi]);
        size_t fileix = s->nbufs++;
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
            if ((!abp || (ip_first && !memchr(line.p, '#', line.len))) &&
                gt_hosts_line(line, host, sizeof(host))) {
                /* a hosts entry: the host and its subdomains, as ||host^ */
                gt_abp_filter f;
                memset(&f, 0, sizeof(f));
                f.flags = GT_ABP_HOST_ANCHOR;
                const char *hp = NULL; /* the host inside the line (matching ignores case) */
                for (size_t i = 0; i + strlen(host) <= line.len; i++)
                    if (strncasecmp(line.p + i, host, strlen(host)) == 0) {
                        hp = line.p + i;
                        break;
                    }
                if (!hp)
                    continue;
                f.pattern = gt_slice_make(hp, strlen(host));
                f.flags |= GT_ABP_HOST_ONLY;
                add_entry(s, &f, line, fileix, lineno);
                continue;
            }
            gt_abp_filter f;
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
            add_entry(s, &f, line, fileix, lineno);
        }
    }
    /* pass 2: drop badfiltered, build the index */
    s->tok_mask = pow2(s->n) - 1;
    s->host_mask = pow2(s->n / 2) - 1;
    s->tok = gt_xmalloc((s->tok_mask + 1) * sizeof(uint32_t));
    s->host = gt_xmalloc((s->host_mask + 1) * sizeof(uint32_t));
    memset(s->tok, 0xff, (s->tok_mask + 1) * sizeof(uint32_t));
    memset(s->host, 0xff, (s->host_mask + 1) * sizeof(uint32_t));
    s->always = NONE;
    tcount counts = {gt_xcalloc(1024, sizeof(uint32_t)), gt_xcalloc(1024, sizeof(uint32_t)), 1023,
                     0};
    for (size_t i = 0; i < s->n; i++) {
        gt_slice host;
        if (!whole_host(&s->v[i].f, &host))
            each_token(&s->v[i].f, count_tok, &counts);
    }
    for (size_t i = s->n; i-- > 0;) {
        entry *e = &s->v[i];
        if (bad.n) {
            /* $badfilter cancels the filter written the same way without it */
            char t[4096];
            gt_slice text = gt_slice_make(s->bufs[e->fileix] + e->text_off, e->text_len);
            size_t tl = e->text_len ? normal_text(text, t, sizeof(t)) : 0;
            if (tl && hset_has(&bad, hash_lc(t, tl))) {
                s->stats[3]++;
                continue;
            }
        }
        set_literal(s, e);
        gt_slice host;
        tok_choice tc = {&counts, 0, 0, 0};
        if (whole_host(&e->f, &host)) {
            e->key = hash_lc(host.p, host.len);
            uint32_t h = e->key & (uint32_t)s->host_mask;
            e->next = s->host[h];
            s->host[h] = (uint32_t)i;
            s->stats[0]++;
        } else if ((each_token(&e->f, choose_tok, &tc), tc.best_len)) {
            e->key = tc.best_key;
            uint32_t h = e->key & (uint32_t)s->tok_mask;
            e->next = s->tok[h];
            s->tok[h] = (uint32_t)i;
            s->stats[1]++;
        } else {
            e->next = s->always;
            s->always = (uint32_t)i;
            s->stats[2]++;
        }
    }
    free(bad.h);
    free(counts.key);
    free(counts.count);
    *out = s;
    return 0;
}

void gt_abp_set_free(gt_abp_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        gt_abp_filter_free(&s->v[i].f);
    for (size_t i = 0; i < s->nbufs; i++) {
        free(s->bufs[i]);
        free(s->files[i]);
    }
    free(s->bufs);
    free(s->files);
    free(s->v);
    free(s->lits);
    free(s->tok);
    free(s->host);
    free(s);
}

size_t gt_abp_set_count(const gt_abp_set *s)
{
    return s->n;
}

void gt_abp_set_stats(const gt_abp_set *s, size_t *by_host, size_t *by_token, size_t *always)
{
    *by_host = s->stats[0];
    *by_token = s->stats[1];
    *always = s->stats[2];
}

typedef struct {
    const entry *block, *important, *exception;
    gt_slice lurl; /* the URL lower-cased, for the literal prefilter */
} verdict;

/* key: the full hash the bucket was looked up by (0 for the always list). */
static void consider(const gt_abp_set *s, uint32_t i, uint32_t key, gt_abp_request *rq,
                     verdict *v)
{
    for (; i != NONE; i = s->v[i].next) {
        const entry *e = &s->v[i];
        if (key && e->key != key)
            continue;
        uint32_t fl = e->f.flags;
        /* skip what cannot change the verdict any more */
        if (fl & GT_ABP_EXCEPTION) {
            if (v->exception)
                continue;
        } else if (fl & GT_ABP_IMPORTANT) {
            if (v->important)
                continue;
        } else if (v->block) {
            continue;
        }
        if (!e->f.pattern.len && !(fl & GT_ABP_REGEX) && !e->f.domains.len && !e->f.types)
            continue;
        if (e->f.removeparam.len)
            continue; /* rewrites, not decisions */
        if (e->lit_len && v->lurl.len &&
            !memmem(v->lurl.p, v->lurl.len, s->lits + e->lit, e->lit_len))
            continue;
        if (!gt_abp_match(&e->f, rq))
            continue;
        if (fl & GT_ABP_EXCEPTION)
            v->exception = e;
        else if (fl & GT_ABP_IMPORTANT)
            v->important = e;
        else
            v->block = e;
    }
}

/* The verdict and the deciding entry (NULL for PASS). */
static gt_abp_verdict decide_entry(const gt_abp_set *s, const gt_abp_request *rq_in,
                                   const entry **out);

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

static gt_abp_verdict decide_entry(const gt_abp_set *s, const gt_abp_request *rq_in,
                                   const entry **out)
{
    verdict v = {0};
    gt_abp_request rqc = *rq_in;
    gt_abp_request *rq = &rqc;
    char lurl[4096];
    if (rq->url.len <= sizeof(lurl)) {
        for (size_t i = 0; i < rq->url.len; i++) {
            char c = rq->url.p[i];
            lurl[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        v.lurl = gt_slice_make(lurl, rq->url.len);
        rqc.lurl = v.lurl;
    }
    /* the host and each parent (a.b.example, b.example, example) */
    gt_slice h = rq->host;
    while (h.len) {
        uint32_t hk = hash_lc(h.p, h.len);
        consider(s, s->host[hk & (uint32_t)s->host_mask], hk, rq, &v);
        const char *dot = memchr(h.p, '.', h.len);
        if (!dot)
            break;
        h = gt_slice_make(dot + 1, h.len - (size_t)(dot + 1 - h.p));
    }
    /* every alphanumeric token of the URL */
    const char *u = rq->url.p;
    size_t n = rq->url.len;
    for (size_t i = 0; i < n;) {
        if (!alnum((unsigned char)u[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && alnum((unsigned char)u[j]))
            j++;
        if (j - i >= 2) {
            uint32_t tk = hash_lc(u + i, j - i);
            consider(s, s->tok[tk & (uint32_t)s->tok_mask], tk, rq, &v);
        }
        i = j;
    }
    consider(s, s->always, 0, rq, &v);
    *out = v.important ? v.important : v.exception && v.block ? v.exception : v.block;
    if (v.important)
        return GT_ABP_BLOCK;
    if (v.block)
        return v.exception ? GT_ABP_ALLOW : GT_ABP_BLOCK;
    return GT_ABP_PASS;
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
static bool pure_host(const entry *e)
{
    const gt_abp_filter *f = &e->f;
    if (f->types || f->domains.len || f->methods.len || f->redirect.len || f->removeparam.len ||
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
    gt_slice h = host;
    while (h.len) {
        uint32_t hk = hash_lc(h.p, h.len);
        for (uint32_t i = s->host[hk & (uint32_t)s->host_mask]; i != NONE; i = s->v[i].next) {
            const entry *e = &s->v[i];
            gt_slice eh;
            if (e->key != hk || !pure_host(e) || !whole_host(&e->f, &eh) || eh.len != h.len ||
                strncasecmp(eh.p, h.p, h.len) != 0)
                continue;
            if (e->f.flags & GT_ABP_EXCEPTION)
                exception = exception ? exception : e;
            else if (e->f.flags & GT_ABP_IMPORTANT)
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

void gt_lists_apply(const gt_abp_set *s, const gt_rules_request *rq, const gt_psl *psl,
                    gt_decision *d)
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
    char url[8192];
    gt_slice scheme = rq->scheme.len ? rq->scheme : GT_S("http");
    bool dflt = rq->port == 0 || (rq->port == 80 && gt_slice_eq(scheme, GT_S("http"))) ||
                (rq->port == 443 && gt_slice_eq(scheme, GT_S("https")));
    char port[8] = "";
    if (!dflt)
        snprintf(port, sizeof(port), ":%u", rq->port);
    int n = snprintf(url, sizeof(url), "%.*s://%.*s%s%.*s", (int)scheme.len, scheme.p,
                     (int)rq->host.len, rq->host.p, port, (int)rq->path.len, rq->path.p);
    if (n < 0 || (size_t)n >= sizeof(url))
        return; /* longer than any list filter reasonably looks at */
    gt_abp_request ar = {.url = gt_slice_make(url, (size_t)n),
                         .host = gt_slice_make(url + scheme.len + 3, rq->host.len),
                         .source_host = gt_rules_url_host(rq->source),
                         .method = rq->method.len ? rq->method : GT_S("GET"),
                         .type = rq->type,
                         .party = rq->party,
                         .psl = psl,
                         .source_url = rq->source};
    const entry *e = NULL;
    if (decide_entry(s, &ar, &e) != GT_ABP_BLOCK || !e)
        return;
    /* the deciding filter's redirect, when it names one */
    gt_resp_kind rk = e->f.redirect.len ? redirect_kind(e->f.redirect) : GT_RESP_DEFAULT;
    d->action = rk != GT_RESP_DEFAULT ? GT_DECIDE_REDIRECT : GT_DECIDE_BLOCK;
    d->resp = rk;
    d->rule = NULL;
    d->list_file = s->files[e->fileix];
    d->list_line = e->line;
    /* a blocked request is not forwarded: its rewrites no longer matter */
    d->path_changed = false;
    d->nhdr_ops = 0;
}
