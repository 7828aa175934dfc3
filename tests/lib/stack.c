/* The test stack: redis, volq-scheduler, volq-worker; a raw HTTP client; a
 * runner for the volq CLI.  Tests only: fork/exec and popen are fine here. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/stack.h"
#include "t.h"

static char bin_dir[PATH_MAX], src_dir[PATH_MAX];

/* dirname of the test binary + rel, when the environment does not say. */
static void from_self(char *out, size_t sz, const char *rel)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    if (snprintf(out, sz, "%.3000s/%s", self, rel) >= (int)sz) out[0] = '\0';
}

const char *t_bin_dir(void)
{
    if (!bin_dir[0]) {
        const char *e = getenv("VOLQ_BIN_DIR");
        if (e && *e) snprintf(bin_dir, sizeof bin_dir, "%s", e);
        else from_self(bin_dir, sizeof bin_dir, "../bin");
    }
    return bin_dir;
}

const char *t_source_dir(void)
{
    if (!src_dir[0]) {
        const char *e = getenv("VOLQ_SOURCE_DIR");
        if (e && *e) snprintf(src_dir, sizeof src_dir, "%s", e);
        else from_self(src_dir, sizeof src_dir, "../..");
    }
    return src_dir;
}

int t_poll(int (*fn)(void *arg), void *arg, int timeout_ms)
{
    struct timespec t0, now, nap = {0, 20 * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int r = fn(arg);
        if (r) return r;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > timeout_ms) return 0;
        nanosleep(&nap, NULL);
    }
}

/* A port nobody listens on now (the kernel's pick for port 0). */
int t_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* fork + exec of bin/name argv, stderr and stdout appended to log. */
static pid_t spawn_daemon(const t_stack *s, const char *name, const char *log, const char **argv)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", t_bin_dir(), name);
    argv[0] = path;
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    for (const char *const *e = s->env; e && *e; e++) putenv((char *)*e);
    if (s->token) setenv("VOLQ_TOKEN", s->token, 1);
    else unsetenv("VOLQ_TOKEN");
    execv(path, (char *const *)argv);
    _exit(127);
}

static int healthy(void *arg)
{
    const t_stack *s = arg;
    t_resp h;
    int ok = t_req(s, "GET", "/healthz", NULL, NULL, &h) == 0 && h.status == 200;
    t_resp_free(&h);
    if (!ok && waitpid(s->sched, NULL, WNOHANG) == s->sched) return 2; /* died */
    return ok;
}

int t_stack_start_scheduler(t_stack *s)
{
    /* The port is free when picked but may be taken before the bind: retry. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (!s->port || attempt) s->port = t_free_port();
        snprintf(s->listen, sizeof s->listen, "127.0.0.1:%d", s->port);
        snprintf(s->api, sizeof s->api, "http://127.0.0.1:%d", s->port);
        const char *argv[] = {NULL, "--redis", s->redis.url, "--domains", s->domains, "--listen",
                        s->listen, "--log-level", "debug", NULL};
        s->sched = spawn_daemon(s, "volq-scheduler", "scheduler.log", argv);
        if (s->sched < 0) return -1;
        int r = t_poll(healthy, s, 10000);
        if (r == 1) return 0;
        if (r == 0) {
            fprintf(stderr, "# volq-scheduler did not become healthy in 10 s (scheduler.log)\n");
            return -1;
        }
        s->sched = 0;
    }
    fprintf(stderr, "# volq-scheduler kept exiting at start (scheduler.log)\n");
    return -1;
}

static int stop_pid(pid_t *pid)
{
    int st = 0;
    if (*pid <= 0) return -1;
    kill(*pid, SIGTERM);
    while (waitpid(*pid, &st, 0) < 0 && errno == EINTR) {
    }
    *pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int t_stack_stop_scheduler(t_stack *s) { return stop_pid(&s->sched); }

int t_stack_start_workers(t_stack *s, int processes)
{
    char procs[16];
    snprintf(procs, sizeof procs, "%d", processes);
    const char *argv[] = {NULL, "--redis", s->redis.url, "--domains", s->domains, "--processes",
                    procs, "--log-level", "debug", NULL};
    s->worker = spawn_daemon(s, "volq-worker", "worker.log", argv);
    return s->worker > 0 ? 0 : -1;
}

int t_stack_stop_workers(t_stack *s) { return stop_pid(&s->worker); }

int t_stack_start(t_stack *s, unsigned flags)
{
    snprintf(s->domains, sizeof s->domains, "%s/domains", t_dir());
    mkdir(s->domains, 0755);
    if (t_redis_start(&s->redis, "redis")) return -1;
    if (t_stack_start_scheduler(s)) return -1;
    return flags & T_STACK_WORKERS ? t_stack_start_workers(s, 2) : 0;
}

/* A daemon that exits non-zero on SIGTERM (a sanitizer report, a crash) fails
 * the case, with the end of its log. */
static void check_exit(const char *name, const char *log, int status)
{
    char cmd[256];
    if (status <= 0) return;
    T_FAIL_("%s exited with status %d on SIGTERM; the end of %s:", name, status, log);
    snprintf(cmd, sizeof cmd, "tail -n 40 %s | sed 's/^/#   /' >&2", log);
    if (system(cmd) != 0) fprintf(stderr, "#   (no log)\n");
}

void t_stack_stop(t_stack *s)
{
    check_exit("volq-worker", "worker.log", stop_pid(&s->worker));
    check_exit("volq-scheduler", "scheduler.log", stop_pid(&s->sched));
    t_redis_stop(&s->redis);
}

const char *t_stack_mkdomain(t_stack *s, const char *args)
{
    char cmd[2048], line[128] = "";
    snprintf(cmd, sizeof cmd, "%s/scripts/mkdomain.sh %s %s", t_source_dir(), s->domains, args);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    if (!fgets(line, sizeof line, p)) line[0] = '\0';
    if (pclose(p) != 0) return NULL;
    line[strcspn(line, "\n")] = '\0';
    if (strlen(line) != 36) return NULL;
    memcpy(s->sd, line, 37); /* 36 chars and the NUL, checked above */
    return s->sd;
}

/* ---- HTTP ------------------------------------------------------------- */

int t_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* Reads until EOF or 30 s of silence. */
static char *read_to_eof(int fd, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (!buf || poll(&p, 1, 30000) <= 0) break;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

static void parse_answer(char *raw, size_t len, t_resp *out)
{
    char *sep = strstr(raw, "\r\n\r\n");
    if (!sep || sscanf(raw, "HTTP/1.%*d %d", &out->status) != 1) {
        out->head = raw;
        out->body = strdup("");
        return;
    }
    size_t hlen = (size_t)(sep - raw);
    out->body = strdup(sep + 4);
    out->len = len - hlen - 4;
    raw[hlen] = '\0';
    out->head = raw;
    char *cl = t_resp_header(out, "Content-Length");
    if (cl && (size_t)atol(cl) < out->len) out->body[out->len = (size_t)atol(cl)] = '\0';
    free(cl);
    out->json = json_loadb(out->body, out->len, 0, NULL);
}

int t_req_raw(const t_stack *s, const char *req, size_t len, t_resp *out)
{
    memset(out, 0, sizeof *out);
    int fd = t_connect(s->port);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < len) { /* the server may answer and close early (413) */
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    size_t n = 0;
    char *raw = read_to_eof(fd, &n);
    close(fd);
    if (!raw || n == 0) {
        free(raw);
        return -1;
    }
    parse_answer(raw, n, out);
    return 0;
}

int t_req(const t_stack *s, const char *method, const char *path, const char *body,
           const char *extra, t_resp *out)
{
    size_t blen = body ? strlen(body) : 0;
    char auth[300] = "";
    if (s->token && !(extra && strcasestr(extra, "Authorization:")))
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", s->token);
    size_t cap = 1024 + strlen(path) + (extra ? strlen(extra) : 0) + blen;
    char *req = malloc(cap);
    if (!req) return -1;
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n%s%s\r\n",
                     method, path, s->listen, blen, auth, extra ? extra : "");
    if (body) memcpy(req + n, body, blen);
    int rc = t_req_raw(s, req, (size_t)n + blen, out);
    free(req);
    return rc;
}

char *t_resp_header(const t_resp *h, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = h->head ? strstr(h->head, "\r\n") : NULL; line; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            l += nl + 1;
            while (*l == ' ') l++;
            return strndup(l, strcspn(l, "\r\n"));
        }
    }
    return NULL;
}

void t_resp_free(t_resp *h)
{
    free(h->head);
    free(h->body);
    json_decref(h->json);
    memset(h, 0, sizeof *h);
}

/* ---- the volq CLI ---------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;
    if (!f) return strdup("");
    FILE *m = open_memstream(&buf, &len);
    int ch;
    while (m && (ch = fgetc(f)) != EOF) fputc(ch, m);
    if (m) fclose(m);
    fclose(f);
    return buf ? buf : strdup("");
}

static void child_env(const t_stack *s, const char *const *env)
{
    if (s && s->api[0]) setenv("VOLQ_API", s->api, 1);
    unsetenv("VOLQ_TOKEN");
    for (; env && *env; env++) {
        const char *eq = strchr(*env, '=');
        if (eq && eq[1] == '\0') {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - *env), *env);
            unsetenv(name);
        } else {
            putenv((char *)*env);
        }
    }
}

int t_volq(const t_stack *s, t_cmd *out, const char *const *env, ...)
{
    static int seq;
    char path[PATH_MAX + 16], fo[64], fe[64];
    const char *argv[64];
    int argc = 1;
    va_list ap;
    va_start(ap, env);
    while (argc < 63 && (argv[argc] = va_arg(ap, const char *)) != NULL) argc++;
    va_end(ap);
    argv[argc] = NULL;
    snprintf(path, sizeof path, "%s/volq", t_bin_dir());
    argv[0] = path;
    snprintf(fo, sizeof fo, "volq.%d.out", ++seq);
    snprintf(fe, sizeof fe, "volq.%d.err", seq);
    memset(out, 0, sizeof *out);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(fo, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(fe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(o, 1);
        dup2(e, 2);
        child_env(s, env);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    out->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    out->out = slurp(fo);
    out->err = slurp(fe);
    out->json = json_loads(out->out, JSON_DECODE_ANY, NULL);
    return 0;
}

void t_cmd_free(t_cmd *c)
{
    free(c->out);
    free(c->err);
    json_decref(c->json);
    memset(c, 0, sizeof *c);
}

t_resp t_call(const t_stack *s, const char *method, const char *path, const char *body, int want)
{
    t_resp h;
    REQUIRE(t_req(s, method, path, body, NULL, &h) == 0);
    if (want && h.status != want)
        T_FAIL_("%s %.80s: status %d, expected %d; body %.300s", method, path, h.status, want,
                h.body);
    return h;
}

json_t *t_get_json(const t_stack *s, const char *path)
{
    t_resp h = t_call(s, "GET", path, NULL, 200);
    json_t *v = json_incref(h.json);
    t_resp_free(&h);
    REQUIRE(v);
    return v;
}
