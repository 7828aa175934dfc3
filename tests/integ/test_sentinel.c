/* Redis Sentinel: sentinel:// URLs against a real master, replica and
 * sentinels (redis-server --sentinel) on 127.0.0.1; WAIT before an accept
 * answers; a failover under load that loses no accepted job. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/redis_node.h"
#include "lib/stack.h"
#include "t.h"
#include "volq/disk.h"
#include "volq/domain.h"
#include "volq/queue.h"
#include "volq/uuid.h"

#define USER "volq"
#define PASS "s3cret"
#define MASTER "mymaster"
#define NSENT 3

/* Both servers may become replicas: each can log in to the other.  The
 * default user has the same password, for URLs without a user name. */
#define SERVER_CONF                                                                    \
    "appendonly yes\nappendfsync everysec\nrepl-diskless-sync yes\n"                   \
    "repl-diskless-sync-delay 0\nrequirepass " PASS "\n"                               \
    "user " USER " on >" PASS " ~* &* +@all\nmasteruser " USER "\nmasterauth " PASS "\n"

typedef struct topo {
    t_node srv[2];       /* [0] starts as the master, [1] as its replica */
    t_node sen[NSENT];
    int nsent;
    char url[128];       /* sentinel://volq:s3cret@127.0.0.1:S1,.../mymaster */
} topo;

static int replica_linked(void *arg)
{
    const t_node *n = arg;
    redisReply *rep = t_node_cmd(n, USER, PASS, "ROLE");
    int ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 4 &&
             strcmp(rep->element[0]->str, "slave") == 0 &&
             strcmp(rep->element[3]->str, "connected") == 0;
    if (rep) freeReplyObject(rep);
    return ok;
}

static void start_sentinel(t_node *s, const char *dir, int master_port, const char *more)
{
    char conf[1024];
    snprintf(conf, sizeof conf,
             "sentinel monitor " MASTER " 127.0.0.1 %d 2\n"
             "sentinel auth-user " MASTER " " USER "\nsentinel auth-pass " MASTER " " PASS "\n"
             "sentinel down-after-milliseconds " MASTER " 3000\n"
             "sentinel failover-timeout " MASTER " 10000\n%s",
             master_port, more ? more : "");
    REQUIRE(t_node_start(s, dir, "127.0.0.1", t_free_port(), 1, conf) == 0);
}

/* A master, its replica (linked) and nsent sentinels watching them. */
static void topo_start(topo *t, int nsent)
{
    memset(t, 0, sizeof *t);
    char conf[1024];
    REQUIRE(t_node_start(&t->srv[0], "srv0", "127.0.0.1", t_free_port(), 0, SERVER_CONF) == 0);
    snprintf(conf, sizeof conf, SERVER_CONF "replicaof 127.0.0.1 %d\n", t->srv[0].port);
    REQUIRE(t_node_start(&t->srv[1], "srv1", "127.0.0.1", t_free_port(), 0, conf) == 0);
    REQUIRE(t_poll(replica_linked, &t->srv[1], 10000));
    int n = snprintf(t->url, sizeof t->url, "sentinel://" USER ":" PASS "@");
    for (int i = 0; i < nsent; i++) {
        char dir[16];
        snprintf(dir, sizeof dir, "sen%d", i);
        start_sentinel(&t->sen[i], dir, t->srv[0].port, NULL);
        n += snprintf(t->url + n, sizeof t->url - (size_t)n, "%s127.0.0.1:%d", i ? "," : "",
                      t->sen[i].port);
    }
    snprintf(t->url + n, sizeof t->url - (size_t)n, "/" MASTER);
    t->nsent = nsent;
}

/* After a failure: what each server and sentinel said last. */
static void dump_logs(const topo *t)
{
    char cmd[1024];
    for (int i = 0; i < 2 + t->nsent; i++) {
        const t_node *n = i < 2 ? &t->srv[i] : &t->sen[i - 2];
        snprintf(cmd, sizeof cmd, "tail -n 25 %s/redis.log | sed 's|^|#   %s: |' >&2", n->dir,
                 strrchr(n->dir, '/') + 1);
        if (system(cmd) != 0) fprintf(stderr, "#   (no log in %s)\n", n->dir);
    }
}

static void topo_stop(topo *t)
{
    for (int i = 0; i < t->nsent; i++) t_node_stop(&t->sen[i]);
    t_node_stop(&t->srv[1]);
    t_node_stop(&t->srv[0]);
}

static int ctx_port(vq_redis *r)
{
    redisContext *c = vq_redis_ctx(r);
    return c ? c->tcp.port : -1;
}

/* ---- connect ------------------------------------------------------------- */

static void expect_connect_error(const char *url, const char *text)
{
    vq_redis *r = NULL;
    vq_error e = {0};
    CHECK_INT(vq_redis_connect(url, 1000, &r, &e), VQ_EREDIS);
    CHECK(r == NULL);
    CHECK_STR(e.text, text);
}

static void test_sentinel_connect_finds_the_master(void)
{
    topo t;
    topo_start(&t, NSENT);
    int dead = t_free_port();
    char url[256], text[256];
    /* A dead sentinel first: the next one answers. */
    const char *auth = "sentinel://" USER ":" PASS "@";
    snprintf(url, sizeof url, "%s127.0.0.1:%d,%s", auth, dead, t.url + strlen(auth));
    vq_redis *r = NULL;
    vq_error e = {0};
    REQUIRE(vq_redis_connect(url, 1000, &r, &e) == 0);
    CHECK_INT(e.code, 0);
    CHECK_INT(ctx_port(r), t.srv[0].port);
    CHECK_STR(vq_redis_url_str(r), url);
    redisReply *rep = vq_redis_cmd(r, &e, "SET %s %s", "{volq}:probe", "one");
    REQUIRE(rep);
    freeReplyObject(rep);
    CHECK_INT(vq_redis_wait_replicas(r, 1, 5000, &e), 0);
    rep = t_node_cmd(&t.srv[1], USER, PASS, "GET {volq}:probe");
    REQUIRE(rep);
    CHECK_STR(rep->str, "one");
    freeReplyObject(rep);
    /* Two replicas cannot acknowledge: not confirmed, and said so. */
    CHECK_INT(vq_redis_wait_replicas(r, 2, 200, &e), VQ_EREDIS);
    CHECK_STR(e.text, "redis: WAIT: 1 of 2 replica(s) acknowledged within 200 ms");
    /* A WAIT on another connection than the writes' would prove nothing. */
    vq_error e2 = {0}, e3 = {0};
    rep = vq_redis_cmd(r, &e2, "SET %s %s", "{volq}:probe", "two");
    REQUIRE(rep);
    freeReplyObject(rep);
    rep = t_node_cmd(&t.srv[0], USER, PASS, "CLIENT KILL USER " USER);
    REQUIRE(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 1);
    freeReplyObject(rep);
    CHECK(vq_redis_cmd(r, &e2, "PING") == NULL); /* finds the connection gone */
    CHECK_INT(vq_redis_wait_replicas(r, 1, 200, &e3), VQ_EREDIS);
    CHECK_STR(e3.text, "redis: WAIT: connection lost since the writes");
    vq_redis_free(r);

    snprintf(url, sizeof url, "sentinel://127.0.0.1:%d/" MASTER, dead);
    snprintf(text, sizeof text, "redis sentinel " MASTER ": no sentinel named the master "
             "(sentinel 127.0.0.1:%d: Connection refused)", dead);
    expect_connect_error(url, text);
    snprintf(url, sizeof url, "sentinel://127.0.0.1:%d,127.0.0.1:%d/nosuch", t.sen[0].port,
             t.sen[1].port);
    snprintf(text, sizeof text, "redis sentinel nosuch: no sentinel named the master "
             "(sentinel 127.0.0.1:%d does not know master nosuch)", t.sen[1].port);
    expect_connect_error(url, text);
    snprintf(url, sizeof url, "sentinel://" USER ":wrong@127.0.0.1:%d/" MASTER, t.sen[0].port);
    expect_connect_error(url, "redis: AUTH failed: WRONGPASS invalid username-password pair or "
                              "user is disabled.");

    /* A sentinel with a password gets the URL's (here the default user's). */
    t_node locked;
    start_sentinel(&locked, "sen-pw", t.srv[0].port, "requirepass " PASS "\n");
    snprintf(url, sizeof url, "sentinel://:" PASS "@127.0.0.1:%d/" MASTER, locked.port);
    REQUIRE(vq_redis_connect(url, 1000, &r, &e) == 0);
    CHECK_INT(ctx_port(r), t.srv[0].port);
    vq_redis_free(r);
    snprintf(url, sizeof url, "sentinel://127.0.0.1:%d/" MASTER, locked.port);
    snprintf(text, sizeof text, "redis sentinel " MASTER ": no sentinel named the master "
             "(sentinel 127.0.0.1:%d: NOAUTH Authentication required.)", locked.port);
    expect_connect_error(url, text);
    t_node_stop(&locked);
    topo_stop(&t);
}

/* A master that becomes a replica under our feet (an operator's REPLICAOF):
 * READONLY sends the handle back to the sentinels, and ROLE keeps it from
 * the demoted server while the sentinels still name it. */
static void test_sentinel_demoted_master_is_left(void)
{
    topo t;
    topo_start(&t, 1);
    t_node other;
    REQUIRE(t_node_start(&other, "other", "127.0.0.1", t_free_port(), 0, SERVER_CONF) == 0);
    vq_redis *r = NULL;
    vq_error e = {0};
    REQUIRE(vq_redis_connect(t.url, 1000, &r, &e) == 0);
    redisReply *rep = vq_redis_cmd(r, &e, "SET %s %s", "{volq}:k", "1");
    REQUIRE(rep);
    freeReplyObject(rep);
    rep = t_node_cmd(&t.srv[0], USER, PASS, "REPLICAOF 127.0.0.1 %d", other.port);
    REQUIRE(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);

    vq_error e1 = {0}, e2 = {0}, e3 = {0};
    CHECK(vq_redis_cmd(r, &e1, "SET %s %s", "{volq}:k", "2") == NULL);
    CHECK_STR(e1.text, "redis: READONLY You can't write against a read only replica.");
    CHECK(vq_redis_ctx(r) == NULL); /* the next call connects again */
    CHECK(vq_redis_cmd(r, &e2, "SET %s %s", "{volq}:k", "3") == NULL);
    char text[256];
    snprintf(text, sizeof text, "redis 127.0.0.1:%d, named master of " MASTER " by a sentinel, "
             "is a slave (failover under way?)", t.srv[0].port);
    CHECK_STR(e2.text, text);
    CHECK_INT(e2.code, VQ_EREDIS);

    rep = t_node_cmd(&t.srv[0], USER, PASS, "REPLICAOF NO ONE");
    REQUIRE(rep);
    freeReplyObject(rep);
    rep = vq_redis_cmd(r, &e3, "SET %s %s", "{volq}:k", "4");
    CHECK(rep != NULL);
    if (rep) freeReplyObject(rep);
    CHECK_INT(ctx_port(r), t.srv[0].port);
    vq_redis_free(r);
    t_node_stop(&other);
    topo_stop(&t);
}

/* ---- WAIT ----------------------------------------------------------------- */

static int accept_one(vq_queue *q, const char *disk, const char *idem, vq_accept_res *res,
                      vq_error *e)
{
    static char sd[VQ_UUID_SIZE];
    if (!sd[0]) vq_uuid_new(sd);
    vq_accept_req req = {.kind = "amend", .domain_id = sd, .disk_id = disk, .idem_key = idem};
    return vq_queue_accept(q, &req, 1, res, e);
}

static int on_replica(const topo *t, const char *job)
{
    redisReply *rep = t_node_cmd(&t->srv[1], USER, PASS, "EXISTS {volq}:job:%s", job);
    int n = rep && rep->type == REDIS_REPLY_INTEGER ? (int)rep->integer : -1;
    if (rep) freeReplyObject(rep);
    return n;
}

static void test_sentinel_wait_confirms_accepts(void)
{
    topo t;
    topo_start(&t, 1);
    setenv("VOLQ_REDIS_WAIT_REPLICAS", "1", 1);
    setenv("VOLQ_REDIS_WAIT_MS", "300", 1);
    vq_queue_config cfg;
    vq_queue_config_default(&cfg);
    CHECK_INT(cfg.wait_replicas, 1);
    CHECK_INT(cfg.wait_ms, 300);
    vq_redis *r = NULL;
    vq_queue *q = NULL;
    REQUIRE(vq_redis_connect(t.url, 2000, &r, NULL) == 0);
    REQUIRE(vq_queue_new(r, &cfg, &q, NULL) == 0);
    q->cfg.wait_ms = 5000; /* a loaded machine may be slow to acknowledge */
    char d1[VQ_UUID_SIZE], d2[VQ_UUID_SIZE];
    vq_uuid_new(d1);
    vq_uuid_new(d2);

    vq_accept_res res;
    vq_error e = {0};
    REQUIRE(accept_one(q, d1, "k1", &res, &e) == 0);
    CHECK_INT(res.status, VQ_ACCEPT_QUEUED);
    CHECK_INT(on_replica(&t, res.job_id), 1); /* answered only once the replica has it */

    /* A replica that stops acknowledging: the accept is not confirmed. */
    REQUIRE(kill(t.srv[1].pid, SIGSTOP) == 0);
    q->cfg.wait_ms = 1000;
    vq_error e2 = {0};
    CHECK_INT(accept_one(q, d2, "k2", &res, &e2), VQ_EREDIS);
    CHECK_STR(e2.text, "redis: WAIT: 0 of 1 replica(s) acknowledged within 1000 ms");
    /* A LOCKED answer promises nothing and waits for nobody. */
    int64_t t0 = vq_now_ms();
    vq_error e3 = {0};
    CHECK_INT(accept_one(q, d1, NULL, &res, &e3), 0);
    CHECK_INT(res.status, VQ_ACCEPT_LOCKED);
    CHECK(vq_now_ms() - t0 < 1000);
    REQUIRE(kill(t.srv[1].pid, SIGCONT) == 0);
    q->cfg.wait_ms = 5000;

    /* The retry with the same key finds the job and confirms it now. */
    vq_error e4 = {0};
    CHECK_INT(accept_one(q, d2, "k2", &res, &e4), 0);
    CHECK_INT(res.status, VQ_ACCEPT_IDEMPOTENT);
    CHECK_INT(on_replica(&t, res.job_id), 1);
    vq_queue_free(q);
    topo_stop(&t);
}

/* ---- a failover under load ------------------------------------------------ */

#define NDISKS 30
#define NBEFORE 15

/* Accepts an amend of disk (its id as the idempotency key) until WAIT confirms
 * it; *unconfirmed counts the answers that were not confirmed.  The deadline
 * leaves room for a sentinel in TILT mode (30 s without acting, after its
 * event loop stalled on a loaded machine) before it demotes the old master. */
#define CONFIRM_MS 45000
static int accept_confirmed(vq_queue *q, const char *sd, const char *disk,
                            char job[VQ_UUID_SIZE], int *unconfirmed)
{
    vq_accept_req req = {.kind = "amend", .domain_id = sd, .disk_id = disk, .idem_key = disk};
    vq_error e = {0};
    for (int64_t deadline = vq_now_ms() + CONFIRM_MS; vq_now_ms() < deadline; t_sleep_ms(50)) {
        vq_accept_res res;
        vq_error_clear(&e);
        int rc = vq_queue_accept(q, &req, 1, &res, &e);
        if (rc == 0 && (res.status == VQ_ACCEPT_QUEUED || res.status == VQ_ACCEPT_IDEMPOTENT)) {
            memcpy(job, res.job_id, VQ_UUID_SIZE);
            return 0;
        }
        if (rc != VQ_EREDIS) {
            T_FAIL_("disk %s: accept answered %d, status %d: %s", disk, rc, res.status, e.text);
            return -1;
        }
        (*unconfirmed)++;
    }
    T_FAIL_("disk %s: no confirmed accept within %d ms (last: %s)", disk, CONFIRM_MS, e.text);
    return -1;
}

typedef struct who {
    const t_node *sen;
    int port;
} who;

/* The sentinel names the server on port w->port as the master. */
static int names(void *arg)
{
    const who *w = arg;
    redisReply *rep = t_node_cmd(w->sen, NULL, NULL, "SENTINEL get-master-addr-by-name " MASTER);
    int ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
             atoi(rep->element[1]->str) == w->port;
    if (rep) freeReplyObject(rep);
    return ok;
}

static int failover_started(void *arg)
{
    redisReply *rep = t_node_cmd(arg, NULL, NULL, "SENTINEL FAILOVER " MASTER);
    int ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep) freeReplyObject(rep);
    return ok;
}

static int is_slave(void *arg)
{
    char role[16];
    return t_node_role(arg, USER, PASS, role) == 0 && strcmp(role, "slave") == 0;
}

typedef struct jobs {
    vq_queue *q;
    char (*id)[VQ_UUID_SIZE];
    int n;
} jobs;

static int unfinished(const jobs *js)
{
    int n = 0;
    for (int i = 0; i < js->n; i++) {
        vq_job *j = NULL;
        if (vq_queue_get(js->q, js->id[i], &j, NULL) != 0 || j->state < VQ_JOB_SUCCEEDED) n++;
        vq_job_free(j);
    }
    return n;
}

static int all_ended(void *arg) { return unfinished(arg) == 0; }

static void slow_qemu(void)
{
    FILE *w = fopen("slow-qemu-img", "w");
    REQUIRE(w);
    fprintf(w, "#!/bin/sh\nsleep 0.3\nexec /usr/bin/qemu-img \"$@\"\n");
    fclose(w);
    chmod("slow-qemu-img", 0755);
}

/* Jobs end, each disk's chain is at compat 1.1. */
static void check_done(const jobs *js, const t_stack *s, char (*disks)[VQ_UUID_SIZE])
{
    vq_domain *d = NULL;
    REQUIRE(vq_domain_open(s->domains, s->sd, &d, NULL) == 0);
    for (int i = 0; i < js->n; i++) {
        vq_job *j = NULL;
        REQUIRE(vq_queue_get(js->q, js->id[i], &j, NULL) == 0);
        if (j->state != VQ_JOB_SUCCEEDED)
            T_FAIL_("job %s (accepted %s the failover) ended %s: %s", j->id,
                    i < NBEFORE ? "before" : "after", vq_job_state_name(j->state),
                    j->reason ? j->reason : "");
        vq_job_free(j);
        vq_disk *disk = NULL;
        REQUIRE(vq_disk_load(d, disks[i], &disk, NULL) == 0);
        CHECK_INT(disk->vols[0].qcow_version, 3);
        vq_disk_free(disk);
    }
    vq_domain_free(d);
}

/* Workers registered on the new master are our live worker processes. */
static void check_workers_followed(vq_queue *q)
{
    json_t *st = NULL;
    REQUIRE(vq_queue_status(q, &st, NULL) == 0);
    json_t *ws = json_object_get(st, "workers");
    CHECK(json_array_size(ws) >= 1);
    size_t i;
    json_t *w;
    json_array_foreach(ws, i, w) {
        pid_t pid = (pid_t)json_integer_value(json_object_get(w, "pid"));
        CHECK(pid > 0 && kill(pid, 0) == 0);
    }
    json_decref(st);
}

static void test_sentinel_failover_keeps_accepted_jobs(void)
{
    topo t;
    topo_start(&t, NSENT);
    t_stack s = {0};
    snprintf(s.redis.url, sizeof s.redis.url, "%s", t.url);
    snprintf(s.domains, sizeof s.domains, "%s/domains", t_dir());
    mkdir(s.domains, 0755);
    REQUIRE(t_stack_mkdomain(&s, "--version 4 --disks 30 --data-mib 0"));
    slow_qemu();
    char qemu[600];
    snprintf(qemu, sizeof qemu, "VOLQ_QEMU_IMG=%s/slow-qemu-img", t_dir());
    const char *env[] = {"VOLQ_LEASE_MS=2000", qemu, NULL};
    s.env = env;
    REQUIRE(t_stack_start_scheduler(&s) == 0);
    REQUIRE(t_stack_start_workers(&s, 2) == 0);

    vq_domain *dom = NULL;
    char (*disks)[VQ_UUID_SIZE] = NULL;
    size_t ndisks = 0;
    REQUIRE(vq_domain_open(s.domains, s.sd, &dom, NULL) == 0);
    REQUIRE(vq_domain_images(dom, &disks, &ndisks, NULL) == 0 && ndisks == NDISKS);
    vq_domain_free(dom);

    vq_queue_config cfg;
    vq_queue_config_default(&cfg);
    cfg.wait_replicas = 1;
    cfg.wait_ms = 1000;
    vq_redis *r = NULL;
    vq_queue *q = NULL;
    REQUIRE(vq_redis_connect(t.url, 2000, &r, NULL) == 0);
    REQUIRE(vq_queue_new(r, &cfg, &q, NULL) == 0);
    char ids[NDISKS][VQ_UUID_SIZE];
    jobs js = {q, ids, 0};
    int unconfirmed = 0;
    for (; js.n < NBEFORE; js.n++)
        REQUIRE(accept_confirmed(q, s.sd, disks[js.n], ids[js.n], &unconfirmed) == 0);
    REQUIRE(unfinished(&js) > 0); /* the failover comes mid-run */
    int before = unconfirmed; /* a busy machine may miss a WAIT: retried like the rest */

    REQUIRE(t_poll(failover_started, &t.sen[0], 15000));
    for (int i = 0; i < NSENT; i++) {
        who w = {&t.sen[i], t.srv[1].port};
        REQUIRE(t_poll(names, &w, 20000));
    }
    /* The old master still answers as one for a while (Sentinel demotes it
     * about 8 s later): accepts there are not confirmed, and are retried. */
    for (; js.n < NDISKS; js.n++) {
        if (accept_confirmed(q, s.sd, disks[js.n], ids[js.n], &unconfirmed) == 0) continue;
        fprintf(stderr, "# accept %d of %d failed, connected to port %d\n", js.n, NDISKS,
                ctx_port(q->r));
        dump_logs(&t);
        exit(1);
    }
    CHECK(unconfirmed > before);
    CHECK_INT(ctx_port(q->r), t.srv[1].port);
    CHECK(t_poll(is_slave, &t.srv[0], 20000)); /* the old master follows too */

    /* On the new master, read directly: every accepted job runs to its end. */
    vq_redis *r2 = NULL;
    char direct[128];
    snprintf(direct, sizeof direct, "redis://" USER ":" PASS "@127.0.0.1:%d/0", t.srv[1].port);
    REQUIRE(vq_redis_connect(direct, 2000, &r2, NULL) == 0);
    vq_queue *q2 = NULL;
    REQUIRE(vq_queue_new(r2, NULL, &q2, NULL) == 0);
    jobs on_new = {q2, ids, NDISKS};
    CHECK(t_poll(all_ended, &on_new, 40000));
    check_done(&on_new, &s, disks);
    check_workers_followed(q2);
    vq_queue_free(q2);
    vq_queue_free(q);
    free(disks);
    t_stack_stop(&s);
    topo_stop(&t);
}

T_MAIN(T(test_sentinel_connect_finds_the_master), T(test_sentinel_demoted_master_is_left),
       T(test_sentinel_wait_confirms_accepts), T(test_sentinel_failover_keeps_accepted_jobs))
