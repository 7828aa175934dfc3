/* The create-volume job: a new disk, a snapshot overlay or a thin disk, with
 * the compat level of the domain's version (1.1 on V4+, 0.10 below).
 *
 * Write order, so that a crash anywhere leaves what the next attempt finishes
 * or cleans: (1) image folder and, for a thin disk, the template's hard links;
 * (2) the new .meta with LEGALITY=ILLEGAL and an empty .lease; (3) qemu-img
 * create; (4) the parent's .meta to INTERNAL; (5) the new .meta to LEGAL.
 * An attempt that finds the new .meta LEGAL is done; one that finds it ILLEGAL
 * removes the half-made volume and starts again.  A failed attempt removes
 * everything it made and puts the parent back to LEAF. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "volq/disk.h"
#include "volq/fsutil.h"
#include "volq/kind.h"
#include "volq/log.h"
#include "volq/qemu.h"

#define VOLUME_MODE 0660
#define IMAGE_DIR_MODE 0755

/* qemu's qcow2 limit with its default 64 KiB clusters: a 32 MiB L1 table of
 * 8-byte entries, each mapping 8,192 clusters of 64 KiB. */
#define VQ_COW_SIZE_MAX ((json_int_t)1 << 51)

/* Parameters as normalised by the check: every field set. */
typedef struct create_params {
    uint64_t size;
    int raw;
    const char *parent;        /* NULL for a base volume */
    const char *parent_image;  /* the image holding the parent: this disk or a template */
    int parent_raw;
    const char *alias;
} create_params;

static int read_params(const json_t *p, create_params *cp, vq_error *err)
{
    json_t *size = json_object_get(p, "size"), *fmt = json_object_get(p, "format");
    json_t *parent = json_object_get(p, "parent"), *alias = json_object_get(p, "alias");
    memset(cp, 0, sizeof *cp);
    if (!json_is_integer(size) || json_integer_value(size) <= 0 ||
        json_integer_value(size) % 512)
        return vq_error_set(err, VQ_EINVAL, "size must be a positive multiple of 512 bytes");
    cp->size = (uint64_t)json_integer_value(size);
    const char *f = json_is_string(fmt) ? json_string_value(fmt) : "cow";
    if (strcmp(f, "cow") && strcmp(f, "raw"))
        return vq_error_set(err, VQ_EINVAL, "format must be cow or raw, not %s", f);
    cp->raw = strcmp(f, "raw") == 0;
    if (json_is_string(parent)) {
        cp->parent = json_string_value(parent);
        cp->parent_image = json_string_value(json_object_get(p, "parent_image"));
        cp->parent_raw = json_is_true(json_object_get(p, "parent_raw"));
        /* Both name files in the domain: never anything but UUIDs (the check
         * wrote them; a record changed by hand must not lead elsewhere). */
        if (!vq_uuid_valid(cp->parent) || !cp->parent_image || !vq_uuid_valid(cp->parent_image))
            return vq_error_set(err, VQ_EINVAL, "parent and parent_image must be UUIDs");
    }
    cp->alias = json_is_string(alias) ? json_string_value(alias) : "";
    return 0;
}

/* ---- acceptance check ------------------------------------------------- */

static int check_input(json_t *p, vq_error *err)
{
    json_t *size = json_object_get(p, "size"), *fmt = json_object_get(p, "format");
    json_t *parent = json_object_get(p, "parent"), *alias = json_object_get(p, "alias");
    if (size && !json_is_null(size) &&
        (!json_is_integer(size) || json_integer_value(size) <= 0 || json_integer_value(size) % 512))
        return vq_error_set(err, VQ_EINVAL, "size must be a positive multiple of 512 bytes");
    if (fmt && !json_is_null(fmt) &&
        (!json_is_string(fmt) ||
         (strcmp(json_string_value(fmt), "cow") && strcmp(json_string_value(fmt), "raw"))))
        return vq_error_set(err, VQ_EINVAL, "format must be cow or raw");
    if (parent && !json_is_null(parent) &&
        (!json_is_string(parent) || !vq_uuid_valid(json_string_value(parent))))
        return vq_error_set(err, VQ_EINVAL, "parent must be a volume id (a lower-case UUID)");
    if (alias && !json_is_null(alias) && !json_is_string(alias))
        return vq_error_set(err, VQ_EINVAL, "alias must be a string");
    return 0;
}

/* DESCRIPTION must stay within VDSM's 210 bytes once the alias is escaped. */
static char *description_json(const char *alias)
{
    json_t *o = json_pack("{s:s,s:s}", "DiskAlias", alias, "DiskDescription", "");
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

static int check_alias(const char *alias, vq_error *err)
{
    char *d = description_json(alias);
    if (!d) return vq_error_set(err, VQ_EINVAL, "alias is not valid UTF-8");
    size_t n = strlen(d);
    free(d);
    if (n > VQ_DESCRIPTION_MAX)
        return vq_error_set(err, VQ_EINVAL, "alias is too long: DESCRIPTION would be %zu bytes, "
                            "VDSM allows %d", n, VQ_DESCRIPTION_MAX);
    return 0;
}

/* Finds the template volume vol in the domain: an image whose folder holds
 * vol as a SHARED volume of a template disk.  Fills its image id. */
static int find_template_volume(const vq_domain *d, const char *vol, char img_out[VQ_UUID_SIZE],
                                vq_disk **tdisk, vq_error *err)
{
    char (*ids)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    int rc = vq_domain_images(d, &ids, &n, err);
    if (rc) return rc;
    char name[VQ_UUID_SIZE + 8];
    snprintf(name, sizeof name, "%s.meta", vol);
    rc = vq_error_set(err, VQ_EREFUSED, "parent volume %s not found in domain %s", vol, d->id);
    for (size_t i = 0; i < n; i++) {
        int dfd = -1;
        if (vq_domain_open_image(d, ids[i], &dfd, NULL)) continue;
        int has = faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        close(dfd);
        vq_disk *t = NULL;
        if (!has || vq_disk_load(d, ids[i], &t, NULL)) continue;
        if (t->is_template && t->status == VQ_STATUS_OK) {
            memcpy(img_out, ids[i], VQ_UUID_SIZE);
            *tdisk = t;
            vq_error_clear(err);
            rc = 0;
            break;
        }
        vq_disk_free(t);
    }
    free(ids);
    return rc;
}

static const vq_volume *find_volume(const vq_disk *disk, const char *vol)
{
    for (size_t i = 0; disk && i < disk->nvols; i++)
        if (strcmp(disk->vols[i].id, vol) == 0) return &disk->vols[i];
    return NULL;
}

/* Records the parent (its image, format) and fills size and alias from it. */
static int adopt_parent(json_t *p, const vq_disk *owner, const char *owner_img,
                        const vq_volume *pv, vq_error *err)
{
    json_t *size = json_object_get(p, "size");
    if (json_is_integer(size) && (uint64_t)json_integer_value(size) < pv->meta.capacity)
        return vq_error_set(err, VQ_EREFUSED, "size %lld is below the parent's %llu bytes",
                            (long long)json_integer_value(size),
                            (unsigned long long)pv->meta.capacity);
    if (!json_is_integer(size))
        json_object_set_new(p, "size", json_integer((json_int_t)pv->meta.capacity));
    json_object_set_new(p, "parent_image", json_string(owner_img));
    json_object_set_new(p, "parent_raw", json_boolean(pv->meta.format == VQ_FORMAT_RAW));
    if (!json_is_string(json_object_get(p, "alias")))
        json_object_set_new(p, "alias", json_string(owner->alias));
    return 0;
}

static int check_parent(const vq_domain *d, const vq_disk *disk, json_t *p, const char *parent,
                        vq_error *err)
{
    const char *fmt = json_string_value(json_object_get(p, "format"));
    if (fmt && strcmp(fmt, "raw") == 0)
        return vq_error_set(err, VQ_EREFUSED, "a raw volume cannot be made on top of a parent");
    if (disk) { /* a snapshot of an existing disk */
        if (disk->status != VQ_STATUS_OK)
            return vq_error_set(err, VQ_EREFUSED, "disk %s is illegal: %s", disk->id, disk->reason);
        if (disk->is_template)
            return vq_error_set(err, VQ_EREFUSED, "disk %s is a template disk", disk->id);
        const vq_volume *pv = find_volume(disk, parent);
        if (!pv || pv->shared)
            return vq_error_set(err, VQ_EREFUSED, "parent volume %s not found in disk %s", parent,
                                disk->id);
        if (pv != vq_disk_leaf(disk))
            return vq_error_set(err, VQ_EREFUSED, "parent volume %s is not the leaf of disk %s",
                                parent, disk->id);
        if (pv->meta.legality != VQ_LEGAL)
            return vq_error_set(err, VQ_EREFUSED, "parent volume %s is %s", parent,
                                vq_legality_name(pv->meta.legality));
        return adopt_parent(p, disk, disk->id, pv, err);
    }
    char timg[VQ_UUID_SIZE];
    vq_disk *t = NULL;
    int rc = find_template_volume(d, parent, timg, &t, err);
    if (rc) return rc;
    const vq_volume *pv = find_volume(t, parent);
    /* The folder may hold a .meta of that name outside the template's chain. */
    rc = pv ? adopt_parent(p, t, timg, pv, err)
            : vq_error_set(err, VQ_EREFUSED, "parent volume %s is not a volume of template disk %s",
                           parent, timg);
    vq_disk_free(t);
    return rc;
}

static int create_check(const vq_domain *d, const vq_disk *disk, json_t *p, vq_error *err)
{
    int rc = check_input(p, err);
    if (rc) return rc;
    if (d->status != VQ_STATUS_OK)
        return vq_error_set(err, VQ_EREFUSED, "domain %s is illegal: %s", d->id, d->reason);
    const char *parent = json_string_value(json_object_get(p, "parent"));
    if (parent && (rc = check_parent(d, disk, p, parent, err))) return rc;
    if (!parent && disk)
        return vq_error_set(err, VQ_EREFUSED, "disk %s exists: a new volume on it needs its leaf "
                            "as parent", disk->id);
    if (!json_is_integer(json_object_get(p, "size")))
        return vq_error_set(err, VQ_EINVAL, "size is required for a new disk");
    if (!json_is_string(json_object_get(p, "format")))
        json_object_set_new(p, "format", json_string("cow"));
    json_int_t size = json_integer_value(json_object_get(p, "size"));
    if (strcmp(json_string_value(json_object_get(p, "format")), "cow") == 0 && size > VQ_COW_SIZE_MAX)
        return vq_error_set(err, VQ_EINVAL, "size %lld is above %lld bytes (2 PiB), the most a "
                            "qcow2 volume with 64 KiB clusters can hold", (long long)size,
                            (long long)VQ_COW_SIZE_MAX);
    if (!json_is_string(json_object_get(p, "alias")))
        json_object_set_new(p, "alias", json_string(""));
    return check_alias(json_string_value(json_object_get(p, "alias")), err);
}

/* ---- the run ---------------------------------------------------------- */

typedef struct create_run_state {
    const vq_domain *d;
    const vq_job *job;
    create_params cp;
    char imgdir[PATH_MAX];
    int dfd;                /* the new volume's image folder */
    int made_dir;           /* this attempt created the image folder */
} create_run_state;

/* On top of this disk's own leaf (a snapshot) or of a template volume (a thin disk). */
static int is_snapshot(const create_run_state *s)
{
    return s->cp.parent && strcmp(s->cp.parent_image, s->job->disk_id) == 0;
}

static int is_thin(const create_run_state *s)
{
    return s->cp.parent && strcmp(s->cp.parent_image, s->job->disk_id) != 0;
}

/* New files and folders get the owner of the folder they are made in, so that
 * a volume root makes in VDSM's domain stays vdsm:kvm like its neighbours. */
static void own_like_folder(int dirfd, const char *folder, const char *name)
{
    struct stat st;
    if (geteuid() != 0 || fstatat(dirfd, folder, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
    char path[VQ_UUID_SIZE * 2 + 16];
    if (snprintf(path, sizeof path, "%s/%s", folder, name) >= (int)sizeof path) return;
    if (fchownat(dirfd, path, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0)
        vq_log(VQ_LOG_WARN, "%s: cannot set its owner: %s", path, strerror(errno));
}

/* s->imgdir: the absolute path qemu-img is given. */
static int image_path(create_run_state *s, vq_error *err)
{
    int n = snprintf(s->imgdir, sizeof s->imgdir, "%s/images/%s", s->d->path, s->job->disk_id);
    if (n < 0 || (size_t)n >= sizeof s->imgdir)
        return vq_error_set(err, VQ_EINVAL, "disk %s: image path too long", s->job->disk_id);
    return 0;
}

static int open_or_make_image(create_run_state *s, vq_error *err)
{
    int rc = image_path(s, err);
    if (rc) return rc;
    char rel[VQ_UUID_SIZE + 8];
    snprintf(rel, sizeof rel, "images/%s", s->job->disk_id);
    if (mkdirat(s->d->dirfd, rel, IMAGE_DIR_MODE) == 0) {
        s->made_dir = 1;
        own_like_folder(s->d->dirfd, "images", s->job->disk_id);
    } else if (errno != EEXIST)
        return vq_error_set(err, VQ_EIO, "disk %s: cannot make the image folder: %s",
                            s->job->disk_id, strerror(errno));
    return vq_domain_open_image(s->d, s->job->disk_id, &s->dfd, err);
}

static const char *const suffixes[] = {"", ".meta", ".lease"};

/* A thin disk's folder holds hard links of the template volume, as VDSM makes them. */
static int link_template(create_run_state *s, vq_error *err)
{
    int tfd = -1;
    int rc = vq_domain_open_image(s->d, s->cp.parent_image, &tfd, err);
    if (rc) return rc;
    for (size_t i = 0; i < 3 && rc == 0; i++) {
        char name[VQ_UUID_SIZE + 8];
        snprintf(name, sizeof name, "%s%s", s->cp.parent, suffixes[i]);
        if (linkat(tfd, name, s->dfd, name, 0) != 0 && errno != EEXIST &&
            !(errno == ENOENT && i == 2))
            rc = vq_error_set(err, VQ_EIO, "volume %s: cannot link template file %s: %s",
                              s->job->volume_id, name, strerror(errno));
    }
    close(tfd);
    return rc;
}

static void remove_volume_files(create_run_state *s)
{
    for (size_t i = 0; i < 3; i++) {
        char name[VQ_UUID_SIZE + 8];
        snprintf(name, sizeof name, "%s%s", s->job->volume_id, suffixes[i]);
        unlinkat(s->dfd, name, 0);
    }
}

static int set_kv_u64(vq_kv *kv, const char *key, uint64_t v, vq_error *err)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return vq_kv_set(kv, key, buf, err);
}

/* The new volume's metadata, with the size keys of the domain's version. */
static int build_meta(create_run_state *s, vq_meta *m, vq_error *err)
{
    const create_params *cp = &s->cp;
    char *desc = description_json(cp->alias);
    if (!desc) return vq_error_set(err, VQ_EINVAL, "alias is not valid UTF-8");
    m->format = cp->raw ? VQ_FORMAT_RAW : VQ_FORMAT_COW;
    m->voltype = VQ_VOLTYPE_LEAF;
    m->legality = VQ_ILLEGAL;
    m->type = VQ_TYPE_SPARSE;
    memcpy(m->image, s->job->disk_id, VQ_UUID_SIZE);
    memcpy(m->domain, s->d->id, VQ_UUID_SIZE);
    snprintf(m->puuid, sizeof m->puuid, "%s", cp->parent ? cp->parent : VQ_UUID_BLANK);
    m->capacity = cp->size;
    m->gen = 0;
    int rc = vq_kv_set(&m->kv, "DESCRIPTION", desc, err);
    free(desc);
    rc = rc ? rc : set_kv_u64(&m->kv, "CTIME", (uint64_t)time(NULL), err);
    rc = rc ? rc : vq_kv_set(&m->kv, "DISKTYPE", "DATA", err);
    rc = rc ? rc : vq_kv_set(&m->kv, "DOMAIN", s->d->id, err);
    rc = rc ? rc : vq_kv_set(&m->kv, "FORMAT", vq_format_name(m->format), err);
    rc = rc ? rc : vq_kv_set(&m->kv, "GEN", "0", err);
    rc = rc ? rc : vq_kv_set(&m->kv, "IMAGE", s->job->disk_id, err);
    rc = rc ? rc : vq_kv_set(&m->kv, "LEGALITY", "ILLEGAL", err);
    rc = rc ? rc : vq_kv_set(&m->kv, "PUUID", m->puuid, err);
    rc = rc ? rc : vq_kv_set(&m->kv, "TYPE", "SPARSE", err);
    rc = rc ? rc : vq_kv_set(&m->kv, "VOLTYPE", "LEAF", err);
    if (rc) return rc;
    if (s->d->version >= 5) {
        rc = set_kv_u64(&m->kv, "CAP", cp->size, err);
        return rc ? rc : vq_kv_set(&m->kv, "SEQ", "0", err);
    }
    rc = set_kv_u64(&m->kv, "SIZE", cp->size / 512, err);
    return rc ? rc : vq_kv_set(&m->kv, "MTIME", "0", err);
}

static int write_lease(create_run_state *s, vq_error *err)
{
    char name[VQ_UUID_SIZE + 8];
    snprintf(name, sizeof name, "%s.lease", s->job->volume_id);
    return vq_fs_write_atomic(s->dfd, name, "", 0, VOLUME_MODE, err);
}

/* Sets LEGALITY and/or VOLTYPE (-1: left as it is) of vol's .meta; a file
 * that already says so is not rewritten. */
static int set_volume_field(create_run_state *s, const char *vol, int legality, int voltype,
                            vq_error *err)
{
    vq_meta m = {0};
    int rc = vq_meta_read(s->dfd, vol, &m, err);
    if (rc == 0 && (legality < 0 || (int)m.legality == legality) &&
        (voltype < 0 || (int)m.voltype == voltype)) {
        vq_meta_free(&m);
        return 0;
    }
    if (rc == 0) {
        if (legality >= 0) {
            m.legality = (enum vq_legality)legality;
            rc = vq_kv_set(&m.kv, "LEGALITY", vq_legality_name(m.legality), err);
        }
        if (rc == 0 && voltype >= 0) {
            m.voltype = (enum vq_voltype)voltype;
            rc = vq_kv_set(&m.kv, "VOLTYPE", vq_voltype_name(m.voltype), err);
        }
        rc = rc ? rc : vq_meta_write(s->dfd, vol, &m, err);
    }
    vq_meta_free(&m);
    return rc;
}

static int make_volume(create_run_state *s, vq_job_ctx *c, vq_error *err)
{
    const create_params *cp = &s->cp;
    const char *compat = s->d->version >= 4 ? "1.1" : "0.10";
    const char *bfmt = cp->parent ? (cp->parent_raw ? "raw" : "qcow2") : NULL;
    /* Its ticks renew the lease: a large preallocated volume takes minutes. */
    int rc = vq_qemu_create(s->imgdir, s->job->volume_id, cp->raw, compat, cp->size, cp->parent,
                            bfmt, c->qemu_timeout_ms, c->heartbeat, c->heartbeat_arg, err);
    if (rc) return rc;
    vq_error e = {0};
    if (vq_fs_chmod(s->dfd, s->job->volume_id, VOLUME_MODE, &e))
        return vq_error_set(err, VQ_EIO, "volume %s", e.text);
    own_like_folder(s->dfd, ".", s->job->volume_id);
    return 0;
}

/* Steps (2)-(5) of the order above. */
static int create_steps(create_run_state *s, vq_job_ctx *c, vq_error *err)
{
    vq_meta m = {0};
    int rc = build_meta(s, &m, err);
    rc = rc ? rc : vq_meta_write(s->dfd, s->job->volume_id, &m, err);
    vq_meta_free(&m);
    if (rc) return rc;
    if ((rc = write_lease(s, err))) return rc;
    if ((rc = c->progress(c, 0, 1))) return rc;
    if ((rc = make_volume(s, c, err))) return rc;
    /* The parent's .meta is not this volume's: a lease check before it (and
     * the new .meta's LEGAL, which ends the job's work) are written. */
    if ((rc = c->fence(c))) return rc;
    if (is_snapshot(s) && (rc = set_volume_field(s, s->cp.parent, -1, VQ_VOLTYPE_INTERNAL, err)))
        return rc;
    if ((rc = set_volume_field(s, s->job->volume_id, VQ_LEGAL, -1, err))) return rc;
    return c->progress(c, 1, 1);
}

/* What an earlier attempt left: 1 done (LEGAL), 0 nothing or a half-made
 * volume (removed now, with the temp files of a rewrite it did not end), <0
 * when its .meta cannot be read (nothing removed: it may be whole). */
static int earlier_attempt(create_run_state *s, vq_error *err)
{
    vq_meta m = {0};
    vq_error e = {0};
    /* every time: a retry by hand resets crashes, not what they left */
    vq_job_remove_leftovers(s->job, s->dfd);
    int rc = vq_meta_read(s->dfd, s->job->volume_id, &m, &e);
    int legal = rc == 0 && m.legality == VQ_LEGAL;
    vq_meta_free(&m);
    if (legal) return 1;
    if (rc == 0 || rc == VQ_EINVAL) {
        /* A worker killed during qemu-img create leaves it to finish: never
         * remove the volume from under it (nor make it again beside it). */
        if (vq_qemu_in_use(s->imgdir, s->job->volume_id, NULL) == 1)
            return vq_error_set(err, VQ_EBUSY, "volume %s is still open in a qemu process (the "
                                "qemu-img of an attempt that died?): retried later",
                                s->job->volume_id);
        vq_log(VQ_LOG_NOTICE, "job %s: removing half-made volume %s of an earlier attempt",
               s->job->id, s->job->volume_id);
        remove_volume_files(s);
    }
    if (rc == 0 || rc == VQ_EINVAL || rc == VQ_ENOENT) return 0;
    return vq_error_set(err, rc, "volume %s: %s", s->job->volume_id, e.text);
}

typedef struct place {
    const create_run_state *s;
    char *other;
} place;

/* One name of the folder (vq_fs_each_name): 1 when it is another volume's
 * .meta that takes the job's place (foreign_volume). */
static int takes_place(const char *n, void *arg)
{
    const place *p = arg;
    const create_run_state *s = p->s;
    if (strlen(n) != VQ_UUID_LEN + 5 || strcmp(n + VQ_UUID_LEN, ".meta") != 0 ||
        !vq_uuid_valid_n(n, VQ_UUID_LEN))
        return 0;
    char id[VQ_UUID_SIZE];
    memcpy(id, n, VQ_UUID_LEN);
    id[VQ_UUID_LEN] = '\0';
    if (strcmp(id, s->job->volume_id) == 0 || (is_thin(s) && strcmp(id, s->cp.parent) == 0))
        return 0;
    int found = 1;
    if (is_snapshot(s)) {
        vq_meta m = {0};
        found = vq_meta_read(s->dfd, id, &m, NULL) == 0 && strcmp(m.puuid, s->cp.parent) == 0;
        vq_meta_free(&m);
    }
    if (found) memcpy(p->other, id, VQ_UUID_SIZE);
    return found;
}

/* Whether another volume took this job's place since its acceptance (a
 * failed job retried by hand runs long after): on a snapshot, a volume other
 * than this job's made on the parent; on a new or thin disk, any volume in
 * the folder but this job's and the template's links.  1 (its id in other),
 * 0 when none, VQ_EIO when the folder cannot be read. */
static int foreign_volume(const create_run_state *s, char other[VQ_UUID_SIZE], vq_error *err)
{
    place p = {s, other};
    int rc = vq_fs_each_name(s->dfd, takes_place, &p);
    if (rc < 0) return vq_error_set(err, VQ_EIO, "disk %s: cannot list its folder", s->job->disk_id);
    return rc;
}

/* Refuses the attempt when another volume took the job's place (nothing is
 * touched then); a folder that cannot be read is retried. */
static int check_place(const create_run_state *s, vq_error *err)
{
    char other[VQ_UUID_SIZE];
    int taken = foreign_volume(s, other, err);
    if (taken <= 0) return taken;
    if (is_snapshot(s))
        return vq_error_set(err, VQ_EREFUSED, "parent volume %s is no longer the leaf of disk %s: "
                            "volume %s was made on it", s->cp.parent, s->job->disk_id, other);
    return vq_error_set(err, VQ_EREFUSED, "disk %s exists: its folder holds volume %s",
                        s->job->disk_id, other);
}

/* Whether an attempt left anything to remove: a new or thin disk's folder
 * was made by one; on a snapshot, the volume's files or the parent set
 * INTERNAL.  taken (foreign_volume): only the volume's own files count. */
static int anything_left(create_run_state *s, int taken)
{
    if (!is_snapshot(s) && !taken) return 1;
    struct stat st;
    for (size_t i = 0; i < 3; i++) {
        char name[VQ_UUID_SIZE + 8];
        snprintf(name, sizeof name, "%s%s", s->job->volume_id, suffixes[i]);
        if (fstatat(s->dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) return 1;
    }
    if (taken) return 0;
    vq_meta m = {0};
    int left = vq_meta_read(s->dfd, s->cp.parent, &m, NULL) != 0 || m.voltype != VQ_VOLTYPE_LEAF;
    vq_meta_free(&m);
    return left;
}

/* Removes what this job made.  taken (foreign_volume): another volume took
 * the job's place, and the parent, the template's links and the folder are
 * its now: only this job's own volume files go. */
static void undo(create_run_state *s, int taken)
{
    if (s->dfd < 0) return;
    remove_volume_files(s);
    if (taken) return;
    /* The parent was the leaf when this attempt began (check_place) and the
     * disk lock kept it so; an earlier, crashed attempt may have set it
     * INTERNAL, so put it back always. */
    if (is_snapshot(s)) set_volume_field(s, s->cp.parent, -1, VQ_VOLTYPE_LEAF, NULL);
    if (is_thin(s))
        for (size_t i = 0; i < 3; i++) {
            char name[VQ_UUID_SIZE + 8];
            snprintf(name, sizeof name, "%s%s", s->cp.parent, suffixes[i]);
            unlinkat(s->dfd, name, 0);
        }
    if (s->made_dir || !is_snapshot(s)) {
        char rel[VQ_UUID_SIZE + 8];
        snprintf(rel, sizeof rel, "images/%s", s->job->disk_id);
        unlinkat(s->d->dirfd, rel, AT_REMOVEDIR); /* only when empty */
    }
}

/* The domain (*d, owned by the caller: vq_domain_free) and the job's
 * parameters, for an attempt: VQ_EREFUSED when either is gone or wrong (the
 * caller sets err's code to the one returned). */
static int open_attempt(vq_job_ctx *c, create_run_state *s, vq_domain **d, vq_error *err)
{
    int rc = vq_domain_open(c->domains_root, c->job->domain_id, d, err);
    if (rc) return rc == VQ_ENOENT || rc == VQ_EINVAL ? VQ_EREFUSED : rc;
    s->d = *d;
    if ((*d)->status != VQ_STATUS_OK)
        return vq_error_set(err, VQ_EREFUSED, "domain %s is illegal: %s", (*d)->id, (*d)->reason);
    return read_params(c->job->params, &s->cp, err) ? VQ_EREFUSED : 0;
}

static int create_run(vq_job_ctx *c, vq_error *err)
{
    vq_domain *d = NULL;
    create_run_state s = {.job = c->job, .dfd = -1};
    int rc = open_attempt(c, &s, &d, err);
    /* A lease check before the first change (the folder, an earlier attempt's
     * leftovers removed): an attempt that waited long (a retry's backoff, a
     * paused worker) writes nothing once another took the job over. */
    if (rc || (rc = c->fence(c)) || (rc = open_or_make_image(&s, err))) goto out;
    rc = earlier_attempt(&s, err);
    if (rc == 1) { rc = 0; goto out; }
    if (rc || (rc = check_place(&s, err))) goto out;
    if (is_thin(&s) && (rc = link_template(&s, err))) goto out_undo;
    if ((rc = create_steps(&s, c, err)) == 0) goto out;
out_undo:
    if (rc != VQ_ESTALE) undo(&s, 0);
out:
    if (err && rc && err->code != rc) err->code = rc;
    if (s.dfd >= 0) close(s.dfd);
    vq_domain_free(d);
    return rc;
}

/* The clean-up attempt (vq_job_kind.clean): a volume found LEGAL was
 * finished and is kept; anything else of this volume is removed, and the
 * parent put back, as a failed attempt's undo does.  One fence, before the
 * first change: the rest takes milliseconds. */
static int create_clean(vq_job_ctx *c, vq_error *err)
{
    vq_domain *d = NULL;
    create_run_state s = {.job = c->job, .dfd = -1};
    vq_error e = {0};
    int rc = open_attempt(c, &s, &d, &e);
    if (rc == VQ_EREFUSED)
        rc = vq_error_set(err, rc, "%s; volume %s may be half-made", e.text, c->job->volume_id);
    else if (rc)
        rc = vq_error_set(err, rc, "%s", e.text);
    if (rc) goto out;
    if ((rc = image_path(&s, err))) goto out;
    if ((rc = vq_domain_open_image(d, c->job->disk_id, &s.dfd, &e))) {
        /* No folder: an attempt never got as far as making one. */
        rc = rc == VQ_ENOENT ? vq_error_set(err, VQ_EREFUSED, "nothing was left to remove")
                             : vq_error_set(err, rc, "%s", e.text);
        goto out;
    }
    if ((rc = c->fence(c))) goto out;
    char other[VQ_UUID_SIZE];
    int taken = foreign_volume(&s, other, err);
    if (taken < 0) {
        rc = taken;
        goto out;
    }
    if (taken)
        vq_log(VQ_LOG_NOTICE, "job %s: volume %s took this job's place since; only volume %s's "
               "own files are removed", c->job->id, other, c->job->volume_id);
    int left = anything_left(&s, taken);
    if ((rc = earlier_attempt(&s, err)) == 1) {
        vq_log(VQ_LOG_NOTICE, "job %s: volume %s was finished before the crashes; kept",
               c->job->id, c->job->volume_id);
        rc = c->progress(c, 1, 1);
        goto out;
    }
    if (rc) goto out; /* its .meta unreadable: maybe whole; retried */
    if (!left) {
        rc = vq_error_set(err, VQ_EREFUSED, "nothing was left to remove");
        goto out;
    }
    undo(&s, taken);
    rc = vq_error_set(err, VQ_EREFUSED, "what it left of volume %s was removed",
                      c->job->volume_id);
out:
    if (err && rc && rc != VQ_EREFUSED && rc != VQ_ESTALE) {
        /* Retried; the last try's reason is the job's once its attempts run out. */
        vq_error t = *err;
        vq_error_clear(err);
        vq_error_set(err, rc, "%s; volume %s may be half-made", t.text, c->job->volume_id);
    }
    if (err && rc && err->code != rc) err->code = rc;
    if (s.dfd >= 0) close(s.dfd);
    vq_domain_free(d);
    return rc;
}

const vq_job_kind vq_kind_create_volume_ = {"create-volume", create_check, create_run, NULL,
                                            create_clean};
