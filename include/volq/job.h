/* A job as stored in Redis, and its JSON shape (SPEC §4). */
#ifndef VOLQ_JOB_H
#define VOLQ_JOB_H
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdint.h>

#include "volq/error.h"
#include "volq/meta.h"
#include "volq/uuid.h"

typedef enum vq_job_state {
    VQ_JOB_QUEUED = 0,
    VQ_JOB_RUNNING,
    VQ_JOB_RETRYING,
    VQ_JOB_SUCCEEDED,
    VQ_JOB_FAILED,
    VQ_JOB_CANCELLED,
    VQ_JOB_NSTATES
} vq_job_state;

#define VQ_KIND_MAX 16
#define VQ_WORKER_ID_MAX 128 /* "host:pid" */

typedef struct vq_job {
    char id[VQ_UUID_SIZE];
    char kind[VQ_KIND_MAX];          /* "amend", "create-volume" */
    vq_job_state state;
    char domain_id[VQ_UUID_SIZE];
    char disk_id[VQ_UUID_SIZE];
    char volume_id[VQ_UUID_SIZE];    /* create-volume: chosen at acceptance; "" for amend */
    char alias[VQ_ALIAS_MAX + 1];    /* the disk's alias at acceptance (for the events) */
    json_t *params;                  /* kind-specific parameters (owned; object or NULL) */
    int attempts, max_attempts;
    int crashes;                     /* attempts ended by a dead worker (not error retries) */
    int cleanup;                     /* clean-up tries (1-3) once crashes reached
                                        max_crashes: the attempt only cleans up
                                        (vq_job_kind.clean); 0 otherwise */
    int done, total;                 /* progress */
    char *reason;                    /* why it failed, NULL otherwise (owned) */
    char *plan;                      /* amend: "VOL:GEN ..." of the volumes an attempt set
                                        out to amend, GEN as it was before (owned; NULL
                                        when none): a later attempt bumps the GEN of one
                                        found amended with it unchanged (jobs/amend.c) */
    json_t *errors;                  /* array of one string per failed attempt (owned) */
    int64_t created, updated, next_attempt; /* ms since the epoch; next_attempt 0 when none */
    char worker[VQ_WORKER_ID_MAX];   /* current or last attempt's host:pid, "" when none */
    uint64_t token;                  /* fencing token of the current attempt */
    int64_t run_ms;                  /* worker side, not stored: how long this attempt ran,
                                        sent with its end for /metrics (0: not measured) */
} vq_job;

/* "queued", "running", ...; NULL for an out-of-range state. */
const char *vq_job_state_name(vq_job_state s);
/* -1 for an unknown name. */
int vq_job_state_parse(const char *name);

/* Fills a new job from an HGETALL reply (a flat array of field, value).
 * Returns a new job; free with vq_job_free().  VQ_EINVAL on a malformed record.
 * The id comes from an "id" field when the array has one. */
int vq_job_from_reply(const redisReply *r, vq_job **out, vq_error *err);

/* Same for a record that does not hold its own id (the queue's job hashes do
 * not, to keep each queued job small; docs/queue.md lists the short field
 * names): id is copied into the job.  Returns a new job; free with vq_job_free(). */
int vq_job_from_fields(const char *id, const redisReply *r, vq_job **out, vq_error *err);

/* The job object of SPEC §4 (next_attempt only while retrying).  New reference. */
json_t *vq_job_json(const vq_job *j);

/* RFC 3339 UTC with milliseconds ("2026-11-25T09:35:26.123Z") of ms since the epoch. */
void vq_time_format(int64_t ms, char out[32]);
/* Parses RFC 3339 (Z or +hh:mm) into ms; VQ_EINVAL when malformed. */
int vq_time_parse(const char *s, int64_t *ms);
int64_t vq_now_ms(void);

void vq_job_free(vq_job *j);

#endif
