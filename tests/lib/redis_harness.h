/* A real redis-server for integration tests, private to one test case.
 *
 *   t_redis r;
 *   REQUIRE(t_redis_start(&r, "redis") == 0);   // folder under the case's cwd
 *   ... connect to r.url ("unix:///abs/redis/redis.sock") ...
 *   t_redis_kill9(&r); t_redis_restart(&r);     // crash + AOF replay
 *   t_redis_stop(&r);
 *
 * The server listens only on DIR/redis.sock (port 0), with appendonly yes,
 * appendfsync always and dir DIR, so a restart from the same folder replays
 * every acknowledged write.  It runs in the foreground as a child of the test
 * (in the case's process group, so the harness kills it if a case dies). */
#ifndef VOLQ_TEST_REDIS_HARNESS_H
#define VOLQ_TEST_REDIS_HARNESS_H
#include <hiredis/hiredis.h>
#include <sys/types.h>

/* sun_path is 108 bytes; the folder must leave room for "/redis.sock". */
#define T_REDIS_DIR_MAX 96

typedef struct t_redis {
    pid_t pid;                      /* 0 when not running */
    char dir[T_REDIS_DIR_MAX];      /* absolute */
    char sock[T_REDIS_DIR_MAX + 16];
    char url[T_REDIS_DIR_MAX + 32]; /* "unix://" + sock */
} t_redis;

/* Creates dir (relative to cwd, or absolute) if needed, writes dir/redis.conf,
 * starts redis-server and waits (up to 10 s) until it answers PING.
 * 0, or -1 with a message on stderr. */
int t_redis_start(t_redis *r, const char *dir);

/* SIGTERM (Redis flushes the AOF and exits) and waitpid.  0 or -1. */
int t_redis_stop(t_redis *r);

/* SIGKILL and waitpid: a crash.  Acknowledged writes are in the AOF. */
int t_redis_kill9(t_redis *r);

/* Starts the server again on the same folder (replaying its AOF) and waits
 * until it answers.  The server must be stopped or killed first. */
int t_redis_restart(t_redis *r);

/* A new hiredis connection to the server (free with redisFree), NULL on error. */
redisContext *t_redis_connect(const t_redis *r);

/* Runs one command (hiredis format) on a fresh connection: the reply, or NULL.
 * Free with freeReplyObject. */
redisReply *t_redis_cmd(const t_redis *r, const char *fmt, ...);

/* Looking into the server from a test: one command on a connection kept for
 * r (made again once when the server restarted).  The reply (free with
 * freeReplyObject; the case fails when there is none), a string reply as a
 * new string ("(nil)" for nil, "(not a string)"), or an integer reply (a
 * string reply as its number, -1 for anything else). */
redisReply *t_redis_query(const t_redis *r, const char *fmt, ...);
char *t_redis_str(const t_redis *r, const char *fmt, ...);
long long t_redis_int(const t_redis *r, const char *fmt, ...);

/* CHECK_STR on a new string (t_redis_str), freeing it. */
#define CHECK_R(expr, want)                                                   \
    do {                                                                      \
        char *got_ = (expr);                                                  \
        CHECK_STR(got_, want);                                                \
        free(got_);                                                           \
    } while (0)

#endif
