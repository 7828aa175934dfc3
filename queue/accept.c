/* Acceptance: n requests -> jobs, disk locks, refusals, idempotency, in one
 * script call after one read of the current lock holders and keys. */
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"

#define IDEM_TTL_S 86400 /* SPEC §4: the same key within 24 hours */

static int check_req(const vq_accept_req *r, size_t i, vq_error *err)
{
    int create = r->kind && strcmp(r->kind, "create-volume") == 0;
    if (!r->kind || (!create && strcmp(r->kind, "amend") != 0))
        return vq_error_set(err, VQ_EINVAL, "request %zu: unknown kind %s", i,
                            r->kind ? r->kind : "(none)");
    if (!vq_uuid_valid(r->domain_id) || !vq_uuid_valid(r->disk_id))
        return vq_error_set(err, VQ_EINVAL, "request %zu: domain and disk must be UUIDs", i);
    if (create ? !vq_uuid_valid(r->volume_id) : (r->volume_id && *r->volume_id))
        return vq_error_set(err, VQ_EINVAL, "request %zu: volume_id must be a UUID for "
                            "create-volume only", i);
    if (r->alias && strlen(r->alias) > VQ_ALIAS_MAX)
        return vq_error_set(err, VQ_EINVAL, "request %zu: alias longer than %d bytes", i,
                            VQ_ALIAS_MAX);
    if (r->idem_key && (!*r->idem_key || strlen(r->idem_key) > VQ_IDEM_KEY_MAX))
        return vq_error_set(err, VQ_EINVAL, "request %zu: idempotency key must be 1..%d bytes",
                            i, VQ_IDEM_KEY_MAX);
    if (r->params && !json_is_object(r->params))
        return vq_error_set(err, VQ_EINVAL, "request %zu: params must be an object", i);
    return 0;
}

/* What the script will check again: the lock holder of each disk and the job
 * each idempotency key made ("" when none), read in one pipeline. */
typedef struct seen {
    redisReply *holders; /* HMGET locks disk... */
    redisReply *idem;    /* MGET idem keys (only requests with a key), or NULL */
} seen;

static int read_seen(vq_queue *q, const vq_accept_req *reqs, size_t n, seen *s, vq_error *err)
{
    vq_strv h = {0}, m = {0};
    vq_strv_add_(&h, "HMGET");
    vq_strv_add_(&h, VQ_K_LOCKS);
    vq_strv_add_(&m, "MGET");
    for (size_t i = 0; i < n; i++) {
        vq_strv_add_(&h, reqs[i].disk_id);
        if (reqs[i].idem_key) vq_strv_addf_(&m, "%s%s", VQ_K_IDEM, reqs[i].idem_key);
    }
    int rc = h.oom || m.oom ? vq_error_set(err, VQ_ENOMEM, "accept: out of memory") : 0;
    int sent = 0; /* every appended command's reply is read, even after an error */
    if (!rc && !(rc = vq_redis_append_argv(q->r, (int)h.n, (const char **)h.v, h.len, err)))
        sent++;
    if (!rc && m.n > 1 &&
        !(rc = vq_redis_append_argv(q->r, (int)m.n, (const char **)m.v, m.len, err)))
        sent++;
    if (sent > 0) s->holders = vq_redis_get_reply(q->r, err);
    if (sent > 1) s->idem = vq_redis_get_reply(q->r, err);
    if (!rc && (!s->holders || (m.n > 1 && !s->idem))) rc = VQ_EREDIS;
    vq_strv_free_(&h);
    vq_strv_free_(&m);
    return rc;
}

static void seen_free(seen *s)
{
    if (s->holders) freeReplyObject(s->holders);
    if (s->idem) freeReplyObject(s->idem);
}

/* The 11 arguments and 1..4 keys of one request (see accept.lua). */
static void add_req(vq_strv *k, vq_strv *a, const vq_accept_req *r, const char *id,
                    const char *holder, const char *idem_job)
{
    char *params = r->params ? json_dumps(r->params, JSON_COMPACT) : NULL;
    if (r->params && !params) a->oom = 1;
    const char *f[] = {id, r->kind, r->domain_id, r->disk_id, r->volume_id ? r->volume_id : ""};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) vq_strv_add_(a, f[i]);
    /* Alias and refusal end up in event JSON: one line of valid UTF-8. */
    vq_strv_add_text_(a, r->alias ? r->alias : "", VQ_ALIAS_MAX);
    vq_strv_add_(a, params ? params : "");
    vq_strv_add_text_(a, r->refusal ? r->refusal : "", VQ_REASON_MAX);
    vq_strv_add_(a, r->idem_key ? r->idem_key : "");
    vq_strv_add_(a, holder);
    vq_strv_add_(a, idem_job);
    free(params);
    vq_strv_addf_(k, "%s%s", VQ_K_JOB, id);
    if (r->idem_key) vq_strv_addf_(k, "%s%s", VQ_K_IDEM, r->idem_key);
    if (*holder) vq_strv_addf_(k, "%s%s", VQ_K_JOB, holder);
    if (*idem_job) vq_strv_addf_(k, "%s%s", VQ_K_JOB, idem_job);
}

/* A value read before, kept only when it is a job id (anything else is ignored
 * and the script treats the key as taken by someone it cannot check). */
static const char *as_id(const char *v) { return vq_uuid_valid(v) ? v : ""; }

static int build(vq_queue *q, const vq_accept_req *reqs, size_t n, const seen *s,
                 char (*ids)[VQ_UUID_SIZE], vq_strv *k, vq_strv *a)
{
    vq_strv_addf_(a, "%d", q->cfg.max_attempts);
    vq_strv_addf_(a, "%d", IDEM_TTL_S);
    vq_strv_addf_(a, "%zu", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        vq_uuid_new(ids[i]);
        const char *idem_job = reqs[i].idem_key ? as_id(vq_reply_str_(s->idem, m++)) : "";
        add_req(k, a, &reqs[i], ids[i], as_id(vq_reply_str_(s->holders, i)), idem_job);
    }
    return k->oom || a->oom ? VQ_ENOMEM : 0;
}

static vq_accept_status status_of(const char *s)
{
    if (strcmp(s, "queued") == 0) return VQ_ACCEPT_QUEUED;
    if (strcmp(s, "refused") == 0) return VQ_ACCEPT_REFUSED;
    if (strcmp(s, "locked") == 0) return VQ_ACCEPT_LOCKED;
    return VQ_ACCEPT_IDEMPOTENT;
}

static int read_results(const redisReply *rep, size_t n, vq_accept_res *res, vq_error *err)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 * n)
        return vq_error_set(err, VQ_EREDIS, "accept: unexpected reply from accept.lua");
    for (size_t i = 0; i < n; i++) {
        const char *st = vq_reply_str_(rep, 2 * i);
        if (strcmp(st, "invalid") == 0)
            return vq_error_set(err, VQ_EINVAL, "request %zu: refused by accept.lua", i);
        res[i].status = status_of(st);
        snprintf(res[i].job_id, sizeof res[i].job_id, "%s", vq_reply_str_(rep, 2 * i + 1));
    }
    return 0;
}

/* VOLQ_REDIS_WAIT_REPLICAS: an answer that records or reports a job waits
 * until that many replicas hold it, so that a failover cannot lose it.  A
 * LOCKED answer promises nothing. */
static int confirm(vq_queue *q, const vq_accept_res *res, size_t n, vq_error *err)
{
    if (q->cfg.wait_replicas <= 0) return 0;
    size_t i = 0;
    while (i < n && res[i].status == VQ_ACCEPT_LOCKED) i++;
    if (i == n) return 0;
    return vq_redis_wait_replicas(q->r, q->cfg.wait_replicas, q->cfg.wait_ms, err);
}

int vq_queue_idem_jobs(vq_queue *q, const char *const *keys, size_t n,
                       char (*jobs)[VQ_UUID_SIZE], vq_error *err)
{
    vq_strv m = {0};
    vq_strv_add_(&m, "MGET");
    for (size_t i = 0; i < n; i++) {
        jobs[i][0] = '\0';
        vq_strv_addf_(&m, "%s%s", VQ_K_IDEM, keys[i]);
    }
    int rc = m.oom ? vq_error_set(err, VQ_ENOMEM, "idempotency keys: out of memory") : 0;
    redisReply *rep = rc || n == 0 ? NULL
                                   : vq_redis_argv(q->r, (int)m.n, (const char **)m.v, m.len, err);
    if (!rc && n && !rep) rc = VQ_EREDIS;
    for (size_t i = 0; rep && i < n; i++) {
        const char *id = as_id(vq_reply_str_(rep, i));
        memcpy(jobs[i], id, strlen(id) + 1); /* a UUID or "" */
    }
    if (rep) freeReplyObject(rep);
    vq_strv_free_(&m);
    return rc;
}

int vq_queue_accept(vq_queue *q, const vq_accept_req *reqs, size_t n, vq_accept_res *res,
                    vq_error *err)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        int rc = check_req(&reqs[i], i, err);
        if (rc) return rc;
    }
    seen s = {0};
    vq_strv k = {0}, a = {0};
    char (*ids)[VQ_UUID_SIZE] = calloc(n, sizeof *ids);
    int rc = ids ? read_seen(q, reqs, n, &s, err) : vq_error_set(err, VQ_ENOMEM, "accept: out of memory");
    if (rc) goto out_free;
    if (build(q, reqs, n, &s, ids, &k, &a)) {
        rc = vq_error_set(err, VQ_ENOMEM, "accept: out of memory");
        goto out_free;
    }
    redisReply *rep = vq_queue_run_(q, "accept.lua", &k, &a, err);
    if (!rep) {
        rc = VQ_EREDIS;
        goto out_free;
    }
    rc = read_results(rep, n, res, err);
    freeReplyObject(rep);
    if (!rc) rc = confirm(q, res, n, err);
out_free:
    seen_free(&s);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    free(ids);
    return rc;
}
