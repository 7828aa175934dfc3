/* POST .../disks/DISK/volumes and .../disks/volumes: the create-volume job.
 * The body's types are checked here; what they mean (parent exists, size
 * from the parent, ...) is the kind's check (jobs/create_volume.c). */
#include <string.h>

#include "sched_int.h"
#include "volq/kind.h"
#include "volq/uuid.h"

static const char *const create_fields[] = {"size", "format", "parent", "alias", NULL};

static int bad(vq_req *r, const char *what)
{
    vq_reply_error_(r, 400, NULL, "%s", what);
    return -1;
}

/* A string field that is absent or a string without NUL bytes. */
static int opt_string(json_t *v, size_t max)
{
    return !v || (json_is_string(v) && json_string_length(v) == strlen(json_string_value(v)) &&
                  json_string_length(v) <= max);
}

static int check_types(vq_req *r, json_t *b)
{
    json_t *size = json_object_get(b, "size"), *fmt = json_object_get(b, "format");
    json_t *parent = json_object_get(b, "parent"), *alias = json_object_get(b, "alias");
    if (size && (!json_is_integer(size) || json_integer_value(size) <= 0 ||
                 json_integer_value(size) % 512 != 0))
        return bad(r, "size must be a positive multiple of 512 (bytes)");
    if (!opt_string(fmt, 8) ||
        (fmt && strcmp(json_string_value(fmt), "cow") && strcmp(json_string_value(fmt), "raw")))
        return bad(r, "format must be \"cow\" or \"raw\"");
    if (parent && !(json_is_string(parent) && vq_uuid_valid(json_string_value(parent))))
        return bad(r, "parent must be a volume id (a lower-case UUID)");
    if (!opt_string(alias, VQ_ALIAS_MAX))
        return bad(r, "alias must be a string of at most 210 bytes");
    return 0;
}

static json_t *parse_create(vq_req *r)
{
    json_t *b = vq_req_body_(r, create_fields);
    if (b && check_types(r, b)) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* The kind's check; a domain whose metadata is bad runs no job at all.
 * 0 to go on (err holds a refusal, if any), -1 when answered. */
static int check_create(vq_req *r, const vq_domain *d, const vq_disk *disk, json_t *p,
                        vq_error *err)
{
    int rc = d->status != VQ_STATUS_OK
                 ? vq_error_set(err, VQ_EREFUSED, "domain %s is illegal: %s", d->id, d->reason)
                 : vq_job_kind_find("create-volume")->check(d, disk, p, err);
    if (rc == 0 || rc == VQ_EREFUSED) return 0;
    vq_reply_verror_(r, err);
    return -1;
}

static const char *alias_of(json_t *p, const vq_disk *disk, const char *disk_id)
{
    json_t *a = json_object_get(p, "alias");
    if (json_is_string(a) && json_string_length(a)) return json_string_value(a);
    return disk ? disk->alias : disk_id;
}

/* The fields of create_fields the body gave (given: room for all of them),
 * before defaults fill any in. */
static void fields_given(json_t *p, const char *given[])
{
    size_t n = 0;
    for (const char *const *k = create_fields; *k; k++)
        if (json_object_get(p, *k)) given[n++] = *k;
    given[n] = NULL;
}

/* disk is NULL for a new disk, whose id is disk_id; given: the fields the
 * request gave (fields_given). */
static void create(vq_req *r, const vq_domain *d, const vq_disk *disk, const char *disk_id,
                   json_t *p, const char *const *given)
{
    char holder[VQ_UUID_SIZE] = "", vol[VQ_UUID_SIZE];
    vq_error err = {0};
    vq_accept_req a = {.kind = "create-volume", .domain_id = d->id, .disk_id = disk_id,
                       .volume_id = vol, .params = p};
    if (vq_req_idem_key_(r, &a.idem_key)) return;
    int locked = disk ? vq_disk_holder_(r, disk_id, holder) : 0;
    if (locked < 0) return;
    if (!locked && check_create(r, d, disk, p, &err)) return;
    if (err.code == VQ_EREFUSED) a.refusal = err.text;
    vq_uuid_new(vol);
    a.alias = alias_of(p, disk, disk_id);
    vq_accept_one_(r, &a, &(vq_same_req){.disk = disk != NULL, .params = given});
}

/* A new volume of an existing disk goes on top of its leaf unless the body
 * names another parent. */
static void default_parent(json_t *p, const vq_disk *disk)
{
    const vq_volume *leaf = vq_disk_leaf(disk);
    if (!json_object_get(p, "parent") && leaf)
        json_object_set_new(p, "parent", json_string(leaf->id));
}

void vq_api_create_(vq_req *r)
{
    vq_domain *d = NULL;
    vq_disk *disk = NULL;
    const char *given[sizeof create_fields / sizeof create_fields[0]];
    json_t *p = parse_create(r);
    if (p && vq_find_domain_(r, r->arg[0], &d) == 0 &&
        vq_find_disk_(r, d, r->arg[1], &disk) == 0) {
        fields_given(p, given);
        default_parent(p, disk);
        create(r, d, disk, disk->id, p, given);
    }
    json_decref(p);
    vq_disk_free(disk);
    vq_domain_free(d);
}

void vq_api_create_new_(vq_req *r)
{
    vq_domain *d = NULL;
    char disk_id[VQ_UUID_SIZE];
    json_t *p = parse_create(r);
    vq_uuid_new(disk_id);
    if (p && !json_object_get(p, "size") && !json_object_get(p, "parent")) {
        bad(r, "size is needed for a new disk without a parent volume");
        json_decref(p);
        return;
    }
    const char *given[sizeof create_fields / sizeof create_fields[0]];
    if (p) fields_given(p, given);
    if (p && vq_find_domain_(r, r->arg[0], &d) == 0) create(r, d, NULL, disk_id, p, given);
    json_decref(p);
    vq_domain_free(d);
}
