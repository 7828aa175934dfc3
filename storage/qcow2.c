/* The qcow2 header, read with pread and checked like input from an attacker:
 * every offset and length is bounded by the file size and by qemu's limits. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "volq/qcow2.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define V2_HEADER_LEN 72
#define V3_HEADER_LEN 104        /* the fixed part of a version 3 header */
#define MIN_CLUSTER_BITS 9       /* qemu's limits: 512 B .. 2 MiB clusters */
#define MAX_CLUSTER_BITS 21
#define EXT_BACKING_FORMAT 0xe2792acau
#define EXT_DATA_FILE 0x44415441u
#define INCOMPAT_DATA_FILE (1u << 2)
/* Extensions live in the first cluster; real images use a few hundred bytes.
 * The walk stops here (a data file also needs incompatible bit 2, which is
 * always read). */
#define EXT_AREA_MAX 65536

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

#define BAD(...) vq_error_set(err, VQ_EINVAL, "qcow2 header: " __VA_ARGS__)

/* The first HEAD_MAX bytes of the file (at most), read with one pread: the
 * header, its extensions and the backing name of any usual image lie there,
 * so a header costs one read instead of one per field.  What lies beyond is
 * read where it is; nothing past the first cluster is ever read. */
#define HEAD_MAX 4096

typedef struct src {
    int fd;
    size_t len;                /* bytes of head read */
    unsigned char head[HEAD_MAX];
} src;

/* Reads exactly len bytes at off, or fails. */
static int read_at(const src *s, void *buf, size_t len, uint64_t off, vq_error *err)
{
    if (off <= s->len && len <= s->len - off) {
        memcpy(buf, s->head + off, len);
        return 0;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(s->fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return vq_error_set(err, VQ_EIO, "qcow2 header: read: %s", strerror(errno));
        if (r == 0) return BAD("truncated");
        got += (size_t)r;
    }
    return 0;
}

typedef struct {
    uint64_t file_size;
    uint64_t cluster_size;
    uint64_t backing_off;
    uint32_t backing_len;
    uint32_t header_len;
} layout;

/* The fixed fields: magic, version, sizes, v3 header length. */
static int check_fixed(const unsigned char *h, layout *l, vq_qcow2 *q, vq_error *err)
{
    if (be32(h) != QCOW2_MAGIC) return BAD("bad magic");
    q->version = be32(h + 4);
    if (q->version != 2 && q->version != 3) return BAD("unknown version %u", q->version);
    q->cluster_bits = be32(h + 20);
    if (q->cluster_bits < MIN_CLUSTER_BITS || q->cluster_bits > MAX_CLUSTER_BITS)
        return BAD("cluster_bits %u out of range", q->cluster_bits);
    l->cluster_size = 1ull << q->cluster_bits;
    q->size = be64(h + 24);
    if (q->size > (uint64_t)INT64_MAX) return BAD("virtual size too large");
    l->backing_off = be64(h + 8);
    l->backing_len = be32(h + 16);
    l->header_len = V2_HEADER_LEN;
    if (q->version == 3) {
        if (l->file_size < V3_HEADER_LEN) return BAD("truncated");
        q->incompatible = be64(h + 72);
        l->header_len = be32(h + 100);
        if (l->header_len < V3_HEADER_LEN) return BAD("header_length %u too short", l->header_len);
        if (l->header_len > l->cluster_size || l->header_len > l->file_size)
            return BAD("header_length %u beyond the first cluster or the file", l->header_len);
    }
    return 0;
}

/* The backing file name: bounded by qemu's limit, the first cluster and the file. */
static int read_backing(const src *s, const layout *l, vq_qcow2 *q, vq_error *err)
{
    if (l->backing_off == 0) return 0;
    if (l->backing_len == 0) return BAD("backing file offset without a name");
    if (l->backing_len > VQ_QCOW2_BACKING_MAX)
        return BAD("backing file name of %u bytes is too long", l->backing_len);
    if (l->backing_off < l->header_len || l->backing_off > l->cluster_size ||
        l->backing_off + l->backing_len > l->cluster_size)
        return BAD("backing file name outside the first cluster");
    if (l->backing_off + l->backing_len > l->file_size)
        return BAD("backing file offset beyond end of file");
    int rc = read_at(s, q->backing, l->backing_len, l->backing_off, err);
    if (rc < 0) return rc;
    q->backing[l->backing_len] = '\0';
    if (memchr(q->backing, '\0', l->backing_len)) return BAD("NUL byte in backing file name");
    q->has_backing = 1;
    return 0;
}

/* The backing format extension's data: n bytes at off. */
static int read_backing_fmt(const src *s, uint64_t off, uint32_t n, vq_qcow2 *q, vq_error *err)
{
    if (n == 0 || n >= sizeof q->backing_fmt) return BAD("backing format of %u bytes", n);
    int rc = read_at(s, q->backing_fmt, n, off, err);
    if (rc < 0) return rc;
    q->backing_fmt[n] = '\0';
    if (memchr(q->backing_fmt, '\0', n)) return BAD("NUL byte in backing format");
    return 0;
}

/* Walks the header extensions between the end of the header and the backing
 * name (when there is one) or the end of the first cluster, cut at the file
 * end and at EXT_AREA_MAX.  Each is type, length, data padded to 8 bytes;
 * type 0 or the end of the area ends the walk.  Beyond the head, one small
 * pread per extension: a header is read without reading its cluster. */
static int read_extensions(const src *s, const layout *l, vq_qcow2 *q, vq_error *err)
{
    uint64_t end = l->cluster_size, pos = l->header_len;
    if (l->backing_off && l->backing_off < end) end = l->backing_off;
    if (end > l->file_size) end = l->file_size;
    int cut = end > pos + EXT_AREA_MAX;
    if (cut) end = pos + EXT_AREA_MAX;
    while (pos < end) {
        unsigned char h[8];
        if (end - pos < 8) return BAD("header extension runs past its area");
        int rc = read_at(s, h, sizeof h, pos, err);
        if (rc < 0) return rc;
        uint32_t t = be32(h), n = be32(h + 4);
        uint64_t padded = ((uint64_t)n + 7) & ~(uint64_t)7;
        if (t == 0) return 0;
        if (padded > end - pos - 8) return BAD("header extension 0x%08x runs past its area", t);
        if (t == EXT_DATA_FILE) q->has_data_file = 1;
        if (t == EXT_BACKING_FORMAT && (rc = read_backing_fmt(s, pos + 8, n, q, err)) < 0)
            return rc;
        pos += 8 + padded;
    }
    /* The area is full: qemu stops here too, unless volq cut it short (qemu
     * reads on to the end of the first cluster: what it would find there is
     * not known, e.g. a backing format or a data file). */
    if (cut) return BAD("header extensions go on past %d KiB", EXT_AREA_MAX / 1024);
    return 0;
}

/* Fills s->head with up to HEAD_MAX bytes from the start (fewer at the end of
 * the file, or if it shrinks meanwhile: read_at then reads the rest itself). */
static void read_head(src *s, uint64_t file_size)
{
    size_t want = file_size < HEAD_MAX ? (size_t)file_size : HEAD_MAX;
    s->len = 0;
    while (s->len < want) {
        ssize_t r = pread(s->fd, s->head + s->len, want - s->len, (off_t)s->len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        s->len += (size_t)r;
    }
}

int vq_qcow2_read(int fd, vq_qcow2 *out, vq_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        memset(out, 0, sizeof *out);
        return vq_error_set(err, VQ_EIO, "qcow2 header: stat: %s", strerror(errno));
    }
    return vq_qcow2_read_stat(fd, &st, out, err);
}

int vq_qcow2_read_stat(int fd, const struct stat *st, vq_qcow2 *out, vq_error *err)
{
    unsigned char h[V3_HEADER_LEN];
    layout l = {0};
    src s = {.fd = fd};
    memset(out, 0, sizeof *out);
    if (!S_ISREG(st->st_mode)) return BAD("not a regular file");
    l.file_size = (uint64_t)st->st_size;
    if (l.file_size < V2_HEADER_LEN) return BAD("truncated");
    size_t hlen = l.file_size < V3_HEADER_LEN ? V2_HEADER_LEN : V3_HEADER_LEN;
    read_head(&s, l.file_size);
    int rc = read_at(&s, h, hlen, 0, err);
    if (rc == 0) rc = check_fixed(h, &l, out, err);
    if (rc == 0) rc = read_backing(&s, &l, out, err);
    if (rc == 0) rc = read_extensions(&s, &l, out, err);
    if (rc == 0 && (out->incompatible & INCOMPAT_DATA_FILE)) out->has_data_file = 1;
    if (rc < 0) memset(out, 0, sizeof *out);
    return rc;
}

const char *vq_qcow2_compat(uint32_t version)
{
    return version == 2 ? "0.10" : version == 3 ? "1.1" : NULL;
}
