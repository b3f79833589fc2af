/* The stderr logger. Formats a whole line into a stack buffer and writes it at once, so
 * lines from different workers stay whole. Never allocates. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gretel/log.h"
#include "gretel/util.h"

_Atomic int gt_log_threshold = GT_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void gt_log_set_level(enum gt_log_level lvl)
{
    atomic_store(&gt_log_threshold, (int)lvl);
}

int gt_log_level_parse(const char *name, size_t len)
{
    for (int i = 0; i < 4; i++)
        if (strlen(level_names[i]) == len && memcmp(level_names[i], name, len) == 0)
            return i;
    if (len == 7 && memcmp(name, "warning", 7) == 0)
        return GT_LOG_WARN;
    return -1;
}

const char *gt_log_level_name(int lvl)
{
    return (lvl >= 0 && lvl < 4) ? level_names[lvl] : "?";
}

/* Formats one whole line (timestamp, level, message, newline) into line[]; returns its length. */
static size_t format_line(char *line, size_t cap, enum gt_log_level lvl, const char *fmt,
                          va_list ap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), gt_log_level_name((int)lvl));
    int m = vsnprintf(line + n, cap - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > cap - 2)
        len = cap - 2; /* truncated: keep the line whole */
    line[len++] = '\n';
    return len;
}

static void write_all(const char *p, size_t len)
{
    ssize_t w = write(STDERR_FILENO, p, len);
    (void)w; /* nowhere to report a failing stderr */
}

void gt_log_write(enum gt_log_level lvl, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, sizeof(line), lvl, fmt, ap);
    va_end(ap);
    write_all(line, len);
}

void gt_logbuf_write(gt_logbuf *b, enum gt_log_level lvl, const char *fmt, ...)
{
    if (sizeof(b->buf) - b->len < 2048)
        gt_logbuf_flush(b);
    va_list ap;
    va_start(ap, fmt);
    b->len += format_line(b->buf + b->len, 2048, lvl, fmt, ap);
    va_end(ap);
}

void gt_logbuf_flush(gt_logbuf *b)
{
    if (b->len)
        write_all(b->buf, b->len);
    b->len = 0;
}
