/* src/tls: the CA on disk (modes, uniqueness, refusal to overwrite), minted leaves checked
 * by OpenSSL's own verifier against the CA, the leaf cache (hits, warm restart from LMDB,
 * eviction), and the ClientHello reader on hellos that OpenSSL itself produced. */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gretel/tls.h"
#include "gretel/util.h"

static char *tmpdir(void)
{
    char t[] = "/tmp/gretel-tls-XXXXXX";
    char *d = mkdtemp(t);
    assert_non_null(d);
    return strdup(d);
}

static void rmrf(const char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static mode_t mode_of(const char *dir, const char *file)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_mode & 0777;
}

static void test_ca_files_and_uniqueness(void **state)
{
    (void)state;
    char *root = tmpdir(), a[600], b[600], err[600];
    snprintf(a, sizeof(a), "%s/a/ca", root);
    snprintf(b, sizeof(b), "%s/b/ca", root);
    gt_ca *ca = NULL;
    assert_int_equal(gt_ca_load(&ca, a, err, sizeof(err)), GT_ENOTFOUND);
    assert_int_equal(gt_ca_init(a, 256, false, err, sizeof(err)), 0);
    assert_int_equal(gt_ca_init(b, 384, false, err, sizeof(err)), 0);
    assert_int_equal(mode_of(a, GT_CA_KEY), 0600);
    assert_int_equal(mode_of(a, GT_LEAF_KEY), 0600);
    assert_int_equal(mode_of(a, ""), 0700);
    /* a second init must not silently replace what browsers already trust */
    assert_int_equal(gt_ca_init(a, 256, false, err, sizeof(err)), GT_EINVAL);
    assert_non_null(strstr(err, "already holds a CA"));

    gt_ca *ca_a = NULL, *ca_b = NULL;
    assert_int_equal(gt_ca_load(&ca_a, a, err, sizeof(err)), 0);
    assert_int_equal(gt_ca_load(&ca_b, b, err, sizeof(err)), 0);
    char fa[128], fb[128], sa[64], sb[64], subj_a[300], subj_b[300];
    gt_ca_fingerprint(ca_a, fa, sizeof(fa));
    gt_ca_fingerprint(ca_b, fb, sizeof(fb));
    gt_ca_spki_sha256(ca_a, sa, sizeof(sa));
    gt_ca_spki_sha256(ca_b, sb, sizeof(sb));
    assert_int_equal(strlen(fa), 95); /* 32 bytes as XX: pairs */
    assert_int_equal(strlen(sa), 44); /* base64 of 32 bytes */
    assert_string_not_equal(fa, fb);
    assert_string_not_equal(sa, sb);
    time_t nb, na;
    gt_ca_describe(ca_a, subj_a, sizeof(subj_a), &nb, &na);
    gt_ca_describe(ca_b, subj_b, sizeof(subj_b), &nb, &na);
    assert_string_not_equal(subj_a, subj_b); /* per-install names */
    assert_true(na - nb > 9L * 365 * 86400);
    /* the CA is a CA, with a key of the asked size */
    X509 *c = gt_ca_cert(ca_a);
    assert_int_equal(X509_check_ca(c), 1);
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(gt_ca_cert(ca_b))), 384);
    size_t len;
    char *pem = gt_ca_pem(ca_a, &len);
    assert_non_null(strstr(pem, "BEGIN CERTIFICATE"));
    assert_null(strstr(pem, "PRIVATE"));
    free(pem);
    gt_ca_free(ca_a);
    gt_ca_free(ca_b);

    /* a key readable by others is refused, not used */
    char kp[700];
    snprintf(kp, sizeof(kp), "%s/%s", a, GT_CA_KEY);
    chmod(kp, 0644);
    assert_int_equal(gt_ca_load(&ca, a, err, sizeof(err)), GT_EINVAL);
    assert_non_null(strstr(err, "readable by others"));
    chmod(kp, 0600);
    /* --force replaces it */
    assert_int_equal(gt_ca_init(a, 256, true, err, sizeof(err)), 0);
    assert_int_equal(gt_ca_load(&ca, a, err, sizeof(err)), 0);
    char fa2[128];
    gt_ca_fingerprint(ca, fa2, sizeof(fa2));
    assert_string_not_equal(fa, fa2);
    gt_ca_free(ca);
    rmrf(root);
    free(root);
}

/* Verifies leaf against the CA the way a client trusting the CA would, for name. */
static int verify_leaf(gt_ca *ca, X509 *leaf, const char *name, bool ip)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, gt_ca_cert(ca));
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_SSL_SERVER);
    if (ip)
        X509_VERIFY_PARAM_set1_ip_asc(vp, name);
    else
        X509_VERIFY_PARAM_set1_host(vp, name, 0);
    int ok = X509_verify_cert(ctx);
    int err = ok == 1 ? 0 : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return err;
}

static time_t t_of(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    ASN1_TIME_to_tm(t, &tm);
    return timegm(&tm);
}

static void test_mint(void **state)
{
    (void)state;
    char *root = tmpdir(), err[600];
    assert_int_equal(gt_ca_init(root, 256, false, err, sizeof(err)), 0);
    gt_ca *ca = NULL;
    assert_int_equal(gt_ca_load(&ca, root, err, sizeof(err)), 0);
    time_t now = time(NULL);
    X509 *x = gt_ca_mint(ca, "shop.example", now, err, sizeof(err));
    assert_non_null(x);
    assert_int_equal(verify_leaf(ca, x, "shop.example", false), 0);
    assert_int_equal(verify_leaf(ca, x, "other.example", false), X509_V_ERR_HOSTNAME_MISMATCH);
    /* whole span within 45 days, backdating included; starts before now */
    time_t nb = t_of(X509_get0_notBefore(x)), na = t_of(X509_get0_notAfter(x));
    assert_true(nb < now && na > now);
    assert_true(na - nb <= 45 * 86400);
    /* CA:FALSE, serverAuth, a 128-bit positive serial, AKI present */
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    assert_int_equal(sn->length, 16);
    assert_non_null(X509_get0_authority_key_id(x));
    X509 *y = gt_ca_mint(ca, "shop.example", now, err, sizeof(err));
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)),
                         0);
    X509_free(x);
    X509_free(y);
    /* IP literals get an IP SAN */
    x = gt_ca_mint(ca, "127.0.0.1", now, err, sizeof(err));
    assert_non_null(x);
    assert_int_equal(verify_leaf(ca, x, "127.0.0.1", true), 0);
    X509_free(x);
    x = gt_ca_mint(ca, "::1", now, err, sizeof(err));
    assert_non_null(x);
    assert_int_equal(verify_leaf(ca, x, "::1", true), 0);
    X509_free(x);
    /* a long name: no CN (64 max), still valid through the SAN */
    char longname[200];
    snprintf(longname, sizeof(longname), "%s.%s.example", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    x = gt_ca_mint(ca, longname, now, err, sizeof(err));
    assert_non_null(x);
    assert_int_equal(verify_leaf(ca, x, longname, false), 0);
    X509_free(x);
    /* names that cannot be certificate names */
    const char *bad[] = {"", "a..b", "-x y", "a/b", ".lead", "under\x01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        x = gt_ca_mint(ca, bad[i], now, err, sizeof(err));
        if (x)
            fail_msg("minted for '%s'", bad[i]);
    }
    gt_ca_free(ca);
    rmrf(root);
    free(root);
}

static void test_cache(void **state)
{
    (void)state;
    char *root = tmpdir(), err[600], cadir[600], cache[600];
    snprintf(cadir, sizeof(cadir), "%s/ca", root);
    snprintf(cache, sizeof(cache), "%s/certs", root);
    assert_int_equal(gt_ca_init(cadir, 256, false, err, sizeof(err)), 0);
    gt_ca *ca = NULL;
    assert_int_equal(gt_ca_load(&ca, cadir, err, sizeof(err)), 0);
    gt_certs *c = gt_certs_new(ca, cache, 2, err, sizeof(err));
    assert_string_equal(err, "");
    bool minted;
    X509 *a = gt_certs_get(c, "a.example", &minted, err, sizeof(err));
    assert_true(minted);
    X509 *a2 = gt_certs_get(c, "a.example", &minted, err, sizeof(err));
    assert_false(minted);
    assert_ptr_equal(a, a2); /* the same object from memory */
    X509_free(a2);
    X509 *b = gt_certs_get(c, "b.example", &minted, err, sizeof(err));
    X509 *cc = gt_certs_get(c, "c.example", &minted, err, sizeof(err)); /* evicts a */
    gt_certs_flush(c);
    gt_certs_stats st;
    gt_certs_get_stats(c, &st);
    assert_int_equal(st.minted, 3);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.stored, 3);
    /* evicted from memory, found in LMDB: the same certificate, not a new one */
    X509 *a3 = gt_certs_get(c, "a.example", &minted, err, sizeof(err));
    assert_false(minted);
    assert_int_equal(X509_cmp(a, a3), 0);
    X509_free(a3);
    assert_null(gt_certs_get(c, "bad name", &minted, err, sizeof(err)));
    gt_certs_free(c);

    /* a restart is warm */
    c = gt_certs_new(ca, cache, 100, err, sizeof(err));
    X509 *b2 = gt_certs_get(c, "b.example", &minted, err, sizeof(err));
    assert_false(minted);
    assert_int_equal(X509_cmp(b, b2), 0);
    gt_certs_get_stats(c, &st);
    assert_int_equal(st.loaded, 1);
    X509_free(b2);
    gt_certs_free(c);
    gt_ca_free(ca);

    /* a replaced CA orphans the cached leaves: they are minted again */
    assert_int_equal(gt_ca_init(cadir, 256, true, err, sizeof(err)), 0);
    assert_int_equal(gt_ca_load(&ca, cadir, err, sizeof(err)), 0);
    c = gt_certs_new(ca, cache, 100, err, sizeof(err));
    X509 *b3 = gt_certs_get(c, "b.example", &minted, err, sizeof(err));
    assert_true(minted);
    X509_free(b3);
    gt_certs_free(c);
    gt_ca_free(ca);
    X509_free(a);
    X509_free(b);
    X509_free(cc);
    rmrf(root);
    free(root);
}

/* A real ClientHello from OpenSSL's client, with the given SNI and ALPN. */
static size_t client_hello(const char *sni, const unsigned char *alpn, size_t alpn_len,
                           unsigned char *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (alpn)
        SSL_set_alpn_protos(ssl, alpn, (unsigned)alpn_len);
    SSL_set_connect_state(ssl);
    SSL_do_handshake(ssl);
    size_t n = (size_t)BIO_read(wb, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return n;
}

static void test_hello(void **state)
{
    (void)state;
    unsigned char buf[8192];
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    size_t n = client_hello("Shop.Example", alpn, sizeof(alpn) - 1, buf, sizeof(buf));
    assert_true(n > 100);
    gt_client_hello h;
    assert_int_equal(gt_tls_parse_client_hello(buf, n, &h), GT_HELLO_OK);
    assert_true(h.has_sni);
    assert_string_equal(h.sni, "shop.example");
    assert_true(h.alpn_h2 && h.alpn_http11);
    assert_int_equal(h.record_len, n);
    /* every proper prefix is incomplete, never an error */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(gt_tls_parse_client_hello(buf, k, &h), GT_HELLO_INCOMPLETE);
    /* no SNI, no ALPN */
    n = client_hello(NULL, NULL, 0, buf, sizeof(buf));
    assert_int_equal(gt_tls_parse_client_hello(buf, n, &h), GT_HELLO_OK);
    assert_false(h.has_sni);
    assert_false(h.alpn_h2 || h.alpn_http11);
    /* the same hello split over two handshake records */
    n = client_hello("split.example", NULL, 0, buf, sizeof(buf));
    size_t body = n - 5, first = body / 3;
    unsigned char two[8300];
    memcpy(two, buf, 5);
    two[3] = (unsigned char)(first >> 8);
    two[4] = (unsigned char)first;
    memcpy(two + 5, buf + 5, first);
    memcpy(two + 5 + first, buf, 5);
    two[5 + first + 3] = (unsigned char)((body - first) >> 8);
    two[5 + first + 4] = (unsigned char)(body - first);
    memcpy(two + 10 + first, buf + 5 + first, body - first);
    assert_int_equal(gt_tls_parse_client_hello(two, n + 5, &h), GT_HELLO_OK);
    assert_string_equal(h.sni, "split.example");
    /* not TLS: a plain HTTP request or SSH banner in the tunnel */
    assert_int_equal(gt_tls_parse_client_hello((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &h),
                     GT_HELLO_NOT_TLS);
    assert_int_equal(gt_tls_parse_client_hello((const uint8_t *)"SSH-2.0-x\r\n", 11, &h),
                     GT_HELLO_NOT_TLS);
    /* corrupted lengths are errors, not reads past the end */
    n = client_hello("x.example", NULL, 0, buf, sizeof(buf));
    unsigned char bad[8192];
    memcpy(bad, buf, n);
    bad[5] = 2; /* ServerHello type */
    assert_int_equal(gt_tls_parse_client_hello(bad, n, &h), GT_HELLO_BAD);
    memcpy(bad, buf, n);
    bad[5 + 4 + 2 + 32] = 33; /* session id longer than 32 */
    assert_int_equal(gt_tls_parse_client_hello(bad, n, &h), GT_HELLO_BAD);
    memcpy(bad, buf, n);
    bad[3] = 0;
    bad[4] = 0; /* empty record */
    assert_int_equal(gt_tls_parse_client_hello(bad, n, &h), GT_HELLO_BAD);
    /* a record followed by application data before the hello completes */
    memcpy(bad, buf, 5 + 10);
    bad[3] = 0;
    bad[4] = 10;
    memcpy(bad + 15, "\x17\x03\x03\x00\x01x", 6);
    assert_int_equal(gt_tls_parse_client_hello(bad, 21, &h), GT_HELLO_BAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_files_and_uniqueness),
        cmocka_unit_test(test_mint),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_hello),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
