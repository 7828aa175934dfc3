/* GET / and /web/NAME: files of scheduler/web/, embedded at build time. */
#include <string.h>

#include "sched_int.h"
#include "volq/blob.h"

/* Only our own files: no inline script or style, no framing (the same policy
 * as the meta tag of index.html, plus frame-ancestors, which needs a header). */
#define VQ_WEB_CSP                                                                           \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "       \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
    {".png", "image/png"},
};

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

static void serve(vq_req *r, const char *name)
{
    const struct vq_blob *f = vq_blob_find(vq_web_files, name);
    if (!f) {
        vq_reply_error_(r, 404, NULL, "no such file: %s", name);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "Content-Security-Policy", VQ_WEB_CSP);
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    vq_reply_raw_(r, 200, type_of(name), f->data, f->len);
}

void vq_api_index_(vq_req *r) { serve(r, "index.html"); }

void vq_api_asset_(vq_req *r) { serve(r, r->arg[0]); }
