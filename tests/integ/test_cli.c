/* The volq command line (SPEC §3) against the real stack: every command,
 * its exit status (0 success, 1 failed/refused, 2 usage/input, 3 cannot reach
 * the scheduler or Redis), --json output, configuration precedence. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/stack.h"
#include "t.h"
#include "volq/job.h"
#include "volq/uuid.h"

static t_stack S;

#define NOENV ((const char *const *)NULL)
#define VOLQ(c, ...) REQUIRE(t_volq(&S, (c), NOENV, __VA_ARGS__, (const char *)NULL) == 0)
#define VOLQ_ENV(c, env, ...) REQUIRE(t_volq(&S, (c), (env), __VA_ARGS__, (const char *)NULL) == 0)

static const char *mkdomain(const char *args)
{
    const char *sd = t_stack_mkdomain(&S, args);
    REQUIRE(sd);
    return sd;
}

/* The id of the disk with that alias, through `volq disks --json`. */
static const char *disk_id(const char *sd, const char *alias)
{
    static char id[64];
    t_cmd c;
    json_t *d;
    size_t i;
    id[0] = '\0';
    VOLQ(&c, "--json", "disks", sd);
    json_array_foreach(c.json, i, d)
        if (strcmp(json_string_value(json_object_get(d, "alias")), alias) == 0)
            snprintf(id, sizeof id, "%s", json_string_value(json_object_get(d, "id")));
    t_cmd_free(&c);
    REQUIRE(id[0]);
    return id;
}

/* Exactly one line on stderr, starting "volq: ". */
static void check_one_line_error(const t_cmd *c)
{
    CHECK(strncmp(c->err, "volq: ", 6) == 0);
    const char *nl = strchr(c->err, '\n');
    CHECK(nl && nl[1] == '\0');
}

/* ---- no scheduler needed ------------------------------------------------ */

static void test_cli_help_version_usage(void)
{
    static const char *const cmds[] = {"amend", "create-volume", "upgrade-domain", "disks",
                                       "disk", "jobs", "job", "retry", "cancel", "status",
                                       "top", "events", "up"};
    t_cmd c;
    VOLQ(&c, "--help");
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, "upgrade-domain");
    t_cmd_free(&c);
    VOLQ(&c, "--version");
    CHECK_INT(c.status, 0);
    CHECK(strncmp(c.out, "volq ", 5) == 0);
    t_cmd_free(&c);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        VOLQ(&c, cmds[i], "--help");
        CHECK_INT(c.status, 0);
        CHECK_CONTAINS(c.out, cmds[i]);
        t_cmd_free(&c);
    }
    REQUIRE(t_volq(&S, &c, NOENV, (const char *)NULL) == 0);
    CHECK_INT(c.status, 2);
    CHECK_STR(c.err, "volq: no command given; see volq --help\n");
    t_cmd_free(&c);
    VOLQ(&c, "frobnicate");
    CHECK_INT(c.status, 2);
    check_one_line_error(&c);
    t_cmd_free(&c);
    /* usage errors: one line on stderr, what is wrong and where to look */
    VOLQ(&c, "jobs", "--bogus");
    CHECK_INT(c.status, 2);
    CHECK_STR(c.err, "volq: jobs: unknown option --bogus; see volq jobs --help\n");
    CHECK_STR(c.out, "");
    t_cmd_free(&c);
    VOLQ(&c, "jobs", "--limit");
    CHECK_INT(c.status, 2);
    CHECK_STR(c.err, "volq: jobs: --limit needs a value; see volq jobs --help\n");
    t_cmd_free(&c);
    VOLQ(&c, "disks");
    CHECK_INT(c.status, 2);
    CHECK_STR(c.err, "volq: disks: missing argument (volq disks SD_ID); see volq disks --help\n");
    t_cmd_free(&c);
    VOLQ(&c, "job", "a", "b");
    CHECK_INT(c.status, 2);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, "unexpected argument \"b\"");
    t_cmd_free(&c);
    VOLQ(&c, "events", "-x");
    CHECK_INT(c.status, 2);
    check_one_line_error(&c);
    t_cmd_free(&c);
}

static void test_cli_input_errors_exit_2_before_sending(void)
{
    static const char *const env[] = {"VOLQ_API=http://127.0.0.1:1", NULL}; /* nobody there */
    const char *sd = "11111111-2222-3333-4444-555555555555";
    t_cmd c;
    VOLQ_ENV(&c, env, "amend", "not-a-uuid");
    CHECK_INT(c.status, 2);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, "not a UUID");
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "create-volume", "--domain", sd, "--size", "1000");
    CHECK_INT(c.status, 2);
    CHECK_CONTAINS(c.err, "512");
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "create-volume", "--domain", sd, "--size", "0");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "create-volume", "--domain", sd, "--size", "1G", "--format", "vmdk");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "create-volume", "--size", "1G");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "job", "12");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "jobs", "--state", "sleeping");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "jobs", "--limit", "0");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "retry");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "events", "--since", "last tuesday");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "events", "--since", "99999999999999999999-0");
    CHECK_INT(c.status, 2);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, "each part below 2^64");
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "events", "--since", "18446744073709551615-18446744073709551615");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "--api", "ftp://x", "status");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "--api", "http://127.0.0.1:99999", "status");
    CHECK_INT(c.status, 2);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, "port 99999 is not between 1 and 65535");
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "--api", "http://127.0.0.1:0", "status");
    CHECK_INT(c.status, 2);
    t_cmd_free(&c);
}

static void test_cli_dead_api_exit_3_one_line(void)
{
    static const char *const env[] = {"VOLQ_API=http://127.0.0.1:1", NULL};
    t_cmd c;
    VOLQ_ENV(&c, env, "status");
    CHECK_INT(c.status, 3);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, "cannot reach the scheduler at http://127.0.0.1:1");
    CHECK_CONTAINS(c.err, "volq up");
    CHECK_STR(c.out, "");
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "--json", "jobs");
    CHECK_INT(c.status, 3);
    CHECK_STR(c.out, "");
    t_cmd_free(&c);
}

/* A forked server on a free port that answers every connection with reply
 * (until killed); its pid. */
static pid_t fake_server(int *port, const char *reply)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    REQUIRE(bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 8) == 0);
    REQUIRE(getsockname(ls, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        for (;;) {
            int c = accept(ls, NULL, NULL);
            if (c < 0) continue;
            char buf[4096];
            (void)!recv(c, buf, sizeof buf, 0);
            (void)!send(c, reply, strlen(reply), MSG_NOSIGNAL);
            close(c);
        }
    }
    close(ls);
    return pid;
}

/* A server (not volq's) sending a chunk size near 2^64: a one-line error,
 * exit 3, no crash. */
static void test_cli_hostile_chunk_size(void)
{
    int port = 0;
    pid_t srv = fake_server(&port, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "ffffffffffffffff\r\nx\r\n0\r\n\r\n");
    char api[64];
    snprintf(api, sizeof api, "http://127.0.0.1:%d", port);
    t_cmd c;
    VOLQ(&c, "--api", api, "status");
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    CHECK_INT(c.status, 3);
    check_one_line_error(&c);
    t_cmd_free(&c);
}

/* ---- against a running scheduler ---------------------------------------- */

static void test_cli_config_precedence(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    static const char *const dead_env[] = {"VOLQ_API=http://127.0.0.1:1", NULL};
    static const char *const no_env[] = {"VOLQ_API=", NULL};
    t_cmd c;
    /* the flag wins over the environment */
    VOLQ_ENV(&c, dead_env, "--api", S.api, "status");
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    VOLQ_ENV(&c, dead_env, "status", "--api", S.api);
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    /* the environment wins over the default */
    VOLQ(&c, "status");
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    /* and the flag over a live environment */
    VOLQ(&c, "--api", "http://127.0.0.1:1", "status");
    CHECK_INT(c.status, 3);
    t_cmd_free(&c);
    /* the default */
    VOLQ_ENV(&c, no_env, "status");
    if (c.status == 3) CHECK_CONTAINS(c.err, "http://127.0.0.1:8085");
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_json_before_or_after(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    t_cmd a, b;
    VOLQ(&a, "--json", "status");
    VOLQ(&b, "status", "--json");
    CHECK_INT(a.status, 0);
    CHECK_INT(b.status, 0);
    CHECK(json_is_object(a.json));
    CHECK(json_is_object(b.json));
    CHECK(json_is_object(json_object_get(a.json, "jobs")));
    CHECK_STR(json_string_value(json_object_get(b.json, "redis")), "up");
    t_cmd_free(&a);
    t_cmd_free(&b);
    VOLQ(&a, "status");
    CHECK_CONTAINS(a.out, "redis");
    CHECK_CONTAINS(a.out, "queued 0");
    CHECK(a.json == NULL);
    t_cmd_free(&a);
    t_stack_stop(&S);
}

static void test_cli_disks_and_disk(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    const char *sd = mkdomain("--version 4 --disks 2 --raw 1 --template --data-mib 0");
    t_cmd c;
    VOLQ(&c, "disks", sd);
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, "ALIAS");
    CHECK_CONTAINS(c.out, "QCOW_VERSION");
    CHECK_CONTAINS(c.out, "LOCKED_BY");
    CHECK_CONTAINS(c.out, "vm-001_Disk1");
    CHECK_CONTAINS(c.out, "template-001");
    t_cmd_free(&c);
    VOLQ(&c, "disks", sd, "--json");
    CHECK(json_is_array(c.json));
    CHECK_INT(json_array_size(c.json), 4);
    t_cmd_free(&c);
    const char *id = disk_id(sd, "vm-002_Disk1");
    VOLQ(&c, "--json", "disk", id);
    CHECK_INT(c.status, 0);
    CHECK_STR(json_string_value(json_object_get(c.json, "id")), id);
    CHECK(json_is_array(json_object_get(c.json, "volumes")));
    t_cmd_free(&c);
    VOLQ(&c, "disk", id, "--domain", sd);
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, "qcow2_v2");
    CHECK_CONTAINS(c.out, "VOLUME");
    t_cmd_free(&c);
    VOLQ(&c, "disk", "11111111-2222-3333-4444-555555555555");
    CHECK_INT(c.status, 1);
    check_one_line_error(&c);
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_disk_in_two_domains_exit_2(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    char sd1[64], cmd[2048], id[64];
    snprintf(sd1, sizeof sd1, "%s", mkdomain("--disks 1 --data-mib 0"));
    const char *sd2 = mkdomain("--disks 1 --data-mib 0");
    snprintf(id, sizeof id, "%s", disk_id(sd1, "vm-001_Disk1"));
    snprintf(cmd, sizeof cmd, "cp -a %s/%s/images/%s %s/%s/images/", S.domains, sd1, id,
             S.domains, sd2);
    REQUIRE(system(cmd) == 0);
    t_cmd c;
    VOLQ(&c, "amend", id);
    CHECK_INT(c.status, 2);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, sd1);
    CHECK_CONTAINS(c.err, sd2);
    t_cmd_free(&c);
    VOLQ(&c, "amend", id, "--domain", sd2);
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_amend_locked_and_refused(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    const char *sd = mkdomain("--version 4 --disks 1 --template --data-mib 0");
    char id[64], tmpl[64];
    snprintf(id, sizeof id, "%s", disk_id(sd, "vm-001_Disk1"));
    snprintf(tmpl, sizeof tmpl, "%s", disk_id(sd, "template-001"));
    t_cmd c;
    VOLQ(&c, "--json", "amend", id);
    CHECK_INT(c.status, 0);
    CHECK_STR(json_string_value(json_object_get(c.json, "state")), "queued");
    char job[64];
    snprintf(job, sizeof job, "%s", json_string_value(json_object_get(c.json, "id")));
    t_cmd_free(&c);
    VOLQ(&c, "amend", id);
    CHECK_INT(c.status, 1);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, job);
    t_cmd_free(&c);
    VOLQ(&c, "amend", tmpl, "--wait");
    CHECK_INT(c.status, 1);
    CHECK_CONTAINS(c.err, "template");
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_jobs_job_cancel_retry(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    const char *sd = mkdomain("--version 4 --disks 1 --template --data-mib 0");
    t_cmd c;
    char job[64], refused[64];
    VOLQ(&c, "--json", "amend", disk_id(sd, "vm-001_Disk1"));
    snprintf(job, sizeof job, "%s", json_string_value(json_object_get(c.json, "id")));
    t_cmd_free(&c);
    VOLQ(&c, "amend", disk_id(sd, "template-001"));
    CHECK_INT(c.status, 1);
    t_cmd_free(&c);
    VOLQ(&c, "jobs", "--json");
    CHECK_INT(json_array_size(c.json), 2);
    t_cmd_free(&c);
    VOLQ(&c, "jobs", "--json", "--state", "failed");
    CHECK_INT(json_array_size(c.json), 1);
    snprintf(refused, sizeof refused, "%s",
             json_string_value(json_object_get(json_array_get(c.json, 0), "id")));
    t_cmd_free(&c);
    VOLQ(&c, "jobs", "--state", "failed");
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, refused);
    CHECK(strstr(c.out, job) == NULL);
    t_cmd_free(&c);
    VOLQ(&c, "job", refused);
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, "template");
    t_cmd_free(&c);
    VOLQ(&c, "--json", "job", job);
    CHECK_STR(json_string_value(json_object_get(c.json, "id")), job);
    t_cmd_free(&c);
    VOLQ(&c, "cancel", job);
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    VOLQ(&c, "cancel", job);
    CHECK_INT(c.status, 1);
    check_one_line_error(&c);
    t_cmd_free(&c);
    VOLQ(&c, "retry", refused);
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    VOLQ(&c, "job", "11111111-2222-3333-4444-555555555555");
    CHECK_INT(c.status, 1);
    t_cmd_free(&c);
    /* a new refusal, then every failed job at once */
    VOLQ(&c, "cancel", refused);
    t_cmd_free(&c);
    VOLQ(&c, "amend", disk_id(sd, "template-001"));
    CHECK_INT(c.status, 1);
    t_cmd_free(&c);
    VOLQ(&c, "--json", "retry", "--failed");
    CHECK_INT(c.status, 0);
    CHECK_INT(json_integer_value(json_object_get(c.json, "retried")), 1);
    CHECK_INT(json_integer_value(json_object_get(c.json, "left")), 0);
    t_cmd_free(&c);
    VOLQ(&c, "retry", "--failed");
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, "retried 0 failed job(s)");
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_events_status_upgrade_create(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    const char *sd = mkdomain("--version 3 --disks 2 --template --data-mib 0");
    t_cmd c;
    VOLQ(&c, "upgrade-domain", sd);
    CHECK_INT(c.status, 1); /* V3 without --to-v4 */
    CHECK_CONTAINS(c.err, "--to-v4");
    t_cmd_free(&c);
    VOLQ(&c, "--json", "upgrade-domain", sd, "--to-v4");
    CHECK_INT(c.status, 0);
    CHECK_INT(json_array_size(json_object_get(c.json, "jobs")), 2);
    CHECK_INT(json_array_size(json_object_get(c.json, "skipped")), 1);
    t_cmd_free(&c);
    VOLQ(&c, "amend", disk_id(sd, "template-001"));
    t_cmd_free(&c);
    VOLQ(&c, "events");
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, " error Failed to amend template-001.\n");
    t_cmd_free(&c);
    VOLQ(&c, "events", "--json", "--since", "2000-01-01T00:00:00Z");
    CHECK(json_is_array(c.json));
    CHECK_INT(json_array_size(c.json), 1);
    t_cmd_free(&c);
    VOLQ(&c, "--json", "create-volume", "--domain", sd, "--size", "1M", "--alias", "scratch");
    CHECK_INT(c.status, 0);
    CHECK_STR(json_string_value(json_object_get(c.json, "kind")), "create-volume");
    CHECK(vq_uuid_valid(json_string_value(json_object_get(c.json, "volume_id"))));
    t_cmd_free(&c);
    VOLQ(&c, "status");
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, "queued 3");
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* volq events --since T pages through everything at or after T: an event of
 * the second before T (read, then passed over) does not end the paging early. */
static void test_cli_events_since_time_pages_all(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    char t[32], old[32], now[32];
    int64_t t_ms = vq_now_ms() - 10000;
    vq_time_format(t_ms, t);
    vq_time_format(t_ms - 500, old);
    vq_time_format(t_ms + 1000, now);
    freeReplyObject(t_redis_query(&S.redis, "XADD {volq}:events %lld-0 e {\"time\":\"%s\","
                                  "\"severity\":\"info\",\"message\":\"old\"}",
                                  (long long)t_ms - 500, old));
    freeReplyObject(t_redis_query(&S.redis, "EVAL %s 1 {volq}:events %s",
                                  "for i = 1, 1100 do redis.call('XADD', KEYS[1], '*', 'e', "
                                  "'{\"time\":\"' .. ARGV[1] .. '\",\"severity\":\"info\","
                                  "\"message\":\"new ' .. i .. '\"}') end", now));
    t_cmd c;
    VOLQ(&c, "events", "--since", t);
    CHECK_INT(c.status, 0);
    CHECK_INT(count_lines(c.out), 1100);
    CHECK_CONTAINS(c.out, " new 1\n");
    CHECK_CONTAINS(c.out, " new 1100\n");
    CHECK(strstr(c.out, " old\n") == NULL);
    t_cmd_free(&c);
    VOLQ(&c, "events");
    CHECK_INT(count_lines(c.out), 1101);
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_token(void)
{
    S.token = "tok-123";
    REQUIRE(t_stack_start(&S, 0) == 0);
    const char *sd = mkdomain("--version 4 --disks 2 --data-mib 0");
    static const char *const env[] = {"VOLQ_TOKEN=tok-123", NULL};
    t_cmd c;
    VOLQ(&c, "amend", disk_id(sd, "vm-001_Disk1"));
    CHECK_INT(c.status, 1);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, "--token");
    t_cmd_free(&c);
    VOLQ(&c, "--token", "tok-123", "amend", disk_id(sd, "vm-001_Disk1"));
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    VOLQ_ENV(&c, env, "amend", disk_id(sd, "vm-002_Disk1"));
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_redis_down_exit_3(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    REQUIRE(t_redis_kill9(&S.redis) == 0);
    t_cmd c;
    VOLQ(&c, "jobs");
    CHECK_INT(c.status, 3);
    check_one_line_error(&c);
    CHECK_CONTAINS(c.err, "redis");
    t_cmd_free(&c);
    t_stack_stop(&S);
}

/* ---- end to end with workers -------------------------------------------- */

static void test_cli_e2e_amend_wait_and_upgrade(void)
{
    REQUIRE(t_stack_start(&S, T_STACK_WORKERS) == 0);
    const char *sd = mkdomain("--version 3 --disks 4 --chain 2 --raw 1 --template --thin 1");
    t_cmd c;
    VOLQ(&c, "upgrade-domain", sd, "--to-v4", "--wait");
    CHECK_INT(c.status, 0);
    const char *last = strrchr(c.out, '\n');
    while (last && last > c.out && last[-1] != '\n') last--;
    CHECK_STR(last, "amended 5, skipped 2, failed 0\n");
    CHECK_CONTAINS(c.out, "skipped");
    t_cmd_free(&c);
    VOLQ(&c, "--json", "disks", sd);
    size_t i;
    json_t *d;
    json_array_foreach(c.json, i, d)
        if (!json_is_true(json_object_get(d, "template")) &&
            strcmp(json_string_value(json_object_get(d, "format")), "cow") == 0)
            CHECK_STR(json_string_value(json_object_get(d, "qcow_version")), "qcow2_v3");
    t_cmd_free(&c);
    /* --wait on single jobs */
    VOLQ(&c, "create-volume", "--domain", sd, "--size", "1M", "--alias", "fresh", "--wait");
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);
    VOLQ(&c, "amend", disk_id(sd, "vm-001_Disk1"), "--wait");
    CHECK_INT(c.status, 0);
    CHECK_CONTAINS(c.out, "succeeded");
    t_cmd_free(&c);
    t_stack_stop(&S);
}

static void test_cli_e2e_upgrade_failures_exit_1(void)
{
    /* every qemu-img run fails and there is no second attempt */
    static const char *const env[] = {"VOLQ_QEMU_IMG=/bin/false", "VOLQ_MAX_ATTEMPTS=1", NULL};
    S.env = env;
    REQUIRE(t_stack_start(&S, T_STACK_WORKERS) == 0);
    const char *sd = mkdomain("--version 4 --disks 2 --data-mib 0");
    t_cmd c;
    VOLQ(&c, "upgrade-domain", sd, "--wait");
    CHECK_INT(c.status, 1);
    CHECK_CONTAINS(c.out, "amended 0, skipped 0, failed 2\n");
    CHECK_CONTAINS(c.out, "failed disk ");
    t_cmd_free(&c);
    VOLQ(&c, "--json", "upgrade-domain", sd, "--wait"); /* nothing eligible is locked now */
    CHECK_INT(c.status, 1);
    CHECK_INT(json_array_size(json_object_get(c.json, "jobs")), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(c.json, "jobs"), 0),
                                                "state")), "failed");
    t_cmd_free(&c);
    t_stack_stop(&S);
}

/* ---- volq up, events --follow ------------------------------------------- */

typedef struct up_run {
    pid_t pid;
    char api[64], listen[32], state[512];
} up_run;

static pid_t spawn_up(up_run *u, const char *log)
{
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/volq", t_bin_dir());
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        unsetenv("VOLQ_REDIS");
        execl(bin, bin, "up", "--workers", "1", "--state", u->state, "--domains", S.domains,
              "--listen", u->listen, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int up_answers(void *arg)
{
    up_run *u = arg;
    t_cmd c;
    const char *const env[] = {NULL};
    int ok = t_volq(&S, &c, env, "--api", u->api, "status", (const char *)NULL) == 0 &&
             c.status == 0 && strstr(c.out, "1 alive");
    t_cmd_free(&c);
    return ok;
}

static int exited(void *arg)
{
    up_run *u = arg;
    int st;
    if (waitpid(u->pid, &st, WNOHANG) != u->pid) return 0;
    u->pid = WIFEXITED(st) ? -WEXITSTATUS(st) - 1 : -1000; /* -(status+1) */
    return 1;
}

static pid_t redis_pid(const char *state)
{
    char path[600];
    long pid = 0;
    snprintf(path, sizeof path, "%s/redis.pid", state);
    FILE *f = fopen(path, "r");
    if (f && fscanf(f, "%ld", &pid) != 1) pid = 0;
    if (f) fclose(f);
    return (pid_t)pid;
}

/* `volq up` on an empty domains folder and a state folder of the case's,
 * on a free port (log: up.log); not waited for. */
static void start_up(up_run *u)
{
    snprintf(S.domains, sizeof S.domains, "%s/domains", t_dir());
    mkdir(S.domains, 0755);
    snprintf(u->state, sizeof u->state, "%s/st", t_dir());
    int port = t_free_port();
    snprintf(u->listen, sizeof u->listen, "127.0.0.1:%d", port);
    snprintf(u->api, sizeof u->api, "http://127.0.0.1:%d", port);
    u->pid = spawn_up(u, "up.log");
    REQUIRE(u->pid > 0);
}

static void test_cli_up_runs_the_stack_and_stops_it(void)
{
    up_run u;
    start_up(&u);
    if (!t_poll(up_answers, &u, 30000)) {
        system("cat up.log >&2");
        REQUIRE(!"volq up did not come up");
    }
    pid_t rpid = redis_pid(u.state);
    CHECK(rpid > 0 && kill(rpid, 0) == 0);
    /* a second `volq up` on the same state folder says so and leaves */
    up_run second = u;
    snprintf(second.listen, sizeof second.listen, "127.0.0.1:%d", t_free_port());
    second.pid = spawn_up(&second, "up2.log");
    REQUIRE(t_poll(exited, &second, 10000));
    CHECK_INT(second.pid, -2); /* exit status 1 */
    CHECK(system("grep -q 'already running' up2.log") == 0);
    /* SIGTERM: workers, scheduler, then the redis it started */
    kill(u.pid, SIGTERM);
    REQUIRE(t_poll(exited, &u, 30000));
    CHECK_INT(u.pid, -1); /* exit status 0 */
    CHECK(kill(rpid, 0) != 0);
}

/* The direct children of pid (at most n), from /proc. */
static size_t children_of(pid_t pid, pid_t *out, size_t n)
{
    char path[64];
    size_t k = 0;
    long c;
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    while (f && k < n && fscanf(f, "%ld", &c) == 1) out[k++] = (pid_t)c;
    if (f) fclose(f);
    return k;
}

static int is_zombie(pid_t pid)
{
    char path[64], state = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f && fscanf(f, "%*d (%*[^)]) %c", &state) != 1) state = 0;
    if (f) fclose(f);
    return state == 'Z';
}

static int both_zombies(void *arg)
{
    const pid_t *k = arg;
    return is_zombie(k[0]) && is_zombie(k[1]);
}

/* Runs the traced volq up until a waitpid of its returns a child's pid (the
 * syscall's exit), passing its other signals on. */
static void trace_to_reaped_child(pid_t pid)
{
    int sig = 0, st;
    for (;;) {
        REQUIRE(ptrace(PTRACE_SYSCALL, pid, 0, sig) == 0);
        REQUIRE(waitpid(pid, &st, __WALL) == pid && WIFSTOPPED(st));
        sig = 0;
        if (WSTOPSIG(st) == (SIGTRAP | 0x80)) {
            struct __ptrace_syscall_info si;
            REQUIRE(ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof si, &si) > 0);
            if (si.op == PTRACE_SYSCALL_INFO_EXIT && si.exit.rval > 0) return;
        } else if (st >> 16 == 0) {
            sig = WSTOPSIG(st); /* a signal to deliver (SIGCHLD) */
        }
    }
}

/* A Ctrl-C reaches the children too; a child that exits before volq up's
 * waitpid is interrupted is part of the stop.  Made certain with ptrace: the
 * children get SIGINT and exit while volq up is held, then its SIGINT comes
 * just as its waitpid returns one of them.  Exit 0, no "exited" report. */
static void test_cli_up_child_exit_after_signal_is_a_stop(void)
{
    up_run u;
    start_up(&u);
    REQUIRE(t_poll(up_answers, &u, 30000));
    pid_t kids[2];
    REQUIRE(children_of(u.pid, kids, 2) == 2);
    REQUIRE(ptrace(PTRACE_SEIZE, u.pid, 0, PTRACE_O_TRACESYSGOOD) == 0);
    REQUIRE(ptrace(PTRACE_INTERRUPT, u.pid, 0, 0) == 0);
    int st;
    REQUIRE(waitpid(u.pid, &st, __WALL) == u.pid && WIFSTOPPED(st));
    kill(kids[0], SIGINT);
    kill(kids[1], SIGINT);
    REQUIRE(t_poll(both_zombies, kids, 30000));
    trace_to_reaped_child(u.pid);
    kill(u.pid, SIGINT);
    REQUIRE(ptrace(PTRACE_DETACH, u.pid, 0, 0) == 0);
    REQUIRE(t_poll(exited, &u, 30000));
    CHECK_INT(u.pid, -1); /* exit status 0 */
    CHECK(system("grep -q 'exited with status' up.log") != 0);
    CHECK(system("grep -q 'stopping redis' up.log") == 0);
}

static void test_cli_events_follow_json_lines(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    const char *sd = mkdomain("--version 4 --disks 1 --template --data-mib 0");
    char bin[1024], tmpl[64];
    snprintf(tmpl, sizeof tmpl, "%s", disk_id(sd, "template-001"));
    snprintf(bin, sizeof bin, "%s/volq", t_bin_dir());
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        setenv("VOLQ_API", S.api, 1);
        execl(bin, bin, "events", "--follow", "--json", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    t_cmd c;
    VOLQ(&c, "amend", tmpl);
    t_cmd_free(&c);
    VOLQ(&c, "amend", tmpl);
    t_cmd_free(&c);
    FILE *f = fdopen(fds[0], "r");
    char line[4096];
    for (int i = 0; i < 2; i++) {
        REQUIRE(fgets(line, sizeof line, f)); /* blocks until the event is printed */
        json_t *e = json_loads(line, 0, NULL);
        CHECK(json_is_object(e));
        CHECK_STR(json_string_value(json_object_get(e, "message")), "Failed to amend template-001.");
        json_decref(e);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    fclose(f);
    t_stack_stop(&S);
}

/* What a terminal shows of text: escape sequences (ESC [ ... final byte) left out. */
static void plain_text(const char *in, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outsz; i++) {
        if (in[i] == '\033' && i + 1 < n && in[i + 1] == '[') {
            for (i += 2; i < n && !(in[i] >= '@' && in[i] <= '~'); i++) {
            }
            continue;
        }
        out[o++] = in[i];
    }
    out[o] = '\0';
}

/* Reads what the terminal shows until want appears in what came from raw[from]
 * on, or the deadline passes. */
static int screen_until(int master, char *raw, size_t from, size_t *n, size_t cap, char *text,
                        size_t textsz, const char *want, long long deadline)
{
    for (;;) {
        plain_text(raw + from, *n - from, text, textsz);
        if (strstr(text, want)) return 1;
        long long left = deadline - t_now_ms();
        struct pollfd p = {.fd = master, .events = POLLIN};
        if (left <= 0 || *n + 1 >= cap || poll(&p, 1, (int)left) <= 0) return 0;
        ssize_t r = read(master, raw + *n, cap - 1 - *n);
        if (r <= 0) return 0;
        *n += (size_t)r;
    }
}

/* volq top on a pseudo-terminal: the screen shows the queue (a job waiting)
 * and is drawn again each second; q quits with 0 and the cursor shown again.
 * Without a terminal it refuses with exit 2. */
static void test_cli_top_on_a_terminal(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    const char *sd = t_stack_mkdomain(&S, "--version 4 --disks 1 --data-mib 0");
    REQUIRE(sd);
    t_cmd c;
    VOLQ(&c, "top");
    CHECK_INT(c.status, 2);
    CHECK_CONTAINS(c.err, "needs a terminal");
    t_cmd_free(&c);
    VOLQ(&c, "upgrade-domain", sd);
    CHECK_INT(c.status, 0);
    t_cmd_free(&c);

    char volq[600];
    snprintf(volq, sizeof volq, "%s/volq", t_bin_dir());
    int master = -1;
    struct winsize ws = {.ws_row = 40, .ws_col = 160};
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        execl(volq, "volq", "--api", S.api, "top", (char *)NULL);
        _exit(127);
    }
    static char raw[1 << 16], text[1 << 16];
    size_t n = 0;
    long long deadline = t_now_ms() + 10000;
    CHECK(screen_until(master, raw, 0, &n, sizeof raw, text, sizeof text, "RUNNING JOB",
                       deadline));
    CHECK_CONTAINS(text, "volq top");
    CHECK_CONTAINS(text, "queued 1");
    CHECK_CONTAINS(text, "workers      0 alive");
    /* The second frame: drawn again from the top left a second later. */
    size_t first = n;
    CHECK(screen_until(master, raw, first, &n, sizeof raw, text, sizeof text, "RUNNING JOB",
                       deadline));
    CHECK(memmem(raw + first, n - first, "\033[H", 3) != NULL);
    CHECK_CONTAINS(text, "queued 1");
    CHECK(write(master, "q", 1) == 1);
    int st = -1;
    while (waitpid(pid, &st, WNOHANG) == 0 && t_now_ms() < deadline) {
        char sink[4096]; /* keep the terminal drained */
        struct pollfd p = {.fd = master, .events = POLLIN};
        if (poll(&p, 1, 20) > 0 && read(master, sink, sizeof sink) > 0) {
        }
    }
    if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        T_FAIL_("volq top did not quit on q");
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(master);
    t_stack_stop(&S);
}

T_MAIN(T(test_cli_help_version_usage), T(test_cli_input_errors_exit_2_before_sending),
       T(test_cli_dead_api_exit_3_one_line), T(test_cli_hostile_chunk_size), T(test_cli_config_precedence),
       T(test_cli_json_before_or_after), T(test_cli_disks_and_disk),
       T(test_cli_disk_in_two_domains_exit_2), T(test_cli_amend_locked_and_refused),
       T(test_cli_jobs_job_cancel_retry), T(test_cli_events_status_upgrade_create),
       T(test_cli_events_since_time_pages_all),
       T(test_cli_token), T(test_cli_redis_down_exit_3), T(test_cli_e2e_amend_wait_and_upgrade),
       T(test_cli_e2e_upgrade_failures_exit_1), T(test_cli_up_runs_the_stack_and_stops_it),
       T(test_cli_up_child_exit_after_signal_is_a_stop),
       T(test_cli_events_follow_json_lines), T(test_cli_top_on_a_terminal))
