/* The amend job: every qcow2 volume of the disk's own chain to compat 1.1. */
#include "volq/kind.h"

static int amend_check(const vq_domain *d, const vq_disk *disk, json_t *params, vq_error *err)
{
    (void)d; (void)disk; (void)params; (void)err;
    return 0;
}

static int amend_run(vq_job_ctx *c, vq_error *err)
{
    (void)c;
    return vq_error_set(err, VQ_EREFUSED, "amend: not implemented yet");
}

const vq_job_kind vq_kind_amend_ = {"amend", amend_check, amend_run};
