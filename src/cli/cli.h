/* Shared by the command files in src/cli/: argument parsing for -c/-o and the commands'
 * entry points. Each command returns the process exit code. */
#ifndef GT_CLI_H
#define GT_CLI_H

#include <stddef.h>

#include "gretel/config.h"
#include "gretel/rules.h"

typedef struct {
    const char *conf_file; /* -c FILE, or NULL */
    gt_config_override *ov;
    size_t nov;
    char **args; /* positional arguments left after options */
    size_t nargs;
} gt_cli_opts;

/* Parses argv (after the command name) for -c FILE / -o KEY=VALUE; other arguments are kept
 * as positional. Returns 0, or 2 after printing a usage error. */
int gt_cli_parse(int argc, char **argv, gt_cli_opts *o);
void gt_cli_opts_free(gt_cli_opts *o);
/* Loads the config the options name, printing diagnostics to stderr. */
int gt_cli_load_config(const gt_cli_opts *o, gt_config **out, gt_diags *diags);

/* Loads the rule files cfg names (plus extra files, e.g. check's arguments) into *out.
 * lint adds check's slower warnings. Returns 0 or GT_EINVAL with diags filled. */
int gt_cli_load_rules(const gt_config *cfg, const char *const *extra, size_t nextra,
                      const gt_psl *psl, bool lint, gt_ruleset **out, gt_diags *diags);

/* A request as explain and mark build it from a URL: scheme, host, port and path split
 * off, method (default GET), type from TYPE or the path's extension, the source as
 * Referer, party from source vs host. up holds the copies the request points into. */
typedef struct {
    char host[256];
    char scheme[8];
    gt_rules_field fields[2];
} gt_cli_url_parts;
int gt_cli_build_request(gt_slice url, gt_slice source, gt_slice type, gt_slice method,
                         const gt_psl *psl, gt_rules_request *rq, gt_cli_url_parts *up,
                         const char **why);

/* The rules of cfg with the `shops` group switched on, for the control page's product keys
 * of shop pages (errors there were reported by the main load). */
int gt_cli_load_shop_rules(gt_config *cfg, const gt_psl *psl, gt_ruleset **out);

/* Compiles cfg's `lists` files (globs expanded) into *out (NULL when none are configured),
 * through the compiled cache `<store>/lists.cache` when the store exists (create_store:
 * made if missing). Returns 0, or GT_EINVAL with an unreadable file in diags. */
struct gt_abp_set;
int gt_cli_load_lists(const gt_config *cfg, bool create_store, struct gt_abp_set **out,
                      gt_diags *diags, bool *from_cache);

int gt_cmd_run(int argc, char **argv);
int gt_cmd_explain(int argc, char **argv);
int gt_cmd_mark(int argc, char **argv);
int gt_cmd_unmark(int argc, char **argv);
int gt_cmd_bought(int argc, char **argv);
int gt_cmd_check(int argc, char **argv);
int gt_cmd_ca(int argc, char **argv);
int gt_cmd_help(int argc, char **argv);
int gt_cmd_version(int argc, char **argv);

#endif
