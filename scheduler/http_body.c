/* The request body decoder: a pure function (no libevent), so that
 * fuzz/fuzz_http_body.c can drive it directly. */
#include <string.h>

#include "sched_int.h"

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
            /* the key is the client's: cut it, vq_text_clean() mends a cut character */
            vq_error_set(err, VQ_EINVAL, "unknown field \"%.64s\" in the body", key);
            json_decref(o);
            return VQ_EINVAL;
        }
    }
    *out = o;
    return 0;
}
