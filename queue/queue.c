/* The queue handle: configuration, and the one way every script is called
 * (the common keys and arguments of lib.lua in front of the script's own). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue_int.h"
#include "volq/log.h"
#include "volq/text.h"

static const char *const common_keys[] = {
    VQ_K_QUEUE, VQ_K_RUNNING, VQ_K_DUE, VQ_K_LOCKS, VQ_K_ST_SUCCEEDED, VQ_K_ST_FAILED,
    VQ_K_ST_CANCELLED, VQ_K_EVENTS, VQ_K_TOKEN, VQ_K_WORKERS, VQ_K_WJOB,
};
#define NCOMMON_KEYS (sizeof common_keys / sizeof common_keys[0])
#define NCOMMON_ARGS 3

/* ---- configuration ------------------------------------------------------ */

/* An integer in [lo, 1e9] from the environment, or def (with a warning when set but bad). */
static int env_int_min(const char *name, int def, int lo)
{
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < lo || n > 1000000000) {
        vq_log(VQ_LOG_WARN, "%s=%s is not an integer of at least %d; using %d", name, v, lo, def);
        return def;
    }
    return (int)n;
}

static int env_int(const char *name, int def) { return env_int_min(name, def, 1); }

void vq_queue_config_default(vq_queue_config *c)
{
    c->lease_ms = env_int("VOLQ_LEASE_MS", 15000);
    c->max_attempts = env_int("VOLQ_MAX_ATTEMPTS", 5);
    c->max_crashes = env_int("VOLQ_MAX_CRASHES", 5);
    c->backoff_base_ms = env_int("VOLQ_BACKOFF_MS", 1000);
    c->backoff_max_ms = env_int("VOLQ_BACKOFF_MAX_MS", 300000);
    c->keep_finished_s = env_int("VOLQ_KEEP_FINISHED_S", 7 * 24 * 3600);
    c->keep_finished_max = env_int("VOLQ_KEEP_FINISHED_MAX", 100000);
    c->events_max = env_int("VOLQ_EVENTS_MAX", 100000);
    c->wait_replicas = env_int_min("VOLQ_REDIS_WAIT_REPLICAS", 0, 0);
    c->wait_ms = env_int("VOLQ_REDIS_WAIT_MS", 1000);
}

int vq_queue_backoff_ms(const vq_queue_config *c, int attempt, double u)
{
    double d = c->backoff_base_ms;
    for (int i = 1; i < attempt && d < c->backoff_max_ms; i++) d *= 2;
    if (d > c->backoff_max_ms) d = c->backoff_max_ms;
    if (u < 0) u = 0;
    if (u > 1) u = 1;
    return (int)(d * (0.8 + 0.4 * u));
}

int vq_queue_new(vq_redis *r, const vq_queue_config *cfg, vq_queue **out, vq_error *err)
{
    *out = NULL;
    vq_queue *q = calloc(1, sizeof *q);
    if (!q) {
        vq_redis_free(r);
        return vq_error_set(err, VQ_ENOMEM, "queue: out of memory");
    }
    q->r = r;
    if (cfg)
        q->cfg = *cfg;
    else
        vq_queue_config_default(&q->cfg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    q->seed = (unsigned)(ts.tv_nsec ^ ts.tv_sec ^ ((unsigned)getpid() << 16));
    *out = q;
    return 0;
}

void vq_queue_free(vq_queue *q)
{
    if (!q) return;
    vq_redis_free(q->r);
    free(q);
}

/* ---- string vectors ---------------------------------------------------- */

void vq_strv_addn_(vq_strv *s, const char *str, size_t len)
{
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof *v);
        if (v) s->v = v;
        size_t *l = v ? realloc(s->len, cap * sizeof *l) : NULL;
        if (l) s->len = l;
        if (!v || !l) {
            s->oom = 1;
            return;
        }
        s->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        s->oom = 1;
        return;
    }
    memcpy(copy, str, len);
    copy[len] = '\0';
    s->len[s->n] = len;
    s->v[s->n++] = copy;
}

void vq_strv_add_(vq_strv *s, const char *str) { vq_strv_addn_(s, str, strlen(str)); }

void vq_strv_addf_(vq_strv *s, const char *fmt, ...)
{
    char buf[VQ_KEY_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof buf) {
        s->oom = 1; /* only short keys and numbers are formatted: a bug */
        return;
    }
    vq_strv_addn_(s, buf, (size_t)n);
}

void vq_strv_add_text_(vq_strv *s, const char *text, size_t maxlen)
{
    size_t n = strlen(text);
    char *out = malloc((n < maxlen ? n : maxlen) + 1);
    if (!out) {
        s->oom = 1;
        return;
    }
    vq_strv_addn_(s, out, vq_text_clean(out, (n < maxlen ? n : maxlen) + 1, text));
    free(out);
}

void vq_strv_free_(vq_strv *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    free(s->len);
    memset(s, 0, sizeof *s);
}

int vq_queue_key_(char *out, size_t outsz, const char *prefix, const char *id, vq_error *err)
{
    if (snprintf(out, outsz, "%s%s", prefix, id) >= (int)outsz)
        return vq_error_set(err, VQ_EINVAL, "key %s%.20s...: too long", prefix, id);
    return 0;
}

/* ---- the script calling convention ------------------------------------- */

/* Common keys + keys, common args + args: flat arrays of pointers into the
 * caller's vectors (nothing copied: a bulk accept passes 200,000 strings). */
typedef struct call {
    const char **k, **a;
    size_t *alen;
    size_t nk, na;
    char common[NCOMMON_ARGS][16];
} call;

static void call_free(call *c)
{
    free(c->k);
    free(c->a);
    free(c->alen);
}

static int build_call(const vq_queue *q, const vq_strv *keys, const vq_strv *args, call *c,
                      vq_error *err)
{
    size_t nk = keys ? keys->n : 0, na = args ? args->n : 0;
    c->k = malloc((NCOMMON_KEYS + nk) * sizeof *c->k);
    c->a = malloc((NCOMMON_ARGS + na) * sizeof *c->a);
    c->alen = malloc((NCOMMON_ARGS + na) * sizeof *c->alen);
    if (!c->k || !c->a || !c->alen || (keys && keys->oom) || (args && args->oom))
        return vq_error_set(err, VQ_ENOMEM, "queue: out of memory");
    const int common[NCOMMON_ARGS] = {q->cfg.events_max, q->cfg.lease_ms, q->cfg.max_crashes};
    for (size_t i = 0; i < NCOMMON_KEYS; i++) c->k[c->nk++] = common_keys[i];
    for (size_t i = 0; i < nk; i++) c->k[c->nk++] = keys->v[i];
    for (size_t i = 0; i < NCOMMON_ARGS; i++) {
        int n = snprintf(c->common[i], sizeof c->common[i], "%d", common[i]);
        c->alen[c->na] = (size_t)n;
        c->a[c->na++] = c->common[i];
    }
    for (size_t i = 0; i < na; i++) {
        c->alen[c->na] = args->len[i];
        c->a[c->na++] = args->v[i];
    }
    return 0;
}

redisReply *vq_queue_run_(vq_queue *q, const char *name, const vq_strv *keys,
                          const vq_strv *args, vq_error *err)
{
    call c = {0};
    redisReply *rep = NULL;
    if (build_call(q, keys, args, &c, err) == 0)
        rep = vq_redis_script(q->r, name, (int)c.nk, c.k, (int)c.na, c.a, c.alen, err);
    call_free(&c);
    return rep;
}

int vq_queue_append_(vq_queue *q, const char *name, const vq_strv *keys, const vq_strv *args,
                     vq_error *err)
{
    call c = {0};
    int rc = build_call(q, keys, args, &c, err);
    if (rc == 0) rc = vq_redis_script_append(q->r, name, (int)c.nk, c.k, (int)c.na, c.a, c.alen, err);
    call_free(&c);
    return rc;
}

/* ---- small helpers ------------------------------------------------------ */

int vq_queue_worker_valid_(const char *worker, vq_error *err)
{
    size_t n = worker ? strlen(worker) : 0;
    if (n == 0 || n >= VQ_WORKER_ID_MAX)
        return vq_error_set(err, VQ_EINVAL, "worker id must be 1..%d bytes", VQ_WORKER_ID_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)worker[i] <= ' ' || worker[i] == 0x7f)
            return vq_error_set(err, VQ_EINVAL, "worker id %s: spaces or control characters", worker);
    return 0;
}

const char *vq_reply_str_(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return "";
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS ? e->str : "";
}

int vq_queue_job_of_reply_(const char *id, const redisReply *r, vq_job **out, vq_error *err)
{
    /* A view of the elements after the status. */
    redisReply view = {.type = REDIS_REPLY_ARRAY,
                       .elements = r->elements > 0 ? r->elements - 1 : 0,
                       .element = r->elements > 0 ? r->element + 1 : NULL};
    return vq_job_from_fields(id, &view, out, err);
}

int vq_queue_get_many_(vq_queue *q, char **ids, size_t n, vq_job **out, vq_error *err)
{
    char key[VQ_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        const char *argv[] = {"HGETALL", key};
        if (vq_queue_key_(key, sizeof key, VQ_K_JOB, ids[i], err) ||
            vq_redis_append_argv(q->r, 2, argv, NULL, err))
            goto out_drain;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *rep = vq_redis_get_reply(q->r, err);
        if (!rep) rc = VQ_EREDIS;
        /* A malformed record is skipped like a missing one (repair's business). */
        if (rep && rep->elements > 0) vq_job_from_fields(ids[i], rep, &out[i], NULL);
        if (rep) freeReplyObject(rep);
    }
    return rc;
out_drain:
    for (size_t i = 0; i < n; i++) {
        redisReply *rep = vq_redis_get_reply(q->r, NULL);
        if (rep) freeReplyObject(rep);
    }
    return vq_redis_rc(err);
}

int vq_queue_redis_now_(vq_queue *q, int64_t *now, vq_error *err)
{
    redisReply *rep = vq_redis_cmd(q->r, err, "TIME");
    if (!rep) return VQ_EREDIS;
    int rc = 0;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
        *now = strtoll(vq_reply_str_(rep, 0), NULL, 10) * 1000 +
               strtoll(vq_reply_str_(rep, 1), NULL, 10) / 1000;
    else
        rc = vq_error_set(err, VQ_EREDIS, "redis: unexpected TIME reply");
    freeReplyObject(rep);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void vq_strv_sort_unique_(vq_strv *s)
{
    if (s->n == 0) return;
    qsort(s->v, s->n, sizeof *s->v, cmp_str);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->v[i], s->v[w - 1]) == 0)
            free(s->v[i]);
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
    for (size_t i = 0; i < s->n; i++) s->len[i] = strlen(s->v[i]);
}

int vq_strv_has_(const vq_strv *sorted, const char *id)
{
    return sorted->n && bsearch(&id, sorted->v, sorted->n, sizeof *sorted->v, cmp_str) != NULL;
}
