/* SHA-1 (FIPS 180-1), only for the _SHA_CKSUM seal of dom_md/metadata: not
 * used for anything that needs collision resistance. */
#ifndef VOLQ_SHA1_INT_H
#define VOLQ_SHA1_INT_H
#include <stddef.h>
#include <stdint.h>

#define VQ_SHA1_LEN 20
#define VQ_SHA1_HEX_SIZE 41 /* 40 hex digits + NUL */

typedef struct vq_sha1 {
    uint32_t h[5];
    uint64_t bytes;          /* message length so far */
    unsigned char block[64]; /* pending input, nblock bytes of it */
    size_t nblock;
} vq_sha1;

void vq_sha1_init_(vq_sha1 *s);
void vq_sha1_update_(vq_sha1 *s, const void *data, size_t len);
void vq_sha1_final_(vq_sha1 *s, unsigned char out[VQ_SHA1_LEN]);

/* Lower-case hex of a final digest; out gets 40 chars + NUL. */
void vq_sha1_hex_(vq_sha1 *s, char out[VQ_SHA1_HEX_SIZE]);

#endif
