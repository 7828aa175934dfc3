/* Children and qemu: exit codes, signals, time limits, output, ticks, and
 * qemu's image lock held by a real qemu-io. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "volq/qcow2.h"
#include "volq/qemu.h"
#include "volq/spawn.h"

#define VOL "6a1b2c3d-0000-4000-8000-00000000a001"
#define BASE "6a1b2c3d-0000-4000-8000-00000000b001"

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    REQUIRE(vsnprintf(cmd, sizeof cmd, fmt, ap) < (int)sizeof cmd);
    va_end(ap);
    REQUIRE(system(cmd) == 0);
}

static int run_sh(const char *script, int timeout_ms, vq_spawn_result *res, vq_error *e)
{
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    return vq_spawn_run(argv, NULL, timeout_ms, NULL, NULL, 0, res, e);
}

static void test_spawn_exit_code_and_output(void)
{
    vq_spawn_result r;
    vq_error e = {0};
    unsigned long before = vq_spawn_count();
    CHECK_INT(run_sh("echo out; echo err >&2; exit 3", 0, &r, &e), VQ_ESPAWN);
    CHECK_INT(r.exited, 1);
    CHECK_INT(r.code, 3);
    CHECK_INT(r.signaled, 0);
    CHECK_INT(r.timed_out, 0);
    CHECK_STR(r.out, "err\nout\n"); /* stderr first */
    CHECK_STR(e.text, "sh exited 3: err");
    CHECK_INT(run_sh("exit 0", 0, &r, NULL), 0);
    CHECK_INT(r.exited, 1);
    CHECK_INT(r.code, 0);
    CHECK_INT(vq_spawn_count(), before + 2);
}

static void test_spawn_signal_reported_apart(void)
{
    vq_spawn_result r;
    vq_error e = {0};
    /* The child starts with default dispositions and no mask, whatever ours are. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGTERM, SIG_IGN);
    CHECK_INT(run_sh("kill -TERM $$; sleep 5", 0, &r, &e), VQ_ESPAWN);
    CHECK_INT(r.exited, 0);
    CHECK_INT(r.signaled, 1);
    CHECK_INT(r.sig, SIGTERM);
    CHECK_STR(e.text, "sh killed by signal 15");
}

static void test_spawn_timeout_kills(void)
{
    vq_spawn_result r;
    vq_error e = {0};
    const char *argv[] = {"/bin/sleep", "30", NULL};
    long long t0 = t_now_ms();
    CHECK_INT(vq_spawn_run(argv, NULL, 200, NULL, NULL, 0, &r, &e), VQ_ETIMEDOUT);
    long long took = t_now_ms() - t0;
    CHECK(took >= 200 && took < 5000);
    CHECK_INT(r.timed_out, 1);
    CHECK_INT(r.signaled, 1);
    CHECK_INT(r.sig, SIGKILL);
    CHECK_STR(e.text, "sleep timed out after 200 ms");
    /* reaped: no child is left to wait for */
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
}

/* A child that writes far more than a pipe holds is not blocked, and the
 * kept output is cut at the buffer size. */
static void test_spawn_large_output(void)
{
    vq_spawn_result r;
    CHECK_INT(run_sh("head -c 1000000 /dev/zero | tr '\\0' x; echo done >&2", 10000, &r, NULL), 0);
    CHECK_INT(strlen(r.out), sizeof r.out - 1);
    CHECK(strncmp(r.out, "done\nxxx", 8) == 0);
}

typedef struct ticks {
    int n, stop_at;
} ticks;

static int on_tick(void *arg)
{
    ticks *t = arg;
    return ++t->n >= t->stop_at ? VQ_ESTALE : 0;
}

static void test_spawn_tick_stops_child(void)
{
    ticks t = {0, 3};
    vq_spawn_result r;
    vq_error e = {0};
    const char *argv[] = {"/bin/sleep", "30", NULL};
    long long t0 = t_now_ms();
    CHECK_INT(vq_spawn_run(argv, NULL, 0, on_tick, &t, 50, &r, &e), VQ_ESTALE);
    CHECK_INT(t.n, 3);
    CHECK(t_now_ms() - t0 < 5000);
    CHECK_INT(r.signaled, 1);
    CHECK_INT(r.sig, SIGKILL);
    CHECK_INT(r.timed_out, 0);
    CHECK_STR(e.text, "sleep stopped by its caller");
    /* A tick that never stops leaves a normal exit alone. */
    ticks never = {0, 1000000};
    const char *quick[] = {"/bin/sh", "-c", "sleep 0.3", NULL};
    CHECK_INT(vq_spawn_run(quick, NULL, 0, on_tick, &never, 20, &r, NULL), 0);
    CHECK(never.n >= 3);
}

static void test_spawn_cwd_stdin_and_bad_args(void)
{
    REQUIRE(mkdir("sub", 0755) == 0);
    char want[4200];
    snprintf(want, sizeof want, "%s/sub\n", t_dir());
    vq_spawn_result r;
    const char *pwd[] = {"/bin/pwd", NULL};
    CHECK_INT(vq_spawn_run(pwd, "sub", 0, NULL, NULL, 0, &r, NULL), 0);
    CHECK_STR(r.out, want);
    const char *cat[] = {"/bin/cat", NULL}; /* stdin is /dev/null: ends at once */
    CHECK_INT(vq_spawn_run(cat, NULL, 5000, NULL, NULL, 0, &r, NULL), 0);
    CHECK_STR(r.out, "");
    vq_error e = {0};
    CHECK_INT(vq_spawn_run(pwd, "missing", 0, NULL, NULL, 0, &r, &e), VQ_ESPAWN);
    CHECK_STR(e.text, "cannot run /bin/pwd in missing: No such file or directory");
    vq_error_clear(&e);
    const char *rel[] = {"pwd", NULL};
    CHECK_INT(vq_spawn_run(rel, NULL, 0, NULL, NULL, 0, &r, &e), VQ_EINVAL);
    CHECK_STR(e.text, "spawn: the program must be an absolute path");
}

/* ---- qemu-img ---- */

static int header_version(const char *path)
{
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    vq_qcow2 q;
    int rc = vq_qcow2_read(fd, &q, NULL);
    close(fd);
    return rc < 0 ? rc : (int)q.version;
}

/* qemu-img info --output=json, flattened to one line. */
static void info(const char *vol, char *out, size_t size)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd %s && qemu-img info -U --output=json %s | tr -d ' \\n'",
             t_dir(), vol);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    pclose(p);
}

static void test_qemu_create(void)
{
    char buf[4096];
    vq_error e = {0};
    CHECK_INT(vq_qemu_create(t_dir(), BASE, 0, "0.10", 1 << 20, NULL, NULL, 30000, NULL, NULL, &e), 0);
    info(BASE, buf, sizeof buf);
    CHECK_CONTAINS(buf, "\"format\":\"qcow2\"");
    CHECK_CONTAINS(buf, "\"virtual-size\":1048576");
    CHECK_CONTAINS(buf, "\"compat\":\"0.10\"");
    /* overlay without a size: the backing file's */
    CHECK_INT(vq_qemu_create(t_dir(), VOL, 0, "1.1", 0, BASE, "qcow2", 30000, NULL, NULL, &e), 0);
    info(VOL, buf, sizeof buf);
    CHECK_CONTAINS(buf, "\"backing-filename\":\"" BASE "\"");
    CHECK_CONTAINS(buf, "\"backing-filename-format\":\"qcow2\"");
    CHECK_CONTAINS(buf, "\"virtual-size\":1048576");
    CHECK_CONTAINS(buf, "\"compat\":\"1.1\"");
    CHECK_INT(vq_qemu_create(t_dir(), VOL, 0, "1.1", 1 << 20, NULL, NULL, 30000, NULL, NULL, &e), VQ_EEXIST);
    CHECK_STR(e.text, "volume " VOL " already exists");
    const char *raw = "6a1b2c3d-0000-4000-8000-00000000c001";
    CHECK_INT(vq_qemu_create(t_dir(), raw, 1, NULL, 4096, NULL, NULL, 30000, NULL, NULL, NULL), 0);
    info(raw, buf, sizeof buf);
    CHECK_CONTAINS(buf, "\"format\":\"raw\"");
    CHECK_CONTAINS(buf, "\"virtual-size\":4096");
    vq_error_clear(&e);
    CHECK_INT(vq_qemu_create(t_dir(), "x", 0, "1.1", 512, NULL, NULL, 30000, NULL, NULL, &e), VQ_EINVAL);
    vq_error_clear(&e);
    CHECK_INT(vq_qemu_create("rel", VOL, 0, "1.1", 512, NULL, NULL, 30000, NULL, NULL, &e), VQ_EINVAL);
    vq_error_clear(&e);
    CHECK_INT(vq_qemu_create(t_dir(), raw, 0, "2.0", 512, NULL, NULL, 30000, NULL, NULL, &e), VQ_EINVAL);
    /* qemu-img fails (the backing file is missing): nothing is left behind */
#define BAD "6a1b2c3d-0000-4000-8000-00000000d001"
    vq_error_clear(&e);
    CHECK_INT(vq_qemu_create(t_dir(), BAD, 0, "1.1", 0, "6a1b2c3d-0000-4000-8000-00000000e001",
                             "qcow2", 30000, NULL, NULL, &e), VQ_ESPAWN);
    CHECK_CONTAINS(e.text, "volume " BAD ": qemu-img exited 1: ");
    CHECK(access(BAD, F_OK) != 0);
}

/* The writer end of a fifo that a background qemu-io reads its commands from. */
static int start_qemu_io(const char *vol)
{
    sh("mkfifo ctl && (qemu-io %s < ctl > qemu-io.log 2>&1 &)", vol);
    int fd = open("ctl", O_WRONLY); /* returns once qemu-io's shell opened it */
    REQUIRE(fd >= 0);
    return fd;
}

/* Polls until in_use() gives want, for at most 10 s. */
static int wait_in_use(const char *vol, int want)
{
    long long deadline = t_now_ms() + 10000;
    int got;
    while ((got = vq_qemu_in_use(t_dir(), vol, NULL)) != want && t_now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL); /* a polling step, not a wait for the result */
    }
    return got;
}

static void test_qemu_in_use_by_qemu_io(void)
{
    sh("qemu-img create -q -f qcow2 -o compat=0.10 %s 1M && "
       "qemu-img create -q -f qcow2 -o compat=0.10 -b %s -F qcow2 %s 1M", BASE, BASE, VOL);
    CHECK_INT(vq_qemu_in_use(t_dir(), VOL, NULL), 0);
    int ctl = start_qemu_io(VOL);
    CHECK_INT(wait_in_use(VOL, 1), 1);
    CHECK_INT(vq_qemu_in_use(t_dir(), BASE, NULL), 1); /* its backing file is open too */
    vq_error e = {0};
    CHECK_INT(vq_qemu_amend(t_dir(), VOL, 30000, NULL, NULL, &e), VQ_EBUSY);
    CHECK_CONTAINS(e.text, "volume " VOL " is in use: ");
    CHECK_CONTAINS(e.text, "Failed to get \"write\" lock");
    CHECK_INT(header_version(VOL), 2);
    REQUIRE(write(ctl, "quit\n", 5) == 5);
    close(ctl);
    CHECK_INT(wait_in_use(VOL, 0), 0);
    CHECK_INT(vq_qemu_amend(t_dir(), VOL, 30000, NULL, NULL, NULL), 0);
    CHECK_INT(header_version(VOL), 3);
    vq_error_clear(&e);
    CHECK_INT(vq_qemu_in_use(t_dir(), "6a1b2c3d-0000-4000-8000-00000000f001", &e), VQ_ENOENT);
}

static void test_qemu_img_path_and_hung_binary(void)
{
    unsetenv("VOLQ_QEMU_IMG");
    CHECK_STR(vq_qemu_img_path(), "/usr/bin/qemu-img");
    setenv("VOLQ_QEMU_IMG", "qemu-img", 1);
    CHECK_STR(vq_qemu_img_path(), "/usr/bin/qemu-img");
    char wrapper[4200];
    snprintf(wrapper, sizeof wrapper, "%s/hang", t_dir());
    sh("printf '#!/bin/sh\\nexec sleep 30\\n' > hang && chmod +x hang");
    setenv("VOLQ_QEMU_IMG", wrapper, 1);
    CHECK_STR(vq_qemu_img_path(), wrapper);
    vq_error e = {0};
    CHECK_INT(vq_qemu_amend(t_dir(), VOL, 300, NULL, NULL, &e), VQ_ETIMEDOUT);
    CHECK_STR(e.text, "volume " VOL ": hang timed out after 300 ms");
    vq_error_clear(&e);
    CHECK_INT(vq_qemu_amend(t_dir(), "../etc/passwd", 300, NULL, NULL, &e), VQ_EINVAL);
}

T_MAIN(T(test_spawn_exit_code_and_output), T(test_spawn_signal_reported_apart),
       T(test_spawn_timeout_kills), T(test_spawn_large_output), T(test_spawn_tick_stops_child),
       T(test_spawn_cwd_stdin_and_bad_args), T(test_qemu_create), T(test_qemu_in_use_by_qemu_io),
       T(test_qemu_img_path_and_hung_binary))
