/* The scheduler's request body decoder (scheduler/http_body.c) and the
 * cleaning of every error text it answers.  The first byte picks the fields
 * a route allows; the rest is the body.  On success the body is an object
 * of allowed fields only; on failure the error, cleaned as vq_reply_error_()
 * cleans it, must be one line that jansson accepts (valid UTF-8). */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "sched_int.h"
#include "volq/text.h"

static const char *const amend[] = {"qcow_version", NULL};
static const char *const create[] = {"size", "format", "parent", "alias", NULL};
static const char *const upgrade[] = {"to_v4", NULL};
static const char *const none[] = {NULL};
static const char *const *const routes[] = {amend, create, upgrade, none};

/* What vq_reply_error_() does to a text before it builds the answer. */
static void check_answer_text(const char *text, size_t len)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%.*s", (int)len, text);
    vq_text_clean(msg, sizeof msg, msg);
    json_t *o = json_pack("{s:s}", "error", msg);
    FUZZ_CHECK(o != NULL);
    json_decref(o);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        FUZZ_CHECK(*p >= 0x20 && *p != 0x7f);
}

static void check_allowed(json_t *o, const char *const *allowed)
{
    const char *key;
    json_t *v;
    FUZZ_CHECK(json_is_object(o));
    json_object_foreach(o, key, v) {
        int found = 0;
        for (const char *const *a = allowed; *a; a++) found |= strcmp(*a, key) == 0;
        FUZZ_CHECK(found);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const char *const *allowed = routes[data[0] % 4];
    const char *body = (const char *)data + 1;
    json_t *o = NULL;
    vq_error err = {0};
    int rc = vq_body_decode_(body, size - 1, allowed, &o, &err);
    if (rc == 0) {
        check_allowed(o, allowed);
    } else {
        FUZZ_CHECK(rc == VQ_EINVAL && err.code == rc && o == NULL);
        check_answer_text(err.text, strlen(err.text));
    }
    json_decref(o);
    /* a path or field name quoted as it came (any bytes but NUL) */
    size_t n = strnlen(body, size - 1);
    check_answer_text(body, n);
    return 0;
}
