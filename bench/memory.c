/* bench/memory: resident memory of volq-scheduler and of one volq-worker
 * process, idle and loaded, and Redis memory per job.
 *
 * 1. Redis (AOF always), the scheduler, `volq-worker --processes 2`: RSS
 *    of the scheduler and of each worker process at rest (after a few
 *    requests).
 * 2. VOLQ_BENCH_MEMORY_JOBS (100,000) amend jobs accepted (10,000 per call;
 *    disks that need not exist, the workers are stopped first so they stay
 *    queued): used_memory per queued job (its hash, its lock, its list entry).
 *    Then the scheduler serves what a busy operator asks: /api/status,
 *    /metrics, /api/jobs?limit=50, and the largest list the CLI asks for
 *    (limit=10000, what `upgrade-domain --wait` reads); its RSS then.
 * 3. A fresh Redis: 20,000 cheap disks (compat 1.1 already) accepted and run
 *    by the 2 worker processes: used_memory per finished job kept (its hash
 *    and its entry in st:succeeded; the audit events are counted apart, their
 *    stream is capped at VOLQ_EVENTS_MAX), and the worker processes' RSS
 *    after. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/bench.h"
#include "volq/disk.h"
#include "volq/queue.h"

#define PER_CALL 10000
#define FINISHED 20000

static char dir[2048];

static vq_queue *queue_of(const char *url)
{
    vq_redis *r = NULL;
    vq_queue *q = NULL;
    vq_error err = {0};
    if (vq_redis_connect(url, 30000, &r, &err) || vq_queue_new(r, NULL, &q, &err))
        b_note("memory: %s", err.text);
    return q;
}

/* n amend jobs of made-up disks, PER_CALL per accept. */
static int fill(vq_queue *q, size_t n)
{
    static vq_accept_req reqs[PER_CALL];
    static vq_accept_res res[PER_CALL];
    static char disks[PER_CALL][VQ_UUID_SIZE];
    char sd[VQ_UUID_SIZE];
    vq_uuid_new(sd);
    for (size_t done = 0; done < n; done += PER_CALL) {
        size_t k = n - done < PER_CALL ? n - done : PER_CALL;
        for (size_t i = 0; i < k; i++) {
            vq_uuid_new(disks[i]);
            reqs[i] = (vq_accept_req){.kind = "amend", .domain_id = sd, .disk_id = disks[i],
                                      .alias = "vm-0001_Disk1"};
        }
        vq_error err = {0};
        if (vq_queue_accept(q, reqs, k, res, &err)) {
            b_note("accept: %s", err.text);
            return -1;
        }
    }
    return 0;
}

/* The largest RSS (KiB) among the worker pool's children. */
static long worker_rss(pid_t pool)
{
    pid_t kids[16];
    int n = b_children(pool, kids, 16);
    long max = -1;
    for (int i = 0; i < n; i++) {
        long r = b_rss_kib(kids[i]);
        if (r > max) max = r;
    }
    return max;
}

static void requests(int port, const char *const *paths)
{
    for (; *paths; paths++) {
        char *body = NULL;
        int st = b_http_get(port, *paths, &body, NULL);
        if (st != 200) b_note("GET %s answered %d", *paths, st);
        free(body);
    }
}

typedef struct figures {
    double sched_idle, sched_loaded, worker_idle, worker_after, pool_parent;
    double per_queued, per_finished, per_event;
} figures;

/* Steps 1 and 2. */
static int queued_part(size_t njobs, figures *f)
{
    char rd[PATH_MAX], doms[PATH_MAX], slog[PATH_MAX], wlog[PATH_MAX], api[64];
    snprintf(rd, sizeof rd, "%s/redis-queued", dir);
    b_subdir(dir, "domains", doms, sizeof doms);
    snprintf(slog, sizeof slog, "%s/scheduler.log", dir);
    snprintf(wlog, sizeof wlog, "%s/worker.log", dir);
    b_redis rs;
    int port = 0, rc = -1;
    if (b_redis_start(&rs, rd, "always")) return -1;
    redisContext *c = b_redis_connect(&rs);
    vq_queue *q = queue_of(rs.url);
    pid_t sched = b_start_scheduler(rs.url, doms, slog, NULL, api, sizeof api, &port);
    pid_t pool = c ? b_start_workers(rs.url, doms, 2, wlog, NULL, c) : -1;
    static const char *const light[] = {"/api/status", "/metrics", "/api/jobs?limit=50", NULL};
    static const char *const heavy[] = {"/api/status", "/metrics", "/api/jobs?limit=50",
                                        "/api/jobs?limit=10000",
                                        "/api/jobs?state=queued&limit=10000", NULL};
    if (q && sched > 0 && pool > 0) {
        requests(port, light);
        b_sleep_ms(200);
        f->sched_idle = (double)b_rss_kib(sched) / 1024;
        f->worker_idle = (double)worker_rss(pool) / 1024;
        f->pool_parent = (double)b_rss_kib(pool) / 1024;
        b_stop(pool, SIGTERM, 10000);
        pool = -1;
        long long m0 = b_redis_info(c, "memory", "used_memory");
        if (fill(q, njobs) == 0) {
            long long m1 = b_redis_info(c, "memory", "used_memory");
            f->per_queued = (double)(m1 - m0) / (double)njobs;
            requests(port, heavy);
            requests(port, heavy);
            f->sched_loaded = (double)b_rss_kib(sched) / 1024;
            rc = 0;
        }
    }
    if (pool > 0) b_stop(pool, SIGTERM, 10000);
    if (sched > 0) b_stop(sched, SIGTERM, 10000);
    vq_queue_free(q);
    if (c) redisFree(c);
    b_redis_stop(&rs);
    b_rmrf(rd);
    return rc;
}

/* Every disk of the cheap domain accepted in one call. */
static int accept_domain(vq_queue *q, const char *root, const char *sd)
{
    vq_domain *d = NULL;
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    if (vq_domain_open(root, sd, &d, NULL) || vq_domain_images(d, &ids, &n, NULL)) return -1;
    vq_accept_req *reqs = calloc(n, sizeof *reqs);
    vq_accept_res *res = calloc(n, sizeof *res);
    for (size_t i = 0; reqs && i < n; i++)
        reqs[i] = (vq_accept_req){.kind = "amend", .domain_id = sd, .disk_id = ids[i],
                                  .alias = "vm-0001_Disk1"};
    int rc = reqs && res ? vq_queue_accept(q, reqs, n, res, NULL) : -1;
    free(reqs);
    free(res);
    free(ids);
    vq_domain_free(d);
    return rc;
}

/* Step 3. */
static int finished_part(figures *f)
{
    char rd[PATH_MAX], doms[PATH_MAX], wlog[PATH_MAX], sd[VQ_UUID_SIZE];
    snprintf(rd, sizeof rd, "%s/redis-finished", dir);
    snprintf(wlog, sizeof wlog, "%s/worker2.log", dir);
    b_subdir(b_tmpfs_dir(), "memory-domains", doms, sizeof doms);
    if (b_cheap_domain(doms, FINISHED, sd, NULL)) return -1;
    b_redis rs;
    int rc = -1;
    if (b_redis_start(&rs, rd, "always")) return -1;
    redisContext *c = b_redis_connect(&rs);
    vq_queue *q = queue_of(rs.url);
    pid_t pool = c ? b_start_workers(rs.url, doms, 2, wlog, NULL, c) : -1;
    long long m0 = c ? b_redis_info(c, "memory", "used_memory") : -1;
    if (q && pool > 0 && accept_domain(q, doms, sd) == 0) {
        for (int i = 0; i < 120000 && b_redis_int(c, "ZCARD {volq}:st:succeeded") < FINISHED; i++)
            b_sleep_ms(5);
        b_sleep_ms(100);
        long long m1 = b_redis_info(c, "memory", "used_memory");
        long long ev = b_redis_int(c, "MEMORY USAGE {volq}:events SAMPLES 0");
        long long nev = b_redis_int(c, "XLEN {volq}:events");
        f->per_finished = (double)(m1 - m0 - ev) / FINISHED;
        f->per_event = nev > 0 ? (double)ev / (double)nev : 0;
        f->worker_after = (double)worker_rss(pool) / 1024;
        rc = b_redis_int(c, "ZCARD {volq}:st:succeeded") == FINISHED ? 0 : -1;
        if (rc) b_note("only %lld of %d jobs succeeded", b_redis_int(c, "ZCARD {volq}:st:succeeded"),
                       FINISHED);
    }
    if (pool > 0) b_stop(pool, SIGTERM, 10000);
    vq_queue_free(q);
    if (c) redisFree(c);
    b_redis_stop(&rs);
    b_rmrf(rd);
    b_rmrf(doms);
    b_rmrf(b_tmpfs_dir());
    return rc;
}

int main(void)
{
    const char *e = getenv("VOLQ_BENCH_MEMORY_JOBS");
    size_t njobs = e && atol(e) > 0 ? (size_t)atol(e) : 100000;
    figures f = {0};
    if (b_subdir(b_work_dir(), "memory", dir, sizeof dir)) return 1;
    b_rmrf(dir);
    b_subdir(b_work_dir(), "memory", dir, sizeof dir);
    int ok = queued_part(njobs, &f) == 0 && finished_part(&f) == 0;
    b_rmrf(dir);
    if (!ok) {
        b_target(0, "the memory run failed");
        return 1;
    }
    b_result("memory_scheduler_idle", f.sched_idle, "MiB");
    b_result("memory_scheduler_loaded", f.sched_loaded, "MiB");
    b_result("memory_worker_idle", f.worker_idle, "MiB");
    b_result("memory_worker_after_20000_jobs", f.worker_after, "MiB");
    b_result("memory_worker_pool_parent", f.pool_parent, "MiB");
    b_result("memory_redis_per_queued_job", f.per_queued, "bytes");
    b_result("memory_redis_per_finished_job", f.per_finished, "bytes");
    b_result("memory_redis_per_event", f.per_event, "bytes");
    double worker = f.worker_idle > f.worker_after ? f.worker_idle : f.worker_after;
    b_target(f.sched_idle <= 16 && f.sched_loaded <= 64 && worker <= 8 && f.per_queued <= 512 &&
                 f.per_finished <= 512,
             "scheduler %.1f <= 16 MiB idle, %.1f <= 64 MiB with %zu jobs queued; worker %.1f <= 8 "
             "MiB; Redis %.0f <= 512 bytes per queued job, %.0f <= 512 per finished job",
             f.sched_idle, f.sched_loaded, njobs, worker, f.per_queued, f.per_finished);
    return 0;
}
