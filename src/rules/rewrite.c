/* Rewrites of forwarded requests: query parameters removed by name, glob or regex, header
 * edits, cookie removal, Referer trimmed to its origin. Pure: the new path goes to the
 * scratch's output area, header edits into the decision for the proxy to apply. */
#include <string.h>

#include "internal.h"

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
                if (w->glob ? gt_rules_glob_match(w->name, name)
                            : (w->name_len == name.len &&
                               gt_slice_caseeq(name, gt_slice_make(w->name, w->name_len))))
                    return rws[i];
            } else if (w->kind == RW_PARAM_RE) {
                rule_cond c = {.re = w->re, .jit = w->jit};
                if (gt_rules_re_match(rs, sc, &c, name, 0) > 0)
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
bool gt_rules_apply_rewrites(const gt_ruleset *rs, gt_rules_scratch *sc, reqctx *x,
                           const gt_rule *const *rws, size_t nrw, gt_decision *d)
{
    const gt_rules_request *rq = x->rq;
    bool changed = false;
    const gt_rule *first_change = NULL;
    /* query parameters */
    if (x->query.len) {
        char *p = gt_rules_out_take(sc, rq->path.len);
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
