/* A tiny test harness: each case forks into its own temporary folder and
 * prints one TAP line.  Usage:
 *   static void test_kv_parse_sorted(void) { CHECK_INT(f(), 0); ... }
 *   T_MAIN(T(test_kv_parse_sorted), T(...))
 * argv[1], when given, runs only the cases whose name contains it. */
#ifndef VOLQ_T_H
#define VOLQ_T_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct t_case {
    const char *name;
    void (*fn)(void);
};

extern int t_failed_; /* failures in the current case (inside the child) */
int t_run_(const struct t_case *cases, int argc, char **argv);
const char *t_dir(void);  /* the case's temporary folder (absolute; cwd too) */
long long t_now_ms(void); /* monotonic clock, ms: for deadlines */
void t_sleep_ms(int ms);  /* one nap between two polls of a deadline loop */
/* The lines of the file at path (a daemon's log) that hold needle; 0 when it
 * cannot be read. */
int t_log_count(const char *path, const char *needle);

#define T(fn) {#fn, fn}
#define T_MAIN(...)                                                           \
    int main(int argc, char **argv)                                           \
    {                                                                         \
        static const struct t_case cases_[] = {__VA_ARGS__, {NULL, NULL}};    \
        return t_run_(cases_, argc, argv);                                    \
    }

#define T_FAIL_(...)                                                          \
    do {                                                                      \
        fprintf(stderr, "# %s:%d: ", __FILE__, __LINE__);                     \
        fprintf(stderr, __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                  \
        t_failed_++;                                                          \
    } while (0)

#define CHECK(c)                                                              \
    do { if (!(c)) T_FAIL_("CHECK(%s) failed", #c); } while (0)
#define CHECK_INT(a, b)                                                       \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        if (a_ != b_) T_FAIL_("%s == %lld, expected %s == %lld", #a, a_, #b, b_); \
    } while (0)
#define CHECK_STR(a, b)                                                       \
    do {                                                                      \
        const char *a_ = (a), *b_ = (b);                                      \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                \
            T_FAIL_("%s == \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)",  \
                    b_ ? b_ : "(null)");                                      \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                           \
    do {                                                                      \
        const char *h_ = (hay), *n_ = (needle);                               \
        if (!h_ || !strstr(h_, n_))                                           \
            T_FAIL_("%s == \"%s\" does not contain \"%s\"", #hay, h_ ? h_ : "(null)", n_); \
    } while (0)
/* Stops the case at once (later checks would only repeat the failure). */
#define REQUIRE(c)                                                            \
    do { if (!(c)) { T_FAIL_("REQUIRE(%s) failed", #c); exit(1); } } while (0)

#endif
