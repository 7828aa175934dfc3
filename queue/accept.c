/* Acceptance: n requests -> jobs, disk locks, refusals, idempotency, in one
 * script call after one read of the current lock holders and keys (none when
 * the requests carry what their caller read of them). */
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

/* prefix + id as one key (VQ_KEY_MAX: ids and idempotency keys fit). */
static void add_key(vq_strv *k, const char *prefix, const char *id)
{
    char key[VQ_KEY_MAX];
    size_t pl = strlen(prefix), il = strlen(id);
    if (pl + il >= sizeof key) {
        k->oom = 1; /* check_req bounds every id: a bug */
        return;
    }
    memcpy(key, prefix, pl);
    memcpy(key + pl, id, il);
    vq_strv_addn_(k, key, pl + il);
}

/* What the script will check again: the lock holder of each disk and the job
 * each idempotency key made ("" when none), read in one pipeline. */
typedef struct seen {
    redisReply *holders; /* HMGET locks disk... */
    redisReply *idem;    /* MGET idem keys (only requests with a key), or NULL */
} seen;

/* Whether every request carries what the caller read: holders (field 0) or
 * the jobs of its idempotency key (field 1). */
static int all_seen(const vq_accept_req *reqs, size_t n, int field)
{
    for (size_t i = 0; i < n; i++)
        if (field == 0 ? !reqs[i].holder_seen : reqs[i].idem_key && !reqs[i].idem_job_seen)
            return 0;
    return 1;
}

/* Reads what the requests do not carry (s->holders, s->idem stay NULL for
 * what they do). */
static int read_seen(vq_queue *q, const vq_accept_req *reqs, size_t n, seen *s, vq_error *err)
{
    int holders = !all_seen(reqs, n, 0), idem = !all_seen(reqs, n, 1);
    /* HMGET's arguments point into the requests: 20,000 ids are not copied. */
    const char **h = holders ? calloc(n + 2, sizeof *h) : NULL;
    vq_strv m = {0};
    vq_strv_add_(&m, "MGET");
    for (size_t i = 0; i < n; i++) {
        if (h) h[i + 2] = reqs[i].disk_id;
        if (idem && reqs[i].idem_key) add_key(&m, VQ_K_IDEM, reqs[i].idem_key);
    }
    int rc = (holders && !h) || m.oom ? vq_error_set(err, VQ_ENOMEM, "accept: out of memory") : 0;
    /* every appended command's reply is read, even after an error */
    int hmget = 0, mget = 0;
    if (!rc && h) {
        h[0] = "HMGET";
        h[1] = VQ_K_LOCKS;
        hmget = !(rc = vq_redis_append_argv(q->r, (int)(n + 2), h, NULL, err));
    }
    if (!rc && m.n > 1)
        mget = !(rc = vq_redis_append_argv(q->r, (int)m.n, (const char **)m.v, m.len, err));
    if (hmget) s->holders = vq_redis_get_reply(q->r, err);
    if (mget) s->idem = vq_redis_get_reply(q->r, err);
    if (!rc && ((hmget && !s->holders) || (mget && !s->idem))) rc = VQ_EREDIS;
    free(h);
    vq_strv_free_(&m);
    return rc;
}

static void seen_free(seen *s)
{
    if (s->holders) freeReplyObject(s->holders);
    if (s->idem) freeReplyObject(s->idem);
}

/* An optional field of a request: sent as a name/value pair when set. */
typedef struct field {
    const char *name, *value; /* value NULL: not set */
    size_t text_max;          /* > 0: sent as one line of valid UTF-8, cut there */
} field;

/* The arguments (id disk alias m, then m pairs) and the 1..4 keys of one
 * request (see accept.lua); kind and domain only when not the call's (c). */
static void add_req(vq_strv *k, vq_strv *a, const vq_accept_req *c, const vq_accept_req *r,
                    const char *id, const char *holder, const char *idem_job)
{
    char *params = r->params ? json_dumps(r->params, JSON_COMPACT) : NULL;
    if (r->params && !params) a->oom = 1;
    /* Alias and refusal end up in event JSON: one line of valid UTF-8. */
    const field opt[] = {
        {"kind", strcmp(r->kind, c->kind) ? r->kind : NULL, 0},
        {"domain", strcmp(r->domain_id, c->domain_id) ? r->domain_id : NULL, 0},
        {"volume", r->volume_id && *r->volume_id ? r->volume_id : NULL, 0},
        {"params", params, 0},
        {"refusal", r->refusal && *r->refusal ? r->refusal : NULL, VQ_REASON_MAX},
        {"idem", r->idem_key, 0},
        {"holder", *holder ? holder : NULL, 0},
        {"idem_job", *idem_job ? idem_job : NULL, 0},
    };
    enum { NOPT = sizeof opt / sizeof opt[0] }; /* 8: m is one digit */
    char m[2] = {'0', '\0'};
    for (size_t i = 0; i < NOPT; i++) m[0] = (char)(m[0] + (opt[i].value != NULL));
    vq_strv_add_(a, id);
    vq_strv_add_(a, r->disk_id);
    vq_strv_add_text_(a, r->alias ? r->alias : "", VQ_ALIAS_MAX);
    vq_strv_add_(a, m);
    for (size_t i = 0; i < NOPT; i++) {
        if (!opt[i].value) continue;
        vq_strv_add_(a, opt[i].name);
        if (opt[i].text_max)
            vq_strv_add_text_(a, opt[i].value, opt[i].text_max);
        else
            vq_strv_add_(a, opt[i].value);
    }
    free(params);
    add_key(k, VQ_K_JOB, id);
    if (r->idem_key) add_key(k, VQ_K_IDEM, r->idem_key);
    if (*holder) add_key(k, VQ_K_JOB, holder);
    if (*idem_job) add_key(k, VQ_K_JOB, idem_job);
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
    vq_strv_add_(a, reqs[0].kind);
    vq_strv_add_(a, reqs[0].domain_id);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        vq_uuid_new(ids[i]);
        const char *idem_job = !reqs[i].idem_key ? ""
                               : s->idem        ? as_id(vq_reply_str_(s->idem, m++))
                                                : as_id(reqs[i].idem_job_seen);
        const char *holder = s->holders ? vq_reply_str_(s->holders, i) : reqs[i].holder_seen;
        add_req(k, a, &reqs[0], &reqs[i], ids[i], as_id(holder), idem_job);
    }
    return k->oom || a->oom ? VQ_ENOMEM : 0;
}

/* A status letter of accept.lua's answer; -1 for 'x' (invalid) or junk. */
static int status_of(char c)
{
    switch (c) {
    case 'q': return VQ_ACCEPT_QUEUED;
    case 'r': return VQ_ACCEPT_REFUSED;
    case 'l': return VQ_ACCEPT_LOCKED;
    case 'i': return VQ_ACCEPT_IDEMPOTENT;
    default: return -1;
    }
}

/* accept.lua answers {letters, ids...}: one status letter per request, then
 * in order the job each locked (the holder) or idempotent (the key's job)
 * answer names; a queued or refused request's job is the id it was given. */
static int read_results(const redisReply *rep, size_t n, const char (*ids)[VQ_UUID_SIZE],
                        vq_accept_res *res, vq_error *err)
{
    const char *codes = vq_reply_str_(rep, 0);
    if (rep->type != REDIS_REPLY_ARRAY || strlen(codes) != n)
        return vq_error_set(err, VQ_EREDIS, "accept: unexpected reply from accept.lua");
    size_t other = 1;
    for (size_t i = 0; i < n; i++) {
        int st = status_of(codes[i]);
        if (st < 0) return vq_error_set(err, VQ_EINVAL, "request %zu: refused by accept.lua", i);
        res[i].status = (vq_accept_status)st;
        const char *id = ids[i];
        if (st == VQ_ACCEPT_LOCKED || st == VQ_ACCEPT_IDEMPOTENT) id = vq_reply_str_(rep, other++);
        snprintf(res[i].job_id, sizeof res[i].job_id, "%s", id);
    }
    if (other != rep->elements)
        return vq_error_set(err, VQ_EREDIS, "accept: unexpected reply from accept.lua");
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
    rc = read_results(rep, n, (const char(*)[VQ_UUID_SIZE])ids, res, err);
    freeReplyObject(rep);
    if (!rc) rc = confirm(q, res, n, err);
out_free:
    seen_free(&s);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    free(ids);
    return rc;
}
