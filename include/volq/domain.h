/* File storage domains under a domains root: ROOT/SD_UUID/{dom_md,images}. */
#ifndef VOLQ_DOMAIN_H
#define VOLQ_DOMAIN_H
#include <jansson.h>
#include <stddef.h>

#include "volq/kv.h"
#include "volq/uuid.h"

enum vq_status { VQ_STATUS_OK = 0, VQ_STATUS_ILLEGAL = 1, VQ_STATUS_LOCKED = 2 };

typedef struct vq_domain {
    char id[VQ_UUID_SIZE];
    char *path;       /* ROOT/SD_UUID, owned */
    int dirfd;        /* O_DIRECTORY fd of the domain folder; every file is opened relative to it */
    int imagesfd;     /* O_DIRECTORY fd of images/, -1 when it could not be opened (then
                         each image is opened by its path, for the error) */
    int version;      /* VERSION, 0..5; -1 when unreadable */
    enum vq_status status; /* ILLEGAL when the metadata is missing, malformed or its seal is wrong */
    char reason[256]; /* why illegal, "" when ok; printable ASCII */
    vq_kv md;         /* dom_md/metadata pairs (owned) */
    int sealed;       /* the file had a _SHA_CKSUM line */
} vq_domain;

/* "ok", "illegal", "locked": the status names of the HTTP API. */
const char *vq_status_name(enum vq_status s);

/* Opens ROOT/sd.  sd must be a valid UUID (VQ_EINVAL) and a folder (VQ_ENOENT).
 * A domain whose metadata is bad still opens (status ILLEGAL, reason set): it is
 * listed but no job runs on it.  Returns a new domain; free with vq_domain_free(). */
int vq_domain_open(const char *root, const char *sd, vq_domain **out, vq_error *err);

/* Every folder of root whose name is a UUID, sorted by id; other names are
 * skipped with a warning in the log.  *out is a new array of new domains
 * (free with vq_domain_list_free()). */
int vq_domain_list(const char *root, vq_domain ***out, size_t *n, vq_error *err);
void vq_domain_list_free(vq_domain **v, size_t n);

/* The image ids of the domain (folders of images/ named by a UUID), sorted.
 * *ids is a new array (free with free()); junk names are skipped with a warning. */
int vq_domain_images(const vq_domain *d, char (**ids)[VQ_UUID_SIZE], size_t *n, vq_error *err);

/* Sets VERSION and rewrites dom_md/metadata atomically with _SHA_CKSUM
 * recomputed.  Refused (VQ_EREFUSED) on an illegal domain: a file whose seal
 * does not match is never rewritten. */
int vq_domain_set_version(vq_domain *d, int version, vq_error *err);

/* Opens images/img of d as an O_DIRECTORY fd (no symlinks); the caller closes it. */
int vq_domain_open_image(const vq_domain *d, const char *img, int *fd, vq_error *err);

/* The domain object of the HTTP API: id, version, status, reason, disks.  New reference. */
json_t *vq_domain_json(const vq_domain *d, size_t ndisks);

void vq_domain_free(vq_domain *d);

#endif
