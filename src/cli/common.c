/* Option parsing shared by every command: `-c FILE`, `-o KEY=VALUE` (repeatable), then
 * positional arguments. Owns the arrays in gt_cli_opts until gt_cli_opts_free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
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
