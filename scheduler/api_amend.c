/* PUT .../disks/DISK {"qcow_version":"qcow2_v3"}: the amend job.  The kind's
 * check (jobs/amend.c) decides refusals; a locked disk skips it so that the
 * holder is named (the lock itself would look like "in use"). */
#include <string.h>

#include "sched_int.h"
#include "volq/kind.h"

static const char *const amend_fields[] = {"qcow_version", NULL};

static int parse_amend(vq_req *r)
{
    json_t *b = vq_req_body_(r, amend_fields);
    if (!b) return -1;
    json_t *v = json_object_get(b, "qcow_version");
    int ok = json_is_string(v) && strcmp(json_string_value(v), "qcow2_v3") == 0;
    json_decref(b);
    if (ok) return 0;
    vq_reply_error_(r, 400, NULL, "the body must be {\"qcow_version\":\"qcow2_v3\"}");
    return -1;
}

/* The kind's check: 0 to go on (err holds a refusal, if any), -1 when answered. */
static int check_amend(vq_req *r, const vq_domain *d, const vq_disk *disk, vq_error *err)
{
    int rc = vq_job_kind_find("amend")->check(d, disk, NULL, err);
    if (rc == 0 || rc == VQ_EREFUSED) return 0;
    vq_reply_verror_(r, err);
    return -1;
}

static void amend(vq_req *r, const vq_domain *d, const vq_disk *disk)
{
    char holder[VQ_UUID_SIZE];
    vq_error err = {0};
    vq_accept_req a = {.kind = "amend", .domain_id = d->id, .disk_id = disk->id,
                       .alias = disk->alias};
    if (vq_req_idem_key_(r, &a.idem_key)) return;
    int locked = vq_disk_holder_(r, disk->id, holder);
    if (locked < 0) return;
    if (!locked && check_amend(r, d, disk, &err)) return;
    if (err.code == VQ_EREFUSED) a.refusal = err.text;
    vq_accept_one_(r, &a, &(vq_same_req){.disk = 1});
}

void vq_api_amend_(vq_req *r)
{
    vq_domain *d = NULL;
    vq_disk *disk = NULL;
    if (parse_amend(r) == 0 && vq_find_domain_(r, r->arg[0], &d) == 0 &&
        vq_find_disk_(r, d, r->arg[1], &disk) == 0)
        amend(r, d, disk);
    vq_disk_free(disk);
    vq_domain_free(d);
}

void vq_api_amend_any_(vq_req *r)
{
    vq_domain *d = NULL;
    vq_disk *disk = NULL;
    if (parse_amend(r) == 0 && vq_find_disk_any_(r, r->arg[0], &d, &disk) == 0)
        amend(r, d, disk);
    vq_disk_free(disk);
    vq_domain_free(d);
}
