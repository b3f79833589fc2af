/* Unit tests for src/net/stream.c over socketpairs and a real event loop: reads and writes,
 * read high watermark and resume, write-through with the write callback, EOF, half-close,
 * read timeout, and freeing a stream from inside its own callback. Each test ends by proving
 * the loop has nothing left pending. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "gretel/stream.h"
#include "gretel/util.h"

typedef struct {
    struct event_base *base;
    gt_stream *s;
    int peer;
    unsigned reads, writes, events;
    int last_event;
    size_t bytes;
    bool free_in_read;
    bool stop_at_eof;
} ctx;

static void on_read(gt_stream *s, void *arg)
{
    ctx *c = arg;
    c->reads++;
    struct evbuffer *in = gt_stream_input(s);
    c->bytes += evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (c->free_in_read) {
        gt_stream_free(s);
        c->s = NULL;
        event_base_loopbreak(c->base);
    }
}

static void on_write(gt_stream *s, void *arg)
{
    (void)s;
    ctx *c = arg;
    c->writes++;
}

static void on_event(gt_stream *s, int what, void *arg)
{
    (void)s;
    ctx *c = arg;
    c->events++;
    c->last_event = what;
    event_base_loopbreak(c->base);
}

static void setup_pair(ctx *c)
{
    memset(c, 0, sizeof(*c));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    c->base = event_base_new();
    c->s = gt_stream_new(c->base, sv[0]);
    assert_non_null(c->s);
    c->peer = sv[1];
    gt_stream_setcb(c->s, on_read, on_write, on_event, c);
}

static void teardown_pair(ctx *c)
{
    gt_stream_free(c->s);
    close(c->peer);
    /* nothing may be left registered once the stream is gone */
    assert_int_equal(event_base_get_num_events(c->base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(c->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

/* Runs the loop until a callback breaks it or ms pass; leaves no timer of its own behind. */
static void run_for(ctx *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    struct event *t = evtimer_new(c->base, on_deadline, c->base);
    evtimer_add(t, &tv);
    event_base_dispatch(c->base);
    event_free(t);
}

static void test_read_and_eof(void **st)
{
    (void)st;
    ctx c;
    setup_pair(&c);
    gt_stream_enable_read(c.s);
    char buf[100000];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(write(c.peer, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    shutdown(c.peer, SHUT_WR);
    run_for(&c, 2000);
    assert_int_equal(c.bytes, sizeof(buf));
    assert_true(c.reads >= 1 && c.reads < 25); /* large reads, not 4 KiB ones */
    assert_int_equal(c.events, 1);
    assert_true(c.last_event & GT_STREAM_EOF);
    teardown_pair(&c);
}

static void on_read_keep(gt_stream *s, void *arg)
{
    ctx *c = arg;
    c->reads++;
    c->bytes = evbuffer_get_length(gt_stream_input(s));
}

static void test_read_hwm_and_resume(void **st)
{
    (void)st;
    ctx c;
    setup_pair(&c);
    gt_stream_setcb(c.s, on_read_keep, NULL, on_event, &c);
    gt_stream_set_read_hwm(c.s, 20000);
    gt_stream_enable_read(c.s);
    char buf[60000];
    memset(buf, 'y', sizeof(buf));
    assert_int_equal(write(c.peer, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    run_for(&c, 200);
    assert_int_equal(c.bytes, 20000); /* stopped at the watermark */
    evbuffer_drain(gt_stream_input(c.s), 20000);
    gt_stream_resume_read(c.s);
    run_for(&c, 200);
    assert_int_equal(c.bytes, 20000);
    teardown_pair(&c);
}

static void test_write_through_and_backlog(void **st)
{
    (void)st;
    ctx c;
    setup_pair(&c);
    evbuffer_add(gt_stream_output(c.s), "hello", 5);
    gt_stream_flush(c.s);
    char got[16];
    assert_int_equal(read(c.peer, got, sizeof(got)), 5); /* written at once, no loop run */
    assert_int_equal(c.writes, 0);
    /* more than the socket buffer: the rest goes out from the write event */
    size_t big = 4 << 20;
    char *p = malloc(big);
    memset(p, 'z', big);
    evbuffer_add(gt_stream_output(c.s), p, big);
    free(p);
    gt_stream_flush(c.s);
    assert_true(evbuffer_get_length(gt_stream_output(c.s)) > 0);
    size_t total = 0;
    char sink[65536];
    while (total < big) {
        run_for(&c, 10);
        ssize_t n;
        while ((n = recv(c.peer, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
            total += (size_t)n;
    }
    assert_int_equal(total, big);
    assert_true(c.writes >= 1);
    assert_int_equal(evbuffer_get_length(gt_stream_output(c.s)), 0);
    teardown_pair(&c);
}

static void test_shutdown_after_drain(void **st)
{
    (void)st;
    ctx c;
    setup_pair(&c);
    evbuffer_add(gt_stream_output(c.s), "bye", 3);
    gt_stream_flush(c.s);
    gt_stream_shutdown_write(c.s);
    char got[8];
    assert_int_equal(read(c.peer, got, sizeof(got)), 3);
    assert_int_equal(read(c.peer, got, sizeof(got)), 0); /* FIN */
    teardown_pair(&c);
}

static void test_read_timeout(void **st)
{
    (void)st;
    ctx c;
    setup_pair(&c);
    gt_stream_set_timeouts(c.s, 100, 0);
    gt_stream_enable_read(c.s);
    run_for(&c, 1000);
    assert_int_equal(c.events, 1);
    assert_true(c.last_event & GT_STREAM_TIMEOUT);
    assert_true(c.last_event & GT_STREAM_READING);
    assert_false(gt_stream_reading(c.s));
    teardown_pair(&c);
}

static void test_free_inside_callback(void **st)
{
    (void)st;
    ctx c;
    setup_pair(&c);
    c.free_in_read = true;
    gt_stream_enable_read(c.s);
    assert_int_equal(write(c.peer, "abc", 3), 3);
    run_for(&c, 1000);
    assert_null(c.s);
    assert_int_equal(c.bytes, 3);
    teardown_pair(&c); /* ASan proves the deferred release happened once */
}

static void on_connect_event(gt_stream *s, int what, void *arg)
{
    (void)s;
    ctx *c = arg;
    c->last_event = what;
    event_base_loopbreak(c->base);
}

static void test_connect_refused(void **st)
{
    (void)st;
    struct event_base *base = event_base_new();
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, len), 0);
    getsockname(l, (struct sockaddr *)&sa, &len);
    close(l); /* nothing listens there now */
    int err = 0;
    gt_stream *s = gt_stream_connect(base, (struct sockaddr *)&sa, len, &err);
    ctx c = {.base = base};
    if (s) {
        gt_stream_setcb(s, NULL, NULL, on_connect_event, &c);
        event_base_dispatch(base);
        assert_true(c.last_event & GT_STREAM_ERROR);
        assert_int_equal(gt_stream_error(s), ECONNREFUSED);
        gt_stream_free(s);
    } else {
        assert_int_equal(err, ECONNREFUSED);
    }
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_and_eof),
        cmocka_unit_test(test_read_hwm_and_resume),
        cmocka_unit_test(test_write_through_and_backlog),
        cmocka_unit_test(test_shutdown_after_drain),
        cmocka_unit_test(test_read_timeout),
        cmocka_unit_test(test_free_inside_callback),
        cmocka_unit_test(test_connect_refused),
    };
    return cmocka_run_group_tests_name("net_stream", tests, NULL, NULL);
}
