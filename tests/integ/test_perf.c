/* What the speed work relies on, end to end with a real redis-server, real
 * volq-worker processes and real qemu-img: an amend runs exactly one qemu-img
 * per volume at compat 0.10 and none for a volume at 1.1 (the shared counter
 * /metrics shows), and jobs with nothing to do come out as any job does. */
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
    char root[512];
    char sd[VQ_UUID_SIZE];
    vq_domain *d;
    char (*imgs)[VQ_UUID_SIZE];
    size_t nimgs;
    pid_t worker;
} fixture;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

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
        sleep_ms(20);
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

T_MAIN(T(test_perf_one_qemu_img_per_old_volume))
