/* The request body decoder and the cleaning of answer texts: pure functions
 * (no libevent), so that fuzz/fuzz_http_body.c can drive them directly. */
#include <string.h>

#include "sched_int.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid:
 * no overlong forms, no surrogates, nothing past U+10FFFF (what jansson
 * accepts in a string). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3
                 : s[0] >= 0xC2 && s[0] < 0xE0                   ? 2
                                                                 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))
        return 0;
    return len;
}

void vq_text_clean_(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = p[i] < 0x80 ? 1 : utf8_len(p + i, n - i);
        if (len == 0) {
            p[i++] = '?'; /* a stray byte, or a character cut by a length limit */
        } else if (len == 1) {
            if (p[i] < 0x20 || p[i] == 0x7f) p[i] = ' ';
            i++;
        } else {
            i += len;
        }
    }
}

static int field_allowed(const char *key, const char *const *allowed)
{
    for (; *allowed; allowed++)
        if (strcmp(key, *allowed) == 0) return 1;
    return 0;
}

int vq_body_decode_(const char *data, size_t len, const char *const *allowed, json_t **out,
                    vq_error *err)
{
    *out = NULL;
    if (len == 0) {
        *out = json_object();
        return *out ? 0 : vq_error_set(err, VQ_ENOMEM, "out of memory");
    }
    json_error_t je;
    json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return vq_error_set(err, VQ_EINVAL, "malformed JSON body: %s at line %d column %d",
                            je.text, je.line, je.column);
    if (!json_is_object(o)) {
        json_decref(o);
        return vq_error_set(err, VQ_EINVAL, "the body must be a JSON object");
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (!field_allowed(key, allowed)) {
            /* the key is the client's: cut it, vq_text_clean_() mends a cut character */
            vq_error_set(err, VQ_EINVAL, "unknown field \"%.64s\" in the body", key);
            json_decref(o);
            return VQ_EINVAL;
        }
    }
    *out = o;
    return 0;
}
