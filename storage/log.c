/* vq_log: one line per message on stderr, plain or JSON. */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "volq/log.h"

int vq_log_min_level = VQ_LOG_INFO;
static const char *component = "volq";
static int as_json;

static const char *const level_names[] = {"debug", "info", "notice", "warn"};

void vq_log_init(const char *comp, int level, int json)
{
    component = comp;
    vq_log_min_level = level;
    as_json = json;
}

int vq_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void vq_log_write_(int level, const char *fmt, ...)
{
    char msg[1024], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';

    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    if (level < 0 || level > VQ_LOG_WARN) level = VQ_LOG_WARN;

    if (as_json) {
        json_t *o = json_pack("{s:s,s:i,s:s,s:s,s:s}", "time", ts, "pid", (int)getpid(),
                              "component", component, "level", level_names[level], "msg", msg);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s) fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(o);
        return;
    }
    fprintf(stderr, "%s %d %s %s %s\n", ts, (int)getpid(), component, level_names[level], msg);
}
