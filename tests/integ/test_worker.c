/* The worker pool and the amend job, end to end: a real redis-server, real
 * volq-worker processes, real qemu-img on domains made by scripts/mkdomain.sh. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/redis_harness.h"
#include "t.h"
#include "volq/disk.h"
#include "volq/queue.h"

typedef struct fixture {
    t_redis redis;
    vq_queue *q;
    char root[512];  /* domains root */
    char sd[VQ_UUID_SIZE];
    vq_domain *d;
    char (*imgs)[VQ_UUID_SIZE];
    size_t nimgs;
    pid_t worker;
} fixture;

/* Runs scripts/mkdomain.sh with args; fills f->sd, opens the domain, lists its images. */
static void make_domain(fixture *f, const char *args)
{
    const char *src = getenv("VOLQ_SOURCE_DIR");
    REQUIRE(src);
    snprintf(f->root, sizeof f->root, "%s/domains", t_dir());
    mkdir(f->root, 0755);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/scripts/mkdomain.sh %s %s", src, f->root, args);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    char line[128] = "";
    REQUIRE(fgets(line, sizeof line, p));
    REQUIRE(pclose(p) == 0);
    line[strcspn(line, "\n")] = '\0';
    REQUIRE(vq_uuid_valid(line));
    memcpy(f->sd, line, VQ_UUID_SIZE);
    REQUIRE(vq_domain_open(f->root, f->sd, &f->d, NULL) == 0);
    REQUIRE(vq_domain_images(f->d, &f->imgs, &f->nimgs, NULL) == 0);
}

static void start_redis(fixture *f)
{
    REQUIRE(t_redis_start(&f->redis, "redis") == 0);
    vq_redis *r = NULL;
    REQUIRE(vq_redis_connect(f->redis.url, 2000, &r, NULL) == 0);
    vq_queue_config cfg;
    vq_queue_config_default(&cfg);
    REQUIRE(vq_queue_new(r, &cfg, &f->q, NULL) == 0);
}

/* Starts build/bin/volq-worker --processes n; extra environment as "K=V" strings. */
/* The next start_worker() puts the pool in a process group of its own, as a
 * shell puts a command it runs in the foreground. */
static int own_group;

static pid_t start_worker(fixture *f, int n, const char *const *env)
{
    char bin[1024], procs[16];
    snprintf(bin, sizeof bin, "%s/volq-worker", getenv("VOLQ_BIN_DIR"));
    snprintf(procs, sizeof procs, "%d", n);
    int group = own_group;
    own_group = 0;
    pid_t pid = fork();
    if (pid == 0) {
        if (group) setpgid(0, 0);
        for (; env && *env; env++) putenv((char *)*env);
        int fd = open("worker.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        execl(bin, bin, "--redis", f->redis.url, "--domains", f->root, "--processes", procs,
              "--log-level", "debug", (char *)NULL);
        _exit(127);
    }
    REQUIRE(pid > 0);
    f->worker = pid;
    return pid;
}

static int stop_worker(fixture *f)
{
    if (f->worker <= 0) return -1;
    kill(f->worker, SIGTERM);
    int st = 0;
    waitpid(f->worker, &st, 0);
    f->worker = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void accept_amend(fixture *f, const vq_disk *disk, char job_id[VQ_UUID_SIZE])
{
    vq_accept_req req = {.kind = "amend", .domain_id = f->sd, .disk_id = disk->id,
                         .alias = disk->alias};
    vq_accept_res res;
    vq_error err = {0};
    REQUIRE(vq_queue_accept(f->q, &req, 1, &res, &err) == 0);
    CHECK_INT(res.status, VQ_ACCEPT_QUEUED);
    memcpy(job_id, res.job_id, VQ_UUID_SIZE);
}

/* Polls the job (running housekeeping, as the scheduler would) until it ends. */
static vq_job *wait_end(fixture *f, const char *job_id, int timeout_ms)
{
    int64_t deadline = vq_now_ms() + timeout_ms;
    while (vq_now_ms() < deadline) {
        vq_queue_housekeep(f->q, NULL, NULL);
        vq_job *j = NULL;
        if (vq_queue_get(f->q, job_id, &j, NULL) == 0 && j->state >= VQ_JOB_SUCCEEDED) return j;
        vq_job_free(j);
        t_sleep_ms(20);
    }
    T_FAIL_("job %s did not end within %d ms", job_id, timeout_ms);
    return NULL;
}

/* First disk of the domain matching pred. */
static vq_disk *find_disk(fixture *f, int (*pred)(const vq_disk *))
{
    for (size_t i = 0; i < f->nimgs; i++) {
        vq_disk *d = NULL;
        if (vq_disk_load(f->d, f->imgs[i], &d, NULL) == 0 && pred(d)) return d;
        vq_disk_free(d);
    }
    return NULL;
}

static int own_cow(const vq_disk *d, size_t *n2, size_t *n3)
{
    *n2 = *n3 = 0;
    for (size_t i = 0; i < d->nvols; i++) {
        if (d->vols[i].shared || d->vols[i].meta.format != VQ_FORMAT_COW) continue;
        if (d->vols[i].qcow_version == 2) (*n2)++;
        if (d->vols[i].qcow_version == 3) (*n3)++;
    }
    return 0;
}

static int is_plain_old_chain(const vq_disk *d)
{
    size_t n2, n3;
    own_cow(d, &n2, &n3);
    return !d->is_template && d->status == VQ_STATUS_OK && n2 >= 2 && n3 == 0 &&
           d->vols[d->nvols - 1].shared == 0;
}

static int is_mixed_chain(const vq_disk *d)
{
    size_t n2, n3;
    own_cow(d, &n2, &n3);
    return !d->is_template && d->status == VQ_STATUS_OK && n2 >= 1 && n3 >= 1 &&
           d->vols[0].qcow_version == 3;
}

static int is_thin(const vq_disk *d)
{
    return !d->is_template && d->nvols >= 2 && d->vols[d->nvols - 1].shared;
}

static int is_template(const vq_disk *d) { return d->is_template; }

static int is_raw(const vq_disk *d)
{
    return !d->is_template && d->nvols == 1 && d->vols[0].meta.format == VQ_FORMAT_RAW;
}

static vq_disk *reload(fixture *f, const char *img)
{
    vq_disk *d = NULL;
    REQUIRE(vq_disk_load(f->d, img, &d, NULL) == 0);
    return d;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* The events of a job, as "TYPE|message" lines joined with '\n' (new string). */
static char *job_events(fixture *f, const char *job_id)
{
    json_t *ev = NULL;
    char last[64] = "";
    REQUIRE(vq_queue_events(f->q, NULL, 100000, 0, &ev, last, NULL) == 0);
    size_t i;
    json_t *e;
    char *out = calloc(1, 1);
    json_array_foreach(ev, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "job_id")), job_id)) continue;
        const char *t = json_string_value(json_object_get(e, "type"));
        const char *m = json_string_value(json_object_get(e, "message"));
        size_t n = strlen(out) + strlen(t) + strlen(m) + 3;
        out = realloc(out, n);
        strcat(strcat(strcat(strcat(out, t), "|"), m), "\n");
    }
    json_decref(ev);
    return out;
}

/* No temp file of a .meta rewrite is left in the disk's folder. */
static void check_no_temp_files(fixture *f, const char *img)
{
    CHECK_INT(run("ls -a %s/%s/images/%s | grep -q '\\.tmp\\.'", f->root, f->sd, img), 256); /* grep: no match */
}

static void check_all_v3_and_clean(fixture *f, const vq_disk *d)
{
    char path[1024];
    check_no_temp_files(f, d->id);
    for (size_t i = 0; i < d->nvols; i++) {
        const vq_volume *v = &d->vols[i];
        if (v->shared || v->meta.format != VQ_FORMAT_COW) continue;
        CHECK_INT(v->qcow_version, 3);
        snprintf(path, sizeof path, "%s/%s/images/%s", f->root, f->sd, d->id);
        CHECK_INT(run("cd %s && qemu-img check -q %s >/dev/null 2>&1", path, v->id), 0);
    }
}

static void test_worker_amends_chain_gen_events_lock(void)
{
    fixture f = {0};
    start_redis(&f);
    make_domain(&f, "--version 4 --disks 2 --chain 3 --data-mib 1");
    vq_disk *d = find_disk(&f, is_plain_old_chain);
    REQUIRE(d);
    char src[1024];
    snprintf(src, sizeof src, "%s/%s/images/%s", f.root, f.sd, d->id);
    REQUIRE(run("cp -a %s %s/before", src, t_dir()) == 0);

    char job[VQ_UUID_SIZE];
    accept_amend(&f, d, job);
    start_worker(&f, 1, NULL);
    vq_job *j = wait_end(&f, job, 30000);
    REQUIRE(j);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    CHECK_INT(j->done, (int)vq_disk_count_v2(d));
    CHECK_INT(j->total, (int)vq_disk_count_v2(d));

    vq_disk *after = reload(&f, d->id);
    check_all_v3_and_clean(&f, after);
    for (size_t i = 0; i < after->nvols; i++) CHECK_INT(after->vols[i].meta.gen, d->vols[i].meta.gen + 1);
    /* The data is the same, read through the whole chain. */
    char cmp[2048];
    snprintf(cmp, sizeof cmp, "%s/before/%s", t_dir(), d->vols[0].id);
    char leaf[2048];
    snprintf(leaf, sizeof leaf, "%s/%s", src, d->vols[0].id);
    CHECK_INT(run("qemu-img compare -q %s %s", cmp, leaf), 0);

    char *ev = job_events(&f, job);
    char want[1024];
    snprintf(want, sizeof want,
             "USER_AMEND_IMAGE_START|Started to amend %s\n"
             "USER_AMEND_IMAGE_FINISH_SUCCESS|%s has been amended successfully.\n",
             d->alias, d->alias);
    CHECK_STR(ev, want);
    free(ev);

    char holder[1][VQ_UUID_SIZE];
    const char *ids[] = {d->id};
    REQUIRE(vq_queue_lock_holders(f.q, ids, 1, holder, NULL) == 0);
    CHECK_STR(holder[0], "");
    CHECK_INT(stop_worker(&f), 0);
    vq_job_free(j);
    vq_disk_free(after);
    vq_disk_free(d);
}

static void test_worker_amends_old_snapshots_under_new_leaf(void)
{
    fixture f = {0};
    start_redis(&f);
    make_domain(&f, "--version 4 --disks 4 --chain 3 --data-mib 1 --mixed");
    vq_disk *d = find_disk(&f, is_mixed_chain);
    REQUIRE(d);
    unsigned leaf_gen = d->vols[0].meta.gen;
    char job[VQ_UUID_SIZE];
    accept_amend(&f, d, job);
    start_worker(&f, 2, NULL);
    vq_job *j = wait_end(&f, job, 30000);
    REQUIRE(j);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    vq_disk *after = reload(&f, d->id);
    check_all_v3_and_clean(&f, after);
    CHECK_INT(after->vols[0].meta.gen, leaf_gen); /* already 1.1: skipped, untouched */
    CHECK_INT(j->total, (int)vq_disk_count_v2(d));
    stop_worker(&f);
    vq_job_free(j);
    vq_disk_free(after);
    vq_disk_free(d);
}

static void sha_of(const char *path, char out[128])
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sha1sum < %s", path);
    FILE *p = popen(cmd, "r");
    out[0] = '\0';
    if (p && fgets(out, 128, p)) out[strcspn(out, " ")] = '\0';
    if (p) pclose(p);
}

static void test_worker_thin_disk_leaves_template_untouched(void)
{
    fixture f = {0};
    start_redis(&f);
    make_domain(&f, "--version 4 --disks 1 --chain 2 --template --thin 1");
    vq_disk *d = find_disk(&f, is_thin);
    REQUIRE(d);
    const vq_volume *tv = &d->vols[d->nvols - 1];
    char tpath[1024], before[128], after_sha[128];
    snprintf(tpath, sizeof tpath, "%s/%s/images/%s/%s", f.root, f.sd, d->id, tv->id);
    sha_of(tpath, before);
    struct stat st0, st1;
    REQUIRE(stat(tpath, &st0) == 0);
    char job[VQ_UUID_SIZE];
    accept_amend(&f, d, job);
    start_worker(&f, 1, NULL);
    vq_job *j = wait_end(&f, job, 30000);
    REQUIRE(j);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    sha_of(tpath, after_sha);
    CHECK_STR(after_sha, before);
    REQUIRE(stat(tpath, &st1) == 0);
    CHECK_INT(st1.st_mtime, st0.st_mtime);
    vq_disk *after = reload(&f, d->id);
    CHECK_INT(after->vols[after->nvols - 1].qcow_version, tv->qcow_version);
    CHECK_INT(after->vols[0].qcow_version, 3);
    stop_worker(&f);
    vq_job_free(j);
    vq_disk_free(after);
    vq_disk_free(d);
}

/* A job the worker must refuse: failed at once, one attempt, the failure event. */
static void expect_refused(fixture *f, const vq_disk *d, const char *reason_part)
{
    char job[VQ_UUID_SIZE];
    accept_amend(f, d, job);
    vq_job *j = wait_end(f, job, 30000);
    REQUIRE(j);
    CHECK_STR(vq_job_state_name(j->state), "failed");
    CHECK_INT(j->attempts, 1);
    CHECK_CONTAINS(j->reason, reason_part);
    char *ev = job_events(f, job);
    char want[512];
    snprintf(want, sizeof want, "USER_AMEND_IMAGE_FINISH_FAILURE|Failed to amend %s.\n", d->alias);
    CHECK_CONTAINS(ev, want);
    free(ev);
    vq_job_free(j);
}

static void test_worker_refuses_template_raw_and_v3(void)
{
    fixture f = {0};
    start_redis(&f);
    make_domain(&f, "--version 4 --disks 1 --chain 1 --template --raw 1");
    start_worker(&f, 1, NULL);
    vq_disk *t = find_disk(&f, is_template), *r = find_disk(&f, is_raw);
    REQUIRE(t && r);
    expect_refused(&f, t, "template");
    expect_refused(&f, r, "qcow2");
    vq_disk_free(t);
    vq_disk_free(r);

    fixture g = f; /* same Redis and worker, a V3 domain */
    vq_domain_free(f.d);
    free(f.imgs);
    g.d = NULL;
    g.imgs = NULL;
    mkdir("v3", 0755);
    snprintf(g.root, sizeof g.root, "%s/v3", t_dir());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/scripts/mkdomain.sh %s --version 3 --disks 1 --chain 2",
             getenv("VOLQ_SOURCE_DIR"), g.root);
    FILE *p = popen(cmd, "r");
    char line[128] = "";
    REQUIRE(p && fgets(line, sizeof line, p));
    pclose(p);
    line[strcspn(line, "\n")] = '\0';
    memcpy(g.sd, line, VQ_UUID_SIZE);
    stop_worker(&f);
    g.worker = 0;
    start_worker(&g, 1, NULL);
    REQUIRE(vq_domain_open(g.root, g.sd, &g.d, NULL) == 0);
    REQUIRE(vq_domain_images(g.d, &g.imgs, &g.nimgs, NULL) == 0);
    vq_disk *d = reload(&g, g.imgs[0]);
    expect_refused(&g, d, "version 3");
    vq_disk *again = reload(&g, g.imgs[0]);
    CHECK_INT(again->vols[0].qcow_version, 2);
    CHECK_INT(again->vols[0].meta.gen, d->vols[0].meta.gen);
    stop_worker(&g);
    vq_disk_free(d);
    vq_disk_free(again);
}

/* A qemu-img that waits before doing its work: long enough to kill a worker
 * mid-job.  Returns the "VOLQ_QEMU_IMG=..." setting that selects it (static). */
/* VOLQ_QEMU_IMG=... for a wrapper that sleeps delay seconds before the real
 * qemu-img; with log, it first appends "PARENT-PID FOLDER" to that file. */
static const char *slow_qemu_logged(const char *delay, const char *log)
{
    static char env[1200];
    FILE *w = fopen("slow-qemu-img", "w");
    REQUIRE(w);
    fprintf(w, "#!/bin/sh\n");
    if (log) fprintf(w, "echo \"$PPID $(pwd)\" >> %s\n", log);
    fprintf(w, "sleep %s\nexec /usr/bin/qemu-img \"$@\"\n", delay);
    fclose(w);
    chmod("slow-qemu-img", 0755);
    snprintf(env, sizeof env, "VOLQ_QEMU_IMG=%s/slow-qemu-img", t_dir());
    return env;
}

static const char *slow_qemu(const char *delay) { return slow_qemu_logged(delay, NULL); }

/* Redis, a domain made with mkargs, and an amend accepted for its first plain
 * 0.10 chain; returns that disk (new). */
static vq_disk *one_amend(fixture *f, const char *mkargs, char job[VQ_UUID_SIZE])
{
    start_redis(f);
    make_domain(f, mkargs);
    vq_disk *d = find_disk(f, is_plain_old_chain);
    REQUIRE(d);
    accept_amend(f, d, job);
    return d;
}

/* one_amend, then one worker process (env) until the job ends: *j (new). */
static vq_disk *amend_to_end(fixture *f, const char *mkargs, const char **env, vq_job **j)
{
    char job[VQ_UUID_SIZE];
    vq_disk *d = one_amend(f, mkargs, job);
    start_worker(f, 1, env);
    *j = wait_end(f, job, 30000);
    REQUIRE(*j);
    return d;
}

static pid_t pid_of_worker(const char *worker)
{
    const char *colon = strrchr(worker, ':');
    return colon ? (pid_t)atoi(colon + 1) : 0;
}

/* Waits until the job runs with at least `done` volumes amended; returns the job. */
static vq_job *wait_running(fixture *f, const char *job_id, int done)
{
    int64_t deadline = vq_now_ms() + 30000;
    while (vq_now_ms() < deadline) {
        vq_job *j = NULL;
        if (vq_queue_get(f->q, job_id, &j, NULL) == 0 && j->state == VQ_JOB_RUNNING &&
            j->done >= done && j->worker[0])
            return j;
        vq_job_free(j);
        t_sleep_ms(10);
    }
    T_FAIL_("job %s never ran with %d done", job_id, done);
    return NULL;
}

static void test_worker_sigkill_mid_chain_runs_again(void)
{
    fixture f = {0};
    char job[VQ_UUID_SIZE];
    const char *env[] = {slow_qemu("0.3"), NULL};
    vq_disk *d = one_amend(&f, "--version 4 --disks 1 --chain 3 --data-mib 1", job);
    start_worker(&f, 1, env);
    vq_job *r = wait_running(&f, job, 1);
    REQUIRE(r);
    pid_t victim = pid_of_worker(r->worker);
    REQUIRE(victim > 0);
    int64_t t0 = vq_now_ms();
    CHECK_INT(kill(victim, SIGKILL), 0);
    /* The parent puts the job back at once: a new attempt starts well under the lease. */
    vq_job *again = NULL;
    while (vq_now_ms() - t0 < 5000) {
        vq_job_free(again);
        again = NULL;
        if (vq_queue_get(f.q, job, &again, NULL) == 0 && again->crashes == 1 &&
            again->state == VQ_JOB_RUNNING && strcmp(again->worker, r->worker) != 0)
            break;
        t_sleep_ms(5);
    }
    REQUIRE(again && again->crashes == 1 && strcmp(again->worker, r->worker) != 0);
    CHECK(vq_now_ms() - t0 < 3000);
    vq_job *j = wait_end(&f, job, 30000);
    REQUIRE(j);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    CHECK_INT(j->crashes, 1);
    CHECK_INT(j->attempts, 1); /* a crash is not an error attempt */
    vq_disk *after = reload(&f, d->id);
    check_all_v3_and_clean(&f, after);
    stop_worker(&f);
    vq_job_free(r);
    vq_job_free(again);
    vq_job_free(j);
    vq_disk_free(after);
    vq_disk_free(d);
}

/* The worker dies right after its first qemu-img amended the base, before
 * that volume's GEN bump: the next attempt finds the volume in the plan the
 * dead one recorded, at 1.1 with its GEN unchanged, and bumps it; every GEN
 * ends one above where it was, none twice. */
static void test_worker_bump_owed_by_dead_attempt_is_made(void)
{
    fixture f = {0};
    FILE *w = fopen("killing-qemu-img", "w");
    REQUIRE(w);
    /* The first run only: the real qemu-img, then SIGKILL to the worker. */
    fprintf(w, "#!/bin/sh\n/usr/bin/qemu-img \"$@\"; rc=$?\n"
               "if mkdir %s/killed 2>/dev/null; then kill -9 $PPID; sleep 1; fi\nexit $rc\n",
            t_dir());
    fclose(w);
    chmod("killing-qemu-img", 0755);
    char qemu[1200];
    snprintf(qemu, sizeof qemu, "VOLQ_QEMU_IMG=%s/killing-qemu-img", t_dir());
    const char *env[] = {qemu, NULL};
    vq_job *j = NULL;
    vq_disk *d = amend_to_end(&f, "--version 4 --disks 1 --chain 3 --data-mib 1", env, &j);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    CHECK_INT(j->crashes, 1);
    CHECK(j->plan == NULL); /* dropped with the job's end */
    vq_disk *after = reload(&f, d->id);
    check_all_v3_and_clean(&f, after);
    for (size_t i = 0; i < after->nvols; i++) CHECK_INT(after->vols[i].meta.gen, d->vols[i].meta.gen + 1);
    stop_worker(&f);
    vq_job_free(j);
    vq_disk_free(after);
    vq_disk_free(d);
}

static void test_worker_sigterm_finishes_running_job(void)
{
    fixture f = {0};
    char job[VQ_UUID_SIZE];
    const char *env[] = {slow_qemu("0.3"), NULL};
    vq_disk *d = one_amend(&f, "--version 4 --disks 1 --chain 2 --data-mib 1", job);
    start_worker(&f, 1, env);
    vq_job *r = wait_running(&f, job, 0);
    REQUIRE(r);
    CHECK_INT(stop_worker(&f), 0); /* SIGTERM, then wait for the pool to exit */
    vq_job *j = NULL;
    REQUIRE(vq_queue_get(f.q, job, &j, NULL) == 0);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    CHECK_INT(j->attempts, 1);
    vq_job_free(r);
    vq_job_free(j);
    vq_disk_free(d);
}

/* A terminal's Ctrl-C goes to the whole foreground process group: the pool,
 * its processes and (were it in that group) their qemu-img.  The running job
 * still finishes: qemu-img runs in a group of its own. */
static void test_worker_group_sigint_finishes_running_job(void)
{
    fixture f = {0};
    char job[VQ_UUID_SIZE];
    const char *env[] = {slow_qemu("0.5"), NULL};
    vq_disk *d = one_amend(&f, "--version 4 --disks 1 --chain 2 --data-mib 1", job);
    own_group = 1;
    start_worker(&f, 1, env);
    vq_job *r = wait_running(&f, job, 0);
    REQUIRE(r);
    CHECK_INT(kill(-f.worker, SIGINT), 0);
    int st = 0;
    REQUIRE(waitpid(f.worker, &st, 0) == f.worker);
    f.worker = 0;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    vq_job *j = NULL;
    REQUIRE(vq_queue_get(f.q, job, &j, NULL) == 0);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    CHECK_INT(j->attempts, 1);
    CHECK_INT((int)json_array_size(j->errors), 0);
    vq_job_free(r);
    vq_job_free(j);
    vq_disk_free(d);
}

/* Two plain 0.10 disks of two volumes each, both accepted; one worker process
 * with a slow qemu-img.  Waits until the first job runs its last volume and
 * the worker has claimed the second (in its in-flight list, still queued). */
/* Three disks of two volumes, an amend each, one worker process: waits until
 * the second job runs while the first one's last qemu-img has not amended
 * its volume yet (started ahead), and the third is claimed (in the worker's
 * list, still queued).  Returns the first job as it ran (new). */
static vq_job *started_during_last_volume(fixture *f, char jobs[3][VQ_UUID_SIZE],
                                          vq_disk **first, const char *const *worker_env)
{
    const char *env[] = {NULL, NULL};
    if (!worker_env) { /* (slow_qemu rewrites the one wrapper file: not when given one) */
        env[0] = slow_qemu("0.6");
        worker_env = env;
    }
    start_redis(f);
    make_domain(f, "--version 4 --disks 3 --chain 2 --data-mib 1");
    REQUIRE(f->nimgs == 3);
    for (int i = 0; i < 3; i++) {
        vq_disk *d = reload(f, f->imgs[i]);
        REQUIRE(d);
        accept_amend(f, d, jobs[i]);
        if (i == 0 && first) *first = d;
        else vq_disk_free(d);
    }
    start_worker(f, 1, worker_env);
    vq_job *r = wait_running(f, jobs[0], 1);
    REQUIRE(r);
    int64_t deadline = vq_now_ms() + 30000;
    vq_job *j2 = NULL;
    while (!j2 && vq_now_ms() < deadline) {
        if (vq_queue_get(f->q, jobs[1], &j2, NULL) == 0 && j2->state != VQ_JOB_RUNNING) {
            vq_job_free(j2);
            j2 = NULL;
        }
        if (!j2) t_sleep_ms(5);
    }
    REQUIRE(j2);
    /* Read after the second job was seen running: the first one's leaf is
     * still at 0.10, so its last qemu-img had not amended it yet. */
    vq_disk *d1 = reload(f, f->imgs[0]);
    REQUIRE(d1);
    CHECK_INT(d1->vols[0].qcow_version, 2);
    vq_disk_free(d1);
    CHECK_STR(j2->worker, r->worker);
    CHECK_INT(j2->done, 0);
    vq_job_free(j2);
    redisReply *rep = t_redis_cmd(&f->redis, "LPOS {volq}:proc:%s %s", r->worker, jobs[2]);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER);
    if (rep) freeReplyObject(rep);
    vq_job *j3 = NULL;
    REQUIRE(vq_queue_get(f->q, jobs[2], &j3, NULL) == 0);
    CHECK_STR(vq_job_state_name(j3->state), "queued");
    vq_job_free(j3);
    return r;
}

/* The next job starts during the last volume of the one before (with the
 * claim of the one after it) and runs the moment that one ends; the first
 * job's last bump is made during the second job's first qemu-img. */
static void test_worker_starts_next_during_last_volume(void)
{
    fixture f = {0};
    char jobs[3][VQ_UUID_SIZE];
    vq_disk *before1 = NULL;
    vq_job *r = started_during_last_volume(&f, jobs, &before1, NULL);
    vq_job *a = wait_end(&f, jobs[0], 30000), *b = wait_end(&f, jobs[1], 30000);
    vq_job *c = wait_end(&f, jobs[2], 30000);
    REQUIRE(a && b && c);
    vq_disk *after1 = reload(&f, f.imgs[0]);
    REQUIRE(after1);
    for (size_t i = 0; i < after1->nvols; i++)
        CHECK_INT(after1->vols[i].meta.gen, (before1->vols[i].meta.gen + 1) % 1000);
    vq_disk_free(before1);
    vq_disk_free(after1);
    vq_job *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        CHECK_STR(vq_job_state_name(all[i]->state), "succeeded");
        CHECK_INT(all[i]->attempts, 1);
        CHECK_INT(all[i]->crashes, 0);
        CHECK_STR(all[i]->worker, r->worker);
        CHECK_INT(all[i]->done, 2);
        CHECK_INT(all[i]->total, 2);
        vq_disk *d = reload(&f, f.imgs[i]);
        REQUIRE(d);
        check_all_v3_and_clean(&f, d);
        vq_disk_free(d);
    }
    check_no_temp_files(&f, f.imgs[0]); /* its temp file moved on to the second disk */
    stop_worker(&f);
    vq_job_free(r);
    vq_job_free(a);
    vq_job_free(b);
    vq_job_free(c);
}

/* Three jobs on one worker: the end of the first is held for the boundary
 * with the third, but not past a tick of the second's long qemu-img: it is
 * recorded while the second still runs.  Every job ends, in order. */
static void test_worker_held_end_waits_at_most_a_tick(void)
{
    fixture f = {0};
    const char *env[] = {slow_qemu("0.4"), NULL};
    start_redis(&f);
    make_domain(&f, "--version 4 --disks 3 --chain 2 --data-mib 1");
    REQUIRE(f.nimgs == 3);
    char jobs[3][VQ_UUID_SIZE];
    for (int i = 0; i < 3; i++) {
        vq_disk *d = reload(&f, f.imgs[i]);
        REQUIRE(d);
        accept_amend(&f, d, jobs[i]);
        vq_disk_free(d);
    }
    start_worker(&f, 1, env);
    vq_job *a = wait_end(&f, jobs[0], 30000), *b = NULL;
    REQUIRE(a);
    REQUIRE(vq_queue_get(f.q, jobs[1], &b, NULL) == 0);
    /* Recorded during the second job's first volume (0.4 s), not at its end. */
    CHECK_STR(vq_job_state_name(b->state), "running");
    CHECK_INT(b->done, 0);
    vq_job *c = wait_end(&f, jobs[2], 30000);
    vq_job_free(b);
    b = wait_end(&f, jobs[1], 30000);
    REQUIRE(b && c);
    CHECK_STR(vq_job_state_name(a->state), "succeeded");
    CHECK_STR(vq_job_state_name(b->state), "succeeded");
    CHECK_STR(vq_job_state_name(c->state), "succeeded");
    CHECK_INT(b->crashes + c->crashes, 0);
    for (int i = 0; i < 3; i++) check_no_temp_files(&f, f.imgs[i]);
    stop_worker(&f);
    vq_job_free(a);
    vq_job_free(b);
    vq_job_free(c);
}

/* SIGTERM during the last volume: the running job and the one started ahead
 * (running too) both end, no crash counted; the claimed third goes back to
 * the front of the queue untouched (no attempt, no crash). */
static void test_worker_sigterm_finishes_started_hands_back_claimed(void)
{
    fixture f = {0};
    char jobs[3][VQ_UUID_SIZE];
    vq_job *r = started_during_last_volume(&f, jobs, NULL, NULL);
    CHECK_INT(stop_worker(&f), 0);
    vq_job *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(vq_queue_get(f.q, jobs[0], &a, NULL) == 0 &&
            vq_queue_get(f.q, jobs[1], &b, NULL) == 0 &&
            vq_queue_get(f.q, jobs[2], &c, NULL) == 0);
    CHECK_STR(vq_job_state_name(a->state), "succeeded");
    CHECK_STR(vq_job_state_name(b->state), "succeeded");
    CHECK_INT(a->crashes + b->crashes, 0);
    CHECK_STR(vq_job_state_name(c->state), "queued");
    CHECK_INT(c->attempts, 0);
    CHECK_INT(c->crashes, 0);
    redisReply *rep = t_redis_cmd(&f.redis, "LINDEX {volq}:q -1");
    CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, jobs[2]) == 0);
    if (rep) freeReplyObject(rep);
    vq_job_free(r);
    vq_job_free(a);
    vq_job_free(b);
    vq_job_free(c);
}

/* SIGKILL during the last volume: the parent puts all three back.  The
 * running job and the one started ahead count a crash each (the price of
 * starting ahead: the worker died while both were running), the claimed one
 * none; all three end succeeded. */
static void test_worker_sigkill_with_started_and_claimed(void)
{
    fixture f = {0};
    char jobs[3][VQ_UUID_SIZE];
    vq_job *r = started_during_last_volume(&f, jobs, NULL, NULL);
    CHECK_INT(kill(pid_of_worker(r->worker), SIGKILL), 0);
    vq_job *a = wait_end(&f, jobs[0], 30000), *b = wait_end(&f, jobs[1], 30000);
    vq_job *c = wait_end(&f, jobs[2], 30000);
    REQUIRE(a && b && c);
    CHECK_STR(vq_job_state_name(a->state), "succeeded");
    CHECK_STR(vq_job_state_name(b->state), "succeeded");
    CHECK_STR(vq_job_state_name(c->state), "succeeded");
    CHECK_INT(a->crashes, 1);
    CHECK_INT(b->crashes, 1);
    CHECK_INT(c->crashes, 0);
    CHECK_INT(c->attempts, 1);
    for (int i = 0; i < 3; i++) {
        vq_disk *d = reload(&f, f.imgs[i]);
        REQUIRE(d);
        check_all_v3_and_clean(&f, d);
        vq_disk_free(d);
    }
    stop_worker(&f);
    vq_job_free(r);
    vq_job_free(a);
    vq_job_free(b);
    vq_job_free(c);
}

/* The ids of the clients whose last command was cmd ("blmove"), up to max. */
static int clients_by_cmd(fixture *f, const char *cmd, long long *ids, int max)
{
    char *list = t_redis_str(&f->redis, "CLIENT LIST");
    char want[64];
    snprintf(want, sizeof want, " cmd=%s ", cmd);
    int n = 0;
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, want) && n < max) ids[n++] = atoll(strstr(line, "id=") + 3);
    free(list);
    return n;
}

/* The connection of the worker with a job started ahead and one claimed is
 * cut during the running job's last qemu-img, while another worker waits in
 * BLMOVE: the fence after that qemu-img finds it lost, so the worker puts its
 * in-flight list back (the started and the claimed job, to the front) once
 * the running job ends.  The claim it held is no longer its own, and none
 * made after it is left in its list unrun: every job ends, both in-flight
 * lists are empty and nothing is queued. */
static void test_worker_put_back_claim_is_not_left_in_list(void)
{
    fixture f = {0};
    char jobs[3][VQ_UUID_SIZE];
    /* 1.5 s: the second worker and the cut both come within the last qemu-img. */
    const char *env[] = {slow_qemu("1.5"), NULL};
    vq_job *r = started_during_last_volume(&f, jobs, NULL, env);
    REQUIRE(r);
    pid_t w1 = f.worker;
    long long ids[4];
    pid_t w2 = start_worker(&f, 1, env);
    int64_t deadline = vq_now_ms() + 10000;
    while (clients_by_cmd(&f, "blmove", ids, 4) < 1 && vq_now_ms() < deadline) t_sleep_ms(5);
    REQUIRE(clients_by_cmd(&f, "blmove", ids, 4) == 1);
    /* The first worker's last command was the claim sent with the start. */
    REQUIRE(clients_by_cmd(&f, "lmove", ids, 4) == 1);
    CHECK_INT(t_redis_int(&f.redis, "CLIENT KILL ID %lld", ids[0]), 1);
    for (int i = 0; i < 3; i++) {
        vq_job *j = wait_end(&f, jobs[i], 20000);
        REQUIRE(j);
        CHECK_STR(vq_job_state_name(j->state), "succeeded");
        vq_job_free(j);
    }
    CHECK_INT(t_redis_int(&f.redis, "LLEN {volq}:proc:%s", r->worker), 0);
    CHECK_INT(t_redis_int(&f.redis, "LLEN {volq}:q"), 0);
    kill(w2, SIGTERM);
    waitpid(w2, NULL, 0);
    f.worker = w1;
    stop_worker(&f);
    vq_job_free(r);
}


/* A number in INFO section's "name:value" (or "name:count=value") line, -1 when none. */
static long long info_number(fixture *f, const char *section, const char *name)
{
    char *info = t_redis_str(&f->redis, "INFO %s", section);
    const char *p = strstr(info, name);
    long long n = -1;
    if (p) {
        p += strlen(name);
        if (strncmp(p, "count=", 6) == 0) p += 6;
        n = atoll(p);
    }
    free(info);
    return n;
}

/* Redis reachable but refusing writes (min-replicas-to-write without a
 * replica): every fetch of an idle worker gets an error reply.  The worker
 * keeps its connection and waits a growing backoff between tries, up to 5 s,
 * where it used to reconnect in a loop (thousands of times a second, a few
 * log lines each); each line is written once.  Once Redis takes writes
 * again, the worker runs the next job. */
static void test_worker_backs_off_while_redis_refuses_writes(void)
{
    fixture f = {0};
    start_redis(&f);
    make_domain(&f, "--version 4 --disks 1 --chain 2 --data-mib 1");
    vq_disk *d = find_disk(&f, is_plain_old_chain);
    REQUIRE(d);
    start_worker(&f, 1, NULL);
    long long ids[2];
    int64_t deadline = vq_now_ms() + 10000;
    while (clients_by_cmd(&f, "blmove", ids, 2) < 1 && vq_now_ms() < deadline) t_sleep_ms(5);
    REQUIRE(clients_by_cmd(&f, "blmove", ids, 2) == 1);
    freeReplyObject(t_redis_query(&f.redis, "CONFIG SET min-replicas-to-write 1"));
    freeReplyObject(t_redis_query(&f.redis, "CLIENT UNBLOCK %lld", ids[0]));
    while (t_log_count("worker.log", "NOREPLICAS") < 1 && vq_now_ms() < deadline) t_sleep_ms(5);
    REQUIRE(t_log_count("worker.log", "NOREPLICAS") >= 1);
    long long conns = info_number(&f, "stats", "total_connections_received:");
    long long refused = info_number(&f, "errorstats", "errorstat_NOREPLICAS:");
    /* Watched for 3 s: a retry at 0.1, 0.3, 0.7, 1.5 and 3.1 s, at most. */
    int64_t until = vq_now_ms() + 3000;
    while (vq_now_ms() < until) t_sleep_ms(50);
    CHECK_INT(info_number(&f, "stats", "total_connections_received:"), conns);
    long long tries = info_number(&f, "errorstats", "errorstat_NOREPLICAS:") - refused;
    CHECK(tries >= 1 && tries <= 30);
    CHECK(t_log_count("worker.log", "NOREPLICAS") <= 4);
    CHECK_INT(t_log_count("worker.log", "reconnected"), 0);
    freeReplyObject(t_redis_query(&f.redis, "CONFIG SET min-replicas-to-write 0"));
    char job[VQ_UUID_SIZE];
    accept_amend(&f, d, job);
    vq_job *j = wait_end(&f, job, 20000);
    REQUIRE(j);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    CHECK_INT(j->crashes, 0);
    CHECK_INT(t_redis_int(&f.redis, "LLEN {volq}:proc:%s", j->worker), 0);
    stop_worker(&f);
    vq_job_free(j);
    vq_disk_free(d);
}

/* A job whose record the worker cannot read once started (its parameters
 * are not JSON) is not left running in the worker's in-flight list until
 * its lease runs out: the worker puts its list back at once, a crash counted
 * each time, and the job fails at max_crashes, with no housekeeping run. */
static void test_worker_unreadable_job_is_put_back(void)
{
    fixture f = {0};
    char job[VQ_UUID_SIZE];
    vq_disk *d = one_amend(&f, "--version 4 --disks 1 --chain 2 --data-mib 1", job);
    freeReplyObject(t_redis_query(&f.redis, "HSET {volq}:job:%s p {not-json", job));
    start_worker(&f, 1, NULL);
    int64_t deadline = vq_now_ms() + 10000;
    while (vq_now_ms() < deadline) {
        char *s = t_redis_str(&f.redis, "HGET {volq}:job:%s s", job);
        int ended = strcmp(s, "failed") == 0;
        free(s);
        if (ended) break;
        t_sleep_ms(20);
    }
    vq_queue_config cfg;
    vq_queue_config_default(&cfg);
    char cr[16], reason[64];
    snprintf(cr, sizeof cr, "%d", cfg.max_crashes);
    snprintf(reason, sizeof reason, "worker died %d times during this job", cfg.max_crashes);
    CHECK_R(t_redis_str(&f.redis, "HGET {volq}:job:%s s", job), "failed");
    CHECK_R(t_redis_str(&f.redis, "HGET {volq}:job:%s cr", job), cr);
    CHECK_R(t_redis_str(&f.redis, "HGET {volq}:job:%s r", job), reason);
    CHECK_INT(t_redis_int(&f.redis, "LLEN {volq}:q"), 0);
    CHECK_INT(t_redis_int(&f.redis, "ZCARD {volq}:running"), 0);
    CHECK(t_log_count("worker.log", "put back with the in-flight list") + t_log_count("worker.log", "fetch failed") >= 1);
    stop_worker(&f);
    vq_disk_free(d);
}

/* A worker paused past its leases while a job is started ahead: both jobs
 * are requeued; once resumed, the worker finds the started job's lease lost
 * and does not run it (no qemu-img spawned for it with the old token); it
 * runs again, once, as a new attempt. */
static void test_worker_paused_with_started_job_runs_it_once(void)
{
    fixture f = {0};
    char jobs[3][VQ_UUID_SIZE], log[1100];
    setenv("VOLQ_LEASE_MS", "600", 1);
    snprintf(log, sizeof log, "%s/qemu-runs.log", t_dir());
    const char *env[] = {slow_qemu_logged("0.6", log), "VOLQ_LEASE_MS=600", NULL};
    vq_job *r = started_during_last_volume(&f, jobs, NULL, env);
    pid_t paused = pid_of_worker(r->worker);
    CHECK_INT(kill(paused, SIGSTOP), 0);
    /* Housekeeping requeues both running jobs once their leases run out. */
    int64_t deadline = vq_now_ms() + 30000;
    vq_job *b = NULL;
    while (vq_now_ms() < deadline) {
        vq_queue_housekeep(f.q, NULL, NULL);
        if (vq_queue_get(f.q, jobs[1], &b, NULL) == 0 && b->state != VQ_JOB_RUNNING) break;
        vq_job_free(b);
        b = NULL;
        t_sleep_ms(20);
    }
    REQUIRE(b);
    CHECK_INT(b->crashes, 1);
    vq_job_free(b);
    CHECK_INT(kill(paused, SIGCONT), 0);
    vq_job *all[3];
    for (int i = 0; i < 3; i++) all[i] = wait_end(&f, jobs[i], 30000);
    REQUIRE(all[0] && all[1] && all[2]);
    for (int i = 0; i < 3; i++) CHECK_STR(vq_job_state_name(all[i]->state), "succeeded");
    /* The second disk's two volumes were amended by one attempt alone. */
    CHECK_INT(t_log_count(log, f.imgs[1]), 2);
    vq_disk *d2 = reload(&f, f.imgs[1]);
    REQUIRE(d2);
    check_all_v3_and_clean(&f, d2);
    vq_disk_free(d2);
    stop_worker(&f);
    vq_job_free(r);
    for (int i = 0; i < 3; i++) vq_job_free(all[i]);
}

static void test_worker_paused_past_lease_is_fenced(void)
{
    fixture f = {0};
    setenv("VOLQ_LEASE_MS", "600", 1);
    char job[VQ_UUID_SIZE];
    const char *env[] = {slow_qemu("0.5"), "VOLQ_LEASE_MS=600", NULL};
    vq_disk *d = one_amend(&f, "--version 4 --disks 1 --chain 2 --data-mib 1", job);
    start_worker(&f, 2, env);
    vq_job *r = wait_running(&f, job, 0);
    REQUIRE(r);
    pid_t paused = pid_of_worker(r->worker);
    CHECK_INT(kill(paused, SIGSTOP), 0);
    /* Housekeeping (run by wait_end) requeues it when the lease runs out; the
     * other process runs it to the end. */
    vq_job *j = wait_end(&f, job, 30000);
    REQUIRE(j);
    CHECK_STR(vq_job_state_name(j->state), "succeeded");
    CHECK(strcmp(j->worker, r->worker) != 0);
    kill(paused, SIGCONT);
    /* The resumed process may try to write; its writes are fenced.  Wait until
     * it has had the time to try (its qemu-img wrapper sleeps 0.5 s). */
    int64_t until = vq_now_ms() + 2000;
    while (vq_now_ms() < until) t_sleep_ms(50);
    vq_job *k = NULL;
    REQUIRE(vq_queue_get(f.q, job, &k, NULL) == 0);
    CHECK_STR(vq_job_state_name(k->state), "succeeded");
    CHECK_STR(k->worker, j->worker);
    char *ev = job_events(&f, job);
    char want[512];
    snprintf(want, sizeof want, "%s has been amended successfully.", d->alias);
    const char *first = strstr(ev, want);
    CHECK(first && !strstr(first + 1, want)); /* exactly one success event */
    free(ev);
    check_no_temp_files(&f, d->id);
    stop_worker(&f);
    vq_job_free(r);
    vq_job_free(j);
    vq_job_free(k);
    vq_disk_free(d);
}

static void test_worker_hung_qemu_times_out_then_fails(void)
{
    fixture f = {0};
    setenv("VOLQ_MAX_ATTEMPTS", "2", 1);
    setenv("VOLQ_BACKOFF_MS", "100", 1);
    const char *env[] = {slow_qemu("1000"), "VOLQ_MAX_ATTEMPTS=2", "VOLQ_BACKOFF_MS=100",
                         "VOLQ_QEMU_TIMEOUT=1", NULL};
    vq_job *j = NULL;
    vq_disk *d = amend_to_end(&f, "--version 4 --disks 1 --chain 2 --data-mib 1", env, &j);
    CHECK_STR(vq_job_state_name(j->state), "failed");
    CHECK_INT(j->attempts, 2);
    CHECK_INT((int)json_array_size(j->errors), 2);
    CHECK_CONTAINS(j->reason, "timed out");
    vq_disk *after = reload(&f, d->id);
    for (size_t i = 0; i < after->nvols; i++) {
        CHECK_INT(after->vols[i].qcow_version, 2);
        CHECK_INT(after->vols[i].meta.gen, d->vols[i].meta.gen);
        CHECK_INT(after->vols[i].meta.legality, VQ_LEGAL);
    }
    stop_worker(&f);
    vq_job_free(j);
    vq_disk_free(after);
    vq_disk_free(d);
}

T_MAIN(T(test_worker_amends_chain_gen_events_lock), T(test_worker_amends_old_snapshots_under_new_leaf),
       T(test_worker_thin_disk_leaves_template_untouched), T(test_worker_refuses_template_raw_and_v3),
       T(test_worker_sigkill_mid_chain_runs_again),
       T(test_worker_bump_owed_by_dead_attempt_is_made), T(test_worker_sigterm_finishes_running_job),
       T(test_worker_group_sigint_finishes_running_job),
       T(test_worker_paused_past_lease_is_fenced), T(test_worker_starts_next_during_last_volume),
       T(test_worker_sigterm_finishes_started_hands_back_claimed), T(test_worker_held_end_waits_at_most_a_tick), T(test_worker_sigkill_with_started_and_claimed), T(test_worker_put_back_claim_is_not_left_in_list),
       T(test_worker_backs_off_while_redis_refuses_writes), T(test_worker_unreadable_job_is_put_back), T(test_worker_paused_with_started_job_runs_it_once), T(test_worker_hung_qemu_times_out_then_fails))
