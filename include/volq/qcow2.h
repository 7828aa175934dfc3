/* The qcow2 header, read directly (no qemu-img process) and treated as hostile. */
#ifndef VOLQ_QCOW2_H
#define VOLQ_QCOW2_H
#include <stdint.h>
#include <sys/stat.h>

#include "volq/error.h"

/* qemu limits a backing file name to 1023 bytes. */
#define VQ_QCOW2_BACKING_MAX 1023

typedef struct vq_qcow2 {
    uint32_t version;         /* 2 = compat 0.10, 3 = compat 1.1 */
    uint64_t size;            /* virtual size in bytes */
    uint32_t cluster_bits;
    uint64_t incompatible;    /* incompatible feature bits (v3; 0 on v2) */
    int has_backing;
    char backing[VQ_QCOW2_BACKING_MAX + 1]; /* NUL-terminated; may hold any bytes but NUL */
    char backing_fmt[32];     /* from the header extension, "" when absent */
    int has_data_file;        /* external data-file extension or incompatible bit 2 */
} vq_qcow2;

/* Reads the header from the start of fd (pread, the offset is not moved).
 * Every offset and length is checked against the file size and the limits above;
 * a bad magic, an unknown version, a truncated or lying header is VQ_EINVAL with
 * the reason ("qcow2 header: backing file offset beyond end of file"). */
int vq_qcow2_read(int fd, vq_qcow2 *out, vq_error *err);
/* The same with fd's fstat() already taken by the caller (st, borrowed): a
 * disk scan stats each volume anyway, and saves one system call in 14. */
int vq_qcow2_read_stat(int fd, const struct stat *st, vq_qcow2 *out, vq_error *err);

/* "0.10" for 2, "1.1" for 3, NULL otherwise. */
const char *vq_qcow2_compat(uint32_t version);

#endif
