/* File helpers that every layer shares: bounded reads and atomic rewrites. */
#ifndef VOLQ_FSUTIL_H
#define VOLQ_FSUTIL_H
#include <stddef.h>
#include <sys/types.h>

#include "volq/error.h"

/* Reads name (relative to dirfd, never following a symlink: O_NOFOLLOW) into a
 * new NUL-terminated buffer (free with free()).  A regular file only; a file
 * larger than max bytes is an error (VQ_EINVAL, "... is larger than N bytes"). */
int vq_fs_read(int dirfd, const char *name, size_t max, char **out, size_t *len, vq_error *err);

/* Atomic rewrite of name in dirfd: writes "<name>.tmp.<pid>" in the same folder
 * with mode, fsyncs it, renames it over name, fsyncs the folder.  On any error
 * the temp file is removed and name is untouched. */
int vq_fs_write_atomic(int dirfd, const char *name, const void *buf, size_t len, mode_t mode,
                       vq_error *err);

/* fsync of an open folder; errors filled with what. */
int vq_fs_sync_dir(int dirfd, const char *what, vq_error *err);

#endif
