/* Shared inside queue/ only: knobs of the Redis handle the queue needs. */
#ifndef VOLQ_QUEUE_REDIS_INT_H
#define VOLQ_QUEUE_REDIS_INT_H
#include "volq/redis.h"

/* A blocking command (BLMOVE, XREAD BLOCK) waits up to block_ms on the server:
 * the socket read timeout becomes the handle's timeout plus block_ms until
 * called again with 0. */
void vq_redis_block_(vq_redis *r, int block_ms);

/* The URL without its password, for logs ("redis://host:6379/0", "unix:///p"). */
void vq_redis_url_safe_(const vq_redis *r, char *out, size_t outsz);

/* AUTH user pass (or AUTH pass) on c when u has a password; 0 otherwise. */
int vq_redis_auth_(redisContext *c, const vq_redis_url *u, vq_error *err);

/* ---- Redis Sentinel (queue/sentinel.c) ---------------------------------- */

/* Asks u's sentinels in turn, each within timeout_ms, for the address of the
 * master named u->master; fills u->host and u->port and moves the sentinel
 * that answered to the front of u->sentinels.  VQ_EREDIS when none named it. */
int vq_sentinel_master_(vq_redis_url *u, int timeout_ms, vq_error *err);

/* ROLE on c (connected to u->host:u->port): 0 when the server is a master,
 * VQ_EREDIS otherwise. */
int vq_sentinel_check_role_(redisContext *c, const vq_redis_url *u, vq_error *err);

/* An error reply of a server that is no longer, or not yet, the master
 * (READONLY, MASTERDOWN, UNBLOCKED, NOREPLICAS): time to ask the sentinels. */
int vq_sentinel_failover_reply_(const redisReply *rep);

#endif
