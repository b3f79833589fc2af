/* Small shared helpers: allocation that stops the process on failure, errors, diagnostics
 * (FILE:LINE:COL: message lists filled by parsers and printed by the edge), monotonic time. */
#ifndef GT_UTIL_H
#define GT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "gretel/slice.h"

/* Error codes: functions return 0 or one of these (negative). */
enum {
    GT_OK = 0,
    GT_EINVAL = -1,   /* bad input; a gt_diag says where and why */
    GT_ENOMEM = -2,   /* a cap was reached */
    GT_EIO = -3,      /* the OS refused (errno-based message in the diag) */
    GT_ENOTFOUND = -4,
};

/* Allocation failure is not recoverable for a proxy that must stay consistent: these
 * print file and line and abort. Input never drives sizes past the caps owners set. */
void *gt_xmalloc_at(size_t n, const char *file, int line);
void *gt_xcalloc_at(size_t nmemb, size_t size, const char *file, int line);
void *gt_xrealloc_at(void *p, size_t n, const char *file, int line);
char *gt_xstrndup_at(const char *s, size_t n, const char *file, int line);
#define gt_xmalloc(n) gt_xmalloc_at((n), __FILE__, __LINE__)
#define gt_xcalloc(m, n) gt_xcalloc_at((m), (n), __FILE__, __LINE__)
#define gt_xrealloc(p, n) gt_xrealloc_at((p), (n), __FILE__, __LINE__)
#define gt_xstrndup(s, n) gt_xstrndup_at((s), (n), __FILE__, __LINE__)
#define gt_xstrdup(s) gt_xstrndup_at((s), strlen(s), __FILE__, __LINE__)
#define gt_xslicedup(sl) gt_xstrndup_at((sl).p, (sl).len, __FILE__, __LINE__)

/* A function that can end (free) the object it was given returns whether it still exists;
 * the caller must look (ARCHITECTURE.md, "Who may end a session"). gcc does not let a
 * (void) cast silence this: a caller that has nothing left to do writes `if (!f()) return;`. */
#define GT_MUST_CHECK __attribute__((warn_unused_result))

/* free() that also clears the pointer, so a second free is harmless. */
#define gt_free(pp)                                                                                \
    do {                                                                                           \
        free(*(pp));                                                                               \
        *(pp) = NULL;                                                                              \
    } while (0)

/* One diagnostic: where in which input, and what is wrong. */
typedef struct {
    char file[256];
    unsigned line, col; /* 1-based; 0 when not known */
    int is_warning;
    char msg[256];
} gt_diag;

/* A bounded list of diagnostics; parsers append, the edge prints. */
typedef struct {
    gt_diag *v;
    size_t n, cap;
    size_t errors, warnings;
} gt_diags;

void gt_diags_init(gt_diags *d);
void gt_diags_free(gt_diags *d);
void gt_diags_add(gt_diags *d, int is_warning, const char *file, unsigned line, unsigned col,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Prints each as `FILE:LINE:COL: error: msg` (or warning) to the stream. */
void gt_diags_print(const gt_diags *d, void *stream);

/* Monotonic milliseconds, for durations in logs. */
uint64_t gt_now_ms(void);
uint64_t gt_now_us(void);

/* mkdir -p with every missing level mode 0700 (stores, the CA and caches hold private
 * data). 0, or -1 with errno. */
int gt_mkdir_private(const char *dir);

/* Parses a decimal unsigned integer that must fill the whole slice. */
int gt_parse_u64(gt_slice s, uint64_t max, uint64_t *out);

#include "gretel/banned.h"

#endif
