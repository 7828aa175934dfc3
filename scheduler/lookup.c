/* Domains and disks by id for the handlers: 400 for a malformed id, 404 for
 * an unknown one, answered here so each handler stays a few lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sched_int.h"
#include "volq/log.h"

int vq_find_domain_(vq_req *r, const char *sd, vq_domain **out)
{
    vq_error err = {0};
    *out = NULL;
    if (vq_req_uuid_(r, sd, "storage domain id")) return -1;
    int rc = vq_domain_open(r->s->domains_root, sd, out, &err);
    if (rc == VQ_ENOENT) {
        vq_reply_error_(r, 404, NULL, "storage domain %s not found under %s", sd,
                        r->s->domains_root);
        return -1;
    }
    if (rc) {
        vq_reply_verror_(r, &err);
        return -1;
    }
    return 0;
}

int vq_find_disk_(vq_req *r, const vq_domain *d, const char *img, vq_disk **out)
{
    vq_error err = {0};
    *out = NULL;
    if (vq_req_uuid_(r, img, "disk id")) return -1;
    int rc = vq_disk_load(d, img, out, &err);
    if (rc == VQ_ENOENT) {
        vq_reply_error_(r, 404, NULL, "disk %s not found in storage domain %s", img, d->id);
        return -1;
    }
    if (rc) {
        vq_reply_verror_(r, &err);
        return -1;
    }
    return 0;
}

static int has_image(const vq_domain *d, const char *img)
{
    int fd = -1;
    if (vq_domain_open_image(d, img, &fd, NULL)) return 0;
    close(fd);
    return 1;
}

/* Appends ", id" to a bounded list; a truncated list still reads well. */
static void list_add(char *buf, size_t sz, const char *id)
{
    size_t len = strlen(buf);
    int n = snprintf(buf + len, sz - len, "%s%s", len ? ", " : "", id);
    if (n < 0 || (size_t)n >= sz - len) buf[len] = '\0';
}

static int pick_domain(vq_req *r, const char *img, vq_domain **v, size_t n, size_t *which)
{
    char found[512] = "";
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        if (!has_image(v[i], img)) continue;
        if (hits++ == 0) *which = i;
        list_add(found, sizeof found, v[i]->id);
    }
    if (hits == 1) return 0;
    if (hits == 0)
        vq_reply_error_(r, 404, NULL, "disk %s not found in any storage domain under %s", img,
                        r->s->domains_root);
    else
        vq_reply_error_(r, 400, NULL, "disk %s is in %zu storage domains (%s); name the domain",
                        img, hits, found);
    return -1;
}

int vq_find_disk_any_(vq_req *r, const char *img, vq_domain **d, vq_disk **out)
{
    vq_domain **v = NULL;
    size_t n = 0, which = 0;
    vq_error err = {0};
    *d = NULL;
    *out = NULL;
    if (vq_req_uuid_(r, img, "disk id")) return -1;
    if (vq_domain_list(r->s->domains_root, &v, &n, &err)) {
        vq_reply_verror_(r, &err);
        return -1;
    }
    int rc = pick_domain(r, img, v, n, &which);
    if (rc == 0) {
        *d = v[which];
        v[which] = NULL; /* kept: the list below frees the others */
        rc = vq_find_disk_(r, *d, img, out);
        if (rc) {
            vq_domain_free(*d);
            *d = NULL;
        }
    }
    vq_domain_list_free(v, n);
    return rc;
}

/* Loads and checks every disk of d (vq_disk_load_many, on several threads);
 * disks that vanish meanwhile are left out. */
int vq_load_disks_(const vq_domain *d, vq_disk_scan **out, size_t *n, vq_error *err)
{
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t nids = 0;
    int rc = vq_domain_images(d, &ids, &nids, err);
    if (rc) return rc;
    vq_disk_scan *v = calloc(nids ? nids : 1, sizeof *v);
    if (!v) {
        free(ids);
        return vq_error_set(err, VQ_ENOMEM, "out of memory listing disks of %s", d->id);
    }
    vq_disk_load_many(d, (const char(*)[VQ_UUID_SIZE])ids, nids, 0, v);
    *n = 0;
    for (size_t i = 0; i < nids; i++) {
        if (!v[i].disk) {
            vq_log(VQ_LOG_INFO, "disk %s left out of the list: %s", ids[i], v[i].err.text);
            continue;
        }
        if (*n != i) v[*n] = v[i];
        (*n)++;
    }
    free(ids);
    *out = v;
    return 0;
}

void vq_free_disks_(vq_disk_scan *v, size_t n)
{
    for (size_t i = 0; i < n; i++) vq_disk_free(v[i].disk);
    free(v);
}

