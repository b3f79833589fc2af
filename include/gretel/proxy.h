/* The proxy layer: what gretel does with a parsed request. Builds the heads it forwards
 * (hop-by-hop fields removed, nothing added about the user) and the responses it answers
 * locally. Writes into libevent evbuffers; opens no sockets itself. */
#ifndef GT_PROXY_H
#define GT_PROXY_H

#include <stdbool.h>
#include <stddef.h>

#include "gretel/http1.h"

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
 * X-Forwarded-For. */
void gt_proxy_request_head(struct evbuffer *out, const gt_http1_request *req,
                           const gt_http1_uri *uri, bool absolute_form,
                           const gt_http1_body *body);

/* Appends the head sent to the client for an origin's response: HTTP/1.1 status line, the
 * origin's fields minus hop-by-hop ones and those Connection lists, framing to match how
 * gretel relays the body (`dechunk`: body relayed without chunking to an HTTP/1.0 client),
 * and Connection: close / keep-alive as decided. Interim (1xx) responses go through here
 * too. */
void gt_proxy_response_head(struct evbuffer *out, const gt_http1_response *res,
                            const gt_http1_body *body, bool close, bool client_is_10,
                            bool dechunk);

#endif
