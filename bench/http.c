/* bench/http: `wrk -t2 -c50 -d10s` (Debian's wrk; scripts/bench.sh installs
 * it when missing) against a real volq-scheduler and Redis (appendfsync
 * always, the AOF on the real disk), on GET /api/status and on
 * GET /api/jobs?limit=50 with 1,000 jobs queued.  VOLQ_BENCH_HTTP_SECONDS
 * changes the duration.  wrk shares the 2 cores with the scheduler and Redis. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/bench.h"
#include "volq/queue.h"

#define JOBS 1000

typedef struct wrk_result {
    double rps;
    long errors;   /* socket errors + non-2xx answers */
    double p99_ms; /* from the latency distribution, when wrk prints it */
} wrk_result;

static const char *wrk_path(void)
{
    static const char *const paths[] = {"/usr/bin/wrk", "/usr/local/bin/wrk"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    return NULL;
}

/* Sums the numbers after "name" on the line that holds it (wrk's "Socket
 * errors: connect 0, read 0, write 0, timeout 0" or "Non-2xx ...: N"). */
static long sum_line(const char *text, const char *name)
{
    const char *p = strstr(text, name);
    long sum = 0;
    if (!p) return 0;
    for (p += strlen(name); *p && *p != '\n'; p++)
        if (*p >= '0' && *p <= '9') sum += strtol(p, (char **)&p, 10), p--;
    return sum;
}

static double ms_of(const char *s)
{
    double v = atof(s);
    if (strstr(s, "us") == s + strspn(s, "0123456789.")) return v / 1000;
    if (s[strspn(s, "0123456789.")] == 's') return v * 1000;
    return v;
}

static int run_wrk(const char *url, const char *secs, const char *out, wrk_result *r)
{
    char dur[16];
    snprintf(dur, sizeof dur, "%ss", secs);
    const char *argv[] = {"wrk", "-t2", "-c50", "-d", dur, "--latency", url, NULL};
    unlink(out);
    if (b_run(wrk_path(), argv, out) != 0) return -1;
    FILE *f = fopen(out, "r");
    char text[8192] = "";
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    const char *rps = strstr(text, "Requests/sec:");
    const char *p99 = strstr(text, " 99% ");
    if (!rps) return -1;
    r->rps = atof(rps + strlen("Requests/sec:"));
    r->errors = sum_line(text, "Socket errors:") + sum_line(text, "Non-2xx or 3xx responses:");
    r->p99_ms = p99 ? ms_of(p99 + 5 + strspn(p99 + 5, " ")) : -1;
    return 0;
}

/* 1,000 queued jobs (disks that need not exist: nothing runs them). */
static int fill(const char *url)
{
    vq_redis *r = NULL;
    vq_queue *q = NULL;
    static vq_accept_req reqs[JOBS];
    static vq_accept_res res[JOBS];
    static char disks[JOBS][VQ_UUID_SIZE];
    char sd[VQ_UUID_SIZE];
    vq_uuid_new(sd);
    for (size_t i = 0; i < JOBS; i++) {
        vq_uuid_new(disks[i]);
        reqs[i] = (vq_accept_req){.kind = "amend", .domain_id = sd, .disk_id = disks[i],
                                  .alias = "bench_Disk1"};
    }
    int rc = vq_redis_connect(url, 10000, &r, NULL) || vq_queue_new(r, NULL, &q, NULL) ||
             vq_queue_accept(q, reqs, JOBS, res, NULL);
    vq_queue_free(q);
    return rc ? -1 : 0;
}

int main(void)
{
    const char *secs = getenv("VOLQ_BENCH_HTTP_SECONDS");
    if (!secs || atoi(secs) <= 0) secs = "10";
    if (!wrk_path()) {
        b_target(0, "wrk is not installed (scripts/bench.sh installs it with apt-get)");
        return 1;
    }
    char dir[2048], rd[PATH_MAX], doms[PATH_MAX], log[PATH_MAX], out[PATH_MAX], api[64], url[128];
    if (b_subdir(b_work_dir(), "http", dir, sizeof dir)) return 1;
    b_rmrf(dir);
    b_subdir(b_work_dir(), "http", dir, sizeof dir);
    b_subdir(dir, "domains", doms, sizeof doms);
    snprintf(rd, sizeof rd, "%s/redis", dir);
    snprintf(log, sizeof log, "%s/scheduler.log", dir);
    snprintf(out, sizeof out, "%s/wrk.out", dir);
    b_redis rs;
    int port = 0;
    pid_t sched = -1;
    if (b_redis_start(&rs, rd, "always") == 0 && fill(rs.url) == 0)
        sched = b_start_scheduler(rs.url, doms, log, NULL, api, sizeof api, &port);
    wrk_result st = {0}, jobs = {0};
    int ok = sched > 0;
    snprintf(url, sizeof url, "%s/api/status", api);
    ok = ok && run_wrk(url, secs, out, &st) == 0;
    snprintf(url, sizeof url, "%s/api/jobs?limit=50", api);
    ok = ok && run_wrk(url, secs, out, &jobs) == 0;
    long rss = sched > 0 ? b_rss_kib(sched) : -1;
    if (sched > 0) b_stop(sched, SIGTERM, 10000);
    b_redis_stop(&rs);
    b_rmrf(dir);
    if (!ok) {
        b_target(0, "the scheduler or wrk failed");
        return 1;
    }
    b_result("http_status_req_per_s", st.rps, "req/s");
    b_result("http_status_p99_ms", st.p99_ms, "ms");
    b_result("http_status_errors", (double)st.errors, "errors");
    b_result("http_jobs50_req_per_s", jobs.rps, "req/s");
    b_result("http_jobs50_p99_ms", jobs.p99_ms, "ms");
    b_result("http_jobs50_errors", (double)jobs.errors, "errors");
    b_result("http_scheduler_rss_after", (double)rss / 1024.0, "MiB");
    b_target(st.rps >= 10000 && st.errors == 0 && jobs.errors == 0,
             "GET /api/status %.0f >= 10000 req/s, %ld + %ld errors == 0", st.rps, st.errors,
             jobs.errors);
    return 0;
}
