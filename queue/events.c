/* The audit log: a capped Stream, one field "e" per entry with the event JSON. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"
#include "redis_int.h"

/* Where to read from: XRANGE's start (inclusive, or "(" exclusive) and the id
 * XREAD waits after; for a time, the events older than min_ms are passed over.
 * An event's "time" and its stream id are taken from two clock readings (the
 * script's TIME, XADD's own), which may fall on either side of a millisecond:
 * a time is looked for from a second before it and checked on each event. */
typedef struct cursor {
    char range_start[64];
    char read_after[64];
    int64_t min_ms; /* -1: no time given */
} cursor;

#define TIME_SLACK_MS 1000

/* One part of an id: 1..20 digits that fit in uint64 (strtoull alone takes a
 * sign and spaces); *end is set after it. */
static int id_part(const char *s, const char **end, uint64_t *out)
{
    const char *p = s;
    while (isdigit((unsigned char)*p)) p++;
    if (p == s || p - s > 20) return -1;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno) return -1;
    *out = v;
    *end = p;
    return 0;
}

int vq_queue_event_id_parse(const char *s, uint64_t *ms, uint64_t *seq)
{
    const char *p;
    if (!s || id_part(s, &p, ms) || *p != '-' || id_part(p + 1, &p, seq) || *p) return VQ_EINVAL;
    /* Nothing comes after the greatest id: Redis refuses "(" of it. */
    return *ms == UINT64_MAX && *seq == UINT64_MAX ? VQ_EINVAL : 0;
}

static int make_cursor(const char *since, cursor *c, vq_error *err)
{
    int64_t ms;
    uint64_t id_ms, id_seq;
    c->min_ms = -1;
    if (!since || !*since) {
        snprintf(c->range_start, sizeof c->range_start, "-");
        snprintf(c->read_after, sizeof c->read_after, "0-0");
    } else if (vq_queue_event_id_parse(since, &id_ms, &id_seq) == 0) {
        snprintf(c->range_start, sizeof c->range_start, "(%s", since);
        snprintf(c->read_after, sizeof c->read_after, "%s", since);
    } else if (vq_time_parse(since, &ms) == 0) {
        if (ms < 0) ms = 0;
        c->min_ms = ms;
        snprintf(c->range_start, sizeof c->range_start, "%lld-0",
                 (long long)(ms > TIME_SLACK_MS ? ms - TIME_SLACK_MS : 0));
        /* The last possible id of the millisecond before: XREAD is exclusive. */
        if (ms > 0)
            snprintf(c->read_after, sizeof c->read_after, "%lld-18446744073709551615", (long long)ms - 1);
        else
            snprintf(c->read_after, sizeof c->read_after, "0-0");
    } else {
        return vq_error_set(err, VQ_EINVAL, "events: since %.64s is neither an event id nor an "
                            "RFC 3339 time", since);
    }
    return 0;
}

/* Whether ev's "time" is before min_ms (min_ms -1: never). */
static int too_old(const json_t *ev, int64_t min_ms)
{
    int64_t t;
    const char *s = json_string_value(json_object_get(ev, "time"));
    return min_ms >= 0 && s && vq_time_parse(s, &t) == 0 && t < min_ms;
}

/* Appends the entries of an XRANGE-shaped array ([id, [field, value]]...). */
static int add_entries(const redisReply *entries, int64_t min_ms, json_t *out, char last_id[64])
{
    for (size_t i = 0; entries && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        const char *id = vq_reply_str_(e, 0);
        const redisReply *fv = e->elements > 1 ? e->element[1] : NULL;
        json_t *ev = NULL;
        for (size_t f = 0; fv && f + 1 < fv->elements; f += 2)
            if (strcmp(vq_reply_str_(fv, f), "e") == 0)
                ev = json_loadb(fv->element[f + 1]->str, fv->element[f + 1]->len, 0, NULL);
        if (!json_is_object(ev) || too_old(ev, min_ms)) { /* skipped, but passed over */
            json_decref(ev);
        } else if (json_object_set_new(ev, "id", json_string(id)) != 0 ||
                   json_array_append_new(out, ev) != 0) {
            return VQ_ENOMEM;
        }
        snprintf(last_id, 64, "%s", id);
    }
    return 0;
}

/* XREAD BLOCK: the entries array of the one stream, or NULL (timeout). */
static redisReply *wait_for(vq_queue *q, const cursor *c, size_t count, int block_ms,
                            redisReply **whole, vq_error *err)
{
    char n[32], b[32];
    snprintf(n, sizeof n, "%zu", count);
    snprintf(b, sizeof b, "%d", block_ms);
    const char *argv[] = {"XREAD", "COUNT", n, "BLOCK", b, "STREAMS", VQ_K_EVENTS, c->read_after};
    vq_redis_block_(q->r, block_ms);
    *whole = vq_redis_argv(q->r, 8, argv, NULL, err);
    vq_redis_block_(q->r, 0);
    if (!*whole || (*whole)->type != REDIS_REPLY_ARRAY || (*whole)->elements == 0) return NULL;
    const redisReply *stream = (*whole)->element[0];
    return stream->elements > 1 ? stream->element[1] : NULL;
}

/* XRANGE from c->range_start until out holds count events or the stream
 * ends.  Events passed over (older than a time asked for) do not count, so a
 * page is short only at the end: each round asks for what is still missing,
 * after the last id read.  *nread: entries read, kept or not. */
static int read_range(vq_queue *q, cursor *c, size_t count, json_t *out, char last_id[64],
                      size_t *nread, vq_error *err)
{
    *nread = 0;
    for (;;) {
        size_t want = count - json_array_size(out);
        char n[32];
        snprintf(n, sizeof n, "%zu", want);
        const char *argv[] = {"XRANGE", VQ_K_EVENTS, c->range_start, "+", "COUNT", n};
        redisReply *rep = vq_redis_argv(q->r, 6, argv, NULL, err);
        if (!rep) return VQ_EREDIS;
        size_t got = rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0;
        int rc = add_entries(rep, c->min_ms, out, last_id);
        freeReplyObject(rep);
        if (rc) return vq_error_set(err, VQ_ENOMEM, "events: out of memory");
        *nread += got;
        if (got < want || json_array_size(out) >= count) return 0;
        snprintf(c->range_start, sizeof c->range_start, "(%s", last_id);
    }
}

int vq_queue_events(vq_queue *q, const char *since, size_t count, int block_ms, json_t **out,
                    char last_id[64], vq_error *err)
{
    *out = NULL;
    cursor c;
    size_t nread = 0;
    int rc = make_cursor(since, &c, err);
    if (rc) return rc;
    if (count == 0 || count > VQ_QUEUE_EVENTS_MAX) count = VQ_QUEUE_EVENTS_MAX;
    json_t *arr = json_array();
    if (!arr) return vq_error_set(err, VQ_ENOMEM, "events: out of memory");
    rc = read_range(q, &c, count, arr, last_id, &nread, err);
    if (!rc && nread == 0 && block_ms > 0) {
        redisReply *whole = NULL;
        const redisReply *entries = wait_for(q, &c, count, block_ms, &whole, err);
        if (!whole) rc = VQ_EREDIS;
        else if (add_entries(entries, c.min_ms, arr, last_id) != 0)
            rc = vq_error_set(err, VQ_ENOMEM, "events: out of memory");
        if (whole) freeReplyObject(whole);
    }
    if (rc) json_decref(arr);
    else *out = arr;
    return rc;
}
