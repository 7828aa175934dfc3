/* volq domains, volq disks SD_ID, volq disk DISK_ID [--domain SD_ID] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"

static const char *const domain_cols[] = {"ID", "VERSION", "STATUS", "DISKS", "REASON"};

static void print_domains(const vq_cli *c, json_t *arr)
{
    vq_table *t = vq_table_new(5, domain_cols);
    size_t i;
    json_t *d;
    if (!t) return;
    json_array_foreach(arr, i, d) {
        char b[3][32];
        const char *status = vq_jstr(d, "status");
        const char *cells[5] = {vq_jstr(d, "id"), vq_out_str(d, "version", b[0], sizeof b[0]),
                                status, vq_out_str(d, "disks", b[1], sizeof b[1]),
                                vq_out_str(d, "reason", b[2], sizeof b[2])};
        const char *colours[5] = {NULL, NULL, vq_out_state_colour(c, status), NULL, NULL};
        vq_table_add(t, cells, colours);
    }
    vq_table_print(c, t);
    vq_table_free(t);
}

/* GET path, then JSON or print(); the common shape of the listing commands. */
static int show(vq_cli *c, const char *path, void (*print)(const vq_cli *, json_t *))
{
    json_t *v = NULL;
    int rc = vq_api_call(c, "GET", path, NULL, &v, NULL);
    if (rc) return rc;
    if (c->json)
        vq_out_json(c, v);
    else
        print(c, v);
    json_decref(v);
    return VQ_EXIT_OK;
}

int vq_cmd_domains(vq_cli *c, int argc, char **argv)
{
    int rc;
    if (vq_cli_args(vq_cmd_find("domains"), argc, argv, NULL, NULL, 0, 0, NULL, &rc)) return rc;
    return show(c, "/api/storagedomains", print_domains);
}

static const char *const disk_cols[] = {"ALIAS",  "ID",     "FORMAT",   "QCOW_VERSION",
                                        "TEMPLATE", "STATUS", "LOCKED_BY"};

static void add_disk_row(const vq_cli *c, vq_table *t, json_t *d)
{
    char b[5][32];
    const char *status = vq_jstr(d, "status");
    const char *cells[7] = {vq_jstr(d, "alias"), vq_jstr(d, "id"),
                            vq_out_str(d, "format", b[0], sizeof b[0]),
                            vq_out_str(d, "qcow_version", b[1], sizeof b[1]),
                            vq_out_str(d, "template", b[2], sizeof b[2]), status,
                            vq_out_str(d, "locked_by", b[3], sizeof b[3])};
    const char *colours[7] = {NULL, NULL, NULL, NULL, NULL, vq_out_state_colour(c, status), NULL};
    vq_table_add(t, cells, colours);
}

static int by_alias(const void *a, const void *b)
{
    json_t *const *x = a, *const *y = b;
    return strcmp(vq_jstr(*x, "alias"), vq_jstr(*y, "alias"));
}

/* The API lists disks by id; people look for them by alias. */
static void print_disks(const vq_cli *c, json_t *arr)
{
    size_t i, n = json_array_size(arr);
    json_t *d, **v = calloc(n ? n : 1, sizeof *v);
    vq_table *t = v ? vq_table_new(7, disk_cols) : NULL;
    if (!t) {
        free(v);
        return;
    }
    json_array_foreach(arr, i, d) v[i] = d;
    qsort(v, n, sizeof *v, by_alias);
    for (i = 0; i < n; i++) add_disk_row(c, t, v[i]);
    free(v);
    vq_table_print(c, t);
    vq_table_free(t);
    json_array_foreach(arr, i, d)
        if (json_is_string(json_object_get(d, "reason")))
            printf("%s: %s\n", vq_jstr(d, "alias"), vq_jstr(d, "reason"));
}

int vq_cmd_disks(vq_cli *c, int argc, char **argv)
{
    const char *pos[1];
    char path[128];
    int rc;
    if (vq_cli_args(vq_cmd_find("disks"), argc, argv, NULL, pos, 1, 1, NULL, &rc)) return rc;
    if ((rc = vq_cli_uuid(pos[0], "storage domain id"))) return rc;
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks", pos[0]);
    return show(c, path, print_disks);
}

static const char *const vol_cols[] = {"VOLUME", "FORMAT", "COMPAT", "VOLTYPE",
                                       "LEGALITY", "GEN", "PARENT"};

static void print_volumes(const vq_cli *c, json_t *vols)
{
    vq_table *t = vq_table_new(7, vol_cols);
    size_t i;
    json_t *v;
    if (!t) return;
    json_array_foreach(vols, i, v) {
        char b[4][32];
        const char *cells[7] = {vq_jstr(v, "id"), vq_out_str(v, "format", b[0], sizeof b[0]),
                                vq_out_str(v, "compat", b[1], sizeof b[1]), vq_jstr(v, "voltype"),
                                vq_jstr(v, "legality"),
                                vq_out_str(v, "generation", b[2], sizeof b[2]),
                                vq_out_str(v, "parent", b[3], sizeof b[3])};
        vq_table_add(t, cells, NULL);
    }
    vq_table_print(c, t);
    vq_table_free(t);
}

static void print_disk(const vq_cli *c, json_t *d)
{
    static const char *const fields[] = {"id", "alias", "storage_domain", "format",
                                         "qcow_version", "image_id", "provisioned_size",
                                         "actual_size", "template", "status", "reason",
                                         "locked_by"};
    char buf[64];
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        printf("%-17s %s\n", fields[i], vq_out_str(d, fields[i], buf, sizeof buf));
    printf("\n");
    print_volumes(c, json_object_get(d, "volumes"));
}

int vq_cmd_disk(vq_cli *c, int argc, char **argv)
{
    const char *pos[1], *domain = NULL;
    char path[160];
    int rc;
    const vq_opt opts[] = {{"domain", &domain, NULL}, {NULL, NULL, NULL}};
    if (vq_cli_args(vq_cmd_find("disk"), argc, argv, opts, pos, 1, 1, NULL, &rc)) return rc;
    if ((rc = vq_cli_uuid(pos[0], "disk id"))) return rc;
    if (domain && (rc = vq_cli_uuid(domain, "storage domain id"))) return rc;
    if (domain)
        snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", domain, pos[0]);
    else
        snprintf(path, sizeof path, "/api/disks/%s", pos[0]);
    return show(c, path, print_disk);
}
