/* The rules subsystem's public face: the request context a proxy can observe, and the rule
 * engine that decides on it (docs/RULES.md). A ruleset is an immutable compiled snapshot,
 * shared read-only by every worker; each worker owns a gt_rules_scratch for per-request
 * work. Nothing here does socket I/O; rule files are read only by gt_ruleset_load. The request's type
 * (document, script, image, ...) comes from Sec-Fetch-Dest, then Accept, then the path's
 * extension; its party (first or third) from Sec-Fetch-Site, then the registrable domains
 * (libpsl) of the Referer or Origin against the request's host. Nothing here does I/O
 * after gt_rules_psl_load, nor knows about sockets. */
#ifndef GT_RULES_H
#define GT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gretel/slice.h"
#include "gretel/util.h"

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

/* Regex analysis (src/rules/pattern.c), for the rule index and for list filters written
 * as regexes. The longest literal alphanumeric token any subject matching pat must contain
 * as a whole token (bounded by non-alphanumerics); copied lower-case into out. Failing
 * that, the longest literal that must start a token (*is_prefix set). Returns its length,
 * 0 when there is neither. */
size_t gt_rules_required_token(const char *pat, size_t len, char *out, size_t cap,
                               bool *is_prefix);
/* The longest run of bytes any subject matching pat must contain, exactly (0 when options
 * such as (?i) make bytes inexact); copied into out. */
size_t gt_rules_required_literal(const char *pat, size_t len, char *out, size_t cap);

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

/* ------------------------------------------------------------------------------------
 * The rule engine. */

typedef struct gt_ruleset gt_ruleset;
typedef struct gt_rule gt_rule;
typedef struct gt_rules_scratch gt_rules_scratch;

/* What a load reads: rule file paths or globs, and group switches ("name" or "+name"
 * enables a group declared off, "-name" disables one). */
typedef struct {
    const char *const *files;
    size_t nfiles;
    const char *const *groups;
    size_t ngroups;
    bool lint; /* also run the slower checks of `gretel check` (duplicates, shadowing) */
    bool no_index; /* file every rule as "always checked": the reference the indexes are
                      tested against (GRETEL_RULES_NO_INDEX=1 for explain) */
} gt_rules_source;

/* Loads and compiles every rule file. On success *out holds a ruleset with one reference;
 * on any error (each one added to diags as FILE:LINE:COL) *out is NULL and GT_EINVAL is
 * returned; warnings alone do not fail. psl is borrowed and must outlive the ruleset. A
 * glob that matches nothing is a warning, a named file that cannot be read an error. */
int gt_ruleset_load(gt_ruleset **out, const gt_rules_source *src, const gt_psl *psl,
                    gt_diags *diags);
gt_ruleset *gt_ruleset_ref(gt_ruleset *rs);
void gt_ruleset_release(gt_ruleset *rs); /* NULL-safe; the last reference frees */
size_t gt_ruleset_count(const gt_ruleset *rs);
/* The rule files the set was read from (includes too): up to cap paths into out; returns
 * how many there are. */
size_t gt_ruleset_files(const gt_ruleset *rs, const char **out, size_t cap);
/* Approximate heap bytes owned by the ruleset (compiled patterns and indexes). */
size_t gt_ruleset_memory(const gt_ruleset *rs);
/* A fingerprint of the ruleset's files as they are now (path, inode, size, mtime of each
 * file read, including includes, and what each glob expands to): a changed value means a
 * reload would read something else. A few stat(2) calls, cheap enough for a timer. */
uint64_t gt_ruleset_stamp(const gt_ruleset *rs);
/* How the rules are filed: found by host, by a URL token, by a token prefix, or tried on
 * every request (behind a combined-pattern gate, or not). For `check` and benchmarks. */
typedef struct {
    size_t by_host, by_token, by_prefix, gated, always;
} gt_ruleset_stats;
void gt_ruleset_get_stats(const gt_ruleset *rs, gt_ruleset_stats *st);

/* True if some enabled rule looks at request bodies (then the proxy buffers small ones). */
bool gt_ruleset_wants_body(const gt_ruleset *rs);

/* Per-thread working memory for decisions (PCRE2 match data, candidate lists, the buffers
 * a decision's rewrites and product keys live in). Not shared between threads. */
gt_rules_scratch *gt_rules_scratch_new(void);
void gt_rules_scratch_free(gt_rules_scratch *sc); /* NULL-safe */
/* n bytes of the scratch's output area, valid as long as the last decision's slices (after
 * a gt_rules_decide, one request path's worth is always there); NULL when it is used up. */
char *gt_rules_scratch_take(gt_rules_scratch *sc, size_t n);

/* A header as the engine sees it (same layout as gt_http1_header). */
typedef struct {
    gt_slice name, value;
} gt_rules_field;

/* One request to decide. Slices are borrowed for the duration of gt_rules_decide. */
typedef struct {
    gt_slice method;  /* "GET"; empty means GET */
    gt_slice scheme;  /* "http", "https", "ws", "wss" */
    gt_slice host;    /* lower-case, no port, no brackets */
    uint16_t port;    /* 0 = the scheme's default */
    gt_slice path;    /* path with query, starting with '/' */
    gt_slice source;  /* URL of the page the request came from (Referer), may be empty */
    gt_reqtype type;
    gt_party party;   /* GT_PARTY_UNKNOWN: derived from source vs host */
    const gt_rules_field *fields; /* request header fields, may be NULL */
    size_t nfields;
    gt_slice body;    /* request body (possibly a bounded prefix), may be empty */
    gt_slice body_type; /* its Content-Type */
    bool host_only;   /* a CONNECT: only the host and port are known, so only rules whose
                         conditions are all about them (domain, host, scheme, port) apply,
                         and only block/redirect/allow (nothing to rewrite or log inside) */
} gt_rules_request;

typedef enum {
    GT_DECIDE_PASS = 0, /* nothing matched (or only log rules) */
    GT_DECIDE_ALLOW,    /* an exception matched; forwarded (rewrites still apply) */
    GT_DECIDE_REWRITE,  /* forwarded with changes */
    GT_DECIDE_BLOCK,    /* answered locally with a response kind */
    GT_DECIDE_REDIRECT, /* answered locally with a built-in resource */
} gt_decide_action;

/* Local answers: block response kinds and redirect resources share one table. */
typedef enum {
    GT_RESP_DEFAULT = 0, /* 403 page for documents, 204 otherwise */
    GT_RESP_403,
    GT_RESP_204,
    GT_RESP_JS,
    GT_RESP_CSS,
    GT_RESP_JSON,
    GT_RESP_HTML,
    GT_RESP_TEXT,
    GT_RESP_GIF,
    GT_RESP_PNG,
    GT_RESP_COUNT
} gt_resp_kind;

typedef struct {
    int status;
    const char *content_type; /* NULL for no body */
    const char *body;
    size_t body_len;
    const char *name; /* as rules name it: "gif", "noop.js", ... */
} gt_resource;
/* The response for a kind, resolving GT_RESP_DEFAULT by request type. */
const gt_resource *gt_rules_resource(gt_resp_kind k, gt_reqtype type);

/* A product key extracted by a rule: "SCOPE:ID". */
typedef struct {
    gt_slice key;
    bool bought;
    bool purchased; /* named by a mark-bought rule: a completed purchase of it was seen */
    bool alias;     /* another form of an id the request names (an `alias` rule) */
    const gt_rule *rule;
} gt_product;

/* Header edits a forwarded request gets, in rule order. */
typedef enum { GT_HDR_REMOVE, GT_HDR_SET, GT_HDR_REMOVE_COOKIE, GT_HDR_TRIM_REFERER } gt_hdr_op_kind;
typedef struct {
    gt_hdr_op_kind kind;
    gt_slice name, value;  /* REMOVE/SET: header; REMOVE_COOKIE: cookie name (or empty) */
    const void *cookie_re; /* REMOVE_COOKIE by regex (internal), or NULL */
    const gt_rule *rule;
} gt_hdr_op;

/* Called for each product key to learn whether it is bought; the engine itself does no
 * I/O. NULL means nothing is bought. */
typedef bool (*gt_bought_fn)(void *arg, gt_slice key);

#define GT_DECISION_MAX_PRODUCTS 32
#define GT_DECISION_MAX_HDR_OPS 32
#define GT_DECISION_MAX_LOGS 8

typedef struct {
    gt_decide_action action;
    const gt_rule *rule;     /* the deciding rule, NULL for PASS */
    const gt_rule *overridden; /* ALLOW: the block/redirect rule the exception cancelled */
    gt_resp_kind resp;       /* BLOCK/REDIRECT */
    bool bought;             /* decided by block-if-bought on a bought product */
    bool purchase;           /* some product was named by a mark-bought rule */
    /* Rewrites (ALLOW, REWRITE, PASS never have a changed path; REWRITE always has
     * something): the new path+query when changed, in scratch memory. */
    bool path_changed;
    gt_slice new_path;
    const gt_rule *rewrite_rule; /* first rewrite rule that changed something */
    gt_hdr_op hdr_ops[GT_DECISION_MAX_HDR_OPS];
    size_t nhdr_ops;
    gt_product products[GT_DECISION_MAX_PRODUCTS];
    size_t nproducts;
    const gt_rule *logs[GT_DECISION_MAX_LOGS]; /* `log` rules that matched */
    size_t nlogs;
    unsigned candidates; /* rules evaluated (for explain and benchmarks) */
    /* decided by a list filter (src/lists) rather than a rule: its file and line */
    const char *list_file;
    unsigned list_line;
} gt_decision;

/* Decides one request. The decision's slices point into the scratch and stay valid until
 * the next decide on the same scratch. Never fails: a pattern that exceeds PCRE2's match
 * limits counts as not matching. */
void gt_rules_decide(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rules_request *rq,
                     gt_bought_fn bought, void *bought_arg, gt_decision *d);

/* Rule identity and text, for X-Gretel, logs and explain. */
const char *gt_rule_file(const gt_rule *r);
unsigned gt_rule_line(const gt_rule *r);
/* Where a decision came from: a list filter's file and line, else the deciding rule's. */
static inline const char *gt_decision_file(const gt_decision *d)
{
    return d->list_file ? d->list_file : gt_rule_file(d->rule);
}
static inline unsigned gt_decision_line(const gt_decision *d)
{
    return d->list_file ? d->list_line : gt_rule_line(d->rule);
}
const char *gt_rule_text(const gt_rule *r);
const char *gt_decide_action_name(gt_decide_action a);

/* Writes a human explanation of how rule r judged the request: each condition, its
 * result and what it saw. Returns the bytes written (truncated at cap, NUL-terminated). */
size_t gt_rules_explain_rule(const gt_ruleset *rs, gt_rules_scratch *sc, const gt_rule *r,
                             const gt_rules_request *rq, char *out, size_t cap);

/* Fills the party from the source's registrable domain against the host's when it is
 * GT_PARTY_UNKNOWN (batch lines and the CLI have no Sec-Fetch-Site). */
void gt_rules_request_complete(const gt_psl *psl, gt_rules_request *rq);

/* Cookie header filtering for GT_HDR_REMOVE_COOKIE ops: writes value minus the named
 * cookies into out (room for 2 * value.len: pairs are re-joined with "; "); returns the
 * new length, 0 when no cookie is left. */
size_t gt_rules_filter_cookies(const gt_decision *d, gt_slice value, char *out);
/* The origin ("https://a.b", no trailing slash) of a Referer for trim-referer; empty if it
 * has none. */
gt_slice gt_rules_referer_origin(gt_slice referer);

/* ------------------------------------------------------------------------------------
 * Decoders used by product extraction (exposed for tests and fuzzing). Each writes at
 * most in.len bytes (decoding never grows) and returns the length. */
size_t gt_rules_percent_decode(gt_slice in, char *out, bool plus_is_space);
/* Base64url or base64, padding optional; returns (size_t)-1 when invalid. */
size_t gt_rules_base64_decode(gt_slice in, char *out);

#endif
