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

/* A daemon's long option that takes a value: --NAME VALUE or --NAME=VALUE,
 * stored in *slot (borrowed from argv). */
typedef struct vq_flag {
    const char *name;
    const char **slot;
} vq_flag;

#define VQ_FLAGS_MAX 16

/* Parses argv against flags (ended by {NULL, NULL}; at most VQ_FLAGS_MAX),
 * and --help (prints usage, exits 0) and --version (prints "prog VERSION",
 * exits 0).  0, or VQ_EINVAL for an unknown flag ("unknown option --x"), a
 * missing value ("option --x needs a value") or an argument left over
 * ("unexpected argument x"); the caller says how to get help. */
int vq_config_flags(int argc, char **argv, const vq_flag *flags, const char *prog,
                    const char *usage, vq_error *err);

#endif
