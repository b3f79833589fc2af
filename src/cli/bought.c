/* `gretel mark`, `unmark`, `bought [--json]`, `bought export [FILE]`, `bought import FILE`:
 * the bought-products store from the command line. The running proxy sees changes on its
 * next lookup (LMDB readers see each committed write). Never sends anything anywhere. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "gretel/store.h"

static int open_store(const gt_cli_opts *o, gt_store **st, gt_config **cfg)
{
    gt_diags d;
    gt_diags_init(&d);
    int code = 0;
    if (gt_cli_load_config(o, cfg, &d) < 0) {
        gt_diags_print(&d, stderr);
        code = 2;
    } else {
        char err[512];
        if (gt_store_open(st, (*cfg)->store, err, sizeof(err)) < 0) {
            fprintf(stderr, "gretel: %s\n", err);
            code = 1;
        }
    }
    gt_diags_free(&d);
    return code;
}

/* Takes "--name VALUE" options out of o->args; returns 2 on a missing value. */
static int take_opt(gt_cli_opts *o, const char *name, const char **val)
{
    for (size_t i = 0; i < o->nargs; i++)
        if (strcmp(o->args[i], name) == 0) {
            if (i + 1 >= o->nargs) {
                fprintf(stderr, "gretel: %s needs a value\n", name);
                return 2;
            }
            *val = o->args[i + 1];
            memmove(o->args + i, o->args + i + 2, (o->nargs - i - 2) * sizeof(char *));
            o->nargs -= 2;
            return 0;
        }
    return 0;
}

/* The product a shop page is about: the configured rules' `product` rules (shipped in
 * rules/shops.rules) run on the URL as a page load; the first key found (file order) is it. */
static int key_from_url(const gt_cli_opts *o, const char *url, char *key, size_t cap)
{
    gt_config *cfg = NULL;
    gt_ruleset *rs = NULL;
    gt_rules_scratch *sc = NULL;
    gt_psl *psl = gt_rules_psl_load();
    gt_diags d;
    gt_diags_init(&d);
    int code = 1;
    if (gt_cli_load_config(o, &cfg, &d) < 0) {
        gt_diags_print(&d, stderr);
        fprintf(stderr, "gretel mark: cannot load the configuration\n");
        code = 2;
        goto out;
    }
    /* the shop rules are a group the proxy leaves off: turned on here */
    gt_config_strlist_append(&cfg->rule_groups, "+shops");
    if (gt_cli_load_rules(cfg, NULL, 0, psl, false, &rs, &d) < 0) {
        gt_diags_print(&d, stderr);
        fprintf(stderr, "gretel mark: cannot load the configuration or rules\n");
        code = 2;
        goto out;
    }
    gt_rules_request rq;
    gt_cli_url_parts up;
    const char *why = NULL;
    if (gt_cli_build_request(gt_slice_cstr(url), GT_S(""), GT_S("document"), GT_S("GET"), psl,
                             &rq, &up, &why) < 0) {
        fprintf(stderr, "gretel mark: %s: %s\n", url, why);
        goto out;
    }
    sc = gt_rules_scratch_new();
    gt_decision dec;
    gt_rules_decide(rs, sc, &rq, NULL, NULL, &dec);
    if (dec.nproducts == 0) {
        fprintf(stderr,
                "gretel mark: no shop rule names the product of %s (rules/shops.rules knows "
                "Amazon, Shopify, WooCommerce, Magento, eBay, Etsy, Zalando, Otto and ?sku= "
                "style pages); give the key as SCOPE:ID instead\n",
                url);
        goto out;
    }
    snprintf(key, cap, "%.*s", (int)dec.products[0].key.len, dec.products[0].key.p);
    code = 0;
out:
    gt_rules_scratch_free(sc);
    gt_ruleset_release(rs);
    gt_config_free(cfg);
    gt_rules_psl_free(psl);
    gt_diags_free(&d);
    return code;
}

static bool looks_like_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

int gt_cmd_mark(int argc, char **argv)
{
    gt_cli_opts o;
    gt_store *st = NULL;
    gt_config *cfg = NULL;
    const char *label = "", *ttl = NULL;
    int code = gt_cli_parse(argc, argv, &o);
    if (code || (code = take_opt(&o, "--label", &label)) || (code = take_opt(&o, "--ttl", &ttl)))
        goto out;
    if (o.nargs != 1) {
        fprintf(stderr, "usage: gretel mark [-c FILE] [-o ...] KEY-OR-URL [--label TEXT] "
                        "[--ttl DAYS]\n");
        code = 2;
        goto out;
    }
    uint64_t days = 0;
    if (ttl && (gt_parse_u64(gt_slice_cstr(ttl), 36500, &days) < 0 || days == 0)) {
        fprintf(stderr, "gretel mark: --ttl takes a number of days (1..36500)\n");
        code = 2;
        goto out;
    }
    char err[512];
    char key[GT_STORE_KEY_MAX + 1];
    if (looks_like_url(o.args[0])) {
        if ((code = key_from_url(&o, o.args[0], key, sizeof(key))))
            goto out;
    } else if (!gt_store_canonical_key(gt_slice_cstr(o.args[0]), key, sizeof(key), err,
                                       sizeof(err))) {
        fprintf(stderr, "gretel mark: %s: %s\n", o.args[0], err);
        code = 1;
        goto out;
    }
    if ((code = open_store(&o, &st, &cfg)))
        goto out;
    if (gt_store_mark(st, gt_slice_cstr(key), gt_slice_cstr(label), GT_S("manual"),
                      (unsigned)days, err, sizeof(err)) < 0) {
        fprintf(stderr, "gretel mark: %s\n", err);
        code = 1;
        goto out;
    }
    if (days)
        printf("marked %s as bought (expires in %s days)\n", key, ttl);
    else
        printf("marked %s as bought\n", key);
out:
    gt_store_close(st);
    gt_config_free(cfg);
    gt_cli_opts_free(&o);
    return code;
}

int gt_cmd_unmark(int argc, char **argv)
{
    gt_cli_opts o;
    gt_store *st = NULL;
    gt_config *cfg = NULL;
    int code = gt_cli_parse(argc, argv, &o);
    if (code)
        goto out;
    if (o.nargs != 1) {
        fprintf(stderr, "usage: gretel unmark [-c FILE] [-o ...] KEY\n");
        code = 2;
        goto out;
    }
    if ((code = open_store(&o, &st, &cfg)))
        goto out;
    char err[512];
    if (gt_store_unmark(st, gt_slice_cstr(o.args[0]), err, sizeof(err)) < 0) {
        fprintf(stderr, "gretel unmark: %s\n", err);
        code = 1;
        goto out;
    }
    printf("unmarked %s\n", o.args[0]);
out:
    gt_store_close(st);
    gt_config_free(cfg);
    gt_cli_opts_free(&o);
    return code;
}

static void iso(uint64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *rec_json(const gt_store_rec *r)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I}", "key", r->key, "label", r->label, "source",
                     r->source, "added", (json_int_t)r->added, "expires",
                     (json_int_t)r->expires);
}

static bool add_json(void *arg, const gt_store_rec *r)
{
    json_array_append_new(arg, rec_json(r));
    return true;
}

static bool print_row(void *arg, const gt_store_rec *r)
{
    (void)arg;
    char a[32], e[32] = "never";
    iso(r->added, a, sizeof(a));
    if (r->expires)
        iso(r->expires, e, sizeof(e));
    printf("%s\t%s\t%s\t%s\t%s\n", r->key, r->label[0] ? r->label : "-", r->source, a, e);
    return true;
}

static int do_export(gt_store *st, const char *path)
{
    json_t *arr = json_array();
    if (gt_store_foreach(st, add_json, arr) < 0) {
        json_decref(arr);
        fprintf(stderr, "gretel bought export: cannot read the store\n");
        return 1;
    }
    json_t *doc = json_pack("{s:s, s:i, s:o}", "format", "gretel-bought", "version",
                            GT_STORE_SCHEMA, "products", arr);
    int rc = path ? json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS)
                  : json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!path)
        putchar('\n');
    json_decref(doc);
    if (rc != 0) {
        fprintf(stderr, "gretel bought export: cannot write %s\n", path ? path : "stdout");
        return 1;
    }
    return 0;
}

static int do_import(gt_store *st, const char *path)
{
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    int code = 1;
    gt_store_rec *recs = NULL;
    if (!doc) {
        fprintf(stderr, "%s:%d:%d: error: %s (nothing imported)\n", path, je.line, je.column,
                je.text);
        return 1;
    }
    const char *fmt = NULL;
    json_int_t ver = 0;
    json_t *arr = NULL;
    if (json_unpack_ex(doc, &je, 0, "{s:s, s:I, s:o}", "format", &fmt, "version", &ver,
                       "products", &arr) != 0 ||
        strcmp(fmt, "gretel-bought") != 0 || !json_is_array(arr)) {
        fprintf(stderr, "%s: error: not a gretel bought export (nothing imported)\n", path);
        goto out;
    }
    if (ver < 1 || ver > GT_STORE_SCHEMA) {
        fprintf(stderr, "%s: error: format version %lld is not supported (nothing imported)\n",
                path, (long long)ver);
        goto out;
    }
    size_t n = json_array_size(arr), i;
    recs = calloc(n ? n : 1, sizeof(*recs));
    json_t *e;
    json_array_foreach(arr, i, e) {
        const char *key, *label = "", *source = "import";
        json_int_t added = 0, expires = 0;
        char err[256];
        if (json_unpack_ex(e, &je, 0, "{s:s, s?s, s?s, s?I, s?I}", "key", &key, "label", &label,
                           "source", &source, "added", &added, "expires", &expires) != 0 ||
            added < 0 || expires < 0) {
            fprintf(stderr, "%s: error: product %zu: %s (nothing imported)\n", path, i + 1,
                    je.text[0] ? je.text : "bad field");
            goto out;
        }
        if (!gt_store_canonical_key(gt_slice_cstr(key), recs[i].key, sizeof(recs[i].key), err,
                                    sizeof(err))) {
            fprintf(stderr, "%s: error: product %zu: %s (nothing imported)\n", path, i + 1, err);
            goto out;
        }
        snprintf(recs[i].label, sizeof(recs[i].label), "%s", label);
        snprintf(recs[i].source, sizeof(recs[i].source), "%s", source);
        recs[i].added = (uint64_t)added;
        recs[i].expires = (uint64_t)expires;
    }
    char err[512];
    if (gt_store_mark_all(st, recs, n, err, sizeof(err)) < 0) {
        fprintf(stderr, "gretel bought import: %s (nothing imported)\n", err);
        goto out;
    }
    printf("imported %zu product%s\n", n, n == 1 ? "" : "s");
    code = 0;
out:
    free(recs);
    json_decref(doc);
    return code;
}

int gt_cmd_bought(int argc, char **argv)
{
    gt_cli_opts o;
    gt_store *st = NULL;
    gt_config *cfg = NULL;
    int code = gt_cli_parse(argc, argv, &o);
    if (code)
        goto out;
    bool as_json = false;
    for (size_t i = 0; i < o.nargs; i++)
        if (strcmp(o.args[i], "--json") == 0) {
            as_json = true;
            memmove(o.args + i, o.args + i + 1, (o.nargs - i - 1) * sizeof(char *));
            o.nargs--;
            i--;
        }
    const char *sub = o.nargs ? o.args[0] : NULL;
    if (sub && strcmp(sub, "export") && strcmp(sub, "import")) {
        fprintf(stderr, "usage: gretel bought [--json] | bought export [FILE] | "
                        "bought import FILE\n");
        code = 2;
        goto out;
    }
    if (sub && strcmp(sub, "import") == 0 && o.nargs != 2) {
        fprintf(stderr, "usage: gretel bought import FILE\n");
        code = 2;
        goto out;
    }
    if ((code = open_store(&o, &st, &cfg)))
        goto out;
    if (sub && strcmp(sub, "export") == 0)
        code = do_export(st, o.nargs > 1 ? o.args[1] : NULL);
    else if (sub)
        code = do_import(st, o.args[1]);
    else if (as_json)
        code = do_export(st, NULL);
    else if (gt_store_foreach(st, print_row, NULL) < 0)
        code = 1;
out:
    gt_store_close(st);
    gt_config_free(cfg);
    gt_cli_opts_free(&o);
    return code;
}
