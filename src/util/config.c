/* Loads a gt_config: embedded defaults, the conf file (parsed by inih), then -o overrides.
 * Owns nothing after return; every problem becomes a FILE:LINE:COL diagnostic. Never logs.
 * Also holds the address, CIDR and resolve-override helpers that read a config. */
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "gretel/config.h"
#include "gretel/log.h"
#include "internal.h"

/* Longest conf line; longer lines are reported, not truncated silently. */
#define CONF_MAX_LINE 16384
/* Largest conf file read; gretel's own conf is a few KiB. */
#define CONF_MAX_FILE (4u << 20)

void gt_config_global_init(void)
{
    /* Debian's libinih exposes its options as variables; gretel sets them once, before any
     * thread exists. `#` starts a comment anywhere after whitespace; no continuation lines. */
    ini_allow_multiline = false;
    ini_allow_inline_comments = true;
    ini_inline_comment_prefixes = "#;";
    ini_start_comment_prefixes = "#;";
    ini_use_stack = false;
    ini_allow_realloc = false;
    ini_max_line = CONF_MAX_LINE + 3;
    ini_stop_on_first_error = false;
    ini_allow_no_value = false;
}

/* --- addresses --- */

int gt_sockaddr_parse(gt_slice s, bool allow_no_port, gt_sockaddr *out)
{
    char host[64];
    gt_slice h, port = GT_S("");
    memset(out, 0, sizeof(*out));
    if (s.len && s.p[0] == '[') {
        const char *rb = memchr(s.p, ']', s.len);
        if (!rb)
            return GT_EINVAL;
        h = gt_slice_make(s.p + 1, (size_t)(rb - s.p - 1));
        gt_slice after = gt_slice_make(rb + 1, (size_t)(s.p + s.len - rb - 1));
        if (after.len) {
            if (after.p[0] != ':')
                return GT_EINVAL;
            port = gt_slice_make(after.p + 1, after.len - 1);
            if (port.len == 0)
                return GT_EINVAL;
        }
    } else {
        const char *colon = memchr(s.p, ':', s.len);
        if (colon && memchr(colon + 1, ':', (size_t)(s.p + s.len - colon - 1))) {
            h = s; /* bare IPv6 without brackets: no port */
        } else if (colon) {
            h = gt_slice_make(s.p, (size_t)(colon - s.p));
            port = gt_slice_make(colon + 1, (size_t)(s.p + s.len - colon - 1));
            if (port.len == 0)
                return GT_EINVAL;
        } else {
            h = s;
        }
    }
    uint64_t pn = 0;
    if (port.len && (gt_parse_u64(port, 65535, &pn) < 0))
        return GT_EINVAL;
    if (!port.len && !allow_no_port)
        return GT_EINVAL;
    if (h.len == 0 || h.len >= sizeof(host))
        return GT_EINVAL;
    memcpy(host, h.p, h.len);
    host[h.len] = '\0';
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)pn);
        out->len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)pn);
        out->len = sizeof(*v6);
    } else {
        return GT_EINVAL;
    }
    gt_sockaddr_format((struct sockaddr *)&out->ss, out->text, sizeof(out->text));
    return GT_OK;
}

void gt_sockaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, a, sizeof(a));
        snprintf(buf, len, "%s:%u", a, ntohs(v4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, a, sizeof(a));
        snprintf(buf, len, "[%s]:%u", a, ntohs(v6->sin6_port));
    } else {
        snprintf(buf, len, "unix");
    }
}

int gt_cidr_parse(gt_slice s, gt_cidr *out)
{
    char host[64];
    memset(out, 0, sizeof(*out));
    const char *slash = memchr(s.p, '/', s.len);
    gt_slice h = slash ? gt_slice_make(s.p, (size_t)(slash - s.p)) : s;
    if (h.len == 0 || h.len >= sizeof(host))
        return GT_EINVAL;
    memcpy(host, h.p, h.len);
    host[h.len] = '\0';
    unsigned maxp;
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        maxp = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        maxp = 128;
    } else {
        return GT_EINVAL;
    }
    uint64_t p = maxp;
    if (slash && gt_parse_u64(gt_slice_make(slash + 1, (size_t)(s.p + s.len - slash - 1)), maxp,
                              &p) < 0)
        return GT_EINVAL;
    out->prefix = (unsigned)p;
    return GT_OK;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rem = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

bool gt_cidr_match(const gt_cidr *c, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        if (c->family == AF_INET)
            return prefix_match(a, c->addr, c->prefix);
        return false;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (c->family == AF_INET6)
            return prefix_match(a, c->addr, c->prefix);
        /* An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d; match it against
         * IPv4 ranges so allow_clients means the same on either kind of listener. */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (c->family == AF_INET && memcmp(a, mapped, 12) == 0)
            return prefix_match(a + 12, c->addr, c->prefix);
    }
    return false;
}

bool gt_config_client_allowed(const gt_config *cfg, const struct sockaddr *sa)
{
    for (size_t i = 0; i < cfg->nallow_clients; i++)
        if (gt_cidr_match(&cfg->allow_clients[i], sa))
            return true;
    return false;
}

bool gt_sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return (a >> 24) == 127 || a == 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            const uint8_t *b = a->s6_addr + 12;
            return b[0] == 127 || (b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0);
        }
    }
    return false;
}

bool gt_config_connect_port_allowed(const gt_config *cfg, unsigned port)
{
    for (size_t i = 0; i < cfg->nconnect_ports; i++)
        if (cfg->connect_ports[i] == port)
            return true;
    return false;
}

const gt_resolve_rule *gt_config_resolve_lookup(const gt_config *cfg, gt_slice host)
{
    const gt_resolve_rule *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < cfg->nresolve; i++) {
        const gt_resolve_rule *r = &cfg->resolve[i];
        gt_slice name = gt_slice_cstr(r->name);
        switch (r->kind) {
        case GT_RESOLVE_EXACT:
            if (gt_slice_caseeq(host, name))
                return r;
            break;
        case GT_RESOLVE_SUFFIX:
            /* "*.example" matches "a.example" and "example" itself is not matched: the star
             * stands for at least one label, as in certificate wildcards. */
            if (host.len > name.len + 1 && host.p[host.len - name.len - 1] == '.' &&
                gt_slice_caseeq(gt_slice_make(host.p + host.len - name.len, name.len), name) &&
                name.len + 1 > best_len) {
                best = r;
                best_len = name.len + 1;
            }
            break;
        case GT_RESOLVE_ANY:
            if (!best)
                best = r;
            break;
        }
    }
    return best;
}

/* --- loading --- */

typedef struct {
    gt_config *cfg;
    gt_diags *diags;
    const char *file;
    /* the reader's view, so the handler knows the line and columns */
    const char *buf;
    size_t len, pos;
    unsigned lineno;
    const char *line;
    size_t line_len;
    /* list keys already set in the current layer: the first set replaces the lower layer */
    bool touched[64];
} load_ctx;

static unsigned col_of(const load_ctx *lc, const char *needle, size_t nlen)
{
    if (!lc->line || nlen == 0)
        return 1;
    for (size_t i = 0; i + nlen <= lc->line_len; i++)
        if (memcmp(lc->line + i, needle, nlen) == 0)
            return (unsigned)i + 1;
    return 1;
}

/* Applies one key=value. `col0` is the 1-based column of the value's first byte (0: unknown). */
static void apply(load_ctx *lc, const char *file, unsigned line, unsigned key_col, unsigned col0,
                  gt_slice key, gt_slice value)
{
    const cfg_key *k = gt_config_key_find(key);
    if (!k) {
        gt_diags_add(lc->diags, 0, file, line, key_col, "unknown key '%.*s'", (int)key.len,
                     key.p);
        return;
    }
    size_t idx = (size_t)(k - gt_config_keys);
    char err[256];
    value = gt_slice_trim(value);
    if (k->clear) {
        if (!lc->touched[idx]) {
            k->clear(lc->cfg);
            lc->touched[idx] = true;
        }
        gt_slice rest = value, item;
        if (value.len == 0)
            return; /* "KEY =" clears the list */
        while (gt_slice_next(&rest, ',', &item)) {
            gt_slice t = gt_slice_trim(item);
            unsigned col = col0 ? col0 + (unsigned)(t.p - value.p) : 0;
            if (t.len == 0) {
                gt_diags_add(lc->diags, 0, file, line, col, "empty item in list for '%s'",
                             k->name);
                continue;
            }
            err[0] = '\0';
            if (k->set(lc->cfg, t, err, sizeof(err)) < 0)
                gt_diags_add(lc->diags, 0, file, line, col, "%s: %s", k->name, err);
        }
        return;
    }
    if (value.len == 0)
        value = gt_slice_cstr(k->def);
    err[0] = '\0';
    if (k->set(lc->cfg, value, err, sizeof(err)) < 0)
        gt_diags_add(lc->diags, 0, file, line, col0, "%s: %s", k->name, err);
}

static char *reader(char *str, int num, void *stream)
{
    load_ctx *lc = stream;
    if (lc->pos >= lc->len)
        return NULL;
    const char *start = lc->buf + lc->pos;
    const char *nl = memchr(start, '\n', lc->len - lc->pos);
    size_t n = nl ? (size_t)(nl - start) + 1 : lc->len - lc->pos;
    lc->pos += n;
    lc->lineno++;
    lc->line = start;
    lc->line_len = n;
    while (lc->line_len && (start[lc->line_len - 1] == '\n' || start[lc->line_len - 1] == '\r'))
        lc->line_len--;
    if (memchr(start, '\0', lc->line_len)) {
        gt_diags_add(lc->diags, 0, lc->file, lc->lineno, 1, "NUL byte in config line");
        str[0] = '\n';
        str[1] = '\0';
        return str;
    }
    {
        /* inih would report only the first malformed line; gretel reports each. */
        size_t i = 0;
        while (i < lc->line_len && (start[i] == ' ' || start[i] == '\t'))
            i++;
        if (i < lc->line_len && start[i] == '[') {
            gt_diags_add(lc->diags, 0, lc->file, lc->lineno, (unsigned)i + 1,
                         "sections are not used in gretel.conf");
            str[0] = '\n';
            str[1] = '\0';
            return str;
        }
        if (i < lc->line_len && start[i] != '#' && start[i] != ';' &&
            !memchr(start, '=', lc->line_len) && !memchr(start, ':', lc->line_len)) {
            gt_diags_add(lc->diags, 0, lc->file, lc->lineno, (unsigned)i + 1,
                         "expected KEY = VALUE");
            str[0] = '\n';
            str[1] = '\0';
            return str;
        }
    }
    if (n >= (size_t)num) {
        gt_diags_add(lc->diags, 0, lc->file, lc->lineno, (unsigned)num,
                     "line longer than %d bytes; split a long list over repeated keys",
                     CONF_MAX_LINE);
        str[0] = '\n';
        str[1] = '\0';
        return str;
    }
    memcpy(str, start, n);
    str[n] = '\0';
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    load_ctx *lc = user;
    (void)section; /* section lines are reported by the reader; their keys still apply */
    gt_slice key = gt_slice_cstr(name), val = gt_slice_cstr(value);
    unsigned key_col = col_of(lc, key.p, key.len);
    unsigned val_col = val.len ? col_of(lc, val.p, val.len) : key_col;
    apply(lc, lc->file, lc->lineno, key_col, val_col, key, val);
    return 1;
}

static int read_file(const char *path, char **buf, size_t *len, gt_diags *diags)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        gt_diags_add(diags, 0, path, 0, 0, "cannot open: %s", strerror(errno));
        return GT_EIO;
    }
    size_t cap = 8192, n = 0;
    char *b = gt_xmalloc(cap);
    int rv = GT_OK;
    for (;;) {
        if (n == cap) {
            if (cap >= CONF_MAX_FILE) {
                gt_diags_add(diags, 0, path, 0, 0, "file larger than %u bytes", CONF_MAX_FILE);
                rv = GT_EINVAL;
                break;
            }
            cap *= 2;
            b = gt_xrealloc(b, cap);
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                gt_diags_add(diags, 0, path, 0, 0, "read error: %s", strerror(errno));
                rv = GT_EIO;
            }
            break;
        }
    }
    fclose(f);
    if (rv < 0)
        gt_free(&b);
    *buf = b;
    *len = n;
    return rv;
}

#ifndef GT_RULES_DIR
#define GT_RULES_DIR "/usr/local/share/gretel/rules"
#endif

static char *join_path(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = gt_xmalloc(la + lb + 1);
    memcpy(p, a, la);
    memcpy(p + la, b, lb + 1);
    return p;
}

/* The installed rules, or, for a binary still in a source tree's build/ (make run, tests),
 * the tree's rules/: a developer's edits then apply without an install. */
static void default_rules(gt_config *c)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            const char *ups[] = {"/../rules", "/../../rules"};
            size_t len = strlen(exe);
            bool in_build = (len >= 6 && strcmp(exe + len - 6, "/build") == 0) ||
                            (len >= 11 && strcmp(exe + len - 11, "/build/test") == 0);
            for (size_t i = 0; in_build && i < 2; i++) {
                char *p = join_path(exe, ups[i]);
                char *real = realpath(p, NULL);
                free(p);
                if (!real)
                    continue;
                char *mk = join_path(real, "/../Makefile");
                bool ours = access(mk, R_OK) == 0;
                free(mk);
                if (ours) {
                    char *glob = join_path(real, "/*.rules");
                    gt_config_strlist_add(&c->rules, gt_slice_cstr(glob));
                    free(glob);
                    free(real);
                    return;
                }
                free(real);
            }
        }
    }
    gt_config_strlist_add(&c->rules, GT_S(GT_RULES_DIR "/*.rules"));
}

/* What uBlock Origin blocks out of the box, from the package Debian keeps current: used when
 * the config names no lists (`lists =` turns them off). Both files or neither. */
static void default_lists(gt_config *c)
{
    static const char *const files[] = {GT_DEBIAN_EASYLIST_DIR "/easylist.txt",
                                        GT_DEBIAN_EASYLIST_DIR "/easyprivacy.txt"};
    for (size_t i = 0; i < 2; i++)
        if (access(files[i], R_OK) != 0)
            return;
    for (size_t i = 0; i < 2; i++)
        gt_config_strlist_add(&c->lists, gt_slice_cstr(files[i]));
    c->lists_default = true;
}

static void finalize(gt_config *c, gt_diags *diags, const char *file, bool had_errors)
{
    if (!c->rules_set)
        default_rules(c);
    if (!c->lists_set && c->lists.n == 0)
        default_lists(c);
    if (!c->store || !c->store[0]) {
        const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
        free(c->store);
        c->store = xdg && xdg[0] == '/'
                       ? join_path(xdg, "/gretel")
                       : join_path(home && home[0] ? home : "/tmp", "/.local/share/gretel");
    }
    if (!c->ca_dir || !c->ca_dir[0]) {
        free(c->ca_dir);
        c->ca_dir = join_path(c->store, "/ca");
    }
    if (c->nlisten == 0 && !had_errors) /* a bad listen value was reported already */
        gt_diags_add(diags, 0, file ? file : "-o", 0, 0, "listen: at least one address needed");
}

int gt_config_load(gt_config **out, const char *file, const gt_config_override *ov, size_t nov,
                   gt_diags *diags)
{
    gt_config *c = gt_xcalloc(1, sizeof(*c));
    load_ctx lc = {.cfg = c, .diags = diags};
    size_t errors_before = diags->errors;
    char *buf = NULL;
    int rv = GT_OK;

    for (size_t i = 0; i < gt_config_nkeys; i++) {
        apply(&lc, "<defaults>", (unsigned)i + 1, 0, 0, gt_slice_cstr(gt_config_keys[i].name),
              gt_slice_cstr(gt_config_keys[i].def));
    }
    memset(lc.touched, 0, sizeof(lc.touched));
    c->rules_set = false;
    c->lists_set = false;

    if (file) {
        c->file = gt_xstrdup(file);
        if ((rv = read_file(file, &buf, &lc.len, diags)) < 0)
            goto out;
        lc.buf = buf;
        lc.file = file;
        int r = ini_parse_stream(reader, &lc, handler, &lc);
        if (r > 0 && diags->errors == errors_before)
            gt_diags_add(diags, 0, file, (unsigned)r, 1, "expected KEY = VALUE");
        else if (r < 0)
            gt_diags_add(diags, 0, file, 0, 0, "cannot parse (inih error %d)", r);
        memset(lc.touched, 0, sizeof(lc.touched));
    }
    for (size_t i = 0; i < nov; i++) {
        lc.line = NULL;
        apply(&lc, "-o", (unsigned)i + 1, 1, 0, gt_slice_make(ov[i].key, ov[i].key_len),
              gt_slice_cstr(ov[i].value));
    }
    finalize(c, diags, file, diags->errors != errors_before);
    if (diags->errors != errors_before)
        rv = GT_EINVAL;
out:
    free(buf);
    if (rv < 0) {
        gt_config_free(c);
        c = NULL;
    }
    *out = c;
    return rv;
}

void gt_config_free(gt_config *cfg)
{
    if (!cfg)
        return;
    gt_config_free_fields(cfg);
    free(cfg);
}
