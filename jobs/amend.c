/* The amend job: every qcow2 volume of the disk's own chain to compat 1.1,
 * one at a time (qemu cannot amend two volumes of one chain at once), base
 * first, each read back from its header and, on success only, its GEN bumped. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "volq/disk.h"
#include "volq/fsutil.h"
#include "volq/kind.h"
#include "volq/log.h"
#include "volq/qemu.h"

/* The refusals an amend shares between acceptance and the run: the files say
 * no (template, V3, raw only, ILLEGAL, containment) or qemu's lock is held.
 * after_crash: an earlier attempt of this job died or lost its lease, and its
 * qemu-img (not killed with it: an amend is left to finish) may still hold the
 * lock; that is transient (VQ_EBUSY, retried with backoff), not a refusal. */
static int refuse_if_not_eligible(const vq_domain *d, const vq_disk *disk, const char *imgdir,
                                  int after_crash, vq_error *err)
{
    int done = 0;
    if (d->status != VQ_STATUS_OK)
        return vq_error_set(err, VQ_EREFUSED, "domain %s is illegal: %s", d->id, d->reason);
    int rc = vq_disk_check_amend(d, disk, &done, err);
    if (rc) return rc;
    for (size_t i = 0; i < disk->nvols; i++) {
        const vq_volume *v = &disk->vols[i];
        if (v->shared || v->meta.format != VQ_FORMAT_COW) continue;
        vq_error probe = {0};
        int busy = vq_qemu_in_use(imgdir, v->id, &probe);
        if (busy > 0 && after_crash)
            return vq_error_set(err, VQ_EBUSY,
                                "disk is in use: qemu's image lock on volume %s is held (the "
                                "qemu-img of an attempt that died, or a running VM?)", v->id);
        if (busy > 0)
            return vq_error_set(err, VQ_EREFUSED,
                                "disk is in use: qemu's image lock on volume %s is held (a running VM?)",
                                v->id);
        if (busy < 0) vq_log(VQ_LOG_WARN, "disk %s: in-use probe failed: %s", disk->id, probe.text);
    }
    return 0;
}

static int image_dir(const vq_domain *d, const char *img, char *out, size_t outsz, vq_error *err)
{
    int n = snprintf(out, outsz, "%s/images/%s", d->path, img);
    if (n < 0 || (size_t)n >= outsz)
        return vq_error_set(err, VQ_EINVAL, "disk %s: image path too long", img);
    return 0;
}

static int amend_check(const vq_domain *d, const vq_disk *disk, json_t *params, vq_error *err)
{
    (void)params;
    char imgdir[PATH_MAX];
    if (!disk) return vq_error_set(err, VQ_EINVAL, "amend needs a disk");
    if (image_dir(d, disk->id, imgdir, sizeof imgdir, err)) return err ? err->code : VQ_EINVAL;
    return refuse_if_not_eligible(d, disk, imgdir, 0, err);
}

/* Reads the volume's header back: the amend counts only when it says version 3. */
static int verify_v3(const vq_domain *d, const char *img, const char *vol, vq_error *err)
{
    int dfd = -1;
    int rc = vq_domain_open_image(d, img, &dfd, err);
    if (rc) return rc;
    /* A regular file only, opened without blocking: a FIFO swapped in
     * meanwhile must not hang the worker. */
    int fd;
    struct stat st;
    vq_error e = {0};
    if (vq_fs_open_file(dfd, vol, &fd, &st, &e)) {
        rc = vq_error_set(err, VQ_EIO, "volume %s: cannot open after amend: %s", vol, e.text);
        goto out_close_dir;
    }
    vq_qcow2 h;
    rc = vq_qcow2_read_stat(fd, &st, &h, err);
    if (rc == 0 && h.version != 3)
        rc = vq_error_set(err, VQ_EIO, "volume %s: header still says version %u after amend", vol,
                          h.version);
    close(fd);
out_close_dir:
    close(dfd);
    return rc;
}

static void pass_spare(const vq_domain *d, const char *img, int dfd, vq_fs_run *run);

/* GEN is bumped as VDSM does after changing a volume: (GEN+1) % 1000.  Each
 * .meta is rewritten atomically, as one rewrite of the job's run (temp file,
 * fsync, swap or rename: vq_fs_run_write); the run ends (end: the image
 * folder fsynced, which makes the renames durable, then its kept files passed
 * on to the running job or removed) after the job's last bump, before its end
 * is recorded.  vol NULL: the end alone. */
static int bump_gen(const vq_domain *d, const char *img, const char *vol, vq_fs_run *run,
                    int end, vq_error *err)
{
    int dfd = -1;
    int rc = vq_domain_open_image(d, img, &dfd, err);
    if (rc) return rc;
    vq_meta m = {0};
    if (vol) rc = vq_meta_read(dfd, vol, &m, err);
    if (vol && rc == 0) {
        m.gen = vq_meta_next_gen(m.gen);
        rc = vq_meta_write_run(dfd, vol, &m, run, err);
    }
    if (end) {
        vq_error e = {0};
        int erc = vq_fs_run_sync(dfd, run, img, rc ? &e : err);
        if (erc == 0) pass_spare(d, img, dfd, run);
        vq_fs_run_drop(dfd, run);
        if (rc == 0) rc = erc;
    }
    vq_meta_free(&m);
    close(dfd);
    return rc;
}

/* A run given up (the attempt was fenced): its temp file goes, nothing else. */
static void drop_run(const vq_domain *d, const char *img, vq_fs_run *run)
{
    int dfd = -1;
    if ((run->nready || run->nfresh) && vq_domain_open_image(d, img, &dfd, NULL) == 0) {
        vq_fs_run_drop(dfd, run);
        close(dfd);
    }
}

/* The GEN bump of the volume amended last is made during the next volume's
 * qemu-img rather than before it: the fence before it (the fenced progress
 * write) and the atomic .meta rewrite (two fsyncs) then overlap qemu-img's
 * own work instead of adding to it.  The order that matters is kept: the
 * fence's answer is read, and must say the attempt is still current, before
 * the .meta is written; a fenced answer kills the running qemu-img (as a
 * fenced heartbeat does) and nothing is written.  qemu-img itself needs no
 * fence, only the lease, which its ticks renew. */
typedef struct bump {
    vq_job_ctx *c;
    const vq_domain *d;
    const char *img;
    char vol[VQ_UUID_SIZE]; /* the volume whose bump is due; "" when none */
    int last;               /* the running qemu-img is the job's last */
    vq_fs_run run;          /* the bumps made, their folder not synced yet */
    int rc;                 /* a failed bump: the job ends with it */
    vq_error err;
} bump;

/* The amend running in this process (its bumps' run), NULL between amends.
 * A job's last step runs in the first tick of the next job's qemu-img: its
 * run's kept files, ready once its folder is synced, then move on to that
 * job's folder instead of being removed, and a worker busy with a bulk
 * upgrade makes no inode at all. */
static bump *running;

static void pass_spare(const vq_domain *d, const char *img, int dfd, vq_fs_run *run)
{
    bump *to = running;
    int tofd = -1;
    /* Within one domain only: a file of one domain's is never one of another's. */
    if (!to || run->nready == 0 || to->run.nready >= VQ_FS_SPARES || strcmp(to->img, img) == 0 ||
        strcmp(to->d->id, d->id) != 0 || strcmp(to->d->path, d->path) != 0 ||
        vq_domain_open_image(to->d, to->img, &tofd, NULL))
        return;
    /* Not moved (another file system: EXDEV): they stay in run, whose end removes them. */
    if (vq_fs_run_pass(dfd, run, tofd, &to->run) == 0)
        vq_log(VQ_LOG_DEBUG, "disk %s: temp files not passed on: %m", img);
    close(tofd);
}

/* The fence's answer, then the bump of the volume due (once). */
static int bump_due(bump *b)
{
    if (!b->vol[0]) return b->rc;
    int rc = b->c->heartbeat(b->c->heartbeat_arg);
    if (rc) return rc;
    if (b->rc == 0) b->rc = bump_gen(b->d, b->img, b->vol, &b->run, 0, &b->err);
    b->vol[0] = '\0';
    return b->rc;
}

/* qemu-img's tick (the first right after it starts): the due bump, then the
 * lease.  A failed bump does not stop this qemu-img (an amend is left to
 * finish); it ends the job after.  A fenced attempt stops it. */
static int amend_tick(void *arg)
{
    bump *b = arg;
    if (bump_due(b) == VQ_ESTALE) return VQ_ESTALE;
    int rc = b->c->heartbeat(b->c->heartbeat_arg);
    if (rc == 0 && b->last && b->c->ahead) b->c->ahead(b->c);
    return rc;
}

/* Amends vol, the done-th of total, and records it as done; its GEN bump is
 * left due in b. */
static int amend_volume(bump *b, const char *imgdir, const char *vol, int done, int total,
                        vq_error *err)
{
    vq_job_ctx *c = b->c;
    b->last = done == total;
    /* A lock conflict here, after the probe at the start found none, is most
     * likely a stale qemu-img of an earlier attempt: transient, retried. */
    int rc = vq_qemu_amend(imgdir, vol, c->qemu_timeout_ms, amend_tick, b, err);
    if (rc == VQ_ESTALE) return rc;
    int brc = bump_due(b); /* when qemu-img ended before its first tick */
    if (brc == VQ_ESTALE) return brc;
    if (brc) return vq_error_set(err, brc, "%s", b->err.text);
    if (rc) return rc;
    if ((rc = verify_v3(b->d, b->img, vol, err))) return rc;
    /* The header says compat 1.1: the volume counts as done.  The progress
     * write is fenced; its answer is the fence of this volume's bump. */
    if ((rc = c->progress_later(c, done, total))) return rc;
    memcpy(b->vol, vol, VQ_UUID_SIZE);
    return 0;
}

/* The job's last step: the bump still due (its fence answer was read) and
 * the fsync of the image folder for every bump of the job. */
typedef struct last_step {
    vq_domain *d; /* owned */
    char img[VQ_UUID_SIZE], vol[VQ_UUID_SIZE];
    vq_fs_run run;
} last_step;

static int last_step_run(void *arg, vq_error *err)
{
    last_step *t = arg;
    return bump_gen(t->d, t->img, t->vol, &t->run, 1, err);
}

/* A step that never ran (its job fenced, or the worker stopping), or failed
 * before its run's end, leaves no temp file behind. */
static void last_step_free(void *arg)
{
    last_step *t = arg;
    drop_run(t->d, t->img, &t->run);
    vq_domain_free(t->d);
    free(t);
}

/* Hands the last step to the worker (c->defer): the domain goes with it. */
static int defer_last(vq_job_ctx *c, vq_domain **dp, bump *b)
{
    last_step *t = c->defer ? calloc(1, sizeof *t) : NULL;
    if (!t) return -1;
    t->d = *dp;
    memcpy(t->img, b->img, VQ_UUID_SIZE);
    memcpy(t->vol, b->vol, VQ_UUID_SIZE);
    t->run = b->run;
    if (c->defer(c, last_step_run, last_step_free, t)) {
        free(t);
        return -1;
    }
    memset(&b->run, 0, sizeof b->run); /* the step's now */
    *dp = NULL;
    return 0;
}

/* After a crash the attempt that died may have left the temp file of its
 * bumps' run in the image folder; the disk's lock is this attempt's now. */
static void remove_leftovers(const vq_domain *d, const vq_job *j)
{
    int dfd = -1;
    if (vq_domain_open_image(d, j->disk_id, &dfd, NULL) != 0) return;
    vq_job_remove_leftovers(j, dfd);
    close(dfd);
}

/* ---- the plan: the GEN bumps an attempt that died still owed ----------- */

/* 1 when v is in plan ("VOL:GEN ...") with the GEN its .meta still says and
 * is at compat 1.1 now: an attempt amended it and died before its bump. */
static int owed_bump(const char *plan, const vq_volume *v)
{
    if (!plan || v->shared || v->meta.format != VQ_FORMAT_COW || v->qcow_version != 3) return 0;
    size_t n = strlen(v->id);
    for (const char *p = strstr(plan, v->id); p; p = strstr(p + 1, v->id)) {
        if ((p != plan && p[-1] != ' ') || p[n] != ':') continue;
        char *end;
        unsigned long g = strtoul(p + n + 1, &end, 10);
        return end != p + n + 1 && (*end == ' ' || *end == '\0') && g == v->meta.gen;
    }
    return 0;
}

/* This attempt's plan (new string, free()): the volumes it will amend and
 * those whose bump is owed (owed: how many), each as "VOL:GEN" with the GEN
 * as it is before.  Recorded before the first qemu-img, it lets the attempt
 * after this one's death bump the GEN of a volume amended meanwhile (its
 * qemu-img may even finish after the worker died), and only that. */
static char *make_plan(const vq_disk *disk, const char *before, int *owed)
{
    /* " VOL:GEN" per volume: a UUID, and GEN below 1000 (VQ_UUID_SIZE counts the NUL) */
    size_t size = disk->nvols * (VQ_UUID_SIZE + 4) + 1, n = 0;
    char *plan = malloc(size);
    if (!plan) return NULL;
    plan[0] = '\0';
    *owed = 0;
    for (size_t i = 0; i < disk->nvols && n < size; i++) {
        const vq_volume *v = &disk->vols[i];
        int owes = owed_bump(before, v);
        *owed += owes;
        if (owes || vq_volume_to_amend(v))
            n += (size_t)snprintf(plan + n, size - n, "%s%s:%u", n ? " " : "", v->id, v->meta.gen);
    }
    return plan;
}

/* The bumps an attempt that died owed, after one fence (they join this
 * attempt's run: its end makes them durable). */
static int bump_owed(bump *b, const vq_disk *disk, const char *plan, vq_error *err)
{
    int rc = 0, fenced = 0;
    for (size_t i = 0; i < disk->nvols && rc == 0; i++) {
        const vq_volume *v = &disk->vols[i];
        if (!owed_bump(plan, v)) continue;
        if (!fenced && (rc = b->c->fence(b->c))) return rc;
        fenced = 1;
        vq_log(VQ_LOG_NOTICE, "job %s: volume %s was amended by an attempt that died before its "
               "GEN bump: bumping it now", b->c->job->id, v->id);
        if ((rc = bump_gen(b->d, b->img, v->id, &b->run, 0, &b->err)))
            rc = vq_error_set(err, rc, "%s", b->err.text);
    }
    return rc;
}

/* The bumps owed (owed: how many), the volumes, base first (vols[] runs leaf
 * first), then the job's last bump and the end of its run (handed to the
 * worker when it can wait). */
static int amend_volumes(bump *b, vq_domain **dp, const vq_disk *disk, const char *imgdir,
                         int total, int owed, vq_error *err)
{
    const vq_domain *d = *dp;
    vq_job_ctx *c = b->c;
    int rc = owed ? bump_owed(b, disk, c->job->plan, err) : 0, done = 0;
    for (size_t i = disk->nvols; i-- > 0 && rc == 0;) {
        const vq_volume *v = &disk->vols[i];
        if (!vq_volume_to_amend(v)) continue;
        vq_log(VQ_LOG_INFO, "job %s: amending volume %s of disk %s", c->job->id, v->id, disk->id);
        rc = amend_volume(b, imgdir, v->id, ++done, total, err);
    }
    if (rc == VQ_ESTALE) return rc;
    if (rc) {
        /* The volumes amended before the failure keep their bumps: make them durable. */
        vq_error serr = {0};
        if (b->run.written && bump_gen(d, disk->id, NULL, &b->run, 1, &serr))
            vq_log(VQ_LOG_WARN, "job %s: %s", c->job->id, serr.text);
        return rc;
    }
    if (!b->vol[0] && !b->run.written) return 0;
    /* The last bump's fence answer is read by the worker before the step runs. */
    if (b->vol[0] && defer_last(c, dp, b) == 0) return 0;
    rc = bump_due(b);
    if (rc == 0 && (rc = bump_gen(d, disk->id, NULL, &b->run, 1, &b->err)) != 0) b->rc = rc;
    return rc == 0 || rc == VQ_ESTALE ? rc : vq_error_set(err, rc, "%s", b->err.text);
}

static int amend_chain(vq_job_ctx *c, vq_domain **dp, const vq_disk *disk, vq_error *err)
{
    const vq_domain *d = *dp;
    char imgdir[PATH_MAX];
    int rc = image_dir(d, disk->id, imgdir, sizeof imgdir, err);
    if (rc) return rc;
    if ((rc = refuse_if_not_eligible(d, disk, imgdir, c->job->crashes > 0, err))) return rc;
    if (c->job->crashes > 0) remove_leftovers(d, c->job);

    int total = (int)vq_disk_count_v2(disk), owed = 0;
    char *plan = make_plan(disk, c->job->plan, &owed);
    if (!plan) return vq_error_set(err, VQ_ENOMEM, "out of memory");
    /* At Redis before anything changes; its answer is read at the first fence. */
    rc = c->plan && *plan ? c->plan(c, plan, total) : c->progress_later(c, 0, total);
    free(plan);
    if (rc) return rc;
    bump b = {.c = c, .d = d, .img = disk->id};
    running = &b;
    rc = amend_volumes(&b, dp, disk, imgdir, total, owed, err);
    running = NULL;
    /* A temp file still here (fenced, failed, or passed in by the job before
     * and never used) goes; a run handed to the last step left none. */
    drop_run(d, disk->id, &b.run);
    return rc;
}

static int amend_run(vq_job_ctx *c, vq_error *err)
{
    vq_domain *d = NULL;
    vq_disk *disk = NULL;
    int rc = vq_domain_open(c->domains_root, c->job->domain_id, &d, err);
    if (rc == VQ_ENOENT || rc == VQ_EINVAL) rc = VQ_EREFUSED; /* the domain is gone: no retry helps */
    if (rc) goto out;
    rc = vq_disk_load(d, c->job->disk_id, &disk, err);
    if (rc == VQ_ENOENT || rc == VQ_EINVAL) rc = VQ_EREFUSED;
    if (rc) goto out;
    rc = amend_chain(c, &d, disk, err);
out:
    if (err && rc && err->code != rc) err->code = rc;
    vq_disk_free(disk);
    vq_domain_free(d);
    return rc;
}

/* amend_run judged without running it: it would succeed with nothing to amend
 * and nothing to write (its progress, 0 of 0, is what a job that never
 * reported any already says). */
static int amend_noop(const vq_job *j, const char *root, vq_domain **dp)
{
    char imgdir[PATH_MAX];
    vq_disk *disk = NULL;
    /* After a crash a real attempt runs: it removes what the dead one left
     * (its temp files), which a run of no-op jobs does not. */
    if (j->done || j->total || j->crashes || j->plan) return 0;
    if (*dp && strcmp((*dp)->id, j->domain_id) != 0) {
        vq_domain_free(*dp);
        *dp = NULL;
    }
    if (!*dp && vq_domain_open(root, j->domain_id, dp, NULL)) return 0;
    int idle = vq_disk_load(*dp, j->disk_id, &disk, NULL) == 0 &&
               image_dir(*dp, disk->id, imgdir, sizeof imgdir, NULL) == 0 &&
               refuse_if_not_eligible(*dp, disk, imgdir, j->crashes > 0, NULL) == 0 &&
               vq_disk_count_v2(disk) == 0;
    vq_disk_free(disk);
    return idle;
}

const vq_job_kind vq_kind_amend_ = {"amend", amend_check, amend_run, amend_noop, NULL};
