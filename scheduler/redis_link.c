/* The scheduler's Redis connection: a first connect that may fail (the API
 * then answers 503), reconnects with backoff from the housekeeping timer, and
 * the housekeeping itself every VQ_HOUSEKEEP_MS. */
#include <stdlib.h>

#include "sched_int.h"
#include "volq/log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static void went_up(vq_sched *s)
{
    size_t fixed = 0;
    vq_error err = {0};
    s->redis_up = 1;
    s->redis_backoff_ms = BACKOFF_MIN_MS;
    vq_log(VQ_LOG_NOTICE, "redis %s is up", s->redis_shown);
    /* After a Redis restart as at start-up: locks and indexes may disagree. */
    if (vq_queue_repair(s->q, &fixed, &err) && err.code == VQ_EREPLY)
        vq_log(VQ_LOG_WARN, "start-up repair not made: %s", err.text);
    else if (err.code)
        vq_redis_link_down_(s, err.text);
    else if (fixed)
        vq_log(VQ_LOG_NOTICE, "start-up repair fixed %zu record(s)", fixed);
}

static int try_connect(vq_sched *s, vq_error *err)
{
    if (s->q) return vq_redis_reconnect(s->q->r, err);
    vq_redis *r = NULL;
    int rc = vq_redis_connect(s->redis_url, VQ_REDIS_TIMEOUT_MS, &r, err);
    if (rc) return rc;
    return vq_queue_new(r, &s->qcfg, &s->q, err);
}

/* Jittered doubling between BACKOFF_MIN_MS and BACKOFF_MAX_MS. */
static void schedule_retry(vq_sched *s)
{
    int b = s->redis_backoff_ms * 2;
    if (b > BACKOFF_MAX_MS) b = BACKOFF_MAX_MS;
    s->redis_backoff_ms = b;
    s->next_redis_try = vq_now_ms() + b / 2 + rand() % (b / 2 + 1);
}

static void reconnect(vq_sched *s)
{
    vq_error err = {0};
    if (vq_now_ms() < s->next_redis_try) return;
    if (try_connect(s, &err) == 0) {
        s->stats.redis_reconnects++;
        went_up(s);
        return;
    }
    /* The first failure of an outage is a warning; the retries are debug noise. */
    vq_log(s->redis_backoff_ms == BACKOFF_MIN_MS ? VQ_LOG_WARN : VQ_LOG_DEBUG,
           "%s; retrying with backoff", err.text);
    schedule_retry(s);
}

/* An error reply (Redis refuses writes: OOM, MISCONF, NOREPLICAS) is not a
 * lost link: reads still work and the API goes on answering; housekeeping
 * backs off as reconnects do, and says so once until it works again. */
static void housekeep(vq_sched *s)
{
    size_t moved = 0;
    vq_error err = {0};
    if (vq_now_ms() < s->next_redis_try) return;
    if (vq_queue_housekeep(s->q, &moved, &err) == 0) {
        s->redis_backoff_ms = BACKOFF_MIN_MS;
        if (moved) vq_log(VQ_LOG_INFO, "housekeeping moved %zu job(s)", moved);
        return;
    }
    if (err.code != VQ_EREPLY) {
        vq_redis_link_down_(s, err.text);
        return;
    }
    if (s->redis_backoff_ms == BACKOFF_MIN_MS)
        vq_log(VQ_LOG_WARN, "housekeeping refused: %s; retrying with backoff", err.text);
    schedule_retry(s);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    vq_sched *s = arg;
    if (!s->redis_up)
        reconnect(s);
    else
        housekeep(s);
}

void vq_redis_link_down_(vq_sched *s, const char *why)
{
    if (!s->redis_up) return;
    s->redis_up = 0;
    s->redis_backoff_ms = BACKOFF_MIN_MS;
    s->next_redis_try = vq_now_ms() + BACKOFF_MIN_MS;
    vq_log(VQ_LOG_WARN, "redis %s went away: %s; answering 503 until it is back", s->redis_shown,
           why);
}

int vq_redis_link_start_(vq_sched *s, vq_error *err)
{
    struct timeval tv = {0, VQ_HOUSEKEEP_MS * 1000};
    s->redis_backoff_ms = BACKOFF_MIN_MS;
    s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    if (!s->tick || event_add(s->tick, &tv))
        return vq_error_set(err, VQ_ENOMEM, "cannot start the housekeeping timer");
    reconnect(s); /* now, so that a reachable Redis serves the first request */
    return 0;
}

void vq_redis_link_stop_(vq_sched *s)
{
    if (s->tick) event_free(s->tick);
    s->tick = NULL;
    vq_queue_free(s->q);
    s->q = NULL;
}
