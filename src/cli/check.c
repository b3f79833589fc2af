/* `gretel check`: validates the config (every key, value and address), compiles every rule
 * file it names or the command line names, with lint warnings (invalid regex with PCRE2's
 * message, unknown option, duplicate and unreachable rules, backtracking risks), and checks
 * that list files can be read. Prints FILE:LINE:COL: lines and a summary; exit 0 when no
 * errors, 1 otherwise. */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void check_readable(const char *pattern, gt_diags *d, size_t *nfiles)
{
    glob_t g;
    int r = glob(pattern, GLOB_NOCHECK, NULL, &g);
    if (r != 0) {
        gt_diags_add(d, 0, pattern, 0, 0, "cannot expand pattern");
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        FILE *f = fopen(g.gl_pathv[i], "r");
        if (!f) {
            gt_diags_add(d, 0, g.gl_pathv[i], 0, 0, "cannot open: %s", strerror(errno));
            continue;
        }
        fclose(f);
        (*nfiles)++;
    }
    globfree(&g);
}

int gt_cmd_check(int argc, char **argv)
{
    gt_cli_opts o;
    gt_config *cfg = NULL;
    gt_ruleset *rs = NULL;
    gt_psl *psl = NULL;
    gt_diags d;
    gt_diags_init(&d);
    size_t nfiles = 0;
    int code = gt_cli_parse(argc, argv, &o);
    if (code)
        goto out;
    psl = gt_rules_psl_load();
    if (gt_cli_load_config(&o, &cfg, &d) == 0) {
        for (size_t i = 0; i < cfg->lists.n; i++)
            check_readable(cfg->lists.v[i], &d, &nfiles);
    }
    /* Rule files on the command line are checked on their own when given: `gretel check
     * rules/new.rules` lints just that file, with the config's groups. */
    gt_config empty;
    memset(&empty, 0, sizeof(empty));
    const gt_config *rc = cfg;
    if (o.nargs && cfg) {
        empty.rule_groups = cfg->rule_groups;
        rc = &empty;
    }
    gt_cli_load_rules(rc, (const char *const *)o.args, o.nargs, psl, true, &rs, &d);
    gt_diags_print(&d, stdout);
    gt_ruleset_stats st;
    gt_ruleset_get_stats(rs, &st);
    printf("gretel check: %s: %zu error%s, %zu warning%s, %zu rule%s, %zu list file%s "
           "readable\n",
           o.conf_file ? o.conf_file : "embedded defaults", d.errors, d.errors == 1 ? "" : "s",
           d.warnings, d.warnings == 1 ? "" : "s", gt_ruleset_count(rs),
           gt_ruleset_count(rs) == 1 ? "" : "s", nfiles, nfiles == 1 ? "" : "s");
    if (rs)
        /* rules tried on every request cost every request: ops should see how many */
        printf("gretel check: indexed by host %zu, by URL token %zu, by token prefix %zu; "
               "tried on every request %zu (%zu of them behind combined patterns)\n",
               st.by_host, st.by_token, st.by_prefix, st.always + st.gated, st.gated);
    code = d.errors ? 1 : 0;
out:
    gt_ruleset_release(rs);
    gt_rules_psl_free(psl);
    gt_config_free(cfg);
    gt_diags_free(&d);
    gt_cli_opts_free(&o);
    return code;
}
