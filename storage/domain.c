/* File storage domains: open, list, seal check of dom_md/metadata, VERSION. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "volq/domain.h"
#include "volq/fsutil.h"
#include "volq/log.h"
#include "text_int.h"

#define MD_PATH "dom_md/metadata"
#define MD_MODE 0660
#define VERSION_MAX 5

static const char *const status_names[] = {"ok", "illegal", "locked"};

const char *vq_status_name(enum vq_status s)
{
    return (unsigned)s < 3 ? status_names[s] : "illegal";
}

/* Marks d illegal with a reason (the first reason wins, as for errors). */
static void illegal(vq_domain *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void illegal(vq_domain *d, const char *fmt, ...)
{
    if (d->status == VQ_STATUS_ILLEGAL) return;
    d->status = VQ_STATUS_ILLEGAL;
    va_list ap;
    va_start(ap, fmt);
    vq_reason_format_(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
}

/* VERSION as 0..5, or -1. */
static int parse_version(const char *v)
{
    if (!v || v[0] < '0' || v[0] > '0' + VERSION_MAX || v[1] != '\0') return -1;
    return v[0] - '0';
}

/* Checks what was parsed: the seal, VERSION and SDUUID. */
static void check_md(vq_domain *d, const char *cksum)
{
    d->sealed = cksum[0] != '\0';
    d->version = parse_version(vq_kv_get(&d->md, "VERSION"));
    if (d->sealed) {
        char sum[41];
        vq_kv_checksum(&d->md, sum);
        if (strcmp(sum, cksum) != 0)
            illegal(d, "metadata checksum mismatch: _SHA_CKSUM is %s, the content hashes to %s",
                    cksum, sum);
    }
    if (d->version < 0) illegal(d, "metadata: VERSION is missing or not 0..5");
    const char *sd = vq_kv_get(&d->md, "SDUUID");
    if (!sd || strcmp(sd, d->id) != 0)
        illegal(d, "metadata: SDUUID %.40s does not match the folder %s", sd ? sd : "(none)",
                d->id);
}

/* (Re)reads dom_md/metadata into d.  Only ENOMEM is an error; anything wrong
 * with the file makes the domain illegal. */
static int load_md(vq_domain *d)
{
    char *buf = NULL, cksum[41] = "";
    size_t len = 0;
    vq_error e = {0};
    vq_kv_free(&d->md);
    d->status = VQ_STATUS_OK;
    d->reason[0] = '\0';
    d->version = -1;
    d->sealed = 0;
    int rc = vq_fs_read(d->dirfd, MD_PATH, VQ_DOMMD_MAX, &buf, &len, &e);
    if (rc == 0) rc = vq_kv_parse(buf, len, VQ_KV_CKSUM, &d->md, cksum, &e);
    free(buf);
    if (rc == VQ_ENOMEM) return rc;
    if (rc < 0) {
        illegal(d, "metadata: %s", e.text);
        return 0;
    }
    check_md(d, cksum);
    return 0;
}

static int open_root(const char *root, int *fd, vq_error *err)
{
    *fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return vq_error_set(err, errno == ENOENT ? VQ_ENOENT : VQ_EIO, "domains root %s: %s",
                            root, strerror(errno));
    return 0;
}

static int open_in_root(int rootfd, const char *root, const char *sd, vq_domain **out,
                        vq_error *err)
{
    vq_domain *d = calloc(1, sizeof *d);
    if (!d) return vq_error_set(err, VQ_ENOMEM, "domain %s: out of memory", sd);
    memcpy(d->id, sd, VQ_UUID_SIZE);
    d->version = -1;
    d->imagesfd = -1;
    vq_error e = {0};
    int rc = vq_fs_open(rootfd, sd, O_RDONLY | O_DIRECTORY, &d->dirfd, &e);
    if (rc < 0) {
        /* A symlink or a file where the domain folder should be is no domain. */
        d->dirfd = -1;
        rc = vq_error_set(err, rc == VQ_ENOMEM ? VQ_ENOMEM : VQ_ENOENT, "domain %s", e.text);
        goto out_fail;
    }
    size_t plen = strlen(root) + VQ_UUID_SIZE + 1;
    if (!(d->path = malloc(plen)) || load_md(d) < 0) {
        rc = vq_error_set(err, VQ_ENOMEM, "domain %s: out of memory", sd);
        goto out_fail;
    }
    snprintf(d->path, plen, "%s/%s", root, sd); /* plen counted every byte */
    /* Every disk of a listing opens its image through it: one open, not two. */
    if (vq_fs_open(d->dirfd, "images", O_RDONLY | O_DIRECTORY, &d->imagesfd, NULL) < 0)
        d->imagesfd = -1;
    *out = d;
    return 0;
out_fail:
    vq_domain_free(d);
    return rc;
}

int vq_domain_open(const char *root, const char *sd, vq_domain **out, vq_error *err)
{
    if (!vq_uuid_valid(sd))
        return vq_error_set(err, VQ_EINVAL, "domain id \"%.40s\" is not a UUID", sd ? sd : "");
    int rootfd, rc = open_root(root, &rootfd, err);
    if (rc < 0) return rc;
    rc = open_in_root(rootfd, root, sd, out, err);
    close(rootfd);
    return rc;
}

static int by_domain_id(const void *a, const void *b)
{
    return strcmp((*(vq_domain *const *)a)->id, (*(vq_domain *const *)b)->id);
}

/* Appends one domain of root to *v (grown as needed); junk is skipped. */
static int list_one(int rootfd, const char *root, const char *name, vq_domain ***v, size_t *n,
                    size_t *cap, vq_error *err)
{
    if (!vq_uuid_valid(name)) {
        vq_log(VQ_LOG_WARN, "domains root %s: skipping \"%.60s\": not a UUID", root, name);
        return 0;
    }
    vq_domain *d;
    vq_error e = {0};
    int rc = open_in_root(rootfd, root, name, &d, &e);
    if (rc == VQ_ENOENT) {
        vq_log(VQ_LOG_WARN, "domains root %s: skipping %s", root, e.text);
        return 0;
    }
    if (rc < 0) return vq_error_set(err, rc, "%s", e.text);
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        vq_domain **nv = realloc(*v, nc * sizeof *nv);
        if (!nv) {
            vq_domain_free(d);
            return vq_error_set(err, VQ_ENOMEM, "domains root %s: out of memory", root);
        }
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = d;
    return 0;
}

int vq_domain_list(const char *root, vq_domain ***out, size_t *n, vq_error *err)
{
    int rootfd, rc = open_root(root, &rootfd, err);
    if (rc < 0) return rc;
    int scanfd = dup(rootfd);
    DIR *dir = scanfd >= 0 ? fdopendir(scanfd) : NULL;
    if (!dir) {
        if (scanfd >= 0) close(scanfd);
        close(rootfd);
        return vq_error_set(err, VQ_EIO, "domains root %s: %s", root, strerror(errno));
    }
    vq_domain **v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(dir)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rc = list_one(rootfd, root, de->d_name, &v, &cnt, &cap, err);
    closedir(dir);
    close(rootfd);
    if (rc < 0) {
        vq_domain_list_free(v, cnt);
        return rc;
    }
    if (cnt) qsort(v, cnt, sizeof *v, by_domain_id);
    *out = v;
    *n = cnt;
    return 0;
}

void vq_domain_list_free(vq_domain **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) vq_domain_free(v[i]);
    free(v);
}

/* An image folder candidate: a folder, or a symlink (kept so that loading it
 * reports the disk illegal instead of hiding it). */
static int image_entry(int imgsfd, const struct dirent *de)
{
    if (de->d_type == DT_DIR || de->d_type == DT_LNK) return 1;
    if (de->d_type != DT_UNKNOWN) return 0;
    struct stat st;
    return fstatat(imgsfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           (S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode));
}

static int by_uuid(const void *a, const void *b) { return strcmp(a, b); }

/* Reads the ids of the open images folder (dir takes imgsfd). */
static int scan_images(const vq_domain *d, DIR *dir, char (**ids)[VQ_UUID_SIZE], size_t *n,
                       vq_error *err)
{
    char(*v)[VQ_UUID_SIZE] = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (!vq_uuid_valid(de->d_name) || !image_entry(dirfd(dir), de)) {
            vq_log(VQ_LOG_WARN, "domain %s: skipping images/%.60s: not an image folder", d->id,
                   de->d_name);
            continue;
        }
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 64;
            void *nv = realloc(v, nc * sizeof *v);
            if (!nv) {
                free(v);
                return vq_error_set(err, VQ_ENOMEM, "domain %s: out of memory", d->id);
            }
            v = nv;
            cap = nc;
        }
        memcpy(v[cnt++], de->d_name, VQ_UUID_SIZE);
    }
    if (cnt) qsort(v, cnt, sizeof *v, by_uuid);
    *ids = v;
    *n = cnt;
    return 0;
}

int vq_domain_images(const vq_domain *d, char (**ids)[VQ_UUID_SIZE], size_t *n, vq_error *err)
{
    int fd;
    vq_error e = {0};
    *ids = NULL;
    *n = 0;
    int rc = vq_fs_open(d->dirfd, "images", O_RDONLY | O_DIRECTORY, &fd, &e);
    if (rc == VQ_ENOENT) return 0; /* a domain without images has no disks */
    if (rc < 0) return vq_error_set(err, rc, "domain %s: %s", d->id, e.text);
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return vq_error_set(err, VQ_EIO, "domain %s: images: %s", d->id, strerror(errno));
    }
    rc = scan_images(d, dir, ids, n, err);
    closedir(dir);
    return rc;
}

int vq_domain_open_image(const vq_domain *d, const char *img, int *fd, vq_error *err)
{
    char path[sizeof "images/" + VQ_UUID_SIZE];
    if (!vq_uuid_valid(img))
        return vq_error_set(err, VQ_EINVAL, "disk id \"%.40s\" is not a UUID", img ? img : "");
    snprintf(path, sizeof path, "images/%s", img); /* sized for a UUID */
    vq_error e = {0};
    if (d->imagesfd >= 0 && vq_fs_open(d->imagesfd, img, O_RDONLY | O_DIRECTORY, fd, NULL) == 0)
        return 0;
    /* By the path: the errors name images/IMG, and images/ may have changed. */
    int rc = vq_fs_open(d->dirfd, path, O_RDONLY | O_DIRECTORY, fd, &e);
    if (rc < 0) return vq_error_set(err, rc, "domain %s: %s", d->id, e.text);
    return 0;
}

int vq_domain_set_version(vq_domain *d, int version, vq_error *err)
{
    if (version < 0 || version > VERSION_MAX)
        return vq_error_set(err, VQ_EINVAL, "domain %s: version %d is not 0..5", d->id, version);
    /* Read again: another host may have changed the file since d was opened. */
    if (load_md(d) < 0) return vq_error_set(err, VQ_ENOMEM, "domain %s: out of memory", d->id);
    if (d->status == VQ_STATUS_ILLEGAL)
        return vq_error_set(err, VQ_EREFUSED, "domain %s is illegal: %s", d->id, d->reason);
    char num[4];
    snprintf(num, sizeof num, "%d", version); /* one digit */
    int rc = vq_kv_set(&d->md, "VERSION", num, err);
    if (rc < 0) return rc;
    size_t len;
    char *buf = vq_kv_format(&d->md, VQ_KV_CKSUM, &len);
    if (!buf) return vq_error_set(err, VQ_ENOMEM, "domain %s: out of memory", d->id);
    vq_error e = {0};
    rc = vq_fs_write_atomic(d->dirfd, MD_PATH, buf, len, MD_MODE | VQ_FS_KEEP_MODE, &e);
    free(buf);
    if (rc < 0) {
        load_md(d); /* the file is unchanged: so is d */
        return vq_error_set(err, rc, "domain %s: %s", d->id, e.text);
    }
    d->version = version;
    d->sealed = 1;
    return 0;
}

json_t *vq_domain_json(const vq_domain *d, size_t ndisks)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "version", d->version < 0 ? json_null() : json_integer(d->version));
    json_object_set_new(o, "status", json_string(vq_status_name(d->status)));
    json_object_set_new(o, "reason",
                        d->status == VQ_STATUS_OK ? json_null() : json_string(d->reason));
    json_object_set_new(o, "disks", json_integer((json_int_t)ndisks));
    return o;
}

void vq_domain_free(vq_domain *d)
{
    if (!d) return;
    if (d->dirfd >= 0) close(d->dirfd);
    if (d->imagesfd >= 0) close(d->imagesfd);
    free(d->path);
    vq_kv_free(&d->md);
    free(d);
}
