/* gretel's own pages (src/control): what a household or an ops team sees at
 * http://gretel.proxy/ (or gretel's listening address) — the overview, the bought list with
 * "I bought this", the set-up page with the CA and the PAC file, /proxy.pac, /metrics —
 * served from memory to allowed clients only, never forwarded. The proxy hands a parsed
 * request in and writes the response out; nothing here touches sockets. */
#ifndef GT_CONTROL_H
#define GT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "gretel/net.h"
#include "gretel/slice.h"

struct evbuffer;

typedef struct gt_control gt_control;

/* Process-wide state: the per-install CSRF token (kept in <store>/control.token, mode
 * 0600, made on first start; a per-process one when the store cannot hold it) and the
 * top blocked hosts. Thread-safe. */
gt_control *gt_control_new(const char *store_dir);
void gt_control_free(gt_control *c); /* NULL-safe */
/* Counts a blocked request's host for the overview's "top blocked hosts" (counts only). */
void gt_control_note_block(gt_control *c, gt_slice host);
const char *gt_control_token(const gt_control *c);
/* Product keys a page declared (its schema.org data, seen as it loaded through gretel),
 * remembered for "I bought this" on that page: the last 128 such pages, by a hash of the
 * URL (fragment dropped), in memory only. */
void gt_control_note_page(gt_control *c, gt_slice url, char (*keys)[401], size_t n);

/* A request for gretel itself. Slices are borrowed for the call. */
typedef struct {
    gt_slice method;
    gt_slice path;  /* without the query */
    gt_slice query; /* after '?', may be empty */
    gt_slice host;  /* the Host the client used: "gretel.proxy", "192.168.1.2:8119" */
    gt_slice origin, referer, content_type, authorization, csrf_header, accept;
    gt_slice body;  /* a POST's urlencoded form, whole */
    const char *local; /* "addr:port" this client reached gretel on (for the PAC file) */
} gt_ctl_request;

typedef struct {
    int status;
    const char *content_type;
    char headers[2048]; /* extra header lines, each ending in CRLF */
    struct evbuffer *body; /* the caller's, filled */
} gt_ctl_response;

/* Answers one request. snap: the caller's snapshot (config, rules, lists, shop rules). */
void gt_control_handle(gt_control *c, gt_shared *sh, const gt_snapshot *snap,
                       const gt_ctl_request *rq, gt_ctl_response *out);

/* The largest POST body the control page reads. */
#define GT_CONTROL_BODY_MAX 16384

#endif
