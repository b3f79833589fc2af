/* The config key table: the single place where a key's name, type, default, bounds and
 * parser live. Setters parse one value into a gt_config and never log. Adding a key here
 * makes it known to the file parser, `-o`, `gretel check` and `gretel help config`. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

#include "gretel/config.h"
#include "gretel/log.h"
#include "internal.h"

static int fail(char *err, size_t errlen, const char *msg, gt_slice v)
{
    snprintf(err, errlen, "%s: '%.*s'", msg, (int)(v.len > 80 ? 80 : v.len), v.p);
    return GT_EINVAL;
}

void gt_config_strlist_append(gt_strlist *l, const char *value)
{
    gt_config_strlist_add(l, gt_slice_cstr(value));
}

void gt_config_strlist_add(gt_strlist *l, gt_slice v)
{
    l->v = gt_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = gt_xslicedup(v);
}

static void strlist_clear(gt_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    gt_free(&l->v);
    l->n = 0;
}

static int set_str(char **dst, gt_slice v)
{
    free(*dst);
    *dst = gt_xslicedup(v);
    return GT_OK;
}

static int parse_bool(gt_slice v, bool *out, char *err, size_t errlen)
{
    if (gt_slice_caseeq(v, GT_S("on")) || gt_slice_caseeq(v, GT_S("yes")) ||
        gt_slice_caseeq(v, GT_S("true")) || gt_slice_eq(v, GT_S("1")))
        *out = true;
    else if (gt_slice_caseeq(v, GT_S("off")) || gt_slice_caseeq(v, GT_S("no")) ||
             gt_slice_caseeq(v, GT_S("false")) || gt_slice_eq(v, GT_S("0")))
        *out = false;
    else
        return fail(err, errlen, "expected on or off", v);
    return GT_OK;
}

static int parse_uint(gt_slice v, unsigned min, unsigned max, unsigned *out, char *err,
                      size_t errlen)
{
    uint64_t x;
    if (gt_parse_u64(v, UINT32_MAX, &x) < 0)
        return fail(err, errlen, "expected a whole number", v);
    if (x < min || x > max) {
        snprintf(err, errlen, "%llu is out of range (%u..%u)", (unsigned long long)x, min, max);
        return GT_EINVAL;
    }
    *out = (unsigned)x;
    return GT_OK;
}

/* Durations: "30" or "30s", "500ms", "2m", "1h". Stored in milliseconds. */
static int parse_duration(gt_slice v, unsigned min_ms, unsigned max_ms, unsigned *out, char *err,
                          size_t errlen)
{
    size_t i = 0;
    while (i < v.len && v.p[i] >= '0' && v.p[i] <= '9')
        i++;
    uint64_t n, mult;
    if (gt_parse_u64(gt_slice_make(v.p, i), 1000000000ull, &n) < 0)
        return fail(err, errlen, "expected a duration such as 10s, 500ms, 2m", v);
    gt_slice unit = gt_slice_make(v.p + i, v.len - i);
    if (unit.len == 0 || gt_slice_eq(unit, GT_S("s")))
        mult = 1000;
    else if (gt_slice_eq(unit, GT_S("ms")))
        mult = 1;
    else if (gt_slice_eq(unit, GT_S("m")))
        mult = 60000;
    else if (gt_slice_eq(unit, GT_S("h")))
        mult = 3600000;
    else
        return fail(err, errlen, "unknown duration unit (ms, s, m, h)", v);
    uint64_t ms = n * mult;
    if (ms < min_ms || ms > max_ms) {
        snprintf(err, errlen, "duration out of range (%ums..%ums)", min_ms, max_ms);
        return GT_EINVAL;
    }
    *out = (unsigned)ms;
    return GT_OK;
}

static int set_listen(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    gt_sockaddr a;
    if (gt_sockaddr_parse(v, false, &a) < 0)
        return fail(err, errlen, "expected ADDRESS:PORT or [IPV6]:PORT", v);
    c->listen = gt_xrealloc(c->listen, (c->nlisten + 1) * sizeof(*c->listen));
    c->listen[c->nlisten++] = a;
    return GT_OK;
}
static void clear_listen(gt_config *c)
{
    gt_free(&c->listen);
    c->nlisten = 0;
}

static int set_allow(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    gt_cidr a;
    if (gt_cidr_parse(v, &a) < 0)
        return fail(err, errlen, "expected an address or CIDR such as 192.168.1.0/24", v);
    c->allow_clients =
        gt_xrealloc(c->allow_clients, (c->nallow_clients + 1) * sizeof(*c->allow_clients));
    c->allow_clients[c->nallow_clients++] = a;
    return GT_OK;
}
static void clear_allow(gt_config *c)
{
    gt_free(&c->allow_clients);
    c->nallow_clients = 0;
}

static int set_rules(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    gt_config_strlist_add(&c->rules, v);
    c->rules_set = true;
    return GT_OK;
}
static void clear_rules(gt_config *c)
{
    strlist_clear(&c->rules);
    c->rules_set = true;
}
static int set_rule_groups(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    gt_slice name = v;
    if (name.len && (name.p[0] == '-' || name.p[0] == '+'))
        name = gt_slice_make(name.p + 1, name.len - 1);
    if (!name.len)
        return fail(err, errlen, "expected a group name, +name or -name", v);
    gt_config_strlist_add(&c->rule_groups, v);
    return GT_OK;
}
static void clear_rule_groups(gt_config *c)
{
    strlist_clear(&c->rule_groups);
}
static int set_rules_watch(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    return parse_bool(v, &c->rules_watch, err, errlen);
}
static int set_lists(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    gt_config_strlist_add(&c->lists, v);
    c->lists_set = true;
    return GT_OK;
}
static void clear_lists(gt_config *c)
{
    strlist_clear(&c->lists);
    c->lists_set = true;
}

static bool valid_host_pattern(gt_slice h)
{
    if (h.len == 0 || h.len > 253)
        return false;
    for (size_t i = 0; i < h.len; i++) {
        char ch = h.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_'))
            return false;
    }
    return true;
}

static int set_resolve(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    const char *eq = memchr(v.p, '=', v.len);
    if (!eq)
        return fail(err, errlen, "expected HOST=ADDRESS", v);
    gt_slice name = gt_slice_trim(gt_slice_make(v.p, (size_t)(eq - v.p)));
    gt_slice addr = gt_slice_trim(gt_slice_make(eq + 1, (size_t)(v.p + v.len - eq - 1)));
    gt_resolve_rule r = {0};
    if (gt_slice_eq(name, GT_S("*"))) {
        r.kind = GT_RESOLVE_ANY;
        name = GT_S("");
    } else if (name.len > 2 && name.p[0] == '*' && name.p[1] == '.') {
        r.kind = GT_RESOLVE_SUFFIX;
        name = gt_slice_make(name.p + 2, name.len - 2);
    } else {
        r.kind = GT_RESOLVE_EXACT;
    }
    if (r.kind != GT_RESOLVE_ANY && !valid_host_pattern(name))
        return fail(err, errlen, "invalid host name (use NAME, *.SUFFIX or *)", name);
    if (gt_sockaddr_parse(addr, true, &r.addr) < 0)
        return fail(err, errlen, "expected an IP address, optionally with :PORT", addr);
    r.name = gt_xslicedup(name);
    for (char *p = r.name; *p; p++)
        *p = gt_ascii_lower(*p);
    size_t nl = strlen(r.name);
    if (nl && r.name[nl - 1] == '.')
        r.name[nl - 1] = '\0';
    c->resolve = gt_xrealloc(c->resolve, (c->nresolve + 1) * sizeof(*c->resolve));
    c->resolve[c->nresolve++] = r;
    return GT_OK;
}
static void clear_resolve(gt_config *c)
{
    for (size_t i = 0; i < c->nresolve; i++)
        free(c->resolve[i].name);
    gt_free(&c->resolve);
    c->nresolve = 0;
}

static int set_forward(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    gt_free(&c->forward_host);
    c->forward_kind = GT_FORWARD_NONE;
    c->forward_port = 0;
    if (v.len == 0 || gt_slice_eq(v, GT_S("none")))
        return GT_OK;
    gt_slice rest;
    enum gt_forward_kind kind;
    if (v.len > 7 && gt_slice_caseeq(gt_slice_make(v.p, 7), GT_S("http://"))) {
        kind = GT_FORWARD_HTTP;
        rest = gt_slice_make(v.p + 7, v.len - 7);
    } else if (v.len > 9 && gt_slice_caseeq(gt_slice_make(v.p, 9), GT_S("socks5://"))) {
        kind = GT_FORWARD_SOCKS5;
        rest = gt_slice_make(v.p + 9, v.len - 9);
    } else {
        return fail(err, errlen, "expected http://HOST:PORT or socks5://HOST:PORT", v);
    }
    if (rest.len && rest.p[rest.len - 1] == '/')
        rest.len--;
    /* host:port, host may be [v6] */
    const char *colon = NULL;
    for (size_t i = rest.len; i > 0; i--)
        if (rest.p[i - 1] == ':') {
            colon = rest.p + i - 1;
            break;
        }
    if (!colon || (rest.p[0] == '[' && colon[-1] != ']'))
        return fail(err, errlen, "forward needs an explicit port", v);
    gt_slice host = gt_slice_make(rest.p, (size_t)(colon - rest.p));
    gt_slice port = gt_slice_make(colon + 1, (size_t)(rest.p + rest.len - colon - 1));
    uint64_t pn;
    if (gt_parse_u64(port, 65535, &pn) < 0 || pn == 0)
        return fail(err, errlen, "invalid port", port);
    if (host.len >= 2 && host.p[0] == '[') {
        host.p++;
        host.len -= 2;
    }
    if (host.len == 0 || memchr(host.p, '@', host.len) || memchr(host.p, '/', host.len))
        return fail(err, errlen, "invalid parent proxy host", host);
    c->forward_kind = kind;
    c->forward_host = gt_xslicedup(host);
    c->forward_port = (uint16_t)pn;
    return GT_OK;
}

static int set_store(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return set_str(&c->store, v);
}
static int set_ca_dir(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return set_str(&c->ca_dir, v);
}
static int set_upstream_ca(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return set_str(&c->upstream_ca_file, v);
}
static int set_admin_password(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return set_str(&c->admin_password, v);
}
static int set_mitm(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    return parse_bool(v, &c->mitm, err, errlen);
}
static int set_http2(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    return parse_bool(v, &c->http2, err, errlen);
}
static int set_bypass(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    if (!valid_host_pattern(v) && !(v.len > 0 && memchr(v.p, '*', v.len)))
        return fail(err, errlen, "expected a host glob such as *.bank.example", v);
    gt_config_strlist_add(&c->mitm_bypass, v);
    return GT_OK;
}
static void clear_bypass(gt_config *c)
{
    strlist_clear(&c->mitm_bypass);
}
static int set_ports(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    uint64_t p;
    if (gt_parse_u64(v, 65535, &p) < 0 || p == 0)
        return fail(err, errlen, "expected a port number 1..65535", v);
    c->connect_ports =
        gt_xrealloc(c->connect_ports, (c->nconnect_ports + 1) * sizeof(*c->connect_ports));
    c->connect_ports[c->nconnect_ports++] = (uint16_t)p;
    return GT_OK;
}
static void clear_ports(gt_config *c)
{
    gt_free(&c->connect_ports);
    c->nconnect_ports = 0;
}
static int set_automark(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    return parse_bool(v, &c->auto_mark_purchases, err, errlen);
}
static int set_page_products(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    return parse_bool(v, &c->page_products, err, errlen);
}
static int set_log_level(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    int l = gt_log_level_parse(v.p, v.len);
    if (l < 0)
        return fail(err, errlen, "expected error, warn, info or debug", v);
    c->log_level = l;
    return GT_OK;
}
static int set_loopback(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    if (gt_slice_caseeq(v, GT_S("auto")))
        c->loopback_upstream = GT_LOOPBACK_AUTO;
    else if (gt_slice_caseeq(v, GT_S("on")))
        c->loopback_upstream = GT_LOOPBACK_ON;
    else if (gt_slice_caseeq(v, GT_S("off")))
        c->loopback_upstream = GT_LOOPBACK_OFF;
    else
        return fail(err, errlen, "expected auto, on or off", v);
    return GT_OK;
}

static int set_dns(gt_config *c, gt_slice v, char *err, size_t errlen)
{
    gt_sockaddr a;
    if (gt_sockaddr_parse(v, true, &a) < 0)
        return fail(err, errlen, "expected a name server IP address, optionally with :PORT", v);
    gt_config_strlist_add(&c->dns_servers, v);
    return GT_OK;
}
static void clear_dns(gt_config *c)
{
    strlist_clear(&c->dns_servers);
}

#define UINT_SETTER(fn, field, lo, hi)                                                             \
    static int fn(gt_config *c, gt_slice v, char *err, size_t errlen)                              \
    {                                                                                              \
        return parse_uint(v, (lo), (hi), &c->field, err, errlen);                                  \
    }
#define DURATION_SETTER(fn, field, lo, hi)                                                         \
    static int fn(gt_config *c, gt_slice v, char *err, size_t errlen)                              \
    {                                                                                              \
        return parse_duration(v, (lo), (hi), &c->field, err, errlen);                              \
    }

UINT_SETTER(set_workers, workers, 0, 256)
UINT_SETTER(set_max_conns, max_connections, 1, 1000000)
UINT_SETTER(set_max_header_size, max_header_size, 1024, 1048576)
UINT_SETTER(set_body_inspect_max, body_inspect_max, 0, 1048576)
UINT_SETTER(set_max_headers, max_headers, 8, 1000)
UINT_SETTER(set_pool_max_idle, pool_max_idle, 0, 100000)
UINT_SETTER(set_h2_streams, h2_max_concurrent_streams, 1, 10000)
UINT_SETTER(set_h2_window, h2_window, 65535, 1073741823)
DURATION_SETTER(set_header_timeout, header_timeout_ms, 100, 3600000)
DURATION_SETTER(set_idle_timeout, idle_timeout_ms, 100, 86400000)
DURATION_SETTER(set_connect_timeout, connect_timeout_ms, 100, 600000)
DURATION_SETTER(set_upstream_timeout, upstream_timeout_ms, 100, 86400000)
DURATION_SETTER(set_tunnel_idle_timeout, tunnel_idle_timeout_ms, 1000, 86400000)
DURATION_SETTER(set_drain_timeout, drain_timeout_ms, 0, 3600000)
DURATION_SETTER(set_pool_idle_timeout, pool_idle_timeout_ms, 100, 3600000)

const cfg_key gt_config_keys[] = {
    {"listen", "address list", "127.0.0.1:8119", set_listen, clear_listen,
     "address:port to listen on; [::1]:8119 for IPv6; may repeat"},
    {"allow_clients", "CIDR list", "127.0.0.1/8, ::1/128", set_allow, clear_allow,
     "client addresses allowed to use the proxy; others get 403 and a log line"},
    {"store", "path", "", set_store, NULL,
     "LMDB directory for bought products and cached certificates "
     "(default $XDG_DATA_HOME/gretel, else ~/.local/share/gretel)"},
    {"rules", "path list", "", set_rules, clear_rules,
     "gretel rule files or globs (default: the installed rules/*.rules)"},
    {"rule_groups", "group list", "", set_rule_groups, clear_rule_groups,
     "rule groups to switch: NAME or +NAME enables a group declared off, -NAME disables one"},
    {"rules_watch", "on/off", "on", set_rules_watch, NULL,
     "reload the rules and lists when a rule or list file changes (checked every second; "
     "SIGHUP always works)"},
    {"lists", "path list", "", set_lists, clear_lists,
     "Adblock Plus / EasyList / hosts-format list files; when the key is absent, Debian's "
     "EasyList and EasyPrivacy (webext-ublock-origin-chromium) if installed; `lists =` "
     "turns lists off"},
    {"resolve", "HOST=ADDR list", "", set_resolve, clear_resolve,
     "upstream name override: NAME=ADDR, *.SUFFIX=ADDR or *=ADDR; ADDR may carry :PORT"},
    {"forward", "URL", "", set_forward, NULL,
     "parent proxy for allowed traffic: http://host:port or socks5://host:port"},
    {"mitm", "on/off", "off", set_mitm, NULL,
     "intercept TLS of CONNECT tunnels with the local CA (not in mitm_bypass)"},
    {"mitm_bypass", "host glob list", "", set_bypass, clear_bypass,
     "hosts never intercepted (pinned apps, banks)"},
    {"http2", "on/off", "on", set_http2, NULL,
     "HTTP/2 on intercepted connections: ALPN h2 to browsers, one shared session per origin"},
    {"h2_max_concurrent_streams", "number", "100", set_h2_streams, NULL,
     "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS offered to clients"},
    {"h2_window", "bytes", "262144", set_h2_window, NULL,
     "HTTP/2 initial stream window on both legs (what one stream may buffer each way)"},
    {"ca_dir", "path", "", set_ca_dir, NULL, "local CA key (0600) and certificate (default <store>/ca)"},
    {"upstream_ca_file", "path", "", set_upstream_ca, NULL,
     "extra CA bundle trusted, besides the system store, to verify origin servers"},
    {"connect_ports", "port list", "443", set_ports, clear_ports,
     "ports a CONNECT may reach; others get 403"},
    {"page_products", "on/off", "on", set_page_products, NULL,
     "read the schema.org Product ids of pages as they load (kept in memory for \"I bought "
     "this\" on that page); asks for pages in gzip or deflate, which gretel can read"},
    {"auto_mark_purchases", "on/off", "on", set_automark, NULL,
     "purchase pixels seen through the proxy mark their products as bought, locally"},
    {"admin_password", "text", "", set_admin_password, NULL,
     "when set, changing the bought list on the control page (http://gretel.proxy/) needs "
     "it (HTTP Basic, any user name); reading does not"},
    {"log_level", "level", "info", set_log_level, NULL,
     "error, warn, info or debug; full URLs are logged only at debug"},
    {"loopback_upstream", "auto/on/off", "auto", set_loopback, NULL,
     "may clients reach servers on gretel's own machine (127.0.0.0/8, ::1)? auto: only "
     "clients on this machine; `resolve` overrides and parent proxies are always allowed"},
    {"workers", "number", "0", set_workers, NULL,
     "worker threads, each with its own event loop and listener; 0: one per core"},
    {"max_connections", "number", "4096", set_max_conns, NULL,
     "open client connections; past this a client gets 503 and the connection is closed"},
    {"max_header_size", "bytes", "65536", set_max_header_size, NULL,
     "largest request or response header block; larger requests get 431"},
    {"body_inspect_max", "bytes", "65536", set_body_inspect_max, NULL,
     "request bodies up to this size (Content-Length) are read before the rules decide, "
     "when a rule has a body~ condition; 0: never"},
    {"max_headers", "number", "128", set_max_headers, NULL,
     "most header fields in one request or response; more get 431"},
    {"header_timeout", "duration", "10s", set_header_timeout, NULL,
     "time allowed to receive a whole request header block (from its first byte)"},
    {"idle_timeout", "duration", "60s", set_idle_timeout, NULL,
     "how long an idle keep-alive client connection is kept"},
    {"connect_timeout", "duration", "10s", set_connect_timeout, NULL,
     "time allowed for DNS plus the TCP connect to an origin (then 504)"},
    {"upstream_timeout", "duration", "60s", set_upstream_timeout, NULL,
     "longest silence from an origin while a response is awaited or relayed (then 504)"},
    {"tunnel_idle_timeout", "duration", "10m", set_tunnel_idle_timeout, NULL,
     "a CONNECT tunnel with no traffic either way for this long is closed"},
    {"drain_timeout", "duration", "10s", set_drain_timeout, NULL,
     "on SIGTERM/SIGINT, how long in-flight requests may finish before exit"},
    {"pool_idle_timeout", "duration", "30s", set_pool_idle_timeout, NULL,
     "how long an idle upstream keep-alive connection is kept for reuse"},
    {"pool_max_idle", "number", "256", set_pool_max_idle, NULL,
     "idle upstream connections kept per worker (0 disables the pool)"},
    {"dns_servers", "address list", "", set_dns, clear_dns,
     "name servers for evdns (default: those in /etc/resolv.conf)"},
};
const size_t gt_config_nkeys = sizeof(gt_config_keys) / sizeof(gt_config_keys[0]);
/* config.c keeps a per-layer "touched" flag per key in a fixed array of 64. */
_Static_assert(sizeof(gt_config_keys) / sizeof(gt_config_keys[0]) <= 64, "too many config keys");

const cfg_key *gt_config_key_find(gt_slice name)
{
    for (size_t i = 0; i < gt_config_nkeys; i++)
        if (gt_slice_eq(name, gt_slice_cstr(gt_config_keys[i].name)))
            return &gt_config_keys[i];
    return NULL;
}

void gt_config_free_fields(gt_config *c)
{
    for (size_t i = 0; i < gt_config_nkeys; i++)
        if (gt_config_keys[i].clear)
            gt_config_keys[i].clear(c);
    gt_free(&c->forward_host);
    gt_free(&c->store);
    gt_free(&c->ca_dir);
    gt_free(&c->upstream_ca_file);
    gt_free(&c->admin_password);
    gt_free(&c->file);
}

size_t gt_config_key_count(void)
{
    return gt_config_nkeys;
}

int gt_config_key_get(size_t i, gt_config_key_info *out)
{
    if (i >= gt_config_nkeys)
        return GT_ENOTFOUND;
    out->name = gt_config_keys[i].name;
    out->type = gt_config_keys[i].type;
    out->def = gt_config_keys[i].def;
    out->doc = gt_config_keys[i].doc;
    return GT_OK;
}
