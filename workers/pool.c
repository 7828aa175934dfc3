/* The worker parent: keeps N children alive.  When one dies its job goes back
 * to the queue at once (the lease is only for hosts that vanish whole). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "volq/fsutil.h"
#include "volq/log.h"
#include "worker_int.h"

/* A child that dies sooner than this after its start counts as crash-looping. */
#define FAST_DEATH_MS 1000
#define RESTART_DELAY_MAX_MS 5000

typedef struct slot {
    pid_t pid;
    int64_t started;
    int delay_ms;  /* restart back-off after fast deaths */
} slot;

static volatile sig_atomic_t terms;  /* SIGTERM/SIGINT received */

static void on_term(int sig)
{
    (void)sig;
    terms++;
}

static void on_chld(int sig)
{
    (void)sig;
}

void vq_worker_id_(char *out, size_t outsz, pid_t pid)
{
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    if (snprintf(out, outsz, "%s:%d", host, (int)pid) >= (int)outsz) out[outsz - 1] = '\0';
}

static pid_t spawn_child(const vq_worker_opts *o)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa = {.sa_handler = SIG_DFL};
        sigaction(SIGCHLD, &sa, NULL);
        _exit(vq_worker_child_run_(o));
    }
    if (pid < 0) vq_log(VQ_LOG_WARN, "worker pool: fork failed: %s", strerror(errno));
    return pid;
}

static int is_slot(const slot *slots, int n, pid_t pid)
{
    for (int i = 0; i < n; i++)
        if (slots[i].pid == pid) return 1;
    return 0;
}

/* Whether pid runs a qemu-img create (its argv holds "create"; an amend's
 * never does: ids are UUIDs). */
static int runs_create(pid_t pid)
{
    char path[64], *buf = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    if (vq_fs_read(AT_FDCWD, path, 4096, &buf, &len, NULL)) return 0;
    int found = 0;
    for (const char *a = buf; !found && a < buf + len; a += strlen(a) + 1)
        found = strcmp(a, "create") == 0;
    free(buf);
    return found;
}

/* The pool is its children's subreaper: a dead worker's qemu-img becomes its
 * child.  A qemu-img create is killed (and reaped) before the job goes back:
 * left alone, one slow to start would make its file after the next attempt
 * made the volume, over it.  An amend is left to finish (the next attempt
 * waits for its lock); reap() collects it when it ends. */
static void stop_orphan_creates(const slot *slots, int n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    FILE *f = fopen(path, "re");
    if (!f) return;
    int pid;
    while (fscanf(f, "%d", &pid) == 1) {
        if (is_slot(slots, n, pid) || !runs_create(pid)) continue;
        if (kill(pid, SIGKILL) == 0 && waitpid(pid, NULL, 0) == pid)
            vq_log(VQ_LOG_NOTICE, "worker pool: stopped qemu-img create %d of a dead worker", pid);
    }
    fclose(f);
}

/* Puts the dead child's in-flight job back, with its own short-lived connection
 * so that a Redis outage in the parent never blocks reaping. */
static void requeue_dead(const vq_worker_opts *o, pid_t pid)
{
    char id[VQ_WORKER_ID_MAX];
    vq_worker_id_(id, sizeof id, pid);
    vq_error err = {0};
    vq_redis *r = NULL;
    vq_queue *q = NULL;
    vq_queue_config cfg;
    vq_queue_config_default(&cfg);
    int n = 0;
    if (vq_redis_connect(o->redis_url, 2000, &r, &err) || vq_queue_new(r, &cfg, &q, &err) ||
        vq_queue_requeue_worker(q, id, &n, &err)) {
        vq_log(VQ_LOG_WARN, "worker %s died; its job is left to the lease: %s", id, err.text);
    } else if (n > 0) {
        vq_log(VQ_LOG_NOTICE, "worker %s died; %d job(s) put back in the queue", id, n);
    }
    vq_queue_free(q);
}

static void reap(const vq_worker_opts *o, slot *slots, int n)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i < n; i++) {
            if (slots[i].pid != pid) continue;
            slots[i].pid = 0;
            int clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!clean) {
                if (WIFSIGNALED(st))
                    vq_log(VQ_LOG_WARN, "worker process %d killed by signal %d", (int)pid,
                           WTERMSIG(st));
                else
                    vq_log(VQ_LOG_WARN, "worker process %d exited %d", (int)pid, WEXITSTATUS(st));
                stop_orphan_creates(slots, n);
                requeue_dead(o, pid);
            }
            int fast = vq_now_ms() - slots[i].started < FAST_DEATH_MS;
            slots[i].delay_ms = fast ? (slots[i].delay_ms ? slots[i].delay_ms * 2 : 100) : 0;
            if (slots[i].delay_ms > RESTART_DELAY_MAX_MS) slots[i].delay_ms = RESTART_DELAY_MAX_MS;
            slots[i].started = vq_now_ms(); /* the restart waits delay_ms from now */
        }
    }
}

static void restart_missing(const vq_worker_opts *o, slot *slots, int n)
{
    int64_t now = vq_now_ms();
    for (int i = 0; i < n; i++) {
        if (slots[i].pid || now - slots[i].started < slots[i].delay_ms) continue;
        slots[i].pid = spawn_child(o);
        slots[i].started = now;
    }
}

static void signal_all(slot *slots, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (slots[i].pid > 0) kill(slots[i].pid, sig);
}

static int alive(const slot *slots, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += slots[i].pid > 0;
    return k;
}

/* Sleeps up to ms, waking early on a signal (SIGCHLD or SIGTERM). */
static void nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int vq_worker_pool_run_(const vq_worker_opts *o)
{
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* A handler (not SIG_IGN) so that a child's death interrupts nap() at once. */
    struct sigaction sc = {.sa_handler = on_chld};
    sigaction(SIGCHLD, &sc, NULL);

    /* A dead worker's qemu-img comes to us (stop_orphan_creates, reap). */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        vq_log(VQ_LOG_WARN, "worker pool: cannot adopt orphaned qemu-img: %s", strerror(errno));
    slot *slots = calloc((size_t)o->processes, sizeof *slots);
    if (!slots) return 1;
    vq_log(VQ_LOG_INFO, "worker pool: starting %d process%s", o->processes,
           o->processes == 1 ? "" : "es");
    int forwarded = 0, killed = 0;
    for (;;) {
        reap(o, slots, o->processes);
        if (terms && !forwarded) {
            vq_log(VQ_LOG_NOTICE, "worker pool: stopping; running jobs finish first");
            signal_all(slots, o->processes, SIGTERM);
            forwarded = 1;
        }
        if (terms > 1 && !killed) {
            killed = 1;
            vq_log(VQ_LOG_NOTICE, "worker pool: stopping now; running jobs will run again");
            signal_all(slots, o->processes, SIGKILL);
        }
        if (forwarded && !alive(slots, o->processes)) break;
        if (!forwarded) restart_missing(o, slots, o->processes);
        nap(50);
    }
    free(slots);
    vq_log(VQ_LOG_INFO, "worker pool: stopped");
    return 0;
}
