/* Flag > environment > default, the daemons' flags and their logging set-up. */
#include <getopt.h>
#include <stdio.h>
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

int vq_config_flags(int argc, char **argv, const vq_flag *flags, const char *prog,
                    const char *usage, vq_error *err)
{
    /* A flag's value is its index + 1: getopt's optopt is 0 for an unknown flag. */
    enum { HELP = VQ_FLAGS_MAX + 1, VERSION };
    struct option opts[VQ_FLAGS_MAX + 3] = {{0}};
    int n = 0;
    for (; flags[n].name; n++) {
        if (n == VQ_FLAGS_MAX) return vq_error_set(err, VQ_EINVAL, "too many flags");
        opts[n] = (struct option){flags[n].name, required_argument, NULL, n + 1};
    }
    opts[n] = (struct option){"help", no_argument, NULL, HELP};
    opts[n + 1] = (struct option){"version", no_argument, NULL, VERSION};
    int c;
    opterr = 0; /* the caller's one-line error says it */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == HELP) {
            fputs(usage, stdout);
            exit(0);
        }
        if (c == VERSION) {
            printf("%s %s\n", prog, VOLQ_VERSION);
            exit(0);
        }
        if (c < 1 || c > n) {
            /* '?' for both: optopt names the flag that lacks its value, else 0 */
            if (optopt >= 1 && optopt <= n)
                return vq_error_set(err, VQ_EINVAL, "option --%s needs a value",
                                    flags[optopt - 1].name);
            const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
            return vq_error_set(err, VQ_EINVAL, "unknown option %.100s", arg);
        }
        *flags[c - 1].slot = optarg;
    }
    if (optind < argc)
        return vq_error_set(err, VQ_EINVAL, "unexpected argument %.100s", argv[optind]);
    return 0;
}
