/* A short libFuzzer run of every fuzz/ target, so that `make test` catches a
 * parser that crashes or breaks an invariant (fuzz/run.sh builds them with
 * clang into build-fuzz/).  `make fuzz` runs them longer.  Skipped without
 * clang, and in the sanitizer build's suite (the fuzzers carry ASan+UBSan
 * themselves; one run is enough).  VOLQ_FUZZ_SECONDS sets the time per
 * target (default 10; 0 skips). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/stack.h"
#include "t.h"

static int seconds(void)
{
    const char *e = getenv("VOLQ_FUZZ_SECONDS");
    return e && *e ? atoi(e) : 10;
}

/* Why this run is skipped, or NULL. */
static const char *skip_reason(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return "the fuzzers run from the normal build's suite only";
#else
    if (seconds() <= 0) return "VOLQ_FUZZ_SECONDS=0";
    if (access("/usr/bin/clang", X_OK) != 0 && system("command -v clang >/dev/null 2>&1") != 0)
        return "clang is not installed (make fuzz installs it)";
    return NULL;
#endif
}

/* Runs fuzz/run.sh for one target; echoes its lines as TAP comments. */
static void fuzz(const char *target)
{
    const char *why = skip_reason();
    if (why) {
        printf("# SKIP fuzz_%s: %s\n", target, why);
        return;
    }
    char cmd[8192], line[1024], want[64];
    snprintf(cmd, sizeof cmd, "bash %s/fuzz/run.sh %s/build-fuzz %d %s 2>&1", t_source_dir(),
             t_source_dir(), seconds(), target);
    snprintf(want, sizeof want, "fuzz: %s: ok: ", target);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    long runs = -1;
    while (fgets(line, sizeof line, p)) {
        printf("# %s", line);
        if (strncmp(line, want, strlen(want)) == 0) runs = atol(line + strlen(want));
    }
    int st = pclose(p);
    CHECK(WIFEXITED(st));
    CHECK_INT(WEXITSTATUS(st), 0); /* 1: a crash (see build-fuzz/crashes/), 2: no build */
    CHECK(runs > 1000);            /* it really ran */
}

static void test_fuzz_short_meta(void) { fuzz("meta"); }
static void test_fuzz_short_domain_md(void) { fuzz("domain_md"); }
static void test_fuzz_short_qcow2(void) { fuzz("qcow2"); }
static void test_fuzz_short_http_body(void) { fuzz("http_body"); }
static void test_fuzz_short_redis_url(void) { fuzz("redis_url"); }

T_MAIN(T(test_fuzz_short_meta), T(test_fuzz_short_domain_md), T(test_fuzz_short_qcow2),
       T(test_fuzz_short_http_body), T(test_fuzz_short_redis_url))
