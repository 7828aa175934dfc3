/* GET /api/events[?since=T&limit=N&wait=S]: the audit stream.  With wait, a
 * request that finds nothing is held and re-read every VQ_EVENTS_POLL_MS
 * (non-blocking reads: a blocking XREAD would stall the event loop) until
 * events come or the wait (at most VQ_EVENTS_WAIT_MAX_S) ends with []. */
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

#define VQ_EVENTS_LIMIT_DEFAULT 1000
#define VQ_EVENTS_LIMIT_MAX VQ_QUEUE_EVENTS_MAX
#define VQ_SINCE_MAX 64

typedef struct vq_waiter {
    struct vq_waiter *next;
    vq_sched *s;
    struct evhttp_request *ev;  /* still ours: evhttp keeps it until we answer */
    struct event *timer;
    char since[VQ_SINCE_MAX];
    size_t limit;
    int64_t deadline;           /* ms since the epoch */
} vq_waiter;

static int parse_since(vq_req *r, const char **since)
{
    int64_t ms;
    uint64_t id_ms, id_seq;
    *since = vq_req_query_(r, "since");
    if (!*since || (strlen(*since) < VQ_SINCE_MAX &&
                    (vq_queue_event_id_parse(*since, &id_ms, &id_seq) == 0 ||
                     vq_time_parse(*since, &ms) == 0)))
        return 0;
    vq_reply_error_(r, 400, NULL, "since must be an RFC 3339 time or an event id (ms-seq, "
                    "each part below 2^64) seen before");
    return -1;
}

static void unlink_waiter(vq_waiter *w)
{
    for (vq_waiter **p = &w->s->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            w->s->nwaiters--;
            break;
        }
    event_free(w->timer);
    free(w);
}

/* Reads once; answers (and returns 1) when there is something to say.
 * last: the last id read, kept or passed over ("" when none). */
static int poll_once(vq_sched *s, struct evhttp_request *ev, const char *since, size_t limit,
                     int last_chance, char last[64])
{
    vq_req r = {.ev = ev, .s = s};
    json_t *out = NULL;
    vq_error err = {0};
    last[0] = '\0';
    if (!s->redis_up) {
        vq_reply_error_(&r, 503, NULL, "redis is unreachable at %s; retrying", s->redis_shown);
        return 1;
    }
    if (vq_queue_events(s->q, since, limit, 0, &out, last, &err)) {
        vq_reply_verror_(&r, &err);
        return 1;
    }
    if (json_array_size(out) || last_chance) {
        vq_reply_json_(&r, 200, out);
        return 1;
    }
    json_decref(out);
    return 0;
}

/* What was read and passed over (events older than a time) is not read again:
 * the next poll starts after it. */
static void move_since(char since[VQ_SINCE_MAX], const char *last)
{
    if (last[0]) snprintf(since, VQ_SINCE_MAX, "%s", last);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    vq_waiter *w = arg;
    char last[64];
    if (poll_once(w->s, w->ev, w->since[0] ? w->since : NULL, w->limit,
                  vq_now_ms() >= w->deadline, last))
        unlink_waiter(w);
    else
        move_since(w->since, last);
}

static void hold(vq_req *r, const char *since, const char *last, size_t limit, long wait_s)
{
    struct timeval tv = {0, VQ_EVENTS_POLL_MS * 1000};
    vq_waiter *w = calloc(1, sizeof *w);
    if (!w || !(w->timer = event_new(r->s->base, -1, EV_PERSIST, on_poll, w))) {
        free(w);
        vq_reply_error_(r, 500, NULL, "out of memory holding the request");
        return;
    }
    *w = (vq_waiter){.next = r->s->waiters, .s = r->s, .ev = r->ev, .timer = w->timer,
                     .limit = limit, .deadline = vq_now_ms() + wait_s * 1000};
    if (since) memcpy(w->since, since, strlen(since) + 1); /* length checked by parse_since */
    move_since(w->since, last);
    r->s->waiters = w;
    r->s->nwaiters++;
    event_add(w->timer, &tv);
}

void vq_api_events_(vq_req *r)
{
    const char *since;
    char last[64];
    long limit, wait_s;
    if (parse_since(r, &since) ||
        vq_req_query_int_(r, "limit", 1, VQ_EVENTS_LIMIT_MAX, VQ_EVENTS_LIMIT_DEFAULT, &limit) ||
        vq_req_query_int_(r, "wait", 0, 86400, 0, &wait_s))
        return;
    if (wait_s > VQ_EVENTS_WAIT_MAX_S) wait_s = VQ_EVENTS_WAIT_MAX_S;
    if (!poll_once(r->s, r->ev, since, (size_t)limit, wait_s == 0, last))
        hold(r, since, last, (size_t)limit, wait_s);
}

void vq_events_stop_(vq_sched *s)
{
    while (s->waiters) {
        vq_req r = {.ev = s->waiters->ev, .s = s};
        evhttp_add_header(evhttp_request_get_output_headers(r.ev), "Connection", "close");
        vq_reply_error_(&r, 503, NULL, "volq-scheduler is stopping; retry once it is back");
        unlink_waiter(s->waiters);
    }
}
