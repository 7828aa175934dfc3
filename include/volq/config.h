/* Settings: a flag, else the environment, else the default (the same order in
 * every program), and the logging set-up the two daemons share. */
#ifndef VOLQ_CONFIG_H
#define VOLQ_CONFIG_H

#include "volq/error.h"

/* flag when given, else the environment variable env when set and not empty,
 * else def.  Borrowed: the flag's, the environment's or def's storage. */
const char *vq_config_str(const char *flag, const char *env, const char *def);

/* Sets up vq_log for component from --log-level/VOLQ_LOG_LEVEL (default info)
 * and --log-format/VOLQ_LOG_FORMAT (text or json).  VQ_EINVAL with the
 * offending value named when either is unknown. */
int vq_config_log(const char *component, const char *level_flag, const char *format_flag,
                  vq_error *err);

#endif
