/* The job routes: list, one job, retry (one or every failed), cancel. */
#include "sched_int.h"
#include "volq/log.h"

#define VQ_JOBS_LIMIT_DEFAULT 100
#define VQ_JOBS_LIMIT_MAX 10000

static void reply_job(vq_req *r, int code, const char *id)
{
    vq_job *j = NULL;
    vq_error err = {0};
    if (vq_queue_get(r->s->q, id, &j, &err)) {
        if (err.code == VQ_ENOENT)
            vq_reply_error_(r, 404, NULL, "job %s not found", id);
        else
            vq_reply_verror_(r, &err);
        return;
    }
    vq_reply_json_(r, code, vq_job_json(j));
    vq_job_free(j);
}

void vq_api_jobs_(vq_req *r)
{
    const char *state = vq_req_query_(r, "state");
    int st = state ? vq_job_state_parse(state) : -1;
    long limit;
    json_t *out = NULL;
    vq_error err = {0};
    if (state && st < 0) {
        vq_reply_error_(r, 400, NULL, "unknown state \"%.32s\"; one of queued, running, "
                        "retrying, succeeded, failed, cancelled", state);
        return;
    }
    if (vq_req_query_int_(r, "limit", 1, VQ_JOBS_LIMIT_MAX, VQ_JOBS_LIMIT_DEFAULT, &limit)) return;
    if (vq_queue_list(r->s->q, st, (size_t)limit, &out, &err))
        vq_reply_verror_(r, &err);
    else
        vq_reply_json_(r, 200, out);
}

void vq_api_job_(vq_req *r)
{
    if (vq_req_uuid_(r, r->arg[0], "job id") == 0) reply_job(r, 200, r->arg[0]);
}

/* VQ_ENOENT from a change names the job like GET does.  A retry is work
 * accepted again (202); a cancel is done when it answers (200). */
static void reply_change(vq_req *r, int rc, const vq_error *err, const char *what, int code)
{
    if (rc == 0) {
        vq_log(VQ_LOG_INFO, "job %s: %s by request", r->arg[0], what);
        reply_job(r, code, r->arg[0]);
    } else if (rc == VQ_ENOENT) {
        vq_reply_error_(r, 404, NULL, "job %s not found", r->arg[0]);
    } else {
        vq_reply_verror_(r, err);
    }
}

/* These routes take no fields: a body, when sent, must be an empty object (a
 * malformed one is answered 400 and nothing changes, as everywhere). */
static int no_fields(vq_req *r)
{
    static const char *const none[] = {NULL};
    json_t *b = vq_req_body_(r, none);
    json_decref(b);
    return b ? 0 : -1;
}

void vq_api_job_retry_(vq_req *r)
{
    vq_error err = {0};
    if (vq_req_uuid_(r, r->arg[0], "job id") || no_fields(r)) return;
    reply_change(r, vq_queue_retry(r->s->q, r->arg[0], &err), &err, "retried", 202);
}

void vq_api_job_cancel_(vq_req *r)
{
    vq_error err = {0};
    if (vq_req_uuid_(r, r->arg[0], "job id") || no_fields(r)) return;
    reply_change(r, vq_queue_cancel(r->s->q, r->arg[0], &err), &err, "cancelled", 200);
}

void vq_api_jobs_retry_(vq_req *r)
{
    size_t retried = 0, left = 0;
    vq_error err = {0};
    if (no_fields(r)) return;
    if (vq_queue_retry_failed(r->s->q, &retried, &left, &err)) {
        vq_reply_verror_(r, &err);
        return;
    }
    vq_log(VQ_LOG_INFO, "retry of every failed job: %zu retried, %zu left", retried, left);
    vq_reply_json_(r, 200, json_pack("{s:I,s:I}", "retried", (json_int_t)retried, "left",
                                     (json_int_t)left));
}
