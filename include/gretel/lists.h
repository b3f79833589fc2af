/* Adblock Plus network filters (EasyList, EasyPrivacy, uBlock lists) and hosts lists: the
 * parser and the meaning of one filter against one request. The filters' index and their
 * place in the engine's snapshot build on this (issue 7). No sockets, no store. */
#ifndef GT_LISTS_H
#define GT_LISTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gretel/rules.h"
#include "gretel/slice.h"

/* What a list line is. Lines of the skipped kinds are counted, not used: a proxy sees
 * requests, not pages or scripts. */
typedef enum {
    GT_ABP_NETWORK = 0, /* a network filter: parsed into gt_abp_filter */
    GT_ABP_EMPTY,       /* blank line */
    GT_ABP_COMMENT,     /* "! ..." or "[Adblock Plus 2.0]" */
    GT_ABP_COSMETIC,    /* ##, #@#, #?#, #$#, #@?#: element hiding and styles */
    GT_ABP_SCRIPTLET,   /* ##+js(...), #%#: scripts a page would run */
    GT_ABP_HTML,        /* $$ / #$?#: HTML filtering of documents */
    GT_ABP_CSP,         /* $csp=: a header a proxy could add, not yet honoured */
    GT_ABP_POPUP,       /* $popup: a window a browser opens */
    GT_ABP_UNSUPPORTED, /* an option this version cannot honour faithfully */
    GT_ABP_INVALID,     /* malformed (bad regex, empty pattern with no options, ...) */
    GT_ABP_KIND_COUNT
} gt_abp_kind;

const char *gt_abp_kind_name(gt_abp_kind k);

enum {
    GT_ABP_EXCEPTION = 1 << 0,  /* @@ */
    GT_ABP_IMPORTANT = 1 << 1,
    GT_ABP_MATCH_CASE = 1 << 2,
    GT_ABP_BADFILTER = 1 << 3,
    GT_ABP_HOST_ANCHOR = 1 << 4, /* || */
    GT_ABP_LEFT_ANCHOR = 1 << 5, /* | at the start */
    GT_ABP_RIGHT_ANCHOR = 1 << 6, /* | at the end */
    GT_ABP_REGEX = 1 << 7,       /* /.../ */
    GT_ABP_THIRD_PARTY = 1 << 8,
    GT_ABP_FIRST_PARTY = 1 << 9,
    GT_ABP_DOCUMENT = 1 << 10,   /* $document (only "document" requests) */
    GT_ABP_HOST_ONLY = 1 << 11,  /* a hosts-list entry: the pattern is a host, matched
                                    with its subdomains (as ||host^) */
    GT_ABP_REMOVEPARAM = 1 << 12, /* $removeparam[=...]: a rewrite of the query, not a
                                     block (removeparam holds the value, maybe empty) */
};

/* One network filter. Slices point into the line given to gt_abp_parse. */
typedef struct {
    uint32_t flags;
    uint32_t types;     /* bit (1 << gt_reqtype) per type it applies to; 0 = every type */
    gt_slice pattern;   /* without anchors and the options; lower-cased by the matcher */
    gt_slice domains;   /* domain= value as written: "a.example|~b.a.example" (~ excludes) */
    gt_slice redirect;  /* redirect= / redirect-rule= / rewrite=abp-resource: resource */
    gt_slice methods;   /* method= value as written: "post|get" (~ excludes) */
    gt_slice removeparam;
    void *re;           /* pcre2_code for regex filters (owned; gt_abp_filter_free) */
} gt_abp_filter;

/* Parses one list line. Returns its kind; for GT_ABP_NETWORK f is filled. On
 * GT_ABP_INVALID and GT_ABP_UNSUPPORTED, why (static) says what is wrong. */
gt_abp_kind gt_abp_parse(gt_slice line, gt_abp_filter *f, const char **why);
void gt_abp_filter_free(gt_abp_filter *f);

/* A request as list filters see it. url is the full URL; host its host; source_host the
 * page's host (empty when unknown); party first/third, or GT_PARTY_UNKNOWN with psl and
 * source_url set: then it is worked out (registrable domains) the first time a filter
 * with a party option needs it, and kept. */
typedef struct {
    gt_slice url, host, source_host;
    gt_slice method; /* empty: unknown (method= filters then do not match) */
    gt_slice lurl;   /* optional: url lower-cased (same length), to search in quickly */
    gt_reqtype type;
    gt_party party;
    const gt_psl *psl;
    gt_slice source_url;
} gt_abp_request;

/* Whether the filter applies to the request (for an exception: whether it excepts it).
 * May fill rq->party. */
bool gt_abp_match(const gt_abp_filter *f, gt_abp_request *rq);

/* A hosts-file line ("0.0.0.0 host", "127.0.0.1 host") or a plain domain-list line:
 * the host to block (lower-case, into out), or 0 when the line names none. */
size_t gt_hosts_line(gt_slice line, char *out, size_t cap);

/* --- a compiled set of list files (src/lists/set.c) --- */

typedef struct gt_abp_set gt_abp_set;
typedef enum { GT_ABP_PASS = 0, GT_ABP_BLOCK, GT_ABP_ALLOW } gt_abp_verdict;

/* Reads and indexes list files (Adblock Plus lists, hosts files, domain lists). Files
 * that cannot be read are reported in d and skipped. */
int gt_abp_set_load(gt_abp_set **out, const char *const *files, size_t nfiles, gt_diags *d);
/* The same, through a compiled cache at cache_path (src/lists/cache.c): restored from it
 * when it was written for exactly these files (names and contents), else built and written
 * there (a failure to write is a warning in d). from_cache says which. */
int gt_abp_set_load_cached(gt_abp_set **out, const char *const *files, size_t nfiles,
                           const char *cache_path, gt_diags *d, bool *from_cache);
/* Writes the set's compiled form to path (mode 0600, atomically by rename). */
int gt_abp_set_save(const gt_abp_set *s, const char *path, char *err, size_t errlen);
void gt_abp_set_free(gt_abp_set *s); /* NULL-safe */
/* A fingerprint of the set's files as they are now (stat: inode, size, mtime) and of what
 * the glob patterns match: the server's watcher reloads when it changes. s may be NULL. */
uint64_t gt_abp_set_stamp(const gt_abp_set *s, const char *const *patterns, size_t npatterns);
size_t gt_abp_set_count(const gt_abp_set *s);
/* The set's list files and how many network filters each gave: up to cap of them into names
 * and filters; returns how many files there are (0 for NULL). */
size_t gt_abp_set_files(const gt_abp_set *s, const char **names, size_t *filters, size_t cap);
void gt_abp_set_stats(const gt_abp_set *s, size_t *by_host, size_t *by_token, size_t *always);
/* The verdict of the set for one request: BLOCK (an important block, or a block no
 * exception cancels), ALLOW (an exception cancelled a block), PASS. file and line name the
 * deciding filter (when file is not NULL). */
gt_abp_verdict gt_abp_set_decide(const gt_abp_set *s, const gt_abp_request *rq,
                                 const char **file, unsigned *line);

/* The lists' part of a decision, after gretel's rules (one precedence table, docs/LISTS.md):
 * a request the rules passed or only rewrote is blocked (or redirected, for $redirect= to
 * a resource gretel has) when the lists block it; the rules' own block, redirect or allow
 * stands. A request that goes on loses the query parameters the lists' $removeparam
 * filters remove (the new path in sc's output area, as the rules' rewrites). A CONNECT
 * (host_only) is judged only by filters that name nothing but a host (`||host^`, hosts
 * entries). psl: for the party, when a filter asks and rq->party is unknown. sc: the
 * scratch the rules decided with (NULL: no rewrites). */
void gt_lists_apply(const gt_abp_set *s, const gt_rules_request *rq, const gt_psl *psl,
                    gt_rules_scratch *sc, gt_decision *d);

#endif
