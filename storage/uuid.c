/* Canonical lower-case UUIDs: the only ids volq accepts. */
#include <string.h>
#include <pthread.h>
#include <sys/random.h>
#include <uuid/uuid.h>

#include "volq/uuid.h"

int vq_uuid_valid_n(const char *s, size_t len)
{
    if (!s || len != VQ_UUID_LEN) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int vq_uuid_valid(const char *s)
{
    return s && vq_uuid_valid_n(s, strnlen(s, VQ_UUID_LEN + 1));
}

/* Random bytes for UUIDs, taken from getrandom() 64 UUIDs at a time.  A
 * child of fork() must not repeat its parent's: fork empties the pool. */
#define POOL_UUIDS 64
static struct {
    unsigned char bytes[POOL_UUIDS * 16];
    size_t used;   /* UUIDs handed out of bytes */
    int hooked;    /* the fork handler is registered */
} pool = {.used = POOL_UUIDS};

static void pool_drop(void) { pool.used = POOL_UUIDS; }

static int pool_take(uuid_t u)
{
    if (!pool.hooked && pthread_atfork(NULL, NULL, pool_drop) == 0) pool.hooked = 1;
    if (!pool.hooked) pool.used = POOL_UUIDS; /* no handler: one draw per UUID */
    if (pool.used == POOL_UUIDS) {
        if (getrandom(pool.bytes, sizeof pool.bytes, 0) != (ssize_t)sizeof pool.bytes) return -1;
        pool.used = 0;
    }
    memcpy(u, pool.bytes + 16 * pool.used, 16);
    memset(pool.bytes + 16 * pool.used++, 0, 16); /* never handed out twice */
    return 0;
}

/* Version 4: 122 random bits from the kernel's CSPRNG.  (libuuid's
 * uuid_generate_random also reseeds random() from the pid and the clock on
 * every call: about 10 us, half the client time of a bulk accept.) */
void vq_uuid_new(char out[VQ_UUID_SIZE])
{
    uuid_t u;
    if (pool_take(u) != 0) {
        uuid_generate_random(u); /* no getrandom (kernels before 3.17): libuuid's own */
    } else {
        u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
        u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    }
    uuid_unparse_lower(u, out);
}
