/* Byte slices: every parsed token is a pointer and a length into its input.
 * Slices never own memory; whoever owns the input owns what a slice points at. */
#ifndef GT_SLICE_H
#define GT_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    const char *p;
    size_t len;
} gt_slice;

/* A slice of a string literal, without its terminating NUL. */
#define GT_S(lit) ((gt_slice){(lit), sizeof(lit) - 1})

static inline gt_slice gt_slice_make(const char *p, size_t len)
{
    return (gt_slice){p, len};
}

static inline gt_slice gt_slice_cstr(const char *s)
{
    return (gt_slice){s, s ? strlen(s) : 0};
}

static inline bool gt_slice_eq(gt_slice a, gt_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline char gt_ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* ASCII case-insensitive comparison, as HTTP field names and tokens require. */
static inline bool gt_slice_caseeq(gt_slice a, gt_slice b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (gt_ascii_lower(a.p[i]) != gt_ascii_lower(b.p[i]))
            return false;
    return true;
}

/* Removes leading and trailing spaces and horizontal tabs (HTTP's OWS). */
static inline gt_slice gt_slice_trim(gt_slice s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* Splits off the part of *rest before the first `sep` (or all of it) and advances *rest past
 * the separator. Returns false once *rest was already empty. */
static inline bool gt_slice_next(gt_slice *rest, char sep, gt_slice *out)
{
    if (rest->p == NULL)
        return false;
    const char *e = rest->len ? memchr(rest->p, sep, rest->len) : NULL;
    if (e) {
        *out = gt_slice_make(rest->p, (size_t)(e - rest->p));
        rest->len -= out->len + 1;
        rest->p = e + 1;
    } else {
        *out = *rest;
        rest->p = NULL;
        rest->len = 0;
    }
    return true;
}

#endif
