/* Disks: an image folder, its chain from the leaf down, and the containment
 * checks that decide whether volq may ever run qemu-img on it.  Everything is
 * opened relative to the domain's folder fd, one component at a time, without
 * following symlinks; nothing outside the domain is opened. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "text_int.h"
#include "volq/disk.h"
#include "volq/log.h"

/* More .meta files than this in one folder is not a disk VDSM made (a chain
 * is at most VQ_CHAIN_MAX deep); refusing bounds memory and time. */
#define FOLDER_VOLUMES_MAX 1024
#define META_SUFFIX ".meta"
#define LEASE_SUFFIX ".lease"
/* "../" UUID "/" UUID: an old domain's backing name of a template volume. */
#define REL_BACKING_LEN (3 + VQ_UUID_LEN + 1 + VQ_UUID_LEN)

/* One volume found by its .meta in the image folder. */
typedef struct entry {
    char id[VQ_UUID_SIZE];
    vq_meta meta; /* moved into the chain when the walk reaches it */
} entry;

typedef struct loader {
    const vq_domain *d;
    vq_disk *disk;
    int imgfd;
    entry *ents;
    size_t nents, cap;
} loader;

/* The first reason wins; the disk becomes ILLEGAL.  Returns VQ_EILLEGAL so
 * that checks can `return illegal(...)`; only VQ_ENOMEM is a real error. */
static int illegal(vq_disk *disk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int illegal(vq_disk *disk, const char *fmt, ...)
{
    if (disk->status != VQ_STATUS_ILLEGAL) {
        disk->status = VQ_STATUS_ILLEGAL;
        va_list ap;
        va_start(ap, fmt);
        vq_reason_format_(disk->reason, sizeof disk->reason, fmt, ap);
        va_end(ap);
    }
    return VQ_EILLEGAL;
}

/* ---- the folder scan ---- */

/* Kinds of names in an image folder; anything else is junk and ignored. */
enum { NAME_JUNK, NAME_VOLUME, NAME_META, NAME_LEASE };

static int name_kind(const char *name)
{
    size_t n = strlen(name);
    if (n < VQ_UUID_LEN || !vq_uuid_valid_n(name, VQ_UUID_LEN)) return NAME_JUNK;
    if (n == VQ_UUID_LEN) return NAME_VOLUME;
    if (strcmp(name + VQ_UUID_LEN, META_SUFFIX) == 0) return NAME_META;
    if (strcmp(name + VQ_UUID_LEN, LEASE_SUFFIX) == 0) return NAME_LEASE;
    return NAME_JUNK;
}

static int is_symlink(int dirfd, const struct dirent *de)
{
    if (de->d_type != DT_UNKNOWN) return de->d_type == DT_LNK;
    struct stat st;
    return fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

static int add_entry(loader *L, const char *name)
{
    if (L->nents == FOLDER_VOLUMES_MAX)
        return illegal(L->disk, "image folder holds more than %d volumes", FOLDER_VOLUMES_MAX);
    if (L->nents == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 8;
        entry *nv = realloc(L->ents, nc * sizeof *nv);
        if (!nv) return VQ_ENOMEM;
        L->ents = nv;
        L->cap = nc;
    }
    entry *e = &L->ents[L->nents++];
    memset(e, 0, sizeof *e);
    memcpy(e->id, name, VQ_UUID_LEN);
    e->id[VQ_UUID_LEN] = '\0';
    return 0;
}

/* One folder entry: a symlink with a volume's name is illegal; a .meta adds
 * a volume. */
static int scan_one(loader *L, int dfd, const struct dirent *de)
{
    int kind = name_kind(de->d_name);
    if (kind == NAME_JUNK) {
        vq_log(VQ_LOG_DEBUG, "disk %s: ignoring \"%.60s\"", L->disk->id, de->d_name);
        return 0;
    }
    if (is_symlink(dfd, de)) return illegal(L->disk, "%.50s is a symlink", de->d_name);
    return kind == NAME_META ? add_entry(L, de->d_name) : 0;
}

static int by_entry_id(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->id, ((const entry *)b)->id);
}

/* Lists the folder's volumes (sorted by id).  getdents64() on the image
 * folder's own fd (nothing else reads it as a folder): no dup, fstat, fcntl
 * and close around an opendir, a third of a disk's system calls. */
static int scan_folder(loader *L)
{
    char buf[16384] __attribute__((aligned(8)));
    int rc = 0;
    for (;;) {
        ssize_t n = getdents64(L->imgfd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* an error ends the listing, as readdir() did */
        for (ssize_t off = 0; rc == 0 && off < n;) {
            const struct dirent64 *de = (const struct dirent64 *)(buf + off);
            off += de->d_reclen;
            rc = scan_one(L, L->imgfd, (const struct dirent *)de);
        }
        if (rc) return rc;
    }
    if (L->nents > 1) qsort(L->ents, L->nents, sizeof *L->ents, by_entry_id);
    return 0;
}

static int read_metas(loader *L)
{
    for (size_t i = 0; i < L->nents; i++) {
        vq_error e = {0};
        int rc = vq_meta_read(L->imgfd, L->ents[i].id, &L->ents[i].meta, &e);
        if (rc == VQ_ENOMEM) return rc;
        if (rc < 0) return illegal(L->disk, "volume %s: %s", L->ents[i].id, e.text);
    }
    return 0;
}

static entry *find_entry(loader *L, const char *id)
{
    for (size_t i = 0; i < L->nents; i++)
        if (strcmp(L->ents[i].id, id) == 0) return &L->ents[i];
    return NULL;
}

/* ---- finding the top of the chain ---- */

static int own(const loader *L, const entry *e) { return strcmp(e->meta.image, L->disk->id) == 0; }

/* Every own volume is SHARED: a template disk (needs one own volume). */
static int all_own_shared(const loader *L, size_t *nown)
{
    int all = 1;
    *nown = 0;
    for (size_t i = 0; i < L->nents; i++) {
        if (!own(L, &L->ents[i])) continue;
        (*nown)++;
        if (L->ents[i].meta.voltype != VQ_VOLTYPE_SHARED) all = 0;
    }
    return all && *nown > 0;
}

/* Whether some other own volume names e as its parent. */
static int has_child(const loader *L, const entry *e)
{
    for (size_t i = 0; i < L->nents; i++)
        if (own(L, &L->ents[i]) && strcmp(L->ents[i].meta.puuid, e->id) == 0) return 1;
    return 0;
}

/* The top is the LEAF of a disk, or the SHARED volume of a template that no
 * other volume is based on.  Exactly one, else illegal. */
static entry *find_top(loader *L)
{
    size_t nown, count = 0;
    entry *top = NULL;
    L->disk->is_template = all_own_shared(L, &nown);
    if (nown == 0) {
        illegal(L->disk, "image folder has no volume of its own");
        return NULL;
    }
    for (size_t i = 0; i < L->nents; i++) {
        entry *e = &L->ents[i];
        int cand = L->disk->is_template ? own(L, e) && !has_child(L, e)
                                        : e->meta.voltype == VQ_VOLTYPE_LEAF;
        if (cand && count++ == 0) top = e;
    }
    const char *what = L->disk->is_template ? "top template" : "LEAF";
    if (count == 1) return top;
    if (count == 0)
        illegal(L->disk, "image has no %s volume", what);
    else
        illegal(L->disk, "image has %zu %s volumes, not one", count, what);
    return NULL;
}

/* ---- one volume of the chain ---- */

static int open_volume(loader *L, int dirfd, const char *id, int *fd)
{
    struct stat st;
    /* Looked at before opening, so that a device node is never opened. */
    if (fstatat(dirfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
        return illegal(L->disk, S_ISLNK(st.st_mode) ? "volume %s is a symlink"
                                                    : "volume %s is not a regular file", id);
    *fd = openat(dirfd, id, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (*fd >= 0) return 0;
    if (errno == ENOMEM) return VQ_ENOMEM;
    if (errno == ELOOP) return illegal(L->disk, "volume %s is a symlink", id);
    if (errno == ENOENT) return illegal(L->disk, "volume %s: file is missing", id);
    return illegal(L->disk, "volume %s: cannot open: %s", id, strerror(errno));
}

/* The file's type, links and sizes. */
static int check_file(loader *L, int fd, vq_volume *v, struct stat *st)
{
    if (fstat(fd, st) != 0) return illegal(L->disk, "volume %s: stat: %s", v->id, strerror(errno));
    if (!S_ISREG(st->st_mode)) return illegal(L->disk, "volume %s is not a regular file", v->id);
    /* A hard link elsewhere cannot be found by name; more than one link is
     * only normal for a template volume that VDSM linked into thin disks. */
    if (st->st_nlink > 1 && v->meta.voltype != VQ_VOLTYPE_SHARED)
        return illegal(L->disk, "volume %s has %lu hard links but is not a SHARED template volume",
                       v->id, (unsigned long)st->st_nlink);
    v->actual_size = (uint64_t)st->st_blocks * 512;
    v->virtual_size = (uint64_t)st->st_size;
    return 0;
}

static int read_header(loader *L, int fd, const struct stat *st, vq_volume *v, vq_qcow2 *q)
{
    vq_error e = {0};
    if (vq_qcow2_read_stat(fd, st, q, &e) < 0)
        return illegal(L->disk, "volume %s: %s", v->id, e.text);
    if (q->has_data_file) return illegal(L->disk, "volume %s uses an external data file", v->id);
    v->qcow_version = (int)q->version;
    v->virtual_size = q->size;
    return 0;
}

/* Opens, stats and (COW) reads the header of volume v in folder dirfd. */
static int inspect_volume(loader *L, int dirfd, vq_volume *v, vq_qcow2 *q)
{
    int fd = -1, rc = open_volume(L, dirfd, v->id, &fd);
    if (rc < 0) return rc;
    struct stat st;
    rc = check_file(L, fd, v, &st);
    memset(q, 0, sizeof *q);
    if (rc == 0 && v->meta.format == VQ_FORMAT_COW) rc = read_header(L, fd, &st, v, q);
    close(fd);
    return rc;
}

/* ---- backing names ---- */

/* Where a backing name points: a bare volume in this folder, or ../IMG/VOL. */
typedef struct target {
    char img[VQ_UUID_SIZE]; /* this image for a bare name */
    char vol[VQ_UUID_SIZE];
} target;

/* Parses a backing name that volq accepts; else makes the disk illegal with
 * the kind of name it is. */
static int parse_backing(loader *L, const vq_volume *v, const char *b, target *t)
{
    const char *colon = strchr(b, ':'), *slash = strchr(b, '/');
    if (vq_uuid_valid(b)) {
        memcpy(t->img, L->disk->id, VQ_UUID_SIZE);
        memcpy(t->vol, b, VQ_UUID_SIZE);
        return 0;
    }
    if (strlen(b) == REL_BACKING_LEN && strncmp(b, "../", 3) == 0 &&
        vq_uuid_valid_n(b + 3, VQ_UUID_LEN) && b[3 + VQ_UUID_LEN] == '/' &&
        vq_uuid_valid(b + 4 + VQ_UUID_LEN)) {
        memcpy(t->img, b + 3, VQ_UUID_LEN);
        t->img[VQ_UUID_LEN] = '\0';
        memcpy(t->vol, b + 4 + VQ_UUID_LEN, VQ_UUID_SIZE);
        return 0;
    }
    if (b[0] == '/')
        return illegal(L->disk, "volume %s: backing file '%.80s' is an absolute path", v->id, b);
    if (strncmp(b, "json:", 5) == 0)
        return illegal(L->disk, "volume %s: backing file is a json: filename", v->id);
    if (colon && (!slash || colon < slash))
        return illegal(L->disk, "volume %s: backing file '%.80s' uses protocol %.*s:", v->id, b,
                       (int)(colon - b > 16 ? 16 : colon - b), b);
    return illegal(L->disk, "volume %s: backing file '%.80s' is not a volume of this domain",
                   v->id, b);
}

/* The header's backing name must agree with PUUID. */
static int check_backing(loader *L, const vq_volume *v, const vq_qcow2 *q, target *t)
{
    int base = strcmp(v->meta.puuid, VQ_UUID_BLANK) == 0;
    if (v->meta.format == VQ_FORMAT_RAW)
        return base ? 0 : illegal(L->disk, "volume %s is RAW but has parent %s", v->id,
                                  v->meta.puuid);
    if (!q->has_backing)
        return base ? 0 : illegal(L->disk, "volume %s has no backing file but PUUID is %s",
                                  v->id, v->meta.puuid);
    if (parse_backing(L, v, q->backing, t) < 0) return -1;
    if (base)
        return illegal(L->disk, "volume %s has backing file '%.80s' but PUUID is blank", v->id,
                       q->backing);
    if (strcmp(t->vol, v->meta.puuid) != 0)
        return illegal(L->disk, "volume %s: backing file '%.80s' does not match PUUID %s", v->id,
                       q->backing, v->meta.puuid);
    return 0;
}

/* ---- the chain ---- */

static int push_volume(loader *L, const char *id, vq_meta *meta, vq_volume **out)
{
    vq_disk *disk = L->disk;
    vq_volume *nv = realloc(disk->vols, (disk->nvols + 1) * sizeof *nv);
    if (!nv) return VQ_ENOMEM;
    disk->vols = nv;
    vq_volume *v = &nv[disk->nvols++];
    memset(v, 0, sizeof *v);
    memcpy(v->id, id, VQ_UUID_SIZE);
    v->meta = *meta; /* moved: the source no longer owns its pairs */
    memset(meta, 0, sizeof *meta);
    *out = v;
    return 0;
}

static int in_chain(const vq_disk *disk, const char *id)
{
    for (size_t i = 0; i < disk->nvols; i++)
        if (strcmp(disk->vols[i].id, id) == 0) return 1;
    return 0;
}

/* A SHARED volume: the template's own (a template disk) or one linked in. */
static int check_role(loader *L, vq_volume *v, int top)
{
    vq_disk *disk = L->disk;
    int foreign = strcmp(v->meta.image, disk->id) != 0;
    if (v->meta.voltype == VQ_VOLTYPE_SHARED) {
        v->shared = 1;
        memcpy(v->template_image, v->meta.image, VQ_UUID_SIZE);
        if (foreign && strcmp(v->meta.puuid, VQ_UUID_BLANK) != 0)
            return illegal(disk, "template volume %s has a parent", v->id);
        if (!foreign && !disk->is_template)
            return illegal(disk, "volume %s is SHARED inside a disk that is no template", v->id);
        return 0;
    }
    if (foreign)
        return illegal(disk, "volume %s: IMAGE %s does not match its folder", v->id,
                       v->meta.image);
    if (!top && v->meta.voltype != VQ_VOLTYPE_INTERNAL)
        return illegal(disk, "volume %s below the leaf is %s, not INTERNAL", v->id,
                       vq_voltype_name(v->meta.voltype));
    return 0;
}

/* The parent's format must be what the child's header says it is.  None said
 * is qcow2's old default: qemu then guesses the parent's format from its
 * contents, which volq has read for a qcow2 parent but never for a raw one (a
 * guest's own data: it could pass for a qcow2 image with a backing file
 * anywhere). */
static int check_backing_fmt(loader *L, const vq_volume *child, const char *fmt,
                             const vq_volume *parent)
{
    const char *want = parent->meta.format == VQ_FORMAT_COW ? "qcow2" : "raw";
    if (fmt[0] == '\0' && parent->meta.format != VQ_FORMAT_COW)
        return illegal(L->disk, "volume %s: no backing format recorded over raw parent %s (qemu "
                       "would guess it from the guest's data)", child->id, parent->id);
    if (fmt[0] == '\0' || strcmp(fmt, want) == 0) return 0;
    return illegal(L->disk, "volume %s: backing format %.20s does not match parent %s (%s)",
                   child->id, fmt, parent->id, vq_format_name(parent->meta.format));
}

/* A parent named ../IMG/VOL on an old domain: VOL of image IMG of this domain,
 * which must be a template volume. */
static int load_linked_template(loader *L, const vq_volume *child, const target *t,
                                vq_volume **out, vq_qcow2 *q)
{
    int fd;
    vq_error e = {0};
    int rc = vq_domain_open_image(L->d, t->img, &fd, &e);
    if (rc == VQ_ENOMEM) return rc;
    if (rc < 0)
        return illegal(L->disk, "volume %s: backing image %s: %s", child->id, t->img, e.text);
    vq_meta m = {0};
    rc = vq_meta_read(fd, t->vol, &m, &e);
    if (rc == 0 && (m.voltype != VQ_VOLTYPE_SHARED || strcmp(m.image, t->img) != 0))
        rc = illegal(L->disk, "volume %s: backing file ../%s/%s is not a template volume",
                     child->id, t->img, t->vol);
    else if (rc < 0 && rc != VQ_ENOMEM)
        rc = illegal(L->disk, "volume %s: backing volume %s: %s", child->id, t->vol, e.text);
    if (rc == 0) rc = push_volume(L, t->vol, &m, out);
    if (rc == 0) (*out)->template_link = 1;
    if (rc == 0) rc = inspect_volume(L, fd, *out, q);
    vq_meta_free(&m);
    close(fd);
    return rc;
}

/* Adds the parent of the last volume (found by target t) to the chain. */
static int step_to_parent(loader *L, const target *t, vq_volume **out, vq_qcow2 *q)
{
    const vq_volume *child = &L->disk->vols[L->disk->nvols - 1];
    if (strcmp(t->img, L->disk->id) != 0) return load_linked_template(L, child, t, out, q);
    if (in_chain(L->disk, t->vol)) return illegal(L->disk, "chain loops at volume %s", t->vol);
    entry *e = find_entry(L, t->vol);
    if (!e) return illegal(L->disk, "parent %s of volume %s is missing", t->vol, child->id);
    int rc = push_volume(L, e->id, &e->meta, out);
    return rc < 0 ? rc : inspect_volume(L, L->imgfd, *out, q);
}

/* Walks from the top down through PUUID, checking every volume. */
static int walk_chain(loader *L, entry *top)
{
    vq_volume *v;
    vq_qcow2 q;
    int rc = push_volume(L, top->id, &top->meta, &v);
    if (rc == 0) rc = inspect_volume(L, L->imgfd, v, &q);
    for (int depth = 1; rc == 0; depth++) {
        target t;
        char fmt[sizeof q.backing_fmt];
        if ((rc = check_role(L, v, depth == 1)) < 0 || (rc = check_backing(L, v, &q, &t)) < 0)
            break;
        if (strcmp(v->meta.puuid, VQ_UUID_BLANK) == 0) break;
        if (depth >= VQ_CHAIN_MAX)
            return illegal(L->disk, "chain is deeper than %d volumes", VQ_CHAIN_MAX);
        memcpy(fmt, q.backing_fmt, sizeof fmt);
        size_t child = L->disk->nvols - 1;
        if ((rc = step_to_parent(L, &t, &v, &q)) < 0) break;
        rc = check_backing_fmt(L, &L->disk->vols[child], fmt, v);
    }
    return rc;
}

/* ---- load ---- */

static void set_alias(vq_disk *disk, const char *alias)
{
    const char *a = alias && alias[0] ? alias : disk->id;
    snprintf(disk->alias, sizeof disk->alias, "%s", a); /* same size as meta.alias */
}

static int load_folder(loader *L)
{
    int rc = scan_folder(L);
    if (rc == 0) rc = read_metas(L);
    if (rc == VQ_ENOMEM) return rc;
    entry *top = rc == 0 ? find_top(L) : NULL;
    if (!top) return 0;
    set_alias(L->disk, top->meta.alias);
    rc = walk_chain(L, top);
    return rc == VQ_ENOMEM ? rc : 0;
}

static vq_disk *new_disk(const vq_domain *d, const char *img)
{
    vq_disk *disk = calloc(1, sizeof *disk);
    if (!disk) return NULL;
    memcpy(disk->id, img, VQ_UUID_SIZE);
    memcpy(disk->domain_id, d->id, VQ_UUID_SIZE);
    set_alias(disk, NULL);
    return disk;
}

int vq_disk_load(const vq_domain *d, const char *img, vq_disk **out, vq_error *err)
{
    if (!vq_uuid_valid(img))
        return vq_error_set(err, VQ_EINVAL, "disk id \"%.40s\" is not a UUID", img ? img : "");
    loader L = {.d = d, .imgfd = -1};
    if (!(L.disk = new_disk(d, img)))
        return vq_error_set(err, VQ_ENOMEM, "disk %s: out of memory", img);
    /* No job runs on an illegal domain: its disks say so, with the domain's reason. */
    if (d->status != VQ_STATUS_OK) illegal(L.disk, "domain %s is illegal: %s", d->id, d->reason);
    vq_error e = {0};
    int rc = vq_domain_open_image(d, img, &L.imgfd, &e);
    if (rc == VQ_EILLEGAL) {
        illegal(L.disk, "image folder: %s", e.text);
        rc = 0;
    } else if (rc < 0) {
        vq_error_set(err, rc, "%s", e.text);
    } else {
        rc = load_folder(&L);
        if (rc < 0) vq_error_set(err, rc, "disk %s: out of memory", img);
    }
    for (size_t i = 0; i < L.nents; i++) vq_meta_free(&L.ents[i].meta);
    free(L.ents);
    if (L.imgfd >= 0) close(L.imgfd);
    if (rc < 0) {
        vq_disk_free(L.disk);
        return rc;
    }
    *out = L.disk;
    return 0;
}

const vq_volume *vq_disk_leaf(const vq_disk *disk)
{
    if (!disk || disk->status == VQ_STATUS_ILLEGAL || disk->nvols == 0) return NULL;
    return &disk->vols[0];
}

int vq_volume_to_amend(const vq_volume *v)
{
    return !v->shared && v->meta.format == VQ_FORMAT_COW && v->qcow_version == 2;
}

size_t vq_disk_count_v2(const vq_disk *disk)
{
    size_t n = 0;
    for (size_t i = 0; i < disk->nvols; i++) {
        const vq_volume *v = &disk->vols[i];
        if (vq_volume_to_amend(v)) n++;
    }
    return n;
}

/* Own volumes: LEGAL each, and how many are qcow2 / at 0.10.  A volume at
 * 0.10 whose GEN bump could not be written (its .meta would pass 512 bytes)
 * refuses the amend before qemu-img, which the bump must follow, runs. */
static int check_own_volumes(const vq_disk *disk, size_t *ncow, size_t *nv2, vq_error *err)
{
    *ncow = *nv2 = 0;
    for (size_t i = 0; i < disk->nvols; i++) {
        const vq_volume *v = &disk->vols[i];
        vq_error e = {0};
        if (v->shared) continue;
        if (v->meta.legality != VQ_LEGAL)
            return vq_error_set(err, VQ_EREFUSED, "volume %s is %s", v->id,
                                vq_legality_name(v->meta.legality));
        if (v->meta.format != VQ_FORMAT_COW) continue;
        (*ncow)++;
        if (v->qcow_version != 2) continue;
        (*nv2)++;
        if (vq_meta_check_bump(v->id, &v->meta, &e))
            return vq_error_set(err, VQ_EREFUSED, "%s: its GEN bump could not be written", e.text);
    }
    return 0;
}

int vq_disk_check_amend(const vq_domain *d, const vq_disk *disk, int *already_done,
                        vq_error *err)
{
    size_t ncow, nv2;
    if (already_done) *already_done = 0;
    if (d->status == VQ_STATUS_ILLEGAL)
        return vq_error_set(err, VQ_EREFUSED, "domain %s is illegal: %s", d->id, d->reason);
    if (disk->is_template) return vq_error_set(err, VQ_EREFUSED, "disk is a template disk");
    if (d->version < 4)
        return vq_error_set(err, VQ_EREFUSED, "domain version %d does not support compat 1.1",
                            d->version);
    if (disk->status == VQ_STATUS_ILLEGAL)
        return vq_error_set(err, VQ_EREFUSED, "%s", disk->reason);
    int rc = check_own_volumes(disk, &ncow, &nv2, err);
    if (rc < 0) return rc;
    if (ncow == 0) return vq_error_set(err, VQ_EREFUSED, "disk has no qcow2 volume of its own");
    if (already_done) *already_done = nv2 == 0;
    return 0;
}

/* ---- many disks on threads ---- */

/* Fewer disks than this per thread are not worth a thread: a disk takes
 * ~20 us to load, a thread tens of us to start and join. */
#define SCAN_PER_THREAD_MIN 64
/* Disks a thread loads at a time.  Threads take chunks in order from one
 * counter, so the loaded part grows from the front (what a stream hands on)
 * and a thread that meets slow folders does not hold the others up. */
#define SCAN_CHUNK 32
#define SCAN_STREAM_NICE 10
#define SCAN_RUN_WAIT_MAX 16 /* chunks: 512 disks */
#define SCAN_YIELD_EVERY 4   /* disks: ~0.1 ms */

typedef struct scan {
    const vq_domain *d; /* only read: its fds are shared, openat() is thread-safe */
    const char (*imgs)[VQ_UUID_SIZE];
    vq_disk_scan *out;
    size_t n, nchunks;
    size_t next;         /* the next chunk to take (atomic) */
    int stop;            /* set by a stream's consumer: take no more (atomic) */
    int nice;            /* added to the threads' nice value (a stream's: see below) */
    unsigned char *done; /* done[c]: chunk c loaded (under mu); NULL: nobody waits */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} scan;

static size_t chunk_end(const scan *sc, size_t c)
{
    size_t hi = (c + 1) * SCAN_CHUNK;
    return hi < sc->n ? hi : sc->n;
}

static void load_chunk(const scan *sc, size_t c, int yield)
{
    for (size_t i = c * SCAN_CHUNK; i < chunk_end(sc, c); i++) {
        vq_disk_scan *s = &sc->out[i];
        memset(s, 0, sizeof *s);
        s->rc = vq_disk_load(sc->d, sc->imgs[i], &s->disk, &s->err);
        if (s->rc == 0) s->check_rc = vq_disk_check_amend(sc->d, s->disk, &s->done, &s->err);
        /* A thread of a stream hands its CPU over every few disks: a task
         * woken on its CPU (Redis, a worker) otherwise waits out the rest of
         * its time slice, nice value or not (4 ms seen on 2 cores).  With
         * nothing else to run, sched_yield() returns at once. */
        if (yield && i % SCAN_YIELD_EVERY == SCAN_YIELD_EVERY - 1) sched_yield();
    }
}

static void *scan_chunks(void *arg)
{
    scan *sc = arg;
    if (sc->nice) { /* this thread only: a Linux thread has its own nice value */
        errno = 0;
        int cur = getpriority(PRIO_PROCESS, (id_t)gettid());
        if (errno == 0) setpriority(PRIO_PROCESS, (id_t)gettid(), cur + sc->nice);
    }
    while (!__atomic_load_n(&sc->stop, __ATOMIC_RELAXED)) {
        size_t c = __atomic_fetch_add(&sc->next, 1, __ATOMIC_RELAXED);
        if (c >= sc->nchunks) break;
        load_chunk(sc, c, sc->nice);
        if (!sc->done) continue;
        pthread_mutex_lock(&sc->mu);
        sc->done[c] = 1;
        pthread_cond_signal(&sc->cv);
        pthread_mutex_unlock(&sc->mu);
    }
    return NULL;
}

static int scan_threads(int want, size_t n)
{
    if (want <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        want = cpus > 0 && cpus < VQ_DISK_SCAN_THREADS_MAX ? (int)cpus : VQ_DISK_SCAN_THREADS_MAX;
    }
    if (want > VQ_DISK_SCAN_THREADS_MAX) want = VQ_DISK_SCAN_THREADS_MAX;
    if ((size_t)want > n / SCAN_PER_THREAD_MIN) want = (int)(n / SCAN_PER_THREAD_MIN);
    return want > 0 ? want : 1;
}

/* Starts up to t threads with every signal blocked, so that signals keep going
 * to the caller's thread; returns how many run (their ids in tid). */
static int start_threads(scan *sc, int t, pthread_t *tid)
{
    sigset_t all, old;
    int started = 0;
    sigfillset(&all);
    if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0) return 0;
    while (started < t && pthread_create(&tid[started], NULL, scan_chunks, sc) == 0) started++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return started;
}

static void join_threads(pthread_t *tid, int started)
{
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

static scan scan_of(const vq_domain *d, const char (*imgs)[VQ_UUID_SIZE], size_t n,
                    vq_disk_scan *out)
{
    return (scan){.d = d, .imgs = imgs, .out = out, .n = n,
                  .nchunks = (n + SCAN_CHUNK - 1) / SCAN_CHUNK,
                  .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
}

void vq_disk_load_many(const vq_domain *d, const char (*imgs)[VQ_UUID_SIZE], size_t n,
                       int nthreads, vq_disk_scan *out)
{
    pthread_t tid[VQ_DISK_SCAN_THREADS_MAX];
    scan sc = scan_of(d, imgs, n, out);
    int started = start_threads(&sc, scan_threads(nthreads, n) - 1, tid);
    scan_chunks(&sc); /* the caller's thread takes chunks too, and every one left */
    join_threads(tid, started);
}

/* The stream on the caller's thread alone: runs handed on as they double, so
 * that a large scan makes few calls and the first comes early. */
static int stream_alone(scan *sc, vq_disk_ready_fn ready, void *arg)
{
    size_t lo = 0;
    for (size_t c = 0; c < sc->nchunks; c++) {
        load_chunk(sc, c, 0);
        size_t hi = chunk_end(sc, c);
        if (hi < sc->n && hi - lo < (lo > SCAN_CHUNK ? lo : SCAN_CHUNK)) continue;
        int rc = ready(arg, lo, hi);
        if (rc) return rc;
        lo = hi;
    }
    return 0;
}

/* The end (in chunks) of the loaded run that starts at chunk lo (under mu). */
static size_t loaded_from(const scan *sc, size_t lo)
{
    size_t hi = lo;
    while (hi < sc->nchunks && sc->done[hi]) hi++;
    return hi;
}

/* The caller's thread hands on every loaded run from the front while the
 * threads load the rest: a run is all that was loaded since the last call,
 * and at least half as much as was handed on before (up to
 * SCAN_RUN_WAIT_MAX chunks): the first jobs start at once, and a large scan
 * is handed on in tens of runs, not hundreds (each costs its consumer
 * round trips). */
static int stream_helped(scan *sc, vq_disk_ready_fn ready, void *arg)
{
    size_t lo = 0; /* in chunks */
    while (lo < sc->nchunks) {
        size_t want = lo / 2 < 1 ? 1 : lo / 2 > SCAN_RUN_WAIT_MAX ? SCAN_RUN_WAIT_MAX : lo / 2;
        if (want > sc->nchunks - lo) want = sc->nchunks - lo;
        pthread_mutex_lock(&sc->mu);
        size_t hi;
        while ((hi = loaded_from(sc, lo)) - lo < want) pthread_cond_wait(&sc->cv, &sc->mu);
        pthread_mutex_unlock(&sc->mu);
        int rc = ready(arg, lo * SCAN_CHUNK, chunk_end(sc, hi - 1));
        if (rc) {
            __atomic_store_n(&sc->stop, 1, __ATOMIC_RELAXED);
            return rc;
        }
        lo = hi;
    }
    return 0;
}

int vq_disk_load_stream(const vq_domain *d, const char (*imgs)[VQ_UUID_SIZE], size_t n,
                        int nthreads, vq_disk_scan *out, vq_disk_ready_fn ready, void *arg)
{
    pthread_t tid[VQ_DISK_SCAN_THREADS_MAX];
    scan sc = scan_of(d, imgs, n, out);
    /* The threads yield the CPU to what consumes their runs: the caller's
     * thread, Redis and the workers the first runs already feed.  At the same
     * nice value, on 2 cores, each round trip of a run waited for a scan
     * thread's time slice and the first job started only as the scan ended. */
    sc.nice = SCAN_STREAM_NICE;
    if (n) memset(out, 0, n * sizeof *out); /* what a stopped scan leaves unloaded */
    int started = 0;
    /* A scan too small for a second thread gains nothing from one.  The
     * caller's thread loads the first chunk itself, at its own nice value:
     * the first jobs then wait for no thread's start or time slice. */
    if (n > SCAN_PER_THREAD_MIN && (sc.done = calloc(sc.nchunks, 1))) {
        sc.next = 1;
        started = start_threads(&sc, scan_threads(nthreads, n), tid);
        if (started) {
            load_chunk(&sc, 0, 0);
            sc.done[0] = 1; /* read under mu by this thread only */
        } else {
            sc.next = 0;
        }
    }
    int rc = started ? stream_helped(&sc, ready, arg) : stream_alone(&sc, ready, arg);
    join_threads(tid, started);
    free(sc.done);
    return rc;
}

/* ---- JSON ---- */

static json_t *format_json(const vq_volume *v)
{
    return json_string(v->meta.format == VQ_FORMAT_COW ? "cow" : "raw");
}

static json_t *compat_json(const vq_volume *v)
{
    const char *c = v->meta.format == VQ_FORMAT_COW ? vq_qcow2_compat((uint32_t)v->qcow_version)
                                                    : NULL;
    return c ? json_string(c) : json_null();
}

static json_t *volume_json(const vq_volume *v)
{
    int base = strcmp(v->meta.puuid, VQ_UUID_BLANK) == 0;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(v->id));
    json_object_set_new(o, "format", format_json(v));
    json_object_set_new(o, "compat", compat_json(v));
    json_object_set_new(o, "voltype", json_string(vq_voltype_name(v->meta.voltype)));
    json_object_set_new(o, "legality", json_string(vq_legality_name(v->meta.legality)));
    json_object_set_new(o, "generation", json_integer(v->meta.gen));
    json_object_set_new(o, "parent", base ? json_null() : json_string(v->meta.puuid));
    return o;
}

static json_int_t own_actual_size(const vq_disk *disk)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < disk->nvols; i++)
        if (!disk->vols[i].shared || disk->is_template) sum += disk->vols[i].actual_size;
    return (json_int_t)sum;
}

/* The fields that come from the top volume (null when none was found). */
static void top_json(json_t *o, const vq_disk *disk)
{
    const vq_volume *v = disk->nvols ? &disk->vols[0] : NULL;
    json_object_set_new(o, "format", v ? format_json(v) : json_null());
    json_object_set_new(o, "qcow_version",
                        v && v->meta.format == VQ_FORMAT_COW && v->qcow_version
                            ? json_string(v->qcow_version == 3 ? "qcow2_v3" : "qcow2_v2")
                            : json_null());
    json_object_set_new(o, "image_id", v ? json_string(v->id) : json_null());
    json_object_set_new(o, "provisioned_size",
                        json_integer(v ? (json_int_t)v->virtual_size : 0));
}

json_t *vq_disk_json(const vq_disk *disk, const char *locked_by)
{
    enum vq_status st = disk->status;
    if (st == VQ_STATUS_OK && locked_by) st = VQ_STATUS_LOCKED;
    json_t *o = json_object(), *vols = json_array();
    json_object_set_new(o, "id", json_string(disk->id));
    /* An alias that is not valid UTF-8 cannot be a JSON string: the id stands in. */
    json_t *alias = json_string(disk->alias);
    json_object_set_new(o, "alias", alias ? alias : json_string(disk->id));
    top_json(o, disk);
    json_object_set_new(o, "actual_size", json_integer(own_actual_size(disk)));
    json_object_set_new(o, "status", json_string(vq_status_name(st)));
    json_object_set_new(o, "reason", disk->status == VQ_STATUS_ILLEGAL ? json_string(disk->reason)
                                                                       : json_null());
    json_object_set_new(o, "template", json_boolean(disk->is_template));
    json_object_set_new(o, "storage_domain", json_string(disk->domain_id));
    json_object_set_new(o, "locked_by", locked_by ? json_string(locked_by) : json_null());
    for (size_t i = 0; i < disk->nvols; i++)
        json_array_append_new(vols, volume_json(&disk->vols[i]));
    json_object_set_new(o, "volumes", vols);
    return o;
}

void vq_disk_free(vq_disk *disk)
{
    if (!disk) return;
    for (size_t i = 0; i < disk->nvols; i++) vq_meta_free(&disk->vols[i].meta);
    free(disk->vols);
    free(disk);
}
