/* Unit tests of the job record, its JSON shape (SPEC §4), times and backoff. */
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "t.h"
#include "volq/job.h"
#include "volq/queue.h"

#define JOB "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
#define DOM "11111111-2222-3333-4444-555555555555"
#define DISK "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
#define VOL "99999999-8888-7777-6666-555555555555"

/* A hand-made HGETALL reply of the given field/value strings. */
typedef struct fake {
    redisReply arr;
    redisReply items[40];
    redisReply *ptrs[40];
} fake;

static void fake_init(fake *f, const char *const *kv, size_t n)
{
    memset(f, 0, sizeof *f);
    f->arr.type = REDIS_REPLY_ARRAY;
    f->arr.elements = n;
    f->arr.element = f->ptrs;
    for (size_t i = 0; i < n; i++) {
        f->items[i].type = REDIS_REPLY_STRING;
        f->items[i].str = (char *)kv[i];
        f->items[i].len = strlen(kv[i]);
        f->ptrs[i] = &f->items[i];
    }
}

static const char *const running_amend[] = {
    "k", "amend", "s", "running", "dm", DOM, "dk", DISK, "al", "vm1_Disk1", "a", "2", "ma", "5",
    "cr", "1", "d", "1", "t", "3", "e", "[\"qemu-img exited 1\"]", "c", "1764063326123",
    "u", "1764063327000", "w", "host-a:4242", "tk", "17", "n", "1764063400000",
};

static void test_job_state_names(void)
{
    CHECK_STR(vq_job_state_name(VQ_JOB_QUEUED), "queued");
    CHECK_STR(vq_job_state_name(VQ_JOB_RETRYING), "retrying");
    CHECK_STR(vq_job_state_name(VQ_JOB_CANCELLED), "cancelled");
    CHECK(vq_job_state_name(VQ_JOB_NSTATES) == NULL);
    CHECK(vq_job_state_name((vq_job_state)-1) == NULL);
    CHECK_INT(vq_job_state_parse("succeeded"), VQ_JOB_SUCCEEDED);
    CHECK_INT(vq_job_state_parse("failed"), VQ_JOB_FAILED);
    CHECK_INT(vq_job_state_parse("Failed"), -1);
    CHECK_INT(vq_job_state_parse(NULL), -1);
}

static void test_job_from_fields(void)
{
    fake f;
    fake_init(&f, running_amend, sizeof running_amend / sizeof *running_amend);
    vq_job *j = NULL;
    CHECK_INT(vq_job_from_fields(JOB, &f.arr, &j, NULL), 0);
    REQUIRE(j);
    CHECK_STR(j->id, JOB);
    CHECK_STR(j->kind, "amend");
    CHECK_INT(j->state, VQ_JOB_RUNNING);
    CHECK_STR(j->domain_id, DOM);
    CHECK_STR(j->disk_id, DISK);
    CHECK_STR(j->volume_id, "");
    CHECK_STR(j->alias, "vm1_Disk1");
    CHECK_INT(j->attempts, 2);
    CHECK_INT(j->max_attempts, 5);
    CHECK_INT(j->crashes, 1);
    CHECK_INT(j->done, 1);
    CHECK_INT(j->total, 3);
    CHECK_INT(j->created, 1764063326123LL);
    CHECK_INT(j->updated, 1764063327000LL);
    CHECK_INT(j->next_attempt, 1764063400000LL);
    CHECK_STR(j->worker, "host-a:4242");
    CHECK_INT(j->token, 17);
    CHECK(j->reason == NULL);
    CHECK_INT(json_array_size(j->errors), 1);
    vq_job_free(j);
}

static void test_job_from_reply_reads_id_field(void)
{
    const char *kv[] = {"id", JOB, "k", "create-volume", "s", "queued", "dm", DOM, "dk", DISK,
                        "v", VOL, "p", "{\"size\":1048576}", "c", "5", "u", "5"};
    fake f;
    fake_init(&f, kv, sizeof kv / sizeof *kv);
    vq_job *j = NULL;
    CHECK_INT(vq_job_from_reply(&f.arr, &j, NULL), 0);
    REQUIRE(j);
    CHECK_STR(j->id, JOB);
    CHECK_STR(j->volume_id, VOL);
    CHECK_INT(json_integer_value(json_object_get(j->params, "size")), 1048576);
    CHECK_INT(json_array_size(j->errors), 0);
    vq_job_free(j);
}

static void expect_bad_record(const char *const *kv, size_t n, const char *text)
{
    fake f;
    fake_init(&f, kv, n);
    vq_job *j = (vq_job *)1;
    vq_error e = {0};
    CHECK_INT(vq_job_from_fields(JOB, &f.arr, &j, &e), VQ_EINVAL);
    CHECK(j == NULL);
    CHECK_STR(e.text, text);
}

static void test_job_bad_records(void)
{
    const char *odd[] = {"k", "amend", "s"};
    expect_bad_record(odd, 3, "job " JOB ": not a field/value array");
    const char *state[] = {"k", "amend", "s", "sleeping", "dm", DOM, "dk", DISK};
    expect_bad_record(state, 8, "job " JOB ": bad field s");
    const char *num[] = {"k", "amend", "s", "queued", "dm", DOM, "dk", DISK, "a", "2x"};
    expect_bad_record(num, 10, "job " JOB ": bad field a");
    const char *errs[] = {"k", "amend", "s", "queued", "dm", DOM, "dk", DISK, "e", "{}"};
    expect_bad_record(errs, 10, "job " JOB ": bad field e");
    const char *nodisk[] = {"k", "amend", "s", "queued", "dm", DOM};
    expect_bad_record(nodisk, 6, "job " JOB ": incomplete record");
    const char *longid[] = {"k", "amend", "s", "queued", "dm", DOM "x", "dk", DISK};
    expect_bad_record(longid, 8, "job " JOB ": bad field dm");
}

/* The SPEC §4 job object, field by field. */
static void test_job_json_shape(void)
{
    fake f;
    fake_init(&f, running_amend, sizeof running_amend / sizeof *running_amend);
    vq_job *j = NULL;
    REQUIRE(vq_job_from_fields(JOB, &f.arr, &j, NULL) == 0);
    json_t *o = vq_job_json(j);
    REQUIRE(o);
    CHECK_INT(json_object_size(o), 15);
    CHECK_STR(json_string_value(json_object_get(o, "id")), JOB);
    CHECK_STR(json_string_value(json_object_get(o, "kind")), "amend");
    CHECK_STR(json_string_value(json_object_get(o, "state")), "running");
    CHECK_STR(json_string_value(json_object_get(o, "domain_id")), DOM);
    CHECK_STR(json_string_value(json_object_get(o, "disk_id")), DISK);
    CHECK(json_is_null(json_object_get(o, "volume_id")));
    CHECK_INT(json_integer_value(json_object_get(o, "attempts")), 2);
    CHECK_INT(json_integer_value(json_object_get(o, "max_attempts")), 5);
    json_t *p = json_object_get(o, "progress");
    CHECK_INT(json_object_size(p), 2);
    CHECK_INT(json_integer_value(json_object_get(p, "done")), 1);
    CHECK_INT(json_integer_value(json_object_get(p, "total")), 3);
    CHECK(json_is_null(json_object_get(o, "reason")));
    json_t *e = json_object_get(o, "errors");
    CHECK_INT(json_array_size(e), 1);
    CHECK_STR(json_string_value(json_array_get(e, 0)), "qemu-img exited 1");
    CHECK_STR(json_string_value(json_object_get(o, "created")), "2025-11-25T09:35:26.123Z");
    CHECK_STR(json_string_value(json_object_get(o, "updated")), "2025-11-25T09:35:27.000Z");
    /* next_attempt only means something while retrying. */
    CHECK(json_is_null(json_object_get(o, "next_attempt")));
    CHECK_STR(json_string_value(json_object_get(o, "worker")), "host-a:4242");
    json_decref(o);

    j->state = VQ_JOB_RETRYING;
    j->worker[0] = '\0';
    j->reason = strdup("disk busy");
    snprintf(j->volume_id, sizeof j->volume_id, "%s", VOL);
    o = vq_job_json(j);
    CHECK_STR(json_string_value(json_object_get(o, "next_attempt")), "2025-11-25T09:36:40.000Z");
    CHECK(json_is_null(json_object_get(o, "worker")));
    CHECK_STR(json_string_value(json_object_get(o, "reason")), "disk busy");
    CHECK_STR(json_string_value(json_object_get(o, "volume_id")), VOL);
    json_decref(o);
    vq_job_free(j);
}

static void test_time_format(void)
{
    char buf[32];
    vq_time_format(0, buf);
    CHECK_STR(buf, "1970-01-01T00:00:00.000Z");
    vq_time_format(1764063326123LL, buf);
    CHECK_STR(buf, "2025-11-25T09:35:26.123Z");
    vq_time_format(-1, buf);
    CHECK_STR(buf, "1969-12-31T23:59:59.999Z");
    vq_time_format(951782400000LL, buf); /* a leap day */
    CHECK_STR(buf, "2000-02-29T00:00:00.000Z");
    vq_time_format(INT64_MAX, buf);
    CHECK_STR(buf, "9999-12-31T23:59:59.999Z");
}

static void test_time_parse(void)
{
    int64_t ms = 0;
    CHECK_INT(vq_time_parse("2025-11-25T09:35:26.123Z", &ms), 0);
    CHECK_INT(ms, 1764063326123LL);
    CHECK_INT(vq_time_parse("2025-11-25t09:35:26.123z", &ms), 0);
    CHECK_INT(ms, 1764063326123LL);
    CHECK_INT(vq_time_parse("2025-11-25T10:35:26.123+01:00", &ms), 0);
    CHECK_INT(ms, 1764063326123LL);
    CHECK_INT(vq_time_parse("2024-02-29T23:59:59-05:30", &ms), 0);
    CHECK_INT(ms, 1709270999000LL);
    CHECK_INT(vq_time_parse("2025-11-25 09:35:26Z", &ms), 0);
    CHECK_INT(ms, 1764063326000LL);
    CHECK_INT(vq_time_parse("2025-11-25T09:35:26.1Z", &ms), 0);
    CHECK_INT(ms, 1764063326100LL);
    CHECK_INT(vq_time_parse("2025-11-25T09:35:26.123999Z", &ms), 0);
    CHECK_INT(ms, 1764063326123LL);
    CHECK_INT(vq_time_parse("1970-01-01T00:00:00Z", &ms), 0);
    CHECK_INT(ms, 0);
}

static void test_time_parse_rejects(void)
{
    int64_t ms = 42;
    const char *bad[] = {
        "", "2025-11-25", "2025-11-25T09:35:26", "2025-13-01T00:00:00Z", "2025-00-01T00:00:00Z",
        "2023-02-29T00:00:00Z", "2025-04-31T00:00:00Z", "2025-11-25T24:00:00Z",
        "2025-11-25T09:60:00Z", "2025-11-25T09:35:61Z", "2025-11-25T09:35:26.Z",
        "2025-11-25T09:35:26+0100", "2025-11-25T09:35:26+24:00", "2025-11-25T09:35:26Zjunk",
        "25-11-25T09:35:26Z", "2025/11/25T09:35:26Z", "1764063326123", "now",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (vq_time_parse(bad[i], &ms) != VQ_EINVAL) T_FAIL_("accepted \"%s\"", bad[i]);
    }
    CHECK_INT(vq_time_parse(NULL, &ms), VQ_EINVAL);
    CHECK_INT(ms, 42);
}

static void test_time_roundtrip(void)
{
    int64_t samples[] = {0, 1, 999, 1000, 1764063326123LL, 4102444800000LL, -86400000LL};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        char buf[32];
        int64_t back = -7;
        vq_time_format(samples[i], buf);
        CHECK_INT(vq_time_parse(buf, &back), 0);
        CHECK_INT(back, samples[i]);
    }
    int64_t now = vq_now_ms();
    CHECK(now > 1700000000000LL);
}

static void test_backoff_bounds(void)
{
    vq_queue_config c = {.backoff_base_ms = 1000, .backoff_max_ms = 300000};
    CHECK_INT(vq_queue_backoff_ms(&c, 1, 0.5), 1000);
    CHECK_INT(vq_queue_backoff_ms(&c, 2, 0.5), 2000);
    CHECK_INT(vq_queue_backoff_ms(&c, 4, 0.5), 8000);
    CHECK_INT(vq_queue_backoff_ms(&c, 1, 0.0), 800);
    CHECK_INT(vq_queue_backoff_ms(&c, 1, 1.0), 1200);
    CHECK_INT(vq_queue_backoff_ms(&c, 30, 0.5), 300000);
    CHECK_INT(vq_queue_backoff_ms(&c, 1000, 1.0), 360000);
    CHECK_INT(vq_queue_backoff_ms(&c, 0, 0.5), 1000);
    CHECK_INT(vq_queue_backoff_ms(&c, 3, 7.0), 4800);
}

static void test_config_env_overrides(void)
{
    setenv("VOLQ_LEASE_MS", "300", 1);
    setenv("VOLQ_MAX_ATTEMPTS", "-3", 1);
    setenv("VOLQ_EVENTS_MAX", "50", 1);
    vq_queue_config c;
    vq_queue_config_default(&c);
    CHECK_INT(c.lease_ms, 300);
    CHECK_INT(c.max_attempts, 5); /* a bad value keeps the default */
    CHECK_INT(c.max_crashes, 5);
    CHECK_INT(c.backoff_base_ms, 1000);
    CHECK_INT(c.backoff_max_ms, 300000);
    CHECK_INT(c.keep_finished_s, 604800);
    CHECK_INT(c.keep_finished_max, 100000);
    CHECK_INT(c.events_max, 50);
}

T_MAIN(T(test_job_state_names), T(test_job_from_fields), T(test_job_from_reply_reads_id_field),
       T(test_job_bad_records), T(test_job_json_shape), T(test_time_format), T(test_time_parse),
       T(test_time_parse_rejects), T(test_time_roundtrip), T(test_backoff_bounds),
       T(test_config_env_overrides))
