/* The table of job kinds: one entry per file of this folder. */
#include <string.h>

#include "volq/kind.h"
#include "volq/log.h"
#include "volq/meta.h"

extern const vq_job_kind vq_kind_amend_;
extern const vq_job_kind vq_kind_create_volume_;

static const vq_job_kind *const kinds[] = {&vq_kind_amend_, &vq_kind_create_volume_};

void vq_job_remove_leftovers(const vq_job *j, int imgfd)
{
    int n = vq_meta_remove_temps(imgfd);
    if (n > 0)
        vq_log(VQ_LOG_INFO, "job %s: removed %d temp file(s) of an attempt that died", j->id, n);
}

const vq_job_kind *vq_job_kind_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i]->name, name) == 0) return kinds[i];
    return NULL;
}
