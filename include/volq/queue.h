/* The job queue in Redis: acceptance with disk locks, reliable fetch with
 * leases and fencing tokens, ends, retries, cancel, housekeeping.  Every
 * state change is one Lua script (queue/lua/), so a crash between two calls
 * never leaves a half-moved job.  docs/queue.md shows the keys and scripts. */
#ifndef VOLQ_QUEUE_H
#define VOLQ_QUEUE_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "volq/job.h"
#include "volq/redis.h"

typedef struct vq_queue_config {
    int lease_ms;            /* running job / disk lock lease; default 15000 */
    int max_attempts;        /* error retries; default 5 */
    int max_crashes;         /* worker deaths before a job fails; default 5 */
    int backoff_base_ms;     /* first retry delay; doubles each attempt, jittered; default 1000 */
    int backoff_max_ms;      /* default 300000 */
    int keep_finished_s;     /* ended jobs kept this long; default 7 days */
    int keep_finished_max;   /* and at most this many; default 100000 */
    int events_max;          /* audit stream cap (approximate, at least); default 100000 */
    int wait_replicas;       /* replicas that must hold an accepted job before
                                vq_queue_accept() answers (WAIT); default 0: none */
    int wait_ms;             /* how long that WAIT may take; default 1000 */
} vq_queue_config;

/* Defaults, overridden by VOLQ_LEASE_MS, VOLQ_MAX_ATTEMPTS, VOLQ_MAX_CRASHES,
 * VOLQ_BACKOFF_MS, VOLQ_BACKOFF_MAX_MS, VOLQ_KEEP_FINISHED_S, VOLQ_KEEP_FINISHED_MAX,
 * VOLQ_EVENTS_MAX, VOLQ_REDIS_WAIT_MS (positive integers) and
 * VOLQ_REDIS_WAIT_REPLICAS (0 or more); a bad value is logged and ignored. */
void vq_queue_config_default(vq_queue_config *c);

/* The delay before retry number `attempt` (1 = after the first failed attempt):
 * backoff_base_ms * 2^(attempt-1), capped at backoff_max_ms, then jittered by
 * ±20% with u in [0, 1] (0.5: no jitter). */
int vq_queue_backoff_ms(const vq_queue_config *c, int attempt, double u);

typedef struct vq_queue {
    vq_redis *r;             /* owned */
    vq_queue_config cfg;
    unsigned seed;           /* rand_r state for the backoff jitter */
} vq_queue;

/* Takes ownership of r, even on failure.  Returns a new queue; free with vq_queue_free(). */
int vq_queue_new(vq_redis *r, const vq_queue_config *cfg, vq_queue **out, vq_error *err);
void vq_queue_free(vq_queue *q);

/* ---- acceptance ------------------------------------------------------- */

/* One job to accept.  All strings borrowed for the call. */
typedef struct vq_accept_req {
    const char *kind;        /* "amend" | "create-volume" */
    const char *domain_id;
    const char *disk_id;
    const char *volume_id;   /* create-volume: the new volume's id; else NULL */
    const char *alias;
    const json_t *params;    /* kind parameters, or NULL */
    const char *refusal;     /* non-NULL: refused at acceptance; recorded as a failed
                                job with this reason and the failure event, no lock
                                (unless the disk is locked: then VQ_ACCEPT_LOCKED) */
    const char *idem_key;    /* Idempotency-Key or NULL */
    /* What the caller read just before, for accept.lua to check again (it reads
     * every value itself): the raw lock entry of the disk ("" for none) and
     * the job idem_key made ("" for none).  When every request of a call has
     * them, vq_queue_accept does not read them again (one round trip less);
     * else it reads them all.  NULL: not read. */
    const char *holder_seen;
    const char *idem_job_seen;
} vq_accept_req;

typedef enum vq_accept_status {
    VQ_ACCEPT_QUEUED = 0,    /* new job queued, disk locked */
    VQ_ACCEPT_REFUSED,       /* recorded as failed (req.refusal) */
    VQ_ACCEPT_LOCKED,        /* disk locked by holder: nothing recorded */
    VQ_ACCEPT_IDEMPOTENT,    /* the key was seen: job_id is the job it made */
} vq_accept_status;

typedef struct vq_accept_res {
    vq_accept_status status;
    char job_id[VQ_UUID_SIZE];  /* the new job, the holder (LOCKED) or the first job */
} vq_accept_res;

/* Accepts n jobs in one script call (bulk upgrade: one Redis step).  res[i]
 * answers reqs[i].  Fails as a whole only when Redis fails (VQ_EREDIS), or with
 * VQ_EINVAL, nothing recorded, when a request is malformed (unknown kind, an id
 * that is not a UUID, create-volume without volume_id, an idem_key longer than
 * 200 bytes).  Two round trips: the lock holders and keys are read first, then
 * one script checks them again and does the rest atomically.  Idempotency
 * keys last 24 hours.
 * With cfg.wait_replicas > 0, an answer that records or reports a job (all but
 * VQ_ACCEPT_LOCKED) is given only after WAIT wait_replicas wait_ms confirmed
 * it on that many replicas; otherwise VQ_EREDIS ("redis: WAIT: 0 of 1
 * replica(s) acknowledged within 1000 ms"): the jobs may or may not survive a
 * failover, so the caller retries (with the same idempotency keys). */
int vq_queue_accept(vq_queue *q, const vq_accept_req *reqs, size_t n, vq_accept_res *res,
                    vq_error *err);

/* The job each idempotency key made: jobs[i] for keys[i], "" when the key is
 * unknown (or expired).  One round trip; nothing changes.  Lets a caller that
 * would skip a request (a bulk upgrade skips disks already amended) send it
 * anyway when its key made a job, so that a repeat answers with that job. */
int vq_queue_idem_jobs(vq_queue *q, const char *const *keys, size_t n,
                       char (*jobs)[VQ_UUID_SIZE], vq_error *err);

/* ---- workers ---------------------------------------------------------- */

/* Registers (or refreshes) worker id ("host:pid") with its current job ("" when
 * idle); the record expires after 3 leases without a refresh. */
int vq_queue_worker_beat(vq_queue *q, const char *worker, const char *job_id, vq_error *err);
/* Removes the worker's record (clean exit); a job still in its in-flight list
 * is put back first, as vq_queue_requeue_worker() does, but one it started
 * and did not run counts no crash (call it only when nothing runs). */
int vq_queue_worker_gone(vq_queue *q, const char *worker, vq_error *err);

/* Waits up to block_ms for a queued job, moves it into the worker's in-flight
 * record and starts its attempt (state running, attempts+1, a new fencing token,
 * a lease, "Started to amend ..." on an amend's first attempt).  *out is NULL
 * when nothing came (not an error).  Returns a new job; free with vq_job_free().
 * Also refreshes the worker's registration.  block_ms 0 does not wait; keep it
 * well below 3 leases (the registration's lifetime).  Two round trips. */
int vq_queue_fetch(vq_queue *q, const char *worker, int block_ms, vq_job **out, vq_error *err);

/* Extends the lease of the running attempt (and its disk lock).  VQ_ESTALE when
 * the token is no longer current: the worker must stop and write nothing. */
int vq_queue_heartbeat(vq_queue *q, const vq_job *j, vq_error *err);

/* Records progress (done of total volumes); fenced like heartbeat. */
int vq_queue_progress(vq_queue *q, const vq_job *j, int done, int total, vq_error *err);
/* The same in two halves, for a value nothing waits on (a job's total at its
 * start): _send appends the write to the pipeline and returns, _recv reads
 * its answer (VQ_ESTALE when fenced).  _recv must come before any other call
 * on q. */
int vq_queue_progress_send(vq_queue *q, const vq_job *j, int done, int total, vq_error *err);
/* progress_send of 0 of total with the job's plan (job.h), written to the
 * socket before it returns: the plan is at Redis before the caller changes a
 * file, even if the caller dies next.  Its answer is read with _recv; not
 * when it fails (VQ_EREDIS: the connection is lost, the plan not recorded). */
int vq_queue_plan_send(vq_queue *q, const vq_job *j, int total, const char *plan, vq_error *err);
/* A lease check that writes nothing (fence.lua): appended like _send, its
 * answer read with vq_queue_progress_recv (VQ_ESTALE when the attempt is no
 * longer current or its lease ran out).  Not waiting for an fsync, it is the
 * cheap check to make right before a file write. */
int vq_queue_fence_send(vq_queue *q, const vq_job *j, vq_error *err);
int vq_queue_progress_recv(vq_queue *q, const vq_job *j, vq_error *err);

typedef enum vq_outcome {
    VQ_OUT_SUCCESS = 0,
    VQ_OUT_REFUSED,          /* ends failed, never retried */
    VQ_OUT_RETRY,            /* transient: retrying with backoff, or failed after max_attempts */
} vq_outcome;

/* Ends the attempt: job state, indexes, the disk lock (released when the job
 * ends) and the audit event in one step, with j->done and j->total as the
 * job's last progress.  reason: one line, NULL on success.
 * *final_state (may be NULL) gets the resulting state.  VQ_ESTALE when fenced. */
int vq_queue_finish(vq_queue *q, const vq_job *j, vq_outcome o, const char *reason,
                    vq_job_state *final_state, vq_error *err);

/* vq_queue_finish() of prev and vq_queue_fetch() of the next job for the same
 * worker (prev->worker) in one pipeline: two round trips per job in all.  The
 * return code and *final_state are the finish's; *next is fetched even when the
 * finish was fenced (VQ_ESTALE), and is NULL (with the error) only when the
 * fetch itself failed.  Returns a new job in *next; free with vq_job_free(). */
int vq_queue_finish_fetch(vq_queue *q, const vq_job *prev, vq_outcome o, const char *reason,
                          vq_job_state *final_state, int block_ms, vq_job **next,
                          vq_error *err);

/* Claims the next queued job without waiting or starting it: it moves into
 * the worker's in-flight list, still queued (a worker that dies loses
 * nothing: its parent puts it back, no crash counted).  id gets "" when the
 * queue is empty.  One round trip. */
int vq_queue_claim(vq_queue *q, const char *worker, char id[VQ_UUID_SIZE], vq_error *err);
/* vq_queue_finish() of prev and vq_queue_claim() for prev's worker in one
 * pipeline: one round trip, and under appendfsync always one fsync of
 * Redis's file for both.  id gets "" when the queue is empty.  The return
 * code is the finish's, else the claim's. */
int vq_queue_finish_claim(vq_queue *q, const vq_job *prev, vq_outcome o, const char *reason,
                          vq_job_state *final_state, char id[VQ_UUID_SIZE], vq_error *err);
/* Starts a claimed job, as vq_queue_fetch would: *out is NULL when it was
 * cancelled meanwhile.  Returns a new job; free with vq_job_free(). */
int vq_queue_start_claimed(vq_queue *q, const char *worker, const char *id, vq_job **out,
                           vq_error *err);
/* vq_queue_start_claimed() and then vq_queue_claim() of the job after, in one
 * pipeline (id: "" when the queue is empty).  The return code is the start's,
 * else the claim's. */
int vq_queue_start_claim(vq_queue *q, const char *worker, const char *claimed, vq_job **out,
                         char id[VQ_UUID_SIZE], vq_error *err);
/* Hands a claimed job back to the front of the queue (the end workers take from). */
int vq_queue_unclaim(vq_queue *q, const char *worker, const char id[VQ_UUID_SIZE], vq_error *err);
/* vq_queue_finish() of prev and the start of a job prev's worker claimed
 * (vq_queue_claim) in one pipeline: one round trip.  *next is the started job
 * (new; vq_job_free()), or NULL when it was cancelled meanwhile; it is started
 * even when the finish was fenced.  The return code is the finish's, else the
 * start's. */
int vq_queue_finish_start(vq_queue *q, const vq_job *prev, vq_outcome o, const char *reason,
                          vq_job_state *final_state, const char *claimed, vq_job **next,
                          vq_error *err);
/* The same, and then vq_queue_claim() of the job after (id: "" when the queue
 * is empty; NULL: no claim): a worker's whole job boundary in one round trip
 * and one write of Redis's file.  The return code is the finish's, else the
 * start's, else the claim's. */
int vq_queue_finish_start_claim(vq_queue *q, const vq_job *prev, vq_outcome o,
                                const char *reason, vq_job_state *final_state,
                                const char *claimed, vq_job **next, char *id, vq_error *err);

/* The worker is dead (its parent saw it die, or its lease ran out): put its
 * in-flight job back in the queue at the front, counting a crash; a job whose
 * worker died max_crashes times fails ("worker died N times during this job").
 * *n (may be NULL) gets the number of jobs put back. */
int vq_queue_requeue_worker(vq_queue *q, const char *worker, int *n, vq_error *err);

/* ---- batches of jobs with nothing to do (workers) ---------------------- */

/* A worker that meets a job with nothing to do (an amend of a disk whose
 * volumes are all at compat 1.1) claims the next jobs several at a time: they
 * move into its in-flight list without being started, as between the two
 * steps of vq_queue_fetch (a worker that dies then loses nothing: its parent
 * puts them back, no crash counted).  It checks each from the files; those
 * that need nothing are recorded together, each as an attempt that started
 * and succeeded (the same fields and events a run would write).  At the first
 * job that needs work it hands the rest back and starts that one alone, so a
 * batch never holds a job another worker could be running. */
typedef struct vq_batch {
    const char *worker;                /* "host:pid" */
    const char (*idle)[VQ_UUID_SIZE];  /* claimed jobs with nothing to do: recorded */
    size_t nidle;
    const char (*back)[VQ_UUID_SIZE];  /* claimed jobs handed back to the front of the
                                          queue, in the order they were claimed */
    size_t nback;
    const char *start;                 /* a claimed job to start, or NULL */
    size_t want;                       /* then claim up to this many more (no wait) */
    /* Answers. */
    unsigned char *recorded;           /* caller's array of nidle, or NULL: 1 per idle job
                                          recorded, 0 when it was not queued any more */
    vq_job *started;                   /* the started job (new; vq_job_free()), or NULL
                                          when it was cancelled meanwhile */
    char (*claimed_ids)[VQ_UUID_SIZE]; /* caller's arrays of want entries: the ids claimed, */
    vq_job **claimed;                  /* their records (new, still queued; NULL when gone) */
    size_t nclaimed;
} vq_batch;

/* In one pipeline: records b->idle, hands b->back back, starts b->start, then
 * claims up to b->want more; one more round trip reads the claimed records.
 * On VQ_EREDIS the caller cannot know what ran: it should put back everything
 * its list holds (vq_queue_requeue_worker on itself) once Redis answers. */
int vq_queue_batch(vq_queue *q, vq_batch *b, vq_error *err);

/* ---- administrator ---------------------------------------------------- */

/* Returns a new job (free with vq_job_free()); VQ_ENOENT when unknown. */
int vq_queue_get(vq_queue *q, const char *job_id, vq_job **out, vq_error *err);
/* n jobs, pipelined (1,000 per round trip): out[i] gets a new job, or NULL
 * when ids[i] has none.  VQ_EINVAL when an id is not a UUID. */
int vq_queue_get_many(vq_queue *q, const char (*ids)[VQ_UUID_SIZE], size_t n, vq_job **out,
                      vq_error *err);

/* Jobs newest first by their last change ("updated"; ties by id), all states
 * or one (state < 0 for all), at most limit (capped at VQ_QUEUE_LIST_MAX).
 * Reads only the first `limit` entries of each state's index (of the queue,
 * at both ends), never every job: exact for ended jobs, and for live ones
 * while their index holds no more than that (admin.c, append_index_reads).
 * Returns a new JSON array of job objects. */
#define VQ_QUEUE_LIST_MAX 10000
int vq_queue_list(vq_queue *q, int state, size_t limit, json_t **out, vq_error *err);

/* failed -> queued, attempts reset, taking the disk lock again.  VQ_ESTATE when
 * the job is not failed; VQ_ELOCKED (holder in err) when its disk is taken. */
int vq_queue_retry(vq_queue *q, const char *job_id, vq_error *err);
/* Every failed job (newest first, in batches); counts of retried and of those
 * left failed because their disk is locked by another job. */
int vq_queue_retry_failed(vq_queue *q, size_t *retried, size_t *left, vq_error *err);

/* queued|retrying -> cancelled, lock released, and the failure event with
 * reason "cancelled by the administrator".  VQ_ESTATE otherwise (a running job
 * cannot be cancelled), VQ_ENOENT when unknown. */
int vq_queue_cancel(vq_queue *q, const char *job_id, vq_error *err);

/* Lock holders of n disks: holders[i] gets the live job that holds disk i, or
 * "" (a lock whose job is missing or ended is free).  Two round trips. */
int vq_queue_lock_holders(vq_queue *q, const char *const *disk_ids, size_t n,
                          char (*holders)[VQ_UUID_SIZE], vq_error *err);
/* The same, and raw[i] the lock's entry as read, ended job or not (what
 * vq_accept_req.holder_seen takes). */
int vq_queue_lock_holders_raw(vq_queue *q, const char *const *disk_ids, size_t n,
                              char (*raw)[VQ_UUID_SIZE], char (*holders)[VQ_UUID_SIZE],
                              vq_error *err);

/* The status object of SPEC §4 (jobs per state, workers, oldest_waiting_s,
 * jobs_per_min, redis "up").  New reference. */
int vq_queue_status(vq_queue *q, json_t **out, vq_error *err);

/* Attempt durations, for /metrics: the upper bounds (seconds) of the
 * buckets, the last one +Inf. */
#define VQ_RUN_BUCKETS 11
extern const double vq_run_bucket_s[VQ_RUN_BUCKETS - 1];
/* The bucket of an attempt that ran ms. */
int vq_run_bucket(int64_t ms);

/* The kinds of vq_queue_counters.runs[], in order. */
extern const char *const vq_run_kinds[2];

typedef struct vq_run_hist {
    uint64_t n[VQ_RUN_BUCKETS]; /* attempts per bucket (not cumulative) */
    uint64_t sum_ms;
} vq_run_hist;

/* Counters shared by every host, for /metrics. */
typedef struct vq_queue_counters {
    uint64_t qemu_img_runs;  /* qemu-img processes the workers ran (added at each job's end) */
    vq_run_hist runs[2];     /* attempts that ran, by kind: [0] amend, [1] create-volume;
                                jobs recorded in no-op batches did not run and are not here */
} vq_queue_counters;
/* One round trip. */
int vq_queue_counters_get(vq_queue *q, vq_queue_counters *out, vq_error *err);

/* ---- housekeeping (scheduler; safe to run on several at once) --------- */

/* Due retries -> queued; expired leases -> requeued (crash counted); in-flight
 * records of workers whose registration expired -> requeued; finished jobs past
 * retention trimmed.  *moved (may be NULL) counts the jobs it moved. */
int vq_queue_housekeep(vq_queue *q, size_t *moved, vq_error *err);

/* Start-up repair: locks whose job is missing or ended are dropped, a live job
 * whose lock is missing gets it back, a job found in two indexes is left only in
 * the one its state names.  *fixed counts repairs. */
int vq_queue_repair(vq_queue *q, size_t *fixed, vq_error *err);

/* ---- audit events ----------------------------------------------------- */

/* Events after since (a stream id "ms-seq", an RFC 3339 time, or NULL for the
 * oldest kept), at most count (0: VQ_QUEUE_EVENTS_MAX), waiting up to block_ms
 * (0: no wait) when there are none yet.  A stream id is exclusive (the events
 * after it); a time is inclusive (the events at or after it).  Fewer than count
 * only when the stream has no more.  *out gets a new JSON array of event
 * objects, each with an "id" added (the stream id, to pass back as since);
 * last_id gets the last id read (also of an event passed over as older than a
 * time) or is left as it was. */
int vq_queue_events(vq_queue *q, const char *since, size_t count, int block_ms, json_t **out,
                    char last_id[64], vq_error *err);
/* At most this many events a call: the same bound as a list of jobs (an event
 * is smaller than a job), so one answer stays within a few MB. */
#define VQ_QUEUE_EVENTS_MAX 10000

/* An event id as Redis writes it, "ms-seq": both parts decimal and below 2^64,
 * and not the greatest id (nothing can come after it).  0 or VQ_EINVAL. */
int vq_queue_event_id_parse(const char *s, uint64_t *ms, uint64_t *seq);

#endif
