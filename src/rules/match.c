/* Whether a rule's conditions hold for a request: the request context derived lazily
 * (path/query split, source host, URL, party), each condition kind, and the explanation of a
 * rule condition by condition. Reads the ruleset and the request; writes only scratch. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

void gt_rules_ctx_init(reqctx *c, const gt_rules_request *rq)
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
gt_slice gt_rules_ctx_source_host(reqctx *c)
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
    gt_rules_ensure(&sc->url, &sc->url_cap, scheme.len + rq->host.len + rq->path.len + 16);
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


bool gt_rules_glob_match(const char *pat, gt_slice s)
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
        if (gt_rules_glob_match(name, k))
            return true;
    }
    return false;
}

/* The subject a regex condition is matched against. */
gt_slice gt_rules_ctx_subject(const rule_cond *c, reqctx *x, gt_rules_scratch *sc, size_t *field_i)
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
        *seen = gt_rules_ctx_source_host(x);
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
            gt_slice s = gt_rules_ctx_subject(c, x, sc, &fi);
            if (fi == (size_t)-1)
                return false; /* header absent */
            *seen = s;
            if ((!c->lit_len || (s.len >= c->lit_len && memmem(s.p, s.len, c->lit, c->lit_len))) &&
                gt_rules_re_match(rs, sc, c, s, 0) > 0)
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

bool gt_rules_rule_matches(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rule *r,
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

size_t gt_rules_explain_rule(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rule *r,
                             const gt_rules_request *rq, char *out, size_t cap)
{
    reqctx x;
    gt_rules_ctx_init(&x, rq);
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
