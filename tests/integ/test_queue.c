/* The queue against a real redis-server: every state change, its keys, list
 * positions, locks, events and fencing, crashes and restarts. */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/redis_harness.h"
#include "t.h"
#include "volq/queue.h"
#include "volq/spawn.h"

#define DOM "11111111-2222-3333-4444-555555555555"
#define W1 "host-a:101"
#define W2 "host-b:202"

static t_redis R;
static vq_queue *Q;
static vq_queue_config CFG;

/* ---- fixture ------------------------------------------------------------ */

static vq_queue *open_queue(void)
{
    vq_redis *r = NULL;
    vq_error e = {0};
    if (vq_redis_connect(R.url, 5000, &r, &e) != 0) T_FAIL_("connect: %s", e.text);
    REQUIRE(r);
    vq_queue *q = NULL;
    REQUIRE(vq_queue_new(r, &CFG, &q, NULL) == 0);
    return q;
}

/* Starts Redis and a queue with defaults, then lets the case adjust CFG. */
static void setup(void)
{
    REQUIRE(t_redis_start(&R, "redis") == 0);
    vq_queue_config_default(&CFG);
    CFG.backoff_base_ms = 1000;
    CFG.max_attempts = 3;
    CFG.max_crashes = 3;
    Q = open_queue();
}

/* Applies a changed CFG to Q. */
static void reconfig(void) { Q->cfg = CFG; }

/* ---- looking into Redis ------------------------------------------------- */

/* Looking into Redis: the harness's kept connection to R. */
#define rcmd(...) t_redis_query(&R, __VA_ARGS__)
#define rstr(...) t_redis_str(&R, __VA_ARGS__)
#define rint_(...) t_redis_int(&R, __VA_ARGS__)

static long long field_int(const char *id, const char *f)
{
    return rint_("HGET {volq}:job:%s %s", id, f);
}

/* The job's state as Redis has it. */
static char *state_of(const char *id) { return rstr("HGET {volq}:job:%s s", id); }

/* Every event so far, as a JSON array. */
static json_t *events(void)
{
    json_t *arr = NULL;
    char last[64] = "";
    vq_error e = {0};
    if (vq_queue_events(Q, NULL, 0, 0, &arr, last, &e) != 0) T_FAIL_("events: %s", e.text);
    REQUIRE(arr);
    return arr;
}

static size_t event_count(void)
{
    json_t *a = events();
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

/* The last event, with a reference. */
static json_t *last_event(void)
{
    json_t *a = events();
    json_t *ev = json_incref(json_array_get(a, json_array_size(a) - 1));
    json_decref(a);
    REQUIRE(ev);
    return ev;
}

static const char *evs(const json_t *ev, const char *k) { return json_string_value(json_object_get(ev, k)); }

/* Checks every field of an event (SPEC §2); reason NULL means null. */
static void check_event(const json_t *ev, const char *type, const char *severity, const char *msg,
                        const char *kind, const char *job, const char *disk, const char *reason)
{
    CHECK_INT(json_object_size(ev), 10); /* the 9 fields + the stream id */
    CHECK_STR(evs(ev, "type"), type);
    CHECK_STR(evs(ev, "severity"), severity);
    CHECK_STR(evs(ev, "message"), msg);
    CHECK_STR(evs(ev, "kind"), kind);
    CHECK_STR(evs(ev, "job_id"), job);
    CHECK_STR(evs(ev, "domain_id"), DOM);
    CHECK_STR(evs(ev, "disk_id"), disk);
    if (reason)
        CHECK_STR(evs(ev, "reason"), reason);
    else
        CHECK(json_is_null(json_object_get(ev, "reason")));
    int64_t ms;
    CHECK_INT(vq_time_parse(evs(ev, "time"), &ms), 0);
    CHECK(llabs((long long)(ms - vq_now_ms())) < 60000);
    CHECK(strlen(evs(ev, "time")) == 24 && evs(ev, "time")[23] == 'Z');
}

/* ---- making jobs -------------------------------------------------------- */

typedef struct made {
    char id[VQ_UUID_SIZE];
    char disk[VQ_UUID_SIZE];
    char vol[VQ_UUID_SIZE];
} made;

static vq_accept_req req(const char *kind, const char *disk, const char *vol, const char *alias)
{
    vq_accept_req r = {.kind = kind, .domain_id = DOM, .disk_id = disk, .volume_id = vol,
                       .alias = alias};
    return r;
}

/* Accepts one amend of a new disk (alias "vm1_Disk1"); must be queued. */
static made amend(void)
{
    made m = {0};
    vq_uuid_new(m.disk);
    vq_accept_req r = req("amend", m.disk, NULL, "vm1_Disk1");
    vq_accept_res res;
    vq_error e = {0};
    if (vq_queue_accept(Q, &r, 1, &res, &e) != 0) T_FAIL_("accept: %s", e.text);
    CHECK_INT(res.status, VQ_ACCEPT_QUEUED);
    memcpy(m.id, res.job_id, VQ_UUID_SIZE);
    return m;
}

static made create_volume(void)
{
    made m = {0};
    vq_uuid_new(m.disk);
    vq_uuid_new(m.vol);
    vq_accept_req r = req("create-volume", m.disk, m.vol, "data_disk");
    vq_accept_res res;
    REQUIRE(vq_queue_accept(Q, &r, 1, &res, NULL) == 0);
    CHECK_INT(res.status, VQ_ACCEPT_QUEUED);
    memcpy(m.id, res.job_id, VQ_UUID_SIZE);
    return m;
}

static vq_job *fetch(const char *worker)
{
    vq_job *j = NULL;
    vq_error e = {0};
    if (vq_queue_fetch(Q, worker, 0, &j, &e) != 0) T_FAIL_("fetch: %s", e.text);
    return j;
}

static vq_job_state finish(vq_job *j, vq_outcome o, const char *reason)
{
    vq_job_state st = (vq_job_state)-1;
    vq_error e = {0};
    if (vq_queue_finish(Q, j, o, reason, &st, &e) != 0) T_FAIL_("finish: %s", e.text);
    return st;
}

/* Housekeeping until it moved at least one job, or 5 s. */
static size_t housekeep_until_moved(void)
{
    long long deadline = t_now_ms() + 5000;
    size_t moved = 0;
    while (moved == 0 && t_now_ms() < deadline) {
        vq_error e = {0};
        if (vq_queue_housekeep(Q, &moved, &e) != 0) T_FAIL_("housekeep: %s", e.text);
        if (!moved) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL); /* a poll interval, not a wait for a result */
        }
    }
    return moved;
}

/* Makes a retrying job due now and promotes it. */
static void make_due(const char *id)
{
    freeReplyObject(rcmd("ZADD {volq}:due 1 %s", id));
    size_t moved = 0;
    CHECK_INT(vq_queue_housekeep(Q, &moved, NULL), 0);
    CHECK_INT(moved, 1);
}

/* ---- acceptance --------------------------------------------------------- */

static void test_queue_accept_single(void)
{
    setup();
    made m = amend();
    CHECK(vq_uuid_valid(m.id));
    CHECK_R(state_of(m.id), "queued");
    CHECK_R(rstr("HGET {volq}:job:%s k", m.id), "amend");
    CHECK_R(rstr("HGET {volq}:job:%s dm", m.id), DOM);
    CHECK_R(rstr("HGET {volq}:job:%s dk", m.id), m.disk);
    CHECK_R(rstr("HGET {volq}:job:%s al", m.id), "vm1_Disk1");
    CHECK_INT(field_int(m.id, "ma"), 3);
    CHECK_R(rstr("HGET {volq}:locks %s", m.disk), m.id);
    CHECK_INT(rint_("LLEN {volq}:q"), 1);
    CHECK_R(rstr("LINDEX {volq}:q 0"), m.id);
    CHECK_INT(event_count(), 0);
    vq_job *j = NULL;
    CHECK_INT(vq_queue_get(Q, m.id, &j, NULL), 0);
    REQUIRE(j);
    CHECK_STR(j->id, m.id);
    CHECK_INT(j->state, VQ_JOB_QUEUED);
    CHECK_INT(j->attempts, 0);
    CHECK(j->created > 0 && j->created == j->updated);
    vq_job_free(j);
    vq_error e = {0};
    char other[VQ_UUID_SIZE];
    vq_uuid_new(other);
    CHECK_INT(vq_queue_get(Q, other, &j, &e), VQ_ENOENT);
    CHECK(j == NULL);
    char want[128];
    snprintf(want, sizeof want, "job %s: not found", other);
    CHECK_STR(e.text, want);
}

/* Calls of a command so far (INFO commandstats; cmd in lower case). */
static long long calls_of(const char *cmd)
{
    char *info = rstr("INFO commandstats"), key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    const char *p = strstr(info, key);
    long long n = p ? atoll(p + strlen(key)) : 0;
    free(info);
    return n;
}

static long long evalsha_calls(void) { return calls_of("evalsha"); }

static long long used_memory(void)
{
    char *info = rstr("INFO memory");
    const char *p = strstr(info, "used_memory:");
    long long n = p ? atoll(p + strlen("used_memory:")) : 0;
    free(info);
    return n;
}

static void test_queue_accept_bulk_in_one_call(void)
{
    setup();
    enum { N = 1000 };
    static char disks[N][VQ_UUID_SIZE];
    static vq_accept_req reqs[N];
    static vq_accept_res res[N];
    for (int i = 0; i < N; i++) {
        vq_uuid_new(disks[i]);
        reqs[i] = req("amend", disks[i], NULL, "d");
    }
    long long before = evalsha_calls();
    CHECK_INT(vq_queue_accept(Q, reqs, N, res, NULL), 0);
    CHECK_INT(evalsha_calls() - before, 1);
    int queued = 0;
    for (int i = 0; i < N; i++) queued += res[i].status == VQ_ACCEPT_QUEUED;
    CHECK_INT(queued, N);
    CHECK_INT(rint_("LLEN {volq}:q"), N);
    CHECK_INT(rint_("HLEN {volq}:locks"), N);
    CHECK_R(rstr("HGET {volq}:locks %s", disks[N - 1]), res[N - 1].job_id);
    /* FIFO: the first accepted is the next fetched (the right end). */
    CHECK_R(rstr("LINDEX {volq}:q -1"), res[0].job_id);
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, res[0].job_id);
    vq_job_free(j);
}

/* docs/queue.md promises <= 512 bytes of Redis memory per queued job, lock
 * and indexes included. */
static void test_queue_memory_per_queued_job(void)
{
    setup();
    enum { N = 10000 };
    static char disks[N][VQ_UUID_SIZE];
    static vq_accept_req reqs[N];
    static vq_accept_res res[N];
    for (int i = 0; i < N; i++) {
        vq_uuid_new(disks[i]);
        reqs[i] = req("amend", disks[i], NULL, "vm_disk_1");
    }
    made warm = amend(); /* scripts loaded, common keys exist */
    (void)warm;
    long long before = used_memory();
    CHECK_INT(vq_queue_accept(Q, reqs, N, res, NULL), 0);
    long long per_job = (used_memory() - before) / N;
    printf("# %lld bytes of Redis memory per queued job\n", per_job);
    CHECK(per_job <= 512);
}

/* Requests that carry what their caller read (holder_seen, idem_job_seen)
 * are not read again, and the script still checks them: a lock the caller
 * did not see answers locked. */
static void test_queue_accept_seen_not_read_again(void)
{
    setup();
    made a = amend();
    char disk[VQ_UUID_SIZE];
    vq_uuid_new(disk);
    vq_accept_req r[2] = {req("amend", a.disk, NULL, "a"), req("amend", disk, NULL, "b")};
    for (int i = 0; i < 2; i++) {
        r[i].holder_seen = "";
        r[i].idem_job_seen = "";
    }
    r[0].idem_key = "seen-a";
    r[1].idem_key = "seen-b";
    long long hmget = calls_of("hmget"), mget = calls_of("mget");
    vq_accept_res res[2];
    CHECK_INT(vq_queue_accept(Q, r, 2, res, NULL), 0);
    CHECK_INT(calls_of("hmget"), hmget);
    CHECK_INT(calls_of("mget"), mget);
    CHECK_INT(res[0].status, VQ_ACCEPT_LOCKED);
    CHECK_STR(res[0].job_id, a.id);
    CHECK_INT(res[1].status, VQ_ACCEPT_QUEUED);
    /* Without them, both are read (one pipeline): the same key answers its job. */
    vq_accept_req again = req("amend", disk, NULL, "b");
    again.idem_key = "seen-b";
    vq_accept_res ares;
    CHECK_INT(vq_queue_accept(Q, &again, 1, &ares, NULL), 0);
    CHECK_INT(calls_of("hmget"), hmget + 1);
    CHECK_INT(calls_of("mget"), mget + 1);
    CHECK_INT(ares.status, VQ_ACCEPT_IDEMPOTENT);
    CHECK_STR(ares.job_id, res[1].job_id);
}

static void test_queue_accept_locked_disk_refused(void)
{
    setup();
    made a = amend();
    long long keys = rint_("DBSIZE");
    size_t evs_before = event_count();
    vq_accept_req r = req("amend", a.disk, NULL, "vm1_Disk1");
    r.idem_key = "key-locked";
    vq_accept_res res;
    CHECK_INT(vq_queue_accept(Q, &r, 1, &res, NULL), 0);
    CHECK_INT(res.status, VQ_ACCEPT_LOCKED);
    CHECK_STR(res.job_id, a.id);
    /* Nothing recorded: no job, no event, no idempotency key. */
    CHECK_INT(rint_("DBSIZE"), keys);
    CHECK_INT(rint_("LLEN {volq}:q"), 1);
    CHECK_INT(event_count(), evs_before);
    CHECK_INT(rint_("EXISTS {volq}:idem:key-locked"), 0);
    /* A request refused at acceptance on a locked disk is "locked" too: no
     * failed job, no event. */
    vq_accept_req refused = req("amend", a.disk, NULL, "vm1_Disk1");
    refused.refusal = "the disk is in use";
    CHECK_INT(vq_queue_accept(Q, &refused, 1, &res, NULL), 0);
    CHECK_INT(res.status, VQ_ACCEPT_LOCKED);
    CHECK_STR(res.job_id, a.id);
    CHECK_INT(rint_("DBSIZE"), keys);
    CHECK_INT(event_count(), evs_before);
    /* A create-volume on the same disk is refused too. */
    char vol[VQ_UUID_SIZE];
    vq_uuid_new(vol);
    vq_accept_req c = req("create-volume", a.disk, vol, "x");
    CHECK_INT(vq_queue_accept(Q, &c, 1, &res, NULL), 0);
    CHECK_INT(res.status, VQ_ACCEPT_LOCKED);
    CHECK_STR(res.job_id, a.id);
    /* Two requests for one disk in one bulk: the second meets the first. */
    char disk[VQ_UUID_SIZE];
    vq_uuid_new(disk);
    vq_accept_req two[2] = {req("amend", disk, NULL, "a"), req("amend", disk, NULL, "a")};
    vq_accept_res tres[2];
    CHECK_INT(vq_queue_accept(Q, two, 2, tres, NULL), 0);
    CHECK_INT(tres[0].status, VQ_ACCEPT_QUEUED);
    CHECK_INT(tres[1].status, VQ_ACCEPT_LOCKED);
    CHECK_STR(tres[1].job_id, tres[0].job_id);
}

static void test_queue_accept_refusal_recorded(void)
{
    setup();
    char disk[VQ_UUID_SIZE];
    vq_uuid_new(disk);
    vq_accept_req r = req("amend", disk, NULL, "tmpl_disk");
    r.refusal = "the disk is a template disk";
    vq_accept_res res;
    CHECK_INT(vq_queue_accept(Q, &r, 1, &res, NULL), 0);
    CHECK_INT(res.status, VQ_ACCEPT_REFUSED);
    CHECK_R(state_of(res.job_id), "failed");
    CHECK_R(rstr("HGET {volq}:job:%s r", res.job_id), "the disk is a template disk");
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", disk), 0);
    CHECK_INT(rint_("LLEN {volq}:q"), 0);
    /* The end-state index is scored by the end time (u), here the acceptance. */
    CHECK(field_int(res.job_id, "u") > 0);
    CHECK_INT(rint_("ZSCORE {volq}:st:failed %s", res.job_id), field_int(res.job_id, "u"));
    CHECK_INT(rint_("EXISTS {volq}:ended"), 0);
    json_t *ev = last_event();
    check_event(ev, "USER_AMEND_IMAGE_FINISH_FAILURE", "error", "Failed to amend tmpl_disk.",
                "amend", res.job_id, disk, "the disk is a template disk");
    json_decref(ev);
    /* The disk is free: a later request is accepted. */
    vq_accept_req again = req("amend", disk, NULL, "tmpl_disk");
    CHECK_INT(vq_queue_accept(Q, &again, 1, &res, NULL), 0);
    CHECK_INT(res.status, VQ_ACCEPT_QUEUED);
}

static void test_queue_accept_idempotency_key(void)
{
    setup();
    char d1[VQ_UUID_SIZE], d2[VQ_UUID_SIZE];
    vq_uuid_new(d1);
    vq_uuid_new(d2);
    vq_accept_req r = req("amend", d1, NULL, "a");
    r.idem_key = "req-7";
    vq_accept_res first, again;
    CHECK_INT(vq_queue_accept(Q, &r, 1, &first, NULL), 0);
    CHECK_INT(first.status, VQ_ACCEPT_QUEUED);
    CHECK_INT(vq_queue_accept(Q, &r, 1, &again, NULL), 0);
    CHECK_INT(again.status, VQ_ACCEPT_IDEMPOTENT);
    CHECK_STR(again.job_id, first.job_id);
    /* Same key, another disk: still the first job, nothing new. */
    vq_accept_req other = req("amend", d2, NULL, "b");
    other.idem_key = "req-7";
    CHECK_INT(vq_queue_accept(Q, &other, 1, &again, NULL), 0);
    CHECK_INT(again.status, VQ_ACCEPT_IDEMPOTENT);
    CHECK_STR(again.job_id, first.job_id);
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", d2), 0);
    long long ttl = rint_("TTL {volq}:idem:req-7");
    CHECK(ttl > 86300 && ttl <= 86400);
    /* Once the job it made is gone (trimmed), the key makes a new one. */
    freeReplyObject(rcmd("DEL {volq}:job:%s", first.job_id));
    CHECK_INT(vq_queue_accept(Q, &other, 1, &again, NULL), 0);
    CHECK_INT(again.status, VQ_ACCEPT_QUEUED);
    CHECK(strcmp(again.job_id, first.job_id) != 0);
    CHECK_R(rstr("GET {volq}:idem:req-7"), again.job_id);
}

static void test_queue_accept_invalid_records_nothing(void)
{
    setup();
    char disk[VQ_UUID_SIZE];
    vq_uuid_new(disk);
    vq_accept_req r[2] = {req("amend", disk, NULL, "a"), req("resize", disk, NULL, "a")};
    vq_accept_res res[2];
    vq_error e = {0};
    CHECK_INT(vq_queue_accept(Q, r, 2, res, &e), VQ_EINVAL);
    CHECK_STR(e.text, "request 1: unknown kind resize");
    vq_accept_req bad = req("amend", "../../etc", NULL, "a");
    vq_error e2 = {0};
    CHECK_INT(vq_queue_accept(Q, &bad, 1, res, &e2), VQ_EINVAL);
    CHECK_STR(e2.text, "request 0: domain and disk must be UUIDs");
    vq_accept_req novol = req("create-volume", disk, NULL, "a");
    vq_error e3 = {0};
    CHECK_INT(vq_queue_accept(Q, &novol, 1, res, &e3), VQ_EINVAL);
    CHECK_STR(e3.text, "request 0: volume_id must be a UUID for create-volume only");
    CHECK_INT(rint_("DBSIZE"), 0);
}

/* ---- a job's life ------------------------------------------------------- */

static void test_queue_fetch_progress_success(void)
{
    setup();
    made m = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, m.id);
    CHECK_INT(j->state, VQ_JOB_RUNNING);
    CHECK_INT(j->attempts, 1);
    CHECK_STR(j->worker, W1);
    CHECK_STR(j->alias, "vm1_Disk1");
    CHECK(j->token > 0);
    CHECK_INT(field_int(m.id, "tk"), (long long)j->token);
    CHECK_INT(rint_("LLEN {volq}:q"), 0);
    CHECK_R(rstr("LINDEX {volq}:proc:" W1 " 0"), m.id);
    long long lease = rint_("ZSCORE {volq}:running %s", m.id);
    CHECK(lease >= j->updated + CFG.lease_ms && lease <= j->updated + CFG.lease_ms + 5);
    CHECK_R(rstr("HGET {volq}:wjob " W1), m.id);
    json_t *ev = last_event();
    check_event(ev, "USER_AMEND_IMAGE_START", "normal", "Started to amend vm1_Disk1", "amend", m.id,
                m.disk, NULL);
    json_decref(ev);

    CHECK_INT(vq_queue_progress(Q, j, 1, 2, NULL), 0);
    CHECK_INT(field_int(m.id, "d"), 1);
    CHECK_INT(field_int(m.id, "t"), 2);
    vq_error pe = {0};
    CHECK_INT(vq_queue_progress(Q, j, 3, 2, &pe), VQ_EINVAL);
    freeReplyObject(rcmd("ZADD {volq}:running 5 %s", m.id));
    CHECK_INT(vq_queue_heartbeat(Q, j, NULL), 0);
    CHECK(rint_("ZSCORE {volq}:running %s", m.id) > j->updated);

    CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    CHECK_R(state_of(m.id), "succeeded");
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", m.disk), 0);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 0);
    CHECK_INT(rint_("ZCARD {volq}:running"), 0);
    /* Indexed by end time: the job's u, written when it ended. */
    long long ended = field_int(m.id, "u");
    CHECK(ended >= j->updated);
    CHECK_INT(rint_("ZSCORE {volq}:st:succeeded %s", m.id), ended);
    CHECK_INT(rint_("EXISTS {volq}:ended"), 0);
    CHECK_R(rstr("HGET {volq}:wjob " W1), "");
    ev = last_event();
    check_event(ev, "USER_AMEND_IMAGE_FINISH_SUCCESS", "normal",
                "vm1_Disk1 has been amended successfully.", "amend", m.id, m.disk, NULL);
    json_decref(ev);
    CHECK_INT(event_count(), 2);
    /* A second finish of the same attempt is fenced. */
    vq_error e = {0};
    CHECK_INT(vq_queue_finish(Q, j, VQ_OUT_SUCCESS, NULL, NULL, &e), VQ_ESTALE);
    vq_job_free(j);
}

static void test_queue_fetch_waits_then_times_out(void)
{
    setup();
    vq_job *j = (vq_job *)1;
    long long t0 = t_now_ms();
    CHECK_INT(vq_queue_fetch(Q, W1, 300, &j, NULL), 0);
    CHECK(j == NULL);
    CHECK(t_now_ms() - t0 >= 250);
    /* The fetch registered the worker. */
    CHECK(rint_("ZSCORE {volq}:workers " W1) > 0);
    /* A job accepted while a worker waits wakes it at once. */
    pid_t child = fork();
    if (child == 0) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL); /* lets the parent block first */
        vq_queue *q2 = open_queue();
        char disk[VQ_UUID_SIZE];
        vq_uuid_new(disk);
        vq_accept_req r = req("amend", disk, NULL, "late");
        vq_accept_res res;
        _exit(vq_queue_accept(q2, &r, 1, &res, NULL) == 0 ? 0 : 1);
    }
    t0 = t_now_ms();
    CHECK_INT(vq_queue_fetch(Q, W1, 8000, &j, NULL), 0);
    REQUIRE(j);
    CHECK_STR(j->alias, "late");
    CHECK(t_now_ms() - t0 < 6000);
    int st;
    waitpid(child, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    vq_job_free(j);
}

static void test_queue_create_volume_events(void)
{
    setup();
    made a = create_volume(), b = create_volume();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->volume_id, a.vol);
    CHECK_INT(event_count(), 0); /* no start event for create-volume */
    CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    json_t *ev = last_event();
    char msg[256];
    snprintf(msg, sizeof msg, "Volume %s of disk data_disk has been created successfully.", a.vol);
    check_event(ev, "VOLQ_CREATE_VOLUME_SUCCESS", "normal", msg, "create-volume", a.id, a.disk, NULL);
    json_decref(ev);
    vq_job_free(j);
    j = fetch(W1);
    REQUIRE(j);
    CHECK_INT(finish(j, VQ_OUT_REFUSED, "parent volume is ILLEGAL"), VQ_JOB_FAILED);
    ev = last_event();
    snprintf(msg, sizeof msg, "Failed to create volume %s of disk data_disk.", b.vol);
    check_event(ev, "VOLQ_CREATE_VOLUME_FAILURE", "error", msg, "create-volume", b.id, b.disk,
                "parent volume is ILLEGAL");
    json_decref(ev);
    vq_job_free(j);
}

static void test_queue_finish_refused_not_retried(void)
{
    setup();
    made m = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_INT(finish(j, VQ_OUT_REFUSED, "the disk is in use"), VQ_JOB_FAILED);
    CHECK_R(state_of(m.id), "failed");
    CHECK_R(rstr("HGET {volq}:job:%s r", m.id), "the disk is in use");
    CHECK_R(rstr("HGET {volq}:job:%s e", m.id), "[\"the disk is in use\"]");
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", m.disk), 0);
    CHECK_INT(rint_("ZCARD {volq}:due"), 0);
    CHECK_INT(rint_("ZCARD {volq}:running"), 0);
    CHECK(field_int(m.id, "u") >= j->updated);
    CHECK_INT(rint_("ZSCORE {volq}:st:failed %s", m.id), field_int(m.id, "u"));
    json_t *ev = last_event();
    check_event(ev, "USER_AMEND_IMAGE_FINISH_FAILURE", "error", "Failed to amend vm1_Disk1.",
                "amend", m.id, m.disk, "the disk is in use");
    json_decref(ev);
    vq_job_free(j);
}

/* Reasons reach JSON (errors, events): one line of valid UTF-8, 512 bytes at most. */
static void test_queue_reason_cleaned(void)
{
    setup();
    made m = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_INT(finish(j, VQ_OUT_RETRY, "bad \xff\xfe bytes\nline two \xc3\xa9"), VQ_JOB_RETRYING);
    vq_job_free(j);
    vq_job *got = NULL;
    CHECK_INT(vq_queue_get(Q, m.id, &got, NULL), 0);
    REQUIRE(got);
    CHECK_STR(json_string_value(json_array_get(got->errors, 0)), "bad ?? bytes line two \xc3\xa9");
    vq_job_free(got);
    make_due(m.id);
    j = fetch(W1);
    REQUIRE(j);
    char longr[2000];
    memset(longr, 'x', sizeof longr - 1);
    longr[sizeof longr - 1] = '\0';
    CHECK_INT(finish(j, VQ_OUT_REFUSED, longr), VQ_JOB_FAILED);
    vq_job_free(j);
    CHECK_INT(rint_("HSTRLEN {volq}:job:%s r", m.id), 512);
    json_t *ev = last_event();
    CHECK_INT(strlen(evs(ev, "reason")), 512);
    json_decref(ev);
}

/* Checks a retrying job: lock held, in due with next_attempt = updated + the
 * backoff of `attempt` (±20%), out of running and of the worker's list. */
static void check_retrying(const made *m, int attempt)
{
    CHECK_R(state_of(m->id), "retrying");
    CHECK_R(rstr("HGET {volq}:locks %s", m->disk), m->id);
    long long n = field_int(m->id, "n"), u = field_int(m->id, "u");
    long long base = 1000LL << (attempt - 1);
    CHECK(n - u >= base * 8 / 10 && n - u <= base * 12 / 10);
    CHECK_INT(rint_("ZSCORE {volq}:due %s", m->id), n);
    CHECK_INT(rint_("ZCARD {volq}:running"), 0);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 0);
    vq_job *j = NULL;
    REQUIRE(vq_queue_get(Q, m->id, &j, NULL) == 0);
    json_t *o = vq_job_json(j);
    char when[32];
    vq_time_format(n, when);
    CHECK_STR(json_string_value(json_object_get(o, "next_attempt")), when);
    json_decref(o);
    vq_job_free(j);
}

static void test_queue_retry_backoff_then_failed(void)
{
    setup();
    made m = amend();
    const char *lines[] = {"qemu-img exited 1", "qemu-img exited 2", "qemu-img exited 3"};
    for (int attempt = 1; attempt <= 3; attempt++) {
        vq_job *j = fetch(W1);
        REQUIRE(j);
        CHECK_STR(j->id, m.id);
        CHECK_INT(j->attempts, attempt);
        vq_job_state st = finish(j, VQ_OUT_RETRY, lines[attempt - 1]);
        vq_job_free(j);
        if (attempt < 3) {
            CHECK_INT(st, VQ_JOB_RETRYING);
            check_retrying(&m, attempt);
            CHECK_INT(rint_("LLEN {volq}:q"), 0);
            make_due(m.id);
            CHECK_R(state_of(m.id), "queued");
            CHECK_INT(rint_("HEXISTS {volq}:job:%s n", m.id), 0);
        } else {
            CHECK_INT(st, VQ_JOB_FAILED);
        }
    }
    CHECK_R(state_of(m.id), "failed");
    CHECK_R(rstr("HGET {volq}:job:%s r", m.id), "qemu-img exited 3");
    CHECK_R(rstr("HGET {volq}:job:%s e", m.id),
            "[\"qemu-img exited 1\",\"qemu-img exited 2\",\"qemu-img exited 3\"]");
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", m.disk), 0);
    CHECK_INT(rint_("ZCARD {volq}:due"), 0);
    /* Events: one start (first attempt only) and one failure. */
    json_t *a = events();
    CHECK_INT(json_array_size(a), 2);
    CHECK_STR(evs(json_array_get(a, 0), "type"), "USER_AMEND_IMAGE_START");
    check_event(json_array_get(a, 1), "USER_AMEND_IMAGE_FINISH_FAILURE", "error",
                "Failed to amend vm1_Disk1.", "amend", m.id, m.disk, "qemu-img exited 3");
    json_decref(a);
}

static void test_queue_due_retry_promotion(void)
{
    setup();
    made first = amend(), m = amend();
    vq_job *j = fetch(W1); /* first */
    vq_job *k = fetch(W1); /* m */
    REQUIRE(j && k);
    CHECK_INT(finish(k, VQ_OUT_RETRY, "busy"), VQ_JOB_RETRYING);
    vq_job_free(k);
    made later = amend();
    /* Not due yet: housekeeping leaves it. */
    size_t moved = 99;
    CHECK_INT(vq_queue_housekeep(Q, &moved, NULL), 0);
    CHECK_INT(moved, 0);
    CHECK_R(state_of(m.id), "retrying");
    make_due(m.id);
    CHECK_R(state_of(m.id), "queued");
    CHECK_INT(rint_("ZCARD {volq}:due"), 0);
    /* Back of the queue: after the job accepted meanwhile. */
    CHECK_R(rstr("LINDEX {volq}:q 0"), m.id);
    CHECK_R(rstr("LINDEX {volq}:q -1"), later.id);
    CHECK_R(rstr("HGET {volq}:locks %s", m.disk), m.id);
    (void)first;
    vq_job_free(j);
}

/* ---- cancel and manual retry ------------------------------------------- */

static void test_queue_cancel(void)
{
    setup();
    made done = amend(), r1 = amend(), run = amend();
    /* done -> succeeded, r1 -> retrying, run -> running */
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, done.id);
    CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    vq_job_free(j);
    j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, r1.id);
    CHECK_INT(finish(j, VQ_OUT_RETRY, "busy"), VQ_JOB_RETRYING);
    vq_job_free(j);
    vq_job *running = fetch(W1);
    REQUIRE(running);
    CHECK_STR(running->id, run.id);

    made q2 = amend();
    size_t before = event_count();
    CHECK_INT(vq_queue_cancel(Q, q2.id, NULL), 0);
    CHECK_R(state_of(q2.id), "cancelled");
    CHECK_R(rstr("HGET {volq}:job:%s r", q2.id), "cancelled by the administrator");
    CHECK_INT(rint_("LLEN {volq}:q"), 0);
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", q2.disk), 0);
    CHECK(field_int(q2.id, "u") >= field_int(q2.id, "c"));
    CHECK_INT(rint_("ZSCORE {volq}:st:cancelled %s", q2.id), field_int(q2.id, "u"));
    json_t *ev = last_event();
    check_event(ev, "USER_AMEND_IMAGE_FINISH_FAILURE", "error", "Failed to amend vm1_Disk1.",
                "amend", q2.id, q2.disk, "cancelled by the administrator");
    json_decref(ev);
    CHECK_INT(event_count(), before + 1);

    CHECK_INT(vq_queue_cancel(Q, r1.id, NULL), 0);
    CHECK_R(state_of(r1.id), "cancelled");
    CHECK_INT(rint_("ZCARD {volq}:due"), 0);
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", r1.disk), 0);

    vq_error e = {0};
    CHECK_INT(vq_queue_cancel(Q, run.id, &e), VQ_ESTATE);
    char want[160];
    snprintf(want, sizeof want, "job %s: is running; only a queued or retrying job can be cancelled",
             run.id);
    CHECK_STR(e.text, want);
    CHECK_R(state_of(run.id), "running");
    CHECK_R(rstr("HGET {volq}:locks %s", run.disk), run.id);
    vq_error e2 = {0};
    CHECK_INT(vq_queue_cancel(Q, q2.id, &e2), VQ_ESTATE);
    char unknown[VQ_UUID_SIZE];
    vq_uuid_new(unknown);
    CHECK_INT(vq_queue_cancel(Q, unknown, NULL), VQ_ENOENT);
    CHECK_INT(vq_queue_cancel(Q, "nope", NULL), VQ_EINVAL);
    vq_job_free(running);
}

/* A cancelled job whose id is still in the queue (cancelled between the move
 * and the start) is skipped and leaves the worker's list. */
static void test_queue_fetch_skips_cancelled(void)
{
    setup();
    made a = amend(), b = amend();
    CHECK_INT(vq_queue_cancel(Q, a.id, NULL), 0);
    freeReplyObject(rcmd("RPUSH {volq}:q %s", a.id));
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, b.id);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 1);
    CHECK_R(rstr("LINDEX {volq}:proc:" W1 " 0"), b.id);
    CHECK_INT(rint_("LLEN {volq}:q"), 0);
    CHECK_R(state_of(a.id), "cancelled");
    vq_job_free(j);
}

/* Makes a failed job (refused at its first attempt). */
static made failed_job(void)
{
    made m = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, m.id);
    CHECK_INT(finish(j, VQ_OUT_REFUSED, "the disk is in use"), VQ_JOB_FAILED);
    vq_job_free(j);
    return m;
}

static void test_queue_manual_retry(void)
{
    setup();
    made m = failed_job();
    CHECK_INT(vq_queue_retry(Q, m.id, NULL), 0);
    CHECK_R(state_of(m.id), "queued");
    CHECK_INT(field_int(m.id, "a"), 0);
    CHECK_INT(rint_("HEXISTS {volq}:job:%s r", m.id), 0);
    CHECK_R(rstr("HGET {volq}:job:%s e", m.id), "[\"the disk is in use\"]");
    CHECK_R(rstr("HGET {volq}:locks %s", m.disk), m.id);
    CHECK_R(rstr("LINDEX {volq}:q 0"), m.id);
    CHECK_INT(rint_("ZSCORE {volq}:st:failed %s", m.id), -1);
    vq_error e = {0};
    CHECK_INT(vq_queue_retry(Q, m.id, &e), VQ_ESTATE);
    char want[160];
    snprintf(want, sizeof want, "job %s: is queued; only a failed job can be retried", m.id);
    CHECK_STR(e.text, want);
    /* The retried job runs again, with a start event again. */
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, m.id);
    CHECK_INT(j->attempts, 1);
    CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    vq_job_free(j);
}

static void test_queue_retry_refused_while_disk_locked(void)
{
    setup();
    made m = failed_job();
    /* Another job took the disk meanwhile. */
    vq_accept_req r = req("amend", m.disk, NULL, "vm1_Disk1");
    vq_accept_res res;
    CHECK_INT(vq_queue_accept(Q, &r, 1, &res, NULL), 0);
    CHECK_INT(res.status, VQ_ACCEPT_QUEUED);
    vq_error e = {0};
    CHECK_INT(vq_queue_retry(Q, m.id, &e), VQ_ELOCKED);
    char want[160];
    snprintf(want, sizeof want, "job %s: its disk is locked by job %s", m.id, res.job_id);
    CHECK_STR(e.text, want);
    CHECK_R(state_of(m.id), "failed");
    CHECK_R(rstr("HGET {volq}:locks %s", m.disk), res.job_id);
    /* Once that job ended, the retry takes the lock. */
    CHECK_INT(vq_queue_cancel(Q, res.job_id, NULL), 0);
    CHECK_INT(vq_queue_retry(Q, m.id, NULL), 0);
    CHECK_R(rstr("HGET {volq}:locks %s", m.disk), m.id);
    CHECK_INT(vq_queue_cancel(Q, m.id, NULL), 0);
    /* A stale lock (its job ended, the entry left behind) does not block. */
    made f2 = failed_job();
    freeReplyObject(rcmd("HSET {volq}:locks %s %s", f2.disk, res.job_id));
    CHECK_INT(vq_queue_retry(Q, f2.id, NULL), 0);
    CHECK_R(rstr("HGET {volq}:locks %s", f2.disk), f2.id);
}

static void test_queue_retry_all_failed(void)
{
    setup();
    made a = failed_job(), b = failed_job(), c = failed_job();
    vq_accept_req r = req("amend", c.disk, NULL, "x");
    vq_accept_res res;
    CHECK_INT(vq_queue_accept(Q, &r, 1, &res, NULL), 0);
    size_t retried = 0, left = 0;
    CHECK_INT(vq_queue_retry_failed(Q, &retried, &left, NULL), 0);
    CHECK_INT(retried, 2);
    CHECK_INT(left, 1);
    CHECK_R(state_of(a.id), "queued");
    CHECK_R(state_of(b.id), "queued");
    CHECK_R(state_of(c.id), "failed");
    CHECK_INT(rint_("ZCARD {volq}:st:failed"), 1);
    CHECK_R(rstr("HGET {volq}:locks %s", a.disk), a.id);
}

/* ---- fencing and crashes ------------------------------------------------ */

static char *job_dump(const char *id)
{
    redisReply *rep = rcmd("HGETALL {volq}:job:%s", id);
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
        json_object_set_new(o, rep->element[i]->str, json_string(rep->element[i + 1]->str));
    freeReplyObject(rep);
    char *s = json_dumps(o, JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static void expect_fenced(vq_job *stale, const char *id)
{
    char *before = job_dump(id);
    size_t evs = event_count();
    long long lease = rint_("ZSCORE {volq}:running %s", id);
    vq_error e1 = {0}, e2 = {0}, e3 = {0};
    CHECK_INT(vq_queue_finish(Q, stale, VQ_OUT_SUCCESS, NULL, NULL, &e1), VQ_ESTALE);
    CHECK_INT(vq_queue_progress(Q, stale, 1, 1, &e2), VQ_ESTALE);
    CHECK_INT(vq_queue_heartbeat(Q, stale, &e3), VQ_ESTALE);
    char want[160];
    snprintf(want, sizeof want, "job %s: attempt %llu was fenced (requeued or ended)", id,
             (unsigned long long)stale->token);
    CHECK_STR(e1.text, want);
    char *after = job_dump(id);
    CHECK_STR(after, before);
    CHECK_INT(event_count(), evs);
    CHECK_INT(rint_("ZSCORE {volq}:running %s", id), lease);
    free(before);
    free(after);
}

static void test_queue_fencing_stale_token(void)
{
    setup();
    made m = amend();
    vq_job *old = fetch(W1);
    REQUIRE(old);
    int n = -1;
    CHECK_INT(vq_queue_requeue_worker(Q, W1, &n, NULL), 0);
    CHECK_INT(n, 1);
    expect_fenced(old, m.id); /* queued again */
    vq_job *cur = fetch(W2);
    REQUIRE(cur);
    CHECK_STR(cur->id, m.id);
    CHECK(cur->token > old->token);
    expect_fenced(old, m.id); /* running under W2 */
    CHECK_R(rstr("HGET {volq}:job:%s w", m.id), W2);
    CHECK_INT(finish(cur, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    expect_fenced(old, m.id); /* ended */
    vq_job_free(old);
    vq_job_free(cur);
}

static void test_queue_requeue_worker_front(void)
{
    setup();
    made a = amend(), b = amend(), c = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, a.id);
    CHECK_INT(vq_queue_worker_beat(Q, W1, a.id, NULL), 0);
    int n = 0;
    CHECK_INT(vq_queue_requeue_worker(Q, W1, &n, NULL), 0);
    CHECK_INT(n, 1);
    CHECK_R(state_of(a.id), "queued");
    CHECK_INT(field_int(a.id, "cr"), 1);
    CHECK_INT(field_int(a.id, "a"), 0);
    CHECK_R(rstr("HGET {volq}:locks %s", a.disk), a.id);
    /* Front: the right end, taken before b and c. */
    CHECK_INT(rint_("LLEN {volq}:q"), 3);
    CHECK_R(rstr("LINDEX {volq}:q -1"), a.id);
    CHECK_R(rstr("LINDEX {volq}:q 0"), c.id);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 0);
    CHECK_INT(rint_("ZCARD {volq}:running"), 0);
    CHECK_INT(rint_("ZSCORE {volq}:workers " W1), -1);
    CHECK_INT(rint_("HEXISTS {volq}:wjob " W1), 0);
    vq_job *again = fetch(W2);
    REQUIRE(again);
    CHECK_STR(again->id, a.id);
    CHECK_INT(again->attempts, 1);
    CHECK_INT(again->crashes, 1);
    (void)b;
    vq_job_free(j);
    vq_job_free(again);
}

/* W1 takes job id (it must be the next) and dies with it: the jobs put back
 * by the requeue.  *taken (may be NULL) is the job as W1 got it (new). */
static int crash_with(const char *id, vq_job **taken)
{
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, id);
    if (taken) *taken = j;
    else vq_job_free(j);
    int n = -1;
    CHECK_INT(vq_queue_requeue_worker(Q, W1, &n, NULL), 0);
    return n;
}

static void test_queue_requeue_fails_at_max_crashes(void)
{
    setup();
    CFG.max_crashes = 2;
    reconfig();
    made m = amend();
    for (int crash = 1; crash <= 2; crash++) CHECK_INT(crash_with(m.id, NULL), crash < 2 ? 1 : 0);
    CHECK_R(state_of(m.id), "failed");
    CHECK_R(rstr("HGET {volq}:job:%s r", m.id), "worker died 2 times during this job");
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", m.disk), 0);
    CHECK_INT(rint_("LLEN {volq}:q"), 0);
    CHECK_INT(rint_("ZSCORE {volq}:st:failed %s", m.id), field_int(m.id, "u"));
    json_t *ev = last_event();
    check_event(ev, "USER_AMEND_IMAGE_FINISH_FAILURE", "error", "Failed to amend vm1_Disk1.",
                "amend", m.id, m.disk, "worker died 2 times during this job");
    json_decref(ev);
}

/* At max_crashes a create-volume goes back marked for its clean-up (cu, the
 * tries so far, seen by the worker as job->cleanup), keeping its lock, its
 * attempts reset, with no event; the clean-up cannot be cancelled; it has
 * three tries, then the job fails saying the volume may be half-made; a
 * retry by hand clears the mark. */
static void test_queue_requeue_create_volume_cleans_up_at_max_crashes(void)
{
    setup();
    CFG.max_crashes = 2;
    reconfig();
    made m = create_volume();
    for (int crash = 1; crash <= 5; crash++) {
        vq_job *j = NULL;
        CHECK_INT(crash_with(m.id, &j), crash < 5 ? 1 : 0);
        CHECK_INT(j->cleanup, crash >= 3 ? crash - 2 : 0);
        CHECK_INT(j->crashes, crash - 1);
        vq_job_free(j);
        if (crash == 2) {
            CHECK_R(state_of(m.id), "queued");
            CHECK_INT(field_int(m.id, "cu"), 1);
            CHECK_INT(field_int(m.id, "a"), 0);
            CHECK_R(rstr("HGET {volq}:locks %s", m.disk), m.id);
            CHECK_INT(event_count(), 0);
            vq_error e = {0};
            CHECK_INT(vq_queue_cancel(Q, m.id, &e), VQ_ESTATE);
            CHECK_CONTAINS(e.text, "cannot be cancelled");
            CHECK_R(state_of(m.id), "queued");
        }
    }
    CHECK_R(state_of(m.id), "failed");
    const char *want = "worker died 5 times during this job; its clean-up did not end: the "
                       "volume may be half-made";
    CHECK_R(rstr("HGET {volq}:job:%s r", m.id), want);
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", m.disk), 0);
    CHECK_INT(event_count(), 1);
    CHECK_INT(vq_queue_retry(Q, m.id, NULL), 0);
    CHECK_INT(rint_("HEXISTS {volq}:job:%s cu", m.id), 0);
    /* Crashes past a max_crashes lowered meanwhile still give the clean-up. */
    freeReplyObject(rcmd("HSET {volq}:job:%s cr 9", m.id));
    CHECK_INT(crash_with(m.id, NULL), 1);
    CHECK_INT(field_int(m.id, "cu"), 1);
    CHECK_R(state_of(m.id), "queued");
    freeReplyObject(rcmd("HSET {volq}:job:%s cr 0", m.id));
    freeReplyObject(rcmd("HDEL {volq}:job:%s cu", m.id));
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_INT(j->cleanup, 0);
    CHECK_INT(j->crashes, 0);
    vq_job_free(j);
}

/* A job moved into a worker's list but not started when it died goes back
 * without counting a crash; so does everything of a clean worker_gone, a job
 * started there too. */
static void test_queue_worker_gone_and_unstarted(void)
{
    setup();
    made m = amend();
    freeReplyObject(rcmd("LMOVE {volq}:q {volq}:proc:" W1 " RIGHT LEFT"));
    CHECK_INT(vq_queue_worker_beat(Q, W1, "", NULL), 0);
    CHECK_INT(vq_queue_worker_gone(Q, W1, NULL), 0);
    CHECK_R(state_of(m.id), "queued");
    CHECK_INT(field_int(m.id, "cr"), -1);
    CHECK_R(rstr("LINDEX {volq}:q -1"), m.id);
    CHECK_INT(rint_("ZSCORE {volq}:workers " W1), -1);
    CHECK_INT(rint_("EXISTS {volq}:proc:" W1), 0);
    /* A job it started but did not run (a stop during the fetch) goes back
     * without a crash, its attempt not counted. */
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, m.id);
    CHECK_INT(j->attempts, 1);
    CHECK_INT(vq_queue_worker_gone(Q, W1, NULL), 0);
    CHECK_R(state_of(m.id), "queued");
    CHECK_INT(field_int(m.id, "cr"), -1);
    CHECK_INT(field_int(m.id, "a"), 0);
    CHECK_INT(rint_("ZCARD {volq}:running"), 0);
    CHECK_R(rstr("LINDEX {volq}:q -1"), m.id);
    vq_job_free(j);
    vq_error e = {0};
    CHECK_INT(vq_queue_worker_beat(Q, "bad worker", "", &e), VQ_EINVAL);
    CHECK_STR(e.text, "worker id bad worker: spaces or control characters");
}

static void test_queue_lease_expiry_requeues(void)
{
    setup();
    CFG.lease_ms = 300;
    reconfig();
    made m = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    size_t moved = 9;
    CHECK_INT(vq_queue_housekeep(Q, &moved, NULL), 0);
    CHECK_INT(moved, 0);
    CHECK_R(state_of(m.id), "running");
    /* Heartbeats keep it: 1 s of beats and housekeeping, never moved. */
    long long until = t_now_ms() + 1000;
    while (t_now_ms() < until) {
        CHECK_INT(vq_queue_heartbeat(Q, j, NULL), 0);
        CHECK_INT(vq_queue_housekeep(Q, &moved, NULL), 0);
        CHECK_INT(moved, 0);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL); /* the beat interval */
    }
    /* Then silence: the lease runs out and the job goes back. */
    CHECK_INT(housekeep_until_moved(), 1);
    CHECK_R(state_of(m.id), "queued");
    CHECK_INT(field_int(m.id, "cr"), 1);
    CHECK_R(rstr("LINDEX {volq}:q -1"), m.id);
    CHECK_INT(rint_("ZCARD {volq}:running"), 0);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 0);
    CHECK_R(rstr("HGET {volq}:locks %s", m.disk), m.id);
    expect_fenced(j, m.id);
    vq_job_free(j);
}

static void test_queue_dead_worker_registration(void)
{
    setup();
    CFG.lease_ms = 300;
    reconfig();
    made m = amend();
    freeReplyObject(rcmd("LMOVE {volq}:q {volq}:proc:" W1 " RIGHT LEFT"));
    CHECK_INT(vq_queue_worker_beat(Q, W1, "", NULL), 0);
    CHECK_INT(vq_queue_worker_beat(Q, W2, "", NULL), 0);
    size_t moved = 9;
    CHECK_INT(vq_queue_housekeep(Q, &moved, NULL), 0);
    CHECK_INT(moved, 0);
    /* W1 goes silent for 3 leases; W2 keeps beating. */
    long long deadline = t_now_ms() + 5000;
    moved = 0;
    while (!moved && t_now_ms() < deadline) {
        CHECK_INT(vq_queue_worker_beat(Q, W2, "", NULL), 0);
        CHECK_INT(vq_queue_housekeep(Q, &moved, NULL), 0);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    CHECK_INT(moved, 1);
    CHECK_R(state_of(m.id), "queued");
    CHECK_R(rstr("LINDEX {volq}:q -1"), m.id);
    CHECK_INT(rint_("ZSCORE {volq}:workers " W1), -1);
    CHECK(rint_("ZSCORE {volq}:workers " W2) > 0);
}

/* Two schedulers housekeeping at once never move a job twice. */
static void test_queue_housekeep_two_schedulers(void)
{
    setup();
    CFG.lease_ms = 200;
    reconfig();
    enum { N = 200 };
    static char disks[N][VQ_UUID_SIZE];
    static vq_accept_req reqs[N];
    static vq_accept_res res[N];
    for (int i = 0; i < N; i++) {
        vq_uuid_new(disks[i]);
        reqs[i] = req("amend", disks[i], NULL, "d");
    }
    CHECK_INT(vq_queue_accept(Q, reqs, N, res, NULL), 0);
    for (int i = 0; i < N; i++) {
        vq_job *j = fetch(i % 2 ? W1 : W2);
        REQUIRE(j);
        vq_job_free(j);
    }
    CHECK_INT(rint_("ZCARD {volq}:running"), N);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            vq_queue *q = open_queue();
            long long until = t_now_ms() + 1500;
            while (t_now_ms() < until)
                if (vq_queue_housekeep(q, NULL, NULL) != 0) _exit(1);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_INT(rint_("LLEN {volq}:q"), N);
    CHECK_INT(rint_("ZCARD {volq}:running"), 0);
    for (int i = 0; i < N; i++) {
        CHECK_INT(field_int(res[i].job_id, "cr"), 1);
    }
    /* Each id exactly once in the queue. */
    redisReply *rep = rcmd("LRANGE {volq}:q 0 -1");
    json_t *seen = json_object();
    for (size_t i = 0; i < rep->elements; i++) {
        if (json_object_get(seen, rep->element[i]->str)) T_FAIL_("%s twice", rep->element[i]->str);
        json_object_set_new(seen, rep->element[i]->str, json_true());
    }
    CHECK_INT(json_object_size(seen), N);
    json_decref(seen);
    freeReplyObject(rep);
}

/* ---- retention, repair -------------------------------------------------- */

/* Sets the end time of an ended job in its end-state index (its u too, so
 * that repair finds nothing to change). */
static void set_ended_at(const char *state, const char *id, long long at)
{
    freeReplyObject(rcmd("HSET {volq}:job:%s u %lld", id, at));
    freeReplyObject(rcmd("ZADD {volq}:st:%s %lld %s", state, at, id));
}

static void test_queue_trim_by_count_and_age(void)
{
    setup();
    CFG.keep_finished_max = 3;
    reconfig();
    made done[5];
    long long now = vq_now_ms();
    for (int i = 0; i < 5; i++) {
        done[i] = amend();
        vq_job *j = fetch(W1);
        REQUIRE(j);
        CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
        vq_job_free(j);
        /* Distinct end times, oldest first. */
        set_ended_at("succeeded", done[i].id, now - 10000 + i);
    }
    made live = amend();
    CHECK_INT(vq_queue_housekeep(Q, NULL, NULL), 0);
    CHECK_INT(rint_("ZCARD {volq}:st:succeeded"), 3);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", done[0].id), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", done[1].id), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", done[2].id), 1);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", live.id), 1);
    /* By age: ended more than keep_finished_s ago. */
    CFG.keep_finished_max = 100;
    CFG.keep_finished_s = 3600;
    reconfig();
    set_ended_at("succeeded", done[2].id, now - 3601 * 1000LL);
    CHECK_INT(vq_queue_housekeep(Q, NULL, NULL), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", done[2].id), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", done[3].id), 1);
    CHECK_INT(rint_("ZCARD {volq}:st:succeeded"), 2);
    /* A live job listed in an ended index by mistake is never deleted. */
    freeReplyObject(rcmd("ZADD {volq}:st:succeeded 1 %s", live.id));
    CHECK_INT(vq_queue_housekeep(Q, NULL, NULL), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", live.id), 1);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", done[3].id), 1);
}

/* Retention over the three end states together: oldest by end time, equal
 * end times in the order succeeded, failed, cancelled. */
static void test_queue_trim_across_end_states(void)
{
    setup();
    made s1 = amend(), s2 = amend();
    for (int i = 0; i < 2; i++) {
        vq_job *j = fetch(W1);
        REQUIRE(j);
        CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
        vq_job_free(j);
    }
    made f1 = failed_job(), f2 = failed_job();
    made c1 = amend(), c2 = amend();
    CHECK_INT(vq_queue_cancel(Q, c1.id, NULL), 0);
    CHECK_INT(vq_queue_cancel(Q, c2.id, NULL), 0);
    long long t = vq_now_ms() - 100000;
    /* Oldest first: s1, f1, c1 (all at t), f2, s2, c2. */
    set_ended_at("succeeded", s1.id, t);
    set_ended_at("failed", f1.id, t);
    set_ended_at("cancelled", c1.id, t);
    set_ended_at("failed", f2.id, t + 1000);
    set_ended_at("succeeded", s2.id, t + 2000);
    set_ended_at("cancelled", c2.id, t + 3000);
    const made *order[] = {&s1, &f1, &c1, &f2, &s2, &c2};
    /* Each smaller cap deletes exactly the next one in that order. */
    for (int kept = 5; kept >= 2; kept--) {
        CFG.keep_finished_max = kept;
        reconfig();
        CHECK_INT(vq_queue_housekeep(Q, NULL, NULL), 0);
        for (int i = 0; i < 6; i++)
            CHECK_INT(rint_("EXISTS {volq}:job:%s", order[i]->id), i >= 6 - kept);
        CHECK_INT(rint_("ZCARD {volq}:st:succeeded") + rint_("ZCARD {volq}:st:failed") +
                      rint_("ZCARD {volq}:st:cancelled"), kept);
    }
    /* By age, in whichever index: c2 ended before the cutoff, s2 after it. */
    CFG.keep_finished_max = 100;
    CFG.keep_finished_s = 3600;
    reconfig();
    set_ended_at("cancelled", c2.id, vq_now_ms() - 3601 * 1000LL);
    CHECK_INT(vq_queue_housekeep(Q, NULL, NULL), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", c2.id), 0);
    CHECK_INT(rint_("ZCARD {volq}:st:cancelled"), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", s2.id), 1);
    CHECK_INT(rint_("ZCARD {volq}:st:succeeded"), 1);
}

/* More than one batch (VQ_BATCH, 500) of ended jobs past the cap: each call
 * goes on over several batches, oldest first, across the indexes. */
static void test_queue_trim_batches(void)
{
    setup();
    enum { N = 1300, KEEP = 100 };
    static char disks[N][VQ_UUID_SIZE];
    static vq_accept_req reqs[N];
    static vq_accept_res res[N];
    for (int i = 0; i < N; i++) {
        vq_uuid_new(disks[i]);
        reqs[i] = req("amend", disks[i], NULL, "d");
        reqs[i].refusal = "refused"; /* failed at once */
    }
    CHECK_INT(vq_queue_accept(Q, reqs, N, res, NULL), 0);
    CHECK_INT(rint_("ZCARD {volq}:st:failed"), N);
    /* End times: every third job moved to succeeded, every third to
     * cancelled; job i ended at t + i. */
    long long t = vq_now_ms() - 100000;
    const char *st[] = {"failed", "succeeded", "cancelled"};
    for (int i = 0; i < N; i++) {
        if (i % 3) {
            freeReplyObject(rcmd("ZREM {volq}:st:failed %s", res[i].job_id));
            freeReplyObject(rcmd("HSET {volq}:job:%s s %s", res[i].job_id, st[i % 3]));
        }
        set_ended_at(st[i % 3], res[i].job_id, t + i);
    }
    CFG.keep_finished_max = KEEP;
    reconfig();
    CHECK_INT(vq_queue_housekeep(Q, NULL, NULL), 0);
    CHECK_INT(rint_("ZCARD {volq}:st:succeeded") + rint_("ZCARD {volq}:st:failed") +
                  rint_("ZCARD {volq}:st:cancelled"), KEEP);
    int kept_wrong = 0;
    for (int i = 0; i < N; i++)
        kept_wrong += rint_("EXISTS {volq}:job:%s", res[i].job_id) != (i >= N - KEEP);
    CHECK_INT(kept_wrong, 0);
}

static void test_queue_repair_injected(void)
{
    setup();
    made done = failed_job();
    made lockless = amend(), twice = amend(), nolist = amend();
    char ghost[VQ_UUID_SIZE], gdisk[VQ_UUID_SIZE], ddisk[VQ_UUID_SIZE];
    vq_uuid_new(ghost);
    vq_uuid_new(gdisk);
    vq_uuid_new(ddisk);
    /* (1) a lock whose job does not exist, (2) a lock of an ended job */
    freeReplyObject(rcmd("HSET {volq}:locks %s %s", gdisk, ghost));
    freeReplyObject(rcmd("HSET {volq}:locks %s %s", ddisk, done.id));
    /* (3) a live job without its lock */
    freeReplyObject(rcmd("HDEL {volq}:locks %s", lockless.disk));
    /* (4) a queued job also in an ended index */
    freeReplyObject(rcmd("ZADD {volq}:st:succeeded 1 %s", twice.id));
    /* (5) an ended job also in the queue */
    freeReplyObject(rcmd("LPUSH {volq}:q %s", done.id));
    /* (6) an index entry of a job that does not exist */
    freeReplyObject(rcmd("ZADD {volq}:due 1 %s", ghost));
    /* (7) a queued job in no list at all */
    freeReplyObject(rcmd("LREM {volq}:q 0 %s", nolist.id));
    size_t fixed = 0;
    vq_error e = {0};
    CHECK_INT(vq_queue_repair(Q, &fixed, &e), 0);
    CHECK_INT(fixed, 7);
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", gdisk), 0);
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", ddisk), 0);
    CHECK_R(rstr("HGET {volq}:locks %s", lockless.disk), lockless.id);
    CHECK_INT(rint_("ZSCORE {volq}:st:succeeded %s", twice.id), -1);
    CHECK_INT(rint_("LPOS {volq}:q %s", done.id), -1);
    CHECK_INT(rint_("ZSCORE {volq}:due %s", ghost), -1);
    CHECK(rint_("LPOS {volq}:q %s", nolist.id) >= 0);
    CHECK_R(state_of(done.id), "failed");
    CHECK(rint_("ZSCORE {volq}:st:failed %s", done.id) > 0);
    /* Nothing left to fix. */
    CHECK_INT(vq_queue_repair(Q, &fixed, NULL), 0);
    CHECK_INT(fixed, 0);
}

/* An earlier version indexed ended jobs by created time in st:* and by end
 * time in {volq}:ended.  Repair at start-up scores st:* by end time and
 * deletes {volq}:ended, so the upgrade is made in place. */
static void test_queue_repair_upgrades_ended_index(void)
{
    setup();
    made s1 = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    vq_job_free(j);
    made f1 = failed_job(), c1 = amend();
    CHECK_INT(vq_queue_cancel(Q, c1.id, NULL), 0);
    /* The old layout: created in reverse order of the end times. */
    long long t = vq_now_ms() - 100000;
    const made *m[] = {&s1, &f1, &c1};
    const char *st[] = {"succeeded", "failed", "cancelled"};
    for (int i = 0; i < 3; i++) {
        long long created = t - 10000 * (i + 1), ended = t + 1000 * i;
        freeReplyObject(rcmd("HSET {volq}:job:%s c %lld u %lld", m[i]->id, created, ended));
        freeReplyObject(rcmd("ZADD {volq}:st:%s %lld %s", st[i], created, m[i]->id));
        freeReplyObject(rcmd("ZADD {volq}:ended %lld %s", ended, m[i]->id));
    }
    size_t fixed = 0;
    vq_error e = {0};
    CHECK_INT(vq_queue_repair(Q, &fixed, &e), 0);
    CHECK_INT(fixed, 4); /* 3 scores, 1 old key */
    CHECK_INT(rint_("EXISTS {volq}:ended"), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(rint_("ZSCORE {volq}:st:%s %s", st[i], m[i]->id), t + 1000 * i);
        CHECK_R(state_of(m[i]->id), st[i]);
    }
    CHECK_INT(vq_queue_repair(Q, &fixed, NULL), 0);
    CHECK_INT(fixed, 0);
    /* Retention now goes by end time: the first to end goes first, not the
     * first created. */
    CFG.keep_finished_max = 2;
    reconfig();
    CHECK_INT(vq_queue_housekeep(Q, NULL, NULL), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", s1.id), 0);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", f1.id), 1);
    CHECK_INT(rint_("EXISTS {volq}:job:%s", c1.id), 1);
    /* An end-state entry whose score is not its job's end time is scored
     * again, also without the old key. */
    freeReplyObject(rcmd("ZADD {volq}:st:failed 5 %s", f1.id));
    CHECK_INT(vq_queue_repair(Q, &fixed, NULL), 0);
    CHECK_INT(fixed, 1);
    CHECK_INT(rint_("ZSCORE {volq}:st:failed %s", f1.id), t + 1000);
}

/* ---- listing, status, lock holders -------------------------------------- */

static void test_queue_list_newest_first(void)
{
    setup();
    made c = failed_job(), a = amend(), b = amend(), d = amend();
    /* Distinct last changes, in the order of the indexes (one ms may hold several). */
    const made *all[] = {&a, &b, &c, &d};
    for (int i = 0; i < 4; i++)
        freeReplyObject(rcmd("HSET {volq}:job:%s u %d", all[i]->id, 1000 + i));
    json_t *l = NULL;
    CHECK_INT(vq_queue_list(Q, -1, 10, &l, NULL), 0);
    CHECK_INT(json_array_size(l), 4);
    const char *want[] = {d.id, c.id, b.id, a.id};
    for (int i = 0; i < 4; i++)
        CHECK_STR(json_string_value(json_object_get(json_array_get(l, i), "id")), want[i]);
    json_decref(l);
    CHECK_INT(vq_queue_list(Q, -1, 2, &l, NULL), 0);
    CHECK_INT(json_array_size(l), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 1), "id")), c.id);
    json_decref(l);
    CHECK_INT(vq_queue_list(Q, VQ_JOB_FAILED, 10, &l, NULL), 0);
    CHECK_INT(json_array_size(l), 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "state")), "failed");
    json_decref(l);
    CHECK_INT(vq_queue_list(Q, VQ_JOB_QUEUED, 10, &l, NULL), 0);
    CHECK_INT(json_array_size(l), 3);
    json_decref(l);
    CHECK_INT(vq_queue_list(Q, VQ_JOB_SUCCEEDED, 10, &l, NULL), 0);
    CHECK_INT(json_array_size(l), 0);
    json_decref(l);
}

/* The ids of a listing, joined with ' '. */
static void list_ids(int state, size_t limit, char *out, size_t sz)
{
    json_t *l = NULL, *j;
    size_t i, o = 0;
    out[0] = '\0';
    CHECK_INT(vq_queue_list(Q, state, limit, &l, NULL), 0);
    json_array_foreach(l, i, j)
        o += (size_t)snprintf(out + o, sz - o, "%s%s", i ? " " : "",
                              json_string_value(json_object_get(j, "id")));
    json_decref(l);
}

/* A short list is the start of a longer one: selection and order use the
 * same key, the last change.  j1 was made first but failed last (a retry by
 * hand that failed again); x was requeued (pushed at the far end of the
 * queue) after five newer pushes. */
static void test_queue_list_short_is_start_of_long(void)
{
    setup();
    made j1 = failed_job(), j2 = failed_job();
    freeReplyObject(rcmd("HSET {volq}:job:%s u 2000", j2.id));
    freeReplyObject(rcmd("ZADD {volq}:st:failed 2000 %s", j2.id));
    freeReplyObject(rcmd("HSET {volq}:job:%s u 3000", j1.id));
    freeReplyObject(rcmd("ZADD {volq}:st:failed 3000 %s", j1.id));
    char one[64], all[256], want[256];
    list_ids(VQ_JOB_FAILED, 1, one, sizeof one);
    CHECK_STR(one, j1.id);
    list_ids(VQ_JOB_FAILED, 3, all, sizeof all);
    snprintf(want, sizeof want, "%s %s", j1.id, j2.id);
    CHECK_STR(all, want);
    made x = amend(), q[5];
    for (int i = 0; i < 5; i++) q[i] = amend();
    for (int i = 0; i < 5; i++) freeReplyObject(rcmd("HSET {volq}:job:%s u %d", q[i].id, 4000 + i));
    freeReplyObject(rcmd("HSET {volq}:job:%s u 5000", x.id));
    freeReplyObject(rcmd("LREM {volq}:q 0 %s", x.id));
    freeReplyObject(rcmd("RPUSH {volq}:q %s", x.id));
    list_ids(VQ_JOB_QUEUED, 2, all, sizeof all);
    snprintf(want, sizeof want, "%s %s", x.id, q[4].id);
    CHECK_STR(all, want);
    /* every state together: each shorter list starts the longest */
    char full[1024], part[1024];
    list_ids(-1, 20, full, sizeof full);
    CHECK_INT(strlen(full), 8 * 36 + 7);
    for (size_t n = 1; n <= 8; n++) {
        list_ids(-1, n, part, sizeof part);
        CHECK_INT(strlen(part), n * 36 + n - 1);
        CHECK(strncmp(full, part, strlen(part)) == 0);
    }
    CHECK(strncmp(full, x.id, 36) == 0);
}

static void test_queue_status(void)
{
    setup();
    CFG.lease_ms = 1000;
    reconfig();
    failed_job();
    made a = amend(), b = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, a.id);
    freeReplyObject(rcmd("ZADD {volq}:workers 1 ghost:9"));
    /* The head of the queue became queued 5 s ago. */
    redisReply *head = rcmd("LINDEX {volq}:q -1");
    REQUIRE(head->type == REDIS_REPLY_STRING);
    freeReplyObject(rcmd("HSET {volq}:job:%s u %lld", head->str, (long long)vq_now_ms() - 5000));
    freeReplyObject(head);
    json_t *s = NULL;
    CHECK_INT(vq_queue_status(Q, &s, NULL), 0);
    REQUIRE(s);
    json_t *jobs = json_object_get(s, "jobs");
    CHECK_INT(json_integer_value(json_object_get(jobs, "queued")), 1);
    CHECK_INT(json_integer_value(json_object_get(jobs, "running")), 1);
    CHECK_INT(json_integer_value(json_object_get(jobs, "retrying")), 0);
    CHECK_INT(json_integer_value(json_object_get(jobs, "failed")), 1);
    CHECK_INT(json_integer_value(json_object_get(jobs, "succeeded")), 0);
    CHECK_INT(json_integer_value(json_object_get(jobs, "cancelled")), 0);
    json_t *ws = json_object_get(s, "workers");
    CHECK_INT(json_array_size(ws), 1);
    json_t *w = json_array_get(ws, 0);
    CHECK_STR(json_string_value(json_object_get(w, "host")), "host-a");
    CHECK_INT(json_integer_value(json_object_get(w, "pid")), 101);
    CHECK_STR(json_string_value(json_object_get(w, "job_id")), j->id);
    long long oldest = json_integer_value(json_object_get(s, "oldest_waiting_s"));
    CHECK(oldest >= 4 && oldest <= 7);
    CHECK_INT(json_integer_value(json_object_get(s, "jobs_per_min")), 1);
    CHECK_STR(json_string_value(json_object_get(s, "redis")), "up");
    (void)a;
    json_decref(s);
    /* jobs_per_min counts every end state, within the last minute only. */
    CHECK_INT(vq_queue_cancel(Q, b.id, NULL), 0);
    made old = failed_job();
    freeReplyObject(rcmd("ZADD {volq}:st:failed %lld %s", (long long)vq_now_ms() - 61000, old.id));
    CHECK_INT(vq_queue_status(Q, &s, NULL), 0);
    REQUIRE(s);
    CHECK_INT(json_integer_value(json_object_get(s, "jobs_per_min")), 2);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(s, "jobs"), "failed")), 2);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(s, "jobs"), "cancelled")), 1);
    json_decref(s);
    vq_job_free(j);
}

static void test_queue_lock_holders(void)
{
    setup();
    made done = failed_job();
    made a = amend();
    char free_disk[VQ_UUID_SIZE];
    vq_uuid_new(free_disk);
    freeReplyObject(rcmd("HSET {volq}:locks %s %s", free_disk, done.id)); /* stale */
    const char *disks[] = {a.disk, done.disk, free_disk};
    char holders[3][VQ_UUID_SIZE];
    CHECK_INT(vq_queue_lock_holders(Q, disks, 3, holders, NULL), 0);
    CHECK_STR(holders[0], a.id);
    CHECK_STR(holders[1], "");
    CHECK_STR(holders[2], "");
}

/* ---- the pipelined worker loop ------------------------------------------ */

static void test_queue_finish_fetch_pipeline(void)
{
    setup();
    made a = amend(), b = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, a.id);
    vq_job *next = NULL;
    vq_job_state st = (vq_job_state)-1;
    CHECK_INT(vq_queue_finish_fetch(Q, j, VQ_OUT_SUCCESS, NULL, &st, 0, &next, NULL), 0);
    CHECK_INT(st, VQ_JOB_SUCCEEDED);
    REQUIRE(next);
    CHECK_STR(next->id, b.id);
    CHECK_INT(next->state, VQ_JOB_RUNNING);
    CHECK_R(state_of(a.id), "succeeded");
    CHECK_R(rstr("HGET {volq}:wjob " W1), b.id);
    /* A stale finish still fetches: nothing is lost. */
    made c = amend();
    vq_job *next2 = NULL;
    vq_error e = {0};
    CHECK_INT(vq_queue_finish_fetch(Q, j, VQ_OUT_SUCCESS, NULL, NULL, 0, &next2, &e), VQ_ESTALE);
    REQUIRE(next2);
    CHECK_STR(next2->id, c.id);
    vq_job *none = (vq_job *)1;
    CHECK_INT(vq_queue_finish_fetch(Q, next, VQ_OUT_RETRY, "x", &st, 0, &none, NULL), 0);
    CHECK_INT(st, VQ_JOB_RETRYING);
    CHECK(none == NULL);
    vq_job_free(j);
    vq_job_free(next);
    vq_job_free(next2);
}

/* Claim ahead (during the last qemu-img of a job), then the end of that job
 * and the start of the claimed one in one pipeline. */
static void test_queue_claim_then_finish_start(void)
{
    setup();
    made a = amend(), b = amend(), c = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, a.id);
    char claimed[VQ_UUID_SIZE] = "x";
    CHECK_INT(vq_queue_claim(Q, W1, claimed, NULL), 0);
    CHECK_STR(claimed, b.id);
    /* Claimed, not started: still queued, in the worker's in-flight list. */
    CHECK_R(state_of(b.id), "queued");
    CHECK_INT(rint_("LPOS {volq}:proc:" W1 " %s", b.id), 0);
    j->done = 3;
    j->total = 3;
    vq_job *next = NULL;
    vq_job_state st = (vq_job_state)-1;
    CHECK_INT(vq_queue_finish_start(Q, j, VQ_OUT_SUCCESS, NULL, &st, claimed, &next, NULL), 0);
    CHECK_INT(st, VQ_JOB_SUCCEEDED);
    /* The end carries the worker's last progress. */
    CHECK_INT(field_int(a.id, "d"), 3);
    CHECK_INT(field_int(a.id, "t"), 3);
    REQUIRE(next);
    CHECK_STR(next->id, b.id);
    CHECK_INT(next->state, VQ_JOB_RUNNING);
    CHECK_INT(next->attempts, 1);
    CHECK_R(rstr("HGET {volq}:wjob " W1), b.id);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 1);
    /* A claimed job cancelled meanwhile is not started; a stale end still starts. */
    char c2[VQ_UUID_SIZE];
    CHECK_INT(vq_queue_claim(Q, W1, c2, NULL), 0);
    CHECK_STR(c2, c.id);
    CHECK_INT(vq_queue_cancel(Q, c.id, NULL), 0);
    vq_job *none = (vq_job *)1;
    CHECK_INT(vq_queue_finish_start(Q, next, VQ_OUT_SUCCESS, NULL, &st, c2, &none, NULL), 0);
    CHECK(none == NULL);
    CHECK_R(state_of(c.id), "cancelled");
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 0);
    /* An empty queue claims nothing. */
    CHECK_INT(vq_queue_claim(Q, W1, c2, NULL), 0);
    CHECK_STR(c2, "");
    vq_job_free(j);
    vq_job_free(next);
}

/* The end of the job before the running one and the claim of the next in one
 * pipeline: the end as vq_queue_finish's, the claim as vq_queue_claim's, even
 * when the end was fenced. */
static void test_queue_finish_claim(void)
{
    setup();
    made a = amend(), b = amend(), c = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, a.id);
    j->done = 2;
    j->total = 2;
    char id[VQ_UUID_SIZE] = "x";
    vq_job_state st = (vq_job_state)-1;
    CHECK_INT(vq_queue_finish_claim(Q, j, VQ_OUT_SUCCESS, NULL, &st, id, NULL), 0);
    CHECK_INT(st, VQ_JOB_SUCCEEDED);
    CHECK_INT(field_int(a.id, "d"), 2);
    CHECK_STR(id, b.id);
    CHECK_R(state_of(b.id), "queued");
    CHECK_INT(rint_("LPOS {volq}:proc:" W1 " %s", b.id), 0);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 1);
    /* A fenced end writes nothing; the claim is made all the same. */
    vq_error e = {0};
    CHECK_INT(vq_queue_finish_claim(Q, j, VQ_OUT_SUCCESS, NULL, &st, id, &e), VQ_ESTALE);
    CHECK_STR(id, c.id);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 2);
    /* An empty queue claims nothing. */
    CHECK_INT(vq_queue_finish_claim(Q, j, VQ_OUT_SUCCESS, NULL, &st, id, NULL), VQ_ESTALE);
    CHECK_STR(id, "");
    vq_job_free(j);
}

/* A job boundary in one pipeline: the held end, the start of the claimed job
 * and the claim of the one after (vq_queue_finish_start_claim); without an
 * end, the start and the claim (vq_queue_start_claim). */
static void test_queue_boundary_pipelines(void)
{
    setup();
    made a = amend(), b = amend(), c = amend(), d = amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, a.id);
    char claimed[VQ_UUID_SIZE], next_id[VQ_UUID_SIZE] = "x";
    CHECK_INT(vq_queue_claim(Q, W1, claimed, NULL), 0);
    CHECK_STR(claimed, b.id);
    vq_job *started = NULL;
    vq_job_state st = (vq_job_state)-1;
    CHECK_INT(vq_queue_finish_start_claim(Q, j, VQ_OUT_SUCCESS, NULL, &st, claimed, &started,
                                          next_id, NULL), 0);
    CHECK_INT(st, VQ_JOB_SUCCEEDED);
    REQUIRE(started);
    CHECK_STR(started->id, b.id);
    CHECK_INT(started->state, VQ_JOB_RUNNING);
    CHECK_STR(next_id, c.id);
    CHECK_R(state_of(c.id), "queued");
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 2); /* b running, c claimed */
    vq_job *k = NULL;
    CHECK_INT(vq_queue_start_claim(Q, W1, next_id, &k, claimed, NULL), 0);
    REQUIRE(k);
    CHECK_STR(k->id, c.id);
    CHECK_STR(claimed, d.id);
    /* The queue empty: d starts, nothing more is claimed. */
    vq_job *m = NULL;
    char none[VQ_UUID_SIZE] = "x";
    CHECK_INT(vq_queue_start_claim(Q, W1, claimed, &m, none, NULL), 0);
    REQUIRE(m);
    CHECK_STR(m->id, d.id);
    CHECK_STR(none, "");
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 3); /* b, c, d running */
    vq_job_free(j);
    vq_job_free(started);
    vq_job_free(k);
    vq_job_free(m);
}

/* A claimed job handed back goes to the front, untouched; one started by
 * vq_queue_start_claimed runs as a fetched one would. */
static void test_queue_unclaim_and_start_claimed(void)
{
    setup();
    made a = amend(), b = amend();
    char id[VQ_UUID_SIZE];
    CHECK_INT(vq_queue_claim(Q, W1, id, NULL), 0);
    CHECK_STR(id, a.id);
    CHECK_INT(vq_queue_unclaim(Q, W1, id, NULL), 0);
    CHECK_R(rstr("LINDEX {volq}:q -1"), a.id);
    CHECK_R(state_of(a.id), "queued");
    CHECK_INT(field_int(a.id, "a"), -1);
    CHECK_INT(field_int(a.id, "cr"), -1);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 0);
    CHECK_INT(vq_queue_claim(Q, W1, id, NULL), 0);
    CHECK_STR(id, a.id);
    vq_job *j = NULL;
    CHECK_INT(vq_queue_start_claimed(Q, W1, id, &j, NULL), 0);
    REQUIRE(j);
    CHECK_INT(j->state, VQ_JOB_RUNNING);
    CHECK_R(state_of(a.id), "running");
    CHECK_R(state_of(b.id), "queued");
    vq_error e = {0};
    CHECK_INT(vq_queue_claim(Q, "bad worker", id, &e), VQ_EINVAL);
    vq_job_free(j);
}

/* A claimed job cancelled before it is handed back only leaves the worker's
 * list: it does not go back into the queue, where it would count as queued
 * (and as the oldest waiting) until a worker skipped it.  The others go back
 * to the front in claim order. */
static void test_queue_unclaim_leaves_cancelled_out(void)
{
    setup();
    made a = amend(), b = amend(), c = amend();
    char ids[2][VQ_UUID_SIZE];
    CHECK_INT(vq_queue_claim(Q, W1, ids[0], NULL), 0);
    CHECK_INT(vq_queue_claim(Q, W1, ids[1], NULL), 0);
    CHECK_STR(ids[0], a.id);
    CHECK_STR(ids[1], b.id);
    CHECK_INT(vq_queue_cancel(Q, b.id, NULL), 0);
    vq_batch back = {.worker = W1, .back = (const char(*)[VQ_UUID_SIZE])ids, .nback = 2};
    CHECK_INT(vq_queue_batch(Q, &back, NULL), 0);
    CHECK_INT(rint_("LLEN {volq}:proc:" W1), 0);
    CHECK_INT(rint_("LLEN {volq}:q"), 2);
    CHECK_INT(rint_("LPOS {volq}:q %s", b.id), -1);
    CHECK_R(rstr("LINDEX {volq}:q -1"), a.id);
    CHECK_R(rstr("LINDEX {volq}:q 0"), c.id);
    CHECK_R(state_of(a.id), "queued");
    CHECK_R(state_of(b.id), "cancelled");
    json_t *s = NULL;
    CHECK_INT(vq_queue_status(Q, &s, NULL), 0);
    REQUIRE(s);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(s, "jobs"), "queued")), 2);
    json_decref(s);
}

/* A finish that ran but whose answer was lost (here: the read timed out while
 * CLIENT PAUSE held it) is sent again and answers stale; its qemu-img runs
 * were added by the one that ran, and the next finish does not add them
 * again. */
static void test_queue_finish_lost_answer_counts_runs_once(void)
{
    setup();
    made a = amend(), b = amend();
    vq_redis *r = NULL;
    REQUIRE(vq_redis_connect(R.url, 300, &r, NULL) == 0);
    vq_queue *q = NULL;
    REQUIRE(vq_queue_new(r, &CFG, &q, NULL) == 0);
    vq_job *j = NULL;
    REQUIRE(vq_queue_fetch(q, W1, 0, &j, NULL) == 0 && j);
    CHECK_STR(j->id, a.id);
    const char *const argv[] = {"/bin/true", NULL};
    for (int i = 0; i < 2; i++) CHECK_INT(vq_spawn_run(argv, NULL, 5000, NULL, NULL, 0, NULL, NULL), 0);
    freeReplyObject(rcmd("CLIENT PAUSE 1000 WRITE"));
    vq_error e = {0};
    CHECK_INT(vq_queue_finish(q, j, VQ_OUT_SUCCESS, NULL, NULL, &e), VQ_EREDIS);
    CHECK_CONTAINS(e.text, "connection lost");
    long long deadline = t_now_ms() + 10000;
    char *st = state_of(a.id);
    while (strcmp(st, "succeeded") != 0 && t_now_ms() < deadline) {
        free(st);
        t_sleep_ms(20);
        st = state_of(a.id);
    }
    CHECK_STR(st, "succeeded");
    free(st);
    CHECK_INT(rint_("HGET {volq}:stats qemu_img_runs"), 2);
    vq_error e2 = {0};
    CHECK_INT(vq_queue_finish(q, j, VQ_OUT_SUCCESS, NULL, NULL, &e2), VQ_ESTALE);
    vq_job *k = NULL;
    REQUIRE(vq_queue_fetch(q, W1, 0, &k, NULL) == 0 && k);
    CHECK_STR(k->id, b.id);
    CHECK_INT(vq_spawn_run(argv, NULL, 5000, NULL, NULL, 0, NULL, NULL), 0);
    vq_job_state fs = (vq_job_state)-1;
    CHECK_INT(vq_queue_finish(q, k, VQ_OUT_SUCCESS, NULL, &fs, NULL), 0);
    CHECK_INT(fs, VQ_JOB_SUCCEEDED);
    CHECK_INT(rint_("HGET {volq}:stats qemu_img_runs"), 3);
    vq_job_free(j);
    vq_job_free(k);
    vq_queue_free(q);
}

/* Redis's count of writes since its last save. */
static long long writes_so_far(void)
{
    char *info = rstr("INFO persistence");
    const char *p = strstr(info, "rdb_changes_since_last_save:");
    long long n = p ? atoll(p + strlen("rdb_changes_since_last_save:")) : -1;
    free(info);
    return n;
}

/* fence.lua: ok while the token is current and the lease runs; stale after
 * a requeue or once the lease ran out; it writes nothing. */
static void test_queue_fence_writes_nothing(void)
{
    setup();
    amend();
    vq_job *j = fetch(W1);
    REQUIRE(j);
    long long changes = writes_so_far();
    CHECK(changes > 0);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(vq_queue_fence_send(Q, j, NULL), 0);
        CHECK_INT(vq_queue_progress_recv(Q, j, NULL), 0);
    }
    CHECK_INT(writes_so_far(), changes);
    /* The lease ran out (not requeued yet): stale. */
    freeReplyObject(rcmd("ZADD {volq}:running 1 %s", j->id));
    vq_error e = {0};
    CHECK_INT(vq_queue_fence_send(Q, j, NULL), 0);
    CHECK_INT(vq_queue_progress_recv(Q, j, &e), VQ_ESTALE);
    /* A renewed lease but another token: stale. */
    freeReplyObject(rcmd("ZADD {volq}:running 99999999999999 %s", j->id));
    CHECK_INT(vq_queue_fence_send(Q, j, NULL), 0);
    CHECK_INT(vq_queue_progress_recv(Q, j, NULL), 0);
    j->token++;
    CHECK_INT(vq_queue_fence_send(Q, j, NULL), 0);
    CHECK_INT(vq_queue_progress_recv(Q, j, NULL), VQ_ESTALE);
    vq_job_free(j);
}

/* ---- events ------------------------------------------------------------- */

static void refusal(void)
{
    char disk[VQ_UUID_SIZE];
    vq_uuid_new(disk);
    vq_accept_req r = req("amend", disk, NULL, "x");
    r.refusal = "raw disk";
    vq_accept_res res;
    REQUIRE(vq_queue_accept(Q, &r, 1, &res, NULL) == 0);
}

static void test_queue_events_since_id_and_time(void)
{
    setup();
    for (int i = 0; i < 5; i++) refusal();
    json_t *all = events();
    CHECK_INT(json_array_size(all), 5);
    const char *id2 = evs(json_array_get(all, 1), "id");
    json_t *after = NULL;
    char last[64] = "unchanged";
    CHECK_INT(vq_queue_events(Q, id2, 0, 0, &after, last, NULL), 0);
    CHECK_INT(json_array_size(after), 3);
    CHECK_STR(evs(json_array_get(after, 0), "id"), evs(json_array_get(all, 2), "id"));
    CHECK_STR(last, evs(json_array_get(all, 4), "id"));
    json_decref(after);
    /* count */
    CHECK_INT(vq_queue_events(Q, NULL, 2, 0, &after, last, NULL), 0);
    CHECK_INT(json_array_size(after), 2);
    CHECK_STR(last, evs(json_array_get(all, 1), "id"));
    json_decref(after);
    /* since a time: the events at or after it */
    const char *t3 = evs(json_array_get(all, 3), "time");
    CHECK_INT(vq_queue_events(Q, t3, 0, 0, &after, last, NULL), 0);
    CHECK(json_array_size(after) >= 2);
    for (size_t i = 0; i < json_array_size(after); i++)
        CHECK(strcmp(evs(json_array_get(after, i), "time"), t3) >= 0);
    json_decref(after);
    CHECK_INT(vq_queue_events(Q, "2999-01-01T00:00:00+01:00", 0, 0, &after, last, NULL), 0);
    CHECK_INT(json_array_size(after), 0);
    json_decref(after);
    CHECK_INT(vq_queue_events(Q, "1970-01-01T00:00:00Z", 0, 0, &after, last, NULL), 0);
    CHECK_INT(json_array_size(after), 5);
    json_decref(after);
    /* A time and a stream id read from two clocks: the time decides. */
    freeReplyObject(rcmd("XADD {volq}:events 4000000000000-0 e {\"time\":\"2096-10-02T07:06:40.001Z\"}"));
    freeReplyObject(rcmd("XADD {volq}:events 4000000000001-0 e {\"time\":\"2096-10-02T07:06:39.999Z\"}"));
    CHECK_INT(vq_queue_events(Q, "2096-10-02T07:06:40.001Z", 0, 0, &after, last, NULL), 0);
    CHECK_INT(json_array_size(after), 1);
    CHECK_STR(evs(json_array_get(after, 0), "id"), "4000000000000-0");
    CHECK_STR(last, "4000000000001-0");
    json_decref(after);
    vq_error e = {0};
    CHECK_INT(vq_queue_events(Q, "yesterday", 0, 0, &after, last, &e), VQ_EINVAL);
    CHECK_STR(e.text, "events: since yesterday is neither an event id nor an RFC 3339 time");
    json_decref(all);
}

/* Events older than a time are passed over without taking a place in the page:
 * five events of the second before T (the slack read for two clocks), then
 * twelve at or after it.  A page of three starts at T and holds three; each
 * page is full until the stream ends. */
static void test_queue_events_since_time_pages_are_full(void)
{
    setup();
    for (int i = 0; i < 5; i++)
        freeReplyObject(rcmd("XADD {volq}:events 4000000000%03d-0 e {\"time\":\"2096-10-02T07:06:39.%03dZ\"}",
                             500 + i, 500 + i));
    for (int i = 0; i < 12; i++)
        freeReplyObject(rcmd("XADD {volq}:events 4000000001%03d-0 e {\"time\":\"2096-10-02T07:06:41.%03dZ\"}",
                             i, i));
    json_t *page = NULL;
    char last[64] = "";
    CHECK_INT(vq_queue_events(Q, "2096-10-02T07:06:40Z", 3, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), 3);
    CHECK_STR(evs(json_array_get(page, 0), "id"), "4000000001000-0");
    CHECK_STR(last, "4000000001002-0");
    json_decref(page);
    CHECK_INT(vq_queue_events(Q, "2096-10-02T07:06:40Z", 0, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), 12);
    json_decref(page);
    /* the next pages, after the last id: full, then the short last one */
    snprintf(last, sizeof last, "4000000001002-0");
    CHECK_INT(vq_queue_events(Q, last, 5, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), 5);
    CHECK_STR(last, "4000000001007-0");
    json_decref(page);
    CHECK_INT(vq_queue_events(Q, last, 5, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), 4);
    CHECK_STR(last, "4000000001011-0");
    json_decref(page);
    /* only old events after T's slack: nothing kept, the last read reported */
    last[0] = '\0';
    CHECK_INT(vq_queue_events(Q, "2096-10-02T07:06:42Z", 2, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), 0);
    CHECK_STR(last, "4000000001011-0");
    json_decref(page);
}

/* An event id is two uint64 parts; anything else (or the greatest id, after
 * which nothing can come) is an input error before Redis sees it. */
static void test_queue_events_bad_ids(void)
{
    setup();
    refusal();
    static const char *const bad[] = {"99999999999999999999-0", "0-18446744073709551616",
                                      "18446744073709551615-18446744073709551615", "+1-0",
                                      "1-+0", " 1-0", "1-0 ", "1-", "-1", "1", "1-0-0",
                                      "000000000000000000001-0"};
    json_t *page = NULL;
    char last[64] = "";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vq_error e = {0};
        CHECK_INT(vq_queue_events(Q, bad[i], 0, 0, &page, last, &e), VQ_EINVAL);
        CHECK(page == NULL);
        CHECK_CONTAINS(e.text, "is neither an event id nor an RFC 3339 time");
    }
    uint64_t ms = 0, seq = 0;
    CHECK_INT(vq_queue_event_id_parse("18446744073709551615-18446744073709551614", &ms, &seq), 0);
    CHECK(ms == UINT64_MAX && seq == UINT64_MAX - 1);
    CHECK_INT(vq_queue_events(Q, "18446744073709551615-18446744073709551614", 0, 0, &page, last,
                              NULL), 0);
    CHECK_INT(json_array_size(page), 0);
    json_decref(page);
    CHECK_INT(vq_queue_events(Q, "0-0", 0, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), 1);
    json_decref(page);
}

/* More than 1000 in one call, up to VQ_QUEUE_EVENTS_MAX. */
static void test_queue_events_up_to_max(void)
{
    setup();
    freeReplyObject(rcmd("EVAL %s 1 {volq}:events", "for i = 1, 10050 do redis.call('XADD', "
                         "KEYS[1], '*', 'e', '{\"time\":\"2026-01-01T00:00:00.000Z\"}') end"));
    json_t *page = NULL;
    char last[64] = "";
    CHECK_INT(vq_queue_events(Q, NULL, 1500, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), 1500);
    json_decref(page);
    CHECK_INT(vq_queue_events(Q, NULL, 0, 0, &page, last, NULL), 0);
    CHECK_INT(json_array_size(page), VQ_QUEUE_EVENTS_MAX);
    CHECK_INT(VQ_QUEUE_EVENTS_MAX, 10000);
    json_decref(page);
}

static void test_queue_events_follow_blocks(void)
{
    setup();
    refusal();
    json_t *all = events();
    char last[64];
    snprintf(last, sizeof last, "%s", evs(json_array_get(all, 0), "id"));
    json_decref(all);
    json_t *got = NULL;
    long long t0 = t_now_ms();
    CHECK_INT(vq_queue_events(Q, last, 0, 300, &got, last, NULL), 0);
    CHECK_INT(json_array_size(got), 0);
    CHECK(t_now_ms() - t0 >= 250);
    json_decref(got);
    pid_t child = fork();
    if (child == 0) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL); /* lets the parent block first */
        Q = open_queue();
        refusal();
        _exit(0);
    }
    t0 = t_now_ms();
    CHECK_INT(vq_queue_events(Q, last, 0, 8000, &got, last, NULL), 0);
    CHECK_INT(json_array_size(got), 1);
    CHECK(t_now_ms() - t0 < 6000);
    CHECK_STR(last, evs(json_array_get(got, 0), "id"));
    CHECK_STR(evs(json_array_get(got, 0), "reason"), "raw disk");
    json_decref(got);
    int st;
    waitpid(child, &st, 0);
}

static void test_queue_events_capped(void)
{
    setup();
    CFG.events_max = 10;
    reconfig();
    for (int i = 0; i < 300; i++) refusal();
    long long n = rint_("XLEN {volq}:events");
    /* MAXLEN ~ trims whole stream nodes (100 entries): between 10 and 110. */
    CHECK(n >= 10 && n <= 110);
}

/* ---- crashes of Redis --------------------------------------------------- */

/* Everything that matters, as one string, to compare before and after. */
static char *dump_state(void)
{
    const char *cmds[] = {"LRANGE {volq}:q 0 -1", "ZRANGE {volq}:running 0 -1 WITHSCORES",
                          "HGETALL {volq}:locks", "ZRANGE {volq}:st:failed 0 -1",
                          "LRANGE {volq}:proc:" W1 " 0 -1", "XLEN {volq}:events", "GET {volq}:token"};
    json_t *o = json_array();
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        redisReply *rep = rcmd(cmds[i]);
        json_t *a = json_array();
        if (rep->type == REDIS_REPLY_ARRAY)
            for (size_t e = 0; e < rep->elements; e++) json_array_append_new(a, json_string(rep->element[e]->str));
        else if (rep->type == REDIS_REPLY_INTEGER)
            json_array_append_new(a, json_integer(rep->integer));
        else if (rep->type == REDIS_REPLY_STRING)
            json_array_append_new(a, json_string(rep->str));
        json_array_append_new(o, a);
        freeReplyObject(rep);
    }
    char *s = json_dumps(o, 0);
    json_decref(o);
    return s;
}

static void test_queue_redis_kill9_restart_loses_nothing(void)
{
    setup();
    CFG.lease_ms = 300;
    reconfig();
    made a = failed_job();
    made b = amend(), c = amend();
    vq_job *j = fetch(W1); /* b running, c queued, a failed */
    REQUIRE(j);
    CHECK_STR(j->id, b.id);
    char *before = dump_state(), *job_b = job_dump(b.id), *job_c = job_dump(c.id);
    REQUIRE(t_redis_kill9(&R) == 0);
    REQUIRE(t_redis_restart(&R) == 0);
    char *after = dump_state(), *job_b2 = job_dump(b.id), *job_c2 = job_dump(c.id);
    CHECK_STR(after, before);
    CHECK_STR(job_b2, job_b);
    CHECK_STR(job_c2, job_c);
    /* The same queue handle goes on (reconnect, scripts loaded again); the
     * running job's worker is gone with the old world: its lease runs out. */
    CHECK_INT(housekeep_until_moved(), 1);
    vq_job *again = fetch(W2);
    REQUIRE(again);
    CHECK_STR(again->id, b.id);
    CHECK_INT(finish(again, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    vq_job *last = fetch(W2);
    REQUIRE(last);
    CHECK_STR(last->id, c.id);
    CHECK_INT(finish(last, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    (void)a;
    free(before), free(after), free(job_b), free(job_b2), free(job_c), free(job_c2);
    vq_job_free(j);
    vq_job_free(again);
    vq_job_free(last);
}

static void test_queue_scripts_reload_after_flush(void)
{
    setup();
    made m = amend();
    freeReplyObject(rcmd("SCRIPT FLUSH"));
    vq_job *j = fetch(W1);
    REQUIRE(j);
    CHECK_STR(j->id, m.id);
    freeReplyObject(rcmd("SCRIPT FLUSH"));
    CHECK_INT(vq_queue_heartbeat(Q, j, NULL), 0);
    freeReplyObject(rcmd("SCRIPT FLUSH"));
    CHECK_INT(finish(j, VQ_OUT_SUCCESS, NULL), VQ_JOB_SUCCEEDED);
    freeReplyObject(rcmd("SCRIPT FLUSH"));
    made n = amend();
    CHECK_R(state_of(n.id), "queued");
    vq_job_free(j);
}

T_MAIN(T(test_queue_accept_single), T(test_queue_accept_bulk_in_one_call),
       T(test_queue_memory_per_queued_job), T(test_queue_accept_locked_disk_refused), T(test_queue_accept_seen_not_read_again),
       T(test_queue_accept_refusal_recorded), T(test_queue_accept_idempotency_key),
       T(test_queue_accept_invalid_records_nothing), T(test_queue_fetch_progress_success),
       T(test_queue_fetch_waits_then_times_out), T(test_queue_create_volume_events),
       T(test_queue_finish_refused_not_retried), T(test_queue_reason_cleaned),
       T(test_queue_retry_backoff_then_failed),
       T(test_queue_due_retry_promotion), T(test_queue_cancel), T(test_queue_fetch_skips_cancelled),
       T(test_queue_manual_retry), T(test_queue_retry_refused_while_disk_locked),
       T(test_queue_retry_all_failed), T(test_queue_fencing_stale_token),
       T(test_queue_requeue_worker_front), T(test_queue_requeue_fails_at_max_crashes),
       T(test_queue_requeue_create_volume_cleans_up_at_max_crashes),
       T(test_queue_worker_gone_and_unstarted), T(test_queue_lease_expiry_requeues),
       T(test_queue_dead_worker_registration), T(test_queue_housekeep_two_schedulers),
       T(test_queue_trim_by_count_and_age), T(test_queue_trim_across_end_states),
       T(test_queue_trim_batches), T(test_queue_repair_injected),
       T(test_queue_repair_upgrades_ended_index),
       T(test_queue_list_newest_first), T(test_queue_list_short_is_start_of_long), T(test_queue_status), T(test_queue_lock_holders),
       T(test_queue_finish_fetch_pipeline), T(test_queue_finish_lost_answer_counts_runs_once),
       T(test_queue_claim_then_finish_start), T(test_queue_finish_claim), T(test_queue_boundary_pipelines),
       T(test_queue_unclaim_and_start_claimed), T(test_queue_unclaim_leaves_cancelled_out),
       T(test_queue_fence_writes_nothing), T(test_queue_events_since_id_and_time),
       T(test_queue_events_since_time_pages_are_full), T(test_queue_events_bad_ids),
       T(test_queue_events_up_to_max),
       T(test_queue_events_follow_blocks), T(test_queue_events_capped),
       T(test_queue_redis_kill9_restart_loses_nothing), T(test_queue_scripts_reload_after_flush))
