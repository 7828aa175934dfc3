/* Shared inside workers/: the pool (parent) and the worker loop (children). */
#ifndef VOLQ_WORKER_INT_H
#define VOLQ_WORKER_INT_H
#include <signal.h>

#include "volq/domain.h"
#include "volq/queue.h"

typedef struct vq_worker_opts {
    char redis_url[512];
    const char *domains_root;
    int processes;
    int qemu_timeout_ms;  /* per qemu-img process */
    int block_ms;         /* how long a fetch waits before the loop looks around */
} vq_worker_opts;

/* Set by SIGTERM/SIGINT in a child: finish the running job, then exit. */
extern volatile sig_atomic_t vq_worker_stop_;

/* The loop of one worker process; returns its exit status. */
int vq_worker_child_run_(const vq_worker_opts *o);

/* The parent: forks o->processes children, restarts those that die, puts a
 * dead child's job back at once, forwards SIGTERM.  Returns the exit status. */
int vq_worker_pool_run_(const vq_worker_opts *o);

/* ---- batch.c: runs of jobs with nothing to do ---- */

/* Jobs claimed at most at once: the records of a claim are read in one
 * round trip; 32 no-op amends take a few ms to check, so a job handed back is
 * never held long. */
#define VQ_WORKER_BATCH_MAX 32

typedef struct vq_wbatch {
    size_t size;                                  /* next claim; 0: not in a run */
    char ids[VQ_WORKER_BATCH_MAX][VQ_UUID_SIZE];  /* claimed, not started */
    vq_job *jobs[VQ_WORKER_BATCH_MAX];            /* their records (owned; NULL when gone) */
    size_t n, next;                               /* claimed; the next to look at */
    char idle[VQ_WORKER_BATCH_MAX][VQ_UUID_SIZE]; /* found to need nothing, to record */
    vq_job *idle_jobs[VQ_WORKER_BATCH_MAX];       /* their records (owned), for the log */
    size_t nidle;
    vq_domain *domain;                            /* the kinds' noop() cache (owned) */
} vq_wbatch;

/* A run begins after a job that needed nothing (no qemu-img, no write). */
void vq_wbatch_begin_(vq_wbatch *b);
/* The next job of the run that needs work, started (new; vq_job_free()); the
 * jobs with nothing to do met on the way are recorded.  NULL when the run is
 * over (the queue is empty or a job was cancelled meanwhile: b->size is 0
 * then), when stopping, or on error (err set; after a Redis failure,
 * VQ_EREDIS or VQ_EREPLY, and its wait call vq_wbatch_abort_()). */
vq_job *vq_wbatch_next_(vq_wbatch *b, vq_queue *q, const char *worker, const char *root,
                        vq_error *err);
/* At a stop: records the jobs found idle, hands the others back. */
int vq_wbatch_end_(vq_wbatch *b, vq_queue *q, const char *worker, vq_error *err);
/* After a Redis error: forgets the run and puts back whatever the worker's
 * in-flight list holds. */
void vq_wbatch_abort_(vq_wbatch *b, vq_queue *q, const char *worker);

/* "host:pid" of this process into out. */
void vq_worker_id_(char *out, size_t outsz, pid_t pid);

#endif
