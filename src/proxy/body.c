/* Message body relay shared by both directions of the proxy: one loop for Content-Length,
 * chunked and close-delimited bodies. Moves evbuffer chains (no payload copies); only chunk
 * framing bytes are looked at. Owns nothing; never does I/O. */
#include <nghttp2/nghttp2.h>
#include <event2/buffer.h>
#include <string.h>

#include "gretel/proxy.h"
#include "gretel/util.h"

void gt_body_relay_init(gt_body_relay *b, const gt_http1_body *body, bool dechunk)
{
    memset(b, 0, sizeof(*b));
    b->framing = body->framing;
    b->left = body->length;
    b->dechunk = dechunk && body->framing == GT_BODY_CHUNKED;
    gt_http1_chunked_init(&b->chunk);
    b->done = body->framing == GT_BODY_NONE;
}

int gt_body_relay_move(gt_body_relay *b, struct evbuffer *in, struct evbuffer *out,
                       size_t out_cap, uint64_t *moved, gt_http1_error *err)
{
    while (!b->done && evbuffer_get_length(out) < out_cap) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        /* never more than the room left under the cap: bounds the receiver's buffer */
        size_t room = out_cap - evbuffer_get_length(out);
        if (avail > room)
            avail = room;
        if (b->framing == GT_BODY_LENGTH) {
            size_t n = avail < b->left ? avail : (size_t)b->left;
            evbuffer_remove_buffer(in, out, n);
            *moved += n;
            b->left -= n;
            b->done = b->left == 0;
        } else if (b->framing == GT_BODY_EOF) {
            evbuffer_remove_buffer(in, out, avail);
            *moved += avail;
        } else if (b->chunk.data_left) {
            size_t n = avail < b->chunk.data_left ? avail : (size_t)b->chunk.data_left;
            evbuffer_remove_buffer(in, out, n);
            *moved += n;
            gt_http1_chunked_consumed(&b->chunk, n);
        } else {
            /* framing bytes: feed the first contiguous segment to the decoder */
            struct evbuffer_iovec v;
            evbuffer_peek(in, -1, NULL, &v, 1);
            size_t used = 0;
            size_t seg = v.iov_len < avail ? v.iov_len : avail;
            bool in_trailers = gt_http1_chunked_in_trailers(&b->chunk);
            int r = gt_http1_chunked_feed(&b->chunk, v.iov_base, seg, &used, err);
            if (r == GT_HTTP1_ERROR)
                return GT_HTTP1_ERROR;
            if (b->dechunk) {
                /* the trailer section is kept aside for a protocol that carries it apart
                 * (HTTP/2 HEADERS after the DATA) */
                size_t from = in_trailers                                  ? 0
                              : gt_http1_chunked_in_trailers(&b->chunk) ? b->chunk.trailer_off
                                                                        : used;
                if (b->trailers && from < used)
                    evbuffer_add(b->trailers, (const char *)v.iov_base + from, used - from);
                evbuffer_drain(in, used);
            } else {
                evbuffer_remove_buffer(in, out, used);
                *moved += used;
            }
            b->done = r == GT_CHUNKED_DONE;
        }
    }
    return 0;
}
