/* The create-volume job end to end (real stack): new disks on V3/V4/V5, raw
 * disks, snapshots, thin disks, every refusal leaving the domain as it was,
 * a crash in the middle, and an amend of a created disk after --to-v4. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/stack.h"
#include "t.h"
#include "volq/uuid.h"

static t_stack S;

static void start(const char *mkargs)
{
    REQUIRE(t_stack_start(&S, T_STACK_WORKERS) == 0);
    REQUIRE(t_stack_mkdomain(&S, mkargs));
}

static json_t *req(const char *method, const char *path, const char *body, int want)
{
    t_resp h;
    REQUIRE(t_req(&S, method, path, body, NULL, &h) == 0);
    if (h.status != want)
        T_FAIL_("%s %s: status %d, expected %d; body %s", method, path, h.status, want, h.body);
    json_t *v = json_incref(h.json);
    t_resp_free(&h);
    return v;
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int job_done(void *arg)
{
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s", (const char *)arg);
    t_resp h;
    int ended = 0;
    if (t_req(&S, "GET", path, NULL, NULL, &h) == 0 && h.json) {
        const char *st = str(h.json, "state");
        ended = st && (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled"));
    }
    t_resp_free(&h);
    return ended;
}

/* Waits for the job to end and returns it (new reference). */
static json_t *wait_job(const char *id)
{
    REQUIRE(t_poll(job_done, (void *)id, 60000));
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    return req("GET", path, NULL, 200);
}

static char *slurp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *slurp(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = calloc(1, cap);
    n = fread(buf, 1, cap - 1, p);
    buf[n] = '\0';
    pclose(p);
    return buf;
}

static void vol_path(char *out, size_t sz, const char *img, const char *vol, const char *suffix)
{
    snprintf(out, sz, "%s/%s/images/%s/%s%s", S.domains, S.sd, img, vol, suffix);
}

/* qemu-img info of a volume (new reference), run in its folder so a bare backing name resolves. */
static json_t *qinfo(const char *img, const char *vol)
{
    char *out = slurp("cd %s/%s/images/%s && qemu-img info -U --output=json %s", S.domains, S.sd,
                      img, vol);
    json_t *v = json_loads(out, 0, NULL);
    free(out);
    REQUIRE(v);
    return v;
}

static char *meta(const char *img, const char *vol)
{
    char p[1024];
    vol_path(p, sizeof p, img, vol, ".meta");
    return slurp("cat %s", p);
}

/* A fingerprint of every file of the domain: names, sizes, mtimes and hashes. */
static char *domain_state(void)
{
    return slurp("cd %s && find . -printf '%%p %%s %%T@ %%i\\n' | sort && find . -type f | sort | "
                 "xargs sha1sum", S.domains);
}

static json_t *create(const char *path, const char *body, int want)
{
    char full[256];
    snprintf(full, sizeof full, "/api/storagedomains/%s%s", S.sd, path);
    return req("POST", full, body, want);
}

/* A new disk: 202 with volume_id and disk_id; waits until it succeeded. */
static json_t *create_ok(const char *path, const char *body)
{
    json_t *j = create(path, body, 202);
    REQUIRE(j && vq_uuid_valid(str(j, "volume_id")) && vq_uuid_valid(str(j, "disk_id")));
    json_t *end = wait_job(str(j, "id"));
    CHECK_STR(str(end, "state"), "succeeded");
    CHECK_STR(str(end, "volume_id"), str(j, "volume_id"));
    json_decref(j);
    return end;
}

static void check_new_volume(const json_t *job, const char *fmt, const char *compat,
                             long long size)
{
    const char *img = str(job, "disk_id"), *vol = str(job, "volume_id");
    json_t *qi = qinfo(img, vol);
    CHECK_STR(str(qi, "format"), fmt);
    CHECK_INT(json_integer_value(json_object_get(qi, "virtual-size")), size);
    if (compat)
        CHECK_STR(json_string_value(json_object_get(
                      json_object_get(json_object_get(qi, "format-specific"), "data"), "compat")),
                  compat);
    json_decref(qi);
    char p[1024];
    struct stat st;
    vol_path(p, sizeof p, img, vol, "");
    REQUIRE(stat(p, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0660);
    vol_path(p, sizeof p, img, vol, ".lease");
    REQUIRE(stat(p, &st) == 0);
    CHECK_INT(st.st_size, 0);
    char *m = meta(img, vol);
    CHECK_CONTAINS(m, "LEGALITY=LEGAL\n");
    CHECK_CONTAINS(m, "VOLTYPE=LEAF\n");
    CHECK_CONTAINS(m, "GEN=0\n");
    CHECK(strstr(m, "EOF\n") && strstr(m, "EOF\n")[4] == '\0');
    free(m);
}

static void test_create_new_disk_v4_is_compat_1_1(void)
{
    start("--version 4 --disks 1");
    json_t *j = create_ok("/disks/volumes", "{\"size\":1048576,\"format\":\"cow\",\"alias\":\"db-data\"}");
    check_new_volume(j, "qcow2", "1.1", 1048576);
    char *m = meta(str(j, "disk_id"), str(j, "volume_id"));
    CHECK_CONTAINS(m, "SIZE=2048\n");
    CHECK_CONTAINS(m, "MTIME=0\n");
    CHECK_CONTAINS(m, "FORMAT=COW\n");
    CHECK_CONTAINS(m, "PUUID=" VQ_UUID_BLANK "\n");
    CHECK_CONTAINS(m, "\"DiskAlias\":\"db-data\"");
    CHECK(!strstr(m, "CAP="));
    free(m);
    /* The success event, exactly. */
    json_t *ev = req("GET", "/api/events", NULL, 200);
    char want[256];
    snprintf(want, sizeof want, "Volume %s of disk db-data has been created successfully.",
             str(j, "volume_id"));
    size_t i;
    json_t *e;
    int found = 0;
    json_array_foreach(ev, i, e) found += !strcmp(str(e, "message"), want) &&
                                          !strcmp(str(e, "type"), "VOLQ_CREATE_VOLUME_SUCCESS");
    CHECK_INT(found, 1);
    json_decref(ev);
    json_decref(j);
    t_stack_stop(&S);
}

static void test_create_new_disk_v3_is_compat_0_10_and_raw_is_sparse(void)
{
    start("--version 3 --disks 1");
    json_t *j = create_ok("/disks/volumes", "{\"size\":2097152}");
    check_new_volume(j, "qcow2", "0.10", 2097152);
    json_decref(j);
    j = create_ok("/disks/volumes", "{\"size\":67108864,\"format\":\"raw\",\"alias\":\"scratch\"}");
    check_new_volume(j, "raw", NULL, 67108864);
    char p[1024];
    struct stat st;
    vol_path(p, sizeof p, str(j, "disk_id"), str(j, "volume_id"), "");
    REQUIRE(stat(p, &st) == 0);
    CHECK(st.st_blocks * 512 < 67108864 / 2); /* sparse */
    char *m = meta(str(j, "disk_id"), str(j, "volume_id"));
    CHECK_CONTAINS(m, "FORMAT=RAW\n");
    free(m);
    json_decref(j);
    t_stack_stop(&S);
}

static void test_create_v5_writes_cap_and_seq(void)
{
    start("--version 5 --disks 1");
    json_t *j = create_ok("/disks/volumes", "{\"size\":1048576}");
    check_new_volume(j, "qcow2", "1.1", 1048576);
    char *m = meta(str(j, "disk_id"), str(j, "volume_id"));
    CHECK_CONTAINS(m, "CAP=1048576\n");
    CHECK_CONTAINS(m, "SEQ=0\n");
    CHECK(!strstr(m, "SIZE="));
    CHECK(!strstr(m, "MTIME="));
    free(m);
    json_decref(j);
    t_stack_stop(&S);
}

/* The first disk of the domain that is not a template (borrowed static). */
static const json_t *first_disk(json_t *arr, int template)
{
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d)
        if (json_is_true(json_object_get(d, "template")) == template) return d;
    return NULL;
}

static json_t *disks(void)
{
    char path[128];
    snprintf(path, sizeof path, "/api/storagedomains/%s/disks", S.sd);
    return req("GET", path, NULL, 200);
}

static void test_create_snapshot_on_leaf(void)
{
    start("--version 4 --disks 1 --chain 2 --size-mib 64");
    json_t *arr = disks();
    const json_t *d = first_disk(arr, 0);
    REQUIRE(d);
    const char *img = str(d, "id"), *leaf = str(d, "image_id");
    char path[128];
    snprintf(path, sizeof path, "/disks/%s/volumes", img);
    json_t *j = create_ok(path, "{}");
    const char *vol = str(j, "volume_id");
    CHECK_STR(str(j, "disk_id"), img);
    json_t *qi = qinfo(img, vol);
    CHECK_STR(str(qi, "backing-filename"), leaf);
    CHECK_STR(str(qi, "backing-filename-format"), "qcow2");
    CHECK_INT(json_integer_value(json_object_get(qi, "virtual-size")), 64 << 20);
    json_decref(qi);
    char *m = meta(img, leaf);
    CHECK_CONTAINS(m, "VOLTYPE=INTERNAL\n");
    free(m);
    m = meta(img, vol);
    char want[64];
    snprintf(want, sizeof want, "PUUID=%s\n", leaf);
    CHECK_CONTAINS(m, want);
    CHECK_CONTAINS(m, str(d, "alias")); /* the disk's alias when none is given */
    free(m);
    /* The API sees the new leaf on top. */
    char dpath[128];
    snprintf(dpath, sizeof dpath, "/api/disks/%s", img);
    json_t *after = req("GET", dpath, NULL, 200);
    CHECK_STR(str(after, "image_id"), vol);
    CHECK_STR(str(after, "status"), "ok");
    json_decref(after);
    json_decref(j);
    json_decref(arr);
    t_stack_stop(&S);
}

/* VDSM's files belong to vdsm:kvm (36:36); what volq makes or rewrites as root stays so. */
static void test_create_keeps_vdsm_ownership(void)
{
    start("--version 4 --disks 1");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "chown -R 36:36 %s/%s", S.domains, S.sd);
    REQUIRE(system(cmd) == 0);
    json_t *arr = disks();
    const json_t *d = first_disk(arr, 0);
    REQUIRE(d);
    char path[128];
    snprintf(path, sizeof path, "/disks/%s/volumes", str(d, "id"));
    json_t *snap = create_ok(path, "{}");
    json_t *fresh = create_ok("/disks/volumes", "{\"size\":1048576}");
    const json_t *jobs[] = {snap, fresh};
    for (size_t k = 0; k < 2; k++) {
        const char *sfx[] = {"", ".meta", ".lease"};
        for (size_t i = 0; i < 3; i++) {
            char p[1024];
            struct stat st;
            vol_path(p, sizeof p, str(jobs[k], "disk_id"), str(jobs[k], "volume_id"), sfx[i]);
            REQUIRE(stat(p, &st) == 0);
            CHECK_INT(st.st_uid, 36);
            CHECK_INT(st.st_gid, 36);
        }
    }
    /* The old leaf's .meta was rewritten (INTERNAL): still vdsm's. */
    char p[1024];
    struct stat st;
    vol_path(p, sizeof p, str(d, "id"), str(d, "image_id"), ".meta");
    REQUIRE(stat(p, &st) == 0);
    CHECK_INT(st.st_uid, 36);
    snprintf(p, sizeof p, "%s/%s/images/%s", S.domains, S.sd, str(fresh, "disk_id"));
    REQUIRE(stat(p, &st) == 0);
    CHECK_INT(st.st_uid, 36);
    json_decref(snap);
    json_decref(fresh);
    json_decref(arr);
    t_stack_stop(&S);
}

static void test_create_thin_disk_hard_links_template(void)
{
    start("--version 4 --disks 1 --template");
    json_t *arr = disks();
    const json_t *t = first_disk(arr, 1);
    REQUIRE(t);
    const char *timg = str(t, "id"), *tvol = str(t, "image_id");
    char body[256];
    snprintf(body, sizeof body, "{\"parent\":\"%s\",\"alias\":\"thin-1\"}", tvol);
    json_t *j = create_ok("/disks/volumes", body);
    const char *img = str(j, "disk_id");
    CHECK(strcmp(img, timg) != 0);
    char a[1024], b[1024];
    struct stat sa, sb;
    for (const char *suffix = "", *const *sx = (const char *const[]){"", ".meta", ".lease", NULL};
         (suffix = *sx); sx++) {
        vol_path(a, sizeof a, timg, tvol, suffix);
        vol_path(b, sizeof b, img, tvol, suffix);
        REQUIRE(stat(a, &sa) == 0 && stat(b, &sb) == 0);
        CHECK_INT(sa.st_ino, sb.st_ino);
    }
    json_t *qi = qinfo(img, str(j, "volume_id"));
    CHECK_STR(str(qi, "backing-filename"), tvol);
    json_decref(qi);
    char dpath[128];
    snprintf(dpath, sizeof dpath, "/api/disks/%s", img);
    json_t *disk = req("GET", dpath, NULL, 200);
    json_t *vols = json_object_get(disk, "volumes");
    CHECK_INT(json_array_size(vols), 2);
    CHECK_STR(str(json_array_get(vols, 1), "voltype"), "SHARED");
    CHECK_STR(str(disk, "alias"), "thin-1");
    CHECK(json_is_false(json_object_get(disk, "template")));
    json_decref(disk);
    json_decref(j);
    json_decref(arr);
    t_stack_stop(&S);
}

/* Each refusal: the answer, and not one byte of the domain changed. */
static void refused(const char *path, const char *body, int want, const char *reason)
{
    char *before = domain_state();
    json_t *r = create(path, body, want);
    CHECK(r != NULL);
    char *text = r ? json_dumps(r, 0) : NULL;
    CHECK_CONTAINS(text, reason);
    free(text);
    json_decref(r);
    char *after = domain_state();
    CHECK_STR(after, before);
    free(before);
    free(after);
}

static void test_create_refusals_leave_domain_identical(void)
{
    start("--version 4 --disks 1 --chain 2 --template");
    json_t *arr = disks();
    const json_t *d = first_disk(arr, 0), *t = first_disk(arr, 1);
    REQUIRE(d && t);
    char path[128], body[256];
    snprintf(path, sizeof path, "/disks/%s/volumes", str(d, "id"));
    refused("/disks/volumes", "{\"size\":1000}", 400, "multiple of 512");
    refused("/disks/volumes", "{\"size\":0}", 400, "multiple of 512");
    refused("/disks/volumes", "{\"size\":1048576,\"format\":\"qcow\"}", 400, "format");
    refused("/disks/volumes", "{\"format\":\"cow\"}", 400, "size");
    refused("/disks/volumes", "{\"size\":2251799813685760}", 400, "2 PiB"); /* 2 PiB + 512 */
    refused("/disks/volumes", "{\"size\":1048576,\"alias\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", 400, "alias");
    refused(path, "{\"format\":\"raw\"}", 409, "raw");
    refused(path, "{\"size\":512}", 409, "below the parent");
    json_t *vols = json_object_get(first_disk(arr, 0), "volumes");
    const char *base = str(json_array_get(vols, json_array_size(vols) - 1), "id");
    snprintf(body, sizeof body, "{\"parent\":\"%s\"}", base);
    refused(path, body, 409, "not the leaf");
    snprintf(body, sizeof body, "{\"parent\":\"%s\"}", "0bd4e3a0-3a43-4d6c-9d54-1b2a3c4d5e6f");
    refused(path, body, 409, "not found");
    refused("/disks/volumes", body, 409, "not found");
    /* A refusal is recorded as a failed job with the failure event. */
    json_t *failed = req("GET", "/api/jobs?state=failed", NULL, 200);
    CHECK_INT(json_array_size(failed), 5); /* the five 409s above */
    json_decref(failed);
    json_decref(arr);
    t_stack_stop(&S);
}

/* A raw volume larger than the file system allows: qemu-img says so, and the
 * job fails at its first attempt (no retry helps), leaving nothing behind. */
static void test_create_raw_too_large_fails_without_retry(void)
{
    start("--version 4 --disks 1");
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/probe.raw", S.domains);
    char *out = slurp("qemu-img create -q -f raw %s 1125899906842624 2>&1; rm -f %s", probe, probe);
    int fits = strstr(out, "too large") == NULL;
    free(out);
    if (fits) { /* tmpfs holds 1 PiB sparse files: nothing to see here */
        printf("# the test folder's file system holds a 1 PiB file: nothing to refuse\n");
        t_stack_stop(&S);
        return;
    }
    /* The image folder made for it goes: its parent's mtime may change. */
    char *before = slurp("cd %s && find . | sort", S.domains);
    json_t *j = create("/disks/volumes", "{\"size\":1125899906842624,\"format\":\"raw\"}", 202);
    REQUIRE(j);
    json_t *end = wait_job(str(j, "id"));
    CHECK_STR(str(end, "state"), "failed");
    CHECK_INT(json_integer_value(json_object_get(end, "attempts")), 1);
    CHECK_CONTAINS(str(end, "reason"), "too large");
    char *after = slurp("cd %s && find . | sort", S.domains);
    CHECK_STR(after, before);
    free(before);
    free(after);
    json_decref(end);
    json_decref(j);
    t_stack_stop(&S);
}

/* The stack's workers will run qemu-img through a wrapper (body: its shell
 * lines), with one more setting when extra is given. */
static void use_wrapper(const char *body, const char *extra)
{
    FILE *w = fopen("slow-qemu-img", "w");
    REQUIRE(w);
    fprintf(w, "#!/bin/sh\n%s", body);
    fclose(w);
    chmod("slow-qemu-img", 0755);
    static char env_qemu[1200];
    static const char *env[3];
    snprintf(env_qemu, sizeof env_qemu, "VOLQ_QEMU_IMG=%s/slow-qemu-img", t_dir());
    env[0] = env_qemu;
    env[1] = extra;
    env[2] = NULL;
    S.env = env;
}

/* SIGKILL to the worker process running the job at jpath; the job as read
 * then (new reference). */
static json_t *kill_its_worker(const char *jpath)
{
    json_t *run = req("GET", jpath, NULL, 200);
    const char *wk = str(run, "worker");
    REQUIRE(wk && strchr(wk, ':'));
    CHECK_INT(kill(atoi(strrchr(wk, ':') + 1), SIGKILL), 0);
    return run;
}

/* The stack, its workers' qemu-img behind a wrapper (use_wrapper), a domain
 * (mkargs) and a snapshot job on its first disk: the job as accepted (new
 * reference); *arr the disks (new reference), *d the first. */
static json_t *snapshot_job(const char *wrapper, const char *extra, const char *mkargs,
                            json_t **arr, const json_t **d)
{
    use_wrapper(wrapper, extra);
    start(mkargs);
    *arr = disks();
    *d = first_disk(*arr, 0);
    REQUIRE(*d);
    char path[128];
    snprintf(path, sizeof path, "/disks/%s/volumes", str(*d, "id"));
    json_t *j = create(path, "{}", 202);
    REQUIRE(j);
    return j;
}

/* The end of a snapshot_job() case: its new volume LEGAL; frees all, stops. */
static void end_legal(json_t *end, json_t *j, json_t *arr, const json_t *d)
{
    char *m = meta(str(d, "id"), str(j, "volume_id"));
    CHECK_CONTAINS(m, "LEGALITY=LEGAL\n");
    free(m);
    json_decref(end);
    json_decref(j);
    json_decref(arr);
    t_stack_stop(&S);
}

static int path_exists(void *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_create_crash_mid_create_completes_cleanly(void)
{
    json_t *arr;
    const json_t *d;
    json_t *j = snapshot_job("sleep 1\nexec /usr/bin/qemu-img \"$@\"\n", NULL,
                             "--version 4 --disks 1 --chain 1", &arr, &d);
    char jpath[128];
    snprintf(jpath, sizeof jpath, "/api/jobs/%s", str(j, "id"));
    /* Wait until the .meta of the new volume exists (ILLEGAL), then kill the worker. */
    char mp[1024];
    vol_path(mp, sizeof mp, str(d, "id"), str(j, "volume_id"), ".meta");
    REQUIRE(t_poll(path_exists, mp, 30000));
    json_t *run = kill_its_worker(jpath);
    json_t *end = wait_job(str(j, "id"));
    CHECK_STR(str(end, "state"), "succeeded");
    char *m = meta(str(d, "id"), str(j, "volume_id"));
    CHECK_CONTAINS(m, "LEGALITY=LEGAL\n");
    free(m);
    char dpath[128];
    snprintf(dpath, sizeof dpath, "/api/disks/%s", str(d, "id"));
    json_t *disk = req("GET", dpath, NULL, 200);
    CHECK_STR(str(disk, "status"), "ok");
    CHECK_STR(str(disk, "image_id"), str(j, "volume_id"));
    CHECK_INT(json_array_size(json_object_get(disk, "volumes")), 2);
    json_decref(disk);
    json_decref(end);
    json_decref(run);
    json_decref(j);
    json_decref(arr);
    t_stack_stop(&S);
}

/* A worker killed while its qemu-img create is slow to start: the pool (its
 * children's subreaper) kills that qemu-img before the job goes back, so it
 * cannot make its file over the volume the next attempt makes. */
static void test_create_dead_workers_qemu_img_create_is_stopped(void)
{
    char body[1400], pidf[600], jpath[128];
    snprintf(pidf, sizeof pidf, "%s/first.pid", t_dir());
    snprintf(body, sizeof body, "if [ ! -e %s ]; then echo $$ > %s; sleep 30; fi\n"
             "exec /usr/bin/qemu-img \"$@\"\n", pidf, pidf);
    json_t *arr;
    const json_t *d;
    json_t *j = snapshot_job(body, NULL, "--version 4 --disks 1 --chain 1", &arr, &d);
    REQUIRE(t_poll(path_exists, pidf, 30000));
    char *txt = slurp("cat %s", pidf);
    pid_t first = (pid_t)atoi(txt);
    free(txt);
    REQUIRE(first > 0);
    snprintf(jpath, sizeof jpath, "/api/jobs/%s", str(j, "id"));
    json_decref(kill_its_worker(jpath));
    json_t *end = wait_job(str(j, "id"));
    CHECK_STR(str(end, "state"), "succeeded");
    errno = 0;
    CHECK(kill(first, 0) != 0 && errno == ESRCH); /* killed and reaped */
    end_legal(end, j, arr, d);
}

/* qemu-img create slower than the lease (a large preallocated volume): its
 * ticks renew the lease, so the job is neither requeued nor run twice. */
static void test_create_slow_create_keeps_its_lease(void)
{
    json_t *arr;
    const json_t *d;
    json_t *j = snapshot_job("sleep 3\nexec /usr/bin/qemu-img \"$@\"\n", "VOLQ_LEASE_MS=600",
                             "--version 4 --disks 1 --chain 1", &arr, &d);
    json_t *end = wait_job(str(j, "id"));
    CHECK_STR(str(end, "state"), "succeeded");
    CHECK_INT(json_integer_value(json_object_get(end, "attempts")), 1);
    CHECK_INT(json_array_size(json_object_get(end, "errors")), 0);
    end_legal(end, j, arr, d);
}

/* A failed snapshot job retried by hand after another snapshot was made on
 * its parent: the retry is refused and touches nothing (it would have made a
 * second leaf on that parent). */
static void test_create_retry_after_parent_taken_is_refused(void)
{
    json_t *arr;
    const json_t *d;
    json_t *a = snapshot_job("exit 1\n", "VOLQ_MAX_ATTEMPTS=1", "--version 4 --disks 1 --chain 2",
                             &arr, &d);
    const char *img = str(d, "id"), *leaf = str(d, "image_id");
    char path[128], rpath[128];
    snprintf(path, sizeof path, "/disks/%s/volumes", img);
    json_t *a_end = wait_job(str(a, "id"));
    CHECK_STR(str(a_end, "state"), "failed");
    /* qemu-img works again: another snapshot takes the leaf. */
    FILE *w = fopen("slow-qemu-img", "w");
    REQUIRE(w);
    fprintf(w, "#!/bin/sh\nexec /usr/bin/qemu-img \"$@\"\n");
    fclose(w);
    json_t *b = create_ok(path, "{}");
    const char *taken = str(b, "volume_id");
    char *before = domain_state();
    snprintf(rpath, sizeof rpath, "/api/jobs/%s/retry", str(a, "id"));
    json_decref(req("POST", rpath, NULL, 202));
    json_t *again = wait_job(str(a, "id"));
    CHECK_STR(str(again, "state"), "failed");
    char want[256];
    snprintf(want, sizeof want, "parent volume %s is no longer the leaf of disk %s: volume %s "
             "was made on it", leaf, img, taken);
    CHECK_CONTAINS(str(again, "reason"), want);
    char *after = domain_state();
    CHECK_STR(after, before);
    free(before);
    free(after);
    char dpath[128];
    snprintf(dpath, sizeof dpath, "/api/disks/%s", img);
    json_t *disk = req("GET", dpath, NULL, 200);
    CHECK_STR(str(disk, "status"), "ok");
    CHECK_STR(str(disk, "image_id"), taken);
    json_decref(disk);
    json_decref(again);
    json_decref(b);
    json_decref(a_end);
    json_decref(a);
    json_decref(arr);
    t_stack_stop(&S);
}

/* arg: strings separated by '|'; 1 when the workers' log holds one. */
static int worker_log_says(void *arg)
{
    char *log = slurp("cat worker.log"), want[256];
    snprintf(want, sizeof want, "%s", (const char *)arg);
    int found = 0;
    for (char *w = strtok(want, "|"); w && log && !found; w = strtok(NULL, "|"))
        found = strstr(log, w) != NULL;
    free(log);
    return found;
}

/* The fence before the parent's .meta is written meets Redis down (stopped
 * while qemu-img create ran, the job taken over just before: another token):
 * the worker waits for Redis and asks again instead of writing unconfirmed,
 * learns it was fenced, and writes nothing more. */
static void test_create_fence_waits_for_redis_to_answer(void)
{
    json_t *arr;
    const json_t *d;
    json_t *j = snapshot_job("sleep 2\nexec /usr/bin/qemu-img \"$@\"\n", "VOLQ_LEASE_MS=30000",
                             "--version 4 --disks 1 --chain 1", &arr, &d);
    const char *img = str(d, "id"), *leaf = str(d, "image_id");
    char mp[1024];
    /* In qemu-img create: its .meta (ILLEGAL) is written. */
    vol_path(mp, sizeof mp, img, str(j, "volume_id"), ".meta");
    REQUIRE(t_poll(path_exists, mp, 30000));
    char jpath[128], waits[256];
    snprintf(jpath, sizeof jpath, "/api/jobs/%s", str(j, "id"));
    json_t *run = req("GET", jpath, NULL, 200);
    /* The running worker's wait for Redis, or (unconfirmed) its going on. */
    snprintf(waits, sizeof waits, "worker %s: redis|lease renewal failed", str(run, "worker"));
    json_decref(run);
    /* Taken over: another worker's attempt (its token and its name, so that
     * this worker's put-back of its in-flight list leaves the job alone). */
    redisReply *r = t_redis_cmd(&S.redis, "HSET {volq}:job:%s tk 999999 w other-host:1",
                                str(j, "id"));
    REQUIRE(r);
    freeReplyObject(r);
    REQUIRE(t_redis_stop(&S.redis) == 0);
    REQUIRE(t_poll(worker_log_says, waits, 30000)); /* qemu-img create ended (2 s) */
    *strchr(waits, '|') = '\0';
    REQUIRE(worker_log_says(waits));
    REQUIRE(t_redis_restart(&S.redis) == 0);
    REQUIRE(t_poll(worker_log_says, (void *)"fenced", 30000));
    char *pm = meta(img, leaf);
    CHECK_CONTAINS(pm, "VOLTYPE=LEAF\n");
    free(pm);
    char *vm = meta(img, str(j, "volume_id"));
    CHECK_CONTAINS(vm, "LEGALITY=ILLEGAL\n");
    free(vm);
    json_decref(j);
    json_decref(arr);
    t_stack_stop(&S);
}

/* The names in a disk's folder, sorted, one per line (new string). */
static char *folder_names(const char *img)
{
    return slurp("ls -1a %s/%s/images/%s 2>&1 | sort", S.domains, S.sd, img);
}

static int file_exists(const char *img, const char *vol, const char *suffix)
{
    char p[1024];
    struct stat st;
    vol_path(p, sizeof p, img, vol, suffix);
    return stat(p, &st) == 0;
}

/* VOLQ_MAX_CRASHES=1: the worker dies right after qemu-img made the
 * snapshot's volume (its .meta still ILLEGAL); the job's clean-up attempt
 * removes the volume, its .meta and .lease, puts the parent back to LEAF, and
 * the job fails saying so: the disk is as it was before the job. */
/* end: a job failed by its clean-up after 5 worker deaths, which removed vol. */
static void check_cleaned_up(const json_t *end, const char *vol)
{
    CHECK_STR(str(end, "state"), "failed");
    char want[256];
    snprintf(want, sizeof want,
             "worker died 5 times during this job; what it left of volume %s was removed", vol);
    CHECK_STR(str(end, "reason"), want);
}

/* Writes img/vol.meta: the text of src with the keys of set ("KEY=" prefixes
 * and their new lines, NULL-ended pairs) replaced. */
static void write_meta_from(const char *img, const char *vol, const char *src,
                            const char *const *set)
{
    char p[1024];
    vol_path(p, sizeof p, img, vol, ".meta");
    char *copy = strdup(src);
    REQUIRE(copy);
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        const char *out = line;
        for (size_t i = 0; set[i]; i += 2)
            if (!strncmp(line, set[i], strlen(set[i]))) out = set[i + 1];
        fprintf(f, "%s\n", out);
    }
    fclose(f);
    free(copy);
}

/* A template folder holding a .meta of another image beside the template's
 * own volume: a thin disk asked on it is refused (the scheduler used to
 * crash on it). */
static void test_create_thin_on_a_stray_meta_is_refused(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    REQUIRE(t_stack_mkdomain(&S, "--version 4 --disks 1 --template"));
    json_t *arr = disks();
    const json_t *t = first_disk(arr, 1);
    REQUIRE(t);
    const char *stray = "6a1b2c3d-0000-4000-8000-00000000057a";
    char *tm = meta(str(t, "id"), str(t, "image_id"));
    const char *other[] = {"IMAGE=", "IMAGE=6a1b2c3d-0000-4000-8000-0000000000aa", "VOLTYPE=",
                           "VOLTYPE=INTERNAL", NULL};
    write_meta_from(str(t, "id"), stray, tm, other);
    free(tm);
    char body[128];
    snprintf(body, sizeof body, "{\"parent\":\"%s\"}", stray);
    refused("/disks/volumes", body, 409, "is not a volume of template disk");
    t_resp h;
    REQUIRE(t_req(&S, "GET", "/healthz", NULL, NULL, &h) == 0);
    CHECK_INT(h.status, 200);
    t_resp_free(&h);
    json_decref(arr);
    t_stack_stop(&S);
}

/* The clean-up of a snapshot job whose parent another volume took since (a
 * job retried by hand, then its workers died): its own half-made volume goes,
 * the parent stays INTERNAL under the other volume (not even rewritten). */
static void test_create_cleanup_leaves_a_taken_parent(void)
{
    REQUIRE(t_stack_start(&S, 0) == 0);
    REQUIRE(t_stack_mkdomain(&S, "--version 4 --disks 1 --chain 2"));
    json_t *arr = disks();
    const json_t *d = first_disk(arr, 0);
    const char *img = str(d, "id"), *leaf = str(d, "image_id");
    char path[128];
    snprintf(path, sizeof path, "/disks/%s/volumes", img);
    json_t *a = create(path, "{}", 202);
    REQUIRE(a);
    redisReply *r = t_redis_cmd(&S.redis, "HSET {volq}:job:%s cu 1 cr 5", str(a, "id"));
    REQUIRE(r);
    freeReplyObject(r);
    /* Another volume on the parent, and this job's half-made one beside it. */
    const char *other = "6a1b2c3d-0000-4000-8000-0000000c0fee";
    char *pm = meta(img, leaf);
    char puuid[64];
    snprintf(puuid, sizeof puuid, "PUUID=%s", leaf);
    const char *as_child[] = {"PUUID=", puuid, "VOLTYPE=", "VOLTYPE=LEAF", NULL};
    write_meta_from(img, other, pm, as_child);
    const char *half[] = {"PUUID=", puuid, "LEGALITY=", "LEGALITY=ILLEGAL", NULL};
    write_meta_from(img, str(a, "volume_id"), pm, half);
    const char *internal[] = {"VOLTYPE=", "VOLTYPE=INTERNAL", NULL};
    write_meta_from(img, leaf, pm, internal);
    free(pm);
    char vp[1024], mp[1024];
    vol_path(vp, sizeof vp, img, str(a, "volume_id"), "");
    FILE *f = fopen(vp, "w");
    REQUIRE(f);
    fputs("not a qcow2 file", f);
    fclose(f);
    vol_path(mp, sizeof mp, img, leaf, ".meta");
    struct stat m0, m1;
    REQUIRE(stat(mp, &m0) == 0);
    REQUIRE(t_stack_start_workers(&S, 1) == 0);
    json_t *end = wait_job(str(a, "id"));
    check_cleaned_up(end, str(a, "volume_id"));
    CHECK(!file_exists(img, str(a, "volume_id"), ""));
    CHECK(!file_exists(img, str(a, "volume_id"), ".meta"));
    CHECK(file_exists(img, other, ".meta"));
    REQUIRE(stat(mp, &m1) == 0);
    CHECK_INT(m1.st_ino, m0.st_ino);
    char *after = meta(img, leaf);
    CHECK_CONTAINS(after, "VOLTYPE=INTERNAL\n");
    free(after);
    json_decref(end);
    json_decref(a);
    json_decref(arr);
    t_stack_stop(&S);
}

static void test_create_crash_cap_removes_half_made_volume(void)
{
    /* slow after its work: the worker is killed once the volume exists */
    use_wrapper("/usr/bin/qemu-img \"$@\"\nrc=$?\nsleep 1\nexit $rc\n", "VOLQ_MAX_CRASHES=1");
    start("--version 4 --disks 1 --chain 1");
    json_t *arr = disks();
    const json_t *d = first_disk(arr, 0);
    const char *img = str(d, "id");
    const char *leaf = str(d, "image_id");
    char *before = folder_names(img);
    char *leaf_meta = meta(img, leaf);
    CHECK_CONTAINS(leaf_meta, "VOLTYPE=LEAF\n");
    char path[128], jpath[128];
    snprintf(path, sizeof path, "/disks/%s/volumes", img);
    json_t *j = create(path, "{}", 202);
    REQUIRE(j);
    const char *vol = str(j, "volume_id");
    snprintf(jpath, sizeof jpath, "/api/jobs/%s", str(j, "id"));
    int64_t deadline = time(NULL) + 30;
    while (!file_exists(img, vol, "") && time(NULL) < deadline) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    REQUIRE(file_exists(img, vol, ""));
    json_t *run = kill_its_worker(jpath);
    json_t *end = wait_job(str(j, "id"));
    CHECK_STR(str(end, "state"), "failed");
    char want[256];
    snprintf(want, sizeof want,
             "worker died 1 times during this job; what it left of volume %s was removed", vol);
    CHECK_STR(str(end, "reason"), want);
    CHECK(!file_exists(img, vol, ""));
    CHECK(!file_exists(img, vol, ".meta"));
    CHECK(!file_exists(img, vol, ".lease"));
    char *after = folder_names(img);
    CHECK_STR(after, before);
    char *m = meta(img, leaf);
    CHECK_CONTAINS(m, "VOLTYPE=LEAF\n");
    CHECK_CONTAINS(m, "LEGALITY=LEGAL\n");
    char dpath[128];
    snprintf(dpath, sizeof dpath, "/api/disks/%s", img);
    json_t *disk = req("GET", dpath, NULL, 200);
    CHECK_STR(str(disk, "status"), "ok");
    CHECK_STR(str(disk, "image_id"), leaf);
    CHECK_INT(json_array_size(json_object_get(disk, "volumes")), 1);
    /* The lock went with the job: a new snapshot is taken and succeeds. */
    json_t *again = create(path, "{}", 202);
    REQUIRE(again);
    json_t *end2 = wait_job(str(again, "id"));
    CHECK_STR(str(end2, "state"), "succeeded");
    json_decref(end2);
    json_decref(again);
    json_decref(disk);
    free(m);
    free(after);
    free(leaf_meta);
    free(before);
    json_decref(end);
    json_decref(run);
    json_decref(j);
    json_decref(arr);
    t_stack_stop(&S);
}

/* Writes the volume files of job j's new disk by hand, as a dead attempt
 * would have left them: the volume (a few bytes), its .meta (a copy of
 * another volume's, IMAGE and LEGALITY set), and two temp files. */
static void stage_volume(const json_t *j, const char *meta_from_img, const char *meta_from_vol,
                         const char *legality)
{
    const char *img = str(j, "disk_id"), *vol = str(j, "volume_id");
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/images/%s", S.domains, S.sd, img);
    REQUIRE(mkdir(p, 0755) == 0);
    vol_path(p, sizeof p, img, vol, "");
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fputs("not a qcow2 file", f);
    fclose(f);
    char *m = meta(meta_from_img, meta_from_vol);
    vol_path(p, sizeof p, img, vol, ".meta");
    f = fopen(p, "w");
    REQUIRE(f);
    for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "IMAGE=", 6)) fprintf(f, "IMAGE=%s\n", img);
        else if (!strncmp(line, "LEGALITY=", 9)) fprintf(f, "LEGALITY=%s\n", legality);
        else fprintf(f, "%s\n", line);
    }
    fclose(f);
    free(m);
    const char *temps[] = {".meta.tmp.4242", ".lease.tmp.4243"};
    for (size_t i = 0; i < 2; i++) {
        vol_path(p, sizeof p, img, vol, temps[i]);
        f = fopen(p, "w");
        REQUIRE(f);
        fclose(f);
    }
}

/* The clean-up attempt, staged without a kill (jobs accepted with no worker
 * running, marked cu in Redis, files left by hand): a volume found LEGAL was
 * finished and is kept (the job succeeds, nothing spawned); one found ILLEGAL
 * is removed with its temp files and the new disk's folder, but only once no
 * qemu process holds it; a job that never made its folder fails saying
 * nothing was left. */
static int job_state_is(const char *id, const char *state)
{
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    t_resp h;
    int is = t_req(&S, "GET", path, NULL, NULL, &h) == 0 && h.json &&
             str(h.json, "state") && !strcmp(str(h.json, "state"), state);
    t_resp_free(&h);
    return is;
}

static int half_retrying(void *arg) { return job_state_is(arg, "retrying"); }

static void test_create_cleanup_keeps_finished_removes_half_made(void)
{
    static const char *env[] = {"VOLQ_BACKOFF_MS=100", "VOLQ_BACKOFF_MAX_MS=200", NULL};
    S.env = env;
    REQUIRE(t_stack_start(&S, 0) == 0);
    REQUIRE(t_stack_mkdomain(&S, "--version 4 --disks 1"));
    json_t *arr = disks();
    const json_t *d = first_disk(arr, 0);
    json_t *done = create("/disks/volumes", "{\"size\":1048576,\"alias\":\"kept\"}", 202);
    json_t *half = create("/disks/volumes", "{\"size\":1048576,\"alias\":\"gone\"}", 202);
    json_t *none = create("/disks/volumes", "{\"size\":1048576,\"alias\":\"never\"}", 202);
    REQUIRE(done && half && none);
    const json_t *js[] = {done, half, none};
    for (size_t i = 0; i < 3; i++) {
        redisReply *r = t_redis_cmd(&S.redis, "HSET {volq}:job:%s cu 1 cr 5", str(js[i], "id"));
        REQUIRE(r);
        freeReplyObject(r);
    }
    stage_volume(done, str(d, "id"), str(d, "image_id"), "LEGAL");
    stage_volume(half, str(d, "id"), str(d, "image_id"), "ILLEGAL");
    redisReply *ma = t_redis_cmd(&S.redis, "HSET {volq}:job:%s ma 1000", str(half, "id"));
    REQUIRE(ma);
    freeReplyObject(ma);
    /* The half-made volume held open as a qemu process holds it (an OFD
     * lock in qemu's range): a qemu-img create of the attempt that died,
     * still running.  Nothing is removed under it: the clean-up retries. */
    char hp[1024];
    vol_path(hp, sizeof hp, str(half, "disk_id"), str(half, "volume_id"), "");
    int lfd = open(hp, O_RDONLY | O_CLOEXEC); /* not inherited by the workers */
    REQUIRE(lfd >= 0);
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    REQUIRE(fcntl(lfd, F_OFD_SETLK, &fl) == 0);
    REQUIRE(t_stack_start_workers(&S, 1) == 0);
    json_t *e1 = wait_job(str(done, "id"));
    REQUIRE(t_poll(half_retrying, (void *)str(half, "id"), 30000));
    CHECK(file_exists(str(half, "disk_id"), str(half, "volume_id"), ""));
    char jp[128];
    snprintf(jp, sizeof jp, "/api/jobs/%s", str(half, "id"));
    json_t *hj = req("GET", jp, NULL, 200);
    const char *line = json_string_value(json_array_get(json_object_get(hj, "errors"), 0));
    CHECK(line && strstr(line, "its clean-up failed: volume ") &&
          strstr(line, "still open in a qemu process") && strstr(line, "may be half-made"));
    json_decref(hj);
    close(lfd);
    json_t *e2 = wait_job(str(half, "id"));
    CHECK_STR(str(e1, "state"), "succeeded");
    check_cleaned_up(e2, str(half, "volume_id"));
    json_t *e3 = wait_job(str(none, "id"));
    CHECK_STR(str(e3, "state"), "failed");
    CHECK_STR(str(e3, "reason"), "worker died 5 times during this job; nothing was left to remove");
    json_decref(e3);
    json_decref(none);
    /* Kept as found (nothing rewrote it), its temp files gone. */
    char *m = slurp("cat %s/%s/images/%s/%s", S.domains, S.sd, str(done, "disk_id"),
                    str(done, "volume_id"));
    CHECK_STR(m, "not a qcow2 file");
    free(m);
    char *names = folder_names(str(done, "disk_id"));
    char want_names[512];
    snprintf(want_names, sizeof want_names, ".\n..\n%s\n%s.meta\n", str(done, "volume_id"),
             str(done, "volume_id"));
    CHECK_STR(names, want_names);
    free(names);
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s/images/%s", S.domains, S.sd, str(half, "disk_id"));
    CHECK(stat(p, &st) != 0);
    t_resp h;
    REQUIRE(t_req(&S, "GET", "/metrics", NULL, NULL, &h) == 0);
    CHECK_CONTAINS(h.body, "volq_qemu_img_runs_total 0\n");
    t_resp_free(&h);
    /* A snapshot no attempt got to: nothing removed, the leaf's .meta not
     * even rewritten (same inode). */
    json_t *sarr = disks();
    const json_t *sd = NULL;
    size_t si;
    json_t *sv;
    json_array_foreach(sarr, si, sv) if (!strcmp(str(sv, "id"), str(d, "id"))) sd = sv;
    REQUIRE(sd);
    char spath[128], mp[1024];
    snprintf(spath, sizeof spath, "/disks/%s/volumes", str(sd, "id"));
    REQUIRE(t_stack_stop_workers(&S) == 0);
    json_t *snap = create(spath, "{}", 202);
    REQUIRE(snap);
    redisReply *r = t_redis_cmd(&S.redis, "HSET {volq}:job:%s cu 1 cr 5", str(snap, "id"));
    REQUIRE(r);
    freeReplyObject(r);
    vol_path(mp, sizeof mp, str(sd, "id"), str(sd, "image_id"), ".meta");
    struct stat m0, m1;
    REQUIRE(stat(mp, &m0) == 0);
    REQUIRE(t_stack_start_workers(&S, 1) == 0);
    json_t *e4 = wait_job(str(snap, "id"));
    CHECK_STR(str(e4, "state"), "failed");
    CHECK_STR(str(e4, "reason"), "worker died 5 times during this job; nothing was left to remove");
    REQUIRE(stat(mp, &m1) == 0);
    CHECK_INT(m1.st_ino, m0.st_ino);
    json_decref(e4);
    json_decref(snap);
    json_decref(sarr);
    json_decref(e1);
    json_decref(e2);
    json_decref(done);
    json_decref(half);
    json_decref(arr);
    t_stack_stop(&S);
}

static void test_create_on_v3_then_upgrade_to_v4_amends_it(void)
{
    start("--version 3 --disks 1");
    json_t *j = create_ok("/disks/volumes", "{\"size\":1048576,\"alias\":\"old-disk\"}");
    check_new_volume(j, "qcow2", "0.10", 1048576);
    char up[128];
    snprintf(up, sizeof up, "/api/storagedomains/%s/upgrade", S.sd);
    json_t *bulk = req("POST", up, "{\"to_v4\":true}", 202);
    REQUIRE(bulk);
    json_t *jobs = json_object_get(bulk, "jobs"), *bj;
    size_t i;
    int mine = 0;
    json_array_foreach(jobs, i, bj) {
        json_t *end = wait_job(str(bj, "id"));
        CHECK_STR(str(end, "state"), "succeeded");
        mine += !strcmp(str(bj, "disk_id"), str(j, "disk_id"));
        json_decref(end);
    }
    CHECK_INT(mine, 1);
    json_t *qi = qinfo(str(j, "disk_id"), str(j, "volume_id"));
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(qi, "format-specific"), "data"), "compat")),
              "1.1");
    json_decref(qi);
    char *m = meta(str(j, "disk_id"), str(j, "volume_id"));
    CHECK_CONTAINS(m, "GEN=1\n");
    free(m);
    json_decref(bulk);
    json_decref(j);
    t_stack_stop(&S);
}

T_MAIN(T(test_create_new_disk_v4_is_compat_1_1),
       T(test_create_new_disk_v3_is_compat_0_10_and_raw_is_sparse),
       T(test_create_v5_writes_cap_and_seq), T(test_create_snapshot_on_leaf),
       T(test_create_keeps_vdsm_ownership),
       T(test_create_thin_disk_hard_links_template),
       T(test_create_refusals_leave_domain_identical),
       T(test_create_raw_too_large_fails_without_retry),
       T(test_create_thin_on_a_stray_meta_is_refused),
       T(test_create_crash_mid_create_completes_cleanly),
       T(test_create_slow_create_keeps_its_lease),
       T(test_create_dead_workers_qemu_img_create_is_stopped),
       T(test_create_retry_after_parent_taken_is_refused),
       T(test_create_cleanup_leaves_a_taken_parent),
       T(test_create_fence_waits_for_redis_to_answer),
       T(test_create_crash_cap_removes_half_made_volume),
       T(test_create_cleanup_keeps_finished_removes_half_made),
       T(test_create_on_v3_then_upgrade_to_v4_amends_it))
