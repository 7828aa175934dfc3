/* bench/recovery: the time from `kill -9` of a worker process busy with a job
 * until that job runs again (its next "Started to amend" event is read).
 *
 * Two worker processes; the jobs are amends of one-volume disks (compat
 * 0.10), made long by VOLQ_QEMU_IMG pointing at a wrapper that sleeps 2 s
 * before it runs the real qemu-img.  For each of VOLQ_BENCH_RECOVERY_ROUNDS
 * (5) rounds: one job is accepted, the process that starts it (its "w" field)
 * is killed with SIGKILL once its qemu-img runs, and the clock runs until the
 * job's start event comes again.  The pool parent notices the death at once
 * (SIGCHLD), puts the job back at the front of the queue, and the idle
 * process takes it.  The worst round is the figure. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/bench.h"
#include "volq/disk.h"
#include "volq/queue.h"

#define MAX_ROUNDS 20

static char dir[2048];

static int wrapper(char *path, size_t sz)
{
    snprintf(path, sz, "%s/slow-qemu-img", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "#!/bin/sh\nsleep 2\nexec /usr/bin/qemu-img \"$@\"\n");
    return fclose(f) || chmod(path, 0755) ? -1 : 0;
}

/* Waits for a start event of job after since; 0 when it came. */
static int wait_start(redisContext *c, char since[64], const char *job, int timeout_ms)
{
    int64_t deadline = b_now_us() + (int64_t)timeout_ms * 1000;
    while (b_now_us() < deadline) {
        redisReply *rep = redisCommand(c, "XREAD COUNT 100 BLOCK 200 STREAMS {volq}:events %s", since);
        int hit = 0;
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
            redisReply *evs = rep->element[0]->element[1];
            for (size_t i = 0; i < evs->elements; i++) {
                const char *json = evs->element[i]->element[1]->element[1]->str;
                snprintf(since, 64, "%s", evs->element[i]->element[0]->str);
                if (strstr(json, job) && strstr(json, "Started")) hit = 1;
            }
        }
        if (rep) freeReplyObject(rep);
        if (hit) return 0;
    }
    return -1;
}

/* The pid of the worker process running job (from its "w" field host:pid). */
static pid_t worker_of(redisContext *c, const char *job)
{
    redisReply *rep = redisCommand(c, "HGET {volq}:job:%s w", job);
    pid_t pid = -1;
    if (rep && rep->type == REDIS_REPLY_STRING && strrchr(rep->str, ':'))
        pid = (pid_t)atoi(strrchr(rep->str, ':') + 1);
    if (rep) freeReplyObject(rep);
    return pid;
}

static double one_round(vq_queue *q, redisContext *c, const char *sd, const char *disk)
{
    char since[64] = "$", job[VQ_UUID_SIZE];
    redisReply *last = redisCommand(c, "XREVRANGE {volq}:events + - COUNT 1");
    snprintf(since, sizeof since, "0-0");
    if (last && last->type == REDIS_REPLY_ARRAY && last->elements == 1)
        snprintf(since, sizeof since, "%s", last->element[0]->element[0]->str);
    if (last) freeReplyObject(last);
    vq_accept_req a = {.kind = "amend", .domain_id = sd, .disk_id = disk, .alias = "x"};
    vq_accept_res res;
    if (vq_queue_accept(q, &a, 1, &res, NULL) || wait_start(c, since, res.job_id, 10000))
        return -1;
    memcpy(job, res.job_id, VQ_UUID_SIZE);
    pid_t victim = worker_of(c, job);
    b_sleep_ms(300); /* inside qemu-img's wrapper */
    if (victim <= 0 || kill(victim, SIGKILL)) return -1;
    int64_t t0 = b_now_us();
    if (wait_start(c, since, job, 10000)) return -1;
    double s = (double)(b_now_us() - t0) / 1e6;
    /* Let the job end (its next attempt waits out the orphan's image lock). */
    for (int i = 0; i < 600; i++) {
        vq_job *j = NULL;
        int ended = vq_queue_get(q, job, &j, NULL) == 0 && j->state >= VQ_JOB_SUCCEEDED;
        vq_job_free(j);
        if (ended) break;
        vq_queue_housekeep(q, NULL, NULL);
        b_sleep_ms(50);
    }
    return s;
}

int main(void)
{
    const char *e = getenv("VOLQ_BENCH_RECOVERY_ROUNDS");
    int rounds = e && atoi(e) > 0 ? atoi(e) : 5;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    char rd[PATH_MAX], doms[PATH_MAX], wlog[PATH_MAX], slow[PATH_MAX], env_q[PATH_MAX + 16];
    char sd[VQ_UUID_SIZE], args[64];
    if (b_subdir(b_work_dir(), "recovery", dir, sizeof dir)) return 1;
    b_rmrf(dir);
    b_subdir(b_work_dir(), "recovery", dir, sizeof dir);
    b_subdir(dir, "domains", doms, sizeof doms);
    snprintf(rd, sizeof rd, "%s/redis", dir);
    snprintf(wlog, sizeof wlog, "%s/worker.log", dir);
    snprintf(args, sizeof args, "--version 4 --disks %d --chain 1 --data-mib 0", rounds);
    if (wrapper(slow, sizeof slow) || b_mkdomain(doms, args, sd)) return 1;
    snprintf(env_q, sizeof env_q, "VOLQ_QEMU_IMG=%s", slow);
    const char *env[] = {env_q, "VOLQ_BACKOFF_MS=100", NULL};
    b_redis rs;
    vq_queue *q = NULL;
    vq_domain *d = NULL;
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    double worst = -1, times[MAX_ROUNDS];
    int done = 0;
    if (b_redis_start(&rs, rd, "always")) return 1;
    redisContext *c = b_redis_connect(&rs);
    vq_redis *r = NULL;
    pid_t pool = c ? b_start_workers(rs.url, doms, 2, wlog, env, c) : -1;
    if (pool > 0 && vq_redis_connect(rs.url, 10000, &r, NULL) == 0 &&
        vq_queue_new(r, NULL, &q, NULL) == 0 && vq_domain_open(doms, sd, &d, NULL) == 0 &&
        vq_domain_images(d, &ids, &n, NULL) == 0) {
        for (; done < rounds && done < (int)n; done++) {
            times[done] = one_round(q, c, sd, ids[done]);
            b_note("round %d: %.3f s", done + 1, times[done]);
            if (times[done] < 0) break;
            if (times[done] > worst) worst = times[done];
        }
    }
    if (pool > 0) {
        b_stop(pool, SIGTERM, 20000);
        kill(-pool, SIGKILL); /* orphaned wrappers of killed processes */
    }
    free(ids);
    vq_domain_free(d);
    vq_queue_free(q);
    if (c) redisFree(c);
    b_redis_stop(&rs);
    b_rmrf(dir);
    if (done < rounds) {
        b_target(0, "recovery round %d failed", done + 1);
        return 1;
    }
    b_result("recovery_worst_s", worst, "s");
    b_result("recovery_median_s", b_percentile(times, (size_t)rounds, 50), "s");
    b_result("recovery_rounds", rounds, "rounds");
    b_target(worst <= 1.0, "kill -9 of a busy worker until its job runs again: worst of %d rounds "
             "%.3f s <= 1 s", rounds, worst);
    return 0;
}
