/* The worker side: registration, reliable fetch (BLMOVE into the worker's own
 * in-flight list, then start.lua), fenced heartbeat/progress/finish, and the
 * requeue of a dead worker's jobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"
#include "redis_int.h"
#include "volq/spawn.h"

/* Skipped (cancelled) jobs a single fetch may pass over before giving up. */
#define FETCH_ROUNDS 64
/* "Forever" for requeue's liveness cutoff: the caller knows the worker is dead. */
#define CUTOFF_DEAD "9000000000000000"

/* ---- registration ------------------------------------------------------ */

int vq_queue_worker_beat(vq_queue *q, const char *worker, const char *job_id, vq_error *err)
{
    int rc = vq_queue_worker_valid_(worker, err);
    if (rc) return rc;
    vq_strv a = {0};
    vq_strv_add_(&a, worker);
    vq_strv_add_(&a, job_id ? job_id : "");
    redisReply *rep = vq_queue_run_(q, "beat.lua", NULL, &a, err);
    vq_strv_free_(&a);
    if (!rep) return vq_redis_rc(err);
    freeReplyObject(rep);
    return 0;
}

int vq_queue_requeue_(vq_queue *q, const char *mode, const char *cutoff, char **ids,
                      char **workers, size_t n, char **drop, size_t ndrop,
                      vq_requeue_count *count, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    vq_strv_add_(&a, mode);
    vq_strv_add_(&a, cutoff);
    vq_strv_addf_(&a, "%zu", n);
    for (size_t i = 0; i < n; i++) {
        vq_strv_addf_(&k, "%s%s", VQ_K_JOB, ids[i]);
        vq_strv_addf_(&k, "%s%s", VQ_K_PROC, workers[i]);
        vq_strv_add_(&a, ids[i]);
        vq_strv_add_(&a, workers[i]);
    }
    for (size_t i = 0; i < ndrop; i++) {
        vq_strv_addf_(&k, "%s%s", VQ_K_PROC, drop[i]);
        vq_strv_add_(&a, drop[i]);
    }
    redisReply *rep = vq_queue_run_(q, "requeue.lua", &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    if (!rep) return vq_redis_rc(err);
    int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 3;
    if (ok) {
        count->requeued += (size_t)rep->element[0]->integer;
        count->failed += (size_t)rep->element[1]->integer;
        count->dropped += (size_t)rep->element[2]->integer;
    }
    freeReplyObject(rep);
    return ok ? 0 : vq_error_set(err, VQ_EREDIS, "requeue.lua: unexpected reply");
}

/* The ids in a worker's in-flight list (a new vector). */
static int read_proc(vq_queue *q, const char *worker, vq_strv *ids, vq_error *err)
{
    char key[VQ_KEY_MAX];
    int rc = vq_queue_key_(key, sizeof key, VQ_K_PROC, worker, err);
    if (rc) return rc;
    const char *argv[] = {"LRANGE", key, "0", "-1"};
    redisReply *rep = vq_redis_argv(q->r, 4, argv, NULL, err);
    if (!rep) return vq_redis_rc(err);
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
        vq_strv_add_(ids, vq_reply_str_(rep, i));
    freeReplyObject(rep);
    return ids->oom ? vq_error_set(err, VQ_ENOMEM, "queue: out of memory") : 0;
}

/* The jobs in worker's in-flight list back to the queue (mode: "worker" for
 * a dead one, "gone" for a clean exit), its registration dropped. */
static int put_back(vq_queue *q, const char *mode, const char *worker, int *n, vq_error *err)
{
    if (n) *n = 0;
    int rc = vq_queue_worker_valid_(worker, err);
    if (rc) return rc;
    vq_strv ids = {0}, ws = {0};
    if ((rc = read_proc(q, worker, &ids, err))) goto out_free;
    for (size_t i = 0; i < ids.n; i++) vq_strv_add_(&ws, worker);
    vq_requeue_count c = {0};
    char *drop[] = {(char *)worker};
    rc = vq_queue_requeue_(q, mode, CUTOFF_DEAD, ids.v, ws.v, ids.n, drop, 1, &c, err);
    if (!rc && n) *n = (int)c.requeued;
out_free:
    vq_strv_free_(&ids);
    vq_strv_free_(&ws);
    return rc;
}

int vq_queue_requeue_worker(vq_queue *q, const char *worker, int *n, vq_error *err)
{
    return put_back(q, "worker", worker, n, err);
}

int vq_queue_worker_gone(vq_queue *q, const char *worker, vq_error *err)
{
    return put_back(q, "gone", worker, NULL, err);
}

/* ---- fetch --------------------------------------------------------------- */

/* A script sent in the same pipeline as the first move of a fetch. */
typedef struct head {
    const char *script;
    vq_strv keys, args;
    unsigned long runs;  /* finish: qemu-img runs it reports */
    redisReply *reply;   /* its answer, or NULL with err set */
    vq_error err;
} head;

/* qemu-img runs of this process (vq_spawn_count) already added to the shared
 * counter by a finish; a fenced finish adds nothing, so the next one does. */
static unsigned long runs_reported;

/* The last finish whose answer was lost with the connection: it may have run
 * and added its runs.  Sent again, the same attempt's finish answers stale
 * if it did, and its runs are then reported (not added again by the next
 * finish).  A finish lost before it reached Redis and fenced meanwhile
 * leaves its runs uncounted: rarer, and a count short rather than double. */
static struct {
    char id[VQ_UUID_SIZE];  /* "" when none */
    unsigned long long token;
    unsigned long runs;
} unsure;

static int append_move(vq_queue *q, const char *proc, int block_ms, vq_error *err)
{
    char secs[32];
    snprintf(secs, sizeof secs, "%d.%03d", block_ms / 1000, block_ms % 1000);
    const char *argv[] = {block_ms > 0 ? "BLMOVE" : "LMOVE", VQ_K_QUEUE, proc, "RIGHT", "LEFT",
                          secs};
    return vq_redis_append_argv(q->r, block_ms > 0 ? 6 : 5, argv, NULL, err);
}

/* The answer of an appended move: the id, "" when none came. */
static int read_move(vq_queue *q, char id[VQ_UUID_SIZE], vq_error *err)
{
    redisReply *rep = vq_redis_get_reply(q->r, err);
    if (!rep) return vq_redis_rc(err);
    if (rep->type == REDIS_REPLY_STRING) snprintf(id, VQ_UUID_SIZE, "%s", rep->str);
    freeReplyObject(rep);
    return 0;
}

/* [head,] move: the id moved into the worker's list, "" when none came. */
static int move(vq_queue *q, const char *proc, int block_ms, head *h, char id[VQ_UUID_SIZE],
                vq_error *err)
{
    id[0] = '\0';
    int rc = h ? vq_queue_append_(q, h->script, &h->keys, &h->args, &h->err) : 0;
    if (rc) return vq_error_set(err, rc, "%s", h->err.text);
    rc = append_move(q, proc, block_ms, err);
    vq_redis_block_(q->r, block_ms);
    if (h) h->reply = vq_redis_get_reply(q->r, &h->err);
    if (!rc) rc = read_move(q, id, err);
    vq_redis_block_(q->r, 0);
    return rc;
}

int vq_queue_proc_key_(const char *worker, char proc[VQ_KEY_MAX], vq_error *err)
{
    int rc = vq_queue_worker_valid_(worker, err);
    return rc ? rc : vq_queue_key_(proc, VQ_KEY_MAX, VQ_K_PROC, worker, err);
}

int vq_queue_append_start_(vq_queue *q, const char *worker, const char *proc, const char *id,
                           vq_error *err)
{
    vq_strv k = {0}, a = {0};
    vq_strv_addf_(&k, "%s%s", VQ_K_JOB, id);
    vq_strv_add_(&k, proc);
    vq_strv_add_(&a, id);
    vq_strv_add_(&a, worker);
    int rc = vq_queue_append_(q, "start.lua", &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

int vq_queue_read_start_(vq_queue *q, const char *id, vq_job **out, vq_error *err)
{
    redisReply *rep = vq_redis_get_reply(q->r, err);
    if (!rep) return vq_redis_rc(err);
    int rc = 0;
    if (strcmp(vq_reply_str_(rep, 0), "ok") == 0) rc = vq_queue_job_of_reply_(id, rep, out, err);
    freeReplyObject(rep);
    return rc;
}

static int start_one(vq_queue *q, const char *worker, const char *proc, const char *id,
                     vq_job **out, vq_error *err)
{
    int rc = vq_queue_append_start_(q, worker, proc, id, err);
    return rc ? rc : vq_queue_read_start_(q, id, out, err);
}

static int fetch_with(vq_queue *q, const char *worker, int block_ms, head *h, vq_job **out,
                      vq_error *err)
{
    *out = NULL;
    char proc[VQ_KEY_MAX], id[VQ_UUID_SIZE];
    int rc = vq_queue_proc_key_(worker, proc, err);
    if (rc) return rc;
    int64_t deadline = vq_now_ms() + (block_ms > 0 ? block_ms : 0);
    for (int round = 0; round < FETCH_ROUNDS; round++) {
        int64_t left = deadline - vq_now_ms();
        rc = move(q, proc, left > 0 ? (int)left : 0, round == 0 ? h : NULL, id, err);
        if (rc || !id[0]) return rc;
        rc = start_one(q, worker, proc, id, out, err);
        if (rc || *out) return rc;
    }
    return 0;
}

int vq_queue_fetch(vq_queue *q, const char *worker, int block_ms, vq_job **out, vq_error *err)
{
    head h = {.script = "beat.lua"};
    vq_strv_add_(&h.args, worker ? worker : "");
    vq_strv_add_(&h.args, "");
    int rc = fetch_with(q, worker, block_ms, &h, out, err);
    if (h.reply) freeReplyObject(h.reply);
    vq_strv_free_(&h.args);
    return rc;
}

/* A job boundary in one pipeline: [h (a finish),] start.lua of claimed, [the
 * claim of the next into id].  *out is the started job; h->reply gets the
 * head's answer.  The return code is the start's, else the claim's. */
static int boundary(vq_queue *q, const char *worker, head *h, const char *claimed, vq_job **out,
                    char *id, vq_error *err)
{
    char proc[VQ_KEY_MAX];
    vq_error cerr = {0};
    *out = NULL;
    if (id) id[0] = '\0';
    int rc = vq_queue_proc_key_(worker, proc, err);
    if (!rc && h) rc = vq_queue_append_(q, h->script, &h->keys, &h->args, &h->err);
    if (rc) return h && h->err.code ? vq_error_set(err, rc, "%s", h->err.text) : rc;
    int src = vq_queue_append_start_(q, worker, proc, claimed, err);
    int crc = id ? append_move(q, proc, 0, &cerr) : 0;
    if (h) h->reply = vq_redis_get_reply(q->r, &h->err);
    if (!src) src = vq_queue_read_start_(q, claimed, out, err);
    if (id && !crc) crc = read_move(q, id, &cerr);
    return src ? src : crc ? vq_error_set(err, crc, "%s", cerr.text) : 0;
}

/* A bare move: the worker wants no record yet (vq_queue_batch's claims read
 * theirs in a second round trip). */
int vq_queue_claim(vq_queue *q, const char *worker, char id[VQ_UUID_SIZE], vq_error *err)
{
    char proc[VQ_KEY_MAX];
    id[0] = '\0';
    int rc = vq_queue_proc_key_(worker, proc, err);
    return rc ? rc : move(q, proc, 0, NULL, id, err);
}

/* The start and the hand-back are those of a batch with that one step. */
int vq_queue_start_claimed(vq_queue *q, const char *worker, const char *id, vq_job **out,
                           vq_error *err)
{
    vq_batch b = {.worker = worker, .start = id};
    int rc = vq_queue_batch(q, &b, err);
    *out = b.started;
    return rc;
}

int vq_queue_start_claim(vq_queue *q, const char *worker, const char *claimed, vq_job **out,
                         char id[VQ_UUID_SIZE], vq_error *err)
{
    return boundary(q, worker, NULL, claimed, out, id, err);
}

int vq_queue_unclaim(vq_queue *q, const char *worker, const char id[VQ_UUID_SIZE], vq_error *err)
{
    vq_batch b = {.worker = worker, .back = (const char(*)[VQ_UUID_SIZE])id, .nback = 1};
    return vq_queue_batch(q, &b, err);
}

/* ---- fenced writes ----------------------------------------------------- */

static int stale(const vq_job *j, vq_error *err)
{
    return vq_error_set(err, VQ_ESTALE, "job %s: attempt %llu was fenced (requeued or ended)",
                        j->id, (unsigned long long)j->token);
}

/* A fenced script's keys (job) and args (id, token, more...). */
static void fenced_call(const vq_job *j, const vq_strv *more, vq_strv *k, vq_strv *a)
{
    vq_strv_addf_(k, "%s%s", VQ_K_JOB, j->id);
    vq_strv_add_(a, j->id);
    vq_strv_addf_(a, "%llu", (unsigned long long)j->token);
    for (size_t i = 0; more && i < more->n; i++) vq_strv_addn_(a, more->v[i], more->len[i]);
}

/* A fenced script's answer: 'ok', or 'stale' (VQ_ESTALE). */
static int fenced_answer(const vq_job *j, redisReply *rep, vq_error *err)
{
    if (!rep) return vq_redis_rc(err);
    int rc = strcmp(rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING ? rep->str : "",
                    "ok") == 0 ? 0 : stale(j, err);
    freeReplyObject(rep);
    return rc;
}

/* Runs a fenced script on j. */
static int fenced(vq_queue *q, const vq_job *j, const char *script, vq_strv *more,
                  vq_error *err)
{
    vq_strv k = {0}, a = {0};
    fenced_call(j, more, &k, &a);
    redisReply *rep = vq_queue_run_(q, script, &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return fenced_answer(j, rep, err);
}

int vq_queue_heartbeat(vq_queue *q, const vq_job *j, vq_error *err)
{
    return fenced(q, j, "heartbeat.lua", NULL, err);
}

static int progress_args(const vq_job *j, int done, int total, vq_strv *more, vq_error *err)
{
    if (done < 0 || total < 0 || done > total)
        return vq_error_set(err, VQ_EINVAL, "job %s: progress %d of %d", j->id, done, total);
    vq_strv_addf_(more, "%d", done);
    vq_strv_addf_(more, "%d", total);
    return 0;
}

int vq_queue_progress(vq_queue *q, const vq_job *j, int done, int total, vq_error *err)
{
    vq_strv more = {0};
    int rc = progress_args(j, done, total, &more, err);
    if (rc == 0) rc = fenced(q, j, "progress.lua", &more, err);
    vq_strv_free_(&more);
    return rc;
}

/* progress.lua appended to the pipeline, with the plan when not NULL. */
static int progress_append(vq_queue *q, const vq_job *j, int done, int total, const char *plan,
                           vq_error *err)
{
    vq_strv more = {0}, k = {0}, a = {0};
    int rc = progress_args(j, done, total, &more, err);
    if (rc == 0) {
        if (plan) vq_strv_add_(&more, plan);
        fenced_call(j, &more, &k, &a);
        rc = vq_queue_append_(q, "progress.lua", &k, &a, err);
    }
    vq_strv_free_(&more);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

int vq_queue_progress_send(vq_queue *q, const vq_job *j, int done, int total, vq_error *err)
{
    return progress_append(q, j, done, total, NULL, err);
}

int vq_queue_plan_send(vq_queue *q, const vq_job *j, int total, const char *plan, vq_error *err)
{
    int rc = progress_append(q, j, 0, total, plan ? plan : "", err);
    return rc ? rc : vq_redis_send(q->r, err);
}

int vq_queue_fence_send(vq_queue *q, const vq_job *j, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    fenced_call(j, NULL, &k, &a);
    int rc = vq_queue_append_(q, "fence.lua", &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

int vq_queue_progress_recv(vq_queue *q, const vq_job *j, vq_error *err)
{
    return fenced_answer(j, vq_redis_get_reply(q->r, err), err);
}

static const char *const outcome_names[] = {"success", "refused", "retry"};

/* finish.lua's keys and args for j (see finish.lua). */
static int finish_call(vq_queue *q, const vq_job *j, vq_outcome o, const char *reason, head *h,
                       vq_error *err)
{
    if ((int)o < 0 || o > VQ_OUT_RETRY)
        return vq_error_set(err, VQ_EINVAL, "job %s: unknown outcome %d", j->id, (int)o);
    if (!reason || !*reason) reason = o == VQ_OUT_SUCCESS ? "" : "failed without a reason";
    h->script = "finish.lua";
    vq_strv_addf_(&h->keys, "%s%s", VQ_K_JOB, j->id);
    vq_strv_addf_(&h->keys, "%s%s", VQ_K_PROC, j->worker);
    vq_strv_add_(&h->keys, VQ_K_STATS);
    vq_strv_add_(&h->args, j->id);
    vq_strv_addf_(&h->args, "%llu", (unsigned long long)j->token);
    vq_strv_add_(&h->args, outcome_names[o]);
    vq_strv_add_text_(&h->args, reason, VQ_REASON_MAX);
    double u = (double)rand_r(&q->seed) / RAND_MAX;
    vq_strv_addf_(&h->args, "%d", vq_queue_backoff_ms(&q->cfg, j->attempts, u));
    h->runs = vq_spawn_count() - runs_reported;
    vq_strv_addf_(&h->args, "%lu", h->runs);
    vq_strv_addf_(&h->args, "%d", j->done);
    vq_strv_addf_(&h->args, "%d", j->total);
    if (j->run_ms > 0) {
        vq_strv_addf_(&h->args, "%lld", (long long)j->run_ms);
        vq_strv_addf_(&h->args, "%d", vq_run_bucket(j->run_ms));
    }
    return 0;
}

/* A finish of j (as h) got no answer: lost (VQ_EREDIS), it may have run. */
static void finish_lost(const vq_job *j, const head *h, const vq_error *e)
{
    if (e->code != VQ_EREDIS) return;
    snprintf(unsure.id, sizeof unsure.id, "%s", j->id);
    unsure.token = j->token;
    unsure.runs = h->runs;
}

/* finish.lua's answer: {'ok', state} or {'stale'}. */
static int finish_result(const vq_job *j, const head *h, const redisReply *rep,
                         vq_job_state *final_state, vq_error *err)
{
    int again = strcmp(unsure.id, j->id) == 0 && unsure.token == j->token;
    unsure.id[0] = '\0';
    if (strcmp(vq_reply_str_(rep, 0), "ok") != 0) {
        if (again) runs_reported += unsure.runs; /* the lost one ran */
        return stale(j, err);
    }
    runs_reported += h->runs;
    if (final_state) *final_state = (vq_job_state)vq_job_state_parse(vq_reply_str_(rep, 1));
    return 0;
}

static void head_free(head *h)
{
    if (h->reply) freeReplyObject(h->reply);
    vq_strv_free_(&h->keys);
    vq_strv_free_(&h->args);
}

int vq_queue_finish(vq_queue *q, const vq_job *j, vq_outcome o, const char *reason,
                    vq_job_state *final_state, vq_error *err)
{
    head h = {0};
    vq_error e = {0};
    int rc = finish_call(q, j, o, reason, &h, err);
    redisReply *rep = rc ? NULL : vq_queue_run_(q, h.script, &h.keys, &h.args, &e);
    if (!rc && rep) rc = finish_result(j, &h, rep, final_state, err);
    if (!rc && !rep) {
        finish_lost(j, &h, &e);
        rc = vq_error_set(err, e.code ? e.code : VQ_EREDIS, "%s", e.text);
    }
    if (rep) freeReplyObject(rep);
    head_free(&h);
    return rc;
}

/* The answer of a finish sent in front of another step (a fetch, a claim)
 * whose own result is then (code, text). */
static int finish_then(const vq_job *prev, head *h, int then, const vq_error *terr,
                       vq_job_state *final_state, vq_error *err)
{
    int rc;
    if (h->reply) {
        rc = finish_result(prev, h, h->reply, final_state, err);
    } else {
        finish_lost(prev, h, &h->err);
        rc = vq_error_set(err, h->err.code ? h->err.code : then ? then : VQ_EREDIS, "%s",
                          h->err.code ? h->err.text : terr->text);
    }
    if (!rc && then) rc = vq_error_set(err, then, "%s", terr->text);
    return rc;
}

int vq_queue_finish_fetch(vq_queue *q, const vq_job *prev, vq_outcome o, const char *reason,
                          vq_job_state *final_state, int block_ms, vq_job **next,
                          vq_error *err)
{
    *next = NULL;
    head h = {0};
    int rc = finish_call(q, prev, o, reason, &h, err);
    if (rc) goto out_free;
    vq_error ferr = {0};
    int frc = fetch_with(q, prev->worker, block_ms, &h, next, &ferr);
    rc = finish_then(prev, &h, frc, &ferr, final_state, err);
out_free:
    head_free(&h);
    return rc;
}

int vq_queue_finish_claim(vq_queue *q, const vq_job *prev, vq_outcome o, const char *reason,
                          vq_job_state *final_state, char id[VQ_UUID_SIZE], vq_error *err)
{
    head h = {0};
    char proc[VQ_KEY_MAX];
    id[0] = '\0';
    int rc = finish_call(q, prev, o, reason, &h, err);
    if (!rc) rc = vq_queue_proc_key_(prev->worker, proc, err);
    if (rc) goto out_free;
    vq_error cerr = {0};
    int crc = move(q, proc, 0, &h, id, &cerr);
    rc = finish_then(prev, &h, crc, &cerr, final_state, err);
out_free:
    head_free(&h);
    return rc;
}

int vq_queue_finish_start_claim(vq_queue *q, const vq_job *prev, vq_outcome o,
                                const char *reason, vq_job_state *final_state,
                                const char *claimed, vq_job **next, char *id, vq_error *err)
{
    *next = NULL;
    if (id) id[0] = '\0';
    head h = {0};
    int rc = finish_call(q, prev, o, reason, &h, err);
    if (rc) goto out_free;
    vq_error berr = {0};
    int brc = boundary(q, prev->worker, &h, claimed, next, id, &berr);
    rc = finish_then(prev, &h, brc, &berr, final_state, err);
out_free:
    head_free(&h);
    return rc;
}

int vq_queue_finish_start(vq_queue *q, const vq_job *prev, vq_outcome o, const char *reason,
                          vq_job_state *final_state, const char *claimed, vq_job **next,
                          vq_error *err)
{
    return vq_queue_finish_start_claim(q, prev, o, reason, final_state, claimed, next, NULL, err);
}
