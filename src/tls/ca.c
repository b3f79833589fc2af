/* The local interception CA: created on the user's machine (never shipped, never printed),
 * loaded at start, and used to mint leaf certificates. Every leaf shares one per-install
 * P-256 key (gretel-leaf.key): minting is then one ECDSA signature, well under a
 * millisecond, so it can run on the event loop. Owns its X509/EVP_PKEY objects, which are
 * immutable after load and so safe to use from every worker thread. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gretel/tls.h"
#include "gretel/util.h"
#include "internal.h"

struct gt_ca {
    char dir[4096];
    X509 *cert;
    EVP_PKEY *key;
    EVP_PKEY *leaf_key;
    X509_NAME *name; /* borrowed from cert: the issuer of every leaf */
};

#define CA_YEARS 10

void gt_tls_ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

static void path_of(char *out, size_t cap, const char *dir, const char *file)
{
    snprintf(out, cap, "%s/%s", dir, file);
}

/* Writes a private key with mode 0600 from creation on (no window in which it is readable),
 * through a temporary file renamed into place. */
static int write_key(const char *dir, const char *file, EVP_PKEY *key, char *err, size_t errlen)
{
    char path[4200], tmp[4300];
    path_of(path, sizeof(path), dir, file);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return GT_EIO;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return GT_EIO;
    }
    int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    ok = (fflush(f) == 0) && ok && fsync(fileno(f)) == 0;
    fclose(f);
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        snprintf(err, errlen, "%s: cannot write the key", path);
        return GT_EIO;
    }
    return 0;
}

static int write_cert(const char *dir, X509 *cert, char *err, size_t errlen)
{
    char path[4200], tmp[4300];
    path_of(path, sizeof(path), dir, GT_CA_CERT);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return GT_EIO;
    }
    int ok = PEM_write_X509(f, cert);
    ok = (fflush(f) == 0) && ok && fsync(fileno(f)) == 0;
    fclose(f);
    chmod(tmp, 0644);
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        snprintf(err, errlen, "%s: cannot write the certificate", path);
        return GT_EIO;
    }
    return 0;
}

static int random_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[0] &= 0x7f; /* positive */
    b[0] |= 0x40; /* and always 16 bytes long */
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

int gt_ca_init(const char *dir, unsigned curve_bits, bool force, char *err, size_t errlen)
{
    int rv = GT_EIO;
    EVP_PKEY *key = NULL, *leaf = NULL;
    X509 *cert = NULL;
    char path[4200];
    if (curve_bits != 256 && curve_bits != 384) {
        snprintf(err, errlen, "curve must be P-256 or P-384");
        return GT_EINVAL;
    }
    if (gt_mkdir_private(dir) < 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return GT_EIO;
    }
    chmod(dir, 0700);
    path_of(path, sizeof(path), dir, GT_CA_KEY);
    if (!force && access(path, F_OK) == 0) {
        snprintf(err, errlen, "%s already holds a CA (gretel ca show); --force replaces it, and "
                              "every device that trusts the old one must then trust the new one",
                 dir);
        return GT_EINVAL;
    }
    key = EVP_EC_gen(curve_bits == 384 ? "P-384" : "P-256");
    leaf = EVP_EC_gen("P-256");
    cert = X509_new();
    if (!key || !leaf || !cert) {
        gt_tls_ssl_err(err, errlen, "key generation failed");
        goto out;
    }
    /* A per-install name: two installs never issue under the same subject, so trusting one
     * user's CA says nothing about another's. */
    unsigned char id[6];
    char host[64] = "localhost", cn[160];
    RAND_bytes(id, sizeof(id));
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = 0;
    snprintf(cn, sizeof(cn), "gretel local CA %.40s %02x%02x%02x%02x%02x%02x", host, id[0], id[1],
             id[2], id[3], id[4], id[5]);
    X509_set_version(cert, 2);
    X509_NAME *nm = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"gretel", -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, nm);
    if (random_serial(cert) < 0 || !X509_gmtime_adj(X509_getm_notBefore(cert), -24 * 3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert), (long)CA_YEARS * 365 * 24 * 3600) ||
        !X509_set_pubkey(cert, key) ||
        add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") < 0 ||
        add_ext(cert, cert, NID_subject_key_identifier, "hash") < 0 ||
        !X509_sign(cert, key, curve_bits == 384 ? EVP_sha384() : EVP_sha256())) {
        gt_tls_ssl_err(err, errlen, "building the CA certificate failed");
        goto out;
    }
    /* Keys first: a certificate without its key is useless, the reverse is re-creatable. */
    if ((rv = write_key(dir, GT_CA_KEY, key, err, errlen)) < 0 ||
        (rv = write_key(dir, GT_LEAF_KEY, leaf, err, errlen)) < 0 ||
        (rv = write_cert(dir, cert, err, errlen)) < 0)
        goto out;
    rv = 0;
out:
    EVP_PKEY_free(key);
    EVP_PKEY_free(leaf);
    X509_free(cert);
    return rv;
}

static EVP_PKEY *read_key(const char *dir, const char *file, char *err, size_t errlen, int *rv)
{
    char path[4200];
    path_of(path, sizeof(path), dir, file);
    struct stat st;
    if (stat(path, &st) < 0) {
        *rv = errno == ENOENT ? GT_ENOTFOUND : GT_EIO;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (st.st_mode & 077) {
        /* Anyone who can read this key can read and forge every HTTPS page of this user. */
        *rv = GT_EINVAL;
        snprintf(err, errlen, "%s is readable by others (mode %03o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        *rv = GT_EIO;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k) {
        *rv = GT_EINVAL;
        gt_tls_ssl_err(err, errlen, path);
    }
    return k;
}

int gt_ca_load(gt_ca **out, const char *dir, char *err, size_t errlen)
{
    *out = NULL;
    int rv = 0;
    gt_ca *ca = gt_xcalloc(1, sizeof(*ca));
    snprintf(ca->dir, sizeof(ca->dir), "%s", dir);
    char path[4200];
    ca->key = read_key(dir, GT_CA_KEY, err, errlen, &rv);
    if (!ca->key)
        goto fail;
    ca->leaf_key = read_key(dir, GT_LEAF_KEY, err, errlen, &rv);
    if (!ca->leaf_key)
        goto fail;
    path_of(path, sizeof(path), dir, GT_CA_CERT);
    FILE *f = fopen(path, "r");
    if (!f) {
        rv = errno == ENOENT ? GT_ENOTFOUND : GT_EIO;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!ca->cert) {
        rv = GT_EINVAL;
        gt_tls_ssl_err(err, errlen, path);
        goto fail;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        rv = GT_EINVAL;
        snprintf(err, errlen, "%s does not match %s/%s", path, dir, GT_CA_KEY);
        ERR_clear_error();
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) <= 0) {
        rv = GT_EINVAL;
        snprintf(err, errlen, "%s has expired; create a new CA (gretel ca init --force)", path);
        goto fail;
    }
    ca->name = X509_get_subject_name(ca->cert);
    *out = ca;
    return 0;
fail:
    gt_ca_free(ca);
    return rv ? rv : GT_EIO;
}

void gt_ca_free(gt_ca *ca)
{
    if (!ca)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    EVP_PKEY_free(ca->leaf_key);
    free(ca);
}

const char *gt_ca_dir(const gt_ca *ca)
{
    return ca->dir;
}

X509 *gt_ca_cert(const gt_ca *ca)
{
    return ca->cert;
}

void gt_ca_fingerprint(const gt_ca *ca, char *out, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    X509_digest(ca->cert, EVP_sha256(), md, &n);
    size_t o = 0;
    for (unsigned i = 0; i < n && o + 3 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%02X", i ? ":" : "", md[i]);
    if (cap)
        out[o < cap ? o : cap - 1] = 0;
}

void gt_ca_spki_sha256(const gt_ca *ca, char *out, size_t cap)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(ca->cert), &der);
    unsigned char md[32];
    unsigned ml = 0;
    EVP_Digest(der, (size_t)(n > 0 ? n : 0), md, &ml, EVP_sha256(), NULL);
    OPENSSL_free(der);
    unsigned char b64[64];
    int bl = EVP_EncodeBlock(b64, md, (int)ml);
    snprintf(out, cap, "%.*s", bl, (const char *)b64);
}

char *gt_ca_pem(const gt_ca *ca, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, ca->cert);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *copy = gt_xstrndup(p, (size_t)n);
    *len = (size_t)n;
    BIO_free(b);
    return copy;
}

static time_t asn1_to_time(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

void gt_ca_describe(const gt_ca *ca, char *subject, size_t scap, time_t *not_before,
                    time_t *not_after)
{
    X509_NAME_oneline(X509_get_subject_name(ca->cert), subject, (int)scap);
    *not_before = asn1_to_time(X509_get0_notBefore(ca->cert));
    *not_after = asn1_to_time(X509_get0_notAfter(ca->cert));
}

/* A name a certificate may carry: an IP literal, or a DNS name of letters, digits, '-',
 * '_' (seen in the wild) and dots, no empty labels. */
static bool good_dns_name(const char *n)
{
    size_t len = strlen(n), label = 0;
    if (len == 0 || len > 253 || n[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              (c >= 'A' && c <= 'Z')))
            return false;
        if (++label > 63)
            return false;
    }
    return true;
}

/* The extensions every leaf shares (CA:FALSE, digitalSignature, serverAuth, AKI), encoded
 * once per mint as structures rather than parsed from config strings: string parsing was
 * most of the minting time. */
static int add_leaf_exts(X509 *x, const gt_ca *ca, const char *name, ASN1_OCTET_STRING *ip)
{
    int ok = 1;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    bc->ca = 0;
    ok = ok && X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) == 1;
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    ok = ok && ASN1_BIT_STRING_set_bit(ku, 0, 1) == 1; /* digitalSignature */
    ok = ok && X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) == 1;
    ASN1_BIT_STRING_free(ku);
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth));
    ok = ok && X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) == 1;
    sk_ASN1_OBJECT_free(eku); /* the object is static */
    GENERAL_NAMES *san = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (ip) {
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ASN1_OCTET_STRING_dup(ip));
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        ASN1_STRING_set(dns, name, (int)strlen(name));
        GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
    }
    sk_GENERAL_NAME_push(san, gn);
    ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(san);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca->cert);
    if (ski) {
        AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
        aki->keyid = ASN1_OCTET_STRING_dup(ski);
        ok = ok && X509_add1_ext_i2d(x, NID_authority_key_identifier, aki, 0,
                                     X509V3_ADD_DEFAULT) == 1;
        AUTHORITY_KEYID_free(aki);
    }
    return ok ? 0 : -1;
}

X509 *gt_ca_mint(const gt_ca *ca, const char *name, time_t now, char *err, size_t errlen)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
    ERR_clear_error();
    if (!ip && !good_dns_name(name)) {
        snprintf(err, errlen, "'%.80s' cannot be a certificate name", name);
        return NULL;
    }
    X509 *x = X509_new();
    X509_set_version(x, 2);
    X509_NAME *nm = X509_get_subject_name(x);
    /* CN only when short (RFC 5280 caps it at 64); browsers read the SAN anyway. */
    if (strlen(name) <= 64)
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1,
                                   0);
    else
        X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"gretel", -1,
                                   -1, 0);
    /* The leaf must not outlive the CA: browsers reject such chains. */
    time_t nb = now - GT_LEAF_BACKDATE_S, na = nb + GT_LEAF_SPAN_S;
    time_t ca_end = asn1_to_time(X509_get0_notAfter(ca->cert));
    if (ca_end && na > ca_end)
        na = ca_end;
    bool ok = X509_set_issuer_name(x, ca->name) && random_serial(x) == 0 &&
              ASN1_TIME_set(X509_getm_notBefore(x), nb) &&
              ASN1_TIME_set(X509_getm_notAfter(x), na) && X509_set_pubkey(x, ca->leaf_key) &&
              add_leaf_exts(x, ca, name, ip) == 0 &&
              X509_sign(x, ca->key, EVP_PKEY_get_bits(ca->key) > 256 ? EVP_sha384() : EVP_sha256());
    ASN1_OCTET_STRING_free(ip);
    if (!ok) {
        gt_tls_ssl_err(err, errlen, "minting failed");
        X509_free(x);
        return NULL;
    }
    return x;
}

EVP_PKEY *gt_ca_leaf_key(const gt_ca *ca)
{
    return ca->leaf_key;
}
