/* Unit tests of the settings order (flag > environment > default) and logging set-up. */
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

T_MAIN(T(test_config_flag_env_default), T(test_config_log_levels_and_formats))
