/* GET /api/status, /healthz and /metrics. */
#include <event2/buffer.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "sched_int.h"

/* Status requests answered in the same pass of the event loop all arrived
 * before that pass began, so one read of Redis, made during the pass, is as
 * fresh as each of them needs: fifty dashboards polling at once cost one
 * read, not fifty.  A pass is told by libevent's cached time (set once per
 * pass; a pass that read the status lasts far longer than its 1 us
 * resolution).  A changing request forgets the read at once. */
static struct {
    struct timeval pass;
    json_t *status;
} cached;

void vq_status_forget_(void)
{
    json_decref(cached.status);
    cached.status = NULL;
}

/* The status for this pass (new reference), read once. */
static int status_now(vq_sched *s, json_t **out, vq_error *err)
{
    struct timeval now;
    if (event_base_gettimeofday_cached(s->base, &now) == 0 && cached.status &&
        now.tv_sec == cached.pass.tv_sec && now.tv_usec == cached.pass.tv_usec) {
        *out = json_incref(cached.status);
        return 0;
    }
    vq_status_forget_();
    int rc = vq_queue_status(s->q, out, err);
    if (rc == 0 && event_base_gettimeofday_cached(s->base, &cached.pass) == 0)
        cached.status = json_incref(*out);
    return rc;
}

void vq_api_status_(vq_req *r)
{
    json_t *out = NULL;
    vq_error err = {0};
    if (!r->s->redis_up) {
        vq_reply_json_(r, 503, json_pack("{s:s,s:s}", "error", "redis is unreachable; retrying",
                                         "redis", "down"));
        return;
    }
    if (status_now(r->s, &out, &err))
        vq_reply_verror_(r, &err);
    else
        vq_reply_json_(r, 200, out);
}

static int ping(vq_sched *s)
{
    vq_error err = {0};
    if (!s->redis_up) return 0;
    redisReply *rep = vq_redis_cmd(s->q->r, &err, "PING");
    if (!rep) {
        vq_redis_link_down_(s, err.text);
        return 0;
    }
    freeReplyObject(rep);
    return 1;
}

void vq_api_healthz_(vq_req *r)
{
    int up = ping(r->s);
    vq_reply_json_(r, up ? 200 : 503, json_pack("{s:s,s:s}", "status", up ? "ok" : "unavailable",
                                                "redis", up ? "up" : "down"));
}

/* ---- /metrics: Prometheus text format 0.0.4 ---------------------------- */

static void metric(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static json_int_t count_of(json_t *status, const char *state)
{
    return json_integer_value(json_object_get(json_object_get(status, "jobs"), state));
}

static void queue_metrics(struct evbuffer *b, json_t *st)
{
    static const char *const states[] = {"queued", "running", "retrying", "succeeded",
                                         "failed", "cancelled"};
    metric(b, "volq_jobs", "gauge", "Jobs kept in Redis, by state.");
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        evbuffer_add_printf(b, "volq_jobs{state=\"%s\"} %lld\n", states[i],
                            (long long)count_of(st, states[i]));
    metric(b, "volq_queue_depth", "gauge", "Jobs waiting for a worker (queued and retrying).");
    evbuffer_add_printf(b, "volq_queue_depth %lld\n",
                        (long long)(count_of(st, "queued") + count_of(st, "retrying")));
    metric(b, "volq_disks_locked", "gauge", "Disks locked by a live job.");
    evbuffer_add_printf(b, "volq_disks_locked %lld\n",
                        (long long)(count_of(st, "queued") + count_of(st, "retrying") +
                                    count_of(st, "running")));
    metric(b, "volq_oldest_waiting_seconds", "gauge", "Age of the oldest waiting job.");
    evbuffer_add_printf(b, "volq_oldest_waiting_seconds %g\n",
                        json_number_value(json_object_get(st, "oldest_waiting_s")));
    metric(b, "volq_workers_live", "gauge", "Worker processes registered in Redis.");
    evbuffer_add_printf(b, "volq_workers_live %zu\n",
                        json_array_size(json_object_get(st, "workers")));
    metric(b, "volq_jobs_ended_last_minute", "gauge", "Jobs that ended in the last minute.");
    evbuffer_add_printf(b, "volq_jobs_ended_last_minute %g\n",
                        json_number_value(json_object_get(st, "jobs_per_min")));
}

static void counter_metrics(struct evbuffer *b, vq_sched *s)
{
    vq_queue_counters n;
    if (vq_queue_counters_get(s->q, &n, NULL)) return;
    metric(b, "volq_qemu_img_runs_total", "counter",
           "qemu-img processes run by every worker (counted at the end of each job).");
    evbuffer_add_printf(b, "volq_qemu_img_runs_total %llu\n", (unsigned long long)n.qemu_img_runs);
    metric(b, "volq_attempt_duration_seconds", "histogram",
           "How long the attempts workers ran took, by kind (jobs recorded in no-op batches "
           "did not run).");
    for (int k = 0; k < 2; k++) {
        const vq_run_hist *h = &n.runs[k];
        unsigned long long cum = 0;
        for (int i = 0; i < VQ_RUN_BUCKETS; i++) {
            char le[32] = "+Inf";
            if (i < VQ_RUN_BUCKETS - 1) snprintf(le, sizeof le, "%g", vq_run_bucket_s[i]);
            cum += h->n[i];
            evbuffer_add_printf(b, "volq_attempt_duration_seconds_bucket{kind=\"%s\",le=\"%s\"} %llu\n",
                                vq_run_kinds[k], le, cum);
        }
        evbuffer_add_printf(b, "volq_attempt_duration_seconds_sum{kind=\"%s\"} %.3f\n",
                            vq_run_kinds[k], (double)h->sum_ms / 1000);
        evbuffer_add_printf(b, "volq_attempt_duration_seconds_count{kind=\"%s\"} %llu\n",
                            vq_run_kinds[k], cum);
    }
}

static void process_metrics(struct evbuffer *b, const vq_sched *s)
{
    const vq_sched_stats *t = &s->stats;
    metric(b, "volq_http_requests_total", "counter", "HTTP answers of this scheduler, by class.");
    for (int c = 1; c <= 5; c++)
        evbuffer_add_printf(b, "volq_http_requests_total{code=\"%dxx\"} %llu\n", c,
                            (unsigned long long)t->requests[c]);
    metric(b, "volq_http_connections", "gauge", "Open HTTP connections.");
    evbuffer_add_printf(b, "volq_http_connections %d\n", s->nconns);
    metric(b, "volq_events_waiting", "gauge", "Requests long-polling GET /api/events.");
    evbuffer_add_printf(b, "volq_events_waiting %d\n", s->nwaiters);
    metric(b, "volq_accepted_total", "counter", "Jobs accepted by this scheduler, by kind.");
    evbuffer_add_printf(b, "volq_accepted_total{kind=\"amend\"} %llu\n",
                        (unsigned long long)t->accepted_amend);
    evbuffer_add_printf(b, "volq_accepted_total{kind=\"create-volume\"} %llu\n",
                        (unsigned long long)t->accepted_create);
    metric(b, "volq_refused_total", "counter", "Jobs refused at acceptance, by kind.");
    evbuffer_add_printf(b, "volq_refused_total{kind=\"amend\"} %llu\n",
                        (unsigned long long)t->refused_amend);
    evbuffer_add_printf(b, "volq_refused_total{kind=\"create-volume\"} %llu\n",
                        (unsigned long long)t->refused_create);
    metric(b, "volq_lock_conflicts_total", "counter", "Requests refused: the disk was locked.");
    evbuffer_add_printf(b, "volq_lock_conflicts_total %llu\n", (unsigned long long)t->lock_conflicts);
    metric(b, "volq_upgrade_skipped_total", "counter",
           "Disks a bulk upgrade of this scheduler skipped, by code.");
    for (int i = 0; i < VQ_SKIP_CODES; i++)
        evbuffer_add_printf(b, "volq_upgrade_skipped_total{code=\"%s\"} %llu\n", vq_skip_codes_[i],
                            (unsigned long long)t->upgrade_skipped[i]);
    metric(b, "volq_redis_connects_total", "counter", "Successful connects to Redis.");
    evbuffer_add_printf(b, "volq_redis_connects_total %llu\n",
                        (unsigned long long)t->redis_reconnects);
}

void vq_api_metrics_(vq_req *r)
{
    struct evbuffer *b = evbuffer_new();
    json_t *st = NULL;
    if (!b) {
        vq_reply_error_(r, 500, NULL, "out of memory");
        return;
    }
    int up = r->s->redis_up && status_now(r->s, &st, NULL) == 0;
    metric(b, "volq_redis_up", "gauge", "1 when the scheduler reaches Redis.");
    evbuffer_add_printf(b, "volq_redis_up %d\n", up);
    if (up) queue_metrics(b, st);
    if (up) counter_metrics(b, r->s);
    process_metrics(b, r->s);
    json_decref(st);
    size_t len = evbuffer_get_length(b);
    vq_reply_raw_(r, 200, "text/plain; version=0.0.4", evbuffer_pullup(b, -1), len);
    evbuffer_free(b);
}
