/* Logging to stderr: one line per event, `key=value` pairs, whole lines written with one
 * write(2) so worker threads never interleave. The level is tested before the arguments are
 * evaluated. The level is the process's one mutable global: set at start and on reload. */
#ifndef GT_LOG_H
#define GT_LOG_H

#include <stdatomic.h>

enum gt_log_level { GT_LOG_ERROR = 0, GT_LOG_WARN = 1, GT_LOG_INFO = 2, GT_LOG_DEBUG = 3 };

extern _Atomic int gt_log_threshold;

void gt_log_set_level(enum gt_log_level lvl);
/* Returns the level for a name (`error`, `warn`, `info`, `debug`) or -1. */
int gt_log_level_parse(const char *name, size_t len);
const char *gt_log_level_name(int lvl);
void gt_log_write(enum gt_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A per-worker buffer for the one-line-per-request log: lines are formatted as by
 * gt_log_write but written in batches (when the buffer fills, and by the owner's timer every
 * 100 ms), saving a write(2) per request. Warnings and errors never go through it. */
typedef struct {
    size_t len;
    char buf[32768];
} gt_logbuf;

void gt_logbuf_write(gt_logbuf *b, enum gt_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void gt_logbuf_flush(gt_logbuf *b);

#define gt_log_enabled(lvl) ((int)(lvl) <= atomic_load_explicit(&gt_log_threshold, memory_order_relaxed))
#define gt_log(lvl, ...)                                                                           \
    do {                                                                                           \
        if (gt_log_enabled(lvl))                                                                   \
            gt_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)

#endif
