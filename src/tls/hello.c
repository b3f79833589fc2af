/* ClientHello reader: what gretel learns from a client's first TLS bytes before choosing a
 * certificate (the SNI) and what it may answer with (ALPN). The hello may be split across
 * several handshake records (large post-quantum key shares do that); the handshake bytes
 * are gathered first, then parsed with bounds checks on every length (RFC 8446 §4.1.2). */
#include <string.h>

#include "gretel/tls.h"

#define HELLO_MAX 32768 /* handshake bytes; real hellos are under 3 KiB */

typedef struct {
    const uint8_t *p;
    size_t len, off;
} rd;

static bool get_u8(rd *r, unsigned *v)
{
    if (r->len - r->off < 1)
        return false;
    *v = r->p[r->off++];
    return true;
}

static bool get_u16(rd *r, unsigned *v)
{
    if (r->len - r->off < 2)
        return false;
    *v = (unsigned)r->p[r->off] << 8 | r->p[r->off + 1];
    r->off += 2;
    return true;
}

static bool skip(rd *r, size_t n)
{
    if (r->len - r->off < n)
        return false;
    r->off += n;
    return true;
}

/* A sub-reader over the next n bytes. */
static bool sub(rd *r, size_t n, rd *out)
{
    if (r->len - r->off < n)
        return false;
    out->p = r->p + r->off;
    out->len = n;
    out->off = 0;
    r->off += n;
    return true;
}

static int parse_sni(rd *e, gt_client_hello *h)
{
    unsigned list;
    rd l;
    if (!get_u16(e, &list) || !sub(e, list, &l))
        return GT_HELLO_BAD;
    while (l.off < l.len) {
        unsigned type, n;
        if (!get_u8(&l, &type) || !get_u16(&l, &n) || l.len - l.off < n)
            return GT_HELLO_BAD;
        if (type == 0 && !h->has_sni) {
            if (n == 0 || n >= sizeof(h->sni))
                return GT_HELLO_BAD;
            for (unsigned i = 0; i < n; i++) {
                unsigned char c = l.p[l.off + i];
                if (c <= 0x20 || c >= 0x7f)
                    return GT_HELLO_BAD; /* RFC 6066: ASCII host name, no trailing dot */
                h->sni[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
            h->sni[n] = 0;
            if (h->sni[n - 1] == '.')
                return GT_HELLO_BAD;
            h->has_sni = true;
        }
        l.off += n;
    }
    return GT_HELLO_OK;
}

static int parse_alpn(rd *e, gt_client_hello *h)
{
    unsigned list;
    rd l;
    if (!get_u16(e, &list) || !sub(e, list, &l))
        return GT_HELLO_BAD;
    while (l.off < l.len) {
        unsigned n;
        if (!get_u8(&l, &n) || n == 0 || l.len - l.off < n)
            return GT_HELLO_BAD;
        const uint8_t *p = l.p + l.off;
        if (n == 2 && memcmp(p, "h2", 2) == 0)
            h->alpn_h2 = true;
        else if (n == 8 && memcmp(p, "http/1.1", 8) == 0)
            h->alpn_http11 = true;
        l.off += n;
    }
    return GT_HELLO_OK;
}

static int parse_body(const uint8_t *p, size_t len, gt_client_hello *h)
{
    rd r = {p, len, 0};
    unsigned v, n;
    if (!get_u16(&r, &h->version) || !skip(&r, 32))
        return GT_HELLO_BAD;
    if (!get_u8(&r, &n) || n > 32 || !skip(&r, n)) /* session id */
        return GT_HELLO_BAD;
    if (!get_u16(&r, &n) || n < 2 || (n & 1) || !skip(&r, n)) /* cipher suites */
        return GT_HELLO_BAD;
    if (!get_u8(&r, &n) || n < 1 || !skip(&r, n)) /* compression methods */
        return GT_HELLO_BAD;
    if (r.off == r.len)
        return GT_HELLO_OK; /* no extensions (SSL 3-era hello): no SNI */
    rd ex;
    if (!get_u16(&r, &n) || !sub(&r, n, &ex) || r.off != r.len)
        return GT_HELLO_BAD;
    while (ex.off < ex.len) {
        unsigned type;
        rd e;
        if (!get_u16(&ex, &type) || !get_u16(&ex, &v) || !sub(&ex, v, &e))
            return GT_HELLO_BAD;
        int rc = GT_HELLO_OK;
        if (type == 0)
            rc = parse_sni(&e, h);
        else if (type == 16)
            rc = parse_alpn(&e, h);
        if (rc != GT_HELLO_OK)
            return rc;
    }
    return GT_HELLO_OK;
}

int gt_tls_parse_client_hello(const uint8_t *p, size_t len, gt_client_hello *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return GT_HELLO_INCOMPLETE;
    if (p[0] != 0x16)
        return GT_HELLO_NOT_TLS;
    /* gather handshake bytes from consecutive handshake records */
    static _Thread_local uint8_t hs[HELLO_MAX];
    size_t have = 0, off = 0, need = 0;
    for (;;) {
        if (len - off < 5)
            return GT_HELLO_INCOMPLETE;
        const uint8_t *rec = p + off;
        if (rec[0] != 0x16)
            return GT_HELLO_BAD; /* the hello must be complete before anything else */
        if (rec[1] != 3)
            return off == 0 ? GT_HELLO_NOT_TLS : GT_HELLO_BAD;
        size_t rl = (size_t)rec[3] << 8 | rec[4];
        if (rl == 0 || rl > 16384 + 2048)
            return GT_HELLO_BAD;
        if (len - off - 5 < rl)
            return GT_HELLO_INCOMPLETE;
        if (have + rl > HELLO_MAX)
            return GT_HELLO_BAD;
        memcpy(hs + have, rec + 5, rl);
        have += rl;
        off += 5 + rl;
        if (have >= 4) {
            if (hs[0] != 1)
                return GT_HELLO_BAD; /* not a ClientHello */
            need = 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
            if (need > HELLO_MAX)
                return GT_HELLO_BAD;
            if (have >= need)
                break;
        }
    }
    if (have != need)
        return GT_HELLO_BAD; /* another handshake message shares the records */
    int rc = parse_body(hs + 4, need - 4, out);
    if (rc == GT_HELLO_OK)
        out->record_len = off;
    else
        memset(out, 0, sizeof(*out));
    return rc;
}
