/* Canonical product keys (docs/PRODUCT-KEYS.md). Owns nothing; pure functions of bytes. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gretel/products.h"

static bool digits_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* GS1 check digit of the first n-1 digits: weights 3,1,3,... from the right. */
static int gs1_check(const char *d, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        int w = ((n - 1 - i) % 2 == 1) ? 3 : 1;
        sum += (d[i] - '0') * w;
    }
    return (10 - sum % 10) % 10;
}

/* Keeps digits, drops spaces and hyphens (printed GTINs and ISBNs carry them); anything
 * else makes the id invalid. Returns the digit count, or 0. */
static size_t squeeze(gt_slice id, char *out, size_t cap, bool allow_x)
{
    size_t n = 0;
    for (size_t i = 0; i < id.len; i++) {
        char c = id.p[i];
        if (c == ' ' || c == '-')
            continue;
        if (allow_x && (c == 'x' || c == 'X') && i + 1 == id.len)
            c = 'X';
        else if (c < '0' || c > '9')
            return 0;
        if (n + 1 >= cap)
            return 0;
        out[n++] = c;
    }
    out[n] = 0;
    return n;
}

static size_t norm_gtin(gt_slice id, char *d, const char **why)
{
    char tmp[32];
    size_t n = squeeze(id, tmp, sizeof(tmp), false);
    if (n != 8 && n != 12 && n != 13 && n != 14) {
        *why = "a GTIN has 8, 12, 13 or 14 digits";
        return 0;
    }
    memset(d, '0', 14 - n);
    memcpy(d + 14 - n, tmp, n);
    d[14] = 0;
    if (gs1_check(d, 14) != d[13] - '0') {
        *why = "GTIN check digit does not match";
        return 0;
    }
    return 14;
}

static size_t norm_isbn(gt_slice id, char *d, const char **why)
{
    char tmp[32];
    size_t n = squeeze(id, tmp, sizeof(tmp), true);
    if (n == 10) {
        int sum = 0;
        for (int i = 0; i < 9; i++) {
            if (tmp[i] == 'X') {
                *why = "ISBN-10: X only as the check digit";
                return 0;
            }
            sum += (tmp[i] - '0') * (10 - i);
        }
        int check = tmp[9] == 'X' ? 10 : tmp[9] - '0';
        if ((sum + check) % 11 != 0) {
            *why = "ISBN-10 check digit does not match";
            return 0;
        }
        memcpy(d, "978", 3);
        memcpy(d + 3, tmp, 9);
        d[12] = '0'; /* gs1_check reads the 12 digits before it */
        d[12] = (char)('0' + gs1_check(d, 13));
        d[13] = 0;
        return 13;
    }
    if (n == 13 && digits_only(tmp, 13) && (memcmp(tmp, "978", 3) == 0 ||
                                            memcmp(tmp, "979", 3) == 0)) {
        if (gs1_check(tmp, 13) != tmp[12] - '0') {
            *why = "ISBN-13 check digit does not match";
            return 0;
        }
        memcpy(d, tmp, 14);
        return 13;
    }
    *why = "an ISBN has 10 digits (last may be X) or 13 starting 978/979";
    return 0;
}

static size_t norm_asin(gt_slice id, char *d, const char **why)
{
    if (id.len != 10) {
        *why = "an ASIN has 10 letters and digits";
        return 0;
    }
    for (size_t i = 0; i < 10; i++) {
        char c = id.p[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
            *why = "an ASIN has 10 letters and digits";
            return 0;
        }
        d[i] = c;
    }
    d[10] = 0;
    return 10;
}

size_t gt_products_key(gt_slice scope, gt_slice id, char *out, size_t cap, const char **why)
{
    scope = gt_slice_trim(scope);
    id = gt_slice_trim(id);
    *why = NULL;
    if (!scope.len || !id.len) {
        *why = scope.len ? "empty product id" : "empty scope";
        return 0;
    }
    char sc[256], norm[32];
    if (scope.len >= sizeof(sc)) {
        *why = "scope too long";
        return 0;
    }
    for (size_t i = 0; i < scope.len; i++)
        sc[i] = gt_ascii_lower(scope.p[i]);
    sc[scope.len] = 0;
    gt_slice nid = id;
    size_t nl = 0;
    if (strcmp(sc, "gtin") == 0 || strcmp(sc, "ean") == 0 || strcmp(sc, "upc") == 0) {
        nl = norm_gtin(id, norm, why);
        memcpy(sc, "gtin", 5);
        scope.len = 4;
    } else if (strcmp(sc, "isbn") == 0) {
        nl = norm_isbn(id, norm, why);
    } else if (strcmp(sc, "asin") == 0) {
        nl = norm_asin(id, norm, why);
    } else {
        for (size_t i = 0; i < id.len; i++)
            if ((unsigned char)id.p[i] < 0x20 || id.p[i] == 0x7f) {
                *why = "control character in product id";
                return 0;
            }
        nl = SIZE_MAX;
    }
    if (nl == 0)
        return 0;
    if (nl != SIZE_MAX)
        nid = gt_slice_make(norm, nl);
    if (scope.len + 1 + nid.len >= cap) {
        *why = "product key too long";
        return 0;
    }
    memcpy(out, sc, scope.len);
    out[scope.len] = ':';
    memcpy(out + scope.len + 1, nid.p, nid.len);
    out[scope.len + 1 + nid.len] = 0;
    return scope.len + 1 + nid.len;
}

/* The ISBN-10 of a 978 ISBN-13 (a book's ASIN), or 0. */
static bool isbn10_of(const char *isbn13, char out[11])
{
    if (memcmp(isbn13, "978", 3) != 0)
        return false;
    int sum = 0;
    for (int i = 0; i < 9; i++) {
        out[i] = isbn13[3 + i];
        sum += (out[i] - '0') * (10 - i);
    }
    int check = (11 - sum % 11) % 11;
    out[9] = check == 10 ? 'X' : (char)('0' + check);
    out[10] = 0;
    return true;
}

size_t gt_products_aliases(gt_slice key, char (*out)[64], size_t max)
{
    const char *colon = key.len ? memchr(key.p, ':', key.len) : NULL;
    if (!colon || max == 0)
        return 0;
    gt_slice scope = gt_slice_make(key.p, (size_t)(colon - key.p));
    gt_slice id = gt_slice_make(colon + 1, (size_t)(key.p + key.len - colon - 1));
    char isbn13[14] = "";
    const char *why;
    char canon[64];
    if (gt_slice_eq(scope, GT_S("gtin")) && id.len == 14 && id.p[0] == '0' &&
        (memcmp(id.p + 1, "978", 3) == 0 || memcmp(id.p + 1, "979", 3) == 0)) {
        memcpy(isbn13, id.p + 1, 13);
    } else if (gt_slice_eq(scope, GT_S("isbn")) && id.len == 13) {
        memcpy(isbn13, id.p, 13);
    } else if (gt_slice_eq(scope, GT_S("asin")) &&
               gt_products_key(GT_S("isbn"), id, canon, sizeof(canon), &why)) {
        memcpy(isbn13, canon + 5, 13); /* a book ASIN: its ISBN-10 */
    } else {
        return 0;
    }
    isbn13[13] = 0;
    size_t n = 0;
    char ten[11];
    const char *forms[3][2] = {{"gtin", NULL}, {"isbn", NULL}, {"asin", NULL}};
    char g14[16];
    snprintf(g14, sizeof(g14), "0%s", isbn13);
    forms[0][1] = g14;
    forms[1][1] = isbn13;
    forms[2][1] = isbn10_of(isbn13, ten) ? ten : NULL;
    for (int i = 0; i < 3 && n < max; i++) {
        if (!forms[i][1])
            continue;
        int l = snprintf(out[n], 64, "%s:%s", forms[i][0], forms[i][1]);
        if (l > 0 && !gt_slice_eq(key, gt_slice_make(out[n], (size_t)l)))
            n++;
    }
    return n;
}
