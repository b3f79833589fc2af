/* gretel's own pages: the router, the per-install token, the checks every change passes
 * (POST, optional admin password, same Origin, CSRF token), and the changes themselves
 * (mark, unmark). Pages are in pages.c, /metrics and /proxy.pac in metrics.c.
 *
 * Why these checks: the pages are reachable from every browser that uses the proxy, so any
 * web page the user visits could try to drive them. A cross-site page can send a POST
 * (forms need no permission) but cannot read the token, cannot set X-CSRF-Token without
 * CORS (which gretel never grants) and cannot forge Origin; reading the bought list from
 * another origin is stopped by the same-origin policy (no CORS headers, JSON only as a
 * POST answer). Host must name gretel (the proxy routes here only then), which also keeps
 * DNS-rebinding pages out. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gretel/http1.h"
#include "gretel/log.h"
#include "gretel/rules.h"
#include "gretel/tls.h"
#include "gretel/util.h"
#include "internal.h"

static void random_hex(char out[65])
{
    unsigned char b[32];
    if (RAND_bytes(b, sizeof(b)) != 1)
        abort(); /* no randomness: nothing here can be made safe */
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* The token from <store>/control.token, made (0600) when missing or malformed. */
static void load_token(gt_control *c, const char *store_dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/control.token", store_dir ? store_dir : "");
    if (store_dir) {
        FILE *f = fopen(path, "r");
        char buf[80] = "";
        if (f) {
            size_t n = fread(buf, 1, 64, f);
            fclose(f);
            bool ok = n == 64;
            for (size_t i = 0; ok && i < 64; i++)
                ok = (buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f');
            if (ok) {
                memcpy(c->token, buf, 64);
                c->token[64] = 0;
                return;
            }
        }
    }
    random_hex(c->token);
    if (!store_dir || gt_mkdir_private(store_dir) != 0)
        return; /* a token for this process only */
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, c->token, 64) == 64 && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
}

gt_control *gt_control_new(const char *store_dir)
{
    gt_control *c = gt_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    load_token(c, store_dir);
    return c;
}

void gt_control_free(gt_control *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const char *gt_control_token(const gt_control *c)
{
    return c->token;
}

/* Space-Saving: the most blocked hosts are counted exactly while they stay in the table;
 * a newcomer replaces the least counted and inherits its count (an upper bound), so the
 * top of the table is right and memory stays fixed whatever the traffic. */
void gt_control_note_block(gt_control *c, gt_slice host)
{
    if (!c || !host.len)
        return;
    if (host.len >= sizeof(c->top[0].host))
        host.len = sizeof(c->top[0].host) - 1;
    pthread_mutex_lock(&c->lock);
    top_host *min = &c->top[0];
    for (size_t i = 0; i < TOP_HOSTS; i++) {
        top_host *t = &c->top[i];
        if (t->count && strlen(t->host) == host.len && memcmp(t->host, host.p, host.len) == 0) {
            t->count++;
            pthread_mutex_unlock(&c->lock);
            return;
        }
        if (t->count < min->count)
            min = t;
    }
    memcpy(min->host, host.p, host.len);
    min->host[host.len] = 0;
    min->count++;
    pthread_mutex_unlock(&c->lock);
}

static uint64_t url_hash(gt_slice url)
{
    const char *hash = memchr(url.p, '#', url.len);
    if (hash)
        url.len = (size_t)(hash - url.p);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: a lookup key, not a secret */
    for (size_t i = 0; i < url.len; i++)
        h = (h ^ (unsigned char)url.p[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

void gt_control_note_page(gt_control *c, gt_slice url, char (*keys)[401], size_t n)
{
    if (!c || !n || !url.len)
        return;
    uint64_t h = url_hash(url);
    pthread_mutex_lock(&c->lock);
    page_keys *slot = &c->pages[0];
    for (size_t i = 0; i < PAGES; i++) {
        if (c->pages[i].url_hash == h) {
            slot = &c->pages[i];
            break;
        }
        if (c->pages[i].stamp < slot->stamp)
            slot = &c->pages[i];
    }
    slot->url_hash = h;
    slot->stamp = ++c->clock;
    slot->n = 0;
    for (size_t i = 0; i < n && slot->n < PAGE_KEYS; i++)
        if (strlen(keys[i]) < sizeof(slot->keys[0]))
            snprintf(slot->keys[slot->n++], sizeof(slot->keys[0]), "%s", keys[i]);
    pthread_mutex_unlock(&c->lock);
}

/* --- helpers shared by the pages --- */

void ctl_html(struct evbuffer *out, gt_slice s)
{
    size_t from = 0;
    for (size_t i = 0; i < s.len; i++) {
        const char *rep = NULL;
        switch (s.p[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep) {
            evbuffer_add(out, s.p + from, i - from);
            evbuffer_add(out, rep, strlen(rep));
            from = i + 1;
        }
    }
    evbuffer_add(out, s.p + from, s.len - from);
}

void ctl_htmlz(struct evbuffer *out, const char *s)
{
    ctl_html(out, gt_slice_cstr(s ? s : ""));
}

bool ctl_field(gt_slice form, const char *name, char *out, size_t cap)
{
    gt_slice rest = form, part;
    size_t nl = strlen(name);
    while (gt_slice_next(&rest, '&', &part)) {
        if (part.len < nl || memcmp(part.p, name, nl) != 0 ||
            (part.len > nl && part.p[nl] != '='))
            continue;
        gt_slice v = part.len > nl ? gt_slice_make(part.p + nl + 1, part.len - nl - 1) : GT_S("");
        if (v.len >= cap)
            v.len = cap - 1; /* decoding never lengthens */
        size_t n = gt_rules_percent_decode(v, out, true);
        out[n] = 0;
        return true;
    }
    if (cap)
        out[0] = 0;
    return false;
}

/* Referrer-Policy same-origin, not no-referrer: under no-referrer browsers send
 * "Origin: null" with a form's POST, and the Origin check below needs the real one. */
static const char security_headers[] =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: same-origin\r\n"
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "connect-src 'self'\r\n";

static void set_headers(gt_ctl_response *out, const char *more)
{
    snprintf(out->headers, sizeof(out->headers), "%s%s", security_headers, more ? more : "");
}

void ctl_error_page(ctl_ctx *x, int status, const char *msg, const char *back)
{
    x->out->status = status;
    ctl_page_start(x, "gretel: not done", NULL);
    evbuffer_add_printf(x->out->body, "<h1>Not done</h1>\n<p class=\"error\">");
    ctl_htmlz(x->out->body, msg);
    evbuffer_add_printf(x->out->body, "</p>\n<p><a href=\"%s\">Back</a></p>\n", back ? back : "/");
    ctl_page_end(x);
}

/* --- product keys of a shop page --- */

static size_t add_unique(char keys[][GT_STORE_KEY_MAX + 1], size_t n, size_t cap, gt_slice k)
{
    if (n >= cap || !k.len || k.len > GT_STORE_KEY_MAX)
        return n;
    for (size_t j = 0; j < n; j++)
        if (strlen(keys[j]) == k.len && memcmp(keys[j], k.p, k.len) == 0)
            return n;
    memcpy(keys[n], k.p, k.len);
    keys[n][k.len] = 0;
    return n + 1;
}

static size_t rules_keys(const gt_snapshot *snap, gt_slice url,
                         char keys[][GT_STORE_KEY_MAX + 1], size_t cap);

static size_t keys_of_page(gt_control *c, gt_slice url, char keys[][GT_STORE_KEY_MAX + 1],
                           size_t n, size_t cap)
{
    uint64_t h = url_hash(url);
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < PAGES; i++)
        if (c->pages[i].url_hash == h && c->pages[i].stamp)
            for (unsigned k = 0; k < c->pages[i].n; k++)
                n = add_unique(keys, n, cap, gt_slice_cstr(c->pages[i].keys[k]));
    pthread_mutex_unlock(&c->lock);
    return n;
}

size_t ctl_keys_of_url(gt_control *c, const gt_snapshot *snap, gt_slice url,
                       char keys[][GT_STORE_KEY_MAX + 1], size_t cap, size_t *from_page)
{
    size_t n = 0;
    *from_page = 0;
    if (snap->shops)
        n = rules_keys(snap, url, keys, cap);
    size_t before = n;
    n = keys_of_page(c, url, keys, n, cap);
    *from_page = n - before;
    return n;
}

/* The shop rules' keys for url. */
static size_t rules_keys(const gt_snapshot *snap, gt_slice url, char keys[][GT_STORE_KEY_MAX + 1],
                         size_t cap)
{
    gt_http1_uri u;
    gt_http1_error err;
    if (gt_http1_parse_absolute(url, &u, &err) < 0 || !u.host.len || u.host.len > 253)
        return 0;
    char host[256];
    for (size_t i = 0; i < u.host.len; i++)
        host[i] = gt_ascii_lower(u.host.p[i]);
    gt_rules_request rq = {.method = GT_S("GET"),
                           .scheme = u.is_https ? GT_S("https") : GT_S("http"),
                           .host = gt_slice_make(host, u.host.len),
                           .port = u.port,
                           .path = u.path.len ? u.path : GT_S("/"),
                           .type = GT_TYPE_DOCUMENT,
                           .party = GT_PARTY_FIRST};
    gt_rules_scratch *sc = gt_rules_scratch_new();
    gt_decision d;
    gt_rules_decide(snap->shops, sc, &rq, NULL, NULL, &d);
    size_t n = 0;
    for (size_t i = 0; i < d.nproducts; i++)
        n = add_unique(keys, n, cap, d.products[i].key);
    gt_rules_scratch_free(sc);
    return n;
}

/* --- the checks every change passes --- */

static bool wants_json(const gt_ctl_request *rq)
{
    return rq->csrf_header.len || (rq->accept.len && memmem(rq->accept.p, rq->accept.len,
                                                            "application/json", 16));
}

static void json_reply(ctl_ctx *x, int status, const char *fmt_ok, const char *key,
                       const char *error)
{
    x->out->status = status;
    x->out->content_type = "application/json";
    evbuffer_drain(x->out->body, evbuffer_get_length(x->out->body));
    /* keys and messages are plain text: escaped for JSON by hand (quotes, backslashes,
     * controls) */
    const char *s = error ? error : key ? key : "";
    evbuffer_add_printf(x->out->body, "{\"ok\":%s,\"%s\":\"", error ? "false" : "true",
                        error ? "error" : fmt_ok);
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(x->out->body, "\\%c", ch);
        else if (ch < 0x20)
            evbuffer_add_printf(x->out->body, "\\u%04x", ch);
        else
            evbuffer_add(x->out->body, p, 1);
    }
    evbuffer_add_printf(x->out->body, "\"}\n");
}

static void refuse(ctl_ctx *x, int status, const char *why)
{
    if (wants_json(x->rq))
        json_reply(x, status, "key", NULL, why);
    else
        ctl_error_page(x, status, why, "/bought");
}

/* Whether origin (a serialized origin) is this page's: http://HOST as the client wrote it,
 * or the documented name. */
static bool same_origin(gt_slice origin, gt_slice host)
{
    if (origin.len > 7 && memcmp(origin.p, "http://", 7) == 0) {
        gt_slice o = gt_slice_make(origin.p + 7, origin.len - 7);
        return (host.len && gt_slice_caseeq(o, host)) || gt_slice_caseeq(o, GT_S("gretel.proxy"));
    }
    return false;
}

static bool password_ok(const gt_config *cfg, gt_slice auth)
{
    const char *pw = cfg->admin_password;
    if (!pw || !*pw)
        return true;
    if (auth.len < 7 || !gt_slice_caseeq(gt_slice_make(auth.p, 6), GT_S("basic ")))
        return false;
    gt_slice b64 = gt_slice_trim(gt_slice_make(auth.p + 6, auth.len - 6));
    if (b64.len == 0 || b64.len > 1024 || b64.len % 4)
        return false;
    unsigned char dec[800];
    int n = EVP_DecodeBlock(dec, (const unsigned char *)b64.p, (int)b64.len);
    if (n < 0)
        return false;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    for (size_t i = b64.len; i > 0 && b64.p[i - 1] == '='; i--)
        n--;
    const unsigned char *colon = memchr(dec, ':', (size_t)n);
    if (!colon)
        return false;
    size_t plen = (size_t)n - (size_t)(colon + 1 - dec), want = strlen(pw);
    return plen == want && CRYPTO_memcmp(colon + 1, pw, want) == 0;
}

/* The checks; false when the request was answered (refused). */
static bool change_allowed(ctl_ctx *x)
{
    const gt_ctl_request *rq = x->rq;
    if (!gt_slice_eq(rq->method, GT_S("POST"))) {
        set_headers(x->out, "Allow: POST\r\n");
        refuse(x, 405, "this changes the bought list: only a POST from gretel's own page does");
        return false;
    }
    if (!password_ok(x->snap->cfg, rq->authorization)) {
        set_headers(x->out, "WWW-Authenticate: Basic realm=\"gretel\", charset=\"UTF-8\"\r\n");
        refuse(x, 401, "this gretel asks for its admin password to change the bought list");
        return false;
    }
    bool origin_ok = rq->origin.len ? same_origin(rq->origin, rq->host) : false;
    if (!rq->origin.len && rq->referer.len) {
        /* no Origin (older clients): the Referer's origin instead */
        const char *slash = rq->referer.len > 7 ? memchr(rq->referer.p + 7, '/', rq->referer.len - 7)
                                               : NULL;
        gt_slice ro = slash ? gt_slice_make(rq->referer.p, (size_t)(slash - rq->referer.p))
                            : rq->referer;
        origin_ok = same_origin(ro, rq->host);
    }
    if (!origin_ok) {
        refuse(x, 403, "refused: the request did not come from gretel's own page (Origin)");
        return false;
    }
    char tok[80] = "";
    if (rq->csrf_header.len && rq->csrf_header.len < sizeof(tok)) {
        memcpy(tok, rq->csrf_header.p, rq->csrf_header.len);
        tok[rq->csrf_header.len] = 0;
    } else {
        ctl_field(rq->body, "csrf", tok, sizeof(tok));
    }
    if (strlen(tok) != 64 || CRYPTO_memcmp(tok, x->c->token, 64) != 0) {
        refuse(x, 403, "refused: the form's token is missing or stale; reload the page");
        return false;
    }
    return true;
}

static bool looks_like_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* The store a change goes to, once the change passed the checks; NULL when refused
 * (answered). */
static gt_store *change_target(ctl_ctx *x)
{
    if (!change_allowed(x))
        return NULL;
    if (!x->sh->store)
        refuse(x, 503, "the bought list is not available (the store could not be opened)");
    return x->sh->store;
}

static void do_mark(ctl_ctx *x)
{
    gt_store *st = change_target(x);
    if (!st)
        return;
    char what[2048], label[256], ttl[16], key[GT_STORE_KEY_MAX + 1], err[256];
    ctl_field(x->rq->body, "what", what, sizeof(what));
    ctl_field(x->rq->body, "label", label, sizeof(label));
    ctl_field(x->rq->body, "ttl", ttl, sizeof(ttl));
    gt_slice w = gt_slice_trim(gt_slice_cstr(what));
    if (!w.len) {
        refuse(x, 400, "give a product key (SCOPE:ID) or the URL of its shop page");
        return;
    }
    /* a page URL: every id it is known by (the shop rules' and the page's own data), as
     * the shop's pixels may send any of them */
    char keys[8][GT_STORE_KEY_MAX + 1];
    size_t nkeys = 0, from_page = 0;
    if (looks_like_url(what)) {
        nkeys = ctl_keys_of_url(x->c, x->snap, w, keys, 8, &from_page);
        if (!nkeys) {
            refuse(x, 400, "no shop rule names the product of that page (rules/shops.rules "
                           "knows Amazon, Shopify, WooCommerce, Magento, eBay, Etsy, Zalando, "
                           "Otto and ?sku= style pages), and gretel did not see the page "
                           "declare one; give the key as SCOPE:ID instead");
            return;
        }
        if (!label[0])
            snprintf(label, sizeof(label), "%.*s", (int)(w.len > 200 ? 200 : w.len), w.p);
    } else {
        snprintf(keys[0], sizeof(keys[0]), "%.*s", (int)w.len, w.p);
        nkeys = 1;
    }
    gt_store_rec recs[8];
    size_t nrec = 0;
    for (size_t i = 0; i < nkeys; i++) {
        if (!gt_store_canonical_key(gt_slice_cstr(keys[i]), key, sizeof(key), err, sizeof(err))) {
            if (nkeys == 1) {
                refuse(x, 400, err);
                return;
            }
            continue;
        }
        memset(&recs[nrec], 0, sizeof(recs[nrec]));
        snprintf(recs[nrec].key, sizeof(recs[nrec].key), "%s", key);
        nrec++;
    }
    if (!nrec) {
        refuse(x, 400, "none of the page's product ids is a valid key");
        return;
    }
    snprintf(key, sizeof(key), "%s", recs[0].key);
    long days = 0;
    if (ttl[0]) {
        char *end;
        days = strtol(ttl, &end, 10);
        if (*end || days < 0 || days > 36500) {
            refuse(x, 400, "expiry: a number of days (1 to 36500), or empty for never");
            return;
        }
    }
    /* one synced LMDB commit on this worker: a few milliseconds, for a click a person makes
     * now and then, and the answer must only say "marked" once it is on disk */
    uint64_t now = (uint64_t)time(NULL);
    for (size_t i = 0; i < nrec; i++) {
        snprintf(recs[i].label, sizeof(recs[i].label), "%s", label);
        snprintf(recs[i].source, sizeof(recs[i].source), "manual: control page%s",
                 nrec > 1 ? " (one of the page's ids)" : "");
        recs[i].added = now;
        recs[i].expires = days ? now + (uint64_t)days * 86400 : 0;
    }
    if (gt_store_mark_all(st, recs, nrec, err, sizeof(err)) < 0) {
        refuse(x, 500, err);
        return;
    }
    gt_log(GT_LOG_INFO, "control page: a product was marked as bought");
    if (wants_json(x->rq)) {
        json_reply(x, 200, "key", key, NULL);
        return;
    }
    /* post/redirect/get: a reload of the result does not post again */
    char loc[GT_STORE_KEY_MAX * 3 + 64];
    size_t o = (size_t)snprintf(loc, sizeof(loc), "Location: /bought?added=");
    for (const char *p = key; *p && o + 4 < sizeof(loc); p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_')
            loc[o++] = (char)ch;
        else
            o += (size_t)snprintf(loc + o, sizeof(loc) - o, "%%%02X", ch);
    }
    snprintf(loc + o, sizeof(loc) - o, "\r\n");
    set_headers(x->out, loc);
    x->out->status = 303;
    x->out->content_type = "text/plain; charset=utf-8";
    evbuffer_add_printf(x->out->body, "marked; see /bought\n");
}

static void do_unmark(ctl_ctx *x)
{
    gt_store *st = change_target(x);
    if (!st)
        return;
    char key[GT_STORE_KEY_MAX + 1], err[256];
    ctl_field(x->rq->body, "key", key, sizeof(key));
    int r = gt_store_unmark(st, gt_slice_cstr(key), err, sizeof(err));
    if (r < 0 && r != GT_ENOTFOUND) {
        refuse(x, 500, err);
        return;
    }
    if (wants_json(x->rq)) {
        json_reply(x, 200, "key", key, NULL);
        return;
    }
    set_headers(x->out, "Location: /bought?removed=1\r\n");
    x->out->status = 303;
    x->out->content_type = "text/plain; charset=utf-8";
    evbuffer_add_printf(x->out->body, "removed; see /bought\n");
}

static void ca_pem(ctl_ctx *x)
{
    size_t n = 0;
    char *pem = x->sh->tls ? gt_ca_pem(x->sh->tls->ca, &n) : NULL;
    if (!pem) {
        ctl_error_page(x, 404, "this gretel has no local CA yet: run `gretel ca init`", "/setup");
        return;
    }
    x->out->content_type = "application/x-pem-file";
    set_headers(x->out, "Content-Disposition: attachment; filename=\"gretel-ca.pem\"\r\n");
    evbuffer_add(x->out->body, pem, n);
    free(pem);
}

void gt_control_handle(gt_control *c, gt_shared *sh, const gt_snapshot *snap,
                       const gt_ctl_request *rq, gt_ctl_response *out)
{
    ctl_ctx x = {c, sh, snap, rq, out};
    out->status = 200;
    out->content_type = "text/html; charset=utf-8";
    set_headers(out, NULL);
    gt_slice p = rq->path;
    bool get = gt_slice_eq(rq->method, GT_S("GET")) || gt_slice_eq(rq->method, GT_S("HEAD"));
    if (gt_slice_eq(p, GT_S("/mark")) && !get)
        do_mark(&x);
    else if (gt_slice_eq(p, GT_S("/unmark")))
        do_unmark(&x);
    else if (!get) {
        set_headers(out, "Allow: GET, HEAD\r\n");
        ctl_error_page(&x, 405, "method not allowed here", "/");
    } else if (gt_slice_eq(p, GT_S("/")))
        ctl_overview(&x);
    else if (gt_slice_eq(p, GT_S("/bought")))
        ctl_bought(&x, NULL);
    else if (gt_slice_eq(p, GT_S("/setup")))
        ctl_setup(&x);
    else if (gt_slice_eq(p, GT_S("/mark")))
        ctl_mark_confirm(&x);
    else if (gt_slice_eq(p, GT_S("/proxy.pac")) || gt_slice_eq(p, GT_S("/wpad.dat")))
        ctl_pac(&x);
    else if (gt_slice_eq(p, GT_S("/metrics")))
        ctl_metrics(&x);
    else if (gt_slice_eq(p, GT_S("/status")))
        ctl_status(&x);
    else if (gt_slice_eq(p, GT_S("/ca.pem")))
        ca_pem(&x);
    else if (gt_slice_eq(p, GT_S("/style.css")))
        ctl_style(&x);
    else if (gt_slice_eq(p, GT_S("/app.js")))
        ctl_script(&x);
    else
        ctl_error_page(&x, 404, "no such page", "/");
}
