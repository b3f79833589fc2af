/* The rules subsystem's public face. So far: the request context a proxy can observe,
 * which the rule engine and Adblock Plus list matching both decide on. The request's type
 * (document, script, image, ...) comes from Sec-Fetch-Dest, then Accept, then the path's
 * extension; its party (first or third) from Sec-Fetch-Site, then the registrable domains
 * (libpsl) of the Referer or Origin against the request's host. Nothing here does I/O
 * after gt_rules_psl_load, nor knows about sockets. */
#ifndef GT_RULES_H
#define GT_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "gretel/slice.h"

/* Request types, named as Adblock Plus names them. */
typedef enum {
    GT_TYPE_OTHER = 0,
    GT_TYPE_DOCUMENT,
    GT_TYPE_SUBDOCUMENT,
    GT_TYPE_SCRIPT,
    GT_TYPE_IMAGE,
    GT_TYPE_STYLESHEET,
    GT_TYPE_XMLHTTPREQUEST,
    GT_TYPE_PING,
    GT_TYPE_MEDIA,
    GT_TYPE_FONT,
    GT_TYPE_WEBSOCKET,
    GT_TYPE_OBJECT,
    GT_TYPE_COUNT
} gt_reqtype;

typedef enum { GT_PARTY_UNKNOWN = 0, GT_PARTY_FIRST, GT_PARTY_THIRD } gt_party;

/* What the proxy saw of one request, as slices into its head (empty when absent). */
typedef struct {
    gt_slice method, host, path; /* host lower-case, without port; path with query */
    gt_slice sec_fetch_dest, sec_fetch_mode, sec_fetch_site;
    gt_slice accept, content_type, referer, origin, upgrade, ping_to;
} gt_reqview;

/* The Adblock Plus name of a type ("xmlhttprequest"). */
const char *gt_rules_type_name(gt_reqtype t);
/* Parses a type name or one of its aliases (main_frame, sub_frame, xhr, fetch, beacon,
 * imageset); returns -1 for an unknown name. */
int gt_rules_type_parse(gt_slice name);

/* Derives the type: Sec-Fetch-Dest when present, else Accept, else the path's extension,
 * else GT_TYPE_OTHER. Beacons and <a ping> (Sec-Fetch-Dest "empty" with Ping-To, a
 * text/ping body, or a no-cors POST) are GT_TYPE_PING. */
gt_reqtype gt_rules_type_of(const gt_reqview *v);

typedef struct gt_psl gt_psl;
/* Loads the public suffix list: the system's (package publicsuffix) when readable, else
 * libpsl's built-in copy. Returns NULL only if neither exists. Owned by the caller, shared
 * read-only between threads. */
gt_psl *gt_rules_psl_load(void);
void gt_rules_psl_free(gt_psl *p); /* NULL-safe */

/* Writes the registrable domain of host ("www.amazon.co.uk" -> "amazon.co.uk") into out
 * (NUL-terminated); an IP literal or a bare public suffix is its own domain. Returns its
 * length, or 0 when host is empty or does not fit. */
size_t gt_rules_registrable_domain(const gt_psl *p, gt_slice host, char *out, size_t cap);

/* Derives the party: Sec-Fetch-Site when present ("cross-site" is third, "same-site",
 * "same-origin" and "none" are first), else the registrable domain of the Referer's (or
 * Origin's) host compared with the request's, else GT_PARTY_UNKNOWN. */
gt_party gt_rules_party_of(const gt_psl *p, const gt_reqview *v);

/* The host of an absolute URL such as a Referer ("https://a.b/x" -> "a.b"), lower-case is
 * not applied; empty when the URL has no authority. */
gt_slice gt_rules_url_host(gt_slice url);

#endif
