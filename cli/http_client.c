/* A small blocking HTTP/1.1 client: one request per connection
 * (Connection: close), a bounded answer, timeouts on every wait. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli_int.h"

typedef struct api_url {
    char host[256];
    char port[8];
    char prefix[256]; /* path before /api, "" usually; no trailing slash */
} api_url;

static int parse_host_port(const char *hp, size_t len, api_url *u)
{
    const char *colon = NULL, *h = hp, *hend = hp + len;
    if (len && *hp == '[') { /* [v6]:port */
        const char *close = memchr(hp, ']', len);
        if (!close) return -1;
        h = hp + 1;
        hend = close;
        colon = close + 1 < hp + len && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(hp, ':', len);
        if (colon) hend = colon;
    }
    size_t plen = colon ? (size_t)(hp + len - colon - 1) : 2;
    if (hend <= h || (size_t)(hend - h) >= sizeof u->host || plen == 0 || plen >= sizeof u->port)
        return -1;
    memcpy(u->host, h, (size_t)(hend - h));
    u->host[hend - h] = '\0';
    if (!colon) return snprintf(u->port, sizeof u->port, "80") < 0 ? -1 : 0;
    memcpy(u->port, colon + 1, plen);
    u->port[plen] = '\0';
    for (const char *p = u->port; *p; p++)
        if (!isdigit((unsigned char)*p)) return -1;
    return 0;
}

static int parse_url(const char *url, api_url *u, vq_error *err)
{
    static const char scheme[] = "http://";
    if (strncmp(url, "https://", 8) == 0)
        return vq_error_set(err, VQ_EINVAL, "--api %s: https is not supported; use http:// "
                            "(through a TLS proxy or an SSH tunnel for remote use)", url);
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) goto bad;
    const char *hp = url + sizeof scheme - 1;
    size_t hplen = strcspn(hp, "/");
    if (parse_host_port(hp, hplen, u)) goto bad;
    long port = strtol(u->port, NULL, 10); /* digits only, at most 7 of them */
    if (port < 1 || port > 65535)
        return vq_error_set(err, VQ_EINVAL, "--api %s: port %s is not between 1 and 65535", url,
                            u->port);
    int n = snprintf(u->prefix, sizeof u->prefix, "%s", hp + hplen);
    if (n < 0 || (size_t)n >= sizeof u->prefix) goto bad;
    size_t pl = strlen(u->prefix);
    while (pl && u->prefix[pl - 1] == '/') u->prefix[--pl] = '\0';
    return 0;
bad:
    return vq_error_set(err, VQ_EINVAL, "--api %s: expected http://HOST:PORT", url);
}

/* strerror in lower case, as the rest of a one-line message. */
static void why(int e, char *buf, size_t sz)
{
    snprintf(buf, sz, "%s", strerror(e));
    if (buf[0]) buf[0] = (char)tolower((unsigned char)buf[0]);
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int n;
    do n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n == 0) errno = ETIMEDOUT;
    return n > 0 ? 0 : -1;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    int e = errno, soerr = 0;
    socklen_t len = sizeof soerr;
    if (e == EINPROGRESS && wait_fd(fd, POLLOUT, timeout_ms) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0) {
        if (soerr == 0) return fd;
        e = soerr;
    } else if (e == EINPROGRESS) {
        e = errno;
    }
    close(fd);
    errno = e;
    return -1;
}

static int open_conn(const api_url *u, int timeout_ms, vq_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char msg[128];
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc) return vq_error_set(err, VQ_ECONN, "%s: %s", u->host, gai_strerror(rc));
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = connect_one(ai, timeout_ms);
        if (fd < 0) e = errno;
    }
    freeaddrinfo(res);
    if (fd >= 0) return fd;
    why(e, msg, sizeof msg);
    return vq_error_set(err, VQ_ECONN, "%s", msg);
}

static int send_all(int fd, const char *buf, size_t len, int timeout_ms)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, timeout_ms)) return -1;
            continue;
        }
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until EOF into a new NUL-terminated buffer, at most VQ_CLI_MAX_RESPONSE. */
static int read_all(int fd, int timeout_ms, char **out, size_t *outlen)
{
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (len == cap) {
            if (cap >= VQ_CLI_MAX_RESPONSE) goto fail_big;
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n > 0) len += (size_t)n;
        else if (n == 0) {
            buf[len] = '\0';
            *out = buf;
            *outlen = len;
            return 0;
        } else if ((errno != EAGAIN && errno != EINTR) || wait_fd(fd, POLLIN, timeout_ms))
            break;
    }
    free(buf);
    return -1;
fail_big:
    free(buf);
    errno = EFBIG;
    return -1;
}

/* The value of header name in the header block [h, end), or NULL. */
static const char *header(const char *h, const char *end, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *line = h; line < end;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol || eol > end) eol = end;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        line = eol + 2;
    }
    return NULL;
}

/* Decodes a chunked body in place; its new length, or -1 when malformed. */
static long dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long n = strtoul(b + in, &end, 16);
        char *eol = strstr(b + in, "\r\n");
        /* a size near ULONG_MAX must not wrap the bound */
        if (end == b + in || !eol || (size_t)(eol - b) + 2 > len || n > len - (size_t)(eol - b) - 2)
            return -1;
        in = (size_t)(eol - b) + 2;
        if (n == 0) return (long)out;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
        if (in > len) return -1;
    }
}

static int parse_response(char *buf, size_t len, vq_http_resp *out)
{
    int status = 0;
    char *hend = strstr(buf, "\r\n\r\n");
    if (!hend || sscanf(buf, "HTTP/1.%*d %3d", &status) != 1 || status < 100) return -1;
    char *body = hend + 4;
    size_t blen = len - (size_t)(body - buf), vlen = 0;
    const char *te = header(buf, hend, "Transfer-Encoding", &vlen);
    const char *cl = header(buf, hend, "Content-Length", &vlen);
    if (te && strncasecmp(te, "chunked", 7) == 0) {
        long n = dechunk(body, blen);
        if (n < 0) return -1;
        blen = (size_t)n;
    } else if (cl && strtoul(cl, NULL, 10) < blen) {
        blen = strtoul(cl, NULL, 10);
    }
    memmove(buf, body, blen);
    buf[blen] = '\0';
    out->status = status;
    out->body = buf;
    out->len = blen;
    return 0;
}

/* Request line and headers; a token or key too long for it is refused. */
static int build_head(const vq_cli *c, const api_url *u, const char *method, const char *path,
                      size_t blen, const char *idem_key, char *head, size_t sz)
{
    int n = snprintf(head, sz,
                     "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: volq/%s\r\n"
                     "Accept: application/json\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s%s%s%s%s%s\r\n",
                     /* An IPv6 address goes in brackets (RFC 7230's Host) */
                     method, u->prefix, path, strchr(u->host, ':') ? "[" : "", u->host,
                     strchr(u->host, ':') ? "]" : "", u->port, VOLQ_VERSION, blen,
                     c->token ? "Authorization: Bearer " : "", c->token ? c->token : "",
                     c->token ? "\r\n" : "", idem_key ? "Idempotency-Key: " : "",
                     idem_key ? idem_key : "", idem_key ? "\r\n" : "");
    return n < 0 || (size_t)n >= sz ? -1 : n;
}

int vq_http_request(const vq_cli *c, const char *method, const char *path, const char *body,
                    const char *idem_key, int timeout_ms, vq_http_resp *out, vq_error *err)
{
    api_url u;
    char head[4096], msg[128];
    char *resp = NULL;
    size_t blen = body ? strlen(body) : 0, rlen = 0;
    *out = (vq_http_resp){0};
    int rc = parse_url(c->api, &u, err);
    if (rc) return rc;
    int hlen = build_head(c, &u, method, path, blen, idem_key, head, sizeof head);
    if (hlen < 0) return vq_error_set(err, VQ_EINVAL, "request headers too long (token or path)");
    int fd = open_conn(&u, timeout_ms, err);
    if (fd < 0) return VQ_ECONN;
    if (send_all(fd, head, (size_t)hlen, timeout_ms) || send_all(fd, body, blen, timeout_ms) ||
        read_all(fd, timeout_ms, &resp, &rlen)) {
        why(errno, msg, sizeof msg);
        rc = vq_error_set(err, VQ_ECONN, "%s", msg);
    } else if (parse_response(resp, rlen, out)) {
        free(resp);
        rc = vq_error_set(err, VQ_ECONN, "malformed HTTP answer");
    }
    close(fd);
    return rc;
}

void vq_http_resp_free(vq_http_resp *r)
{
    if (!r) return;
    free(r->body);
    r->body = NULL;
}
