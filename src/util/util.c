/* Allocation wrappers, the diagnostics list and small parsing helpers shared by every
 * subsystem. Owns nothing long-lived; never logs (callers decide what to print). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "gretel/util.h"

static void oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "gretel: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *gt_xmalloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n, file, line);
    return p;
}

void *gt_xcalloc_at(size_t nmemb, size_t size, const char *file, int line)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size, file, line);
    return p;
}

void *gt_xrealloc_at(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n, file, line);
    return q;
}

char *gt_xstrndup_at(const char *s, size_t n, const char *file, int line)
{
    char *p = gt_xmalloc_at(n + 1, file, line);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void gt_diags_init(gt_diags *d)
{
    memset(d, 0, sizeof(*d));
}

void gt_diags_free(gt_diags *d)
{
    if (!d)
        return;
    gt_free(&d->v);
    d->n = d->cap = d->errors = d->warnings = 0;
}

/* A hostile file could produce millions of errors; past this many the rest are counted
 * but not stored, which keeps `gretel check` output readable and memory bounded. */
#define DIAGS_MAX 1000

void gt_diags_add(gt_diags *d, int is_warning, const char *file, unsigned line, unsigned col,
                  const char *fmt, ...)
{
    if (is_warning)
        d->warnings++;
    else
        d->errors++;
    if (d->n >= DIAGS_MAX)
        return;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->v = gt_xrealloc(d->v, d->cap * sizeof(*d->v));
    }
    gt_diag *g = &d->v[d->n++];
    memset(g, 0, sizeof(*g));
    snprintf(g->file, sizeof(g->file), "%s", file ? file : "-");
    g->line = line;
    g->col = col;
    g->is_warning = is_warning;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof(g->msg), fmt, ap);
    va_end(ap);
}

void gt_diags_print(const gt_diags *d, void *stream)
{
    FILE *f = stream;
    for (size_t i = 0; i < d->n; i++) {
        const gt_diag *g = &d->v[i];
        fprintf(f, "%s:%u:%u: %s: %s\n", g->file, g->line, g->col,
                g->is_warning ? "warning" : "error", g->msg);
    }
    if (d->errors + d->warnings > d->n)
        fprintf(f, "(%zu more not shown)\n", d->errors + d->warnings - d->n);
}

uint64_t gt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int gt_mkdir_private(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s", dir);
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            mkdir(p, 0700); /* an existing level is fine; a real failure shows below */
            *q = '/';
        }
    return mkdir(dir, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

uint64_t gt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int gt_parse_u64(gt_slice s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s.len == 0)
        return GT_EINVAL;
    for (size_t i = 0; i < s.len; i++) {
        unsigned c = (unsigned char)s.p[i];
        if (c < '0' || c > '9')
            return GT_EINVAL;
        if (v > (max - (c - '0')) / 10)
            return GT_EINVAL;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return GT_OK;
}
