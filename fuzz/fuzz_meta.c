/* vq_meta_parse on any bytes: a .meta file is written by whoever can write
 * the storage domain.  On success the typed fields must be sane and the pairs
 * must survive vq_kv_format() and a second parse; on failure the error is
 * one line and the metadata is left empty. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "volq/meta.h"

static void check_fields(const vq_meta *m)
{
    FUZZ_CHECK(vq_uuid_valid(m->image));
    FUZZ_CHECK(vq_uuid_valid(m->puuid));
    FUZZ_CHECK(m->domain[0] == '\0' || vq_uuid_valid(m->domain));
    FUZZ_CHECK((unsigned)m->format <= VQ_FORMAT_RAW);
    FUZZ_CHECK((unsigned)m->voltype <= VQ_VOLTYPE_SHARED);
    FUZZ_CHECK((unsigned)m->legality <= VQ_FAKE);
    FUZZ_CHECK((unsigned)m->type <= VQ_TYPE_UNKNOWN);
    FUZZ_CHECK(m->gen < 1000);
    FUZZ_CHECK(FUZZ_TERMINATED(m->alias));
    FUZZ_CHECK(strlen(m->alias) <= VQ_ALIAS_MAX);
    /* the alias ends up in JSON, events and terminals: valid UTF-8, one clean line */
    json_t *s = json_string(m->alias);
    FUZZ_CHECK(s != NULL);
    json_decref(s);
    for (const unsigned char *p = (const unsigned char *)m->alias; *p; p++)
        FUZZ_CHECK(*p >= 0x20 && *p != 0x7f);
}

/* Formatted again, the pairs parse to the same fields. */
static void check_round_trip(const vq_meta *m)
{
    size_t len = 0;
    char *text = vq_kv_format(&m->kv, VQ_KV_EOF, &len);
    FUZZ_CHECK(text != NULL);
    if (len <= VQ_META_MAX) { /* a last "EOF" without newline grows by one byte */
        vq_meta m2 = {0};
        vq_error e = {0};
        FUZZ_CHECK(vq_meta_parse(text, len, &m2, &e) == 0);
        FUZZ_CHECK(m2.kv.n == m->kv.n);
        FUZZ_CHECK(strcmp(m2.image, m->image) == 0 && strcmp(m2.puuid, m->puuid) == 0);
        FUZZ_CHECK(m2.capacity == m->capacity && m2.gen == m->gen);
        FUZZ_CHECK(strcmp(m2.alias, m->alias) == 0);
        vq_meta_free(&m2);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vq_meta m = {0};
    vq_error err = {0};
    int rc = vq_meta_parse((const char *)data, size, &m, &err);
    if (rc == 0) {
        check_fields(&m);
        check_round_trip(&m);
    } else {
        FUZZ_CHECK(rc < 0 && err.code == rc && err.text[0]);
        FUZZ_CHECK(strchr(err.text, '\n') == NULL);
        FUZZ_CHECK(m.kv.n == 0 && m.kv.v == NULL);
    }
    vq_meta_free(&m);
    return 0;
}
