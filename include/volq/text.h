/* Text that may quote anyone's bytes (client input, file contents) made safe
 * for one line of JSON, a log or an audit event. */
#ifndef VOLQ_TEXT_H
#define VOLQ_TEXT_H
#include <stddef.h>

/* Copies src into dst (dstsz bytes, NUL included) as one line of valid
 * UTF-8: control bytes become ' ', bytes of invalid sequences '?' (no
 * overlong forms, no surrogates, nothing past U+10FFFF: what jansson takes),
 * and a character that does not fit is left out whole.  dst may be src (the
 * output never runs ahead of the input).  Returns the length written. */
size_t vq_text_clean(char *dst, size_t dstsz, const char *src);

#endif
