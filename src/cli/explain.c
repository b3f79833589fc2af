/* `gretel explain`: the decision for one request with every condition of the deciding rule,
 * or (--batch) one line per request of a TSV request set with the rules loaded once. Reads
 * the rule files and the input; sends nothing anywhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "gretel/lists.h"
#include "gretel/rules.h"
#include "gretel/store.h"
#include "gretel/util.h"

static void print_keys(FILE *out, const gt_decision *d)
{
    if (!d->nproducts) {
        fputc('-', out);
        return;
    }
    for (size_t i = 0; i < d->nproducts; i++)
        fprintf(out, "%s%.*s%s", i ? "," : "", (int)d->products[i].key.len,
                d->products[i].key.p, d->products[i].bought ? "*" : "");
}

static bool bought_cb(void *arg, gt_slice key)
{
    return gt_store_is_bought(arg, key);
}

static int run_batch(const char *path, const gt_ruleset *rs, const gt_abp_set *lists,
                     const gt_psl *psl, gt_store *st)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        fprintf(stderr, "gretel explain: cannot read %s: %s\n", path, strerror(errno));
        return 2;
    }
    gt_rules_scratch *sc = gt_rules_scratch_new();
    char *line = NULL;
    size_t cap = 0, lineno = 0, bad = 0;
    ssize_t n;
    gt_decision d;
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0 || line[0] == '#')
            continue;
        gt_slice rest = gt_slice_make(line, (size_t)n), f[4] = {{0}};
        for (int i = 0; i < 4; i++)
            if (!gt_slice_next(&rest, '\t', &f[i]))
                break;
        gt_rules_request rq;
        gt_cli_url_parts up;
        const char *why = NULL;
        if (gt_cli_build_request(f[0], f[1], f[2], f[3], psl, &rq, &up, &why) < 0) {
            fprintf(stderr, "%s:%zu:1: warning: %s; line reported as pass\n", path, lineno,
                    why);
            printf("pass\t-\t-\t%.*s\n", (int)f[0].len, f[0].p);
            bad++;
            continue;
        }
        gt_rules_decide(rs, sc, &rq, st ? bought_cb : NULL, st, &d);
        gt_lists_apply(lists, &rq, psl, sc, &d); /* as the proxy does (NULL: no lists) */
        fputs(gt_decide_action_name(d.action), stdout);
        if (d.rule || d.list_file)
            printf("\t%s:%u\t", gt_decision_file(&d), gt_decision_line(&d));
        else
            fputs("\t-\t", stdout);
        print_keys(stdout, &d);
        printf("\t%.*s\n", (int)f[0].len, f[0].p);
    }
    int rv = ferror(in) ? 2 : 0;
    if (rv)
        fprintf(stderr, "gretel explain: read error on %s\n", path);
    free(line);
    gt_rules_scratch_free(sc);
    if (in != stdin)
        fclose(in);
    return rv;
}

static void explain_one(const gt_ruleset *rs, const gt_abp_set *lists, const gt_psl *psl,
                        gt_store *st, gt_rules_request *rq, gt_slice url)
{
    gt_rules_scratch *sc = gt_rules_scratch_new();
    gt_decision d;
    gt_rules_decide(rs, sc, rq, st ? bought_cb : NULL, st, &d);
    gt_lists_apply(lists, rq, psl, sc, &d);
    printf("url       %.*s\n", (int)url.len, url.p);
    printf("request   %.*s type=%s party=%s source=%.*s\n", (int)rq->method.len, rq->method.p,
           gt_rules_type_name(rq->type),
           rq->party == GT_PARTY_FIRST   ? "first"
           : rq->party == GT_PARTY_THIRD ? "third"
                                         : "unknown",
           rq->source.len ? (int)rq->source.len : 1, rq->source.len ? rq->source.p : "-");
    printf("decision  %s%s\n", gt_decide_action_name(d.action),
           d.bought ? " (a bought product)" : "");
    if (d.rule) {
        enum { EXPLAIN_MAX = 8192 };
        char *buf = gt_xmalloc(EXPLAIN_MAX);
        printf("rule      %s:%u: %s\n", gt_rule_file(d.rule), gt_rule_line(d.rule),
               gt_rule_text(d.rule));
        gt_rules_explain_rule(rs, sc, d.rule, rq, buf, EXPLAIN_MAX);
        fputs(buf, stdout);
        free(buf);
    } else if (d.list_file) {
        printf("list      %s:%u (a list filter; the rules passed this request)\n", d.list_file,
               d.list_line);
    } else {
        printf("rule      - (no block, allow, redirect or rewrite rule matched)\n");
    }
    if (d.overridden)
        printf("overrides %s:%u: %s\n", gt_rule_file(d.overridden), gt_rule_line(d.overridden),
               gt_rule_text(d.overridden));
    if (d.action == GT_DECIDE_BLOCK || d.action == GT_DECIDE_REDIRECT) {
        /* a refused CONNECT gets a 403, whatever the rule's response (the proxy does so:
         * nothing can be answered inside a tunnel) */
        const gt_resource *res = rq->host_only ? gt_rules_resource(GT_RESP_403, GT_TYPE_OTHER)
                                               : gt_rules_resource(d.resp, rq->type);
        printf("response  %d %s (%zu bytes%s%s)\n", res->status, res->name, res->body_len,
               res->content_type ? ", " : "", res->content_type ? res->content_type : "");
    }
    printf("products  ");
    if (!d.nproducts)
        printf("-\n");
    for (size_t i = 0; i < d.nproducts; i++)
        printf("%s%.*s (%s; %s:%u)\n", i ? "          " : "", (int)d.products[i].key.len,
               d.products[i].key.p, d.products[i].bought ? "bought" : "not bought",
               gt_rule_file(d.products[i].rule), gt_rule_line(d.products[i].rule));
    bool any_rw = d.path_changed || d.nhdr_ops;
    if (!any_rw || d.action == GT_DECIDE_BLOCK || d.action == GT_DECIDE_REDIRECT)
        printf("rewrites  -\n");
    if (d.path_changed && (d.rewrite_rule || !d.list_file))
        printf("rewrites  path %.*s (%s:%u)\n", (int)d.new_path.len, d.new_path.p,
               gt_rule_file(d.rewrite_rule), gt_rule_line(d.rewrite_rule));
    else if (d.path_changed) /* a list's $removeparam alone */
        printf("rewrites  path %.*s (%s:%u)\n", (int)d.new_path.len, d.new_path.p,
               d.list_file, d.list_line);
    for (size_t i = 0; i < d.nhdr_ops; i++) {
        const gt_hdr_op *op = &d.hdr_ops[i];
        const char *what = op->kind == GT_HDR_REMOVE          ? "remove header"
                           : op->kind == GT_HDR_SET           ? "set header"
                           : op->kind == GT_HDR_REMOVE_COOKIE ? "remove cookie"
                                                              : "trim referer";
        bool named = op->kind != GT_HDR_TRIM_REFERER;
        printf("%s%s%s%.*s%s%.*s (%s:%u)\n", d.path_changed || i ? "          " : "rewrites  ",
               what, named ? " " : "", named ? (int)op->name.len : 0, op->name.p,
               op->value.len ? ": " : "", (int)op->value.len, op->value.p,
               gt_rule_file(op->rule), gt_rule_line(op->rule));
    }
    for (size_t i = 0; i < d.nlogs; i++)
        printf("log       %s:%u: %s\n", gt_rule_file(d.logs[i]), gt_rule_line(d.logs[i]),
               gt_rule_text(d.logs[i]));
    printf("checked   %u candidate rule%s of %zu\n", d.candidates, d.candidates == 1 ? "" : "s",
           gt_ruleset_count(rs));
    gt_rules_scratch_free(sc);
}

/* Reads a request body for --body: a file, or standard input for "-"; at most max + 1
 * bytes are kept (enough to know it is larger than the proxy would read ahead). */
static int read_body(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "gretel explain: --body %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = max + 1, n = 0;
    char *buf = gt_xmalloc(cap + 1);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0 || n == cap)
            break;
    }
    bool bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        fprintf(stderr, "gretel explain: --body %s: read error\n", path);
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

int gt_cmd_explain(int argc, char **argv)
{
    gt_cli_opts o;
    gt_config *cfg = NULL;
    gt_ruleset *rs = NULL;
    gt_psl *psl = NULL;
    gt_abp_set *lists = NULL;
    bool lists_cached = false;
    gt_store *store = NULL;
    gt_diags d;
    gt_diags_init(&d);
    const char *batch = NULL, *url = NULL, *referer = "", *type = "", *method = "";
    const char *body_file = NULL;
    char *body = NULL;
    size_t body_len = 0;
    int code = gt_cli_parse(argc, argv, &o);
    if (code)
        goto out;
    for (size_t i = 0; i < o.nargs; i++) {
        const char *a = o.args[i];
        const char **dst = strcmp(a, "--batch") == 0     ? &batch
                           : strcmp(a, "--referer") == 0 ? &referer
                           : strcmp(a, "--type") == 0    ? &type
                           : strcmp(a, "--method") == 0  ? &method
                           : strcmp(a, "--body") == 0    ? &body_file
                                                         : NULL;
        if (dst) {
            if (i + 1 >= o.nargs) {
                fprintf(stderr, "gretel explain: %s needs a value\n", a);
                code = 2;
                goto out;
            }
            *dst = o.args[++i];
        } else if (!url && a[0] != '-') {
            url = a;
        } else {
            fprintf(stderr, "gretel explain: unexpected argument '%s'\n", a);
            code = 2;
            goto out;
        }
    }
    if (!batch == !url) {
        fprintf(stderr, "usage: gretel explain [-c FILE] [-o KEY=VALUE]... URL [--referer URL] "
                        "[--type TYPE] [--method M] [--body FILE-OR-DASH]\n"
                        "       gretel explain [-c FILE] [-o KEY=VALUE]... --batch FILE-OR-DASH\n");
        code = 2;
        goto out;
    }
    psl = gt_rules_psl_load();
    if (gt_cli_load_config(&o, &cfg, &d) < 0 ||
        gt_cli_load_rules(cfg, NULL, 0, psl, false, &rs, &d) < 0 ||
        gt_cli_load_lists(cfg, false, &lists, &d, &lists_cached) < 0) {
        gt_diags_print(&d, stderr);
        fprintf(stderr, "gretel explain: cannot load the configuration or rules (%zu errors)\n",
                d.errors);
        code = 2;
        goto out;
    }
    /* the bought list, when there is one: explain never creates a store */
    struct stat sst;
    char serr[512];
    if (stat(cfg->store, &sst) == 0 && gt_store_open(&store, cfg->store, serr, sizeof(serr)) < 0)
        fprintf(stderr, "gretel explain: %s; showing nothing as bought\n", serr);
    if (batch) {
        code = run_batch(batch, rs, lists, psl, store);
        goto out;
    }
    /* --body: what the proxy would read ahead for body~ rules (a POST unless --method says
     * otherwise); a body past body_inspect_max is decided without it, as in the proxy */
    if (body_file && read_body(body_file, cfg->body_inspect_max, &body, &body_len) < 0) {
        code = 2;
        goto out;
    }
    if (body_file && !method[0])
        method = "POST";
    gt_rules_request rq;
    gt_cli_url_parts up;
    const char *why = NULL;
    gt_slice su = gt_slice_cstr(url);
    if (gt_cli_build_request(su, gt_slice_cstr(referer), gt_slice_cstr(type), gt_slice_cstr(method), psl,
                      &rq, &up, &why) < 0) {
        fprintf(stderr, "gretel explain: %s: %s\n", url, why);
        code = 2;
        goto out;
    }
    if (body_file && body_len > cfg->body_inspect_max) {
        printf("body      %zu bytes: larger than body_inspect_max (%u), decided without it, as "
               "the proxy does\n", body_len, cfg->body_inspect_max);
    } else if (body_file) {
        rq.body = gt_slice_make(body, body_len);
        printf("body      %zu bytes, seen by body~ conditions\n", body_len);
    }
    explain_one(rs, lists, psl, store, &rq, su);
    code = 0;
out:
    free(body);
    gt_store_close(store);
    gt_abp_set_free(lists);
    gt_ruleset_release(rs);
    gt_rules_psl_free(psl);
    gt_config_free(cfg);
    gt_diags_free(&d);
    gt_cli_opts_free(&o);
    return code;
}
