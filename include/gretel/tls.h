/* TLS interception: the per-install local CA, leaf certificates minted from it (cached in
 * memory and in an LMDB cache under the store), the TLS contexts for both legs, and the
 * ClientHello reader that learns the SNI before any handshake. OpenSSL only; no sockets
 * (src/net/stream.c runs the handshakes), no HTTP. */
#ifndef GT_TLS_H
#define GT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gretel/slice.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct x509_st X509;

/* --- the local CA (src/tls/ca.c) --- */

typedef struct gt_ca gt_ca;

#define GT_CA_CERT "gretel-ca.pem"
#define GT_CA_KEY "gretel-ca.key"
#define GT_LEAF_KEY "gretel-leaf.key"

/* Creates a new CA in dir (mode 0700): an EC key (curve_bits 256 or 384) written mode 0600,
 * a self-signed certificate valid ~10 years with a random serial and a per-install name,
 * and the one leaf key every minted certificate uses (P-256, 0600). Refuses to replace an
 * existing CA unless `force`. 0, or a negative GT_E* with err set. */
int gt_ca_init(const char *dir, unsigned curve_bits, bool force, char *err, size_t errlen);

/* Loads the CA from dir: GT_ENOTFOUND when there is none, another error (with err) when the
 * files are unreadable, inconsistent (key does not match the certificate), or the key file
 * is readable by others. */
int gt_ca_load(gt_ca **out, const char *dir, char *err, size_t errlen);
void gt_ca_free(gt_ca *ca); /* NULL-safe */

const char *gt_ca_dir(const gt_ca *ca);
X509 *gt_ca_cert(const gt_ca *ca); /* borrowed */
/* "AB:CD:..." SHA-256 of the certificate (what browsers show). */
void gt_ca_fingerprint(const gt_ca *ca, char *out, size_t cap);
/* base64 SHA-256 of the CA's SubjectPublicKeyInfo (Chromium's
 * --ignore-certificate-errors-spki-list form). */
void gt_ca_spki_sha256(const gt_ca *ca, char *out, size_t cap);
/* The certificate in PEM, malloc'd; *len set. */
char *gt_ca_pem(const gt_ca *ca, size_t *len);
/* Subject and validity, for `gretel ca show`. */
void gt_ca_describe(const gt_ca *ca, char *subject, size_t scap, time_t *not_before,
                    time_t *not_after);

/* Leaf lifetime: the whole span (backdating included) stays within 45 days, under every
 * public cap Chromium and Android will apply; a cached leaf is reissued when less than
 * GT_LEAF_RENEW_S is left. */
#define GT_LEAF_BACKDATE_S (24 * 3600)
#define GT_LEAF_SPAN_S (45 * 24 * 3600)
#define GT_LEAF_RENEW_S (7 * 24 * 3600)

/* Mints a leaf for name (a DNS name, or an IPv4/IPv6 literal: SAN IP), signed by the CA,
 * with a random 128-bit serial, EKU serverAuth, CA:FALSE, AKI = the CA's SKI. NULL (err
 * set) on a name that cannot be a certificate name. */
X509 *gt_ca_mint(const gt_ca *ca, const char *name, time_t now, char *err, size_t errlen);

/* --- leaf cache (src/tls/certs.c) --- */

typedef struct gt_certs gt_certs;

typedef struct {
    uint64_t hits, minted, loaded, stored, mint_us_total;
} gt_certs_stats;

/* A bounded LRU of leaves by name, shared by the worker threads (one mutex), backed by an
 * LMDB environment in cache_dir (NULL: memory only) so restarts are warm. Borrows ca. */
gt_certs *gt_certs_new(const gt_ca *ca, const char *cache_dir, size_t max_entries, char *err,
                       size_t errlen);
void gt_certs_free(gt_certs *c); /* writes what is pending first; NULL-safe */
/* The leaf for name (lower-case), with a reference the caller frees (X509_free): from
 * memory, else from the LMDB cache, else minted now. NULL with err on a bad name. *minted
 * says whether this call minted it. Any thread. */
X509 *gt_certs_get(gt_certs *c, const char *name, bool *minted, char *err, size_t errlen);
/* Writes newly minted leaves to the LMDB cache (one durable transaction). Called from the
 * main thread's timer, so no worker ever waits for a disk sync. */
void gt_certs_flush(gt_certs *c);
void gt_certs_get_stats(gt_certs *c, gt_certs_stats *out);

/* --- TLS contexts (src/tls/ctx.c) --- */

/* Everything a running proxy needs for interception; built at start. */
typedef struct gt_tls {
    gt_ca *ca;
    gt_certs *certs;
    SSL_CTX *server; /* towards clients: the minted leaf is set per connection */
    SSL_CTX *client; /* towards origins: verification on, modern floor */
    /* For origins that failed verification: a throwaway issuer (not the CA, trusted by
     * nobody) so that the browser still warns and the failure is never hidden. */
    void *untrusted_key;  /* EVP_PKEY */
    X509 *untrusted_issuer;
} gt_tls;

/* Loads the CA from ca_dir and builds both contexts. upstream_ca_file (NULL: none) is
 * trusted in addition to the system store. GT_ENOTFOUND when there is no CA. */
int gt_tls_new(gt_tls **out, const char *ca_dir, const char *cert_cache_dir,
               const char *upstream_ca_file, char *err, size_t errlen);
void gt_tls_free(gt_tls *t);

/* A server-side SSL for one intercepted client connection, presenting leaf (+ the CA in the
 * chain). NULL on failure. */
SSL *gt_tls_server_ssl(gt_tls *t, X509 *leaf);
/* Lets a server-side SSL select ALPN h2 (before its handshake); gt_tls_is_h2 says, after
 * it, whether h2 was chosen. */
void gt_tls_allow_h2(SSL *ssl);
bool gt_tls_is_h2(SSL *ssl);
/* A server-side SSL presenting an untrusted certificate for name whose subject says why the
 * origin failed verification. */
SSL *gt_tls_untrusted_ssl(gt_tls *t, const char *name, const char *why);
/* A client-side SSL towards an origin: SNI (omitted for IP literals), peer and hostname
 * (or IP) verification, ALPN http/1.1 (and h2 first when offer_h2). */
SSL *gt_tls_client_ssl(gt_tls *t, const char *sni, bool offer_h2);
/* After a failed client handshake: a short reason ("certificate has expired", "unknown
 * issuer (unable to get local issuer certificate)", "name mismatch", or the TLS alert)
 * into buf; returns true when the failure is a certificate verification failure. */
bool gt_tls_failure_reason(SSL *ssl, char *buf, size_t cap);

/* --- ClientHello reader (src/tls/hello.c) --- */

enum { GT_HELLO_OK = 0, GT_HELLO_INCOMPLETE = 1, GT_HELLO_NOT_TLS = 2, GT_HELLO_BAD = 3 };

typedef struct {
    char sni[256];      /* host_name from server_name, lower-case; "" when absent */
    bool has_sni;
    bool alpn_h2, alpn_http11; /* protocols the client offers */
    unsigned version;    /* legacy_version of the ClientHello */
    size_t record_len;   /* bytes of records the hello spans (when OK) */
} gt_client_hello;

/* Reads a TLS ClientHello (possibly split over several handshake records) from the first
 * bytes a client sent. NOT_TLS when the first byte is not a handshake record (the tunnel
 * then carries something else and is relayed raw); INCOMPLETE until the whole hello is
 * there (at most 16 KiB + headers); BAD on malformed input. Never reads past len. */
int gt_tls_parse_client_hello(const uint8_t *p, size_t len, gt_client_hello *out);

#endif
