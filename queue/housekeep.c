/* Housekeeping: due retries, expired leases, dead workers, retention.  Each
 * step reads candidate ids, then a script checks each one again and moves
 * it, so several schedulers may run this at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"
#include "volq/log.h"

/* Batches per step and call: bounded work per tick; the next tick goes on. */
#define ROUNDS 20

/* Members of a zset with score <= max, at most VQ_BATCH. */
static int due_members(vq_queue *q, const char *key, int64_t max, vq_strv *out, vq_error *err)
{
    redisReply *rep = vq_redis_cmd(q->r, err, "ZRANGEBYSCORE %s -inf %lld LIMIT 0 %d", key,
                                   (long long)max, VQ_BATCH);
    if (!rep) return VQ_EREDIS;
    for (size_t i = 0; i < rep->elements; i++) vq_strv_add_(out, vq_reply_str_(rep, i));
    freeReplyObject(rep);
    return out->oom ? vq_error_set(err, VQ_ENOMEM, "housekeep: out of memory") : 0;
}

/* Runs a script whose keys are the jobs of ids and whose args are pre + ids. */
static int run_on_jobs(vq_queue *q, const char *script, const vq_strv *pre, const vq_strv *ids,
                       long long *n, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    for (size_t i = 0; pre && i < pre->n; i++) vq_strv_add_(&a, pre->v[i]);
    for (size_t i = 0; i < ids->n; i++) {
        vq_strv_addf_(&k, "%s%s", VQ_K_JOB, ids->v[i]);
        vq_strv_add_(&a, ids->v[i]);
    }
    redisReply *rep = vq_queue_run_(q, script, &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    if (!rep) return VQ_EREDIS;
    *n = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    freeReplyObject(rep);
    return 0;
}

/* Retries whose next_attempt has come -> queued.  *full: a whole batch. */
static int promote(vq_queue *q, int64_t now, size_t *moved, int *full, vq_error *err)
{
    vq_strv ids = {0};
    int rc = due_members(q, VQ_K_DUE, now, &ids, err);
    long long n = 0;
    if (!rc && ids.n) rc = run_on_jobs(q, "promote.lua", NULL, &ids, &n, err);
    *moved += (size_t)n;
    *full = ids.n == VQ_BATCH;
    vq_strv_free_(&ids);
    return rc;
}

/* The worker ("w") of each job, "" when unknown, in one pipeline. */
static int workers_of(vq_queue *q, const vq_strv *ids, vq_strv *ws, vq_error *err)
{
    vq_job **jobs = calloc(ids->n + 1, sizeof *jobs);
    if (!jobs) return vq_error_set(err, VQ_ENOMEM, "housekeep: out of memory");
    int rc = vq_queue_get_many_(q, ids->v, ids->n, jobs, err);
    for (size_t i = 0; i < ids->n; i++) {
        vq_strv_add_(ws, jobs[i] ? jobs[i]->worker : "");
        vq_job_free(jobs[i]);
    }
    free(jobs);
    return rc;
}

/* Running jobs whose lease ran out (a lost host, a paused worker) -> requeued. */
static int expire_leases(vq_queue *q, int64_t now, size_t *moved, int *full, vq_error *err)
{
    vq_strv ids = {0}, ws = {0};
    int rc = due_members(q, VQ_K_RUNNING, now, &ids, err);
    if (!rc && ids.n) rc = workers_of(q, &ids, &ws, err);
    vq_requeue_count c = {0};
    if (!rc && ids.n) rc = vq_queue_requeue_(q, "lease", "0", ids.v, ws.v, ids.n, NULL, 0, &c, err);
    if (c.requeued + c.failed)
        vq_log(VQ_LOG_NOTICE, "housekeep: leases expired: %zu jobs requeued, %zu failed", c.requeued,
               c.failed);
    *moved += c.requeued + c.failed;
    *full = ids.n == VQ_BATCH;
    vq_strv_free_(&ids);
    vq_strv_free_(&ws);
    return rc;
}

/* In-flight jobs of workers not heard of for 3 leases -> requeued; their
 * registrations dropped. */
static int reap_workers(vq_queue *q, int64_t now, size_t *moved, int *full, vq_error *err)
{
    int64_t cutoff = now - 3LL * q->cfg.lease_ms;
    vq_strv dead = {0}, ids = {0}, ws = {0};
    int rc = due_members(q, VQ_K_WORKERS, cutoff, &dead, err);
    for (size_t i = 0; !rc && i < dead.n; i++) {
        redisReply *rep = vq_redis_cmd(q->r, err, "LRANGE %s%s 0 -1", VQ_K_PROC, dead.v[i]);
        if (!rep) rc = VQ_EREDIS;
        for (size_t e = 0; rep && e < rep->elements; e++) {
            vq_strv_add_(&ids, vq_reply_str_(rep, e));
            vq_strv_add_(&ws, dead.v[i]);
        }
        if (rep) freeReplyObject(rep);
    }
    char c[32];
    snprintf(c, sizeof c, "%lld", (long long)cutoff);
    vq_requeue_count n = {0};
    if (!rc && dead.n)
        rc = vq_queue_requeue_(q, "worker", c, ids.v, ws.v, ids.n, dead.v, dead.n, &n, err);
    if (n.dropped + n.requeued + n.failed)
        vq_log(VQ_LOG_NOTICE, "housekeep: %zu silent workers dropped; their jobs: %zu requeued, "
               "%zu failed", n.dropped, n.requeued, n.failed);
    *moved += n.requeued + n.failed;
    *full = dead.n == VQ_BATCH;
    vq_strv_free_(&dead);
    vq_strv_free_(&ids);
    vq_strv_free_(&ws);
    return rc;
}

/* The end-state indexes, scored by end time: together, every ended job.
 * Their order is the one trim.lua breaks ties of end time by. */
static const char *const ended_index[] = {VQ_K_ST_SUCCEEDED, VQ_K_ST_FAILED, VQ_K_ST_CANCELLED};
#define NENDED 3

/* Sends ncmd commands per end-state index in one pipeline and reads their
 * replies into reps[index * ncmd + c].  Command c is cmds[c] with the index
 * as its key (cmds[c][1] is a placeholder), ended by a NULL.  Every command
 * sent has its reply read, also after an error. */
static int per_ended_index(vq_queue *q, int ncmd, const char *const cmds[][6], redisReply **reps,
                           vq_error *err)
{
    int rc = 0, sent = 0;
    for (int i = 0; i < NENDED && !rc; i++)
        for (int c = 0; c < ncmd && !rc; c++) {
            const char *a[6];
            int argc = 0;
            for (; argc < 6 && cmds[c][argc]; argc++) a[argc] = argc == 1 ? ended_index[i] : cmds[c][argc];
            if (!(rc = vq_redis_append_argv(q->r, argc, a, NULL, err))) sent++;
        }
    for (int i = 0; i < NENDED * ncmd; i++) {
        reps[i] = i < sent ? vq_redis_get_reply(q->r, err) : NULL;
        if (!reps[i]) rc = rc ? rc : VQ_EREDIS;
    }
    return rc;
}

static void free_replies(redisReply **reps, int n)
{
    for (int i = 0; i < n; i++)
        if (reps[i]) freeReplyObject(reps[i]);
}

/* How many ended jobs are past retention: those ended at or before cutoff,
 * or the oldest beyond max.  Either is a prefix of the ended jobs in end
 * order, so the larger one covers both. */
static int past_retention(vq_queue *q, int64_t cutoff, long long max, long long *n, vq_error *err)
{
    char c[32];
    snprintf(c, sizeof c, "%lld", (long long)cutoff);
    const char *const cmds[2][6] = {{"ZCARD", "", NULL}, {"ZCOUNT", "", "-inf", c, NULL}};
    redisReply *reps[NENDED * 2];
    int rc = per_ended_index(q, 2, cmds, reps, err);
    long long total = 0, old = 0;
    for (int i = 0; !rc && i < NENDED; i++) {
        total += reps[2 * i]->integer;
        old += reps[2 * i + 1]->integer;
    }
    free_replies(reps, NENDED * 2);
    *n = rc ? 0 : (total - max > old ? total - max : old);
    return rc;
}

/* The n oldest ended jobs (n >= 1), in the order of trim.lua: by end time,
 * then by index, then in each index's own order. */
static int oldest_ended(vq_queue *q, long long n, vq_strv *ids, vq_error *err)
{
    char stop[32];
    snprintf(stop, sizeof stop, "%lld", n - 1);
    const char *const cmds[1][6] = {{"ZRANGE", "", "0", stop, "WITHSCORES", NULL}};
    redisReply *reps[NENDED];
    int rc = per_ended_index(q, 1, cmds, reps, err);
    size_t at[NENDED] = {0}; /* the next member's position in each reply */
    for (long long taken = 0; !rc && taken < n; taken++) {
        int best = -1;
        double best_score = 0;
        for (int i = 0; i < NENDED; i++) {
            if (at[i] + 1 >= reps[i]->elements) continue;
            double score = strtod(vq_reply_str_(reps[i], at[i] + 1), NULL);
            if (best < 0 || score < best_score) {
                best = i;
                best_score = score;
            }
        }
        if (best < 0) break;
        vq_strv_add_(ids, vq_reply_str_(reps[best], at[best]));
        at[best] += 2;
    }
    free_replies(reps, NENDED);
    if (!rc && ids->oom) rc = vq_error_set(err, VQ_ENOMEM, "housekeep: out of memory");
    return rc;
}

/* Ended jobs past retention (ended more than keep_finished_s ago, or beyond
 * keep_finished_max) are deleted, oldest first, VQ_BATCH per call. */
static int trim(vq_queue *q, int64_t now, int *full, vq_error *err)
{
    int64_t cutoff = now - 1000LL * q->cfg.keep_finished_s;
    vq_strv ids = {0}, pre = {0};
    long long past = 0, n = 0;
    int rc = past_retention(q, cutoff, q->cfg.keep_finished_max, &past, err);
    long long batch = past < VQ_BATCH ? past : VQ_BATCH;
    if (!rc && batch > 0) rc = oldest_ended(q, batch, &ids, err);
    vq_strv_sort_unique_(&ids); /* a job in two indexes by mistake is sent once */
    vq_strv_addf_(&pre, "%lld", (long long)cutoff);
    vq_strv_addf_(&pre, "%d", q->cfg.keep_finished_max);
    if (!rc && ids.n) rc = run_on_jobs(q, "trim.lua", &pre, &ids, &n, err);
    *full = n > 0 && past > batch;
    vq_strv_free_(&ids);
    vq_strv_free_(&pre);
    return rc;
}

typedef int (*step_fn)(vq_queue *q, int64_t now, size_t *moved, int *full, vq_error *err);

static int trim_step(vq_queue *q, int64_t now, size_t *moved, int *full, vq_error *err)
{
    (void)moved; /* deleted, not moved */
    return trim(q, now, full, err);
}

int vq_queue_housekeep(vq_queue *q, size_t *moved, vq_error *err)
{
    static const step_fn steps[] = {promote, expire_leases, reap_workers, trim_step};
    size_t n = 0;
    int64_t now;
    int rc = vq_queue_redis_now_(q, &now, err);
    for (size_t s = 0; !rc && s < sizeof steps / sizeof steps[0]; s++) {
        int full = 1;
        for (int round = 0; !rc && full && round < ROUNDS; round++) rc = steps[s](q, now, &n, &full, err);
    }
    if (moved) *moved = n;
    return rc;
}
