/* The administrator's calls: one job, listings, retry, cancel, lock holders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"

static int check_id(const char *id, vq_error *err)
{
    return vq_uuid_valid(id) ? 0 : vq_error_set(err, VQ_EINVAL, "job %s: not a UUID", id ? id : "");
}

int vq_queue_get(vq_queue *q, const char *job_id, vq_job **out, vq_error *err)
{
    *out = NULL;
    int rc = check_id(job_id, err);
    if (rc) return rc;
    char key[VQ_KEY_MAX];
    snprintf(key, sizeof key, "%s%s", VQ_K_JOB, job_id);
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = vq_redis_argv(q->r, 2, argv, NULL, err);
    if (!rep) return VQ_EREDIS;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 0)
        rc = vq_error_set(err, VQ_ENOENT, "job %s: not found", job_id);
    else
        rc = vq_job_from_fields(job_id, rep, out, err);
    freeReplyObject(rep);
    return rc;
}

#define GET_MANY_ROUND 1000

int vq_queue_get_many(vq_queue *q, const char (*ids)[VQ_UUID_SIZE], size_t n, vq_job **out,
                      vq_error *err)
{
    char *v[GET_MANY_ROUND];
    int rc = 0;
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    for (size_t i = 0; i < n && !rc; i++) rc = check_id(ids[i], err);
    for (size_t from = 0; from < n && !rc; from += GET_MANY_ROUND) {
        size_t k = n - from < GET_MANY_ROUND ? n - from : GET_MANY_ROUND;
        for (size_t i = 0; i < k; i++) v[i] = (char *)ids[from + i];
        rc = vq_queue_get_many_(q, v, k, out + from, err);
    }
    return rc;
}

/* ---- listing ------------------------------------------------------------ */

static const char *const end_index[VQ_JOB_NSTATES] = {
    [VQ_JOB_SUCCEEDED] = VQ_K_ST_SUCCEEDED,
    [VQ_JOB_FAILED] = VQ_K_ST_FAILED,
    [VQ_JOB_CANCELLED] = VQ_K_ST_CANCELLED,
};

/* The list's order is the job's last change ("updated", newest first), the
 * key the indexes hold: an ended index is scored by end time, which is the
 * job's last change; the queue is pushed at both ends with the time of the
 * push (new, retried and promoted jobs at the head, requeued ones at the
 * tail, where workers take), so its most recent pushes are the first `limit`
 * at either end.  The running (lease) and retrying (due time) indexes are
 * read `limit` deep too: exact while they hold no more than that, which is
 * the usual case (running jobs are at most one per worker process).  The
 * reads (one or two per index) are appended; *sent counts them. */
static int append_index_reads(vq_queue *q, int s, size_t limit, int *sent, vq_error *err)
{
    char stop[32], from[32];
    snprintf(stop, sizeof stop, "%zu", limit - 1);
    snprintf(from, sizeof from, "-%zu", limit);
    const char *key = s == VQ_JOB_QUEUED ? VQ_K_QUEUE : s == VQ_JOB_RUNNING ? VQ_K_RUNNING
                    : s == VQ_JOB_RETRYING ? VQ_K_DUE : end_index[s];
    const char *reads[2][4] = {{s == VQ_JOB_QUEUED ? "LRANGE" : "ZREVRANGE", key, "0", stop},
                               {"LRANGE", key, from, "-1"}};
    int n = s == VQ_JOB_QUEUED ? 2 : 1, rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (!(rc = vq_redis_append_argv(q->r, 4, reads[i], NULL, err))) ++*sent;
    return rc;
}

static int read_candidates(vq_queue *q, int state, size_t limit, vq_strv *ids, vq_error *err)
{
    int first = state < 0 ? 0 : state, last = state < 0 ? VQ_JOB_NSTATES - 1 : state;
    int sent = 0, rc = 0;
    for (int s = first; s <= last && !rc; s++) rc = append_index_reads(q, s, limit, &sent, err);
    for (int i = 0; i < sent; i++) {
        redisReply *rep = vq_redis_get_reply(q->r, err);
        if (!rep) rc = VQ_EREDIS;
        for (size_t e = 0; rep && e < rep->elements; e++) vq_strv_add_(ids, vq_reply_str_(rep, e));
        if (rep) freeReplyObject(rep);
    }
    if (!rc && ids->oom) rc = vq_error_set(err, VQ_ENOMEM, "list: out of memory");
    return rc;
}

/* The same key as the selection above; ties (one millisecond) by id, so that
 * a shorter list is always the start of a longer one. */
static int newest_first(const void *a, const void *b)
{
    const vq_job *x = *(vq_job *const *)a, *y = *(vq_job *const *)b;
    if (!x || !y) return !x - !y; /* a job gone since its index was read: last */
    if (x->updated != y->updated) return x->updated > y->updated ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int jobs_to_json(vq_job **jobs, size_t n, int state, size_t limit, json_t **out,
                        vq_error *err)
{
    qsort(jobs, n, sizeof *jobs, newest_first);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n && json_array_size(arr) < limit; i++) {
        /* An index entry whose job moved on since is not this state's job. */
        if (!jobs[i] || (state >= 0 && (int)jobs[i]->state != state)) continue;
        if (json_array_append_new(arr, vq_job_json(jobs[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (!arr) return vq_error_set(err, VQ_ENOMEM, "list: out of memory");
    *out = arr;
    return 0;
}

int vq_queue_list(vq_queue *q, int state, size_t limit, json_t **out, vq_error *err)
{
    *out = NULL;
    if (state >= VQ_JOB_NSTATES) return vq_error_set(err, VQ_EINVAL, "list: unknown state %d", state);
    if (limit > VQ_QUEUE_LIST_MAX) limit = VQ_QUEUE_LIST_MAX;
    if (limit == 0) {
        *out = json_array();
        return *out ? 0 : vq_error_set(err, VQ_ENOMEM, "list: out of memory");
    }
    vq_strv ids = {0};
    int rc = read_candidates(q, state, limit, &ids, err);
    vq_strv_sort_unique_(&ids);
    vq_job **jobs = rc ? NULL : calloc(ids.n + 1, sizeof *jobs);
    if (!rc && !jobs) rc = vq_error_set(err, VQ_ENOMEM, "list: out of memory");
    if (!rc) rc = vq_queue_get_many_(q, ids.v, ids.n, jobs, err);
    if (!rc) rc = jobs_to_json(jobs, ids.n, state, limit, out, err);
    for (size_t i = 0; jobs && i < ids.n; i++) vq_job_free(jobs[i]);
    free(jobs);
    vq_strv_free_(&ids);
    return rc;
}

/* ---- retry ---------------------------------------------------------------- */

static int raw_holders(vq_queue *q, const char *const *disk_ids, size_t n,
                       char (*holders)[VQ_UUID_SIZE], vq_error *err);

/* The disk of each job and the current holder of each disk ("" when none),
 * read in two pipelines, so that retry.lua can check the holders again. */
static int read_holders(vq_queue *q, char **ids, size_t n, vq_strv *holders, vq_error *err)
{
    vq_job **jobs = calloc(n + 1, sizeof *jobs);
    if (!jobs) return vq_error_set(err, VQ_ENOMEM, "retry: out of memory");
    int rc = vq_queue_get_many_(q, ids, n, jobs, err);
    vq_strv disks = {0};
    for (size_t i = 0; !rc && i < n; i++) vq_strv_add_(&disks, jobs[i] ? jobs[i]->disk_id : "");
    char (*h)[VQ_UUID_SIZE] = rc ? NULL : calloc(n + 1, sizeof *h);
    if (!rc && (!h || disks.oom)) rc = vq_error_set(err, VQ_ENOMEM, "retry: out of memory");
    /* Raw: retry.lua itself decides whether a holder is still live. */
    if (!rc) rc = raw_holders(q, (const char *const *)disks.v, n, h, err);
    for (size_t i = 0; !rc && i < n; i++) vq_strv_add_(holders, h[i]);
    for (size_t i = 0; i < n; i++) vq_job_free(jobs[i]);
    free(jobs);
    free(h);
    vq_strv_free_(&disks);
    return rc;
}

/* retry.lua on ids: a new reply {status, detail, ...} per job, or NULL. */
static redisReply *run_retry(vq_queue *q, char **ids, size_t n, vq_error *err)
{
    vq_strv holders = {0}, k = {0}, a = {0};
    redisReply *rep = NULL;
    if (read_holders(q, ids, n, &holders, err)) goto out_free;
    vq_strv_addf_(&a, "%zu", n);
    for (size_t i = 0; i < n; i++) {
        vq_strv_addf_(&k, "%s%s", VQ_K_JOB, ids[i]);
        if (holders.v[i][0]) vq_strv_addf_(&k, "%s%s", VQ_K_JOB, holders.v[i]);
        vq_strv_add_(&a, ids[i]);
        vq_strv_add_(&a, holders.v[i]);
    }
    rep = vq_queue_run_(q, "retry.lua", &k, &a, err);
    if (rep && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 * n)) {
        vq_error_set(err, VQ_EREDIS, "retry.lua: unexpected reply");
        freeReplyObject(rep);
        rep = NULL;
    }
out_free:
    vq_strv_free_(&holders);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rep;
}

int vq_queue_retry(vq_queue *q, const char *job_id, vq_error *err)
{
    int rc = check_id(job_id, err);
    if (rc) return rc;
    char *ids[] = {(char *)job_id};
    redisReply *rep = run_retry(q, ids, 1, err);
    if (!rep) return vq_redis_rc(err);
    const char *st = vq_reply_str_(rep, 0), *detail = vq_reply_str_(rep, 1);
    if (strcmp(st, "missing") == 0)
        rc = vq_error_set(err, VQ_ENOENT, "job %s: not found", job_id);
    else if (strcmp(st, "state") == 0)
        rc = vq_error_set(err, VQ_ESTATE, "job %s: is %s; only a failed job can be retried",
                          job_id, detail);
    else if (strcmp(st, "locked") == 0)
        rc = vq_error_set(err, VQ_ELOCKED, "job %s: its disk is locked by job %s", job_id, detail);
    freeReplyObject(rep);
    return rc;
}

/* Up to VQ_BATCH failed ids, newest first, from offset on. */
static int failed_batch(vq_queue *q, size_t offset, vq_strv *ids, vq_error *err)
{
    /* hiredis formats know %lld but not %zu ("bad command format") */
    redisReply *rep = vq_redis_cmd(q->r, err, "ZREVRANGE %s %lld %lld", VQ_K_ST_FAILED,
                                   (long long)offset, (long long)(offset + VQ_BATCH - 1));
    if (!rep) return VQ_EREDIS;
    for (size_t i = 0; i < rep->elements; i++) vq_strv_add_(ids, vq_reply_str_(rep, i));
    freeReplyObject(rep);
    return ids->oom ? vq_error_set(err, VQ_ENOMEM, "retry: out of memory") : 0;
}

int vq_queue_retry_failed(vq_queue *q, size_t *retried, size_t *left, vq_error *err)
{
    size_t ok = 0, locked = 0, offset = 0;
    int rc = 0;
    for (;;) {
        vq_strv ids = {0};
        if ((rc = failed_batch(q, offset, &ids, err)) || ids.n == 0) {
            vq_strv_free_(&ids);
            break;
        }
        redisReply *rep = run_retry(q, ids.v, ids.n, err);
        size_t n = ids.n, batch_ok = 0;
        vq_strv_free_(&ids);
        if (!rep) {
            rc = vq_redis_rc(err);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            const char *st = vq_reply_str_(rep, 2 * i);
            batch_ok += strcmp(st, "ok") == 0;
            locked += strcmp(st, "locked") == 0;
        }
        freeReplyObject(rep);
        ok += batch_ok;
        offset += n - batch_ok; /* those retried left the index; the rest stay before us */
    }
    if (retried) *retried = ok;
    if (left) *left = locked;
    return rc;
}

/* ---- cancel ----------------------------------------------------------- */

int vq_queue_cancel(vq_queue *q, const char *job_id, vq_error *err)
{
    int rc = check_id(job_id, err);
    if (rc) return rc;
    vq_strv k = {0}, a = {0};
    vq_strv_addf_(&k, "%s%s", VQ_K_JOB, job_id);
    vq_strv_add_(&a, job_id);
    redisReply *rep = vq_queue_run_(q, "cancel.lua", &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    if (!rep) return VQ_EREDIS;
    const char *st = vq_reply_str_(rep, 0);
    if (strcmp(st, "missing") == 0)
        rc = vq_error_set(err, VQ_ENOENT, "job %s: not found", job_id);
    else if (strcmp(st, "state") == 0)
        rc = vq_error_set(err, VQ_ESTATE, "job %s: is %s; only a queued or retrying job can be "
                          "cancelled", job_id, vq_reply_str_(rep, 1));
    else if (strcmp(st, "cleanup") == 0)
        rc = vq_error_set(err, VQ_ESTATE, "job %s: its workers died %s times; it is removing "
                          "what they left half-made and cannot be cancelled", job_id,
                          vq_reply_str_(rep, 1));
    freeReplyObject(rep);
    return rc;
}

/* ---- lock holders ----------------------------------------------------- */

/* Keeps holders[i] only when its job is live (states read in one pipeline). */
static int keep_live(vq_queue *q, size_t n, char (*holders)[VQ_UUID_SIZE], vq_error *err)
{
    int sent = 0, rc = 0;
    char key[VQ_KEY_MAX];
    for (size_t i = 0; i < n && !rc; i++) {
        if (!holders[i][0]) continue;
        snprintf(key, sizeof key, "%s%s", VQ_K_JOB, holders[i]);
        const char *argv[] = {"HGET", key, "s"};
        if (!(rc = vq_redis_append_argv(q->r, 3, argv, NULL, err))) sent++;
    }
    for (size_t i = 0; i < n && sent > 0; i++) {
        if (!holders[i][0]) continue;
        sent--;
        redisReply *rep = vq_redis_get_reply(q->r, err);
        int st = rep && rep->type == REDIS_REPLY_STRING ? vq_job_state_parse(rep->str) : -1;
        if (!rep) rc = VQ_EREDIS;
        if (st != VQ_JOB_QUEUED && st != VQ_JOB_RUNNING && st != VQ_JOB_RETRYING) holders[i][0] = '\0';
        if (rep) freeReplyObject(rep);
    }
    return rc;
}

/* The raw lock entries of n disks ("" when none), in one HMGET. */
static int raw_holders(vq_queue *q, const char *const *disk_ids, size_t n,
                       char (*holders)[VQ_UUID_SIZE], vq_error *err)
{
    vq_strv a = {0};
    vq_strv_add_(&a, "HMGET");
    vq_strv_add_(&a, VQ_K_LOCKS);
    for (size_t i = 0; i < n; i++) vq_strv_add_(&a, disk_ids[i] ? disk_ids[i] : "");
    redisReply *rep = a.oom ? NULL : vq_redis_argv(q->r, (int)a.n, (const char **)a.v, a.len, err);
    vq_strv_free_(&a);
    if (!rep) return vq_redis_rc(err);
    for (size_t i = 0; i < n; i++) {
        const char *h = vq_reply_str_(rep, i);
        snprintf(holders[i], VQ_UUID_SIZE, "%s", vq_uuid_valid(h) ? h : "");
    }
    freeReplyObject(rep);
    return 0;
}

int vq_queue_lock_holders_raw(vq_queue *q, const char *const *disk_ids, size_t n,
                              char (*raw)[VQ_UUID_SIZE], char (*holders)[VQ_UUID_SIZE],
                              vq_error *err)
{
    if (n == 0) return 0;
    int rc = raw_holders(q, disk_ids, n, holders, err);
    if (rc == 0 && raw) memcpy(raw, holders, n * sizeof *raw);
    return rc ? rc : keep_live(q, n, holders, err);
}

int vq_queue_lock_holders(vq_queue *q, const char *const *disk_ids, size_t n,
                          char (*holders)[VQ_UUID_SIZE], vq_error *err)
{
    return vq_queue_lock_holders_raw(q, disk_ids, n, NULL, holders, err);
}
