/* The bought-products store: one LMDB environment in the `store` directory, shared by the
 * running proxy (reads) and the CLI (writes) at the same time. A product key ("SCOPE:ID")
 * maps to a record (label, source, added, expires). Writes are committed with LMDB's
 * default durability (fsync at commit), so a mark that was acknowledged survives a crash.
 * Nothing here knows about HTTP or rules. */
#ifndef GT_STORE_H
#define GT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gretel/slice.h"

typedef struct gt_store gt_store;

#define GT_STORE_SCHEMA 1
#define GT_STORE_KEY_MAX 400

typedef struct {
    char key[GT_STORE_KEY_MAX + 1];
    char label[256];
    char source[256]; /* "manual", or "auto: NETWORK on SITE" */
    uint64_t added;   /* unix seconds */
    uint64_t expires; /* unix seconds, 0 = never */
} gt_store_rec;

/* Opens (creating, mode 0700) the store in dir. On failure returns a negative GT_E* code
 * and writes a one-line reason into err: not a directory, unwritable, corrupt, or written
 * by a newer schema. The handle is shared by threads (LMDB read transactions are per
 * thread); the caller owns it until gt_store_close. */
int gt_store_open(gt_store **out, const char *dir, char *err, size_t errlen);
void gt_store_close(gt_store *s); /* NULL-safe */

/* Canonical form of a key: "SCOPE:ID" with the scope lower-cased and both parts trimmed;
 * returns its length, or 0 when key is not of that form (then err says why). */
size_t gt_store_canonical_key(gt_slice key, char *out, size_t cap, char *err, size_t errlen);

/* Adds or replaces a record (committed and synced before returning 0). ttl_days 0: never
 * expires. A full map is grown and the write retried. */
int gt_store_mark(gt_store *s, gt_slice key, gt_slice label, gt_slice source, unsigned ttl_days,
                  char *err, size_t errlen);
/* Removes a record: 0, GT_ENOTFOUND if absent, or another error. */
int gt_store_unmark(gt_store *s, gt_slice key, char *err, size_t errlen);
/* Rebuilds the in-memory filter of bought keys when the store changed since the last
 * build (a new LMDB transaction id). Call from one thread only (the main thread's timer);
 * lookups on any thread use the newest filter and fall back to LMDB while it is stale. */
int gt_store_refresh(gt_store *s);
/* Whether key is bought now (present and not expired). Errors count as not bought. A key
 * the current filter excludes costs no LMDB transaction. Any thread. */
bool gt_store_is_bought(gt_store *s, gt_slice key);
/* Calls fn for every record in key order (expired ones included); stops when fn returns
 * false. Returns the number of records visited, or a negative error. */
typedef bool (*gt_store_each_fn)(void *arg, const gt_store_rec *rec);
long gt_store_foreach(gt_store *s, gt_store_each_fn fn, void *arg);
/* How many records there are (expired ones included), without visiting them. */
long gt_store_count(gt_store *s);
/* Adds many records in one transaction: all or nothing (import). */
int gt_store_mark_all(gt_store *s, const gt_store_rec *recs, size_t n, char *err,
                      size_t errlen);

/* One writer thread for marks the proxy makes itself (purchases seen on the wire): workers
 * hand it keys and never wait for LMDB's fsync. A bounded queue; when it is full the mark
 * is dropped (and counted) rather than block a worker. */
typedef struct gt_store_writer gt_store_writer;
/* Starts the thread; the writer borrows s, which must outlive it. NULL on failure. */
gt_store_writer *gt_store_writer_start(gt_store *s);
/* Queues a mark (copied); false when the queue is full. Any thread. */
bool gt_store_writer_put(gt_store_writer *w, gt_slice key, gt_slice source);
/* Writes what is queued, stops the thread and frees it. NULL-safe. Returns how many marks
 * were written in its life, and *dropped how many were refused by a full queue. */
unsigned long gt_store_writer_stop(gt_store_writer *w, unsigned long *dropped);

#endif
