/* POST /api/storagedomains/SD/upgrade {"to_v4": bool}: amend every eligible
 * disk of a domain, one vq_queue_accept call per run of disks the scan has
 * loaded (vq_disk_load_stream); the others are skipped and listed with a
 * reason.  Answer: {"jobs": [job...], "skipped": [...]}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"
#include "volq/kind.h"
#include "volq/log.h"

static const char *const upgrade_fields[] = {"to_v4", NULL};

/* One upgrade request.  Arrays are per disk of the domain (index i: ids[i]),
 * except the requests, made afresh for each run of loaded disks. */
typedef struct bulk {
    vq_sched *s;
    const vq_domain *d;
    char (*ids)[VQ_UUID_SIZE];       /* the domain's image folders */
    vq_disk_scan *disks;             /* disks[i] once its run is handed on */
    size_t n;
    const char **id_of;              /* id_of[i] = ids[i], for the lock reads */
    char (*holders)[VQ_UUID_SIZE];   /* the live job holding disk i's lock, or "" */
    char (*raw)[VQ_UUID_SIZE];       /* its lock entry as read (for acceptance) */
    vq_accept_req *reqs;             /* the run's disks sent to vq_queue_accept */
    size_t *req_disk;                /* reqs[k] is for disks[req_disk[k]] */
    vq_accept_res *res;
    size_t nreqs;
    char (*keys)[VQ_BULK_KEY_MAX];   /* keys[i] for disks[i], with an Idempotency-Key */
    char (*made)[VQ_UUID_SIZE];      /* the job keys[i] made before, or "" */
    char (*jobs)[VQ_UUID_SIZE];      /* the jobs made or found by key, in order */
    size_t njobs, fresh;
    json_t *skipped;
    const char *idem_key;
    vq_error err;                    /* why a run failed */
} bulk;

static int parse_upgrade(vq_req *r, int *to_v4)
{
    json_t *b = vq_req_body_(r, upgrade_fields);
    if (!b) return -1;
    json_t *v = json_object_get(b, "to_v4");
    int ok = !v || json_is_boolean(v);
    *to_v4 = json_is_true(v);
    json_decref(b);
    if (ok) return 0;
    vq_reply_error_(r, 400, NULL, "to_v4 must be true or false");
    return -1;
}

/* compat 1.1 needs V4: a V3 domain is raised with to_v4, older ones refused. */
static int ensure_v4(vq_req *r, vq_domain *d, int to_v4)
{
    vq_error err = {0};
    if (d->status != VQ_STATUS_OK) {
        vq_reply_error_(r, 409, d->reason, "storage domain %s is illegal: %s", d->id, d->reason);
        return -1;
    }
    if (d->version >= 4) return 0;
    if (d->version == 3 && to_v4) {
        if (vq_domain_set_version(d, 4, &err) == 0) {
            vq_log(VQ_LOG_NOTICE, "storage domain %s raised from version 3 to 4", d->id);
            return 0;
        }
        vq_reply_verror_(r, &err);
        return -1;
    }
    char reason[128];
    snprintf(reason, sizeof reason, "domain version %d does not support compat 1.1", d->version);
    if (d->version == 3)
        vq_reply_error_(r, 409, reason, "storage domain %s is version 3; raise it to 4 with "
                        "to_v4 (volq upgrade-domain --to-v4)", d->id);
    else
        vq_reply_error_(r, 409, reason, "storage domain %s is version %d; only a version 3 "
                        "domain can be raised to 4", d->id, d->version);
    return -1;
}

static int own_qcow2(const vq_disk *disk)
{
    for (size_t i = 0; i < disk->nvols; i++)
        if (!disk->vols[i].shared && disk->vols[i].meta.format == VQ_FORMAT_COW) return 1;
    return 0;
}

/* Fills reason and returns code, so each case of skip_code() is one line. */
static const char *said(char *reason, size_t sz, const char *code, const char *what,
                        const char *detail)
{
    snprintf(reason, sz, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    return code;
}

/* Why a disk is not amended: its code (reason filled), or NULL when eligible.
 * The order makes the most telling reason win (a template is also "raw"...).
 * vq_disk_check_amend's answer comes from the scan (s). */
static const char *skip_code(const vq_domain *d, const vq_disk_scan *s, char *reason, size_t sz)
{
    const vq_disk *disk = s->disk;
    vq_error err = {0};
    if (disk->status != VQ_STATUS_OK) return said(reason, sz, "illegal", "illegal", disk->reason);
    if (disk->is_template) return said(reason, sz, "template", "template disk", NULL);
    if (!own_qcow2(disk)) return said(reason, sz, "raw", "raw disk", NULL);
    if (s->check_rc) return said(reason, sz, "illegal", "refused", s->err.text);
    if (s->done) return said(reason, sz, "already_amended", "already compat 1.1", NULL);
    int rc = vq_job_kind_find("amend")->check(d, disk, NULL, &err);
    if (rc) return said(reason, sz, rc == VQ_EREFUSED ? "in_use" : "error", "refused", err.text);
    return NULL;
}

const char *const vq_skip_codes_[VQ_SKIP_CODES] = {"template", "raw", "already_amended",
                                                   "illegal", "in_use", "locked", "error"};

static void add_skip(bulk *b, const vq_disk *disk, const char *code, const char *reason)
{
    for (int i = 0; i < VQ_SKIP_CODES; i++)
        if (strcmp(code, vq_skip_codes_[i]) == 0) b->s->stats.upgrade_skipped[i]++;
    json_array_append_new(b->skipped, json_pack("{s:s,s:s,s:s,s:s}", "disk_id", disk->id, "alias",
                                                disk->alias, "reason", reason, "code", code));
}

static void add_locked(bulk *b, const vq_disk *disk, const char *holder)
{
    char reason[128];
    snprintf(reason, sizeof reason, "locked by job %s", holder);
    add_skip(b, disk, "locked", reason);
}

static void add_req(bulk *b, size_t i)
{
    b->req_disk[b->nreqs] = i;
    vq_accept_req *a = &b->reqs[b->nreqs++];
    /* What was read for the plan goes with the request: acceptance does not
     * read it again. */
    *a = (vq_accept_req){.kind = "amend", .domain_id = b->d->id, .disk_id = b->disks[i].disk->id,
                         .alias = b->disks[i].disk->alias, .holder_seen = b->raw[i]};
    if (b->keys && b->keys[i][0]) {
        a->idem_key = b->keys[i];
        a->idem_job_seen = b->made[i];
    }
}

/* A locked disk goes to acceptance only with an Idempotency-Key: its lock may
 * be held by the job this very key made, which acceptance recognises.  So does
 * a disk whose key made a job that has ended since (the disk now reads as
 * already amended): a repeat answers with the jobs the first request made. */
static void plan(bulk *b, size_t lo, size_t hi)
{
    char reason[512];
    for (size_t i = lo; i < hi; i++) {
        const vq_disk *disk = b->disks[i].disk;
        const char *code = NULL;
        if (!disk) {
            vq_log(VQ_LOG_INFO, "disk %s left out of the upgrade: %s", b->ids[i],
                   b->disks[i].err.text);
        } else if (b->holders[i][0] && !b->idem_key) {
            add_locked(b, disk, b->holders[i]);
        } else if (!b->holders[i][0] && !(b->made && b->made[i][0]) &&
                   (code = skip_code(b->d, &b->disks[i], reason, sizeof reason))) {
            add_skip(b, disk, code, reason);
        } else {
            add_req(b, i);
        }
    }
}

/* keys[i] = "KEY/DISK_ID" and the job each one made before, in one round trip. */
static int read_keys(bulk *b, vq_error *err)
{
    const char **keys = calloc(b->n ? b->n : 1, sizeof *keys);
    if (!keys) return vq_error_set(err, VQ_ENOMEM, "out of memory planning the upgrade");
    for (size_t i = 0; i < b->n; i++) {
        vq_bulk_key_(b->idem_key, b->ids[i], b->keys[i]); /* "" when too long: cannot happen */
        keys[i] = b->keys[i];
    }
    int rc = vq_queue_idem_jobs(b->s->q, keys, b->n, b->made, err);
    free(keys);
    return rc;
}

static int alloc_bulk(bulk *b, vq_error *err)
{
    size_t n = b->n ? b->n : 1;
    b->disks = calloc(n, sizeof *b->disks);
    b->id_of = calloc(n, sizeof *b->id_of);
    b->holders = calloc(n, sizeof *b->holders);
    b->raw = calloc(n, sizeof *b->raw);
    b->reqs = calloc(n, sizeof *b->reqs);
    b->req_disk = calloc(n, sizeof *b->req_disk);
    b->res = calloc(n, sizeof *b->res);
    b->jobs = calloc(n, sizeof *b->jobs);
    b->keys = b->idem_key ? calloc(n, sizeof *b->keys) : NULL;
    b->made = b->idem_key ? calloc(n, sizeof *b->made) : NULL;
    b->skipped = json_array();
    if (!b->disks || !b->id_of || !b->holders || !b->raw || !b->reqs || !b->req_disk || !b->res ||
        !b->jobs || (b->idem_key && (!b->keys || !b->made)) || !b->skipped)
        return vq_error_set(err, VQ_ENOMEM, "out of memory planning the upgrade");
    for (size_t i = 0; i < b->n; i++) b->id_of[i] = b->ids[i];
    return b->idem_key ? read_keys(b, err) : 0;
}

static void free_bulk(bulk *b)
{
    if (b->disks) vq_free_disks_(b->disks, b->n);
    free(b->ids);
    free(b->id_of);
    free(b->holders);
    free(b->raw);
    free(b->reqs);
    free(b->req_disk);
    free(b->res);
    free(b->jobs);
    free(b->keys);
    free(b->made);
    json_decref(b->skipped);
}

/* One acceptance step for the run's planned disks; the jobs made (or found by
 * key) are added to b->jobs. */
static int accept_run(bulk *b)
{
    int rc = b->nreqs ? vq_queue_accept(b->s->q, b->reqs, b->nreqs, b->res, &b->err) : 0;
    for (size_t k = 0; rc == 0 && k < b->nreqs; k++) {
        const vq_disk *disk = b->disks[b->req_disk[k]].disk;
        if (b->res[k].status == VQ_ACCEPT_LOCKED) {
            add_locked(b, disk, b->res[k].job_id);
            continue;
        }
        b->fresh += b->res[k].status == VQ_ACCEPT_QUEUED;
        memcpy(b->jobs[b->njobs++], b->res[k].job_id, VQ_UUID_SIZE);
    }
    return rc;
}

/* A run of loaded disks (vq_disk_load_stream): their lock holders, the plan,
 * their acceptance, while the scan goes on with the next disks.  The first
 * jobs are queued (and started) before the last disks are loaded. */
static int on_run(void *arg, size_t lo, size_t hi)
{
    bulk *b = arg;
    int rc = vq_queue_lock_holders_raw(b->s->q, b->id_of + lo, hi - lo, b->raw + lo,
                                       b->holders + lo, &b->err);
    if (rc) return rc;
    b->nreqs = 0;
    plan(b, lo, hi);
    return accept_run(b);
}

static void answer(vq_req *r, bulk *b)
{
    vq_error err = {0};
    json_t *jobs = vq_jobs_of_(r->s, (const char(*)[VQ_UUID_SIZE])b->jobs, b->njobs, &err);
    if (!jobs) {
        vq_reply_verror_(r, &err);
        return;
    }
    r->s->stats.accepted_amend += b->fresh;
    vq_log(VQ_LOG_INFO, "upgrade: %zu job(s) accepted, %zu skipped", b->fresh,
           json_array_size(b->skipped));
    /* Every job found by its key: the same answer as the first time, 200. */
    int code = b->njobs && !b->fresh ? 200 : 202;
    vq_reply_json_(r, code, json_pack("{s:o,s:O}", "jobs", jobs, "skipped", b->skipped));
}

/* The scan and the acceptance go together: each run of disks loaded is
 * accepted while the next is loaded.  A run that fails (Redis lost) ends the
 * request with its error; the jobs of the runs before stay queued, as real
 * jobs with their locks (a retry with the same Idempotency-Key answers them). */
void vq_api_upgrade_(vq_req *r)
{
    vq_domain *d = NULL;
    bulk b = {.s = r->s};
    vq_error err = {0};
    int to_v4 = 0;
    if (parse_upgrade(r, &to_v4) || vq_req_idem_key_(r, &b.idem_key)) return;
    /* Before anything changes (ensure_v4 may raise the domain's version). */
    if (vq_find_domain_(r, r->arg[0], &d) || vq_idem_used_by_single_(r, b.idem_key) ||
        ensure_v4(r, d, to_v4))
        goto out;
    b.d = d;
    if (vq_domain_images(d, &b.ids, &b.n, &err) || alloc_bulk(&b, &err)) {
        vq_reply_verror_(r, &err);
        goto out;
    }
    if (vq_disk_load_stream(d, (const char(*)[VQ_UUID_SIZE])b.ids, b.n, 0, b.disks, on_run,
                            &b)) {
        r->s->stats.accepted_amend += b.fresh;
        if (b.njobs) { /* the answer says what stays: an error alone would hide it */
            vq_error e = {0};
            vq_error_set(&e, b.err.code, "upgrade of %s stopped after %zu job(s) were accepted "
                         "(they stay queued; run it again for the other disks): %s", d->id,
                         b.njobs, b.err.text);
            vq_log(VQ_LOG_WARN, "%s", e.text);
            b.err = e;
        }
        vq_reply_verror_(r, &b.err);
        goto out;
    }
    answer(r, &b);
out:
    free_bulk(&b);
    vq_domain_free(d);
}
