/* Answers and request parsing shared by every handler. */
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"
#include "volq/log.h"
#include "volq/text.h"
#include "volq/uuid.h"

/* Answers larger than this are followed by malloc_trim(). */
#define VQ_REPLY_TRIM_BYTES (1024 * 1024)

static void count(vq_req *r, int code)
{
    int cls = code / 100;
    if (cls >= 1 && cls <= 5) r->s->stats.requests[cls]++;
}

void vq_reply_raw_(vq_req *r, int code, const char *ctype, const void *data, size_t len)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->ev);
    struct evbuffer *buf = evbuffer_new();
    if (evhttp_request_get_command(r->ev) == EVHTTP_REQ_HEAD) {
        /* evhttp would send the body after the headers even for HEAD */
        char n[32];
        snprintf(n, sizeof n, "%zu", len);
        evhttp_add_header(out, "Content-Length", n);
        len = 0;
    }
    if (buf && len) evbuffer_add(buf, data, len);
    evhttp_add_header(out, "Content-Type", ctype);
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    count(r, code);
    evhttp_send_reply(r->ev, code, NULL, buf);
    if (buf) evbuffer_free(buf);
}

void vq_reply_json_(vq_req *r, int code, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory while answering\",\"reason\":null}";
        vq_reply_raw_(r, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps leaves room only for the NUL: write over it */
    vq_reply_raw_(r, code, "application/json", text, len + 1);
    free(text);
    /* A large answer (10,000 disks: ~100 MB of JSON objects on the way) left
     * freed memory that malloc keeps: give it back, so the scheduler's RSS
     * returns to a few MiB instead of staying at its peak. */
    if (len > VQ_REPLY_TRIM_BYTES) malloc_trim(0);
}

void vq_reply_error_(vq_req *r, int code, const char *reason, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vq_text_clean(msg, sizeof msg, msg); /* it may quote the client's bytes: JSON needs valid UTF-8 */
    char why[512];
    if (reason) vq_text_clean(why, sizeof why, reason);
    json_t *o = json_pack("{s:s,s:s?}", "error", msg, "reason", reason ? why : NULL);
    if (o && !reason) json_object_set_new(o, "reason", json_null());
    vq_reply_json_(r, code, o);
}

static const struct {
    int code, status;
} status_of[] = {
    {VQ_EINVAL, 400},   {VQ_ENOENT, 404},  {VQ_EILLEGAL, 409}, {VQ_EREFUSED, 409},
    {VQ_ELOCKED, 409},  {VQ_ESTATE, 409},  {VQ_EBUSY, 409},    {VQ_EEXIST, 409},
    {VQ_EREDIS, 503},   {VQ_EREPLY, 503},  {VQ_ETIMEDOUT, 503},
};

void vq_reply_verror_(vq_req *r, const vq_error *err)
{
    int status = 500;
    for (size_t i = 0; i < sizeof status_of / sizeof status_of[0]; i++)
        if (status_of[i].code == err->code) status = status_of[i].status;
    if (err->code == VQ_EREDIS) vq_redis_link_down_(r->s, err->text);
    if (status == 500) vq_log(VQ_LOG_WARN, "%s", err->text);
    vq_reply_error_(r, status, status == 409 ? err->text : NULL, "%s",
                    err->text[0] ? err->text : vq_strerror(err->code));
}

json_t *vq_req_body_(vq_req *r, const char *const *allowed)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
    size_t len = evbuffer_get_length(in);
    const char *data = len ? (const char *)evbuffer_pullup(in, -1) : "";
    json_t *o = NULL;
    vq_error err = {0};
    if (!data)
        vq_error_set(&err, VQ_ENOMEM, "out of memory while reading the body");
    else
        vq_body_decode_(data, len, allowed, &o, &err);
    if (!o) vq_reply_error_(r, err.code == VQ_ENOMEM ? 500 : 400, NULL, "%s", err.text);
    return o;
}

const char *vq_req_query_(vq_req *r, const char *name)
{
    return evhttp_find_header(&r->query, name);
}

int vq_req_query_int_(vq_req *r, const char *name, long lo, long hi, long def, long *out)
{
    const char *v = vq_req_query_(r, name);
    *out = def;
    if (!v) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    /* Digits only (a leading '-' for a negative bound): strtol also takes
     * spaces and '+', which no documented value has. */
    if (!(isdigit((unsigned char)v[0]) || (v[0] == '-' && isdigit((unsigned char)v[1]))) || *end ||
        errno || n < lo || n > hi) {
        vq_reply_error_(r, 400, NULL, "query parameter %s must be a number from %ld to %ld",
                        name, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

/* Keys are opaque to volq; the cap bounds what Redis stores per key. */
#define VQ_IDEM_KEY_MAX 160 /* a bulk adds "/DISK_ID": 197, under the queue's 200 */

int vq_req_idem_key_(vq_req *r, const char **key)
{
    *key = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Idempotency-Key");
    if (!*key || (**key && strlen(*key) <= VQ_IDEM_KEY_MAX)) return 0;
    vq_reply_error_(r, 400, NULL, "Idempotency-Key must be 1 to %d characters", VQ_IDEM_KEY_MAX);
    return -1;
}

int vq_req_uuid_(vq_req *r, const char *s, const char *what)
{
    if (vq_uuid_valid(s)) return 0;
    vq_reply_error_(r, 400, NULL, "%s \"%.64s\" is not a lower-case UUID", what, s ? s : "");
    return -1;
}
