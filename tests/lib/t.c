/* The harness behind tests/t.h: fork per case, temp folder per case, TAP out. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "t.h"

int t_failed_;
static char dir_[4096];

const char *t_dir(void) { return dir_; }

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static int run_case(const struct t_case *c)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir_, sizeof dir_, "%s/volq-t-XXXXXX", base);
    if (!mkdtemp(dir_)) { perror("mkdtemp"); return 1; }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir_) != 0) _exit(1);
        setpgid(0, 0); /* so leftovers (daemons a case started) can be killed */
        c->fn();
        fflush(NULL);
        _exit(t_failed_ ? 1 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    kill(-pid, SIGKILL); /* anything the case left running */
    if (!getenv("T_KEEP")) nftw(dir_, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (WIFSIGNALED(st)) fprintf(stderr, "# %s: killed by signal %d\n", c->name, WTERMSIG(st));
    return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int t_run_(const struct t_case *cases, int argc, char **argv)
{
    int n = 0, failed = 0;
    for (const struct t_case *c = cases; c->name; c++)
        if (argc < 2 || strstr(c->name, argv[1])) n++;
    printf("1..%d\n", n);
    int i = 0;
    for (const struct t_case *c = cases; c->name; c++) {
        if (argc >= 2 && !strstr(c->name, argv[1])) continue;
        int bad = run_case(c);
        failed += bad;
        printf("%sok %d - %s\n", bad ? "not " : "", ++i, c->name);
        fflush(stdout);
    }
    printf("# %d passed, %d failed\n", n - failed, failed);
    return failed ? 1 : 0;
}

long long t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void t_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int t_log_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    if (f) fclose(f);
    return n;
}
