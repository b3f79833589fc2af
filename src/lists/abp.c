/* Adblock Plus network filters: one line into a gt_abp_filter, and what one filter means
 * for one request (the semantics of https://help.adblockplus.org/hc/en-us/articles/
 * 360062733293 and uBlock Origin's extensions that EasyList uses). The matcher walks the
 * pattern itself: `*` any run of bytes, `^` a separator (anything but a letter, a digit
 * or one of `_-.%`, or the end of the URL), `||` the start of the host or of one of its
 * labels, `|` the start or end of the URL. Regex filters go to PCRE2. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "gretel/lists.h"
#include "gretel/util.h"

static const char *const kind_names[GT_ABP_KIND_COUNT] = {
    "network", "empty", "comment", "cosmetic", "scriptlet", "html", "csp", "popup",
    "unsupported", "invalid"};

const char *gt_abp_kind_name(gt_abp_kind k)
{
    return k < GT_ABP_KIND_COUNT ? kind_names[k] : "?";
}

/* Where the options start: the last '$' (a '$' inside a pattern is rare; "$$" is HTML
 * filtering, sorted out before). A line that is a whole /regex/ has none: its '$' are the
 * regex's own. */
static size_t options_at(gt_slice s)
{
    if (s.len >= 2 && s.p[0] == '/' && s.p[s.len - 1] == '/')
        return s.len;
    for (size_t i = s.len; i-- > 0;)
        if (s.p[i] == '$')
            return i;
    return s.len;
}

static bool type_bit(gt_slice name, uint32_t *bit)
{
    /* names ABP lists use beyond gt_rules_type_parse's */
    static const struct {
        const char *n;
        gt_reqtype t;
    } extra[] = {{"frame", GT_TYPE_SUBDOCUMENT}, {"css", GT_TYPE_STYLESHEET},
                 {"doc", GT_TYPE_DOCUMENT}, {"object-subrequest", GT_TYPE_OBJECT},
                 {"webrtc", GT_TYPE_OTHER}};
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
        if (gt_slice_caseeq(name, gt_slice_cstr(extra[i].n))) {
            *bit = 1u << extra[i].t;
            return true;
        }
    int t = gt_rules_type_parse(name);
    if (t < 0)
        return false;
    *bit = 1u << t;
    return true;
}

#define ALL_TYPES ((1u << GT_TYPE_COUNT) - 1)

static gt_abp_kind parse_options(gt_slice opts, gt_abp_filter *f, const char **why)
{
    uint32_t inc = 0, exc = 0;
    gt_slice rest = opts, o;
    while (gt_slice_next(&rest, ',', &o)) {
        o = gt_slice_trim(o);
        if (o.len == 0)
            continue;
        bool neg = o.p[0] == '~';
        gt_slice name = neg ? gt_slice_make(o.p + 1, o.len - 1) : o, value = GT_S("");
        const char *eq = memchr(name.p, '=', name.len);
        if (eq) {
            value = gt_slice_make(eq + 1, (size_t)(name.p + name.len - eq - 1));
            name = gt_slice_make(name.p, (size_t)(eq - name.p));
        }
        uint32_t bit;
        if (gt_slice_caseeq(name, GT_S("third-party")) || gt_slice_caseeq(name, GT_S("3p")))
            f->flags |= neg ? GT_ABP_FIRST_PARTY : GT_ABP_THIRD_PARTY;
        else if (gt_slice_caseeq(name, GT_S("first-party")) || gt_slice_caseeq(name, GT_S("1p")))
            f->flags |= neg ? GT_ABP_THIRD_PARTY : GT_ABP_FIRST_PARTY;
        else if (gt_slice_caseeq(name, GT_S("match-case")))
            f->flags |= GT_ABP_MATCH_CASE;
        else if (gt_slice_caseeq(name, GT_S("important")))
            f->flags |= GT_ABP_IMPORTANT;
        else if (gt_slice_caseeq(name, GT_S("badfilter")))
            f->flags |= GT_ABP_BADFILTER;
        else if (gt_slice_caseeq(name, GT_S("all")))
            inc |= ALL_TYPES;
        else if (gt_slice_caseeq(name, GT_S("domain")) || gt_slice_caseeq(name, GT_S("from"))) {
            f->domains = value; /* walked at match time: lists carry hundreds per filter */
        } else if (gt_slice_caseeq(name, GT_S("redirect")) ||
                   gt_slice_caseeq(name, GT_S("redirect-rule"))) {
            f->redirect = value;
        } else if (gt_slice_caseeq(name, GT_S("rewrite")) && value.len > 13 &&
                   memcmp(value.p, "abp-resource:", 13) == 0) {
            /* Adblock Plus's form of a redirect to a built-in resource */
            f->redirect = gt_slice_make(value.p + 13, value.len - 13);
        } else if (gt_slice_caseeq(name, GT_S("method"))) {
            f->methods = value;
        } else if (gt_slice_caseeq(name, GT_S("removeparam"))) {
            f->removeparam = value;
            f->flags |= GT_ABP_REMOVEPARAM;
        } else if (gt_slice_caseeq(name, GT_S("csp"))) {
            return GT_ABP_CSP;
        } else if (gt_slice_caseeq(name, GT_S("popup")) || gt_slice_caseeq(name, GT_S("popunder"))) {
            if (!neg)
                return GT_ABP_POPUP;
        } else if (gt_slice_caseeq(name, GT_S("document"))) {
            if (neg)
                exc |= 1u << GT_TYPE_DOCUMENT;
            else
                inc |= 1u << GT_TYPE_DOCUMENT;
        } else if (type_bit(name, &bit)) {
            if (neg)
                exc |= bit;
            else
                inc |= bit;
        } else if (gt_slice_caseeq(name, GT_S("elemhide")) || gt_slice_caseeq(name, GT_S("ehide")) ||
                   gt_slice_caseeq(name, GT_S("generichide")) ||
                   gt_slice_caseeq(name, GT_S("ghide")) ||
                   gt_slice_caseeq(name, GT_S("specifichide")) ||
                   gt_slice_caseeq(name, GT_S("shide"))) {
            return GT_ABP_COSMETIC; /* exceptions for element hiding: nothing for a proxy */
        } else {
            *why = "option not honoured by a proxy (yet)";
            return GT_ABP_UNSUPPORTED;
        }
    }
    /* Without a type option a filter applies to every type, documents included: the
     * engines these lists are written for block a tracker's page itself too. */
    if (inc || exc)
        f->types = (inc ? inc : ALL_TYPES) & ~exc;
    return GT_ABP_NETWORK;
}

static bool contains(gt_slice s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.p + i, needle, n) == 0)
            return true;
    return false;
}

gt_abp_kind gt_abp_parse(gt_slice line, gt_abp_filter *f, const char **why)
{
    memset(f, 0, sizeof(*f));
    *why = NULL;
    gt_slice s = gt_slice_trim(line);
    if (s.len == 0)
        return GT_ABP_EMPTY;
    if (s.p[0] == '!' || (s.p[0] == '[' && s.p[s.len - 1] == ']'))
        return GT_ABP_COMMENT;
    if (contains(s, "##+js(") || contains(s, "#%#") || contains(s, "#@%#"))
        return GT_ABP_SCRIPTLET;
    if (contains(s, "$$") || contains(s, "#$?#") || contains(s, "##^"))
        return GT_ABP_HTML;
    if (contains(s, "##") || contains(s, "#@#") || contains(s, "#?#") || contains(s, "#$#") ||
        contains(s, "#@?#") || contains(s, "#@$#"))
        return GT_ABP_COSMETIC;
    if (s.len >= 2 && s.p[0] == '@' && s.p[1] == '@') {
        f->flags |= GT_ABP_EXCEPTION;
        s = gt_slice_make(s.p + 2, s.len - 2);
    }
    size_t oa = options_at(s);
    gt_slice pat = gt_slice_make(s.p, oa);
    if (oa < s.len) {
        gt_abp_kind k = parse_options(gt_slice_make(s.p + oa + 1, s.len - oa - 1), f, why);
        if (k != GT_ABP_NETWORK)
            return k;
    }
    if (pat.len >= 2 && pat.p[0] == '/' && pat.p[pat.len - 1] == '/') {
        int code;
        PCRE2_SIZE off;
        uint32_t opt = (f->flags & GT_ABP_MATCH_CASE) ? 0 : PCRE2_CASELESS;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat.p + 1, pat.len - 2, opt, &code, &off, NULL);
        if (!re) {
            *why = "invalid regex";
            return GT_ABP_INVALID;
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        f->re = re;
        f->flags |= GT_ABP_REGEX;
        f->pattern = pat;
        return GT_ABP_NETWORK;
    }
    if (pat.len >= 2 && pat.p[0] == '|' && pat.p[1] == '|') {
        f->flags |= GT_ABP_HOST_ANCHOR;
        pat = gt_slice_make(pat.p + 2, pat.len - 2);
    } else if (pat.len >= 1 && pat.p[0] == '|') {
        f->flags |= GT_ABP_LEFT_ANCHOR;
        pat = gt_slice_make(pat.p + 1, pat.len - 1);
    }
    if (pat.len >= 1 && pat.p[pat.len - 1] == '|') {
        f->flags |= GT_ABP_RIGHT_ANCHOR;
        pat.len--;
    }
    /* a leading or trailing '*' only widens what is already a substring match */
    while (pat.len && pat.p[0] == '*' && !(f->flags & (GT_ABP_HOST_ANCHOR | GT_ABP_LEFT_ANCHOR))) {
        pat.p++;
        pat.len--;
    }
    while (pat.len && pat.p[pat.len - 1] == '*' && !(f->flags & GT_ABP_RIGHT_ANCHOR))
        pat.len--;
    f->pattern = pat;
    if (pat.len == 0 && f->domains.len == 0 && !(f->flags & GT_ABP_BADFILTER) && !f->types &&
        !(f->flags & GT_ABP_REMOVEPARAM)) {
        *why = "a filter that would match every request";
        return GT_ABP_INVALID;
    }
    return GT_ABP_NETWORK;
}

void gt_abp_filter_free(gt_abp_filter *f)
{
    if (f->re)
        pcre2_code_free(f->re);
    f->re = NULL;
}

/* --- matching --- */

static inline char lc(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static inline bool is_sep(unsigned char c)
{
    return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-' || c == '.' || c == '%');
}

/* Does pattern p match url u starting exactly at u[0]? right: it must end at the end of u.
 * Backtracking on '*', bounded: each '*' resumes from the furthest point tried. */
static bool match_here(const char *p, size_t pn, const char *u, size_t un, bool right,
                       bool icase)
{
    size_t pi = 0, ui = 0, star_p = (size_t)-1, star_u = 0;
    for (;;) {
        if (pi < pn && p[pi] == '*') {
            star_p = ++pi;
            star_u = ui;
            continue;
        }
        if (pi == pn) {
            if (!right || ui == un)
                return true;
        } else if (p[pi] == '^') {
            if (ui == un) {
                /* ^ also matches the end: only if the rest of the pattern can be empty */
                size_t k = pi + 1;
                while (k < pn && (p[k] == '*' || p[k] == '^'))
                    k++;
                if (k == pn)
                    return true;
            } else if (is_sep((unsigned char)u[ui])) {
                pi++;
                ui++;
                continue;
            }
        } else if (ui < un && (icase ? lc(u[ui]) == lc(p[pi]) : u[ui] == p[pi])) {
            pi++;
            ui++;
            continue;
        }
        if (star_p == (size_t)-1 || star_u >= un)
            return false;
        pi = star_p;
        ui = ++star_u;
    }
}

static bool host_in(gt_slice host, gt_slice d);

static bool pattern_match(const gt_abp_filter *f, const gt_abp_request *rq)
{
    if (f->flags & GT_ABP_HOST_ONLY)
        return host_in(rq->host, f->pattern);
    const char *p = f->pattern.p;
    size_t pn = f->pattern.len;
    const char *u = rq->url.p ? rq->url.p : "";
    size_t un = rq->url.len;
    bool icase = !(f->flags & GT_ABP_MATCH_CASE);
    bool right = f->flags & GT_ABP_RIGHT_ANCHOR;
    if (f->flags & GT_ABP_REGEX) {
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int r = pcre2_match(f->re, (PCRE2_SPTR)u, un, 0, 0, md, NULL);
        pcre2_match_data_free(md);
        return r >= 0;
    }
    if (f->flags & GT_ABP_LEFT_ANCHOR) {
        if (match_here(p, pn, u, un, right, icase))
            return true;
        /* A WebSocket is requested as http(s) and upgraded; the reference engines let
         * "|ws://" and "|wss://" filters match it whatever the scheme (the corpus has
         * https:// WebSocket URLs matched by |ws://): compare after "://". */
        if (rq->type == GT_TYPE_WEBSOCKET && pn && un) {
            const char *ps = memmem(p, pn, "://", 3), *us = memmem(u, un, "://", 3);
            if (ps && us && (size_t)(ps - p) <= 3 && (size_t)(us - u) <= 5 &&
                (p[0] == 'w' || p[0] == 'W'))
                return match_here(ps + 3, pn - (size_t)(ps + 3 - p), us + 3,
                                  un - (size_t)(us + 3 - u), right, icase);
        }
        return false;
    }
    if (f->flags & GT_ABP_HOST_ANCHOR) {
        /* at the host's start or after any '.' inside it */
        if (rq->host.len == 0 || rq->host.p < u || rq->host.p + rq->host.len > u + un)
            return false;
        size_t hs = (size_t)(rq->host.p - u), he = hs + rq->host.len;
        for (size_t i = hs; i < he; i++)
            if ((i == hs || u[i - 1] == '.') && match_here(p, pn, u + i, un - i, right, icase))
                return true;
        return false;
    }
    if (pn == 0)
        return true;
    /* unanchored: only where the pattern's first byte occurs (memchr over the lower-cased
     * URL when the caller has one) rather than at every position */
    const char *s = icase && rq->lurl.p && rq->lurl.len == un ? rq->lurl.p : u;
    char first = icase ? lc(p[0]) : p[0];
    if (first != '*' && first != '^') {
        for (const char *q = s; q < s + un;) {
            q = memchr(q, first, (size_t)(s + un - q));
            if (!q)
                return false;
            size_t i = (size_t)(q - s);
            if (match_here(p, pn, u + i, un - i, right, icase))
                return true;
            q++;
        }
        return false;
    }
    for (size_t i = 0; i < un; i++)
        if (match_here(p, pn, u + i, un - i, right, icase))
            return true;
    return false;
}

/* host is d, or a subdomain of it */
static bool host_in(gt_slice host, gt_slice d)
{
    if (host.len < d.len)
        return false;
    const char *tail = host.p + host.len - d.len;
    for (size_t i = 0; i < d.len; i++)
        if (lc(tail[i]) != lc(d.p[i]))
            return false;
    return host.len == d.len || tail[-1] == '.';
}

static bool domains_ok(const gt_abp_filter *f, gt_slice source)
{
    if (f->domains.len == 0)
        return true;
    bool any_include = false, included = false, excluded = false;
    size_t best_inc = 0, best_exc = 0;
    gt_slice rest = f->domains, d;
    while (gt_slice_next(&rest, '|', &d)) {
        if (d.len == 0)
            continue;
        bool neg = d.p[0] == '~';
        if (neg)
            d = gt_slice_make(d.p + 1, d.len - 1);
        else
            any_include = true;
        if (!source.len || !host_in(source, d))
            continue;
        /* the most specific entry wins (a.com|~b.a.com) */
        if (neg && d.len > best_exc) {
            excluded = true;
            best_exc = d.len;
        } else if (!neg && d.len > best_inc) {
            included = true;
            best_inc = d.len;
        }
    }
    if (excluded && (!included || best_exc >= best_inc))
        return false;
    return any_include ? included : true;
}

/* method=: "post|get" includes, "~get" excludes (case-insensitive). */
static bool methods_ok(const gt_abp_filter *f, gt_slice method)
{
    if (f->methods.len == 0)
        return true;
    bool any_include = false, hit = false;
    gt_slice rest = f->methods, m;
    while (gt_slice_next(&rest, '|', &m)) {
        bool neg = m.len && m.p[0] == '~';
        if (neg)
            m = gt_slice_make(m.p + 1, m.len - 1);
        else
            any_include = true;
        if (gt_slice_caseeq(m, method)) {
            if (neg)
                return false;
            hit = true;
        }
    }
    return any_include ? hit : true;
}

bool gt_abp_match(const gt_abp_filter *f, gt_abp_request *rq)
{
    if (!methods_ok(f, rq->method))
        return false;
    if (f->types && !(f->types & (1u << rq->type)))
        return false;
    /* the source's domains before the party: the party may need two registrable-domain
     * look-ups, the domains only comparisons */
    if (!domains_ok(f, rq->source_host))
        return false;
    if ((f->flags & (GT_ABP_THIRD_PARTY | GT_ABP_FIRST_PARTY)) && rq->party == GT_PARTY_UNKNOWN &&
        rq->psl) {
        /* only now: most requests never meet a filter that asks */
        gt_reqview v = {.host = rq->host, .referer = rq->source_url};
        rq->party = gt_rules_party_of(rq->psl, &v);
    }
    if ((f->flags & GT_ABP_THIRD_PARTY) && rq->party != GT_PARTY_THIRD)
        return false;
    if ((f->flags & GT_ABP_FIRST_PARTY) && rq->party != GT_PARTY_FIRST)
        return false;
    return pattern_match(f, rq);
}

size_t gt_hosts_line(gt_slice line, char *out, size_t cap)
{
    gt_slice s = gt_slice_trim(line);
    const char *hash = memchr(s.p, '#', s.len);
    if (hash)
        s = gt_slice_trim(gt_slice_make(s.p, (size_t)(hash - s.p)));
    if (s.len == 0)
        return 0;
    /* "ADDR host [host...]" (hosts file) or "host" (domain list); only the first name */
    gt_slice rest = s, a, b;
    gt_slice_next(&rest, ' ', &a);
    a = gt_slice_trim(a);
    rest = gt_slice_trim(rest);
    gt_slice host = a;
    if (rest.len) {
        if (!(gt_slice_eq(a, GT_S("0.0.0.0")) || gt_slice_eq(a, GT_S("127.0.0.1")) ||
              gt_slice_eq(a, GT_S("::")) || gt_slice_eq(a, GT_S("::1"))))
            return 0;
        gt_slice_next(&rest, ' ', &b);
        host = gt_slice_trim(b);
    }
    if (host.len == 0 || host.len >= cap || gt_slice_eq(host, GT_S("localhost")) ||
        gt_slice_eq(host, GT_S("0.0.0.0")) || gt_slice_eq(host, GT_S("localhost.localdomain")) ||
        gt_slice_eq(host, GT_S("broadcasthost")) || gt_slice_eq(host, GT_S("local")))
        return 0;
    for (size_t i = 0; i < host.len; i++) {
        char c = lc(host.p[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              c == '_'))
            return 0;
        out[i] = c;
    }
    out[host.len] = 0;
    return host.len;
}
