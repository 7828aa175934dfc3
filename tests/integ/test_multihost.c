/* Several hosts, as network namespaces joined by a bridge (10.77.0.0/24, all
 * inside namespaces this test makes and deletes):
 *
 *   NS r  10.77.0.1  redis-server (requirepass, ACL user volq), the bridge;
 *                    the test itself and the volq CLI run here
 *   NS a  10.77.0.2  volq-scheduler and volq-worker (hostname host-a)
 *   NS b  10.77.0.3  volq-worker (hostname host-b)
 *
 * The domains root is a folder of this machine that every "host" sees, as
 * an NFS mount would be.  A bulk upgrade of 100 disks spreads over both
 * worker hosts; host b is killed whole mid-run (every process of its
 * namespace at once, so no parent requeues anything) and its jobs run again
 * on host a once their lease runs out.  Needs root (CAP_NET_ADMIN and
 * CAP_SYS_ADMIN) and ip(8); skipped otherwise. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/redis_node.h"
#include "lib/stack.h"
#include "t.h"
#include "volq/disk.h"
#include "volq/domain.h"
#include "volq/queue.h"

#define NDISKS 100
#define LEASE_MS 2000
#define REDIS_ADDR "10.77.0.1"
#define API_ADDR "10.77.0.2:8085"
#define USER "volq"
#define PASS "s3cret"
#define REDIS_URL "redis://" USER ":" PASS "@" REDIS_ADDR ":6379/0"
/* volq keeps every key under {volq}: the ACL gives it those and nothing
 * dangerous but ROLE (asked of a master named by Sentinel). */
#define REDIS_CONF                                                                     \
    "appendonly yes\nappendfsync always\nrequirepass default-" PASS "\n"             \
    "user " USER " on >" PASS " ~{volq}:* resetchannels +@all -@dangerous +role\n"

enum { NS_R, NS_A, NS_B, NS_N };
static const char ns_letter[NS_N] = {'r', 'a', 'b'};

typedef struct net {
    char ns[NS_N][32];   /* "vqmh<pid><letter>" */
} net;

/* Where sh() sends output: net.log in the case's folder, nowhere before. */
static const char *sh_log = "/dev/null";

/* Runs a command line (tests only), its output appended to sh_log. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[1200];
    snprintf(full, sizeof full, "(%s) >>%s 2>&1", cmd, sh_log);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- namespaces ------------------------------------------------------------ */

static ino_t ns_inode(const char *ns)
{
    char path[96];
    struct stat st;
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* What `ip netns pids NS` prints: every process whose network namespace it is. */
static int ns_pids(const char *ns, pid_t *out, int max)
{
    ino_t ino = ns_inode(ns);
    DIR *d = opendir("/proc");
    int n = 0;
    for (struct dirent *e; ino && d && (e = readdir(d)) != NULL;) {
        char path[300];
        struct stat st;
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
        if (stat(path, &st) == 0 && st.st_ino == ino && n < max) out[n++] = pid;
    }
    if (d) closedir(d);
    return n;
}

/* SIGKILL to every process of the namespace at once; how many there were. */
static int ns_kill(const char *ns)
{
    pid_t pids[256];
    int n = ns_pids(ns, pids, 256);
    for (int i = 0; i < n; i++) kill(pids[i], SIGKILL);
    return n;
}

static int ns_empty(void *arg)
{
    pid_t pids[4];
    return ns_pids(arg, pids, 4) == 0;
}

static void ns_delete(const char *ns)
{
    ns_kill(ns);
    t_poll(ns_empty, (void *)ns, 5000);
    sh("ip netns del %s", ns);
}

/* Namespaces of earlier runs whose test process is gone (killed by a timeout). */
static void delete_stale(void)
{
    FILE *p = popen("ip netns list 2>/dev/null", "r");
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        int pid = 0;
        char letter = 0, name[64];
        if (sscanf(line, "vqmh%d%c", &pid, &letter) != 2 || pid <= 0) continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(name, sizeof name, "vqmh%d%c", pid, letter);
        ns_delete(name);
    }
    if (p) pclose(p);
}

/* r holds the bridge; a and b hang on it with a veth pair each. */
static int net_up(net *n)
{
    for (int i = 0; i < NS_N; i++) {
        snprintf(n->ns[i], sizeof n->ns[i], "vqmh%d%c", (int)getpid(), ns_letter[i]);
        if (sh("ip netns add %s && ip -n %s link set lo up", n->ns[i], n->ns[i])) return -1;
    }
    const char *r = n->ns[NS_R];
    if (sh("ip -n %s link add br0 type bridge && ip -n %s link set br0 up && "
           "ip -n %s addr add " REDIS_ADDR "/24 dev br0", r, r, r))
        return -1;
    for (int i = NS_A; i < NS_N; i++) {
        const char *h = n->ns[i];
        if (sh("ip -n %s link add v%c type veth peer name eth0 netns %s && "
               "ip -n %s link set v%c master br0 up && "
               "ip -n %s addr add 10.77.0.%d/24 dev eth0 && ip -n %s link set eth0 up",
               r, ns_letter[i], h, r, ns_letter[i], h, i + 1, h))
            return -1;
    }
    return 0;
}

static void net_down(net *n)
{
    for (int i = 0; i < NS_N; i++)
        if (n->ns[i][0]) ns_delete(n->ns[i]);
}

static int enter_ns(const char *ns)
{
    char path[96];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = fd >= 0 ? setns(fd, CLONE_NEWNET) : -1;
    if (fd >= 0) close(fd);
    return rc;
}

/* Can this process make namespaces, a bridge and a UTS namespace?  The
 * reason when not. */
static int permitted(char *why, size_t whysz)
{
    if (geteuid() != 0) return snprintf(why, whysz, "not root (ip netns needs CAP_SYS_ADMIN)"), 0;
    if (sh("command -v ip")) return snprintf(why, whysz, "ip(8) not found (iproute2)"), 0;
    char probe[32];
    snprintf(probe, sizeof probe, "vqmh%dp", (int)getpid());
    int ok = sh("ip netns add %s && ip -n %s link add br0 type bridge", probe, probe) == 0;
    sh("ip netns del %s", probe);
    if (!ok) return snprintf(why, whysz, "ip netns add or a bridge is not permitted here "
                             "(no CAP_NET_ADMIN/CAP_SYS_ADMIN?)"), 0;
    pid_t pid = fork();
    if (pid == 0) _exit(unshare(CLONE_NEWUTS) == 0 ? 0 : 1);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return snprintf(why, whysz, "unshare(CLONE_NEWUTS) is not permitted here"), 0;
    return 1;
}

/* ---- the hosts ------------------------------------------------------------- */

/* bin/name argv... as a process of host, output in log: what `ip netns exec NS
 * unshare --uts ...` does, without a shell: setns into the host's network
 * namespace, a UTS namespace of its own with the host's name, exec. */
static pid_t spawn_on(const char *ns, const char *host, const char *log,
                      const char *const *env, const char **argv)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", t_bin_dir(), argv[0]);
    argv[0] = path;
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || enter_ns(ns) || unshare(CLONE_NEWUTS) || sethostname(host, strlen(host)))
        _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    for (; env && *env; env++) putenv((char *)*env);
    unsetenv("VOLQ_TOKEN");
    execv(path, (char *const *)argv);
    _exit(127);
}

static pid_t start_workers(const net *n, int ns, const char *host, const t_stack *s,
                           const char *const *env)
{
    char log[64];
    snprintf(log, sizeof log, "worker-%s.log", host);
    const char *argv[] = {"volq-worker", "--redis", REDIS_URL, "--domains", s->domains,
                          "--processes", "2", "--log-level", "debug", NULL};
    return spawn_on(n->ns[ns], host, log, env, argv);
}

static int stop(pid_t pid)
{
    int st = 0;
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the jobs -------------------------------------------------------------- */

typedef struct run {
    vq_queue *q;
    char ids[NDISKS][VQ_UUID_SIZE];
    int n;
    char lost[NDISKS][VQ_UUID_SIZE]; /* running on host b when it died */
    int nlost;
    int64_t requeued_ms;             /* when a lost job first left host b, or 0 */
} run;

static int on_host(const vq_job *j, const char *host)
{
    size_t n = strlen(host);
    return strncmp(j->worker, host, n) == 0 && j->worker[n] == ':';
}

/* Jobs per state and per host of their last attempt. */
typedef struct tally {
    int ended, succeeded, running_b, done_a, done_b;
} tally;

static tally count(run *r)
{
    tally t = {0};
    for (int i = 0; i < r->n; i++) {
        vq_job *j = NULL;
        if (vq_queue_get(r->q, r->ids[i], &j, NULL) != 0) continue;
        t.ended += j->state >= VQ_JOB_SUCCEEDED;
        t.succeeded += j->state == VQ_JOB_SUCCEEDED;
        t.running_b += j->state == VQ_JOB_RUNNING && on_host(j, "host-b");
        t.done_a += j->state == VQ_JOB_SUCCEEDED && on_host(j, "host-a");
        t.done_b += j->state == VQ_JOB_SUCCEEDED && on_host(j, "host-b");
        vq_job_free(j);
    }
    return t;
}

static int both_hosts_busy(void *arg)
{
    tally t = count(arg);
    return t.done_b >= 10 && t.done_a >= 10;
}

/* Notes when the first lost job leaves host b (its lease ran out). */
static int all_ended(void *arg)
{
    run *r = arg;
    for (int i = 0; i < r->nlost && !r->requeued_ms; i++) {
        vq_job *j = NULL;
        if (vq_queue_get(r->q, r->lost[i], &j, NULL) == 0 && !on_host(j, "host-b"))
            r->requeued_ms = vq_now_ms();
        vq_job_free(j);
    }
    return count(r).ended == r->n;
}

static void find_lost(run *r)
{
    for (int i = 0; i < r->n; i++) {
        vq_job *j = NULL;
        if (vq_queue_get(r->q, r->ids[i], &j, NULL) == 0 && j->state == VQ_JOB_RUNNING &&
            on_host(j, "host-b"))
            memcpy(r->lost[r->nlost++], j->id, VQ_UUID_SIZE);
        vq_job_free(j);
    }
}

typedef struct hosts_seen {
    vq_queue *q;
    int a, b;
} hosts_seen;

/* Both worker hosts registered (two processes each). */
static int workers_registered(void *arg)
{
    hosts_seen *h = arg;
    json_t *st = NULL;
    h->a = h->b = 0;
    if (vq_queue_status(h->q, &st, NULL) != 0) return 0;
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(st, "workers"), i, w) {
        const char *host = json_string_value(json_object_get(w, "host"));
        h->a += host && strcmp(host, "host-a") == 0;
        h->b += host && strcmp(host, "host-b") == 0;
    }
    json_decref(st);
    return h->a == 2 && h->b == 2;
}

static int api_up(void *arg)
{
    t_cmd c;
    int ok = t_volq(arg, &c, NULL, "status", NULL) == 0 && c.status == 0;
    t_cmd_free(&c);
    return ok;
}

static void bulk_upgrade(const t_stack *s, run *r)
{
    t_cmd c;
    REQUIRE(t_volq(s, &c, NULL, "--json", "upgrade-domain", s->sd, NULL) == 0);
    CHECK_INT(c.status, 0);
    json_t *jobs = json_object_get(c.json, "jobs");
    REQUIRE(json_array_size(jobs) == NDISKS);
    CHECK_INT(json_array_size(json_object_get(c.json, "skipped")), 0);
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
        snprintf(r->ids[r->n++], VQ_UUID_SIZE, "%s", json_string_value(json_object_get(j, "id")));
    t_cmd_free(&c);
}

static void check_disks_amended(const t_stack *s)
{
    vq_domain *d = NULL;
    char (*imgs)[VQ_UUID_SIZE] = NULL;
    size_t n = 0;
    REQUIRE(vq_domain_open(s->domains, s->sd, &d, NULL) == 0);
    REQUIRE(vq_domain_images(d, &imgs, &n, NULL) == 0);
    CHECK_INT(n, NDISKS);
    for (size_t i = 0; i < n; i++) {
        vq_disk *disk = NULL;
        REQUIRE(vq_disk_load(d, imgs[i], &disk, NULL) == 0);
        CHECK_INT(disk->vols[0].qcow_version, 3);
        vq_disk_free(disk);
    }
    free(imgs);
    vq_domain_free(d);
}

static void slow_qemu(void)
{
    FILE *w = fopen("slow-qemu-img", "w");
    REQUIRE(w);
    fprintf(w, "#!/bin/sh\nsleep 0.1\nexec /usr/bin/qemu-img \"$@\"\n");
    fclose(w);
    chmod("slow-qemu-img", 0755);
}

/* Everything on the hosts, from namespace r. */
static void hosts_body(const net *n)
{
    t_stack s = {0};
    snprintf(s.domains, sizeof s.domains, "%s/domains", t_dir());
    snprintf(s.api, sizeof s.api, "http://" API_ADDR);
    mkdir(s.domains, 0755);
    REQUIRE(t_stack_mkdomain(&s, "--version 4 --disks 100 --data-mib 0"));
    slow_qemu();
    t_node redis;
    REQUIRE(t_node_start(&redis, "redis", REDIS_ADDR, 6379, 0, REDIS_CONF) == 0);

    char lease[64], qemu[600];
    snprintf(lease, sizeof lease, "VOLQ_LEASE_MS=%d", LEASE_MS);
    snprintf(qemu, sizeof qemu, "VOLQ_QEMU_IMG=%s/slow-qemu-img", t_dir());
    const char *env[] = {lease, qemu, NULL};
    const char *sargv[] = {"volq-scheduler", "--redis", REDIS_URL, "--domains", s.domains,
                           "--listen", API_ADDR, "--log-level", "debug", NULL};
    pid_t sched = spawn_on(n->ns[NS_A], "host-a", "scheduler.log", env, sargv);
    pid_t wa = start_workers(n, NS_A, "host-a", &s, env);
    pid_t wb = start_workers(n, NS_B, "host-b", &s, env);
    REQUIRE(sched > 0 && wa > 0 && wb > 0);
    REQUIRE(t_poll(api_up, &s, 15000));

    vq_redis *rc = NULL;
    run *r = calloc(1, sizeof *r);
    REQUIRE(r && vq_redis_connect(REDIS_URL, 2000, &rc, NULL) == 0);
    REQUIRE(vq_queue_new(rc, NULL, &r->q, NULL) == 0);
    hosts_seen hs = {r->q, 0, 0};
    CHECK(t_poll(workers_registered, &hs, 15000));
    CHECK_INT(hs.a, 2);
    CHECK_INT(hs.b, 2);

    bulk_upgrade(&s, r);
    REQUIRE(t_poll(both_hosts_busy, r, 30000));
    int killed = ns_kill(n->ns[NS_B]);
    int64_t t_kill = vq_now_ms();
    CHECK(killed >= 3); /* the pool's parent and its two children, at least */
    waitpid(wb, NULL, 0);
    REQUIRE(t_poll(ns_empty, (void *)n->ns[NS_B], 5000));
    find_lost(r);
    tally at_kill = count(r);
    REQUIRE(r->nlost >= 1);                 /* host b died mid-job */
    CHECK(at_kill.ended <= NDISKS - 10);    /* and mid-run */

    CHECK(t_poll(all_ended, r, 40000));
    tally end = count(r);
    CHECK_INT(end.succeeded, NDISKS);
    CHECK(end.done_b >= 10);
    CHECK_INT(end.done_a + end.done_b, NDISKS);
    /* Nobody put the lost jobs back early: only their lease (renewed every
     * LEASE_MS / 3) running out, seen by the scheduler's housekeeping. */
    CHECK(r->requeued_ms - t_kill >= LEASE_MS / 2);
    for (int i = 0; i < r->nlost; i++) {
        vq_job *j = NULL;
        REQUIRE(vq_queue_get(r->q, r->lost[i], &j, NULL) == 0);
        CHECK_STR(vq_job_state_name(j->state), "succeeded");
        CHECK(on_host(j, "host-a"));
        CHECK_INT(j->crashes, 1);
        vq_job_free(j);
    }
    check_disks_amended(&s);
    CHECK_INT(stop(wa), 0);
    CHECK_INT(stop(sched), 0);
    vq_queue_free(r->q);
    free(r);
    t_node_stop(&redis);
}

static void test_multihost_bulk_upgrade_survives_a_lost_host(void)
{
    net n;
    memset(&n, 0, sizeof n);
    sh_log = "net.log";
    delete_stale();
    int up = net_up(&n);
    pid_t body = -1;
    if (up == 0) {
        fflush(NULL);
        body = fork();
        if (body == 0) {
            if (enter_ns(n.ns[NS_R]) != 0) _exit(2);
            hosts_body(&n);
            fflush(NULL);
            _exit(t_failed_ ? 1 : 0);
        }
    }
    int st = 0;
    if (body > 0) waitpid(body, &st, 0);
    net_down(&n); /* whatever the body left running, even after a failure */
    if (up != 0) T_FAIL_("could not set up the namespaces (see net.log)");
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) T_FAIL_("the hosts' part failed (above)");
    for (int i = 0; i < NS_N; i++) CHECK_INT(ns_inode(n.ns[i]), 0);
}

int main(int argc, char **argv)
{
    static const struct t_case cases[] = {T(test_multihost_bulk_upgrade_survives_a_lost_host),
                                          {NULL, NULL}};
    char why[200];
    if (!permitted(why, sizeof why)) {
        printf("1..1\nok 1 - test_multihost # SKIP %s\n", why);
        return 0;
    }
    return t_run_(cases, argc, argv);
}
