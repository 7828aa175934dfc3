/* Helpers of the benchmarks: see bench.h.  Benchmarks only. */
#include "lib/bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/stack.h"
#include "volq/uuid.h"

extern char **environ;

int64_t b_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void b_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

const char *b_work_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0]) return dir;
    const char *e = getenv("VOLQ_BENCH_DIR");
    if (e && *e)
        snprintf(dir, sizeof dir, "%s", e);
    else
        snprintf(dir, sizeof dir, "%s/../bench-work", t_bin_dir());
    if (mkdir_p(dir) == 0) {
        char real[PATH_MAX];
        if (realpath(dir, real)) snprintf(dir, sizeof dir, "%s", real);
    }
    return dir;
}

const char *b_tmpfs_dir(void)
{
    static char dir[64];
    if (!dir[0]) snprintf(dir, sizeof dir, "/dev/shm/volq-bench-%d", (int)getpid());
    mkdir_p(dir);
    return dir;
}

int b_subdir(const char *base, const char *name, char *out, size_t outsz)
{
    if (snprintf(out, outsz, "%s/%s", base, name) >= (int)outsz) return -1;
    return mkdir_p(out);
}

void b_rmrf(const char *path)
{
    if (!path || strlen(path) < 5) return;
    const char *argv[] = {"rm", "-rf", "--", path, NULL};
    b_run("/bin/rm", argv, NULL);
}

/* ---- redis-server ------------------------------------------------------ */

static int redis_ping(const b_redis *r)
{
    redisContext *c = b_redis_connect(r);
    if (!c) return -1;
    redisReply *rep = redisCommand(c, "PING");
    int ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return ok ? 0 : -1;
}

int b_redis_start(b_redis *r, const char *dir, const char *appendfsync)
{
    char conf[PATH_MAX];
    memset(r, 0, sizeof *r);
    if (mkdir_p(dir) || snprintf(r->dir, sizeof r->dir, "%s", dir) >= (int)sizeof r->dir ||
        snprintf(r->sock, sizeof r->sock, "%s/redis.sock", dir) >= (int)sizeof r->sock)
        return -1;
    snprintf(r->url, sizeof r->url, "unix://%s", r->sock);
    snprintf(conf, sizeof conf, "%s/redis.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f) return -1;
    fprintf(f, "port 0\nunixsocket %s\nunixsocketperm 700\ndir %s\nappendonly yes\n"
               "appendfsync %s\nsave \"\"\nlogfile %s/redis.log\ndaemonize no\n",
            r->sock, dir, appendfsync, dir);
    if (fclose(f)) return -1;
    const char *argv[] = {"redis-server", conf, NULL};
    r->pid = b_spawn("/usr/bin/redis-server", argv, NULL, NULL);
    for (int i = 0; r->pid > 0 && i < 500; i++) {
        if (redis_ping(r) == 0) return 0;
        b_sleep_ms(10);
    }
    fprintf(stderr, "# redis-server did not start in %s\n", dir);
    return -1;
}

void b_redis_stop(b_redis *r)
{
    if (r->pid > 0) b_stop(r->pid, SIGTERM, 10000);
    r->pid = 0;
}

redisContext *b_redis_connect(const b_redis *r)
{
    struct timeval tv = {30, 0};
    redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

long long b_redis_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long v = -1;
    if (rep && rep->type == REDIS_REPLY_INTEGER) v = rep->integer;
    if (rep && rep->type == REDIS_REPLY_STRING) v = strtoll(rep->str, NULL, 10);
    if (rep) freeReplyObject(rep);
    return v;
}

long long b_redis_info(redisContext *c, const char *section, const char *field)
{
    redisReply *rep = redisCommand(c, "INFO %s", section);
    long long v = -1;
    size_t flen = strlen(field);
    for (const char *p = rep && rep->str ? rep->str : ""; p && *p;) {
        if (strncmp(p, field, flen) == 0 && p[flen] == ':') {
            v = strtoll(p + flen + 1, NULL, 10);
            break;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (rep) freeReplyObject(rep);
    return v;
}

/* ---- processes ----------------------------------------------------------- */

/* The children spawned and not yet stopped or waited for.  Each is in a
 * process group of its own (below), so a Ctrl-C or timeout's SIGTERM, which
 * reaches only the bench's group, would leave them running: the bench
 * passes the signal on to their groups, then dies of it. */
#define B_KIDS_MAX 64
static volatile pid_t kids[B_KIDS_MAX];

static void on_stop_signal(int sig)
{
    for (int i = 0; i < B_KIDS_MAX; i++)
        if (kids[i] > 0) {
            kill(-kids[i], SIGTERM);
            kill(kids[i], SIGTERM);
        }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void track(pid_t pid, int add)
{
    static int handlers;
    if (add && !handlers) {
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        handlers = 1;
    }
    for (int i = 0; i < B_KIDS_MAX; i++)
        if (add ? kids[i] <= 0 : kids[i] == pid) {
            kids[i] = add ? pid : 0;
            return;
        }
}

pid_t b_spawn(const char *path, const char **argv, const char *const *env, const char *log)
{
    pid_t pid = fork();
    if (pid > 0) track(pid, 1);
    if (pid != 0) return pid;
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) dup2(nul, 0);
    setpgid(0, 0); /* kill -9 of a worker child must not reach the bench */
    for (const char *const *e = env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char name[128];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - *e) : 0, *e);
        if (eq && !eq[1]) unsetenv(name);
        else putenv((char *)*e);
    }
    execv(path, (char *const *)argv);
    _exit(127);
}

pid_t b_spawn_volq(const char *name, const char **argv, const char *const *env, const char *log)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", t_bin_dir(), name);
    argv[0] = path;
    return b_spawn(path, argv, env, log);
}

int b_stop(pid_t pid, int sig, int timeout_ms)
{
    int st = -1;
    if (pid <= 0 || kill(pid, sig)) {
        if (pid > 0) track(pid, 0);
        return -1;
    }
    for (int waited = 0; waitpid(pid, &st, WNOHANG) == 0; waited += 5) {
        if (waited > timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        b_sleep_ms(5);
    }
    track(pid, 0);
    return st;
}

int b_wait(pid_t pid)
{
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
    }
    if (pid > 0) track(pid, 0); /* after: a stop signal meanwhile must reach it */
    if (pid < 0 || r != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int b_run(const char *path, const char **argv, const char *log)
{
    return b_wait(b_spawn(path, argv, NULL, log));
}

long b_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) v = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return v;
}

/* Fields 14..17 of /proc/pid/stat (utime, stime, cutime, cstime) in us. */
static int cpu_fields(pid_t pid, int64_t out[4])
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long v[4];
    /* After the name: state, then fields 4..13, then 14..17. */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                     &v[0], &v[1], &v[2], &v[3]) != 4)
        return -1;
    long tck = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < 4; i++) out[i] = (int64_t)(v[i] * 1000000ULL / (unsigned long long)tck);
    return 0;
}

int64_t b_cpu_us(pid_t pid)
{
    int64_t v[4];
    return cpu_fields(pid, v) ? -1 : v[0] + v[1];
}

int64_t b_cpu_children_us(pid_t pid)
{
    int64_t v[4];
    return cpu_fields(pid, v) ? -1 : v[2] + v[3];
}

int b_children(pid_t parent, pid_t *out, int max)
{
    char path[64], buf[512];
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        int pid = atoi(e->d_name);
        if (pid <= 0) continue;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        const char *rp = strrchr(buf, ')');
        int ppid = 0;
        char state;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == parent)
            out[n++] = pid;
    }
    if (d) closedir(d);
    return n;
}

/* ---- the stack ----------------------------------------------------------- */

int b_http_get(int port, const char *path, char **body, size_t *len)
{
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                     path);
    int fd = t_connect(port);
    if (body) *body = NULL;
    if (fd < 0) return 0;
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && (r = read(fd, buf + got, cap - got - 1)) > 0) {
        got += (size_t)r;
        if (got + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    if (!buf) return 0;
    buf[got] = '\0';
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    char *b = strstr(buf, "\r\n\r\n");
    if (body && b) {
        *body = strdup(b + 4);
        if (len) *len = got - (size_t)(b + 4 - buf);
    }
    free(buf);
    return status;
}

pid_t b_start_scheduler(const char *redis_url, const char *domains, const char *log,
                        const char *const *env, char *api, size_t apisz, int *port)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        char listen[32];
        *port = t_free_port();
        snprintf(listen, sizeof listen, "127.0.0.1:%d", *port);
        snprintf(api, apisz, "http://%s", listen);
        const char *argv[] = {NULL, "--redis", redis_url, "--domains", domains, "--listen", listen,
                              NULL};
        pid_t pid = b_spawn_volq("volq-scheduler", argv, env, log);
        for (int i = 0; pid > 0 && i < 500; i++) {
            if (b_http_get(*port, "/healthz", NULL, NULL) == 200) return pid;
            if (waitpid(pid, NULL, WNOHANG) == pid) break;
            b_sleep_ms(10);
        }
    }
    fprintf(stderr, "# volq-scheduler did not start (%s)\n", log);
    return -1;
}

pid_t b_start_workers(const char *redis_url, const char *domains, int n, const char *log,
                      const char *const *env, redisContext *c)
{
    char procs[16];
    snprintf(procs, sizeof procs, "%d", n);
    const char *argv[] = {NULL, "--redis", redis_url, "--domains", domains, "--processes", procs,
                          NULL};
    pid_t pid = b_spawn_volq("volq-worker", argv, env, log);
    for (int i = 0; pid > 0 && i < 1000; i++) {
        if (b_redis_int(c, "ZCARD {volq}:workers") >= n) return pid;
        b_sleep_ms(10);
    }
    fprintf(stderr, "# volq-worker did not register %d processes (%s)\n", n, log);
    return -1;
}

/* ---- sample domains ------------------------------------------------------ */

int b_mkdomain(const char *root, const char *args, char sd[VQ_UUID_SIZE])
{
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "%s/scripts/mkdomain.sh '%s' %s", t_source_dir(), root, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[128] = "";
    if (!fgets(line, sizeof line, p)) line[0] = '\0';
    int rc = pclose(p);
    line[strcspn(line, "\n")] = '\0';
    if (rc != 0 || !vq_uuid_valid(line)) {
        fprintf(stderr, "# mkdomain.sh %s failed\n", args);
        return -1;
    }
    memcpy(sd, line, VQ_UUID_SIZE);
    return 0;
}

static int write_file(int dfd, const char *name, const void *data, size_t len)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    ssize_t w = len ? write(fd, data, len) : 0;
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

/* The prototype: qemu-img create of a 1 MiB compat 1.1 image with 512-byte clusters. */
static char *proto_volume(const char *dir, size_t *len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/proto.qcow2", dir);
    const char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-o",
                          "compat=1.1,cluster_size=512", path, "1M", NULL};
    if (b_run("/usr/bin/qemu-img", argv, NULL) != 0) return NULL;
    int fd = open(path, O_RDONLY);
    struct stat st;
    char *buf = fd >= 0 && fstat(fd, &st) == 0 ? malloc((size_t)st.st_size) : NULL;
    if (buf && read(fd, buf, (size_t)st.st_size) != st.st_size) {
        free(buf);
        buf = NULL;
    }
    if (buf) *len = (size_t)st.st_size;
    if (fd >= 0) close(fd);
    unlink(path);
    return buf;
}

static int cheap_disk(int imgs, const char *sd, const char *img, size_t i, const char *proto,
                      size_t plen)
{
    char vol[VQ_UUID_SIZE], name[64], meta[768];
    if (mkdirat(imgs, img, 0755)) return -1;
    int dfd = openat(imgs, img, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    vq_uuid_new(vol);
    int n = snprintf(meta, sizeof meta,
                     "CTIME=1700000000\nDESCRIPTION={\"DiskAlias\":\"bench-%06zu_Disk1\","
                     "\"DiskDescription\":\"\"}\nDISKTYPE=DATA\nDOMAIN=%s\nFORMAT=COW\nGEN=0\n"
                     "IMAGE=%s\nLEGALITY=LEGAL\nMTIME=0\n"
                     "PUUID=00000000-0000-0000-0000-000000000000\nSIZE=2048\nTYPE=SPARSE\n"
                     "VOLTYPE=LEAF\nEOF\n",
                     i, sd, img);
    int rc = write_file(dfd, vol, proto, plen);
    snprintf(name, sizeof name, "%s.meta", vol);
    if (!rc) rc = write_file(dfd, name, meta, (size_t)n);
    snprintf(name, sizeof name, "%s.lease", vol);
    if (!rc) rc = write_file(dfd, name, NULL, 0);
    close(dfd);
    return rc;
}

int b_cheap_domain(const char *root, size_t n, char sd[VQ_UUID_SIZE],
                   char (**ids)[VQ_UUID_SIZE])
{
    char path[PATH_MAX];
    size_t plen = 0;
    if (b_mkdomain(root, "--version 4 --disks 0", sd)) return -1;
    char *proto = proto_volume(root, &plen);
    snprintf(path, sizeof path, "%s/%s/images", root, sd);
    int imgs = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char(*v)[VQ_UUID_SIZE] = calloc(n ? n : 1, sizeof *v);
    int rc = proto && imgs >= 0 && v ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        vq_uuid_new(v[i]);
        rc = cheap_disk(imgs, sd, v[i], i, proto, plen);
    }
    if (imgs >= 0) close(imgs);
    free(proto);
    if (rc == 0 && ids)
        *ids = v;
    else
        free(v);
    if (rc) fprintf(stderr, "# could not make the cheap domain under %s\n", root);
    return rc;
}

/* ---- results ------------------------------------------------------------- */

void b_result(const char *name, double value, const char *unit)
{
    if (value >= 100 || value == (long long)value)
        printf("%s: %.0f %s\n", name, value, unit);
    else
        printf("%s: %.3g %s\n", name, value, unit);
    fflush(stdout);
}

int b_target(int pass, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("target: ");
    vprintf(fmt, ap);
    va_end(ap);
    printf(" %s\n", pass ? "PASS" : "MISS");
    fflush(stdout);
    return pass;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double b_percentile(double *v, size_t n, double p)
{
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

void b_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "# ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
