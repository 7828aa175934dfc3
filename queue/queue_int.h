/* Shared inside queue/ only: key names, the script calling convention, and a
 * small growable string vector for script keys and arguments. */
#ifndef VOLQ_QUEUE_INT_H
#define VOLQ_QUEUE_INT_H
#include <stddef.h>

#include "volq/queue.h"

/* Every key shares the hash tag {volq}: one cluster slot, so scripts may
 * touch any of them (docs/queue.md has the table). */
#define VQ_K_QUEUE "{volq}:q"
#define VQ_K_RUNNING "{volq}:running"
#define VQ_K_DUE "{volq}:due"
#define VQ_K_LOCKS "{volq}:locks"
/* The ended jobs of each end state, scored by end time: together, every
 * ended job (retention, jobs_per_min, listing and counts per state). */
#define VQ_K_ST_SUCCEEDED "{volq}:st:succeeded"
#define VQ_K_ST_FAILED "{volq}:st:failed"
#define VQ_K_ST_CANCELLED "{volq}:st:cancelled"
#define VQ_K_EVENTS "{volq}:events"
#define VQ_K_TOKEN "{volq}:token"
#define VQ_K_WORKERS "{volq}:workers"
#define VQ_K_WJOB "{volq}:wjob"
#define VQ_K_JOB "{volq}:job:"   /* + job id */
#define VQ_K_PROC "{volq}:proc:" /* + worker id: its in-flight list */
#define VQ_K_IDEM "{volq}:idem:" /* + idempotency key */
#define VQ_K_STATS "{volq}:stats" /* counters for /metrics */

/* "{volq}:proc:" + a 127-byte worker id, or "{volq}:idem:" + a 200-byte key. */
#define VQ_KEY_MAX 256
#define VQ_IDEM_KEY_MAX 200
/* A reason is one line; 512 bytes keep qemu-img's message readable. */
#define VQ_REASON_MAX 512
/* Ids per script call in housekeeping and repair: keeps each call short. */
#define VQ_BATCH 500

/* A growable vector of owned strings.  An allocation failure sets oom and
 * later adds do nothing, so callers check once at the end. */
typedef struct vq_strv {
    char **v;
    size_t *len;
    size_t n, cap;
    int oom;
} vq_strv;

void vq_strv_add_(vq_strv *s, const char *str);
void vq_strv_addn_(vq_strv *s, const char *str, size_t len);
void vq_strv_addf_(vq_strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vq_strv_free_(vq_strv *s);

/* Appends text cut at maxlen bytes as one line of valid UTF-8: control
 * characters become spaces and bytes that are not UTF-8 become '?', so that
 * the JSON the scripts build from it (errors, events) always parses. */
void vq_strv_add_text_(vq_strv *s, const char *text, size_t maxlen);

/* prefix + id into out; VQ_EINVAL when it does not fit. */
int vq_queue_key_(char *out, size_t outsz, const char *prefix, const char *id, vq_error *err);

/* Runs queue/lua/name with the common keys and arguments (lib.lua) in front
 * of keys/args.  Returns the reply (freeReplyObject) or NULL with err set. */
redisReply *vq_queue_run_(vq_queue *q, const char *name, const vq_strv *keys,
                          const vq_strv *args, vq_error *err);
/* The same, appended to the pipeline (read with vq_redis_get_reply). */
int vq_queue_append_(vq_queue *q, const char *name, const vq_strv *keys, const vq_strv *args,
                     vq_error *err);

/* A worker id is 1..127 printable bytes without spaces. */
int vq_queue_worker_valid_(const char *worker, vq_error *err);
/* "{volq}:proc:<worker>" into proc, the worker id checked first. */
int vq_queue_proc_key_(const char *worker, char proc[VQ_KEY_MAX], vq_error *err);
/* start.lua on an id moved into proc, appended to the pipeline; its answer:
 * *out the started job (new), or NULL when it was skipped (cancelled, gone). */
int vq_queue_append_start_(vq_queue *q, const char *worker, const char *proc, const char *id,
                           vq_error *err);
int vq_queue_read_start_(vq_queue *q, const char *id, vq_job **out, vq_error *err);

/* Element i of an array reply as a string, "" when absent or not a string. */
const char *vq_reply_str_(const redisReply *r, size_t i);

/* The job of a script reply {status, field, value, ...}.  Returns a new job. */
int vq_queue_job_of_reply_(const char *id, const redisReply *r, vq_job **out, vq_error *err);

/* HGETALL of many jobs in one pipeline: out[i] gets a new job, or NULL when
 * ids[i] has no record.  Free each with vq_job_free(). */
int vq_queue_get_many_(vq_queue *q, char **ids, size_t n, vq_job **out, vq_error *err);

/* What requeue.lua did: jobs put back, jobs failed at max_crashes, worker
 * registrations dropped. */
typedef struct vq_requeue_count {
    size_t requeued, failed, dropped;
} vq_requeue_count;

/* Runs requeue.lua (see there): mode "worker" or "lease", jobs ids[i] of
 * workers[i], then drops the registrations of drop[0..ndrop) when dead and
 * idle.  Adds to *count. */
int vq_queue_requeue_(vq_queue *q, const char *mode, const char *cutoff, char **ids,
                      char **workers, size_t n, char **drop, size_t ndrop,
                      vq_requeue_count *count, vq_error *err);

/* The server's clock in ms (TIME): every host compares leases and due times
 * against the same clock. */
int vq_queue_redis_now_(vq_queue *q, int64_t *now, vq_error *err);

/* Sorts a vector of strings and drops duplicates. */
void vq_strv_sort_unique_(vq_strv *s);
/* 1 when a sorted vector holds id. */
int vq_strv_has_(const vq_strv *sorted, const char *id);

#endif
