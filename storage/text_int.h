/* Text helpers shared inside storage/. */
#ifndef VOLQ_TEXT_INT_H
#define VOLQ_TEXT_INT_H
#include <stdarg.h>
#include <stddef.h>

/* Formats a reason into buf (size bytes, always NUL-terminated, cut when too
 * long) and replaces every byte outside printable ASCII with '?': reasons
 * quote file contents (backing names, bad values) and end up in logs, JSON
 * and audit events, which need one clean line. */
void vq_reason_format_(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
