/* SHA-1 against the FIPS 180-1 vectors and the padding boundaries. */
#include "../../storage/sha1_int.h"
#include "t.h"

static void hex_of(const void *data, size_t len, char out[VQ_SHA1_HEX_SIZE])
{
    vq_sha1 s;
    vq_sha1_init_(&s);
    vq_sha1_update_(&s, data, len);
    vq_sha1_hex_(&s, out);
}

static void test_sha1_fips_vectors(void)
{
    char h[VQ_SHA1_HEX_SIZE];
    hex_of("", 0, h);
    CHECK_STR(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    hex_of("abc", 3, h);
    CHECK_STR(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m, strlen(m), h);
    CHECK_STR(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    m = "The quick brown fox jumps over the lazy dog";
    hex_of(m, strlen(m), h);
    CHECK_STR(h, "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12");
}

static void test_sha1_million_a_in_odd_chunks(void)
{
    char chunk[997], h[VQ_SHA1_HEX_SIZE];
    memset(chunk, 'a', sizeof chunk);
    vq_sha1 s;
    vq_sha1_init_(&s);
    size_t left = 1000000;
    while (left > 0) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        vq_sha1_update_(&s, chunk, n);
        left -= n;
    }
    vq_sha1_hex_(&s, h);
    CHECK_STR(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

/* Lengths around the 56-byte padding limit and the 64-byte block. */
static void test_sha1_padding_boundaries(void)
{
    static const struct { size_t n; const char *hex; } v[] = {
        {55, "cef734ba81a024479e09eb5a75b6ddae62e6abf1"},
        {56, "901305367c259952f4e7af8323f480d59f81335b"},
        {63, "0ddc4e0cccd9a12850deb5abb0853a4425559fec"},
        {64, "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163"},
        {65, "78c741ddc482e4cdf8c474a0876347a0905b6233"},
        {119, "4300320394f7ee239bcdce7d3b8bcee173a0cd5c"},
        {120, "ceb2821639c4b6dcb10bce0e522ca2e608ce056d"},
    };
    char buf[128], h[VQ_SHA1_HEX_SIZE];
    memset(buf, 'x', sizeof buf);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        hex_of(buf, v[i].n, h);
        CHECK_STR(h, v[i].hex);
    }
}

T_MAIN(T(test_sha1_fips_vectors), T(test_sha1_million_a_in_odd_chunks),
       T(test_sha1_padding_boundaries))
