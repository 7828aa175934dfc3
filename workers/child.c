/* One worker process: fetch a job, run its kind, end it; renew the lease
 * while qemu-img runs; stop writing the moment the attempt is fenced. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "volq/kind.h"
#include "volq/log.h"
#include "volq/spawn.h"
#include "worker_int.h"

volatile sig_atomic_t vq_worker_stop_;

/* The same log line is written at most once per VQ_SAID_MS (a Redis that
 * refuses every command would otherwise get a few lines per retry); the next
 * time it is, it says how many were left out.  VQ_SAID_LINES lines are
 * tracked: a loop that fails alternates a few. */
#define VQ_SAID_MS 60000
#define VQ_SAID_LINES 4

typedef struct said {
    char text[300];
    int64_t at;        /* ms: last written (0: not yet) */
    unsigned skipped;  /* left out since */
} said;

/* A job's last step handed over by its kind (vq_job_ctx.defer), with the job. */
typedef struct last_step {
    vq_job *job;                           /* owned; NULL when none */
    int (*fn)(void *arg, vq_error *err);
    void (*free_fn)(void *arg);
    void *arg;
} last_step;

typedef struct child {
    const vq_worker_opts *o;
    vq_queue *q;
    char id[VQ_WORKER_ID_MAX];
    int64_t last_beat;     /* ms: worker registration refreshed */
    int64_t last_lease;    /* ms: the running job's lease renewed */
    int fenced;            /* the current attempt lost its token */
    vq_wbatch batch;       /* a run of jobs with nothing to do (batch.c) */
    char ahead[VQ_UUID_SIZE]; /* the next job, claimed during the last qemu-img of the
                                 running one; started with its end ("" when none) */
    int stray;             /* a claim's answer was lost: the in-flight list may hold
                              a job we do not know of, put back after the next end */
    vq_job *started;       /* owned: the claimed job, started during the running
                              job's last qemu-img (NULL when none) */
    int64_t started_lease; /* ms: its lease taken or last renewed */
    int64_t lease_from;    /* ms: the lease of the job about to run, when taken
                              before it ran (started ahead); 0: now */
    last_step tail;        /* the ended job whose last step runs during the next
                              job's first qemu-img */
    struct {
        vq_job *job;       /* owned: a job whose last step is made, its end not yet
                              recorded (NULL when none) */
        int rc;
        vq_error err;
        int64_t since;     /* ms */
    } held;
    said said[VQ_SAID_LINES];
} child;

/* Progress is written at most this often (ms) (and at the end of the job); the
 * calls in between only check the lease, which writes nothing.  A job of a
 * few volumes then costs two writes (start, end): under appendfsync always
 * each write waits for an fsync, which the volumes' own fsyncs then wait on. */
#define VQ_PROGRESS_EVERY_MS 250

/* A job's end, once its last step is made, is held for the next job boundary
 * (sent with the next start and claim: one write of Redis's file where there
 * were two), but at most this long (ms) when the running job is a long one. */
#define VQ_HOLD_END_MS 50

/* Whether jobs are chained: the next claimed ahead, an end sent with the next
 * start.  Not when stopping, not after a lost claim answer (the in-flight list
 * is to be put back), not in a run of jobs with nothing to do (batch.c claims
 * its own). */
static int chaining(const child *w)
{
    return !vq_worker_stop_ && !w->stray && !w->batch.size;
}

static void on_term(int sig)
{
    (void)sig;
    vq_worker_stop_ = 1;
}

/* The slot of a log line: its own, else the oldest one, taken for it. */
static said *said_slot(child *w, const char *line)
{
    said *old = &w->said[0];
    for (int i = 0; i < VQ_SAID_LINES; i++) {
        if (strcmp(w->said[i].text, line) == 0) return &w->said[i];
        if (w->said[i].at < old->at) old = &w->said[i];
    }
    snprintf(old->text, sizeof old->text, "%s", line);
    old->at = 0;
    old->skipped = 0;
    return old;
}

/* vq_log, but a line written less than VQ_SAID_MS ago is left out. */
static void say(child *w, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(child *w, int level, const char *fmt, ...)
{
    char line[300];
    va_list ap;
    if (level < vq_log_min_level) return; /* as vq_log: nothing formatted */
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int64_t now = vq_now_ms();
    said *s = said_slot(w, line);
    if (s->at && now - s->at < VQ_SAID_MS) {
        s->skipped++;
        return;
    }
    if (s->skipped)
        vq_log(level, "%s (%u more times in %lld s)", line, s->skipped,
               (long long)(now - s->at) / 1000);
    else
        vq_log(level, "%s", line);
    s->at = now;
    s->skipped = 0;
}

/* Registration and lease both expire unless renewed about three times per lease. */
static int beat_interval_ms(const child *w)
{
    return w->q->cfg.lease_ms / 3 > 0 ? w->q->cfg.lease_ms / 3 : 1;
}

static void worker_beat(child *w, const char *job_id)
{
    int64_t now = vq_now_ms();
    if (job_id == NULL && now - w->last_beat < beat_interval_ms(w)) return;
    vq_error err = {0};
    if (vq_queue_worker_beat(w->q, w->id, job_id ? job_id : "", &err))
        say(w, VQ_LOG_WARN, "worker %s: registration failed: %s", w->id, err.text);
    w->last_beat = now;
}

typedef struct run_state {
    child *w;
    last_step step;        /* the job's own last step, handed over (defer) */
    vq_job *job;           /* its done and total follow the job's reports */
    int dirty;             /* job->done/total not written yet */
    int64_t written;       /* ms: progress last written (or the attempt started) */
    int calls;             /* round trips the attempt made (heartbeats, progress) */
    int pending;           /* a progress_later answer is still to be read */
    int owed;              /* a progress_later send failed: its fence is asked again */
    char *plan;            /* the job's plan until Redis said it holds it (owned):
                              sent again, with 0 of job->total, where a lease
                              check would be */
} run_state;

/* After a fenced write (heartbeat, progress): the lease and the registration
 * were renewed by the same script. */
static void renewed(child *w, int64_t now)
{
    w->last_lease = now;
    w->last_beat = now;
}

static int reconnect(child *w, const vq_error *why);

/* The answer of a fence: 0 when the lease is confirmed, VQ_ESTALE when the
 * attempt is fenced (it stops and writes nothing more).  When Redis cannot
 * answer (rc VQ_EREDIS: a lost connection; VQ_EREPLY: it refuses), the
 * worker waits for it, as for a job's end, and asks again: a write made
 * unconfirmed could land after another worker took the job over (a host cut
 * off from Redis while housekeeping, elsewhere, ends its lease). */
/* A lease check made now, answered: the plan again while Redis has not said
 * it holds it (its write is fenced like a lease check), else a heartbeat. */
static int ask_again(run_state *rs, vq_error *why)
{
    rs->calls++;
    if (!rs->plan) return vq_queue_heartbeat(rs->w->q, rs->job, why);
    int rc = vq_queue_plan_send(rs->w->q, rs->job, rs->job->total, rs->plan, why);
    return rc ? rc : vq_queue_progress_recv(rs->w->q, rs->job, why);
}

static void plan_held(run_state *rs)
{
    free(rs->plan);
    rs->plan = NULL;
}

static int confirm(run_state *rs, int rc, vq_error *why)
{
    child *w = rs->w;
    while (vq_redis_failed(rc)) {
        if (reconnect(w, why)) {
            rc = vq_error_set(why, VQ_ESTALE, "stopping while redis is away");
            break;
        }
        vq_error_clear(why);
        rc = ask_again(rs, why);
    }
    if (rc == 0) {
        plan_held(rs);
        renewed(w, vq_now_ms());
        return 0;
    }
    vq_log(VQ_LOG_WARN, "job %s: attempt fenced (%s), stopping", rs->job->id, why->text);
    w->fenced = 1;
    return VQ_ESTALE;
}

/* Reads the answer of a progress_later write, if one is due (or asks again,
 * confirmed, when its send failed): 0, or VQ_ESTALE (the attempt is fenced).
 * The answer may be the fence of a file write: a lost one is asked again. */
static int settle(run_state *rs)
{
    vq_error err = {0};
    int rc;
    if (rs->w->fenced) return VQ_ESTALE; /* once fenced, every later check says so */
    if (rs->owed) {
        rs->owed = 0;
        rc = ask_again(rs, &err);
    } else if (rs->pending) {
        rs->pending = 0;
        rc = vq_queue_progress_recv(rs->w->q, rs->job, &err);
    } else {
        return 0;
    }
    if (rc) return confirm(rs, rc, &err);
    plan_held(rs);
    return 0;
}

static int write_progress(run_state *rs, int must);
static void run_tail(child *w);
static void end_held(child *w);
static int keep_started(child *w, int64_t now);

/* Renews the lease (with the progress when a write of it is due); must: the
 * round trip is made now and is a fence (confirmed through a Redis outage).
 * Non-zero when the attempt is fenced. */
static int beat_lease(run_state *rs, int must)
{
    child *w = rs->w;
    if (settle(rs)) return VQ_ESTALE; /* also when the attempt was fenced before */
    run_tail(w);
    int64_t now = vq_now_ms();
    if (w->held.job && now - w->held.since >= VQ_HOLD_END_MS) end_held(w);
    if (w->started) keep_started(w, now);
    if (rs->dirty && now - rs->written >= VQ_PROGRESS_EVERY_MS) return write_progress(rs, must);
    if (!must && now - w->last_lease < beat_interval_ms(w)) return 0;
    vq_error err = {0};
    rs->calls++;
    int rc = vq_queue_heartbeat(w->q, rs->job, &err);
    w->last_lease = now;
    if (rc == VQ_ESTALE || (rc && must)) return confirm(rs, rc, &err);
    if (rc) vq_log(VQ_LOG_WARN, "job %s: lease renewal failed: %s", rs->job->id, err.text);
    else renewed(w, now);
    return 0;
}

/* Spawn tick: a fenced attempt kills qemu-img (returns non-zero). */
static int heartbeat(void *arg)
{
    return beat_lease(arg, 0);
}

static int fence(vq_job_ctx *c)
{
    return beat_lease(c->priv, 1);
}

/* Writes the job's progress (fenced; renews the lease like a heartbeat);
 * must: a fence, confirmed through a Redis outage. */
static int write_progress(run_state *rs, int must)
{
    vq_error err = {0};
    int64_t now = vq_now_ms();
    rs->calls++;
    int rc = vq_queue_progress(rs->w->q, rs->job, rs->job->done, rs->job->total, &err);
    if (rc == VQ_ESTALE || (rc && must)) {
        if (confirm(rs, rc, &err)) return VQ_ESTALE;
        rs->written = now; /* the value is written again with the next one, or the end */
        return 0;
    }
    if (rc) {
        /* Tried again after the interval; the lease is renewed by a tick's heartbeat. */
        vq_log(VQ_LOG_WARN, "job %s: progress not recorded: %s", rs->job->id, err.text);
        rs->written = now;
        return 0;
    }
    rs->dirty = 0;
    rs->written = now;
    renewed(rs->w, now);
    return 0;
}

/* Takes the job's report; 1 when it is new. */
static int report(run_state *rs, int done, int total)
{
    if (done == rs->job->done && total == rs->job->total) return 0;
    rs->job->done = done;
    rs->job->total = total;
    rs->dirty = 1;
    return 1;
}

/* A value already recorded is not written again (an amend with nothing to do
 * reports 0 of 0, which a new attempt's record already says). */
static int progress(vq_job_ctx *c, int done, int total)
{
    run_state *rs = c->priv;
    if (settle(rs)) return VQ_ESTALE;
    run_tail(rs->w);
    report(rs, done, total);
    if (!rs->dirty) return heartbeat(rs);
    return write_progress(rs, 0);
}

/* The progress when a write of it is due, else a lease check that writes
 * nothing; either way the answer, read later, is a fence.  0 done guards no
 * write: between writes it sends nothing. */
static int sent_later(run_state *rs, int rc, int write, const vq_error *err);

static int progress_later(vq_job_ctx *c, int done, int total)
{
    run_state *rs = c->priv;
    if (settle(rs)) return VQ_ESTALE;
    if (!report(rs, done, total)) return 0;
    vq_error err = {0};
    int64_t now = vq_now_ms();
    int write = now - rs->written >= VQ_PROGRESS_EVERY_MS;
    if (!write && done == 0) return 0; /* nothing done yet: no write to fence */
    int rc = write ? vq_queue_progress_send(rs->w->q, rs->job, done, total, &err)
                   : vq_queue_fence_send(rs->w->q, rs->job, &err);
    return sent_later(rs, rc, write, &err);
}

/* After a write (or lease check) sent, its answer to be read later: a failed
 * send leaves the fence owed (settle() asks again). */
static int sent_later(run_state *rs, int rc, int write, const vq_error *err)
{
    if (rc) {
        vq_log(VQ_LOG_WARN, "job %s: progress not recorded: %s", rs->job->id, err->text);
        rs->owed = 1; /* a file write may wait on this answer */
        return 0;
    }
    rs->calls++;
    rs->pending = 1;
    if (write) {
        rs->dirty = 0;
        rs->written = vq_now_ms();
        renewed(rs->w, rs->written);
    }
    return 0;
}

/* 0 of total with the job's plan, always written (at Redis before this
 * returns), its answer read later as progress_later's.  Until an answer says
 * Redis holds it, the plan is what a lost or refused answer asks again: a
 * worker that dies once Redis answers again leaves it for the next attempt. */
static int plan(vq_job_ctx *c, const char *plan, int total)
{
    run_state *rs = c->priv;
    if (settle(rs)) return VQ_ESTALE;
    report(rs, 0, total);
    free(rs->plan);
    rs->plan = strdup(plan); /* out of memory: sent once, not again */
    vq_error err = {0};
    int rc = vq_queue_plan_send(rs->w->q, rs->job, total, plan, &err);
    return sent_later(rs, rc, 1, &err);
}

static void start_next(child *w);

/* Called while the job's last qemu-img runs: starts the job claimed before
 * (with the held end and the claim of the one after: Redis's fsync of that
 * write then overlaps qemu-img, and the next job runs as soon as this one
 * ends), else claims the next job (not started: a worker that dies loses
 * nothing), to start it with this one's end. */
static void ahead(vq_job_ctx *c)
{
    run_state *rs = c->priv;
    child *w = rs->w;
    if (!chaining(w) || w->started || settle(rs)) return;
    if (w->ahead[0]) {
        start_next(w);
        return;
    }
    vq_error err = {0};
    if (vq_queue_claim(w->q, w->id, w->ahead, &err) == 0) {
        if (w->ahead[0]) start_next(w);
        return;
    }
    say(w, VQ_LOG_WARN, "worker %s: claim failed: %s", w->id, err.text);
    w->ahead[0] = '\0';
    /* Lost: the list may hold a claim; refused: no more claims in the ticks
     * of this job (for one put-back of the list after it). */
    w->stray = vq_redis_failed(err.code);
}

static vq_outcome outcome_of(int rc)
{
    if (rc == 0) return VQ_OUT_SUCCESS;
    return rc == VQ_EREFUSED ? VQ_OUT_REFUSED : VQ_OUT_RETRY;
}

static void log_end(const vq_job *j, int frc, vq_job_state st, const char *reason,
                    const vq_error *err)
{
    if (frc == VQ_ESTALE)
        vq_log(VQ_LOG_WARN, "job %s: result dropped, attempt was fenced", j->id);
    else if (frc)
        vq_log(VQ_LOG_WARN, "job %s: could not record the end: %s", j->id, err->text);
    else
        vq_log(reason ? VQ_LOG_NOTICE : VQ_LOG_INFO, "job %s: %s%s%s", j->id,
               vq_job_state_name(st), reason ? ": " : "", reason ? reason : "");
}

/* Waits out a Redis failure; 0 when Redis may be asked again, VQ_EREDIS when
 * stopping.  A lost connection is made again; a refused command (an error
 * reply: OOM, MISCONF, NOREPLICAS, ...) keeps it; failures in a row wait a
 * backoff up to 5 s first (vq_redis_retry_wait), so that a Redis that
 * refuses everything is not asked in a loop.  What the in-flight list holds
 * is not known any more (a claim or a start whose answer was lost; after a
 * failover, writes the new master never got): it is put back once no job of
 * this worker runs (put_back_strays). */
static int reconnect(child *w, const vq_error *why)
{
    say(w, VQ_LOG_WARN, "worker %s: %s", w->id, why->text);
    vq_error err = {0};
    int lost = vq_redis_ctx(w->q->r) == NULL;
    w->stray = 1;
    if (vq_redis_retry_wait(w->q->r, (volatile int *)&vq_worker_stop_, &err)) return VQ_EREDIS;
    if (lost) say(w, VQ_LOG_NOTICE, "worker %s: reconnected to redis", w->id);
    return 0;
}

static const char *reason_of(int rc, const vq_error *err)
{
    return rc ? (err->text[0] ? err->text : vq_strerror(rc)) : NULL;
}

/* The held end, the start of the claimed job and the claim of the job after,
 * in one pipeline.  After a Redis outage the end is recorded alone once Redis
 * answers (at the job boundary: not in a tick, where qemu-img runs), and the
 * in-flight list is put back after the running job (stray). */
static int end_held_start(child *w, const char *claimed, int in_tick, vq_job **next,
                          vq_error *err)
{
    vq_job *h = w->held.job;
    const char *reason = reason_of(w->held.rc, &w->held.err);
    vq_job_state st = VQ_JOB_NSTATES;
    int rc = vq_queue_finish_start_claim(w->q, h, outcome_of(w->held.rc), reason, &st, claimed,
                                         next, w->ahead, err);
    if (vq_redis_failed(rc) && !*next) {
        w->ahead[0] = '\0';
        if (!in_tick && reconnect(w, err) == 0) end_held(w);
        return rc;
    }
    log_end(h, rc, st, reason, err);
    w->held.job = NULL;
    vq_job_free(h);
    return 0;
}

/* Starts the claimed job (w->ahead; new job, vq_job_free()), with the held
 * end before it and the claim of the job after it, or hands it back when
 * stopping; NULL when none or cancelled meanwhile. */
static vq_job *start_claimed(child *w, int in_tick)
{
    vq_job *j = NULL;
    vq_error err = {0};
    char claimed[VQ_UUID_SIZE];
    memcpy(claimed, w->ahead, sizeof claimed);
    w->ahead[0] = '\0';
    int rc;
    if (vq_worker_stop_)
        rc = vq_queue_unclaim(w->q, w->id, claimed, &err);
    else if (w->held.job)
        rc = end_held_start(w, claimed, in_tick, &j, &err);
    else if (!chaining(w)) /* no claim: the list is to be put back, or a run claims its own */
        rc = vq_queue_start_claimed(w->q, w->id, claimed, &j, &err);
    else
        rc = vq_queue_start_claim(w->q, w->id, claimed, &j, w->ahead, &err);
    if (rc && !vq_redis_failed(rc))
        vq_log(VQ_LOG_WARN, "worker %s: claimed job %s put back with the in-flight list: %s",
               w->id, claimed, err.text);
    if (rc) w->stray = 1; /* the list may hold it unstarted, which only we would put back */
    return j;
}

/* In a tick of the running job's last qemu-img: the claimed job started, to
 * run the moment this one ends.  Its lease runs from now and is renewed with
 * the running job's (keep_started); a worker that dies before running it
 * counts a crash against it too. */
static void start_next(child *w)
{
    w->started = start_claimed(w, 1);
    w->started_lease = vq_now_ms();
}

/* The job started ahead is not ours to run (any more). */
static void drop_started(child *w)
{
    vq_job_free(w->started);
    w->started = NULL;
}

/* The lease of the job started ahead, renewed when a renewal is due (in the
 * running job's ticks, and before it runs): 1 while it is fresh.  A lost
 * lease (another worker may have the job now) drops the job. */
static int keep_started(child *w, int64_t now)
{
    if (now - w->started_lease < beat_interval_ms(w)) return 1;
    vq_error err = {0};
    int rc = vq_queue_heartbeat(w->q, w->started, &err);
    if (rc == 0) {
        w->started_lease = now;
        return 1;
    }
    vq_log(VQ_LOG_WARN, "job %s: lease of the job started ahead %s: %s", w->started->id,
           rc == VQ_ESTALE ? "lost, not run here" : "not renewed", err.text);
    if (rc == VQ_ESTALE) drop_started(w);
    return 0;
}

/* The job started ahead (its lease kept first: it must still be ours), else
 * the job claimed ahead, started now (new; vq_job_free()), with the held end
 * before it and the claim of the job after it, or handed back when stopping;
 * NULL when none.  A claimed job cancelled or gone meanwhile is followed by
 * the job claimed with its start, started in turn: NULL leaves no claim
 * behind (w->ahead is ""), which nothing else would start.  No end stays held
 * past this. */
static vq_job *start_ahead(child *w)
{
    if (w->started && !keep_started(w, vq_now_ms()))
        drop_started(w); /* not renewed (Redis): left to its lease, not run unsure */
    if (w->started) {
        vq_job *j = w->started;
        w->started = NULL;
        w->lease_from = w->started_lease;
        return j;
    }
    if (!w->ahead[0] || !chaining(w)) end_held(w);
    vq_job *j = NULL;
    while (!j && w->ahead[0]) j = start_claimed(w, 0); /* each claim took a job off the queue */
    return j;
}

/* After a lost claim answer, the in-flight list may hold a job this worker
 * does not know of: with the running job ended, whatever the list holds is
 * put back (not started: no crash counted). */
static void put_back_strays(child *w)
{
    vq_error err = {0};
    if (!w->stray) return;
    if (vq_queue_requeue_worker(w->q, w->id, NULL, &err)) {
        say(w, VQ_LOG_WARN, "worker %s: in-flight list left to the parent: %s", w->id, err.text);
    } else {
        w->stray = 0;
        /* Put back with the list: not ours to run any more.  A claim still
         * named would be started as gone, and the claim made with that start
         * left unrun in the list. */
        drop_started(w);
        w->ahead[0] = '\0';
    }
    w->last_beat = 0; /* the put-back may have dropped the registration */
}

/* Records the end of j, through a Redis outage if need be (a result is worth
 * waiting for: else the lease runs out and the job runs again), and, unless the
 * worker is stopping, j needed nothing (a run of such jobs begins: batch.c) or
 * j is the job before the running one (tail), starts the next job in the same
 * pipeline: the one claimed ahead, else one fetched.  Returns the next job
 * (new; free with vq_job_free()) or NULL. */
static vq_job *end_job(child *w, const vq_job *j, int rc, const vq_error *jerr, int idle,
                       int tail)
{
    const char *reason = reason_of(rc, jerr);
    for (;;) {
        int fetch = !tail && !vq_worker_stop_ && !idle && !w->stray && !w->started;
        /* The job before the running one: the running job's next is claimed
         * with its end (one write to Redis's file for both), not later. */
        int claim = tail && chaining(w) && !w->ahead[0];
        vq_error err = {0};
        vq_job_state st = VQ_JOB_NSTATES;
        vq_job *next = NULL;
        int frc = fetch && w->ahead[0]
                      ? vq_queue_finish_start(w->q, j, outcome_of(rc), reason, &st, w->ahead,
                                              &next, &err)
                  : fetch ? vq_queue_finish_fetch(w->q, j, outcome_of(rc), reason, &st,
                                                  w->o->block_ms, &next, &err)
                  : claim ? vq_queue_finish_claim(w->q, j, outcome_of(rc), reason, &st, w->ahead,
                                                  &err)
                          : vq_queue_finish(w->q, j, outcome_of(rc), reason, &st, &err);
        if (vq_redis_failed(frc) && !next) {
            if (reconnect(w, &err)) return NULL;
            continue;
        }
        if (fetch) w->ahead[0] = '\0';
        log_end(j, frc, st, reason, &err);
        if (tail) return NULL; /* the running job is in the in-flight list */
        put_back_strays(w);
        if (idle && frc == 0) vq_wbatch_begin_(&w->batch);
        return next ? next : start_ahead(w);
    }
}

static void step_free(last_step *t)
{
    if (t->free_fn) t->free_fn(t->arg);
    memset(t, 0, sizeof *t);
}

/* Records the held end (as the end of the job before the running one, with
 * the claim of the running job's next when none is claimed yet). */
static void end_held(child *w)
{
    vq_job *j = w->held.job;
    if (!j) return;
    w->held.job = NULL;
    end_job(w, j, w->held.rc, &w->held.err, 0, 1);
    vq_job_free(j);
}

/* The job before the running one: its last step (its fences were read when
 * it was handed over), then its end.  Runs in the running job's first tick,
 * or after it when it ran no qemu-img. */
static void run_tail(child *w)
{
    last_step t = w->tail;
    vq_job *j = t.job;
    if (!j) return;
    memset(&w->tail, 0, sizeof w->tail);
    vq_error err = {0};
    int rc = t.fn(t.arg, &err);
    step_free(&t);
    end_held(w);
    /* With the running job's next claimed, the end goes with its start. */
    if (w->ahead[0] && chaining(w)) {
        w->held.job = j;
        w->held.rc = rc;
        w->held.err = err;
        w->held.since = vq_now_ms();
        return;
    }
    end_job(w, j, rc, &err, 0, 1);
    vq_job_free(j);
}

/* vq_job_ctx.defer: the worker takes the job's last step. */
static int defer(vq_job_ctx *c, int (*fn)(void *arg, vq_error *err), void (*free_fn)(void *arg),
                 void *arg)
{
    run_state *rs = c->priv;
    if (rs->step.fn || !fn || !free_fn) return -1;
    rs->step = (last_step){.fn = fn, .free_fn = free_fn, .arg = arg};
    return 0;
}

/* j's last step waits for the next job's first qemu-img when a job was
 * claimed ahead and starts now: 1 (the started job in *next), else 0. */
static int hand_over(child *w, run_state *rs, vq_job **next)
{
    if (!rs->step.fn || vq_worker_stop_ || (!w->ahead[0] && !w->started) || w->stray) return 0;
    *next = start_ahead(w);
    if (!*next) return 0;
    w->tail = rs->step;
    w->tail.job = rs->job;
    memset(&rs->step, 0, sizeof rs->step);
    return 1;
}

/* The kind's run(), or, once the job's workers died max_crashes times, its
 * clean(): nothing new is started; the job fails with the crashes' reason
 * unless an earlier attempt had finished it. */
static int run_attempt(const vq_job_kind *k, vq_job_ctx *c, vq_error *err)
{
    const vq_job *j = c->job;
    if (!k) return vq_error_set(err, VQ_EREFUSED, "unknown job kind %s", j->kind);
    if (!j->cleanup) return k->run(c, err);
    vq_error e = {0};
    int rc = k->clean ? k->clean(c, &e) : VQ_EREFUSED;
    if (rc == 0 || rc == VQ_ESTALE) return rc;
    return vq_error_set(err, rc, "worker died %d times during this job%s%s%s", j->crashes,
                        e.text[0] ? "; " : "", rc == VQ_EREFUSED ? "" : "its clean-up failed: ",
                        e.text);
}

/* Runs one attempt of j (owned: freed here, or kept with its last step) and
 * ends it; returns the next job already started, or NULL. */
static vq_job *run_job(child *w, vq_job *j)
{
    run_state rs = {.w = w, .job = j, .written = vq_now_ms()};
    vq_job_ctx c = {
        .job = j,
        .domains_root = w->o->domains_root,
        .qemu_timeout_ms = w->o->qemu_timeout_ms,
        .progress = progress,
        .progress_later = progress_later,
        .plan = plan,
        .fence = fence,
        .ahead = ahead,
        .defer = defer,
        .heartbeat = heartbeat,
        .heartbeat_arg = &rs,
        .priv = &rs,
    };
    vq_error err = {0};
    w->fenced = 0;
    /* start.lua took the lease and registered us with the job (before now
     * when the job was started ahead) */
    renewed(w, w->lease_from ? w->lease_from : vq_now_ms());
    w->lease_from = 0;
    const vq_job_kind *k = vq_job_kind_find(j->kind);
    unsigned long spawns = vq_spawn_count();
    int64_t t0 = vq_now_ms();
    int rc = run_attempt(k, &c, &err);
    int64_t ran = vq_now_ms() - t0;
    j->run_ms = ran > 0 ? ran : 1; /* sent with the end */
    settle(&rs); /* the fences' answers, before the end's own pipeline */
    plan_held(&rs); /* held, or no longer of use (fenced) */
    run_tail(w); /* the job before ends first (when no tick of this one ran it) */
    vq_job *next = NULL;
    if (w->fenced || rc == VQ_ESTALE) {
        vq_log(VQ_LOG_WARN, "job %s: attempt fenced, its result is not written", j->id);
        step_free(&rs.step);
        next = start_ahead(w);
    } else if (rc == 0 && hand_over(w, &rs, &next)) {
        return next; /* j goes with its last step */
    } else {
        end_held(w); /* the job before ends first */
        if (rs.step.fn) {
            vq_error serr = {0};
            int src = rs.step.fn(rs.step.arg, &serr);
            if (rc == 0 && src) rc = vq_error_set(&err, src, "%s", serr.text);
            step_free(&rs.step);
        }
        /* Succeeded without a qemu-img or a write: more like it may follow. */
        int idle = rc == 0 && rs.calls == 0 && vq_spawn_count() == spawns && k && k->noop;
        next = end_job(w, j, rc, &err, idle, 0);
    }
    vq_job_free(j);
    return next;
}

/* The next job of a run of jobs with nothing to do; after a Redis outage the
 * run is dropped and what it claimed put back. */
static vq_job *next_of_run(child *w, vq_error *err)
{
    vq_job *j = vq_wbatch_next_(&w->batch, w->q, w->id, w->o->domains_root, err);
    if (!vq_redis_failed(err->code)) return j;
    if (reconnect(w, err) == 0) vq_wbatch_abort_(&w->batch, w->q, w->id);
    w->last_beat = 0; /* the put-back may have dropped the registration */
    return NULL;
}

static int connect_queue(child *w)
{
    vq_error err = {0};
    vq_redis *r = NULL;
    while (!vq_worker_stop_) {
        vq_error_clear(&err);
        if (vq_redis_connect(w->o->redis_url, 2000, &r, &err) == 0) break;
        vq_log(VQ_LOG_WARN, "worker %s: %s; retrying", w->id, err.text);
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    if (!r) return VQ_EREDIS;
    vq_queue_config cfg;
    vq_queue_config_default(&cfg);
    return vq_queue_new(r, &cfg, &w->q, &err);
}

int vq_worker_child_run_(const vq_worker_opts *o)
{
    child w = {.o = o};
    vq_worker_id_(w.id, sizeof w.id, getpid());
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (connect_queue(&w)) return vq_worker_stop_ ? 0 : 1;
    vq_log(VQ_LOG_INFO, "worker %s: ready", w.id);
    vq_job *j = NULL;
    /* A job started ahead is running: a stop lets it finish, as the job before. */
    while (!vq_worker_stop_ || (j && w.lease_from)) {
        if (!j) end_held(&w);
        if (!j && !w.batch.size) put_back_strays(&w);
        /* A claim made with an end (end_held) is ours to run, before any fetch. */
        if (!j && w.ahead[0]) j = start_ahead(&w);
        worker_beat(&w, NULL);
        vq_error err = {0};
        if (!j && w.batch.size) j = next_of_run(&w, &err);
        if (vq_redis_failed(err.code)) continue;
        if (!j && !w.batch.size && vq_queue_fetch(w.q, w.id, o->block_ms, &j, &err)) {
            w.stray = 1; /* the move may have been made, the start not */
            if (!vq_redis_failed(err.code)) say(&w, VQ_LOG_WARN, "worker %s: fetch failed: %s", w.id, err.text);
            else if (reconnect(&w, &err)) break;
            continue;
        }
        if (!j) continue;
        vq_log(VQ_LOG_INFO, "job %s: %s of disk %s, attempt %d", j->id, j->kind, j->disk_id,
               j->attempts);
        j = run_job(&w, j);
    }
    run_tail(&w); /* stopping between a job's hand-over and the next one's run */
    end_held(&w);
    /* A job fetched together with the last end, when a stop came meanwhile,
     * goes back with the rest below (worker_gone: no crash counted), at once
     * rather than left to the lease. */
    vq_job_free(j);
    drop_started(&w); /* not run: worker_gone puts it back (no lease renewal first) */
    vq_job_free(start_ahead(&w)); /* stopping: the claimed job handed back */
    vq_wbatch_end_(&w.batch, w.q, w.id, NULL);
    vq_queue_worker_gone(w.q, w.id, NULL);
    vq_log(VQ_LOG_INFO, "worker %s: stopped", w.id);
    vq_queue_free(w.q);
    return 0;
}
