/* The Redis connection every program uses: URL parsing, connect, reconnect,
 * commands and scripts through one send-and-check path. */
#ifndef VOLQ_REDIS_H
#define VOLQ_REDIS_H
#include <hiredis/hiredis.h>
#include <stddef.h>

#include "volq/error.h"

typedef struct vq_redis_url {
    int is_unix;
    char host[256];
    int port;          /* default 6379 */
    char path[256];    /* unix socket */
    char user[128];    /* "" when none (AUTH pass only) */
    char pass[256];    /* "" when none */
    int db;            /* default 0 */
} vq_redis_url;

/* redis://[user:pass@]host[:port][/db], redis://:pass@host, unix:///path[?db=N].
 * Anything else is VQ_EINVAL with a one-line reason. */
int vq_redis_url_parse(const char *url, vq_redis_url *out, vq_error *err);

typedef struct vq_redis vq_redis;

/* Connects (AUTH, SELECT) within timeout_ms.  VQ_EREDIS when unreachable.
 * Returns a new handle; free with vq_redis_free().  The URL is copied. */
int vq_redis_connect(const char *url, int timeout_ms, vq_redis **out, vq_error *err);

/* Drops the connection and connects again once; VQ_EREDIS when that fails. */
int vq_redis_reconnect(vq_redis *r, vq_error *err);

/* Keeps reconnecting with exponential backoff (100 ms .. 5 s, jittered),
 * logging each failure and the recovery, until it succeeds or *stop becomes
 * non-zero (then VQ_EREDIS).  For daemons. */
int vq_redis_reconnect_wait(vq_redis *r, volatile int *stop, vq_error *err);

/* Runs one command given as argv (binary-safe).  Returns the reply (free with
 * freeReplyObject) or NULL with VQ_EREDIS filled; an error reply is turned into
 * NULL + VQ_EREDIS too ("redis: ERR ...").  On a connection error the handle is
 * marked broken; the next call reconnects once before sending. */
redisReply *vq_redis_argv(vq_redis *r, int argc, const char **argv, const size_t *lens,
                          vq_error *err);

/* Same with a printf-like hiredis format (values only through %s/%b). */
redisReply *vq_redis_cmd(vq_redis *r, vq_error *err, const char *fmt, ...);

/* Pipelining: append any number of commands, then read their replies in order. */
int vq_redis_append_argv(vq_redis *r, int argc, const char **argv, const size_t *lens,
                         vq_error *err);
redisReply *vq_redis_get_reply(vq_redis *r, vq_error *err);

/* Runs an embedded Lua script (queue/lua/NAME.lua) with EVALSHA, loading it
 * with SCRIPT LOAD first time and again on NOSCRIPT.  keys/args as argv. */
redisReply *vq_redis_script(vq_redis *r, const char *name, int nkeys, const char **keys,
                            int nargs, const char **args, const size_t *arglens, vq_error *err);

/* Appends an EVALSHA of a loaded script to the pipeline (loads it first if needed). */
int vq_redis_script_append(vq_redis *r, const char *name, int nkeys, const char **keys,
                           int nargs, const char **args, const size_t *arglens, vq_error *err);

/* Borrowed hiredis context (NULL while disconnected). */
redisContext *vq_redis_ctx(vq_redis *r);

/* The URL this handle connects to (borrowed). */
const char *vq_redis_url_str(const vq_redis *r);

void vq_redis_free(vq_redis *r);

/* The embedded Redis of a state folder: STATE/redis.sock, STATE/redis.conf,
 * appendonly yes, appendfsync always, no TCP port.  Starts redis-server
 * (daemonized, pidfile STATE/redis.pid) unless one already answers on the
 * socket; writes "unix://STATE/redis.sock" into url.  *started says whether
 * this call started it. */
int vq_redis_embedded_ensure(const char *state_dir, char *url, size_t urlsz, int *started,
                             vq_error *err);

/* Asks the embedded Redis of state_dir to shut down (SHUTDOWN after an AOF flush)
 * and waits for its pid to exit. */
int vq_redis_embedded_stop(const char *state_dir, vq_error *err);

/* The Redis URL of SPEC §5: flag, else VOLQ_REDIS, else the embedded Redis of
 * the state folder (flag, else VOLQ_STATE, else ".volq"), started when needed. */
int vq_redis_resolve(const char *flag_url, const char *flag_state, char *url, size_t urlsz,
                     vq_error *err);

#endif
