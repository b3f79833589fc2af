/* Product id decoders: percent (once or until stable), form, JSON (strings, numbers,
 * arrays, objects' "id"), split on a separator with backslash escapes, base64url, quotes.
 * A pipeline maps a list of values to a list of values; no step makes a value longer than
 * its input, so the caller sizes one buffer up front. Pure functions, no I/O. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t gt_rules_percent_decode(gt_slice in, char *out, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.p[i];
        int h, l;
        if (c == '%' && i + 2 < in.len &&
            (h = hexval(in.p[i + 1])) >= 0 && (l = hexval(in.p[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    return o;
}

size_t gt_rules_base64_decode(gt_slice in, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    size_t n = in.len;
    while (n && in.p[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++) {
        char c = in.p[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-' || c == '+')
            v = 62;
        else if (c == '_' || c == '/')
            v = 63;
        else
            return (size_t)-1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (n % 4 == 1)
        return (size_t)-1;
    return o;
}

typedef struct {
    gt_slice *v;
    size_t n, max;
    char *buf;
    size_t used, cap;
} vlist;

static bool push(vlist *l, const char *p, size_t len)
{
    if (l->n == l->max || l->used + len > l->cap)
        return false;
    memcpy(l->buf + l->used, p, len);
    l->v[l->n++] = gt_slice_make(l->buf + l->used, len);
    l->used += len;
    return true;
}

static void json_flatten(json_t *j, vlist *out, int depth)
{
    char num[64];
    if (depth > 8)
        return;
    switch (json_typeof(j)) {
    case JSON_STRING:
        push(out, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        push(out, num, strlen(num));
        break;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.17g", json_real_value(j));
        push(out, num, strlen(num));
        break;
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e) json_flatten(e, out, depth + 1);
        break;
    }
    case JSON_OBJECT: {
        /* an item object names its product by one of these keys; a wrapper object (a
         * pixel's whole payload) holds its items in one of the containers below */
        static const char *const ids[] = {"id", "item_id", "product_id", "content_id", "sku"};
        static const char *const containers[] = {"line_items", "contents", "content_ids",
                                                 "products", "items", "properties"};
        for (size_t k = 0; k < sizeof(ids) / sizeof(ids[0]); k++) {
            json_t *id = json_object_get(j, ids[k]);
            if (id) {
                json_flatten(id, out, depth + 1);
                return;
            }
        }
        for (size_t k = 0; k < sizeof(containers) / sizeof(containers[0]); k++) {
            json_t *c = json_object_get(j, containers[k]);
            if (c)
                json_flatten(c, out, depth + 1);
        }
        break;
    }
    default:
        break;
    }
}

static void step(const rule_decoder *dec, gt_slice v, vlist *out)
{
    char *dst = out->buf + out->used;
    size_t room = out->cap - out->used;
    if (room < v.len || out->n == out->max)
        return;
    switch (dec->kind) {
    case D_PERCENT:
    case D_FORM: {
        size_t l = gt_rules_percent_decode(v, dst, dec->kind == D_FORM);
        out->v[out->n++] = gt_slice_make(dst, l);
        out->used += l;
        break;
    }
    case D_PERCENT_ALL: {
        size_t l = gt_rules_percent_decode(v, dst, false);
        for (int k = 0; k < 8; k++) {
            /* decode in place until nothing changes: each round only shrinks */
            size_t l2 = gt_rules_percent_decode(gt_slice_make(dst, l), dst, false);
            if (l2 == l)
                break;
            l = l2;
        }
        out->v[out->n++] = gt_slice_make(dst, l);
        out->used += l;
        break;
    }
    case D_BASE64: {
        size_t l = gt_rules_base64_decode(v, dst);
        if (l == (size_t)-1)
            push(out, v.p, v.len);
        else {
            out->v[out->n++] = gt_slice_make(dst, l);
            out->used += l;
        }
        break;
    }
    case D_JSON: {
        json_error_t e;
        json_t *j = json_loadb(v.p, v.len, JSON_DECODE_ANY, &e);
        if (!j) {
            push(out, v.p, v.len); /* a bare id such as LW-1 is not JSON: keep it */
            break;
        }
        json_flatten(j, out, 0);
        json_decref(j);
        break;
    }
    case D_SPLIT: {
        const char *sep = dec->arg;
        size_t sl = strlen(sep);
        size_t start = out->used, l = 0;
        for (size_t i = 0; i <= v.len; i++) {
            if (i == v.len || (sl && i + sl <= v.len && memcmp(v.p + i, sep, sl) == 0)) {
                if (out->n < out->max)
                    out->v[out->n++] = gt_slice_make(out->buf + start, l);
                out->used = start + l;
                start = out->used;
                l = 0;
                if (i < v.len)
                    i += sl - 1;
                continue;
            }
            /* "\," is a literal separator inside a value (Google Ads data=) */
            if (v.p[i] == '\\' && sl && i + 1 + sl <= v.len && memcmp(v.p + i + 1, sep, sl) == 0) {
                memcpy(out->buf + start + l, v.p + i + 1, sl);
                l += sl;
                i += sl;
                continue;
            }
            out->buf[start + l++] = v.p[i];
        }
        break;
    }
    case D_UNBRACKET:
        if (v.len >= 2 && v.p[0] == '[' && v.p[v.len - 1] == ']')
            push(out, v.p + 1, v.len - 2);
        else
            push(out, v.p, v.len);
        break;
    case D_UNQUOTE:
        if (v.len >= 2 && ((v.p[0] == '"' && v.p[v.len - 1] == '"') ||
                           (v.p[0] == '\'' && v.p[v.len - 1] == '\'')))
            push(out, v.p + 1, v.len - 2);
        else
            push(out, v.p, v.len);
        break;
    case D_LOWER:
    case D_UPPER:
        for (size_t i = 0; i < v.len; i++) {
            char c = v.p[i];
            if (dec->kind == D_LOWER)
                c = gt_ascii_lower(c);
            else if (c >= 'a' && c <= 'z')
                c = (char)(c - 32);
            dst[i] = c;
        }
        out->v[out->n++] = gt_slice_make(dst, v.len);
        out->used += v.len;
        break;
    default:
        push(out, v.p, v.len);
    }
}

size_t gt_rules_decode_run(const rule_decoder *decs, size_t ndecs, gt_slice in, char *buf,
                           size_t cap, gt_slice *outv, size_t maxv)
{
    /* Two value lists alternate; each stage writes its bytes after the previous stage's. */
    gt_slice tmp[2][GT_DECODE_MAX_VALUES];
    size_t cur_n = 1;
    tmp[0][0] = in;
    size_t used = 0;
    int cur = 0;
    for (size_t s = 0; s < ndecs; s++) {
        vlist out = {.v = tmp[!cur], .n = 0, .max = GT_DECODE_MAX_VALUES, .buf = buf,
                     .used = used, .cap = cap};
        for (size_t i = 0; i < cur_n; i++)
            step(&decs[s], tmp[cur][i], &out);
        used = out.used;
        cur_n = out.n;
        cur = !cur;
    }
    size_t n = 0;
    for (size_t i = 0; i < cur_n && n < maxv; i++) {
        gt_slice v = gt_slice_trim(tmp[cur][i]);
        if (v.len)
            outv[n++] = v;
    }
    return n;
}
