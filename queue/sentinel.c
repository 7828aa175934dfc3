/* Redis Sentinel: which server is the master now.  The client side of
 * https://redis.io/docs/reference/sentinel-clients/: ask the sentinels in
 * turn, remember the one that answered, check the master's ROLE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"

/* A dead sentinel must not hold up the next one for the whole read timeout. */
#define SENTINEL_TIMEOUT_MAX_MS 1000

static redisReply *ask_addr(redisContext *c, const vq_redis_url *u)
{
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", u->master};
    return redisCommandArgv(c, 3, argv, NULL);
}

/* The [ip, port] answer into out; VQ_EREDIS with the reason otherwise. */
static int read_addr(const redisReply *rep, const vq_redis_url *u, const vq_redis_addr *s,
                     vq_redis_addr *out, vq_error *err)
{
    if (rep->type == REDIS_REPLY_ERROR)
        return vq_error_set(err, VQ_EREDIS, "sentinel %s:%d: %s", s->host, s->port, rep->str);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
        return vq_error_set(err, VQ_EREDIS, "sentinel %s:%d does not know master %s", s->host,
                            s->port, u->master);
    const redisReply *ip = rep->element[0], *port = rep->element[1];
    long p = port->type == REDIS_REPLY_STRING ? strtol(port->str, NULL, 10) : 0;
    if (ip->type != REDIS_REPLY_STRING || ip->len == 0 || ip->len >= sizeof out->host || p < 1 ||
        p > 65535)
        return vq_error_set(err, VQ_EREDIS, "sentinel %s:%d: unexpected answer for master %s",
                            s->host, s->port, u->master);
    memcpy(out->host, ip->str, ip->len + 1);
    out->port = (int)p;
    return 0;
}

/* One sentinel: connect, ask (logging in first when it answers NOAUTH). */
static int ask_one(const vq_redis_url *u, const vq_redis_addr *s, int ms, vq_redis_addr *out,
                   vq_error *err)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
    redisReply *rep = NULL;
    int rc;
    if (!c || c->err) {
        rc = vq_error_set(err, VQ_EREDIS, "sentinel %s:%d: %s", s->host, s->port,
                          c ? c->errstr : "out of memory");
        goto out_free_ctx;
    }
    redisSetTimeout(c, tv);
    rep = ask_addr(c, u);
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOAUTH", 6) == 0 &&
        u->pass[0]) {
        freeReplyObject(rep);
        rep = NULL;
        if ((rc = vq_redis_auth_(c, u, err)) != 0) goto out_free_ctx;
        rep = ask_addr(c, u);
    }
    rc = rep ? read_addr(rep, u, s, out, err)
             : vq_error_set(err, VQ_EREDIS, "sentinel %s:%d: %s", s->host, s->port, c->errstr);
    if (rep) freeReplyObject(rep);
out_free_ctx:
    if (c) redisFree(c);
    return rc;
}

int vq_sentinel_master_(vq_redis_url *u, int timeout_ms, vq_error *err)
{
    int ms = timeout_ms > 0 && timeout_ms < SENTINEL_TIMEOUT_MAX_MS ? timeout_ms
                                                                     : SENTINEL_TIMEOUT_MAX_MS;
    vq_error last = {0};
    for (int i = 0; i < u->nsentinels; i++) {
        vq_redis_addr m = {{0}, 0};
        vq_error e = {0};
        if (ask_one(u, &u->sentinels[i], ms, &m, &e) != 0) {
            last = e;
            continue;
        }
        memcpy(u->host, m.host, sizeof u->host);
        u->port = m.port;
        if (i > 0) { /* ask the one that answered first next time */
            vq_redis_addr first = u->sentinels[0];
            u->sentinels[0] = u->sentinels[i];
            u->sentinels[i] = first;
        }
        return 0;
    }
    u->host[0] = '\0';
    return vq_error_set(err, VQ_EREDIS, "redis sentinel %s: no sentinel named the master (%s)",
                        u->master, last.text);
}

int vq_sentinel_check_role_(redisContext *c, const vq_redis_url *u, vq_error *err)
{
    redisReply *rep = redisCommand(c, "ROLE");
    if (!rep)
        return vq_error_set(err, VQ_EREDIS, "redis %s:%d: %s", u->host, u->port, c->errstr);
    int rc = 0;
    if (rep->type == REDIS_REPLY_ERROR)
        rc = vq_error_set(err, VQ_EREDIS, "redis %s:%d: ROLE failed: %s", u->host, u->port,
                          rep->str);
    else if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0 ||
             rep->element[0]->type != REDIS_REPLY_STRING)
        rc = vq_error_set(err, VQ_EREDIS, "redis %s:%d: unexpected ROLE answer", u->host, u->port);
    else if (strcmp(rep->element[0]->str, "master") != 0)
        rc = vq_error_set(err, VQ_EREDIS,
                          "redis %s:%d, named master of %s by a sentinel, is a %s (failover "
                          "under way?)",
                          u->host, u->port, u->master, rep->element[0]->str);
    freeReplyObject(rep);
    return rc;
}

int vq_sentinel_failover_reply_(const redisReply *rep)
{
    static const char *const codes[] = {"READONLY ", "MASTERDOWN ", "UNBLOCKED ", "NOREPLICAS "};
    if (!rep || rep->type != REDIS_REPLY_ERROR) return 0;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strncmp(rep->str, codes[i], strlen(codes[i])) == 0) return 1;
    return 0;
}
