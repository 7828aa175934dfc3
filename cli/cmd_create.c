/* volq create-volume --domain SD_ID [--disk DISK_ID] [--parent VOL_ID]
 *                    [--size BYTES] [--format cow|raw] [--alias NAME] [--wait] */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"

typedef struct create_args {
    const char *domain, *disk, *parent, *size, *format, *alias;
    int wait;
} create_args;

/* Everything is checked before sending: ids, size, format (exit 2). */
static int check(const create_args *a, json_t *body)
{
    uint64_t size = 0;
    int rc;
    if (!a->domain) return vq_cli_usage(vq_cmd_find("create-volume"), "--domain is needed");
    if ((rc = vq_cli_uuid(a->domain, "storage domain id"))) return rc;
    if (a->disk && (rc = vq_cli_uuid(a->disk, "disk id"))) return rc;
    if (a->parent && (rc = vq_cli_uuid(a->parent, "parent volume id"))) return rc;
    if (a->size && (rc = vq_cli_size(a->size, &size))) return rc;
    if (a->format && strcmp(a->format, "cow") && strcmp(a->format, "raw"))
        return vq_cli_fail(VQ_EXIT_USAGE, "--format is cow or raw, not \"%s\"", a->format);
    if (!a->size && !a->parent && !a->disk)
        return vq_cli_fail(VQ_EXIT_USAGE, "a new disk needs --size (or --parent)");
    if (a->size) json_object_set_new(body, "size", json_integer((json_int_t)size));
    if (a->format) json_object_set_new(body, "format", json_string(a->format));
    if (a->parent) json_object_set_new(body, "parent", json_string(a->parent));
    if (a->alias) json_object_set_new(body, "alias", json_string(a->alias));
    return 0;
}

int vq_cmd_create(vq_cli *c, int argc, char **argv)
{
    create_args a = {0};
    char path[160];
    int rc;
    json_t *job = NULL, *body = json_object();
    const vq_opt opts[] = {{"domain", &a.domain, NULL}, {"disk", &a.disk, NULL},
                           {"parent", &a.parent, NULL}, {"size", &a.size, NULL},
                           {"format", &a.format, NULL}, {"alias", &a.alias, NULL},
                           {"wait", NULL, &a.wait},     {NULL, NULL, NULL}};
    if (vq_cli_args(vq_cmd_find("create-volume"), argc, argv, opts, NULL, 0, 0, NULL, &rc) ||
        (rc = check(&a, body)))
        goto out;
    if (a.disk)
        snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s/volumes", a.domain, a.disk);
    else
        snprintf(path, sizeof path, "/api/storagedomains/%s/disks/volumes", a.domain);
    if ((rc = vq_api_call(c, "POST", path, body, &job, NULL)) == 0)
        rc = vq_job_accepted(c, job, a.wait);
out:
    json_decref(job);
    json_decref(body);
    return rc;
}
