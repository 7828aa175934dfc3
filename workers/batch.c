/* Runs of jobs with nothing to do (vq_queue_batch): after a job that needed
 * nothing, the worker claims the next jobs 2, 4, ... 32 at a time, checks
 * each with its kind's noop(), records those that need nothing together, and
 * at the first job that needs work hands the rest back and starts that one
 * alone.  Two round trips per claim instead of two per job. */
#include <stdlib.h>
#include <string.h>

#include "volq/kind.h"
#include "volq/log.h"
#include "worker_int.h"

void vq_wbatch_begin_(vq_wbatch *b)
{
    if (!b->size) b->size = 2;
}

static void log_idle(const vq_wbatch *b, const unsigned char *recorded)
{
    for (size_t i = 0; i < b->nidle; i++) {
        const vq_job *j = b->idle_jobs[i];
        if (recorded[i])
            vq_log(VQ_LOG_INFO, "job %s: %s of disk %s, attempt %d: nothing to do; succeeded",
                   j->id, j->kind, j->disk_id, j->attempts + 1);
        else
            vq_log(VQ_LOG_INFO, "job %s: not queued any more (cancelled?); left as it is", j->id);
    }
}

/* Frees what the last vq_queue_batch call was given and answered. */
static void settle(vq_wbatch *b, const unsigned char *recorded)
{
    if (recorded) log_idle(b, recorded);
    for (size_t i = 0; i < b->nidle; i++) vq_job_free(b->idle_jobs[i]);
    for (size_t i = 0; i < b->n; i++) vq_job_free(b->jobs[i]);
    memset(b->jobs, 0, sizeof b->jobs);
    b->nidle = b->n = b->next = 0;
}

/* One call: the idle ones recorded, the claimed ones from `from` on handed
 * back (all but the one started), `start` started, want more claimed. */
static int call(vq_wbatch *b, vq_queue *q, const char *worker, size_t from, const char *start,
                size_t want, vq_job **started, vq_error *err)
{
    unsigned char recorded[VQ_WORKER_BATCH_MAX] = {0};
    char ids[VQ_WORKER_BATCH_MAX][VQ_UUID_SIZE];
    vq_job *jobs[VQ_WORKER_BATCH_MAX] = {0};
    vq_batch req = {
        .worker = worker, .idle = (const char(*)[VQ_UUID_SIZE])b->idle, .nidle = b->nidle,
        .back = (const char(*)[VQ_UUID_SIZE])b->ids + from, .nback = b->n > from ? b->n - from : 0,
        .start = start, .want = want, .recorded = recorded, .claimed_ids = ids, .claimed = jobs,
    };
    int rc = vq_queue_batch(q, &req, err);
    settle(b, rc ? NULL : recorded);
    memcpy(b->ids, ids, sizeof ids);
    memcpy(b->jobs, jobs, sizeof jobs);
    b->n = req.nclaimed;
    if (started) *started = req.started;
    else vq_job_free(req.started);
    return rc;
}

/* Whether claimed job i needs nothing (its kind says so from the files). */
static int needs_nothing(vq_wbatch *b, size_t i, const char *root)
{
    const vq_job *j = b->jobs[i];
    const vq_job_kind *k = j ? vq_job_kind_find(j->kind) : NULL;
    return j && j->state == VQ_JOB_QUEUED && k && k->noop && k->noop(j, root, &b->domain);
}

vq_job *vq_wbatch_next_(vq_wbatch *b, vq_queue *q, const char *worker, const char *root,
                        vq_error *err)
{
    while (b->size && !vq_worker_stop_) {
        if (b->next == b->n) {
            /* The domain is read again for each claim: a few ms old at most. */
            vq_domain_free(b->domain);
            b->domain = NULL;
            size_t want = b->size;
            if (call(b, q, worker, b->n, NULL, want, NULL, err)) return NULL;
            b->size = b->n == 0 ? 0 : want * 2 > VQ_WORKER_BATCH_MAX ? VQ_WORKER_BATCH_MAX
                                                                        : want * 2;
            continue;
        }
        if (needs_nothing(b, b->next, root)) {
            memcpy(b->idle[b->nidle], b->ids[b->next], VQ_UUID_SIZE);
            b->idle_jobs[b->nidle++] = b->jobs[b->next];
            b->jobs[b->next++] = NULL;
            continue;
        }
        /* Work to do: this one alone, the rest back to the other workers. */
        vq_job *started = NULL;
        char id[VQ_UUID_SIZE];
        memcpy(id, b->ids[b->next], VQ_UUID_SIZE);
        b->size = 0;
        if (call(b, q, worker, b->next + 1, id, 0, &started, err)) return NULL;
        return started;
    }
    return NULL;
}

int vq_wbatch_end_(vq_wbatch *b, vq_queue *q, const char *worker, vq_error *err)
{
    int rc = b->nidle || b->next < b->n ? call(b, q, worker, b->next, NULL, 0, NULL, err) : 0;
    settle(b, NULL);
    vq_domain_free(b->domain);
    b->domain = NULL;
    b->size = 0;
    return rc;
}

void vq_wbatch_abort_(vq_wbatch *b, vq_queue *q, const char *worker)
{
    vq_error err = {0};
    settle(b, NULL);
    vq_domain_free(b->domain);
    b->domain = NULL;
    b->size = 0;
    if (vq_queue_requeue_worker(q, worker, NULL, &err))
        vq_log(VQ_LOG_WARN, "worker %s: claimed jobs left to the parent or the lease: %s", worker,
               err.text);
}
