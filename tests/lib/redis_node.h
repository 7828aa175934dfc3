/* A redis-server or redis-sentinel on a TCP address, for the tests of
 * several hosts and of Sentinel (the unix-socket server of redis_harness.h
 * serves everything else):
 *
 *   t_node m;
 *   REQUIRE(t_node_start(&m, "m", "127.0.0.1", t_free_port(), 0,
 *                        "user volq on >pw ~* &* +@all\n") == 0);
 *   redisReply *rep = t_node_cmd(&m, "volq", "pw", "ROLE");
 *   t_node_stop(&m);
 *
 * The config DIR/redis.conf holds port, bind, dir, logfile DIR/redis.log, no
 * RDB snapshots, then the extra lines (a sentinel rewrites its own config).
 * The server is a child of the test, in the case's process group. */
#ifndef VOLQ_TEST_REDIS_NODE_H
#define VOLQ_TEST_REDIS_NODE_H
#include <hiredis/hiredis.h>
#include <sys/types.h>

typedef struct t_node {
    pid_t pid;          /* 0 when not running */
    char dir[256];      /* absolute */
    char host[64];      /* the bind address */
    int port;
    int sentinel;
} t_node;

/* Creates dir (relative to cwd, or absolute), writes its config with the extra
 * lines (may be NULL), starts redis-server (--sentinel when sentinel) and
 * waits up to 10 s until it answers on host:port.  0, or -1 with a message
 * on stderr. */
int t_node_start(t_node *n, const char *dir, const char *host, int port, int sentinel,
                 const char *extra);

/* SIGTERM (SIGKILL after 10 s) and waitpid.  0, or -1 when it was not running. */
int t_node_stop(t_node *n);

/* A command on a new connection to the node, after AUTH user pass when user is
 * not NULL.  The reply (freeReplyObject), or NULL when there was none. */
redisReply *t_node_cmd(const t_node *n, const char *user, const char *pass, const char *fmt, ...);

/* The first word of ROLE ("master", "slave", "sentinel") into role; 0 or -1. */
int t_node_role(const t_node *n, const char *user, const char *pass, char role[16]);

#endif
