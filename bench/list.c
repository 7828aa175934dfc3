/* bench/list: `volq disks SD --json` on a domain of VOLQ_BENCH_LIST_DISKS
 * (10,000) disks, against a loop of `qemu-img info --output=json` over the
 * same leaves (what a script without volq would run to learn each disk's
 * compat level).
 *
 * The disks are cheap ones (one compat 1.1 qcow2 volume each, see
 * b_cheap_domain).  The CLI runs VOLQ_BENCH_LIST_RUNS (3) times against a
 * real scheduler and Redis; the best run counts.  The qemu-img loop runs
 * serially over the first VOLQ_BENCH_LIST_INFO (1,000) leaves and is scaled to
 * all of them (it grows linearly: one process per leaf); set it to the disk
 * count for the whole loop. */
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/bench.h"
#include "volq/disk.h"

static size_t env_size(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && atol(v) > 0 ? (size_t)atol(v) : def;
}

/* `volq disks SD --json` once: seconds, or -1; checks the count. */
static double list_once(const char *api, const char *sd, const char *out, size_t want)
{
    const char *argv[] = {NULL, "--api", api, "disks", sd, "--json", NULL};
    unlink(out);
    int64_t t0 = b_now_us();
    int rc = b_wait(b_spawn_volq("volq", argv, NULL, out));
    double s = (double)(b_now_us() - t0) / 1e6;
    json_t *arr = json_load_file(out, 0, NULL);
    size_t n = json_array_size(arr);
    json_decref(arr);
    if (rc != 0 || n != want) {
        b_note("volq disks exited %d with %zu disks (%zu expected; %s)", rc, n, want, out);
        return -1;
    }
    return s;
}

/* qemu-img info of the first n leaves, one after the other: seconds or -1. */
static double info_loop(const char *root, const char *sd, char (*ids)[VQ_UUID_SIZE], size_t n)
{
    vq_domain *d = NULL;
    if (vq_domain_open(root, sd, &d, NULL)) return -1;
    char path[PATH_MAX];
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        vq_disk *disk = NULL;
        if (vq_disk_load(d, ids[i], &disk, NULL) || !disk->nvols) {
            vq_disk_free(disk);
            total = -1;
            break;
        }
        snprintf(path, sizeof path, "%s/images/%s/%s", d->path, disk->id, disk->vols[0].id);
        vq_disk_free(disk);
        const char *argv[] = {"qemu-img", "info", "--output=json", path, NULL};
        int64_t t0 = b_now_us();
        int rc = b_run("/usr/bin/qemu-img", argv, NULL);
        total += (double)(b_now_us() - t0) / 1e6;
        if (rc != 0) {
            total = -1;
            break;
        }
    }
    vq_domain_free(d);
    return total;
}

int main(void)
{
    size_t ndisks = env_size("VOLQ_BENCH_LIST_DISKS", 10000);
    size_t ninfo = env_size("VOLQ_BENCH_LIST_INFO", 1000);
    size_t runs = env_size("VOLQ_BENCH_LIST_RUNS", 3);
    if (ninfo > ndisks) ninfo = ndisks;
    char dir[2048], rdir[3072], log[PATH_MAX], out[PATH_MAX], api[64];
    char sd[VQ_UUID_SIZE];
    char(*ids)[VQ_UUID_SIZE] = NULL;
    if (b_subdir(b_work_dir(), "list", dir, sizeof dir)) return 1;
    b_rmrf(dir);
    b_subdir(b_work_dir(), "list", dir, sizeof dir);
    b_subdir(dir, "domains", rdir, sizeof rdir);
    if (b_cheap_domain(rdir, ndisks, sd, &ids)) return 1;
    b_redis rs;
    char rd[PATH_MAX];
    snprintf(rd, sizeof rd, "%s/redis", dir);
    snprintf(log, sizeof log, "%s/scheduler.log", dir);
    snprintf(out, sizeof out, "%s/disks.json", dir);
    int port = 0;
    pid_t sched = -1;
    if (b_redis_start(&rs, rd, "always") == 0)
        sched = b_start_scheduler(rs.url, rdir, log, NULL, api, sizeof api, &port);
    double best = -1;
    for (size_t r = 0; sched > 0 && r < runs; r++) {
        double s = list_once(api, sd, out, ndisks);
        b_note("volq disks --json run %zu: %.3f s", r + 1, s);
        if (s > 0 && (best < 0 || s < best)) best = s;
    }
    long rss = sched > 0 ? b_rss_kib(sched) : -1;
    if (sched > 0) b_stop(sched, SIGTERM, 10000);
    b_redis_stop(&rs);
    double loop = info_loop(rdir, sd, ids, ninfo);
    double loop_all = loop > 0 ? loop * (double)ndisks / (double)ninfo : -1;
    free(ids);
    b_rmrf(dir);
    if (best < 0 || loop < 0) {
        b_target(0, "volq disks or the qemu-img loop failed");
        return 1;
    }
    b_result("list_disks", (double)ndisks, "disks");
    b_result("list_volq_disks_json_s", best, "s");
    b_result("list_qemu_img_info_loop_s", loop_all, "s");
    b_result("list_qemu_img_info_measured", (double)ninfo, "leaves");
    b_result("list_speedup", loop_all / best, "x");
    b_result("list_scheduler_rss_after", (double)rss / 1024.0, "MiB");
    b_target(best <= 1.0 && loop_all / best >= 50,
             "volq disks --json on %zu disks %.3f s <= 1 s, %.0fx >= 50x faster than the "
             "qemu-img info loop",
             ndisks, best, loop_all / best);
    return 0;
}
