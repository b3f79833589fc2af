/* libFuzzer entry for the HTTP/1 parsers: request and response heads, framing decisions,
 * targets, and the chunked decoder fed in pieces. Invariants asserted: a parse never reports
 * more than it was given, every slice lies inside the input, incomplete stays incomplete on
 * every prefix of a complete head, and the chunked decoder gives the same answer however the
 * input is split. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gretel/http1.h"
#include "gretel/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void in_bounds(gt_slice s, const char *buf, size_t len)
{
    if (s.len)
        assert(s.p >= buf && s.p + s.len <= buf + len);
}

static int chunked_run(const char *p, size_t len, size_t step, size_t *consumed, uint64_t *data)
{
    gt_http1_chunked c;
    gt_http1_chunked_init(&c);
    size_t pos = 0;
    uint64_t d = 0;
    int r = GT_CHUNKED_MORE;
    while (pos < len) {
        size_t avail = len - pos < step ? len - pos : step;
        if (c.data_left) {
            size_t n = avail < c.data_left ? avail : (size_t)c.data_left;
            pos += n;
            d += n;
            gt_http1_chunked_consumed(&c, n);
            r = GT_CHUNKED_MORE;
            continue;
        }
        size_t used = 0;
        gt_http1_error err;
        r = gt_http1_chunked_feed(&c, p + pos, avail, &used, &err);
        assert(used <= avail);
        pos += used;
        if (r == GT_HTTP1_ERROR || r == GT_CHUNKED_DONE)
            break;
    }
    *consumed = pos;
    *data = d;
    return r == GT_CHUNKED_DATA ? GT_CHUNKED_MORE : r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    gt_http1_header h[64];
    gt_http1_error err;

    gt_http1_request req = {.headers = h, .num_headers = 64};
    int r = gt_http1_parse_request(buf, size, &req, &err);
    assert(r == GT_HTTP1_INCOMPLETE || r == GT_HTTP1_ERROR || (r > 0 && (size_t)r <= size));
    if (r > 0) {
        in_bounds(req.method, buf, size);
        in_bounds(req.target, buf, size);
        for (size_t i = 0; i < req.num_headers; i++) {
            in_bounds(h[i].name, buf, size);
            in_bounds(h[i].value, buf, size);
            assert(h[i].name.len > 0);
            assert(!memchr(h[i].value.p, '\r', h[i].value.len));
            assert(!memchr(h[i].value.p, '\n', h[i].value.len));
        }
        /* every strict prefix of a complete head is incomplete (or an early error) */
        gt_http1_request p2 = {.headers = h, .num_headers = 64};
        int r2 = gt_http1_parse_request(buf, (size_t)r - 1, &p2, &err);
        assert(r2 == GT_HTTP1_INCOMPLETE || r2 == GT_HTTP1_ERROR);
        p2.headers = h;
        p2.num_headers = 64;
        r2 = gt_http1_parse_request(buf, (size_t)r, &p2, &err);
        assert(r2 == r);
        gt_http1_body b;
        if (gt_http1_request_body(&p2, &b, &err) == 0 && b.framing == GT_BODY_LENGTH)
            assert(b.length > 0);
        gt_http1_uri uri;
        if (gt_http1_parse_absolute(p2.target, &uri, &err) == 0) {
            in_bounds(uri.host, buf, size);
            in_bounds(uri.path, buf, size);
            assert(uri.port > 0);
        }
        if (gt_http1_parse_authority(p2.target, &uri, &err) == 0)
            assert(uri.port > 0);
    }

    gt_http1_response res = {.headers = h, .num_headers = 64};
    r = gt_http1_parse_response(buf, size, &res, &err);
    assert(r == GT_HTTP1_INCOMPLETE || r == GT_HTTP1_ERROR || (r > 0 && (size_t)r <= size));
    if (r > 0) {
        assert(res.status >= 100 && res.status <= 999);
        gt_http1_body b;
        (void)gt_http1_response_body(&res, false, &b, &err);
    }
    if (r == GT_HTTP1_ERROR)
        assert(err.status == 502);

    /* chunked: whole vs byte-by-byte vs 7-byte pieces must agree */
    size_t c1, c2, c3;
    uint64_t d1, d2, d3;
    int a = chunked_run(buf, size, size ? size : 1, &c1, &d1);
    int b1 = chunked_run(buf, size, 1, &c2, &d2);
    int b2 = chunked_run(buf, size, 7, &c3, &d3);
    assert(a == b1 && a == b2);
    if (a != GT_HTTP1_ERROR) {
        assert(c1 == c2 && c1 == c3);
        assert(d1 == d2 && d1 == d3);
    }
    return 0;
}
