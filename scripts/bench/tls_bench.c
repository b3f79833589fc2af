/* TLS benchmark client for scripts/bench/tls.sh. Modes:
 *   handshakes  new TLS connections per second: each connection (through an HTTP proxy's
 *               CONNECT when --proxy is given) does a full handshake (no resumption),
 *               verifies the server against --cafile and the name (unless --no-verify),
 *               sends one GET with
 *               Connection: close and reads the response to its end. --threads clients
 *               in parallel for --seconds.
 *   keepalive   requests per second inside one connection: sequential GETs with keep-alive,
 *               over TLS (--tls, through --proxy's CONNECT if given) or plain HTTP through
 *               --proxy in absolute-form.
 *   mint        gretel's leaf minting cost: --n leaves for distinct names from the CA in
 *               --ca-dir (links gretel's src/tls), median and p99 in microseconds.
 * Prints one line of key=value results. Blocking sockets and one thread per client: the
 * figures compare servers, so the client is the same for every peer. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gretel/tls.h"

typedef struct {
    const char *mode, *host, *path, *cafile, *ca_dir;
    int port;         /* origin port */
    int proxy_port;   /* 0: direct */
    bool tls, no_verify;
    int threads, seconds, n;
} opts;

static opts O = {.mode = "handshakes", .host = "localhost", .path = "/small", .threads = 8,
                 .seconds = 5, .n = 1000, .tls = true};
static SSL_CTX *ctx;
static atomic_ulong done_ok, done_err;
static atomic_bool stop;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* CONNECT through the proxy; reads exactly the reply head (peeked first: the TLS bytes
 * that follow must stay in the socket for OpenSSL). Two system calls, not one per byte,
 * so the client costs no more through a proxy than it must. */
static bool proxy_connect(int fd)
{
    char req[512];
    int n = snprintf(req, sizeof(req), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", O.host,
                     O.port, O.host, O.port);
    if (write(fd, req, (size_t)n) != n)
        return false;
    char buf[1024];
    size_t len = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf) - 1, MSG_PEEK);
        if (r <= 0)
            return false;
        buf[r] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            len = (size_t)(end + 4 - buf);
            break;
        }
        if ((size_t)r >= sizeof(buf) - 1)
            return false;
        usleep(100); /* the rest of the head is on its way */
    }
    if (read(fd, buf, len) != (ssize_t)len)
        return false;
    buf[len] = 0;
    return strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0;
}

typedef struct {
    SSL *ssl;
    int fd;
    char buf[65536];
    size_t len;
} conn;

static long rd(conn *c, char *p, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, (int)n);
        return r > 0 ? r : (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
    }
    return read(c->fd, p, n);
}

static bool wr(conn *c, const char *p, size_t n)
{
    if (c->ssl)
        return SSL_write(c->ssl, p, (int)n) == (int)n;
    return write(c->fd, p, n) == (ssize_t)n;
}

/* Reads one response: head, then Content-Length bytes (or to EOF when absent). */
static bool read_response(conn *c, bool to_eof)
{
    char *end;
    for (;;) {
        c->buf[c->len] = 0;
        if ((end = strstr(c->buf, "\r\n\r\n")) != NULL)
            break;
        if (c->len >= sizeof(c->buf) - 1)
            return false;
        long r = rd(c, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
        if (r <= 0)
            return false;
        c->len += (size_t)r;
    }
    if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
        return false;
    size_t head = (size_t)(end + 4 - c->buf);
    char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    long want = cl && cl < end ? atol(cl + 17) : -1;
    if (want < 0 || to_eof) {
        while (rd(c, c->buf, sizeof(c->buf) - 1) > 0)
            ;
        c->len = 0;
        return true;
    }
    size_t have = c->len - head;
    while ((long)have < want) {
        long r = rd(c, c->buf, sizeof(c->buf) - 1);
        if (r <= 0)
            return false;
        have += (size_t)r;
    }
    /* keep-alive: sequential requests, so nothing follows the body */
    c->len = 0;
    return (long)have == want;
}

static bool open_conn(conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = dial(O.proxy_port ? O.proxy_port : O.port);
    if (c->fd < 0)
        return false;
    if (O.tls) {
        if (O.proxy_port && !proxy_connect(c->fd))
            return false;
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, O.host);
        if (!O.no_verify)
            SSL_set1_host(c->ssl, O.host);
        if (SSL_connect(c->ssl) != 1)
            return false;
    }
    return true;
}

static void close_conn(conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    ERR_clear_error();
}

static int request(conn *c, bool keepalive)
{
    char req[1024];
    int n;
    if (!O.tls && O.proxy_port)
        n = snprintf(req, sizeof(req), "GET http://%s:%d%s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n",
                     O.host, O.port, O.path, O.host, O.port,
                     keepalive ? "" : "Connection: close\r\n");
    else
        n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", O.path, O.host,
                     O.port, keepalive ? "" : "Connection: close\r\n");
    if (!wr(c, req, (size_t)n))
        return -1;
    return read_response(c, !keepalive) ? 0 : -1;
}

static void *hs_worker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        conn c;
        bool ok = open_conn(&c) && request(&c, false) == 0;
        close_conn(&c);
        atomic_fetch_add(ok ? &done_ok : &done_err, 1);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_mint(void)
{
    gt_ca *ca = NULL;
    char err[600];
    if (gt_ca_load(&ca, O.ca_dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "tls_bench: %s\n", err);
        return 2;
    }
    double *t = calloc((size_t)O.n, sizeof(double));
    for (int i = 0; i < O.n; i++) {
        char name[64];
        snprintf(name, sizeof(name), "host%d.bench.test", i);
        double t0 = now_s();
        X509 *x = gt_ca_mint(ca, name, time(NULL), err, sizeof(err));
        t[i] = (now_s() - t0) * 1e6;
        X509_free(x);
    }
    qsort(t, (size_t)O.n, sizeof(double), cmp_d);
    printf("mint n=%d median_us=%.1f p99_us=%.1f max_us=%.1f\n", O.n, t[O.n / 2],
           t[(int)(O.n * 0.99)], t[O.n - 1]);
    free(t);
    gt_ca_free(ca);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--mode") == 0)
            O.mode = v, i++;
        else if (strcmp(a, "--host") == 0)
            O.host = v, i++;
        else if (strcmp(a, "--port") == 0)
            O.port = atoi(v), i++;
        else if (strcmp(a, "--proxy") == 0)
            O.proxy_port = atoi(v), i++;
        else if (strcmp(a, "--path") == 0)
            O.path = v, i++;
        else if (strcmp(a, "--cafile") == 0)
            O.cafile = v, i++;
        else if (strcmp(a, "--ca-dir") == 0)
            O.ca_dir = v, i++;
        else if (strcmp(a, "--threads") == 0)
            O.threads = atoi(v), i++;
        else if (strcmp(a, "--seconds") == 0)
            O.seconds = atoi(v), i++;
        else if (strcmp(a, "--n") == 0)
            O.n = atoi(v), i++;
        else if (strcmp(a, "--plain") == 0)
            O.tls = false;
        else if (strcmp(a, "--no-verify") == 0)
            O.no_verify = true;
        else {
            fprintf(stderr, "tls_bench: unknown argument %s\n", a);
            return 2;
        }
    }
    if (strcmp(O.mode, "mint") == 0)
        return run_mint();
    ctx = SSL_CTX_new(TLS_client_method());
    /* --no-verify: the load generator skips chain verification (as h2load and wrk do), so
     * more of the machine is left to the server under test; correctness of what gretel
     * presents is the integration tests' job. */
    SSL_CTX_set_verify(ctx, O.no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (O.cafile && SSL_CTX_load_verify_locations(ctx, O.cafile, NULL) != 1) {
        fprintf(stderr, "tls_bench: cannot load %s\n", O.cafile);
        return 2;
    }
    /* every connection a full handshake: what a new site costs */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (strcmp(O.mode, "handshakes") == 0) {
        pthread_t th[256];
        int nt = O.threads > 256 ? 256 : O.threads;
        double t0 = now_s();
        for (int i = 0; i < nt; i++)
            pthread_create(&th[i], NULL, hs_worker, NULL);
        sleep((unsigned)O.seconds);
        atomic_store(&stop, true);
        for (int i = 0; i < nt; i++)
            pthread_join(th[i], NULL);
        double el = now_s() - t0;
        printf("handshakes ok=%lu err=%lu seconds=%.2f conn_per_s=%.0f\n", atomic_load(&done_ok),
               atomic_load(&done_err), el, (double)atomic_load(&done_ok) / el);
        return atomic_load(&done_ok) ? 0 : 1;
    }
    if (strcmp(O.mode, "keepalive") == 0) {
        conn c;
        if (!open_conn(&c)) {
            fprintf(stderr, "tls_bench: cannot connect\n");
            return 1;
        }
        unsigned long ok = 0, bad = 0;
        double t0 = now_s(), el;
        while ((el = now_s() - t0) < O.seconds) {
            if (request(&c, true) == 0)
                ok++;
            else {
                bad++;
                close_conn(&c);
                if (!open_conn(&c))
                    break;
            }
        }
        close_conn(&c);
        printf("keepalive ok=%lu err=%lu seconds=%.2f req_per_s=%.0f\n", ok, bad, el,
               (double)ok / el);
        return ok ? 0 : 1;
    }
    fprintf(stderr, "tls_bench: unknown mode %s\n", O.mode);
    return 2;
}
