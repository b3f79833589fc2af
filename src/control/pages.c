/* The control page's HTML, CSS and JavaScript, served from memory. Plain HTML forms do
 * every change (no JavaScript needed); app.js only makes adding and removing happen
 * without a page load. Nothing is fetched from anywhere else: no fonts, scripts or images
 * from outside (the Content-Security-Policy says so too). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gretel/lists.h"
#include "gretel/tls.h"
#include "internal.h"

void ctl_page_start(ctl_ctx *x, const char *title, const char *active)
{
    struct evbuffer *b = x->out->body;
    evbuffer_add_printf(b, "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                           "<title>");
    ctl_htmlz(b, title);
    evbuffer_add_printf(b, "</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n"
                           "<script src=\"/app.js\" defer></script>\n</head>\n<body>\n"
                           "<header><span class=\"brand\">gretel</span><nav>");
    static const char *const nav[][2] = {{"overview", "/"}, {"bought", "/bought"}, {"setup", "/setup"}};
    static const char *const label[] = {"Overview", "Bought products", "Set-up"};
    for (int i = 0; i < 3; i++)
        evbuffer_add_printf(b, "<a href=\"%s\"%s>%s</a>", nav[i][1],
                            active && strcmp(active, nav[i][0]) == 0 ? " class=\"active\"" : "",
                            label[i]);
    evbuffer_add_printf(b, "</nav></header>\n<main>\n");
}

void ctl_page_end(ctl_ctx *x)
{
    evbuffer_add_printf(x->out->body,
                        "</main>\n<footer>gretel %s &middot; everything here stays on this "
                        "machine</footer>\n</body>\n</html>\n",
                        GT_VERSION);
}

static unsigned long long ctr(atomic_ullong *c)
{
    return (unsigned long long)atomic_load_explicit(c, memory_order_relaxed);
}

void ctl_overview(ctl_ctx *x)
{
    struct evbuffer *b = x->out->body;
    gt_counters *c = &x->sh->counters;
    ctl_page_start(x, "gretel: overview", "overview");
    unsigned long long up = (gt_now_ms() - x->sh->started_ms) / 1000;
    evbuffer_add_printf(b, "<h1>Overview</h1>\n<p>Up %llu h %llu min, %u open connections.</p>\n",
                        up / 3600, up / 60 % 60,
                        atomic_load_explicit(&c->open_conns, memory_order_relaxed));
    unsigned long long blocked = ctr(&c->decisions[GT_CTR_BLOCK]) +
                                 ctr(&c->decisions[GT_CTR_REDIRECT]);
    evbuffer_add_printf(b,
                        "<h2>Since start</h2>\n<table class=\"counts\">\n"
                        "<tr><th>Requests seen</th><td id=\"seen\">%llu</td></tr>\n"
                        "<tr><th>Blocked (answered here)</th><td id=\"blocked\">%llu</td></tr>\n"
                        "<tr><th>Rewritten (tracking removed)</th><td id=\"rewritten\">%llu</td></tr>\n"
                        "<tr><th>Allowed by an exception</th><td>%llu</td></tr>\n</table>\n",
                        ctr(&c->requests), blocked, ctr(&c->decisions[GT_CTR_REWRITE]),
                        ctr(&c->decisions[GT_CTR_ALLOW]));
    /* rule sets and lists */
    const char *files[64];
    size_t nf = gt_ruleset_files(x->snap->rules, files, 64);
    evbuffer_add_printf(b, "<h2>Rules and lists</h2>\n<p>%zu rules from %zu file%s.</p>\n<ul>\n",
                        gt_ruleset_count(x->snap->rules), nf, nf == 1 ? "" : "s");
    for (size_t i = 0; i < nf && i < 64; i++) {
        evbuffer_add_printf(b, "<li><code>");
        ctl_htmlz(b, files[i]);
        evbuffer_add_printf(b, "</code></li>\n");
    }
    evbuffer_add_printf(b, "</ul>\n");
    const char *lists[64];
    size_t counts[64];
    size_t nl = gt_abp_set_files(x->snap->lists, lists, counts, 64);
    if (nl) {
        evbuffer_add_printf(b, "<table><tr><th>List</th><th>Filters</th></tr>\n");
        for (size_t i = 0; i < nl && i < 64; i++) {
            evbuffer_add_printf(b, "<tr><td><code>");
            ctl_htmlz(b, lists[i]);
            evbuffer_add_printf(b, "</code></td><td>%zu</td></tr>\n", counts[i]);
        }
        evbuffer_add_printf(b, "</table>\n");
        if (x->snap->cfg->lists_default)
            evbuffer_add_printf(b, "<p id=\"lists-source\">These are Debian's EasyList and "
                                   "EasyPrivacy (package <code>webext-ublock-origin-chromium"
                                   "</code>, updated with the system): gretel's default when "
                                   "the configuration names no <code>lists</code>. "
                                   "<code>lists =</code> turns them off.</p>\n");
        else
            evbuffer_add_printf(b, "<p id=\"lists-source\">From the configuration (the "
                                   "<code>lists</code> key).</p>\n");
    } else if (x->snap->cfg->lists_set) {
        evbuffer_add_printf(b, "<p id=\"lists-source\">No lists: the configuration turns "
                               "them off (<code>lists =</code>).</p>\n");
    } else {
        evbuffer_add_printf(b, "<p id=\"lists-source\">No lists: none configured, and "
                               "Debian's EasyList is not installed (<code>apt-get install "
                               "--no-install-recommends webext-ublock-origin-chromium</code> "
                               "makes it gretel's default).</p>\n");
    }
    /* top blocked hosts: counts only, never URLs or clients */
    top_host top[TOP_HOSTS];
    pthread_mutex_lock(&x->c->lock);
    memcpy(top, x->c->top, sizeof(top));
    pthread_mutex_unlock(&x->c->lock);
    size_t n = 0;
    for (size_t i = 0; i < TOP_HOSTS; i++)
        if (top[i].count)
            top[n++] = top[i];
    for (size_t i = 1; i < n; i++) /* insertion sort, largest first: 64 at most */
        for (size_t j = i; j > 0 && top[j].count > top[j - 1].count; j--) {
            top_host t = top[j];
            top[j] = top[j - 1];
            top[j - 1] = t;
        }
    evbuffer_add_printf(b, "<h2>Most blocked hosts</h2>\n");
    if (!n) {
        evbuffer_add_printf(b, "<p>Nothing blocked yet.</p>\n");
    } else {
        evbuffer_add_printf(b, "<table id=\"top\"><tr><th>Host</th><th>Blocked</th></tr>\n");
        for (size_t i = 0; i < n && i < 20; i++) {
            evbuffer_add_printf(b, "<tr><td>");
            ctl_htmlz(b, top[i].host);
            evbuffer_add_printf(b, "</td><td>%llu</td></tr>\n", (unsigned long long)top[i].count);
        }
        evbuffer_add_printf(b, "</table>\n");
    }
    long nb = x->sh->store ? gt_store_count(x->sh->store) : -1;
    if (nb >= 0)
        evbuffer_add_printf(b, "<p><a href=\"/bought\">%ld bought product%s</a> keep their "
                               "retargeting away.</p>\n",
                            nb, nb == 1 ? "" : "s");
    ctl_page_end(x);
}

static void date_of(uint64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!t || !gmtime_r(&tt, &tm) || !strftime(out, cap, "%Y-%m-%d", &tm))
        snprintf(out, cap, "never");
}

typedef struct {
    ctl_ctx *x;
    char q[256];
    size_t shown, total;
} list_arg;

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return true;
    return n == 0;
}

static bool list_row(void *arg, const gt_store_rec *r)
{
    list_arg *a = arg;
    a->total++;
    if (a->q[0] && !contains_ci(r->key, a->q) && !contains_ci(r->label, a->q) &&
        !contains_ci(r->source, a->q))
        return true;
    if (a->shown >= 1000)
        return true; /* counted, not shown: search narrows it */
    a->shown++;
    struct evbuffer *b = a->x->out->body;
    char added[32], expires[32];
    date_of(r->added, added, sizeof(added));
    date_of(r->expires, expires, sizeof(expires));
    bool gone = r->expires && r->expires < (uint64_t)time(NULL);
    evbuffer_add_printf(b, "<tr data-key=\"");
    ctl_htmlz(b, r->key);
    evbuffer_add_printf(b, "\"><td><code>");
    ctl_htmlz(b, r->key);
    evbuffer_add_printf(b, "</code></td><td>");
    ctl_htmlz(b, r->label);
    evbuffer_add_printf(b, "</td><td>");
    ctl_htmlz(b, r->source);
    evbuffer_add_printf(b, "</td><td>%s</td><td>%s%s</td><td>", added, expires,
                        gone ? " (expired)" : "");
    evbuffer_add_printf(b, "<form method=\"post\" action=\"/unmark\" class=\"unmark\">"
                           "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
                           "<input type=\"hidden\" name=\"key\" value=\"",
                        a->x->c->token);
    ctl_htmlz(b, r->key);
    evbuffer_add_printf(b, "\"><button type=\"submit\">Remove</button></form></td></tr>\n");
    return true;
}

static void add_form(ctl_ctx *x, const char *what, const char *label)
{
    struct evbuffer *b = x->out->body;
    evbuffer_add_printf(b, "<form method=\"post\" action=\"/mark\" id=\"add\">\n"
                           "<input type=\"hidden\" name=\"csrf\" value=\"%s\">\n"
                           "<label>Product key or shop page URL <input name=\"what\" required "
                           "size=\"50\" placeholder=\"asin:B00EXAMPLE or https://shop.example/p/1\" "
                           "value=\"",
                        x->c->token);
    ctl_htmlz(b, what);
    evbuffer_add_printf(b, "\"></label>\n<label>Label <input name=\"label\" size=\"30\" value=\"");
    ctl_htmlz(b, label);
    evbuffer_add_printf(b, "\"></label>\n<label>Expires after <input name=\"ttl\" size=\"5\" "
                           "inputmode=\"numeric\" placeholder=\"never\"> days</label>\n"
                           "<button type=\"submit\">I bought this</button>\n</form>\n");
}

void ctl_bought(ctl_ctx *x, const char *notice)
{
    struct evbuffer *b = x->out->body;
    list_arg a = {.x = x};
    ctl_field(x->rq->query, "q", a.q, sizeof(a.q));
    char added[GT_STORE_KEY_MAX + 1];
    ctl_page_start(x, "gretel: bought products", "bought");
    evbuffer_add_printf(b, "<h1>Bought products</h1>\n<p>Retargeting requests that carry one of "
                           "these products are suppressed. The list stays on this machine.</p>\n");
    if (ctl_field(x->rq->query, "added", added, sizeof(added))) {
        evbuffer_add_printf(b, "<p class=\"notice\" id=\"notice\">Marked <code>");
        ctl_htmlz(b, added);
        evbuffer_add_printf(b, "</code> as bought.</p>\n");
    } else if (ctl_field(x->rq->query, "removed", added, sizeof(added))) {
        evbuffer_add_printf(b, "<p class=\"notice\" id=\"notice\">Removed.</p>\n");
    } else if (notice) {
        evbuffer_add_printf(b, "<p class=\"notice\" id=\"notice\">");
        ctl_htmlz(b, notice);
        evbuffer_add_printf(b, "</p>\n");
    }
    evbuffer_add_printf(b, "<h2>Add</h2>\n");
    add_form(x, "", "");
    evbuffer_add_printf(b, "<h2>List</h2>\n<form method=\"get\" action=\"/bought\" id=\"search\">"
                           "<input type=\"search\" name=\"q\" value=\"");
    ctl_htmlz(b, a.q);
    evbuffer_add_printf(b, "\" placeholder=\"key, label or source\"><button type=\"submit\">"
                           "Search</button></form>\n");
    if (!x->sh->store) {
        evbuffer_add_printf(b, "<p class=\"error\">The store could not be opened: the bought "
                               "list is not available.</p>\n");
        ctl_page_end(x);
        return;
    }
    evbuffer_add_printf(b, "<table id=\"products\">\n<tr><th>Key</th><th>Label</th><th>Source</th>"
                           "<th>Added</th><th>Expires</th><th></th></tr>\n");
    gt_store_foreach(x->sh->store, list_row, &a);
    evbuffer_add_printf(b, "</table>\n<p id=\"count\">%zu shown of %zu.</p>\n", a.shown, a.total);
    ctl_page_end(x);
}

/* GET /mark?url=...: what the bookmarklet opens. It only shows what would be marked; the
 * mark itself is the form's POST (a link must never change anything). */
void ctl_mark_confirm(ctl_ctx *x)
{
    struct evbuffer *b = x->out->body;
    char url[2048];
    ctl_field(x->rq->query, "url", url, sizeof(url));
    char keys[8][GT_STORE_KEY_MAX + 1];
    size_t from_page = 0;
    size_t n = url[0] ? ctl_keys_of_url(x->c, x->snap, gt_slice_cstr(url), keys, 8, &from_page)
                      : 0;
    ctl_page_start(x, "gretel: I bought this", "bought");
    evbuffer_add_printf(b, "<h1>I bought this</h1>\n<p>Page: <code>");
    ctl_htmlz(b, url[0] ? url : "(none given)");
    evbuffer_add_printf(b, "</code></p>\n");
    if (n) {
        evbuffer_add_printf(b, "<p>This product is known as:</p>\n<ul id=\"derived-list\">\n");
        for (size_t i = 0; i < n; i++) {
            evbuffer_add_printf(b, "<li><code%s>", i == 0 ? " id=\"derived\"" : "");
            ctl_htmlz(b, keys[i]);
            evbuffer_add_printf(b, "</code> (%s)</li>\n",
                                i < n - from_page ? "from the page's address, by the shop rules"
                                                  : "declared by the page itself");
        }
        evbuffer_add_printf(b, "</ul>\n<p>Marking it marks each of these.</p>\n");
        add_form(x, url, "");
    } else {
        evbuffer_add_printf(b, "<p class=\"error\">No shop rule names the product of this page, "
                               "and gretel did not see the page declare one (that needs "
                               "interception on). Enter its key (SCOPE:ID, for example "
                               "<code>gtin:4006381333931</code>) instead.</p>\n");
        add_form(x, "", url);
    }
    ctl_page_end(x);
}

void ctl_setup(ctl_ctx *x)
{
    struct evbuffer *b = x->out->body;
    /* A browser fetches its PAC file directly, not through a proxy: the URL names the
     * address this client reached gretel on (never gretel.proxy, which exists only inside
     * gretel, and never the Host the client sent). */
    const char *host = x->rq->local;
    ctl_page_start(x, "gretel: set-up", "setup");
    evbuffer_add_printf(b, "<h1>Set-up</h1>\n<h2>Use gretel as the proxy</h2>\n"
                           "<p>Automatic configuration (PAC) URL: <code id=\"pac\">http://");
    ctl_htmlz(b, host);
    evbuffer_add_printf(b, "/proxy.pac</code> &mdash; or set the HTTP and HTTPS proxy to "
                           "<code id=\"proxy\">");
    ctl_htmlz(b, x->rq->local);
    evbuffer_add_printf(
        b,
        "</code> by hand. The PAC file sends local and loopback addresses directly.</p>\n<ul>\n"
        "<li><b>Firefox:</b> Settings &rarr; General &rarr; Network Settings &rarr; Automatic "
        "proxy configuration URL.</li>\n"
        "<li><b>Chromium, Chrome, Edge:</b> the system's proxy settings, or start with "
        "<code>--proxy-pac-url=http://");
    ctl_htmlz(b, host); /* what the client sent: escaped, like every printed input */
    evbuffer_add_printf(
        b,
        "/proxy.pac</code>.</li>\n"
        "<li><b>Android:</b> Wi-Fi network &rarr; Advanced &rarr; Proxy &rarr; Proxy "
        "Auto-Config.</li>\n"
        "<li><b>iPhone, iPad, macOS:</b> Wi-Fi network &rarr; Configure Proxy &rarr; "
        "Automatic.</li>\n"
        "<li><b>Windows:</b> Settings &rarr; Network &rarr; Proxy &rarr; Use setup script.</li>\n"
        "<li><b>A whole house:</b> serve <code>/wpad.dat</code> under the name "
        "<code>wpad</code> on the local network, or hand the PAC URL out by DHCP (option "
        "252).</li>\n</ul>\n");
    evbuffer_add_printf(b, "<h2>HTTPS</h2>\n");
    if (x->sh->tls) {
        char fp[200];
        gt_ca_fingerprint(x->sh->tls->ca, fp, sizeof(fp));
        evbuffer_add_printf(
            b,
            "<p><a href=\"/ca.pem\" id=\"ca\">Download this gretel's CA certificate</a> "
            "(SHA-256 <code>%s</code>). It was made on this machine for this install only; "
            "trusting it lets gretel look inside HTTPS to block trackers there. Check the "
            "fingerprint against <code>gretel ca show</code> before you trust it.</p>\n<ul>\n"
            "<li><b>Firefox:</b> Settings &rarr; Privacy &amp; Security &rarr; Certificates "
            "&rarr; View Certificates &rarr; Authorities &rarr; Import, then &ldquo;trust for "
            "websites&rdquo;.</li>\n"
            "<li><b>Chromium, Chrome:</b> Settings &rarr; Privacy and security &rarr; Security "
            "&rarr; Manage certificates &rarr; Authorities &rarr; Import.</li>\n"
            "<li><b>Android:</b> Settings &rarr; Security &rarr; Encryption &amp; credentials "
            "&rarr; Install a certificate &rarr; CA certificate (apps choose whether they "
            "trust it).</li>\n"
            "<li><b>iPhone, iPad:</b> open the file, install the profile, then Settings &rarr; "
            "General &rarr; About &rarr; Certificate Trust Settings.</li>\n"
            "<li><b>Debian, Ubuntu:</b> copy it to <code>/usr/local/share/ca-certificates/"
            "gretel.crt</code> and run <code>update-ca-certificates</code>.</li>\n</ul>\n"
            "<p>Interception is %s in this configuration (<code>mitm</code>).</p>\n",
            fp, x->snap->cfg->mitm ? "on" : "off");
    } else {
        evbuffer_add_printf(b, "<p>No local CA yet: run <code>gretel ca init</code> on the "
                               "machine gretel runs on, then restart it. Without it, HTTPS "
                               "trackers are blocked by host only.</p>\n");
    }
    evbuffer_add_printf(b, "<h2>&ldquo;I bought this&rdquo; button</h2>\n<p>Drag this link to "
                           "your bookmarks bar; on a shop's product page, click it to mark "
                           "that product as bought: <a class=\"bookmarklet\" id=\"bookmarklet\" "
                           "href=\"javascript:void(location.href='http://");
    ctl_htmlz(b, host);
    evbuffer_add_printf(b, "/mark?url='+encodeURIComponent(location.href))\">I bought this</a>."
                           "</p>\n<p>The same, by hand: <code>http://");
    ctl_htmlz(b, host);
    evbuffer_add_printf(b, "/mark?url=PAGE-URL</code>. It shows the product the shop rules "
                           "find on that page and asks before it marks anything.</p>\n");
    ctl_page_end(x);
}

void ctl_style(ctl_ctx *x)
{
    x->out->content_type = "text/css; charset=utf-8";
    evbuffer_add_printf(
        x->out->body, "%s",
        ":root{--fg:#1d232a;--muted:#5b6670;--line:#d8dde2;--accent:#2f6f4f;--bg:#fbfbf9}\n"
        "*{box-sizing:border-box}\n"
        "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);"
        "background:var(--bg)}\n"
        "header{display:flex;gap:2em;align-items:baseline;padding:.8em 1.5em;"
        "border-bottom:1px solid var(--line);background:#fff}\n"
        ".brand{font-weight:700;font-size:1.2em;color:var(--accent)}\n"
        "nav a{margin-right:1.2em;color:var(--muted);text-decoration:none}\n"
        "nav a.active{color:var(--fg);border-bottom:2px solid var(--accent)}\n"
        "main{max-width:60em;padding:1em 1.5em}\n"
        "h1{font-size:1.5em;margin:.5em 0}h2{font-size:1.15em;margin-top:1.6em}\n"
        "table{border-collapse:collapse;margin:.5em 0}\n"
        "th,td{text-align:left;padding:.3em .8em .3em 0;border-bottom:1px solid var(--line);"
        "vertical-align:top}\n"
        "code{font-size:.92em;word-break:break-all}\n"
        "form{margin:.5em 0}label{display:inline-block;margin:0 1em .5em 0}\n"
        "input{font:inherit;padding:.2em .4em}\n"
        "button{font:inherit;padding:.25em .9em;border:1px solid var(--accent);"
        "background:var(--accent);color:#fff;border-radius:3px;cursor:pointer}\n"
        "form.unmark button{background:#fff;color:var(--accent)}\n"
        ".notice{background:#e8f3ec;padding:.5em .8em;border-left:3px solid var(--accent)}\n"
        ".error{background:#fbecec;padding:.5em .8em;border-left:3px solid #a33}\n"
        "a.bookmarklet{padding:.2em .6em;border:1px dashed var(--accent);border-radius:3px}\n"
        "footer{color:var(--muted);font-size:.85em;padding:1em 1.5em}\n");
}

/* Progressive: without JavaScript the forms post and the page reloads; with it, adding and
 * removing go by fetch with the token in X-CSRF-Token, and the table updates in place. */
void ctl_script(ctl_ctx *x)
{
    x->out->content_type = "text/javascript; charset=utf-8";
    evbuffer_add_printf(
        x->out->body, "%s",
        "'use strict';\n"
        "function say(text, bad) {\n"
        "  let n = document.getElementById('notice');\n"
        "  if (!n) { n = document.createElement('p'); n.id = 'notice';\n"
        "    document.querySelector('main h1').after(n); }\n"
        "  n.className = bad ? 'error' : 'notice'; n.textContent = text;\n"
        "}\n"
        "async function post(form) {\n"
        "  const body = new URLSearchParams(new FormData(form));\n"
        "  const r = await fetch(form.action, {method: 'POST', body: body, credentials: 'same-origin',\n"
        "    headers: {'X-CSRF-Token': body.get('csrf'), 'Accept': 'application/json'}});\n"
        "  let j = {ok: false, error: 'HTTP ' + r.status};\n"
        "  try { j = await r.json(); } catch (e) {}\n"
        "  return j;\n"
        "}\n"
        "function removeForm(key, token) {\n"
        "  const f = document.createElement('form');\n"
        "  f.method = 'post'; f.action = '/unmark'; f.className = 'unmark';\n"
        "  for (const [n, v] of [['csrf', token], ['key', key]]) {\n"
        "    const i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v;\n"
        "    f.append(i);\n"
        "  }\n"
        "  const b = document.createElement('button'); b.type = 'submit'; b.textContent = 'Remove';\n"
        "  f.append(b); hookRemove(f); return f;\n"
        "}\n"
        "function hookRemove(f) {\n"
        "  f.addEventListener('submit', async (ev) => {\n"
        "    ev.preventDefault();\n"
        "    const j = await post(f);\n"
        "    if (!j.ok) { say(j.error, true); return; }\n"
        "    f.closest('tr').remove(); say('Removed ' + j.key + '.');\n"
        "  });\n"
        "}\n"
        "document.addEventListener('DOMContentLoaded', () => {\n"
        "  document.querySelectorAll('form.unmark').forEach(hookRemove);\n"
        "  const add = document.getElementById('add');\n"
        "  const table = document.getElementById('products');\n"
        "  if (!add || !table) return;\n"
        "  add.addEventListener('submit', async (ev) => {\n"
        "    ev.preventDefault();\n"
        "    const j = await post(add);\n"
        "    if (!j.ok) { say(j.error, true); return; }\n"
        "    const label = add.elements['label'].value;\n"
        "    let row = table.querySelector('tr[data-key=\"' + CSS.escape(j.key) + '\"]');\n"
        "    if (row) row.remove();\n"
        "    row = table.insertRow(1); row.dataset.key = j.key;\n"
        "    const cells = [j.key, label, 'manual: control page', new Date().toISOString().slice(0, 10),\n"
        "                   add.elements['ttl'].value ? 'in ' + add.elements['ttl'].value + ' days' : 'never'];\n"
        "    cells.forEach((t, i) => { const c = row.insertCell(); if (i === 0) {\n"
        "      const code = document.createElement('code'); code.textContent = t; c.append(code);\n"
        "    } else c.textContent = t; });\n"
        "    row.insertCell().append(removeForm(j.key, add.elements['csrf'].value));\n"
        "    add.reset(); say('Marked ' + j.key + ' as bought.');\n"
        "  });\n"
        "});\n");
}
