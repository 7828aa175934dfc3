/* qemu-img commands volq runs, each built from validated UUIDs only. */
#ifndef VOLQ_QEMU_H
#define VOLQ_QEMU_H
#include <stdint.h>

#include "volq/spawn.h"

/* The binary: VOLQ_QEMU_IMG from the environment (a test-only setting, e.g. a
 * wrapper that hangs), else /usr/bin/qemu-img.  Must be an absolute path. */
const char *vq_qemu_img_path(void);

/* qemu-img amend -f qcow2 -o compat=1.1 VOL, run in the image folder imgdir
 * (an absolute path).  "in use" (qemu's "Failed to get ... lock") is VQ_EBUSY.
 * tick (may be NULL) is called right after qemu-img starts, then about every
 * 100 ms while it runs. */
int vq_qemu_amend(const char *imgdir, const char *vol, int timeout_ms, vq_spawn_tick tick,
                  void *arg, vq_error *err);

/* qemu-img create.  compat is "1.1" or "0.10" (ignored for raw); backing and
 * backing_fmt are a bare volume name and "qcow2"/"raw", or NULL. size in bytes
 * (0 with a backing file: the backing file's size).  tick (may be NULL) as for
 * vq_qemu_amend.  A failed create removes the file it made, except when tick
 * stopped it with VQ_ESTALE (the attempt lost its lease: what is there may be
 * another attempt's to clean by then).  A size the format or the file system
 * cannot hold ("The image size is too large ...") is VQ_EREFUSED. */
int vq_qemu_create(const char *imgdir, const char *vol, int raw, const char *compat,
                   uint64_t size, const char *backing, const char *backing_fmt, int timeout_ms,
                   vq_spawn_tick tick, void *arg, vq_error *err);

/* 1 when qemu's image lock on imgdir/vol is held by another process (a running
 * VM), probed with OFD locks as qemu takes them; 0 when free; <0 on error. */
int vq_qemu_in_use(const char *imgdir, const char *vol, vq_error *err);

#endif
