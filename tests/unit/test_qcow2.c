/* The qcow2 header reader against hand-built hostile headers (in memfds). */
#include <sys/mman.h>
#include <unistd.h>

#include "t.h"
#include "volq/qcow2.h"

#define CLUSTER 65536

typedef struct {
    unsigned char b[8192];
    size_t len; /* file size */
} img;

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (24 - 8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* A valid header of version v, 1 GiB, 64 KiB clusters, no backing. */
static void header(img *m, uint32_t v)
{
    memset(m, 0, sizeof *m);
    put32(m->b, 0x514649fb);
    put32(m->b + 4, v);
    put32(m->b + 20, 16);
    put64(m->b + 24, 1ull << 30);
    if (v == 3) {
        put32(m->b + 96, 4);    /* refcount_order */
        put32(m->b + 100, 104); /* header_length */
    }
    m->len = 4096;
}

static void backing(img *m, uint64_t off, uint32_t len, const char *name)
{
    put64(m->b + 8, off);
    put32(m->b + 16, len);
    if (name) memcpy(m->b + off, name, strlen(name));
}

/* Writes an extension at off; returns the offset after it (padded). */
static size_t ext(img *m, size_t off, uint32_t type, uint32_t len, const char *data)
{
    put32(m->b + off, type);
    put32(m->b + off + 4, len);
    if (data) memcpy(m->b + off + 8, data, strlen(data));
    return off + 8 + ((len + 7) & ~7u);
}

static int read_img(const img *m, vq_qcow2 *q, vq_error *e)
{
    int fd = memfd_create("qcow2", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, m->b, m->len) == (ssize_t)m->len);
    int rc = vq_qcow2_read(fd, q, e);
    close(fd);
    return rc;
}

static void expect_bad(const img *m, const char *text)
{
    vq_qcow2 q;
    vq_error e = {0};
    CHECK_INT(read_img(m, &q, &e), VQ_EINVAL);
    CHECK_STR(e.text, text);
    CHECK_INT(q.has_backing, 0);
    CHECK_INT(q.version, 0);
}

static void test_qcow2_v2_plain(void)
{
    img m;
    header(&m, 2);
    vq_qcow2 q;
    CHECK_INT(read_img(&m, &q, NULL), 0);
    CHECK_INT(q.version, 2);
    CHECK_INT(q.size, 1ull << 30);
    CHECK_INT(q.cluster_bits, 16);
    CHECK_INT(q.has_backing, 0);
    CHECK_INT(q.has_data_file, 0);
    CHECK_STR(q.backing_fmt, "");
    CHECK_STR(vq_qcow2_compat(q.version), "0.10");
    CHECK_STR(vq_qcow2_compat(3), "1.1");
    CHECK(vq_qcow2_compat(4) == NULL);
}

static void test_qcow2_v3_backing_and_format(void)
{
    img m;
    header(&m, 3);
    size_t off = ext(&m, 104, 0xe2792aca, 5, "qcow2");
    ext(&m, off, 0, 0, NULL);
    backing(&m, 0x200, 36, "6a1b2c3d-0000-4000-8000-00000000b001");
    vq_qcow2 q;
    CHECK_INT(read_img(&m, &q, NULL), 0);
    CHECK_INT(q.version, 3);
    CHECK_INT(q.has_backing, 1);
    CHECK_STR(q.backing, "6a1b2c3d-0000-4000-8000-00000000b001");
    CHECK_STR(q.backing_fmt, "qcow2");
}

/* The extension area may end exactly at the backing name without a terminator. */
static void test_qcow2_extensions_fill_area(void)
{
    img m;
    header(&m, 2);
    size_t off = ext(&m, 72, 0xe2792aca, 3, "raw");
    backing(&m, off, 4, "base");
    vq_qcow2 q;
    CHECK_INT(read_img(&m, &q, NULL), 0);
    CHECK_STR(q.backing_fmt, "raw");
    CHECK_STR(q.backing, "base");
}

/* 128 KiB clusters: qemu reads extensions to the end of the first cluster.
 * One of 65,528 bytes fills the 64 KiB volq walks; a backing format after it
 * would be qemu's and not volq's: the header is refused. */
static void test_qcow2_extensions_past_the_walk(void)
{
    static unsigned char b[140 << 10];
    memset(b, 0, sizeof b);
    put32(b, 0x514649fb);
    put32(b + 4, 2);
    put32(b + 20, 17);
    put64(b + 24, 1ull << 30);
    put32(b + 72, 0x12345678);
    put32(b + 76, 65528);
    put32(b + 72 + 8 + 65528, 0xe2792aca);
    put32(b + 72 + 8 + 65528 + 4, 5);
    memcpy(b + 72 + 16 + 65528, "qcow2", 5);
    int fd = memfd_create("qcow2", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, b, sizeof b) == (ssize_t)sizeof b);
    vq_qcow2 q;
    vq_error e = {0};
    CHECK_INT(vq_qcow2_read(fd, &q, &e), VQ_EINVAL);
    CHECK_CONTAINS(e.text, "header extensions go on past 64 KiB");
    /* Ended before the cut: read as usual. */
    put32(b + 76, 16);
    put32(b + 72 + 8 + 16, 0);
    REQUIRE(pwrite(fd, b, 4096, 0) == 4096);
    vq_error_clear(&e);
    CHECK_INT(vq_qcow2_read(fd, &q, &e), 0);
    close(fd);
}

static void test_qcow2_truncated_and_bad_magic(void)
{
    img m;
    header(&m, 2);
    m.len = 50;
    expect_bad(&m, "qcow2 header: truncated");
    header(&m, 3);
    m.len = 90; /* a v2-sized file that claims v3 */
    expect_bad(&m, "qcow2 header: truncated");
    header(&m, 2);
    m.b[0] = 'X';
    expect_bad(&m, "qcow2 header: bad magic");
    header(&m, 4);
    expect_bad(&m, "qcow2 header: unknown version 4");
    header(&m, 2);
    put32(m.b + 20, 40);
    expect_bad(&m, "qcow2 header: cluster_bits 40 out of range");
    header(&m, 2);
    put64(m.b + 24, ~0ull);
    expect_bad(&m, "qcow2 header: virtual size too large");
}

static void test_qcow2_lying_backing_offsets(void)
{
    img m;
    header(&m, 2);
    backing(&m, 4000, 200, NULL); /* past the 4096-byte file */
    expect_bad(&m, "qcow2 header: backing file offset beyond end of file");
    header(&m, 2);
    backing(&m, 0x200, 0xffffffffu, NULL);
    expect_bad(&m, "qcow2 header: backing file name of 4294967295 bytes is too long");
    header(&m, 2);
    backing(&m, 1ull << 40, 10, NULL);
    expect_bad(&m, "qcow2 header: backing file name outside the first cluster");
    header(&m, 2);
    backing(&m, 0xfffffffffffffff0ull, 100, NULL); /* offset + len wraps */
    expect_bad(&m, "qcow2 header: backing file name outside the first cluster");
    header(&m, 2);
    backing(&m, 8, 10, NULL); /* inside the header itself */
    expect_bad(&m, "qcow2 header: backing file name outside the first cluster");
    header(&m, 2);
    backing(&m, 0x200, 0, NULL);
    expect_bad(&m, "qcow2 header: backing file offset without a name");
    header(&m, 2);
    backing(&m, 0x200, 8, "ab");
    expect_bad(&m, "qcow2 header: NUL byte in backing file name");
}

static void test_qcow2_v3_header_length_lies(void)
{
    img m;
    header(&m, 3);
    put32(m.b + 100, 50);
    expect_bad(&m, "qcow2 header: header_length 50 too short");
    header(&m, 3);
    put32(m.b + 100, 1u << 20);
    expect_bad(&m, "qcow2 header: header_length 1048576 beyond the first cluster or the file");
    header(&m, 3);
    put32(m.b + 100, 8000); /* inside a cluster but past the 4096-byte file */
    expect_bad(&m, "qcow2 header: header_length 8000 beyond the first cluster or the file");
}

static void test_qcow2_extension_walk_off_the_end(void)
{
    img m;
    header(&m, 2);
    ext(&m, 72, 0x12345678, 0xfffffff0u, NULL);
    expect_bad(&m, "qcow2 header: header extension 0x12345678 runs past its area");
    header(&m, 2);
    size_t off = ext(&m, 72, 0xe2792aca, 100, "qcow2"); /* past the backing name */
    (void)off;
    backing(&m, 96, 4, "base");
    expect_bad(&m, "qcow2 header: header extension 0xe2792aca runs past its area");
    header(&m, 2);
    ext(&m, 72, 0xe2792aca, 40, "qcow2qcow2qcow2qcow2qcow2qcow2qcow2qcow2");
    expect_bad(&m, "qcow2 header: backing format of 40 bytes");
    /* Every 8 bytes an empty unknown extension, never a terminator, to the file end. */
    header(&m, 2);
    for (size_t p = 72; p + 8 <= m.len; p += 8) ext(&m, p, 0x11111111, 0, NULL);
    m.b[m.len - 4] = 0; /* the last header is cut: 4 bytes left */
    m.len -= 4;
    expect_bad(&m, "qcow2 header: header extension runs past its area");
}

static void test_qcow2_external_data_file(void)
{
    img m;
    header(&m, 3);
    size_t off = ext(&m, 104, 0x44415441, 9, "/dev/sda1");
    ext(&m, off, 0, 0, NULL);
    vq_qcow2 q;
    CHECK_INT(read_img(&m, &q, NULL), 0);
    CHECK_INT(q.has_data_file, 1);
    header(&m, 3);
    put64(m.b + 72, 1u << 2); /* the incompatible bit alone */
    CHECK_INT(read_img(&m, &q, NULL), 0);
    CHECK_INT(q.has_data_file, 1);
    CHECK_INT(q.incompatible, 4);
}

T_MAIN(T(test_qcow2_v2_plain), T(test_qcow2_v3_backing_and_format),
       T(test_qcow2_extensions_past_the_walk),
       T(test_qcow2_extensions_fill_area), T(test_qcow2_truncated_and_bad_magic),
       T(test_qcow2_lying_backing_offsets), T(test_qcow2_v3_header_length_lies),
       T(test_qcow2_extension_walk_off_the_end), T(test_qcow2_external_data_file))
