/* The decision: gathers candidate rules from the host and token indexes (plus the few
 * rules filed nowhere), checks each one's conditions, extracts product keys, and applies
 * the documented precedence (docs/RULES.md): bought > important block/redirect > allow >
 * block/redirect; rewrites apply to whatever is forwarded. Reads the immutable ruleset
 * and writes only the caller's scratch and decision. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "internal.h"

#define MAX_EXTRACT_MATCHES 64

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

gt_rules_scratch *gt_rules_scratch_new(void)
{
    gt_rules_scratch *sc = gt_xcalloc(1, sizeof(*sc));
    sc->md = pcre2_match_data_create(64, NULL);
    if (!sc->md) {
        fprintf(stderr, "gretel: out of memory creating PCRE2 match data\n");
        abort();
    }
    return sc;
}

void gt_rules_scratch_free(gt_rules_scratch *sc)
{
    if (!sc)
        return;
    pcre2_match_data_free(sc->md);
    free(sc->cands);
    free(sc->order);
    free(sc->seen);
    free(sc->tokens);
    free(sc->bits);
    free(sc->url);
    free(sc->out);
    free(sc->tmp);
    free(sc);
}

static void ensure(char **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    free(*buf);
    *buf = gt_xmalloc(n);
    *cap = n;
}

/* Appends to the decision's output area, which was sized for the request up front so that
 * slices already handed out never move. */
static char *out_take(gt_rules_scratch *sc, size_t n)
{
    if (sc->out_len + n > sc->out_cap)
        return NULL;
    char *p = sc->out + sc->out_len;
    sc->out_len += n;
    return p;
}

static void ctx_init(reqctx *c, const gt_rules_request *rq)
{
    /* field by field: a memset would also clear srcbuf on every decision */
    c->source_host = GT_S("");
    c->source_done = false;
    c->url = GT_S("");
    c->url_built = false;
    c->rq = rq;
    gt_slice p = rq->path;
    const char *q = p.len ? memchr(p.p, '?', p.len) : NULL;
    c->path_only = q ? gt_slice_make(p.p, (size_t)(q - p.p)) : p;
    c->query = q ? gt_slice_make(q + 1, (size_t)(p.p + p.len - q - 1)) : GT_S("");
    c->party = rq->party;
    c->party_done = rq->party != GT_PARTY_UNKNOWN;
}

/* The source page's host, lower-cased: only source= conditions and page scopes need it. */
static gt_slice ctx_source_host(reqctx *c)
{
    if (!c->source_done) {
        c->source_done = true;
        gt_slice sh = gt_rules_url_host(c->rq->source);
        if (sh.len < sizeof(c->srcbuf)) {
            for (size_t i = 0; i < sh.len; i++)
                c->srcbuf[i] = gt_ascii_lower(sh.p[i]);
            c->source_host = gt_slice_make(c->srcbuf, sh.len);
        }
    }
    return c->source_host;
}

static gt_slice ctx_url(reqctx *c, gt_rules_scratch *sc)
{
    if (c->url_built)
        return c->url;
    const gt_rules_request *rq = c->rq;
    gt_slice scheme = rq->scheme.len ? rq->scheme : GT_S("http");
    ensure(&sc->url, &sc->url_cap, scheme.len + rq->host.len + rq->path.len + 16);
    int n = snprintf(sc->url, sc->url_cap, "%.*s://%.*s", (int)scheme.len, scheme.p,
                     (int)rq->host.len, rq->host.p);
    if (rq->port && !((rq->port == 80 && gt_slice_eq(scheme, GT_S("http"))) ||
                      (rq->port == 443 && gt_slice_eq(scheme, GT_S("https")))))
        n += snprintf(sc->url + n, sc->url_cap - (size_t)n, ":%u", rq->port);
    memcpy(sc->url + n, rq->path.p, rq->path.len);
    c->url = gt_slice_make(sc->url, (size_t)n + rq->path.len);
    c->url_built = true;
    return c->url;
}

static gt_party ctx_party(reqctx *c, const gt_ruleset *rs)
{
    if (!c->party_done) {
        gt_reqview v;
        memset(&v, 0, sizeof(v));
        v.host = c->rq->host;
        v.referer = c->rq->source;
        c->party = gt_rules_party_of(rs->psl, &v);
        c->party_done = true;
    }
    return c->party;
}

static bool domain_match(gt_slice host, const char *name)
{
    size_t n = strlen(name);
    if (host.len == n)
        return memcmp(host.p, name, n) == 0;
    return host.len > n && host.p[host.len - n - 1] == '.' &&
           memcmp(host.p + host.len - n, name, n) == 0;
}

static int re_match(const gt_ruleset *rs, gt_rules_scratch *sc, const rule_cond *c, gt_slice s,
                    size_t start)
{
    if (c->jit)
        return pcre2_jit_match(c->re, (PCRE2_SPTR)(s.p ? s.p : ""), s.len, start, 0, sc->md,
                               rs->mctx);
    return pcre2_match(c->re, (PCRE2_SPTR)(s.p ? s.p : ""), s.len, start, 0, sc->md, rs->mctx);
}

static bool glob_match(const char *pat, gt_slice s)
{
    /* '*' matches any run; ASCII case-insensitive (tracking parameters appear as UTM_x) */
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0, pl = strlen(pat);
    while (si < s.len) {
        if (pi < pl && pat[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pl && gt_ascii_lower(pat[pi]) == gt_ascii_lower(s.p[si])) {
            pi++;
            si++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pl && pat[pi] == '*')
        pi++;
    return pi == pl;
}

static bool query_has_param(gt_slice query, const char *name)
{
    gt_slice rest = query, part;
    while (query.len && gt_slice_next(&rest, '&', &part)) {
        const char *eq = memchr(part.p, '=', part.len);
        gt_slice k = eq ? gt_slice_make(part.p, (size_t)(eq - part.p)) : part;
        if (glob_match(name, k))
            return true;
    }
    return false;
}

/* The subject a regex condition is matched against. */
static gt_slice subject(const rule_cond *c, reqctx *x, gt_rules_scratch *sc, size_t *field_i)
{
    const gt_rules_request *rq = x->rq;
    switch (c->kind) {
    case C_HOST_RE:
        return rq->host;
    case C_PATH_RE:
        return x->path_only;
    case C_QUERY_RE:
        return x->query;
    case C_URL_RE:
        return ctx_url(x, sc);
    case C_SOURCE_RE:
        return rq->source;
    case C_BODY_RE:
        return rq->body;
    case C_HEADER_RE:
        for (size_t i = *field_i; i < rq->nfields; i++)
            if (gt_slice_caseeq(rq->fields[i].name, gt_slice_cstr(c->hdr))) {
                *field_i = i + 1;
                return rq->fields[i].value;
            }
        *field_i = (size_t)-1;
        return GT_S("");
    default:
        return GT_S("");
    }
}

/* The condition's verdict before negation; `seen` (may be NULL) gets what was looked at. */
static bool cond_raw(const gt_ruleset *rs, gt_rules_scratch *sc, const rule_cond *c, reqctx *x,
                     gt_slice *seen)
{
    const gt_rules_request *rq = x->rq;
    gt_slice dummy;
    if (!seen)
        seen = &dummy;
    switch (c->kind) {
    case C_DOMAIN:
    case C_HOST:
        *seen = rq->host;
        for (size_t k = 0; k < c->nnames; k++)
            if (c->kind == C_DOMAIN ? domain_match(rq->host, c->names[k])
                                    : gt_slice_eq(rq->host, gt_slice_cstr(c->names[k])))
                return true;
        return false;
    case C_SOURCE:
        *seen = ctx_source_host(x);
        for (size_t k = 0; k < c->nnames; k++)
            if (x->source_host.len && domain_match(x->source_host, c->names[k]))
                return true;
        return false;
    case C_METHOD: {
        gt_slice m = rq->method.len ? rq->method : GT_S("GET");
        *seen = m;
        for (size_t k = 0; k < c->nnames; k++)
            if (gt_slice_eq(m, gt_slice_cstr(c->names[k])))
                return true;
        return false;
    }
    case C_TYPE:
        *seen = gt_slice_cstr(gt_rules_type_name(rq->type));
        return (c->typemask >> rq->type) & 1u;
    case C_PARTY: {
        gt_party p = ctx_party(x, rs);
        *seen = gt_slice_cstr(p == GT_PARTY_FIRST   ? "first"
                              : p == GT_PARTY_THIRD ? "third"
                                                    : "unknown");
        return p == c->party;
    }
    case C_PARAM:
        *seen = x->query;
        for (size_t k = 0; k < c->nnames; k++)
            if (query_has_param(x->query, c->names[k]))
                return true;
        return false;
    case C_SCHEME: {
        gt_slice s = rq->scheme.len ? rq->scheme : GT_S("http");
        *seen = s;
        for (size_t k = 0; k < c->nnames; k++)
            if (gt_slice_caseeq(s, gt_slice_cstr(c->names[k])))
                return true;
        return false;
    }
    case C_PORT: {
        uint16_t port = rq->port;
        if (!port)
            port = gt_slice_eq(rq->scheme, GT_S("https")) || gt_slice_eq(rq->scheme, GT_S("wss"))
                       ? 443
                       : 80;
        for (size_t k = 0; k < c->nnames; k++)
            if (c->ports[k] == port)
                return true;
        return false;
    }
    default: {
        size_t fi = 0;
        for (;;) {
            gt_slice s = subject(c, x, sc, &fi);
            if (fi == (size_t)-1)
                return false; /* header absent */
            *seen = s;
            if (re_match(rs, sc, c, s, 0) > 0)
                return true;
            if (c->kind != C_HEADER_RE)
                return false;
        }
    }
    }
}

static bool cond_ok(const gt_ruleset *rs, gt_rules_scratch *sc, const rule_cond *c, reqctx *x)
{
    return cond_raw(rs, sc, c, x, NULL) != c->neg;
}

static bool host_level(const gt_rule *r)
{
    if (r->action == A_REWRITE || r->action == A_LOG || r->has_extract)
        return false;
    for (size_t i = 0; i < r->nconds; i++)
        switch (r->conds[i].kind) {
        case C_DOMAIN:
        case C_HOST:
        case C_HOST_RE:
        case C_SCHEME:
        case C_PORT:
            break;
        default:
            return false;
        }
    return r->nconds > 0;
}

static bool rule_matches(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rule *r,
                         reqctx *x)
{
    if (x->rq->host_only && !host_level(r))
        return false;
    /* cheap conditions first: they reject most candidates before any regex runs */
    for (size_t i = 0; i < r->nconds; i++)
        if (!r->conds[i].re && !cond_ok(rs, sc, &r->conds[i], x))
            return false;
    for (size_t i = 0; i < r->nconds; i++)
        if (r->conds[i].re && !cond_ok(rs, sc, &r->conds[i], x))
            return false;
    return true;
}

static gt_slice copy_group(gt_rules_scratch *sc, gt_slice s, const char *name, char *buf,
                           size_t cap)
{
    PCRE2_SIZE l = cap;
    if (pcre2_substring_copy_byname(sc->md, (PCRE2_SPTR)name, (PCRE2_UCHAR *)buf, &l) != 0)
        return GT_S("");
    (void)s;
    return gt_slice_make(buf, l);
}

/* The scope of a rule's keys: fixed, a namespace, or the registrable domain of the page
 * (a (?<page>...) capture holding the page URL, else the request's source). */
static size_t scope_of(const gt_ruleset *rs, const gt_rule *r, reqctx *x, gt_slice page_url,
                       char *out, size_t cap)
{
    if (r->scope == SCOPE_SITE || r->scope == SCOPE_NS) {
        size_t n = strlen(r->scope_arg);
        if (n >= cap)
            return 0;
        memcpy(out, r->scope_arg, n + 1);
        return n;
    }
    gt_slice host = GT_S("");
    char dec[2048];
    if (page_url.len && page_url.len < sizeof(dec)) {
        size_t l = gt_rules_percent_decode(page_url, dec, false);
        for (int k = 0; k < 4; k++) {
            size_t l2 = gt_rules_percent_decode(gt_slice_make(dec, l), dec, false);
            if (l2 == l)
                break;
            l = l2;
        }
        host = gt_rules_url_host(gt_slice_make(dec, l));
    }
    if (!host.len)
        host = ctx_source_host(x);
    if (!host.len || !rs->psl)
        return 0;
    return gt_rules_registrable_domain(rs->psl, host, out, cap);
}

static void add_product(gt_rules_scratch *sc, gt_decision *d, const gt_rule *r, gt_slice scope,
                        gt_slice id, gt_bought_fn bought, void *barg)
{
    if (d->nproducts == GT_DECISION_MAX_PRODUCTS || id.len > 256)
        return;
    /* ids are opaque but must stay printable: keys land in logs, explain and the store */
    for (size_t i = 0; i < id.len; i++)
        if ((unsigned char)id.p[i] < 0x20 || id.p[i] == 0x7f)
            return;
    size_t n = scope.len + 1 + id.len;
    for (size_t i = 0; i < d->nproducts; i++)
        if (d->products[i].key.len == n &&
            memcmp(d->products[i].key.p + scope.len + 1, id.p, id.len) == 0 &&
            memcmp(d->products[i].key.p, scope.p, scope.len) == 0)
            return;
    char *p = out_take(sc, n);
    if (!p)
        return;
    memcpy(p, scope.p, scope.len);
    p[scope.len] = ':';
    memcpy(p + scope.len + 1, id.p, id.len);
    gt_product *pr = &d->products[d->nproducts++];
    pr->key = gt_slice_make(p, n);
    pr->rule = r;
    pr->bought = bought ? bought(barg, pr->key) : false;
}

/* Extracts every product id a matched rule names; returns true if one is bought. */
static bool extract(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rule *r, reqctx *x,
                    gt_decision *d, gt_bought_fn bought, void *barg)
{
    bool any = false;
    size_t first = d->nproducts;
    /* a (?<page>...) in another condition than the ids scopes all of them */
    char rule_page[2048];
    gt_slice page_any = GT_S("");
    for (size_t i = 0; i < r->nconds && !page_any.len; i++) {
        const rule_cond *c = &r->conds[i];
        if (!c->page_group || c->id_group)
            continue;
        size_t fi = 0;
        gt_slice s = subject(c, x, sc, &fi);
        if (fi != (size_t)-1 && re_match(rs, sc, c, s, 0) > 0)
            page_any = copy_group(sc, s, "page", rule_page, sizeof(rule_page));
    }
    for (size_t i = 0; i < r->nconds; i++) {
        const rule_cond *c = &r->conds[i];
        if (!c->id_group)
            continue;
        size_t fi = 0;
        gt_slice s = subject(c, x, sc, &fi);
        if (fi == (size_t)-1)
            continue;
        size_t start = 0;
        for (int m = 0; m < MAX_EXTRACT_MATCHES && start <= s.len; m++) {
            if (re_match(rs, sc, c, s, start) <= 0)
                break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
            size_t mend = ov[1];
            char idbuf[4096], pagebuf[2048], scope[256];
            gt_slice id = copy_group(sc, s, "id", idbuf, sizeof(idbuf));
            gt_slice page = c->page_group ? copy_group(sc, s, "page", pagebuf, sizeof(pagebuf))
                                          : page_any;
            size_t sl = scope_of(rs, r, x, page, scope, sizeof(scope));
            if (id.len && sl) {
                ensure(&sc->tmp, &sc->tmp_cap, (r->ndecoders + 1) * id.len + 16);
                gt_slice vals[GT_DECODE_MAX_VALUES];
                size_t nv = gt_rules_decode_run(r->decoders, r->ndecoders, id, sc->tmp,
                                                sc->tmp_cap, vals, GT_DECODE_MAX_VALUES);
                for (size_t k = 0; k < nv; k++)
                    add_product(sc, d, r, gt_slice_make(scope, sl), vals[k], bought, barg);
            }
            start = mend > ov[0] ? mend : mend + 1; /* an empty match must still advance */
        }
    }
    for (size_t i = first; i < d->nproducts; i++)
        any = any || d->products[i].bought;
    return any;
}

/* Rewrites: the query without removed parameters, header edits, cookie removals. */
/* The first of the matched rewrite rules that removes this parameter, or NULL. */
static const gt_rule *param_removed(const gt_ruleset *rs, gt_rules_scratch *sc,
                                    const gt_rule *const *rws, size_t nrw, gt_slice name)
{
    for (size_t i = 0; i < nrw; i++)
        for (size_t k = 0; k < rws[i]->nrws; k++) {
            const rule_rw *w = &rws[i]->rws[k];
            if (w->kind == RW_PARAM) {
                /* exact names (most of them) are rejected by length before any compare */
                if (w->glob ? glob_match(w->name, name)
                            : (w->name_len == name.len &&
                               gt_slice_caseeq(name, gt_slice_make(w->name, w->name_len))))
                    return rws[i];
            } else if (w->kind == RW_PARAM_RE) {
                rule_cond c = {.re = w->re, .jit = w->jit};
                if (re_match(rs, sc, &c, name, 0) > 0)
                    return rws[i];
            }
        }
    return NULL;
}

static bool field_present(const gt_rules_request *rq, gt_slice name)
{
    for (size_t i = 0; i < rq->nfields; i++)
        if (gt_slice_caseeq(rq->fields[i].name, name))
            return true;
    return false;
}

static gt_slice field_value(const gt_rules_request *rq, gt_slice name)
{
    for (size_t i = 0; i < rq->nfields; i++)
        if (gt_slice_caseeq(rq->fields[i].name, name))
            return rq->fields[i].value;
    return GT_S("");
}

static bool cookie_named(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_hdr_op *op,
                         gt_slice name)
{
    if (op->cookie_re)
        return pcre2_match(op->cookie_re, (PCRE2_SPTR)(name.p ? name.p : ""), name.len, 0, 0,
                           sc->md, rs ? rs->mctx : NULL) > 0;
    return gt_slice_eq(op->name, name);
}

/* Applies the rewrite rules that matched; returns true if the request changes. */
static bool apply_rewrites(const gt_ruleset *rs, gt_rules_scratch *sc, reqctx *x,
                           const gt_rule *const *rws, size_t nrw, gt_decision *d)
{
    const gt_rules_request *rq = x->rq;
    bool changed = false;
    const gt_rule *first_change = NULL;
    /* query parameters */
    if (x->query.len) {
        char *p = out_take(sc, rq->path.len);
        if (p) {
            size_t o = x->path_only.len;
            memcpy(p, x->path_only.p, o);
            size_t kept = 0;
            bool removed = false;
            const gt_rule *first_remover = NULL;
            gt_slice rest = x->query, part;
            while (gt_slice_next(&rest, '&', &part)) {
                const char *eq = memchr(part.p, '=', part.len);
                gt_slice k = eq ? gt_slice_make(part.p, (size_t)(eq - part.p)) : part;
                const gt_rule *by = part.len ? param_removed(rs, sc, rws, nrw, k) : NULL;
                if (by) {
                    /* the rule that decided is the first in file order that removed any */
                    if (!first_remover || by->idx < first_remover->idx)
                        first_remover = by;
                    removed = true;
                    continue;
                }
                p[o++] = kept++ ? '&' : '?';
                memcpy(p + o, part.p, part.len);
                o += part.len;
            }
            if (removed) {
                d->path_changed = true;
                d->new_path = gt_slice_make(p, o);
                changed = true;
                first_change = first_remover;
            } else {
                sc->out_len -= rq->path.len; /* give the space back */
            }
        }
    }
    /* header edits */
    for (size_t i = 0; i < nrw; i++)
        for (size_t k = 0; k < rws[i]->nrws; k++) {
            const rule_rw *w = &rws[i]->rws[k];
            if (d->nhdr_ops == GT_DECISION_MAX_HDR_OPS)
                break;
            gt_hdr_op op = {.rule = rws[i]};
            bool effective = false;
            switch (w->kind) {
            case RW_HDR_REMOVE:
                op.kind = GT_HDR_REMOVE;
                op.name = gt_slice_cstr(w->name);
                effective = field_present(rq, op.name);
                break;
            case RW_HDR_SET:
                op.kind = GT_HDR_SET;
                op.name = gt_slice_cstr(w->name);
                op.value = gt_slice_cstr(w->value);
                effective = !gt_slice_eq(field_value(rq, op.name), op.value) ||
                            !field_present(rq, op.name);
                break;
            case RW_COOKIE:
            case RW_COOKIE_RE: {
                op.kind = GT_HDR_REMOVE_COOKIE;
                op.name = w->name ? gt_slice_cstr(w->name) : GT_S("");
                op.cookie_re = w->kind == RW_COOKIE_RE ? w->re : NULL;
                gt_slice ck = field_value(rq, GT_S("cookie"));
                gt_slice rest = ck, part;
                while (ck.len && gt_slice_next(&rest, ';', &part)) {
                    part = gt_slice_trim(part);
                    const char *eq = memchr(part.p, '=', part.len);
                    gt_slice nm = eq ? gt_slice_make(part.p, (size_t)(eq - part.p)) : part;
                    if (cookie_named(rs, sc, &op, nm))
                        effective = true;
                }
                break;
            }
            case RW_TRIM_REFERER: {
                op.kind = GT_HDR_TRIM_REFERER;
                op.name = GT_S("referer");
                gt_slice ref = field_value(rq, op.name);
                effective = ref.len && gt_rules_referer_origin(ref).len + 1 < ref.len;
                break;
            }
            default:
                continue;
            }
            if (!effective)
                continue;
            d->hdr_ops[d->nhdr_ops++] = op;
            changed = true;
            if (!first_change)
                first_change = rws[i];
        }
    d->rewrite_rule = first_change;
    return changed;
}

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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

static void gather(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rules_request *rq,
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
        gt_slice subj = subject(&gate, x, sc, &fi);
        int r = re_match(rs, sc, &gate, subj, 0);
        /* a gate that hit PCRE2's limits decides nothing: its rules are tried one by one */
        if (r > 0 || r != PCRE2_ERROR_NOMATCH)
            add_cands(sc, rs->gates[i].rules, rs->gates[i].nrules);
    }
}


/* Products in rule order (stable: one rule's ids keep the order they were found in). */
static void sort_products(gt_decision *d)
{
    for (size_t i = 1; i < d->nproducts; i++)
        for (size_t j = i; j > 0 && d->products[j - 1].rule->idx > d->products[j].rule->idx;
             j--) {
            gt_product t = d->products[j];
            d->products[j] = d->products[j - 1];
            d->products[j - 1] = t;
        }
}

static int rule_class(const gt_rule *r)
{
    switch (r->action) {
    case A_BLOCK_IF_BOUGHT:
        return 0;
    case A_BLOCK:
    case A_REDIRECT:
        return r->important ? 1 : 3;
    case A_ALLOW:
        return 2;
    case A_REWRITE:
        return 4;
    default:
        return 5;
    }
}

static void ensure_u32(uint32_t **v, size_t *cap, size_t n)
{
    if (*cap >= n)
        return;
    size_t c = *cap ? *cap : 256;
    while (c < n)
        c *= 2;
    *v = gt_xrealloc(*v, c * sizeof(uint32_t));
    *cap = c;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_u32(uint32_t *v, size_t n)
{
    if (n > 24) {
        qsort(v, n, sizeof(uint32_t), cmp_u32);
        return;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            uint32_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

void gt_rules_decide(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rules_request *rq,
                     gt_bought_fn bought, void *bought_arg, gt_decision *d)
{
    d->action = GT_DECIDE_PASS;
    d->rule = NULL;
    d->overridden = NULL;
    d->resp = GT_RESP_DEFAULT;
    d->bought = false;
    d->path_changed = false;
    d->new_path = GT_S("");
    d->rewrite_rule = NULL;
    d->nhdr_ops = d->nproducts = d->nlogs = 0;
    d->candidates = 0;
    if (!rs || rs->nrules == 0)
        return;
    sc->out_len = 0;
    ensure(&sc->out, &sc->out_cap, rq->path.len + 1 + GT_DECISION_MAX_PRODUCTS * 520);
    reqctx x;
    ctx_init(&x, rq);
    gather(rs, sc, rq, &x);
    d->candidates = (unsigned)sc->ncands;
    if (!sc->ncands)
        return;
    /* Candidates by precedence class, each class in file order: a class is tried only
     * while no higher class has decided, and stops at its first match (the winner), so a
     * request that one host rule blocks does not pay for the regexes of twenty others.
     * block-if-bought and log rules are always all tried (every bought product counts,
     * every log rule logs). */
    enum { K_BOUGHT, K_IMPORTANT, K_ALLOW, K_BLOCK, K_REWRITE, K_LOG, K_N };
    size_t cnt[K_N] = {0}, at[K_N];
    for (size_t i = 0; i < sc->ncands; i++)
        cnt[rule_class(&rs->rules[sc->cands[i]])]++;
    ensure_u32(&sc->order, &sc->order_cap, sc->ncands);
    at[0] = 0;
    for (int k = 1; k < K_N; k++)
        at[k] = at[k - 1] + cnt[k - 1];
    size_t fill[K_N];
    memcpy(fill, at, sizeof(fill));
    for (size_t i = 0; i < sc->ncands; i++)
        sc->order[fill[rule_class(&rs->rules[sc->cands[i]])]++] = sc->cands[i];
    for (int k = 0; k < K_N; k++)
        sort_u32(sc->order + at[k], cnt[k]);
    const gt_rule *won[K_N] = {NULL};
    const gt_rule *rws[64];
    size_t nrw = 0;
    for (int k = 0; k < K_N; k++) {
        bool decided = won[K_BOUGHT] || won[K_IMPORTANT] || won[K_ALLOW] || won[K_BLOCK];
        if (decided && k != K_LOG && !(k == K_BLOCK && won[K_ALLOW] && !won[K_BOUGHT] &&
                                       !won[K_IMPORTANT]) &&
            !(k == K_REWRITE && won[K_ALLOW] && !won[K_BOUGHT] && !won[K_IMPORTANT]))
            continue;
        for (size_t i = at[k]; i < at[k] + cnt[k]; i++) {
            const gt_rule *r = &rs->rules[sc->order[i]];
            if (!rule_matches(rs, sc, r, &x))
                continue;
            bool hit_bought = r->has_extract && extract(rs, sc, r, &x, d, bought, bought_arg);
            if (k == K_BOUGHT) {
                if (hit_bought && !won[K_BOUGHT])
                    won[K_BOUGHT] = r;
                continue;
            }
            if (k == K_REWRITE) {
                if (nrw < 64)
                    rws[nrw++] = r;
                continue;
            }
            if (k == K_LOG) {
                if (d->nlogs < GT_DECISION_MAX_LOGS)
                    d->logs[d->nlogs++] = r;
                continue;
            }
            won[k] = r; /* the first match in file order wins its class */
            break;
        }
    }
    const gt_rule *bought_rule = won[K_BOUGHT], *important = won[K_IMPORTANT],
                  *allow = won[K_ALLOW], *block = won[K_BLOCK];
    sort_products(d);
    const gt_rule *win = bought_rule ? bought_rule : important ? important : allow ? allow : block;
    if (win && win->action != A_ALLOW) {
        d->rule = win;
        d->bought = win == bought_rule;
        d->action = win->action == A_REDIRECT ? GT_DECIDE_REDIRECT : GT_DECIDE_BLOCK;
        d->resp = (gt_resp_kind)win->resp;
        return; /* answered locally: rewrites are moot */
    }
    bool changed = nrw && apply_rewrites(rs, sc, &x, rws, nrw, d);
    if (win) {
        d->action = GT_DECIDE_ALLOW;
        d->rule = win;
        d->overridden = block;
    } else if (changed) {
        d->action = GT_DECIDE_REWRITE;
        d->rule = d->rewrite_rule;
    }
}

const char *gt_decide_action_name(gt_decide_action a)
{
    switch (a) {
    case GT_DECIDE_ALLOW:
        return "allow";
    case GT_DECIDE_REWRITE:
        return "rewrite";
    case GT_DECIDE_BLOCK:
        return "block";
    case GT_DECIDE_REDIRECT:
        return "redirect";
    default:
        return "pass";
    }
}

size_t gt_rules_explain_rule(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rule *r,
                             const gt_rules_request *rq, char *out, size_t cap)
{
    reqctx x;
    ctx_init(&x, rq);
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < r->nconds && o + 1 < cap; i++) {
        const rule_cond *c = &r->conds[i];
        gt_slice seen = GT_S("");
        bool raw = cond_raw(rs, sc, c, &x, &seen);
        bool ok = raw != c->neg;
        int shown = (int)(seen.len > 120 ? 120 : seen.len);
        int n = snprintf(out + o, cap - o, "  %-4s %s   [%s%.*s%s]\n", ok ? "yes" : "no",
                         c->text,
                         c->kind == C_PORT   ? "port"
                         : c->kind == C_TYPE ? "type "
                         : c->kind == C_PARTY ? "party "
                         : c->kind == C_METHOD ? "method "
                                               : "",
                         shown, seen.p ? seen.p : "", seen.len > 120 ? "..." : "");
        if (n < 0)
            break;
        o += (size_t)n < cap - o ? (size_t)n : cap - o - 1;
    }
    if (r->nconds == 0 && cap > 1) {
        int n = snprintf(out, cap, "  (no conditions: matches every request)\n");
        o = n > 0 ? (size_t)n : 0;
    }
    return o;
}

size_t gt_rules_filter_cookies(const gt_decision *d, gt_slice value, char *out)
{
    size_t o = 0;
    gt_slice rest = value, part;
    while (gt_slice_next(&rest, ';', &part)) {
        gt_slice t = gt_slice_trim(part);
        if (!t.len)
            continue;
        const char *eq = memchr(t.p, '=', t.len);
        gt_slice nm = eq ? gt_slice_make(t.p, (size_t)(eq - t.p)) : t;
        bool drop = false;
        for (size_t i = 0; i < d->nhdr_ops && !drop; i++)
            if (d->hdr_ops[i].kind == GT_HDR_REMOVE_COOKIE) {
                const gt_hdr_op *op = &d->hdr_ops[i];
                if (op->cookie_re) {
                    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
                    drop = md && pcre2_match(op->cookie_re, (PCRE2_SPTR)(nm.p ? nm.p : ""),
                                             nm.len, 0, 0, md, NULL) > 0;
                    pcre2_match_data_free(md);
                } else {
                    drop = gt_slice_eq(op->name, nm);
                }
            }
        if (drop)
            continue;
        if (o) {
            out[o++] = ';';
            out[o++] = ' ';
        }
        memcpy(out + o, t.p, t.len);
        o += t.len;
    }
    return o;
}

gt_slice gt_rules_referer_origin(gt_slice referer)
{
    gt_slice h = gt_rules_url_host(referer);
    if (!h.len)
        return GT_S("");
    /* scheme://host[:port]: up to the end of the authority (a Referer never carries
     * userinfo, RFC 9110 §10.1.3) */
    const char *p = h.p + h.len;
    const char *end = referer.p + referer.len;
    if (p < end && *p == ']')
        p++;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    return gt_slice_make(referer.p, (size_t)(p - referer.p));
}

void gt_rules_request_complete(const gt_psl *psl, gt_rules_request *rq)
{
    gt_reqview v;
    memset(&v, 0, sizeof(v));
    v.host = rq->host;
    v.referer = rq->source;
    v.path = rq->path;
    v.method = rq->method;
    if (rq->party == GT_PARTY_UNKNOWN)
        rq->party = gt_rules_party_of(psl, &v);
}
