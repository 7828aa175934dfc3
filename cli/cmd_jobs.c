/* volq jobs, job, retry, cancel */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"

static const char *const job_cols[] = {"ID", "KIND", "STATE", "DISK", "ATTEMPTS",
                                       "PROGRESS", "UPDATED", "REASON"};

static void add_job_row(const vq_cli *c, vq_table *t, json_t *j)
{
    char att[32], prog[32], upd[32];
    json_t *p = json_object_get(j, "progress");
    const char *state = vq_jstr(j, "state");
    snprintf(att, sizeof att, "%lld/%lld", (long long)json_integer_value(json_object_get(j, "attempts")),
             (long long)json_integer_value(json_object_get(j, "max_attempts")));
    snprintf(prog, sizeof prog, "%lld/%lld", (long long)json_integer_value(json_object_get(p, "done")),
             (long long)json_integer_value(json_object_get(p, "total")));
    vq_out_time(json_string_value(json_object_get(j, "updated")), upd, sizeof upd);
    const char *cells[8] = {vq_jstr(j, "id"), vq_jstr(j, "kind"), state, vq_jstr(j, "disk_id"),
                            att, prog, upd, vq_jstr(j, "reason")};
    const char *colours[8] = {NULL, NULL, vq_out_state_colour(c, state)};
    vq_table_add(t, cells, colours);
}

static int valid_state(const char *s)
{
    static const char *const states[] = {"queued", "running", "retrying", "succeeded",
                                         "failed", "cancelled"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strcmp(s, states[i]) == 0) return 1;
    return 0;
}

int vq_cmd_jobs(vq_cli *c, int argc, char **argv)
{
    const char *state = NULL, *limit = NULL;
    char path[128];
    long n = 100;
    int rc;
    json_t *arr = NULL, *j;
    const vq_opt opts[] = {{"state", &state, NULL}, {"limit", &limit, NULL}, {NULL, NULL, NULL}};
    if (vq_cli_args(vq_cmd_find("jobs"), argc, argv, opts, NULL, 0, 0, NULL, &rc)) return rc;
    if (limit && (rc = vq_cli_int(limit, "--limit", 1, 10000, &n))) return rc;
    if (state && !valid_state(state))
        return vq_cli_fail(VQ_EXIT_USAGE, "--state is one of queued, running, retrying, "
                           "succeeded, failed, cancelled; not \"%s\"", state);
    snprintf(path, sizeof path, "/api/jobs?limit=%ld%s%s", n, state ? "&state=" : "",
             state ? state : "");
    if ((rc = vq_api_call(c, "GET", path, NULL, &arr, NULL))) return rc;
    vq_table *t = c->json ? NULL : vq_table_new(8, job_cols);
    size_t i;
    json_array_foreach(arr, i, j) if (t) add_job_row(c, t, j);
    if (c->json) vq_out_json(c, arr);
    if (t) vq_table_print(c, t);
    vq_table_free(t);
    json_decref(arr);
    return VQ_EXIT_OK;
}

static void print_job(const vq_cli *c, json_t *j)
{
    static const char *const fields[] = {"id", "kind", "state", "domain_id", "disk_id",
                                         "volume_id", "attempts", "max_attempts", "reason",
                                         "created", "updated", "next_attempt", "worker"};
    char buf[64];
    json_t *p = json_object_get(j, "progress"), *e;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *v = vq_out_str(j, fields[i], buf, sizeof buf);
        int st = strcmp(fields[i], "state") == 0;
        printf("%-13s %s%s%s\n", fields[i], st ? vq_out_state_colour(c, v) : "", v,
               st ? vq_out_reset(c) : "");
    }
    printf("%-13s %lld/%lld\n", "progress", (long long)json_integer_value(json_object_get(p, "done")),
           (long long)json_integer_value(json_object_get(p, "total")));
    size_t i;
    if (json_array_size(json_object_get(j, "errors"))) printf("errors:\n");
    json_array_foreach(json_object_get(j, "errors"), i, e)
        printf("  attempt %zu: %s\n", i + 1, json_is_string(e) ? json_string_value(e) : "?");
}

/* The single-id commands: check the id, send, print the job. */
static int one_job(vq_cli *c, int argc, char **argv, const char *method, const char *suffix,
                   const char *done)
{
    const char *pos[1];
    char path[128];
    int rc;
    json_t *j = NULL;
    if (vq_cli_args(vq_cmd_find(argv[0]), argc, argv, NULL, pos, 1, 1, NULL, &rc)) return rc;
    if ((rc = vq_cli_uuid(pos[0], "job id"))) return rc;
    snprintf(path, sizeof path, "/api/jobs/%s%s", pos[0], suffix);
    if ((rc = vq_api_call(c, method, path, NULL, &j, NULL))) return rc;
    if (c->json)
        vq_out_json(c, j);
    else if (done)
        printf("job %s %s\n", pos[0], done);
    else
        print_job(c, j);
    json_decref(j);
    return VQ_EXIT_OK;
}

int vq_cmd_job(vq_cli *c, int argc, char **argv)
{
    return one_job(c, argc, argv, "GET", "", NULL);
}

int vq_cmd_cancel(vq_cli *c, int argc, char **argv)
{
    return one_job(c, argc, argv, "DELETE", "", "cancelled");
}

static int retry_failed(vq_cli *c)
{
    json_t *o = NULL;
    int rc = vq_api_call(c, "POST", "/api/jobs/retry", NULL, &o, NULL);
    if (rc) return rc;
    json_int_t left = json_integer_value(json_object_get(o, "left"));
    if (c->json)
        vq_out_json(c, o);
    else
        printf("retried %lld failed job(s)%s\n",
               (long long)json_integer_value(json_object_get(o, "retried")),
               left ? "; some are left: their disks are locked by other jobs" : "");
    json_decref(o);
    return left ? VQ_EXIT_FAILED : VQ_EXIT_OK;
}

int vq_cmd_retry(vq_cli *c, int argc, char **argv)
{
    int failed = 0, rc;
    const char *pos[1];
    size_t n = 0;
    const vq_opt opts[] = {{"failed", NULL, &failed}, {NULL, NULL, NULL}};
    const vq_cmd *cmd = vq_cmd_find("retry");
    if (vq_cli_args(cmd, argc, argv, opts, pos, 0, 1, &n, &rc)) return rc;
    if (failed == (n == 1)) return vq_cli_usage(cmd, "give a job id or --failed");
    if (failed) return retry_failed(c);
    return one_job(c, argc, argv, "POST", "/retry", "queued again");
}
