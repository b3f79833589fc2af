/* Product ids a shop page declares about itself: the schema.org `Product` objects in its
 * JSON-LD blocks (<script type="application/ld+json">), read from the HTML response as it
 * passes through the proxy. The bytes arrive as on the wire: maybe chunked, maybe gzip or
 * deflate (zlib), so the sniffer undoes both, keeps at most the first MiB of HTML, and
 * parses the blocks with jansson when the response ends. It never changes the response.
 * Keys: gtin8/12/13/14 and gtin as `gtin:` (canonical, check digit verified), asin as
 * `asin:`, sku / productID / mpn / offers.sku scoped to the page's registrable domain, as
 * the shop rules scope URL ids (docs/PRODUCT-KEYS.md). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "gretel/products.h"
#include "gretel/util.h"

#define HTML_MAX (1u << 20) /* what is kept of the decoded page */
#define RAW_MAX (4u << 20)  /* what is read of the encoded body */

enum { CH_SIZE, CH_EXT, CH_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_DONE };

struct gt_sniff {
    bool chunked, inflating, failed;
    int ch_state;
    uint64_t ch_left;
    bool trailer_line_empty;
    z_stream z;
    char *html;
    size_t len, raw;
};

static bool is_html(gt_slice ctype)
{
    gt_slice t = gt_slice_trim(ctype);
    const char *semi = memchr(t.p, ';', t.len);
    if (semi)
        t = gt_slice_trim(gt_slice_make(t.p, (size_t)(semi - t.p)));
    return gt_slice_caseeq(t, GT_S("text/html")) || gt_slice_caseeq(t, GT_S("application/xhtml+xml"));
}

gt_sniff *gt_sniff_new(gt_slice content_type, gt_slice content_encoding, bool chunked)
{
    if (!is_html(content_type))
        return NULL;
    gt_slice enc = gt_slice_trim(content_encoding);
    bool inflate = false;
    if (gt_slice_caseeq(enc, GT_S("gzip")) || gt_slice_caseeq(enc, GT_S("x-gzip")) ||
        gt_slice_caseeq(enc, GT_S("deflate")))
        inflate = true;
    else if (enc.len && !gt_slice_caseeq(enc, GT_S("identity")))
        return NULL; /* br, zstd, or stacked codings: not readable here */
    gt_sniff *s = gt_xcalloc(1, sizeof(*s));
    s->chunked = chunked;
    s->ch_state = CH_SIZE;
    if (inflate) {
        /* 15 + 32: zlib or gzip header, detected */
        if (inflateInit2(&s->z, 15 + 32) != Z_OK) {
            free(s);
            return NULL;
        }
        s->inflating = true;
    }
    s->html = gt_xmalloc(HTML_MAX);
    return s;
}

void gt_sniff_free(gt_sniff *s)
{
    if (!s)
        return;
    if (s->inflating)
        inflateEnd(&s->z);
    free(s->html);
    free(s);
}

static void keep(gt_sniff *s, const unsigned char *p, size_t n)
{
    if (s->len >= HTML_MAX)
        return;
    if (n > HTML_MAX - s->len)
        n = HTML_MAX - s->len;
    memcpy(s->html + s->len, p, n);
    s->len += n;
}

/* Payload bytes (framing removed): decoded into the HTML kept. */
static void payload(gt_sniff *s, const unsigned char *p, size_t n)
{
    if (!s->inflating) {
        keep(s, p, n);
        return;
    }
    s->z.next_in = (unsigned char *)p;
    s->z.avail_in = (uInt)n;
    while (s->z.avail_in && s->len < HTML_MAX && !s->failed) {
        unsigned char out[8192];
        s->z.next_out = out;
        s->z.avail_out = sizeof(out);
        int r = inflate(&s->z, Z_NO_FLUSH);
        keep(s, out, sizeof(out) - s->z.avail_out);
        if (r == Z_STREAM_END)
            break;
        if (r != Z_OK && r != Z_BUF_ERROR) {
            s->failed = true; /* a broken stream: what was decoded so far still counts */
            break;
        }
        if (r == Z_BUF_ERROR && s->z.avail_out)
            break;
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void gt_sniff_feed(gt_sniff *s, const void *data, size_t n)
{
    if (!s || s->failed || s->len >= HTML_MAX || s->raw >= RAW_MAX)
        return;
    s->raw += n;
    const unsigned char *p = data;
    if (!s->chunked) {
        payload(s, p, n);
        return;
    }
    /* chunked framing (RFC 9112 §7.1), the proxy's relay has validated it already */
    for (size_t i = 0; i < n && !s->failed;) {
        unsigned char c = p[i];
        switch (s->ch_state) {
        case CH_SIZE: {
            int h = hexval(c);
            if (h >= 0) {
                if (s->ch_left >> 56) {
                    s->failed = true;
                    break;
                }
                s->ch_left = s->ch_left * 16 + (uint64_t)h;
            } else if (c == '\r') {
                s->ch_state = CH_LF;
            } else if (c == '\n') {
                s->ch_state = s->ch_left ? CH_DATA : CH_TRAILER;
                s->trailer_line_empty = true;
            } else {
                s->ch_state = CH_EXT;
            }
            i++;
            break;
        }
        case CH_EXT:
            if (c == '\n') {
                s->ch_state = s->ch_left ? CH_DATA : CH_TRAILER;
                s->trailer_line_empty = true;
            }
            i++;
            break;
        case CH_LF:
            s->ch_state = s->ch_left ? CH_DATA : CH_TRAILER;
            s->trailer_line_empty = true;
            i++;
            break;
        case CH_DATA: {
            size_t take = n - i < s->ch_left ? n - i : (size_t)s->ch_left;
            payload(s, p + i, take);
            i += take;
            s->ch_left -= take;
            if (!s->ch_left)
                s->ch_state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            s->ch_state = c == '\r' ? CH_DATA_LF : CH_SIZE;
            i += c == '\r' || c == '\n';
            break;
        case CH_DATA_LF:
            s->ch_state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER:
            if (c == '\n') {
                if (s->trailer_line_empty)
                    s->ch_state = CH_DONE;
                s->trailer_line_empty = true;
            } else if (c != '\r') {
                s->trailer_line_empty = false;
            }
            i++;
            break;
        default:
            i = n;
            break;
        }
    }
}

/* --- JSON-LD --- */

typedef struct {
    char (*keys)[GT_SNIFF_KEY_MAX];
    size_t n, cap;
    gt_slice site; /* the page's registrable domain: the scope of shop ids */
} found;

static void add_key(found *f, const char *scope, const char *id)
{
    if (f->n >= f->cap || !*id)
        return;
    char key[GT_SNIFF_KEY_MAX];
    const char *why;
    if (!gt_products_key(gt_slice_cstr(scope), gt_slice_cstr(id), key, sizeof(key), &why))
        return;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->keys[i], key) == 0)
            return;
    memcpy(f->keys[f->n++], key, strlen(key) + 1);
}

/* A JSON value as an id: strings as they are, whole numbers in decimal (GTINs are
 * sometimes numbers; their lost leading zeros come back in the canonical form). */
static bool id_of(json_t *v, char *out, size_t cap)
{
    if (json_is_string(v)) {
        gt_slice t = gt_slice_trim(gt_slice_cstr(json_string_value(v)));
        if (!t.len || t.len >= cap)
            return false;
        memcpy(out, t.p, t.len);
        out[t.len] = 0;
        return true;
    }
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        snprintf(out, cap, "%lld", (long long)json_integer_value(v));
        return true;
    }
    return false;
}

static bool is_type(json_t *o, const char *type)
{
    json_t *t = json_object_get(o, "@type");
    if (json_is_string(t))
        return strcasecmp(json_string_value(t), type) == 0 ||
               (strncasecmp(json_string_value(t), "http", 4) == 0 &&
                strlen(json_string_value(t)) > strlen(type) &&
                strcasecmp(json_string_value(t) + strlen(json_string_value(t)) - strlen(type),
                           type) == 0);
    if (json_is_array(t)) {
        size_t i;
        json_t *e;
        json_array_foreach(t, i, e)
            if (json_is_string(e) && strcasecmp(json_string_value(e), type) == 0)
                return true;
    }
    return false;
}

static void product_ids(found *f, json_t *o)
{
    static const char *const gtins[] = {"gtin14", "gtin13", "gtin12", "gtin8", "gtin", NULL};
    char id[GT_SNIFF_KEY_MAX], site[256];
    snprintf(site, sizeof(site), "%.*s", (int)f->site.len, f->site.p);
    for (int i = 0; gtins[i]; i++) {
        json_t *g = json_object_get(o, gtins[i]);
        if (json_is_integer(g) && json_integer_value(g) > 0)
            /* a GTIN sent as a number lost its leading zeros: 14 digits again */
            snprintf(id, sizeof(id), "%014lld", (long long)json_integer_value(g));
        else if (!id_of(g, id, sizeof(id)))
            continue;
        add_key(f, "gtin", id);
    }
    if (id_of(json_object_get(o, "asin"), id, sizeof(id)))
        add_key(f, "asin", id);
    static const char *const own[] = {"sku", "productID", "mpn", NULL};
    for (int i = 0; own[i]; i++)
        if (id_of(json_object_get(o, own[i]), id, sizeof(id))) {
            /* "productID" is sometimes "gtin13:…" / "isbn:…" style: global then */
            const char *colon = strchr(id, ':');
            if (colon && strncasecmp(id, "gtin", 4) == 0)
                add_key(f, "gtin", colon + 1);
            else if (colon && strncasecmp(id, "isbn", 4) == 0)
                add_key(f, "isbn", colon + 1);
            else if (site[0])
                add_key(f, site, id); /* the shop's own id, scoped to the shop */
        }
}

/* Every Product (or ProductGroup's variant) anywhere in the value: top-level objects,
 * arrays, @graph, offers, hasVariant. Depth-limited. */
static void walk(found *f, json_t *v, int depth)
{
    if (depth > 12 || f->n >= f->cap)
        return;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            walk(f, e, depth + 1);
        return;
    }
    if (!json_is_object(v))
        return;
    if (is_type(v, "Product") || is_type(v, "IndividualProduct") ||
        is_type(v, "ProductModel")) {
        product_ids(f, v);
        json_t *offers = json_object_get(v, "offers");
        if (json_is_object(offers) || json_is_array(offers)) {
            /* offers carry the sku of what is sold */
            json_t *list = json_is_array(offers) ? offers : NULL;
            size_t i;
            json_t *e;
            if (list) {
                json_array_foreach(list, i, e)
                    if (json_is_object(e))
                        product_ids(f, e);
            } else {
                product_ids(f, offers);
            }
        }
    }
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e)
        if (json_is_array(e) || json_is_object(e))
            if (strcmp(k, "offers") != 0)
                walk(f, e, depth + 1);
}

/* The first case-insensitive occurrence of needle (starting with '<') in [p, end). */
static const char *find_ci(const char *p, const char *end, const char *needle, size_t n)
{
    while (p + n <= end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt || lt + n > end)
            return NULL;
        if (strncasecmp(lt, needle, n) == 0)
            return lt;
        p = lt + 1;
    }
    return NULL;
}

size_t gt_sniff_keys(gt_sniff *s, gt_slice site, char (*keys)[GT_SNIFF_KEY_MAX], size_t cap)
{
    if (!s)
        return 0;
    found f = {keys, 0, cap, site};
    const char *h = s->html, *end = s->html + s->len;
    while (h < end && f.n < cap) {
        const char *tag = find_ci(h, end, "<script", 7);
        if (!tag)
            break;
        const char *gt = memchr(tag, '>', (size_t)(end - tag));
        if (!gt)
            break;
        gt_slice attrs = gt_slice_make(tag, (size_t)(gt - tag));
        bool ld = false;
        for (size_t i = 0; i + 19 <= attrs.len && !ld; i++)
            ld = strncasecmp(attrs.p + i, "application/ld+json", 19) == 0;
        const char *body = gt + 1, *close = find_ci(body, end, "</script", 8);
        if (!close)
            break;
        if (ld) {
            json_error_t err;
            json_t *v = json_loadb(body, (size_t)(close - body), JSON_DECODE_ANY, &err);
            if (v) {
                walk(&f, v, 0);
                json_decref(v);
            }
        }
        h = close + 8;
    }
    return f.n;
}
