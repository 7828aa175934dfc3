/* SHA-1 after FIPS 180-1 (public-domain algorithm), streaming. */
#include <string.h>

#include "sha1_int.h"

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void compress(uint32_t h[5], const unsigned char p[64])
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);

    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d), k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d, k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d, k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void vq_sha1_init_(vq_sha1 *s)
{
    static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
                                   0xc3d2e1f0};
    memcpy(s->h, iv, sizeof iv);
    s->bytes = 0;
    s->nblock = 0;
}

void vq_sha1_update_(vq_sha1 *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->bytes += len;
    while (len > 0) {
        size_t n = sizeof s->block - s->nblock;
        if (n > len) n = len;
        memcpy(s->block + s->nblock, p, n);
        s->nblock += n, p += n, len -= n;
        if (s->nblock == sizeof s->block) {
            compress(s->h, s->block);
            s->nblock = 0;
        }
    }
}

void vq_sha1_final_(vq_sha1 *s, unsigned char out[VQ_SHA1_LEN])
{
    uint64_t bits = s->bytes * 8; /* taken before the padding changes s->bytes */
    unsigned char pad[72] = {0x80};
    /* Pad to 56 mod 64, then the 8-byte big-endian length. */
    size_t npad = (s->nblock < 56 ? 56 : 120) - s->nblock;
    for (int i = 0; i < 8; i++) pad[npad + i] = (unsigned char)(bits >> (56 - 8 * i));
    vq_sha1_update_(s, pad, npad + 8);
    for (int i = 0; i < 20; i++) out[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

void vq_sha1_hex_(vq_sha1 *s, char out[VQ_SHA1_HEX_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[VQ_SHA1_LEN];
    vq_sha1_final_(s, d);
    for (int i = 0; i < VQ_SHA1_LEN; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[40] = '\0';
}
