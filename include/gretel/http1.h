/* HTTP/1.x message parsing per RFC 9110/9112, strict: bytes in, slices out, no sockets, no
 * allocation. A parse answers done (head length), need more, or an error with the status a
 * proxy should send (400, 431, 501, 505) and the offset of the offending byte. */
#ifndef GT_HTTP1_H
#define GT_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gretel/slice.h"

typedef struct {
    gt_slice name, value; /* value without surrounding whitespace */
} gt_http1_header;

/* Parse errors (negative returns). */
enum {
    GT_HTTP1_INCOMPLETE = -1, /* need more bytes */
    GT_HTTP1_ERROR = -2,      /* see gt_http1_error */
};

typedef struct {
    int status;         /* 400, 431, 501, 505 for requests; 502 for bad responses */
    const char *reason; /* a static one-line explanation */
    size_t offset;      /* byte offset in the input where the problem was found */
} gt_http1_error;

typedef struct {
    gt_slice method, target;
    int minor_version; /* 0 or 1 */
    gt_http1_header *headers;
    size_t num_headers; /* in: capacity of headers[]; out: how many were parsed */
} gt_http1_request;

typedef struct {
    int minor_version;
    int status;
    gt_slice reason;
    gt_http1_header *headers;
    size_t num_headers; /* in: capacity; out: count */
} gt_http1_response;

/* Parses a request head (request line, fields, empty line) at the start of buf. Leading
 * empty lines are skipped (RFC 9112 §2.2). Returns the head's length including the final
 * CRLF, GT_HTTP1_INCOMPLETE, or GT_HTTP1_ERROR with *err filled. Slices point into buf.
 * More fields than the capacity is an error with status 431. */
int gt_http1_parse_request(const char *buf, size_t len, gt_http1_request *req,
                           gt_http1_error *err);

/* Same for a response head; errors carry status 502. */
int gt_http1_parse_response(const char *buf, size_t len, gt_http1_response *res,
                            gt_http1_error *err);

/* How a message body is delimited. */
enum gt_http1_framing {
    GT_BODY_NONE,    /* no body */
    GT_BODY_LENGTH,  /* Content-Length bytes */
    GT_BODY_CHUNKED, /* chunked transfer coding */
    GT_BODY_EOF,     /* response read until the connection closes */
};

typedef struct {
    enum gt_http1_framing framing;
    uint64_t length;         /* for GT_BODY_LENGTH */
    bool had_cl_and_te;      /* response sent both (only possible for responses) */
    bool conn_close;         /* Connection: close present */
    bool conn_keep_alive;    /* Connection: keep-alive present */
    bool expect_continue;    /* request: Expect: 100-continue */
} gt_http1_body;

/* Decides a request's body framing (RFC 9112 §6). Rejects (GT_HTTP1_ERROR, status 400/501):
 * Content-Length together with Transfer-Encoding, differing or malformed Content-Length,
 * a Transfer-Encoding other than exactly `chunked`, any Transfer-Encoding in HTTP/1.0. */
int gt_http1_request_body(const gt_http1_request *req, gt_http1_body *body, gt_http1_error *err);

/* Decides a response's framing given the request method and status (HEAD, 1xx, 204 and
 * 304 have none). With both Transfer-Encoding and Content-Length, chunked wins and
 * had_cl_and_te is set so that the caller drops Content-Length and will not reuse the
 * connection (RFC 9112 §6.3). */
int gt_http1_response_body(const gt_http1_response *res, bool request_was_head,
                           gt_http1_body *body, gt_http1_error *err);

/* True for fields that are hop-by-hop for a proxy: Connection, Keep-Alive, Proxy-Connection,
 * Proxy-Authorization, Proxy-Authenticate, TE, Trailer, Transfer-Encoding, Upgrade. */
bool gt_http1_is_hop_by_hop(gt_slice name);

/* True when `name` is listed as a token in any Connection field among headers. */
bool gt_http1_connection_lists(const gt_http1_header *h, size_t n, gt_slice name);

/* Chunked transfer-coding decoder (RFC 9112 §7.1): a byte-incremental state machine, so
 * input may arrive split anywhere. Chunk data is not copied: the decoder stops in front of
 * it and the caller moves `data_left` bytes itself, then calls gt_http1_chunked_consumed. */
typedef struct {
    int state;
    uint64_t data_left;  /* bytes of chunk data the caller must pass through next; non-zero
                            only between GT_CHUNKED_DATA and the end of that data */
    uint64_t size;       /* chunk size being read */
    unsigned digits;
    size_t trailer_bytes;
    size_t trailer_max;  /* cap for the trailer section (0: 16 KiB) */
    size_t trailer_off;  /* where the trailer section began in the last feed's input */
} gt_http1_chunked;

enum {
    GT_CHUNKED_MORE = 0, /* consumed everything given; feed more */
    GT_CHUNKED_DATA = 1, /* stopped before chunk data: data_left bytes follow */
    GT_CHUNKED_DONE = 2, /* the last chunk and trailers are complete */
};

void gt_http1_chunked_init(gt_http1_chunked *c);
/* Feeds framing bytes. Sets *used to the bytes consumed. Returns GT_CHUNKED_MORE, _DATA,
 * _DONE or GT_HTTP1_ERROR (err->reason says why; offset is relative to p). Must not be
 * called while data_left > 0. */
int gt_http1_chunked_feed(gt_http1_chunked *c, const char *p, size_t len, size_t *used,
                          gt_http1_error *err);
/* Records that n (<= data_left) bytes of chunk data were passed through. */
void gt_http1_chunked_consumed(gt_http1_chunked *c, uint64_t n);
/* True once the last chunk's size line was read: what follows is the trailer section
 * (fields, then the final CRLF). When it began inside the last feed, trailer_off says
 * where in that input. */
bool gt_http1_chunked_in_trailers(const gt_http1_chunked *c);

/* Splits an absolute-form target `http://host[:port]/path?query` (RFC 9112 §3.2.2).
 * host is without brackets for IPv6 literals; path is "/" when empty. Returns 0 or
 * GT_HTTP1_ERROR with err (status 400). Accepts the schemes http and https (is_https set). */
typedef struct {
    gt_slice scheme, host, path; /* path includes the query */
    uint16_t port;
    bool is_https, host_is_ipv6;
} gt_http1_uri;
int gt_http1_parse_absolute(gt_slice target, gt_http1_uri *uri, gt_http1_error *err);

/* Splits a CONNECT target `host:port` (authority-form, RFC 9112 §3.2.3). */
int gt_http1_parse_authority(gt_slice target, gt_http1_uri *uri, gt_http1_error *err);
/* A token (RFC 9110 §5.6.2): what a field name must be. */
bool gt_http1_is_token(gt_slice s);
/* A Host field (or :authority): host[:port] and nothing else (no path, userinfo, query);
 * the port defaults to def_port. */
int gt_http1_parse_host_field(gt_slice t, uint16_t def_port, gt_http1_uri *uri,
                              gt_http1_error *err);

/* Checks a host name or IP literal as found in a URI: letters, digits, '-', '.', '_'
 * (names) or an IPv4/IPv6 literal. */
bool gt_http1_host_valid(gt_slice host, bool ipv6);

#endif
