/* gt_stream: non-blocking TCP I/O over libevent events and evbuffers (see the header for
 * why not bufferevent). Owns the socket and both buffers. One worker thread only. The
 * deferred free (busy/dead) lets owners destroy a stream from inside its callbacks. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gretel/stream.h"
#include "gretel/util.h"

#define READ_MIN (16 * 1024)
#define READ_MAX (256 * 1024)
#define DEFAULT_HWM (256 * 1024)

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
    bool want = s->want_read && !s->eof && !s->connecting && !s->dead &&
                evbuffer_get_length(s->in) < s->hwm;
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
        shutdown(s->fd, SHUT_WR);
        s->shut_done = true;
    }
}

/* Writes what the socket takes. Returns false after an error: reported to the owner when
 * `report`, else left for the write event to find again, so that gt_stream_flush never
 * calls back into its caller (who may be in the middle of changing state). */
static bool write_some(gt_stream *s, bool report)
{
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
