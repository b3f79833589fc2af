/* gt_stream: a non-blocking TCP socket with an input and an output evbuffer, owned by one
 * worker thread. gretel's replacement for libevent's bufferevent_socket, because
 * libevent 2.1 reads at most 4096 bytes per read(2) (EVBUFFER_MAX_READ) plus an
 * ioctl(FIONREAD) each time: a 64 KiB response cost 16 reads. A stream reads adaptively
 * (16 KiB up to 256 KiB per call), writes as soon as output is queued (no wait for the next
 * epoll round), and only registers for writability when the socket is full.
 *
 * Callbacks may free the stream they are called for; the memory is released when the
 * callback returns. Nothing here logs or knows HTTP. */
#ifndef GT_STREAM_H
#define GT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct evbuffer;

typedef struct gt_stream gt_stream;
typedef struct ssl_st SSL;

/* Event bits handed to the event callback. */
enum {
    GT_STREAM_READING = 0x01,
    GT_STREAM_WRITING = 0x02,
    GT_STREAM_EOF = 0x10,
    GT_STREAM_ERROR = 0x20,    /* errno-style code in gt_stream_error() */
    GT_STREAM_TIMEOUT = 0x40,
    GT_STREAM_CONNECTED = 0x80,
    GT_STREAM_TLS_DONE = 0x100, /* the TLS handshake completed */
    GT_STREAM_TLS = 0x200,      /* with GT_STREAM_ERROR: the failure was in TLS */
};

typedef void (*gt_stream_cb)(gt_stream *s, void *arg);
typedef void (*gt_stream_event_cb)(gt_stream *s, int what, void *arg);

/* Wraps an accepted, connected socket (made non-blocking here). The stream owns fd.
 * Returns NULL (and closes fd) only if libevent cannot create its events. */
gt_stream *gt_stream_new(struct event_base *base, int fd);

/* Starts a non-blocking connect; the event callback later gets GT_STREAM_CONNECTED or
 * GT_STREAM_ERROR (gt_stream_error() tells why). Returns NULL with *err set (errno) when the
 * socket cannot even be created or the connect fails at once. */
gt_stream *gt_stream_connect(struct event_base *base, const struct sockaddr *sa,
                             socklen_t len, int *err);

/* Closes the socket and releases the stream (later, if inside its own callback).
 * NULL-safe. Unsent output is dropped. */
void gt_stream_free(gt_stream *s);

void gt_stream_setcb(gt_stream *s, gt_stream_cb on_read, gt_stream_cb on_write,
                     gt_stream_event_cb on_event, void *arg);
struct evbuffer *gt_stream_input(gt_stream *s);
struct evbuffer *gt_stream_output(gt_stream *s);
int gt_stream_fd(const gt_stream *s);
/* True once the peer's EOF was read (no further read events will come). */
bool gt_stream_at_eof(const gt_stream *s);
int gt_stream_error(const gt_stream *s);

/* Reading: enabled streams read until the input holds `hwm` bytes (0: 256 KiB), then pause
 * until the owner drains input and calls gt_stream_resume_read. */
void gt_stream_enable_read(gt_stream *s);
void gt_stream_disable_read(gt_stream *s);
bool gt_stream_reading(const gt_stream *s);
void gt_stream_set_read_hwm(gt_stream *s, size_t hwm);
/* Re-checks the input against the high watermark after the owner consumed from it. */
void gt_stream_resume_read(gt_stream *s);

/* Writing: queue into gt_stream_output() and call gt_stream_flush(); what the socket does
 * not take now goes out when it becomes writable. The write callback runs whenever a write
 * leaves at most `lowat` bytes queued (default 0: when everything is sent). */
void gt_stream_flush(gt_stream *s);
void gt_stream_set_write_lowat(gt_stream *s, size_t lowat);
/* Sends FIN once the output is empty (now, or after it drains). */
void gt_stream_shutdown_write(gt_stream *s);

/* Timeouts in milliseconds (0: none). The read timeout runs while reading is enabled and
 * restarts on every read; the write timeout runs while output is waiting for the socket
 * and restarts on every write. Either fires GT_STREAM_TIMEOUT | READING/WRITING once. */
void gt_stream_set_timeouts(gt_stream *s, unsigned read_ms, unsigned write_ms);

/* Queues the callback for the input that is already buffered, from the event loop (not
 * from within this call): used after a stream changes hands with bytes already read. */
void gt_stream_trigger_read(gt_stream *s);

/* Starts TLS on a connected stream (server: answering a client; else towards an origin).
 * Takes ownership of ssl, even on failure (-1). Input already buffered is ciphertext read
 * ahead (a ClientHello) and goes to TLS first. The handshake runs from the loop and while
 * it does, reading is on whatever the owner asked; the event callback then gets
 * GT_STREAM_TLS_DONE, or GT_STREAM_ERROR | GT_STREAM_TLS with OpenSSL's error queue intact
 * for the duration of the callback. After that the buffers carry plaintext. */
int gt_stream_start_tls(gt_stream *s, SSL *ssl, bool server);
SSL *gt_stream_ssl(const gt_stream *s); /* NULL for plain streams */
/* Frees a TLS stream's record buffers while it is idle (no-op for plain streams). */
void gt_stream_trim(gt_stream *s);

#endif
