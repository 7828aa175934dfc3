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

#endif
