/* volq upgrade-domain SD_ID [--to-v4] [--wait]: the bulk amend, and with
 * --wait its progress (a bar on a terminal, plain lines otherwise) and the
 * summary "amended N, skipped M, failed K". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_int.h"

/* Polls come every VQ_BULK_POLL_MS, and faster as the end nears: half the
 * time the rate so far says is left, at least VQ_BULK_POLL_MIN_MS apart, so the
 * command ends within a few ms of the last job's end (a bulk of a few
 * seconds lost a quarter of a second on average to the fixed poll). */
#define VQ_BULK_POLL_MS 500
#define VQ_BULK_POLL_MIN_MS 3
#define VQ_BULK_PLAIN_EVERY_MS 2000  /* plain progress lines when not a terminal */
#define VQ_BULK_SINGLE_MAX 20        /* jobs fetched one by one per round */
#define VQ_BULK_FAILS_SHOWN 5

typedef struct tracker {
    size_t n;
    json_t **job;        /* the latest copy of each job (owned) */
    size_t *order;       /* indexes sorted by job id, for bsearch */
    unsigned char *seen; /* found in this round's list */
    size_t ended, ok, failed;
    int listed;          /* one full list was read */
    int64_t start_ms, last_line_ms;
} tracker;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *id_of(const tracker *t, size_t i) { return vq_jstr(t->job[i], "id"); }

static const tracker *sort_ctx;

static int by_id(const void *a, const void *b)
{
    return strcmp(id_of(sort_ctx, *(const size_t *)a), id_of(sort_ctx, *(const size_t *)b));
}

static int tracker_init(tracker *t, json_t *jobs)
{
    t->n = json_array_size(jobs);
    t->job = calloc(t->n ? t->n : 1, sizeof *t->job);
    t->order = calloc(t->n ? t->n : 1, sizeof *t->order);
    t->seen = calloc(t->n ? t->n : 1, 1);
    if (!t->job || !t->order || !t->seen) return vq_cli_fail(VQ_EXIT_FAILED, "out of memory");
    for (size_t i = 0; i < t->n; i++) {
        t->job[i] = json_incref(json_array_get(jobs, i));
        t->order[i] = i;
    }
    sort_ctx = t;
    qsort(t->order, t->n, sizeof *t->order, by_id);
    t->start_ms = now_ms();
    return 0;
}

static void tracker_free(tracker *t)
{
    for (size_t i = 0; t->job && i < t->n; i++) json_decref(t->job[i]);
    free(t->job);
    free(t->order);
    free(t->seen);
}

/* The index of job id, or -1. */
static long find_job(const tracker *t, const char *id)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(id, id_of(t, t->order[mid]));
        if (c == 0) return (long)t->order[mid];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return -1;
}

static void update(tracker *t, json_t *j)
{
    long i = find_job(t, vq_jstr(j, "id"));
    if (i < 0) return;
    json_decref(t->job[i]);
    t->job[i] = json_incref(j);
    t->seen[i] = 1;
}

static void count(tracker *t)
{
    t->ended = t->ok = t->failed = 0;
    for (size_t i = 0; i < t->n; i++) {
        const char *st = vq_jstr(t->job[i], "state");
        if (!vq_job_ended(st)) continue;
        t->ended++;
        if (strcmp(st, "succeeded") == 0) t->ok++; else t->failed++;
    }
}

/* The jobs not yet seen ended, one by one (at most VQ_BULK_SINGLE_MAX), up to
 * the first still waiting or running: the workers take the jobs in the order
 * of the answer, so the ones after it most likely are too (a poll near the
 * end costs one request more than the jobs that ended since the last). */
static int refresh_singles(const vq_cli *c, tracker *t)
{
    char path[128];
    json_t *j;
    size_t singles = 0;
    for (size_t i = 0; i < t->n && singles < VQ_BULK_SINGLE_MAX; i++) {
        if (t->seen[i] || vq_job_ended(vq_jstr(t->job[i], "state"))) continue;
        snprintf(path, sizeof path, "/api/jobs/%s", id_of(t, i));
        int rc = vq_api_call(c, "GET", path, NULL, &j, NULL);
        if (rc) return rc;
        update(t, j);
        json_decref(j);
        singles++;
        if (!vq_job_ended(vq_jstr(t->job[i], "state"))) break;
    }
    return 0;
}

/* One list of the newest jobs covers ours unless many came after them; the
 * rest are fetched one by one, a few per round.  Near the end, when no more
 * than that few are left, only those are read. */
static int refresh(const vq_cli *c, tracker *t)
{
    char path[128];
    json_t *arr = NULL, *j;
    size_t i;
    size_t limit = t->n + 1000 > 10000 ? 10000 : t->n + 1000;
    memset(t->seen, 0, t->n ? t->n : 1);
    if (!t->listed || t->n - t->ended > VQ_BULK_SINGLE_MAX) {
        snprintf(path, sizeof path, "/api/jobs?limit=%zu", limit);
        int rc = vq_api_call(c, "GET", path, NULL, &arr, NULL);
        if (rc) return rc;
        json_array_foreach(arr, i, j) update(t, j);
        json_decref(arr);
        t->listed = 1;
    }
    int rc = refresh_singles(c, t);
    if (rc == 0) count(t);
    return rc;
}

/* Until the next poll: half the time left at the rate so far, within bounds. */
static int next_poll_ms(const tracker *t)
{
    int64_t elapsed = now_ms() - t->start_ms;
    if (t->ended == 0 || elapsed <= 0) return VQ_BULK_POLL_MS;
    double left_ms = (double)(t->n - t->ended) * (double)elapsed / (double)t->ended;
    double ms = left_ms / 2;
    if (ms > VQ_BULK_POLL_MS) return VQ_BULK_POLL_MS;
    return ms < VQ_BULK_POLL_MIN_MS ? VQ_BULK_POLL_MIN_MS : (int)ms;
}

static void fmt_eta(double s, char *buf, size_t sz)
{
    long v = (long)(s + 0.5);
    if (v >= 3600)
        snprintf(buf, sz, "%ldh%02ldm", v / 3600, v / 60 % 60);
    else
        snprintf(buf, sz, "%ldm%02lds", v / 60, v % 60);
}

static void show_progress(const vq_cli *c, tracker *t, int final)
{
    double secs = (double)(now_ms() - t->start_ms) / 1000.0, rate = secs > 0 ? t->ended / secs : 0;
    char eta[32] = "?";
    if (rate > 0) fmt_eta((double)(t->n - t->ended) / rate, eta, sizeof eta);
    if (!c->tty) {
        if (!final && now_ms() - t->last_line_ms < VQ_BULK_PLAIN_EVERY_MS) return;
        t->last_line_ms = now_ms();
        printf("progress: %zu/%zu done, %zu failed, %.1f jobs/s\n", t->ended, t->n, t->failed, rate);
        fflush(stdout);
        return;
    }
    enum { W = 30 };
    size_t fill = t->n ? t->ended * W / t->n : W;
    char bar[W + 1];
    for (size_t i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
    bar[W] = '\0';
    printf("\r\033[K[%s] %zu/%zu  %.1f/s  ETA %s  %sfailed %zu%s", bar, t->ended, t->n, rate,
           eta, t->failed ? "\033[31m" : "", t->failed, t->failed ? "\033[0m" : "");
    if (final) printf("\n");
    fflush(stdout);
}

static void nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int follow(const vq_cli *c, tracker *t)
{
    int live = !c->json;
    for (;;) {
        int rc = refresh(c, t);
        if (rc) {
            if (live && c->tty) printf("\n");
            return rc;
        }
        if (t->ended == t->n) break;
        if (live) show_progress(c, t, 0);
        nap(next_poll_ms(t));
    }
    if (live && t->n) show_progress(c, t, 1);
    return VQ_EXIT_OK;
}

/* "skipped N: reason" for each distinct reason, in order of first appearance. */
static void print_skipped(json_t *skipped)
{
    size_t n = json_array_size(skipped);
    for (size_t i = 0; i < n; i++) {
        const char *reason = vq_jstr(json_array_get(skipped, i), "reason");
        size_t same = 0, k;
        for (k = 0; k < i; k++)
            if (strcmp(reason, vq_jstr(json_array_get(skipped, k), "reason")) == 0) break;
        if (k < i) continue; /* counted with its first */
        for (k = i; k < n; k++)
            same += strcmp(reason, vq_jstr(json_array_get(skipped, k), "reason")) == 0;
        if (same == 1)
            printf("skipped %s: %s\n", vq_jstr(json_array_get(skipped, i), "alias"), reason);
        else
            printf("skipped %zu: %s\n", same, reason);
    }
}

static void print_failures(const tracker *t)
{
    size_t shown = 0;
    for (size_t i = 0; i < t->n; i++) {
        const char *st = vq_jstr(t->job[i], "state");
        if (!vq_job_ended(st) || strcmp(st, "succeeded") == 0) continue;
        if (shown++ == VQ_BULK_FAILS_SHOWN) {
            printf("... and %zu more: volq jobs --state failed\n", t->failed - VQ_BULK_FAILS_SHOWN);
            return;
        }
        printf("failed disk %s (job %s): %s\n", vq_jstr(t->job[i], "disk_id"), id_of(t, i),
               strcmp(st, "cancelled") == 0 ? "cancelled" : vq_jstr(t->job[i], "reason"));
    }
}

/* --json with --wait: the bulk answer with each job as it ended. */
static void print_final_json(const vq_cli *c, json_t *bulk, const tracker *t)
{
    json_t *jobs = json_array();
    for (size_t i = 0; jobs && i < t->n; i++) json_array_append(jobs, t->job[i]);
    json_object_set_new(bulk, "jobs", jobs);
    vq_out_json(c, bulk);
}

static int wait_bulk(const vq_cli *c, json_t *bulk)
{
    tracker t = {0};
    json_t *skipped = json_object_get(bulk, "skipped");
    int rc = tracker_init(&t, json_object_get(bulk, "jobs"));
    if (rc == 0) rc = follow(c, &t);
    if (rc == 0 && c->json) print_final_json(c, bulk, &t);
    if (rc == 0 && !c->json) {
        print_skipped(skipped);
        print_failures(&t);
        printf("amended %zu, skipped %zu, failed %zu\n", t.ok, json_array_size(skipped), t.failed);
    }
    if (rc == 0 && t.failed) rc = VQ_EXIT_FAILED;
    tracker_free(&t);
    return rc;
}

int vq_cmd_upgrade(vq_cli *c, int argc, char **argv)
{
    const char *pos[1];
    char path[128];
    int to_v4 = 0, wait = 0, rc;
    json_t *bulk = NULL, *body;
    const vq_opt opts[] = {{"to-v4", NULL, &to_v4}, {"wait", NULL, &wait}, {NULL, NULL, NULL}};
    if (vq_cli_args(vq_cmd_find("upgrade-domain"), argc, argv, opts, pos, 1, 1, NULL, &rc))
        return rc;
    if ((rc = vq_cli_uuid(pos[0], "storage domain id"))) return rc;
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", pos[0]);
    body = json_pack("{s:b}", "to_v4", to_v4);
    rc = vq_api_call(c, "POST", path, body, &bulk, NULL);
    json_decref(body);
    if (rc) return rc;
    if (wait) {
        rc = wait_bulk(c, bulk);
    } else if (c->json) {
        vq_out_json(c, bulk);
    } else {
        print_skipped(json_object_get(bulk, "skipped"));
        printf("accepted %zu job(s), skipped %zu; follow with `volq status` or `volq jobs`\n",
               json_array_size(json_object_get(bulk, "jobs")),
               json_array_size(json_object_get(bulk, "skipped")));
    }
    json_decref(bulk);
    return rc;
}
