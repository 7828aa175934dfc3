/* The create-volume job: a new disk, a snapshot overlay or a thin disk. */
#include "volq/kind.h"

static int create_check(const vq_domain *d, const vq_disk *disk, json_t *params, vq_error *err)
{
    (void)d; (void)disk; (void)params; (void)err;
    return 0;
}

static int create_run(vq_job_ctx *c, vq_error *err)
{
    (void)c;
    return vq_error_set(err, VQ_EREFUSED, "create-volume: not implemented yet");
}

const vq_job_kind vq_kind_create_volume_ = {"create-volume", create_check, create_run};
