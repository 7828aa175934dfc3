/* Job kinds: one file each under jobs/, one entry each in the table of jobs/kind.c. */
#ifndef VOLQ_KIND_H
#define VOLQ_KIND_H
#include <jansson.h>

#include "volq/disk.h"
#include "volq/domain.h"
#include "volq/job.h"
#include "volq/spawn.h"

/* What a running job may call back into: progress and the lease heartbeat. */
typedef struct vq_job_ctx {
    const vq_job *job;
    const char *domains_root;
    int qemu_timeout_ms;     /* per qemu-img process */
    /* Both return 0, or VQ_ESTALE when the attempt was fenced (stop, write nothing). */
    int (*progress)(struct vq_job_ctx *c, int done, int total);
    /* progress() without waiting: the job carries on; the answer is read at
     * the next progress, fence or heartbeat, and is a lease check (VQ_ESTALE
     * there when fenced), so it may serve as the fence of a file write made
     * after that answer.  The worker writes progress at most every 250 ms
     * (the last value goes with the job's end); between writes it sends a
     * lease check that writes nothing, or nothing at all for 0 done (no
     * file write follows that a fence would guard). */
    int (*progress_later)(struct vq_job_ctx *c, int done, int total);
    /* Optional (may be NULL): progress 0 of total with the job's plan
     * (vq_job.plan, kept until the job ends), at Redis before it returns,
     * so a later attempt finds it even if this worker dies right after;
     * its answer is read as progress_later's. */
    int (*plan)(struct vq_job_ctx *c, const char *plan, int total);
    /* A forced lease check: call it right before changing a file the job does
     * not own alone (GEN in .meta), so a worker paused past its lease and
     * resumed does not write after the job moved to another worker.  It is
     * answered: through a Redis outage the worker waits and asks again (a
     * progress_later answer that a write waits on is confirmed the same way). */
    int (*fence)(struct vq_job_ctx *c);
    /* Optional (may be NULL): call it while the job's last qemu-img runs (no
     * other follows); the worker may then claim its next job, so that the
     * next one starts in the same round trip as this one's end. */
    void (*ahead)(struct vq_job_ctx *c);
    /* Optional (may be NULL): hands the job's last step to the worker, which
     * runs fn(arg, err) once the answers of the job's fences were read, and
     * takes its result as the job's (0: success): at once, or while the next
     * job's first qemu-img runs, so that the step does not stand between the
     * two.  Called last in run(), which then returns 0.  The worker owns arg
     * from then on and frees it with free_fn.  Returns 0; non-zero when the
     * worker cannot take it (run it yourself). */
    int (*defer)(struct vq_job_ctx *c, int (*fn)(void *arg, vq_error *err),
                 void (*free_fn)(void *arg), void *arg);
    vq_spawn_tick heartbeat; /* pass to vq_spawn_run() with heartbeat_arg */
    void *heartbeat_arg;
    void *priv;
} vq_job_ctx;

typedef struct vq_job_kind {
    const char *name;        /* "amend", "create-volume" */
    /* Acceptance-time check, from the files alone (nothing written, nothing spawned).
     * disk is NULL for a create-volume on a new disk.  params is the kind's
     * parameters (create-volume: size, format, parent, alias; may be normalised
     * in place, e.g. a size taken from the parent).  0 when the job may be queued;
     * VQ_EINVAL for bad input (HTTP 400, nothing recorded); VQ_EREFUSED for a
     * refusal (HTTP 409, recorded as a failed job with err->text as its reason). */
    int (*check)(const vq_domain *d, const vq_disk *disk, json_t *params, vq_error *err);
    /* Runs one attempt.  0 on success; VQ_EREFUSED for a refusal (ends the job,
     * not retried); VQ_ESTALE when fenced; any other code is transient (retried). */
    int (*run)(vq_job_ctx *c, vq_error *err);
    /* Optional (NULL: never).  1 when an attempt of job, not started yet, would
     * succeed without running anything or writing anything (an amend of a disk
     * whose volumes are all at compat 1.1), judged from the files alone, the
     * way run() would judge them; 0 otherwise.  The worker then records the
     * attempt as started and succeeded without running it (vq_queue_batch).
     * *domain is a domain an earlier call opened: reused when it is the job's,
     * else replaced (the caller frees the last with vq_domain_free()). */
    int (*noop)(const vq_job *job, const char *domains_root, vq_domain **domain);
    /* Optional (NULL: the job just fails).  Runs instead of run() once the
     * job's workers died max_crashes times (job->cleanup): starts nothing new;
     * keeps what an earlier attempt finished (0: the job succeeds) or removes
     * what one left half-made, as a failed attempt would (VQ_EREFUSED, err
     * saying what was removed: the job fails with the crashes' reason); any
     * other code is transient (retried).  Call fence() before changing a file. */
    int (*clean)(vq_job_ctx *c, vq_error *err);
} vq_job_kind;

/* After a crash of job j: removes the temp files the attempt that died left
 * in its image folder imgfd (vq_meta_remove_temps; the disk's lock is the
 * caller's now), and says so in the log. */
void vq_job_remove_leftovers(const vq_job *j, int imgfd);

/* NULL for an unknown kind.  Borrowed static entry. */
const vq_job_kind *vq_job_kind_find(const char *name);

#endif
