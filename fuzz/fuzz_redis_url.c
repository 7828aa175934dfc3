/* vq_redis_url_parse on any string: flags and VOLQ_REDIS come from whoever
 * configures a host.  On failure *out is untouched and the error is one
 * line; on success every field is terminated and in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "volq/redis.h"

static void check_url(const vq_redis_url *u)
{
    FUZZ_CHECK(FUZZ_TERMINATED(u->host) && FUZZ_TERMINATED(u->path));
    FUZZ_CHECK(FUZZ_TERMINATED(u->user) && FUZZ_TERMINATED(u->pass));
    FUZZ_CHECK(u->db >= 0 && u->db <= 99999);
    FUZZ_CHECK(u->port >= 0 && u->port <= 65535);
    int sentinels = 0;
#ifdef VQ_REDIS_SENTINELS_MAX /* sentinel:// URLs */
    sentinels = u->nsentinels;
    FUZZ_CHECK(sentinels >= 0 && sentinels <= VQ_REDIS_SENTINELS_MAX);
    for (int i = 0; i < sentinels; i++) {
        FUZZ_CHECK(FUZZ_TERMINATED(u->sentinels[i].host) && u->sentinels[i].host[0]);
        FUZZ_CHECK(u->sentinels[i].port > 0 && u->sentinels[i].port <= 65535);
    }
    FUZZ_CHECK(FUZZ_TERMINATED(u->master));
    FUZZ_CHECK(sentinels == 0 || u->master[0] != '\0');
#endif
    if (u->is_unix) FUZZ_CHECK(u->path[0] == '/');
    else if (sentinels == 0) FUZZ_CHECK(u->host[0] != '\0' && u->port > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    FUZZ_CHECK(url != NULL);
    memcpy(url, data, size);
    url[size] = '\0';
    static vq_redis_url u, before;
    memset(&u, 0xa5, sizeof u);
    memcpy(&before, &u, sizeof u);
    vq_error err = {0};
    int rc = vq_redis_url_parse(url, &u, &err);
    if (rc == 0) {
        check_url(&u);
    } else {
        FUZZ_CHECK(rc == VQ_EINVAL && err.code == rc && err.text[0]);
        FUZZ_CHECK(strchr(err.text, '\n') == NULL);
        FUZZ_CHECK(memcmp(&u, &before, sizeof u) == 0);
    }
    free(url);
    return 0;
}
