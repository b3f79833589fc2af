/* `gretel run`: loads the config and rules, then hands them to the server until
 * SIGTERM/SIGINT. A bad config or rule file at start exits 2; at SIGHUP (or a rule file
 * change) it is reported and the running generation is kept. */
#include <stdio.h>

#include "cli.h"
#include "gretel/control.h"
#include "gretel/lists.h"
#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/store.h"
#include "gretel/tls.h"

typedef struct {
    gt_cli_opts *o;
    bool have_tls; /* the CA was loaded at start (ca_dir is read only then) */
} run_ctx;

static int load_all(const gt_cli_opts *o, const gt_psl *psl, gt_config **cfg,
                    gt_ruleset **rules, struct gt_abp_set **lists, gt_ruleset **shops, gt_diags *d)
{
    *cfg = NULL;
    *rules = NULL;
    *lists = NULL;
    *shops = NULL;
    int rv = gt_cli_load_config(o, cfg, d);
    if (rv == 0)
        rv = gt_cli_load_rules(*cfg, NULL, 0, psl, false, rules, d);
    bool cached = false;
    uint64_t t0 = gt_now_ms();
    if (rv == 0 && (rv = gt_cli_load_lists(*cfg, true, lists, d, &cached)) < 0) {
        gt_ruleset_release(*rules);
        *rules = NULL;
    }
    if (rv < 0) {
        gt_config_free(*cfg);
        *cfg = NULL;
    }
    if (rv == 0 && *lists)
        gt_log(GT_LOG_INFO, "lists: %zu filters in %llu ms (%s)", gt_abp_set_count(*lists),
               (unsigned long long)(gt_now_ms() - t0),
               cached ? "from the compiled cache" : "compiled from the list files");
    if (rv == 0)
        gt_cli_load_shop_rules(*cfg, psl, shops);
    return rv;
}

static int reload(void *arg, const gt_psl *psl, gt_config **out, gt_ruleset **rules,
                  struct gt_abp_set **lists, gt_ruleset **shops, gt_diags *diags)
{
    run_ctx *rc = arg;
    int rv = load_all(rc->o, psl, out, rules, lists, shops, diags);
    if (rv == 0 && (*out)->mitm && !rc->have_tls) {
        gt_diags_add(diags, 0, rc->o->conf_file ? rc->o->conf_file : "-o", 0, 0,
                     "mitm = on, but gretel started without a CA: run `gretel ca init`, then "
                     "restart gretel");
        gt_config_free(*out);
        gt_ruleset_release(*rules);
        gt_abp_set_free(*lists);
        gt_ruleset_release(*shops);
        *out = NULL;
        *rules = NULL;
        *lists = NULL;
        *shops = NULL;
        return GT_EINVAL;
    }
    return rv;
}

int gt_cmd_run(int argc, char **argv)
{
    gt_cli_opts o;
    gt_config *cfg = NULL;
    gt_ruleset *rules = NULL;
    gt_psl *psl = NULL;
    gt_store *store = NULL;
    gt_tls *tls = NULL;
    struct gt_abp_set *lists = NULL;
    gt_ruleset *shops = NULL;
    gt_control *control = NULL;
    gt_diags d;
    gt_diags_init(&d);
    int code = gt_cli_parse(argc, argv, &o);
    if (code)
        goto out;
    if (o.nargs) {
        fprintf(stderr, "gretel run: unexpected argument '%s'\n", o.args[0]);
        code = 2;
        goto out;
    }
    psl = gt_rules_psl_load();
    if (!psl) {
        fprintf(stderr, "gretel: no public suffix list (libpsl has no built-in copy and "
                        "/usr/share/publicsuffix is missing)\n");
        code = 2;
        goto out;
    }
    if (load_all(&o, psl, &cfg, &rules, &lists, &shops, &d) < 0) {
        gt_diags_print(&d, stderr);
        fprintf(stderr, "gretel: bad configuration or rules (%zu errors), not starting\n",
                d.errors);
        code = 2;
        goto out;
    }
    gt_diags_print(&d, stderr); /* warnings */
    /* The CA is loaded whenever it exists, so that a reload can switch mitm on. */
    char terr[700];
    char cache_dir[4200];
    snprintf(cache_dir, sizeof(cache_dir), "%s/certs", cfg->store);
    int trv = gt_tls_new(&tls, cfg->ca_dir, cache_dir, cfg->upstream_ca_file, terr, sizeof(terr));
    if (trv < 0 && (cfg->mitm || trv != GT_ENOTFOUND)) {
        /* Failing closed: a user who asked for interception must not believe rules apply
         * inside HTTPS when they do not. */
        if (trv == GT_ENOTFOUND)
            fprintf(stderr, "gretel: mitm = on, but there is no CA in %s yet.\n"
                            "  create one:  gretel ca init\n"
                            "  trust it:    gretel ca export gretel-ca.pem (see docs/HTTPS.md)\n",
                    cfg->ca_dir);
        else
            fprintf(stderr, "gretel: TLS interception: %s\n", terr);
        gt_config_free(cfg);
        gt_ruleset_release(rules);
        gt_abp_set_free(lists);
        gt_ruleset_release(shops);
        code = 2;
        goto out;
    }
    if (tls)
        gt_log(GT_LOG_INFO, "TLS interception %s (CA in %s)", cfg->mitm ? "on" : "ready, off",
               cfg->ca_dir);
    if (o.conf_file == NULL)
        gt_log(GT_LOG_INFO, "no -c given: running with the embedded defaults");
    gt_log(GT_LOG_INFO, "rules: %zu loaded (%zu KiB compiled)", gt_ruleset_count(rules),
           gt_ruleset_memory(rules) / 1024);
    /* A store that cannot be opened must not stop the proxy: bought checks fail open
     * (nothing counts as bought) and every other rule still applies. */
    char err[512];
    if (gt_store_open(&store, cfg->store, err, sizeof(err)) < 0)
        gt_log(GT_LOG_WARN, "%s; running without the bought list (block-if-bought rules "
                            "will not fire)",
               err);
    /* the control page's token lives in the store directory (made above, or now) */
    control = gt_control_new(cfg->store);
    run_ctx rc = {&o, tls != NULL};
    /* takes cfg, rules, lists and shops */
    code = gt_server_run(cfg, rules, lists, shops, control, psl, store, tls, reload, &rc);
out:
    gt_control_free(control);
    gt_tls_free(tls);
    gt_store_close(store);
    gt_rules_psl_free(psl);
    gt_diags_free(&d);
    gt_cli_opts_free(&o);
    return code;
}
