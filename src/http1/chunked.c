/* Chunked transfer-coding framing (RFC 9112 §7.1) as a byte-at-a-time state machine that
 * never buffers: the proxy relays chunk data without copying it and only this decoder looks
 * at sizes, extensions and trailers. Rejects what could desynchronise two parsers: size
 * overflow, non-hex sizes, bare CR/LF, missing CRLF after data, oversized trailers. */
#include <string.h>

#include "gretel/http1.h"
#include "gretel/util.h"

enum {
    CS_SIZE_START,
    CS_SIZE,
    CS_SIZE_BWS, /* whitespace after the size, only before ';' */
    CS_EXT,
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER_START,
    CS_TRAILER,
    CS_TRAILER_LF,
    CS_FINAL_LF,
    CS_DONE,
};

/* More than 16 hex digits cannot be a real size; 2^62-1 is the largest accepted, far from
 * any overflow in the arithmetic that follows. */
#define MAX_DIGITS 16
#define MAX_CHUNK ((1ull << 62) - 1)

void gt_http1_chunked_init(gt_http1_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CS_SIZE_START;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int bad(gt_http1_error *err, const char *why, size_t off, size_t *used)
{
    err->status = 400;
    err->reason = why;
    err->offset = off;
    *used = off;
    return GT_HTTP1_ERROR;
}

int gt_http1_chunked_feed(gt_http1_chunked *c, const char *p, size_t len, size_t *used,
                          gt_http1_error *err)
{
    size_t i = 0;
    size_t tmax = c->trailer_max ? c->trailer_max : 16384;
    while (i < len) {
        unsigned char ch = (unsigned char)p[i];
        switch (c->state) {
        case CS_SIZE_START:
        case CS_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (++c->digits > MAX_DIGITS || c->size > (MAX_CHUNK >> 4))
                    return bad(err, "chunk size overflow", i, used);
                c->size = (c->size << 4) | (uint64_t)v;
                if (c->size > MAX_CHUNK)
                    return bad(err, "chunk size overflow", i, used);
                c->state = CS_SIZE;
                break;
            }
            if (c->state == CS_SIZE_START)
                return bad(err, "invalid chunk size", i, used);
            if (ch == '\r')
                c->state = CS_SIZE_LF;
            else if (ch == ';')
                c->state = CS_EXT;
            else if (ch == ' ' || ch == '\t')
                c->state = CS_SIZE_BWS;
            else
                return bad(err, "invalid chunk size", i, used);
            break;
        }
        case CS_SIZE_BWS:
            if (ch == ';')
                c->state = CS_EXT;
            else if (ch != ' ' && ch != '\t')
                return bad(err, "invalid chunk size line", i, used);
            break;
        case CS_EXT:
            /* Extensions are passed through unread; only their bytes are checked. */
            if (ch == '\r')
                c->state = CS_SIZE_LF;
            else if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
                return bad(err, "invalid character in chunk extension", i, used);
            else if (++c->trailer_bytes > tmax)
                return bad(err, "chunk extension too long", i, used);
            break;
        case CS_SIZE_LF:
            if (ch != '\n')
                return bad(err, "bare CR in chunk size line", i, used);
            c->digits = 0;
            c->trailer_bytes = 0;
            c->data_left = c->size;
            c->size = 0;
            if (c->data_left == 0) {
                c->state = CS_TRAILER_START;
                c->trailer_off = i + 1;
            } else {
                c->state = CS_DATA;
                *used = i + 1;
                return GT_CHUNKED_DATA;
            }
            break;
        case CS_DATA:
            /* The caller must pass data through before feeding again. */
            *used = i;
            return GT_CHUNKED_DATA;
        case CS_DATA_CR:
            if (ch != '\r')
                return bad(err, "chunk data not followed by CRLF", i, used);
            c->state = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (ch != '\n')
                return bad(err, "chunk data not followed by CRLF", i, used);
            c->state = CS_SIZE_START;
            break;
        case CS_TRAILER_START:
            if (ch == '\r') {
                c->state = CS_FINAL_LF;
                break;
            }
            if (ch == ' ' || ch == '\t')
                return bad(err, "obs-fold in trailer", i, used);
            c->state = CS_TRAILER;
            /* fall through */
        case CS_TRAILER:
            if (++c->trailer_bytes > tmax)
                return bad(err, "trailer section too large", i, used);
            if (ch == '\r')
                c->state = CS_TRAILER_LF;
            else if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
                return bad(err, "invalid character in trailer", i, used);
            break;
        case CS_TRAILER_LF:
            if (ch != '\n')
                return bad(err, "bare CR in trailer", i, used);
            c->state = CS_TRAILER_START;
            break;
        case CS_FINAL_LF:
            if (ch != '\n')
                return bad(err, "bare CR after last chunk", i, used);
            c->state = CS_DONE;
            *used = i + 1;
            return GT_CHUNKED_DONE;
        case CS_DONE:
            *used = i;
            return GT_CHUNKED_DONE;
        }
        i++;
    }
    *used = i;
    if (c->state == CS_DATA)
        return GT_CHUNKED_DATA;
    return c->state == CS_DONE ? GT_CHUNKED_DONE : GT_CHUNKED_MORE;
}

bool gt_http1_chunked_in_trailers(const gt_http1_chunked *c)
{
    return c->state >= CS_TRAILER_START;
}

void gt_http1_chunked_consumed(gt_http1_chunked *c, uint64_t n)
{
    c->data_left -= n;
    if (c->data_left == 0 && c->state == CS_DATA)
        c->state = CS_DATA_CR;
}
