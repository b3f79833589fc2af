/* Rule file parser (language in docs/RULES.md): one rule per line, `include`, `group`.
 * Turns each line into a compiled gt_rule appended to the ruleset, or into FILE:LINE:COL
 * diagnostics. Reads only the files it is given; never touches sockets or the store. */
#include <errno.h>
#include <stdarg.h>
#include <glob.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#define MAX_INCLUDE_DEPTH 8
#define MAX_LINE 65536
#define MAX_TOKENS 64

typedef struct {
    const char *file;
    unsigned line;
    gt_diags *d;
    bool failed;
} ctx;

__attribute__((format(printf, 3, 4))) static void err(ctx *c, unsigned col, const char *fmt,
                                                      ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gt_diags_add(c->d, 0, c->file, c->line, col, "%s", msg);
    c->failed = true;
}

__attribute__((format(printf, 3, 4))) static void warn(ctx *c, unsigned col, const char *fmt,
                                                       ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gt_diags_add(c->d, 1, c->file, c->line, col, "%s", msg);
}

static char *lower_dup(const char *p, size_t n)
{
    char *s = gt_xstrndup(p, n);
    for (char *q = s; *q; q++)
        *q = gt_ascii_lower(*q);
    return s;
}

/* Splits a comma list into lower-case names; empty members are an error. */
static bool split_names(ctx *c, unsigned col, const char *v, char ***out, size_t *n)
{
    size_t cap = 1;
    for (const char *q = v; *q; q++)
        cap += *q == ',';
    *out = gt_xcalloc(cap, sizeof(char *));
    *n = 0;
    gt_slice rest = gt_slice_cstr(v), part;
    while (gt_slice_next(&rest, ',', &part)) {
        if (part.len == 0) {
            err(c, col, "empty name in list '%s'", v);
            return false;
        }
        (*out)[(*n)++] = lower_dup(part.p, part.len);
    }
    return true;
}

static bool valid_domain(const char *s)
{
    if (!*s || *s == '.' || s[strlen(s) - 1] == '.')
        return false;
    for (const char *q = s; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-' || *q == '.' ||
              *q == '_' || *q == ':' || *q == '*'))
            return false;
    return !strstr(s, "..");
}

static const struct {
    const char *name;
    gt_resp_kind kind;
} resp_names[] = {
    {"403", GT_RESP_403},       {"204", GT_RESP_204},         {"js", GT_RESP_JS},
    {"css", GT_RESP_CSS},       {"json", GT_RESP_JSON},       {"html", GT_RESP_HTML},
    {"text", GT_RESP_TEXT},     {"gif", GT_RESP_GIF},         {"png", GT_RESP_PNG},
    {"noop.js", GT_RESP_JS},    {"noopjs", GT_RESP_JS},       {"noop.css", GT_RESP_CSS},
    {"noop.json", GT_RESP_JSON}, {"noop.html", GT_RESP_HTML}, {"noopframe", GT_RESP_HTML},
    {"noop.txt", GT_RESP_TEXT}, {"nooptext", GT_RESP_TEXT},   {"1x1.gif", GT_RESP_GIF},
    {"1x1-transparent.gif", GT_RESP_GIF}, {"2x2.png", GT_RESP_PNG},
    {"2x2-transparent.png", GT_RESP_PNG}, {"empty", GT_RESP_TEXT},
};

static int resp_parse(const char *v)
{
    for (size_t i = 0; i < sizeof(resp_names) / sizeof(resp_names[0]); i++)
        if (strcmp(v, resp_names[i].name) == 0)
            return (int)resp_names[i].kind;
    return -1;
}

static const struct {
    const char *name;
    uint8_t kind;
    bool regex, list;
} cond_keys[] = {
    {"domain", C_DOMAIN, false, true}, {"host", C_HOST, false, true},
    {"host", C_HOST_RE, true, false},  {"path", C_PATH_RE, true, false},
    {"query", C_QUERY_RE, true, false}, {"url", C_URL_RE, true, false},
    {"method", C_METHOD, false, true}, {"type", C_TYPE, false, true},
    {"party", C_PARTY, false, false},  {"source", C_SOURCE, false, true},
    {"source", C_SOURCE_RE, true, false}, {"body", C_BODY_RE, true, false},
    {"param", C_PARAM, false, true},   {"scheme", C_SCHEME, false, true},
    {"port", C_PORT, false, true},
};

static bool add_regex(ctx *c, rule_cond *rc, const char *v, unsigned vcol)
{
    rc->re = gt_rules_compile_re(v, strlen(v), c->file, c->line, vcol, c->d, &rc->jit);
    if (!rc->re) {
        c->failed = true;
        return false;
    }
    int n = pcre2_substring_number_from_name(rc->re, (PCRE2_SPTR) "id");
    rc->id_group = n > 0 ? n : 0;
    n = pcre2_substring_number_from_name(rc->re, (PCRE2_SPTR) "page");
    rc->page_group = n > 0 ? n : 0;
    /* a literal of 3+ bytes is worth a memmem (SIMD) before the regex engine scans */
    char lit[256];
    size_t ll = gt_rules_required_literal(v, strlen(v), lit, sizeof(lit));
    if (ll >= 3) {
        rc->lit = gt_xstrndup(lit, ll);
        rc->lit_len = ll;
    }
    if (gt_rules_re_risky(v, strlen(v)))
        warn(c, vcol,
             "regex '%s' nests unbounded quantifiers and may backtrack catastrophically "
             "(PCRE2 match limits stop it, then the condition counts as not matching)",
             v);
    return true;
}

/* Parses one condition token `[!]key=value`, `[!]key~regex`, or `header:NAME~regex`. */
static bool parse_cond(ctx *c, gt_rule *r, const char *tok, unsigned col)
{
    rule_cond rc;
    memset(&rc, 0, sizeof(rc));
    rc.col = col;
    const char *t = tok;
    if (*t == '!') {
        rc.neg = true;
        t++;
    }
    const char *op = t + strcspn(t, "=~");
    if (!*op) {
        err(c, col, "unknown option '%s'", tok);
        return false;
    }
    bool regex = *op == '~';
    size_t klen = (size_t)(op - t);
    const char *v = op + 1;
    unsigned vcol = col + (unsigned)(v - tok);
    if (!*v) {
        err(c, vcol, "'%s' needs a value", tok);
        return false;
    }
    rc.text = gt_xstrdup(tok);
    bool ok = true;
    if (klen > 7 && strncmp(t, "header:", 7) == 0) {
        if (!regex) {
            err(c, col, "'%s': header conditions take a regex: header:NAME~REGEX", tok);
            ok = false;
            goto out;
        }
        rc.kind = C_HEADER_RE;
        rc.hdr = lower_dup(t + 7, klen - 7);
        ok = add_regex(c, &rc, v, vcol);
        goto out;
    }
    size_t i = 0, nk = sizeof(cond_keys) / sizeof(cond_keys[0]);
    bool known_key = false;
    for (; i < nk; i++) {
        if (strlen(cond_keys[i].name) != klen || strncmp(cond_keys[i].name, t, klen) != 0)
            continue;
        known_key = true;
        if (cond_keys[i].regex == regex)
            break;
    }
    if (i == nk) {
        if (known_key)
            err(c, col, "'%s': this condition takes %s", tok,
                regex ? "'=' (a value), not '~'" : "'~' (a regex), not '='");
        else
            err(c, col, "unknown condition or option '%s'", tok);
        ok = false;
        goto out;
    }
    rc.kind = cond_keys[i].kind;
    if (regex) {
        ok = add_regex(c, &rc, v, vcol);
        goto out;
    }
    if (!split_names(c, vcol, v, &rc.names, &rc.nnames)) {
        ok = false;
        goto out;
    }
    switch (rc.kind) {
    case C_DOMAIN:
    case C_HOST:
    case C_SOURCE:
        for (size_t k = 0; k < rc.nnames; k++)
            if (!valid_domain(rc.names[k])) {
                err(c, vcol, "'%s' is not a host name", rc.names[k]);
                ok = false;
            }
        break;
    case C_METHOD:
        for (size_t k = 0; k < rc.nnames; k++)
            for (char *q = rc.names[k]; *q; q++)
                *q = (char)(*q - ((*q >= 'a' && *q <= 'z') ? 32 : 0));
        break;
    case C_TYPE:
        for (size_t k = 0; k < rc.nnames; k++) {
            int ty = gt_rules_type_parse(gt_slice_cstr(rc.names[k]));
            if (ty < 0) {
                err(c, vcol, "unknown request type '%s'", rc.names[k]);
                ok = false;
            } else {
                rc.typemask |= 1u << ty;
            }
        }
        break;
    case C_PARTY:
        if (strcmp(rc.names[0], "first") == 0 || strcmp(rc.names[0], "1p") == 0)
            rc.party = GT_PARTY_FIRST;
        else if (strcmp(rc.names[0], "third") == 0 || strcmp(rc.names[0], "3p") == 0)
            rc.party = GT_PARTY_THIRD;
        else {
            err(c, vcol, "party must be 'first' or 'third', not '%s'", v);
            ok = false;
        }
        break;
    case C_PORT:
        rc.ports = gt_xcalloc(rc.nnames, sizeof(uint16_t));
        for (size_t k = 0; k < rc.nnames; k++) {
            uint64_t p;
            if (gt_parse_u64(gt_slice_cstr(rc.names[k]), 65535, &p) < 0 || p == 0) {
                err(c, vcol, "'%s' is not a port", rc.names[k]);
                ok = false;
            } else {
                rc.ports[k] = (uint16_t)p;
            }
        }
        break;
    default:
        break;
    }
out:
    r->conds = gt_xrealloc(r->conds, (r->nconds + 1) * sizeof(*r->conds));
    r->conds[r->nconds++] = rc;
    return ok;
}

static bool add_rw(gt_rule *r, uint8_t kind, const char *name, const char *value,
                   pcre2_code *re)
{
    r->rws = gt_xrealloc(r->rws, (r->nrws + 1) * sizeof(*r->rws));
    rule_rw *w = &r->rws[r->nrws++];
    w->kind = kind;
    w->name = name ? gt_xstrdup(name) : NULL;
    w->name_len = name ? strlen(name) : 0;
    w->glob = name && strchr(name, '*');
    w->value = value ? gt_xstrdup(value) : NULL;
    w->re = re;
    w->jit = re && pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    return true;
}

static bool header_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 32 || ch >= 127 || strchr("()<>@,;:\\\"/[]?={}", ch))
            return false;
    }
    return true;
}

/* Options of actions: respond=, to=, important, rewrite ops, decode=, scope=. Returns 1 if
 * tok was an option, 0 if it is not (then it is a condition), -1 on error. */
static int parse_option(ctx *c, gt_rule *r, const char *tok, unsigned col)
{
    const char *eq = strchr(tok, '=');
    const char *tilde = strchr(tok, '~');
    size_t klen = eq ? (size_t)(eq - tok) : strlen(tok);
    if (tilde && (!eq || tilde < eq))
        klen = (size_t)(tilde - tok);
    const char *v = tok + klen + (tok[klen] ? 1 : 0);
    unsigned vcol = col + (unsigned)(v - tok);
#define KEY(k) (klen == sizeof(k) - 1 && strncmp(tok, k, klen) == 0)
    bool is_re = tok[klen] == '~';
    if (KEY("alias") && !tok[klen]) {
        r->alias = true;
        return 1;
    }
    if (KEY("important") && !tok[klen]) {
        if (r->action != A_BLOCK && r->action != A_REDIRECT && r->action != A_BLOCK_IF_BOUGHT) {
            err(c, col, "'important' applies to block and redirect rules only");
            return -1;
        }
        r->important = true;
        return 1;
    }
    if (KEY("trim-referer") && !tok[klen]) {
        if (r->action != A_REWRITE)
            goto wrong_action;
        add_rw(r, RW_TRIM_REFERER, NULL, NULL, NULL);
        return 1;
    }
    if (!tok[klen])
        return 0;
    if (KEY("respond") || KEY("to")) {
        bool redirect = KEY("to");
        if (is_re || !*v)
            goto need_value;
        if (redirect ? r->action != A_REDIRECT
                     : (r->action != A_BLOCK && r->action != A_BLOCK_IF_BOUGHT)) {
            err(c, col, "'%s' does not apply to this action", tok);
            return -1;
        }
        int k = resp_parse(v);
        if (k < 0) {
            err(c, vcol, "unknown response '%s' (403, 204, js, css, json, html, text, gif, png, "
                         "or a resource such as noop.js, 1x1.gif)", v);
            return -1;
        }
        r->resp = (uint8_t)k;
        return 1;
    }
    if (KEY("remove-param") || KEY("remove-header") || KEY("set-header") ||
        KEY("remove-cookie")) {
        if (r->action != A_REWRITE)
            goto wrong_action;
        if (!*v)
            goto need_value;
        if (is_re) {
            if (!(KEY("remove-param") || KEY("remove-cookie"))) {
                err(c, col, "'%s' takes '=', not '~'", tok);
                return -1;
            }
            bool jit;
            pcre2_code *re = gt_rules_compile_re(v, strlen(v), c->file, c->line, vcol, c->d, &jit);
            if (!re) {
                c->failed = true;
                return -1;
            }
            add_rw(r, KEY("remove-param") ? RW_PARAM_RE : RW_COOKIE_RE, v, NULL, re);
            return 1;
        }
        if (KEY("set-header")) {
            const char *colon = strchr(v, ':');
            if (!colon || !header_name_ok(v, (size_t)(colon - v))) {
                err(c, vcol, "set-header needs NAME:VALUE, got '%s'", v);
                return -1;
            }
            char *name = gt_xstrndup(v, (size_t)(colon - v));
            add_rw(r, RW_HDR_SET, name, colon + 1, NULL);
            free(name);
            return 1;
        }
        gt_slice rest = gt_slice_cstr(v), part;
        while (gt_slice_next(&rest, ',', &part)) {
            char *name = gt_xslicedup(part);
            if (!part.len || (KEY("remove-header") && !header_name_ok(part.p, part.len))) {
                err(c, vcol, "bad name '%s' in '%s'", name, tok);
                free(name);
                return -1;
            }
            if (KEY("remove-header")) {
                for (char *q = name; *q; q++)
                    *q = gt_ascii_lower(*q);
                if (strcmp(name, "host") == 0) {
                    err(c, vcol, "the Host header cannot be removed");
                    free(name);
                    return -1;
                }
            }
            add_rw(r, KEY("remove-param")    ? RW_PARAM
                      : KEY("remove-cookie") ? RW_COOKIE
                                             : RW_HDR_REMOVE,
                   name, NULL, NULL);
            free(name);
        }
        return 1;
    }
    if (KEY("decode")) {
        if (is_re || !*v)
            goto need_value;
        gt_slice rest = gt_slice_cstr(v), part;
        while (gt_slice_next(&rest, ',', &part)) {
            rule_decoder dec = {0};
            if (gt_slice_eq(part, GT_S("percent")))
                dec.kind = D_PERCENT;
            else if (gt_slice_eq(part, GT_S("percent*")))
                dec.kind = D_PERCENT_ALL;
            else if (gt_slice_eq(part, GT_S("form")))
                dec.kind = D_FORM;
            else if (gt_slice_eq(part, GT_S("json")))
                dec.kind = D_JSON;
            else if (gt_slice_eq(part, GT_S("base64url")) || gt_slice_eq(part, GT_S("base64")))
                dec.kind = D_BASE64;
            else if (gt_slice_eq(part, GT_S("unquote")))
                dec.kind = D_UNQUOTE;
            else if (gt_slice_eq(part, GT_S("unbracket")))
                dec.kind = D_UNBRACKET;
            else if (gt_slice_eq(part, GT_S("lower")))
                dec.kind = D_LOWER;
            else if (gt_slice_eq(part, GT_S("upper")))
                dec.kind = D_UPPER;
            else if (part.len > 6 && memcmp(part.p, "split:", 6) == 0) {
                dec.kind = D_SPLIT;
                dec.arg = gt_xstrndup(part.p + 6, part.len - 6);
            } else if (gt_slice_eq(part, GT_S("split"))) {
                /* `split` alone splits on commas; a comma cannot follow `split:` because
                 * commas separate decoders */
                dec.kind = D_SPLIT;
                dec.arg = gt_xstrdup(",");
            } else {
                char *bad = gt_xslicedup(part);
                err(c, vcol, "unknown decoder '%s' (percent, percent*, form, json, split, "
                             "split:SEP, base64url, unquote, unbracket, lower, upper)", bad);
                free(bad);
                return -1;
            }
            if (dec.kind == D_SPLIT && strcmp(dec.arg, "comma") == 0) {
                free(dec.arg);
                dec.arg = gt_xstrdup(",");
            }
            r->decoders = gt_xrealloc(r->decoders, (r->ndecoders + 1) * sizeof(*r->decoders));
            r->decoders[r->ndecoders++] = dec;
        }
        return 1;
    }
    if (KEY("scope")) {
        if (is_re || !*v)
            goto need_value;
        gt_free(&r->scope_arg); /* a later scope= replaces an earlier one */
        if (strcmp(v, "page") == 0) {
            r->scope = SCOPE_PAGE;
        } else if (strcmp(v, "host") == 0) {
            r->scope = SCOPE_HOST;
        } else if (strncmp(v, "site:", 5) == 0 && valid_domain(v + 5)) {
            r->scope = SCOPE_SITE;
            r->scope_arg = lower_dup(v + 5, strlen(v + 5));
        } else if (strncmp(v, "ns:", 3) == 0 && v[3]) {
            r->scope = SCOPE_NS;
            r->scope_arg = lower_dup(v + 3, strlen(v + 3));
        } else {
            err(c, vcol, "scope must be 'page', 'host', 'site:DOMAIN' or 'ns:NAME', not '%s'", v);
            return -1;
        }
        return 1;
    }
    return 0;
need_value:
    err(c, col, "'%s' needs a value: %s=VALUE", tok, tok);
    return -1;
wrong_action:
    err(c, col, "'%s' is a rewrite option; it does not apply to this action", tok);
    return -1;
#undef KEY
}

static const struct {
    const char *name;
    uint8_t action;
} actions[] = {
    {"block", A_BLOCK},   {"allow", A_ALLOW}, {"rewrite", A_REWRITE},
    {"redirect", A_REDIRECT}, {"log", A_LOG},  {"block-if-bought", A_BLOCK_IF_BOUGHT},
    {"product", A_PRODUCT},   {"mark-bought", A_MARK_BOUGHT},
};

void gt_rules_rule_free(gt_rule *r)
{
    for (size_t i = 0; i < r->nconds; i++) {
        rule_cond *c = &r->conds[i];
        free(c->text);
        for (size_t k = 0; k < c->nnames; k++)
            free(c->names[k]);
        free(c->names);
        free(c->ports);
        free(c->hdr);
        free(c->lit);
        pcre2_code_free(c->re);
    }
    free(r->conds);
    for (size_t i = 0; i < r->nrws; i++) {
        free(r->rws[i].name);
        free(r->rws[i].value);
        pcre2_code_free(r->rws[i].re);
    }
    free(r->rws);
    for (size_t i = 0; i < r->ndecoders; i++)
        free(r->decoders[i].arg);
    free(r->decoders);
    free(r->scope_arg);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

static bool group_enabled(const gt_rules_source *src, const char *name, bool dflt)
{
    bool on = dflt;
    for (size_t i = 0; src && i < src->ngroups; i++) {
        const char *g = src->groups[i];
        bool want = true;
        if (*g == '-' || *g == '+') {
            want = *g == '+';
            g++;
        }
        if (strcmp(g, name) == 0)
            on = want;
    }
    return on;
}

/* Parses one rule line (already split into tokens). */
static void parse_rule(ctx *c, gt_ruleset *rs, char **tok, unsigned *cols, size_t n,
                       const char *text, const char *group, bool enabled)
{
    gt_rule r;
    memset(&r, 0, sizeof(r));
    size_t a = 0, na = sizeof(actions) / sizeof(actions[0]);
    for (; a < na; a++)
        if (strcmp(tok[0], actions[a].name) == 0)
            break;
    if (a == na) {
        err(c, cols[0], "unknown action '%s' (block, allow, rewrite, redirect, log, "
                        "block-if-bought, product, mark-bought)", tok[0]);
        return;
    }
    r.action = actions[a].action;
    bool ok = true;
    for (size_t i = 1; i < n; i++) {
        int o = parse_option(c, &r, tok[i], cols[i]);
        if (o < 0)
            ok = false;
        else if (o == 0 && !parse_cond(c, &r, tok[i], cols[i]))
            ok = false;
    }
    if (!ok)
        goto drop;
    if (r.action == A_REDIRECT && r.resp == GT_RESP_DEFAULT) {
        err(c, cols[0], "redirect needs to=RESOURCE (noop.js, noop.css, noop.json, noop.html, "
                        "noop.txt, 1x1.gif, 2x2.png)");
        goto drop;
    }
    if (r.action == A_REWRITE && r.nrws == 0) {
        err(c, cols[0], "rewrite needs at least one of remove-param, remove-header, set-header, "
                        "remove-cookie, trim-referer");
        goto drop;
    }
    for (size_t i = 0; i < r.nconds; i++) {
        if (r.conds[i].id_group) {
            if (r.conds[i].neg) {
                err(c, r.conds[i].col, "a negated condition cannot capture product ids");
                goto drop;
            }
            r.has_extract = true;
        }
        if (r.conds[i].kind == C_BODY_RE)
            rs->wants_body = rs->wants_body || enabled;
    }
    if ((r.action == A_BLOCK_IF_BOUGHT || r.action == A_PRODUCT ||
         r.action == A_MARK_BOUGHT) &&
        !r.has_extract) {
        err(c, cols[0], "%s needs a regex condition with a (?<id>...) capture", tok[0]);
        goto drop;
    }
    if ((r.ndecoders || r.scope) && !r.has_extract) {
        err(c, cols[0], "decode= and scope= need a (?<id>...) capture in a regex condition");
        goto drop;
    }
    if (r.alias && !r.has_extract) {
        err(c, cols[0], "'alias' needs a (?<id>...) capture in a regex condition");
        goto drop;
    }
    if (r.has_extract && r.scope == SCOPE_NONE)
        r.scope = SCOPE_PAGE;
    if (r.nconds == 0 && r.action != A_REWRITE)
        warn(c, cols[0], "rule has no condition and matches every request");
    if (!enabled)
        goto drop;
    r.file = c->file;
    r.line = c->line;
    r.text = gt_xstrdup(text);
    r.group = group;
    if (rs->nrules == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 64;
        rs->rules = gt_xrealloc(rs->rules, rs->cap * sizeof(*rs->rules));
    }
    r.idx = (unsigned)rs->nrules;
    rs->rules[rs->nrules++] = r;
    return;
drop:
    gt_rules_rule_free(&r);
}

static const char *intern_file(gt_ruleset *rs, const char *path)
{
    for (size_t i = 0; i < rs->nfiles; i++)
        if (strcmp(rs->files[i], path) == 0)
            return rs->files[i];
    rs->files = gt_xrealloc(rs->files, (rs->nfiles + 1) * sizeof(char *));
    rs->files[rs->nfiles] = gt_xstrdup(path);
    return rs->files[rs->nfiles++];
}

static void watch(gt_ruleset *rs, const char *path, const struct stat *st)
{
    rs->watched = gt_xrealloc(rs->watched, (rs->nwatched + 1) * sizeof(*rs->watched));
    watched_file *w = &rs->watched[rs->nwatched++];
    w->path = gt_xstrdup(path);
    w->dev = st->st_dev;
    w->ino = st->st_ino;
    w->size = st->st_size;
    w->mtime = st->st_mtim;
}

static void do_include(ctx *c, gt_ruleset *rs, const char *arg, unsigned col, unsigned depth,
                       const gt_rules_source *src)
{
    char pattern[4096];
    if (arg[0] == '/') {
        snprintf(pattern, sizeof(pattern), "%s", arg);
    } else {
        char *copy = gt_xstrdup(c->file);
        snprintf(pattern, sizeof(pattern), "%s/%s", dirname(copy), arg);
        free(copy);
    }
    if (depth + 1 > MAX_INCLUDE_DEPTH) {
        err(c, col, "include nested more than 8 deep (a loop?) at '%s'", arg);
        return;
    }
    glob_t g;
    int r = glob(pattern, 0, NULL, &g);
    if (r == GLOB_NOMATCH) {
        err(c, col, "include '%s': no such file", arg);
        return;
    }
    if (r != 0) {
        err(c, col, "include '%s': cannot expand", arg);
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++)
        if (gt_rules_parse_file(rs, g.gl_pathv[i], c->d, depth + 1, src) < 0)
            c->failed = true;
    globfree(&g);
}

int gt_rules_parse_file(gt_ruleset *rs, const char *path, gt_diags *d, unsigned depth,
                        const gt_rules_source *src)
{
    ctx c = {.file = intern_file(rs, path), .line = 0, .d = d, .failed = false};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    const char *group = NULL;
    bool group_on = true;
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f || fstat(fileno(f), &st) < 0) {
        gt_diags_add(d, 0, path, 0, 0, "cannot read rule file: %s", strerror(errno));
        if (f)
            fclose(f);
        return GT_EIO;
    }
    if (S_ISDIR(st.st_mode)) {
        gt_diags_add(d, 0, path, 0, 0, "is a directory (use DIR/*.rules)");
        fclose(f);
        return GT_EIO;
    }
    watch(rs, path, &st);
    while ((n = getline(&line, &cap, f)) >= 0) {
        c.line++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if ((size_t)n > MAX_LINE) {
            err(&c, 1, "line longer than 65536 bytes");
            continue;
        }
        if (memchr(line, 0, (size_t)n)) {
            err(&c, (unsigned)strlen(line) + 1, "NUL byte in line");
            continue;
        }
        /* tokens: runs of non-blank bytes; `#` starts a comment at a token's start */
        char *tok[MAX_TOKENS];
        unsigned cols[MAX_TOKENS];
        size_t nt = 0;
        char *p = line;
        char *text_start = NULL, *text_end = NULL;
        bool too_many = false;
        while (*p) {
            while (*p == ' ' || *p == '\t')
                p++;
            if (!*p || *p == '#')
                break;
            if (nt == MAX_TOKENS) {
                too_many = true;
                break;
            }
            if (!text_start)
                text_start = p;
            cols[nt] = (unsigned)(p - line) + 1;
            tok[nt++] = p;
            while (*p && *p != ' ' && *p != '\t')
                p++;
            text_end = p;
            if (*p)
                *p++ = 0;
        }
        if (too_many) {
            err(&c, cols[MAX_TOKENS - 1], "more than 64 tokens in one rule");
            continue;
        }
        if (nt == 0)
            continue;
        /* rebuild the rule text with single spaces for explain and X-Gretel logs */
        char *text = gt_xmalloc((size_t)(text_end - text_start) + 1);
        size_t tl = 0;
        for (size_t i = 0; i < nt; i++) {
            size_t l = strlen(tok[i]);
            if (i)
                text[tl++] = ' ';
            memcpy(text + tl, tok[i], l);
            tl += l;
        }
        text[tl] = 0;
        if (strcmp(tok[0], "include") == 0) {
            if (nt != 2)
                err(&c, cols[0], "include takes one file name or glob");
            else
                do_include(&c, rs, tok[1], cols[1], depth, src);
        } else if (strcmp(tok[0], "group") == 0) {
            if (nt < 2 || nt > 3 || (nt == 3 && strcmp(tok[2], "off") && strcmp(tok[2], "on"))) {
                err(&c, cols[0], "group takes a name and optionally 'on' or 'off'");
            } else {
                group = intern_file(rs, tok[1]); /* interned like file names: lives with rs */
                group_on = group_enabled(src, tok[1], !(nt == 3 && strcmp(tok[2], "off") == 0));
            }
        } else if (strcmp(tok[0], "end") == 0 && nt >= 2 && strcmp(tok[1], "group") == 0) {
            group = NULL;
            group_on = true;
        } else {
            parse_rule(&c, rs, tok, cols, nt, text, group, group_on);
        }
        free(text);
    }
    free(line);
    fclose(f);
    return c.failed ? GT_EINVAL : 0;
}
