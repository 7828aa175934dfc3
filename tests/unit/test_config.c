/* Unit tests of the settings order (flag > environment > default) and logging set-up. */
#include <getopt.h>
#include <stdlib.h>

#include "t.h"
#include "volq/config.h"
#include "volq/log.h"

static void test_config_flag_env_default(void)
{
    unsetenv("VOLQ_T_X");
    CHECK_STR(vq_config_str(NULL, "VOLQ_T_X", "def"), "def");
    setenv("VOLQ_T_X", "", 1);
    CHECK_STR(vq_config_str(NULL, "VOLQ_T_X", "def"), "def"); /* empty counts as unset */
    setenv("VOLQ_T_X", "env", 1);
    CHECK_STR(vq_config_str(NULL, "VOLQ_T_X", "def"), "env");
    CHECK_STR(vq_config_str("flag", "VOLQ_T_X", "def"), "flag");
    CHECK(vq_config_str(NULL, "VOLQ_T_UNSET_Y", NULL) == NULL);
}

static void test_config_log_levels_and_formats(void)
{
    vq_error e = {0};
    unsetenv("VOLQ_LOG_LEVEL");
    unsetenv("VOLQ_LOG_FORMAT");
    CHECK_INT(vq_config_log("t", NULL, NULL, &e), 0);
    CHECK_INT(vq_log_min_level, VQ_LOG_INFO);
    setenv("VOLQ_LOG_LEVEL", "warn", 1);
    CHECK_INT(vq_config_log("t", NULL, NULL, &e), 0);
    CHECK_INT(vq_log_min_level, VQ_LOG_WARN);
    CHECK_INT(vq_config_log("t", "debug", "json", &e), 0);
    CHECK_INT(vq_log_min_level, VQ_LOG_DEBUG);
    CHECK_INT(vq_config_log("t", "loud", NULL, &e), VQ_EINVAL);
    CHECK_STR(e.text, "unknown log level loud (debug, info, notice, warn)");
    vq_error_clear(&e);
    CHECK_INT(vq_config_log("t", NULL, "xml", &e), VQ_EINVAL);
    CHECK_STR(e.text, "unknown log format xml (text, json)");
}

/* Parses argv (copied: getopt permutes) with the flags a and b; 0 or
 * VQ_EINVAL with its message in why. */
static vq_error why;
static int parse(int argc, const char *const *in, const char **a, const char **b)
{
    char *argv[8];
    for (int i = 0; i < argc; i++) argv[i] = (char *)in[i];
    argv[argc] = NULL;
    *a = *b = NULL;
    const vq_flag table[] = {{"alpha", a}, {"beta", b}, {NULL, NULL}};
    optind = 0; /* getopt starts afresh */
    vq_error_clear(&why);
    return vq_config_flags(argc, argv, table, "t", "usage: t\n", &why);
}

static void test_config_flags(void)
{
    const char *a, *b;
    const char *both[] = {"t", "--alpha", "1", "--beta=two"};
    CHECK_INT(parse(4, both, &a, &b), 0);
    CHECK_STR(a, "1");
    CHECK_STR(b, "two");
    const char *none[] = {"t"};
    CHECK_INT(parse(1, none, &a, &b), 0);
    CHECK(a == NULL && b == NULL);
    const char *last_wins[] = {"t", "--beta", "x", "--beta", "y"};
    CHECK_INT(parse(5, last_wins, &a, &b), 0);
    CHECK_STR(b, "y");
    const char *unknown[] = {"t", "--gamma", "1"};
    CHECK_INT(parse(3, unknown, &a, &b), VQ_EINVAL);
    CHECK_STR(why.text, "unknown option --gamma");
    const char *no_value[] = {"t", "--alpha"};
    CHECK_INT(parse(2, no_value, &a, &b), VQ_EINVAL);
    CHECK_STR(why.text, "option --alpha needs a value");
    const char *no_value2[] = {"t", "--alpha", "1", "--beta"};
    CHECK_INT(parse(4, no_value2, &a, &b), VQ_EINVAL);
    CHECK_STR(why.text, "option --beta needs a value");
    const char *extra[] = {"t", "--alpha", "1", "stray"};
    CHECK_INT(parse(4, extra, &a, &b), VQ_EINVAL);
    CHECK_STR(why.text, "unexpected argument stray");
    const char *short_opt[] = {"t", "-a", "1"};
    CHECK_INT(parse(3, short_opt, &a, &b), VQ_EINVAL);
    CHECK_STR(why.text, "unknown option -a");
}

T_MAIN(T(test_config_flag_env_default), T(test_config_log_levels_and_formats),
       T(test_config_flags))
