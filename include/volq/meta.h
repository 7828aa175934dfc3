/* Volume metadata: ROOT/SD/images/IMG/VOL.meta, as VDSM writes it on file domains. */
#ifndef VOLQ_META_H
#define VOLQ_META_H
#include <stdint.h>

#include "volq/fsutil.h"
#include "volq/kv.h"
#include "volq/uuid.h"

enum vq_format { VQ_FORMAT_COW = 0, VQ_FORMAT_RAW = 1 };
enum vq_voltype { VQ_VOLTYPE_LEAF = 0, VQ_VOLTYPE_INTERNAL = 1, VQ_VOLTYPE_SHARED = 2 };
enum vq_legality { VQ_LEGAL = 0, VQ_ILLEGAL = 1, VQ_FAKE = 2 };
enum vq_preallocation { VQ_TYPE_SPARSE = 0, VQ_TYPE_PREALLOCATED = 1, VQ_TYPE_UNKNOWN = 2 };

/* DESCRIPTION is limited by VDSM to 210 bytes. */
#define VQ_DESCRIPTION_MAX 210
#define VQ_ALIAS_MAX 210

typedef struct vq_meta {
    vq_kv kv;                 /* every key of the file, unknown ones included (owned) */
    enum vq_format format;
    enum vq_voltype voltype;
    enum vq_legality legality;
    enum vq_preallocation type;
    char image[VQ_UUID_SIZE];
    char domain[VQ_UUID_SIZE];
    char puuid[VQ_UUID_SIZE]; /* VQ_UUID_BLANK for a base volume */
    uint64_t capacity;        /* bytes: CAP, or SIZE * 512 */
    unsigned gen;             /* GEN, 0 when absent */
    char alias[VQ_ALIAS_MAX + 1]; /* DESCRIPTION.DiskAlias; "" when it cannot be read */
} vq_meta;

/* Parses a .meta buffer (len <= VQ_META_MAX, else error).  Requires the EOF line,
 * FORMAT, VOLTYPE, LEGALITY, IMAGE, PUUID (UUIDs, lower case), and SIZE or CAP.
 * DESCRIPTION may be JSON (possibly truncated: DiskAlias is taken when its string
 * is complete) or plain text (alias ""). m must be zeroed or freed before. */
int vq_meta_parse(const char *buf, size_t len, vq_meta *m, vq_error *err);

/* Reads and parses "<vol>.meta" relative to the image folder imgfd (no symlinks). */
int vq_meta_read(int imgfd, const char *vol, vq_meta *m, vq_error *err);

/* Serialises m->kv (after syncing the typed fields back into it: FORMAT, VOLTYPE,
 * LEGALITY, GEN, PUUID, ...) sorted with EOF last, and rewrites "<vol>.meta"
 * atomically.  Refuses (VQ_EINVAL) a result over VQ_META_MAX bytes.
 * The size goes into whichever of CAP / SIZE the file has (both when both);
 * GEN, TYPE and DOMAIN are added only when set (GEN != 0, TYPE not UNKNOWN,
 * domain not ""), so a rewrite changes no more than it must.  An existing
 * file's mode is kept (new files: 0660). */
int vq_meta_write(int imgfd, const char *vol, vq_meta *m, vq_error *err);
/* The same as one rewrite of run (vq_fs_run_write): the image folder's fsync
 * waits for the run's sync, and the files replaced are kept as later temp files. */
int vq_meta_write_run(int imgfd, const char *vol, vq_meta *m, vq_fs_run *run, vq_error *err);

/* The GEN after a change, as VDSM bumps it: (GEN+1) % 1000. */
unsigned vq_meta_next_gen(unsigned gen);

/* 0 when m, its GEN bumped, can be written (vq_meta_write would not refuse
 * it: 512 bytes at most, fields valid); else the error a write would give.
 * Checked before qemu-img changes the volume, which the bump must follow. */
int vq_meta_check_bump(const char *vol, const vq_meta *m, vq_error *err);

/* Removes the temp files of .meta and .lease writes ("<vol>.meta.tmp.<pid>",
 * "<vol>.lease.tmp.<pid>") that a
 * process which died left in the image folder imgfd; the number removed, or
 * -1 when the folder cannot be listed.  Only for a caller that alone may
 * rewrite these files (it holds the disk's lock): a live writer's temp file
 * would go too. */
int vq_meta_remove_temps(int imgfd);

/* Starts the metadata of a new volume on a domain of domain_version (m is
 * zeroed or freed before): CTIME=now, DISKTYPE=DATA and the size keys of the
 * version (SIZE with MTIME=0 below V5; CAP with SEQ=0 on V5).  Typed fields
 * start as COW, LEAF, LEGAL, SPARSE, PUUID blank, GEN 0; the caller sets
 * image, domain, puuid, capacity, ... and vq_meta_set_alias(), then
 * vq_meta_write().  m owns new pairs: free with vq_meta_free(). */
int vq_meta_init(vq_meta *m, int domain_version, vq_error *err);

/* Sets DESCRIPTION to {"DiskAlias":alias,"DiskDescription":""} (compact JSON,
 * as oVirt writes it) and m->alias.  VQ_EINVAL when the JSON would be longer
 * than VQ_DESCRIPTION_MAX bytes. */
int vq_meta_set_alias(vq_meta *m, const char *alias, vq_error *err);

/* Name tables for the enums: "COW"/"RAW", "LEAF"/..., used by parse and write. */
const char *vq_format_name(enum vq_format f);     /* "COW", "RAW" */
const char *vq_voltype_name(enum vq_voltype v);   /* "LEAF", "INTERNAL", "SHARED" */
const char *vq_legality_name(enum vq_legality l); /* "LEGAL", "ILLEGAL", "FAKE" */

void vq_meta_free(vq_meta *m);

#endif
