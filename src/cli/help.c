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
    "  check [FILE...]     validate the config, lint the rule files, check list files\n"
    "  explain URL         the decision for one request, rule by rule (--batch FILE)\n"
    "  mark KEY            mark a product (SCOPE:ID) as bought [--label T] [--ttl DAYS]\n"
    "  unmark KEY          remove it from the bought list\n"
    "  bought              list bought products [--json]; bought export [FILE];\n"
    "                      bought import FILE\n"
    "  ca init|show|export the local CA for TLS interception (mitm = on); init\n"
    "                      [--force] [--p384], export [FILE] writes its certificate\n"
    "  version             print the version\n"
    "  help [COMMAND]      this text; `help config` lists every config key\n"
    "\n"
    "options (after the command name):\n"
    "  -c FILE             read the config from FILE (default: embedded defaults)\n"
    "  -o KEY=VALUE        override a config key for this run; repeatable;\n"
    "                      for a list key the first -o replaces, later ones add,\n"
    "                      and KEY= clears it\n"
    "\n"
    "signals (run): SIGHUP re-reads the config and rules (rule files are also watched),\n"
    "SIGTERM/SIGINT drain and exit 0. Rule language: docs/RULES.md\n"
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
               "Validates the config, compiles the rule files (the configured ones, or only\n"
               "the RULEFILEs given) and lints them: syntax, unknown options, invalid regexes\n"
               "(PCRE2's message at the column), duplicate and unreachable rules, regexes at\n"
               "risk of catastrophic backtracking. Checks list files can be read. Prints\n"
               "FILE:LINE:COL: error|warning: MESSAGE per problem and a summary line.\n"
               "Exit 0 without errors (warnings allowed), 1 with errors.\n");
        return 0;
    }
    if (argc > 0 && strcmp(argv[0], "explain") == 0) {
        printf("usage: gretel explain [-c FILE] [-o KEY=VALUE]... URL [--referer URL]\n"
               "                      [--type TYPE] [--method M] [--body FILE-OR-DASH]\n"
               "       gretel explain [-c FILE] [-o KEY=VALUE]... --batch FILE-OR-DASH\n"
               "Prints the decision for a request: action, the deciding rule (file:line and\n"
               "text) with every condition it evaluated, the rule an allow overrides, the\n"
               "local response, product keys (and whether bought), rewrites, log rules.\n"
               "--method CONNECT shows what an HTTPS request (host only) gets.\n"
               "--body gives the request that body for body~ rules (a POST by default).\n"
               "--batch reads URL<TAB>REFERER<TAB>TYPE[<TAB>METHOD] lines and prints\n"
               "DECISION<TAB>RULE<TAB>PRODUCT-KEYS<TAB>URL per line, rules loaded once.\n"
               "TYPE: document subdocument script image stylesheet xmlhttprequest ping media\n"
               "font websocket object other (aliases main_frame sub_frame xhr fetch beacon\n"
               "imageset); empty: from the path's extension. Exit 0; 2 on unreadable input.\n");
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
