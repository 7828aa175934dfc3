/* KEY=VALUE files: parse strictly, keep file order, write sorted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "sha1_int.h"
#include "volq/kv.h"

#define CKSUM_KEY "_SHA_CKSUM"

static int key_valid(const char *k, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

static int hex40(const char *v, size_t n)
{
    if (n != 40) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) return 0;
    return 1;
}

static ssize_t find(const vq_kv *kv, const char *key, size_t klen)
{
    for (size_t i = 0; i < kv->n; i++)
        if (strncmp(kv->v[i].key, key, klen) == 0 && kv->v[i].key[klen] == '\0')
            return (ssize_t)i;
    return -1;
}

/* Appends a pair (the key must be new); copies both. */
static int append(vq_kv *kv, const char *k, size_t klen, const char *v, size_t vlen)
{
    if (kv->n == kv->cap) {
        size_t cap = kv->cap ? kv->cap * 2 : 16;
        vq_kv_pair *nv = realloc(kv->v, cap * sizeof *nv);
        if (!nv) return VQ_ENOMEM;
        kv->v = nv;
        kv->cap = cap;
    }
    char *key = strndup(k, klen), *val = strndup(v, vlen);
    if (!key || !val) {
        free(key);
        free(val);
        return VQ_ENOMEM;
    }
    kv->v[kv->n].key = key;
    kv->v[kv->n].val = val;
    kv->n++;
    return 0;
}

typedef struct {
    unsigned flags;
    vq_kv *out;
    char *cksum;   /* may be NULL */
    int have_cksum;
    int saw_eof;
} parse_state;

/* One line (without its '\n'): n bytes, line number ln for messages. */
static int parse_line(parse_state *ps, const char *s, size_t n, int ln, vq_error *err)
{
    if ((ps->flags & VQ_KV_EOF) && n == 3 && memcmp(s, "EOF", 3) == 0) {
        ps->saw_eof = 1;
        return 0;
    }
    const char *eq = memchr(s, '=', n);
    if (!eq) return vq_error_set(err, VQ_EINVAL, "line %d: no '='", ln);
    size_t klen = (size_t)(eq - s), vlen = n - klen - 1;
    if (!key_valid(s, klen)) return vq_error_set(err, VQ_EINVAL, "line %d: bad key", ln);
    if ((ps->flags & VQ_KV_CKSUM) && klen == strlen(CKSUM_KEY) &&
        memcmp(s, CKSUM_KEY, klen) == 0) {
        if (ps->have_cksum)
            return vq_error_set(err, VQ_EINVAL, "line %d: second %s", ln, CKSUM_KEY);
        if (!hex40(eq + 1, vlen))
            return vq_error_set(err, VQ_EINVAL, "line %d: %s is not 40 hex digits", ln, CKSUM_KEY);
        ps->have_cksum = 1;
        if (ps->cksum) memcpy(ps->cksum, eq + 1, 40), ps->cksum[40] = '\0';
        return 0;
    }
    if (find(ps->out, s, klen) >= 0)
        return vq_error_set(err, VQ_EINVAL, "line %d: duplicate key %.*s", ln, (int)klen, s);
    if (ps->out->n >= VQ_KV_MAX_PAIRS)
        return vq_error_set(err, VQ_EINVAL, "line %d: more than %d keys", ln, VQ_KV_MAX_PAIRS);
    if (append(ps->out, s, klen, eq + 1, vlen) < 0)
        return vq_error_set(err, VQ_ENOMEM, "line %d: out of memory", ln);
    return 0;
}

static int parse_lines(parse_state *ps, const char *buf, size_t len, vq_error *err)
{
    size_t pos = 0;
    for (int ln = 1; pos < len && !ps->saw_eof; ln++) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        if (memchr(buf + pos, '\0', n))
            return vq_error_set(err, VQ_EINVAL, "line %d: NUL byte", ln);
        int rc = parse_line(ps, buf + pos, n, ln, err);
        if (rc < 0) return rc;
        pos += n + 1;
    }
    if ((ps->flags & VQ_KV_EOF) && !ps->saw_eof)
        return vq_error_set(err, VQ_EINVAL, "no EOF line");
    return 0;
}

int vq_kv_parse(const char *buf, size_t len, unsigned flags, vq_kv *out, char cksum[41],
                vq_error *err)
{
    parse_state ps = {.flags = flags, .out = out, .cksum = cksum};
    if (cksum) cksum[0] = '\0';
    int rc = parse_lines(&ps, buf, len, err);
    if (rc < 0) {
        vq_kv_free(out);
        if (cksum) cksum[0] = '\0';
    }
    return rc;
}

const char *vq_kv_get(const vq_kv *kv, const char *key)
{
    ssize_t i = find(kv, key, strlen(key));
    return i < 0 ? NULL : kv->v[i].val;
}

int vq_kv_set(vq_kv *kv, const char *key, const char *val, vq_error *err)
{
    size_t klen = strlen(key);
    if (!key_valid(key, klen)) return vq_error_set(err, VQ_EINVAL, "bad key \"%s\"", key);
    if (strchr(val, '\n')) return vq_error_set(err, VQ_EINVAL, "%s: value has a newline", key);
    ssize_t i = find(kv, key, klen);
    if (i < 0) {
        if (kv->n >= VQ_KV_MAX_PAIRS)
            return vq_error_set(err, VQ_EINVAL, "%s: more than %d keys", key, VQ_KV_MAX_PAIRS);
        if (append(kv, key, klen, val, strlen(val)) < 0)
            return vq_error_set(err, VQ_ENOMEM, "%s: out of memory", key);
        return 0;
    }
    char *nv = strdup(val);
    if (!nv) return vq_error_set(err, VQ_ENOMEM, "%s: out of memory", key);
    free(kv->v[i].val);
    kv->v[i].val = nv;
    return 0;
}

void vq_kv_del(vq_kv *kv, const char *key)
{
    ssize_t i = find(kv, key, strlen(key));
    if (i < 0) return;
    free(kv->v[i].key);
    free(kv->v[i].val);
    memmove(&kv->v[i], &kv->v[i + 1], (kv->n - (size_t)i - 1) * sizeof kv->v[0]);
    kv->n--;
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(const vq_kv_pair *const *)a)->key, (*(const vq_kv_pair *const *)b)->key);
}

/* A new array of pointers to kv's pairs, sorted by key; NULL on ENOMEM. */
static const vq_kv_pair **sorted(const vq_kv *kv)
{
    const vq_kv_pair **s = malloc((kv->n ? kv->n : 1) * sizeof *s);
    if (!s) return NULL;
    for (size_t i = 0; i < kv->n; i++) s[i] = &kv->v[i];
    qsort(s, kv->n, sizeof *s, by_key);
    return s;
}

/* Checksum over already sorted pairs. */
static void checksum_sorted(const vq_kv_pair **s, size_t n, char out[41])
{
    vq_sha1 h;
    vq_sha1_init_(&h);
    for (size_t i = 0; i < n; i++) {
        vq_sha1_update_(&h, s[i]->key, strlen(s[i]->key));
        vq_sha1_update_(&h, "=", 1);
        vq_sha1_update_(&h, s[i]->val, strlen(s[i]->val));
    }
    vq_sha1_hex_(&h, out);
}

void vq_kv_checksum(const vq_kv *kv, char out[41])
{
    const vq_kv_pair **s = sorted(kv);
    if (!s) {
        /* Without memory there is no checksum; an impossible value never matches. */
        memset(out, 'x', 40);
        out[40] = '\0';
        return;
    }
    checksum_sorted(s, kv->n, out);
    free(s);
}

/* Bytes needed for the formatted output, tail line included. */
static size_t format_size(const vq_kv *kv)
{
    size_t total = sizeof CKSUM_KEY + 42; /* "_SHA_CKSUM=" + 40 hex + "\n", covers "EOF\n" */
    for (size_t i = 0; i < kv->n; i++) total += strlen(kv->v[i].key) + strlen(kv->v[i].val) + 2;
    return total + 1;
}

char *vq_kv_format(const vq_kv *kv, unsigned flags, size_t *len)
{
    const vq_kv_pair **s = sorted(kv);
    size_t cap = format_size(kv), pos = 0;
    char *buf = s ? malloc(cap) : NULL;
    if (!buf) goto out_free_sorted;
    for (size_t i = 0; i < kv->n; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s=%s\n", s[i]->key, s[i]->val);
    if (flags & VQ_KV_CKSUM) {
        char sum[41];
        checksum_sorted(s, kv->n, sum);
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s=%s\n", CKSUM_KEY, sum);
    } else if (flags & VQ_KV_EOF) {
        pos += (size_t)snprintf(buf + pos, cap - pos, "EOF\n");
    }
    /* format_size() counted every byte, so no snprintf above was cut. */
    if (len) *len = pos;
out_free_sorted:
    free(s);
    return buf;
}

void vq_kv_free(vq_kv *kv)
{
    if (!kv) return;
    for (size_t i = 0; i < kv->n; i++) {
        free(kv->v[i].key);
        free(kv->v[i].val);
    }
    free(kv->v);
    kv->v = NULL;
    kv->n = kv->cap = 0;
}
