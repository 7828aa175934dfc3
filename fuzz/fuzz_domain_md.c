/* vq_kv_parse with VQ_KV_CKSUM: dom_md/metadata as VDSM seals it.  On
 * success every key is [A-Za-z0-9_]+, no value holds a newline or NUL, the
 * seal is 40 hex digits or absent, and the pairs survive vq_kv_format() with
 * a fresh seal: the second parse finds the seal vq_kv_checksum() computes. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "volq/kv.h"

static void check_pairs(const vq_kv *kv)
{
    for (size_t i = 0; i < kv->n; i++) {
        const char *k = kv->v[i].key;
        FUZZ_CHECK(k[0] != '\0');
        FUZZ_CHECK(strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
                   strlen(k));
        FUZZ_CHECK(strcmp(k, "_SHA_CKSUM") != 0);
        FUZZ_CHECK(strchr(kv->v[i].val, '\n') == NULL);
        FUZZ_CHECK(vq_kv_get(kv, k) == kv->v[i].val); /* no duplicate key */
    }
    FUZZ_CHECK(kv->n <= VQ_KV_MAX_PAIRS);
}

static void check_round_trip(const vq_kv *kv)
{
    char sum[41], seal[41];
    vq_kv_checksum(kv, sum);
    FUZZ_CHECK(strlen(sum) == 40);
    size_t len = 0;
    char *text = vq_kv_format(kv, VQ_KV_CKSUM, &len);
    FUZZ_CHECK(text != NULL);
    vq_kv kv2 = {0};
    vq_error e = {0};
    FUZZ_CHECK(vq_kv_parse(text, len, VQ_KV_CKSUM, &kv2, seal, &e) == 0);
    FUZZ_CHECK(strcmp(seal, sum) == 0);
    FUZZ_CHECK(kv2.n == kv->n);
    for (size_t i = 0; i < kv->n; i++) {
        const char *v = vq_kv_get(&kv2, kv->v[i].key);
        FUZZ_CHECK(v && strcmp(v, kv->v[i].val) == 0);
    }
    vq_kv_free(&kv2);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > VQ_DOMMD_MAX) return 0; /* vq_fs_read() refuses larger files */
    vq_kv kv = {0};
    vq_error err = {0};
    char cksum[41];
    int rc = vq_kv_parse((const char *)data, size, VQ_KV_CKSUM, &kv, cksum, &err);
    if (rc == 0) {
        FUZZ_CHECK(cksum[0] == '\0' || strlen(cksum) == 40);
        check_pairs(&kv);
        check_round_trip(&kv);
    } else {
        FUZZ_CHECK(rc < 0 && err.code == rc && err.text[0]);
        FUZZ_CHECK(strchr(err.text, '\n') == NULL);
        FUZZ_CHECK(kv.n == 0 && cksum[0] == '\0');
    }
    vq_kv_free(&kv);
    return 0;
}
