/* Shared between the files of src/lists only: the compiled set's layout (set.c builds
 * and matches it, cache.c saves and restores it). */
#ifndef GT_LISTS_INTERNAL_H
#define GT_LISTS_INTERNAL_H

#include <stdint.h>

#include "gretel/lists.h"

/* A filter as stored: gt_abp_filter's slices as offsets into its line. */
enum { F_PATTERN, F_DOMAINS, F_REDIRECT, F_METHODS, F_REMOVEPARAM, F_NSLICES };

typedef struct {
    uint32_t flags, types;
    uint32_t text_off; /* the line in bufs[fileix] */
    uint32_t line;
    uint16_t text_len, fileix;
    uint16_t off[F_NSLICES], len[F_NSLICES]; /* within the line */
    uint32_t re; /* 1 + index in res (regex filters), 0 for none */
} entry;

enum { V_BLOCK, V_EXCEPTION, V_IMPORTANT };

/* A candidate in a bucket: what turns most candidates down without a look at the entry. */
typedef struct {
    uint32_t ix;    /* the entry */
    uint32_t types; /* the entry's types (0: every type) */
    uint32_t lit;   /* its longest literal (lower-cased) in lits: the URL must contain it */
    uint16_t lit_len;
    uint8_t verdict; /* V_* */
    uint8_t anchor;  /* the literal's byte to search for (anchor_of) */
    uint16_t lit_at; /* where the key (token, host) starts in the literal, AT_NONE when it
                        is not in it: then the literal is searched for, else compared where
                        the key was found in the URL */
} hot;

#define AT_NONE UINT16_MAX

/* One key (a host's, token's or source domain's full hash) and its run in the hot array.
 * Open addressing keyed by the full hash: a token no filter offers is answered by the
 * table alone (most tokens are such). */
typedef struct {
    uint32_t start, count;
} slot;

/* The keys apart from their runs: a probe reads 4 bytes a slot, so the token table's
 * keys (the most probed) stay in the near caches. */
typedef struct {
    uint32_t *keys; /* 0: empty slot (keys are never 0, see key_of) */
    slot *s;
    size_t mask;
    /* two bits per key in a bitmap of 4 bits per slot: most absent keys (a request's
     * hosts and parents that no filter names) are answered from it, which stays in the
     * near caches while the keys of a hundred thousand hosts do not */
    uint64_t *bloom;
    size_t bloom_mask; /* in bits */
} ktable;

struct gt_abp_set {
    char **bufs;
    size_t *blen;
    size_t nbufs;
    char **files;
    uint64_t fingerprint; /* of the files' names and contents: the compiled cache's key */
    void *map;            /* restored from the compiled cache: v, hot, lits and the key
                             tables point into this read-only mapping (cache.c) */
    size_t map_len;
    entry *v;
    size_t n, cap;
    void **res; /* compiled regexes (pcre2_code), owned */
    size_t nres, res_cap;
    hot *hot;
    size_t nhot;
    char *lits;
    size_t lits_len;
    ktable tok, host, dom;
    ktable rmhost; /* $removeparam filters by host (rewrites, not verdicts) */
    uint32_t nrmhost;
    size_t tok_max; /* the longest token any filter is filed under: longer URL tokens
                       (session ids, hashes) need no look-up */
    uint32_t always, nalways;   /* run of filters tried on every request */
    uint32_t rmparam, nrmparam; /* run of the other $removeparam filters */
    size_t stats[5];            /* by host, by token, always, badfiltered, by domain */
};

#define NONE UINT32_MAX

/* Reads the list files into a new set (their text is what filters point into) and takes
 * their fingerprint. Files that cannot be read are reported in d and skipped. */
gt_abp_set *gt_lists_read_files(const char *const *files, size_t nfiles, gt_diags *d);
/* Parses the set's files into entries, then indexes them. */
void gt_lists_build(gt_abp_set *s, gt_diags *d);

#endif
