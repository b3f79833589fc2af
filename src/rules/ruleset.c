/* Loading a ruleset: expands the configured globs, parses every file, then files each rule
 * in the host index, the token index, or the short list of rules checked on every request.
 * The result is immutable and refcounted; reloads build a new one beside it. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

static bool has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

enum filed { FILED_ALWAYS, FILED_HOST, FILED_TOKEN, FILED_PREFIX };

/* The keys a rule can be found by, and in which index. */
static enum filed rule_tokens(const gt_rule *r, uint64_t *keys, uint32_t *vals, unsigned *fk,
                              size_t *n, size_t max)
{
    size_t start = *n;
    /* 1. host conditions: the most selective */
    for (size_t i = 0; i < r->nconds; i++) {
        const rule_cond *c = &r->conds[i];
        if (c->neg || (c->kind != C_DOMAIN && c->kind != C_HOST))
            continue;
        if (*n + c->nnames > max)
            break;
        for (size_t k = 0; k < c->nnames; k++) {
            keys[*n] = gt_rules_host_hash(c->names[k], strlen(c->names[k]));
            vals[(*n)++] = r->idx;
        }
        return FILED_HOST;
    }
    /* 2. the longest token some regex condition requires (a whole token beats a prefix) */
    char tok[128], best[128] = "";
    size_t bl = 0;
    bool best_prefix = false;
    for (size_t i = 0; i < r->nconds; i++) {
        const rule_cond *c = &r->conds[i];
        if (c->neg || !(c->kind == C_PATH_RE || c->kind == C_QUERY_RE || c->kind == C_URL_RE ||
                        c->kind == C_HOST_RE))
            continue;
        const char *v = strpbrk(c->text, "~") + 1;
        bool prefix;
        size_t l = gt_rules_required_token(v, strlen(v), tok, sizeof(tok), &prefix);
        if (l && gt_rules_token_score(tok, l, prefix) > gt_rules_token_score(best, bl, best_prefix)) {
            memcpy(best, tok, l + 1);
            bl = l;
            best_prefix = prefix;
        }
    }
    if (bl >= 2 && !best_prefix && *n < max) {
        keys[*n] = gt_rules_token_key(gt_rules_token_hash(best, bl));
        fk[*n] = gt_rules_filter_key(best, bl, best + bl);
        vals[(*n)++] = r->idx;
        return FILED_TOKEN;
    }
    /* 3. query parameter names (param= conditions, or rewrite rules that only remove
     * parameters): each name's longest alphanumeric run is a whole token of the query */
    const char *const *names = NULL;
    size_t nnames = 0;
    char *rwnames[64];
    for (size_t i = 0; i < r->nconds; i++)
        if (!r->conds[i].neg && r->conds[i].kind == C_PARAM) {
            names = (const char *const *)r->conds[i].names;
            nnames = r->conds[i].nnames;
        }
    if (!names && r->action == A_REWRITE && r->nconds == 0 && r->nrws <= 64) {
        bool only_params = true;
        for (size_t i = 0; i < r->nrws; i++) {
            if (r->rws[i].kind != RW_PARAM)
                only_params = false;
            else
                rwnames[nnames++] = r->rws[i].name;
        }
        if (only_params)
            names = (const char *const *)rwnames;
        else
            nnames = 0;
    }
    for (size_t k = 0; names && k < nnames; k++) {
        const char *nm = names[k];
        size_t i = 0, bs = 0, blen = 0, L = strlen(nm);
        while (i < L) {
            size_t s = i;
            while (i < L && ((nm[i] >= 'a' && nm[i] <= 'z') || (nm[i] >= '0' && nm[i] <= '9') ||
                             (nm[i] >= 'A' && nm[i] <= 'Z')))
                i++;
            /* a run next to a glob star may be part of a longer token */
            bool ok = (s == 0 || nm[s - 1] != '*') && (i == L || nm[i] != '*');
            if (ok && i - s > blen) {
                bs = s;
                blen = i - s;
            }
            i++;
        }
        if (blen < 2 || *n >= max) {
            *n = start;
            names = NULL;
            break;
        }
        keys[*n] = gt_rules_token_key(gt_rules_token_hash(nm + bs, blen));
        fk[*n] = gt_rules_filter_key(nm + bs, blen, nm + bs + blen);
        vals[(*n)++] = r->idx;
    }
    if (names && nnames)
        return FILED_TOKEN;
    /* 4. a literal every match must begin a token with */
    if (best_prefix && bl >= GT_PREFIX_SHORT && *n < max) {
        keys[*n] = gt_rules_token_key(
            gt_rules_token_hash(best, bl >= GT_PREFIX_LONG ? GT_PREFIX_LONG : GT_PREFIX_SHORT));
        fk[*n] = gt_rules_filter_key(best, GT_PREFIX_SHORT, best + bl);
        vals[(*n)++] = r->idx;
        return FILED_PREFIX;
    }
    return FILED_ALWAYS;
}

/* A pattern that can sit inside an alternation with others unchanged: no numbered or
 * relative back references, recursion or subroutine calls (their numbers would shift). */
static bool combinable(const char *v)
{
    for (const char *q = v; *q; q++) {
        if (q[0] == '\\' && q[1]) {
            if ((q[1] >= '1' && q[1] <= '9') || q[1] == 'g' || q[1] == 'k')
                return false;
            q++;
            continue;
        }
        if (q[0] == '(' && q[1] == '?' &&
            (q[2] == 'R' || q[2] == '&' || q[2] == '+' || q[2] == '-' ||
             (q[2] >= '0' && q[2] <= '9') || (q[2] == 'P' && (q[3] == '=' || q[3] == '>'))))
            return false;
        if (q[0] == '(' && q[1] == '*')
            return false; /* verbs such as (*ACCEPT) change what the whole pattern does */
    }
    return true;
}

/* Builds the per-part gates over the always-checked rules (see gt_ruleset.gates). */
static void build_gates(gt_ruleset *rs)
{
    static const uint8_t kinds[4] = {C_PATH_RE, C_QUERY_RE, C_URL_RE, C_HOST_RE};
    size_t keep = 0;
    uint32_t *gated[4] = {NULL};
    size_t ng[4] = {0};
    char *pat[4] = {NULL};
    size_t plen[4] = {0}, pcap[4] = {0};
    for (size_t i = 0; i < rs->nalways; i++) {
        const gt_rule *r = &rs->rules[rs->always[i]];
        int g = -1;
        const rule_cond *gc = NULL;
        for (size_t k = 0; k < r->nconds && g < 0; k++) {
            const rule_cond *c = &r->conds[k];
            if (c->neg || !c->re)
                continue;
            for (int j = 0; j < 4; j++)
                if (c->kind == kinds[j] && combinable(strchr(c->text, '~') + 1)) {
                    g = j;
                    gc = c;
                }
        }
        if (g < 0) {
            rs->always[keep++] = rs->always[i];
            continue;
        }
        const char *v = strchr(gc->text, '~') + 1;
        size_t vl = strlen(v);
        if (plen[g] + vl + 8 > pcap[g]) {
            pcap[g] = (plen[g] + vl + 8) * 2;
            pat[g] = gt_xrealloc(pat[g], pcap[g]);
        }
        plen[g] += (size_t)snprintf(pat[g] + plen[g], pcap[g] - plen[g], "%s(?:%s)",
                                    ng[g] ? "|" : "", v);
        gated[g] = gt_xrealloc(gated[g], (ng[g] + 1) * sizeof(uint32_t));
        gated[g][ng[g]++] = rs->always[i];
    }
    size_t nalways_before = rs->nalways;
    rs->nalways = keep;
    for (int j = 0; j < 4; j++) {
        if (!ng[j])
            continue;
        int code;
        PCRE2_SIZE off;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)pat[j], plen[j], PCRE2_DUPNAMES, &code, &off, NULL);
        if (!re) {
            /* too large or otherwise refused: these rules stay checked one by one */
            for (size_t k = 0; k < ng[j]; k++)
                rs->always[rs->nalways++] = gated[j][k];
            free(gated[j]);
        } else {
            rs->gates[rs->ngates].kind = kinds[j];
            rs->gates[rs->ngates].any = re;
            rs->gates[rs->ngates].jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
            rs->gates[rs->ngates].rules = gated[j];
            rs->gates[rs->ngates].nrules = ng[j];
            rs->ngates++;
        }
        free(pat[j]);
    }
    (void)nalways_before;
}

static void build_indexes(gt_ruleset *rs, bool no_index)
{
    size_t max = rs->nrules * 4 + 16;
    uint64_t *hk = gt_xcalloc(max, sizeof(uint64_t)), *tk = gt_xcalloc(max, sizeof(uint64_t));
    uint32_t *hv = gt_xcalloc(max, sizeof(uint32_t)), *tv = gt_xcalloc(max, sizeof(uint32_t));
    uint64_t *pk = gt_xcalloc(max, sizeof(uint64_t));
    uint32_t *pv = gt_xcalloc(max, sizeof(uint32_t));
    size_t nh = 0, nt = 0, np = 0;
    rs->always = gt_xcalloc(rs->nrules ? rs->nrules : 1, sizeof(uint32_t));
    rs->tok_filter = gt_xcalloc(65536 / 64, sizeof(uint64_t));
    for (size_t i = 0; i < rs->nrules; i++) {
        uint64_t keys[256];
        uint32_t vals[256];
        unsigned fk[256];
        size_t n = 0;
        enum filed how =
            no_index ? FILED_ALWAYS : rule_tokens(&rs->rules[i], keys, vals, fk, &n, 256);
        if (how == FILED_ALWAYS) {
            rs->always[rs->nalways++] = (uint32_t)i;
            continue;
        }
        if (how == FILED_HOST)
            rs->stats.by_host++;
        else if (how == FILED_TOKEN)
            rs->stats.by_token++;
        else
            rs->stats.by_prefix++;
        uint64_t *dk = how == FILED_HOST ? hk : how == FILED_TOKEN ? tk : pk;
        uint32_t *dv = how == FILED_HOST ? hv : how == FILED_TOKEN ? tv : pv;
        size_t *dn = how == FILED_HOST ? &nh : how == FILED_TOKEN ? &nt : &np;
        for (size_t k = 0; k < n && *dn < max; k++) {
            dk[*dn] = keys[k];
            dv[(*dn)++] = vals[k];
            if (how != FILED_HOST)
                rs->tok_filter[fk[k] / 64] |= 1ULL << (fk[k] % 64);
        }
    }
    if (!no_index)
        build_gates(rs);
    rs->stats.always = rs->nalways;
    for (size_t g = 0; g < rs->ngates; g++)
        rs->stats.gated += rs->gates[g].nrules;
    gt_rules_index_build(&rs->by_host, hk, hv, nh);
    gt_rules_index_build(&rs->by_token, tk, tv, nt);
    gt_rules_index_build(&rs->by_prefix, pk, pv, np);
    rs->mem += (rs->by_host.cap + rs->by_token.cap + rs->by_prefix.cap) * sizeof(index_slot) +
               3 * INDEX_FILTER_BITS / 8 + (nh + nt + np + rs->nrules) * 4;
    free(hk);
    free(tk);
    free(pk);
    free(hv);
    free(tv);
    free(pv);
}

static void ruleset_free(gt_ruleset *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->nrules; i++)
        gt_rules_rule_free(&rs->rules[i]);
    free(rs->rules);
    for (size_t i = 0; i < rs->nfiles; i++)
        free(rs->files[i]);
    free(rs->files);
    for (size_t i = 0; i < rs->npatterns; i++)
        free(rs->patterns[i]);
    free(rs->patterns);
    for (size_t i = 0; i < rs->nwatched; i++)
        free(rs->watched[i].path);
    free(rs->watched);
    gt_rules_index_free(&rs->by_host);
    gt_rules_index_free(&rs->by_token);
    gt_rules_index_free(&rs->by_prefix);
    free(rs->always);
    free(rs->tok_filter);
    for (size_t i = 0; i < rs->ngates; i++) {
        pcre2_code_free(rs->gates[i].any);
        free(rs->gates[i].rules);
    }
    pcre2_match_context_free(rs->mctx);
    free(rs);
}

static size_t code_size(const pcre2_code *re)
{
    size_t sz = 0;
    if (re)
        pcre2_pattern_info(re, PCRE2_INFO_SIZE, &sz);
    size_t jit = 0;
    if (re && pcre2_pattern_info(re, PCRE2_INFO_JITSIZE, &jit) == 0)
        sz += jit;
    return sz;
}

int gt_ruleset_load(gt_ruleset **out, const gt_rules_source *src, const gt_psl *psl,
                    gt_diags *d)
{
    *out = NULL;
    gt_ruleset *rs = gt_xcalloc(1, sizeof(*rs));
    atomic_init(&rs->refs, 1);
    rs->psl = psl;
    int rv = 0;
    size_t errors0 = d->errors;
    rs->patterns = gt_xcalloc(src->nfiles + 1, sizeof(char *));
    for (size_t i = 0; i < src->nfiles; i++) {
        const char *pat = src->files[i];
        rs->patterns[rs->npatterns++] = gt_xstrdup(pat);
        glob_t g;
        int r = glob(pat, 0, NULL, &g);
        if (r == GLOB_NOMATCH) {
            if (has_glob(pat))
                gt_diags_add(d, 1, pat, 0, 0, "pattern matches no rule file");
            else
                gt_diags_add(d, 0, pat, 0, 0, "cannot read rule file: no such file");
            continue;
        }
        if (r != 0) {
            gt_diags_add(d, 0, pat, 0, 0, "cannot expand pattern");
            continue;
        }
        for (size_t k = 0; k < g.gl_pathc; k++)
            gt_rules_parse_file(rs, g.gl_pathv[k], d, 0, src);
        globfree(&g);
    }
    if (d->errors > errors0) {
        rv = GT_EINVAL;
        goto out;
    }
    rs->mctx = pcre2_match_context_create(NULL);
    /* Limits sized so a well-formed URL pattern never meets them and a runaway one stops
     * within about a millisecond. */
    pcre2_set_match_limit(rs->mctx, 200000);
    pcre2_set_depth_limit(rs->mctx, 10000);
    for (size_t i = 0; i < rs->nrules; i++) {
        gt_rule *r = &rs->rules[i];
        rs->mem += sizeof(*r) + strlen(r->text) + r->nconds * sizeof(rule_cond);
        for (size_t k = 0; k < r->nconds; k++) {
            rs->mem += code_size(r->conds[k].re) + strlen(r->conds[k].text);
            for (size_t j = 0; j < r->conds[k].nnames; j++)
                rs->mem += strlen(r->conds[k].names[j]) + 1 + sizeof(char *);
        }
        for (size_t k = 0; k < r->nrws; k++)
            rs->mem += sizeof(rule_rw) + code_size(r->rws[k].re);
    }
    build_indexes(rs, src->no_index);
    if (src->lint)
        gt_rules_lint(rs, d);
    *out = rs;
    rs = NULL;
out:
    ruleset_free(rs);
    return rv;
}

gt_ruleset *gt_ruleset_ref(gt_ruleset *rs)
{
    if (rs)
        atomic_fetch_add_explicit(&rs->refs, 1, memory_order_relaxed);
    return rs;
}

void gt_ruleset_release(gt_ruleset *rs)
{
    if (rs && atomic_fetch_sub_explicit(&rs->refs, 1, memory_order_acq_rel) == 1)
        ruleset_free(rs);
}

size_t gt_ruleset_count(const gt_ruleset *rs)
{
    return rs ? rs->nrules : 0;
}

size_t gt_ruleset_memory(const gt_ruleset *rs)
{
    return rs ? rs->mem : 0;
}

void gt_ruleset_get_stats(const gt_ruleset *rs, gt_ruleset_stats *st)
{
    if (rs)
        *st = rs->stats;
    else
        memset(st, 0, sizeof(*st));
}

bool gt_ruleset_wants_body(const gt_ruleset *rs)
{
    return rs && rs->wants_body;
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t gt_ruleset_stamp(const gt_ruleset *rs)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    if (!rs)
        return h;
    for (size_t i = 0; i < rs->nwatched; i++) {
        struct stat st;
        memset(&st, 0, sizeof(st));
        int r = stat(rs->watched[i].path, &st);
        h = mix(h, rs->watched[i].path, strlen(rs->watched[i].path));
        h = mix(h, &r, sizeof(r));
        h = mix(h, &st.st_ino, sizeof(st.st_ino));
        h = mix(h, &st.st_size, sizeof(st.st_size));
        h = mix(h, &st.st_mtim, sizeof(st.st_mtim));
    }
    /* a file that a glob now matches, or no longer matches */
    for (size_t i = 0; i < rs->npatterns; i++) {
        glob_t g;
        if (!has_glob(rs->patterns[i]) || glob(rs->patterns[i], 0, NULL, &g) != 0)
            continue;
        for (size_t k = 0; k < g.gl_pathc; k++)
            h = mix(h, g.gl_pathv[k], strlen(g.gl_pathv[k]) + 1);
        globfree(&g);
    }
    return h;
}

size_t gt_ruleset_files(const gt_ruleset *rs, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; rs && i < rs->nwatched; i++)
        if (n < cap)
            out[n++] = rs->watched[i].path;
    return rs ? rs->nwatched : 0;
}

const char *gt_rule_file(const gt_rule *r)
{
    return r ? r->file : "-";
}

unsigned gt_rule_line(const gt_rule *r)
{
    return r ? r->line : 0;
}

const char *gt_rule_text(const gt_rule *r)
{
    return r ? r->text : "";
}
