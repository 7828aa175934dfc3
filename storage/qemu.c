/* qemu-img amend / create, and qemu's image lock probed without qemu. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "volq/fsutil.h"
#include "volq/log.h"
#include "volq/qemu.h"
#include "volq/uuid.h"

#define QEMU_IMG_DEFAULT "/usr/bin/qemu-img"
/* qemu's file-posix driver takes OFD locks on one byte per permission:
 * RAW_LOCK_PERM_BASE (100) + bit for the permissions it holds and
 * RAW_LOCK_SHARED_BASE (200) + bit for those it does not share.  Any lock in
 * 100..299 means some qemu has the image open.  The range leaves room for
 * permission bits qemu may add later (7.2 has 5). */
#define LOCK_FIRST 100
#define LOCK_LEN 200
#define ARGV_MAX 16
#define TICK_MS 100 /* qemu-img's tick: the lease renewed, a fence's answer read */

const char *vq_qemu_img_path(void)
{
    const char *p = getenv("VOLQ_QEMU_IMG");
    if (!p || !*p) return QEMU_IMG_DEFAULT;
    if (p[0] != '/') {
        vq_log(VQ_LOG_WARN, "VOLQ_QEMU_IMG=%.100s is not an absolute path: using %s", p,
               QEMU_IMG_DEFAULT);
        return QEMU_IMG_DEFAULT;
    }
    return p;
}

/* imgdir absolute, vol a UUID: the only names volq ever hands to qemu-img. */
static int check_args(const char *imgdir, const char *vol, vq_error *err)
{
    if (!imgdir || imgdir[0] != '/')
        return vq_error_set(err, VQ_EINVAL, "image folder must be an absolute path");
    if (!vq_uuid_valid(vol))
        return vq_error_set(err, VQ_EINVAL, "volume id \"%.40s\" is not a UUID", vol ? vol : "");
    return 0;
}

/* qemu-img says 'Failed to get "write" lock' (or 'Failed to get shared
 * "write" lock', 'Failed to lock byte 100') when a VM or another qemu holds
 * the image.  A bare "lock" would also match "block". */
static int lock_error(const char *out)
{
    return (strstr(out, "Failed to get") && strstr(out, "lock")) ||
           strstr(out, "Failed to lock byte");
}

int vq_qemu_amend(const char *imgdir, const char *vol, int timeout_ms, vq_spawn_tick tick,
                  void *arg, vq_error *err)
{
    int rc = check_args(imgdir, vol, err);
    if (rc < 0) return rc;
    const char *argv[] = {vq_qemu_img_path(), "amend", "-f", "qcow2", "-o", "compat=1.1", vol,
                          NULL};
    vq_spawn_result res;
    vq_error e = {0};
    rc = vq_spawn_run(argv, imgdir, timeout_ms, tick, arg, TICK_MS, &res, &e);
    if (rc == VQ_ESPAWN && res.exited && lock_error(res.out))
        return vq_error_set(err, VQ_EBUSY, "volume %s is in use: %s", vol, e.text);
    if (rc != 0) vq_error_set(err, rc, "volume %s: %s", vol, e.text);
    return rc;
}

/* Builds the create argv into a (ARGV_MAX entries); opts and size are
 * caller buffers that must outlive the argv. */
static void create_argv(const char *a[ARGV_MAX], const char *vol, int raw, const char *opts,
                        const char *backing, const char *backing_fmt, const char *size)
{
    int n = 0;
    a[n++] = vq_qemu_img_path();
    a[n++] = "create";
    a[n++] = "-f";
    a[n++] = raw ? "raw" : "qcow2";
    if (!raw) a[n++] = "-o", a[n++] = opts;
    if (backing) a[n++] = "-b", a[n++] = backing, a[n++] = "-F", a[n++] = backing_fmt;
    /* -u: do not open the backing file; only possible when the size is given. */
    if (backing && size) a[n++] = "-u";
    a[n++] = vol;
    if (size) a[n++] = size;
    a[n] = NULL;
}

static int check_create(const char *imgdir, const char *vol, int raw, const char *compat,
                        uint64_t size, const char *backing, const char *backing_fmt,
                        vq_error *err)
{
    int rc = check_args(imgdir, vol, err);
    if (rc < 0) return rc;
    if (!raw && (!compat || (strcmp(compat, "1.1") != 0 && strcmp(compat, "0.10") != 0)))
        return vq_error_set(err, VQ_EINVAL, "volume %s: compat must be 1.1 or 0.10", vol);
    if (backing && (raw || !vq_uuid_valid(backing) || !backing_fmt ||
                    (strcmp(backing_fmt, "qcow2") != 0 && strcmp(backing_fmt, "raw") != 0)))
        return vq_error_set(err, VQ_EINVAL, "volume %s: bad backing file or format", vol);
    if (size == 0 && !backing)
        return vq_error_set(err, VQ_EINVAL, "volume %s: size 0 without a backing file", vol);
    return 0;
}

/* Opens imgdir/vol (no symlink on the last component) read-only; fd or -1. */
static int open_in(const char *imgdir, const char *vol, int flags, int *fd, vq_error *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", imgdir, vol) >= (int)sizeof path)
        return vq_error_set(err, VQ_EINVAL, "volume %s: path too long", vol);
    return vq_fs_open(AT_FDCWD, path, flags, fd, err);
}

/* qemu-img create would truncate an existing file: refuse instead. */
static int must_not_exist(const char *imgdir, const char *vol, vq_error *err)
{
    int fd;
    vq_error e = {0};
    int rc = open_in(imgdir, vol, O_RDONLY | O_NONBLOCK, &fd, &e);
    if (rc == VQ_ENOENT) return 0;
    if (rc == 0) close(fd);
    return vq_error_set(err, VQ_EEXIST, "volume %s already exists", vol);
}

static void remove_partial(const char *imgdir, const char *vol)
{
    int dfd = open(imgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    unlinkat(dfd, vol, 0);
    close(dfd);
}

int vq_qemu_create(const char *imgdir, const char *vol, int raw, const char *compat,
                   uint64_t size, const char *backing, const char *backing_fmt, int timeout_ms,
                   vq_spawn_tick tick, void *arg, vq_error *err)
{
    int rc = check_create(imgdir, vol, raw, compat, size, backing, backing_fmt, err);
    if (rc == 0) rc = must_not_exist(imgdir, vol, err);
    if (rc < 0) return rc;
    char opts[32], num[24];
    snprintf(opts, sizeof opts, "compat=%s", raw ? "1.1" : compat); /* "compat=0.10" fits */
    snprintf(num, sizeof num, "%" PRIu64, size);                    /* 20 digits at most */
    const char *argv[ARGV_MAX];
    create_argv(argv, vol, raw, opts, backing, backing_fmt, size ? num : NULL);
    vq_error e = {0};
    vq_spawn_result res;
    rc = vq_spawn_run(argv, imgdir, timeout_ms, tick, arg, TICK_MS, &res, &e);
    if (rc != 0) {
        if (rc != VQ_ESTALE) remove_partial(imgdir, vol); /* it did not exist before: ours */
        /* A size qcow2 (or, for raw, the disk's filesystem) cannot hold: no retry helps. */
        if (rc == VQ_ESPAWN && res.exited && strstr(res.out, "image size is too large"))
            rc = VQ_EREFUSED;
        return vq_error_set(err, rc, "volume %s: %s", vol, e.text);
    }
    return 0;
}

int vq_qemu_in_use(const char *imgdir, const char *vol, vq_error *err)
{
    int fd, rc = check_args(imgdir, vol, err);
    if (rc < 0) return rc;
    vq_error e = {0};
    rc = open_in(imgdir, vol, O_RDONLY | O_NONBLOCK, &fd, &e);
    if (rc < 0) return vq_error_set(err, rc, "volume %s: %s", vol, e.text);
    /* F_OFD_GETLK reports a conflicting lock of any other open file
     * description; asking about a write lock makes every lock conflict. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = LOCK_FIRST,
                       .l_len = LOCK_LEN};
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
        rc = vq_error_set(err, VQ_EIO, "volume %s: lock probe: %s", vol, strerror(errno));
        close(fd);
        return rc;
    }
    close(fd);
    return fl.l_type != F_UNLCK;
}
