/* Helpers shared by the benchmarks (the bench folder): clocks, a redis-server with a
 * chosen fsync policy, the real daemons, RSS, cheap sample domains, and the
 * result lines every benchmark prints:
 *
 *   name: value unit
 *   target: what ... PASS|MISS        (the last line)
 *
 * Benchmarks only: they fork, exec and use a shell where that is simplest. */
#ifndef VOLQ_TEST_BENCH_H
#define VOLQ_TEST_BENCH_H
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "volq/uuid.h"

/* Microseconds of CLOCK_MONOTONIC. */
int64_t b_now_us(void);
void b_sleep_ms(int ms);

/* The bench's scratch folder on the real disk: $VOLQ_BENCH_DIR, else
 * BUILD/bench-work (next to the binary); made if missing.  Borrowed. */
const char *b_work_dir(void);
/* A tmpfs folder (/dev/shm/volq-bench-PID), made if missing.  Borrowed. */
const char *b_tmpfs_dir(void);
/* mkdir -p of base/name into out; 0 or -1. */
int b_subdir(const char *base, const char *name, char *out, size_t outsz);
/* rm -rf path (never "/" or ""). */
void b_rmrf(const char *path);

/* ---- redis-server ------------------------------------------------------ */

typedef struct b_redis {
    pid_t pid;
    char dir[200];
    char sock[232];
    char url[256];
} b_redis;

/* Starts redis-server in dir (made if missing) with appendonly yes and the
 * given appendfsync ("always" or "everysec"), a unix socket only; waits for PING. */
int b_redis_start(b_redis *r, const char *dir, const char *appendfsync);
void b_redis_stop(b_redis *r);
redisContext *b_redis_connect(const b_redis *r);
/* An integer reply (or a string holding one) of a command; -1 on error. */
long long b_redis_int(redisContext *c, const char *fmt, ...);
/* A numeric field of INFO (e.g. "used_memory"); -1 when missing. */
long long b_redis_info(redisContext *c, const char *section, const char *field);

/* ---- processes ----------------------------------------------------------- */

/* bin/name (VOLQ_BIN_DIR) with argv (argv[0] is filled in), extra environment
 * "K=V" entries (NULL-terminated, may be NULL), stdout and stderr to log. */
pid_t b_spawn_volq(const char *name, const char **argv, const char *const *env, const char *log);
/* Any program by absolute path, stdout/stderr to log (NULL: /dev/null). */
pid_t b_spawn(const char *path, const char **argv, const char *const *env, const char *log);
/* sig, then waits up to timeout_ms (then SIGKILL); the wait status or -1. */
int b_stop(pid_t pid, int sig, int timeout_ms);
/* Waits for pid; its exit status (128+signal) or -1. */
int b_wait(pid_t pid);
/* Runs argv to its end; its exit status (128+signal) or -1. */
int b_run(const char *path, const char **argv, const char *log);
/* Resident set size in KiB (VmRSS), -1 when the process is gone. */
long b_rss_kib(pid_t pid);
/* CPU time (user + system) of a process so far, in microseconds; -1 when gone. */
int64_t b_cpu_us(pid_t pid);
/* The same for the children it has waited for (qemu-img of a worker). */
int64_t b_cpu_children_us(pid_t pid);
/* The children of parent (at most max): their count. */
int b_children(pid_t parent, pid_t *out, int max);

/* ---- the stack ----------------------------------------------------------- */

/* volq-scheduler on a free port; waits for /healthz.  api gets "http://127.0.0.1:PORT". */
pid_t b_start_scheduler(const char *redis_url, const char *domains, const char *log,
                        const char *const *env, char *api, size_t apisz, int *port);
/* volq-worker --processes n; waits until n workers are registered in Redis. */
pid_t b_start_workers(const char *redis_url, const char *domains, int n, const char *log,
                      const char *const *env, redisContext *c);

/* One HTTP GET to 127.0.0.1:port; the status (0 on failure), body into a new
 * string in *body (may be NULL). */
int b_http_get(int port, const char *path, char **body, size_t *len);

/* ---- sample domains ------------------------------------------------------ */

/* A V4 domain under root made by scripts/mkdomain.sh with ARGS (a string of
 * options); the new id into sd.  0 or -1. */
int b_mkdomain(const char *root, const char *args, char sd[VQ_UUID_SIZE]);
/* A V4 domain of n cheap disks: each one compat 1.1 qcow2 volume (512-byte
 * clusters, a few KiB, copied from one prototype) with its .meta and .lease.
 * ids (may be NULL) gets a new array of the image ids (free()). */
int b_cheap_domain(const char *root, size_t n, char sd[VQ_UUID_SIZE],
                   char (**ids)[VQ_UUID_SIZE]);

/* ---- results ------------------------------------------------------------- */

void b_result(const char *name, double value, const char *unit);
/* Prints "target: text PASS|MISS"; returns pass. */
int b_target(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The p-th percentile (0..100) of v[0..n) (sorted in place). */
double b_percentile(double *v, size_t n, double p);
/* One line "# ..." to stderr: context that is not a figure. */
void b_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
