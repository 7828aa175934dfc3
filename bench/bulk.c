/* bench/bulk: `volq upgrade-domain SD --wait` against the bare limit.
 *
 * A V4 domain of 200 disks x 3 volumes (compat 0.10, 1 MiB of data each) is
 * made once; every run works on a fresh copy of it (cp -a, then sync).  Each
 * round runs, in this order:
 *   bare   xargs -P2, per disk a serial `qemu-img amend -f qcow2 -o compat=1.1`
 *          of its volumes, base first;
 *   volq2  `volq up --workers 2` (embedded Redis, AOF in the state folder on
 *          the real disk), then `volq upgrade-domain SD --wait` timed from its
 *          start to its exit;
 *   volq   the same with volq-worker's default process count.
 * The ratios volq/bare are taken within a round (the machine is shared: a
 * later round may run slower as a whole); the figure is the median over
 * VOLQ_BENCH_BULK_ROUNDS rounds (5: single runs move by 10-20% on a shared
 * machine).  After each volq run every volume must be
 * at compat 1.1 and /metrics must count exactly 600 qemu-img spawns. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/bench.h"
#include "lib/stack.h"
#include "volq/disk.h"

#define DISKS 200
#define CHAIN 3
#define MAX_ROUNDS 9

static char work[2048], proto[3072], sd[VQ_UUID_SIZE];
static double cli_before; /* CPU of the bench's waited-for children so far (s) */
static int spawn_mismatch;
static int round_no; /* copies are kept until the end: deleting 1,800 files between runs
                        would make the next run's new inodes (the .meta rewrites) slower */

/* cp -a proto -> name, then sync: the copy's dirty pages must not be written
 * during the timed run. */
static int fresh_copy(const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", work, name);
    b_rmrf(out);
    const char *cp[] = {"cp", "-a", proto, out, NULL};
    const char *sync[] = {"sync", NULL};
    if (b_run("/bin/cp", cp, NULL) != 0) return -1;
    return b_run("/bin/sync", sync, NULL);
}

/* Per disk one line: the image folder, then its volumes base first. */
static int write_list(const char *root, const char *list)
{
    vq_domain *d = NULL;
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    vq_error err = {0};
    FILE *f = fopen(list, "w");
    int rc = f && vq_domain_open(root, sd, &d, &err) == 0 &&
                     vq_domain_images(d, &ids, &n, &err) == 0 ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        vq_disk *disk = NULL;
        if ((rc = vq_disk_load(d, ids[i], &disk, &err))) break;
        fprintf(f, "%s/images/%s", d->path, disk->id);
        for (size_t v = disk->nvols; v-- > 0;) fprintf(f, " %s", disk->vols[v].id);
        fputc('\n', f);
        vq_disk_free(disk);
    }
    free(ids);
    vq_domain_free(d);
    if (f && fclose(f)) rc = -1;
    return rc;
}

/* Volumes still at compat 0.10 under root (0 after a complete upgrade). */
static long left_v2(const char *root)
{
    vq_domain *d = NULL;
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    long left = 0;
    if (vq_domain_open(root, sd, &d, NULL) || vq_domain_images(d, &ids, &n, NULL)) left = -1;
    for (size_t i = 0; left >= 0 && i < n; i++) {
        vq_disk *disk = NULL;
        if (vq_disk_load(d, ids[i], &disk, NULL)) left = -1;
        else left += (long)vq_disk_count_v2(disk);
        vq_disk_free(disk);
    }
    free(ids);
    vq_domain_free(d);
    return left;
}

static double run_bare(void)
{
    char root[PATH_MAX], list[PATH_MAX + 16];
    char name[32];
    snprintf(name, sizeof name, "bare-%d", round_no);
    if (fresh_copy(name, root, sizeof root)) return -1;
    snprintf(list, sizeof list, "%s.list", root);
    if (write_list(root, list)) return -1;
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd,
             "xargs -P2 -L1 sh -c 'cd \"$1\" && shift && for v; do "
             "qemu-img amend -f qcow2 -o compat=1.1 \"$v\" || exit 1; done' _ < '%s'",
             list);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    double cpu0 = (double)b_cpu_children_us(getpid()) / 1e6;
    int64_t t0 = b_now_us();
    int rc = b_run("/bin/sh", argv, NULL);
    double s = (double)(b_now_us() - t0) / 1e6;
    b_note("bare: CPU %.2f s (xargs, sh, qemu-img)", (double)b_cpu_children_us(getpid()) / 1e6 - cpu0);
    if (rc != 0 || left_v2(root) != 0) {
        b_note("bare run failed (exit %d)", rc);
        return -1;
    }
    return s;
}

/* The value of a metric line "name value" in text, or -1. */
static double metric(const char *text, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, len) == 0 && p[len] == ' ') return atof(p + len + 1);
    return -1;
}

static int wait_healthy(int port, pid_t up)
{
    for (int i = 0; i < 1000; i++) {
        if (b_http_get(port, "/healthz", NULL, NULL) == 200) return 0;
        if (kill(up, 0)) break;
        b_sleep_ms(10);
    }
    return -1;
}

/* CPU time (us) of the parts of a `volq up` stack. */
typedef struct cpu_split {
    int64_t qemu, workers, redis, sched;
} cpu_split;

static void cpu_of_stack(pid_t up, const char *state, cpu_split *c)
{
    pid_t kids[8], procs[64];
    memset(c, 0, sizeof *c);
    int n = b_children(up, kids, 8);
    for (int i = 0; i < n; i++) {
        int m = b_children(kids[i], procs, 64);
        if (m == 0) c->sched += b_cpu_us(kids[i]); /* the scheduler has no children */
        for (int k = 0; k < m; k++) {
            c->workers += b_cpu_us(procs[k]);
            c->qemu += b_cpu_children_us(procs[k]);
        }
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/redis.pid", state);
    FILE *f = fopen(path, "r");
    int rpid = 0;
    if (f && fscanf(f, "%d", &rpid) == 1 && rpid > 0) c->redis = b_cpu_us(rpid);
    if (f) fclose(f);
}

/* volq up (workers: NULL for the default), then the timed upgrade. */
static double run_volq(const char *workers, const char *tag)
{
    char root[PATH_MAX], state[PATH_MAX], api[64], log[PATH_MAX + 16], out[PATH_MAX + 16];
    char name[32];
    snprintf(name, sizeof name, "volq-%s-%d", tag, round_no);
    if (fresh_copy(name, root, sizeof root)) return -1;
    snprintf(state, sizeof state, "%s/state-%s-%d", work, tag, round_no);
    b_rmrf(state);
    int port = t_free_port();
    snprintf(api, sizeof api, "http://127.0.0.1:%d", port);
    snprintf(log, sizeof log, "%s/up-%s.log", work, tag);
    snprintf(out, sizeof out, "%s/upgrade-%s.out", work, tag);
    unlink(log);
    unlink(out);
    const char *up[] = {NULL, "--api", api, "up", "--state", state, "--domains", root,
                        workers ? "--workers" : NULL, workers, NULL};
    pid_t pid = b_spawn_volq("volq", up, NULL, log);
    if (pid < 0 || wait_healthy(port, pid)) {
        b_note("volq up did not start (%s)", log);
        return -1;
    }
    b_sleep_ms(300); /* every worker process registered and waiting */
    const char *upgrade[] = {NULL, "--api", api, "upgrade-domain", sd, "--wait", NULL};
    cpu_split c0, c1;
    cpu_of_stack(pid, state, &c0);
    cli_before = (double)b_cpu_children_us(getpid()) / 1e6;
    int64_t t0 = b_now_us();
    int rc = b_wait(b_spawn_volq("volq", upgrade, NULL, out));
    double s = (double)(b_now_us() - t0) / 1e6;
    cpu_of_stack(pid, state, &c1);
    b_note("volq %s: CPU s: qemu-img %.2f, workers %.2f, redis %.2f, scheduler %.2f, "
           "volq upgrade-domain %.2f", tag, (double)(c1.qemu - c0.qemu) / 1e6,
           (double)(c1.workers - c0.workers) / 1e6, (double)(c1.redis - c0.redis) / 1e6,
           (double)(c1.sched - c0.sched) / 1e6, (double)b_cpu_children_us(getpid()) / 1e6 - cli_before);
    char *body = NULL;
    double spawns = -1;
    if (b_http_get(port, "/metrics", &body, NULL) == 200) spawns = metric(body, "volq_qemu_img_runs_total");
    free(body);
    b_stop(pid, SIGTERM, 30000);
    long left = left_v2(root);
    if (rc != 0 || left != 0) {
        b_note("volq %s: upgrade-domain exited %d, %ld volumes left at 0.10 (%s, %s)", tag, rc,
               left, out, log);
        return -1;
    }
    if (spawns != DISKS * CHAIN) {
        b_note("volq %s: /metrics counts %.0f qemu-img spawns, expected %d", tag, spawns,
               DISKS * CHAIN);
        spawn_mismatch = 1;
    }
    return s;
}

static double median(double *v, int n)
{
    return b_percentile(v, (size_t)n, 50);
}

int main(void)
{
    const char *env = getenv("VOLQ_BENCH_BULK_ROUNDS");
    int rounds = env && atoi(env) > 0 ? atoi(env) : 5;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    double bare[MAX_ROUNDS], v2[MAX_ROUNDS], vd[MAX_ROUNDS], r2[MAX_ROUNDS], rd[MAX_ROUNDS];
    if (b_subdir(b_work_dir(), "bulk", work, sizeof work)) return 1;
    b_rmrf(work);
    b_subdir(b_work_dir(), "bulk", work, sizeof work);
    if (b_subdir(work, "proto", proto, sizeof proto) ||
        b_mkdomain(proto, "--version 4 --disks 200 --chain 3 --data-mib 1", sd))
        return 1;
    int ok = 1;
    for (int r = 0; r < rounds && ok; r++) {
        round_no = r;
        bare[r] = run_bare();
        v2[r] = run_volq("2", "p2");
        vd[r] = run_volq(NULL, "default");
        ok = bare[r] > 0 && v2[r] > 0 && vd[r] > 0;
        r2[r] = v2[r] / bare[r];
        rd[r] = vd[r] / bare[r];
        b_note("round %d: bare %.2f s, volq --processes 2 %.2f s (%.3f), default %.2f s (%.3f)",
               r + 1, bare[r], v2[r], r2[r], vd[r], rd[r]);
    }
    if (!ok) {
        b_target(0, "bulk upgrade did not complete");
        return 1;
    }
    b_result("bulk_bare_s", median(bare, rounds), "s");
    b_result("bulk_volq_p2_s", median(v2, rounds), "s");
    b_result("bulk_volq_default_s", median(vd, rounds), "s");
    double m2 = median(r2, rounds), md = median(rd, rounds);
    b_result("bulk_ratio_p2", m2, "x");
    b_result("bulk_ratio_default", md, "x");
    b_result("bulk_rounds", rounds, "rounds");
    b_rmrf(work);
    b_target(!spawn_mismatch && m2 <= 1.05 && md <= 0.95,
             "volq/bare %.3f <= 1.05 with --processes 2, %.3f <= 0.95 with the default "
             "(median of %d rounds), 600 spawns counted",
             m2, md, rounds);
    return 0;
}
