/* Redis URLs of SPEC §5: redis://[user:pass@]host[:port][/db] and
 * unix://[user:pass@]/path[?db=N]; and Redis Sentinel:
 * sentinel://[user:pass@]host[:port][,host[:port]...]/MASTER[/db]. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "volq/redis.h"

/* Redis builds with 16 databases by default; a server may be configured with
 * more, so only an absurd number is refused here (the server checks the rest). */
#define DB_MAX 99999

static int bad(vq_error *err, const char *why)
{
    return vq_error_set(err, VQ_EINVAL, "redis URL: %s", why);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies s[0..len) into out (size outsz), decoding %XX.  -1 when malformed or too long. */
static int pct_decode(const char *s, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len) return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            if (c == 0) return -1;
            i += 2;
        }
        if (o + 1 >= outsz) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* Decimal in [lo, hi] covering all of s[0..len).  -1 otherwise. */
static long parse_num(const char *s, size_t len, long lo, long hi)
{
    if (len == 0 || len > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

/* "user:pass", ":pass" (AUTH pass only). */
static int parse_userinfo(const char *s, size_t len, vq_redis_url *u, vq_error *err)
{
    const char *colon = memchr(s, ':', len);
    if (!colon) return bad(err, "user without a password (use user:pass@ or :pass@)");
    size_t ulen = (size_t)(colon - s);
    if (pct_decode(s, ulen, u->user, sizeof u->user) != 0) return bad(err, "bad user name");
    if (pct_decode(colon + 1, len - ulen - 1, u->pass, sizeof u->pass) != 0)
        return bad(err, "bad password");
    if (!u->pass[0]) return bad(err, "empty password");
    return 0;
}

static int valid_host(const char *h, size_t len)
{
    if (len == 0) return 0;
    if (h[0] == '[') return h[len - 1] == ']' && len > 2; /* IPv6 literal */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_') return 0;
    }
    return 1;
}

/* host[:port] */
static int parse_hostport(const char *s, size_t len, vq_redis_url *u, vq_error *err)
{
    const char *colon = NULL;
    const char *close = s[0] == '[' ? memchr(s, ']', len) : NULL;
    const char *from = close ? close : s;
    colon = memchr(from, ':', len - (size_t)(from - s));
    size_t hlen = colon ? (size_t)(colon - s) : len;
    if (!valid_host(s, hlen)) return bad(err, "bad or missing host");
    const char *h = s;
    if (h[0] == '[') { /* hiredis wants the bare address */
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof u->host) return bad(err, "host name too long");
    memcpy(u->host, h, hlen);
    u->host[hlen] = '\0';
    if (colon) {
        long p = parse_num(colon + 1, (size_t)(s + len - colon - 1), 1, 65535);
        if (p < 0) return bad(err, "port must be 1..65535");
        u->port = (int)p;
    }
    return 0;
}

/* [user:pass@] in front of s[0..auth_end): decodes it into u and returns
 * where the host part starts, or NULL with err set. */
static const char *parse_auth(const char *s, size_t auth_end, vq_redis_url *u, vq_error *err)
{
    const char *at = NULL;
    for (size_t i = 0; i < auth_end; i++)
        if (s[i] == '@') at = s + i; /* the last '@': a password may hold one */
    if (!at) return s;
    return parse_userinfo(s, (size_t)(at - s), u, err) ? NULL : at + 1;
}

static int parse_db(const char *s, vq_redis_url *u, vq_error *err)
{
    if (!*s) return 0;
    long db = parse_num(s, strlen(s), 0, DB_MAX);
    if (db < 0) return bad(err, "database must be a number 0..99999");
    u->db = (int)db;
    return 0;
}

static int parse_tcp(const char *s, vq_redis_url *u, vq_error *err)
{
    const char *slash = strchr(s, '/');
    size_t auth_end = slash ? (size_t)(slash - s) : strlen(s);
    if (memchr(s, '?', strlen(s)) || memchr(s, '#', strlen(s)))
        return bad(err, "query strings are not supported on redis://");
    const char *hp = parse_auth(s, auth_end, u, err);
    if (!hp) return VQ_EINVAL;
    int rc = parse_hostport(hp, (size_t)(s + auth_end - hp), u, err);
    if (rc) return rc;
    return slash ? parse_db(slash + 1, u, err) : 0;
}

/* host[:port][,host[:port]...] of s[0..len): the sentinels, in order. */
static int parse_sentinels(const char *s, size_t len, vq_redis_url *u, vq_error *err)
{
    const char *end = s + len;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t n = comma ? (size_t)(comma - s) : (size_t)(end - s);
        if (u->nsentinels == VQ_REDIS_SENTINELS_MAX)
            return vq_error_set(err, VQ_EINVAL, "redis URL: more than %d sentinels",
                                VQ_REDIS_SENTINELS_MAX);
        vq_redis_url one;
        memset(&one, 0, sizeof one);
        one.port = VQ_REDIS_SENTINEL_PORT;
        int rc = parse_hostport(s, n, &one, err);
        if (rc) return rc;
        vq_redis_addr *a = &u->sentinels[u->nsentinels++];
        memcpy(a->host, one.host, sizeof a->host);
        a->port = one.port;
        if (!comma) return 0;
        s = comma + 1;
    }
}

/* MASTER[/db]: the name as Sentinel configs write it (no spaces, no '/'). */
static int parse_master(const char *s, vq_redis_url *u, vq_error *err)
{
    size_t len = strcspn(s, "/");
    if (len == 0) return bad(err, "sentinel:// needs the master's name (sentinel://host:port/NAME)");
    if (len >= sizeof u->master) return bad(err, "master name too long");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_') return bad(err, "bad master name");
    }
    memcpy(u->master, s, len);
    u->master[len] = '\0';
    return s[len] ? parse_db(s + len + 1, u, err) : 0;
}

/* sentinel://[user:pass@]host[:port][,host[:port]...]/MASTER[/db].  host/port
 * stay empty: the sentinels name the master at each connect. */
static int parse_sentinel(const char *s, vq_redis_url *u, vq_error *err)
{
    if (strpbrk(s, "?#")) return bad(err, "query strings are not supported on sentinel://");
    const char *slash = strchr(s, '/');
    if (!slash) return bad(err, "sentinel:// needs the master's name (sentinel://host:port/NAME)");
    const char *hp = parse_auth(s, (size_t)(slash - s), u, err);
    if (!hp) return VQ_EINVAL;
    int rc = parse_sentinels(hp, (size_t)(slash - hp), u, err);
    if (rc) return rc;
    u->port = 0;
    return parse_master(slash + 1, u, err);
}

/* unix://[user:pass@]/abs/path[?db=N] (the user info as redis-py takes it) */
static int parse_unix(const char *s, vq_redis_url *u, vq_error *err)
{
    const char *at = strstr(s, "@/");
    if (s[0] != '/' && at) {
        int rc = parse_userinfo(s, (size_t)(at - s), u, err);
        if (rc) return rc;
        s = at + 1;
    }
    if (s[0] != '/') return bad(err, "unix socket path must be absolute (unix:///path)");
    const char *q = strchr(s, '?');
    size_t plen = q ? (size_t)(q - s) : strlen(s);
    /* sun_path holds 108 bytes with the NUL. */
    if (plen >= sizeof u->path || plen >= 108) return bad(err, "unix socket path too long");
    memcpy(u->path, s, plen);
    u->path[plen] = '\0';
    u->is_unix = 1;
    if (!q) return 0;
    if (strncmp(q, "?db=", 4) != 0) return bad(err, "only ?db=N is supported on unix://");
    long db = parse_num(q + 4, strlen(q + 4), 0, DB_MAX);
    if (db < 0) return bad(err, "database must be a number 0..99999");
    u->db = (int)db;
    return 0;
}

int vq_redis_url_parse(const char *url, vq_redis_url *out, vq_error *err)
{
    vq_redis_url u;
    memset(&u, 0, sizeof u);
    u.port = 6379;
    if (!url || !*url) return bad(err, "empty");
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return bad(err, "spaces or control characters");
    int rc;
    if (strncmp(url, "redis://", 8) == 0)
        rc = parse_tcp(url + 8, &u, err);
    else if (strncmp(url, "unix://", 7) == 0)
        rc = parse_unix(url + 7, &u, err);
    else if (strncmp(url, "sentinel://", 11) == 0)
        rc = parse_sentinel(url + 11, &u, err);
    else if (strncmp(url, "rediss://", 9) == 0)
        rc = bad(err, "TLS (rediss://) is not supported");
    else
        rc = bad(err, "must start with redis://, unix:// or sentinel://");
    if (rc) return rc;
    *out = u;
    return 0;
}

void vq_redis_url_shown(const char *url, char *out, size_t sz)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    const char *end = strchr(auth, '/');
    if (!end) end = auth + strlen(auth);
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@') at = p; /* the last '@': a password may hold one */
    if (!at) {
        snprintf(out, sz, "%s", url);
        return;
    }
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    int keep = colon ? (int)(colon - url) + 1 : (int)(auth - url);
    snprintf(out, sz, "%.*s***%s", keep, url, at);
}
