/* gretel's configuration: one immutable struct per load, built from the embedded defaults,
 * then conf file lines, then `-o KEY=VALUE` overrides. One table (src/util/config_keys.c)
 * lists every key with its type, default, bounds and setter; it drives the file parser, the
 * overrides, `gretel check` and `gretel help config`. */
#ifndef GT_CONFIG_H
#define GT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gretel/util.h"

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* as written back: 127.0.0.1:8119 or [::1]:8119 */
} gt_sockaddr;

typedef struct {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} gt_cidr;

enum gt_resolve_kind { GT_RESOLVE_EXACT, GT_RESOLVE_SUFFIX, GT_RESOLVE_ANY };

typedef struct {
    enum gt_resolve_kind kind;
    char *name;       /* lower case; for SUFFIX without the leading "*." */
    gt_sockaddr addr; /* port 0 keeps the request's port */
} gt_resolve_rule;

typedef struct {
    char **v;
    size_t n;
} gt_strlist;

enum gt_forward_kind { GT_FORWARD_NONE, GT_FORWARD_HTTP, GT_FORWARD_SOCKS5 };

/* Who may reach origins on gretel's own machine (loopback addresses) through it. */
enum gt_loopback_policy { GT_LOOPBACK_AUTO, GT_LOOPBACK_ON, GT_LOOPBACK_OFF };

typedef struct gt_config {
    char *file; /* the file this was read from, or NULL for embedded defaults */

    gt_sockaddr *listen;
    size_t nlisten;
    gt_cidr *allow_clients;
    size_t nallow_clients;
    gt_strlist rules, lists, mitm_bypass, dns_servers;
    bool rules_set;        /* rules came from the file or -o (else the installed defaults) */
    bool lists_set;        /* lists came from the file or -o (`lists =` turns them off) */
    bool lists_default;    /* lists are Debian's EasyList + EasyPrivacy, by default */
    gt_strlist rule_groups; /* "name"/"+name" enables, "-name" disables a rule group */
    bool rules_watch;       /* reload when a rule file changes */
    gt_resolve_rule *resolve;
    size_t nresolve;
    enum gt_forward_kind forward_kind;
    char *forward_host;
    uint16_t forward_port;
    char *store, *ca_dir, *upstream_ca_file;
    char *admin_password; /* NULL/empty: changes on the control page need no password */
    bool mitm, auto_mark_purchases;
    bool page_products; /* sniff schema.org Product ids from document responses */
    uint16_t *connect_ports;
    size_t nconnect_ports;
    int log_level;
    enum gt_loopback_policy loopback_upstream;

    /* Tuning keys beyond the contract (docs/CONFIG in README). */
    unsigned workers; /* 0: one per core */
    unsigned max_connections;
    unsigned max_header_size;
    unsigned body_inspect_max; /* bodies read before deciding when rules look at bodies */
    unsigned max_headers;
    unsigned header_timeout_ms, idle_timeout_ms, connect_timeout_ms, upstream_timeout_ms,
        tunnel_idle_timeout_ms, drain_timeout_ms, pool_idle_timeout_ms;
    unsigned pool_max_idle;
    bool http2;                         /* ALPN h2 on intercepted connections */
    unsigned h2_max_concurrent_streams; /* SETTINGS towards clients */
    unsigned h2_window;
} gt_config;

/* Appends a copy of value to a string list of a loaded config (commands adjusting it
 * for themselves, e.g. `mark` enabling the shops rule group). */
void gt_config_strlist_append(gt_strlist *l, const char *value);

/* One `KEY=VALUE` given on the command line, applied after the file. */
typedef struct {
    const char *key;
    size_t key_len;
    const char *value;
} gt_config_override;

/* Where Debian's webext-ublock-origin-chromium keeps EasyList and EasyPrivacy: the default
 * lists when the config names none. */
#define GT_DEBIAN_EASYLIST_DIR                                                                     \
    "/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist"

/* Builds a config: embedded defaults, then `file` (NULL: none), then the overrides in order.
 * On success *out is a new config owned by the caller (gt_config_free). On error returns
 * GT_EINVAL with every problem appended to `diags` as FILE:LINE:COL (the overrides are
 * reported as file "-o", line = position on the command line). */
int gt_config_load(gt_config **out, const char *file, const gt_config_override *ov, size_t nov,
                   gt_diags *diags);
void gt_config_free(gt_config *cfg);

/* Parses "ADDR:PORT" / "[V6]:PORT"; with allow_no_port, "ADDR" alone (port 0). */
int gt_sockaddr_parse(gt_slice s, bool allow_no_port, gt_sockaddr *out);
/* Formats an address as text ("1.2.3.4:80", "[::1]:80"). */
void gt_sockaddr_format(const struct sockaddr *sa, char *buf, size_t len);
int gt_cidr_parse(gt_slice s, gt_cidr *out);
bool gt_cidr_match(const gt_cidr *c, const struct sockaddr *sa);
/* True when a client address falls in any allow_clients range. */
bool gt_config_client_allowed(const gt_config *cfg, const struct sockaddr *sa);
bool gt_config_connect_port_allowed(const gt_config *cfg, unsigned port);
/* True for addresses that reach this machine itself: 127.0.0.0/8, ::1, the unspecified
 * addresses and their IPv4-mapped forms. */
bool gt_sockaddr_is_loopback(const struct sockaddr *sa);
/* The override for a host name (lower-case, no trailing dot), or NULL. Exact names beat the
 * longest `*.suffix`, which beats `*`. */
const gt_resolve_rule *gt_config_resolve_lookup(const gt_config *cfg, gt_slice host);

/* Describes one key of the table, for help and docs. */
typedef struct {
    const char *name, *type, *def, *doc;
} gt_config_key_info;
size_t gt_config_key_count(void);
/* Fills *out for key i (0..count-1); returns GT_ENOTFOUND past the end. */
int gt_config_key_get(size_t i, gt_config_key_info *out);

/* Sets inih's process-wide parsing options; call once at start, before threads exist. */
void gt_config_global_init(void);

#endif
