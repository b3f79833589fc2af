/* `gretel run`: loads the config and rules, then hands them to the server until
 * SIGTERM/SIGINT. A bad config or rule file at start exits 2; at SIGHUP (or a rule file
 * change) it is reported and the running generation is kept. */
#include <stdio.h>

#include "cli.h"
#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/store.h"

static int load_all(const gt_cli_opts *o, const gt_psl *psl, gt_config **cfg,
                    gt_ruleset **rules, gt_diags *d)
{
    *cfg = NULL;
    *rules = NULL;
    int rv = gt_cli_load_config(o, cfg, d);
    if (rv == 0)
        rv = gt_cli_load_rules(*cfg, NULL, 0, psl, false, rules, d);
    if (rv < 0) {
        gt_config_free(*cfg);
        *cfg = NULL;
    }
    return rv;
}

static int reload(void *arg, const gt_psl *psl, gt_config **out, gt_ruleset **rules,
                  gt_diags *diags)
{
    return load_all(arg, psl, out, rules, diags);
}

int gt_cmd_run(int argc, char **argv)
{
    gt_cli_opts o;
    gt_config *cfg = NULL;
    gt_ruleset *rules = NULL;
    gt_psl *psl = NULL;
    gt_store *store = NULL;
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
    if (load_all(&o, psl, &cfg, &rules, &d) < 0) {
        gt_diags_print(&d, stderr);
        fprintf(stderr, "gretel: bad configuration or rules (%zu errors), not starting\n",
                d.errors);
        code = 2;
        goto out;
    }
    gt_diags_print(&d, stderr); /* warnings */
    if (cfg->mitm) {
        /* Failing closed: a user who asked for interception must not believe rules apply
         * inside HTTPS when they do not. */
        fprintf(stderr, "gretel: mitm = on, but this version cannot intercept TLS yet; "
                        "set mitm = off (CONNECT tunnels then pass untouched)\n");
        gt_config_free(cfg);
        gt_ruleset_release(rules);
        code = 2;
        goto out;
    }
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
    code = gt_server_run(cfg, rules, psl, store, reload, &o); /* takes cfg and rules */
out:
    gt_store_close(store);
    gt_rules_psl_free(psl);
    gt_diags_free(&d);
    gt_cli_opts_free(&o);
    return code;
}
