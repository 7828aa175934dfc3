/* Ids: every id volq accepts is a canonical lower-case UUID. */
#ifndef VOLQ_UUID_H
#define VOLQ_UUID_H
#include <stddef.h>

#define VQ_UUID_LEN 36
#define VQ_UUID_SIZE (VQ_UUID_LEN + 1)

/* The parent of a base volume. */
#define VQ_UUID_BLANK "00000000-0000-0000-0000-000000000000"

/* 1 when s is exactly 36 chars of 8-4-4-4-12 lower-case hex, else 0.  NULL is not valid. */
int vq_uuid_valid(const char *s);

/* Same, for a buffer that is not NUL-terminated. */
int vq_uuid_valid_n(const char *s, size_t len);

/* Writes a new random UUID into out. */
void vq_uuid_new(char out[VQ_UUID_SIZE]);

#endif
