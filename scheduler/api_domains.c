/* GET routes of domains and disks: read from the files, lock holders from
 * Redis in one round trip. */
#include <stdlib.h>

#include "sched_int.h"

static json_t *domain_obj(const vq_domain *d)
{
    char(*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    if (vq_domain_images(d, &ids, &n, NULL)) n = 0; /* an unreadable images/ counts none */
    free(ids);
    return vq_domain_json(d, n);
}

void vq_api_domains_(vq_req *r)
{
    vq_domain **v = NULL;
    size_t n = 0;
    vq_error err = {0};
    if (vq_domain_list(r->s->domains_root, &v, &n, &err)) {
        vq_reply_verror_(r, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, domain_obj(v[i]));
    vq_domain_list_free(v, n);
    vq_reply_json_(r, 200, arr);
}

/* holders[i] for v[i], in one round trip. */
int vq_fetch_holders_(vq_sched *s, const vq_disk_scan *v, size_t n,
                      char (**holders)[VQ_UUID_SIZE], vq_error *err)
{
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    *holders = calloc(n ? n : 1, sizeof **holders);
    int rc = VQ_ENOMEM;
    if (!ids || !*holders) {
        vq_error_set(err, VQ_ENOMEM, "out of memory reading disk locks");
        goto out;
    }
    for (size_t i = 0; i < n; i++) ids[i] = v[i].disk->id;
    rc = n ? vq_queue_lock_holders(s->q, ids, n, *holders, err) : 0;
out:
    free(ids);
    return rc;
}

static json_t *disks_json(const vq_disk_scan *v, size_t n,
                          const char (*holders)[VQ_UUID_SIZE])
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, vq_disk_json(v[i].disk, holders[i][0] ? holders[i] : NULL));
    return arr;
}

void vq_api_disks_(vq_req *r)
{
    vq_domain *d = NULL;
    vq_disk_scan *v = NULL;
    size_t n = 0;
    char(*holders)[VQ_UUID_SIZE] = NULL;
    vq_error err = {0};
    if (vq_find_domain_(r, r->arg[0], &d)) return;
    if (vq_load_disks_(d, &v, &n, &err) || vq_fetch_holders_(r->s, v, n, &holders, &err))
        vq_reply_verror_(r, &err);
    else
        vq_reply_json_(r, 200, disks_json(v, n, (const char(*)[VQ_UUID_SIZE])holders));
    free(holders);
    vq_free_disks_(v, n);
    vq_domain_free(d);
}

/* Answers one disk with its lock holder. */
static void reply_disk(vq_req *r, const vq_disk *disk)
{
    char holder[VQ_UUID_SIZE];
    if (vq_disk_holder_(r, disk->id, holder) < 0) return;
    vq_reply_json_(r, 200, vq_disk_json(disk, holder[0] ? holder : NULL));
}

void vq_api_disk_(vq_req *r)
{
    vq_domain *d = NULL;
    vq_disk *disk = NULL;
    if (vq_find_domain_(r, r->arg[0], &d) == 0 && vq_find_disk_(r, d, r->arg[1], &disk) == 0)
        reply_disk(r, disk);
    vq_disk_free(disk);
    vq_domain_free(d);
}

void vq_api_disk_any_(vq_req *r)
{
    vq_domain *d = NULL;
    vq_disk *disk = NULL;
    if (vq_find_disk_any_(r, r->arg[0], &d, &disk) == 0) reply_disk(r, disk);
    vq_disk_free(disk);
    vq_domain_free(d);
}
