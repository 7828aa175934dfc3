/* Children with posix_spawn: an argv and an absolute path, never a shell.
 * stdout and stderr go to two pipes read with poll() while we wait, so a
 * chatty child never blocks on a full pipe; a deadline and a tick callback
 * can end it with SIGKILL; waitpid() reaps it every time. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "volq/spawn.h"

extern char **environ;

/* Once both pipes are closed only the exit is left: without a pidfd (kernels
 * before 5.3), look this often. */
#define EXIT_POLL_MS 5
#define SINK_MAX (sizeof ((vq_spawn_result *)0)->out - 1)

static atomic_ulong spawned;

unsigned long vq_spawn_count(void) { return atomic_load(&spawned); }

/* The first SINK_MAX bytes of one pipe; later bytes are read and dropped. */
typedef struct sink {
    int fd; /* -1 once closed */
    char buf[SINK_MAX];
    size_t len;
} sink;

typedef struct child {
    const char *name; /* basename of argv[0], for messages */
    pid_t pid;
    int pidfd;  /* readable once the child has exited (poll), or -1 */
    int done;   /* reaped: pid must not be waited for again */
    int lost;   /* reaped by someone else (ECHILD): status unknown */
    int status;
    sink out, err;
} child;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what is available without blocking; closes the fd at EOF or error. */
static void drain(sink *s)
{
    char tmp[4096];
    while (s->fd >= 0) {
        ssize_t r = read(s->fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) {
            close(s->fd);
            s->fd = -1;
            return;
        }
        size_t keep = SINK_MAX - s->len < (size_t)r ? SINK_MAX - s->len : (size_t)r;
        memcpy(s->buf + s->len, tmp, keep);
        s->len += keep;
    }
}

/* Two pipes, read ends non-blocking, both ends close-on-exec (the child gets
 * its copies through dup2, which clears the flag). */
static int make_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    if (fcntl(p[0], F_SETFL, O_NONBLOCK) != 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    return 0;
}

static int setup_actions(posix_spawn_file_actions_t *fa, const char *cwd, int outw, int errw)
{
    if (posix_spawn_file_actions_init(fa) != 0) return -1;
    if ((cwd && posix_spawn_file_actions_addchdir_np(fa, cwd) != 0) ||
        posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
        posix_spawn_file_actions_adddup2(fa, outw, 1) != 0 ||
        posix_spawn_file_actions_adddup2(fa, errw, 2) != 0) {
        posix_spawn_file_actions_destroy(fa);
        return -1;
    }
    return 0;
}

/* The child starts with no blocked signals and default dispositions, whatever
 * the worker itself ignores or blocks, in a process group of its own: a
 * terminal's Ctrl-C goes to the whole foreground group, and the worker that
 * gets it finishes its running job, which its qemu-img must live to do. */
static int setup_attr(posix_spawnattr_t *at)
{
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawnattr_init(at) != 0) return -1;
    if (posix_spawnattr_setsigmask(at, &none) != 0 ||
        posix_spawnattr_setsigdefault(at, &all) != 0 || posix_spawnattr_setpgroup(at, 0) != 0 ||
        posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                         POSIX_SPAWN_SETPGROUP) != 0) {
        posix_spawnattr_destroy(at);
        return -1;
    }
    return 0;
}

static int start(child *c, const char *const argv[], const char *cwd, vq_error *err)
{
    int po[2], pe[2], rc;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    if (make_pipe(po) != 0)
        return vq_error_set(err, VQ_ESPAWN, "%s: pipe: %s", c->name, strerror(errno));
    if (make_pipe(pe) != 0) {
        rc = vq_error_set(err, VQ_ESPAWN, "%s: pipe: %s", c->name, strerror(errno));
        goto out_close_po;
    }
    if (setup_actions(&fa, cwd, po[1], pe[1]) != 0) {
        rc = vq_error_set(err, VQ_ENOMEM, "%s: out of memory", c->name);
        goto out_close_pe;
    }
    if (setup_attr(&at) != 0) {
        rc = vq_error_set(err, VQ_ENOMEM, "%s: out of memory", c->name);
        goto out_destroy_fa;
    }
    rc = posix_spawn(&c->pid, argv[0], &fa, &at, (char *const *)argv, environ);
    if (rc != 0)
        rc = vq_error_set(err, VQ_ESPAWN, "cannot run %s%s%s: %s", argv[0], cwd ? " in " : "",
                          cwd ? cwd : "", strerror(rc));
    else
        atomic_fetch_add(&spawned, 1);
    /* The exit wakes poll() at once, instead of the next EXIT_POLL_MS tick:
     * amends of small volumes take a few ms each, so the tick cost up to half. */
    if (rc == 0) c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
    posix_spawnattr_destroy(&at);
out_destroy_fa:
    posix_spawn_file_actions_destroy(&fa);
out_close_pe:
    close(pe[1]);
    if (rc != 0) close(pe[0]); else c->err.fd = pe[0];
out_close_po:
    close(po[1]);
    if (rc != 0) close(po[0]); else c->out.fd = po[0];
    return rc;
}

/* 1 once the child is reaped (status filled). */
static int reaped(child *c, int block)
{
    while (!c->done) {
        pid_t r = waitpid(c->pid, &c->status, block ? 0 : WNOHANG);
        if (r < 0 && errno == EINTR) continue;
        if (r == c->pid) c->done = 1;
        if (r < 0) c->done = c->lost = 1; /* ECHILD: SIGCHLD ignored, or another waitpid(-1) */
        if (!block || c->done) break;
    }
    return c->done;
}

/* Never signals a reaped pid: it may belong to another process by now. */
static void kill_and_reap(child *c)
{
    if (c->done) return;
    kill(c->pid, SIGKILL);
    reaped(c, 1);
}

/* Waits up to ms for output or the exit (without a pidfd: sleeps at most
 * EXIT_POLL_MS once both pipes are closed). */
static void wait_some(child *c, long long ms)
{
    struct pollfd p[3];
    int n = 0;
    if (c->out.fd >= 0) p[n++] = (struct pollfd){.fd = c->out.fd, .events = POLLIN};
    if (c->err.fd >= 0) p[n++] = (struct pollfd){.fd = c->err.fd, .events = POLLIN};
    if (n == 0 && c->pidfd < 0 && (ms < 0 || ms > EXIT_POLL_MS)) ms = EXIT_POLL_MS;
    if (c->pidfd >= 0) p[n++] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
    if (ms > 1000000) ms = 1000000;
    poll(p, (nfds_t)n, (int)ms);
    drain(&c->out);
    drain(&c->err);
}

typedef struct limits {
    int timeout_ms;
    vq_spawn_tick tick;
    void *arg;
    int tick_ms;
} limits;

/* Runs until the child exits (0), times out (VQ_ETIMEDOUT) or the tick asks
 * to stop (its value).  The child is reaped in every case. */
static int supervise(child *c, const limits *lim)
{
    /* The first tick comes at once: a caller may do its own work meanwhile
     * (the amend job rewrites the last volume's .meta while qemu-img runs). */
    long long t = now_ms(), deadline = t + lim->timeout_ms, next_tick = t;
    int ticking = lim->tick && lim->tick_ms > 0;
    while (!reaped(c, 0)) {
        long long wait = -1;
        if (lim->timeout_ms > 0) wait = deadline - t;
        if (ticking && (wait < 0 || next_tick - t < wait)) wait = next_tick - t;
        wait_some(c, wait < 0 ? -1 : wait);
        t = now_ms();
        if (lim->timeout_ms > 0 && t >= deadline && !reaped(c, 0)) {
            kill_and_reap(c);
            return VQ_ETIMEDOUT;
        }
        if (ticking && t >= next_tick) {
            int r = lim->tick(lim->arg);
            if (r != 0) { /* returned even when the child ended meanwhile (a fence said no) */
                if (!reaped(c, 0)) kill_and_reap(c);
                return r;
            }
            next_tick = t + lim->tick_ms;
        }
    }
    return 0;
}

/* stderr first (qemu-img's errors), then stdout; NULs shown as spaces. */
static void collect(child *c, vq_spawn_result *res)
{
    drain(&c->out);
    drain(&c->err);
    size_t n = c->err.len, m = c->out.len < SINK_MAX - n ? c->out.len : SINK_MAX - n;
    memcpy(res->out, c->err.buf, n);
    memcpy(res->out + n, c->out.buf, m);
    res->out[n + m] = '\0';
    for (size_t i = 0; i < n + m; i++)
        if (res->out[i] == '\0') res->out[i] = ' ';
    if (c->out.fd >= 0) close(c->out.fd);
    if (c->err.fd >= 0) close(c->err.fd);
    if (c->pidfd >= 0) close(c->pidfd);
}

/* The first non-empty line of s into line (size bytes). */
static void first_line(const char *s, char *line, size_t size)
{
    while (*s == '\n' || *s == '\r' || *s == ' ') s++;
    size_t n = strcspn(s, "\r\n");
    if (n >= size) n = size - 1;
    memcpy(line, s, n);
    line[n] = '\0';
}

static int report(const child *c, int rc, int timeout_ms, vq_spawn_result *res, vq_error *err)
{
    char line[200];
    res->exited = !rc && !c->lost && WIFEXITED(c->status);
    res->code = res->exited ? WEXITSTATUS(c->status) : 0;
    res->signaled = rc == VQ_ETIMEDOUT || (!c->lost && WIFSIGNALED(c->status));
    res->sig = rc == VQ_ETIMEDOUT ? SIGKILL : res->signaled ? WTERMSIG(c->status) : 0;
    res->timed_out = rc == VQ_ETIMEDOUT;
    if (rc == VQ_ETIMEDOUT)
        return vq_error_set(err, rc, "%s timed out after %d ms", c->name, timeout_ms);
    if (rc != 0) return rc < 0 ? vq_error_set(err, rc, "%s stopped by its caller", c->name) : rc;
    if (c->lost)
        return vq_error_set(err, VQ_ESPAWN, "%s: exit status lost (reaped elsewhere)", c->name);
    if (res->signaled)
        return vq_error_set(err, VQ_ESPAWN, "%s killed by signal %d", c->name, res->sig);
    if (res->code == 0) return 0;
    first_line(res->out, line, sizeof line);
    return vq_error_set(err, VQ_ESPAWN, "%s exited %d%s%s", c->name, res->code,
                        line[0] ? ": " : "", line);
}

int vq_spawn_run(const char *const argv[], const char *cwd, int timeout_ms, vq_spawn_tick tick,
                 void *arg, int tick_ms, vq_spawn_result *res, vq_error *err)
{
    vq_spawn_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (!argv || !argv[0] || argv[0][0] != '/')
        return vq_error_set(err, VQ_EINVAL, "spawn: the program must be an absolute path");
    child c = {.out.fd = -1, .err.fd = -1, .pidfd = -1};
    const char *slash = strrchr(argv[0], '/');
    c.name = slash[1] ? slash + 1 : argv[0];
    int rc = start(&c, argv, cwd, err);
    if (rc != 0) return rc;
    limits lim = {timeout_ms, tick, arg, tick_ms};
    rc = supervise(&c, &lim);
    collect(&c, res);
    return report(&c, rc, timeout_ms, res, err);
}
