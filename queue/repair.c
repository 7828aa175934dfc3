/* Start-up repair: reads every index once, finds jobs whose indexes or lock
 * disagree with their state and locks whose job is gone or ended, and lets
 * repair.lua check each again and fix it.  Runs in O(jobs kept); meant for
 * start-up, not for every tick. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"
#include "volq/log.h"

/* What repair reads: each index as a sorted id set. */
enum { IX_QUEUE, IX_RUNNING, IX_DUE, IX_SUCCEEDED, IX_FAILED, IX_CANCELLED, IX_N };

static const char *const ix_keys[IX_N] = {
    VQ_K_QUEUE, VQ_K_RUNNING, VQ_K_DUE, VQ_K_ST_SUCCEEDED, VQ_K_ST_FAILED, VQ_K_ST_CANCELLED,
};

/* Keys of earlier versions that nothing reads any more, deleted by repair:
 * the ended jobs by end time (the end-state indexes are scored by end time
 * now, and repair scores their old entries again). */
static const char *const old_keys[] = {"{volq}:ended"};
#define NOLD_KEYS (sizeof old_keys / sizeof old_keys[0])

typedef struct snapshot {
    vq_strv ix[IX_N];
    vq_strv ended_at;               /* "id end-time" of every end-state index entry, sorted */
    int old_keys;                   /* some old key exists */
    vq_strv lock_disks, lock_jobs;  /* the locks hash, pair by pair */
    size_t *lock_order;             /* lock pair indexes sorted by disk */
    vq_strv proc_keys, proc_ids;    /* every (in-flight list, id) pair */
    vq_strv ids;                    /* every id seen anywhere, sorted */
    vq_job **jobs;                  /* the record of ids.v[i], or NULL */
} snapshot;

static void snapshot_free(snapshot *s)
{
    for (int i = 0; i < IX_N; i++) vq_strv_free_(&s->ix[i]);
    vq_strv_free_(&s->ended_at);
    vq_strv_free_(&s->lock_disks);
    vq_strv_free_(&s->lock_jobs);
    vq_strv_free_(&s->proc_keys);
    vq_strv_free_(&s->proc_ids);
    free(s->lock_order);
    for (size_t i = 0; s->jobs && i < s->ids.n; i++) vq_job_free(s->jobs[i]);
    free(s->jobs);
    vq_strv_free_(&s->ids);
}

static int read_indexes(vq_queue *q, snapshot *s, vq_error *err)
{
    int rc = 0;
    for (int i = 0; i < IX_N && !rc; i++) {
        int ended = i >= IX_SUCCEEDED;
        redisReply *rep = i == IX_QUEUE ? vq_redis_cmd(q->r, err, "LRANGE %s 0 -1", ix_keys[i])
                        : ended ? vq_redis_cmd(q->r, err, "ZRANGE %s 0 -1 WITHSCORES", ix_keys[i])
                                : vq_redis_cmd(q->r, err, "ZRANGE %s 0 -1", ix_keys[i]);
        if (!rep) return VQ_EREDIS;
        for (size_t e = 0; e < rep->elements; e += ended ? 2 : 1) {
            vq_strv_add_(&s->ix[i], vq_reply_str_(rep, e));
            vq_strv_add_(&s->ids, vq_reply_str_(rep, e));
            /* The score as the integer a job's u is written as. */
            if (ended)
                vq_strv_addf_(&s->ended_at, "%s %.0f", vq_reply_str_(rep, e),
                              strtod(vq_reply_str_(rep, e + 1), NULL));
        }
        freeReplyObject(rep);
        vq_strv_sort_unique_(&s->ix[i]);
    }
    vq_strv_sort_unique_(&s->ended_at);
    for (size_t i = 0; i < NOLD_KEYS; i++) {
        redisReply *rep = vq_redis_cmd(q->r, err, "EXISTS %s", old_keys[i]);
        if (!rep) return VQ_EREDIS;
        s->old_keys |= rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;
        freeReplyObject(rep);
    }
    redisReply *rep = vq_redis_cmd(q->r, err, "HGETALL %s", VQ_K_LOCKS);
    if (!rep) return VQ_EREDIS;
    for (size_t e = 0; e + 1 < rep->elements; e += 2) {
        vq_strv_add_(&s->lock_disks, vq_reply_str_(rep, e));
        vq_strv_add_(&s->lock_jobs, vq_reply_str_(rep, e + 1));
        vq_strv_add_(&s->ids, vq_reply_str_(rep, e + 1));
    }
    freeReplyObject(rep);
    return rc;
}

/* Calls fn on every key matching pattern (SCAN: the server is not blocked). */
static int scan(vq_queue *q, const char *pattern, int (*fn)(vq_queue *, snapshot *, const char *, vq_error *),
                snapshot *s, vq_error *err)
{
    char cursor[32] = "0";
    do {
        redisReply *rep = vq_redis_cmd(q->r, err, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (!rep) return VQ_EREDIS;
        int rc = 0;
        snprintf(cursor, sizeof cursor, "%s", vq_reply_str_(rep, 0));
        const redisReply *keys = rep->elements > 1 ? rep->element[1] : NULL;
        for (size_t i = 0; !rc && keys && i < keys->elements; i++)
            rc = fn(q, s, keys->element[i]->str, err);
        freeReplyObject(rep);
        if (rc) return rc;
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

static int add_proc(vq_queue *q, snapshot *s, const char *key, vq_error *err)
{
    redisReply *rep = vq_redis_cmd(q->r, err, "LRANGE %s 0 -1", key);
    if (!rep) return VQ_EREDIS;
    for (size_t e = 0; e < rep->elements; e++) {
        vq_strv_add_(&s->proc_keys, key);
        vq_strv_add_(&s->proc_ids, vq_reply_str_(rep, e));
        vq_strv_add_(&s->ids, vq_reply_str_(rep, e));
    }
    freeReplyObject(rep);
    return 0;
}

static int add_job_key(vq_queue *q, snapshot *s, const char *key, vq_error *err)
{
    (void)q;
    (void)err;
    vq_strv_add_(&s->ids, key + strlen(VQ_K_JOB));
    return 0;
}

static const snapshot *sort_ctx; /* qsort has no context argument */

static int by_disk(const void *a, const void *b)
{
    return strcmp(sort_ctx->lock_disks.v[*(const size_t *)a], sort_ctx->lock_disks.v[*(const size_t *)b]);
}

static int sort_locks(snapshot *s, vq_error *err)
{
    s->lock_order = calloc(s->lock_disks.n + 1, sizeof *s->lock_order);
    if (!s->lock_order) return vq_error_set(err, VQ_ENOMEM, "repair: out of memory");
    for (size_t i = 0; i < s->lock_disks.n; i++) s->lock_order[i] = i;
    sort_ctx = s;
    qsort(s->lock_order, s->lock_disks.n, sizeof *s->lock_order, by_disk);
    return 0;
}

static int take_snapshot(vq_queue *q, snapshot *s, vq_error *err)
{
    int rc = read_indexes(q, s, err);
    if (!rc) rc = scan(q, VQ_K_PROC "*", add_proc, s, err);
    if (!rc) rc = scan(q, VQ_K_JOB "*", add_job_key, s, err);
    vq_strv_sort_unique_(&s->ids);
    if (!rc) {
        s->jobs = calloc(s->ids.n + 1, sizeof *s->jobs);
        if (!s->jobs) return vq_error_set(err, VQ_ENOMEM, "repair: out of memory");
        for (size_t i = 0; !rc && i < s->ids.n; i += VQ_BATCH)
            rc = vq_queue_get_many_(q, s->ids.v + i, s->ids.n - i < VQ_BATCH ? s->ids.n - i : VQ_BATCH,
                                    s->jobs + i, err);
    }
    int oom = s->ids.oom || s->proc_ids.oom || s->proc_keys.oom || s->lock_jobs.oom ||
              s->lock_disks.oom || s->ended_at.oom;
    for (int i = 0; i < IX_N; i++) oom |= s->ix[i].oom;
    if (!rc && oom) rc = vq_error_set(err, VQ_ENOMEM, "repair: out of memory");
    return rc ? rc : sort_locks(s, err);
}

/* ---- finding what is wrong -------------------------------------------- */

static const vq_job *job_of(const snapshot *s, const char *id)
{
    size_t lo = 0, hi = s->ids.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->ids.v[mid], id);
        if (c == 0) return s->jobs[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

static int is_live(const vq_job *j)
{
    return j && (j->state == VQ_JOB_QUEUED || j->state == VQ_JOB_RUNNING || j->state == VQ_JOB_RETRYING);
}

/* The lock entry of disk, or NULL. */
static const char *lock_of(const snapshot *s, const char *disk)
{
    size_t lo = 0, hi = s->lock_disks.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2, i = s->lock_order[mid];
        int c = strcmp(s->lock_disks.v[i], disk);
        if (c == 0) return s->lock_jobs.v[i];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* The index a job in state st belongs to. */
static int own_index(vq_job_state st)
{
    static const int ix[VQ_JOB_NSTATES] = {IX_QUEUE, IX_RUNNING, IX_DUE, IX_SUCCEEDED, IX_FAILED,
                                           IX_CANCELLED};
    return ix[st];
}

/* Whether the in-flight lists agree: a queued job may be in one, a running job
 * only in its worker's, any other in none.  *count gets how many hold it. */
static int procs_ok(const snapshot *s, const char *id, const vq_job *j, size_t *count)
{
    char mine[VQ_KEY_MAX];
    snprintf(mine, sizeof mine, "%s%s", VQ_K_PROC, j ? j->worker : "");
    int ok = 1;
    *count = 0;
    for (size_t i = 0; i < s->proc_ids.n; i++) {
        if (strcmp(s->proc_ids.v[i], id) != 0) continue;
        (*count)++;
        if (!j || !(j->state == VQ_JOB_QUEUED || (j->state == VQ_JOB_RUNNING && strcmp(s->proc_keys.v[i], mine) == 0)))
            ok = 0;
    }
    return ok && *count <= 1;
}

static int job_suspect(const snapshot *s, const char *id, const vq_job *j)
{
    size_t nproc;
    int pok = procs_ok(s, id, j, &nproc);
    int in[IX_N];
    for (int i = 0; i < IX_N; i++) in[i] = vq_strv_has_(&s->ix[i], id);
    if (!j) return !pok || nproc || in[IX_QUEUE] || in[IX_RUNNING] || in[IX_DUE] || in[IX_SUCCEEDED] ||
                   in[IX_FAILED] || in[IX_CANCELLED];
    int own = own_index(j->state);
    for (int i = 0; i < IX_N; i++)
        if (in[i] != (i == own) && !(i == IX_QUEUE && j->state == VQ_JOB_QUEUED && nproc == 1 && !in[i]))
            return 1;
    /* An ended job is scored by its end time (u; none: any score will do). */
    if (own >= IX_SUCCEEDED && j->updated) {
        char at[VQ_KEY_MAX];
        snprintf(at, sizeof at, "%s %lld", id, (long long)j->updated);
        if (!vq_strv_has_(&s->ended_at, at)) return 1;
    }
    const char *h = lock_of(s, j->disk_id);
    if (is_live(j) && (!h || strcmp(h, id) != 0)) return 1;
    return !pok;
}

static int lock_suspect(const snapshot *s, size_t i)
{
    const vq_job *j = job_of(s, s->lock_jobs.v[i]);
    return !is_live(j) || strcmp(j->disk_id, s->lock_disks.v[i]) != 0;
}

/* ---- fixing ----------------------------------------------------------- */

static int run_repair(vq_queue *q, vq_strv *k, vq_strv *a, size_t *fixed, size_t *conflicts,
                      vq_error *err)
{
    redisReply *rep = vq_queue_run_(q, "repair.lua", k, a, err);
    if (!rep) return VQ_EREDIS;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
        *fixed += (size_t)rep->element[0]->integer;
        *conflicts += (size_t)rep->element[1]->integer;
    }
    freeReplyObject(rep);
    return 0;
}

static int fix_locks(vq_queue *q, const snapshot *s, size_t *fixed, size_t *conflicts, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    int rc = 0;
    vq_strv_add_(&a, "locks");
    for (size_t i = 0; i <= s->lock_disks.n && !rc; i++) {
        if (i < s->lock_disks.n && lock_suspect(s, i)) {
            vq_strv_addf_(&k, "%s%s", VQ_K_JOB, s->lock_jobs.v[i]);
            vq_strv_add_(&a, s->lock_disks.v[i]);
            vq_strv_add_(&a, s->lock_jobs.v[i]);
        }
        if (k.n && (k.n == VQ_BATCH || i == s->lock_disks.n)) {
            rc = run_repair(q, &k, &a, fixed, conflicts, err);
            vq_strv_free_(&k);
            vq_strv_free_(&a);
            vq_strv_add_(&a, "locks");
        }
    }
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

/* A job's keys and args for repair.lua's 'jobs' mode. */
static void add_job(const snapshot *s, const char *id, vq_strv *k, vq_strv *a)
{
    size_t n = 0;
    vq_strv_addf_(k, "%s%s", VQ_K_JOB, id);
    for (size_t i = 0; i < s->proc_ids.n; i++)
        if (strcmp(s->proc_ids.v[i], id) == 0) {
            vq_strv_add_(k, s->proc_keys.v[i]);
            n++;
        }
    vq_strv_add_(a, id);
    vq_strv_addf_(a, "%zu", n);
}

static int fix_jobs(vq_queue *q, const snapshot *s, size_t *fixed, size_t *conflicts, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    int rc = 0;
    size_t batch = 0;
    vq_strv_add_(&a, "jobs");
    for (size_t i = 0; i <= s->ids.n && !rc; i++) {
        if (i < s->ids.n && job_suspect(s, s->ids.v[i], s->jobs[i])) {
            add_job(s, s->ids.v[i], &k, &a);
            batch++;
        }
        if (batch && (batch == VQ_BATCH || i == s->ids.n)) {
            rc = run_repair(q, &k, &a, fixed, conflicts, err);
            vq_strv_free_(&k);
            vq_strv_free_(&a);
            vq_strv_add_(&a, "jobs");
            batch = 0;
        }
    }
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

/* Deletes the old keys, after the jobs: a repair cut short keeps them and
 * the next one goes on. */
static int drop_old_keys(vq_queue *q, size_t *fixed, size_t *conflicts, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    for (size_t i = 0; i < NOLD_KEYS; i++) vq_strv_add_(&k, old_keys[i]);
    vq_strv_add_(&a, "old");
    size_t before = *fixed;
    int rc = k.oom || a.oom ? vq_error_set(err, VQ_ENOMEM, "repair: out of memory")
                            : run_repair(q, &k, &a, fixed, conflicts, err);
    if (!rc && *fixed > before)
        vq_log(VQ_LOG_NOTICE, "repair: keys of an earlier version deleted ({volq}:ended); "
               "ended jobs are indexed by end time");
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

int vq_queue_repair(vq_queue *q, size_t *fixed, vq_error *err)
{
    snapshot s;
    memset(&s, 0, sizeof s);
    size_t n = 0, conflicts = 0;
    int rc = take_snapshot(q, &s, err);
    if (!rc) rc = fix_locks(q, &s, &n, &conflicts, err);
    if (!rc) rc = fix_jobs(q, &s, &n, &conflicts, err);
    if (!rc && s.old_keys) rc = drop_old_keys(q, &n, &conflicts, err);
    if (!rc && n) vq_log(VQ_LOG_NOTICE, "repair: %zu fixes", n);
    if (!rc && conflicts)
        vq_log(VQ_LOG_WARN, "repair: %zu live jobs wait for a disk another live job holds", conflicts);
    snapshot_free(&s);
    if (fixed) *fixed = n;
    return rc;
}
