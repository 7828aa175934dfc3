/* Bounded reads that never follow a symlink, and atomic rewrites. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "volq/fsutil.h"

/* Maps a failed openat() of path to a VQ_E* code and message. */
static int open_error(const char *path, int e, vq_error *err)
{
    if (e == ELOOP) return vq_error_set(err, VQ_EILLEGAL, "%s is a symlink", path);
    if (e == ENOENT) return vq_error_set(err, VQ_ENOENT, "%s does not exist", path);
    if (e == ENOTDIR) return vq_error_set(err, VQ_ENOENT, "%s: not a folder on the path", path);
    if (e == ENOMEM) return vq_error_set(err, VQ_ENOMEM, "%s: out of memory", path);
    return vq_error_set(err, VQ_EIO, "cannot open %s: %s", path, strerror(e));
}

/* Linux answers ENOTDIR, not ELOOP, for a symlink opened with
 * O_DIRECTORY|O_NOFOLLOW: look at the name itself to tell them apart. */
static int symlink_errno(int dirfd, const char *name, int e)
{
    struct stat st;
    if ((e == ENOTDIR || e == ELOOP) && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        return ELOOP;
    return e;
}

/* Opens one component name (no '/') of dirfd; O_NOFOLLOW refuses a symlink
 * (in the middle of a path too, where O_DIRECTORY is added). */
static int open_component(int dirfd, const char *name, int flags, const char *path, int *fd,
                          vq_error *err)
{
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return vq_error_set(err, VQ_EINVAL, "%s: bad path component \"%s\"", path, name);
    int f = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
    if (f < 0) return open_error(path, symlink_errno(dirfd, name, errno), err);
    *fd = f;
    return 0;
}

static int open_relative(int dirfd, const char *path, int flags, int *fd, vq_error *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return vq_error_set(err, VQ_EINVAL, "path too long");
    int cur = dirfd, rc = 0;
    char *name = buf, *slash;
    while ((slash = strchr(name, '/')) != NULL) {
        *slash = '\0';
        int next = -1;
        rc = open_component(cur, name, O_RDONLY | O_DIRECTORY, path, &next, err);
        if (cur != dirfd) close(cur);
        if (rc < 0) return rc;
        cur = next;
        name = slash + 1;
    }
    rc = open_component(cur, name, flags, path, fd, err);
    if (cur != dirfd) close(cur);
    return rc;
}

int vq_fs_open(int dirfd, const char *path, int flags, int *fd, vq_error *err)
{
    if (!path || !path[0]) return vq_error_set(err, VQ_EINVAL, "empty path");
    if (path[0] == '/') {
        int f = open(path, flags | O_NOFOLLOW | O_CLOEXEC);
        if (f < 0) return open_error(path, symlink_errno(AT_FDCWD, path, errno), err);
        *fd = f;
        return 0;
    }
    return open_relative(dirfd, path, flags, fd, err);
}

/* Reads at most max + 1 bytes of fd into a new buffer (one more than allowed
 * tells a too large file from one of exactly max bytes, even if it grows). */
static int read_bounded(int fd, const char *name, size_t max, char **out, size_t *len,
                        vq_error *err)
{
    if (max > SIZE_MAX - 2) return vq_error_set(err, VQ_EINVAL, "%s: bad limit", name);
    char *buf = malloc(max + 2);
    if (!buf) return vq_error_set(err, VQ_ENOMEM, "%s: out of memory", name);
    size_t n = 0;
    while (n < max + 1) {
        size_t want = max + 1 - n;
        ssize_t r = read(fd, buf + n, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return vq_error_set(err, VQ_EIO, "cannot read %s: %s", name, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
        /* A regular file (the only kind read here) reads short only at its
         * end: no second read() to see the 0. */
        if ((size_t)r < want) break;
    }
    if (n > max) {
        free(buf);
        return vq_error_set(err, VQ_EINVAL, "%s is larger than %zu bytes", name, max);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return 0;
}

int vq_fs_open_file(int dirfd, const char *name, int *fd, struct stat *st, vq_error *err)
{
    int rc = vq_fs_open(dirfd, name, O_RDONLY | O_NONBLOCK, fd, err);
    if (rc < 0) return rc;
    if (fstat(*fd, st) != 0)
        rc = vq_error_set(err, VQ_EIO, "cannot stat %s: %s", name, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        rc = vq_error_set(err, VQ_EINVAL, "%s is not a regular file", name);
    if (rc < 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

int vq_fs_chmod(int dirfd, const char *name, mode_t mode, vq_error *err)
{
    int fd;
    struct stat st;
    int rc = vq_fs_open_file(dirfd, name, &fd, &st, err);
    if (rc < 0) return rc;
    if (fchmod(fd, mode) != 0) rc = vq_error_set(err, VQ_EIO, "%s: chmod: %s", name, strerror(errno));
    close(fd);
    return rc;
}

int vq_fs_each_name(int dirfd, int (*fn)(const char *name, void *arg), void *arg)
{
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0) close(fd);
        return -1;
    }
    rewinddir(dir); /* the duplicate shares dirfd's offset */
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(dir)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rc = fn(de->d_name, arg);
    closedir(dir);
    return rc;
}

int vq_fs_read(int dirfd, const char *name, size_t max, char **out, size_t *len, vq_error *err)
{
    int fd;
    struct stat st;
    int rc = vq_fs_open_file(dirfd, name, &fd, &st, err);
    if (rc < 0) return rc;
    if ((uintmax_t)st.st_size > max) {
        rc = vq_error_set(err, VQ_EINVAL, "%s is larger than %zu bytes", name, max);
        goto out_close;
    }
    rc = read_bounded(fd, name, max, out, len, err);
out_close:
    close(fd);
    return rc;
}

int vq_fs_sync_dir(int dirfd, const char *what, vq_error *err)
{
    if (fsync(dirfd) != 0)
        return vq_error_set(err, VQ_EIO, "cannot sync folder of %s: %s", what, strerror(errno));
    return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w, len -= (size_t)w;
    }
    return 0;
}

/* The owner a rewrite keeps: the file's own, or its folder's for a new file,
 * so that VDSM's files (vdsm:kvm) stay VDSM's after root rewrites them. */
static void owner_of(int dir, const struct stat *target, uid_t *uid, gid_t *gid)
{
    struct stat st;
    if (!target && fstat(dir, &st) != 0) {
        *uid = (uid_t)-1;
        *gid = (gid_t)-1;
        return;
    }
    *uid = target ? target->st_uid : st.st_uid;
    *gid = target ? target->st_gid : st.st_gid;
}

/* 1 when no one else has the file of fd open.  The kept file is an old
 * .meta swapped out of its name: a reader that opened it under that name
 * before the swap may still be reading it, and must keep reading the old
 * text, as after a rename.  Nobody opens it by its temp name, so once this
 * says no one holds it, no one can until it is ours to write.  A write lease
 * is granted only to the file's sole opener (then given back at once); it
 * needs the file's owner or CAP_LEASE, and without it the file is not reused.
 * Should anyone open the file meanwhile (a backup tool walking the folder),
 * the lease break is signalled with SIGURG, which is ignored by default,
 * instead of SIGIO, which would end the process. */
static int sole_opener(int fd)
{
    if (fcntl(fd, F_SETSIG, SIGURG) != 0 || fcntl(fd, F_SETLEASE, F_WRLCK) != 0) return 0;
    fcntl(fd, F_SETLEASE, F_UNLCK);
    return 1;
}

/* Takes run's kept files off its ready list until one can be written into:
 * a regular file with no other link and no other opener (its name into used,
 * *st its state).  One that cannot goes (our name only: another link keeps
 * its file).  -1 when none is left. */
static int take_ready(int dir, vq_fs_run *run, char used[VQ_FS_NAME], struct stat *st)
{
    while (run->nready > 0) {
        memcpy(used, run->ready[--run->nready], VQ_FS_NAME);
        int fd = openat(dir, used, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0 && fstat(fd, st) == 0 && S_ISREG(st->st_mode) && st->st_nlink == 1 &&
            sole_opener(fd))
            return fd;
        if (fd >= 0) close(fd);
        unlinkat(dir, used, 0);
    }
    return -1;
}

/* A kept file of that name is no longer one (its name is about to be reused). */
static void forget_fresh(vq_fs_run *run, const char *name)
{
    for (int i = 0; i < run->nfresh; i++)
        if (strcmp(run->fresh[i], name) == 0) {
            memcpy(run->fresh[i], run->fresh[--run->nfresh], VQ_FS_NAME);
            return;
        }
}

/* Opens the temp file of a rewrite: a ready kept file (*fresh 0) or a new
 * file tmp (*fresh 1); used names it.  -1 with errno on failure. */
static int open_temp(int dir, vq_fs_run *run, const char *tmp, mode_t mode,
                     char used[VQ_FS_NAME], int *fresh, struct stat *st)
{
    int fd = take_ready(dir, run, used, st);
    *fresh = fd < 0;
    if (fd >= 0) return fd;
    snprintf(used, VQ_FS_NAME, "%s", tmp);
    fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 && errno == EEXIST) {
        /* A leftover of a crashed process with our pid, or the file this run
         * kept from an earlier rewrite of the same name: it goes (removed, not
         * written into: on a journalled file system its removal is not
         * durable before its swap). */
        forget_fresh(run, tmp);
        unlinkat(dir, tmp, 0);
        fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    }
    return fd;
}

/* Writes and syncs the temp file (used names it); removes it on failure.  A
 * kept file is written over in place (no block freed and taken again); when
 * its owner and mode are already right, fdatasync is enough: before the swap
 * only its data and size must be on disk. */
static int write_temp(int dir, vq_fs_run *run, const char *tmp, const void *buf, size_t len,
                      mode_t mode, const char *what, const struct stat *target,
                      char used[VQ_FS_NAME], vq_error *err)
{
    uid_t uid;
    gid_t gid;
    struct stat st;
    int fresh;
    owner_of(dir, target, &uid, &gid);
    int fd = open_temp(dir, run, tmp, mode, used, &fresh, &st);
    if (fd < 0)
        return vq_error_set(err, VQ_EIO, "cannot create temp file of %s: %s", what,
                            strerror(errno));
    /* Only root may give a file away; anyone else keeps their own files. */
    int own = geteuid() == 0 && (fresh || st.st_uid != uid || st.st_gid != gid);
    int chmod = fresh || (st.st_mode & 07777) != mode;
    int rc = 0;
    if (own && fchown(fd, uid, gid) != 0)
        rc = vq_error_set(err, VQ_EIO, "cannot set the owner of %s: %s", what, strerror(errno));
    if (rc == 0 && ((chmod && fchmod(fd, mode) != 0) || write_all(fd, buf, len) != 0 ||
                    (!fresh && st.st_size > (off_t)len && ftruncate(fd, (off_t)len) != 0) ||
                    (fresh || own || chmod ? fsync(fd) : fdatasync(fd)) != 0))
        rc = vq_error_set(err, VQ_EIO, "cannot write %s: %s", what, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = vq_error_set(err, VQ_EIO, "cannot write %s: %s", what, strerror(errno));
    if (rc < 0) unlinkat(dir, used, 0);
    return rc;
}

/* Adds name (a kept file) to names (n of them) while there is room, else
 * removes the file. */
static void keep(int dir, char names[][VQ_FS_NAME], int *n, const char *name)
{
    if (*n < VQ_FS_SPARES)
        memmove(names[(*n)++], name, VQ_FS_NAME);
    else
        unlinkat(dir, name, 0);
}

/* Puts the temp file in base's place.  Swapped with a regular file (a swap
 * would take anything, a folder too), the file replaced, now under the temp
 * name, is kept (fresh: not to be written into before the run's sync);
 * renamed over it (a new file, or a file system that cannot swap), there is
 * nothing to keep. */
static int replace(int dir, vq_fs_run *run, const char *used, const char *base,
                   const struct stat *target)
{
    if (target && S_ISREG(target->st_mode) &&
        renameat2(dir, used, dir, base, RENAME_EXCHANGE) == 0) {
        keep(dir, run->fresh, &run->nfresh, used);
        return 0;
    }
    return renameat(dir, used, dir, base);
}

/* One rewrite of the run; what names the file in errors (its path). */
static int run_write(int dirfd, vq_fs_run *run, const char *name, const char *what,
                     const void *buf, size_t len, mode_t mode, vq_error *err)
{
    char tmp[VQ_FS_NAME], used[VQ_FS_NAME];
    if (name[0] == '\0' || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 ||
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", name, (long)getpid()) >= (int)sizeof tmp)
        return vq_error_set(err, VQ_EINVAL, "%s: bad file name", what);
    /* The file replaced, seen once: its owner (and with VQ_FS_KEEP_MODE the
     * mode of a regular file) is kept, and only a regular file is swapped. */
    struct stat st;
    const struct stat *target = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? &st : NULL;
    if ((mode & VQ_FS_KEEP_MODE) && target && S_ISREG(target->st_mode)) mode = target->st_mode;
    int rc = write_temp(dirfd, run, tmp, buf, len, mode & 07777, what, target, used, err);
    if (rc < 0) return rc;
    if (replace(dirfd, run, used, name, target) != 0) {
        rc = vq_error_set(err, VQ_EIO, "cannot rename %s: %s", what, strerror(errno));
        unlinkat(dirfd, used, 0);
        return rc;
    }
    run->written++;
    return 0;
}

int vq_fs_run_write(int dirfd, vq_fs_run *run, const char *name, const void *buf, size_t len,
                    mode_t mode, vq_error *err)
{
    return run_write(dirfd, run, name, name, buf, len, mode, err);
}

void vq_fs_run_drop(int dirfd, vq_fs_run *run)
{
    for (int i = 0; i < run->nready; i++) unlinkat(dirfd, run->ready[i], 0);
    for (int i = 0; i < run->nfresh; i++) unlinkat(dirfd, run->fresh[i], 0);
    memset(run, 0, sizeof *run);
}

int vq_fs_run_pass(int dirfd, vq_fs_run *run, int todirfd, vq_fs_run *to)
{
    int moved = 0;
    while (run->nready > 0 && to->nready < VQ_FS_SPARES) {
        const char *name = run->ready[run->nready - 1];
        if (renameat2(dirfd, name, todirfd, name, RENAME_NOREPLACE) != 0) break;
        memcpy(to->ready[to->nready++], name, VQ_FS_NAME);
        run->nready--;
        moved++;
    }
    return moved;
}

int vq_fs_run_sync(int dirfd, vq_fs_run *run, const char *what, vq_error *err)
{
    int rc = run->written ? vq_fs_sync_dir(dirfd, what, err) : 0;
    if (rc < 0) return rc; /* the kept files stay fresh: never written into */
    run->written = 0;
    for (int i = 0; i < run->nfresh; i++) keep(dirfd, run->ready, &run->nready, run->fresh[i]);
    run->nfresh = 0;
    return 0;
}

int vq_fs_run_end(int dirfd, vq_fs_run *run, const char *what, vq_error *err)
{
    int rc = vq_fs_run_sync(dirfd, run, what, err);
    vq_fs_run_drop(dirfd, run);
    return rc;
}

/* Splits name into its folder (opened, or a dup of dirfd) and its last part. */
static int open_parent(int dirfd, const char *name, int *dir, const char **base, vq_error *err)
{
    const char *slash = strrchr(name, '/');
    if (!slash) {
        *base = name;
        *dir = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (*dir < 0) return vq_error_set(err, VQ_EIO, "%s: %s", name, strerror(errno));
        return 0;
    }
    char parent[PATH_MAX];
    size_t n = (size_t)(slash - name);
    if (n == 0 || n >= sizeof parent) return vq_error_set(err, VQ_EINVAL, "%s: bad path", name);
    memcpy(parent, name, n);
    parent[n] = '\0';
    *base = slash + 1;
    return vq_fs_open(dirfd, parent, O_RDONLY | O_DIRECTORY, dir, err);
}

/* A run of one rewrite in name's folder. */
int vq_fs_write_atomic(int dirfd, const char *name, const void *buf, size_t len, mode_t mode,
                       vq_error *err)
{
    const char *base = NULL;
    int dir, rc = open_parent(dirfd, name, &dir, &base, err);
    if (rc < 0) return rc;
    vq_fs_run run;
    memset(&run, 0, sizeof run);
    rc = run_write(dir, &run, base, name, buf, len, mode, err);
    if (rc == 0) rc = vq_fs_run_end(dir, &run, name, err);
    else vq_fs_run_drop(dir, &run);
    close(dir);
    return rc;
}
