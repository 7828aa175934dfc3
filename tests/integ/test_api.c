/* The HTTP API of volq-scheduler (SPEC §4), against the real stack: a real
 * redis-server, the real scheduler, domains made by scripts/mkdomain.sh. */
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/stack.h"
#include "t.h"
#include "volq/job.h"
#include "volq/uuid.h"

static t_stack S;

static void start(unsigned flags)
{
    REQUIRE(t_stack_start(&S, flags) == 0);
}

static const char *mkdomain(const char *args)
{
    const char *sd = t_stack_mkdomain(&S, args);
    REQUIRE(sd);
    return sd;
}

/* Requests to the stack S (tests/lib/stack.h). */
#define call(method, path, body, want) t_call(&S, method, path, body, want)
#define get(path) t_get_json(&S, path)

static json_t *disks(const char *sd)
{
    char path[128];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks", sd);
    return get(path);
}

/* The id of the first disk whose field key has the JSON value want (borrowed
 * into a static buffer). */
static const char *disk_where(const char *sd, const char *key, json_t *want)
{
    static char id[64];
    json_t *arr = disks(sd), *d;
    size_t i;
    id[0] = '\0';
    json_array_foreach(arr, i, d)
        if (!id[0] && json_equal(json_object_get(d, key), want))
            snprintf(id, sizeof id, "%s", json_string_value(json_object_get(d, "id")));
    json_decref(arr);
    json_decref(want);
    REQUIRE(id[0]);
    return id;
}

static const char *disk_by_alias(const char *sd, const char *alias)
{
    return disk_where(sd, "alias", json_string(alias));
}

static t_resp amend(const char *sd, const char *disk, int want)
{
    char path[160];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", sd, disk);
    return call("PUT", path, "{\"qcow_version\":\"qcow2_v3\"}", want);
}

static size_t count_jobs(void)
{
    json_t *arr = get("/api/jobs?limit=10000");
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

static void check_type(json_t *o, const char *key, json_type type)
{
    json_t *v = json_object_get(o, key);
    if (!v) T_FAIL_("field \"%s\" missing", key);
    else if (json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v)))
        T_FAIL_("field \"%s\" has type %d, expected %d", key, (int)json_typeof(v), (int)type);
}

static void check_uuid(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (!vq_uuid_valid(v)) T_FAIL_("field \"%s\" = %s is not a UUID", key, v ? v : "(null)");
}

static void check_job_shape(json_t *j)
{
    check_uuid(j, "id");
    check_type(j, "kind", JSON_STRING);
    check_type(j, "state", JSON_STRING);
    check_uuid(j, "domain_id");
    check_uuid(j, "disk_id");
    check_type(j, "attempts", JSON_INTEGER);
    check_type(j, "max_attempts", JSON_INTEGER);
    check_type(j, "progress", JSON_OBJECT);
    check_type(json_object_get(j, "progress"), "done", JSON_INTEGER);
    check_type(json_object_get(j, "progress"), "total", JSON_INTEGER);
    check_type(j, "errors", JSON_ARRAY);
    check_type(j, "created", JSON_STRING);
    check_type(j, "updated", JSON_STRING);
    CHECK(json_object_get(j, "reason") != NULL);
    CHECK(json_object_get(j, "worker") != NULL);
}

static void check_disk_shape(json_t *d, const char *sd)
{
    static const char *const vol_fields[] = {"id", "format", "compat", "voltype", "legality",
                                             "generation", "parent"};
    check_uuid(d, "id");
    check_type(d, "alias", JSON_STRING);
    check_type(d, "format", JSON_STRING);
    CHECK(json_object_get(d, "qcow_version") != NULL);
    check_uuid(d, "image_id");
    check_type(d, "provisioned_size", JSON_INTEGER);
    check_type(d, "actual_size", JSON_INTEGER);
    check_type(d, "status", JSON_STRING);
    CHECK(json_object_get(d, "reason") != NULL);
    check_type(d, "template", JSON_TRUE);
    CHECK_STR(json_string_value(json_object_get(d, "storage_domain")), sd);
    CHECK(json_object_get(d, "locked_by") != NULL);
    check_type(d, "volumes", JSON_ARRAY);
    json_t *v = json_array_get(json_object_get(d, "volumes"), 0);
    REQUIRE(v);
    for (size_t i = 0; i < sizeof vol_fields / sizeof vol_fields[0]; i++)
        CHECK(json_object_get(v, vol_fields[i]) != NULL);
}

/* ---- domains and disks ------------------------------------------------ */

static void test_api_domains_list(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 3 --data-mib 0");
    json_t *arr = get("/api/storagedomains"), *d = json_array_get(arr, 0);
    CHECK_INT(json_array_size(arr), 1);
    CHECK_STR(json_string_value(json_object_get(d, "id")), sd);
    CHECK_INT(json_integer_value(json_object_get(d, "version")), 4);
    CHECK_STR(json_string_value(json_object_get(d, "status")), "ok");
    CHECK(json_is_null(json_object_get(d, "reason")));
    CHECK_INT(json_integer_value(json_object_get(d, "disks")), 3);
    json_decref(arr);
    t_stack_stop(&S);
}

static void test_api_disks_shape_and_one_disk(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 2 --chain 2 --raw 1 --template --thin 1 --data-mib 0");
    json_t *arr = disks(sd), *d;
    size_t i;
    CHECK_INT(json_array_size(arr), 5);
    json_array_foreach(arr, i, d) check_disk_shape(d, sd);
    const char *id = disk_by_alias(sd, "vm-001_Disk1");
    char p1[160], p2[160];
    snprintf(p1, sizeof p1, "/api/disks/%s", id);
    snprintf(p2, sizeof p2, "/api/storagedomains/%s/disks/%s", sd, id);
    json_t *a = get(p1), *b = get(p2);
    CHECK(json_equal(a, b));
    CHECK_STR(json_string_value(json_object_get(a, "qcow_version")), "qcow2_v2");
    CHECK_STR(json_string_value(json_object_get(a, "status")), "ok");
    CHECK(json_is_null(json_object_get(a, "locked_by")));
    CHECK_INT(json_array_size(json_object_get(a, "volumes")), 2);
    json_decref(a);
    json_decref(b);
    json_decref(arr);
    t_stack_stop(&S);
}

static void test_api_disk_in_two_domains_is_400(void)
{
    start(0);
    char sd1[64], cmd[2048], path[128];
    snprintf(sd1, sizeof sd1, "%s", mkdomain("--disks 1 --data-mib 0"));
    const char *sd2 = mkdomain("--disks 1 --data-mib 0");
    const char *id = disk_by_alias(sd1, "vm-001_Disk1");
    snprintf(cmd, sizeof cmd, "cp -a %s/%s/images/%s %s/%s/images/", S.domains, sd1, id,
             S.domains, sd2);
    REQUIRE(system(cmd) == 0);
    snprintf(path, sizeof path, "/api/disks/%s", id);
    t_resp h = call("GET", path, NULL, 400);
    CHECK_CONTAINS(h.body, sd1);
    CHECK_CONTAINS(h.body, sd2);
    t_resp_free(&h);
    h = call("PUT", path, "{\"qcow_version\":\"qcow2_v3\"}", 400);
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 0);
    t_stack_stop(&S);
}

static void test_api_unknown_ids_404_malformed_400(void)
{
    static const char *const not_found[] = {
        "/api/storagedomains/11111111-2222-3333-4444-555555555555/disks",
        "/api/disks/11111111-2222-3333-4444-555555555555",
        "/api/jobs/11111111-2222-3333-4444-555555555555", "/api/nothing", "/nothing"};
    static const char *const malformed[] = {"/api/storagedomains/not-a-uuid/disks",
                                            "/api/disks/ABCDEFAB-2222-3333-4444-555555555555",
                                            "/api/jobs/12", "/api/jobs?state=bogus",
                                            "/api/jobs?limit=0", "/api/jobs?limit=+5", "/api/jobs?limit=%205",
                                            "/api/events?since=yesterday"};
    start(0);
    const char *sd = mkdomain("--disks 1 --data-mib 0");
    for (size_t i = 0; i < sizeof not_found / sizeof not_found[0]; i++) {
        t_resp h = call("GET", not_found[i], NULL, 404);
        check_type(h.json, "error", JSON_STRING);
        t_resp_free(&h);
    }
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        t_resp h = call("GET", malformed[i], NULL, 400);
        check_type(h.json, "error", JSON_STRING);
        t_resp_free(&h);
    }
    char path[160];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/11111111-2222-3333-4444-555555555555", sd);
    t_resp h = call("GET", path, NULL, 404);
    t_resp_free(&h);
    t_stack_stop(&S);
}

static void test_api_405_names_allowed_methods(void)
{
    start(0);
    t_resp h = call("DELETE", "/api/storagedomains", NULL, 405);
    char *allow = t_resp_header(&h, "Allow");
    CHECK_STR(allow, "GET, HEAD");
    free(allow);
    t_resp_free(&h);
    h = call("PATCH", "/api/jobs/11111111-2222-3333-4444-555555555555", NULL, 405);
    allow = t_resp_header(&h, "Allow");
    CHECK_STR(allow, "GET, DELETE, HEAD");
    free(allow);
    t_resp_free(&h);
    h = call("GET", "/api/jobs/retry", NULL, 405);
    allow = t_resp_header(&h, "Allow");
    CHECK_STR(allow, "POST");
    free(allow);
    t_resp_free(&h);
    t_stack_stop(&S);
}

/* ---- amend ------------------------------------------------------------ */

static void test_api_amend_accepted_and_disk_locked(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 2 --chain 2 --data-mib 0");
    char id[64], path[160];
    snprintf(id, sizeof id, "%s", disk_by_alias(sd, "vm-001_Disk1"));
    t_resp h = amend(sd, id, 202);
    json_t *j = h.json;
    REQUIRE(j);
    check_job_shape(j);
    CHECK_STR(json_string_value(json_object_get(j, "kind")), "amend");
    CHECK_STR(json_string_value(json_object_get(j, "state")), "queued");
    CHECK_STR(json_string_value(json_object_get(j, "domain_id")), sd);
    CHECK_STR(json_string_value(json_object_get(j, "disk_id")), id);
    CHECK_INT(json_integer_value(json_object_get(j, "attempts")), 0);
    snprintf(path, sizeof path, "/api/disks/%s", id);
    json_t *d = get(path);
    CHECK_STR(json_string_value(json_object_get(d, "status")), "locked");
    CHECK_STR(json_string_value(json_object_get(d, "locked_by")),
              json_string_value(json_object_get(j, "id")));
    json_decref(d);
    /* a second job for the locked disk: 409 naming the holder, nothing recorded */
    t_resp h2 = amend(sd, id, 409);
    CHECK_STR(json_string_value(json_object_get(h2.json, "locked_by")),
              json_string_value(json_object_get(j, "id")));
    CHECK_CONTAINS(json_string_value(json_object_get(h2.json, "error")),
                   json_string_value(json_object_get(j, "id")));
    check_type(h2.json, "reason", JSON_STRING);
    CHECK_INT(count_jobs(), 1);
    json_t *ev = get("/api/events");
    CHECK_INT(json_array_size(ev), 0);
    json_decref(ev);
    t_resp_free(&h2);
    t_resp_free(&h);
    t_stack_stop(&S);
}

static void test_api_amend_bad_bodies_400(void)
{
    static const char *const bodies[] = {
        "{\"qcow_version\":", "{\"qcow_version\":3}", "{\"qcow_version\":\"qcow2_v2\"}",
        "{\"qcow_version\":\"qcow2_v3\",\"force\":true}", "[\"qcow2_v3\"]", "\"qcow2_v3\"", "",
        "{\"qcow_version\":\"qcow2_v3\",\"qcow_version\":\"qcow2_v3\"}"};
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --data-mib 0");
    char path[160];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", sd,
             disk_by_alias(sd, "vm-001_Disk1"));
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        t_resp h = call("PUT", path, bodies[i], 400);
        check_type(h.json, "error", JSON_STRING);
        t_resp_free(&h);
    }
    CHECK_INT(count_jobs(), 0);
    t_stack_stop(&S);
}

static void test_api_amend_refusals_409_recorded(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --raw 1 --template --data-mib 0");
    char tmpl[64], raw[64];
    snprintf(tmpl, sizeof tmpl, "%s", disk_by_alias(sd, "template-001"));
    snprintf(raw, sizeof raw, "%s", disk_where(sd, "format", json_string("raw")));
    t_resp h = amend(sd, tmpl, 409);
    CHECK_CONTAINS(json_string_value(json_object_get(h.json, "reason")), "template");
    check_type(h.json, "error", JSON_STRING);
    t_resp_free(&h);
    h = amend(sd, raw, 409);
    CHECK_CONTAINS(json_string_value(json_object_get(h.json, "reason")), "qcow2");
    t_resp_free(&h);
    /* each refusal is a failed job with its reason and the failure event */
    json_t *failed = get("/api/jobs?state=failed");
    CHECK_INT(json_array_size(failed), 2);
    CHECK(json_is_string(json_object_get(json_array_get(failed, 0), "reason")));
    json_decref(failed);
    json_t *ev = get("/api/events"), *e = json_array_get(ev, 0);
    CHECK_INT(json_array_size(ev), 2);
    CHECK_STR(json_string_value(json_object_get(e, "message")), "Failed to amend template-001.");
    CHECK_STR(json_string_value(json_object_get(e, "severity")), "error");
    CHECK_STR(json_string_value(json_object_get(e, "type")), "USER_AMEND_IMAGE_FINISH_FAILURE");
    json_decref(ev);
    /* the refused disk is not locked */
    char path[160];
    snprintf(path, sizeof path, "/api/disks/%s", tmpl);
    json_t *d = get(path);
    CHECK(json_is_null(json_object_get(d, "locked_by")));
    json_decref(d);
    t_stack_stop(&S);
}

static void test_api_amend_on_v3_domain_refused(void)
{
    start(0);
    const char *sd = mkdomain("--version 3 --disks 1 --data-mib 0");
    t_resp h = amend(sd, disk_by_alias(sd, "vm-001_Disk1"), 409);
    CHECK_CONTAINS(json_string_value(json_object_get(h.json, "reason")), "version 3");
    t_resp_free(&h);
    t_stack_stop(&S);
}

static void test_api_oversized_body_413(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --data-mib 0");
    char path[160];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", sd,
             disk_by_alias(sd, "vm-001_Disk1"));
    size_t n = 2 * 1024 * 1024;
    char *big = malloc(n + 1);
    REQUIRE(big);
    memset(big, ' ', n);
    big[n] = '\0';
    memcpy(big, "{\"qcow_version\":\"qcow2_v3\"", 26);
    big[n - 1] = '}';
    t_resp h = call("PUT", path, big, 413);
    t_resp_free(&h);
    free(big);
    CHECK_INT(count_jobs(), 0);
    t_stack_stop(&S);
}

static void test_api_token_required_for_changes(void)
{
    S.token = "s3cret-token";
    start(0);
    const char *sd = mkdomain("--version 4 --disks 2 --data-mib 0");
    char path[160];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", sd,
             disk_by_alias(sd, "vm-001_Disk1"));
    const char *body = "{\"qcow_version\":\"qcow2_v3\"}";
    t_resp h;
    REQUIRE(t_req(&S, "PUT", path, body, "Authorization: Bearer wrong\r\n", &h) == 0);
    CHECK_INT(h.status, 401);
    t_resp_free(&h);
    REQUIRE(t_req(&S, "PUT", path, body, "Authorization: Bearer s3cret-tokenX\r\n", &h) == 0);
    CHECK_INT(h.status, 401);
    t_resp_free(&h);
    REQUIRE(t_req(&S, "PUT", path, body, "Authorization: s3cret-token\r\n", &h) == 0);
    CHECK_INT(h.status, 401);
    t_resp_free(&h);
    REQUIRE(t_req(&S, "POST", "/api/jobs/retry", NULL, "X-None: 1\r\nAuthorization: none\r\n", &h) == 0);
    CHECK_INT(h.status, 401);
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 0); /* GET needs no token */
    h = call("PUT", path, body, 202); /* t_req sends S.token */
    t_resp_free(&h);
    t_stack_stop(&S);
}

/* A web page on another site must not be able to change anything through the
 * loopback API: cross-site markers, a foreign Origin or a non-JSON body. */
static void test_api_cross_site_changes_refused(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --data-mib 0");
    char path[160], raw[1024];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", sd,
             disk_by_alias(sd, "vm-001_Disk1"));
    const char *body = "{\"qcow_version\":\"qcow2_v3\"}";
    t_resp h;
    REQUIRE(t_req(&S, "PUT", path, body, "Sec-Fetch-Site: cross-site\r\n", &h) == 0);
    CHECK_INT(h.status, 403);
    t_resp_free(&h);
    REQUIRE(t_req(&S, "PUT", path, body, "Origin: http://evil.example\r\n", &h) == 0);
    CHECK_INT(h.status, 403);
    t_resp_free(&h);
    snprintf(raw, sizeof raw, "PUT %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
             "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s", path, S.port,
             strlen(body), body);
    REQUIRE(t_req_raw(&S, raw, strlen(raw), &h) == 0);
    CHECK_INT(h.status, 415);
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 0);
    /* The dashboard's own requests: same origin. */
    char origin[128];
    snprintf(origin, sizeof origin, "Origin: http://127.0.0.1:%d\r\nSec-Fetch-Site: same-origin\r\n",
             S.port);
    REQUIRE(t_req(&S, "PUT", path, body, origin, &h) == 0);
    CHECK_INT(h.status, 202);
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 1);
    t_stack_stop(&S);
}

/* The status of one request (headers: extra header lines or NULL). */
static int status_of(const char *method, const char *path, const char *body, const char *headers)
{
    t_resp h;
    REQUIRE(t_req(&S, method, path, body, headers, &h) == 0);
    int st = h.status;
    t_resp_free(&h);
    return st;
}

static void test_api_idempotency_key(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 2 --data-mib 0");
    char path[160];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s", sd,
             disk_by_alias(sd, "vm-001_Disk1"));
    const char *body = "{\"qcow_version\":\"qcow2_v3\"}";
    t_resp a, b;
    REQUIRE(t_req(&S, "PUT", path, body, "Idempotency-Key: key-1\r\n", &a) == 0);
    REQUIRE(t_req(&S, "PUT", path, body, "Idempotency-Key: key-1\r\n", &b) == 0);
    CHECK_INT(a.status, 202);
    CHECK_INT(b.status, 200);
    CHECK_STR(json_string_value(json_object_get(b.json, "id")),
              json_string_value(json_object_get(a.json, "id")));
    CHECK_INT(count_jobs(), 1);
    t_resp_free(&a);
    t_resp_free(&b);
    /* The key used again for another disk, or another kind: 422, nothing made. */
    char other[160], create[200];
    snprintf(other, sizeof other, "/api/storagedomains/%s/disks/%s", sd,
             disk_by_alias(sd, "vm-002_Disk1"));
    REQUIRE(t_req(&S, "PUT", other, body, "Idempotency-Key: key-1\r\n", &a) == 0);
    CHECK_INT(a.status, 422);
    CHECK_CONTAINS(json_string_value(json_object_get(a.json, "error")), "use a new key");
    t_resp_free(&a);
    snprintf(create, sizeof create, "/api/storagedomains/%s/disks/volumes", sd);
    REQUIRE(t_req(&S, "POST", create, "{\"size\":1048576}", "Idempotency-Key: key-1\r\n", &a) == 0);
    CHECK_INT(a.status, 422);
    t_resp_free(&a);
    CHECK_INT(count_jobs(), 1);
    /* A new disk made again under its key: the same job. */
    REQUIRE(t_req(&S, "POST", create, "{\"size\":1048576}", "Idempotency-Key: new-1\r\n", &a) == 0);
    REQUIRE(t_req(&S, "POST", create, "{\"size\":1048576}", "Idempotency-Key: new-1\r\n", &b) == 0);
    CHECK_INT(a.status, 202);
    CHECK_INT(b.status, 200);
    CHECK_STR(json_string_value(json_object_get(b.json, "id")),
              json_string_value(json_object_get(a.json, "id")));
    t_resp_free(&a);
    t_resp_free(&b);
    CHECK_INT(count_jobs(), 2);
    /* The same key with another size, or on another disk: 422, nothing made. */
    REQUIRE(t_req(&S, "POST", create, "{\"size\":2097152}", "Idempotency-Key: new-1\r\n", &a) == 0);
    CHECK_INT(a.status, 422);
    t_resp_free(&a);
    char snap[240], snap2[240];
    snprintf(snap, sizeof snap, "/api/storagedomains/%s/disks/%s/volumes", sd,
             disk_by_alias(sd, "vm-002_Disk1"));
    snprintf(snap2, sizeof snap2, "/api/storagedomains/%s/disks/%s/volumes", sd,
             disk_by_alias(sd, "vm-001_Disk1"));
    const char *k = "Idempotency-Key: snap-1\r\n";
    CHECK_INT(status_of("POST", snap, "{}", k), 202);
    CHECK_INT(status_of("POST", snap2, "{}", k), 422);
    /* A repeat of the snapshot: the same job, though the disk is locked (its
     * size and parent, filled in from the disk, are not compared). */
    CHECK_INT(status_of("POST", snap, "{}", k), 200);
    CHECK_INT(status_of("POST", snap, "{\"format\":\"raw\"}", k), 422);
    CHECK_INT(count_jobs(), 3);
    t_stack_stop(&S);
}

/* ---- create-volume ---------------------------------------------------- */

static void test_api_create_volume_new_and_existing_disk(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --data-mib 0");
    char path[200], id[64];
    snprintf(id, sizeof id, "%s", disk_by_alias(sd, "vm-001_Disk1"));
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/volumes", sd);
    t_resp h = call("POST", path, "{\"size\":1048576,\"format\":\"cow\",\"alias\":\"new-disk\"}", 202);
    check_job_shape(h.json);
    CHECK_STR(json_string_value(json_object_get(h.json, "kind")), "create-volume");
    check_uuid(h.json, "volume_id");
    CHECK(strcmp(json_string_value(json_object_get(h.json, "disk_id")), id) != 0);
    t_resp_free(&h);
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/%s/volumes", sd, id);
    h = call("POST", path, "{\"size\":1073741824}", 202);
    CHECK_STR(json_string_value(json_object_get(h.json, "disk_id")), id);
    check_uuid(h.json, "volume_id");
    t_resp_free(&h);
    h = call("POST", path, "{\"size\":1073741824}", 409); /* locked by the job above */
    t_resp_free(&h);
    t_stack_stop(&S);
}

static void test_api_create_volume_bad_input_400(void)
{
    static const char *const bodies[] = {
        "{\"size\":1000}", "{\"size\":-512}", "{\"size\":0}", "{\"size\":\"1M\"}",
        "{\"size\":1048576.5}", "{\"size\":1048576,\"format\":\"qcow\"}",
        "{\"size\":1048576,\"format\":1}", "{\"size\":1048576,\"parent\":\"x\"}",
        "{\"size\":1048576,\"alias\":7}", "{\"size\":1048576,\"color\":\"red\"}", "{}", "nope"};
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --data-mib 0");
    char path[200];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks/volumes", sd);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        t_resp h = call("POST", path, bodies[i], 400);
        t_resp_free(&h);
    }
    CHECK_INT(count_jobs(), 0);
    t_stack_stop(&S);
}

/* ---- bulk upgrade ----------------------------------------------------- */

static void run_ok(const char *cmd)
{
    if (system(cmd) != 0) T_FAIL_("command failed: %s", cmd);
}

/* Amends every volume of a single-volume disk by hand: "already 1.1". */
static void amend_by_hand(const char *sd, const char *img)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s/%s/images/%s && for v in $(ls | grep -v '\\.'); do "
             "qemu-img amend -q -f qcow2 -o compat=1.1 $v || exit 1; done", S.domains, sd, img);
    run_ok(cmd);
}

/* Marks the disk's volume ILLEGAL in its .meta. */
static void make_illegal(const char *sd, const char *img)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "sed -i 's/^LEGALITY=LEGAL$/LEGALITY=ILLEGAL/' %s/%s/images/%s/*.meta",
             S.domains, sd, img);
    run_ok(cmd);
}

/* sha1sum of every file of a disk's folder (new string). */
static char *folder_sums(const char *sd, const char *img)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s/%s/images/%s && sha1sum * | sort", S.domains, sd, img);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    char *out = calloc(1, 4096);
    REQUIRE(out && fread(out, 1, 4095, p) > 0);
    pclose(p);
    return out;
}

/* A .meta of exactly 512 bytes at GEN=9: its bump to 10 would not fit, so the
 * amend is refused before qemu-img changes anything (not left at 1.1 with its
 * GEN never bumped). */
static void test_api_amend_refused_when_gen_bump_would_not_fit(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --data-mib 0");
    char img[64], cmd[4096];
    snprintf(img, sizeof img, "%s", disk_by_alias(sd, "vm-001_Disk1"));
    /* GEN=9, then an unknown key (kept on rewrite) padding the file to 512 bytes. */
    snprintf(cmd, sizeof cmd,
             "cd %s/%s/images/%s && for m in *.meta; do grep -v -e '^GEN=' -e '^EOF$' $m > t; "
             "echo GEN=9 >> t; n=$((512 - $(wc -c < t) - 10)); "
             "printf 'ZPAD=%%*s\\nEOF\\n' $n '' | tr ' ' x >> t; mv t $m; "
             "test $(wc -c < $m) = 512 || exit 1; done",
             S.domains, sd, img);
    run_ok(cmd);
    char *before = folder_sums(sd, img);
    t_resp h = amend(sd, img, 409);
    CHECK_CONTAINS(json_string_value(json_object_get(h.json, "reason")), "over 512");
    t_resp_free(&h);
    /* A bulk upgrade skips it as illegal (its metadata), with the same reason. */
    char path[160];
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    h = call("POST", path, "{}", 202);
    json_t *sk = json_array_get(json_object_get(h.json, "skipped"), 0);
    CHECK_INT(json_array_size(json_object_get(h.json, "jobs")), 0);
    CHECK_STR(json_string_value(json_object_get(sk, "code")), "illegal");
    CHECK_CONTAINS(json_string_value(json_object_get(sk, "reason")), "GEN bump");
    t_resp_free(&h);
    char *after = folder_sums(sd, img);
    CHECK_STR(after, before);
    free(before);
    free(after);
    t_stack_stop(&S);
}

static const char *skip_code_of(json_t *skipped, const char *disk)
{
    size_t i;
    json_t *s;
    json_array_foreach(skipped, i, s)
        if (strcmp(json_string_value(json_object_get(s, "disk_id")), disk) == 0)
            return json_string_value(json_object_get(s, "code"));
    return NULL;
}

static void test_api_upgrade_skips_with_reasons(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 4 --raw 1 --template --thin 1 --data-mib 0");
    char done[64], bad[64], tmpl[64], raw[64], path[128];
    snprintf(done, sizeof done, "%s", disk_by_alias(sd, "vm-003_Disk1"));
    snprintf(bad, sizeof bad, "%s", disk_by_alias(sd, "vm-004_Disk1"));
    snprintf(tmpl, sizeof tmpl, "%s", disk_by_alias(sd, "template-001"));
    snprintf(raw, sizeof raw, "%s", disk_by_alias(sd, "vm-005_Disk1"));
    amend_by_hand(sd, done);
    make_illegal(sd, bad);
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    t_resp h = call("POST", path, "{\"to_v4\":false}", 202);
    json_t *jobs = json_object_get(h.json, "jobs"), *skipped = json_object_get(h.json, "skipped");
    CHECK_INT(json_array_size(jobs), 3); /* vm-001, vm-002 and the thin vm-006 */
    CHECK_INT(json_array_size(skipped), 4);
    CHECK_STR(skip_code_of(skipped, tmpl), "template");
    CHECK_STR(skip_code_of(skipped, raw), "raw");
    CHECK_STR(skip_code_of(skipped, done), "already_amended");
    CHECK_STR(skip_code_of(skipped, bad), "illegal");
    size_t i;
    json_t *s, *j;
    json_array_foreach(skipped, i, s) {
        check_type(s, "alias", JSON_STRING);
        check_type(s, "reason", JSON_STRING);
    }
    json_array_foreach(jobs, i, j) {
        check_job_shape(j);
        CHECK_STR(json_string_value(json_object_get(j, "state")), "queued");
    }
    t_resp_free(&h);
    /* again: every eligible disk is now locked by the first bulk */
    h = call("POST", path, "{}", 202);
    CHECK_INT(json_array_size(json_object_get(h.json, "jobs")), 0);
    CHECK_INT(json_array_size(json_object_get(h.json, "skipped")), 7);
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 3);
    /* /metrics counts the skips of both requests by code */
    static const struct {
        const char *code;
        int n;
    } skips[] = {{"template", 2}, {"raw", 2}, {"already_amended", 2}, {"illegal", 2},
                 {"locked", 3}, {"in_use", 0}};
    h = call("GET", "/metrics", NULL, 200);
    for (size_t k = 0; k < sizeof skips / sizeof skips[0]; k++) {
        char line[96];
        snprintf(line, sizeof line, "volq_upgrade_skipped_total{code=\"%s\"} %d\n", skips[k].code,
                 skips[k].n);
        CHECK_CONTAINS(h.body, line);
    }
    t_resp_free(&h);
    t_stack_stop(&S);
}

static void test_api_upgrade_to_v4(void)
{
    start(0);
    const char *sd = mkdomain("--version 3 --disks 2 --data-mib 0");
    char path[128], md[1024];
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    t_resp h = call("POST", path, "{}", 409);
    CHECK_CONTAINS(h.body, "to_v4");
    t_resp_free(&h);
    h = call("POST", path, "{\"to_v4\":\"yes\"}", 400);
    t_resp_free(&h);
    h = call("POST", path, "{\"to_v4\":true}", 202);
    CHECK_INT(json_array_size(json_object_get(h.json, "jobs")), 2);
    t_resp_free(&h);
    json_t *arr = get("/api/storagedomains");
    CHECK_INT(json_integer_value(json_object_get(json_array_get(arr, 0), "version")), 4);
    json_decref(arr);
    snprintf(md, sizeof md, "grep -qx VERSION=4 %s/%s/dom_md/metadata", S.domains, sd);
    CHECK(system(md) == 0);
    t_stack_stop(&S);
}

static void test_api_upgrade_older_than_v3_refused(void)
{
    start(0);
    const char *sd = mkdomain("--version 3 --disks 1 --data-mib 0");
    char path[128], cmd[1024];
    /* VERSION=2 without a seal: a file without _SHA_CKSUM is accepted */
    snprintf(cmd, sizeof cmd, "sed -i -e 's/^VERSION=3$/VERSION=2/' -e '/^_SHA_CKSUM=/d' "
             "%s/%s/dom_md/metadata", S.domains, sd);
    run_ok(cmd);
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    t_resp h = call("POST", path, "{\"to_v4\":true}", 409);
    CHECK_CONTAINS(h.body, "version 2");
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 0);
    t_stack_stop(&S);
}

static void test_api_upgrade_idempotency_key(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 2 --data-mib 0");
    char path[128];
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    t_resp a, b;
    REQUIRE(t_req(&S, "POST", path, "{}", "Idempotency-Key: bulk-7\r\n", &a) == 0);
    REQUIRE(t_req(&S, "POST", path, "{}", "Idempotency-Key: bulk-7\r\n", &b) == 0);
    CHECK_INT(a.status, 202);
    CHECK_INT(b.status, 200);
    CHECK_INT(json_array_size(json_object_get(b.json, "jobs")), 2);
    CHECK(json_equal(json_object_get(json_array_get(json_object_get(a.json, "jobs"), 0), "id"),
                     json_object_get(json_array_get(json_object_get(b.json, "jobs"), 0), "id")));
    CHECK_INT(count_jobs(), 2);
    t_resp_free(&a);
    t_resp_free(&b);
    t_stack_stop(&S);
}

static t_resp keyed(const char *method, const char *path, const char *body, const char *key)
{
    char hdr[200];
    t_resp h;
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s\r\n", key);
    REQUIRE(t_req(&S, method, path, body, hdr, &h) == 0);
    return h;
}

/* One key, two kinds of request: a single amend's key used for a bulk
 * upgrade, or a bulk's for a single amend of one of its disks, is 422 and
 * nothing is made (the V3 domain is not raised either); each request's own
 * repeat still answers 200 with its jobs. */
static void test_api_idempotency_key_single_vs_bulk(void)
{
    start(0);
    char sd1[64], sd2[64], one[200], bulk1[128], bulk2[128], one2[200], job[64];
    snprintf(sd1, sizeof sd1, "%s", mkdomain("--version 3 --disks 2 --data-mib 0"));
    snprintf(sd2, sizeof sd2, "%s", mkdomain("--version 4 --disks 2 --data-mib 0"));
    const char *body = "{\"qcow_version\":\"qcow2_v3\"}";
    snprintf(one, sizeof one, "/api/storagedomains/%s/disks/%s", sd1, disk_by_alias(sd1, "vm-001_Disk1"));
    snprintf(one2, sizeof one2, "/api/storagedomains/%s/disks/%s", sd2, disk_by_alias(sd2, "vm-001_Disk1"));
    snprintf(bulk1, sizeof bulk1, "/api/storagedomains/%s/upgrade", sd1);
    snprintf(bulk2, sizeof bulk2, "/api/storagedomains/%s/upgrade", sd2);
    char md[1024];
    t_resp h = keyed("PUT", one, body, "single-1");
    CHECK_INT(h.status, 409); /* V3: refused, and recorded under the key */
    snprintf(job, sizeof job, "%s", json_string_value(json_object_get(h.json, "job_id")));
    t_resp_free(&h);
    h = keyed("POST", bulk1, "{\"to_v4\":true}", "single-1");
    CHECK_INT(h.status, 422);
    CHECK_STR(json_string_value(json_object_get(h.json, "job_id")), job);
    CHECK_CONTAINS(json_string_value(json_object_get(h.json, "error")),
                   "this Idempotency-Key made job ");
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 1);
    snprintf(md, sizeof md, "grep -qx VERSION=3 %s/%s/dom_md/metadata", S.domains, sd1);
    CHECK(system(md) == 0);
    /* a bulk's key, then a single amend of one of its disks */
    t_resp a = keyed("POST", bulk2, "{}", "bulk-1");
    CHECK_INT(a.status, 202);
    CHECK_INT(json_array_size(json_object_get(a.json, "jobs")), 2);
    CHECK_INT(count_jobs(), 3);
    h = keyed("PUT", one2, body, "bulk-1");
    CHECK_INT(h.status, 422);
    CHECK_CONTAINS(json_string_value(json_object_get(h.json, "error")),
                   "this Idempotency-Key was used for an upgrade of domain ");
    const char *bulk_job = json_string_value(json_object_get(h.json, "job_id"));
    size_t i;
    json_t *j;
    int found = 0;
    json_array_foreach(json_object_get(a.json, "jobs"), i, j)
        found += bulk_job && strcmp(json_string_value(json_object_get(j, "id")), bulk_job) == 0;
    CHECK_INT(found, 1);
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 3);
    /* each one's own repeat */
    h = keyed("POST", bulk2, "{}", "bulk-1");
    CHECK_INT(h.status, 200);
    CHECK(json_equal(json_object_get(a.json, "jobs"), json_object_get(h.json, "jobs")));
    t_resp_free(&h);
    t_resp_free(&a);
    h = keyed("PUT", one, body, "single-1");
    CHECK_INT(h.status, 200);
    CHECK_STR(json_string_value(json_object_get(h.json, "id")), job);
    t_resp_free(&h);
    CHECK_INT(count_jobs(), 3);
    t_stack_stop(&S);
}

/* 150 disks: more than one scan thread's share, so the scan hands them on in
 * several runs, each accepted while the next loads.  A disk locked before the
 * bulk and one already amended sit late in the domain; every other disk gets
 * exactly one job, and a repeat with the key answers the same jobs. */
static void test_api_upgrade_in_runs(void)
{
    enum { N = 150 };
    start(0);
    const char *sd = mkdomain("--version 4 --disks 150 --data-mib 0");
    char locked[64], done[64], path[128], held_by[64];
    json_t *arr = disks(sd);
    REQUIRE(json_array_size(arr) == N);
    snprintf(locked, sizeof locked, "%s",
             json_string_value(json_object_get(json_array_get(arr, 100), "id")));
    snprintf(done, sizeof done, "%s",
             json_string_value(json_object_get(json_array_get(arr, 140), "id")));
    json_decref(arr);
    t_resp h = amend(sd, locked, 202);
    snprintf(held_by, sizeof held_by, "%s", json_string_value(json_object_get(h.json, "id")));
    t_resp_free(&h);
    amend_by_hand(sd, done);
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    t_resp a, b;
    REQUIRE(t_req(&S, "POST", path, "{}", "Idempotency-Key: runs-1\r\n", &a) == 0);
    CHECK_INT(a.status, 202);
    json_t *jobs = json_object_get(a.json, "jobs"), *skipped = json_object_get(a.json, "skipped");
    CHECK_INT(json_array_size(jobs), N - 2);
    CHECK_INT(json_array_size(skipped), 2);
    CHECK_STR(skip_code_of(skipped, done), "already_amended");
    CHECK_STR(skip_code_of(skipped, locked), "locked");
    size_t i, dup = 0;
    json_t *j;
    json_array_foreach(jobs, i, j) {
        const char *disk = json_string_value(json_object_get(j, "disk_id"));
        dup += strcmp(disk, locked) == 0 || strcmp(disk, done) == 0;
        for (size_t k = 0; k < i; k++)
            dup += strcmp(disk, json_string_value(json_object_get(json_array_get(jobs, k),
                                                                  "disk_id"))) == 0;
    }
    CHECK_INT(dup, 0);
    REQUIRE(t_req(&S, "POST", path, "{}", "Idempotency-Key: runs-1\r\n", &b) == 0);
    CHECK_INT(b.status, 200);
    CHECK(json_equal(json_object_get(a.json, "jobs"), json_object_get(b.json, "jobs")));
    CHECK_INT(count_jobs(), N - 1); /* the bulk's and the one amend before it */
    t_resp_free(&a);
    t_resp_free(&b);
    t_stack_stop(&S);
}

/* The second run of a 50-disk upgrade (disks 32..49: a scan that small hands
 * on 32, then the rest) fails in Redis: the first disk of that run has its
 * idempotency key spoilt (a hash where a job id belongs), so accept.lua stops
 * at its first step.  The answer is the error; the first run's 32 jobs stay
 * queued with their locks; once the key is mended the repeat with the same
 * key answers those and accepts the rest: one job per disk in all. */
static void test_api_upgrade_fails_midway(void)
{
    enum { N = 50, FIRST = 32 };
    start(0);
    const char *sd = mkdomain("--version 4 --disks 50 --data-mib 0");
    char path[128], bad[128], hdr[] = "Idempotency-Key: midway-1\r\n";
    json_t *arr = disks(sd);
    REQUIRE(json_array_size(arr) == N);
    snprintf(bad, sizeof bad, "{volq}:idem:midway-1/%s",
             json_string_value(json_object_get(json_array_get(arr, FIRST), "id")));
    json_decref(arr);
    freeReplyObject(t_redis_query(&S.redis, "HSET %s x y", bad));
    snprintf(path, sizeof path, "/api/storagedomains/%s/upgrade", sd);
    t_resp a = {0};
    REQUIRE(t_req(&S, "POST", path, "{}", hdr, &a) == 0);
    CHECK_INT(a.status, 503);
    CHECK_CONTAINS(a.body, "WRONGTYPE");
    CHECK_CONTAINS(a.body, "stopped after 32 job(s) were accepted");
    CHECK_INT(t_redis_int(&S.redis, "LLEN {volq}:q"), FIRST);
    CHECK_INT(t_redis_int(&S.redis, "HLEN {volq}:locks"), FIRST);
    /* An error reply is not a lost connection: Redis is not marked down. */
    t_resp st = call("GET", "/api/status", NULL, 200);
    CHECK_STR(json_string_value(json_object_get(st.json, "redis")), "up");
    t_resp_free(&st);
    freeReplyObject(t_redis_query(&S.redis, "DEL %s", bad));
    long long deadline = t_now_ms() + 10000;
    do {
        t_resp_free(&a);
        REQUIRE(t_req(&S, "POST", path, "{}", hdr, &a) == 0);
    } while (a.status == 503 && t_now_ms() < deadline);
    CHECK_INT(a.status, 202);
    json_t *jobs = json_object_get(a.json, "jobs");
    CHECK_INT(json_array_size(jobs), N);
    CHECK_INT(json_array_size(json_object_get(a.json, "skipped")), 0);
    size_t i, dup = 0;
    json_t *j;
    json_array_foreach(jobs, i, j)
        for (size_t k = 0; k < i; k++)
            dup += json_equal(json_object_get(j, "disk_id"),
                              json_object_get(json_array_get(jobs, k), "disk_id"));
    CHECK_INT(dup, 0);
    t_resp_free(&a);
    CHECK_INT(count_jobs(), N);
    CHECK_INT(t_redis_int(&S.redis, "HLEN {volq}:locks"), N);
    t_stack_stop(&S);
}

static int housekeeping_refused(void *arg)
{
    (void)arg;
    return t_log_count("scheduler.log", "housekeeping refused") > 0;
}

/* Redis refusing writes (min-replicas-to-write) while a retry is due: the
 * housekeeping is refused and says so once, the API goes on answering, and
 * Redis is not taken for gone (no reconnect loop). */
static void test_api_redis_refusing_writes_stays_up(void)
{
    start(0);
    freeReplyObject(
        t_redis_query(&S.redis, "ZADD {volq}:due 0 11111111-2222-3333-4444-555555555555"));
    freeReplyObject(t_redis_query(&S.redis, "CONFIG SET min-replicas-to-write 1"));
    REQUIRE(t_poll(housekeeping_refused, NULL, 10000));
    for (int i = 0; i < 20; i++) {
        t_resp h = call("GET", "/api/status", NULL, 200);
        CHECK_STR(json_string_value(json_object_get(h.json, "redis")), "up");
        t_resp_free(&h);
    }
    CHECK_INT(t_log_count("scheduler.log", "went away"), 0);
    CHECK_INT(t_log_count("scheduler.log", "housekeeping refused"), 1);
    freeReplyObject(t_redis_query(&S.redis, "CONFIG SET min-replicas-to-write 0"));
    t_stack_stop(&S);
}

/* ---- jobs ------------------------------------------------------------- */

static const char *job_id(t_resp *h)
{
    static char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(h->json, "id")));
    return id;
}

/* last changes never increase down the list (jobs of one millisecond tie) */
static void check_newest_first(json_t *arr)
{
    for (size_t i = 1; i < json_array_size(arr); i++) {
        const char *a = json_string_value(json_object_get(json_array_get(arr, i - 1), "updated"));
        const char *b = json_string_value(json_object_get(json_array_get(arr, i), "updated"));
        if (!a || !b || strcmp(a, b) < 0) T_FAIL_("jobs %zu and %zu are not newest first", i - 1, i);
    }
}

static void test_api_jobs_list_cancel_retry(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 2 --template --data-mib 0");
    char first[64], second[64], refused[64], path[160];
    t_resp h = amend(sd, disk_by_alias(sd, "vm-001_Disk1"), 202);
    snprintf(first, sizeof first, "%s", job_id(&h));
    t_resp_free(&h);
    h = amend(sd, disk_by_alias(sd, "vm-002_Disk1"), 202);
    snprintf(second, sizeof second, "%s", job_id(&h));
    t_resp_free(&h);
    h = amend(sd, disk_by_alias(sd, "template-001"), 409);
    snprintf(refused, sizeof refused, "%s", json_string_value(json_object_get(h.json, "job_id")));
    t_resp_free(&h);

    json_t *all = get("/api/jobs");
    CHECK_INT(json_array_size(all), 3);
    check_newest_first(all);
    json_decref(all);
    json_t *q = get("/api/jobs?state=queued&limit=1");
    CHECK_INT(json_array_size(q), 1);
    const char *got = json_string_value(json_object_get(json_array_get(q, 0), "id"));
    CHECK(got && (!strcmp(got, second) || !strcmp(got, first))); /* both may share a ms */
    json_decref(q);

    snprintf(path, sizeof path, "/api/jobs/%s", first);
    h = call("GET", path, NULL, 200);
    check_job_shape(h.json);
    t_resp_free(&h);
    /* A malformed or unknown body is refused before anything changes. */
    h = call("DELETE", path, "{\"this is\": not json", 400);
    t_resp_free(&h);
    h = call("DELETE", path, "{\"force\": true}", 400);
    t_resp_free(&h);
    h = call("GET", path, NULL, 200);
    CHECK_STR(json_string_value(json_object_get(h.json, "state")), "queued");
    t_resp_free(&h);
    h = call("DELETE", path, "{}", 200);
    CHECK_STR(json_string_value(json_object_get(h.json, "state")), "cancelled");
    t_resp_free(&h);
    h = call("DELETE", path, NULL, 409); /* not queued any more */
    t_resp_free(&h);
    snprintf(path, sizeof path, "/api/jobs/%s/retry", second);
    h = call("POST", path, NULL, 409); /* queued, not failed */
    t_resp_free(&h);
    snprintf(path, sizeof path, "/api/jobs/%s/retry", refused);
    h = call("POST", path, "[1,2,3]", 400);
    t_resp_free(&h);
    h = call("POST", "/api/jobs/retry", "{\"x\":1}", 400);
    t_resp_free(&h);
    h = call("GET", "/api/jobs?state=failed", NULL, 200);
    CHECK_INT(json_array_size(h.json), 1); /* the refusal: not retried */
    t_resp_free(&h);
    h = call("POST", path, NULL, 202);
    CHECK_STR(json_string_value(json_object_get(h.json, "state")), "queued");
    t_resp_free(&h);
    h = call("POST", "/api/jobs/retry", NULL, 200);
    check_type(h.json, "retried", JSON_INTEGER);
    check_type(h.json, "left", JSON_INTEGER);
    t_resp_free(&h);
    t_stack_stop(&S);
}

/* ---- events ----------------------------------------------------------- */

static void test_api_events_since_and_shape(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --template --data-mib 0");
    char tmpl[64], path[256];
    snprintf(tmpl, sizeof tmpl, "%s", disk_by_alias(sd, "template-001"));
    t_resp h = amend(sd, tmpl, 409);
    t_resp_free(&h);
    json_t *ev = get("/api/events"), *e = json_array_get(ev, 0);
    REQUIRE(e);
    static const char *const str_fields[] = {"id", "time", "severity", "type", "message",
                                             "kind", "job_id", "domain_id", "disk_id", "reason"};
    for (size_t i = 0; i < sizeof str_fields / sizeof str_fields[0]; i++)
        check_type(e, str_fields[i], JSON_STRING);
    CHECK_STR(json_string_value(json_object_get(e, "kind")), "amend");
    CHECK_STR(json_string_value(json_object_get(e, "disk_id")), tmpl);
    snprintf(path, sizeof path, "/api/events?since=%s", json_string_value(json_object_get(e, "id")));
    json_t *after = get(path);
    CHECK_INT(json_array_size(after), 0);
    json_decref(after);
    json_t *since_time = get("/api/events?since=2000-01-01T00:00:00Z");
    CHECK_INT(json_array_size(since_time), 1);
    json_decref(since_time);
    json_decref(ev);
    t_stack_stop(&S);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one_waiting(void *arg)
{
    (void)arg;
    t_resp h;
    int ok = t_req(&S, "GET", "/metrics", NULL, NULL, &h) == 0 && h.body &&
             strstr(h.body, "volq_events_waiting 1\n");
    t_resp_free(&h);
    return ok;
}

/* With one waiter (pid, a child in GET /api/events?wait=): a refused amend
 * of tmpl posts an event, which must end the wait at once (the child exits 0). */
static void wake_waiter(const char *sd, const char *tmpl, pid_t pid)
{
    CHECK(t_poll(one_waiting, NULL, 5000));
    double t0 = now_s();
    t_resp h = amend(sd, tmpl, 409);
    t_resp_free(&h);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(now_s() - t0 < 5.0);
}

static void test_api_events_long_poll(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --template --data-mib 0");
    char tmpl[64];
    snprintf(tmpl, sizeof tmpl, "%s", disk_by_alias(sd, "template-001"));
    /* nothing comes: the wait ends with [] after about a second */
    double t0 = now_s();
    json_t *none = get("/api/events?wait=1");
    CHECK_INT(json_array_size(none), 0);
    CHECK(now_s() - t0 >= 0.9);
    json_decref(none);
    /* an event during the wait ends it at once; other requests are served meanwhile */
    pid_t pid = fork();
    if (pid == 0) {
        t_resp h;
        int rc = t_req(&S, "GET", "/api/events?wait=20", NULL, NULL, &h);
        _exit(rc == 0 && h.status == 200 && json_array_size(h.json) == 1 ? 0 : 1);
    }
    wake_waiter(sd, tmpl, pid);
    t_stack_stop(&S);
}

/* SIGTERM while a request waits for events: it is answered 503 before the
 * scheduler exits (the answer is written, not dropped with the connection). */
static void test_api_events_waiter_answered_on_stop(void)
{
    start(0);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        t_resp h;
        int rc = t_req(&S, "GET", "/api/events?wait=20", NULL, NULL, &h);
        dprintf(fds[1], "%d %s", rc == 0 ? h.status : -1, h.body ? h.body : "");
        _exit(0);
    }
    close(fds[1]);
    CHECK(t_poll(one_waiting, NULL, 5000));
    double t0 = now_s();
    CHECK_INT(t_stack_stop_scheduler(&S), 0);
    CHECK(now_s() - t0 < 3.0);
    char got[512] = "";
    ssize_t n, len = 0;
    while ((n = read(fds[0], got + len, sizeof got - 1 - (size_t)len)) > 0) len += n;
    got[len] = '\0';
    close(fds[0]);
    waitpid(pid, NULL, 0);
    CHECK(strncmp(got, "503 ", 4) == 0);
    CHECK_CONTAINS(got, "volq-scheduler is stopping");
    t_stack_stop(&S);
}

/* An id that does not fit a stream id is 400 with one line, before Redis
 * sees it: Redis stays up for every other request. */
static void test_api_events_bad_ids_400(void)
{
    start(0);
    static const char *const bad[] = {"99999999999999999999-0",
                                      "18446744073709551615-18446744073709551615",
                                      "0-18446744073709551616", "%2B1-0", "1-0%20"};
    char path[160];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/api/events?since=%s", bad[i]);
        t_resp h = call("GET", path, NULL, 400);
        const char *e = json_string_value(json_object_get(h.json, "error"));
        CHECK_CONTAINS(e, "event id (ms-seq, each part below 2^64)");
        CHECK(e && !strchr(e, '\n'));
        t_resp_free(&h);
    }
    t_resp h = call("GET", "/metrics", NULL, 200);
    CHECK_CONTAINS(h.body, "volq_redis_up 1\n");
    t_resp_free(&h);
    json_t *none = get("/api/events?since=18446744073709551615-18446744073709551614");
    CHECK_INT(json_array_size(none), 0);
    json_decref(none);
    t_stack_stop(&S);
}

/* RFC 3339 of now - ago_ms (out has 32 bytes); the time in ms to *ms. */
static void time_ago(int64_t ago_ms, int64_t *ms, char out[32])
{
    *ms = vq_now_ms() - ago_ms;
    vq_time_format(*ms, out);
}

/* since=T: an event in the second before T (read for the two clocks, then
 * passed over) takes no place in the page, nor keeps a waiting request from
 * seeing the event that comes after it.  limit goes up to 10000. */
static void test_api_events_since_time_and_limit(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 1 --template --data-mib 0");
    char tmpl[64], t[32], old[32], path[160];
    int64_t t_ms, old_ms;
    snprintf(tmpl, sizeof tmpl, "%s", disk_by_alias(sd, "template-001"));
    time_ago(10000, &t_ms, t);
    old_ms = t_ms - 500;
    vq_time_format(old_ms, old);
    freeReplyObject(t_redis_query(&S.redis, "XADD {volq}:events %lld-0 e {\"time\":\"%s\"}",
                                  (long long)old_ms, old));
    snprintf(path, sizeof path, "/api/events?since=%s&limit=1&wait=10", t);
    pid_t pid = fork();
    if (pid == 0) {
        t_resp h;
        int rc = t_req(&S, "GET", path, NULL, NULL, &h);
        const char *m = json_string_value(json_object_get(json_array_get(h.json, 0), "message"));
        _exit(rc == 0 && h.status == 200 && json_array_size(h.json) == 1 && m &&
              strcmp(m, "Failed to amend template-001.") == 0 ? 0 : 1);
    }
    wake_waiter(sd, tmpl, pid);
    snprintf(path, sizeof path, "/api/events?since=%s&limit=1", t);
    json_t *page = get(path);
    CHECK_INT(json_array_size(page), 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(page, 0), "message")),
              "Failed to amend template-001.");
    json_decref(page);
    /* 1500 more: one request takes them all */
    freeReplyObject(t_redis_query(&S.redis, "EVAL %s 1 {volq}:events",
                                  "for i = 1, 1500 do redis.call('XADD', KEYS[1], '*', 'e', "
                                  "'{\"time\":\"2026-01-01T00:00:00.000Z\"}') end"));
    page = get("/api/events?limit=10000");
    CHECK_INT(json_array_size(page), 1 + 1 + 1500); /* the old one, the refusal, the 1500 */
    json_decref(page);
    page = get("/api/events?limit=1200");
    CHECK_INT(json_array_size(page), 1200);
    json_decref(page);
    t_resp h = call("GET", "/api/events?limit=10001", NULL, 400);
    t_resp_free(&h);
    t_stack_stop(&S);
}

/* ---- status, metrics, health, robustness -------------------------------- */

static void test_api_status_metrics_healthz_index(void)
{
    start(0);
    json_t *st = get("/api/status");
    check_type(st, "jobs", JSON_OBJECT);
    check_type(json_object_get(st, "jobs"), "queued", JSON_INTEGER);
    check_type(st, "workers", JSON_ARRAY);
    CHECK(json_is_number(json_object_get(st, "oldest_waiting_s")));
    CHECK(json_is_number(json_object_get(st, "jobs_per_min")));
    CHECK_STR(json_string_value(json_object_get(st, "redis")), "up");
    json_decref(st);
    t_resp h = call("GET", "/metrics", NULL, 200);
    CHECK_CONTAINS(h.body, "volq_redis_up 1\n");
    CHECK_CONTAINS(h.body, "volq_jobs{state=\"queued\"} 0\n");
    CHECK_CONTAINS(h.body, "# TYPE volq_queue_depth gauge\n");
    CHECK_CONTAINS(h.body, "# TYPE volq_attempt_duration_seconds histogram\n");
    CHECK_CONTAINS(h.body, "volq_attempt_duration_seconds_bucket{kind=\"amend\",le=\"0.1\"} 0\n");
    CHECK_CONTAINS(h.body, "volq_attempt_duration_seconds_bucket{kind=\"create-volume\",le=\"+Inf\"} 0\n");
    CHECK_CONTAINS(h.body, "volq_attempt_duration_seconds_count{kind=\"amend\"} 0\n");
    t_resp_free(&h);
    h = call("GET", "/healthz", NULL, 200);
    t_resp_free(&h);
    h = call("GET", "/", NULL, 200);
    char *ct = t_resp_header(&h, "Content-Type"), *csp = t_resp_header(&h, "Content-Security-Policy");
    char *nosniff = t_resp_header(&h, "X-Content-Type-Options");
    CHECK_CONTAINS(ct, "text/html");
    CHECK_CONTAINS(csp, "frame-ancestors 'none'");
    CHECK_STR(nosniff, "nosniff");
    free(ct);
    free(csp);
    free(nosniff);
    t_resp_free(&h);
    h = call("HEAD", "/api/status", NULL, 200);
    CHECK_INT(h.len, 0);
    t_resp_free(&h);
    /* closed connections are no longer counted: only this request's own */
    h = call("GET", "/metrics", NULL, 200);
    CHECK_CONTAINS(h.body, "volq_http_connections 1\n");
    t_resp_free(&h);
    t_stack_stop(&S);
}

static int healthz_is(int want)
{
    t_resp h;
    int ok = t_req(&S, "GET", "/healthz", NULL, NULL, &h) == 0 && h.status == want;
    t_resp_free(&h);
    return ok;
}

static int healthz_503(void *arg) { (void)arg; return healthz_is(503); }
static int healthz_200(void *arg) { (void)arg; return healthz_is(200); }

static void test_api_redis_down_answers_503_then_recovers(void)
{
    start(0);
    mkdomain("--version 4 --disks 1 --data-mib 0");
    REQUIRE(t_redis_kill9(&S.redis) == 0);
    CHECK(t_poll(healthz_503, NULL, 5000));
    t_resp h = call("GET", "/api/jobs", NULL, 503);
    check_type(h.json, "error", JSON_STRING);
    t_resp_free(&h);
    h = call("GET", "/api/status", NULL, 503);
    CHECK_STR(json_string_value(json_object_get(h.json, "redis")), "down");
    t_resp_free(&h);
    h = call("GET", "/metrics", NULL, 200);
    CHECK_CONTAINS(h.body, "volq_redis_up 0\n");
    t_resp_free(&h);
    json_t *doms = get("/api/storagedomains"); /* files only: still served */
    json_decref(doms);
    REQUIRE(t_redis_restart(&S.redis) == 0);
    CHECK(t_poll(healthz_200, NULL, 10000));
    h = call("GET", "/api/jobs", NULL, 200);
    t_resp_free(&h);
    t_stack_stop(&S);
}

static void test_api_scheduler_restart_keeps_jobs(void)
{
    start(0);
    const char *sd = mkdomain("--version 4 --disks 2 --data-mib 0");
    char id[64], path[128];
    t_resp h = amend(sd, disk_by_alias(sd, "vm-001_Disk1"), 202);
    snprintf(id, sizeof id, "%s", job_id(&h));
    t_resp_free(&h);
    CHECK_INT(t_stack_stop_scheduler(&S), 0);
    REQUIRE(t_stack_start_scheduler(&S) == 0);
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    json_t *j = get(path);
    CHECK_STR(json_string_value(json_object_get(j, "state")), "queued");
    json_decref(j);
    h = amend(sd, disk_by_alias(sd, "vm-001_Disk1"), 409); /* the lock survived too */
    t_resp_free(&h);
    t_stack_stop(&S);
}

static void test_api_malformed_requests(void)
{
    start(0);
    t_resp h;
    const char *garbage = "GARBAGE\r\n\r\n";
    REQUIRE(t_req_raw(&S, garbage, strlen(garbage), &h) == 0);
    CHECK_INT(h.status, 400);
    t_resp_free(&h);
    size_t n = 64 * 1024;
    char *huge = malloc(n + 128);
    REQUIRE(huge);
    int k = snprintf(huge, 128, "GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(huge + k, 'a', n);
    memcpy(huge + k + n, "\r\n\r\n", 5);
    REQUIRE(t_req_raw(&S, huge, strlen(huge), &h) == 0);
    CHECK(h.status == 400 || h.status == 413);
    t_resp_free(&h);
    free(huge);
    /* the server is still fine */
    h = call("GET", "/api/status", NULL, 200);
    t_resp_free(&h);
    t_stack_stop(&S);
}

/* An encoded NUL would end a value early (limit=5%00 would read as 5): 400. */
static void test_api_query_nul_400(void)
{
    start(0);
    static const char *const paths[] = {"/api/jobs?limit=5%00", "/api/events?limit=5%00x",
                                        "/api/jobs?state=failed%00"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        t_resp h = call("GET", paths[i], NULL, 400);
        CHECK_CONTAINS(json_string_value(json_object_get(h.json, "error")), "%00");
        t_resp_free(&h);
    }
    t_resp h = call("GET", "/api/jobs?limit=5", NULL, 200);
    t_resp_free(&h);
    t_stack_stop(&S);
}

/* One keep-alive request on fd; the status of its answer (the connection stays). */
static int keepalive_status(int fd)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char buf[2048];
    int status = 0;
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) <= 0) return -1;
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return -1;
    buf[n] = '\0';
    return sscanf(buf, "HTTP/1.1 %d", &status) == 1 ? status : -1;
}

static void test_api_connection_cap(void)
{
    enum { CAP = 256 };
    int fds[CAP + 1];
    start(0);
    for (int i = 0; i < CAP; i++) {
        fds[i] = t_connect(S.port);
        REQUIRE(fds[i] >= 0);
        CHECK_INT(keepalive_status(fds[i]), 200);
    }
    fds[CAP] = t_connect(S.port);
    REQUIRE(fds[CAP] >= 0);
    CHECK_INT(keepalive_status(fds[CAP]), 503);
    for (int i = 0; i <= CAP; i++) close(fds[i]);
    CHECK(t_poll(healthz_200, NULL, 5000)); /* room again once they close */
    t_stack_stop(&S);
}

/* ---- end to end with workers ------------------------------------------ */

static int job_ended(void *arg)
{
    json_t *j = get(arg);
    const char *st = json_string_value(json_object_get(j, "state"));
    int done = st && (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled"));
    json_decref(j);
    return done;
}

static const char *first_id(json_t *arr)
{
    return json_string_value(json_object_get(json_array_get(arr, 0), "id"));
}

/* Two refusals J1 then J2; J1 retried by hand fails again, later than J2:
 * newest first by last change, ?limit=1 answers J1, as ?limit=3 begins. */
static void test_api_jobs_limit_1_is_first_of_more(void)
{
    start(T_STACK_WORKERS);
    const char *sd = mkdomain("--version 4 --disks 1 --template --data-mib 0");
    char tmpl[64], j1[64], j2[64], path[128];
    snprintf(tmpl, sizeof tmpl, "%s", disk_by_alias(sd, "template-001"));
    t_resp h = amend(sd, tmpl, 409);
    snprintf(j1, sizeof j1, "%s", json_string_value(json_object_get(h.json, "job_id")));
    t_resp_free(&h);
    h = amend(sd, tmpl, 409);
    snprintf(j2, sizeof j2, "%s", json_string_value(json_object_get(h.json, "job_id")));
    t_resp_free(&h);
    snprintf(path, sizeof path, "/api/jobs/%s/retry", j1);
    h = call("POST", path, NULL, 202);
    t_resp_free(&h);
    snprintf(path, sizeof path, "/api/jobs/%s", j1);
    REQUIRE(t_poll(job_ended, path, 30000));
    json_t *one = get("/api/jobs?state=failed&limit=1"), *three = get("/api/jobs?state=failed&limit=3");
    json_t *all = get("/api/jobs?limit=1");
    CHECK_INT(json_array_size(one), 1);
    CHECK_INT(json_array_size(three), 2);
    CHECK_STR(first_id(one), j1);
    CHECK_STR(first_id(three), j1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(three, 1), "id")), j2);
    CHECK_STR(first_id(all), j1);
    check_newest_first(three);
    json_decref(one);
    json_decref(three);
    json_decref(all);
    t_stack_stop(&S);
}

static void test_api_e2e_amend_runs(void)
{
    start(T_STACK_WORKERS);
    const char *sd = mkdomain("--version 4 --disks 1 --chain 3 --data-mib 1");
    char disk[64], path[128];
    snprintf(disk, sizeof disk, "%s", disk_by_alias(sd, "vm-001_Disk1"));
    t_resp h = amend(sd, disk, 202);
    snprintf(path, sizeof path, "/api/jobs/%s", job_id(&h));
    t_resp_free(&h);
    REQUIRE(t_poll(job_ended, path, 60000));
    json_t *j = get(path);
    CHECK_STR(json_string_value(json_object_get(j, "state")), "succeeded");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "progress"), "done")), 3);
    json_decref(j);
    snprintf(path, sizeof path, "/api/disks/%s", disk);
    json_t *d = get(path);
    CHECK_STR(json_string_value(json_object_get(d, "qcow_version")), "qcow2_v3");
    CHECK(json_is_null(json_object_get(d, "locked_by")));
    json_decref(d);
    json_t *ev = get("/api/events");
    CHECK_INT(json_array_size(ev), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(ev, 0), "message")),
              "Started to amend vm-001_Disk1");
    CHECK_STR(json_string_value(json_object_get(json_array_get(ev, 1), "message")),
              "vm-001_Disk1 has been amended successfully.");
    json_decref(ev);
    t_stack_stop(&S);
}

T_MAIN(T(test_api_domains_list), T(test_api_cross_site_changes_refused), T(test_api_disks_shape_and_one_disk),
       T(test_api_disk_in_two_domains_is_400), T(test_api_unknown_ids_404_malformed_400),
       T(test_api_405_names_allowed_methods), T(test_api_amend_accepted_and_disk_locked),
       T(test_api_amend_bad_bodies_400), T(test_api_amend_refusals_409_recorded),
       T(test_api_amend_refused_when_gen_bump_would_not_fit),
       T(test_api_amend_on_v3_domain_refused), T(test_api_oversized_body_413),
       T(test_api_token_required_for_changes), T(test_api_idempotency_key),
       T(test_api_create_volume_new_and_existing_disk), T(test_api_create_volume_bad_input_400),
       T(test_api_upgrade_skips_with_reasons), T(test_api_upgrade_to_v4),
       T(test_api_upgrade_older_than_v3_refused), T(test_api_upgrade_idempotency_key),
       T(test_api_idempotency_key_single_vs_bulk),
       T(test_api_upgrade_in_runs), T(test_api_upgrade_fails_midway),
       T(test_api_redis_refusing_writes_stays_up),
       T(test_api_jobs_list_cancel_retry), T(test_api_jobs_limit_1_is_first_of_more), T(test_api_events_since_and_shape),
       T(test_api_events_long_poll),
       T(test_api_events_waiter_answered_on_stop),
       T(test_api_events_bad_ids_400), T(test_api_events_since_time_and_limit), T(test_api_status_metrics_healthz_index),
       T(test_api_redis_down_answers_503_then_recovers), T(test_api_scheduler_restart_keeps_jobs),
       T(test_api_malformed_requests), T(test_api_query_nul_400), T(test_api_connection_cap), T(test_api_e2e_amend_runs))
