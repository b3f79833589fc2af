/* `gretel help [COMMAND]` and `gretel version`. `gretel help config` prints the config key
 * table, generated from src/util/config_keys.c like the README's. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: gretel COMMAND [-c FILE] [-o KEY=VALUE]... [ARGS]\n"
    "\n"
    "commands:\n"
    "  run                 run the proxy in the foreground (logs to stderr)\n"
    "  check [FILE...]     validate the config and the rule/list files it names\n"
    "  version             print the version\n"
    "  help [COMMAND]      this text; `help config` lists every config key\n"
    "\n"
    "options (after the command name):\n"
    "  -c FILE             read the config from FILE (default: embedded defaults)\n"
    "  -o KEY=VALUE        override a config key for this run; repeatable;\n"
    "                      for a list key the first -o replaces, later ones add,\n"
    "                      and KEY= clears it\n"
    "\n"
    "signals (run): SIGHUP re-reads the config, SIGTERM/SIGINT drain and exit 0\n"
    "exit codes: 0 ok, 1 check found errors, 2 bad usage or bad config\n";

int gt_cmd_help(int argc, char **argv)
{
    if (argc > 0 && strcmp(argv[0], "config") == 0) {
        printf("%-22s %-16s %-22s %s\n", "key", "type", "default", "meaning");
        gt_config_key_info k;
        for (size_t i = 0; gt_config_key_get(i, &k) == 0; i++)
            printf("%-22s %-16s %-22s %s\n", k.name, k.type, k.def[0] ? k.def : "-", k.doc);
        return 0;
    }
    if (argc > 0 && strcmp(argv[0], "run") == 0) {
        printf("usage: gretel run [-c FILE] [-o KEY=VALUE]...\n"
               "Runs the proxy in the foreground with the config from FILE (or the embedded\n"
               "defaults), overridden by each -o. Exit 0 on SIGTERM/SIGINT after draining,\n"
               "2 on a bad config or a listen address that cannot be bound.\n");
        return 0;
    }
    if (argc > 0 && strcmp(argv[0], "check") == 0) {
        printf("usage: gretel check [-c FILE] [-o KEY=VALUE]... [RULEFILE...]\n"
               "Validates the config and checks each rule/list file can be read. Prints\n"
               "FILE:LINE:COL: error: MESSAGE per problem and a summary line.\n"
               "Exit 0 when clean, 1 when errors were found.\n");
        return 0;
    }
    fputs(usage, stdout);
    return 0;
}

int gt_cmd_version(int argc, char **argv)
{
    (void)argc, (void)argv;
    printf("gretel %s\n", GT_VERSION);
    return 0;
}
