/* File helpers that every layer shares: bounded reads and atomic rewrites. */
#ifndef VOLQ_FSUTIL_H
#define VOLQ_FSUTIL_H
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "volq/error.h"

/* Opens path relative to dirfd one component at a time, each with O_NOFOLLOW,
 * so that no symlink anywhere on the path is followed.  A relative path may
 * not hold "..", "." or empty components (VQ_EINVAL); an absolute path is
 * opened as given with O_NOFOLLOW on its last component only.  flags are
 * those of the last component (O_CLOEXEC and O_NOFOLLOW are added).  A
 * symlink is VQ_EILLEGAL ("<path> is a symlink"), a missing file VQ_ENOENT.
 * *fd is a new descriptor; the caller closes it. */
int vq_fs_open(int dirfd, const char *path, int flags, int *fd, vq_error *err);

/* Opens name (relative to dirfd, as vq_fs_open()) read-only and without
 * blocking, a regular file only ("... is not a regular file", VQ_EINVAL: a
 * FIFO or device swapped in is not read); *st its fstat().  *fd is new. */
int vq_fs_open_file(int dirfd, const char *name, int *fd, struct stat *st, vq_error *err);

/* chmod of a regular file name of dirfd, through a descriptor opened as
 * vq_fs_open_file() does: a symlink swapped in is not followed. */
int vq_fs_chmod(int dirfd, const char *name, mode_t mode, vq_error *err);

/* Calls fn(name, arg) for every entry of the folder dirfd but "." and "..",
 * read from its start through a duplicate of dirfd (whose offset it shares:
 * nothing else may read dirfd as a folder meanwhile).  fn may unlink the
 * entry it is given.  fn returns 0 to go on, or a positive value that stops
 * the walk and is returned; 0 when all were seen; -1 when the folder cannot
 * be read. */
int vq_fs_each_name(int dirfd, int (*fn)(const char *name, void *arg), void *arg);

/* Reads name (relative to dirfd, opened with vq_fs_open(): no symlink is
 * followed) into a new NUL-terminated buffer (free with free()).  A regular
 * file only (a FIFO does not block: it is refused); a file larger than max
 * bytes is an error (VQ_EINVAL, "... is larger than N bytes"). */
int vq_fs_read(int dirfd, const char *name, size_t max, char **out, size_t *len, vq_error *err);

/* Atomic rewrite of name in dirfd: writes "<name>.tmp.<pid>" in the same folder
 * with mode (umask not applied) and, when running as root, the owner of the
 * file it replaces (of the folder for a new file: VDSM's files stay vdsm:kvm),
 * fsyncs it, renames it over name, fsyncs the
 * folder.  name may hold folders ("dom_md/metadata"), opened as vq_fs_open()
 * does.  On any error the temp file is removed and name is untouched.
 * mode | VQ_FS_KEEP_MODE: mode is for a new file only; a file replaced keeps
 * its own, as it keeps its owner (read from the one look at the file the
 * rewrite makes anyway). */
#define VQ_FS_KEEP_MODE 010000
int vq_fs_write_atomic(int dirfd, const char *name, const void *buf, size_t len, mode_t mode,
                       vq_error *err);

/* A run of atomic rewrites of files of one folder (the volumes of one disk).
 * They share the folder's fsync, made by vq_fs_run_sync() or _end(), and
 * their temp files: where the file system can swap two names (renameat2
 * RENAME_EXCHANGE: ext4, XFS, btrfs, tmpfs; NFS cannot, and gets a new temp
 * file per rewrite), the file a rewrite replaces is kept, under its temp
 * name, to be a later rewrite's temp file instead of being freed.  A kept
 * file is written into only once a folder fsync made its swap durable: until
 * then a power loss may undo the swap and give the file its old name back,
 * which must still hold its old text.  So the kept files of a rewrite wait
 * ("fresh") for the run's sync, then serve ("ready") the next rewrites: in
 * practice those of the next disk's run, to which they are passed on (an
 * amend syncs its folder once, at its end): a bulk upgrade then makes and
 * frees no inode (ext4 without a journal scans every recently freed inode of
 * the group for each new one).  A kept file with another link is never
 * reused.  Zero a run before its first rewrite. */
#define VQ_FS_SPARES 4
#define VQ_FS_NAME 256 /* a file name, NUL included */
typedef struct vq_fs_run {
    char ready[VQ_FS_SPARES][VQ_FS_NAME]; /* kept files whose swaps are durable, by name */
    char fresh[VQ_FS_SPARES][VQ_FS_NAME]; /* kept files whose swaps wait for the sync */
    int nready, nfresh;
    int written;                   /* rewrites since the last sync */
} vq_fs_run;

/* Rewrites name (a file of the folder dirfd, no '/') as vq_fs_write_atomic()
 * does, except the folder's fsync: the rename is as atomic, its durability
 * waits for vq_fs_run_end(). */
int vq_fs_run_write(int dirfd, vq_fs_run *run, const char *name, const void *buf, size_t len,
                    mode_t mode, vq_error *err);

/* fsyncs the folder when the run wrote anything since the last sync (what
 * names it in an error); the fresh kept files are then ready. */
int vq_fs_run_sync(int dirfd, vq_fs_run *run, const char *what, vq_error *err);

/* vq_fs_run_sync(), then the kept files removed; run is zeroed. */
int vq_fs_run_end(int dirfd, vq_fs_run *run, const char *what, vq_error *err);

/* The kept files removed without the fsync (a run given up); run is zeroed. */
void vq_fs_run_drop(int dirfd, vq_fs_run *run);

/* Moves run's ready kept files (in dirfd) to the folder todirfd of the same
 * file system, as ready files of the run to, as many as it has room for: the
 * next disk's rewrites then make no inode.  The number moved; 0 when none
 * could be (nothing ready, another file system, names taken): run keeps them. */
int vq_fs_run_pass(int dirfd, vq_fs_run *run, int todirfd, vq_fs_run *to);

/* fsync of an open folder; errors filled with what. */
int vq_fs_sync_dir(int dirfd, const char *what, vq_error *err);

#endif
