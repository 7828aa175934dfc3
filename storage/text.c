/* Reasons that are safe to print anywhere. */
#include <stdio.h>

#include "text_int.h"

void vq_reason_format_(char *buf, size_t size, const char *fmt, va_list ap)
{
    if (size == 0) return;
    vsnprintf(buf, size, fmt, ap); /* a cut reason still names its object first */
    for (unsigned char *p = (unsigned char *)buf; *p; p++)
        if (*p < 0x20 || *p > 0x7e) *p = '?';
}
