/* `gretel run`: loads the config, then hands it to the server until SIGTERM/SIGINT. A bad
 * config at start exits 2; at SIGHUP it is reported and the running one is kept. */
#include <stdio.h>

#include "cli.h"
#include "gretel/log.h"
#include "gretel/net.h"

static int reload(void *arg, gt_config **out, gt_diags *diags)
{
    const gt_cli_opts *o = arg;
    return gt_cli_load_config(o, out, diags);
}

int gt_cmd_run(int argc, char **argv)
{
    gt_cli_opts o;
    gt_config *cfg = NULL;
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
    if (gt_cli_load_config(&o, &cfg, &d) < 0) {
        gt_diags_print(&d, stderr);
        fprintf(stderr, "gretel: bad configuration (%zu errors), not starting\n", d.errors);
        code = 2;
        goto out;
    }
    if (cfg->mitm) {
        /* Failing closed: a user who asked for interception must not believe rules apply
         * inside HTTPS when they do not. */
        fprintf(stderr, "gretel: mitm = on, but this version cannot intercept TLS yet; "
                        "set mitm = off (CONNECT tunnels then pass untouched)\n");
        gt_config_free(cfg);
        code = 2;
        goto out;
    }
    if (o.conf_file == NULL)
        gt_log(GT_LOG_INFO, "no -c given: running with the embedded defaults");
    code = gt_server_run(cfg, reload, &o); /* takes cfg */
out:
    gt_diags_free(&d);
    gt_cli_opts_free(&o);
    return code;
}
