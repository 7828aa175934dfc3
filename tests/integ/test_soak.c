/* Fault soaks of the whole stack (SPEC §2, delivery): worker processes killed
 * with SIGKILL in a storm, the scheduler killed and restarted, two schedulers
 * on one Redis, Redis killed with -9 and restarted from its AOF, a domain whose
 * file system is full.  Real redis-server, real daemons, real qemu-img, real
 * signals.  Each case has a long form (VOLQ_SOAK=1, `make soak`) and a short
 * form (`make test`, shorter still under ASan), and prints its figures as one
 * TAP comment line.  docs/testing.md describes them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/stack.h"
#include "t.h"
#include "volq/qemu.h"
#include "volq/queue.h"

#define QEMU_IMG "/usr/bin/qemu-img"
#define MAX_KIDS 64
#define END_TIMEOUT_MS 300000  /* a bulk run must end within 5 minutes of its last fault */
#define MOVE_TIMEOUT_MS 30000  /* a paused worker's job must move on within this */

/* ---- sizes -------------------------------------------------------------- */

static int soak(void)
{
    const char *e = getenv("VOLQ_SOAK");
    return e && *e && strcmp(e, "0") != 0;
}

/* The long form under VOLQ_SOAK, else the short form (shorter under ASan,
 * which makes every daemon 2-3 times slower). */
static int pick(int long_form, int short_form, int asan_form)
{
    if (soak()) return long_form;
#if defined(__SANITIZE_ADDRESS__)
    (void)short_form;
    return asan_form;
#else
    (void)asan_form;
    return short_form;
#endif
}

/* A pacing delay between faults, uniform in [lo, hi] ms. */
static void pace(int lo, int hi) { t_sleep_ms(lo + rand() % (hi - lo + 1)); }

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* ---- processes ---------------------------------------------------------- */

/* Runs argv (argv[0] absolute) in dir with its output discarded; the exit
 * status, 128+signal when killed, -1 when it could not run. */
static int run_in(const char *dir, const char *const *argv)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        if (dir && chdir(dir) != 0) _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The live (not zombie) children of parent: the worker processes of a pool
 * (their qemu-img runs are grandchildren). */
static int children_of(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    while (d && n < max && (de = readdir(d)) != NULL) {
        char path[300], buf[512];
        if (de->d_name[0] < '1' || de->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        char state;
        int ppid;
        if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == parent && state != 'Z')
            out[n++] = (pid_t)atoi(de->d_name);
    }
    if (d) closedir(d);
    return n;
}

static int is_child_of(pid_t parent, pid_t pid)
{
    pid_t kids[MAX_KIDS];
    int n = children_of(parent, kids, MAX_KIDS);
    for (int i = 0; i < n; i++)
        if (kids[i] == pid) return 1;
    return 0;
}

static void kill_scheduler(t_stack *s)
{
    REQUIRE(s->sched > 0);
    CHECK_INT(kill(s->sched, SIGKILL), 0);
    while (waitpid(s->sched, NULL, 0) < 0 && errno == EINTR) {
    }
    s->sched = 0;
}

/* ---- the API ------------------------------------------------------------ */

static json_t *get_json(const t_stack *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* GET of a path: the parsed 200 answer (new reference), or NULL. */
static json_t *get_json(const t_stack *s, const char *fmt, ...)
{
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    t_resp h;
    json_t *out = NULL;
    if (t_req(s, "GET", path, NULL, NULL, &h) == 0 && h.status == 200) out = json_incref(h.json);
    t_resp_free(&h);
    return out;
}

/* A changing request that must answer want: the answer (new reference). */
static json_t *send_json(const t_stack *s, const char *method, const char *path,
                         const char *body, const char *extra, int want)
{
    t_resp h;
    REQUIRE(t_req(s, method, path, body, extra, &h) == 0);
    if (h.status != want)
        T_FAIL_("%s %s: status %d, expected %d; body %s", method, path, h.status, want, h.body);
    json_t *v = json_incref(h.json);
    t_resp_free(&h);
    return v;
}

/* The ids of the jobs of a bulk answer, appended to ids. */
static void add_job_ids(json_t *ids, const json_t *bulk)
{
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(bulk, "jobs"), i, j)
        json_array_append_new(ids, json_string(str(j, "id")));
}

/* POST /api/storagedomains/SD/upgrade: every disk gets a job, none is skipped. */
static json_t *bulk_upgrade(const t_stack *s, const char *sd, int ndisks)
{
    char path[128];
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    json_t *b = send_json(s, "POST", path, "{}", NULL, 202);
    REQUIRE(b);
    CHECK_INT(json_array_size(json_object_get(b, "jobs")), ndisks);
    CHECK_INT(json_array_size(json_object_get(b, "skipped")), 0);
    json_t *ids = json_array();
    add_job_ids(ids, b);
    json_decref(b);
    return ids;
}

/* Every job the scheduler lists, by id (new object), or NULL when it does not answer. */
static json_t *jobs_by_id(const t_stack *s)
{
    json_t *list = get_json(s, "/api/jobs?limit=10000"), *j;
    if (!json_is_array(list)) {
        json_decref(list);
        return NULL;
    }
    json_t *by = json_object();
    size_t i;
    json_array_foreach(list, i, j) json_object_set(by, str(j, "id"), j);
    json_decref(list);
    return by;
}

static int ended(const char *state)
{
    return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") ||
                     !strcmp(state, "cancelled"));
}

/* How many of ids have ended; -1 when the scheduler did not answer. */
static int count_ended(const t_stack *s, const json_t *ids)
{
    json_t *by = jobs_by_id(s), *id;
    if (!by) return -1;
    size_t i;
    int n = 0;
    json_array_foreach(ids, i, id)
        n += ended(str(json_object_get(by, json_string_value(id)), "state"));
    json_decref(by);
    return n;
}

typedef struct ids_of {
    const t_stack *s;
    const json_t *ids;
} ids_of;

static int all_ended(void *arg)
{
    const ids_of *w = arg;
    return count_ended(w->s, w->ids) == (int)json_array_size(w->ids);
}

static void wait_all_ended(const t_stack *s, const json_t *ids)
{
    ids_of w = {s, ids};
    if (!t_poll(all_ended, &w, END_TIMEOUT_MS))
        T_FAIL_("only %d of %zu jobs ended within %d s", count_ended(s, ids),
                json_array_size(ids), END_TIMEOUT_MS / 1000);
}

/* Every event kept, paging with since=ID (new array). */
static json_t *all_events(const t_stack *s)
{
    json_t *all = json_array();
    char since[80] = "";
    for (;;) {
        json_t *page = get_json(s, "/api/events?limit=10000%s%s", since[0] ? "&since=" : "", since);
        REQUIRE(json_is_array(page));
        size_t n = json_array_size(page);
        if (n) snprintf(since, sizeof since, "%s", str(json_array_get(page, n - 1), "id"));
        json_array_extend(all, page);
        json_decref(page);
        if (n == 0) return all;
    }
}

static json_t *disks_of(const t_stack *s, const char *sd)
{
    json_t *d = get_json(s, "/api/storagedomains/%s/disks", sd);
    REQUIRE(json_is_array(d));
    return d;
}

/* ---- the verdict on a bulk run ----------------------------------------- */

typedef struct verdict {
    int disks, volumes;
    int lost;      /* accepted jobs that did not end succeeded */
    int dups;      /* disks with more than one job */
    int corrupt;   /* volumes not at 1.1, failing qemu-img check, GEN not moved by 1 */
    int stuck;     /* disks still locked, or not ok */
    int events;    /* disks without exactly one success event, and failure events */
    int sampled, same; /* chains copied before the run, and those whose data is identical */
    int crashes;   /* attempts ended by a dead or lost worker (the jobs' crash counts) */
} verdict;

/* A diagnostic line, the first few of each kind only (say: an int counting down). */
#define SAY(say, ...) do { if ((say)-- > 0) fprintf(stderr, "# " __VA_ARGS__); } while (0)

/* Accepted jobs that did not succeed, and disks of sd with more than one job. */
static void judge_jobs(const t_stack *s, const char *sd, const json_t *ids, verdict *v)
{
    json_t *by = jobs_by_id(s), *id, *j, *per_disk = json_object();
    REQUIRE(by);
    size_t i;
    const char *k;
    int say = 5;
    json_array_foreach(ids, i, id) {
        j = json_object_get(by, json_string_value(id));
        if (j && !strcmp(str(j, "state"), "succeeded")) continue;
        v->lost++;
        SAY(say, "job %s ended %s: %s\n", json_string_value(id), j ? str(j, "state") : "missing",
            j ? str(j, "reason") : "");
    }
    json_object_foreach(by, k, j) {
        if (strcmp(str(j, "domain_id"), sd)) continue;
        const char *disk = str(j, "disk_id");
        json_int_t n = json_integer_value(json_object_get(per_disk, disk)) + 1;
        json_object_set_new(per_disk, disk, json_integer(n));
        if (n == 2) v->dups++;
    }
    json_decref(per_disk);
    json_decref(by);
}

/* The same volume in an earlier listing of the disks, or NULL. */
static const json_t *volume_in(const json_t *disks, const char *disk_id, const char *vol_id)
{
    size_t i, k;
    json_t *d, *vol;
    json_array_foreach(disks, i, d) {
        if (strcmp(str(d, "id"), disk_id)) continue;
        json_array_foreach(json_object_get(d, "volumes"), k, vol)
            if (!strcmp(str(vol, "id"), vol_id)) return vol;
    }
    return NULL;
}

static int qemu_check(const char *imgdir, const char *vol)
{
    const char *argv[] = {QEMU_IMG, "check", "-q", vol, NULL};
    return run_in(imgdir, argv);
}

/* One volume: compat 1.1, qemu-img check clean, GEN moved by exactly 1 (a
 * crash between the amend and the GEN bump is made good by the next attempt,
 * from the plan the crashed one recorded; two bumps would be a bug). */
static int volume_bad(const char *imgdir, const char *disk_id, const json_t *vol,
                      const json_t *before)
{
    const json_t *b = volume_in(before, disk_id, str(vol, "id"));
    long long gen = json_integer_value(json_object_get(vol, "generation"));
    long long gen0 = b ? json_integer_value(json_object_get(b, "generation")) : -1;
    if (!str(vol, "compat") || strcmp(str(vol, "compat"), "1.1")) return 1;
    /* A volume at 1.1 before is not amended: its GEN stays. */
    int amended = !b || !str(b, "compat") || strcmp(str(b, "compat"), "1.1") != 0;
    if (!b || (gen - gen0 + 1000) % 1000 != amended) return 2;
    return qemu_check(imgdir, str(vol, "id")) ? 3 : 0;
}

/* Locks, status, compat, qemu-img check and GEN of every disk of sd. */
static void judge_disks(const t_stack *s, const char *sd, const json_t *before, verdict *v)
{
    json_t *disks = disks_of(s, sd), *d, *vol;
    size_t i, k;
    int say = 5;
    static const char *const why[] = {"", "not at compat 1.1", "GEN not moved by exactly 1",
                                      "qemu-img check failed"};
    json_array_foreach(disks, i, d) {
        char imgdir[1024];
        snprintf(imgdir, sizeof imgdir, "%s/%s/images/%s", s->domains, sd, str(d, "id"));
        v->disks++;
        if (!json_is_null(json_object_get(d, "locked_by")) || strcmp(str(d, "status"), "ok")) {
            v->stuck++;
            SAY(say, "disk %s: status %s, locked_by %s\n", str(d, "id"), str(d, "status"),
                str(d, "locked_by") ? str(d, "locked_by") : "null");
        }
        json_array_foreach(json_object_get(d, "volumes"), k, vol) {
            int bad = volume_bad(imgdir, str(d, "id"), vol, before);
            v->volumes++;
            v->corrupt += bad != 0;
            if (bad) SAY(say, "volume %s of disk %s: %s\n", str(vol, "id"), str(d, "id"), why[bad]);
        }
    }
    json_decref(disks);
}

/* Exactly one success event per disk of sd, and no failure event. */
static void judge_events(const t_stack *s, const char *sd, const json_t *before, verdict *v)
{
    json_t *ev = all_events(s), *e, *succ = json_object(), *d;
    size_t i;
    int say = 5;
    json_array_foreach(ev, i, e) {
        if (strcmp(str(e, "domain_id"), sd)) continue;
        if (!strcmp(str(e, "type"), "USER_AMEND_IMAGE_FINISH_FAILURE")) {
            v->events++;
            SAY(say, "failure event for disk %s: %s\n", str(e, "disk_id"), str(e, "reason"));
        }
        if (strcmp(str(e, "type"), "USER_AMEND_IMAGE_FINISH_SUCCESS")) continue;
        json_int_t n = json_integer_value(json_object_get(succ, str(e, "disk_id")));
        json_object_set_new(succ, str(e, "disk_id"), json_integer(n + 1));
    }
    json_array_foreach(before, i, d) {
        json_int_t n = json_integer_value(json_object_get(succ, str(d, "id")));
        if (n == 1) continue;
        v->events++;
        SAY(say, "disk %s has %lld success events\n", str(d, "id"), (long long)n);
    }
    json_decref(succ);
    json_decref(ev);
}

/* The crash count of each job of ids, read from Redis (the API does not show
 * it): a new object id -> count. */
static json_t *crashes_of(const t_stack *s, const json_t *ids)
{
    vq_redis *r = NULL;
    vq_queue *q = NULL;
    vq_queue_config cfg;
    vq_queue_config_default(&cfg);
    REQUIRE(vq_redis_connect(s->redis.url, 2000, &r, NULL) == 0);
    REQUIRE(vq_queue_new(r, &cfg, &q, NULL) == 0);
    json_t *out = json_object(), *id;
    size_t i;
    json_array_foreach(ids, i, id) {
        vq_job *j = NULL;
        REQUIRE(vq_queue_get(q, json_string_value(id), &j, NULL) == 0);
        json_object_set_new(out, json_string_value(id), json_integer(j->crashes));
        vq_job_free(j);
    }
    vq_queue_free(q);
    return out;
}

static int crash_count(const t_stack *s, const json_t *ids)
{
    json_t *by = crashes_of(s, ids), *n;
    const char *k;
    int sum = 0;
    json_object_foreach(by, k, n) sum += (int)json_integer_value(n);
    json_decref(by);
    return sum;
}

/* ---- data samples --------------------------------------------------------- */

static void sample_path(char *out, size_t sz, const char *disk_id)
{
    snprintf(out, sz, "%s/before/%s", t_dir(), disk_id);
}

/* Copies the image folders of the first n disks to CASE/before/. */
static int copy_sample(const t_stack *s, const char *sd, const json_t *disks, int n)
{
    mkdir("before", 0755);
    int i;
    for (i = 0; i < n && i < (int)json_array_size(disks); i++) {
        const char *id = str(json_array_get(disks, (size_t)i), "id");
        char src[1024], dst[1024];
        snprintf(src, sizeof src, "%s/%s/images/%s", s->domains, sd, id);
        sample_path(dst, sizeof dst, id);
        const char *argv[] = {"/bin/cp", "-a", src, dst, NULL};
        REQUIRE(run_in(NULL, argv) == 0);
    }
    return i;
}

/* qemu-img compare of the leaf of each copy against the amended one. */
static void judge_sample(const t_stack *s, const char *sd, const json_t *disks, int n, verdict *v)
{
    for (int i = 0; i < n; i++) {
        const json_t *d = json_array_get(disks, (size_t)i);
        const char *leaf = str(json_array_get(json_object_get(d, "volumes"), 0), "id");
        char a[1200], b[1200];
        sample_path(a, sizeof a, str(d, "id"));
        snprintf(a + strlen(a), sizeof a - strlen(a), "/%s", leaf);
        snprintf(b, sizeof b, "%s/%s/images/%s/%s", s->domains, sd, str(d, "id"), leaf);
        const char *argv[] = {QEMU_IMG, "compare", "-q", a, b, NULL};
        v->sampled++;
        int rc = run_in(NULL, argv);
        if (rc == 0) v->same++;
        else fprintf(stderr, "# disk %s: qemu-img compare exited %d\n", str(d, "id"), rc);
    }
}

/* Everything a bulk run must end with; each count is checked to be 0. */
static void judge(const t_stack *s, const char *sd, const json_t *ids, const json_t *before,
                  int nsample, verdict *v)
{
    judge_jobs(s, sd, ids, v);
    judge_disks(s, sd, before, v);
    judge_events(s, sd, before, v);
    judge_sample(s, sd, before, nsample, v);
    v->crashes = crash_count(s, ids);
    CHECK_INT(v->lost, 0);
    CHECK_INT(v->dups, 0);
    CHECK_INT(v->corrupt, 0);
    CHECK_INT(v->stuck, 0);
    CHECK_INT(v->events, 0);
    CHECK_INT(v->same, v->sampled);
    CHECK_INT(v->disks, (int)json_array_size(before));
}

static double secs_since(int64_t t0) { return (double)(vq_now_ms() - t0) / 1000.0; }

/* "200 disks, 600 volumes" */
static void print_counts(const char *name, const verdict *v, const char *middle, double secs)
{
    printf("# %s: %d disks, %d volumes, %s, %d lost, %d duplicated, %d corrupt, %d stuck locks, "
           "%d bad events, %d/%d sampled chains identical, %.1f s\n",
           name, v->disks, v->volumes, middle, v->lost, v->dups, v->corrupt, v->stuck, v->events,
           v->same, v->sampled, secs);
    fflush(stdout);
}

/* A qemu-img with the latency of a slow NFS server: it waits `delay` before
 * and after the real /usr/bin/qemu-img, so that a fault lands in the middle of
 * an amend (and the run lasts long enough for many faults).  The path, in the
 * case's folder. */
static const char *slow_qemu(const char *delay)
{
    static char path[1100];
    snprintf(path, sizeof path, "%s/slow-qemu-img", t_dir());
    FILE *w = fopen(path, "w");
    REQUIRE(w);
    fprintf(w, "#!/bin/sh\nsleep %s\n%s \"$@\"\nrc=$?\nsleep %s\nexit $rc\n", delay, QEMU_IMG,
            delay);
    REQUIRE(fclose(w) == 0 && chmod(path, 0755) == 0);
    return path;
}

/* The daemons' environment: env (NULL-terminated) and VOLQ_QEMU_IMG when
 * delay is given.  Static: one stack per case. */
static const char *const *daemon_env(const char *const *env, const char *delay)
{
    static char qemu[1200];
    static const char *all[16];
    int n = 0;
    for (; env && *env && n < 14; env++) all[n++] = *env;
    if (delay) {
        snprintf(qemu, sizeof qemu, "VOLQ_QEMU_IMG=%s", slow_qemu(delay));
        all[n++] = qemu;
    }
    all[n] = NULL;
    return all;
}

/* A stack (redis and scheduler) whose daemons get env, a domain of n disks of
 * chain volumes with 1 MiB of data each; its disks as listed before any job. */
static json_t *start_bulk(t_stack *s, const char *const *env, int n, int chain)
{
    s->env = env;
    REQUIRE(t_stack_start(s, 0) == 0);
    char args[128];
    snprintf(args, sizeof args, "--version 4 --disks %d --chain %d --data-mib 1", n, chain);
    REQUIRE(t_stack_mkdomain(s, args));
    return disks_of(s, s->sd);
}

/* ---- 1. worker SIGKILL storm ---------------------------------------------- */

/* Kills a random worker process every 0.2-0.5 s until every job has ended. */
static int storm(t_stack *s, const json_t *ids)
{
    int kills = 0;
    int64_t deadline = vq_now_ms() + END_TIMEOUT_MS;
    while (count_ended(s, ids) < (int)json_array_size(ids) && vq_now_ms() < deadline) {
        pace(200, 500);
        pid_t kids[MAX_KIDS];
        int n = children_of(s->worker, kids, MAX_KIDS);
        if (n > 0 && kill(kids[rand() % n], SIGKILL) == 0) kills++;
    }
    return kills;
}

static void test_soak_worker_sigkill_storm(void)
{
    static const char *const env[] = {"VOLQ_MAX_CRASHES=1000", NULL};
    int ndisks = pick(200, 30, 20), nsample = pick(10, 4, 3);
    t_stack s = {0};
    json_t *before = start_bulk(&s, daemon_env(env, soak() ? "0.2" : "0.1"), ndisks, 3);
    int sampled = copy_sample(&s, s.sd, before, nsample);
    /* Enough processes that a restarted one is seldom killed again within the
     * pool's crash-loop window (1 s), which would hold its restart back. */
    REQUIRE(t_stack_start_workers(&s, 6) == 0);
    int64_t t0 = vq_now_ms();
    json_t *ids = bulk_upgrade(&s, s.sd, ndisks);
    int kills = storm(&s, ids);
    wait_all_ended(&s, ids);
    double secs = secs_since(t0);
    verdict v = {0};
    judge(&s, s.sd, ids, before, sampled, &v);
    CHECK(kills >= pick(100, 5, 3));
    char mid[128];
    snprintf(mid, sizeof mid, "%d kills (%d jobs interrupted)", kills, v.crashes);
    print_counts("worker-storm", &v, mid, secs);
    t_stack_stop(&s);
    json_decref(ids);
    json_decref(before);
}

/* The storm's sharpest moment, made deterministic: the worker dies while its
 * qemu-img holds qemu's image lock.  That qemu-img (orphaned, left to finish)
 * still holds the lock when the job is put back; the next attempt must take
 * it for the dead attempt's and retry, not refuse the disk as "in use". */
static const char *lock_holding_qemu(void)
{
    static char path[1100];
    snprintf(path, sizeof path, "%s/locking-qemu-img", t_dir());
    FILE *w = fopen(path, "w");
    REQUIRE(w);
    fprintf(w, "#!/bin/sh\nfor a; do v=$a; done\n"
               "/usr/bin/qemu-io -f qcow2 -c 'sleep 1000' \"$v\" >/dev/null\nexec %s \"$@\"\n",
            QEMU_IMG);
    REQUIRE(fclose(w) == 0 && chmod(path, 0755) == 0);
    return path;
}

typedef struct lock_wait {
    const t_stack *s;
    char imgdir[1024];
    const char *vol;
} lock_wait;

static int lock_held(void *arg)
{
    const lock_wait *w = arg;
    return vq_qemu_in_use(w->imgdir, w->vol, NULL) > 0;
}

static void test_soak_worker_killed_while_qemu_holds_lock(void)
{
    static char qemu[1200];
    snprintf(qemu, sizeof qemu, "VOLQ_QEMU_IMG=%s", lock_holding_qemu());
    const char *env[] = {qemu, "VOLQ_BACKOFF_MS=400", NULL};
    t_stack s = {0};
    json_t *before = start_bulk(&s, env, 1, 2), *d = json_array_get(before, 0);
    REQUIRE(t_stack_start_workers(&s, 1) == 0);
    json_t *ids = bulk_upgrade(&s, s.sd, 1);
    lock_wait w = {&s, "", str(json_array_get(json_object_get(d, "volumes"), 1), "id")};
    snprintf(w.imgdir, sizeof w.imgdir, "%s/%s/images/%s", s.domains, s.sd, str(d, "id"));
    REQUIRE(t_poll(lock_held, &w, 30000)); /* the base volume's amend holds the lock */
    pid_t kids[MAX_KIDS];
    REQUIRE(children_of(s.worker, kids, MAX_KIDS) == 1);
    CHECK_INT(kill(kids[0], SIGKILL), 0);
    wait_all_ended(&s, ids);
    json_t *j = get_json(&s, "/api/jobs/%s", json_string_value(json_array_get(ids, 0)));
    REQUIRE(j);
    CHECK_STR(str(j, "state"), "succeeded");
    CHECK_CONTAINS(json_string_value(json_array_get(json_object_get(j, "errors"), 0)),
                   "the qemu-img of an attempt that died");
    CHECK_INT(crash_count(&s, ids), 1);
    verdict v = {0};
    judge(&s, s.sd, ids, before, 0, &v);
    printf("# kill-under-qemu-lock: worker killed while its qemu-img held the image lock; "
           "the job ended %s after %lld attempts (%s); %d corrupt\n", str(j, "state"),
           (long long)json_integer_value(json_object_get(j, "attempts")),
           json_string_value(json_array_get(json_object_get(j, "errors"), 0)), v.corrupt);
    t_stack_stop(&s);
    json_decref(j);
    json_decref(ids);
    json_decref(before);
}

/* ---- 2. scheduler killed and restarted; two schedulers at once ------------- */

/* A running job whose worker is a live process of the pool (new reference), or NULL. */
static json_t *running_job(const t_stack *api, pid_t pool)
{
    json_t *list = get_json(api, "/api/jobs?state=running&limit=100"), *j, *out = NULL;
    size_t i;
    json_array_foreach(list, i, j) {
        const char *w = str(j, "worker"), *colon = w ? strrchr(w, ':') : NULL;
        if (colon && is_child_of(pool, (pid_t)atoi(colon + 1))) {
            out = json_incref(j);
            break;
        }
    }
    json_decref(list);
    return out;
}

typedef struct paused {
    const t_stack *api;
    pid_t pid;
    char job[64], worker[128];
    char more[4][64]; /* other jobs running on it: the end of the job before is
                         recorded with the next start, so that job runs too */
    int nmore;
} paused;

/* The job is running on worker (still the attempt of the paused process). */
static int runs_on(const t_stack *api, const char *job, const char *worker)
{
    json_t *j = get_json(api, "/api/jobs/%s", job);
    int on = j && !strcmp(str(j, "state"), "running") && str(j, "worker") &&
             !strcmp(str(j, "worker"), worker);
    json_decref(j);
    return on;
}

static int job_moved_on(const paused *p, const char *job)
{
    json_t *j = get_json(p->api, "/api/jobs/%s", job);
    int moved = j && (ended(str(j, "state")) ||
                      (!strcmp(str(j, "state"), "running") && str(j, "worker") &&
                       strcmp(str(j, "worker"), p->worker)));
    json_decref(j);
    return moved;
}

/* Every job of the paused worker has ended or runs elsewhere. */
static int moved_on(void *arg)
{
    const paused *p = arg;
    if (!job_moved_on(p, p->job)) return 0;
    for (int i = 0; i < p->nmore; i++)
        if (!job_moved_on(p, p->more[i])) return 0;
    return 1;
}

/* The other jobs running on the paused worker, each counted as paused. */
static void more_jobs(const t_stack *api, paused *p, json_t *paused_jobs)
{
    json_t *list = get_json(api, "/api/jobs?state=running&limit=100"), *j;
    size_t i;
    json_array_foreach(list, i, j) {
        const char *w = str(j, "worker"), *id = str(j, "id");
        if (!w || !id || strcmp(w, p->worker) || !strcmp(id, p->job) || p->nmore >= 4) continue;
        snprintf(p->more[p->nmore++], sizeof p->more[0], "%s", id);
        json_int_t n = json_integer_value(json_object_get(paused_jobs, id));
        json_object_set_new(paused_jobs, id, json_integer(n + 1));
    }
    json_decref(list);
}

/* SIGSTOP of the worker process of a running job.  The pause counts only
 * when the job still runs on it once it is stopped (it may have just ended):
 * it returns the number of jobs the process then runs (the job, and the one
 * before whose end waits for the next start), each of which will lose its
 * lease; otherwise the process goes on at once (0).  paused_jobs counts
 * pauses per job. */
static int pause_one(const t_stack *api, pid_t pool, paused *p, json_t *paused_jobs)
{
    json_t *j = NULL;
    int64_t until = vq_now_ms() + 5000; /* right after a bulk POST, none may run yet */
    while (!(j = running_job(api, pool)) && vq_now_ms() < until) t_sleep_ms(20);
    if (!j) return 0;
    p->api = api;
    snprintf(p->job, sizeof p->job, "%s", str(j, "id"));
    snprintf(p->worker, sizeof p->worker, "%s", str(j, "worker"));
    p->pid = (pid_t)atoi(strrchr(p->worker, ':') + 1);
    json_decref(j);
    CHECK_INT(kill(p->pid, SIGSTOP), 0);
    if (!runs_on(api, p->job, p->worker)) {
        CHECK_INT(kill(p->pid, SIGCONT), 0);
        return 0;
    }
    json_int_t n = json_integer_value(json_object_get(paused_jobs, p->job));
    json_object_set_new(paused_jobs, p->job, json_integer(n + 1));
    more_jobs(api, p, paused_jobs);
    return 1 + p->nmore;
}

/* Waits until a scheduler's housekeeping has moved the paused job on (its
 * lease ran out), then lets the process go on: its writes are fenced. */
static void resume_after_move(const paused *p)
{
    if (!t_poll(moved_on, (void *)p, MOVE_TIMEOUT_MS))
        T_FAIL_("job %s of paused worker %s did not move on", p->job, p->worker);
    CHECK_INT(kill(p->pid, SIGCONT), 0);
}

/* Each job lost its lease once per pause of its worker, and never otherwise
 * (no double requeue by two housekeepers, no lease lost by a live worker).
 * Returns the requeues counted. */
static int check_lease_requeues(const t_stack *s, const json_t *ids, const json_t *paused_jobs)
{
    json_t *cr = crashes_of(s, ids), *n;
    const char *id;
    int total = 0;
    json_object_foreach(cr, id, n) {
        json_int_t want = json_integer_value(json_object_get(paused_jobs, id));
        if (json_integer_value(n) != want)
            T_FAIL_("job %s: %lld crashes counted, %lld pauses", id,
                    (long long)json_integer_value(n), (long long)want);
        total += (int)json_integer_value(n);
    }
    json_decref(cr);
    return total;
}

/* Sends the bulk upgrade of sd with an Idempotency-Key and kills the scheduler
 * before its answer is read: the request may or may not have been accepted. */
static void post_then_kill(t_stack *s, const char *sd, const char *key)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /api/storagedomains/%s/upgrade HTTP/1.1\r\nHost: %s\r\n"
                     "Connection: close\r\nContent-Type: application/json\r\n"
                     "Idempotency-Key: %s\r\nContent-Length: 2\r\n\r\n{}",
                     sd, s->listen, key);
    int fd = t_connect(s->port);
    REQUIRE(fd >= 0);
    CHECK_INT(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    pace(0, 6); /* sometimes before the scheduler has read it, sometimes after */
    kill_scheduler(s);
    close(fd);
}

/* The same request once the scheduler is back: 202 (new jobs) or 200 (its keys
 * were stored before the kill); the jobs are added to ids.  Returns the status. */
static int post_again(const t_stack *s, const char *sd, const char *key, json_t *ids)
{
    char path[128], extra[128];
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    snprintf(extra, sizeof extra, "Idempotency-Key: %s\r\n", key);
    t_resp h;
    REQUIRE(t_req(s, "POST", path, "{}", extra, &h) == 0);
    int status = h.status;
    CHECK(status == 200 || status == 202);
    add_job_ids(ids, h.json);
    t_resp_free(&h);
    return status;
}

/* Once every job has ended, the same request with the same key answers 200
 * with exactly the jobs the key made (SPEC §4), not "already amended" skips. */
static void check_repeat_answers_same_jobs(const t_stack *s, const char *sd, const char *key,
                                           const json_t *ids)
{
    json_t *again = json_array(), *id, *want = json_object();
    size_t i;
    CHECK_INT(post_again(s, sd, key, again), 200);
    CHECK_INT(json_array_size(again), json_array_size(ids));
    json_array_foreach(ids, i, id) json_object_set(want, json_string_value(id), json_true());
    json_array_foreach(again, i, id) CHECK(json_object_get(want, json_string_value(id)));
    json_decref(want);
    json_decref(again);
}

/* Kills the scheduler (the first time in the middle of a bulk request on
 * other), pausing a worker past its lease every so often while it is down;
 * the restarted scheduler must requeue that job. */
static int restart_cycles(t_stack *s, const json_t *ids, const char *other, json_t *ids2,
                          json_t *paused_jobs, int *pauses, int *again)
{
    int restarts = pick(12, 3, 2), every = pick(3, 2, 2), kills = 0;
    for (int i = 0; i < restarts && count_ended(s, ids) < (int)json_array_size(ids); i++) {
        paused p = {0};
        int stopped = i % every == 0 ? pause_one(s, s->worker, &p, paused_jobs) : 0;
        if (i == 0) post_then_kill(s, other, "soak-sched-kill");
        else kill_scheduler(s);
        kills++;
        pace(200, 600); /* the scheduler stays down meanwhile */
        REQUIRE(t_stack_start_scheduler(s) == 0);
        if (i == 0) *again = post_again(s, other, "soak-sched-kill", ids2);
        if (stopped) {
            resume_after_move(&p);
            *pauses += stopped;
        }
    }
    return kills;
}

static void test_soak_scheduler_killed_and_restarted(void)
{
    static const char *const env[] = {"VOLQ_MAX_CRASHES=1000", "VOLQ_LEASE_MS=2000", NULL};
    int ndisks = pick(100, 20, 12), pauses = 0, again = 0;
    t_stack s = {0};
    json_t *before = start_bulk(&s, daemon_env(env, "0.1"), ndisks, 2);
    char sd[64], other[64];
    snprintf(sd, sizeof sd, "%s", s.sd);
    REQUIRE(t_stack_mkdomain(&s, "--version 4 --disks 6 --chain 2 --data-mib 0"));
    snprintf(other, sizeof other, "%s", s.sd);
    json_t *before2 = disks_of(&s, other), *paused_jobs = json_object(), *ids2 = json_array();
    int sampled = copy_sample(&s, sd, before, pick(5, 2, 2));
    REQUIRE(t_stack_start_workers(&s, 3) == 0);
    int64_t t0 = vq_now_ms();
    json_t *ids = bulk_upgrade(&s, sd, ndisks);
    int kills = restart_cycles(&s, ids, other, ids2, paused_jobs, &pauses, &again);
    wait_all_ended(&s, ids);
    wait_all_ended(&s, ids2);
    double secs = secs_since(t0);
    verdict v = {0}, v2 = {0};
    judge(&s, sd, ids, before, sampled, &v);
    judge(&s, other, ids2, before2, 0, &v2);
    CHECK_INT(json_array_size(ids2), 6); /* one job per disk, whether or not the first POST landed */
    check_repeat_answers_same_jobs(&s, other, "soak-sched-kill", ids2);
    /* A pause may stop a job of either domain (other's run once sd's are few). */
    int requeued = check_lease_requeues(&s, ids, paused_jobs) +
                   check_lease_requeues(&s, ids2, paused_jobs);
    CHECK_INT(requeued, pauses);
    CHECK(pauses > 0);
    char mid[200];
    snprintf(mid, sizeof mid, "%d scheduler kills (one mid-request, %s: %zu jobs for 6 disks), "
             "%d paused workers' jobs requeued by a restarted scheduler", kills,
             again == 200 ? "accepted before the kill" : "lost with the kill, sent again",
             json_array_size(ids2), requeued);
    print_counts("scheduler-restarts", &v, mid, secs);
    t_stack_stop(&s);
    json_decref(ids);
    json_decref(ids2);
    json_decref(before);
    json_decref(before2);
    json_decref(paused_jobs);
}

/* Housekeeping moves logged by each scheduler pid ("time pid component ..."). */
static void moves_by(pid_t a, pid_t b, int *na, int *nb)
{
    FILE *f = fopen("scheduler.log", "r");
    char line[2048];
    *na = *nb = 0;
    while (f && fgets(line, sizeof line, f)) {
        char ts[64];
        int pid = 0;
        if (!strstr(line, "housekeeping moved") || sscanf(line, "%63s %d", ts, &pid) != 2) continue;
        *na += pid == a;
        *nb += pid == b;
    }
    if (f) fclose(f);
}

static void test_soak_two_schedulers(void)
{
    static const char *const env[] = {"VOLQ_MAX_CRASHES=1000", "VOLQ_LEASE_MS=2000", NULL};
    int ndisks = pick(200, 20, 12), max_pauses = pick(20, 3, 2), pauses = 0;
    t_stack s = {0};
    json_t *before = start_bulk(&s, daemon_env(env, "0.1"), ndisks, 2), *paused_jobs = json_object();
    int sampled = copy_sample(&s, s.sd, before, pick(5, 2, 2));
    REQUIRE(t_stack_start_workers(&s, 3) == 0);
    t_stack b = s; /* the same Redis, a second scheduler on its own port */
    b.sched = b.worker = 0;
    b.port = 0;
    REQUIRE(t_stack_start_scheduler(&b) == 0);
    int64_t t0 = vq_now_ms();
    json_t *ids = bulk_upgrade(&b, s.sd, ndisks);
    int stopped_jobs = 0;
    while (pauses < max_pauses && count_ended(&s, ids) < ndisks) {
        paused p = {0};
        int n = pause_one(pauses % 2 ? &b : &s, s.worker, &p, paused_jobs);
        if (n) {
            resume_after_move(&p);
            pauses++;
            stopped_jobs += n;
        }
        pace(200, 500);
    }
    wait_all_ended(&s, ids);
    double secs = secs_since(t0);
    verdict v = {0};
    judge(&b, s.sd, ids, before, sampled, &v);
    int requeued = check_lease_requeues(&s, ids, paused_jobs), ma, mb;
    CHECK_INT(requeued, stopped_jobs);
    CHECK(pauses > 0);
    moves_by(s.sched, b.sched, &ma, &mb);
    char mid[200];
    snprintf(mid, sizeof mid, "2 schedulers (housekeeping moves logged: %d + %d), %d workers "
             "paused past the lease, %d requeues", ma, mb, pauses, requeued);
    print_counts("two-schedulers", &v, mid, secs);
    CHECK_INT(t_stack_stop_scheduler(&b), 0);
    t_stack_stop(&s);
    json_decref(ids);
    json_decref(before);
    json_decref(paused_jobs);
}

/* ---- 3. Redis kill -9 and restart from its AOF -------------------------- */

typedef struct progress_at {
    const t_stack *s;
    const json_t *ids;
    int at_least;
} progress_at;

static int progressed(void *arg)
{
    const progress_at *p = arg;
    return count_ended(p->s, p->ids) >= p->at_least;
}

typedef struct log_wait {
    const char *log, *needle;
    int at_least;
} log_wait;

static int logged(void *arg)
{
    const log_wait *w = arg;
    return t_log_count(w->log, w->needle) >= w->at_least;
}

static void wait_logged(const char *log, const char *needle, int at_least)
{
    log_wait w = {log, needle, at_least};
    if (!t_poll(logged, &w, 30000))
        T_FAIL_("%s has %d lines with \"%s\", expected %d or more", log, t_log_count(log, needle),
                needle, at_least);
}

/* stderr is one line that names Redis and says what to do. */
static void check_outage_line(const t_cmd *c)
{
    const char *tail = "; is redis-server (or `volq up`) running?\n";
    size_t n = strlen(c->err), t = strlen(tail);
    CHECK_INT(c->status, 3);
    CHECK(strncmp(c->err, "volq: redis", 11) == 0);
    CHECK(n > t && strcmp(c->err + n - t, tail) == 0);
    CHECK(strchr(c->err, '\n') == c->err + n - 1);
}

/* The CLI while Redis is down: exit 3 and one clear line, whether the
 * scheduler has already seen the outage ("redis is unreachable at URL;
 * retrying") or finds it with this request ("redis: connection lost"). */
static void cli_during_outage(const t_stack *s, const char *sd, const char *disk)
{
    t_cmd c;
    REQUIRE(t_volq(s, &c, NULL, "status", NULL) == 0);
    check_outage_line(&c);
    t_cmd_free(&c);
    REQUIRE(t_volq(s, &c, NULL, "amend", disk, "--domain", sd, NULL) == 0);
    check_outage_line(&c);
    CHECK_CONTAINS(c.err, "volq: redis is unreachable at unix://");
    t_cmd_free(&c);
}

/* One outage: kill -9 once enough jobs ended, the CLI meanwhile (on the disk
 * of another domain), then a restart from the AOF. */
static int redis_outage(t_stack *s, const json_t *ids, int at_least, const char *sd2,
                        const char *disk2)
{
    progress_at p = {s, ids, at_least};
    REQUIRE(t_poll(progressed, &p, END_TIMEOUT_MS));
    json_t *running = get_json(s, "/api/jobs?state=running");
    int nrunning = (int)json_array_size(running);
    json_decref(running);
    int retries0 = t_log_count("worker.log", "retrying in");
    REQUIRE(t_redis_kill9(&s->redis) == 0);
    cli_during_outage(s, sd2, disk2);
    wait_logged("worker.log", "retrying in", retries0 + 1); /* the workers back off meanwhile */
    REQUIRE(t_redis_restart(&s->redis) == 0);
    return nrunning;
}

static void test_soak_redis_kill9(void)
{
    static const char *const env[] = {"VOLQ_LEASE_MS=3000", NULL};
    int ndisks = pick(100, 24, 12), outages = pick(3, 1, 1);
    t_stack s = {0};
    json_t *before = start_bulk(&s, daemon_env(env, "0.1"), ndisks, 2);
    char sd[64], sd2[64];
    snprintf(sd, sizeof sd, "%s", s.sd);
    REQUIRE(t_stack_mkdomain(&s, "--version 4 --disks 1 --chain 1 --data-mib 0"));
    snprintf(sd2, sizeof sd2, "%s", s.sd);
    json_t *other = disks_of(&s, sd2);
    const char *disk2 = str(json_array_get(other, 0), "id");
    int sampled = copy_sample(&s, sd, before, pick(5, 2, 2));
    REQUIRE(t_stack_start_workers(&s, 2) == 0);
    int64_t t0 = vq_now_ms();
    json_t *ids = bulk_upgrade(&s, sd, ndisks);
    int up0 = t_log_count("scheduler.log", " is up"), running = 0;
    for (int i = 0; i < outages; i++)
        running += redis_outage(&s, ids, ndisks * (i + 1) / (outages + 2), sd2, disk2);
    wait_all_ended(&s, ids);
    double secs = secs_since(t0);
    verdict v = {0};
    judge(&s, sd, ids, before, sampled, &v);
    /* The daemons came back by themselves and said so. */
    wait_logged("scheduler.log", " is up", up0 + outages);
    CHECK(t_log_count("scheduler.log", "went away") >= outages);
    CHECK(t_log_count("worker.log", "reconnected") >= outages);
    /* The amend that exited 3 during the outage made no job and took no lock. */
    json_t *d2 = get_json(&s, "/api/disks/%s", disk2);
    REQUIRE(d2);
    CHECK(json_is_null(json_object_get(d2, "locked_by")));
    CHECK_STR(str(json_array_get(json_object_get(d2, "volumes"), 0), "compat"), "0.10");
    json_decref(d2);
    char mid[200];
    snprintf(mid, sizeof mid, "%d redis kills (%d jobs running at them), %d/%zu accepted jobs "
             "succeeded, reconnects logged: scheduler %d, workers %d, CLI exit 3 while down",
             outages, running, (int)json_array_size(ids) - v.lost, json_array_size(ids),
             t_log_count("scheduler.log", " is up") - up0, t_log_count("worker.log", "reconnected"));
    print_counts("redis-kill9", &v, mid, secs);
    t_stack_stop(&s);
    json_decref(ids);
    json_decref(other);
    json_decref(before);
}

/* ---- 4. disk full on the domain ------------------------------------------ */

static char mounted[1024];

static void unmount_domains(void)
{
    if (mounted[0] && umount2(mounted, MNT_DETACH) != 0)
        fprintf(stderr, "# umount %s: %s\n", mounted, strerror(errno));
    mounted[0] = '\0';
}

/* A tmpfs of size as the domains root; 0, or -1 when mounting is not permitted. */
static int mount_small(const char *dir, const char *size)
{
    char opts[64];
    snprintf(opts, sizeof opts, "size=%s,mode=0755", size);
    REQUIRE(mkdir(dir, 0755) == 0);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) != 0) return -1;
    snprintf(mounted, sizeof mounted, "%s", dir);
    atexit(unmount_domains); /* a REQUIRE exits: unmount then too */
    return 0;
}

/* Writes path until the file system is full; the bytes written. */
static long long fill(const char *path)
{
    static char block[65536];
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    REQUIRE(fd >= 0);
    long long n = 0;
    for (size_t chunk = sizeof block; chunk >= 512; chunk /= 2) {
        ssize_t w;
        while ((w = write(fd, block, chunk)) > 0) n += w;
        REQUIRE(w < 0 && errno == ENOSPC);
    }
    close(fd);
    return n;
}

/* The folder's entries and each .meta's content, one string (new). */
static char *folder_state(const char *dir)
{
    char *buf = NULL, path[2048], line[1024];
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    REQUIRE(m && n >= 0);
    for (int i = 0; i < n; i++) {
        fprintf(m, "%s\n", names[i]->d_name);
        size_t nl = strlen(names[i]->d_name);
        if (nl > 5 && !strcmp(names[i]->d_name + nl - 5, ".meta")) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            FILE *f = fopen(path, "r");
            while (f && fgets(line, sizeof line, f)) fputs(line, m);
            if (f) fclose(f);
        }
        free(names[i]);
    }
    free(names);
    fclose(m);
    return buf;
}

static json_t *wait_job(const t_stack *s, const char *id)
{
    json_t *one = json_array();
    json_array_append_new(one, json_string(id));
    wait_all_ended(s, one);
    json_decref(one);
    json_t *j = get_json(s, "/api/jobs/%s", id);
    REQUIRE(j);
    return j;
}

/* A job that must fail for want of space: its reason names the cause. */
static json_t *expect_enospc(const t_stack *s, const char *method, const char *path,
                             const char *body)
{
    json_t *acc = send_json(s, method, path, body, NULL, 202);
    REQUIRE(acc);
    json_t *j = wait_job(s, str(acc, "id"));
    json_decref(acc);
    CHECK_STR(str(j, "state"), "failed");
    CHECK_CONTAINS(str(j, "reason"), "No space left on device");
    return j;
}

/* Every volume of the disk: qemu-img check clean, and the data read through
 * leaf the same as through leaf0 of the copy taken before; 0 or the number of
 * bad volumes (the data counts as one). */
static int usable(const t_stack *s, const char *disk_id, const char *leaf0, const char *leaf,
                  const json_t *vols)
{
    char imgdir[1024], a[1200], b[1200];
    snprintf(imgdir, sizeof imgdir, "%s/%s/images/%s", s->domains, s->sd, disk_id);
    int bad = 0;
    size_t i;
    json_t *vol;
    json_array_foreach(vols, i, vol) bad += qemu_check(imgdir, str(vol, "id")) != 0;
    sample_path(a, sizeof a, disk_id);
    snprintf(a + strlen(a), sizeof a - strlen(a), "/%s", leaf0);
    snprintf(b, sizeof b, "%s/%s", imgdir, leaf);
    const char *argv[] = {QEMU_IMG, "compare", "-q", a, b, NULL};
    return bad + (run_in(NULL, argv) != 0);
}

typedef struct full_case {
    t_stack s;
    json_t *disk;          /* the disk, as listed before */
    char imgdir[1024];
    char *state0;          /* folder_state before any job */
    char filler[1100];
    int v3_after_fail;     /* headers that read 1.1 after the failed amend */
} full_case;

/* The image folder is what it was: same files, each .meta byte for byte. */
static int folder_unchanged(const full_case *f)
{
    char *now = folder_state(f->imgdir);
    int same = strcmp(now, f->state0) == 0;
    if (!same) fprintf(stderr, "# image folder changed:\n# before: %s\n# after: %s\n", f->state0, now);
    free(now);
    return same;
}

/* A new disk whose create failed left no folder. */
static int new_disk_gone(const full_case *f, const json_t *job)
{
    char p[1200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s/images/%s", f->s.domains, f->s.sd, str(job, "disk_id"));
    return stat(p, &st) != 0 && errno == ENOENT;
}

static json_t *retry_ok(const t_stack *s, const json_t *job)
{
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s/retry", str(job, "id"));
    json_decref(send_json(s, "POST", path, NULL, NULL, 202));
    json_t *j = wait_job(s, str(job, "id"));
    CHECK_STR(str(j, "state"), "succeeded");
    return j;
}

/* Full to the last block: the amend (qemu-img amend writes in place, the .meta
 * rewrite needs a block) and both kinds of create fail; nothing is truncated. */
static void full_phase(full_case *f, json_t **amend, json_t **snap, json_t **newdisk)
{
    char path[256];
    const char *id = str(f->disk, "id");
    snprintf(path, sizeof path, "/api/disks/%s", id);
    *amend = expect_enospc(&f->s, "PUT", path, "{\"qcow_version\":\"qcow2_v3\"}");
    CHECK(folder_unchanged(f));
    json_t *d = get_json(&f->s, "/api/disks/%s", id), *vol;
    size_t i;
    REQUIRE(d);
    CHECK_STR(str(d, "status"), "ok");
    json_array_foreach(json_object_get(d, "volumes"), i, vol)
        f->v3_after_fail += !strcmp(str(vol, "compat"), "1.1");
    json_decref(d);
    const char *leaf = str(json_array_get(json_object_get(f->disk, "volumes"), 0), "id");
    CHECK_INT(usable(&f->s, id, leaf, leaf, json_object_get(f->disk, "volumes")), 0);
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s/volumes", f->s.sd, id);
    *snap = expect_enospc(&f->s, "POST", path, "{}");
    CHECK(folder_unchanged(f));
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/volumes", f->s.sd);
    *newdisk = expect_enospc(&f->s, "POST", path, "{\"size\":1073741824,\"alias\":\"full-new\"}");
    CHECK(new_disk_gone(f, *newdisk));
}

/* 64 KiB free: the .meta files fit, qemu-img create of the qcow2 header does
 * not; the half-made volume is removed. */
static json_t *nearly_full_phase(full_case *f)
{
    struct stat st;
    REQUIRE(stat(f->filler, &st) == 0);
    REQUIRE(truncate(f->filler, st.st_size - 65536) == 0);
    char path[256];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/volumes", f->s.sd);
    json_t *j = expect_enospc(&f->s, "POST", path, "{\"size\":1073741824,\"alias\":\"nearly-full\"}");
    CHECK_CONTAINS(str(j, "reason"), "qcow2");
    CHECK(new_disk_gone(f, j));
    CHECK(folder_unchanged(f));
    return j;
}

static void test_soak_disk_full(void)
{
    full_case f = {0};
    char root[1024];
    snprintf(root, sizeof root, "%s/domains", t_dir());
    if (mount_small(root, "4m") != 0) {
        printf("# SKIP test_soak_disk_full: mounting a tmpfs is not permitted here (%s); "
               "run as root\n", strerror(errno));
        return;
    }
    static const char *const env[] = {"VOLQ_MAX_ATTEMPTS=2", "VOLQ_BACKOFF_MS=100", NULL};
    json_t *disks = start_bulk(&f.s, env, 1, 2);
    REQUIRE(t_stack_start_workers(&f.s, 1) == 0);
    f.disk = json_array_get(disks, 0);
    snprintf(f.imgdir, sizeof f.imgdir, "%s/%s/images/%s", f.s.domains, f.s.sd, str(f.disk, "id"));
    REQUIRE(copy_sample(&f.s, f.s.sd, disks, 1) == 1);
    f.state0 = folder_state(f.imgdir);
    snprintf(f.filler, sizeof f.filler, "%s/filler", root);
    long long filled = fill(f.filler);

    json_t *amend, *snap, *newdisk, *nearly;
    full_phase(&f, &amend, &snap, &newdisk);
    nearly = nearly_full_phase(&f);

    /* Space again: the same jobs retried by hand succeed on the same volumes. */
    REQUIRE(unlink(f.filler) == 0);
    json_t *a2 = retry_ok(&f.s, amend), *s2 = retry_ok(&f.s, snap);
    json_t *after = get_json(&f.s, "/api/disks/%s", str(f.disk, "id"));
    REQUIRE(after);
    json_t *vols = json_object_get(after, "volumes");
    CHECK_INT(json_array_size(vols), 3);
    CHECK_STR(str(json_array_get(vols, 0), "id"), str(s2, "volume_id"));
    CHECK_STR(str(json_array_get(vols, 1), "compat"), "1.1");
    CHECK_STR(str(json_array_get(vols, 2), "compat"), "1.1");
    /* Each GEN bumped once, also that of a volume the failed attempt amended
     * (its header read 1.1) without its bump: the plan it left says so. */
    json_t *vols0 = json_object_get(f.disk, "volumes");
    for (size_t k = 0; k < 2; k++)
        CHECK_INT(json_integer_value(json_object_get(json_array_get(vols, k + 1), "generation")),
                  json_integer_value(json_object_get(json_array_get(vols0, k), "generation")) + 1);
    const char *leaf0 = str(json_array_get(json_object_get(f.disk, "volumes"), 0), "id");
    CHECK_INT(usable(&f.s, str(f.disk, "id"), leaf0, str(s2, "volume_id"), vols), 0);
    printf("# disk-full: 4 MiB tmpfs, %lld KiB filler; amend failed (%s; %d/2 headers read 1.1 "
           "after it, GEN unchanged), snapshot and new-disk create failed (No space left on "
           "device), qcow2 create at 64 KiB free failed; 0 .meta changed, 0 files left behind, "
           "0 corrupt; after freeing: amend and snapshot retried, succeeded\n",
           filled / 1024, str(amend, "reason"), f.v3_after_fail);
    fflush(stdout);
    t_stack_stop(&f.s);
    unmount_domains();
    free(f.state0);
    json_decref(after);
    json_decref(a2);
    json_decref(s2);
    json_decref(amend);
    json_decref(snap);
    json_decref(newdisk);
    json_decref(nearly);
    json_decref(disks);
}

T_MAIN(T(test_soak_worker_sigkill_storm), T(test_soak_worker_killed_while_qemu_holds_lock),
       T(test_soak_scheduler_killed_and_restarted),
       T(test_soak_two_schedulers), T(test_soak_redis_kill9), T(test_soak_disk_full))
