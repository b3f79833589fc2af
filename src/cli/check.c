/* `gretel check`: validates the config (every key, value and address), compiles every rule
 * file it names or the command line names, with lint warnings (invalid regex with PCRE2's
 * message, unknown option, duplicate and unreachable rules, backtracking risks), and reads
 * the list files, counting their lines by kind (network filters, hosts entries, and what
 * a proxy skips). Prints FILE:LINE:COL: lines and a summary; exit 0 when no
 * errors, 1 otherwise. */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gretel/lists.h"

/* Reads a list file line by line and counts what each line is: Adblock Plus network
 * filters (and exceptions), hosts-file or plain-domain entries, and the kinds a proxy
 * skips (cosmetic, scriptlets, HTML filtering, csp=, popups, options it cannot honour).
 * Malformed filters are warnings at FILE:LINE:1. */
static void check_list_file(const char *path, gt_diags *d)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        gt_diags_add(d, 0, path, 0, 0, "cannot open: %s", strerror(errno));
        return;
    }
    size_t kinds[GT_ABP_KIND_COUNT] = {0}, exceptions = 0, hosts = 0;
    char *line = NULL, host[256];
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0;
    /* An Adblock Plus list announces itself ("[Adblock Plus 2.0]", "! Title:") or uses its
     * syntax early; in one, a bare "ads.example" is a substring filter, not a host. */
    bool abp = false;
    for (unsigned k = 0; k < 200 && (n = getline(&line, &cap, f)) >= 0; k++)
        if (line[0] == '[' || line[0] == '!' || strstr(line, "||") || strstr(line, "##"))
            abp = true;
    rewind(f);
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        gt_slice sl = gt_slice_make(line, (size_t)n);
        if (!abp && line[0] == '#') {
            kinds[GT_ABP_COMMENT]++; /* a hosts file's comment */
            continue;
        }
        /* "0.0.0.0 host" and bare domains are hosts-list entries, not filters */
        bool ip_first = line[0] >= '0' && line[0] <= '9' && strchr(line, ' ');
        if (n && (!abp || (ip_first && !strchr(line, '#'))) && strpbrk(line, "|^$/*@!") == NULL &&
            gt_hosts_line(sl, host, sizeof(host))) {
            hosts++;
            continue;
        }
        gt_abp_filter flt;
        const char *why;
        gt_abp_kind k = gt_abp_parse(sl, &flt, &why);
        kinds[k]++;
        if (k == GT_ABP_NETWORK && (flt.flags & GT_ABP_EXCEPTION))
            exceptions++;
        if (k == GT_ABP_INVALID)
            gt_diags_add(d, 1, path, lineno, 1, "%s: %.120s", why ? why : "invalid filter", line);
        gt_abp_filter_free(&flt);
    }
    free(line);
    fclose(f);
    printf("gretel check: %s: %zu network filters (%zu exceptions), %zu hosts entries; skipped: "
           "%zu cosmetic, %zu scriptlet, %zu html, %zu csp, %zu popup, %zu unsupported option, "
           "%zu invalid; %zu comments\n",
           path, kinds[GT_ABP_NETWORK], exceptions, hosts, kinds[GT_ABP_COSMETIC],
           kinds[GT_ABP_SCRIPTLET], kinds[GT_ABP_HTML], kinds[GT_ABP_CSP], kinds[GT_ABP_POPUP],
           kinds[GT_ABP_UNSUPPORTED], kinds[GT_ABP_INVALID], kinds[GT_ABP_COMMENT]);
}

static void check_readable(const char *pattern, gt_diags *d, size_t *nfiles)
{
    glob_t g;
    int r = glob(pattern, GLOB_NOCHECK, NULL, &g);
    if (r != 0) {
        gt_diags_add(d, 0, pattern, 0, 0, "cannot expand pattern");
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        size_t before = d->errors;
        check_list_file(g.gl_pathv[i], d);
        if (d->errors == before)
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
    if (cfg)
        /* which lists block, and why those: the defaults are a choice users should see */
        printf("gretel check: lists: %s\n",
               cfg->lists_default ? "Debian's EasyList + EasyPrivacy (webext-ublock-origin-"
                                    "chromium), the default when no `lists` is set; "
                                    "`lists =` turns them off"
               : cfg->lists.n     ? "as configured (`lists`)"
               : cfg->lists_set   ? "none (`lists =`)"
                                  : "none (no `lists` set, and Debian's EasyList is not "
                                    "installed: apt-get install --no-install-recommends "
                                    "webext-ublock-origin-chromium)");
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
