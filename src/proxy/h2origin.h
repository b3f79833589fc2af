/* HTTP/2 sessions towards origins (src/proxy/h2origin.c), used by src/proxy/h2.c. */
#ifndef GT_PROXY_H2ORIGIN_H
#define GT_PROXY_H2ORIGIN_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>

#include "gretel/net.h"

typedef struct gt_h2o_req gt_h2o_req;

/* What a request hears back. After fail, fallback or closed the handle is gone. */
typedef struct {
    /* the response head (fields lower-case, connection-specific ones absent, Alt-Svc
     * removed); end: no body follows */
    void (*head)(void *arg, int status, const nghttp2_nv *nv, size_t n, bool end);
    void (*data)(void *arg, const uint8_t *p, size_t n);
    void (*trailers)(void *arg, const nghttp2_nv *nv, size_t n);
    void (*end)(void *arg); /* the response is complete */
    void (*closed)(void *arg);                            /* the stream ended cleanly */
    void (*fail)(void *arg, int status, const char *why); /* 502/504 before a head */
    void (*fallback)(void *arg); /* the origin speaks http/1.1: use that path */
    /* request body: copies up to len bytes, sets *eof after the last; 0 without eof means
     * "nothing yet" (call gt_h2o_resume_body when there is) */
    ssize_t (*body)(void *arg, uint8_t *buf, size_t len, bool *eof);
    /* an interim response (100 Continue, 103 Early Hints) before the head */
    void (*interim)(void *arg, int status, const nghttp2_nv *nv, size_t n);
} gt_h2o_cbs;

/* Sends a request to the origin's shared HTTP/2 session (connecting it, ALPN h2, if there
 * is none). NULL when the origin is known to speak only http/1.1, or the request could not
 * be submitted: then the caller uses the HTTP/1.1 path. nv is copied. */
gt_h2o_req *gt_h2o_submit(gt_worker *w, const char *key, gt_slice host, uint16_t port,
                          const char *sni, bool deny_loopback, const nghttp2_nv *nv, size_t nnv,
                          bool has_body, const gt_h2o_cbs *cbs, void *arg);
void gt_h2o_resume_body(gt_h2o_req *r);
/* The client side took n bytes of the response: the origin may send as much again. */
void gt_h2o_consumed(gt_h2o_req *r, size_t n);
/* The client is gone: resets the origin stream and frees the handle (no callback). */
void gt_h2o_cancel(gt_h2o_req *r);
bool gt_h2o_known_h1(gt_worker *w, const char *key);
/* A verified connection that negotiated h2 becomes the origin's shared session (or is
 * closed when there is one already). */
void gt_h2o_adopt(gt_worker *w, const char *key, gt_upstream *up, gt_slice host, uint16_t port,
                  const char *sni, bool deny_loopback);
/* The origin answered ALPN with http/1.1: later requests go straight to that path. */
void gt_h2o_mark_h1(gt_worker *w, const char *key);
/* An HTTP/2 session to the origin is up (it was verified when it connected). */
bool gt_h2o_ready(gt_worker *w, const char *key, bool deny_loopback);
void gt_h2o_destroy_all(gt_worker *w);

#endif
