/* One-line logging: "time pid component level msg" (or one JSON object a line). */
#ifndef VOLQ_LOG_H
#define VOLQ_LOG_H

enum { VQ_LOG_DEBUG = 0, VQ_LOG_INFO, VQ_LOG_NOTICE, VQ_LOG_WARN };

extern int vq_log_min_level;

/* Checks the level before evaluating the arguments. */
#define vq_log(level, ...)                                                                 \
    do {                                                                                   \
        if ((level) >= vq_log_min_level) vq_log_write_((level), __VA_ARGS__);              \
    } while (0)

void vq_log_write_(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* component names the program ("scheduler", "worker"); it is borrowed for the
 * process's lifetime.  json != 0 writes one JSON object a line for log shippers. */
void vq_log_init(const char *component, int level, int json);

/* "debug", "info", "notice", "warn" -> level; -1 when unknown. */
int vq_log_level_parse(const char *name);

#endif
