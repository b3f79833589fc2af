/* The leaf cache: a bounded LRU in memory, shared by every worker under one mutex, over an
 * LMDB environment of its own (<store>/certs) that keeps minted leaves across restarts.
 * The cache has its own environment rather than a database in the bought store because
 * every commit there changes the transaction id the bought filter is keyed on, and a new
 * certificate must not trigger a rebuild of a million-key filter. New leaves are written by
 * the main thread (gt_certs_flush) in one durable transaction per tick, so workers never
 * wait for a sync; a leaf lost to a crash is simply minted again. */
#include <errno.h>
#include <lmdb.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/queue.h>
#include <time.h>

#include "gretel/tls.h"
#include "gretel/util.h"
#include "internal.h"

#define BUCKETS 4096
#define CACHE_MAP (64u << 20)
#define PENDING_MAX 4096

typedef struct entry {
    char name[256];
    unsigned hash;
    X509 *cert;
    time_t not_after;
    struct entry *next;  /* bucket chain */
    TAILQ_ENTRY(entry) lru;
} entry;

typedef struct pending {
    char name[256];
    unsigned char *der;
    int len;
    struct pending *next;
} pending;

struct gt_certs {
    const gt_ca *ca;
    pthread_mutex_t lock;
    entry *buckets[BUCKETS];
    TAILQ_HEAD(, entry) lru;
    size_t n, max;
    pending *pend; /* minted, not yet in LMDB */
    size_t npend;
    MDB_env *env;
    MDB_dbi dbi;
    gt_certs_stats stats;
};

static unsigned hash_name(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static time_t not_after_of(X509 *x)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
        return 0;
    return timegm(&tm);
}

static void open_cache(gt_certs *c, const char *dir, char *err, size_t errlen)
{
    int rc;
    MDB_txn *txn = NULL;
    /* the store directory may not exist yet on a first run */
    if (gt_mkdir_private(dir) < 0) {
        snprintf(err, errlen, "certificate cache %s: %s", dir, strerror(errno));
        return;
    }
    if ((rc = mdb_env_create(&c->env)) != 0 || (rc = mdb_env_set_mapsize(c->env, CACHE_MAP)) != 0 ||
        (rc = mdb_env_open(c->env, dir, MDB_NOTLS, 0600)) != 0 ||
        (rc = mdb_txn_begin(c->env, NULL, 0, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, NULL, 0, &c->dbi)) != 0 || (rc = mdb_txn_commit(txn)) != 0) {
        if (txn && rc)
            mdb_txn_abort(txn);
        snprintf(err, errlen, "certificate cache %s: %s (running with memory only)", dir,
                 mdb_strerror(rc));
        if (c->env)
            mdb_env_close(c->env);
        c->env = NULL;
    }
}

gt_certs *gt_certs_new(const gt_ca *ca, const char *cache_dir, size_t max_entries, char *err,
                       size_t errlen)
{
    gt_certs *c = gt_xcalloc(1, sizeof(*c));
    c->ca = ca;
    c->max = max_entries ? max_entries : 1;
    pthread_mutex_init(&c->lock, NULL);
    TAILQ_INIT(&c->lru);
    if (err && errlen)
        err[0] = 0;
    if (cache_dir)
        open_cache(c, cache_dir, err, errlen);
    return c;
}

static void drop_entry(gt_certs *c, entry *e)
{
    entry **pp = &c->buckets[e->hash % BUCKETS];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    TAILQ_REMOVE(&c->lru, e, lru);
    X509_free(e->cert);
    free(e);
    c->n--;
}

void gt_certs_free(gt_certs *c)
{
    if (!c)
        return;
    gt_certs_flush(c);
    entry *e;
    while ((e = TAILQ_FIRST(&c->lru)) != NULL)
        drop_entry(c, e);
    for (pending *p = c->pend, *nx; p; p = nx) {
        nx = p->next;
        free(p->der);
        free(p);
    }
    if (c->env)
        mdb_env_close(c->env);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* A cached leaf is usable when it is ours (issued under this CA, on this install's leaf
 * key: a CA replaced with `ca init --force` orphans the old ones) and not near expiry. */
static bool usable(const gt_certs *c, X509 *x, time_t now)
{
    time_t na = not_after_of(x);
    if (na - now < GT_LEAF_RENEW_S)
        return false;
    if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(gt_ca_cert(c->ca))) != 0)
        return false;
    EVP_PKEY *pk = X509_get0_pubkey(x);
    return pk && EVP_PKEY_eq(pk, gt_ca_leaf_key(c->ca)) == 1;
}

static X509 *from_store(gt_certs *c, const char *name, time_t now)
{
    if (!c->env)
        return NULL;
    MDB_txn *txn;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn) != 0)
        return NULL;
    MDB_val k = {strlen(name), (void *)name}, v;
    X509 *x = NULL;
    if (mdb_get(txn, c->dbi, &k, &v) == 0) {
        const unsigned char *p = v.mv_data;
        x = d2i_X509(NULL, &p, (long)v.mv_size);
    }
    mdb_txn_abort(txn);
    if (x && !usable(c, x, now)) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

static void insert(gt_certs *c, const char *name, unsigned h, X509 *x)
{
    while (c->n >= c->max)
        drop_entry(c, TAILQ_FIRST(&c->lru));
    entry *e = gt_xcalloc(1, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->hash = h;
    e->cert = x;
    X509_up_ref(x);
    e->not_after = not_after_of(x);
    e->next = c->buckets[h % BUCKETS];
    c->buckets[h % BUCKETS] = e;
    TAILQ_INSERT_TAIL(&c->lru, e, lru);
    c->n++;
}

X509 *gt_certs_get(gt_certs *c, const char *name, bool *minted, char *err, size_t errlen)
{
    *minted = false;
    if (strlen(name) >= sizeof(((entry *)0)->name)) {
        snprintf(err, errlen, "name too long for a certificate");
        return NULL;
    }
    time_t now = time(NULL);
    unsigned h = hash_name(name);
    pthread_mutex_lock(&c->lock);
    for (entry *e = c->buckets[h % BUCKETS]; e; e = e->next) {
        if (e->hash == h && strcmp(e->name, name) == 0) {
            if (e->not_after - now < GT_LEAF_RENEW_S) {
                drop_entry(c, e); /* reissued below, long before browsers would refuse it */
                break;
            }
            TAILQ_REMOVE(&c->lru, e, lru);
            TAILQ_INSERT_TAIL(&c->lru, e, lru);
            X509_up_ref(e->cert);
            c->stats.hits++;
            X509 *x = e->cert;
            pthread_mutex_unlock(&c->lock);
            return x;
        }
    }
    X509 *x = from_store(c, name, now);
    if (x) {
        c->stats.loaded++;
    } else {
        uint64_t t0 = gt_now_us();
        x = gt_ca_mint(c->ca, name, now, err, errlen);
        if (!x) {
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        c->stats.minted++;
        c->stats.mint_us_total += gt_now_us() - t0;
        *minted = true;
        if (c->env && c->npend < PENDING_MAX) {
            pending *p = gt_xcalloc(1, sizeof(*p));
            snprintf(p->name, sizeof(p->name), "%s", name);
            p->len = i2d_X509(x, &p->der);
            if (p->len > 0) {
                p->next = c->pend;
                c->pend = p;
                c->npend++;
            } else {
                free(p);
            }
        }
    }
    insert(c, name, h, x);
    pthread_mutex_unlock(&c->lock);
    return x; /* the caller's reference is the one from minting or loading */
}

static int write_all(gt_certs *c, pending *list, size_t *stored)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    *stored = 0;
    for (pending *p = list; rc == 0 && p; p = p->next) {
        MDB_val k = {strlen(p->name), p->name}, v = {(size_t)p->len, p->der};
        rc = mdb_put(txn, c->dbi, &k, &v, 0);
        *stored += rc == 0;
    }
    if (rc == 0)
        return mdb_txn_commit(txn);
    mdb_txn_abort(txn);
    return rc;
}

static int clear_all(gt_certs *c)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_drop(txn, c->dbi, 0);
    if (rc == 0)
        return mdb_txn_commit(txn);
    mdb_txn_abort(txn);
    return rc;
}

void gt_certs_flush(gt_certs *c)
{
    pthread_mutex_lock(&c->lock);
    pending *list = c->pend;
    c->pend = NULL;
    c->npend = 0;
    pthread_mutex_unlock(&c->lock);
    if (!list)
        return;
    size_t stored = 0;
    if (c->env) {
        int rc = write_all(c, list, &stored);
        if (rc == MDB_MAP_FULL && clear_all(c) == 0)
            rc = write_all(c, list, &stored); /* a cache: start over, never grow unbounded */
        if (rc != 0)
            stored = 0;
    }
    for (pending *p = list, *nx; p; p = nx) {
        nx = p->next;
        free(p->der);
        free(p);
    }
    pthread_mutex_lock(&c->lock);
    c->stats.stored += stored;
    pthread_mutex_unlock(&c->lock);
}

void gt_certs_get_stats(gt_certs *c, gt_certs_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}
