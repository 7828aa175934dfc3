/* The evhttp server: limits, connection cap, auth, and the dispatcher that
 * walks the route table (routes.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sched_int.h"
#include "volq/log.h"

/* Splits "HOST:PORT" or "[V6]:PORT" into host (NUL-terminated) and port. */
/* The host of "HOST[:PORT]" or "[V6][:PORT]" into host (brackets off); what
 * follows it (":PORT" or ""), or NULL when there is no host or it does not fit. */
static const char *split_host(const char *s, char *host, size_t hostsz)
{
    const char *h = s, *end, *rest;
    if (*s == '[') {
        h = s + 1;
        if (!(end = strchr(h, ']'))) return NULL;
        rest = end + 1;
    } else {
        end = strrchr(s, ':');
        if (!end) end = s + strlen(s);
        rest = end;
    }
    if (end <= h || (size_t)(end - h) >= hostsz) return NULL;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    return rest;
}

static int parse_listen(const char *listen, char *host, size_t hostsz, int *port, vq_error *err)
{
    const char *rest = split_host(listen, host, hostsz);
    if (!rest || rest[0] != ':' || !rest[1]) goto bad;
    char *end;
    errno = 0;
    long p = strtol(rest + 1, &end, 10);
    if (*end || errno || p < 0 || p > 65535) goto bad;
    *port = (int)p;
    return 0;
bad:
    return vq_error_set(err, VQ_EINVAL, "listen address %s: expected HOST:PORT", listen);
}

/* Whether name (a host, no port, no brackets) is a loopback name or address. */
static int is_loopback(const char *name)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0) return 1;
    if (inet_pton(AF_INET, name, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* A scheduler on a loopback address answers only requests whose Host names
 * one: a web page whose name was rebound to 127.0.0.1 (DNS rebinding) sends
 * its own name, and would otherwise read and change everything the API
 * offers from the browser of the admin (no token by default).  No Host (an
 * HTTP/1.0 client) passes: a browser always sends one. */
static int host_allowed(vq_req *r)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Host");
    char name[256];
    if (!r->s->loopback || !h || (split_host(h, name, sizeof name) && is_loopback(name))) return 1;
    vq_reply_error_(r, 403, NULL, "Host %.64s is not a loopback name, and this API listens on a "
                                  "loopback address only: use localhost or 127.0.0.1", h);
    return 0;
}

/* 1 when path matches pattern; fills r->arg from the {} segments. */
static int match(const char *pattern, const char *path, vq_req *r)
{
    size_t used = 0;
    int nargs = 0;
    while (*pattern && *path) {
        if (strncmp(pattern, "{}", 2) == 0) {
            size_t seg = strcspn(path, "/");
            if (seg == 0 || nargs == VQ_HTTP_MAX_PATH_ARGS || used + seg + 1 > sizeof r->argbuf)
                return 0;
            memcpy(r->argbuf + used, path, seg);
            r->argbuf[used + seg] = '\0';
            r->arg[nargs++] = r->argbuf + used;
            used += seg + 1;
            pattern += 2;
            path += seg;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return *pattern == '\0' && *path == '\0';
}

static const char *method_name(int m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_DELETE: return "DELETE";
    default: return "?";
    }
}

/* 405 with Allow: the methods of every route sharing the matched pattern. */
static void reply_405(vq_req *r, const char *pattern)
{
    char allow[64] = "";
    size_t len = 0;
    for (const vq_route *rt = vq_routes_; rt->pattern; rt++) {
        if (strcmp(rt->pattern, pattern) != 0) continue;
        int n = snprintf(allow + len, sizeof allow - len, "%s%s", len ? ", " : "",
                         method_name(rt->method));
        if (n < 0 || (size_t)n >= sizeof allow - len) break;
        len += (size_t)n;
    }
    if (strstr(allow, "GET")) {
        int n = snprintf(allow + len, sizeof allow - len, ", HEAD");
        if (n > 0 && (size_t)n < sizeof allow - len) len += (size_t)n;
    }
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Allow", allow);
    vq_reply_error_(r, 405, NULL, "method not allowed; allowed: %s", allow);
}

/* Constant-time compare of the bearer token: no early exit on the first
 * differing byte, and the length only decides the result at the end. */
static int token_ok(const char *want, const char *hdr)
{
    static const char prefix[] = "Bearer ";
    if (!hdr || strncmp(hdr, prefix, sizeof prefix - 1) != 0) return 0;
    const char *got = hdr + sizeof prefix - 1;
    size_t wl = strlen(want), gl = strlen(got);
    unsigned char diff = (unsigned char)(wl != gl);
    for (size_t i = 0; i < wl; i++) diff |= (unsigned char)(want[i] ^ (i < gl ? got[i] : 0));
    return diff == 0;
}

static int authorized(vq_req *r, const vq_route *rt)
{
    if (!rt->changes || !r->s->token) return 1;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Authorization");
    if (token_ok(r->s->token, h)) return 1;
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), "WWW-Authenticate",
                      "Bearer realm=\"volq\"");
    vq_reply_error_(r, 401, NULL, "this request changes state and needs "
                                  "\"Authorization: Bearer TOKEN\" (VOLQ_TOKEN)");
    return 0;
}

/* A browser on another site may send a "simple" POST (text/plain or a form)
 * to the loopback API without asking first; refuse changing requests that a
 * browser marks as cross-site, whose Origin is not this API, or whose body is
 * not JSON.  Non-browser clients (curl, volq) send neither header. */
static int same_origin(vq_req *r, const vq_route *rt)
{
    if (!rt->changes) return 1;
    struct evkeyvalq *in = evhttp_request_get_input_headers(r->ev);
    const char *site = evhttp_find_header(in, "Sec-Fetch-Site");
    const char *origin = evhttp_find_header(in, "Origin");
    const char *host = evhttp_find_header(in, "Host");
    const char *type = evhttp_find_header(in, "Content-Type");
    char want[300];
    int bad_origin = 0;
    if (origin) {
        bad_origin = !host || snprintf(want, sizeof want, "http://%s", host) >= (int)sizeof want ||
                     strcmp(origin, want) != 0;
    }
    if ((site && strcmp(site, "same-origin") && strcmp(site, "none")) || bad_origin) {
        vq_reply_error_(r, 403, NULL, "cross-site request refused: changing requests must come "
                                      "from the dashboard or a non-browser client");
        return 0;
    }
    if (evbuffer_get_length(evhttp_request_get_input_buffer(r->ev)) > 0 &&
        (!type || strncasecmp(type, "application/json", 16) != 0)) {
        vq_reply_error_(r, 415, NULL, "the body must be JSON (Content-Type: application/json)");
        return 0;
    }
    return 1;
}

/* HEAD is served by the GET route; evhttp leaves the body out. */
static int method_of(struct evhttp_request *ev)
{
    int m = (int)evhttp_request_get_command(ev);
    return m == EVHTTP_REQ_HEAD ? EVHTTP_REQ_GET : m;
}

static void run_route(vq_req *r, const vq_route *rt)
{
    if (!same_origin(r, rt) || !authorized(r, rt)) return;
    if (rt->needs_redis && !r->s->redis_up) {
        vq_reply_error_(r, 503, NULL, "redis is unreachable at %s; retrying", r->s->redis_shown);
        return;
    }
    if (rt->changes) vq_status_forget_();
    rt->fn(r);
}

static void dispatch(vq_req *r, const char *path)
{
    const vq_route *first = NULL;
    int m = method_of(r->ev);
    for (const vq_route *rt = vq_routes_; rt->pattern; rt++) {
        if (first && strcmp(rt->pattern, first->pattern) != 0) continue;
        if (!match(rt->pattern, path, r)) continue;
        if (!first) first = rt;
        if (rt->method == m) {
            run_route(r, rt);
            return;
        }
    }
    if (first)
        reply_405(r, first->pattern);
    else
        vq_reply_error_(r, 404, NULL, "no such resource: %s", path);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    vq_sched *s = arg;
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i] == evcon) {
            s->conns[i] = s->conns[--s->nconns];
            return;
        }
}

/* evhttp 2.1 has no connection cap: a connection is counted from its first
 * request until it closes (idle ones are bounded by the request timeout).
 * Over the cap the request gets 503 and its connection is closed. */
static int admit(vq_req *r)
{
    vq_sched *s = r->s;
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->ev);
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i] == evcon) return 1;
    if (s->nconns == VQ_HTTP_MAX_CONNS) {
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Connection", "close");
        vq_reply_error_(r, 503, NULL, "too many connections (%d); retry later", VQ_HTTP_MAX_CONNS);
        return 0;
    }
    s->conns[s->nconns++] = evcon;
    evhttp_connection_set_closecb(evcon, conn_closed, s);
    return 1;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    vq_sched *s = arg;
    vq_req r = {.ev = ev, .s = s};
    TAILQ_INIT(&r.query);
    vq_conns_request_(s, ev);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *qs = uri ? evhttp_uri_get_query(uri) : NULL;
    if (!admit(&r) || !host_allowed(&r)) return;
    if (s->stopping) { /* answered while the answers queued before are written */
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        vq_reply_error_(&r, 503, NULL, "volq-scheduler is stopping; retry once it is back");
        return;
    }
    if (!path || !*path) {
        vq_reply_error_(&r, 400, NULL, "malformed request line");
        return;
    }
    /* A decoded %00 would end the value early: "limit=5%00x" would read as 5. */
    if (qs && (strstr(qs, "%00") || evhttp_parse_query_str(qs, &r.query) != 0)) {
        vq_reply_error_(&r, 400, NULL, "malformed query string%s",
                        strstr(qs, "%00") ? ": %00 (NUL) is not allowed" : "");
        return;
    }
    dispatch(&r, path);
    evhttp_clear_headers(&r.query);
}

/* Logs the port actually bound (it differs from the flag with port 0). */
static void log_bound(struct evhttp_bound_socket *b, const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int port = 0;
    if (getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&ss, &len) == 0)
        port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    vq_log(VQ_LOG_NOTICE, "listening on %s:%d", host, port);
}

int vq_http_start_(vq_sched *s, const char *listen, vq_error *err)
{
    char host[256];
    int port = 0;
    int rc = parse_listen(listen, host, sizeof host, &port, err);
    if (rc) return rc;
    s->loopback = is_loopback(host);
    s->http = evhttp_new(s->base);
    if (!s->http) return vq_error_set(err, VQ_ENOMEM, "evhttp_new failed");
    if ((rc = vq_conns_start_(s, err))) return rc;
    evhttp_set_max_body_size(s->http, VQ_HTTP_MAX_BODY);
    evhttp_set_max_headers_size(s->http, VQ_HTTP_MAX_HEADERS);
    evhttp_set_timeout(s->http, VQ_HTTP_TIMEOUT_S);
    /* Every method reaches the dispatcher, so unknown ones get 405 with Allow. */
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(s->http, "application/json");
    evhttp_set_gencb(s->http, on_request, s);
    struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
    if (!b) return vq_error_set(err, VQ_EIO, "cannot listen on %s: %s", listen, strerror(errno));
    log_bound(b, host);
    return 0;
}
