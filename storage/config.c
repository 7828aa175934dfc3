/* Flag > environment > default, and the daemons' logging set-up. */
#include <stdlib.h>
#include <string.h>

#include "volq/config.h"
#include "volq/log.h"

const char *vq_config_str(const char *flag, const char *env, const char *def)
{
    if (flag) return flag;
    const char *v = getenv(env);
    return v && *v ? v : def;
}

int vq_config_log(const char *component, const char *level_flag, const char *format_flag,
                  vq_error *err)
{
    const char *level = vq_config_str(level_flag, "VOLQ_LOG_LEVEL", "info");
    const char *format = vq_config_str(format_flag, "VOLQ_LOG_FORMAT", "text");
    int l = vq_log_level_parse(level);
    if (l < 0)
        return vq_error_set(err, VQ_EINVAL, "unknown log level %s (debug, info, notice, warn)",
                            level);
    if (strcmp(format, "text") && strcmp(format, "json"))
        return vq_error_set(err, VQ_EINVAL, "unknown log format %s (text, json)", format);
    vq_log_init(component, l, strcmp(format, "json") == 0);
    return 0;
}
