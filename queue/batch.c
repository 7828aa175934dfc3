/* Batches of jobs with nothing to do (vq_queue_batch): claim queued jobs into
 * the worker's in-flight list without starting them, record those that need
 * nothing in one step (noop.lua), hand the others back (unclaim.lua) or
 * start one (start.lua).  One pipeline, then one more round trip to read
 * the records of the jobs just claimed. */
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"

/* What was appended to the pipeline, in order, so every reply is read. */
typedef struct sent {
    int noop, unclaim, start;
    size_t moves;
} sent;

static int append_noop(vq_queue *q, const vq_batch *b, const char *proc, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    vq_strv_add_(&k, proc);
    vq_strv_add_(&a, b->worker);
    for (size_t i = 0; i < b->nidle; i++) {
        vq_strv_addf_(&k, "%s%s", VQ_K_JOB, b->idle[i]);
        vq_strv_add_(&a, b->idle[i]);
    }
    int rc = vq_queue_append_(q, "noop.lua", &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

static int append_unclaim(vq_queue *q, const vq_batch *b, const char *proc, vq_error *err)
{
    vq_strv k = {0}, a = {0};
    vq_strv_add_(&k, proc);
    for (size_t i = 0; i < b->nback; i++) {
        vq_strv_addf_(&k, "%s%s", VQ_K_JOB, b->back[i]);
        vq_strv_add_(&a, b->back[i]);
    }
    int rc = vq_queue_append_(q, "unclaim.lua", &k, &a, err);
    vq_strv_free_(&k);
    vq_strv_free_(&a);
    return rc;
}

static int append_all(vq_queue *q, const vq_batch *b, const char *proc, sent *s, vq_error *err)
{
    int rc = 0;
    if (b->nidle && !(rc = append_noop(q, b, proc, err))) s->noop = 1;
    if (!rc && b->nback && !(rc = append_unclaim(q, b, proc, err))) s->unclaim = 1;
    if (!rc && b->start && !(rc = vq_queue_append_start_(q, b->worker, proc, b->start, err)))
        s->start = 1;
    const char *move[] = {"LMOVE", VQ_K_QUEUE, proc, "RIGHT", "LEFT"};
    for (; !rc && s->moves < b->want; s->moves++)
        rc = vq_redis_append_argv(q->r, 5, move, NULL, err);
    return rc;
}

static void read_noop(const redisReply *rep, vq_batch *b)
{
    for (size_t i = 0; b->recorded && i < b->nidle; i++)
        b->recorded[i] = rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements &&
                         rep->element[i]->type == REDIS_REPLY_INTEGER &&
                         rep->element[i]->integer == 1;
}

/* Reads every reply of what was sent; the first error wins. */
static int read_all(vq_queue *q, vq_batch *b, const sent *s, vq_error *err)
{
    int rc = 0;
    redisReply *rep;
    if (s->noop) {
        rep = vq_redis_get_reply(q->r, err);
        if (!rep) rc = VQ_EREDIS;
        read_noop(rep, b);
        if (rep) freeReplyObject(rep);
    }
    if (s->unclaim) {
        if (!(rep = vq_redis_get_reply(q->r, err))) rc = VQ_EREDIS;
        if (rep) freeReplyObject(rep);
    }
    if (s->start) {
        int src = vq_queue_read_start_(q, b->start, &b->started, err);
        if (!rc) rc = src;
    }
    for (size_t i = 0; i < s->moves; i++) {
        if (!(rep = vq_redis_get_reply(q->r, err))) rc = VQ_EREDIS;
        if (rep && rep->type == REDIS_REPLY_STRING && vq_uuid_valid(rep->str))
            memcpy(b->claimed_ids[b->nclaimed++], rep->str, VQ_UUID_SIZE);
        if (rep) freeReplyObject(rep);
    }
    return rc;
}

/* The records of the jobs just claimed, in one pipeline. */
static int read_claimed(vq_queue *q, vq_batch *b, vq_error *err)
{
    char **ids = calloc(b->nclaimed, sizeof *ids);
    if (!ids) return vq_error_set(err, VQ_ENOMEM, "queue: out of memory");
    for (size_t i = 0; i < b->nclaimed; i++) ids[i] = b->claimed_ids[i];
    int rc = vq_queue_get_many_(q, ids, b->nclaimed, b->claimed, err);
    free(ids);
    return rc;
}

int vq_queue_batch(vq_queue *q, vq_batch *b, vq_error *err)
{
    char proc[VQ_KEY_MAX];
    sent s = {0};
    b->started = NULL;
    b->nclaimed = 0;
    int rc = vq_queue_proc_key_(b->worker, proc, err);
    if (rc) return rc;
    if (b->start && !vq_uuid_valid(b->start))
        return vq_error_set(err, VQ_EINVAL, "batch: job id \"%.40s\" is not a UUID", b->start);
    int arc = append_all(q, b, proc, &s, err);
    rc = read_all(q, b, &s, err);
    if (!rc) rc = arc;
    if (!rc && b->nclaimed) rc = read_claimed(q, b, err);
    return rc;
}
