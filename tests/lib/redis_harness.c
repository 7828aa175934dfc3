/* A private redis-server per test case: config file, spawn, wait, stop, crash. */
#include "redis_harness.h"
#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000

static int write_conf(const t_redis *r)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/redis.conf", r->dir) >= (int)sizeof path) return -1;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "port 0\nunixsocket %s\nunixsocketperm 700\ndir %s\n"
            "appendonly yes\nappendfsync always\nsave \"\"\n"
            "logfile %s/redis.log\ndaemonize no\n",
            r->sock, r->dir, r->dir);
    return fclose(f) == 0 ? 0 : -1;
}

static int ping(const t_redis *r)
{
    redisContext *c = t_redis_connect(r);
    if (!c) return -1;
    redisReply *rep = redisCommand(c, "PING");
    int ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return ok ? 0 : -1;
}

/* Polls PING until it answers or the child exits. */
static int wait_ready(t_redis *r)
{
    long long deadline = t_now_ms() + START_TIMEOUT_MS;
    while (t_now_ms() < deadline) {
        if (ping(r) == 0) return 0;
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            fprintf(stderr, "# redis-server exited early (see %s/redis.log)\n", r->dir);
            r->pid = 0;
            return -1;
        }
        t_sleep_ms(10);
    }
    fprintf(stderr, "# redis-server did not answer within %d ms\n", START_TIMEOUT_MS);
    return -1;
}

static int spawn_server(t_redis *r)
{
    char conf[PATH_MAX];
    if (snprintf(conf, sizeof conf, "%s/redis.conf", r->dir) >= (int)sizeof conf) return -1;
    char *argv[] = {(char *)"/usr/bin/redis-server", conf, NULL};
    int rc = posix_spawn(&r->pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "# posix_spawn redis-server: %s\n", strerror(rc));
        r->pid = 0;
        return -1;
    }
    return wait_ready(r);
}

int t_redis_start(t_redis *r, const char *dir)
{
    memset(r, 0, sizeof *r);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
    char abs[PATH_MAX];
    if (!realpath(dir, abs)) return -1;
    if (snprintf(r->dir, sizeof r->dir, "%s", abs) >= (int)sizeof r->dir ||
        snprintf(r->sock, sizeof r->sock, "%s/redis.sock", abs) >= (int)sizeof r->sock ||
        snprintf(r->url, sizeof r->url, "unix://%s", r->sock) >= (int)sizeof r->url) {
        fprintf(stderr, "# redis folder path too long for a unix socket: %s\n", abs);
        return -1;
    }
    if (write_conf(r) != 0) return -1;
    return spawn_server(r);
}

static int signal_and_wait(t_redis *r, int sig)
{
    if (r->pid <= 0) return -1;
    if (kill(r->pid, sig) != 0) return -1;
    long long deadline = t_now_ms() + STOP_TIMEOUT_MS;
    int st;
    while (waitpid(r->pid, &st, WNOHANG) == 0) {
        if (t_now_ms() > deadline) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            r->pid = 0;
            return -1;
        }
        t_sleep_ms(5);
    }
    r->pid = 0;
    return 0;
}

int t_redis_stop(t_redis *r) { return signal_and_wait(r, SIGTERM); }

int t_redis_kill9(t_redis *r) { return signal_and_wait(r, SIGKILL); }

int t_redis_restart(t_redis *r)
{
    if (r->pid > 0) return -1;
    return spawn_server(r);
}

redisContext *t_redis_connect(const t_redis *r)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

redisReply *t_redis_cmd(const t_redis *r, const char *fmt, ...)
{
    redisContext *c = t_redis_connect(r);
    if (!c) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

static redisReply *vquery(const t_redis *r, const char *fmt, va_list ap)
{
    static redisContext *c;
    static char url[sizeof r->url];
    if (c && strcmp(url, r->url) != 0) {
        redisFree(c);
        c = NULL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!c && (c = t_redis_connect(r)) != NULL) snprintf(url, sizeof url, "%s", r->url);
        if (!c) continue;
        va_list aq;
        va_copy(aq, ap);
        redisReply *rep = redisvCommand(c, fmt, aq);
        va_end(aq);
        if (rep) return rep;
        redisFree(c); /* the server restarted: once more on a new connection */
        c = NULL;
    }
    T_FAIL_("redis %s: no answer", r->url);
    exit(1);
}

redisReply *t_redis_query(const t_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = vquery(r, fmt, ap);
    va_end(ap);
    return rep;
}

char *t_redis_str(const t_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = vquery(r, fmt, ap);
    va_end(ap);
    char *s = strdup(rep->type == REDIS_REPLY_NIL ? "(nil)" : rep->str ? rep->str : "(not a string)");
    freeReplyObject(rep);
    return s;
}

long long t_redis_int(const t_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = vquery(r, fmt, ap);
    va_end(ap);
    long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer
                : rep->type == REDIS_REPLY_STRING ? atoll(rep->str) : -1;
    freeReplyObject(rep);
    return v;
}
