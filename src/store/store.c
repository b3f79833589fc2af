/* The bought-products store on LMDB: an environment with two named databases, "meta" (the
 * schema version) and "products" (key -> record). Records are a small versioned binary
 * layout. Owns the MDB_env; knows nothing about HTTP or rules. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gretel/products.h"
#include "gretel/store.h"
#include "gretel/util.h"

/* A Bloom filter of the keys bought at one LMDB transaction id. Most pixels name products
 * that are not bought; while the store is unchanged (same last txnid), a negative answer
 * comes from here without a read transaction. */
typedef struct {
    uint64_t txnid;
    size_t nbits; /* power of two */
    uint64_t *bits;
} bfilter;

#define FILTER_RETIRED 4

struct gt_store {
    MDB_env *env;
    MDB_dbi meta, products;
    /* Read transactions hold it shared; adopting a map another process grew
     * (MDB_MAP_RESIZED) needs it exclusive, since LMDB allows that only with no
     * transaction open in this process. */
    pthread_rwlock_t txn_lock;
    _Atomic(bfilter *) filter;
    /* Replaced filters are freed FILTER_RETIRED refreshes later: a reader holds one for a
     * few hundred nanoseconds, refreshes are at least 100 ms apart. */
    bfilter *retired[FILTER_RETIRED];
    unsigned next_retired;
};

#define REC_VERSION 1
#define MAP_START (64u << 20)

/* "store[ DIR]: LMDB's message" into err */
static void say(char *err, size_t errlen, const char *dir, int rc)
{
    if (err && errlen)
        snprintf(err, errlen, "store%s%s: %s", dir ? " " : "", dir ? dir : "",
                 rc ? mdb_strerror(rc) : "map could not grow");
}

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* [version][added u64][expires u64][label len u16][label][source len u16][source] */
static size_t encode(const gt_store_rec *r, unsigned char *buf, size_t cap)
{
    size_t ll = strlen(r->label), sl = strlen(r->source);
    size_t n = 1 + 8 + 8 + 2 + ll + 2 + sl;
    if (n > cap)
        return 0;
    unsigned char *p = buf;
    *p++ = REC_VERSION;
    put_u64(p, r->added);
    p += 8;
    put_u64(p, r->expires);
    p += 8;
    *p++ = (unsigned char)(ll & 0xff);
    *p++ = (unsigned char)(ll >> 8);
    memcpy(p, r->label, ll);
    p += ll;
    *p++ = (unsigned char)(sl & 0xff);
    *p++ = (unsigned char)(sl >> 8);
    memcpy(p, r->source, sl);
    return n;
}

static bool decode(const MDB_val *k, const MDB_val *v, gt_store_rec *r)
{
    memset(r, 0, sizeof(*r));
    const unsigned char *p = v->mv_data, *end = p + v->mv_size;
    if (k->mv_size > GT_STORE_KEY_MAX || v->mv_size < 21 || p[0] != REC_VERSION)
        return false;
    memcpy(r->key, k->mv_data, k->mv_size);
    p++;
    r->added = get_u64(p);
    p += 8;
    r->expires = get_u64(p);
    p += 8;
    size_t ll = (size_t)p[0] | (size_t)p[1] << 8;
    p += 2;
    if (ll >= sizeof(r->label) || (size_t)(end - p) < ll + 2)
        return false;
    memcpy(r->label, p, ll);
    p += ll;
    size_t sl = (size_t)p[0] | (size_t)p[1] << 8;
    p += 2;
    if (sl >= sizeof(r->source) || (size_t)(end - p) < sl)
        return false;
    memcpy(r->source, p, sl);
    return true;
}

int gt_store_open(gt_store **out, const char *dir, char *err, size_t errlen)
{
    *out = NULL;
    int rc;
    MDB_txn *txn = NULL;
    gt_store *s = gt_xcalloc(1, sizeof(*s));
    struct stat st;
    /* each missing level private: the list of what you bought is nobody else's business
     * on a shared machine */
    if (gt_mkdir_private(dir) < 0) {
        snprintf(err, errlen, "store %s: cannot create: %s", dir, strerror(errno));
        goto fail;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "store %s: not a directory", dir);
        goto fail;
    }
    if ((rc = mdb_env_create(&s->env)) != 0 || (rc = mdb_env_set_maxdbs(s->env, 4)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, MAP_START)) != 0) {
        say(err, errlen, dir, rc);
        goto fail;
    }
    /* MDB_NOTLS: read transactions belong to the call that made them, not to the thread,
     * so event-loop threads may look things up without a per-thread reader slot. */
    if ((rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0) {
        snprintf(err, errlen, "store %s: cannot open: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead); /* readers of processes killed mid-read */
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0 ||
        (rc = mdb_dbi_open(txn, "products", MDB_CREATE, &s->products)) != 0) {
        snprintf(err, errlen, "store %s: %s%s", dir, mdb_strerror(rc),
                 rc == EACCES ? " (not writable)" : "");
        goto fail;
    }
    MDB_val k = {6, (void *)"schema"}, v;
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        unsigned char ver[4] = {GT_STORE_SCHEMA, 0, 0, 0};
        v.mv_size = 4;
        v.mv_data = ver;
        rc = mdb_put(txn, s->meta, &k, &v, 0);
    } else if (rc == 0) {
        unsigned ver = v.mv_size == 4 ? ((const unsigned char *)v.mv_data)[0] : 0;
        if (ver == 0 || ver > GT_STORE_SCHEMA) {
            snprintf(err, errlen,
                     "store %s: written by a newer gretel (schema %u, this one knows %u)", dir,
                     ver, GT_STORE_SCHEMA);
            goto fail;
        }
    }
    if (rc != 0 || (rc = mdb_txn_commit(txn)) != 0) {
        txn = NULL;
        say(err, errlen, dir, rc);
        goto fail;
    }
    pthread_rwlock_init(&s->txn_lock, NULL);
    *out = s;
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (s->env)
        mdb_env_close(s->env);
    free(s);
    return GT_EIO;
}

static void filter_free(bfilter *f)
{
    if (f) {
        free(f->bits);
        free(f);
    }
}

void gt_store_close(gt_store *s)
{
    if (!s)
        return;
    filter_free(atomic_load(&s->filter));
    for (unsigned i = 0; i < FILTER_RETIRED; i++)
        filter_free(s->retired[i]);
    mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->txn_lock);
    free(s);
}

/* Begins a read transaction with the shared lock held (released by read_end). A map grown
 * by another process is adopted here, once, under the exclusive lock. */
static int read_begin(gt_store *s, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&s->txn_lock);
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        pthread_rwlock_unlock(&s->txn_lock);
        pthread_rwlock_wrlock(&s->txn_lock);
        mdb_env_set_mapsize(s->env, 0); /* 0: take the size the file now has */
        pthread_rwlock_unlock(&s->txn_lock);
        pthread_rwlock_rdlock(&s->txn_lock);
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    }
    if (rc != 0)
        pthread_rwlock_unlock(&s->txn_lock);
    return rc;
}

static void read_end(gt_store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->txn_lock);
}

static uint64_t key_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

#define FILTER_K 3

static bool filter_maybe(const bfilter *f, const void *key, size_t n)
{
    uint64_t h = key_hash(key, n), h2 = (h >> 32) | 1;
    for (int i = 0; i < FILTER_K; i++) {
        size_t bit = (size_t)(h + (uint64_t)i * h2) & (f->nbits - 1);
        if (!(f->bits[bit / 64] & (1ULL << (bit % 64))))
            return false;
    }
    return true;
}

static uint64_t last_txnid(gt_store *s)
{
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) != 0)
        return UINT64_MAX;
    return (uint64_t)info.me_last_txnid;
}

int gt_store_refresh(gt_store *s)
{
    if (!s)
        return 0;
    uint64_t id = last_txnid(s);
    bfilter *cur = atomic_load(&s->filter);
    if (cur && cur->txnid == id)
        return 0;
    MDB_txn *txn;
    MDB_cursor *cur_c;
    MDB_stat st;
    if (read_begin(s, &txn) != 0)
        return GT_EIO;
    /* the transaction's own id is the snapshot the filter describes */
    id = (uint64_t)mdb_txn_id(txn);
    if (mdb_stat(txn, s->products, &st) != 0 || mdb_cursor_open(txn, s->products, &cur_c) != 0) {
        read_end(s, txn);
        return GT_EIO;
    }
    bfilter *f = gt_xcalloc(1, sizeof(*f));
    f->txnid = id;
    f->nbits = 1u << 16;
    while (f->nbits < st.ms_entries * 16 && f->nbits < (1ULL << 34))
        f->nbits <<= 1; /* ~16 bits a key: about 0.05% false positives with 3 hashes */
    f->bits = gt_xcalloc(f->nbits / 64, sizeof(uint64_t));
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur_c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur_c, &k, &v, MDB_NEXT)) {
        uint64_t h = key_hash(k.mv_data, k.mv_size), h2 = (h >> 32) | 1;
        for (int i = 0; i < FILTER_K; i++) {
            size_t bit = (size_t)(h + (uint64_t)i * h2) & (f->nbits - 1);
            f->bits[bit / 64] |= 1ULL << (bit % 64);
        }
    }
    mdb_cursor_close(cur_c);
    read_end(s, txn);
    bfilter *old = atomic_exchange(&s->filter, f);
    filter_free(s->retired[s->next_retired]);
    s->retired[s->next_retired] = old;
    s->next_retired = (s->next_retired + 1) % FILTER_RETIRED;
    return 0;
}

size_t gt_store_canonical_key(gt_slice key, char *out, size_t cap, char *err, size_t errlen)
{
    key = gt_slice_trim(key);
    const char *colon = key.len ? memchr(key.p, ':', key.len) : NULL;
    if (!colon) {
        snprintf(err, errlen, "a product key is SCOPE:ID (e.g. shop.example:SKU-1 or gtin:...)");
        return 0;
    }
    const char *why = NULL;
    size_t n = gt_products_key(gt_slice_make(key.p, (size_t)(colon - key.p)),
                               gt_slice_make(colon + 1, (size_t)(key.p + key.len - colon - 1)),
                               out, cap < GT_STORE_KEY_MAX + 1 ? cap : GT_STORE_KEY_MAX + 1,
                               &why);
    if (!n)
        snprintf(err, errlen, "%s", why ? why : "not a product key");
    return n;
}

/* Runs one write transaction: fn puts what it wants; MDB_MAP_FULL doubles the map and
 * retries (LMDB needs no readers in this process for that, which the CLI guarantees). */
typedef int (*write_fn)(gt_store *s, MDB_txn *txn, void *arg);

static int write_txn(gt_store *s, write_fn fn, void *arg, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) { /* another process grew the map */
            pthread_rwlock_wrlock(&s->txn_lock);
            mdb_env_set_mapsize(s->env, 0);
            pthread_rwlock_unlock(&s->txn_lock);
            continue;
        }
        if (rc == 0) {
            rc = fn(s, txn, arg);
            if (rc == 0)
                rc = mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
        if (rc == 0)
            return 0;
        if (rc == MDB_NOTFOUND)
            return GT_ENOTFOUND;
        if (rc == MDB_MAP_FULL) {
            MDB_envinfo info;
            mdb_env_info(s->env, &info);
            pthread_rwlock_wrlock(&s->txn_lock);
            int grown = mdb_env_set_mapsize(s->env, info.me_mapsize * 2);
            pthread_rwlock_unlock(&s->txn_lock);
            if (grown == 0)
                continue;
        }
        say(err, errlen, NULL, rc);
        return GT_EIO;
    }
    say(err, errlen, NULL, 0);
    return GT_EIO;
}

typedef struct {
    const gt_store_rec *recs;
    size_t n;
} put_args;

static int do_put(gt_store *s, MDB_txn *txn, void *arg)
{
    const put_args *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        unsigned char buf[1024];
        size_t vl = encode(&a->recs[i], buf, sizeof(buf));
        MDB_val k = {strlen(a->recs[i].key), (void *)a->recs[i].key}, v = {vl, buf};
        int rc = mdb_put(txn, s->products, &k, &v, 0);
        if (rc)
            return rc;
    }
    return 0;
}

int gt_store_mark(gt_store *s, gt_slice key, gt_slice label, gt_slice source, unsigned ttl_days,
                  char *err, size_t errlen)
{
    gt_store_rec r;
    memset(&r, 0, sizeof(r));
    if (!gt_store_canonical_key(key, r.key, sizeof(r.key), err, errlen))
        return GT_EINVAL;
    snprintf(r.label, sizeof(r.label), "%.*s", (int)label.len, label.p ? label.p : "");
    snprintf(r.source, sizeof(r.source), "%.*s", (int)source.len, source.p ? source.p : "");
    r.added = now_s();
    r.expires = ttl_days ? r.added + (uint64_t)ttl_days * 86400u : 0;
    /* the same product under the other numbers it has (an ISBN is a GTIN, a book's ASIN its
     * ISBN-10), in the same transaction: a pixel naming any of them then finds it */
    gt_store_rec recs[4];
    recs[0] = r;
    char alias[3][64];
    size_t na = gt_products_aliases(gt_slice_cstr(r.key), alias, 3);
    for (size_t i = 0; i < na; i++) {
        recs[1 + i] = r;
        snprintf(recs[1 + i].key, sizeof(recs[1 + i].key), "%s", alias[i]);
        snprintf(recs[1 + i].source, sizeof(recs[1 + i].source), "alias of %.200s", r.key);
    }
    put_args a = {recs, 1 + na};
    return write_txn(s, do_put, &a, err, errlen);
}

int gt_store_mark_all(gt_store *s, const gt_store_rec *recs, size_t n, char *err, size_t errlen)
{
    put_args a = {recs, n};
    return write_txn(s, do_put, &a, err, errlen);
}

static int do_del(gt_store *s, MDB_txn *txn, void *arg)
{
    const char *key = arg;
    MDB_val k = {strlen(key), (void *)key};
    int rc = mdb_del(txn, s->products, &k, NULL);
    if (rc != 0)
        return rc;
    /* the aliases a mark recorded go with it */
    char alias[3][64];
    size_t na = gt_products_aliases(gt_slice_cstr(key), alias, 3);
    for (size_t i = 0; i < na; i++) {
        MDB_val ak = {strlen(alias[i]), alias[i]};
        rc = mdb_del(txn, s->products, &ak, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int gt_store_unmark(gt_store *s, gt_slice key, char *err, size_t errlen)
{
    char k[GT_STORE_KEY_MAX + 1];
    if (!gt_store_canonical_key(key, k, sizeof(k), err, errlen))
        return GT_EINVAL;
    int rc = write_txn(s, do_del, k, err, errlen);
    if (rc == GT_ENOTFOUND)
        snprintf(err, errlen, "%s is not marked as bought", k);
    return rc;
}

bool gt_store_is_bought(gt_store *s, gt_slice key)
{
    if (!s || key.len == 0 || key.len > GT_STORE_KEY_MAX)
        return false;
    /* fast path: the filter describes the store as it is now and says "not there" */
    bfilter *f = atomic_load_explicit(&s->filter, memory_order_acquire);
    if (f && f->txnid == last_txnid(s) && !filter_maybe(f, key.p, key.len))
        return false;
    MDB_txn *txn;
    if (read_begin(s, &txn) != 0)
        return false;
    MDB_val k = {key.len, (void *)key.p}, v;
    bool bought = false;
    if (mdb_get(txn, s->products, &k, &v) == 0) {
        gt_store_rec r;
        bought = decode(&k, &v, &r) && (r.expires == 0 || r.expires > now_s());
    }
    read_end(s, txn);
    return bought;
}

long gt_store_count(gt_store *s)
{
    MDB_txn *txn;
    if (read_begin(s, &txn) != 0)
        return GT_EIO;
    MDB_stat st;
    int rc = mdb_stat(txn, s->products, &st);
    read_end(s, txn);
    return rc == 0 ? (long)st.ms_entries : GT_EIO;
}

long gt_store_foreach(gt_store *s, gt_store_each_fn fn, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = read_begin(s, &txn);
    if (rc != 0)
        return GT_EIO;
    if (mdb_cursor_open(txn, s->products, &cur) != 0) {
        read_end(s, txn);
        return GT_EIO;
    }
    long n = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        gt_store_rec r;
        if (!decode(&k, &v, &r))
            continue;
        n++;
        if (!fn(arg, &r))
            break;
    }
    mdb_cursor_close(cur);
    read_end(s, txn);
    return n;
}
