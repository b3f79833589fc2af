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

void gt_log_write(enum gt_log_level lvl, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), gt_log_level_name((int)lvl));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated: keep the line whole */
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere to report a failing stderr */
}
