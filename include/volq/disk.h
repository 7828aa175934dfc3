/* A disk: an image folder and its chain of volumes, leaf first. */
#ifndef VOLQ_DISK_H
#define VOLQ_DISK_H
#include <jansson.h>
#include <stdint.h>

#include "volq/domain.h"
#include "volq/meta.h"
#include "volq/qcow2.h"

/* A chain deeper than this is illegal. */
#define VQ_CHAIN_MAX 256

typedef struct vq_volume {
    char id[VQ_UUID_SIZE];
    vq_meta meta;        /* owned */
    int qcow_version;    /* 2 or 3 for a readable qcow2 header, 0 for RAW */
    uint64_t virtual_size;
    uint64_t actual_size; /* bytes allocated on disk (st_blocks * 512) */
    int shared;          /* a template volume (VOLTYPE=SHARED): never the disk's own */
    int template_link;   /* reached as ../IMG/VOL on an old domain (not hard-linked) */
    char template_image[VQ_UUID_SIZE]; /* the template image when shared, else "" */
} vq_volume;

typedef struct vq_disk {
    char id[VQ_UUID_SIZE];        /* the image id */
    char domain_id[VQ_UUID_SIZE];
    char alias[VQ_ALIAS_MAX + 1]; /* leaf's DiskAlias, or the image id */
    enum vq_status status;        /* OK or ILLEGAL (LOCKED is added by the caller) */
    char reason[256];             /* why illegal, names the volume; "" when ok */
    int is_template;              /* every volume of the image is SHARED */
    vq_volume *vols;              /* leaf first, down to the base; a thin disk's
                                     template volume is last (shared = 1) */
    size_t nvols;
} vq_disk;

/* Loads images/img of d: reads every .meta, finds the leaf, follows PUUID down,
 * reads each qcow2 header and checks containment (SPEC §1).  Returns 0 with
 * status ILLEGAL (and a reason) for a disk that is malformed or leads outside
 * the domain, or that lies in an illegal domain (the domain's reason); an error only for a bad id (VQ_EINVAL), a missing image
 * (VQ_ENOENT) or ENOMEM.  Nothing is written; no process is spawned.
 * Returns a new disk; free with vq_disk_free(). */
int vq_disk_load(const vq_domain *d, const char *img, vq_disk **out, vq_error *err);

/* The leaf volume (vols[0]) or NULL for an empty/illegal disk.  Borrowed. */
const vq_volume *vq_disk_leaf(const vq_disk *disk);

/* Number of the disk's own (not shared) qcow2 volumes at compat 0.10. */
size_t vq_disk_count_v2(const vq_disk *disk);
/* 1 for a qcow2 volume of the disk's own (not a template's) at compat 0.10:
 * one an amend changes. */
int vq_volume_to_amend(const vq_volume *v);

/* Whether an amend may run, from the files alone (the lock and "in use" are
 * checked elsewhere).  0 when eligible; else VQ_EREFUSED with the reason in err:
 * "disk is a template disk", "domain version 3 does not support compat 1.1",
 * "disk has no qcow2 volume of its own", "volume X is ILLEGAL", the containment
 * reason.  *already_done is set when every own qcow2 volume is already 1.1
 * (eligible but nothing to do; upgrade-domain skips such disks). */
int vq_disk_check_amend(const vq_domain *d, const vq_disk *disk, int *already_done,
                        vq_error *err);

/* One disk of vq_disk_load_many() and _stream(): what vq_disk_load() and then
 * vq_disk_check_amend() left, as a serial scan would. */
typedef struct vq_disk_scan {
    vq_disk *disk;   /* new (free with vq_disk_free()), NULL when the load failed */
    int rc;          /* vq_disk_load's: 0, VQ_EINVAL, VQ_ENOENT or VQ_ENOMEM */
    int check_rc;    /* vq_disk_check_amend's when loaded: 0 or VQ_EREFUSED */
    int done;        /* its *already_done */
    vq_error err;    /* why rc or check_rc is not 0 */
} vq_disk_scan;

/* Threads of vq_disk_load_many() at most.  A scan is mostly system calls on
 * different folders (75% kernel time), which scale with the cores; the cap
 * keeps one upgrade request from taking every core of a large host. */
#define VQ_DISK_SCAN_THREADS_MAX 4

/* Loads and checks imgs[0..n) of d into out[0..n): vq_disk_load() then
 * vq_disk_check_amend() of each, on nthreads threads (<= 0: the online CPUs),
 * at most VQ_DISK_SCAN_THREADS_MAX and one per 64 disks, the caller's thread
 * among them; they take chunks of 32 disks in order.  A thread that cannot be
 * started leaves its chunks to the others: the same results, later.
 * Cannot fail as a whole; out[i] says how disk i went.  Free each out[i].disk
 * with vq_disk_free(). */
void vq_disk_load_many(const vq_domain *d, const char (*imgs)[VQ_UUID_SIZE], size_t n,
                       int nthreads, vq_disk_scan *out);

/* Called on the caller's thread of vq_disk_load_stream() with out[lo..hi)
 * loaded; a non-zero return stops the scan. */
typedef int (*vq_disk_ready_fn)(void *arg, size_t lo, size_t hi);

/* vq_disk_load_many() that hands the disks on as they are loaded: ready(arg,
 * lo, hi) for each run loaded since the last call, runs adjacent and in order
 * from 0 to n, while nthreads threads (the same count, at nice +10; not the
 * caller's, which only calls ready) load the rest.  A bulk upgrade accepts its first disks
 * while it still loads the others.  A scan of 64 disks or fewer runs on the
 * caller's thread, handing on runs as they double.  Returns 0 once all of
 * out[0..n) was handed on, or ready's non-zero return: then no new chunk is
 * started and the disks never loaded are left zeroed.  Either way free each
 * out[i].disk with vq_disk_free(). */
int vq_disk_load_stream(const vq_domain *d, const char (*imgs)[VQ_UUID_SIZE], size_t n,
                        int nthreads, vq_disk_scan *out, vq_disk_ready_fn ready, void *arg);

/* The disk object of the HTTP API (SPEC §4), every field.  locked_by is the job
 * holding the disk lock or NULL (status becomes "locked").  New reference. */
json_t *vq_disk_json(const vq_disk *disk, const char *locked_by);

void vq_disk_free(vq_disk *disk);

#endif
