/* The decision for one request, whatever protocol it arrived in (HTTP/1.1 sessions and
 * HTTP/2 streams alike): request context from the head, the rules of the snapshot, bought
 * checks against the store, purchases handed to the store's writer, log rules logged. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <string.h>

#include "gretel/lists.h"
#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/proxy.h"
#include "gretel/store.h"
#include "gretel/util.h"

static bool bought_cb(void *arg, gt_slice key)
{
    return gt_store_is_bought(arg, key);
}

/* Runs the rules on a parsed request. The request's type and party come from its head
 * (Sec-Fetch-*, Accept, Referer/Origin; gt_rules_type_of, gt_rules_party_of). */
void gt_proxy_decide(gt_worker *w, const gt_snapshot *snap, const gt_http1_request *req,
                     gt_slice host, const gt_http1_uri *uri, gt_slice body, unsigned conn_id,
                     gt_decision *d, gt_reqtype *type)
{
    gt_reqview v;
    memset(&v, 0, sizeof(v));
    v.method = req->method;
    v.host = host;
    v.path = uri->path;
    for (size_t i = 0; i < req->num_headers; i++) {
        gt_slice n = req->headers[i].name, val = req->headers[i].value;
        if (n.len < 5)
            continue;
        switch (gt_ascii_lower(n.p[0])) {
        case 's':
            if (gt_slice_caseeq(n, GT_S("sec-fetch-dest")))
                v.sec_fetch_dest = val;
            else if (gt_slice_caseeq(n, GT_S("sec-fetch-mode")))
                v.sec_fetch_mode = val;
            else if (gt_slice_caseeq(n, GT_S("sec-fetch-site")))
                v.sec_fetch_site = val;
            break;
        case 'a':
            if (gt_slice_caseeq(n, GT_S("accept")))
                v.accept = val;
            break;
        case 'c':
            if (gt_slice_caseeq(n, GT_S("content-type")))
                v.content_type = val;
            break;
        case 'r':
            if (gt_slice_caseeq(n, GT_S("referer")))
                v.referer = val;
            break;
        case 'o':
            if (gt_slice_caseeq(n, GT_S("origin")))
                v.origin = val;
            break;
        case 'u':
            if (gt_slice_caseeq(n, GT_S("upgrade")))
                v.upgrade = val;
            break;
        case 'p':
            if (gt_slice_caseeq(n, GT_S("ping-to")))
                v.ping_to = val;
            break;
        }
    }
    gt_rules_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = req->method;
    rq.scheme = uri->is_https ? GT_S("https") : GT_S("http");
    rq.host = v.host;
    rq.port = uri->port;
    rq.path = uri->path.len ? uri->path : GT_S("/");
    rq.source = v.referer.len ? v.referer : (gt_slice_eq(v.origin, GT_S("null")) ? GT_S("") : v.origin);
    rq.type = gt_rules_type_of(&v);
    /* Sec-Fetch-Site answers at once; otherwise the engine compares registrable domains
     * (libpsl, about half a microsecond) only if a candidate rule asks for the party. */
    if (v.sec_fetch_site.len) {
        gt_reqview only_site = {.sec_fetch_site = v.sec_fetch_site};
        rq.party = gt_rules_party_of(NULL, &only_site);
    }
    _Static_assert(sizeof(gt_rules_field) == sizeof(gt_http1_header),
                   "header layouts must match");
    rq.fields = (const gt_rules_field *)req->headers;
    rq.nfields = req->num_headers;
    rq.body_type = v.content_type;
    rq.body = body;
    *type = rq.type;
    gt_store *store = w->sh->store;
    gt_rules_decide(snap->rules, w->scratch, &rq, store ? bought_cb : NULL, store, d);
    d->list_file = NULL;
    /* the lists decide what the rules passed (docs/LISTS.md: one precedence table) */
    if (snap->lists)
        gt_lists_apply(snap->lists, &rq, w->sh->psl, w->scratch, d);
    /* A completed purchase seen on the wire: its products are marked bought, locally, by
     * the store's writer thread (this worker never waits for the disk). */
    if (d->purchase && w->sh->writer && snap->cfg->auto_mark_purchases) {
        char source[300];
        snprintf(source, sizeof(source), "auto: purchase pixel on %.*s",
                 (int)(host.len < 200 ? host.len : 200), host.p);
        for (size_t i = 0; i < d->nproducts; i++)
            if (d->products[i].purchased && !d->products[i].bought)
                gt_store_writer_put(w->sh->writer, d->products[i].key, gt_slice_cstr(source));
    }
    /* A page whose product ids the control page may want (page_products): asked for in
     * gzip or deflate only, which the sniffer reads (a removal from Accept-Encoding, nothing
     * added about the user). Blocked requests go nowhere; nothing to ask. */
    if (snap->cfg->page_products && rq.type == GT_TYPE_DOCUMENT &&
        (d->action == GT_DECIDE_PASS || d->action == GT_DECIDE_REWRITE ||
         d->action == GT_DECIDE_ALLOW) &&
        d->nhdr_ops < GT_DECISION_MAX_HDR_OPS) {
        for (size_t i = 0; i < req->num_headers; i++) {
            gt_slice ae = req->headers[i].value;
            if (gt_slice_caseeq(req->headers[i].name, GT_S("accept-encoding")) &&
                (memmem(ae.p, ae.len, "br", 2) || memmem(ae.p, ae.len, "zstd", 4))) {
                d->hdr_ops[d->nhdr_ops++] = (gt_hdr_op){.kind = GT_HDR_SET,
                                                        .name = GT_S("Accept-Encoding"),
                                                        .value = GT_S("gzip, deflate")};
                break;
            }
        }
    }
    for (size_t i = 0; i < d->nlogs; i++)
        gt_log(GT_LOG_INFO, "conn=%u rule-log %s:%u host=%.*s type=%s", conn_id,
               gt_rule_file(d->logs[i]), gt_rule_line(d->logs[i]), (int)host.len, host.p,
               gt_rules_type_name(rq.type));
}

