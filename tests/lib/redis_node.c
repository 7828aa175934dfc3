/* redis-server and redis-sentinel on TCP for tests: config, spawn, wait, stop. */
#include "lib/redis_node.h"
#include "t.h"

#include <errno.h>
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

static int write_conf(const t_node *n, const char *extra)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/redis.conf", n->dir) >= (int)sizeof path) return -1;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "port %d\nbind %s\ndir %s\nlogfile %s/redis.log\ndaemonize no\n", n->port, n->host,
            n->dir, n->dir);
    if (!n->sentinel) fprintf(f, "save \"\"\n");
    if (extra) fputs(extra, f);
    return fclose(f) == 0 ? 0 : -1;
}

static redisContext *connect_node(const t_node *n)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(n->host, n->port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Any answer to PING (NOAUTH included) means the server is up. */
static int answers(const t_node *n)
{
    redisContext *c = connect_node(n);
    if (!c) return 0;
    redisReply *rep = redisCommand(c, "PING");
    int ok = rep != NULL;
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return ok;
}

int t_node_start(t_node *n, const char *dir, const char *host, int port, int sentinel,
                 const char *extra)
{
    memset(n, 0, sizeof *n);
    char abs[PATH_MAX];
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || !realpath(dir, abs) ||
        snprintf(n->dir, sizeof n->dir, "%s", abs) >= (int)sizeof n->dir ||
        snprintf(n->host, sizeof n->host, "%s", host) >= (int)sizeof n->host) {
        fprintf(stderr, "# node %s: bad folder or host\n", dir);
        return -1;
    }
    n->port = port;
    n->sentinel = sentinel;
    char conf[PATH_MAX + 16];
    snprintf(conf, sizeof conf, "%s/redis.conf", n->dir);
    if (write_conf(n, extra) != 0) return -1;
    char *argv[] = {(char *)"/usr/bin/redis-server", conf, sentinel ? (char *)"--sentinel" : NULL,
                    NULL};
    int rc = posix_spawn(&n->pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "# posix_spawn redis-server: %s\n", strerror(rc));
        n->pid = 0;
        return -1;
    }
    for (long long deadline = t_now_ms() + START_TIMEOUT_MS; t_now_ms() < deadline; t_sleep_ms(10)) {
        if (answers(n)) return 0;
        if (waitpid(n->pid, NULL, WNOHANG) == n->pid) {
            fprintf(stderr, "# redis-server of %s exited early (see its redis.log)\n", n->dir);
            n->pid = 0;
            return -1;
        }
    }
    fprintf(stderr, "# redis-server of %s did not answer within %d ms\n", n->dir, START_TIMEOUT_MS);
    return -1;
}

int t_node_stop(t_node *n)
{
    if (n->pid <= 0) return -1;
    kill(n->pid, SIGTERM);
    long long deadline = t_now_ms() + STOP_TIMEOUT_MS;
    while (waitpid(n->pid, NULL, WNOHANG) == 0) {
        if (t_now_ms() > deadline) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
            break;
        }
        t_sleep_ms(5);
    }
    n->pid = 0;
    return 0;
}

redisReply *t_node_cmd(const t_node *n, const char *user, const char *pass, const char *fmt, ...)
{
    redisContext *c = connect_node(n);
    if (!c) return NULL;
    if (user) {
        redisReply *a = redisCommand(c, "AUTH %s %s", user, pass);
        int ok = a && a->type == REDIS_REPLY_STATUS;
        if (a) freeReplyObject(a);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

int t_node_role(const t_node *n, const char *user, const char *pass, char role[16])
{
    redisReply *rep = t_node_cmd(n, user, pass, "ROLE");
    int rc = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(role, 16, "%s", rep->element[0]->str);
        rc = 0;
    }
    if (rep) freeReplyObject(rep);
    return rc;
}
