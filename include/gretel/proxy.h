/* The proxy layer: what gretel does with a parsed request. Builds the heads it forwards
 * (hop-by-hop fields removed, nothing added about the user) and the responses it answers
 * locally. Writes into libevent evbuffers; opens no sockets itself. */
#ifndef GT_PROXY_H
#define GT_PROXY_H

#include <stdbool.h>
#include <stddef.h>

#include <nghttp2/nghttp2.h>

#include "gretel/http1.h"
#include "gretel/rules.h"

struct evbuffer;

/* The standard reason phrase for a status ("Bad Gateway"), or "Unknown". */
const char *gt_http_reason(int status);

/* Appends a complete local response: status line, Content-Type, Content-Length,
 * Cache-Control: no-store, `extra` (pre-formatted "Name: value\r\n" lines or NULL),
 * Connection: close when `close`, and the body unless `head_only`. */
void gt_proxy_local_response(struct evbuffer *out, int status, const char *content_type,
                             const char *body, size_t body_len, bool head_only, bool close,
                             const char *extra);

/* Appends a plain-text error response whose body is "gretel: STATUS REASON: why\n". */
void gt_proxy_error_response(struct evbuffer *out, int status, const char *why, bool head_only,
                             bool close);

/* Appends the head gretel sends upstream for a parsed request: the request line in
 * origin-form (or absolute-form when `absolute_form`, for a parent proxy) as HTTP/1.1, Host
 * from the target URI, every field except Host, the hop-by-hop ones and those the
 * Connection field lists, then the framing field matching `body`. Adds no Via and no
 * X-Forwarded-For, and drops any X-Gretel. With a decision d (may be NULL), its rewrites
 * apply: the new path, removed/set fields, removed cookies, a Referer trimmed to its
 * origin. */
void gt_proxy_request_head(struct evbuffer *out, const gt_http1_request *req,
                           const gt_http1_uri *uri, bool absolute_form,
                           const gt_http1_body *body, const gt_decision *d, bool websocket);
/* A WebSocket opening handshake (RFC 6455 §4.1: GET, HTTP/1.1, Connection: upgrade,
 * Upgrade: websocket): the one protocol upgrade gretel relays (h2c is not). */
bool gt_proxy_is_websocket_upgrade(const gt_http1_request *req);
/* The origin's 101 for a WebSocket upgrade, as the client gets it. */
void gt_proxy_switching_head(struct evbuffer *out, const gt_http1_response *res);

/* Appends a locally answered blocked or redirected request's response: the resource's
 * status, type and body, Cache-Control: no-store, and `X-Gretel: <xgretel>`. */
void gt_proxy_block_response(struct evbuffer *out, const gt_resource *res, const char *xgretel,
                             bool head_only, bool close);

/* Appends the head sent to the client for an origin's response: HTTP/1.1 status line, the
 * origin's fields minus hop-by-hop ones and those Connection lists, framing to match how
 * gretel relays the body (`dechunk`: body relayed without chunking to an HTTP/1.0 client),
 * and Connection: close / keep-alive as decided. Interim (1xx) responses go through here
 * too. `intercepted` (a response inside TLS interception) drops Alt-Svc, which would send
 * the browser to QUIC, around the proxy. */
void gt_proxy_response_head(struct evbuffer *out, const gt_http1_response *res,
                            const gt_http1_body *body, bool close, bool client_is_10,
                            bool dechunk, bool intercepted);

/* Relays one message body between evbuffers, whatever its framing, without copying the
 * payload: Content-Length bodies are counted, chunked bodies pass through the decoder
 * (framing validated, forwarded byte for byte, or dropped with `dechunk` for an HTTP/1.0
 * receiver), close-delimited bodies move until the caller sees EOF. */
typedef struct {
    enum gt_http1_framing framing;
    uint64_t left;         /* GT_BODY_LENGTH: bytes still to come */
    gt_http1_chunked chunk;
    bool dechunk;
    bool done;             /* the whole body has been moved */
    /* when dechunking: where the trailer section's bytes go (fields and the final CRLF),
     * or NULL to drop them */
    struct evbuffer *trailers;
} gt_body_relay;

void gt_body_relay_init(gt_body_relay *b, const gt_http1_body *body, bool dechunk);

/* Moves body bytes from `in` to `out` until the body is complete, `in` is empty, or `out`
 * holds at least `out_cap` bytes. Bytes after the end of the body stay in `in` (the next
 * pipelined message). *moved is increased by the bytes appended to out. Returns 0, or
 * GT_HTTP1_ERROR with err filled when chunked framing is invalid (nothing after the bad
 * byte is moved). */
int gt_body_relay_move(gt_body_relay *b, struct evbuffer *in, struct evbuffer *out,
                       size_t out_cap, uint64_t *moved, gt_http1_error *err);

/* The HTTP/2 fields for a request whose HTTP/1.1 head gretel built (head[0..len), rules'
 * rewrites already in it): :method, :scheme https, :authority from Host, :path, then the
 * other fields with lower-case names (copied into lower[]), minus Host, Transfer-Encoding
 * and hop-by-hop fields (RFC 9113 §8.2.2). Values point into head. Returns the count, or 0
 * when the head does not parse or cap/lower_cap are too small. */
size_t gt_proxy_h2_request_fields(const char *head, size_t len, nghttp2_nv *nv, size_t cap,
                                  char *lower, size_t lower_cap);

/* --- a page's product ids as its response passes (src/products/sniff.c) --- */
struct gt_sniff;
struct gt_shared;
/* The sniffer for a response with these fields (content-type, content-encoding), or NULL
 * when it cannot read it. chunked: the bytes it will see keep chunked framing. */
struct gt_sniff *gt_proxy_sniff_start(const gt_http1_header *h, size_t n, bool chunked);
/* Feeds the bytes appended to b from offset `from` on (the relay's output). */
void gt_proxy_sniff_tail(struct gt_sniff *s, struct evbuffer *b, size_t from);
/* Ends it: when the response ended whole, what the page at url declared goes to the
 * control page (shop ids scoped to host's registrable domain). Frees it. */
void gt_proxy_sniff_finish(struct gt_shared *sh, struct gt_sniff *s, const char *url,
                           gt_slice host, bool complete);

#endif
