/* gt_stream: non-blocking TCP I/O over libevent events and evbuffers (see the header for
 * why not bufferevent). Owns the socket and both buffers. One worker thread only. The
 * deferred free (busy/dead) lets owners destroy a stream from inside its callbacks. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gretel/stream.h"
#include "gretel/util.h"

#define READ_MIN (16 * 1024)
#define READ_MAX (256 * 1024)
#define DEFAULT_HWM (256 * 1024)
/* TLS: plaintext handed to one SSL_write (a full record), and decrypted per read call
 * before other connections get their turn. */
#define TLS_WRITE_CHUNK 16384
#define TLS_READ_BUDGET (256 * 1024)

struct gt_stream {
    struct event_base *base;
    int fd;
    struct event *rev, *wev, *trig;
    struct event *rtimer, *wtimer; /* timeouts live apart from the I/O events, so changing
                                      them never costs an epoll_ctl */
    struct evbuffer *in, *out;
    gt_stream_cb on_read, on_write;
    gt_stream_event_cb on_event;
    void *arg;
    size_t hwm, lowat, read_size;
    unsigned read_ms, write_ms;
    bool want_read;   /* owner enabled reading */
    bool rev_added, wev_added;
    bool connecting, eof, shut_pending, shut_done;
    int err;
    unsigned busy;    /* callbacks running for this stream */
    bool dead;        /* freed while busy */
    /* TLS (gt_stream_start_tls): the evbuffers then carry plaintext */
    SSL *ssl;
    struct evbuffer *pre; /* ciphertext read before TLS started (a ClientHello read ahead) */
    struct evbuffer *hsbuf; /* handshake records waiting for OpenSSL's flush */
    struct event *tlsev;  /* runs the handshake or drains decrypted bytes from the loop */
    bool tls_hs;          /* handshake in progress */
    bool tls_read_wants_write; /* SSL_read needs the socket writable first */
};

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void arm_rtimer(gt_stream *s)
{
    if (s->read_ms) {
        struct timeval tv = tv_ms(s->read_ms);
        evtimer_add(s->rtimer, &tv);
    } else {
        evtimer_del(s->rtimer);
    }
}

static void arm_wtimer(gt_stream *s)
{
    if (s->write_ms && s->wev_added) {
        struct timeval tv = tv_ms(s->write_ms);
        evtimer_add(s->wtimer, &tv);
    } else {
        evtimer_del(s->wtimer);
    }
}

/* Keeps the read event registered exactly when reading is wanted and allowed; only a
 * change of that costs a system call. The read timeout runs while reading is wanted. */
static void update_read(gt_stream *s)
{
    bool want = (s->want_read || s->tls_hs) && !s->eof && !s->connecting && !s->dead &&
                (s->tls_hs || evbuffer_get_length(s->in) < s->hwm);
    /* Decrypted bytes OpenSSL still holds never make the socket readable: fetch them from
     * the loop once the owner wants input again. */
    if (want && s->ssl && !s->tls_hs && SSL_has_pending(s->ssl)) {
        struct timeval zero = {0, 0};
        evtimer_add(s->tlsev, &zero);
    }
    if (want && !s->rev_added) {
        event_add(s->rev, NULL);
        s->rev_added = true;
        arm_rtimer(s);
    } else if (!want && s->rev_added) {
        event_del(s->rev);
        s->rev_added = false;
        evtimer_del(s->rtimer);
    }
}

static void update_write(gt_stream *s, bool pending)
{
    if (pending && !s->dead) {
        if (!s->wev_added) {
            event_add(s->wev, NULL);
            s->wev_added = true;
            arm_wtimer(s);
        }
    } else if (s->wev_added) {
        event_del(s->wev);
        s->wev_added = false;
        evtimer_del(s->wtimer);
    }
}

static void release(gt_stream *s)
{
    if (s->rev)
        event_free(s->rev);
    if (s->wev)
        event_free(s->wev);
    if (s->trig)
        event_free(s->trig);
    if (s->rtimer)
        event_free(s->rtimer);
    if (s->wtimer)
        event_free(s->wtimer);
    if (s->in)
        evbuffer_free(s->in);
    if (s->out)
        evbuffer_free(s->out);
    if (s->ssl)
        SSL_free(s->ssl);
    if (s->pre)
        evbuffer_free(s->pre);
    if (s->hsbuf)
        evbuffer_free(s->hsbuf);
    if (s->tlsev)
        event_free(s->tlsev);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

/* Callback wrappers: mark busy so a free from inside only marks the stream dead. */
static void call_event(gt_stream *s, int what)
{
    if (s->dead || !s->on_event)
        return;
    s->on_event(s, what, s->arg);
}

static void do_shutdown(gt_stream *s)
{
    if (!s->shut_done && s->fd >= 0) {
        if (s->ssl && !s->tls_hs) {
            ERR_clear_error();
            SSL_shutdown(s->ssl); /* close_notify; a full socket just loses it */
            ERR_clear_error();
        }
        shutdown(s->fd, SHUT_WR);
        s->shut_done = true;
    }
}

/* Writes what the socket takes. Returns false after an error: reported to the owner when
 * `report`, else left for the write event to find again, so that gt_stream_flush never
 * calls back into its caller (who may be in the middle of changing state). */
static bool tls_write_some(gt_stream *s, bool report);

static bool write_some(gt_stream *s, bool report)
{
    if (s->ssl)
        return tls_write_some(s, report);
    while (evbuffer_get_length(s->out)) {
        int n = evbuffer_write_atmost(s->out, s->fd, -1);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            s->err = errno;
            if (!report) {
                update_write(s, true);
                return false;
            }
            update_write(s, false);
            call_event(s, GT_STREAM_ERROR | GT_STREAM_WRITING);
            return false;
        }
        if (n == 0)
            break;
    }
    bool pending = evbuffer_get_length(s->out) > 0;
    update_write(s, pending);
    if (!pending && s->shut_pending)
        do_shutdown(s);
    return true;
}

/* --- TLS ---
 * OpenSSL reads and writes the socket itself through a small BIO (no copy through memory
 * BIOs); ciphertext that arrived before TLS started is served to it first. */

static int bio_read(BIO *b, char *buf, int n)
{
    gt_stream *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (s->pre && evbuffer_get_length(s->pre))
        return evbuffer_remove(s->pre, buf, (size_t)n);
    ssize_t r = read(s->fd, buf, (size_t)n);
    if (r >= 0)
        return (int)r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        BIO_set_retry_read(b);
    else
        s->err = errno;
    return -1;
}

/* Sends what the handshake buffered: 1 when all is out, 0 when the socket is full (retry
 * set), -1 on an error. */
static int flush_hs(gt_stream *s, BIO *b)
{
    while (evbuffer_get_length(s->hsbuf)) {
        int r = evbuffer_write(s->hsbuf, s->fd);
        if (r > 0)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            BIO_set_retry_write(b);
            return 0;
        }
        s->err = r < 0 ? errno : EPIPE;
        return -1;
    }
    return 1;
}

/* During the handshake OpenSSL writes a flight as several records and then flushes: they
 * are gathered here and sent in one system call (one segment instead of five, and the
 * peer is woken once). Application data goes straight to the socket. */
static int bio_write(BIO *b, const char *buf, int n)
{
    gt_stream *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (s->tls_hs) {
        evbuffer_add(s->hsbuf, buf, (size_t)n);
        return n;
    }
    int f = flush_hs(s, b);
    if (f <= 0)
        return -1;
    ssize_t r = send(s->fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (r >= 0)
        return (int)r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        BIO_set_retry_write(b);
    else
        s->err = errno;
    return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num, (void)ptr;
    if (cmd == BIO_CTRL_FLUSH) {
        gt_stream *s = BIO_get_data(b);
        BIO_clear_retry_flags(b);
        int f = flush_hs(s, b);
        return f > 0 ? 1 : -1;
    }
    return 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gt_stream");
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
}

/* A failed TLS operation: the owner hears about it with OpenSSL's error queue intact (it
 * may ask gt_tls_failure_reason why). */
static void tls_fail(gt_stream *s, int dir)
{
    if (!s->err)
        s->err = EPROTO;
    s->eof = true;
    update_read(s);
    update_write(s, false);
    call_event(s, GT_STREAM_ERROR | GT_STREAM_TLS | dir);
}

static void tls_handshake(gt_stream *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->tls_hs = false;
        if (evbuffer_get_length(s->hsbuf)) {
            /* the last flight (a client's Finished, a server's ticket) not yet flushed */
            BIO *b = SSL_get_wbio(s->ssl);
            if (flush_hs(s, b) < 0) {
                tls_fail(s, GT_STREAM_WRITING);
                return;
            }
        }
        update_write(s, false);
        update_read(s);
        call_event(s, GT_STREAM_TLS_DONE);
        if (s->dead)
            return;
        update_read(s);
        if (evbuffer_get_length(s->out) || evbuffer_get_length(s->hsbuf))
            write_some(s, true);
        return;
    }
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        update_write(s, false);
        update_read(s);
        return;
    case SSL_ERROR_WANT_WRITE:
        update_write(s, true);
        return;
    default:
        tls_fail(s, GT_STREAM_READING);
    }
}

/* Decrypts into the input buffer up to the high watermark; then calls the owner. */
static void tls_read(gt_stream *s)
{
    size_t total = 0;
    bool eof = false;
    int fail = 0;
    while (total < TLS_READ_BUDGET) {
        size_t len = evbuffer_get_length(s->in);
        if (len >= s->hwm)
            break;
        size_t want = s->hwm - len;
        if (want > 16384)
            want = 16384;
        struct evbuffer_iovec vec;
        if (evbuffer_reserve_space(s->in, (ev_ssize_t)want, &vec, 1) != 1)
            break;
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(s->ssl, vec.iov_base, vec.iov_len < want ? vec.iov_len : want, &n);
        if (r == 1) {
            vec.iov_len = n;
            evbuffer_commit_space(s->in, &vec, 1);
            total += n;
            continue;
        }
        evbuffer_commit_space(s->in, &vec, 0);
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_WANT_WRITE) {
            s->tls_read_wants_write = true;
            update_write(s, true);
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !s->err))
            eof = true; /* close_notify, or a plain close (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        else
            fail = 1;
        break;
    }
    if (total) {
        if (s->read_ms)
            arm_rtimer(s);
        if (s->on_read)
            s->on_read(s, s->arg);
        if (s->dead)
            return;
    }
    if (fail) {
        tls_fail(s, GT_STREAM_READING);
        return;
    }
    if (eof) {
        s->eof = true;
        update_read(s);
        call_event(s, GT_STREAM_EOF | GT_STREAM_READING);
        return;
    }
    update_read(s);
}

static bool tls_write_some(gt_stream *s, bool report)
{
    if (evbuffer_get_length(s->hsbuf) && flush_hs(s, SSL_get_wbio(s->ssl)) < 0) {
        if (!report) {
            update_write(s, true);
            return false;
        }
        update_write(s, false);
        call_event(s, GT_STREAM_ERROR | GT_STREAM_TLS | GT_STREAM_WRITING);
        return false;
    }
    while (evbuffer_get_length(s->out) && !evbuffer_get_length(s->hsbuf)) {
        size_t n = evbuffer_get_length(s->out);
        if (n > TLS_WRITE_CHUNK)
            n = TLS_WRITE_CHUNK;
        /* a whole record's worth in one piece: a head and a small body become one record */
        const unsigned char *p = evbuffer_pullup(s->out, (ev_ssize_t)n);
        size_t w = 0;
        ERR_clear_error();
        int r = SSL_write_ex(s->ssl, p, n, &w);
        if (r == 1) {
            evbuffer_drain(s->out, w);
            continue;
        }
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            break; /* TLS 1.3 and no renegotiation: WANT_READ does not persist */
        if (!s->err)
            s->err = EPROTO;
        ERR_clear_error();
        if (!report) {
            update_write(s, true);
            return false;
        }
        update_write(s, false);
        call_event(s, GT_STREAM_ERROR | GT_STREAM_TLS | GT_STREAM_WRITING);
        return false;
    }
    bool pending = evbuffer_get_length(s->out) > 0 || evbuffer_get_length(s->hsbuf) > 0 ||
                   s->tls_read_wants_write;
    update_write(s, pending);
    if (!evbuffer_get_length(s->out) && s->shut_pending)
        do_shutdown(s);
    return true;
}

static void on_tls_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_stream *s = arg;
    s->busy++;
    if (!s->dead) {
        if (s->tls_hs)
            tls_handshake(s);
        else if (s->want_read && !s->eof)
            tls_read(s);
    }
    if (--s->busy == 0 && s->dead)
        release(s);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    gt_stream *s = arg;
    (void)what;
    s->busy++;
    if (s->connecting) {
        int e = 0;
        socklen_t l = sizeof(e);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        s->connecting = false;
        if (e) {
            s->err = e;
            update_write(s, false);
            call_event(s, GT_STREAM_ERROR | GT_STREAM_WRITING);
            goto out;
        }
        update_write(s, false);
        call_event(s, GT_STREAM_CONNECTED);
        if (s->dead)
            goto out;
        update_read(s);
        if (evbuffer_get_length(s->out))
            write_some(s, true);
        goto out;
    }
    if (s->tls_hs) {
        tls_handshake(s);
        goto out;
    }
    if (s->tls_read_wants_write) {
        s->tls_read_wants_write = false;
        tls_read(s);
        if (s->dead)
            goto out;
    }
    size_t before = evbuffer_get_length(s->out);
    if (!write_some(s, true))
        goto out;
    if (evbuffer_get_length(s->out) < before)
        arm_wtimer(s); /* progress restarts the write timeout */
    if (!s->dead && s->on_write && evbuffer_get_length(s->out) <= s->lowat)
        s->on_write(s, s->arg);
out:
    if (--s->busy == 0 && s->dead)
        release(s);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    gt_stream *s = arg;
    (void)what;
    s->busy++;
    if (s->ssl) {
        if (s->tls_hs)
            tls_handshake(s);
        else
            tls_read(s);
        goto out;
    }
    size_t room = s->hwm > evbuffer_get_length(s->in) ? s->hwm - evbuffer_get_length(s->in) : 0;
    size_t want = s->read_size < room ? s->read_size : room;
    if (want == 0) {
        update_read(s);
        goto out;
    }
    struct evbuffer_iovec vec[2];
    int nvec = evbuffer_reserve_space(s->in, (ev_ssize_t)want, vec, 2);
    if (nvec <= 0)
        goto out;
    struct iovec iov[2];
    size_t total = 0;
    for (int i = 0; i < nvec; i++) {
        size_t l = vec[i].iov_len;
        if (total + l > want)
            l = want - total;
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = l;
        total += l;
    }
    ssize_t n = readv(s->fd, iov, nvec);
    if (n < 0) {
        evbuffer_commit_space(s->in, vec, 0);
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            goto out;
        s->err = errno;
        s->eof = true;
        update_read(s);
        call_event(s, GT_STREAM_ERROR | GT_STREAM_READING);
        goto out;
    }
    if (n == 0) {
        evbuffer_commit_space(s->in, vec, 0);
        s->eof = true;
        update_read(s);
        call_event(s, GT_STREAM_EOF | GT_STREAM_READING);
        goto out;
    }
    /* commit exactly n bytes across the vectors */
    size_t left = (size_t)n;
    for (int i = 0; i < nvec; i++) {
        size_t l = iov[i].iov_len < left ? iov[i].iov_len : left;
        vec[i].iov_len = l;
        left -= l;
    }
    evbuffer_commit_space(s->in, vec, nvec);
    /* Adapt the read size: grow while reads fill it, shrink when they use little. */
    if ((size_t)n == want && s->read_size < READ_MAX)
        s->read_size *= 2;
    else if ((size_t)n < want / 4 && s->read_size > READ_MIN)
        s->read_size /= 2;
    if (s->read_ms)
        arm_rtimer(s); /* every read restarts the read timeout */
    update_read(s);
    if (s->on_read)
        s->on_read(s, s->arg);
    if (!s->dead)
        update_read(s); /* the callback usually drained input: reading may resume */
out:
    if (--s->busy == 0 && s->dead)
        release(s);
}

static void on_rtimeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_stream *s = arg;
    s->busy++;
    /* as with bufferevents: a timed-out direction stops until re-enabled */
    s->want_read = false;
    update_read(s);
    call_event(s, GT_STREAM_TIMEOUT | GT_STREAM_READING);
    if (--s->busy == 0 && s->dead)
        release(s);
}

static void on_wtimeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_stream *s = arg;
    s->busy++;
    update_write(s, false);
    call_event(s, GT_STREAM_TIMEOUT | GT_STREAM_WRITING);
    if (--s->busy == 0 && s->dead)
        release(s);
}

static void on_trigger(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_stream *s = arg;
    s->busy++;
    if (!s->dead && s->on_read && evbuffer_get_length(s->in))
        s->on_read(s, s->arg);
    if (--s->busy == 0 && s->dead)
        release(s);
}

static gt_stream *make(struct event_base *base, int fd)
{
    gt_stream *s = gt_xcalloc(1, sizeof(*s));
    s->base = base;
    s->fd = fd;
    s->hwm = DEFAULT_HWM;
    s->read_size = READ_MIN;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    s->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, s);
    s->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, s);
    s->trig = evtimer_new(base, on_trigger, s);
    s->rtimer = evtimer_new(base, on_rtimeout, s);
    s->wtimer = evtimer_new(base, on_wtimeout, s);
    if (!s->in || !s->out || !s->rev || !s->wev || !s->trig || !s->rtimer || !s->wtimer) {
        release(s);
        return NULL;
    }
    return s;
}

gt_stream *gt_stream_new(struct event_base *base, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    gt_stream *s = make(base, fd);
    if (!s)
        close(fd);
    return s;
}

gt_stream *gt_stream_connect(struct event_base *base, const struct sockaddr *sa,
                             socklen_t len, int *err)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return NULL;
    }
    gt_stream *s = make(base, fd);
    if (!s) {
        close(fd);
        *err = ENOMEM;
        return NULL;
    }
    s->connecting = true;
    update_write(s, true);
    return s;
}

void gt_stream_free(gt_stream *s)
{
    if (!s)
        return;
    if (s->busy) {
        /* inside one of its callbacks: close now, free when the callback returns */
        s->dead = true;
        update_write(s, false);
        if (s->rev_added)
            event_del(s->rev);
        s->rev_added = false;
        event_del(s->trig);
        evtimer_del(s->rtimer);
        evtimer_del(s->wtimer);
        close(s->fd);
        s->fd = -1;
        return;
    }
    release(s);
}

void gt_stream_setcb(gt_stream *s, gt_stream_cb on_read, gt_stream_cb on_write,
                     gt_stream_event_cb on_event, void *arg)
{
    s->on_read = on_read;
    s->on_write = on_write;
    s->on_event = on_event;
    s->arg = arg;
}

struct evbuffer *gt_stream_input(gt_stream *s)
{
    return s->in;
}

struct evbuffer *gt_stream_output(gt_stream *s)
{
    return s->out;
}

int gt_stream_fd(const gt_stream *s)
{
    return s->fd;
}

bool gt_stream_at_eof(const gt_stream *s)
{
    return s->eof;
}

int gt_stream_error(const gt_stream *s)
{
    return s->err;
}

void gt_stream_enable_read(gt_stream *s)
{
    s->want_read = true;
    update_read(s);
}

void gt_stream_disable_read(gt_stream *s)
{
    s->want_read = false;
    update_read(s);
}

bool gt_stream_reading(const gt_stream *s)
{
    return s->want_read;
}

void gt_stream_set_read_hwm(gt_stream *s, size_t hwm)
{
    s->hwm = hwm ? hwm : DEFAULT_HWM;
    update_read(s);
}

void gt_stream_resume_read(gt_stream *s)
{
    update_read(s);
}

void gt_stream_flush(gt_stream *s)
{
    if (s->connecting || s->dead || s->fd < 0)
        return;
    if (s->wev_added)
        return; /* the socket is full: the write event will send it */
    write_some(s, false);
}

void gt_stream_set_write_lowat(gt_stream *s, size_t lowat)
{
    s->lowat = lowat;
}

void gt_stream_shutdown_write(gt_stream *s)
{
    if (evbuffer_get_length(s->out) == 0 && !s->connecting)
        do_shutdown(s);
    else
        s->shut_pending = true;
}

void gt_stream_set_timeouts(gt_stream *s, unsigned read_ms, unsigned write_ms)
{
    if (read_ms != s->read_ms) {
        s->read_ms = read_ms;
        if (s->rev_added)
            arm_rtimer(s);
    }
    if (write_ms != s->write_ms) {
        s->write_ms = write_ms;
        arm_wtimer(s);
    }
}

void gt_stream_trigger_read(gt_stream *s)
{
    struct timeval zero = {0, 0};
    evtimer_add(s->trig, &zero);
}

int gt_stream_start_tls(gt_stream *s, SSL *ssl, bool server)
{
    pthread_once(&bio_once, bio_method_init);
    BIO *b = bio_method ? BIO_new(bio_method) : NULL;
    if (!b || !(s->tlsev = evtimer_new(s->base, on_tls_event, s)) ||
        !(s->hsbuf = evbuffer_new())) {
        BIO_free(b);
        SSL_free(ssl);
        return -1;
    }
    BIO_set_data(b, s);
    SSL_set_bio(ssl, b, b);
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    s->ssl = ssl;
    if (evbuffer_get_length(s->in)) {
        s->pre = evbuffer_new();
        evbuffer_add_buffer(s->pre, s->in);
    }
    s->tls_hs = true;
    s->eof = false;
    /* from the loop, never inside the caller's stack */
    struct timeval zero = {0, 0};
    evtimer_add(s->tlsev, &zero);
    return 0;
}

SSL *gt_stream_ssl(const gt_stream *s)
{
    return s->ssl;
}

void gt_stream_trim(gt_stream *s)
{
    /* Idle connections give their TLS record buffers (~34 KiB) back: releasing them after
     * every record (SSL_MODE_RELEASE_BUFFERS) costs a quarter of the handshake rate, and
     * most of a browser's connections sit idle most of the time. OpenSSL refuses while a
     * buffer holds data, and allocates again on the next record. */
    if (s->ssl && !s->tls_hs && !SSL_has_pending(s->ssl) && !evbuffer_get_length(s->hsbuf))
        SSL_free_buffers(s->ssl);
}
