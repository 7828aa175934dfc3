/* The embedded redis-server of a state folder (SPEC §5: no Redis given). */
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
#include <time.h>
#include <unistd.h>

#include "volq/redis.h"

extern char **environ;

#define DEFAULT_STATE ".volq"
#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 15000
#define SUN_PATH_MAX 108 /* sizeof sockaddr_un.sun_path, NUL included */

/* Absolute paths of the files in a state folder. */
typedef struct paths {
    char dir[PATH_MAX];
    char sock[SUN_PATH_MAX];
    char conf[PATH_MAX + 16];
    char pid[PATH_MAX + 16];
    char lock[PATH_MAX + 16];
} paths;

static int make_paths(const char *state_dir, paths *p, vq_error *err)
{
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
        return vq_error_set(err, VQ_EIO, "state folder %s: %s", state_dir, strerror(errno));
    if (!realpath(state_dir, p->dir))
        return vq_error_set(err, VQ_EIO, "state folder %s: %s", state_dir, strerror(errno));
    if (snprintf(p->sock, sizeof p->sock, "%s/redis.sock", p->dir) >= (int)sizeof p->sock)
        return vq_error_set(err, VQ_EINVAL,
                            "state folder %s: path too long for a unix socket (max %d)", p->dir,
                            SUN_PATH_MAX - 12);
    /* The socket path fit in 108 bytes, so these fit in PATH_MAX + 16. */
    if (snprintf(p->conf, sizeof p->conf, "%s/redis.conf", p->dir) >= (int)sizeof p->conf ||
        snprintf(p->pid, sizeof p->pid, "%s/redis.pid", p->dir) >= (int)sizeof p->pid ||
        snprintf(p->lock, sizeof p->lock, "%s/redis.lock", p->dir) >= (int)sizeof p->lock)
        return vq_error_set(err, VQ_EINVAL, "state folder %s: path too long", p->dir);
    return 0;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* 1 when a server answers PING on the socket. */
static int answers(const char *sock)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return ok;
}

/* Written to a temp file and renamed, so a reader never sees half a config. */
static int write_conf(const paths *p, vq_error *err)
{
    char tmp[PATH_MAX + 32];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", p->conf) >= (int)sizeof tmp)
        return vq_error_set(err, VQ_EINVAL, "state folder %s: path too long", p->dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return vq_error_set(err, VQ_EIO, "%s: %s", tmp, strerror(errno));
    fprintf(f,
            "# Written by volq for its embedded Redis; rewritten at each start.\n"
            "daemonize yes\nport 0\nunixsocket %s\nunixsocketperm 700\n"
            "appendonly yes\nappendfsync always\nsave \"\"\n"
            "dir %s\npidfile %s\nlogfile %s/redis.log\n",
            p->sock, p->dir, p->pid, p->dir);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        fclose(f);
        return vq_error_set(err, VQ_EIO, "%s: %s", tmp, strerror(e));
    }
    if (fclose(f) != 0 || rename(tmp, p->conf) != 0)
        return vq_error_set(err, VQ_EIO, "%s: %s", p->conf, strerror(errno));
    return 0;
}

/* /usr/bin/redis-server, else the first absolute PATH entry that has it. */
static int find_server(char *out, size_t outsz)
{
    if (access("/usr/bin/redis-server", X_OK) == 0) {
        snprintf(out, outsz, "/usr/bin/redis-server");
        return 0;
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len > 0 && path[0] == '/' &&
            snprintf(out, outsz, "%.*s/redis-server", (int)len, path) < (int)outsz &&
            access(out, X_OK) == 0)
            return 0;
        path = colon ? colon + 1 : NULL;
    }
    return -1;
}

/* Runs redis-server with the config; it daemonizes, so its first process exits at once. */
static int spawn_server(const paths *p, vq_error *err)
{
    char bin[PATH_MAX];
    if (find_server(bin, sizeof bin) != 0)
        return vq_error_set(err, VQ_ESPAWN, "redis-server not found in /usr/bin or PATH");
    char *argv[] = {bin, (char *)p->conf, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, bin, NULL, NULL, argv, environ);
    if (rc != 0) return vq_error_set(err, VQ_ESPAWN, "%s: %s", bin, strerror(rc));
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(st))
        return vq_error_set(err, VQ_ESPAWN, "redis-server killed by signal %d", WTERMSIG(st));
    if (WEXITSTATUS(st) != 0)
        return vq_error_set(err, VQ_ESPAWN, "redis-server exited %d (see %s/redis.log)",
                            WEXITSTATUS(st), p->dir);
    return 0;
}

static int wait_answers(const paths *p, vq_error *err)
{
    long long deadline = mono_ms() + START_TIMEOUT_MS;
    while (!answers(p->sock)) {
        if (mono_ms() > deadline)
            return vq_error_set(err, VQ_ETIMEDOUT, "redis-server in %s did not answer within %d ms "
                                "(see %s/redis.log)", p->dir, START_TIMEOUT_MS, p->dir);
        nap_ms(20);
    }
    return 0;
}

int vq_redis_embedded_ensure(const char *state_dir, char *url, size_t urlsz, int *started,
                             vq_error *err)
{
    paths p;
    if (started) *started = 0;
    int rc = make_paths(state_dir, &p, err);
    if (rc) return rc;
    if (snprintf(url, urlsz, "unix://%s", p.sock) >= (int)urlsz)
        return vq_error_set(err, VQ_EINVAL, "redis URL buffer too small");
    /* Two programs starting at once must not start two servers on one AOF. */
    int fd = open(p.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        rc = vq_error_set(err, VQ_EIO, "%s: %s", p.lock, strerror(errno));
        goto out_close;
    }
    if (answers(p.sock)) goto out_close;
    if ((rc = write_conf(&p, err)) || (rc = spawn_server(&p, err)) || (rc = wait_answers(&p, err)))
        goto out_close;
    if (started) *started = 1;
out_close:
    if (fd >= 0) close(fd);
    return rc;
}

/* The pid in STATE/redis.pid when that process is a redis-server, else 0. */
static pid_t server_pid(const paths *p)
{
    FILE *f = fopen(p->pid, "r");
    long pid = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld", &pid) != 1) pid = 0;
    fclose(f);
    if (pid <= 1) return 0;
    char comm_path[64], comm[64] = "";
    snprintf(comm_path, sizeof comm_path, "/proc/%ld/comm", pid);
    FILE *c = fopen(comm_path, "r");
    if (!c) return 0;
    if (!fgets(comm, sizeof comm, c)) comm[0] = '\0';
    fclose(c);
    /* A stale pidfile may name a reused pid: never signal anything else. */
    return strncmp(comm, "redis-server", 12) == 0 ? (pid_t)pid : 0;
}

static void send_shutdown(const paths *p)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectUnixWithTimeout(p->sock, tv);
    if (c && !c->err) {
        /* The server closes the connection instead of answering. */
        redisReply *rep = redisCommand(c, "SHUTDOWN");
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
}

int vq_redis_embedded_stop(const char *state_dir, vq_error *err)
{
    paths p;
    int rc = make_paths(state_dir, &p, err);
    if (rc) return rc;
    pid_t pid = server_pid(&p);
    if (answers(p.sock))
        send_shutdown(&p);
    else if (pid > 0)
        kill(pid, SIGTERM);
    if (pid <= 0) return 0;
    long long deadline = mono_ms() + STOP_TIMEOUT_MS;
    while (kill(pid, 0) == 0) {
        if (mono_ms() > deadline)
            return vq_error_set(err, VQ_ETIMEDOUT, "redis-server %ld in %s did not stop within %d ms",
                                (long)pid, p.dir, STOP_TIMEOUT_MS);
        nap_ms(20);
    }
    return 0;
}

int vq_redis_resolve(const char *flag_url, const char *flag_state, char *url, size_t urlsz,
                     vq_error *err)
{
    const char *given = flag_url && *flag_url ? flag_url : getenv("VOLQ_REDIS");
    if (given && *given) {
        vq_redis_url u;
        int rc = vq_redis_url_parse(given, &u, err);
        if (rc) return rc;
        if (snprintf(url, urlsz, "%s", given) >= (int)urlsz)
            return vq_error_set(err, VQ_EINVAL, "redis URL too long");
        return 0;
    }
    const char *state = flag_state && *flag_state ? flag_state : getenv("VOLQ_STATE");
    if (!state || !*state) state = DEFAULT_STATE;
    return vq_redis_embedded_ensure(state, url, urlsz, NULL, err);
}
