/* gretel's entry point: dispatches to one command per file in src/cli/. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "gretel/config.h"
#include "gretel/util.h"

int main(int argc, char **argv)
{
    gt_config_global_init();
    if (argc < 2) {
        gt_cmd_help(0, NULL);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return gt_cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0)
        return gt_cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "mark") == 0)
        return gt_cmd_mark(argc - 2, argv + 2);
    if (strcmp(cmd, "unmark") == 0)
        return gt_cmd_unmark(argc - 2, argv + 2);
    if (strcmp(cmd, "bought") == 0)
        return gt_cmd_bought(argc - 2, argv + 2);
    if (strcmp(cmd, "ca") == 0)
        return gt_cmd_ca(argc - 2, argv + 2);
    if (strcmp(cmd, "explain") == 0)
        return gt_cmd_explain(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return gt_cmd_version(argc - 2, argv + 2);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0)
        return gt_cmd_help(argc - 2, argv + 2);
    fprintf(stderr, "gretel: unknown command '%s' (try: gretel help)\n", cmd);
    return 2;
}
