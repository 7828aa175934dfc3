/* Shared inside workers/: the pool (parent) and the worker loop (children). */
#ifndef VOLQ_WORKER_INT_H
#define VOLQ_WORKER_INT_H
#include <signal.h>

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

/* "host:pid" of this process into out. */
void vq_worker_id_(char *out, size_t outsz, pid_t pid);

#endif
