/* Running qemu-img: posix_spawn with an argv, never a shell. */
#ifndef VOLQ_SPAWN_H
#define VOLQ_SPAWN_H
#include <sys/types.h>

#include "volq/error.h"

typedef struct vq_spawn_result {
    int exited;     /* 1 when the child exited; code holds its status */
    int code;
    int signaled;   /* 1 when a signal ended it; sig holds it */
    int sig;
    int timed_out;  /* 1 when we killed it after timeout_ms */
    char out[1024]; /* first bytes of stderr then stdout, NUL-terminated */
} vq_spawn_result;

/* Called right after the child starts, then about every tick_ms while it
 * runs; a non-zero return kills the child (SIGKILL) and vq_spawn_run()
 * returns that value. */
typedef int (*vq_spawn_tick)(void *arg);

/* Runs argv[0] (an absolute path) with argv in folder cwd (or NULL), stdin from
 * /dev/null, stdout and stderr captured into res->out.  Kills the child after
 * timeout_ms (0: no limit).  Returns 0 when it ran and exited 0; VQ_ESPAWN with
 * "qemu-img exited 1: <first line of its output>" or "... killed by signal 9";
 * VQ_ETIMEDOUT when it was killed for the time limit.  res may be NULL. */
int vq_spawn_run(const char *const argv[], const char *cwd, int timeout_ms, vq_spawn_tick tick,
                 void *arg, int tick_ms, vq_spawn_result *res, vq_error *err);

/* Counts every child spawned by this process (for /metrics and tests). */
unsigned long vq_spawn_count(void);

#endif
