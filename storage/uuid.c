/* Canonical lower-case UUIDs: the only ids volq accepts. */
#include <string.h>
#include <uuid/uuid.h>

#include "volq/uuid.h"

int vq_uuid_valid_n(const char *s, size_t len)
{
    if (!s || len != VQ_UUID_LEN) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int vq_uuid_valid(const char *s)
{
    return s && vq_uuid_valid_n(s, strnlen(s, VQ_UUID_LEN + 1));
}

void vq_uuid_new(char out[VQ_UUID_SIZE])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}
