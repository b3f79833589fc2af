/* The in-process whole-proxy driver (proxy_driver.h says what the input means). */
#include "proxy_driver.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gretel/config.h"
#include "gretel/control.h"
#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/rules.h"
#include "gretel/tls.h"
#include "gretel/util.h"

#define MAX_ORIGINS 4

/* What every run shares: made once per process. */
static struct {
    bool ready;
    char dir[128];
    gt_psl *psl;
    int origin_lfd, client_lfd;
    uint16_t origin_port, client_port;
    SSL_CTX *origin_ctx, *client_ctx;
    bool origin_h2; /* what the origin's ALPN picks in this run */
    gt_tls *tls;
    gt_control *control;
    gt_shared sh;
    gt_snapshot *snaps[FP_VARIANTS];
} G;

typedef struct {
    int fd;
    struct bufferevent *bev; /* TLS origins */
    struct evbuffer *out;    /* plain origins: bytes not yet written */
    bool closed;
} fp_origin;

typedef struct {
    const fp_mode *mode;
    gt_worker w;
    int cfd;                 /* the driver's end of the client connection */
    struct bufferevent *cbev; /* the client's TLS, once CONNECT was answered (h2 target) */
    bool c_eof, c_tls_failed, c_tls_up;
    struct evbuffer *c_in;   /* what the client got back before TLS (the CONNECT answer) */
    fp_origin org[MAX_ORIGINS];
    size_t norg;
    struct evbuffer *org_pending; /* origin bytes before any connection was accepted */
} fp_run_t;

/* --- set-up, once --- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert(f);
    fputs(text, f);
    fclose(f);
}

static int listen_loopback(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    assert(listen(fd, 64) == 0);
    socklen_t l = sizeof(a);
    assert(getsockname(fd, (struct sockaddr *)&a, &l) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       bool ca)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    const char *ext[][2] = {{"basicConstraints", ca ? "critical,CA:TRUE" : "CA:FALSE"},
                            {"keyUsage", ca ? "critical,keyCertSign" : "digitalSignature"},
                            {"subjectAltName", ca ? NULL : "DNS:*.test,DNS:a.test"}};
    for (size_t i = 0; i < 3; i++) {
        if (!ext[i][1])
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, ext[i][0], ext[i][1]);
        assert(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl, (void)arg;
    static const unsigned char h2[] = "\x02h2", h1[] = "\x08http/1.1";
    const unsigned char *want = G.origin_h2 ? h2 : h1;
    if (SSL_select_next_proto((unsigned char **)out, outlen, want, want[0] + 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    return SSL_TLSEXT_ERR_OK;
}

/* A test CA of the driver's own and an origin certificate for *.test it signed: gretel
 * verifies the scripted origin with it (upstream_ca_file), as it would a real one. */
static void make_origin_pki(void)
{
    EVP_PKEY *cakey = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
    assert(cakey && key);
    X509 *ca = make_cert(cakey, "gretel fuzz origin CA", NULL, NULL, true);
    X509 *leaf = make_cert(key, "a.test", ca, cakey, false);
    char path[200];
    snprintf(path, sizeof(path), "%s/origin-ca.pem", G.dir);
    FILE *f = fopen(path, "w");
    assert(f);
    PEM_write_X509(f, ca);
    fclose(f);
    G.origin_ctx = SSL_CTX_new(TLS_server_method());
    assert(SSL_CTX_use_certificate(G.origin_ctx, leaf) == 1);
    assert(SSL_CTX_use_PrivateKey(G.origin_ctx, key) == 1);
    SSL_CTX_set_alpn_select_cb(G.origin_ctx, alpn_select, NULL);
    G.client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(G.client_ctx, SSL_VERIFY_NONE, NULL); /* gretel's leaf: any is fine */
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(key);
}

static void cleanup_dir(void)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", G.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", G.dir);
}

static void init_once(void)
{
    if (G.ready)
        return;
    snprintf(G.dir, sizeof(G.dir), "/dev/shm/gretel-fuzzproxy-XXXXXX");
    if (!mkdtemp(G.dir)) {
        snprintf(G.dir, sizeof(G.dir), "/tmp/gretel-fuzzproxy-XXXXXX");
        assert(mkdtemp(G.dir));
    }
    atexit(cleanup_dir);
    /* as `gretel run` does: a peer that closed is an EPIPE, not the end of the process */
    signal(SIGPIPE, SIG_IGN);
    G.psl = gt_rules_psl_load();
    assert(G.psl);
    G.origin_lfd = listen_loopback(&G.origin_port);
    G.client_lfd = listen_loopback(&G.client_port);
    make_origin_pki();
    char path[200], cache[200], cafile[200], err[600];
    snprintf(path, sizeof(path), "%s/ca", G.dir);
    assert(gt_ca_init(path, 256, false, err, sizeof(err)) == 0);
    snprintf(cache, sizeof(cache), "%s/certs", G.dir);
    snprintf(cafile, sizeof(cafile), "%s/origin-ca.pem", G.dir);
    assert(gt_tls_new(&G.tls, path, cache, cafile, err, sizeof(err)) == 0);
    G.control = gt_control_new(G.dir);
    /* rules that rewrite, trim, block, redirect and read bodies: every branch of the
     * request path the documented language reaches */
    snprintf(path, sizeof(path), "%s/fuzz.rules", G.dir);
    write_file(path, "block domain=ads.test\n"
                     "block domain=px.test respond=gif\n"
                     "redirect domain=cdn.test path~/ad\\.js$ to=noop.js\n"
                     "rewrite domain=news.test trim-referer remove-cookie=tid\n"
                     "rewrite domain=a.test trim-referer\n"
                     "block domain=shop.test body~item_id=123\n"
                     "block domain=a.test path~^/block\n"
                     "block domain=a.test body~secret\n");
    pthread_mutex_init(&G.sh.snap_lock, NULL);
    G.sh.psl = G.psl;
    G.sh.tls = G.tls;
    G.sh.control = G.control;
    G.sh.nworkers = 1;
    G.sh.started_ms = gt_now_ms();
    G.ready = true;
}

static gt_snapshot *variant(unsigned v)
{
    if (G.snaps[v])
        return G.snaps[v];
    char store[200], ca[200], cafile[200], resolve[80], fwd[80], rules[200];
    snprintf(store, sizeof(store), "%s", G.dir);
    snprintf(ca, sizeof(ca), "%s/ca", G.dir);
    snprintf(cafile, sizeof(cafile), "%s/origin-ca.pem", G.dir);
    snprintf(resolve, sizeof(resolve), "*=127.0.0.1:%u", G.origin_port);
    snprintf(fwd, sizeof(fwd), "http://127.0.0.1:%u", G.origin_port);
    snprintf(rules, sizeof(rules), "%s/fuzz.rules", G.dir);
    gt_config_override ov[16];
    size_t n = 0;
#define OV(k, val) ov[n++] = (gt_config_override){k, sizeof(k) - 1, val}
    OV("store", store);
    OV("ca_dir", ca);
    OV("upstream_ca_file", cafile);
    OV("resolve", resolve);
    OV("dns_servers", "127.0.0.1:9"); /* never asked: every name is resolved above */
    OV("allow_clients", "127.0.0.0/8, 192.168.0.0/16");
    OV("connect_ports", "443");
    OV("lists", "");
    OV("mitm", (v & FP_MITM) ? "on" : "off");
    OV("http2", (v & FP_HTTP2_OFF) ? "off" : "on");
    OV("rules", (v & FP_RULES) ? rules : "");
    if (v & FP_FORWARD)
        OV("forward", fwd);
#undef OV
    gt_diags d;
    gt_diags_init(&d);
    gt_config *cfg = NULL;
    if (gt_config_load(&cfg, NULL, ov, n, &d) < 0) {
        gt_diags_print(&d, stderr);
        abort();
    }
    const char *files[] = {rules};
    gt_rules_source src = {files, (v & FP_RULES) ? 1 : 0, NULL, 0, false, false};
    gt_ruleset *rs = NULL;
    if (gt_ruleset_load(&rs, &src, G.psl, &d) < 0) {
        gt_diags_print(&d, stderr);
        abort();
    }
    gt_diags_free(&d);
    G.snaps[v] = gt_snapshot_new(cfg, rs, NULL);
    return G.snaps[v];
}

/* --- the peers --- */

/* GRETEL_FUZZ_VERBOSE=1: what each side got back, to check that seeds reach their path */
static void drop_input(struct bufferevent *bev, const char *who)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    if (getenv("GRETEL_FUZZ_VERBOSE")) {
        size_t n = evbuffer_get_length(in);
        fprintf(stderr, "[%s got %zu] %.*s\n", who, n, (int)(n > 300 ? 300 : n),
                (const char *)evbuffer_pullup(in, -1));
    }
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void client_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    drop_input(bev, "client");
}

static void origin_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    drop_input(bev, "origin");
}

static void origin_event(struct bufferevent *bev, short what, void *arg)
{
    fp_origin *o = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        o->closed = true;
}

static void origin_send(fp_run_t *r, fp_origin *o, const uint8_t *p, size_t n)
{
    (void)r;
    if (getenv("GRETEL_FUZZ_VERBOSE"))
        fprintf(stderr, "[origin %zu sends %zu%s]\n", (size_t)(o - r->org), n,
                o->closed ? ", closed" : "");
    if (o->closed)
        return;
    if (o->bev)
        bufferevent_write(o->bev, p, n);
    else
        evbuffer_add(o->out, p, n);
}

static void accept_origins(fp_run_t *r)
{
    for (;;) {
        int fd = accept4(G.origin_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (r->norg == MAX_ORIGINS) {
            close(fd);
            continue;
        }
        fp_origin *o = &r->org[r->norg++];
        memset(o, 0, sizeof(*o));
        o->fd = fd;
        /* no Nagle: a small write waiting for a delayed ACK would miss the run's passes */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (r->mode->tls_origin) {
            SSL *ssl = SSL_new(G.origin_ctx);
            o->bev = bufferevent_openssl_socket_new(r->w.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
            bufferevent_setcb(o->bev, origin_read, NULL, origin_event, o);
            bufferevent_enable(o->bev, EV_READ | EV_WRITE);
        } else {
            o->out = evbuffer_new();
        }
        /* what the input said before this connection existed goes to the first one */
        size_t len = evbuffer_get_length(r->org_pending);
        if (len) {
            origin_send(r, o, evbuffer_pullup(r->org_pending, -1), len);
            evbuffer_drain(r->org_pending, len);
        }
    }
}

/* Plain sockets: write what is queued, read and drop what gretel sent. */
static void io_plain(fp_run_t *r)
{
    char buf[4096];
    while (!r->cbev && r->cfd >= 0) {
        ssize_t n = read(r->cfd, buf, sizeof(buf));
        if (n > 0 && getenv("GRETEL_FUZZ_VERBOSE"))
            fprintf(stderr, "[client got %zd] %.*s\n", n, (int)(n > 300 ? 300 : n), buf);
        if (n > 0) {
            if (r->c_in)
                evbuffer_add(r->c_in, buf, (size_t)n);
            continue;
        }
        if (n == 0)
            r->c_eof = true;
        break;
    }
    for (size_t i = 0; i < r->norg; i++) {
        fp_origin *o = &r->org[i];
        if (o->bev || o->closed)
            continue;
        while (evbuffer_get_length(o->out)) {
            int n = evbuffer_write(o->out, o->fd);
            if (n <= 0)
                break;
        }
        for (;;) {
            ssize_t n = read(o->fd, buf, sizeof(buf));
            if (n <= 0)
                break;
        }
    }
}

static void pump(fp_run_t *r, int passes)
{
    for (int i = 0; i < passes; i++) {
        accept_origins(r);
        io_plain(r);
        event_base_loop(r->w.base, EVLOOP_NONBLOCK);
    }
}

static void client_send(fp_run_t *r, const uint8_t *p, size_t n)
{
    if (r->cbev) {
        bufferevent_write(r->cbev, p, n);
        return;
    }
    size_t off = 0;
    for (int tries = 0; off < n && tries < 64; tries++) {
        ssize_t w = write(r->cfd, p + off, n - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            return;
        else
            pump(r, 1); /* gretel reads, then there is room again */
    }
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
    fp_run_t *r = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        r->c_tls_up = true;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        r->c_eof = true;
        r->c_tls_failed = true;
    }
}

/* fuzz_proxy_h2: CONNECT, then TLS with ALPN as the variant says, then the preface. */
static bool start_h2_client(fp_run_t *r, bool alpn_h2)
{
    static const char connect[] = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
    r->c_in = evbuffer_new();
    client_send(r, (const uint8_t *)connect, sizeof(connect) - 1);
    for (int i = 0; i < 400 && !r->c_eof; i++) {
        pump(r, 1);
        if (evbuffer_search(r->c_in, "\r\n\r\n", 4, NULL).pos >= 0)
            break;
    }
    size_t len = evbuffer_get_length(r->c_in);
    const char *head = (const char *)evbuffer_pullup(r->c_in, -1);
    bool ok = len >= 12 && memcmp(head, "HTTP/1.1 200", 12) == 0;
    evbuffer_free(r->c_in);
    r->c_in = NULL;
    if (!ok)
        return false;
    SSL *ssl = SSL_new(G.client_ctx);
    SSL_set_tlsext_host_name(ssl, "a.test");
    static const unsigned char h2[] = "\x02h2\x08http/1.1", h1[] = "\x08http/1.1";
    if (alpn_h2)
        SSL_set_alpn_protos(ssl, h2, sizeof(h2) - 1);
    else
        SSL_set_alpn_protos(ssl, h1, sizeof(h1) - 1);
    r->cbev = bufferevent_openssl_socket_new(r->w.base, r->cfd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    r->cfd = -1; /* the bufferevent owns it */
    bufferevent_setcb(r->cbev, client_read, NULL, client_event, r);
    bufferevent_enable(r->cbev, EV_READ | EV_WRITE);
    if (alpn_h2) {
        static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                         "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
        bufferevent_write(r->cbev, preface, sizeof(preface) - 1);
    }
    for (int i = 0; i < 400 && !r->c_tls_up && !r->c_tls_failed; i++)
        pump(r, 1);
    pump(r, 8);
    return r->c_tls_up && !r->c_tls_failed;
}

int fp_run(const fp_mode *mode, const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    init_once();
    unsigned v = data[0] % FP_VARIANTS;
    if (mode->h2_client)
        v = (v | FP_MITM) & ~(unsigned)(FP_FORWARD | FP_HTTP2_OFF);
    G.origin_h2 = (data[0] & 0x40) == 0;
    gt_log_set_level((v & FP_DEBUG) ? GT_LOG_DEBUG : GT_LOG_ERROR);
    G.sh.snap = variant(v);
    fp_run_t r;
    memset(&r, 0, sizeof(r));
    r.mode = mode;
    r.cfd = -1;
    if (gt_worker_init_detached(&r.w, &G.sh, 0) < 0)
        abort();
    r.org_pending = evbuffer_new();
    /* connections left from the previous run */
    for (int fd; (fd = accept4(G.origin_lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0;)
        close(fd);
    /* the client: a real TCP connection on loopback; gretel is told the address the
     * variant says (a LAN client, or a local one) */
    r.cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(r.cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in ca = {.sin_family = AF_INET, .sin_port = htons(G.client_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(r.cfd, (struct sockaddr *)&ca, sizeof(ca)) < 0 && errno != EINPROGRESS)
        abort();
    int sfd = -1;
    for (int i = 0; i < 1000 && sfd < 0; i++)
        sfd = accept4(G.client_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (sfd < 0)
        abort();
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = (v & FP_LAN) ? htonl(0xC0A80132) /* 192.168.1.50 */
                                        : htonl(INADDR_LOOPBACK);
    gt_session_accept(&r.w, sfd, (struct sockaddr *)&peer, sizeof(peer));
    data++, size--;
    bool go = true;
    if (mode->h2_client)
        go = start_h2_client(&r, (data[-1] & 0x80) == 0);
    /* Each record costs loop passes: past MAX_RECORDS the rest goes to the client in one
     * write, so a long input of tiny records cannot make one run take seconds. */
    enum { MAX_RECORDS = 256, PASSES = 6 };
    unsigned nrec = 0;
    while (go && size >= 3 && nrec++ < MAX_RECORDS) {
        unsigned tag = data[0] & 3;
        size_t len = ((size_t)data[1] << 8) | data[2];
        data += 3, size -= 3;
        if (len > size)
            len = size;
        switch (tag) {
        case 0:
            client_send(&r, data, len);
            break;
        case 1:
            if (r.norg)
                origin_send(&r, &r.org[r.norg - 1], data, len);
            else
                evbuffer_add(r.org_pending, data, len);
            break;
        case 2:
            if (r.cbev)
                bufferevent_disable(r.cbev, EV_WRITE);
            else
                shutdown(r.cfd, SHUT_WR);
            break;
        case 3:
            if (r.norg && !r.org[r.norg - 1].closed) {
                fp_origin *o = &r.org[r.norg - 1];
                if (o->bev)
                    bufferevent_flush(o->bev, EV_WRITE, BEV_FINISHED);
                else
                    evbuffer_write(o->out, o->fd);
                shutdown(o->fd, SHUT_WR);
            }
            break;
        }
        data += len, size -= len;
        pump(&r, PASSES);
    }
    if (go && size)
        client_send(&r, data, size);
    pump(&r, 96);
    if (getenv("GRETEL_FUZZ_VERBOSE"))
        for (size_t i = 0; i < r.norg; i++)
            if (r.org[i].bev)
                fprintf(stderr, "[origin %zu: %zu bytes unsent%s]\n", i,
                        evbuffer_get_length(bufferevent_get_output(r.org[i].bev)),
                        r.org[i].closed ? ", closed" : "");
    /* the driver's peers go first (their events live in the worker's base) */
    if (r.cbev)
        bufferevent_free(r.cbev);
    else if (r.cfd >= 0)
        close(r.cfd);
    for (size_t i = 0; i < r.norg; i++) {
        if (r.org[i].bev) {
            bufferevent_free(r.org[i].bev);
        } else {
            close(r.org[i].fd);
            evbuffer_free(r.org[i].out);
        }
    }
    evbuffer_free(r.org_pending);
    gt_worker_fini_detached(&r.w);
    gt_certs_flush(G.tls->certs); /* what the main thread's timer does in `gretel run` */
    return 0;
}
