/* The job record (a Redis hash with short field names) <-> vq_job <-> JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "volq/job.h"

static const char *const state_names[VQ_JOB_NSTATES] = {
    "queued", "running", "retrying", "succeeded", "failed", "cancelled",
};

const char *vq_job_state_name(vq_job_state s)
{
    return (int)s >= 0 && s < VQ_JOB_NSTATES ? state_names[s] : NULL;
}

int vq_job_state_parse(const char *name)
{
    for (int i = 0; name && i < VQ_JOB_NSTATES; i++)
        if (strcmp(name, state_names[i]) == 0) return i;
    return -1;
}

/* ---- record fields ----------------------------------------------------- */

static int copy_str(char *dst, size_t dstsz, const char *v, size_t len)
{
    if (len >= dstsz) return -1;
    memcpy(dst, v, len);
    dst[len] = '\0';
    return 0;
}

static int to_i64(const char *v, int64_t *out)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end) return -1;
    *out = n;
    return 0;
}

static int to_int(const char *v, int *out)
{
    int64_t n;
    if (to_i64(v, &n) || n < 0 || n > 1000000000) return -1;
    *out = (int)n;
    return 0;
}

/* One field of the hash; the names are short to keep each queued job small
 * (docs/queue.md lists them).  -1 when the value is malformed. */
static int set_field(vq_job *j, const char *f, const char *v, size_t len)
{
    int64_t tok;
    switch (f[0]) {
    case 'a': return strcmp(f, "a") == 0 ? to_int(v, &j->attempts)
                   : strcmp(f, "al") == 0 ? copy_str(j->alias, sizeof j->alias, v, len) : 0;
    case 'c': return strcmp(f, "c") == 0 ? to_i64(v, &j->created)
                   : strcmp(f, "cr") == 0 ? to_int(v, &j->crashes)
                   : strcmp(f, "cu") == 0 ? to_int(v, &j->cleanup) : 0;
    case 'd': return strcmp(f, "d") == 0 ? to_int(v, &j->done)
                   : strcmp(f, "dm") == 0 ? copy_str(j->domain_id, sizeof j->domain_id, v, len)
                   : strcmp(f, "dk") == 0 ? copy_str(j->disk_id, sizeof j->disk_id, v, len) : 0;
    case 'e':
        if (strcmp(f, "e") != 0) return 0;
        json_decref(j->errors);
        j->errors = json_loadb(v, len, 0, NULL);
        return json_is_array(j->errors) ? 0 : -1;
    case 'i': return strcmp(f, "id") == 0 ? copy_str(j->id, sizeof j->id, v, len) : 0;
    case 'k': return strcmp(f, "k") == 0 ? copy_str(j->kind, sizeof j->kind, v, len) : 0;
    case 'm': return strcmp(f, "ma") == 0 ? to_int(v, &j->max_attempts) : 0;
    case 'n': return strcmp(f, "n") == 0 ? to_i64(v, &j->next_attempt) : 0;
    case 'p':
        if (strcmp(f, "pl") == 0) {
            free(j->plan);
            return (j->plan = strndup(v, len)) ? 0 : -1;
        }
        if (strcmp(f, "p") != 0) return 0;
        json_decref(j->params);
        j->params = json_loadb(v, len, 0, NULL);
        return json_is_object(j->params) ? 0 : -1;
    case 'r':
        if (strcmp(f, "r") != 0) return 0;
        free(j->reason);
        j->reason = strndup(v, len);
        return j->reason ? 0 : -1;
    case 's': return strcmp(f, "s") == 0 ? ((int)(j->state = vq_job_state_parse(v)) < 0 ? -1 : 0) : 0;
    case 't': return strcmp(f, "t") == 0 ? to_int(v, &j->total)
                   : strcmp(f, "tk") == 0 ? (to_i64(v, &tok) ? -1 : (j->token = (uint64_t)tok, 0)) : 0;
    case 'u': return strcmp(f, "u") == 0 ? to_i64(v, &j->updated) : 0;
    case 'v': return strcmp(f, "v") == 0 ? copy_str(j->volume_id, sizeof j->volume_id, v, len) : 0;
    case 'w': return strcmp(f, "w") == 0 ? copy_str(j->worker, sizeof j->worker, v, len) : 0;
    default: return 0; /* unknown fields are kept by Redis and ignored here */
    }
}

static int check_complete(const vq_job *j)
{
    return j->id[0] && j->kind[0] && j->domain_id[0] && j->disk_id[0] && (int)j->state >= 0;
}

int vq_job_from_fields(const char *id, const redisReply *r, vq_job **out, vq_error *err)
{
    *out = NULL;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return vq_error_set(err, VQ_EINVAL, "job %s: not a field/value array", id ? id : "?");
    vq_job *j = calloc(1, sizeof *j);
    if (!j) return vq_error_set(err, VQ_ENOMEM, "job: out of memory");
    j->state = (vq_job_state)-1;
    if (id) snprintf(j->id, sizeof j->id, "%s", id);
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            set_field(j, f->str, v->str, v->len) != 0) {
            int rc = vq_error_set(err, VQ_EINVAL, "job %s: bad field %s", j->id[0] ? j->id : "?",
                                  f->type == REDIS_REPLY_STRING ? f->str : "?");
            vq_job_free(j);
            return rc;
        }
    }
    if (!j->errors) j->errors = json_array();
    if (!j->errors || !check_complete(j)) {
        int rc = vq_error_set(err, VQ_EINVAL, "job %s: incomplete record", j->id[0] ? j->id : "?");
        vq_job_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

int vq_job_from_reply(const redisReply *r, vq_job **out, vq_error *err)
{
    return vq_job_from_fields(NULL, r, out, err);
}

/* ---- JSON --------------------------------------------------------------- */

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *time_or_null(int64_t ms)
{
    char buf[32];
    if (ms <= 0) return json_null();
    vq_time_format(ms, buf);
    return json_string(buf);
}

json_t *vq_job_json(const vq_job *j)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:i, s:i, s:{s:i, s:i}, s:o, s:o, s:o, "
                     "s:o, s:o, s:o}",
                     "id", j->id, "kind", j->kind, "state",
                     vq_job_state_name(j->state) ? vq_job_state_name(j->state) : "unknown",
                     "domain_id", j->domain_id, "disk_id", j->disk_id,
                     "volume_id", str_or_null(j->volume_id),
                     "attempts", j->attempts, "max_attempts", j->max_attempts,
                     "progress", "done", j->done, "total", j->total,
                     "reason", str_or_null(j->reason),
                     "errors", j->errors ? json_incref(j->errors) : json_array(),
                     "created", time_or_null(j->created), "updated", time_or_null(j->updated),
                     "next_attempt",
                     time_or_null(j->state == VQ_JOB_RETRYING ? j->next_attempt : 0),
                     "worker", str_or_null(j->worker));
}

void vq_job_free(vq_job *j)
{
    if (!j) return;
    free(j->reason);
    free(j->plan);
    json_decref(j->params);
    json_decref(j->errors);
    free(j);
}
