/* Unit tests for src/store/store.c on a real LMDB environment in a temp dir: canonical
 * keys, mark/unmark/lookup round trips, expiry, bulk import all-or-nothing, reopening, a
 * store from a newer schema and a corrupt one refused with a clear reason. */
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "gretel/store.h"
#include "gretel/util.h"

static char dir[64];

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof(dir), "/tmp/gretel-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_canonical_keys(void **st)
{
    (void)st;
    char out[512], err[256];
    static const struct {
        const char *in, *want;
    } ok[] = {
        {"Shop.Example:SKU-1", "shop.example:SKU-1"},
        {"  gtin : 04006381333931 ", "gtin:04006381333931"},
        {"asin:b0abcdef12", "asin:B0ABCDEF12"},
        {"gtin:4006381333931", "gtin:04006381333931"},
        {"shop.example:a:b", "shop.example:a:b"}, /* ids may contain colons */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        size_t n = gt_store_canonical_key(gt_slice_cstr(ok[i].in), out, sizeof(out), err,
                                          sizeof(err));
        assert_int_equal(n, strlen(ok[i].want));
        assert_string_equal(out, ok[i].want);
    }
    const char *bad[] = {"nocolon", ":id", "scope:", "  :  ", "s:a\x01b", "gtin:123"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gt_store_canonical_key(gt_slice_cstr(bad[i]), out, sizeof(out), err,
                                                sizeof(err)),
                         0);
}

static bool collect(void *arg, const gt_store_rec *r)
{
    size_t *n = arg;
    (*n)++;
    assert_true(strlen(r->key) > 0);
    return true;
}

static void test_round_trip(void **st)
{
    (void)st;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/a/b/store", dir); /* parents are created */
    gt_store *s = NULL;
    assert_int_equal(gt_store_open(&s, path, err, sizeof(err)), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_false(gt_store_is_bought(s, GT_S("shop.example:SKU-1")));
    assert_int_equal(gt_store_mark(s, GT_S("Shop.Example:SKU-1"), GT_S("boots"), GT_S("manual"),
                                   0, err, sizeof(err)),
                     0);
    assert_true(gt_store_is_bought(s, GT_S("shop.example:SKU-1")));
    assert_false(gt_store_is_bought(s, GT_S("shop.example:SKU-2")));
    assert_int_equal(gt_store_mark(s, GT_S("gtin:4006381333931"), GT_S(""), GT_S("manual"), 30,
                                   err, sizeof(err)),
                     0);
    assert_int_equal(gt_store_mark(s, GT_S("gtin:1"), GT_S(""), GT_S("manual"), 30, err,
                                   sizeof(err)),
                     GT_EINVAL); /* not a GTIN: nothing marked */
    size_t n = 0;
    assert_int_equal(gt_store_foreach(s, collect, &n), 2);
    assert_int_equal(n, 2);
    assert_int_equal(gt_store_unmark(s, GT_S("shop.example:SKU-1"), err, sizeof(err)), 0);
    assert_false(gt_store_is_bought(s, GT_S("shop.example:SKU-1")));
    assert_int_equal(gt_store_unmark(s, GT_S("shop.example:SKU-1"), err, sizeof(err)),
                     GT_ENOTFOUND);
    gt_store_close(s);
    /* reopened: what was acknowledged is there */
    assert_int_equal(gt_store_open(&s, path, err, sizeof(err)), 0);
    assert_true(gt_store_is_bought(s, GT_S("gtin:04006381333931")));
    gt_store_close(s);
}

static void test_expiry_and_bulk(void **st)
{
    (void)st;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/bulk", dir);
    gt_store *s = NULL;
    assert_int_equal(gt_store_open(&s, path, err, sizeof(err)), 0);
    uint64_t now = (uint64_t)time(NULL);
    gt_store_rec recs[3];
    memset(recs, 0, sizeof(recs));
    snprintf(recs[0].key, sizeof(recs[0].key), "s.example:old");
    recs[0].added = now - 100;
    recs[0].expires = now - 1; /* expired: present, but no longer bought */
    snprintf(recs[1].key, sizeof(recs[1].key), "s.example:new");
    recs[1].added = now;
    recs[1].expires = now + 3600;
    snprintf(recs[2].key, sizeof(recs[2].key), "s.example:forever");
    snprintf(recs[2].label, sizeof(recs[2].label), "label");
    assert_int_equal(gt_store_mark_all(s, recs, 3, err, sizeof(err)), 0);
    assert_false(gt_store_is_bought(s, GT_S("s.example:old")));
    assert_true(gt_store_is_bought(s, GT_S("s.example:new")));
    assert_true(gt_store_is_bought(s, GT_S("s.example:forever")));
    /* idempotent: importing the same records again changes nothing */
    assert_int_equal(gt_store_mark_all(s, recs, 3, err, sizeof(err)), 0);
    size_t n = 0;
    assert_int_equal(gt_store_foreach(s, collect, &n), 3);
    /* many marks grow the map past its first size */
    gt_store_rec *many = calloc(20000, sizeof(*many));
    for (size_t i = 0; i < 20000; i++) {
        snprintf(many[i].key, sizeof(many[i].key), "bulk.example:item-%06zu-%s", i,
                 "padding-padding-padding-padding-padding-padding-padding-padding");
        snprintf(many[i].label, sizeof(many[i].label), "%0250zu", i);
    }
    /* 10 x 20,000 records of ~400 bytes: about 80 MB of pages, past the 64 MiB start */
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < 20000; i++)
            many[i].key[13] = (char)('a' + round);
        assert_int_equal(gt_store_mark_all(s, many, 20000, err, sizeof(err)), 0);
    }
    free(many);
    n = 0;
    assert_int_equal(gt_store_foreach(s, collect, &n), 200003);
    gt_store_close(s);
}

/* The filter answers "not bought" only while it describes the store as it is; a mark after
 * the last refresh is still seen (through LMDB) before the next refresh. */
static void test_filter(void **st)
{
    (void)st;
    char path[128], err[256], key[64];
    snprintf(path, sizeof(path), "%s/filter", dir);
    gt_store *s = NULL;
    assert_int_equal(gt_store_open(&s, path, err, sizeof(err)), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "f.example:%d", i * 2);
        assert_int_equal(gt_store_mark(s, gt_slice_cstr(key), GT_S(""), GT_S("manual"), 0, err,
                                       sizeof(err)),
                         0);
    }
    assert_int_equal(gt_store_refresh(s), 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "f.example:%d", i);
        assert_int_equal(gt_store_is_bought(s, gt_slice_cstr(key)), i % 2 == 0);
    }
    assert_int_equal(gt_store_mark(s, GT_S("f.example:1"), GT_S(""), GT_S("manual"), 0, err,
                                   sizeof(err)),
                     0);
    assert_true(gt_store_is_bought(s, GT_S("f.example:1"))); /* stale filter: LMDB answers */
    assert_int_equal(gt_store_refresh(s), 0);
    assert_true(gt_store_is_bought(s, GT_S("f.example:1")));
    assert_int_equal(gt_store_unmark(s, GT_S("f.example:0"), err, sizeof(err)), 0);
    assert_false(gt_store_is_bought(s, GT_S("f.example:0")));
    for (int i = 0; i < 6; i++) /* retired filters are recycled without leaks */
        assert_int_equal(gt_store_mark(s, GT_S("f.example:x"), GT_S(""), GT_S("m"), 0, err,
                                       sizeof(err)) |
                             gt_store_refresh(s),
                         0);
    gt_store_close(s);
}

/* A book marked by ISBN is found by its GTIN and its ASIN; unmarking removes all three. */
static void test_aliases(void **st)
{
    (void)st;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/alias", dir);
    gt_store *s = NULL;
    assert_int_equal(gt_store_open(&s, path, err, sizeof(err)), 0);
    assert_int_equal(gt_store_mark(s, GT_S("isbn:0306406152"), GT_S("book"), GT_S("manual"), 0,
                                   err, sizeof(err)),
                     0);
    assert_true(gt_store_is_bought(s, GT_S("isbn:9780306406157")));
    assert_true(gt_store_is_bought(s, GT_S("gtin:09780306406157")));
    assert_true(gt_store_is_bought(s, GT_S("asin:0306406152")));
    assert_int_equal(gt_store_unmark(s, GT_S("isbn:9780306406157"), err, sizeof(err)), 0);
    assert_false(gt_store_is_bought(s, GT_S("gtin:09780306406157")));
    assert_false(gt_store_is_bought(s, GT_S("asin:0306406152")));
    gt_store_close(s);
}

static void test_refuses_newer_and_corrupt(void **st)
{
    (void)st;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/newer", dir);
    gt_store *s = NULL;
    assert_int_equal(gt_store_open(&s, path, err, sizeof(err)), 0);
    gt_store_close(s);
    /* write schema 99 behind gretel's back */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    unsigned char v99[4] = {99, 0, 0, 0};
    MDB_val k = {6, (void *)"schema"}, v = {4, v99};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_true(gt_store_open(&s, path, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "newer gretel"));
    /* a data file that is not LMDB */
    snprintf(path, sizeof(path), "%s/corrupt", dir);
    mkdir(path, 0700);
    char f[160];
    snprintf(f, sizeof(f), "%s/data.mdb", path);
    FILE *fp = fopen(f, "w");
    for (int i = 0; i < 4096; i++)
        fputc('x', fp);
    fclose(fp);
    assert_true(gt_store_open(&s, path, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "cannot open"));
    /* a file where the directory should be */
    snprintf(path, sizeof(path), "%s/afile", dir);
    fp = fopen(path, "w");
    fclose(fp);
    assert_true(gt_store_open(&s, path, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "not a directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_keys),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_expiry_and_bulk),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_refuses_newer_and_corrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
