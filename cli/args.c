/* Input checks before anything is sent, and the per-command option parser. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli_int.h"
#include "volq/uuid.h"

int vq_cli_uuid(const char *s, const char *what)
{
    if (vq_uuid_valid(s)) return 0;
    return vq_cli_fail(VQ_EXIT_USAGE, "%s \"%.64s\" is not a UUID (lower-case "
                       "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", what, s ? s : "");
}

/* Binary units, as qemu-img reads them. */
static const struct {
    const char *suffix;
    unsigned shift;
} units[] = {{"", 0},   {"K", 10}, {"KiB", 10}, {"M", 20}, {"MiB", 20},
             {"G", 30}, {"GiB", 30}, {"T", 40}, {"TiB", 40}};

int vq_cli_size(const char *s, uint64_t *out)
{
    char *end;
    int shift = -1;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].suffix) == 0) shift = (int)units[i].shift;
    if (s[0] < '0' || s[0] > '9' || shift < 0 || errno || n == 0 || n > (UINT64_MAX >> shift))
        return vq_cli_fail(VQ_EXIT_USAGE, "size \"%s\" is not a number of bytes (or K, M, G, T)", s);
    n <<= shift;
    if (n % 512)
        return vq_cli_fail(VQ_EXIT_USAGE, "size %llu is not a multiple of 512 bytes", n);
    *out = n;
    return 0;
}

int vq_cli_int(const char *s, const char *opt, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (end == s || *end || errno || n < lo || n > hi)
        return vq_cli_fail(VQ_EXIT_USAGE, "%s takes a number from %ld to %ld, not \"%s\"", opt,
                           lo, hi, s);
    *out = n;
    return 0;
}

/* One line, as every error (SPEC §3): what is wrong, then where to look. */
int vq_cli_usage(const vq_cmd *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vq_cli_fail(VQ_EXIT_USAGE, "%s: %s; see volq %s --help", cmd->name, msg, cmd->name);
}

int vq_cli_help(const vq_cmd *cmd)
{
    printf("usage: volq %s\n\n%s\nGlobal options (before or after the command): --api URL "
           "(VOLQ_API), --token TOKEN (VOLQ_TOKEN), --json\n",
           cmd->usage, cmd->help);
    return VQ_EXIT_OK;
}

static const vq_opt *find_opt(const vq_opt *opts, const char *name, size_t len)
{
    for (; opts && opts->name; opts++)
        if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0) return opts;
    return NULL;
}

/* One "--name[=value]" at argv[*i]; moves *i past a separate value. */
static int take_opt(const vq_cmd *cmd, int argc, char **argv, int *i, const vq_opt *opts)
{
    const char *name = argv[*i] + 2, *eq = strchr(name, '=');
    const vq_opt *o = find_opt(opts, name, eq ? (size_t)(eq - name) : strlen(name));
    if (!o) return vq_cli_usage(cmd, "unknown option %s", argv[*i]);
    if (!o->val) {
        if (eq) return vq_cli_usage(cmd, "--%s takes no value", o->name);
        *o->flag = 1;
        return 0;
    }
    if (eq) {
        *o->val = eq + 1;
        return 0;
    }
    if (*i + 1 >= argc) return vq_cli_usage(cmd, "--%s needs a value", o->name);
    *o->val = argv[++*i];
    return 0;
}

int vq_cli_args(const vq_cmd *cmd, int argc, char **argv, const vq_opt *opts, const char **pos,
                size_t minpos, size_t maxpos, size_t *npos, int *exitcode)
{
    size_t n = 0;
    int dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            *exitcode = vq_cli_help(cmd);
            return 1;
        }
        if (!dashdash && strcmp(a, "--") == 0) {
            dashdash = 1;
        } else if (!dashdash && a[0] == '-' && a[1] == '-') {
            if ((*exitcode = take_opt(cmd, argc, argv, &i, opts))) return 1;
        } else if (!dashdash && a[0] == '-' && a[1]) {
            *exitcode = vq_cli_usage(cmd, "unknown option %s", a);
            return 1;
        } else if (n == maxpos) {
            *exitcode = vq_cli_usage(cmd, "unexpected argument \"%s\"", a);
            return 1;
        } else {
            pos[n++] = a;
        }
    }
    if (npos) *npos = n;
    if (n >= minpos) return 0;
    *exitcode = vq_cli_usage(cmd, "missing argument (volq %s)", cmd->usage);
    return 1;
}
