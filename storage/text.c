/* Reasons that are safe to print anywhere. */
#include <stdio.h>
#include <string.h>

#include "text_int.h"
#include "volq/text.h"

void vq_reason_format_(char *buf, size_t size, const char *fmt, va_list ap)
{
    if (size == 0) return;
    vsnprintf(buf, size, fmt, ap); /* a cut reason still names its object first */
    for (unsigned char *p = (unsigned char *)buf; *p; p++)
        if (*p < 0x20 || *p > 0x7e) *p = '?';
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3
                 : s[0] >= 0xC2 && s[0] < 0xE0                   ? 2
                                                                 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))
        return 0;
    return len;
}

size_t vq_text_clean(char *dst, size_t dstsz, const char *src)
{
    if (dstsz == 0) return 0;
    const unsigned char *t = (const unsigned char *)src;
    size_t n = strlen(src), o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = t[i] < 0x80 ? 1 : utf8_len(t + i, n - i);
        if (o + (len ? len : 1) > dstsz - 1) break; /* never half a character */
        if (len == 0)
            dst[o++] = '?', i++;
        else if (len == 1)
            dst[o++] = (t[i] < 0x20 || t[i] == 0x7f) ? ' ' : (char)t[i], i++;
        else
            for (size_t k = 0; k < len; k++) dst[o++] = (char)t[i++];
    }
    dst[o] = '\0';
    return o;
}
