/* TLS contexts for both legs of an intercepted connection. Towards clients: the minted
 * leaf plus the CA in the chain (Chromium's SPKI allow-list and some clients need the CA
 * sent), TLS 1.2+ with forward-secret AEAD suites only. Towards origins: verification on
 * against the system store plus upstream_ca_file, the hostname (or IP) checked, the same
 * floor, and a stapled OCSP response that says "revoked" honoured. Built once at start;
 * SSL_CTX is thread-safe for SSL_new, so every worker shares these. */
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gretel/tls.h"
#include "gretel/util.h"
#include "internal.h"

/* TLS 1.2 suites: ECDHE + AEAD only (what Mozilla calls "intermediate" minus CBC). */
#define CIPHERS_12                                                                                 \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const unsigned char ALPN_H11[] = "\x08http/1.1";
static const unsigned char ALPN_H2_H11[] = "\x02h2\x08http/1.1";


/* Offer the client what gretel can terminate: h2 when the connection allows it
 * (gt_tls_allow_h2: http2 = on, and not an error page), else http/1.1. gretel translates
 * to the origin itself, so the client's choice does not depend on the origin's. A client
 * that offers nothing we speak gets no ALPN and assumes http/1.1. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    unsigned char *sel = NULL;
    bool h2 = SSL_get_app_data(ssl) != NULL;
    const unsigned char *ours = h2 ? ALPN_H2_H11 : ALPN_H11;
    size_t ourlen = h2 ? sizeof(ALPN_H2_H11) - 1 : sizeof(ALPN_H11) - 1;
    if (SSL_select_next_proto(&sel, outlen, ours, (unsigned)ourlen, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* A stapled OCSP response that marks the origin's certificate revoked ends the handshake.
 * Its signature is not checked: a forged "revoked" only makes gretel refuse, and "good"
 * is never relied on. No staple: nothing is known (OpenSSL does no revocation itself, and
 * gretel makes no look-ups of its own). */
static int ocsp_status(SSL *ssl, void *arg)
{
    (void)arg;
    const unsigned char *p = NULL;
    long len = SSL_get_tlsext_status_ocsp_resp(ssl, &p);
    if (!p || len <= 0)
        return 1;
    OCSP_RESPONSE *rsp = d2i_OCSP_RESPONSE(NULL, &p, len);
    if (!rsp)
        return 1;
    int verdict = 1;
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    OCSP_BASICRESP *br = OCSP_response_get1_basic(rsp);
    if (br && leaf) {
        const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
        for (int i = 0; i < OCSP_resp_count(br); i++) {
            OCSP_SINGLERESP *sr = OCSP_resp_get0(br, i);
            const OCSP_CERTID *id = OCSP_SINGLERESP_get0_id(sr);
            ASN1_INTEGER *sn = NULL;
            OCSP_id_get0_info(NULL, NULL, NULL, &sn, (OCSP_CERTID *)id);
            int reason;
            if (sn && ASN1_INTEGER_cmp(sn, serial) == 0 &&
                OCSP_single_get0_status(sr, &reason, NULL, NULL, NULL) ==
                    V_OCSP_CERTSTATUS_REVOKED) {
                SSL_set_verify_result(ssl, X509_V_ERR_CERT_REVOKED);
                verdict = 0;
            }
        }
    }
    OCSP_BASICRESP_free(br);
    OCSP_RESPONSE_free(rsp);
    ERR_clear_error();
    return verdict;
}

static SSL_CTX *server_ctx(char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        gt_tls_ssl_err(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, CIPHERS_12);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Resumption saves the client (a browser reconnecting) a full handshake; one ticket per
     * connection is enough for that and halves the ticket work of the default two. Tickets
     * are stateless, so the server-side session cache (a table shared by every worker,
     * under a lock) stays off. */
    SSL_CTX_set_num_tickets(ctx, 1);
    /* whole records (or several) per read(2) instead of a header read and a body read */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char sid[] = "gretel";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
}

static SSL_CTX *client_ctx(const char *upstream_ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        gt_tls_ssl_err(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, CIPHERS_12);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, 10);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        ERR_clear_error(); /* no system store: only upstream_ca_file can vouch */
    if (upstream_ca_file && upstream_ca_file[0] &&
        SSL_CTX_load_verify_locations(ctx, upstream_ca_file, NULL) != 1) {
        char what[512];
        snprintf(what, sizeof(what), "upstream_ca_file %s", upstream_ca_file);
        gt_tls_ssl_err(err, errlen, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_tlsext_status_cb(ctx, ocsp_status);
    return ctx;
}

/* A throwaway self-signed issuer key: certificates for origins that failed verification
 * are made with it, so no client trusts them. */
static int make_untrusted(gt_tls *t, char *err, size_t errlen)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k) {
        gt_tls_ssl_err(err, errlen, "key generation");
        return GT_EIO;
    }
    t->untrusted_key = k;
    return 0;
}

int gt_tls_new(gt_tls **out, const char *ca_dir, const char *cert_cache_dir,
               const char *upstream_ca_file, char *err, size_t errlen)
{
    *out = NULL;
    gt_tls *t = gt_xcalloc(1, sizeof(*t));
    int rv = gt_ca_load(&t->ca, ca_dir, err, errlen);
    if (rv < 0)
        goto fail;
    rv = GT_EIO;
    if (!(t->server = server_ctx(err, errlen)) ||
        !(t->client = client_ctx(upstream_ca_file, err, errlen)) ||
        make_untrusted(t, err, errlen) < 0)
        goto fail;
    char cerr[512];
    t->certs = gt_certs_new(t->ca, cert_cache_dir, 10000, cerr, sizeof(cerr));
    if (cerr[0])
        fprintf(stderr, "gretel: %s\n", cerr);
    *out = t;
    return 0;
fail:
    gt_tls_free(t);
    return rv;
}

void gt_tls_free(gt_tls *t)
{
    if (!t)
        return;
    gt_certs_free(t->certs);
    SSL_CTX_free(t->server);
    SSL_CTX_free(t->client);
    EVP_PKEY_free(t->untrusted_key);
    X509_free(t->untrusted_issuer);
    gt_ca_free(t->ca);
    free(t);
}

SSL *gt_tls_server_ssl(gt_tls *t, X509 *leaf)
{
    SSL *ssl = SSL_new(t->server);
    if (!ssl)
        return NULL;
    if (SSL_use_certificate(ssl, leaf) != 1 ||
        SSL_use_PrivateKey(ssl, gt_ca_leaf_key(t->ca)) != 1 ||
        SSL_add1_chain_cert(ssl, gt_ca_cert(t->ca)) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

void gt_tls_allow_h2(SSL *ssl)
{
    static const char on = 1;
    SSL_set_app_data(ssl, (void *)&on);
}

bool gt_tls_is_h2(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

SSL *gt_tls_untrusted_ssl(gt_tls *t, const char *name, const char *why)
{
    X509 *x = X509_new();
    EVP_PKEY *k = t->untrusted_key;
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
    ERR_clear_error();
    char san[300];
    snprintf(san, sizeof(san), "%s:%s", ip ? "IP" : "DNS", name);
    ASN1_OCTET_STRING_free(ip);
    X509_set_version(x, 2);
    X509_NAME *nm = X509_get_subject_name(x);
    char ou[64];
    snprintf(ou, sizeof(ou), "%.63s", why);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
                               (const unsigned char *)"gretel: origin certificate rejected", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1, -1, 0);
    X509_set_issuer_name(x, nm);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509V3_CTX vctx;
    X509V3_set_ctx_nodb(&vctx);
    X509V3_set_ctx(&vctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &vctx, NID_subject_alt_name, san);
    if (ex) {
        X509_add_ext(x, ex, -1);
        X509_EXTENSION_free(ex);
    }
    SSL *ssl = NULL;
    if (X509_sign(x, k, EVP_sha256())) {
        ssl = SSL_new(t->server);
        if (ssl && (SSL_use_certificate(ssl, x) != 1 || SSL_use_PrivateKey(ssl, k) != 1)) {
            SSL_free(ssl);
            ssl = NULL;
        }
    }
    ERR_clear_error();
    X509_free(x);
    return ssl;
}

SSL *gt_tls_client_ssl(gt_tls *t, const char *sni, bool offer_h2)
{
    SSL *ssl = SSL_new(t->client);
    if (!ssl)
        return NULL;
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(sni);
    ERR_clear_error();
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok;
    if (ip) {
        /* RFC 6066: no SNI for IP literals; the certificate must carry the IP. */
        ok = X509_VERIFY_PARAM_set1_ip_asc(vp, sni) == 1;
        ASN1_OCTET_STRING_free(ip);
    } else {
        ok = SSL_set_tlsext_host_name(ssl, sni) == 1 && SSL_set1_host(ssl, sni) == 1;
    }
    ok = ok &&
         (offer_h2 ? SSL_set_alpn_protos(ssl, ALPN_H2_H11, sizeof(ALPN_H2_H11) - 1)
                   : SSL_set_alpn_protos(ssl, ALPN_H11, sizeof(ALPN_H11) - 1)) == 0 &&
         SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp) == 1;
    if (!ok) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

bool gt_tls_failure_reason(SSL *ssl, char *buf, size_t cap)
{
    long v = SSL_get_verify_result(ssl);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (v != X509_V_OK) {
        const char *what;
        switch (v) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
            what = "certificate has expired";
            break;
        case X509_V_ERR_CERT_NOT_YET_VALID:
            what = "certificate is not yet valid";
            break;
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            what = "name mismatch (the certificate is for another name)";
            break;
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            what = "unknown issuer";
            break;
        case X509_V_ERR_CERT_REVOKED:
            what = "certificate revoked (stapled OCSP response)";
            break;
        default:
            what = "certificate rejected";
        }
        snprintf(buf, cap, "%s (%s)", what, X509_verify_cert_error_string(v));
        ERR_clear_error();
        return true;
    }
    (void)peer;
    unsigned long e = ERR_peek_last_error();
    if (e) {
        char tmp[200];
        ERR_error_string_n(e, tmp, sizeof(tmp));
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, cap, "TLS handshake failed: %s", r ? r : tmp);
    } else {
        snprintf(buf, cap, "TLS handshake failed: connection closed by the origin");
    }
    ERR_clear_error();
    return false;
}
