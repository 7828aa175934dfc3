/* --wait: following one job to its end, polling GET /api/jobs/ID. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli_int.h"

int vq_job_ended(const char *state)
{
    return state && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
                     strcmp(state, "cancelled") == 0);
}

static void nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* "running 1/3" on one terminal line, rewritten in place. */
static void show(const vq_cli *c, json_t *job)
{
    json_t *p = json_object_get(job, "progress");
    const char *state = json_string_value(json_object_get(job, "state"));
    printf("\r\033[Kjob %s: %s%s%s", vq_jstr(job, "id"),
           vq_out_state_colour(c, state), state ? state : "?", vq_out_reset(c));
    if (json_integer_value(json_object_get(p, "total")) > 0)
        printf(" %lld/%lld volumes", (long long)json_integer_value(json_object_get(p, "done")),
               (long long)json_integer_value(json_object_get(p, "total")));
    fflush(stdout);
}

int vq_wait_job(const vq_cli *c, const char *job_id, json_t **final)
{
    char path[128];
    int live = c->tty && !c->json;
    snprintf(path, sizeof path, "/api/jobs/%s", job_id);
    for (;;) {
        json_t *job = NULL;
        int rc = vq_api_call(c, "GET", path, NULL, &job, NULL);
        if (rc) {
            if (live) printf("\n");
            return rc;
        }
        if (vq_job_ended(json_string_value(json_object_get(job, "state")))) {
            if (live) printf("\r\033[K");
            *final = job;
            return VQ_EXIT_OK;
        }
        if (live) show(c, job);
        json_decref(job);
        nap(VQ_CLI_POLL_MS);
    }
}

/* ", volume " before a create-volume's new volume id, "" for an amend. */
static const char *volume_note(json_t *job)
{
    const char *v = json_string_value(json_object_get(job, "volume_id"));
    return v && *v ? ", volume " : "";
}

int vq_report_job(const vq_cli *c, json_t *job)
{
    const char *state = json_string_value(json_object_get(job, "state"));
    int rc = state && strcmp(state, "succeeded") == 0 ? VQ_EXIT_OK : VQ_EXIT_FAILED;
    if (c->json) {
        vq_out_json(c, job);
        return rc;
    }
    const char *reason = json_string_value(json_object_get(job, "reason"));
    printf("job %s (%s of disk %s%s%s): %s%s%s%s%s\n", vq_jstr(job, "id"), vq_jstr(job, "kind"),
           vq_jstr(job, "disk_id"), volume_note(job),
           json_is_string(json_object_get(job, "volume_id")) ? vq_jstr(job, "volume_id") : "",
           vq_out_state_colour(c, state),
           state ? state : "?", vq_out_reset(c), reason ? ": " : "", reason ? reason : "");
    return rc;
}

int vq_job_accepted(const vq_cli *c, json_t *job, int wait)
{
    json_t *final = NULL;
    if (!wait) {
        if (c->json)
            vq_out_json(c, job);
        else
            printf("job %s queued: %s of disk %s%s%s\n", vq_jstr(job, "id"),
                   vq_jstr(job, "kind"), vq_jstr(job, "disk_id"), volume_note(job),
                   json_is_string(json_object_get(job, "volume_id")) ? vq_jstr(job, "volume_id") : "");
        return VQ_EXIT_OK;
    }
    int rc = vq_wait_job(c, vq_jstr(job, "id"), &final);
    if (rc == VQ_EXIT_OK) rc = vq_report_job(c, final);
    json_decref(final);
    return rc;
}
