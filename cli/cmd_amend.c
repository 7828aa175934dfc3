/* volq amend DISK_ID [--domain SD_ID] [--wait] */
#include <stdio.h>

#include "cli_int.h"

static int send_amend(const vq_cli *c, const char *disk, const char *domain, json_t **job)
{
    char path[160];
    if (domain)
        snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", domain, disk);
    else
        snprintf(path, sizeof path, "/api/disks/%s", disk);
    json_t *body = json_pack("{s:s}", "qcow_version", "qcow2_v3");
    int rc = vq_api_call(c, "PUT", path, body, job, NULL);
    json_decref(body);
    return rc;
}

int vq_cmd_amend(vq_cli *c, int argc, char **argv)
{
    const char *domain = NULL, *pos[1];
    int wait = 0, rc;
    json_t *job = NULL;
    const vq_opt opts[] = {{"domain", &domain, NULL}, {"wait", NULL, &wait}, {NULL, NULL, NULL}};
    if (vq_cli_args(vq_cmd_find("amend"), argc, argv, opts, pos, 1, 1, NULL, &rc)) return rc;
    if ((rc = vq_cli_uuid(pos[0], "disk id"))) return rc;
    if (domain && (rc = vq_cli_uuid(domain, "storage domain id"))) return rc;
    if ((rc = send_amend(c, pos[0], domain, &job))) return rc;
    rc = vq_job_accepted(c, job, wait);
    json_decref(job);
    return rc;
}
