/* vq_queue_accept's call to accept.lua against a real redis-server: every
 * request field reaches the job it makes, whether it is the call's (kind and
 * domain of the first request) or only its own (an optional name/value pair),
 * and the lock holders and idempotency keys read before are checked again. */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>

#include "lib/redis_harness.h"
#include "t.h"
#include "volq/queue.h"

#define DOM_A "11111111-2222-3333-4444-555555555555"
#define DOM_B "66666666-7777-4888-9999-aaaaaaaaaaaa"

static t_redis R;
static vq_queue *Q;

static void setup(void)
{
    REQUIRE(t_redis_start(&R, "redis") == 0);
    vq_redis *r = NULL;
    vq_error e = {0};
    if (vq_redis_connect(R.url, 5000, &r, &e) != 0) T_FAIL_("connect: %s", e.text);
    REQUIRE(r);
    REQUIRE(vq_queue_new(r, NULL, &Q, NULL) == 0);
}

/* Looking into Redis: the harness's kept connection to R. */
#define rcmd(...) t_redis_query(&R, __VA_ARGS__)
#define rstr(...) t_redis_str(&R, __VA_ARGS__)
#define rint_(...) t_redis_int(&R, __VA_ARGS__)

/* Field f of job id ("(nil)" when absent). */
static char *field(const char *id, const char *f) { return rstr("HGET {volq}:job:%s %s", id, f); }

static void accept_all(const vq_accept_req *reqs, size_t n, vq_accept_res *res)
{
    vq_error e = {0};
    if (vq_queue_accept(Q, reqs, n, res, &e) != 0) T_FAIL_("accept: %s", e.text);
}

/* The newest event's JSON. */
static json_t *last_event(void)
{
    redisReply *rep = rcmd("XREVRANGE {volq}:events + - COUNT 1");
    REQUIRE(rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
    json_t *ev = json_loads(rep->element[0]->element[1]->element[1]->str, 0, NULL);
    freeReplyObject(rep);
    REQUIRE(ev);
    return ev;
}

static const char *evs(const json_t *ev, const char *k)
{
    return json_string_value(json_object_get(ev, k));
}

/* One call: kinds and domains that are not the first request's, a volume,
 * params, an empty alias, a refusal, an idempotency key, and a disk taken
 * earlier in the same call.  Each job holds exactly its own fields. */
static void test_accept_mixed_call_fields(void)
{
    setup();
    char d[5][VQ_UUID_SIZE], vol[VQ_UUID_SIZE];
    for (int i = 0; i < 5; i++) vq_uuid_new(d[i]);
    vq_uuid_new(vol);
    json_t *params = json_pack("{s:i}", "size_mib", 64);
    vq_accept_req reqs[6] = {
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[0], .alias = "vm0_Disk1"},
        {.kind = "create-volume", .domain_id = DOM_B, .disk_id = d[1], .volume_id = vol,
         .alias = "data", .params = params},
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[2], .alias = ""},
        {.kind = "amend", .domain_id = DOM_B, .disk_id = d[3], .alias = "vm3",
         .refusal = "disk in use\nby qemu"},
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[4], .alias = "vm4", .idem_key = "k-4"},
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[0], .alias = "vm0_Disk1"},
    };
    vq_accept_res res[6];
    accept_all(reqs, 6, res);
    json_decref(params);
    const vq_accept_status want[6] = {VQ_ACCEPT_QUEUED, VQ_ACCEPT_QUEUED, VQ_ACCEPT_QUEUED,
                                      VQ_ACCEPT_REFUSED, VQ_ACCEPT_QUEUED, VQ_ACCEPT_LOCKED};
    for (int i = 0; i < 6; i++) CHECK_INT(res[i].status, want[i]);
    CHECK_STR(res[5].job_id, res[0].job_id);

    /* k s dm dk ma c u, plus al, v and p when set. */
    CHECK_INT(rint_("HLEN {volq}:job:%s", res[0].job_id), 8);
    CHECK_R(field(res[0].job_id, "k"), "amend");
    CHECK_R(field(res[0].job_id, "dm"), DOM_A);
    CHECK_R(field(res[0].job_id, "al"), "vm0_Disk1");
    CHECK_INT(rint_("HLEN {volq}:job:%s", res[1].job_id), 10);
    CHECK_R(field(res[1].job_id, "k"), "create-volume");
    CHECK_R(field(res[1].job_id, "dm"), DOM_B);
    CHECK_R(field(res[1].job_id, "dk"), d[1]);
    CHECK_R(field(res[1].job_id, "v"), vol);
    CHECK_R(field(res[1].job_id, "p"), "{\"size_mib\":64}");
    CHECK_R(field(res[1].job_id, "al"), "data");
    CHECK_INT(rint_("HLEN {volq}:job:%s", res[2].job_id), 7);
    CHECK_R(field(res[2].job_id, "al"), "(nil)");
    CHECK_R(field(res[2].job_id, "dm"), DOM_A);

    /* The refusal: failed at once, its reason on one line, no lock. */
    CHECK_R(field(res[3].job_id, "s"), "failed");
    CHECK_R(field(res[3].job_id, "dm"), DOM_B);
    CHECK_R(field(res[3].job_id, "r"), "disk in use by qemu");
    CHECK_INT(rint_("ZCARD {volq}:st:failed"), 1);
    CHECK_INT(rint_("HEXISTS {volq}:locks %s", d[3]), 0);
    json_t *ev = last_event();
    CHECK_STR(evs(ev, "message"), "Failed to amend vm3.");
    CHECK_STR(evs(ev, "job_id"), res[3].job_id);
    CHECK_STR(evs(ev, "domain_id"), DOM_B);
    CHECK_STR(evs(ev, "reason"), "disk in use by qemu");
    json_decref(ev);

    /* The key, the locks and the queue (first accepted at the front). */
    CHECK_R(rstr("GET {volq}:idem:k-4"), res[4].job_id);
    CHECK(rint_("TTL {volq}:idem:k-4") > 86000);
    CHECK_INT(rint_("HLEN {volq}:locks"), 4);
    CHECK_R(rstr("HGET {volq}:locks %s", d[0]), res[0].job_id);
    CHECK_R(rstr("HGET {volq}:locks %s", d[1]), res[1].job_id);
    CHECK_INT(rint_("LLEN {volq}:q"), 4);
    CHECK_R(rstr("LINDEX {volq}:q -1"), res[0].job_id);
    CHECK_R(rstr("LINDEX {volq}:q 0"), res[4].job_id);
}

/* What the call reads before (lock holders, the job of each key) is checked
 * again by the script: a lock whose job ended or vanished is free, a live one
 * holds, a key answers with its job while that job exists. */
static void test_accept_holders_and_keys_read_before(void)
{
    setup();
    char ended[VQ_UUID_SIZE], gone[VQ_UUID_SIZE], d[4][VQ_UUID_SIZE];
    vq_uuid_new(ended);
    vq_uuid_new(gone);
    for (int i = 0; i < 4; i++) vq_uuid_new(d[i]);
    freeReplyObject(rcmd("HSET {volq}:job:%s s succeeded", ended));
    freeReplyObject(rcmd("HSET {volq}:locks %s %s %s %s", d[0], ended, d[1], gone));
    vq_accept_req live = {.kind = "amend", .domain_id = DOM_A, .disk_id = d[2], .alias = "live"};
    vq_accept_res first;
    accept_all(&live, 1, &first);
    CHECK_INT(first.status, VQ_ACCEPT_QUEUED);

    vq_accept_req reqs[4] = {
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[0], .alias = "a"},
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[1], .alias = "b"},
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[2], .alias = "c"},
        {.kind = "amend", .domain_id = DOM_A, .disk_id = d[3], .alias = "d", .idem_key = "k"},
    };
    vq_accept_res res[4];
    accept_all(reqs, 4, res);
    CHECK_INT(res[0].status, VQ_ACCEPT_QUEUED);
    CHECK_R(rstr("HGET {volq}:locks %s", d[0]), res[0].job_id);
    CHECK_INT(res[1].status, VQ_ACCEPT_QUEUED);
    CHECK_R(rstr("HGET {volq}:locks %s", d[1]), res[1].job_id);
    CHECK_INT(res[2].status, VQ_ACCEPT_LOCKED);
    CHECK_STR(res[2].job_id, first.job_id);
    CHECK_INT(res[3].status, VQ_ACCEPT_QUEUED);

    /* The same key again: the job it made.  Once that job is gone, a new one
     * (its disk lock released first, as retention would). */
    vq_accept_res again;
    accept_all(&reqs[3], 1, &again);
    CHECK_INT(again.status, VQ_ACCEPT_IDEMPOTENT);
    CHECK_STR(again.job_id, res[3].job_id);
    freeReplyObject(rcmd("DEL {volq}:job:%s", res[3].job_id));
    freeReplyObject(rcmd("HDEL {volq}:locks %s", d[3]));
    accept_all(&reqs[3], 1, &again);
    CHECK_INT(again.status, VQ_ACCEPT_QUEUED);
    CHECK(strcmp(again.job_id, res[3].job_id) != 0);
    CHECK_R(rstr("GET {volq}:idem:k"), again.job_id);
}

T_MAIN(T(test_accept_mixed_call_fields), T(test_accept_holders_and_keys_read_before))
