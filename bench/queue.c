/* bench/queue: jobs through the whole path with no qemu-img.
 *
 * A domain of VOLQ_BENCH_QUEUE_DISKS (20,000) cheap disks already at compat
 * 1.1 is scanned and accepted in one bulk step (vq_queue_accept), then two
 * real volq-worker processes run every amend (lock, start, load the disk,
 * nothing to amend, finish, events, unlock).  Three Redis set-ups, each a
 * fresh redis-server: appendfsync everysec and always with the AOF on the
 * real disk (where the embedded Redis keeps it: the state folder), and always
 * on tmpfs (the fsync cost taken away, to show what is left).  Then, with idle
 * workers, the latency from an accept call to the job's start event.
 * The 20,000 disks live on tmpfs: only Redis's AOF place matters here (the
 * workers read the disks from the page cache either way), and making 60,000
 * files on this VM's shared disk took from 2 to 50 s. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/bench.h"
#include "volq/disk.h"
#include "volq/queue.h"

#define LATENCY_SAMPLES 200
#define DRAIN_TIMEOUT_S 120

typedef struct setup {
    const char *name;      /* figure suffix */
    const char *fsync;
    int tmpfs;
} setup;

typedef struct figures {
    double accept_s, scan_s, jobs_per_s, p50_ms, p99_ms;
    long long failed;
} figures;

static const char *root, *sd;
static char (*img_ids)[VQ_UUID_SIZE];
static size_t ndisks;

static int connect_queue(const char *url, vq_queue **q)
{
    vq_redis *r = NULL;
    vq_error err = {0};
    if (vq_redis_connect(url, 30000, &r, &err) || vq_queue_new(r, NULL, q, &err)) {
        b_note("queue: %s", err.text);
        return -1;
    }
    return 0;
}

/* What the accept of each run of scanned disks needs. */
typedef struct stream {
    vq_queue *q;
    const vq_domain *d;
    vq_disk_scan *scan;
    vq_accept_req *reqs;
    vq_accept_res *res;
    size_t runs;
    vq_error err;
} stream;

/* One run of loaded disks, accepted in one call while the scan goes on, as a
 * bulk upgrade does (scheduler/api_upgrade.c). */
static int accept_run(void *arg, size_t lo, size_t hi)
{
    stream *st = arg;
    for (size_t i = lo; i < hi; i++) {
        if (st->scan[i].rc || st->scan[i].check_rc) {
            st->err = st->scan[i].err;
            return -1;
        }
        st->reqs[i] = (vq_accept_req){.kind = "amend", .domain_id = st->d->id,
                                      .disk_id = st->scan[i].disk->id,
                                      .alias = st->scan[i].disk->alias};
    }
    st->runs++;
    int rc = vq_queue_accept(st->q, st->reqs + lo, hi - lo, st->res + lo, &st->err);
    for (size_t i = lo; rc == 0 && i < hi; i++)
        if (st->res[i].status != VQ_ACCEPT_QUEUED) rc = -1;
    return rc;
}

/* The scan (every disk loaded and checked on several threads) and the accept
 * of every disk, the runs of the scan accepted as they come: the path of a
 * bulk upgrade (vq_disk_load_stream). */
static int bulk_accept(vq_queue *q, figures *f)
{
    vq_domain *d = NULL;
    stream st = {.q = q};
    int64_t t0 = b_now_us();
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    if (vq_domain_open(root, sd, &d, &st.err) || vq_domain_images(d, &ids, &n, &st.err)) goto fail;
    st.d = d;
    st.reqs = calloc(n, sizeof *st.reqs);
    st.res = calloc(n, sizeof *st.res);
    st.scan = calloc(n, sizeof *st.scan);
    int rc = st.reqs && st.res && st.scan ? 0 : -1;
    if (rc == 0)
        rc = vq_disk_load_stream(d, (const char(*)[VQ_UUID_SIZE])ids, n, 0, st.scan, accept_run,
                                 &st);
    f->accept_s = (double)(b_now_us() - t0) / 1e6;
    b_note("bulk accept: %zu runs", st.runs);
    for (size_t i = 0; st.scan && i < n; i++) vq_disk_free(st.scan[i].disk);
    free(st.scan);
    free(st.reqs);
    free(st.res);
    free(ids);
    vq_domain_free(d);
    if (rc == 0) return 0;
fail:
    b_note("bulk accept failed: %s", st.err.text);
    return -1;
}

/* The scan alone, on the same threads: what the accept overlaps. */
static int scan_only(figures *f)
{
    vq_domain *d = NULL;
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    if (vq_domain_open(root, sd, &d, NULL) || vq_domain_images(d, &ids, &n, NULL)) return -1;
    vq_disk_scan *scan = calloc(n, sizeof *scan);
    int64_t t0 = b_now_us();
    if (scan) vq_disk_load_many(d, (const char(*)[VQ_UUID_SIZE])ids, n, 0, scan);
    f->scan_s = (double)(b_now_us() - t0) / 1e6;
    for (size_t i = 0; scan && i < n; i++) vq_disk_free(scan[i].disk);
    free(scan);
    free(ids);
    vq_domain_free(d);
    return scan ? 0 : -1;
}

/* Holds (SIGSTOP) or lets go (SIGCONT) the pool's worker processes. */
static void signal_workers(pid_t pool, int sig)
{
    pid_t kids[16];
    int n = b_children(pool, kids, 16);
    for (int i = 0; i < n; i++) kill(kids[i], sig);
}

static long long ended(redisContext *c)
{
    return b_redis_int(c, "ZCARD {volq}:st:succeeded") + b_redis_int(c, "ZCARD {volq}:st:failed");
}

static int drain(redisContext *c, long long want)
{
    int64_t deadline = b_now_us() + DRAIN_TIMEOUT_S * 1000000LL;
    while (ended(c) < want) {
        if (b_now_us() > deadline) {
            b_note("only %lld of %lld jobs ended in %d s", ended(c), want, DRAIN_TIMEOUT_S);
            return -1;
        }
        b_sleep_ms(2);
    }
    return 0;
}

/* The id of the newest event ("0-0" when none) into id. */
static void last_event(redisContext *c, char id[64])
{
    redisReply *rep = redisCommand(c, "XREVRANGE {volq}:events + - COUNT 1");
    snprintf(id, 64, "0-0");
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1)
        snprintf(id, 64, "%s", rep->element[0]->element[0]->str);
    if (rep) freeReplyObject(rep);
}

/* Reads events after since until job's success event; *start_us gets the
 * time its start event was read.  0 when both came. */
static int wait_job(redisContext *c, char since[64], const char *job, int64_t *start_us)
{
    *start_us = 0;
    for (int rounds = 0; rounds < 20; rounds++) {
        redisReply *rep = redisCommand(c, "XREAD COUNT 100 BLOCK 1000 STREAMS {volq}:events %s",
                                       since);
        int done = 0;
        if (!rep) return -1;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
            redisReply *evs = rep->element[0]->element[1];
            for (size_t i = 0; i < evs->elements; i++) {
                const char *json = evs->element[i]->element[1]->element[1]->str;
                snprintf(since, 64, "%s", evs->element[i]->element[0]->str);
                if (!strstr(json, job)) continue;
                if (strstr(json, "Started") && !*start_us) *start_us = b_now_us();
                if (strstr(json, "successfully")) done = 1;
            }
        }
        freeReplyObject(rep);
        if (done) return *start_us ? 0 : -1;
    }
    return -1;
}

/* accept -> "Started to amend" with idle workers, one job at a time. */
static int latency(vq_queue *q, redisContext *c, figures *f)
{
    double ms[LATENCY_SAMPLES];
    size_t n = 0;
    for (size_t i = 0; i < LATENCY_SAMPLES && i < ndisks; i++) {
        char since[64];
        vq_accept_req a = {.kind = "amend", .domain_id = sd, .disk_id = img_ids[i], .alias = "x"};
        vq_accept_res res;
        vq_error err = {0};
        last_event(c, since);
        b_sleep_ms(2); /* the workers are back in BLMOVE */
        int64_t t0 = b_now_us(), t1;
        if (vq_queue_accept(q, &a, 1, &res, &err) || wait_job(c, since, res.job_id, &t1)) {
            b_note("latency sample %zu: no start event: %s", i, err.text);
            return -1;
        }
        ms[n++] = (double)(t1 - t0) / 1000.0;
    }
    f->p50_ms = b_percentile(ms, n, 50);
    f->p99_ms = b_percentile(ms, n, 99);
    return 0;
}

/* Redis's own account of its commands (calls, usec per call), for profiling. */
static void commandstats(redisContext *c)
{
    redisReply *rep = redisCommand(c, "INFO commandstats");
    if (rep && rep->str) fprintf(stderr, "%s", rep->str);
    if (rep) freeReplyObject(rep);
}

/* CPU time of the worker pool's children. */
static int64_t workers_cpu_us(pid_t pool)
{
    pid_t kids[16];
    int n = b_children(pool, kids, 16);
    int64_t sum = 0;
    for (int i = 0; i < n; i++) sum += b_cpu_us(kids[i]);
    return sum;
}

static int run_setup(const setup *s, figures *f)
{
    char dir[PATH_MAX], log[PATH_MAX];
    b_redis rs;
    snprintf(dir, sizeof dir, "%s/queue-redis-%s%s", s->tmpfs ? b_tmpfs_dir() : b_work_dir(),
             s->fsync, s->tmpfs ? "-tmpfs" : "");
    b_rmrf(dir);
    snprintf(log, sizeof log, "%s/queue-worker-%s.log", b_work_dir(), s->name);
    unlink(log);
    if (b_redis_start(&rs, dir, s->fsync)) return -1;
    redisContext *c = b_redis_connect(&rs);
    vq_queue *q = NULL;
    pid_t w = c ? b_start_workers(rs.url, root, 2, log, NULL, c) : -1;
    int rc = w > 0 && connect_queue(rs.url, &q) == 0 ? 0 : -1;
    int64_t t1 = 0, r0 = 0, w0 = 0;
    /* The workers are held while the disks are accepted: the accept and the
     * processing are measured apart (the workers would start on the first
     * runs while the rest is accepted, sharing the two cores). */
    if (rc == 0) rc = scan_only(f);
    if (rc == 0) signal_workers(w, SIGSTOP);
    if (rc == 0) rc = bulk_accept(q, f);
    if (w > 0) signal_workers(w, SIGCONT);
    if (rc == 0) {
        t1 = b_now_us();
        r0 = b_cpu_us(rs.pid);
        w0 = workers_cpu_us(w);
    }
    if (rc == 0 && (rc = drain(c, (long long)ndisks)) == 0) {
        f->jobs_per_s = (double)ndisks / ((double)(b_now_us() - t1) / 1e6);
        b_note("%s: CPU per job: redis-server %.1f us, worker processes %.1f us", s->name,
               (double)(b_cpu_us(rs.pid) - r0) / (double)ndisks,
               (double)(workers_cpu_us(w) - w0) / (double)ndisks);
    }
    f->failed = b_redis_int(c, "ZCARD {volq}:st:failed");
    if (rc == 0 && getenv("VOLQ_BENCH_COMMANDSTATS")) commandstats(c);
    if (rc == 0) rc = latency(q, c, f);
    if (w > 0) b_stop(w, SIGTERM, 10000);
    vq_queue_free(q);
    if (c) redisFree(c);
    b_redis_stop(&rs);
    b_rmrf(dir);
    return rc;
}

static void report(const setup *s, const figures *f)
{
    char name[96];
    snprintf(name, sizeof name, "queue_jobs_per_s_%s", s->name);
    b_result(name, f->jobs_per_s, "jobs/s");
    snprintf(name, sizeof name, "queue_bulk_accept_s_%s", s->name);
    b_result(name, f->accept_s, "s");
    snprintf(name, sizeof name, "queue_scan_s_%s", s->name);
    b_result(name, f->scan_s, "s");
    snprintf(name, sizeof name, "queue_start_latency_p50_ms_%s", s->name);
    b_result(name, f->p50_ms, "ms");
    snprintf(name, sizeof name, "queue_start_latency_p99_ms_%s", s->name);
    b_result(name, f->p99_ms, "ms");
    if (f->failed) b_note("%s: %lld jobs failed", s->name, f->failed);
}

int main(void)
{
    static const setup setups[] = {
        {"everysec", "everysec", 0},
        {"always", "always", 0},
        {"always_tmpfs", "always", 1},
    };
    enum { NSETUPS = sizeof setups / sizeof setups[0] };
    figures f[NSETUPS] = {{0}};
    char dir[PATH_MAX], sdbuf[VQ_UUID_SIZE];
    const char *env = getenv("VOLQ_BENCH_QUEUE_DISKS");
    ndisks = env && atol(env) > 0 ? (size_t)atol(env) : 20000;
    if (b_subdir(b_tmpfs_dir(), "queue-domains", dir, sizeof dir)) return 1;
    b_rmrf(dir);
    b_subdir(b_tmpfs_dir(), "queue-domains", dir, sizeof dir);
    int64_t t0 = b_now_us();
    if (b_cheap_domain(dir, ndisks, sdbuf, &img_ids)) return 1;
    root = dir;
    sd = sdbuf;
    b_note("made %zu cheap disks in %.2f s under %s", ndisks, (double)(b_now_us() - t0) / 1e6, dir);
    int ok = 1;
    const char *only = getenv("VOLQ_BENCH_QUEUE_SETUPS"); /* e.g. "everysec": for profiling */
    for (int i = 0; i < NSETUPS; i++) {
        if (only && *only && !strstr(only, setups[i].name)) continue;
        if (run_setup(&setups[i], &f[i])) {
            b_note("setup %s failed", setups[i].name);
            ok = 0;
            continue;
        }
        report(&setups[i], &f[i]);
        ok &= f[i].failed == 0;
    }
    b_rmrf(dir);
    b_rmrf(b_tmpfs_dir());
    free(img_ids);
    b_target(ok && f[0].jobs_per_s >= 15000 && f[1].jobs_per_s >= 8000 && f[0].accept_s <= 0.5 &&
                 f[1].accept_s <= 0.5 && f[0].p99_ms <= 5 && f[1].p99_ms <= 5,
             "everysec %.0f >= 15000 jobs/s, always (disk) %.0f >= 8000 jobs/s, bulk accept of "
             "%zu disks %.2f s <= 0.5 s, start latency p99 %.2f ms <= 5 ms",
             f[0].jobs_per_s, f[1].jobs_per_s, ndisks,
             f[0].accept_s > f[1].accept_s ? f[0].accept_s : f[1].accept_s,
             f[0].p99_ms > f[1].p99_ms ? f[0].p99_ms : f[1].p99_ms);
    return 0;
}
