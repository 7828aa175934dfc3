/* The Redis handle against a real redis-server: errors, AUTH, SELECT,
 * reconnects, pipelines, script reloads, and the embedded server. */
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/redis_harness.h"
#include "t.h"
#include "volq/redis.h"

static t_redis R;

static vq_redis *connect_or_die(const char *url)
{
    vq_redis *r = NULL;
    vq_error e = {0};
    if (vq_redis_connect(url, 2000, &r, &e) != 0) T_FAIL_("connect %s: %s", url, e.text);
    REQUIRE(r);
    return r;
}

static void start_redis(void) { REQUIRE(t_redis_start(&R, "redis") == 0); }

/* A string reply's text, or "(nil)"/"(error)"; the reply is freed. */
static const char *text_of(redisReply *rep)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s", !rep ? "(error)" : rep->type == REDIS_REPLY_NIL ? "(nil)"
                                    : rep->str ? rep->str : "(no string)");
    if (rep) freeReplyObject(rep);
    return buf;
}

static void test_redis_command_and_error_reply(void)
{
    start_redis();
    vq_redis *r = connect_or_die(R.url);
    CHECK_STR(vq_redis_url_str(r), R.url);
    CHECK(vq_redis_ctx(r) != NULL);
    vq_error e = {0};
    CHECK_STR(text_of(vq_redis_cmd(r, &e, "SET %s %b", "k", "x y", (size_t)3)), "OK");
    const char *argv[] = {"GET", "k"};
    CHECK_STR(text_of(vq_redis_argv(r, 2, argv, NULL, &e)), "x y");
    CHECK(vq_redis_cmd(r, &e, "INCR %s", "k") == NULL);
    CHECK_INT(e.code, VQ_EREPLY); /* not VQ_EREDIS: the connection was not lost */
    CHECK_STR(e.text, "redis: ERR value is not an integer or out of range");
    /* The connection is still good after an error reply. */
    vq_error e2 = {0};
    CHECK_STR(text_of(vq_redis_cmd(r, &e2, "PING")), "PONG");
    CHECK_INT(e2.code, 0);
    vq_redis_free(r);
}

static void test_redis_connect_refused(void)
{
    vq_redis *r = (vq_redis *)1;
    vq_error e = {0};
    char url[300];
    snprintf(url, sizeof url, "unix://%s/none.sock", t_dir());
    CHECK_INT(vq_redis_connect(url, 500, &r, &e), VQ_EREDIS);
    CHECK(r == NULL);
    char want[400];
    snprintf(want, sizeof want, "redis %s: No such file or directory", url);
    CHECK_STR(e.text, want);
    vq_error e2 = {0};
    CHECK_INT(vq_redis_connect("redis://h:0", 500, &r, &e2), VQ_EINVAL);
    CHECK_STR(e2.text, "redis URL: port must be 1..65535");
}

static void test_redis_auth_password_and_user(void)
{
    start_redis();
    redisReply *rep = t_redis_cmd(&R, "ACL SETUSER volq on >pw2 ~* &* +@all");
    CHECK_STR(text_of(rep), "OK");
    CHECK_STR(text_of(t_redis_cmd(&R, "CONFIG SET requirepass s3cret")), "OK");

    char url[300];
    vq_redis *r = NULL;
    vq_error e = {0};
    /* No password: connecting works, commands are refused. */
    r = connect_or_die(R.url);
    CHECK(vq_redis_cmd(r, &e, "GET k") == NULL);
    CHECK_STR(e.text, "redis: NOAUTH Authentication required.");
    vq_redis_free(r);

    snprintf(url, sizeof url, "unix://:s3cret@%s", R.sock);
    r = connect_or_die(url);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "ACL WHOAMI")), "default");
    vq_redis_free(r);

    snprintf(url, sizeof url, "unix://volq:pw2@%s", R.sock);
    r = connect_or_die(url);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "ACL WHOAMI")), "volq");
    vq_redis_free(r);

    vq_error e2 = {0};
    snprintf(url, sizeof url, "unix://:wrong@%s", R.sock);
    r = (vq_redis *)1;
    CHECK_INT(vq_redis_connect(url, 1000, &r, &e2), VQ_EREDIS);
    CHECK(r == NULL);
    CHECK_STR(e2.text, "redis: AUTH failed: WRONGPASS invalid username-password pair or user "
                       "is disabled.");
}

static void test_redis_select_db(void)
{
    start_redis();
    char url[300];
    snprintf(url, sizeof url, "unix://%s?db=3", R.sock);
    vq_redis *r = connect_or_die(url);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "SET %s %s", "where", "three")), "OK");
    vq_redis_free(r);
    redisContext *c = t_redis_connect(&R);
    REQUIRE(c);
    CHECK_STR(text_of(redisCommand(c, "GET where")), "(nil)");
    CHECK_STR(text_of(redisCommand(c, "SELECT 3")), "OK");
    CHECK_STR(text_of(redisCommand(c, "GET where")), "three");
    redisFree(c);
}

/* After a crash and an AOF restart, the same handle goes on: its first write
 * fails on the dead socket and is sent again on a new connection. */
static void test_redis_reconnect_after_restart(void)
{
    start_redis();
    vq_redis *r = connect_or_die(R.url);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "SET %s %s", "a", "1")), "OK");
    REQUIRE(t_redis_kill9(&R) == 0);
    vq_error e = {0};
    CHECK(vq_redis_cmd(r, &e, "GET a") == NULL);
    CHECK_INT(e.code, VQ_EREDIS);
    REQUIRE(t_redis_restart(&R) == 0);
    vq_error e2 = {0};
    CHECK_STR(text_of(vq_redis_cmd(r, &e2, "GET a")), "1");
    CHECK_INT(e2.code, 0);
    /* Idle connection, server restarted under it: still one call. */
    REQUIRE(t_redis_stop(&R) == 0);
    REQUIRE(t_redis_restart(&R) == 0);
    CHECK_STR(text_of(vq_redis_cmd(r, &e2, "INCR a")), "(no string)");
    CHECK_INT(e2.code, 0);
    CHECK_STR(text_of(vq_redis_cmd(r, &e2, "GET a")), "2");
    vq_redis_free(r);
}

static void test_redis_reconnect_wait(void)
{
    start_redis();
    vq_redis *r = connect_or_die(R.url);
    REQUIRE(t_redis_stop(&R) == 0);
    volatile int stop = 1;
    vq_error e = {0};
    CHECK_INT(vq_redis_reconnect_wait(r, &stop, &e), VQ_EREDIS);
    CHECK_CONTAINS(e.text, "redis.sock: No such file or directory");
    /* The server comes back a little later; the wait picks it up. */
    pid_t child = fork();
    if (child == 0) {
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
        _exit(t_redis_restart(&R) == 0 ? 0 : 1);
    }
    stop = 0;
    vq_error e2 = {0};
    CHECK_INT(vq_redis_reconnect_wait(r, &stop, &e2), 0);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "PING")), "PONG");
    int st;
    waitpid(child, &st, 0);
    vq_redis_free(r);
}

static long long client_id(vq_redis *r)
{
    redisReply *rep = vq_redis_cmd(r, NULL, "CLIENT ID");
    long long id = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    if (rep) freeReplyObject(rep);
    return id;
}

/* A PING appended, the connection (client id) killed, the reply read: the
 * code of the failure. */
static int lose_connection(vq_redis *r, long long id)
{
    const char *ping[] = {"PING"};
    CHECK_INT(vq_redis_append_argv(r, 1, ping, NULL, NULL), 0);
    freeReplyObject(t_redis_cmd(&R, "CLIENT KILL ID %lld", id));
    vq_error e = {0};
    CHECK(vq_redis_get_reply(r, &e) == NULL);
    CHECK_CONTAINS(e.text, "redis: connection lost");
    return e.code;
}

/* ms vq_redis_retry_wait took, which must answer want. */
static long long timed_retry_wait(vq_redis *r, volatile int *stop, int want)
{
    vq_error e = {0};
    long long t0 = t_now_ms();
    CHECK_INT(vq_redis_retry_wait(r, stop, &e), want);
    return t_now_ms() - t0;
}

/* A server that refuses writes (min-replicas-to-write, no replica): each
 * write is an error reply, VQ_EREPLY, on a connection that stays good.  The
 * retries wait the backoff without reconnecting, longer each time in a row
 * (100, 200, 400 ms, ±25%).  A lost connection is made again at once, then
 * with the backoff when lost again right away; a stop ends the wait. */
static void test_redis_retry_wait_backs_off_on_error_replies(void)
{
    start_redis();
    vq_redis *r = connect_or_die(R.url);
    long long id = client_id(r);
    REQUIRE(id > 0);
    freeReplyObject(t_redis_cmd(&R, "CONFIG SET min-replicas-to-write 1"));
    long long waited[3];
    for (int i = 0; i < 3; i++) {
        vq_error e = {0};
        CHECK(vq_redis_cmd(r, &e, "SET %s %s", "k", "v") == NULL);
        CHECK_INT(e.code, VQ_EREPLY);
        CHECK_STR(e.text, "redis: NOREPLICAS Not enough good replicas to write.");
        waited[i] = timed_retry_wait(r, NULL, 0);
        CHECK_INT(client_id(r), id); /* the same connection: no reconnect */
    }
    CHECK(waited[0] >= 75);
    CHECK(waited[1] >= 150);
    CHECK(waited[2] >= 300);
    freeReplyObject(t_redis_cmd(&R, "CONFIG SET min-replicas-to-write 0"));
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "SET %s %s", "k", "v")), "OK");

    /* Lost (killed under a pipeline, which is not sent again): a new
     * connection at once (a fresh handle: no failure before). */
    vq_redis *r2 = connect_or_die(R.url);
    long long id2 = client_id(r2);
    CHECK_INT(lose_connection(r2, id2), VQ_EREDIS);
    CHECK(timed_retry_wait(r2, NULL, 0) < 75);
    long long id3 = client_id(r2);
    CHECK(id3 > id2);
    /* Lost again right after: the backoff first. */
    CHECK_INT(lose_connection(r2, id3), VQ_EREDIS);
    CHECK(timed_retry_wait(r2, NULL, 0) >= 75);
    CHECK(client_id(r2) > id3);
    volatile int stop = 1;
    vq_error e2 = {0};
    CHECK_INT(vq_redis_retry_wait(r, &stop, &e2), VQ_EREDIS);
    CHECK_STR(e2.text, "redis: stopping while it fails");
    vq_redis_free(r);
    vq_redis_free(r2);
}

static void test_redis_pipeline_order_and_errors(void)
{
    start_redis();
    vq_redis *r = connect_or_die(R.url);
    const char *set[] = {"SET", "p", "v"}, *get[] = {"GET", "p"}, *bad[] = {"INCR", "p"};
    CHECK_INT(vq_redis_append_argv(r, 3, set, NULL, NULL), 0);
    CHECK_INT(vq_redis_append_argv(r, 2, get, NULL, NULL), 0);
    CHECK_INT(vq_redis_append_argv(r, 2, bad, NULL, NULL), 0);
    CHECK_INT(vq_redis_append_argv(r, 2, get, NULL, NULL), 0);
    /* A command in between: the pipeline's replies are kept for later. */
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "SET %s %s", "other", "x")), "OK");
    CHECK_STR(text_of(vq_redis_get_reply(r, NULL)), "OK");
    CHECK_STR(text_of(vq_redis_get_reply(r, NULL)), "v");
    vq_error e = {0};
    CHECK(vq_redis_get_reply(r, &e) == NULL);
    CHECK_STR(e.text, "redis: ERR value is not an integer or out of range");
    CHECK_STR(text_of(vq_redis_get_reply(r, NULL)), "v");
    vq_error e2 = {0};
    CHECK(vq_redis_get_reply(r, &e2) == NULL);
    CHECK_STR(e2.text, "redis: no reply pending (connection lost?)");
    vq_redis_free(r);
}

/* beat.lua with the 11 common keys and 3 common args of lib.lua. */
static const char *const common_keys[] = {
    "{volq}:q", "{volq}:running", "{volq}:due", "{volq}:locks", "{volq}:st:succeeded",
    "{volq}:st:failed", "{volq}:st:cancelled", "{volq}:events", "{volq}:token",
    "{volq}:workers", "{volq}:wjob",
};

static void test_redis_script_reload_after_flush(void)
{
    start_redis();
    vq_redis *r = connect_or_die(R.url);
    const char *args[] = {"100", "15000", "5", "w1:1", "job-a"};
    CHECK_STR(text_of(vq_redis_script(r, "beat.lua", 11, (const char **)common_keys, 5, args,
                                      NULL, NULL)), "ok");
    CHECK_STR(text_of(t_redis_cmd(&R, "HGET {volq}:wjob w1:1")), "job-a");
    CHECK_STR(text_of(t_redis_cmd(&R, "SCRIPT FLUSH")), "OK");
    args[4] = "job-b";
    vq_error e = {0};
    CHECK_STR(text_of(vq_redis_script(r, "beat.lua", 11, (const char **)common_keys, 5, args,
                                      NULL, &e)), "ok");
    CHECK_INT(e.code, 0);
    CHECK_STR(text_of(t_redis_cmd(&R, "HGET {volq}:wjob w1:1")), "job-b");

    /* In a pipeline: the NOSCRIPT answer is replaced by the reloaded run. */
    CHECK_STR(text_of(t_redis_cmd(&R, "SCRIPT FLUSH")), "OK");
    args[4] = "job-c";
    const char *ping[] = {"PING"};
    CHECK_INT(vq_redis_script_append(r, "beat.lua", 11, (const char **)common_keys, 5, args,
                                     NULL, NULL), 0);
    CHECK_INT(vq_redis_append_argv(r, 1, ping, NULL, NULL), 0);
    CHECK_STR(text_of(vq_redis_get_reply(r, NULL)), "ok");
    CHECK_STR(text_of(vq_redis_get_reply(r, NULL)), "PONG");
    CHECK_STR(text_of(t_redis_cmd(&R, "HGET {volq}:wjob w1:1")), "job-c");

    vq_error e2 = {0};
    CHECK(vq_redis_script(r, "nope.lua", 0, NULL, 0, NULL, NULL, &e2) == NULL);
    CHECK_STR(e2.text, "redis: no embedded script nope.lua");
    vq_redis_free(r);
}

/* ---- the embedded server ------------------------------------------------ */

static char state_dir[512];

/* The embedded server daemonizes out of the case's process group: stop it
 * whatever happens. */
static void stop_embedded(void)
{
    if (state_dir[0]) vq_redis_embedded_stop(state_dir, NULL);
}

static int file_has(const char *path, const char *line)
{
    FILE *f = fopen(path, "r");
    char buf[512];
    int found = 0;
    while (f && fgets(buf, sizeof buf, f))
        if (strncmp(buf, line, strlen(line)) == 0 && buf[strlen(line)] == '\n') found = 1;
    if (f) fclose(f);
    return found;
}

static void test_redis_embedded_start_reuse_stop(void)
{
    snprintf(state_dir, sizeof state_dir, "%s/state", t_dir());
    atexit(stop_embedded);
    char url[256], want[600], conf[600];
    int started = -1;
    vq_error e = {0};
    CHECK_INT(vq_redis_embedded_ensure("state", url, sizeof url, &started, &e), 0);
    CHECK_INT(started, 1);
    snprintf(want, sizeof want, "unix://%s/redis.sock", state_dir);
    CHECK_STR(url, want);
    snprintf(conf, sizeof conf, "%s/redis.conf", state_dir);
    const char *lines[] = {"daemonize yes", "port 0", "unixsocketperm 700", "appendonly yes",
                           "appendfsync always"};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
        if (!file_has(conf, lines[i])) T_FAIL_("%s lacks \"%s\"", conf, lines[i]);
    struct stat st;
    snprintf(conf, sizeof conf, "%s/redis.sock", state_dir);
    CHECK_INT(stat(conf, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0700);

    vq_redis *r = connect_or_die(url);
    redisReply *cfg = vq_redis_cmd(r, NULL, "CONFIG GET appendfsync");
    REQUIRE(cfg && cfg->elements == 2);
    CHECK_STR(cfg->element[1]->str, "always");
    freeReplyObject(cfg);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "SET %s %s", "kept", "yes")), "OK");
    vq_redis_free(r);

    char url2[256];
    CHECK_INT(vq_redis_embedded_ensure(state_dir, url2, sizeof url2, &started, NULL), 0);
    CHECK_INT(started, 0);
    CHECK_STR(url2, url);

    CHECK_INT(vq_redis_embedded_stop("state", NULL), 0);
    vq_redis *gone = NULL;
    CHECK_INT(vq_redis_connect(url, 500, &gone, NULL), VQ_EREDIS);
    /* Started again from its AOF. */
    CHECK_INT(vq_redis_embedded_ensure("state", url2, sizeof url2, &started, NULL), 0);
    CHECK_INT(started, 1);
    r = connect_or_die(url2);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "GET kept")), "yes");
    vq_redis_free(r);
    CHECK_INT(vq_redis_embedded_stop("state", NULL), 0);
    /* Stopping what is not running is fine. */
    CHECK_INT(vq_redis_embedded_stop("state", NULL), 0);
}

static void test_redis_resolve_order(void)
{
    char url[256];
    vq_error e = {0};
    unsetenv("VOLQ_REDIS");
    setenv("VOLQ_STATE", "unused-state", 1);
    CHECK_INT(vq_redis_resolve("redis://flag:1/0", NULL, url, sizeof url, &e), 0);
    CHECK_STR(url, "redis://flag:1/0");
    setenv("VOLQ_REDIS", "redis://env:2", 1);
    CHECK_INT(vq_redis_resolve(NULL, NULL, url, sizeof url, &e), 0);
    CHECK_STR(url, "redis://env:2");
    CHECK_INT(vq_redis_resolve("", NULL, url, sizeof url, &e), 0);
    CHECK_STR(url, "redis://env:2");
    setenv("VOLQ_REDIS", "http://nope", 1);
    CHECK_INT(vq_redis_resolve(NULL, NULL, url, sizeof url, &e), VQ_EINVAL);
    CHECK_STR(e.text, "redis URL: must start with redis://, unix:// or sentinel://");
    CHECK(access("unused-state", F_OK) != 0);

    /* Nothing given: the embedded server of the state folder. */
    unsetenv("VOLQ_REDIS");
    snprintf(state_dir, sizeof state_dir, "%s/st2", t_dir());
    atexit(stop_embedded);
    CHECK_INT(vq_redis_resolve(NULL, "st2", url, sizeof url, NULL), 0);
    char want[600];
    snprintf(want, sizeof want, "unix://%s/redis.sock", state_dir);
    CHECK_STR(url, want);
    vq_redis *r = connect_or_die(url);
    CHECK_STR(text_of(vq_redis_cmd(r, NULL, "PING")), "PONG");
    vq_redis_free(r);
    CHECK_INT(vq_redis_embedded_stop("st2", NULL), 0);
}

T_MAIN(T(test_redis_command_and_error_reply), T(test_redis_connect_refused),
       T(test_redis_auth_password_and_user), T(test_redis_select_db),
       T(test_redis_reconnect_after_restart), T(test_redis_reconnect_wait),
       T(test_redis_retry_wait_backs_off_on_error_replies),
       T(test_redis_pipeline_order_and_errors), T(test_redis_script_reload_after_flush),
       T(test_redis_embedded_start_reuse_stop), T(test_redis_resolve_order))
