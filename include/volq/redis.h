/* The Redis connection every program uses: URL parsing, connect, reconnect,
 * commands and scripts through one send-and-check path. */
#ifndef VOLQ_REDIS_H
#define VOLQ_REDIS_H
#include <hiredis/hiredis.h>
#include <stddef.h>

#include "volq/error.h"

/* A URL names at most this many sentinels; 26379 is their default port. */
#define VQ_REDIS_SENTINELS_MAX 8
#define VQ_REDIS_SENTINEL_PORT 26379

typedef struct vq_redis_addr {
    char host[256];    /* bare IPv6 address, without brackets */
    int port;
} vq_redis_addr;

typedef struct vq_redis_url {
    int is_unix;
    char host[256];    /* sentinel://: the master's, once a sentinel named it ("" before) */
    int port;          /* default 6379 */
    char path[256];    /* unix socket */
    char user[128];    /* "" when none (AUTH pass only) */
    char pass[256];    /* "" when none */
    int db;            /* default 0 */
    int nsentinels;    /* sentinel:// only: how many sentinels[] to ask; else 0 */
    vq_redis_addr sentinels[VQ_REDIS_SENTINELS_MAX];
    char master[128];  /* sentinel:// only: the name the sentinels monitor */
} vq_redis_url;

/* VQ_EREPLY (error.h) is an error reply (OOM, MISCONF, NOREPLICAS, WRONGTYPE,
 * LOADING, ...): the server was reached and refused the command, and the
 * connection is still good.  VQ_EREDIS is a lost or failed connection, and,
 * in sentinel mode, the answer of a server that is no longer the master (the
 * next call asks the sentinels again). */

/* redis://[user:pass@]host[:port][/db], redis://:pass@host, unix:///path[?db=N],
 * unix://[user:pass@]/path[?db=N],
 * sentinel://[user:pass@]host[:port][,host[:port]...]/MASTER[/db] (1 to
 * VQ_REDIS_SENTINELS_MAX sentinels; user:pass are the master's, and a
 * sentinel that answers NOAUTH gets them too).  User and password may be
 * %XX-encoded.  Anything else (rediss://, query strings on redis://, a user
 * without a password) is VQ_EINVAL with a one-line reason ("redis URL: ...");
 * *out is left untouched then. */
int vq_redis_url_parse(const char *url, vq_redis_url *out, vq_error *err);

/* url as it may be shown (logs, answers): its password, if any, as "***"
 * ("redis://volq:***@host:6379/0"). */
void vq_redis_url_shown(const char *url, char *out, size_t sz);

typedef struct vq_redis vq_redis;

/* Connects (AUTH user pass, or AUTH pass; SELECT db) within timeout_ms, which
 * is also the read timeout of every later command (blocking commands of the
 * queue add their own wait).  VQ_EREDIS when unreachable or AUTH/SELECT fail.
 * sentinel://: asks the sentinels in turn (each within min(timeout_ms, 1 s))
 * for the master's address (SENTINEL get-master-addr-by-name), moves the one
 * that answered to the front, connects, and checks with ROLE that the server
 * is a master (VQ_EREDIS, "... is a slave", when it is not: a failover is
 * under way; try again later).  Every reconnect asks the sentinels again, and
 * an answer of a server that is no longer the master (READONLY, MASTERDOWN,
 * UNBLOCKED, NOREPLICAS) makes the next call reconnect.
 * Returns a new handle; free with vq_redis_free().  The URL is copied.
 * Ignores SIGPIPE when it is at its default, so a write to a dead server
 * fails instead of killing the process. */
int vq_redis_connect(const char *url, int timeout_ms, vq_redis **out, vq_error *err);

/* Drops the connection and connects again once; VQ_EREDIS when that fails. */
int vq_redis_reconnect(vq_redis *r, vq_error *err);

/* Keeps reconnecting with exponential backoff (100 ms .. 5 s, jittered),
 * logging each failure and the recovery, until it succeeds or *stop becomes
 * non-zero (then VQ_EREDIS).  For daemons. */
int vq_redis_reconnect_wait(vq_redis *r, volatile int *stop, vq_error *err);

/* After a call failed on r (VQ_EREDIS or VQ_EREPLY), before the next: 0 once
 * Redis may be asked again, VQ_EREDIS when *stop became non-zero.  An error
 * reply keeps the connection and waits; a lost connection is made again
 * (vq_redis_reconnect_wait), at once unless the last retry ended within 10 s
 * (it then waits first too: a connection lost as soon as made).  The waits
 * are the reconnects' backoff (100 ms, doubling to 5 s, ±25%), one step
 * further for each failure in a row, from 100 ms again after 10 s without
 * one.  For daemons: a server that refuses every command is asked every 5 s,
 * not in a loop. */
int vq_redis_retry_wait(vq_redis *r, volatile int *stop, vq_error *err);

/* Runs one command given as argv (binary-safe).  Returns the reply (free with
 * freeReplyObject) or NULL with VQ_EREDIS filled; an error reply is turned into
 * NULL + VQ_EREPLY ("redis: ERR ..."; VQ_EREDIS when it sends the handle back
 * to the sentinels).  On a connection error the handle is
 * marked broken; the next call reconnects once before sending.  A command whose
 * write fails on an old connection (the server restarted meanwhile) is sent
 * once more on a new one: the server cannot have run what it did not receive.
 * Replies of a pending pipeline are read ahead and kept for
 * vq_redis_get_reply(), so a command may be run between append and read. */
redisReply *vq_redis_argv(vq_redis *r, int argc, const char **argv, const size_t *lens,
                          vq_error *err);

/* Same with a printf-like hiredis format (values only through %s/%b). */
redisReply *vq_redis_cmd(vq_redis *r, vq_error *err, const char *fmt, ...);

/* Pipelining: append any number of commands, then read their replies in order
 * (exactly one vq_redis_get_reply() per append; an error reply is NULL + err as
 * above and the pipeline goes on).  A broken connection drops the replies still
 * pending: each later vq_redis_get_reply() is NULL + VQ_EREDIS. */
int vq_redis_append_argv(vq_redis *r, int argc, const char **argv, const size_t *lens,
                         vq_error *err);
redisReply *vq_redis_get_reply(vq_redis *r, vq_error *err);

/* The code of a call that got no reply: its error's (VQ_EREPLY for an error
 * reply), else VQ_EREDIS. */
int vq_redis_rc(const vq_error *err);
/* 1 for a code that says Redis did not answer (VQ_EREDIS) or refused
 * (VQ_EREPLY): a call to wait out and make again, not a job's failure. */
int vq_redis_failed(int code);
/* Writes what was appended to the socket now, without reading replies: for a
 * write that must be at the server before the caller goes on (the server
 * reads it even if the caller dies next).  VQ_EREDIS when the write fails
 * (the connection is then broken, as above). */
int vq_redis_send(vq_redis *r, vq_error *err);

/* Runs an embedded Lua script (queue/lua/NAME.lua, sent after the shared
 * helpers of queue/lua/lib.lua) with EVALSHA, loading it with SCRIPT LOAD the
 * first time and again on NOSCRIPT (SCRIPT FLUSH, a restarted server).
 * keys/args as argv; arglens may be NULL (strlen).  Reply as vq_redis_argv(). */
redisReply *vq_redis_script(vq_redis *r, const char *name, int nkeys, const char **keys,
                            int nargs, const char **args, const size_t *arglens, vq_error *err);

/* Appends an EVALSHA of a script to the pipeline (loads it first if needed).
 * Its reply comes from vq_redis_get_reply(); on NOSCRIPT the script is loaded
 * and run again there, after the rest of the pipeline has run. */
int vq_redis_script_append(vq_redis *r, const char *name, int nkeys, const char **keys,
                           int nargs, const char **args, const size_t *arglens, vq_error *err);

/* WAIT n timeout_ms on the connection that made the last writes: 0 when at
 * least n replicas acknowledged all of them.  VQ_EREDIS when fewer did within
 * timeout_ms ("redis: WAIT: 0 of 1 replica(s) acknowledged within 500 ms"; the
 * next call then reconnects, in sentinel mode asking the sentinels again), or
 * when the connection was lost since those writes (a WAIT on a new one would
 * prove nothing).  n > 0, timeout_ms > 0. */
int vq_redis_wait_replicas(vq_redis *r, int n, int timeout_ms, vq_error *err);

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
