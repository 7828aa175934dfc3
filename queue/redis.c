/* The Redis handle: connect (AUTH, SELECT; through Sentinel for sentinel://),
 * one send-and-check path for every command, reconnect, pipelines, and
 * embedded Lua scripts run with EVALSHA. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis_int.h"
#include "volq/blob.h"
#include "volq/job.h"
#include "volq/log.h"

/* Every script is sent after the shared helpers of lib.lua (locals only). */
#define LUA_LIB "lib.lua"
#define SHA_HEX 41
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* A failure within this long of the end of the last retry's wait is one more
 * in a row: its wait is the next step of the backoff.  Twice the longest wait,
 * so that a server refusing every command keeps the retries 5 s apart. */
#define RETRY_ROW_MS (2 * BACKOFF_MAX_MS)

/* One command of a pipeline.  Scripts keep a copy of their EVALSHA argv so that
 * a NOSCRIPT answer can be run again after loading the script. */
struct pend {
    int script;          /* index in vq_lua_files, or -1 */
    int argc;
    char **argv;         /* script entries only; argv[1] is the sha */
    size_t *lens;
    redisReply *reply;   /* read ahead (stashed) or NULL */
};

struct vq_redis {
    redisContext *c;     /* NULL while disconnected */
    char *url;
    vq_redis_url u;
    int timeout_ms;      /* connect and read timeout */
    int block_ms;        /* added to the read timeout during blocking commands */
    int broken;          /* the next call reconnects first */
    unsigned gen;        /* connections opened: a WAIT must run on the writes' own */
    char (*sha)[SHA_HEX]; /* per vq_lua_files entry; "" until loaded */
    size_t nscripts;
    struct pend *pend;   /* pipeline: [head, n) pending, [head, unread) already read */
    size_t head, unread, n, cap;
    int retry_ms;        /* vq_redis_retry_wait: the next wait before jitter; 0: none yet */
    int64_t retried;     /* ms: when its last wait ended (0: never) */
};

static void set_timeout(vq_redis *r)
{
    int ms = r->timeout_ms + r->block_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (r->c) redisSetTimeout(r->c, tv);
}

void vq_redis_block_(vq_redis *r, int block_ms)
{
    r->block_ms = block_ms > 0 ? block_ms : 0;
    set_timeout(r);
}

/* For messages: a long address is cut short, which is fine there. */
void vq_redis_url_safe_(const vq_redis *r, char *out, size_t outsz)
{
    int n;
    if (r->u.nsentinels)
        n = snprintf(out, outsz, "sentinel://%s:%d/%s (master %s:%d/%d)", r->u.sentinels[0].host,
                     r->u.sentinels[0].port, r->u.master, r->u.host[0] ? r->u.host : "unknown",
                     r->u.port, r->u.db);
    else if (r->u.is_unix)
        n = snprintf(out, outsz, "unix://%s", r->u.path);
    else
        n = snprintf(out, outsz, "redis://%s:%d/%d", r->u.host, r->u.port, r->u.db);
    if (n < 0 && outsz) out[0] = '\0';
}

/* ---- pipeline bookkeeping --------------------------------------------- */

static void pend_clear(struct pend *p)
{
    for (int i = 0; p->argv && i < p->argc; i++) free(p->argv[i]);
    free(p->argv);
    free(p->lens);
    if (p->reply) freeReplyObject(p->reply);
    memset(p, 0, sizeof *p);
}

static void drop_pipeline(vq_redis *r)
{
    for (size_t i = r->head; i < r->n; i++) pend_clear(&r->pend[i]);
    r->head = r->unread = r->n = 0;
}

static struct pend *pend_push(vq_redis *r, vq_error *err)
{
    if (r->head == r->n) r->head = r->unread = r->n = 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct pend *p = realloc(r->pend, cap * sizeof *p);
        if (!p) {
            vq_error_set(err, VQ_ENOMEM, "redis: out of memory");
            return NULL;
        }
        r->pend = p;
        r->cap = cap;
    }
    struct pend *p = &r->pend[r->n++];
    memset(p, 0, sizeof *p);
    p->script = -1;
    return p;
}

/* ---- connection ------------------------------------------------------- */

static void mark_broken(vq_redis *r)
{
    r->broken = 1;
    drop_pipeline(r);
}

static void close_ctx(vq_redis *r)
{
    if (r->c) redisFree(r->c);
    r->c = NULL;
    drop_pipeline(r);
}

/* AUTH or SELECT during connect, straight on the context. */
static int handshake_cmd(redisContext *c, int argc, const char **argv, vq_error *err)
{
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    if (!rep) return vq_error_set(err, VQ_EREDIS, "redis: %s", c->errstr);
    int rc = 0;
    if (rep->type == REDIS_REPLY_ERROR)
        rc = vq_error_set(err, VQ_EREDIS, "redis: %s failed: %s", argv[0], rep->str);
    freeReplyObject(rep);
    return rc;
}

int vq_redis_auth_(redisContext *c, const vq_redis_url *u, vq_error *err)
{
    if (!u->pass[0]) return 0;
    const char *a2[] = {"AUTH", u->pass};
    const char *a3[] = {"AUTH", u->user, u->pass};
    return u->user[0] ? handshake_cmd(c, 3, a3, err) : handshake_cmd(c, 2, a2, err);
}

static int handshake(vq_redis *r, vq_error *err)
{
    char db[16];
    int rc = vq_redis_auth_(r->c, &r->u, err);
    if (rc) return rc;
    if (r->u.db == 0) return 0;
    snprintf(db, sizeof db, "%d", r->u.db);
    const char *sel[] = {"SELECT", db};
    return handshake_cmd(r->c, 2, sel, err);
}

/* Connects to the socket or host:port of r->u and logs in. */
static int dial(vq_redis *r, vq_error *err)
{
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    r->c = r->u.is_unix ? redisConnectUnixWithTimeout(r->u.path, tv)
                        : redisConnectWithTimeout(r->u.host, r->u.port, tv);
    char where[300];
    vq_redis_url_safe_(r, where, sizeof where);
    if (!r->c || r->c->err)
        return vq_error_set(err, VQ_EREDIS, "redis %s: %s", where,
                            r->c ? r->c->errstr : "out of memory");
    return handshake(r, err);
}

/* sentinel://: the master the sentinels name now, if it says it is one. */
static int dial_master(vq_redis *r, vq_error *err)
{
    int rc = vq_sentinel_master_(&r->u, r->timeout_ms, err);
    if (!rc) rc = dial(r, err);
    if (!rc) rc = vq_sentinel_check_role_(r->c, &r->u, err);
    return rc;
}

static int open_ctx(vq_redis *r, vq_error *err)
{
    close_ctx(r);
    r->gen++;
    int rc = r->u.nsentinels ? dial_master(r, err) : dial(r, err);
    if (rc) {
        close_ctx(r);
        r->broken = 1;
        return rc;
    }
    set_timeout(r);
    r->broken = 0;
    return 0;
}

int vq_redis_connect(const char *url, int timeout_ms, vq_redis **out, vq_error *err)
{
    *out = NULL;
    vq_redis *r = calloc(1, sizeof *r);
    if (!r) return vq_error_set(err, VQ_ENOMEM, "redis: out of memory");
    int rc = vq_redis_url_parse(url, &r->u, err);
    if (rc) goto out_free;
    for (const struct vq_blob *b = vq_lua_files; b->name; b++) r->nscripts++;
    r->url = strdup(url);
    r->sha = calloc(r->nscripts + 1, sizeof *r->sha);
    if (!r->url || !r->sha) {
        rc = vq_error_set(err, VQ_ENOMEM, "redis: out of memory");
        goto out_free;
    }
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    /* A write to a closed socket must fail with EPIPE, not kill the process. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    rc = open_ctx(r, err);
    if (rc) goto out_free;
    *out = r;
    return 0;
out_free:
    vq_redis_free(r);
    return rc;
}

int vq_redis_reconnect(vq_redis *r, vq_error *err) { return open_ctx(r, err); }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Sleeps ms in 50 ms slices so that *stop is seen quickly. */
static void sleep_unless_stopped(int ms, volatile int *stop)
{
    while (ms > 0 && !(stop && *stop)) {
        int slice = ms < 50 ? ms : 50;
        sleep_ms(slice);
        ms -= slice;
    }
}

/* delay ±25%, so that many clients do not retry in step. */
static int jitter(int delay)
{
    return delay * 3 / 4 + rand() % (delay / 2 + 1);
}

static int doubled(int delay)
{
    return delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
}

int vq_redis_reconnect_wait(vq_redis *r, volatile int *stop, vq_error *err)
{
    char where[300];
    vq_redis_url_safe_(r, where, sizeof where);
    int delay = BACKOFF_MIN_MS;
    for (int attempt = 1;; attempt++) {
        vq_error e = {0};
        if (open_ctx(r, &e) == 0) {
            if (attempt > 1) vq_log(VQ_LOG_NOTICE, "redis %s: reconnected after %d attempts", where, attempt);
            return 0;
        }
        if (stop && *stop) return vq_error_set(err, e.code, "%s", e.text);
        int jittered = jitter(delay);
        vq_log(VQ_LOG_WARN, "%s; retrying in %d ms (attempt %d)", e.text, jittered, attempt);
        sleep_unless_stopped(jittered, stop);
        if (stop && *stop) return vq_error_set(err, e.code, "%s", e.text);
        delay = doubled(delay);
    }
}

int vq_redis_retry_wait(vq_redis *r, volatile int *stop, vq_error *err)
{
    int answered = r->c && !r->broken; /* an error reply: the connection is good */
    int in_row = r->retried && vq_now_ms() - r->retried <= RETRY_ROW_MS;
    if (!in_row) r->retry_ms = BACKOFF_MIN_MS;
    /* A lost connection is made again at once, unless it was just made. */
    if (answered || in_row) {
        sleep_unless_stopped(jitter(r->retry_ms), stop);
        r->retry_ms = doubled(r->retry_ms);
    }
    int rc = 0;
    if (stop && *stop)
        rc = vq_error_set(err, VQ_EREDIS, "redis: stopping while it fails");
    else if (!answered)
        rc = vq_redis_reconnect_wait(r, stop, err);
    r->retried = vq_now_ms();
    return rc;
}

/* ---- the send-and-check path ------------------------------------------ */

static int ensure_connected(vq_redis *r, vq_error *err)
{
    if (r->c && !r->broken) return 0;
    return open_ctx(r, err);
}

static int read_reply(vq_redis *r, redisReply **rep, vq_error *err)
{
    void *v = NULL;
    if (redisGetReply(r->c, &v) != REDIS_OK || !v) {
        int rc = vq_error_set(err, VQ_EREDIS, "redis: connection lost: %s",
                              r->c->errstr[0] ? r->c->errstr : "no reply");
        mark_broken(r);
        return rc;
    }
    /* A demoted master answers READONLY & co. until it drops us: the next
     * call asks the sentinels again (the pipeline's other replies still come). */
    if (r->u.nsentinels && vq_sentinel_failover_reply_(v)) {
        vq_log(VQ_LOG_NOTICE, "redis %s:%d: %s; asking the sentinels again", r->u.host, r->u.port,
               ((redisReply *)v)->str);
        r->broken = 1;
    }
    *rep = v;
    return 0;
}

/* Reads every reply the server still owes, so the socket is free for a new
 * command; the replies wait in the pipeline for vq_redis_get_reply(). */
static int drain(vq_redis *r, vq_error *err)
{
    while (r->unread < r->n) {
        redisReply *rep = NULL;
        int rc = read_reply(r, &rep, err);
        if (rc) return rc;
        r->pend[r->unread++].reply = rep;
    }
    return 0;
}

/* Writes the whole output buffer.  -1 on a socket error. */
static int flush_out(redisContext *c)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK) return -1;
    return 0;
}

int vq_redis_rc(const vq_error *err)
{
    return err && err->code ? err->code : VQ_EREDIS;
}

int vq_redis_failed(int code)
{
    return code == VQ_EREDIS || code == VQ_EREPLY;
}

int vq_redis_send(vq_redis *r, vq_error *err)
{
    if (!r->c || r->broken) return vq_error_set(err, VQ_EREDIS, "redis: connection lost");
    if (flush_out(r->c) == 0) return 0;
    vq_error_set(err, VQ_EREDIS, "redis: connection lost: %s", r->c->errstr);
    mark_broken(r);
    return VQ_EREDIS;
}

/* Sends one formatted command and reads its reply, error replies included.
 * A write that fails on a connection opened before this call is retried once
 * on a new connection: the server cannot have run a command it did not fully
 * receive. */
static redisReply *roundtrip(vq_redis *r, const char *cmd, size_t len, vq_error *err)
{
    int fresh = !r->c || r->broken;
    if (ensure_connected(r, err) || drain(r, err)) return NULL;
    for (int tries = 0;; tries++) {
        if (redisAppendFormattedCommand(r->c, cmd, len) == REDIS_OK && flush_out(r->c) == 0) break;
        if (fresh || tries > 0) {
            vq_error_set(err, VQ_EREDIS, "redis: connection lost: %s", r->c->errstr);
            mark_broken(r);
            return NULL;
        }
        if (open_ctx(r, err)) return NULL;
    }
    redisReply *rep = NULL;
    return read_reply(r, &rep, err) ? NULL : rep;
}

/* An error reply becomes NULL + VQ_EREPLY "redis: <message>", or VQ_EREDIS
 * when it made the handle reconnect (a demoted master, in sentinel mode). */
static redisReply *checked(const vq_redis *r, redisReply *rep, vq_error *err)
{
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        vq_error_set(err, r->broken ? VQ_EREDIS : VQ_EREPLY, "redis: %s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

static redisReply *roundtrip_argv(vq_redis *r, int argc, const char **argv, const size_t *lens,
                                  vq_error *err)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        vq_error_set(err, VQ_ENOMEM, "redis: cannot format command");
        return NULL;
    }
    redisReply *rep = roundtrip(r, cmd, (size_t)len, err);
    redisFreeCommand(cmd);
    return rep;
}

redisReply *vq_redis_argv(vq_redis *r, int argc, const char **argv, const size_t *lens,
                          vq_error *err)
{
    return checked(r, roundtrip_argv(r, argc, argv, lens, err), err);
}

redisReply *vq_redis_cmd(vq_redis *r, vq_error *err, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) {
        vq_error_set(err, VQ_EINVAL, "redis: bad command format");
        return NULL;
    }
    redisReply *rep = checked(r, roundtrip(r, cmd, (size_t)len, err), err);
    redisFreeCommand(cmd);
    return rep;
}

/* ---- pipelines -------------------------------------------------------- */

int vq_redis_append_argv(vq_redis *r, int argc, const char **argv, const size_t *lens,
                         vq_error *err)
{
    if (ensure_connected(r, err)) return VQ_EREDIS;
    if (!pend_push(r, err)) return VQ_ENOMEM;
    if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK) {
        r->n--;
        return vq_error_set(err, VQ_ENOMEM, "redis: cannot append command");
    }
    return 0;
}

static int is_noscript(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

static redisReply *rerun_script(vq_redis *r, struct pend *p, vq_error *err);

redisReply *vq_redis_get_reply(vq_redis *r, vq_error *err)
{
    if (r->head == r->n) {
        vq_error_set(err, VQ_EREDIS, "redis: no reply pending (connection lost?)");
        return NULL;
    }
    if (r->head == r->unread && drain(r, err)) return NULL;
    struct pend *p = &r->pend[r->head++];
    redisReply *rep = p->reply;
    p->reply = NULL;
    if (is_noscript(rep) && p->script >= 0) {
        freeReplyObject(rep);
        rep = rerun_script(r, p, err);
    }
    pend_clear(p);
    if (r->head == r->n) r->head = r->unread = r->n = 0;
    return checked(r, rep, err);
}

/* ---- scripts ---------------------------------------------------------- */

static int script_index(const vq_redis *r, const char *name, vq_error *err)
{
    const struct vq_blob *b = vq_blob_find(vq_lua_files, name);
    if (!b) return vq_error_set(err, VQ_EINVAL, "redis: no embedded script %s", name);
    (void)r;
    return (int)(b - vq_lua_files);
}

/* lib.lua + "\n" + the script.  Returns a new string (free()); NULL on ENOMEM. */
static char *script_text(int idx, size_t *len)
{
    const struct vq_blob *lib = vq_blob_find(vq_lua_files, LUA_LIB);
    const struct vq_blob *s = &vq_lua_files[idx];
    size_t llen = lib ? lib->len : 0;
    char *t = malloc(llen + 1 + s->len + 1);
    if (!t) return NULL;
    if (lib) memcpy(t, lib->data, llen);
    t[llen] = '\n';
    memcpy(t + llen + 1, s->data, s->len);
    *len = llen + 1 + s->len;
    t[*len] = '\0';
    return t;
}

static int load_script(vq_redis *r, int idx, vq_error *err)
{
    size_t len;
    char *text = script_text(idx, &len);
    if (!text) return vq_error_set(err, VQ_ENOMEM, "redis: out of memory");
    const char *argv[] = {"SCRIPT", "LOAD", text};
    size_t lens[] = {6, 4, len};
    redisReply *rep = vq_redis_argv(r, 3, argv, lens, err);
    free(text);
    if (!rep) return vq_redis_rc(err);
    int rc = 0;
    if (rep->type == REDIS_REPLY_STRING && rep->len == SHA_HEX - 1)
        memcpy(r->sha[idx], rep->str, SHA_HEX);
    else
        rc = vq_error_set(err, VQ_EREDIS, "redis: SCRIPT LOAD %s: unexpected reply",
                          vq_lua_files[idx].name);
    freeReplyObject(rep);
    return rc;
}

static int ensure_loaded(vq_redis *r, int idx, vq_error *err)
{
    return r->sha[idx][0] ? 0 : load_script(r, idx, err);
}

/* EVALSHA sha nkeys keys... args...: a new argv (free_argv()), NULL on ENOMEM. */
static char **evalsha_argv(const char *sha, int nkeys, const char **keys, int nargs,
                           const char **args, const size_t *arglens, size_t **lensp)
{
    int argc = 3 + nkeys + nargs;
    char **argv = calloc((size_t)argc, sizeof *argv);
    size_t *lens = calloc((size_t)argc, sizeof *lens);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    const char *src[3] = {"EVALSHA", sha, nk};
    for (int i = 0; argv && lens && i < argc; i++) {
        const char *s = i < 3 ? src[i] : i < 3 + nkeys ? keys[i - 3] : args[i - 3 - nkeys];
        lens[i] = (i >= 3 + nkeys && arglens) ? arglens[i - 3 - nkeys] : strlen(s);
        argv[i] = malloc(lens[i] + 1);
        if (!argv[i]) break;
        memcpy(argv[i], s, lens[i]);
        argv[i][lens[i]] = '\0';
    }
    if (!argv || !lens || !argv[argc - 1]) {
        for (int i = 0; argv && i < argc; i++) free(argv[i]);
        free(argv);
        free(lens);
        return NULL;
    }
    *lensp = lens;
    return argv;
}

static void free_argv(char **argv, size_t *lens, int argc)
{
    for (int i = 0; argv && i < argc; i++) free(argv[i]);
    free(argv);
    free(lens);
}

/* Runs a stored EVALSHA argv; on NOSCRIPT loads the script and runs it again.
 * Error replies are returned as they are (the caller checks). */
static redisReply *evalsha_raw(vq_redis *r, int idx, int argc, char **argv, size_t *lens,
                               vq_error *err)
{
    memcpy(argv[1], r->sha[idx], SHA_HEX);
    redisReply *rep = roundtrip_argv(r, argc, (const char **)argv, lens, err);
    if (!is_noscript(rep)) return rep;
    freeReplyObject(rep);
    r->sha[idx][0] = '\0';
    if (load_script(r, idx, err)) return NULL;
    memcpy(argv[1], r->sha[idx], SHA_HEX);
    return roundtrip_argv(r, argc, (const char **)argv, lens, err);
}

static redisReply *rerun_script(vq_redis *r, struct pend *p, vq_error *err)
{
    if (drain(r, err)) return NULL;
    r->sha[p->script][0] = '\0';
    if (load_script(r, p->script, err)) return NULL;
    return evalsha_raw(r, p->script, p->argc, p->argv, p->lens, err);
}

/* The EVALSHA argv of a call answered at once: pointers to the caller's
 * strings, not copies (a bulk accept passes 200,000 of them); only the sha
 * (argv[1], rewritten after a NOSCRIPT) is a buffer of its own. */
redisReply *vq_redis_script(vq_redis *r, const char *name, int nkeys, const char **keys,
                            int nargs, const char **args, const size_t *arglens, vq_error *err)
{
    int idx = script_index(r, name, err);
    if (idx < 0 || ensure_loaded(r, idx, err)) return NULL;
    int argc = 3 + nkeys + nargs;
    char sha[SHA_HEX], nk[16];
    const char **argv = calloc((size_t)argc, sizeof *argv);
    size_t *lens = calloc((size_t)argc, sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        vq_error_set(err, VQ_ENOMEM, "redis: out of memory");
        return NULL;
    }
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nk;
    for (int i = 3; i < argc; i++) {
        argv[i] = i < 3 + nkeys ? keys[i - 3] : args[i - 3 - nkeys];
        lens[i] = i >= 3 + nkeys && arglens ? arglens[i - 3 - nkeys] : strlen(argv[i]);
    }
    lens[0] = 7;
    lens[1] = SHA_HEX - 1;
    lens[2] = strlen(nk);
    redisReply *rep = checked(r, evalsha_raw(r, idx, argc, (char **)argv, lens, err), err);
    free(argv);
    free(lens);
    return rep;
}

int vq_redis_script_append(vq_redis *r, const char *name, int nkeys, const char **keys,
                           int nargs, const char **args, const size_t *arglens, vq_error *err)
{
    int idx = script_index(r, name, err);
    if (idx < 0) return idx;
    int rc = ensure_loaded(r, idx, err);
    if (rc) return rc;
    size_t *lens = NULL;
    int argc = 3 + nkeys + nargs;
    char **argv = evalsha_argv(r->sha[idx], nkeys, keys, nargs, args, arglens, &lens);
    if (!argv) return vq_error_set(err, VQ_ENOMEM, "redis: out of memory");
    rc = vq_redis_append_argv(r, argc, (const char **)argv, lens, err);
    if (rc) {
        free_argv(argv, lens, argc);
        return rc;
    }
    struct pend *p = &r->pend[r->n - 1];
    p->script = idx;
    p->argc = argc;
    p->argv = argv;
    p->lens = lens;
    return 0;
}

int vq_redis_wait_replicas(vq_redis *r, int n, int timeout_ms, vq_error *err)
{
    if (!r->c || r->broken)
        return vq_error_set(err, VQ_EREDIS, "redis: WAIT: connection lost since the writes");
    char ns[16], ms[16];
    snprintf(ns, sizeof ns, "%d", n);
    snprintf(ms, sizeof ms, "%d", timeout_ms);
    const char *argv[] = {"WAIT", ns, ms};
    unsigned gen = r->gen;
    int block = r->block_ms;
    vq_redis_block_(r, timeout_ms);
    redisReply *rep = vq_redis_argv(r, 3, argv, NULL, err);
    vq_redis_block_(r, block);
    if (!rep) return VQ_EREDIS;
    long long got = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    if (r->gen != gen)
        return vq_error_set(err, VQ_EREDIS, "redis: WAIT: connection lost since the writes");
    if (got >= n) return 0;
    r->broken = 1; /* an isolated old master, maybe: find the master again */
    return vq_error_set(err, VQ_EREDIS, "redis: WAIT: %lld of %d replica(s) acknowledged within %d ms",
                        got, n, timeout_ms);
}

redisContext *vq_redis_ctx(vq_redis *r) { return r->broken ? NULL : r->c; }

const char *vq_redis_url_str(const vq_redis *r) { return r->url; }

void vq_redis_free(vq_redis *r)
{
    if (!r) return;
    close_ctx(r);
    free(r->pend);
    free(r->sha);
    free(r->url);
    free(r);
}
