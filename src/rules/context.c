/* Request context from a proxy's vantage point: type and party of a request, derived only
 * from what its head carries (a browser extension sees these directly; a proxy infers
 * them). Owns the public suffix list handle; everything else is pure and allocation-free. */
#include <arpa/inet.h>
#include <libpsl.h>
#include <stdlib.h>
#include <string.h>

#include "gretel/rules.h"
#include "gretel/util.h"

struct gt_psl {
    psl_ctx_t *loaded; /* from the system file, freed with us */
    const psl_ctx_t *use;
};

static const char *const type_names[GT_TYPE_COUNT] = {
    [GT_TYPE_OTHER] = "other",
    [GT_TYPE_DOCUMENT] = "document",
    [GT_TYPE_SUBDOCUMENT] = "subdocument",
    [GT_TYPE_SCRIPT] = "script",
    [GT_TYPE_IMAGE] = "image",
    [GT_TYPE_STYLESHEET] = "stylesheet",
    [GT_TYPE_XMLHTTPREQUEST] = "xmlhttprequest",
    [GT_TYPE_PING] = "ping",
    [GT_TYPE_MEDIA] = "media",
    [GT_TYPE_FONT] = "font",
    [GT_TYPE_WEBSOCKET] = "websocket",
    [GT_TYPE_OBJECT] = "object",
};

const char *gt_rules_type_name(gt_reqtype t)
{
    return (t >= 0 && t < GT_TYPE_COUNT) ? type_names[t] : "other";
}

typedef struct {
    const char *name;
    gt_reqtype type;
} name_map;

static int lookup(const name_map *m, size_t n, gt_slice key)
{
    for (size_t i = 0; i < n; i++)
        if (gt_slice_caseeq(key, gt_slice_cstr(m[i].name)))
            return (int)m[i].type;
    return -1;
}

int gt_rules_type_parse(gt_slice name)
{
    static const name_map aliases[] = {
        {"main_frame", GT_TYPE_DOCUMENT}, {"sub_frame", GT_TYPE_SUBDOCUMENT},
        {"xhr", GT_TYPE_XMLHTTPREQUEST},  {"fetch", GT_TYPE_XMLHTTPREQUEST},
        {"beacon", GT_TYPE_PING},         {"imageset", GT_TYPE_IMAGE},
    };
    for (int t = 0; t < GT_TYPE_COUNT; t++)
        if (gt_slice_caseeq(name, gt_slice_cstr(type_names[t])))
            return t;
    return lookup(aliases, sizeof(aliases) / sizeof(aliases[0]), name);
}

/* Sec-Fetch-Dest values (Fetch standard, "destination") other than "empty". */
static const name_map dests[] = {
    {"document", GT_TYPE_DOCUMENT},   {"iframe", GT_TYPE_SUBDOCUMENT},
    {"frame", GT_TYPE_SUBDOCUMENT},   {"fencedframe", GT_TYPE_SUBDOCUMENT},
    {"script", GT_TYPE_SCRIPT},       {"worker", GT_TYPE_SCRIPT},
    {"sharedworker", GT_TYPE_SCRIPT}, {"serviceworker", GT_TYPE_SCRIPT},
    {"audioworklet", GT_TYPE_SCRIPT}, {"paintworklet", GT_TYPE_SCRIPT},
    {"image", GT_TYPE_IMAGE},         {"style", GT_TYPE_STYLESHEET},
    {"font", GT_TYPE_FONT},           {"audio", GT_TYPE_MEDIA},
    {"video", GT_TYPE_MEDIA},         {"track", GT_TYPE_MEDIA},
    {"object", GT_TYPE_OBJECT},       {"embed", GT_TYPE_OBJECT},
    {"websocket", GT_TYPE_WEBSOCKET}, {"report", GT_TYPE_OTHER},
    {"manifest", GT_TYPE_OTHER},      {"xslt", GT_TYPE_OTHER},
};

/* The first media type of an Accept value ("text/html,application/xhtml+xml;q=0.9"). */
static gt_slice first_media_type(gt_slice accept)
{
    gt_slice rest = accept, item = {0};
    gt_slice_next(&rest, ',', &item);
    const char *semi = item.len ? memchr(item.p, ';', item.len) : NULL;
    if (semi)
        item.len = (size_t)(semi - item.p);
    return gt_slice_trim(item);
}

static bool starts_with(gt_slice s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && gt_slice_caseeq(gt_slice_make(s.p, n), gt_slice_make(prefix, n));
}

static int type_from_accept(gt_slice accept)
{
    gt_slice m = first_media_type(accept);
    if (m.len == 0 || gt_slice_eq(m, GT_S("*/*")))
        return -1; /* says nothing */
    if (gt_slice_caseeq(m, GT_S("text/html")) || gt_slice_caseeq(m, GT_S("application/xhtml+xml")))
        return GT_TYPE_DOCUMENT;
    if (starts_with(m, "image/"))
        return GT_TYPE_IMAGE;
    if (gt_slice_caseeq(m, GT_S("text/css")))
        return GT_TYPE_STYLESHEET;
    if (gt_slice_caseeq(m, GT_S("application/javascript")) ||
        gt_slice_caseeq(m, GT_S("text/javascript")))
        return GT_TYPE_SCRIPT;
    if (starts_with(m, "font/"))
        return GT_TYPE_FONT;
    if (starts_with(m, "video/") || starts_with(m, "audio/"))
        return GT_TYPE_MEDIA;
    if (gt_slice_caseeq(m, GT_S("application/json")) || gt_slice_caseeq(m, GT_S("text/plain")))
        return GT_TYPE_XMLHTTPREQUEST;
    return -1;
}

static int type_from_extension(gt_slice path)
{
    static const name_map ext[] = {
        {"js", GT_TYPE_SCRIPT},      {"mjs", GT_TYPE_SCRIPT},     {"css", GT_TYPE_STYLESHEET},
        {"png", GT_TYPE_IMAGE},      {"jpg", GT_TYPE_IMAGE},      {"jpeg", GT_TYPE_IMAGE},
        {"gif", GT_TYPE_IMAGE},      {"webp", GT_TYPE_IMAGE},     {"avif", GT_TYPE_IMAGE},
        {"svg", GT_TYPE_IMAGE},      {"ico", GT_TYPE_IMAGE},      {"bmp", GT_TYPE_IMAGE},
        {"woff", GT_TYPE_FONT},      {"woff2", GT_TYPE_FONT},     {"ttf", GT_TYPE_FONT},
        {"otf", GT_TYPE_FONT},       {"eot", GT_TYPE_FONT},       {"mp4", GT_TYPE_MEDIA},
        {"webm", GT_TYPE_MEDIA},     {"mp3", GT_TYPE_MEDIA},      {"ogg", GT_TYPE_MEDIA},
        {"m4a", GT_TYPE_MEDIA},      {"m3u8", GT_TYPE_MEDIA},     {"html", GT_TYPE_DOCUMENT},
        {"htm", GT_TYPE_DOCUMENT},   {"json", GT_TYPE_XMLHTTPREQUEST},
        {"swf", GT_TYPE_OBJECT},
    };
    /* the last path segment before any query */
    size_t end = path.len;
    const char *q = path.len ? memchr(path.p, '?', path.len) : NULL;
    if (q)
        end = (size_t)(q - path.p);
    size_t slash = end;
    while (slash > 0 && path.p[slash - 1] != '/')
        slash--;
    size_t dot = end;
    while (dot > slash && path.p[dot - 1] != '.')
        dot--;
    if (dot == slash)
        return -1; /* no extension */
    return lookup(ext, sizeof(ext) / sizeof(ext[0]), gt_slice_make(path.p + dot, end - dot));
}

gt_reqtype gt_rules_type_of(const gt_reqview *v)
{
    if (v->upgrade.len && gt_slice_caseeq(v->upgrade, GT_S("websocket")))
        return GT_TYPE_WEBSOCKET;
    if (v->sec_fetch_dest.len) {
        if (gt_slice_caseeq(v->sec_fetch_dest, GT_S("empty"))) {
            /* fetch(), XHR and beacons all say "empty": <a ping> carries Ping-To and a
             * text/ping body; navigator.sendBeacon is a no-cors POST. */
            if (v->ping_to.len || starts_with(v->content_type, "text/ping"))
                return GT_TYPE_PING;
            if (gt_slice_caseeq(v->sec_fetch_mode, GT_S("no-cors")) &&
                gt_slice_caseeq(v->method, GT_S("POST")))
                return GT_TYPE_PING;
            return GT_TYPE_XMLHTTPREQUEST;
        }
        int t = lookup(dests, sizeof(dests) / sizeof(dests[0]), v->sec_fetch_dest);
        if (t >= 0)
            return (gt_reqtype)t;
    }
    if (v->ping_to.len || starts_with(v->content_type, "text/ping"))
        return GT_TYPE_PING;
    int t = type_from_accept(v->accept);
    if (t >= 0)
        return (gt_reqtype)t;
    t = type_from_extension(v->path);
    return t >= 0 ? (gt_reqtype)t : GT_TYPE_OTHER;
}

gt_psl *gt_rules_psl_load(void)
{
    gt_psl *p = gt_xcalloc(1, sizeof(*p));
    /* The system list (package publicsuffix) is updated with the distribution; the
     * built-in copy is as old as the libpsl build. */
    p->loaded = psl_latest(NULL);
    p->use = p->loaded ? p->loaded : psl_builtin();
    if (!p->use) {
        free(p);
        return NULL;
    }
    return p;
}

void gt_rules_psl_free(gt_psl *p)
{
    if (!p)
        return;
    psl_free(p->loaded);
    free(p);
}

size_t gt_rules_registrable_domain(const gt_psl *p, gt_slice host, char *out, size_t cap)
{
    if (host.len == 0 || host.len >= cap)
        return 0;
    memcpy(out, host.p, host.len);
    out[host.len] = '\0';
    for (size_t i = 0; i < host.len; i++)
        out[i] = gt_ascii_lower(out[i]);
    if (out[host.len - 1] == '.')
        out[--host.len] = '\0';
    unsigned char tmp[16];
    if (inet_pton(AF_INET, out, tmp) == 1 || strchr(out, ':'))
        return host.len; /* IP literals are their own "domain" */
    const char *rd = psl_registrable_domain(p->use, out);
    if (!rd)
        return host.len; /* a public suffix itself, or a single label */
    size_t n = strlen(rd);
    memmove(out, rd, n + 1);
    return n;
}

gt_slice gt_rules_url_host(gt_slice url)
{
    if (url.len == 0)
        return GT_S("");
    const char *p = url.p, *end = url.p + url.len;
    const char *sep = url.len >= 3 ? memchr(url.p, ':', url.len) : NULL;
    if (!sep || end - sep < 3 || sep[1] != '/' || sep[2] != '/')
        return GT_S("");
    p = sep + 3;
    const char *a = p;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    gt_slice auth = gt_slice_make(a, (size_t)(p - a));
    const char *at = NULL;
    for (size_t i = 0; i < auth.len; i++)
        if (auth.p[i] == '@')
            at = auth.p + i;
    if (at)
        auth = gt_slice_make(at + 1, (size_t)(auth.p + auth.len - at - 1));
    if (auth.len && auth.p[0] == '[') {
        const char *rb = memchr(auth.p, ']', auth.len);
        return rb ? gt_slice_make(auth.p + 1, (size_t)(rb - auth.p - 1)) : GT_S("");
    }
    const char *colon = memchr(auth.p, ':', auth.len);
    if (colon)
        auth.len = (size_t)(colon - auth.p);
    return auth;
}

static gt_slice trim_dot(gt_slice h)
{
    if (h.len && h.p[h.len - 1] == '.')
        h.len--;
    return h;
}

/* "b.example" of "a.b.example"; the host itself when it has fewer labels. */
static gt_slice last_two_labels(gt_slice h)
{
    size_t dots = 0;
    for (size_t i = h.len; i-- > 0;)
        if (h.p[i] == '.' && ++dots == 2)
            return gt_slice_make(h.p + i + 1, h.len - i - 1);
    return h;
}

gt_party gt_rules_party_of(const gt_psl *p, const gt_reqview *v)
{
    gt_slice site = v->sec_fetch_site;
    if (site.len) {
        if (gt_slice_caseeq(site, GT_S("cross-site")))
            return GT_PARTY_THIRD;
        if (gt_slice_caseeq(site, GT_S("same-site")) || gt_slice_caseeq(site, GT_S("same-origin")) ||
            gt_slice_caseeq(site, GT_S("none")))
            return GT_PARTY_FIRST;
    }
    gt_slice src = gt_rules_url_host(v->referer);
    if (src.len == 0 && v->origin.len && !gt_slice_eq(v->origin, GT_S("null")))
        src = gt_rules_url_host(v->origin);
    if (src.len == 0 || v->host.len == 0 || !p)
        return GT_PARTY_UNKNOWN;
    /* Without the suffix list when the answer is plain: the same host is one party;
     * hosts whose last two labels differ cannot share a registrable domain (it has two
     * labels at least and both hosts would end with it). Most requests stop here, before
     * two public-suffix look-ups. */
    gt_slice hs = trim_dot(src), hh = trim_dot(v->host);
    if (gt_slice_caseeq(hs, hh))
        return GT_PARTY_FIRST;
    gt_slice ts = last_two_labels(hs), th = last_two_labels(hh);
    if (!gt_slice_caseeq(ts, th))
        return GT_PARTY_THIRD;
    char a[256], b[256];
    size_t na = gt_rules_registrable_domain(p, src, a, sizeof(a));
    size_t nb = gt_rules_registrable_domain(p, v->host, b, sizeof(b));
    if (!na || !nb)
        return GT_PARTY_UNKNOWN;
    return (na == nb && memcmp(a, b, na) == 0) ? GT_PARTY_FIRST : GT_PARTY_THIRD;
}
