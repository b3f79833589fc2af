/* Option parsing shared by every command: `-c FILE`, `-o KEY=VALUE` (repeatable), then
 * positional arguments. Owns the arrays in gt_cli_opts until gt_cli_opts_free. */
#include <glob.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gretel/lists.h"
#include "gretel/util.h"

int gt_cli_parse(int argc, char **argv, gt_cli_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->ov = gt_xcalloc((size_t)argc + 1, sizeof(*o->ov));
    o->args = gt_xcalloc((size_t)argc + 1, sizeof(*o->args));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "gretel: %s needs a FILE\n", a);
                return 2;
            }
            o->conf_file = argv[++i];
        } else if (strcmp(a, "-o") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "gretel: -o needs KEY=VALUE\n");
                return 2;
            }
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                fprintf(stderr, "gretel: -o %s: expected KEY=VALUE\n", kv);
                return 2;
            }
            o->ov[o->nov].key = kv;
            o->ov[o->nov].key_len = (size_t)(eq - kv);
            o->ov[o->nov].value = eq + 1;
            o->nov++;
        } else {
            o->args[o->nargs++] = argv[i];
        }
    }
    return 0;
}

void gt_cli_opts_free(gt_cli_opts *o)
{
    gt_free(&o->ov);
    gt_free(&o->args);
}

int gt_cli_load_config(const gt_cli_opts *o, gt_config **out, gt_diags *diags)
{
    return gt_config_load(out, o->conf_file, o->ov, o->nov, diags);
}

int gt_cli_load_rules(const gt_config *cfg, const char *const *extra, size_t nextra,
                      const gt_psl *psl, bool lint, gt_ruleset **out, gt_diags *diags)
{
    size_t n = (cfg ? cfg->rules.n : 0) + nextra;
    const char **files = gt_xcalloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; cfg && i < cfg->rules.n; i++)
        files[k++] = cfg->rules.v[i];
    for (size_t i = 0; i < nextra; i++)
        files[k++] = extra[i];
    gt_rules_source src = {
        .files = files,
        .nfiles = k,
        .groups = cfg ? (const char *const *)cfg->rule_groups.v : NULL,
        .ngroups = cfg ? cfg->rule_groups.n : 0,
        .lint = lint,
        .no_index = getenv("GRETEL_RULES_NO_INDEX") && strcmp(getenv("GRETEL_RULES_NO_INDEX"), "1") == 0,
    };
    int rv = gt_ruleset_load(out, &src, psl, diags);
    free(files);
    return rv;
}


/* Splits scheme://[user@]host[:port]/path?query#fragment into the request's parts. The
 * fragment never reaches a proxy, so it is dropped. Returns false for what no browser
 * would send through a proxy. */
static bool split_url(gt_slice url, gt_rules_request *rq, gt_cli_url_parts *up)
{
    const char *colon = url.len ? memchr(url.p, ':', url.len) : NULL;
    if (!colon || colon - url.p > 5 || (size_t)(colon - url.p) + 3 > url.len || colon[1] != '/' ||
        colon[2] != '/')
        return false;
    size_t sl = (size_t)(colon - url.p);
    for (size_t i = 0; i < sl; i++)
        up->scheme[i] = gt_ascii_lower(url.p[i]);
    up->scheme[sl] = 0;
    if (strcmp(up->scheme, "http") && strcmp(up->scheme, "https") && strcmp(up->scheme, "ws") &&
        strcmp(up->scheme, "wss"))
        return false;
    gt_slice host = gt_rules_url_host(url);
    if (!host.len || host.len >= sizeof(up->host))
        return false;
    for (size_t i = 0; i < host.len; i++)
        up->host[i] = gt_ascii_lower(host.p[i]);
    up->host[host.len] = 0;
    const char *p = colon + 3, *end = url.p + url.len;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    /* port: after the last ':' of the authority, unless it is inside an IPv6 literal */
    const char *auth_end = p, *q = p;
    rq->port = 0;
    while (q > colon + 3 && q[-1] != ':' && q[-1] != ']' && q[-1] != '@')
        q--;
    if (q > colon + 3 && q[-1] == ':') {
        uint64_t port;
        if (gt_parse_u64(gt_slice_make(q, (size_t)(auth_end - q)), 65535, &port) == 0)
            rq->port = (uint16_t)port;
    }
    const char *hash = memchr(p, '#', (size_t)(end - p));
    if (hash)
        end = hash;
    rq->scheme = gt_slice_cstr(up->scheme);
    rq->host = gt_slice_make(up->host, host.len);
    rq->path = (p < end && *p == '/') ? gt_slice_make(p, (size_t)(end - p)) : GT_S("/");
    if (p < end && *p == '?') {
        /* "http://a?x" has the path "/?x"; explain shows it as the proxy would forward it */
        rq->path = gt_slice_make(p, (size_t)(end - p));
    }
    return true;
}

int gt_cli_build_request(gt_slice url, gt_slice source, gt_slice type, gt_slice method,
                         const gt_psl *psl, gt_rules_request *rq, gt_cli_url_parts *up, const char **why)
{
    memset(rq, 0, sizeof(*rq));
    if (!split_url(url, rq, up)) {
        *why = "not an http(s) or ws(s) URL";
        return -1;
    }
    rq->method = method.len ? method : GT_S("GET");
    /* a CONNECT (an HTTPS request without interception) shows only its host */
    rq->host_only = gt_slice_caseeq(rq->method, GT_S("CONNECT"));
    rq->source = source;
    if (type.len) {
        int t = gt_rules_type_parse(type);
        if (t < 0) {
            *why = "unknown request type";
            return -1;
        }
        rq->type = (gt_reqtype)t;
    } else {
        gt_reqview v;
        memset(&v, 0, sizeof(v));
        v.path = rq->path;
        v.method = rq->method;
        rq->type = gt_rules_type_of(&v);
    }
    if (source.len) {
        up->fields[0].name = GT_S("Referer");
        up->fields[0].value = source;
        rq->fields = up->fields;
        rq->nfields = 1;
    }
    gt_rules_request_complete(psl, rq);
    return 0;
}


int gt_cli_load_shop_rules(gt_config *cfg, const gt_psl *psl, gt_ruleset **out)
{
    /* the same files with the `shops` group on (the proxy keeps it off: its product rules
     * describe shop pages, they decide nothing about requests) */
    gt_config_strlist_append(&cfg->rule_groups, "+shops");
    gt_diags d;
    gt_diags_init(&d);
    int rv = gt_cli_load_rules(cfg, NULL, 0, psl, false, out, &d);
    gt_diags_free(&d);
    cfg->rule_groups.n--;
    free(cfg->rule_groups.v[cfg->rule_groups.n]);
    if (rv < 0)
        *out = NULL;
    return rv;
}

int gt_cli_load_lists(const gt_config *cfg, bool create_store, struct gt_abp_set **out,
                      gt_diags *diags, bool *from_cache)
{
    *out = NULL;
    *from_cache = false;
    if (cfg->lists.n == 0)
        return 0;
    char **files = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cfg->lists.n; i++) {
        glob_t g;
        if (glob(cfg->lists.v[i], GLOB_NOCHECK, NULL, &g) != 0) {
            gt_diags_add(diags, 0, cfg->lists.v[i], 0, 0, "cannot expand pattern");
            continue;
        }
        for (size_t k = 0; k < g.gl_pathc; k++) {
            files = gt_xrealloc(files, (n + 1) * sizeof(*files));
            files[n++] = gt_xstrdup(g.gl_pathv[k]);
        }
        globfree(&g);
    }
    size_t before = diags->errors;
    /* the compiled cache lives in the store (created by `run`, used by `explain` only when
     * it exists): a restart with unchanged lists skips parsing and indexing */
    char cache[4200];
    struct stat st;
    bool store_ok = stat(cfg->store, &st) == 0 ||
                    (create_store && gt_mkdir_private(cfg->store) == 0);
    snprintf(cache, sizeof(cache), "%s/lists.cache", cfg->store);
    gt_abp_set_load_cached(out, (const char *const *)files, n, store_ok ? cache : NULL, diags,
                           from_cache);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    if (diags->errors > before) {
        gt_abp_set_free(*out);
        *out = NULL;
        return GT_EINVAL;
    }
    return 0;
}
