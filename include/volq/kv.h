/* KEY=VALUE files as VDSM writes them: volume .meta and dom_md/metadata. */
#ifndef VOLQ_KV_H
#define VOLQ_KV_H
#include <stddef.h>

#include "volq/error.h"

/* Limits that make a hostile file harmless: a .meta is 512 bytes at most
 * (VDSM's slot size on block domains, kept on file domains); a domain's
 * metadata is a few KiB, 64 KiB leaves room; no line is longer than that. */
#define VQ_META_MAX 512
#define VQ_DOMMD_MAX 65536
#define VQ_KV_MAX_PAIRS 128

typedef struct vq_kv_pair {
    char *key; /* owned, NUL-terminated */
    char *val; /* owned, NUL-terminated, may be "" */
} vq_kv_pair;

/* Keeps the pairs in file order; vq_kv_format() sorts. */
typedef struct vq_kv {
    vq_kv_pair *v;
    size_t n, cap;
} vq_kv;

enum {
    VQ_KV_EOF = 1,    /* a line "EOF" must end the pairs (.meta); lines after it are ignored */
    VQ_KV_CKSUM = 2,  /* a last line _SHA_CKSUM=... is split off (domain metadata) */
};

/* Parses buf (not NUL-terminated, len bytes) into out, which must be zeroed or
 * freed before.  Rejects NUL bytes, lines without '=', empty keys, keys that are
 * not [A-Za-z0-9_], duplicate keys, more than VQ_KV_MAX_PAIRS.  With VQ_KV_CKSUM,
 * *cksum (if not NULL) receives the _SHA_CKSUM value (41 bytes) or "" when absent.
 * On error out is left empty.  The one-line reason says which line is wrong. */
int vq_kv_parse(const char *buf, size_t len, unsigned flags, vq_kv *out, char cksum[41],
                vq_error *err);

/* Borrowed: valid until the pair is changed or kv is freed.  NULL when absent. */
const char *vq_kv_get(const vq_kv *kv, const char *key);

/* Adds or replaces; copies key and val. */
int vq_kv_set(vq_kv *kv, const char *key, const char *val, vq_error *err);

void vq_kv_del(vq_kv *kv, const char *key);

/* Hex SHA-1 of the pairs as VDSM seals dom_md/metadata: "KEY=VALUE" strings
 * sorted by key, concatenated without separators. out gets 40 hex chars + NUL. */
void vq_kv_checksum(const vq_kv *kv, char out[41]);

/* Returns a new buffer (free with free()) with the pairs sorted by key, one
 * "KEY=VALUE\n" a line, then "EOF\n" with VQ_KV_EOF or "_SHA_CKSUM=<sha1>\n"
 * with VQ_KV_CKSUM.  *len gets its length.  NULL on ENOMEM. */
char *vq_kv_format(const vq_kv *kv, unsigned flags, size_t *len);

/* Frees the pairs; kv is left empty and reusable.  Accepts NULL. */
void vq_kv_free(vq_kv *kv);

#endif
