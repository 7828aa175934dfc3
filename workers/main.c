/* volq-worker: options, then the pool of worker processes. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "volq/config.h"
#include "volq/log.h"
#include "worker_int.h"

static const char usage[] =
    "usage: volq-worker [options]\n"
    "Runs volq jobs (amend, create-volume) taken from Redis.\n"
    "\n"
    "  --redis URL          redis://[user:pass@]host:port/db or unix:///path (VOLQ_REDIS),\n"
    "                       or sentinel://[user:pass@]host:port,host:port/MASTER;\n"
    "                       default: the embedded Redis of the state folder\n"
    "  --state DIR          state folder of the embedded Redis (VOLQ_STATE, default .volq)\n"
    "  --domains DIR        the domains root (VOLQ_DOMAINS, default /rhev/data-center/mnt)\n"
    "  --processes N        worker processes (VOLQ_PROCESSES, default 2 per core)\n"
    "  --qemu-timeout SEC   limit for one qemu-img run (VOLQ_QEMU_TIMEOUT, default 3600)\n"
    "  --log-level LEVEL    debug, info, notice, warn (default info)\n"
    "  --log-format FORMAT  text or json (default text)\n"
    "  --help, --version\n"
    "\n"
    "SIGTERM: each process finishes its running job (and the next, when already\n"
    "started), then exits; a second SIGTERM stops at once (the jobs run again).\n"
    "A killed process's jobs are put back at once.\n";

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

typedef struct flags {
    const char *redis, *state, *domains, *procs, *timeout, *level, *format;
} flags;

static int parse_flags(int argc, char **argv, flags *f, vq_error *err)
{
    const vq_flag table[] = {
        {"redis", &f->redis},         {"state", &f->state},       {"domains", &f->domains},
        {"processes", &f->procs},     {"qemu-timeout", &f->timeout},
        {"log-level", &f->level},     {"log-format", &f->format}, {NULL, NULL},
    };
    return vq_config_flags(argc, argv, table, "volq-worker", usage, err);
}

static int fail(const char *msg, const char *arg)
{
    fprintf(stderr, "volq-worker: %s%s%s; see volq-worker --help\n", msg, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

int main(int argc, char **argv)
{
    flags f = {0};
    vq_error ferr = {0};
    if (parse_flags(argc, argv, &f, &ferr)) return fail(ferr.text, NULL);

    vq_error lerr = {0};
    if (vq_config_log("worker", f.level, f.format, &lerr)) return fail(lerr.text, NULL);

    vq_worker_opts o = {.block_ms = 1000};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    /* qemu-img amend mostly waits on fsync; two per core keep the cores busy. */
    o.processes = cores > 0 ? (int)cores * 2 : 2;
    if (vq_config_str(f.procs, "VOLQ_PROCESSES", NULL) &&
        parse_int(vq_config_str(f.procs, "VOLQ_PROCESSES", NULL), 1, 256, &o.processes))
        return fail("--processes takes a number from 1 to 256", vq_config_str(f.procs, "VOLQ_PROCESSES", ""));
    int timeout_s = 3600;
    if (vq_config_str(f.timeout, "VOLQ_QEMU_TIMEOUT", NULL) &&
        parse_int(vq_config_str(f.timeout, "VOLQ_QEMU_TIMEOUT", NULL), 1, 86400, &timeout_s))
        return fail("--qemu-timeout takes seconds from 1 to 86400", NULL);
    o.qemu_timeout_ms = timeout_s * 1000;
    o.domains_root = vq_config_str(f.domains, "VOLQ_DOMAINS", "/rhev/data-center/mnt");

    vq_error err = {0};
    if (vq_redis_resolve(f.redis, f.state, o.redis_url, sizeof o.redis_url, &err)) {
        fprintf(stderr, "volq-worker: %s\n", err.text);
        return err.code == VQ_EINVAL ? 2 : 3;
    }
    return vq_worker_pool_run_(&o);
}
