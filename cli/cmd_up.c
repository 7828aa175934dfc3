/* volq up: the embedded Redis of a state folder, volq-scheduler and
 * volq-worker, in the foreground.  Ctrl-C or SIGTERM stops the workers (they
 * finish their running job), then the scheduler, then the Redis this run
 * started.  A lock file keeps a second `volq up` off the same folder. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_int.h"
#include "volq/config.h"
#include "volq/redis.h"

extern char **environ;

typedef struct stack {
    char state[PATH_MAX];
    char url[512];
    char listen[300];
    char bindir[PATH_MAX];
    const char *domains, *workers;
    pid_t sched, worker;
    int redis_started;
    int lockfd;
} stack;

/* Signals: a terminal's Ctrl-C reaches the children too (same process group),
 * so only signals sent to us alone (kill) are forwarded: forwarding a second
 * one would make the workers stop at once instead of finishing their jobs. */
static volatile sig_atomic_t sig_seen, sig_to_forward;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    sig_seen++;
    if (si->si_code != SI_KERNEL) sig_to_forward++;
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_SIGINFO}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The state folder, made if missing, as an absolute path. */
static int state_dir(const char *flag, stack *s)
{
    const char *dir = vq_config_str(flag, "VOLQ_STATE", ".volq");
    if (mkdir(dir, 0700) && errno != EEXIST)
        return vq_cli_fail(VQ_EXIT_FAILED, "cannot make the state folder %s: %s", dir, strerror(errno));
    if (!realpath(dir, s->state))
        return vq_cli_fail(VQ_EXIT_FAILED, "state folder %s: %s", dir, strerror(errno));
    return 0;
}

static int lock_state(stack *s)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/up.lock", s->state);
    s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0)
        return vq_cli_fail(VQ_EXIT_FAILED, "cannot open %s: %s", path, strerror(errno));
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) == 0) return 0;
    return vq_cli_fail(VQ_EXIT_FAILED, "a stack is already running on the state folder %s "
                       "(another `volq up`); stop it first or pass another --state", s->state);
}

/* volq-scheduler and volq-worker are installed next to this binary. */
static int find_bindir(stack *s)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return vq_cli_fail(VQ_EXIT_FAILED, "cannot find this binary: %s", strerror(errno));
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(s->bindir, sizeof s->bindir, "%s", self);
    return 0;
}

/* --listen, else VOLQ_LISTEN, else the HOST:PORT of --api, so that `volq`
 * with the same settings finds the scheduler. */
static void listen_addr(const vq_cli *c, const char *flag, stack *s)
{
    const char *env = getenv("VOLQ_LISTEN");
    if (flag || (env && *env)) {
        snprintf(s->listen, sizeof s->listen, "%s", flag ? flag : env);
        return;
    }
    const char *hp = strncmp(c->api, "http://", 7) == 0 ? c->api + 7 : "127.0.0.1:8085";
    snprintf(s->listen, sizeof s->listen, "%.*s", (int)strcspn(hp, "/"), hp);
    if (!strchr(s->listen, ':') || s->listen[strlen(s->listen) - 1] == ']')
        snprintf(s->listen + strlen(s->listen), sizeof s->listen - strlen(s->listen), ":80");
}

static int spawn_child(const stack *s, const char *name, const char *argv[], pid_t *pid)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", s->bindir, name);
    if (access(path, X_OK))
        return vq_cli_fail(VQ_EXIT_FAILED, "cannot run %s: %s; build it (make) or install volq",
                           path, strerror(errno));
    argv[0] = path;
    /* posix_spawn's argv is char *const[] for history's sake; it is not written. */
    int rc = posix_spawn(pid, path, NULL, NULL, (char *const *)argv, environ);
    if (rc) return vq_cli_fail(VQ_EXIT_FAILED, "cannot start %s: %s", path, strerror(rc));
    return 0;
}

static int start_scheduler(stack *s)
{
    const char *argv[] = {NULL, "--redis", s->url, "--domains", s->domains, "--listen",
                          s->listen, NULL};
    return spawn_child(s, "volq-scheduler", argv, &s->sched);
}

static int start_workers(stack *s)
{
    const char *argv[] = {NULL, "--redis", s->url, "--domains", s->domains,
                          s->workers ? "--processes" : NULL, s->workers, NULL};
    return spawn_child(s, "volq-worker", argv, &s->worker);
}

static const char *name_of(const stack *s, pid_t pid)
{
    return pid == s->sched ? "volq-scheduler" : "volq-worker";
}

static void report_exit(const stack *s, pid_t pid, int st)
{
    if (WIFEXITED(st))
        vq_cli_fail(VQ_EXIT_FAILED, "%s exited with status %d; stopping the stack",
                    name_of(s, pid), WEXITSTATUS(st));
    else
        vq_cli_fail(VQ_EXIT_FAILED, "%s was killed by signal %d; stopping the stack",
                    name_of(s, pid), WTERMSIG(st));
}

/* Until a signal comes or a child dies.  0 after a signal, 1 after a death.
 * A Ctrl-C reaches the children too, and one may exit before our waitpid is
 * interrupted: a child's exit found once a signal was seen is the stop. */
static int wait_for_stop(stack *s)
{
    for (;;) {
        int st;
        if (sig_seen) return 0;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0 && errno == EINTR && sig_seen) return 0;
        if (pid < 0 && errno != EINTR) return 1;
        if (pid <= 0 || (pid != s->sched && pid != s->worker)) continue;
        if (pid == s->sched) s->sched = 0; else s->worker = 0;
        if (sig_seen) return 0;
        report_exit(s, pid, st);
        return 1;
    }
}

/* SIGTERM (unless the terminal already sent SIGINT to the whole group), then
 * waits; each further signal sent to us is passed on (a second one stops a
 * worker at once). */
static void stop_child(pid_t pid, int forward)
{
    int passed = 0;
    if (pid <= 0) return;
    if (forward) {
        kill(pid, SIGTERM);
        passed = sig_to_forward;
    }
    while (waitpid(pid, NULL, 0) < 0) {
        if (errno != EINTR) return;
        if (sig_to_forward > passed) {
            passed = sig_to_forward;
            kill(pid, SIGTERM);
        }
    }
}

/* forward: send SIGTERM even if no signal came to us alone (a child died, or
 * the signal came before the children were there to get it). */
static void stop_all(stack *s, int forward_anyway)
{
    vq_error err = {0};
    int forward = forward_anyway || sig_to_forward > 0;
    fprintf(stderr, "volq up: stopping the workers (each finishes its running job)\n");
    stop_child(s->worker, forward);
    fprintf(stderr, "volq up: stopping the scheduler\n");
    stop_child(s->sched, forward);
    if (!s->redis_started) return;
    fprintf(stderr, "volq up: stopping redis of %s\n", s->state);
    if (vq_redis_embedded_stop(s->state, &err))
        vq_cli_fail(VQ_EXIT_FAILED, "stopping redis: %s", err.text);
}

typedef struct up_args {
    const char *workers, *state, *domains, *listen;
} up_args;

static int prepare(const vq_cli *c, const up_args *a, stack *s)
{
    long n;
    vq_error err = {0};
    int rc;
    if (a->workers && (rc = vq_cli_int(a->workers, "--workers", 1, 256, &n))) return rc;
    if ((rc = state_dir(a->state, s)) || (rc = lock_state(s)) || (rc = find_bindir(s))) return rc;
    s->workers = a->workers;
    s->domains = vq_config_str(a->domains, "VOLQ_DOMAINS", "/rhev/data-center/mnt");
    listen_addr(c, a->listen, s);
    if (vq_redis_embedded_ensure(s->state, s->url, sizeof s->url, &s->redis_started, &err))
        return vq_cli_fail(VQ_EXIT_UNREACHABLE, "cannot start the embedded redis in %s: %s",
                           s->state, err.text);
    return 0;
}

int vq_cmd_up(vq_cli *c, int argc, char **argv)
{
    up_args a = {0};
    stack s = {.lockfd = -1};
    int rc;
    const vq_opt opts[] = {{"workers", &a.workers, NULL}, {"state", &a.state, NULL},
                           {"domains", &a.domains, NULL}, {"listen", &a.listen, NULL},
                           {NULL, NULL, NULL}};
    if (vq_cli_args(vq_cmd_find("up"), argc, argv, opts, NULL, 0, 0, NULL, &rc)) return rc;
    catch_signals();
    if ((rc = prepare(c, &a, &s))) goto out;
    fprintf(stderr, "volq up: redis %s (%s), API http://%s, domains %s; Ctrl-C stops\n", s.url,
            s.redis_started ? "started" : "already running, reused", s.listen, s.domains);
    if ((rc = start_scheduler(&s)) == 0) rc = start_workers(&s);
    int early = sig_seen > 0; /* a Ctrl-C during the start may have missed the children */
    int died = rc ? 1 : wait_for_stop(&s);
    stop_all(&s, died || early);
    if (rc == 0) rc = died ? VQ_EXIT_FAILED : VQ_EXIT_OK;
out:
    if (s.lockfd >= 0) close(s.lockfd);
    return rc;
}
