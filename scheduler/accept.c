/* Acceptance of single jobs (amend, create-volume): one vq_queue_accept call,
 * answered 202 (queued), 200 (Idempotency-Key seen), 409 (refused or locked). */
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"
#include "volq/log.h"

int vq_disk_holder_(vq_req *r, const char *disk_id, char holder[VQ_UUID_SIZE])
{
    vq_error err = {0};
    const char *ids[1] = {disk_id};
    holder[0] = '\0';
    if (vq_queue_lock_holders(r->s->q, ids, 1, (char(*)[VQ_UUID_SIZE])holder, &err)) {
        vq_reply_verror_(r, &err);
        return -1;
    }
    return holder[0] != '\0';
}

/* The records in pipelined rounds (a bulk upgrade answers with every job it
 * made: one round trip per job was 20,000 of them for a large domain). */
json_t *vq_jobs_of_(vq_sched *s, const char (*ids)[VQ_UUID_SIZE], size_t n, vq_error *err)
{
    json_t *arr = json_array();
    vq_job **jobs = calloc(n ? n : 1, sizeof *jobs);
    int rc = arr && jobs ? vq_queue_get_many(s->q, ids, n, jobs, err)
                         : vq_error_set(err, VQ_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!jobs[i]) rc = vq_error_set(err, VQ_ENOENT, "job %s: not found", ids[i]);
        else json_array_append_new(arr, vq_job_json(jobs[i]));
    }
    for (size_t i = 0; jobs && i < n; i++) vq_job_free(jobs[i]);
    free(jobs);
    if (rc == 0) return arr;
    json_decref(arr);
    return NULL;
}

/* The job's record (new: vq_job_free()), or NULL with the error answered. */
static vq_job *job_or_reply(vq_req *r, const char *job_id)
{
    vq_job *j = NULL;
    vq_error err = {0};
    if (vq_queue_get(r->s->q, job_id, &j, &err) == 0) return j;
    vq_reply_verror_(r, &err);
    return NULL;
}

static void reply_job(vq_req *r, int code, const char *job_id)
{
    vq_job *j = job_or_reply(r, job_id);
    if (j) vq_reply_json_(r, code, vq_job_json(j));
    vq_job_free(j);
}

static void reply_locked(vq_req *r, const char *disk_id, const char *holder)
{
    char reason[128];
    snprintf(reason, sizeof reason, "disk %s is locked by job %s", disk_id, holder);
    r->s->stats.lock_conflicts++;
    vq_reply_json_(r, 409, json_pack("{s:s+,s:s,s:s}", "error", reason, "; wait for it or cancel it",
                                     "reason", reason, "locked_by", holder));
}

static void reply_refused(vq_req *r, const vq_accept_req *a, const char *job_id)
{
    if (strcmp(a->kind, "amend") == 0)
        r->s->stats.refused_amend++;
    else
        r->s->stats.refused_create++;
    vq_reply_json_(r, 409, json_pack("{s:s++++,s:s,s:s}", "error", a->kind, " of disk ",
                                     a->disk_id, " refused: ", a->refusal, "reason",
                                     a->refusal, "job_id", job_id));
}

/* 422: the key was used for another request, which made job j (as one
 * request of its own, or as one disk's job of a bulk upgrade). */
static void reply_key_used(vq_req *r, const vq_job *j, int by_bulk)
{
    char reason[320];
    if (by_bulk)
        snprintf(reason, sizeof reason, "this Idempotency-Key was used for an upgrade of domain %s, "
                 "which made job %s for disk %s: use a new key for another request", j->domain_id,
                 j->id, j->disk_id);
    else
        snprintf(reason, sizeof reason, "this Idempotency-Key made job %s, a %s of disk %s: use a "
                 "new key for another request", j->id, j->kind, j->disk_id);
    vq_reply_json_(r, 422, json_pack("{s:s,s:s,s:s}", "error", reason, "reason", reason,
                                     "job_id", j->id));
}

int vq_bulk_key_(const char *key, const char *disk_id, char out[VQ_BULK_KEY_MAX])
{
    int n = snprintf(out, VQ_BULK_KEY_MAX, "%s/%s", key, disk_id);
    if (n >= 0 && n < VQ_BULK_KEY_MAX) return 0;
    out[0] = '\0';
    return -1;
}

/* The 422 for job_id, made under the key by another request: 1 answered (an
 * error too), 0 when the job is gone (its key no longer holds: acceptance
 * takes it as unused). */
static int refuse_key_of(vq_req *r, const char *job_id, int by_bulk)
{
    vq_job *j = NULL;
    vq_error err = {0};
    int rc = vq_queue_get(r->s->q, job_id, &j, &err);
    if (rc == VQ_ENOENT) return 0;
    if (rc)
        vq_reply_verror_(r, &err);
    else
        reply_key_used(r, j, by_bulk);
    vq_job_free(j);
    return 1;
}

/* The jobs keys[0..n) made, in one round trip: 0, or 1 with the error answered. */
static int read_keys(vq_req *r, const char **keys, size_t n, char (*made)[VQ_UUID_SIZE])
{
    vq_error err = {0};
    if (vq_queue_idem_jobs(r->s->q, keys, n, made, &err) == 0) return 0;
    vq_reply_verror_(r, &err);
    return 1;
}

int vq_idem_used_by_single_(vq_req *r, const char *key)
{
    char made[1][VQ_UUID_SIZE];
    if (!key) return 0;
    if (read_keys(r, &key, 1, made)) return 1;
    return made[0][0] ? refuse_key_of(r, made[0], 0) : 0;
}

int vq_idem_used_by_bulk_(vq_req *r, const char *key, const char *disk_id)
{
    char bulk_key[VQ_BULK_KEY_MAX], made[2][VQ_UUID_SIZE];
    const char *keys[2] = {key, bulk_key};
    if (!key || !disk_id || vq_bulk_key_(key, disk_id, bulk_key)) return 0;
    if (read_keys(r, keys, 2, made)) return 1;
    /* The key of a single request (made[0]) is acceptance's to answer. */
    return !made[0][0] && made[1][0] ? refuse_key_of(r, made[1], 1) : 0;
}

/* 1 when the job j, made under a's Idempotency-Key, is the one a asks for. */
static int same_request(const vq_job *j, const vq_accept_req *a, const vq_same_req *same)
{
    if (strcmp(j->kind, a->kind) != 0 || strcmp(j->domain_id, a->domain_id) != 0) return 0;
    if (same->disk && strcmp(j->disk_id, a->disk_id) != 0) return 0;
    for (const char *const *k = same->params; k && *k; k++)
        if (!json_equal(json_object_get(j->params, *k), json_object_get(a->params, *k))) return 0;
    return 1;
}

/* A repeat with an Idempotency-Key answers with the job the key first made,
 * but only for the same request (same_request: a create-volume of a new disk
 * gets a new disk id each time, so its disk is not compared, and values the
 * request left out were filled in for the first job from the disk as it was
 * then).  Another request under a used key is 422: it was not done, and a 200
 * would say it was.  Nothing changed either way. */
static void reply_idempotent(vq_req *r, const vq_accept_req *a, const vq_same_req *same,
                             const char *job_id)
{
    vq_job *j = job_or_reply(r, job_id);
    if (!j) return;
    if (same_request(j, a, same))
        vq_reply_json_(r, 200, vq_job_json(j));
    else
        reply_key_used(r, j, 0);
    vq_job_free(j);
}

void vq_accept_one_(vq_req *r, const vq_accept_req *a, const vq_same_req *same)
{
    vq_accept_res res = {0};
    vq_error err = {0};
    if (same->disk && vq_idem_used_by_bulk_(r, a->idem_key, a->disk_id)) return;
    if (vq_queue_accept(r->s->q, a, 1, &res, &err)) {
        vq_reply_verror_(r, &err);
        return;
    }
    switch (res.status) {
    case VQ_ACCEPT_QUEUED:
        vq_log(VQ_LOG_INFO, "job %s: %s of disk %s accepted", res.job_id, a->kind, a->disk_id);
        if (strcmp(a->kind, "amend") == 0)
            r->s->stats.accepted_amend++;
        else
            r->s->stats.accepted_create++;
        reply_job(r, 202, res.job_id);
        break;
    case VQ_ACCEPT_IDEMPOTENT: reply_idempotent(r, a, same, res.job_id); break;
    case VQ_ACCEPT_REFUSED: reply_refused(r, a, res.job_id); break;
    case VQ_ACCEPT_LOCKED: reply_locked(r, a->disk_id, res.job_id); break;
    }
}
