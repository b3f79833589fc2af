/* The decision: gathers candidate rules from the host and token indexes (plus the few
 * rules filed nowhere), checks each one's conditions, extracts product keys, and applies
 * the documented precedence (docs/RULES.md): bought > important block/redirect > allow >
 * block/redirect; rewrites apply to whatever is forwarded. Reads the immutable ruleset
 * and writes only the caller's scratch and decision. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "gretel/products.h"
#include "internal.h"

#define MAX_EXTRACT_MATCHES 64


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

void gt_rules_ensure(char **buf, size_t *cap, size_t need)
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
char *gt_rules_scratch_take(gt_rules_scratch *sc, size_t n)
{
    return gt_rules_out_take(sc, n);
}

char *gt_rules_out_take(gt_rules_scratch *sc, size_t n)
{
    if (sc->out_len + n > sc->out_cap)
        return NULL;
    char *p = sc->out + sc->out_len;
    sc->out_len += n;
    return p;
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
    if (r->scope == SCOPE_HOST) /* the request is the product page itself */
        return rs->psl ? gt_rules_registrable_domain(rs->psl, x->rq->host, out, cap) : 0;
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
        host = gt_rules_ctx_source_host(x);
    if (!host.len || !rs->psl)
        return 0;
    return gt_rules_registrable_domain(rs->psl, host, out, cap);
}

static void add_product(gt_rules_scratch *sc, gt_decision *d, const gt_rule *r, gt_slice scope,
                        gt_slice id, gt_bought_fn bought, void *barg)
{
    if (d->nproducts == GT_DECISION_MAX_PRODUCTS || id.len > 256)
        return;
    /* the canonical key (docs/PRODUCT-KEYS.md): one product, one key, whatever the pixel
     * wrote; an id that is not valid in its namespace (a bad GTIN) names no product */
    char key[520];
    const char *why;
    size_t n = gt_products_key(scope, id, key, sizeof(key), &why);
    if (!n)
        return;
    for (size_t i = 0; i < d->nproducts; i++)
        if (gt_slice_eq(d->products[i].key, gt_slice_make(key, n))) {
            if (r->action == A_MARK_BOUGHT) /* named before by another rule: still a purchase */
                d->products[i].purchased = d->purchase = true;
            return;
        }
    char *p = gt_rules_out_take(sc, n);
    if (!p)
        return;
    memcpy(p, key, n);
    gt_product *pr = &d->products[d->nproducts++];
    pr->key = gt_slice_make(p, n);
    pr->rule = r;
    pr->purchased = r->action == A_MARK_BOUGHT;
    pr->alias = r->alias;
    d->purchase = d->purchase || pr->purchased;
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
        gt_slice s = gt_rules_ctx_subject(c, x, sc, &fi);
        if (fi != (size_t)-1 && gt_rules_re_match(rs, sc, c, s, 0) > 0)
            page_any = copy_group(sc, s, "page", rule_page, sizeof(rule_page));
    }
    for (size_t i = 0; i < r->nconds; i++) {
        const rule_cond *c = &r->conds[i];
        if (!c->id_group)
            continue;
        size_t fi = 0;
        gt_slice s = gt_rules_ctx_subject(c, x, sc, &fi);
        if (fi == (size_t)-1)
            continue;
        size_t start = 0;
        for (int m = 0; m < MAX_EXTRACT_MATCHES && start <= s.len; m++) {
            if (gt_rules_re_match(rs, sc, c, s, start) <= 0)
                break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
            size_t mend = ov[1];
            char idbuf[4096], pagebuf[2048], scope[256];
            gt_slice id = copy_group(sc, s, "id", idbuf, sizeof(idbuf));
            gt_slice page = c->page_group ? copy_group(sc, s, "page", pagebuf, sizeof(pagebuf))
                                          : page_any;
            size_t sl = scope_of(rs, r, x, page, scope, sizeof(scope));
            if (id.len && sl) {
                gt_rules_ensure(&sc->tmp, &sc->tmp_cap, (r->ndecoders + 1) * id.len + 16);
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
    d->list_file = NULL;
    d->list_line = 0;
    d->overridden = NULL;
    d->resp = GT_RESP_DEFAULT;
    d->bought = false;
    d->purchase = false;
    d->path_changed = false;
    d->new_path = GT_S("");
    d->rewrite_rule = NULL;
    d->nhdr_ops = d->nproducts = d->nlogs = 0;
    d->candidates = 0;
    /* room for the rules' new path, the products' keys, and one more path for the lists'
     * $removeparam (gt_rules_scratch_take) */
    sc->out_len = 0;
    gt_rules_ensure(&sc->out, &sc->out_cap,
                    2 * rq->path.len + 1 + GT_DECISION_MAX_PRODUCTS * 520);
    if (!rs || rs->nrules == 0)
        return;
    reqctx x;
    gt_rules_ctx_init(&x, rq);
    gt_rules_gather(rs, sc, rq, &x);
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
            if (!gt_rules_rule_matches(rs, sc, r, &x))
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
            if (k == K_LOG) { /* log rules log; product rules only named their product */
                if (r->action == A_LOG && d->nlogs < GT_DECISION_MAX_LOGS)
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
    bool changed = nrw && gt_rules_apply_rewrites(rs, sc, &x, rws, nrw, d);
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
