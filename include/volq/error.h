/* Error codes and the one-line error that every fallible call fills. */
#ifndef VOLQ_ERROR_H
#define VOLQ_ERROR_H

/* Functions return 0 or one of these (negative).  The CLI maps them to exit codes:
 * VQ_EINVAL -> 2, VQ_EREDIS/VQ_EREPLY/VQ_ECONN -> 3, the rest -> 1. */
enum {
    VQ_OK = 0,
    VQ_EINVAL = -1,    /* bad input: malformed, non-UUID, out of range */
    VQ_ENOENT = -2,    /* no such domain, disk, volume or job */
    VQ_EILLEGAL = -3,  /* containment: the object leads outside its domain */
    VQ_EIO = -4,       /* a syscall on a file failed */
    VQ_ENOMEM = -5,
    VQ_EREDIS = -6,    /* Redis unreachable (a lost or failed connection) */
    VQ_EREFUSED = -7,  /* the job is refused (template, V3, ...): not retried */
    VQ_ELOCKED = -8,   /* the disk is locked by another job */
    VQ_ESTALE = -9,    /* fenced: this attempt's token is no longer current */
    VQ_ETIMEDOUT = -10,
    VQ_EBUSY = -11,    /* image in use (qemu's lock is held) */
    VQ_EEXIST = -12,
    VQ_ESPAWN = -13,   /* a child process failed (exit status or signal) */
    VQ_ECONN = -14,    /* the scheduler's HTTP API is unreachable */
    VQ_ESTATE = -15,   /* the job is not in a state that allows the operation */
    VQ_EREPLY = -16,   /* Redis answered an error reply (the connection is good) */
};

/* The text is one line, no trailing newline or period, and names the object:
 * "volume 3f...: qemu-img exited 1: ...".  256 bytes keep qemu-img's first
 * error line readable after the object name. */
typedef struct vq_error {
    int code;
    char text[256];
} vq_error;

/* Keeps the first error: a second call on a set error changes nothing.
 * err may be NULL.  Returns code, so callers can `return vq_error_set(...)`. */
int vq_error_set(vq_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes an already set error with "what: " (e.g. the job id), keeping its code. */
void vq_error_prefix(vq_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void vq_error_clear(vq_error *err);

/* A short static name for a code: "invalid input", "not found", ... */
const char *vq_strerror(int code);

#endif
