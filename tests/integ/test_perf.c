/* What the speed work relies on, end to end with a real redis-server, real
 * volq-worker processes and real qemu-img: an amend runs exactly one qemu-img
 * per volume at compat 0.10 and none for a volume at 1.1 (the shared counter
 * /metrics shows), and jobs with nothing to do, recorded in batches
 * (vq_queue_batch), come out as any job does: the same fields, the same
 * events, in order, locks released; claimed jobs handed back keep their
 * order; a cancelled one is left alone. */
#include <fcntl.h>
#include <stdarg.h>
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
    char root[512];
    char sd[VQ_UUID_SIZE];
    vq_domain *d;
    char (*imgs)[VQ_UUID_SIZE];
    size_t nimgs;
    pid_t worker;
} fixture;

static void setup(fixture *f, const char *mkdomain_args)
{
    REQUIRE(t_redis_start(&f->redis, "redis") == 0);
    vq_redis *r = NULL;
    REQUIRE(vq_redis_connect(f->redis.url, 5000, &r, NULL) == 0);
    REQUIRE(vq_queue_new(r, NULL, &f->q, NULL) == 0);
    snprintf(f->root, sizeof f->root, "%s/domains", t_dir());
    mkdir(f->root, 0755);
    char cmd[2048], line[128] = "";
    snprintf(cmd, sizeof cmd, "%s/scripts/mkdomain.sh %s %s", getenv("VOLQ_SOURCE_DIR"), f->root,
             mkdomain_args);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    REQUIRE(fgets(line, sizeof line, p));
    REQUIRE(pclose(p) == 0);
    line[strcspn(line, "\n")] = '\0';
    REQUIRE(vq_uuid_valid(line));
    memcpy(f->sd, line, VQ_UUID_SIZE);
    REQUIRE(vq_domain_open(f->root, f->sd, &f->d, NULL) == 0);
    REQUIRE(vq_domain_images(f->d, &f->imgs, &f->nimgs, NULL) == 0);
}

static void start_worker(fixture *f, int n)
{
    char bin[1024], procs[16];
    snprintf(bin, sizeof bin, "%s/volq-worker", getenv("VOLQ_BIN_DIR"));
    snprintf(procs, sizeof procs, "%d", n);
    f->worker = fork();
    if (f->worker == 0) {
        int fd = open("worker.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        execl(bin, bin, "--redis", f->redis.url, "--domains", f->root, "--processes", procs,
              (char *)NULL);
        _exit(127);
    }
    REQUIRE(f->worker > 0);
}

static void teardown(fixture *f)
{
    if (f->worker > 0) {
        kill(f->worker, SIGTERM);
        waitpid(f->worker, NULL, 0);
    }
    vq_queue_free(f->q);
    vq_domain_free(f->d);
    free(f->imgs);
    t_redis_stop(&f->redis);
}

static vq_disk *load(fixture *f, const char *img)
{
    vq_disk *d = NULL;
    REQUIRE(vq_disk_load(f->d, img, &d, NULL) == 0);
    return d;
}

/* Accepts an amend of every disk in one step; ids[i] gets disk i's job. */
static void accept_all(fixture *f, char (*ids)[VQ_UUID_SIZE])
{
    vq_accept_req reqs[16];
    vq_accept_res res[16];
    REQUIRE(f->nimgs <= 16);
    for (size_t i = 0; i < f->nimgs; i++)
        reqs[i] = (vq_accept_req){.kind = "amend", .domain_id = f->sd, .disk_id = f->imgs[i]};
    REQUIRE(vq_queue_accept(f->q, reqs, f->nimgs, res, NULL) == 0);
    for (size_t i = 0; i < f->nimgs; i++) {
        CHECK_INT(res[i].status, VQ_ACCEPT_QUEUED);
        memcpy(ids[i], res[i].job_id, VQ_UUID_SIZE);
    }
}

/* Waits until job ends (succeeded, failed or cancelled); a new job. */
static vq_job *wait_end(fixture *f, const char *job_id)
{
    for (int i = 0; i < 1500; i++) {
        vq_job *j = NULL;
        if (vq_queue_get(f->q, job_id, &j, NULL) == 0 && j->state >= VQ_JOB_SUCCEEDED) return j;
        vq_job_free(j);
        t_sleep_ms(20);
    }
    T_FAIL_("job %s did not end within 30 s", job_id);
    return NULL;
}

static unsigned long long runs(fixture *f)
{
    vq_queue_counters c;
    REQUIRE(vq_queue_counters_get(f->q, &c, NULL) == 0);
    return (unsigned long long)c.qemu_img_runs;
}

static void test_perf_one_qemu_img_per_old_volume(void)
{
    fixture f = {0};
    setup(&f, "--version 4 --disks 4 --chain 3 --data-mib 0 --mixed");
    size_t old = 0;
    for (size_t i = 0; i < f.nimgs; i++) {
        vq_disk *d = load(&f, f.imgs[i]);
        old += vq_disk_count_v2(d);
        vq_disk_free(d);
    }
    CHECK(old < 4 * 3); /* --mixed: some leaves are 1.1 already */
    CHECK_INT(runs(&f), 0);
    char ids[16][VQ_UUID_SIZE];
    accept_all(&f, ids);
    start_worker(&f, 2);
    for (size_t i = 0; i < f.nimgs; i++) {
        vq_job *j = wait_end(&f, ids[i]);
        REQUIRE(j);
        CHECK_STR(vq_job_state_name(j->state), "succeeded");
        vq_job_free(j);
    }
    CHECK_INT(runs(&f), old);
    /* Every job that ran (jobs with work at least) is in the amend histogram. */
    vq_queue_counters c;
    REQUIRE(vq_queue_counters_get(f.q, &c, NULL) == 0);
    uint64_t ran = 0;
    for (int b = 0; b < VQ_RUN_BUCKETS; b++) ran += c.runs[0].n[b];
    size_t with_work = 0;
    for (size_t i = 0; i < f.nimgs; i++) {
        vq_job *j = NULL;
        REQUIRE(vq_queue_get(f.q, ids[i], &j, NULL) == 0);
        with_work += j->total > 0;
        vq_job_free(j);
    }
    CHECK(with_work > 0);
    CHECK(ran >= with_work && ran <= f.nimgs);
    CHECK(c.runs[0].sum_ms > 0);
    for (int b = 0; b < VQ_RUN_BUCKETS; b++) CHECK_INT(c.runs[1].n[b], 0);
    /* Buckets: upper bounds inclusive, the last one open. */
    CHECK_INT(vq_run_bucket(1), 0);
    CHECK_INT(vq_run_bucket(100), 0);
    CHECK_INT(vq_run_bucket(101), 1);
    CHECK_INT(vq_run_bucket(300000), VQ_RUN_BUCKETS - 2);
    CHECK_INT(vq_run_bucket(300001), VQ_RUN_BUCKETS - 1);
    /* Every volume is at 1.1 now: amending again runs nothing. */
    accept_all(&f, ids);
    for (size_t i = 0; i < f.nimgs; i++) {
        vq_job *j = wait_end(&f, ids[i]);
        REQUIRE(j);
        CHECK_STR(vq_job_state_name(j->state), "succeeded");
        CHECK_INT(j->total, 0);
        vq_job_free(j);
    }
    CHECK_INT(runs(&f), old);
    teardown(&f);
}

static redisReply *cmd(fixture *f, const char *fmt, ...)
{
    redisContext *c = t_redis_connect(&f->redis);
    REQUIRE(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    REQUIRE(r);
    return r;
}

static long long cmd_int(fixture *f, const char *fmt, const char *arg)
{
    redisReply *r = cmd(f, fmt, arg);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* cmd's string answer (a new string; "" for nil). */
static char *cmd_str(fixture *f, const char *fmt, const char *arg)
{
    redisReply *r = cmd(f, fmt, arg);
    char *v = strdup(r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return v;
}

/* "TYPE" of each event of job, one per line (a new string). */
/* The types of j's events, one a line; each event must name j's domain and
 * disk and carry the message the SPEC gives for its type, with j's alias. */
static char *events_of(fixture *f, const vq_job *j)
{
    json_t *ev = NULL;
    char last[64] = "";
    REQUIRE(vq_queue_events(f->q, NULL, 100000, 0, &ev, last, NULL) == 0);
    size_t i, len = 0;
    json_t *e;
    char *out = calloc(1, 4096);
    const char *alias = j->alias[0] ? j->alias : j->disk_id;
    json_array_foreach(ev, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "job_id")), j->id)) continue;
        const char *type = json_string_value(json_object_get(e, "type"));
        char want[256];
        int failed = strcmp(type, "USER_AMEND_IMAGE_FINISH_FAILURE") == 0;
        if (strcmp(type, "USER_AMEND_IMAGE_START") == 0)
            snprintf(want, sizeof want, "Started to amend %s", alias);
        else if (failed)
            snprintf(want, sizeof want, "Failed to amend %s.", alias);
        else
            snprintf(want, sizeof want, "%s has been amended successfully.", alias);
        CHECK_STR(json_string_value(json_object_get(e, "message")), want);
        CHECK_STR(json_string_value(json_object_get(e, "domain_id")), j->domain_id);
        CHECK_STR(json_string_value(json_object_get(e, "disk_id")), j->disk_id);
        CHECK(failed ? json_is_string(json_object_get(e, "reason"))
                     : json_is_null(json_object_get(e, "reason")));
        len += (size_t)snprintf(out + len, 4096 - len, "%s\n", type);
    }
    json_decref(ev);
    return out;
}

#define W1 "host-a:1"

/* The batch steps on their own: claim in order, record one, hand one back,
 * start one; a job cancelled while claimed is left as it is. */
static void test_perf_batch_steps(void)
{
    fixture f = {0};
    setup(&f, "--version 4 --disks 5 --chain 1 --data-mib 0");
    char ids[16][VQ_UUID_SIZE];
    accept_all(&f, ids);
    char got[8][VQ_UUID_SIZE];
    vq_job *recs[8] = {0};
    vq_batch b = {.worker = W1, .want = 4, .claimed_ids = got, .claimed = recs};
    REQUIRE(vq_queue_batch(f.q, &b, NULL) == 0);
    REQUIRE(b.nclaimed == 4);
    for (size_t i = 0; i < 4; i++) {
        CHECK_STR(got[i], ids[i]); /* the front of the queue first */
        REQUIRE(recs[i]);
        CHECK_INT(recs[i]->state, VQ_JOB_QUEUED);
        vq_job_free(recs[i]);
    }
    CHECK_INT(cmd_int(&f, "LLEN {volq}:proc:%s", W1), 4);
    CHECK_INT(cmd_int(&f, "LLEN {volq}:q%s", ""), 1);
    CHECK_INT(vq_queue_cancel(f.q, ids[3], NULL), 0);

    const char idle[2][VQ_UUID_SIZE];
    memcpy((char *)idle[0], ids[0], VQ_UUID_SIZE);
    memcpy((char *)idle[1], ids[3], VQ_UUID_SIZE);
    unsigned char rec[2] = {9, 9};
    vq_batch s = {.worker = W1, .idle = idle, .nidle = 2, .back = (const char(*)[VQ_UUID_SIZE])ids[2],
                  .nback = 1, .start = ids[1], .recorded = rec};
    REQUIRE(vq_queue_batch(f.q, &s, NULL) == 0);
    CHECK_INT(rec[0], 1);
    CHECK_INT(rec[1], 0);
    /* Recorded as a run would: one attempt, a token, the worker, both events. */
    vq_job *a = wait_end(&f, ids[0]);
    REQUIRE(a);
    CHECK_STR(vq_job_state_name(a->state), "succeeded");
    CHECK_INT(a->attempts, 1);
    CHECK_STR(a->worker, W1);
    CHECK(a->token > 0);
    long long ended = (long long)a->updated;
    char *ev = events_of(&f, a);
    CHECK_STR(ev, "USER_AMEND_IMAGE_START\nUSER_AMEND_IMAGE_FINISH_SUCCESS\n");
    free(ev);
    vq_job_free(a);
    CHECK_INT(cmd_int(&f, "HEXISTS {volq}:locks %s", f.imgs[0]), 0);
    /* Indexed by end time, as finish.lua would. */
    CHECK(ended > 0);
    char *score = cmd_str(&f, "ZSCORE {volq}:st:succeeded %s", ids[0]);
    CHECK_INT(atoll(score), ended);
    free(score);
    CHECK_INT(cmd_int(&f, "ZCARD {volq}:running%s", ""), 1); /* the started one only */
    /* The cancelled one stays cancelled, with no start event. */
    char *st = cmd_str(&f, "HGET {volq}:job:%s s", ids[3]);
    CHECK_STR(st, "cancelled");
    free(st);
    vq_job *c = wait_end(&f, ids[3]);
    REQUIRE(c);
    ev = events_of(&f, c);
    CHECK_STR(ev, "USER_AMEND_IMAGE_FINISH_FAILURE\n");
    free(ev);
    vq_job_free(c);
    /* The started one is running and alone in the list; the handed-back one
     * is at the front again, before the one never claimed. */
    REQUIRE(s.started);
    CHECK_STR(s.started->id, ids[1]);
    CHECK_INT(s.started->state, VQ_JOB_RUNNING);
    vq_job_free(s.started);
    char *head = cmd_str(&f, "LINDEX {volq}:proc:%s 0", W1);
    CHECK_STR(head, ids[1]);
    free(head);
    CHECK_INT(cmd_int(&f, "LLEN {volq}:proc:%s", W1), 1);
    head = cmd_str(&f, "LINDEX {volq}:q -1%s", "");
    CHECK_STR(head, ids[2]);
    free(head);
    CHECK_INT(cmd_int(&f, "LLEN {volq}:q%s", ""), 2);
    st = cmd_str(&f, "HGET {volq}:job:%s s", ids[2]);
    CHECK_STR(st, "queued");
    free(st);
    teardown(&f);
}

/* Jobs with nothing to do, then jobs with work, through real workers: all
 * succeed, each with one start event and one end event in that order, the
 * real ones amended by exactly one qemu-img per volume, every list empty. */
static void test_perf_runs_of_noop_jobs_then_real_ones(void)
{
    fixture f = {0};
    setup(&f, "--version 4 --disks 12 --chain 1 --data-mib 0");
    char ids[16][VQ_UUID_SIZE];
    start_worker(&f, 2);
    accept_all(&f, ids); /* brings every disk to 1.1: 12 qemu-img runs */
    for (size_t i = 0; i < f.nimgs; i++) vq_job_free(wait_end(&f, ids[i]));
    CHECK_INT(runs(&f), 12);
    /* A second domain of old disks, accepted behind twelve no-op amends. */
    char sd2[VQ_UUID_SIZE], cmdline[2048], line[128] = "";
    snprintf(cmdline, sizeof cmdline, "%s/scripts/mkdomain.sh %s --version 4 --disks 4 --chain 2 "
             "--data-mib 0", getenv("VOLQ_SOURCE_DIR"), f.root);
    FILE *p = popen(cmdline, "r");
    REQUIRE(p && fgets(line, sizeof line, p) && pclose(p) == 0);
    line[strcspn(line, "\n")] = '\0';
    memcpy(sd2, line, VQ_UUID_SIZE);
    vq_domain *d2 = NULL;
    char (*imgs2)[VQ_UUID_SIZE] = NULL;
    size_t n2 = 0;
    REQUIRE(vq_domain_open(f.root, sd2, &d2, NULL) == 0);
    REQUIRE(vq_domain_images(d2, &imgs2, &n2, NULL) == 0 && n2 == 4);
    vq_accept_req reqs[16];
    vq_accept_res res[16];
    char alias[16][32];
    size_t n = 0;
    for (size_t i = 0; i < f.nimgs + n2; i++) snprintf(alias[i], sizeof alias[i], "vm-%zu_Disk1", i);
    for (size_t i = 0; i < f.nimgs; i++, n++)
        reqs[n] = (vq_accept_req){.kind = "amend", .domain_id = f.sd, .disk_id = f.imgs[i],
                                  .alias = alias[n]};
    for (size_t i = 0; i < n2; i++, n++)
        reqs[n] = (vq_accept_req){.kind = "amend", .domain_id = sd2, .disk_id = imgs2[i],
                                  .alias = alias[n]};
    REQUIRE(vq_queue_accept(f.q, reqs, n, res, NULL) == 0);
    for (size_t i = 0; i < n; i++) {
        vq_job *j = wait_end(&f, res[i].job_id);
        REQUIRE(j);
        CHECK_STR(vq_job_state_name(j->state), "succeeded");
        CHECK_INT(j->attempts, 1);
        CHECK_INT(j->total, i < f.nimgs ? 0 : 2);
        CHECK_STR(j->alias, alias[i]);
        char *ev = events_of(&f, j);
        CHECK_STR(ev, "USER_AMEND_IMAGE_START\nUSER_AMEND_IMAGE_FINISH_SUCCESS\n");
        free(ev);
        vq_job_free(j);
    }
    CHECK_INT(runs(&f), 12 + 8);
    CHECK_INT(cmd_int(&f, "HLEN {volq}:locks%s", ""), 0);
    CHECK_INT(cmd_int(&f, "LLEN {volq}:q%s", ""), 0);
    redisReply *keys = cmd(&f, "KEYS {volq}:proc:*%s", "");
    for (size_t i = 0; i < keys->elements; i++)
        CHECK_INT(cmd_int(&f, "LLEN %s", keys->element[i]->str), 0);
    freeReplyObject(keys);
    for (size_t i = 0; i < n2; i++) {
        vq_disk *d = NULL;
        REQUIRE(vq_disk_load(d2, imgs2[i], &d, NULL) == 0);
        CHECK_INT(vq_disk_count_v2(d), 0);
        vq_disk_free(d);
    }
    char *log = NULL;
    size_t loglen = 0;
    FILE *lf = fopen("worker.log", "r");
    REQUIRE(lf && getdelim(&log, &loglen, '\0', lf) > 0);
    fclose(lf);
    CHECK_CONTAINS(log, "nothing to do; succeeded");
    free(log);
    free(imgs2);
    vq_domain_free(d2);
    teardown(&f);
}

/* UUIDs come from a pool of random bytes: a forked child must not hand out
 * the ones its parent will. */
static void test_perf_uuid_pool_not_shared_by_fork(void)
{
    char a[VQ_UUID_SIZE], b[VQ_UUID_SIZE], first[VQ_UUID_SIZE];
    vq_uuid_new(first); /* fills the pool */
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c[VQ_UUID_SIZE];
        vq_uuid_new(c);
        _exit(write(p[1], c, sizeof c) == (ssize_t)sizeof c ? 0 : 1);
    }
    vq_uuid_new(a);
    REQUIRE(read(p[0], b, sizeof b) == (ssize_t)sizeof b);
    waitpid(pid, NULL, 0);
    CHECK(vq_uuid_valid(a) && vq_uuid_valid(b));
    CHECK(strcmp(a, b) != 0);
    CHECK(strcmp(a, first) != 0);
    CHECK(a[14] == '4'); /* version 4 */
    CHECK(strchr("89ab", a[19]) != NULL);
}

T_MAIN(T(test_perf_one_qemu_img_per_old_volume), T(test_perf_batch_steps),
       T(test_perf_uuid_pool_not_shared_by_fork),
       T(test_perf_runs_of_noop_jobs_then_real_ones))
