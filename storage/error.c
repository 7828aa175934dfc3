/* vq_error: the first error wins, formatted as one line. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "volq/error.h"

/* Replaces newlines so a qemu-img message stays one line. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

int vq_error_set(vq_error *err, int code, const char *fmt, ...)
{
    if (!err || err->code) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    one_line(err->text);
    err->code = code;
    return code;
}

void vq_error_prefix(vq_error *err, const char *fmt, ...)
{
    if (!err || !err->code) return;
    char head[sizeof err->text], old[sizeof err->text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->text, sizeof old);
    /* A long message is cut at the end: the object names come first. */
    if (snprintf(err->text, sizeof err->text, "%s: %s", head, old) >= (int)sizeof err->text)
        err->text[sizeof err->text - 1] = '\0';
}

void vq_error_clear(vq_error *err)
{
    if (!err) return;
    err->code = 0;
    err->text[0] = '\0';
}

static const char *const names[] = {
    [0] = "ok",
    [-VQ_EINVAL] = "invalid input",
    [-VQ_ENOENT] = "not found",
    [-VQ_EILLEGAL] = "illegal",
    [-VQ_EIO] = "i/o error",
    [-VQ_ENOMEM] = "out of memory",
    [-VQ_EREDIS] = "redis error",
    [-VQ_EREFUSED] = "refused",
    [-VQ_ELOCKED] = "locked",
    [-VQ_ESTALE] = "stale attempt",
    [-VQ_ETIMEDOUT] = "timed out",
    [-VQ_EBUSY] = "in use",
    [-VQ_EEXIST] = "exists",
    [-VQ_ESPAWN] = "child process failed",
    [-VQ_ECONN] = "cannot reach the scheduler",
    [-VQ_ESTATE] = "wrong state",
    [-VQ_EREPLY] = "redis refused the command",
};

const char *vq_strerror(int code)
{
    if (code > 0 || -code >= (int)(sizeof names / sizeof names[0]) || !names[-code])
        return "unknown error";
    return names[-code];
}
