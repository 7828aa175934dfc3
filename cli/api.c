/* JSON requests to the scheduler, and the one-line errors (with the exit
 * status of SPEC §3) for everything that is not a 2xx answer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"

int vq_cli_fail(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "volq: %s\n", msg);
    return code;
}

/* The "error" of a JSON error body, else a generic text for the status. */
static void error_text(const vq_http_resp *r, char *buf, size_t sz)
{
    json_t *o = json_loadb(r->body, r->len, 0, NULL);
    const char *e = json_string_value(json_object_get(o, "error"));
    if (e)
        snprintf(buf, sz, "%s", e);
    else if (r->status == 413)
        snprintf(buf, sz, "request too large");
    else
        snprintf(buf, sz, "HTTP %d", r->status);
    json_decref(o);
}

static const struct {
    int status, exit;
    const char *hint;
} by_status[] = {
    {400, VQ_EXIT_USAGE, ""},
    {413, VQ_EXIT_USAGE, ""},
    {401, VQ_EXIT_FAILED, "; pass --token TOKEN or set VOLQ_TOKEN"},
    {404, VQ_EXIT_FAILED, ""},
    {405, VQ_EXIT_FAILED, "; is --api pointing at volq-scheduler?"},
    {409, VQ_EXIT_FAILED, ""},
    {503, VQ_EXIT_UNREACHABLE, "; is redis-server (or `volq up`) running?"},
};

/* A 503 that quotes Redis's own error reply ("redis: MISCONF ...": its code
 * in capitals): Redis runs but refuses, which "is it running?" would not help. */
static int error_reply(const char *text)
{
    if (strncmp(text, "redis: ", 7) != 0) return 0;
    const char *p = text + 7;
    while (*p >= 'A' && *p <= 'Z') p++;
    return p > text + 7 && (*p == ' ' || *p == '\0');
}

static int fail_status(const vq_cli *c, const vq_http_resp *r)
{
    char text[512];
    error_text(r, text, sizeof text);
    if (r->status == 503 && error_reply(text))
        return vq_cli_fail(VQ_EXIT_UNREACHABLE, "%s; redis refuses the command: see its log "
                           "(docs/troubleshooting.md)", text);
    for (size_t i = 0; i < sizeof by_status / sizeof by_status[0]; i++)
        if (by_status[i].status == r->status)
            return vq_cli_fail(by_status[i].exit, "%s%s", text, by_status[i].hint);
    return vq_cli_fail(VQ_EXIT_FAILED, "the scheduler at %s answered %d: %s", c->api, r->status,
                       text);
}

static int fail_conn(const vq_cli *c, const vq_error *err)
{
    if (err->code == VQ_EINVAL) return vq_cli_fail(VQ_EXIT_USAGE, "%s", err->text);
    return vq_cli_fail(VQ_EXIT_UNREACHABLE,
                       "cannot reach the scheduler at %s: %s; is `volq up` or volq-scheduler "
                       "running?", c->api, err->text);
}

int vq_api_call(const vq_cli *c, const char *method, const char *path, json_t *body,
                json_t **out, int *status)
{
    vq_http_resp r;
    vq_error err = {0};
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (out) *out = NULL;
    if (status) *status = 0;
    int rc = vq_http_request(c, method, path, text, NULL, VQ_CLI_TIMEOUT_MS, &r, &err);
    free(text);
    if (rc) return fail_conn(c, &err);
    if (status) *status = r.status;
    if (r.status < 200 || r.status > 299) {
        rc = fail_status(c, &r);
        goto out;
    }
    json_error_t je;
    json_t *v = r.len ? json_loadb(r.body, r.len, 0, &je) : NULL;
    if (r.len && !v) {
        rc = vq_cli_fail(VQ_EXIT_FAILED, "the scheduler at %s answered malformed JSON: %s",
                         c->api, je.text);
        goto out;
    }
    if (out)
        *out = v;
    else
        json_decref(v);
out:
    vq_http_resp_free(&r);
    return rc;
}
