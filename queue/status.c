/* The status object: counts from index sizes, never a scan of the jobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"

/* Replies of the first pipeline, in this order. */
enum { R_TIME, R_QUEUED, R_RUNNING, R_RETRYING, R_SUCCEEDED, R_FAILED, R_CANCELLED, R_HEAD,
       R_WORKERS, R_WJOB, R_N };

static const char *const first_cmds[R_N][5] = {
    {"TIME"},
    {"LLEN", VQ_K_QUEUE},
    {"ZCARD", VQ_K_RUNNING},
    {"ZCARD", VQ_K_DUE},
    {"ZCARD", VQ_K_ST_SUCCEEDED},
    {"ZCARD", VQ_K_ST_FAILED},
    {"ZCARD", VQ_K_ST_CANCELLED},
    {"LINDEX", VQ_K_QUEUE, "-1"}, /* the next job to run: the one waiting longest */
    {"ZRANGE", VQ_K_WORKERS, "0", "-1", "WITHSCORES"},
    {"HGETALL", VQ_K_WJOB},
};

/* Sends cmds and reads every reply into reps (NULL for a failed one). */
static int pipeline(vq_queue *q, const char *const (*cmds)[5], int n, redisReply **reps,
                    vq_error *err)
{
    int sent = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int argc = 0;
        while (argc < 5 && cmds[i][argc]) argc++;
        if (!(rc = vq_redis_append_argv(q->r, argc, (const char **)cmds[i], NULL, err))) sent++;
    }
    for (int i = 0; i < n; i++) {
        reps[i] = i < sent ? vq_redis_get_reply(q->r, err) : NULL;
        if (!reps[i]) rc = rc ? rc : VQ_EREDIS;
    }
    return rc;
}

static json_t *job_counts(redisReply **reps)
{
    json_t *o = json_object();
    for (int s = 0; o && s < VQ_JOB_NSTATES; s++)
        json_object_set_new(o, vq_job_state_name((vq_job_state)s),
                            json_integer(reps[R_QUEUED + s]->integer));
    return o;
}

/* The current job of worker w from the WJOB hash reply, or NULL. */
static const char *job_of(const redisReply *wjob, const char *w)
{
    for (size_t i = 0; i + 1 < wjob->elements; i += 2)
        if (strcmp(vq_reply_str_(wjob, i), w) == 0) {
            const char *j = vq_reply_str_(wjob, i + 1);
            return *j ? j : NULL;
        }
    return NULL;
}

/* Workers whose last beat is within 3 leases: {host, pid, job_id}. */
static json_t *live_workers(const vq_queue *q, redisReply **reps, int64_t now)
{
    json_t *arr = json_array();
    const redisReply *z = reps[R_WORKERS];
    for (size_t i = 0; arr && i + 1 < z->elements; i += 2) {
        const char *w = vq_reply_str_(z, i);
        if (strtoll(vq_reply_str_(z, i + 1), NULL, 10) < now - 3LL * q->cfg.lease_ms) continue;
        const char *colon = strrchr(w, ':');
        size_t hlen = colon ? (size_t)(colon - w) : strlen(w);
        const char *job = job_of(reps[R_WJOB], w);
        json_array_append_new(arr, json_pack("{s:s%, s:i, s:o}", "host", w, hlen, "pid",
                                             colon ? atoi(colon + 1) : 0, "job_id",
                                             job ? json_string(job) : json_null()));
    }
    return arr;
}

/* Jobs ended in the last minute (the end-state indexes are scored by end
 * time), and when the head of the queue was queued. */
static int second_round(vq_queue *q, int64_t now, const char *head, long long *per_min,
                        int64_t *head_since, vq_error *err)
{
    char from[32], key[VQ_KEY_MAX];
    snprintf(from, sizeof from, "%lld", (long long)(now - 60000));
    snprintf(key, sizeof key, "%s%s", VQ_K_JOB, head);
    const char *const cmds[4][5] = {{"ZCOUNT", VQ_K_ST_SUCCEEDED, from, "+inf"},
                                    {"ZCOUNT", VQ_K_ST_FAILED, from, "+inf"},
                                    {"ZCOUNT", VQ_K_ST_CANCELLED, from, "+inf"},
                                    {"HGET", key, "u"}};
    redisReply *reps[4] = {0};
    int rc = pipeline(q, cmds, *head ? 4 : 3, reps, err);
    *per_min = 0;
    for (int i = 0; i < 3; i++)
        if (reps[i] && reps[i]->type == REDIS_REPLY_INTEGER) *per_min += reps[i]->integer;
    *head_since = reps[3] && reps[3]->type == REDIS_REPLY_STRING ? strtoll(reps[3]->str, NULL, 10) : now;
    for (int i = 0; i < 4; i++)
        if (reps[i]) freeReplyObject(reps[i]);
    return rc;
}

const double vq_run_bucket_s[VQ_RUN_BUCKETS - 1] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
const char *const vq_run_kinds[2] = {"amend", "create-volume"};

int vq_run_bucket(int64_t ms)
{
    int b = 0;
    while (b < VQ_RUN_BUCKETS - 1 && (double)ms > vq_run_bucket_s[b] * 1000) b++;
    return b;
}

/* One field of the stats hash: "qemu_img_runs", or "r:<kind>:<bucket>" and
 * "r:<kind>:ms" (finish.lua). */
static void count_field(vq_queue_counters *out, const char *f, const char *v)
{
    uint64_t n = strtoull(v, NULL, 10);
    if (strcmp(f, "qemu_img_runs") == 0) {
        out->qemu_img_runs = n;
        return;
    }
    for (int k = 0; k < 2; k++) {
        size_t len = strlen(vq_run_kinds[k]);
        if (strncmp(f, "r:", 2) != 0 || strncmp(f + 2, vq_run_kinds[k], len) != 0 ||
            f[2 + len] != ':')
            continue;
        const char *what = f + 3 + len;
        char *end;
        long b = strtol(what, &end, 10);
        if (strcmp(what, "ms") == 0) out->runs[k].sum_ms = n;
        else if (end != what && !*end && b >= 0 && b < VQ_RUN_BUCKETS) out->runs[k].n[b] = n;
    }
}

int vq_queue_counters_get(vq_queue *q, vq_queue_counters *out, vq_error *err)
{
    memset(out, 0, sizeof *out);
    const char *argv[] = {"HGETALL", VQ_K_STATS};
    redisReply *rep = vq_redis_argv(q->r, 2, argv, NULL, err);
    if (!rep) return VQ_EREDIS;
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
        count_field(out, vq_reply_str_(rep, i), vq_reply_str_(rep, i + 1));
    freeReplyObject(rep);
    return 0;
}

int vq_queue_status(vq_queue *q, json_t **out, vq_error *err)
{
    *out = NULL;
    redisReply *reps[R_N] = {0};
    int rc = pipeline(q, first_cmds, R_N, reps, err);
    long long per_min = 0;
    int64_t now = 0, since = 0;
    if (!rc) {
        now = strtoll(vq_reply_str_(reps[R_TIME], 0), NULL, 10) * 1000 +
              strtoll(vq_reply_str_(reps[R_TIME], 1), NULL, 10) / 1000;
        const char *head = reps[R_HEAD]->type == REDIS_REPLY_STRING ? reps[R_HEAD]->str : "";
        rc = second_round(q, now, head, &per_min, &since, err);
    }
    if (!rc) {
        *out = json_pack("{s:o, s:o, s:I, s:I, s:s}", "jobs", job_counts(reps), "workers",
                         live_workers(q, reps, now), "oldest_waiting_s",
                         (json_int_t)(now > since ? (now - since) / 1000 : 0), "jobs_per_min",
                         (json_int_t)per_min, "redis", "up");
        if (!*out) rc = vq_error_set(err, VQ_ENOMEM, "status: out of memory");
    }
    for (int i = 0; i < R_N; i++)
        if (reps[i]) freeReplyObject(reps[i]);
    return rc;
}
