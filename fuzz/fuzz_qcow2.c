/* vq_qcow2_read on any bytes, through a memfd (it reads with pread and
 * fstat, as on a real volume).  On success the header is within qemu's
 * limits and its strings are terminated; on failure *out is zeroed. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "volq/qcow2.h"

static int memfd = -1;

static void check_header(const vq_qcow2 *q)
{
    FUZZ_CHECK(q->version == 2 || q->version == 3);
    FUZZ_CHECK(vq_qcow2_compat(q->version) != NULL);
    FUZZ_CHECK(q->cluster_bits >= 9 && q->cluster_bits <= 21);
    FUZZ_CHECK(q->size <= (uint64_t)INT64_MAX);
    FUZZ_CHECK(FUZZ_TERMINATED(q->backing) && FUZZ_TERMINATED(q->backing_fmt));
    FUZZ_CHECK(!q->has_backing || q->backing[0] != '\0');
    FUZZ_CHECK(q->has_backing || q->backing[0] == '\0');
    FUZZ_CHECK(q->version == 3 || q->incompatible == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) memfd = memfd_create("qcow2", MFD_CLOEXEC);
    FUZZ_CHECK(memfd >= 0);
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    FUZZ_CHECK(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size);
    vq_qcow2 q;
    vq_error err = {0};
    memset(&q, 0xa5, sizeof q);
    int rc = vq_qcow2_read(memfd, &q, &err);
    if (rc == 0) {
        check_header(&q);
    } else {
        static const vq_qcow2 zero;
        FUZZ_CHECK(rc < 0 && err.code == rc && err.text[0]);
        FUZZ_CHECK(memcmp(&q, &zero, sizeof q) == 0);
    }
    return 0;
}
