/* The storage layer on real domains: made by scripts/mkdomain.sh (real
 * qemu-img files) and then damaged by hand, one containment case at a time. */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "t.h"
#include "volq/disk.h"
#include "volq/domain.h"
#include "volq/fsutil.h"
#include "volq/meta.h"
#include "volq/qemu.h"

/* ---- fixture ---- */

typedef struct fx {
    char root[1024];
    char sd[VQ_UUID_SIZE];
    vq_domain *d;
} fx;

/* Runs a set-up command; the test stops when it fails. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    REQUIRE(vsnprintf(cmd, sizeof cmd, fmt, ap) < (int)sizeof cmd);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "# command failed (%d): %s\n", rc, cmd);
    REQUIRE(rc == 0);
}

static void open_domain(fx *f)
{
    vq_domain_free(f->d);
    f->d = NULL;
    vq_error e = {0};
    int rc = vq_domain_open(f->root, f->sd, &f->d, &e);
    if (rc) fprintf(stderr, "# %s\n", e.text);
    REQUIRE(rc == 0);
}

/* A domain from scripts/mkdomain.sh with args, opened. */
static void setup(fx *f, const char *args)
{
    const char *src = getenv("VOLQ_SOURCE_DIR");
    REQUIRE(src);
    memset(f, 0, sizeof *f);
    snprintf(f->root, sizeof f->root, "%s/root", t_dir());
    REQUIRE(mkdir(f->root, 0755) == 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/scripts/mkdomain.sh %s --data-mib 0 %s", src, f->root, args);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    REQUIRE(fgets(f->sd, sizeof f->sd, p) != NULL);
    REQUIRE(pclose(p) == 0);
    REQUIRE(vq_uuid_valid(f->sd));
    open_domain(f);
}

static void teardown(fx *f) { vq_domain_free(f->d); }

/* path of images/img/name in the domain */
static const char *ipath(fx *f, const char *img, const char *name)
{
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s/images/%s%s%s", f->root, f->sd, img, name ? "/" : "",
             name ? name : "");
    return b;
}

static vq_disk *load(fx *f, const char *img)
{
    vq_disk *disk = NULL;
    vq_error e = {0};
    int rc = vq_disk_load(f->d, img, &disk, &e);
    if (rc) fprintf(stderr, "# load %s: %s\n", img, e.text);
    REQUIRE(rc == 0 && disk);
    return disk;
}

/* The disk with this alias (every image is loaded to find it). */
static vq_disk *find_disk(fx *f, const char *alias)
{
    char(*ids)[VQ_UUID_SIZE];
    size_t n;
    REQUIRE(vq_domain_images(f->d, &ids, &n, NULL) == 0);
    vq_disk *found = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        vq_disk *disk = load(f, ids[i]);
        if (strcmp(disk->alias, alias) == 0)
            found = disk;
        else
            vq_disk_free(disk);
    }
    free(ids);
    if (!found) fprintf(stderr, "# no disk %s\n", alias);
    REQUIRE(found);
    return found;
}

/* ids of the first disk's image, leaf and the volume below it */
typedef struct chain2 {
    char img[VQ_UUID_SIZE], leaf[VQ_UUID_SIZE], base[VQ_UUID_SIZE];
} chain2;

static void first_disk(fx *f, chain2 *c)
{
    vq_disk *disk = find_disk(f, "vm-001_Disk1");
    REQUIRE(disk->nvols >= 2);
    memcpy(c->img, disk->id, VQ_UUID_SIZE);
    memcpy(c->leaf, disk->vols[0].id, VQ_UUID_SIZE);
    memcpy(c->base, disk->vols[1].id, VQ_UUID_SIZE);
    vq_disk_free(disk);
}

static void put(const char *path, const void *data, size_t len)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, data, len) == (ssize_t)len);
    close(fd);
}

static void put_str(const char *path, const char *s) { put(path, s, strlen(s)); }

/* A new buffer with the file's bytes (NUL-terminated); *len its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    REQUIRE(fp);
    static char tmp[1 << 16];
    size_t n = fread(tmp, 1, sizeof tmp - 1, fp);
    fclose(fp);
    char *b = malloc(n + 1);
    memcpy(b, tmp, n);
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

/* Loads img and checks that it is illegal with a reason holding want. */
static void expect_illegal(fx *f, const char *img, const char *want)
{
    vq_disk *disk = load(f, img);
    CHECK_INT(disk->status, VQ_STATUS_ILLEGAL);
    CHECK_CONTAINS(disk->reason, want);
    CHECK(vq_disk_leaf(disk) == NULL);
    vq_error e = {0};
    CHECK_INT(vq_disk_check_amend(f->d, disk, NULL, &e), VQ_EREFUSED);
    CHECK_STR(e.text, disk->reason);
    json_t *j = vq_disk_json(disk, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "status")), "illegal");
    CHECK_STR(json_string_value(json_object_get(j, "reason")), disk->reason);
    json_decref(j);
    vq_disk_free(disk);
}

static void expect_ok(fx *f, const char *img)
{
    vq_disk *disk = load(f, img);
    CHECK_INT(disk->status, VQ_STATUS_OK);
    CHECK_STR(disk->reason, "");
    vq_disk_free(disk);
}

/* ---- fsutil ---- */

static void test_storage_fs_read_bounds_and_paths(void)
{
    int dfd = open(t_dir(), O_RDONLY | O_DIRECTORY);
    REQUIRE(dfd >= 0);
    sh("mkdir -p a/b && printf 12345678 > a/b/f && ln -s b a/link && mkfifo a/fifo");
    char *buf = NULL;
    size_t len = 0;
    vq_error e = {0};
    CHECK_INT(vq_fs_read(dfd, "a/b/f", 8, &buf, &len, &e), 0);
    CHECK_STR(buf, "12345678");
    CHECK_INT(len, 8);
    free(buf);
    CHECK_INT(vq_fs_read(dfd, "a/b/f", 7, &buf, &len, &e), VQ_EINVAL);
    CHECK_STR(e.text, "a/b/f is larger than 7 bytes");
    vq_error_clear(&e);
    CHECK_INT(vq_fs_read(dfd, "a/link/f", 100, &buf, &len, &e), VQ_EILLEGAL);
    CHECK_STR(e.text, "a/link/f is a symlink");
    vq_error_clear(&e);
    CHECK_INT(vq_fs_read(dfd, "a/../a/b/f", 100, &buf, &len, &e), VQ_EINVAL);
    CHECK_STR(e.text, "a/../a/b/f: bad path component \"..\"");
    vq_error_clear(&e);
    CHECK_INT(vq_fs_read(dfd, "a/fifo", 100, &buf, &len, &e), VQ_EINVAL); /* does not block */
    CHECK_STR(e.text, "a/fifo is not a regular file");
    vq_error_clear(&e);
    CHECK_INT(vq_fs_read(dfd, "a/none", 100, &buf, &len, &e), VQ_ENOENT);
    CHECK_STR(e.text, "a/none does not exist");
    close(dfd);
}

static void test_storage_fs_write_atomic(void)
{
    int dfd = open(t_dir(), O_RDONLY | O_DIRECTORY);
    REQUIRE(dfd >= 0);
    sh("mkdir -p d/target && touch d/target/x && printf old > d/f");
    CHECK_INT(vq_fs_write_atomic(dfd, "d/f", "new\n", 4, 0600, NULL), 0);
    char *now = slurp("d/f", NULL);
    CHECK_STR(now, "new\n");
    free(now);
    struct stat st;
    REQUIRE(stat("d/f", &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    /* rename over a non-empty folder fails: the temp file goes, the folder stays */
    vq_error e = {0};
    CHECK_INT(vq_fs_write_atomic(dfd, "d/target", "x", 1, 0600, &e), VQ_EIO);
    CHECK_CONTAINS(e.text, "cannot rename d/target: ");
    CHECK(access("d/target/x", F_OK) == 0);
    DIR *dir = opendir("d");
    struct dirent *de;
    int n = 0;
    while ((de = readdir(dir)) != NULL) n += de->d_name[0] != '.';
    closedir(dir);
    CHECK_INT(n, 2); /* f and target: no temp file left */
    close(dfd);
}

static ino_t ino_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static char *text_of(const char *path)
{
    return slurp(path, NULL);
}

/* A run: every file rewritten; where names can be swapped the file a rewrite
 * replaces is kept, and written into by a later rewrite only after the
 * folder's sync (before it, a power loss may give the kept file its old name
 * back); a kept file someone holds open, or with another link, is never
 * written into; none is left after the end. */
static void test_storage_fs_run(void)
{
    sh("mkdir r && printf aaaaaaaa > r/g1 && printf b > r/g2 && printf c > r/g3 && printf d > r/g4 && "
       "ln r/g3 h3 && printf x > r/s1 && printf y > r/s2");
    int dfd = open("r", O_RDONLY | O_DIRECTORY);
    REQUIRE(dfd >= 0);
    int swaps = renameat2(dfd, "s1", dfd, "s2", RENAME_EXCHANGE) == 0;
    sh("rm r/s1 r/s2");
    ino_t g1 = ino_of("r/g1"), g2 = ino_of("r/g2"), g3 = ino_of("r/g3");
    vq_fs_run run;
    memset(&run, 0, sizeof run);
    CHECK_INT(vq_fs_run_write(dfd, &run, "g1", "A\n", 2, 0640, NULL), 0);
    CHECK_INT(vq_fs_run_write(dfd, &run, "g2", "B\n", 2, 0600, NULL), 0);
    CHECK(ino_of("r/g2") != g1); /* g1's old file waits for the sync */
    CHECK_INT(run.nfresh, swaps ? 2 : 0);
    CHECK_INT(vq_fs_run_sync(dfd, &run, "r", NULL), 0);
    CHECK_INT(run.nready, swaps ? 2 : 0);
    CHECK_INT(run.nfresh, 0);
    CHECK_INT(run.written, 0);
    CHECK_INT(vq_fs_run_write(dfd, &run, "g4", "D\n", 2, 0640, NULL), 0);
    if (swaps) CHECK(ino_of("r/g4") == g2); /* g2's old file, written over */
    /* A reader that opened g2 before its rewrite keeps reading the old text:
     * a kept file someone holds open is not written into. */
    int reader = open("r/g2", O_RDONLY);
    REQUIRE(reader >= 0);
    ino_t g2new = ino_of("r/g2");
    CHECK_INT(vq_fs_run_write(dfd, &run, "g2", "B2", 2, 0600, NULL), 0);
    if (swaps) CHECK(ino_of("r/g2") == g1); /* the last ready file */
    CHECK_INT(vq_fs_run_sync(dfd, &run, "r", NULL), 0);
    CHECK_INT(vq_fs_run_write(dfd, &run, "g1", "A\n", 2, 0640, NULL), 0);
    CHECK(ino_of("r/g1") != g2new);
    char old[16] = {0};
    CHECK_INT(pread(reader, old, sizeof old - 1, 0), 2);
    CHECK_STR(old, "B\n");
    close(reader);
    CHECK_INT(vq_fs_run_write(dfd, &run, "g2", "B\n", 2, 0600, NULL), 0);
    CHECK_INT(vq_fs_run_write(dfd, &run, "g3", "C\n", 2, 0640, NULL), 0);
    CHECK_INT(vq_fs_run_sync(dfd, &run, "r", NULL), 0);
    /* g3's old file has another link (h3): left alone, never written into. */
    for (int k = 0; k < 3; k++)
        CHECK_INT(vq_fs_run_write(dfd, &run, "g4", "D\n", 2, 0640, NULL), 0);
    CHECK(ino_of("r/g4") != g3);
    CHECK_INT(vq_fs_run_write(dfd, &run, "new", "N\n", 2, 0640, NULL), 0);
    vq_error e = {0};
    CHECK_INT(vq_fs_run_write(dfd, &run, "../g1", "x", 1, 0640, &e), VQ_EINVAL);
    CHECK_STR(e.text, "../g1: bad file name");
    CHECK_INT(vq_fs_run_end(dfd, &run, "r", NULL), 0);
    CHECK_INT(run.written, 0);
    CHECK_INT(run.nready + run.nfresh, 0);
    const char *want[][2] = {{"r/g1", "A\n"}, {"r/g2", "B\n"}, {"r/g3", "C\n"},
                             {"r/g4", "D\n"}, {"r/new", "N\n"}, {"h3", "c"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *now = text_of(want[i][0]);
        CHECK_STR(now, want[i][1]);
        free(now);
    }
    struct stat st;
    REQUIRE(stat("r/g2", &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    CHECK_INT(system("ls r | grep -q tmp"), 256);
    /* Ready kept files move on to the next folder's run, which writes without
     * a new inode; fresh ones do not move. */
    sh("mkdir r2 && printf e > r2/g5");
    int d2 = open("r2", O_RDONLY | O_DIRECTORY);
    REQUIRE(d2 >= 0);
    vq_fs_run next;
    memset(&next, 0, sizeof next);
    CHECK_INT(vq_fs_run_pass(dfd, &run, d2, &next), 0); /* nothing kept */
    CHECK_INT(vq_fs_run_write(dfd, &run, "g1", "A1", 2, 0640, NULL), 0);
    CHECK_INT(vq_fs_run_pass(dfd, &run, d2, &next), 0); /* fresh: stays */
    CHECK_INT(vq_fs_run_sync(dfd, &run, "r", NULL), 0);
    if (swaps) {
        char spare[300];
        snprintf(spare, sizeof spare, "r/%s", run.ready[0]);
        ino_t kept = ino_of(spare);
        CHECK_INT(vq_fs_run_pass(dfd, &run, d2, &next), 1);
        CHECK_INT(run.nready, 0);
        CHECK_INT(next.nready, 1);
        CHECK_INT(vq_fs_run_write(d2, &next, "g5", "E\n", 2, 0640, NULL), 0);
        CHECK(ino_of("r2/g5") == kept);
    }
    CHECK_INT(vq_fs_run_end(d2, &next, "r2", NULL), 0);
    CHECK_INT(vq_fs_run_end(dfd, &run, "r", NULL), 0);
    close(d2);
    CHECK_INT(system("ls r r2 | grep -q tmp"), 256);
    /* A run given up: its kept files go, what it wrote stays. */
    CHECK_INT(vq_fs_run_write(dfd, &run, "g1", "A2", 2, 0640, NULL), 0);
    vq_fs_run_drop(dfd, &run);
    CHECK_INT(system("ls r | grep -q tmp"), 256);
    char *now = text_of("r/g1");
    CHECK_STR(now, "A2");
    free(now);
    now = text_of("r2/g5");
    CHECK_STR(now, "E\n");
    free(now);
    close(dfd);
}

/* Only names the atomic writes give their temp files (.meta and .lease) go. */
static void test_storage_meta_remove_temps(void)
{
    const char *u = "0467acf3-92ef-4fe0-b334-39193368490b";
    sh("mkdir m && cd m && touch %s.meta.tmp.123 %s.meta.tmp.9 %s.meta %s %s.meta.tmp. "
       "%s.meta.tmp.12a %s.lease.tmp.1 %s.lease.tmp.1x x.meta.tmp.1 "
       "0467ACF3-92EF-4FE0-B334-39193368490B.meta.tmp.1",
       u, "9574b911-66ac-4094-afcd-e467a0a8acb1", u, u, u, u, u, u);
    int dfd = open("m", O_RDONLY | O_DIRECTORY);
    REQUIRE(dfd >= 0);
    CHECK_INT(vq_meta_remove_temps(dfd), 3);
    CHECK_INT(vq_meta_remove_temps(dfd), 0);
    close(dfd);
    CHECK_INT(system("ls m | wc -l | grep -qx 7"), 0);
    CHECK_INT(system("ls m | grep -q '^[0-9a-f-]*[.]\\(meta\\|lease\\)[.]tmp[.][0-9][0-9]*$'"), 256); /* all three went */
}

/* ---- domains ---- */

static void test_storage_v4_domain_opens_sealed(void)
{
    fx f;
    setup(&f, "--disks 2 --chain 2 --raw 1 --thin 1");
    CHECK_INT(f.d->status, VQ_STATUS_OK);
    CHECK_INT(f.d->version, 4);
    CHECK_INT(f.d->sealed, 1);
    CHECK_STR(f.d->id, f.sd);
    CHECK_STR(vq_kv_get(&f.d->md, "CLASS"), "Data");
    char(*ids)[VQ_UUID_SIZE];
    size_t n;
    CHECK_INT(vq_domain_images(f.d, &ids, &n, NULL), 0);
    CHECK_INT(n, 5); /* 2 cow, 1 raw, template, thin */
    for (size_t i = 1; i < n; i++) CHECK(strcmp(ids[i - 1], ids[i]) < 0);
    free(ids);
    json_t *j = vq_domain_json(f.d, 5);
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    char want[256];
    snprintf(want, sizeof want,
             "{\"disks\":5,\"id\":\"%s\",\"reason\":null,\"status\":\"ok\",\"version\":4}", f.sd);
    CHECK_STR(s, want);
    free(s);
    json_decref(j);
    teardown(&f);
}

static void test_storage_domain_list_skips_junk(void)
{
    fx f;
    setup(&f, "--disks 1");
    sh("mkdir %s/not-a-uuid %s/3F2504E0-4F89-11D3-9A0C-0305E82C3301", f.root, f.root);
    sh("ln -s %s/%s %s/3f2504e0-4f89-11d3-9a0c-0305e82c3301", f.root, f.sd, f.root);
    sh("touch %s/4f2504e0-4f89-11d3-9a0c-0305e82c3301", f.root);
    vq_domain **v;
    size_t n;
    CHECK_INT(vq_domain_list(f.root, &v, &n, NULL), 0);
    REQUIRE(n == 1);
    CHECK_STR(v[0]->id, f.sd);
    vq_domain_list_free(v, n);
    vq_domain *d = NULL;
    vq_error e = {0};
    CHECK_INT(vq_domain_open(f.root, "3f2504e0-4f89-11d3-9a0c-0305e82c3301", &d, &e), VQ_ENOENT);
    CHECK_STR(e.text, "domain 3f2504e0-4f89-11d3-9a0c-0305e82c3301 is a symlink");
    vq_error_clear(&e);
    CHECK_INT(vq_domain_open(f.root, "../etc", &d, &e), VQ_EINVAL);
    CHECK_STR(e.text, "domain id \"../etc\" is not a UUID");
    teardown(&f);
}

static void test_storage_v3_and_v5_size_keys(void)
{
    fx f;
    setup(&f, "--version 3 --disks 1");
    vq_disk *disk = find_disk(&f, "vm-001_Disk1");
    CHECK_STR(vq_kv_get(&disk->vols[0].meta.kv, "SIZE"), "2097152");
    CHECK_STR(vq_kv_get(&disk->vols[0].meta.kv, "MTIME"), "0");
    CHECK_INT(disk->vols[0].meta.capacity, 1073741824ull);
    vq_error e = {0};
    CHECK_INT(vq_disk_check_amend(f.d, disk, NULL, &e), VQ_EREFUSED);
    CHECK_STR(e.text, "domain version 3 does not support compat 1.1");
    vq_disk_free(disk);
    teardown(&f);

    fx g;
    sh("rm -rf %s/root", t_dir());
    setup(&g, "--version 5 --disks 1");
    CHECK_INT(g.d->version, 5);
    CHECK_STR(vq_kv_get(&g.d->md, "ALIGNMENT"), "1048576");
    disk = find_disk(&g, "vm-001_Disk1");
    CHECK_STR(vq_kv_get(&disk->vols[0].meta.kv, "CAP"), "1073741824");
    CHECK_STR(vq_kv_get(&disk->vols[0].meta.kv, "SEQ"), "0");
    CHECK(vq_kv_get(&disk->vols[0].meta.kv, "SIZE") == NULL);
    CHECK_INT(disk->vols[0].meta.capacity, 1073741824ull);
    int done = -1;
    CHECK_INT(vq_disk_check_amend(g.d, disk, &done, NULL), 0);
    CHECK_INT(done, 0);
    vq_disk_free(disk);
    teardown(&g);
}

/* ---- disks ---- */

static void test_storage_chain_json(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 3");
    vq_disk *disk = find_disk(&f, "vm-001_Disk1");
    CHECK_INT(disk->status, VQ_STATUS_OK);
    REQUIRE(disk->nvols == 3);
    CHECK(vq_disk_leaf(disk) == &disk->vols[0]);
    CHECK_INT(vq_disk_count_v2(disk), 3);
    CHECK_STR(disk->vols[0].meta.puuid, disk->vols[1].id);
    CHECK_STR(disk->vols[2].meta.puuid, VQ_UUID_BLANK);
    CHECK_INT(disk->vols[0].virtual_size, 1073741824ull);
    CHECK(disk->vols[0].actual_size > 0);
    json_t *j = vq_disk_json(disk, "job-1");
    CHECK_STR(json_string_value(json_object_get(j, "id")), disk->id);
    CHECK_STR(json_string_value(json_object_get(j, "alias")), "vm-001_Disk1");
    CHECK_STR(json_string_value(json_object_get(j, "format")), "cow");
    CHECK_STR(json_string_value(json_object_get(j, "qcow_version")), "qcow2_v2");
    CHECK_STR(json_string_value(json_object_get(j, "image_id")), disk->vols[0].id);
    CHECK_INT(json_integer_value(json_object_get(j, "provisioned_size")), 1073741824);
    uint64_t sum = 0;
    for (size_t i = 0; i < 3; i++) sum += disk->vols[i].actual_size;
    CHECK_INT(json_integer_value(json_object_get(j, "actual_size")), sum);
    CHECK_STR(json_string_value(json_object_get(j, "status")), "locked");
    CHECK(json_is_null(json_object_get(j, "reason")));
    CHECK(json_is_false(json_object_get(j, "template")));
    CHECK_STR(json_string_value(json_object_get(j, "storage_domain")), f.sd);
    CHECK_STR(json_string_value(json_object_get(j, "locked_by")), "job-1");
    CHECK_INT(json_object_size(j), 13);
    json_t *vols = json_object_get(j, "volumes");
    REQUIRE(json_array_size(vols) == 3);
    json_t *leaf = json_array_get(vols, 0), *base = json_array_get(vols, 2);
    CHECK_STR(json_string_value(json_object_get(leaf, "id")), disk->vols[0].id);
    CHECK_STR(json_string_value(json_object_get(leaf, "format")), "cow");
    CHECK_STR(json_string_value(json_object_get(leaf, "compat")), "0.10");
    CHECK_STR(json_string_value(json_object_get(leaf, "voltype")), "LEAF");
    CHECK_STR(json_string_value(json_object_get(leaf, "legality")), "LEGAL");
    CHECK_INT(json_integer_value(json_object_get(leaf, "generation")), 0);
    CHECK_STR(json_string_value(json_object_get(leaf, "parent")), disk->vols[1].id);
    CHECK_STR(json_string_value(json_object_get(json_array_get(vols, 1), "voltype")), "INTERNAL");
    CHECK(json_is_null(json_object_get(base, "parent")));
    CHECK_INT(json_object_size(leaf), 7);
    json_decref(j);
    j = vq_disk_json(disk, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "status")), "ok");
    CHECK(json_is_null(json_object_get(j, "locked_by")));
    json_decref(j);
    vq_disk_free(disk);
    teardown(&f);
}

/* A 1.1 leaf over 0.10 snapshots is still eligible; after amending them all
 * with qemu-img the disk is done. */
static void test_storage_mixed_chain(void)
{
    fx f;
    setup(&f, "--disks 3 --chain 3 --mixed");
    vq_disk *disk = find_disk(&f, "vm-003_Disk1");
    CHECK_INT(disk->vols[0].qcow_version, 3);
    CHECK_INT(disk->vols[1].qcow_version, 2);
    CHECK_INT(vq_disk_count_v2(disk), 2);
    json_t *j = vq_disk_json(disk, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "qcow_version")), "qcow2_v3");
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(j, "volumes"), 0),
                                                "compat")), "1.1");
    json_decref(j);
    int done = -1;
    CHECK_INT(vq_disk_check_amend(f.d, disk, &done, NULL), 0);
    CHECK_INT(done, 0);
    for (size_t i = 1; i < disk->nvols; i++)
        CHECK_INT(vq_qemu_amend(ipath(&f, disk->id, NULL), disk->vols[i].id, 30000, NULL, NULL,
                                NULL), 0);
    char img[VQ_UUID_SIZE];
    memcpy(img, disk->id, sizeof img);
    vq_disk_free(disk);
    disk = load(&f, img);
    CHECK_INT(vq_disk_count_v2(disk), 0);
    CHECK_INT(vq_disk_check_amend(f.d, disk, &done, NULL), 0);
    CHECK_INT(done, 1);
    vq_disk_free(disk);
    teardown(&f);
}

static void test_storage_template_and_thin(void)
{
    fx f;
    setup(&f, "--disks 0 --thin 2");
    vq_disk *t = find_disk(&f, "template-001");
    CHECK_INT(t->status, VQ_STATUS_OK);
    CHECK_INT(t->is_template, 1);
    REQUIRE(t->nvols == 1);
    CHECK_INT(t->vols[0].shared, 1);
    vq_error e = {0};
    CHECK_INT(vq_disk_check_amend(f.d, t, NULL, &e), VQ_EREFUSED);
    CHECK_STR(e.text, "disk is a template disk");
    json_t *j = vq_disk_json(t, NULL);
    CHECK(json_is_true(json_object_get(j, "template")));
    json_decref(j);

    vq_disk *thin = find_disk(&f, "vm-001_Disk1");
    CHECK_INT(thin->status, VQ_STATUS_OK);
    CHECK_INT(thin->is_template, 0);
    REQUIRE(thin->nvols == 2);
    CHECK_INT(thin->vols[0].shared, 0);
    CHECK_INT(thin->vols[1].shared, 1);
    CHECK_INT(thin->vols[1].template_link, 0);
    CHECK_STR(thin->vols[1].id, t->vols[0].id);
    CHECK_STR(thin->vols[1].template_image, t->id);
    CHECK_INT(vq_disk_count_v2(thin), 1); /* the template volume is not its own */
    j = vq_disk_json(thin, NULL);
    json_t *last = json_array_get(json_object_get(j, "volumes"), 1);
    CHECK_STR(json_string_value(json_object_get(last, "voltype")), "SHARED");
    CHECK_INT(json_integer_value(json_object_get(j, "actual_size")), thin->vols[0].actual_size);
    json_decref(j);
    vq_disk_free(thin);
    vq_disk_free(t);
    teardown(&f);
}

/* Old domains: the thin disk's backing file is ../TEMPLATE_IMG/VOL, no link. */
static void test_storage_thin_old_style_backing(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2 --thin 1");
    vq_disk *t = find_disk(&f, "template-001"), *thin = find_disk(&f, "vm-002_Disk1");
    chain2 c;
    first_disk(&f, &c);
    const char *tv = t->vols[0].id;
    sh("cd %s && rm %s %s.meta %s.lease && qemu-img rebase -u -b ../%s/%s -F qcow2 %s",
       ipath(&f, thin->id, NULL), tv, tv, tv, t->id, tv, thin->vols[0].id);
    vq_disk *d2 = load(&f, thin->id);
    CHECK_INT(d2->status, VQ_STATUS_OK);
    REQUIRE(d2->nvols == 2);
    CHECK_INT(d2->vols[1].shared, 1);
    CHECK_INT(d2->vols[1].template_link, 1);
    CHECK_STR(d2->vols[1].template_image, t->id);
    CHECK_INT(d2->vols[1].qcow_version, 2);
    vq_disk_free(d2);
    /* ../IMG/VOL naming a volume that is not a template's: illegal. */
    sh("cd %s && qemu-img rebase -u -b ../%s/%s -F qcow2 %s", ipath(&f, thin->id, NULL), c.img,
       c.base, thin->vols[0].id);
    sh("sed -i s/PUUID=.*/PUUID=%s/ %s/%s.meta", c.base, ipath(&f, thin->id, NULL),
       thin->vols[0].id);
    expect_illegal(&f, thin->id, "is not a template volume");
    vq_disk_free(t);
    vq_disk_free(thin);
    teardown(&f);
}

static void test_storage_raw_disk(void)
{
    fx f;
    setup(&f, "--disks 0 --raw 1");
    vq_disk *disk = find_disk(&f, "vm-001_Disk1");
    CHECK_INT(disk->status, VQ_STATUS_OK);
    CHECK_INT(disk->vols[0].qcow_version, 0);
    CHECK_INT(disk->vols[0].virtual_size, 1073741824ull);
    vq_error e = {0};
    CHECK_INT(vq_disk_check_amend(f.d, disk, NULL, &e), VQ_EREFUSED);
    CHECK_STR(e.text, "disk has no qcow2 volume of its own");
    json_t *j = vq_disk_json(disk, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "format")), "raw");
    CHECK(json_is_null(json_object_get(j, "qcow_version")));
    json_t *v0 = json_array_get(json_object_get(j, "volumes"), 0);
    CHECK(json_is_null(json_object_get(v0, "compat")));
    json_decref(j);
    /* A RAW volume with a parent leads nowhere qemu would follow: illegal. */
    sh("sed -i s/PUUID=.*/PUUID=3f2504e0-4f89-11d3-9a0c-0305e82c3301/ %s/%s.meta",
       ipath(&f, disk->id, NULL), disk->vols[0].id);
    expect_illegal(&f, disk->id, "is RAW but has parent");
    vq_disk_free(disk);
    teardown(&f);
}

static void test_storage_alias_truncated_json_and_plain_text(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    const char *meta = ipath(&f, c.img, NULL);
    sh("cd %s && sed -i 's/^DESCRIPTION=.*/DESCRIPTION={\"DiskAlias\":\"cut-alias\","
       "\"DiskDescription\":\"a long text cut he/' %s.meta", meta, c.leaf);
    vq_disk *disk = load(&f, c.img);
    CHECK_STR(disk->alias, "cut-alias");
    vq_disk_free(disk);
    sh("cd %s && sed -i 's/^DESCRIPTION=.*/DESCRIPTION=an old plain description/' %s.meta", meta,
       c.leaf);
    disk = load(&f, c.img);
    CHECK_STR(disk->alias, c.img);
    CHECK_INT(disk->status, VQ_STATUS_OK);
    vq_disk_free(disk);
    teardown(&f);
}

/* Junk names are ignored or skipped; bad ids are refused before any file. */
static void test_storage_junk_names(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    sh("cd %s && touch %s.meta.tmp.123 README %s.META junk.lease && mkdir sub",
       ipath(&f, c.img, NULL), c.leaf, c.leaf);
    sh("mkdir %s %s", ipath(&f, "not-a-uuid", NULL),
       ipath(&f, "6A1B2C3D-0000-4000-8000-00000000A001", NULL));
    expect_ok(&f, c.img);
    char(*ids)[VQ_UUID_SIZE];
    size_t n;
    CHECK_INT(vq_domain_images(f.d, &ids, &n, NULL), 0);
    CHECK_INT(n, 1);
    free(ids);
    vq_disk *disk = NULL;
    vq_error e = {0};
    CHECK_INT(vq_disk_load(f.d, "6A1B2C3D-0000-4000-8000-00000000A001", &disk, &e), VQ_EINVAL);
    CHECK_STR(e.text, "disk id \"6A1B2C3D-0000-4000-8000-00000000A001\" is not a UUID");
    vq_error_clear(&e);
    CHECK_INT(vq_disk_load(f.d, "6a1b2c3d-0000-4000-8000-00000000a001", &disk, &e), VQ_ENOENT);
    CHECK(disk == NULL);
    teardown(&f);
}

/* ---- containment ---- */

static void test_storage_symlinks_are_illegal(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    const char *dir = ipath(&f, c.img, NULL);
    sh("cd %s && mv %s %s.real && ln -s %s.real %s", dir, c.base, c.base, c.base, c.base);
    expect_illegal(&f, c.img, "is a symlink");
    sh("cd %s && rm %s && mv %s.real %s", dir, c.base, c.base, c.base);
    expect_ok(&f, c.img);
    sh("cd %s && mv %s.meta %s.m && ln -s %s.m %s.meta", dir, c.leaf, c.leaf, c.leaf, c.leaf);
    expect_illegal(&f, c.img, c.leaf);
    expect_illegal(&f, c.img, "is a symlink");
    sh("cd %s && rm %s.meta && mv %s.m %s.meta", dir, c.leaf, c.leaf, c.leaf);
    /* An image folder that is a symlink to a real one is listed, and illegal. */
    const char *other = "6a1b2c3d-0000-4000-8000-00000000a001";
    sh("ln -s %s %s", c.img, ipath(&f, other, NULL));
    char(*ids)[VQ_UUID_SIZE];
    size_t n;
    CHECK_INT(vq_domain_images(f.d, &ids, &n, NULL), 0);
    CHECK_INT(n, 2);
    free(ids);
    expect_illegal(&f, other, "is a symlink");
    expect_ok(&f, c.img);
    teardown(&f);
}

static void rebase(fx *f, const chain2 *c, const char *backing, const char *fmt)
{
    sh("cd %s && qemu-img rebase -u -b '%s' -F %s %s", ipath(f, c->img, NULL), backing, fmt,
       c->leaf);
}

static void test_storage_hostile_backing_names(void)
{
    static const struct { const char *backing, *fmt, *reason; } v[] = {
        {"/etc/passwd", "raw", "is an absolute path"},
        {"json:{\"file.filename\":\"/etc/passwd\"}", "raw", "backing file is a json: filename"},
        {"nbd://localhost:10809/x", "raw", "uses protocol nbd:"},
        {"http://example.com/x", "raw", "uses protocol http:"},
        {"nbd:unix:/tmp/s", "raw", "uses protocol nbd:"},
        {"../../../etc/passwd", "raw", "is not a volume of this domain"},
        {"3f2504e0-4f89-11d3-9a0c-0305e82c3301", "qcow2", "does not match PUUID"},
    };
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        rebase(&f, &c, v[i].backing, v[i].fmt);
        expect_illegal(&f, c.img, v[i].reason);
    }
    rebase(&f, &c, c.base, "raw");
    expect_illegal(&f, c.img, "backing format raw does not match parent");
    rebase(&f, &c, c.base, "qcow2");
    expect_ok(&f, c.img);
    /* The old form ../OWN_IMG/VOL names the same folder: fine. */
    char rel[128];
    snprintf(rel, sizeof rel, "../%s/%s", c.img, c.base);
    rebase(&f, &c, rel, "qcow2");
    expect_ok(&f, c.img);
    teardown(&f);
}

static void test_storage_puuid_mismatch_and_missing_parent(void)
{
    fx f;
    setup(&f, "--disks 2 --chain 2");
    chain2 c, o;
    first_disk(&f, &c);
    vq_disk *other = find_disk(&f, "vm-002_Disk1");
    memcpy(o.base, other->vols[1].id, VQ_UUID_SIZE);
    vq_disk_free(other);
    const char *dir = ipath(&f, c.img, NULL);
    /* .meta says a parent that the header does not name */
    sh("cd %s && cp %s.meta %s.bak && sed -i s/PUUID=.*/PUUID=%s/ %s.meta", dir, c.leaf, c.leaf,
       o.base, c.leaf);
    expect_illegal(&f, c.img, "does not match PUUID");
    sh("cd %s && mv %s.bak %s.meta", dir, c.leaf, c.leaf);
    sh("cd %s && mv %s %s/gone", dir, c.base, t_dir());
    expect_illegal(&f, c.img, "file is missing");
    sh("mv %s/gone %s/%s && cd %s && mv %s.meta %s.gone", t_dir(), dir, c.base, dir, c.base,
       c.base);
    expect_illegal(&f, c.img, "is missing");
    sh("cd %s && mv %s.gone %s.meta", dir, c.base, c.base);
    /* a base whose header has a backing file */
    sh("cd %s && qemu-img rebase -u -b %s -F qcow2 %s", dir, c.leaf, c.base);
    expect_illegal(&f, c.img, "but PUUID is blank");
    teardown(&f);
}

static void test_storage_loop_is_illegal(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    const char *dir = ipath(&f, c.img, NULL);
    sh("cd %s && qemu-img rebase -u -b %s -F qcow2 %s && sed -i s/PUUID=.*/PUUID=%s/ %s.meta",
       dir, c.leaf, c.base, c.leaf, c.base);
    expect_illegal(&f, c.img, "chain loops at volume");
    teardown(&f);
}

static void test_storage_external_data_file(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    sh("cd %s && rm %s && qemu-img create -q -f qcow2 -o compat=1.1,data_file=%s/outside "
       "-b %s -F qcow2 %s 1G",
       ipath(&f, c.img, NULL), c.leaf, t_dir(), c.base, c.leaf);
    expect_illegal(&f, c.img, "uses an external data file");
    teardown(&f);
}

static void test_storage_hard_linked_own_volume(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    sh("ln %s %s/elsewhere", ipath(&f, c.img, c.base), t_dir());
    expect_illegal(&f, c.img, "has 2 hard links but is not a SHARED template volume");
    teardown(&f);
}

static void test_storage_bad_meta_files(void)
{
    fx f;
    setup(&f, "--disks 1 --chain 2");
    chain2 c;
    first_disk(&f, &c);
    char meta[4096];
    snprintf(meta, sizeof meta, "%s.meta", ipath(&f, c.img, c.leaf));
    size_t len;
    char *orig = slurp(meta, &len);

    sh("sed -i /^EOF/d %s", meta);
    expect_illegal(&f, c.img, "metadata: no EOF line");
    put_str(meta, "\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00");
    expect_illegal(&f, c.img, "metadata: line 1");
    sh("head -c 1048576 /dev/zero | tr '\\0' A > %s", meta);
    expect_illegal(&f, c.img, "is larger than 512 bytes");
    put(meta, orig, len);
    sh("sed -i /^PUUID=/d %s", meta);
    expect_illegal(&f, c.img, "metadata: no PUUID");
    put(meta, orig, len);
    sh("sed -i s/VOLTYPE=LEAF/VOLTYPE=INTERNAL/ %s", meta);
    expect_illegal(&f, c.img, "image has no LEAF volume");
    put(meta, orig, len);
    sh("sed -i s/VOLTYPE=INTERNAL/VOLTYPE=LEAF/ %s.meta", ipath(&f, c.img, c.base));
    expect_illegal(&f, c.img, "image has 2 LEAF volumes, not one");
    sh("sed -i s/VOLTYPE=LEAF/VOLTYPE=INTERNAL/ %s.meta", ipath(&f, c.img, c.base));
    sh("sed -i s/^IMAGE=.*/IMAGE=3f2504e0-4f89-11d3-9a0c-0305e82c3301/ %s.meta",
       ipath(&f, c.img, c.base));
    expect_illegal(&f, c.img, "does not match its folder");
    free(orig);
    teardown(&f);
}

/* qemu-img files of a long chain, made by copying one overlay and writing
 * each parent's name over the backing name (same length). */
static void make_chain(fx *f, const char *img, int depth, char leaf[VQ_UUID_SIZE])
{
    const char *dir = ipath(f, img, NULL);
    char parent[VQ_UUID_SIZE] = VQ_UUID_BLANK, vol[VQ_UUID_SIZE];
    sh("mkdir %s && cd %s && qemu-img create -q -f qcow2 -o compat=0.10 proto-base 1M && "
       "qemu-img create -q -f qcow2 -o compat=0.10 -b " VQ_UUID_BLANK " -F qcow2 -u proto 1M",
       dir, t_dir());
    char pb[4096], po[4096];
    snprintf(pb, sizeof pb, "%s/proto-base", t_dir());
    snprintf(po, sizeof po, "%s/proto", t_dir());
    size_t blen, olen;
    char *base = slurp(pb, &blen), *over = slurp(po, &olen);
    unsigned long long off = 0; /* header bytes 8..15: the backing name's offset */
    for (int i = 8; i < 16; i++) off = off << 8 | (unsigned char)over[i];
    REQUIRE(off > 0 && off + VQ_UUID_LEN <= olen);
    for (int i = 0; i < depth; i++) {
        vq_uuid_new(vol);
        char path[4096], mpath[4096], meta[1024];
        snprintf(path, sizeof path, "%s/%s", dir, vol);
        snprintf(mpath, sizeof mpath, "%s/%s.meta", dir, vol);
        if (i == 0) {
            put(path, base, blen);
        } else {
            memcpy(over + off, parent, VQ_UUID_LEN);
            put(path, over, olen);
        }
        snprintf(meta, sizeof meta,
                 "DESCRIPTION={\"DiskAlias\":\"deep\"}\nDOMAIN=%s\nFORMAT=COW\nIMAGE=%s\n"
                 "LEGALITY=LEGAL\nMTIME=0\nPUUID=%s\nSIZE=2048\nTYPE=SPARSE\nVOLTYPE=%s\nEOF\n",
                 f->sd, img, parent, i == depth - 1 ? "LEAF" : "INTERNAL");
        put_str(mpath, meta);
        memcpy(parent, vol, sizeof parent);
    }
    memcpy(leaf, vol, VQ_UUID_SIZE);
    free(base);
    free(over);
}

static void test_storage_chain_depth_limit(void)
{
    fx f;
    setup(&f, "--disks 0");
    char leaf[VQ_UUID_SIZE];
    const char *ok = "6a1b2c3d-0000-4000-8000-00000000a256";
    make_chain(&f, ok, VQ_CHAIN_MAX, leaf);
    vq_disk *disk = load(&f, ok);
    CHECK_INT(disk->status, VQ_STATUS_OK);
    CHECK_STR(disk->reason, "");
    CHECK_INT(disk->nvols, VQ_CHAIN_MAX);
    CHECK_STR(disk->vols[0].id, leaf);
    CHECK_STR(disk->alias, "deep");
    vq_disk_free(disk);
    sh("rm -rf %s/proto %s/proto-base", t_dir(), t_dir());
    const char *deep = "6a1b2c3d-0000-4000-8000-00000000a300";
    make_chain(&f, deep, 300, leaf);
    expect_illegal(&f, deep, "chain is deeper than 256 volumes");
    teardown(&f);
}

/* ---- .meta rewrite ---- */

static void test_storage_meta_write_keeps_unknown_keys(void)
{
    fx f;
    setup(&f, "--disks 1");
    vq_disk *disk = find_disk(&f, "vm-001_Disk1");
    char img[VQ_UUID_SIZE], vol[VQ_UUID_SIZE], meta[4096], text[1024];
    memcpy(img, disk->id, sizeof img);
    memcpy(vol, disk->vols[0].id, sizeof vol);
    vq_disk_free(disk);
    snprintf(meta, sizeof meta, "%s.meta", ipath(&f, img, vol));
    snprintf(text, sizeof text,
             "ZZZ_LOCAL=kept\nVOLTYPE=LEAF\nFORMAT=COW\nIMAGE=%s\nLEGALITY=LEGAL\nPUUID=%s\n"
             "SIZE=2097152\nMTIME=0\nAAA=first\nGEN=999\nEOF\n",
             img, VQ_UUID_BLANK);
    put_str(meta, text);
    chmod(meta, 0640);
    int imgfd;
    REQUIRE(vq_domain_open_image(f.d, img, &imgfd, NULL) == 0);
    vq_meta m = {0};
    CHECK_INT(vq_meta_read(imgfd, vol, &m, NULL), 0);
    CHECK_INT(m.gen, 999);
    m.gen = (m.gen + 1) % 1000;
    m.legality = VQ_ILLEGAL;
    CHECK_INT(vq_meta_write(imgfd, vol, &m, NULL), 0);
    char *now = slurp(meta, NULL);
    snprintf(text, sizeof text,
             "AAA=first\nFORMAT=COW\nGEN=0\nIMAGE=%s\nLEGALITY=ILLEGAL\nMTIME=0\nPUUID=%s\n"
             "SIZE=2097152\nVOLTYPE=LEAF\nZZZ_LOCAL=kept\nEOF\n",
             img, VQ_UUID_BLANK);
    CHECK_STR(now, text);
    free(now);
    struct stat st;
    REQUIRE(stat(meta, &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0640);
    /* Over 512 bytes: refused, the file unchanged. */
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_INT(vq_kv_set(&m.kv, "BIG", big, NULL), 0);
    vq_error e = {0};
    CHECK_INT(vq_meta_write(imgfd, vol, &m, &e), VQ_EINVAL);
    CHECK_CONTAINS(e.text, "over 512");
    now = slurp(meta, NULL);
    CHECK_STR(now, text);
    free(now);
    /* No temp file is left in the folder. */
    DIR *dir = opendir(ipath(&f, img, NULL));
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) CHECK(strstr(de->d_name, ".tmp.") == NULL);
    closedir(dir);
    vq_meta_free(&m);
    close(imgfd);
    teardown(&f);
}

/* ---- domain metadata seal ---- */

static const char *md_path(fx *f)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s/dom_md/metadata", f->root, f->sd);
    return p;
}

static void test_storage_broken_seal_is_never_rewritten(void)
{
    fx f;
    setup(&f, "--version 3 --disks 1");
    sh("sed -i s/DESCRIPTION=volq-sample/DESCRIPTION=tampered/ %s", md_path(&f));
    size_t len1, len2;
    char *before = slurp(md_path(&f), &len1);
    open_domain(&f);
    CHECK_INT(f.d->status, VQ_STATUS_ILLEGAL);
    CHECK_CONTAINS(f.d->reason, "metadata checksum mismatch: _SHA_CKSUM is ");
    CHECK_INT(f.d->version, 3);
    vq_error e = {0};
    CHECK_INT(vq_domain_set_version(f.d, 4, &e), VQ_EREFUSED);
    CHECK_CONTAINS(e.text, "is illegal: metadata checksum mismatch");
    char *after = slurp(md_path(&f), &len2);
    CHECK_INT(len1, len2);
    CHECK(memcmp(before, after, len1) == 0);
    vq_disk *disk = find_disk(&f, "vm-001_Disk1");
    vq_error_clear(&e);
    CHECK_INT(vq_disk_check_amend(f.d, disk, NULL, &e), VQ_EREFUSED);
    CHECK_CONTAINS(e.text, "is illegal: metadata checksum mismatch");
    /* Its disks are listed illegal with the domain's reason. */
    CHECK_INT(disk->status, VQ_STATUS_ILLEGAL);
    CHECK_CONTAINS(disk->reason, "is illegal: metadata checksum mismatch");
    json_t *dj = vq_disk_json(disk, NULL);
    CHECK_STR(json_string_value(json_object_get(dj, "status")), "illegal");
    json_decref(dj);
    json_t *j = vq_domain_json(f.d, 1);
    CHECK_STR(json_string_value(json_object_get(j, "status")), "illegal");
    CHECK_STR(json_string_value(json_object_get(j, "reason")), f.d->reason);
    json_decref(j);
    vq_disk_free(disk);
    free(before);
    free(after);
    teardown(&f);
}

static void test_storage_unsealed_rewrite_adds_seal(void)
{
    fx f;
    setup(&f, "--version 3 --disks 1");
    /* No seal, keys out of order, a key volq does not know. */
    sh("sed -i '/^_SHA_CKSUM/d; 1i ZZZ_LOCAL=keep me' %s && echo CLASS=Data > %s.2 && "
       "grep -v ^CLASS %s >> %s.2 && mv %s.2 %s",
       md_path(&f), md_path(&f), md_path(&f), md_path(&f), md_path(&f), md_path(&f));
    chmod(md_path(&f), 0600);
    open_domain(&f);
    CHECK_INT(f.d->status, VQ_STATUS_OK);
    CHECK_INT(f.d->sealed, 0);
    CHECK_INT(vq_domain_set_version(f.d, 4, NULL), 0);
    CHECK_INT(f.d->version, 4);
    CHECK_INT(f.d->sealed, 1);
    char *text = slurp(md_path(&f), NULL);
    const char *head = "CLASS=Data\nDESCRIPTION=volq-sample\n";
    CHECK(strncmp(text, head, strlen(head)) == 0);
    CHECK_CONTAINS(text, "\nVERSION=4\nZZZ_LOCAL=keep me\n_SHA_CKSUM=");
    free(text);
    /* The seal is what VDSM (and sha1sum) compute. */
    sh("test \"$(grep -v ^_SHA_CKSUM= %s | tr -d '\\n' | sha1sum | cut -d' ' -f1)\" = "
       "\"$(sed -n 's/^_SHA_CKSUM=//p' %s)\"",
       md_path(&f), md_path(&f));
    struct stat st;
    REQUIRE(stat(md_path(&f), &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    open_domain(&f);
    CHECK_INT(f.d->status, VQ_STATUS_OK);
    CHECK_INT(f.d->sealed, 1);
    CHECK_INT(f.d->version, 4);
    vq_error e = {0};
    CHECK_INT(vq_domain_set_version(f.d, 9, &e), VQ_EINVAL);
    teardown(&f);
}

static void test_storage_domain_metadata_problems(void)
{
    fx f;
    setup(&f, "--disks 0");
    sh("sed -i s/^SDUUID=.*/SDUUID=3f2504e0-4f89-11d3-9a0c-0305e82c3301/ %s", md_path(&f));
    open_domain(&f);
    CHECK_INT(f.d->status, VQ_STATUS_ILLEGAL); /* the seal no longer matches either */
    sh("sed -i /^_SHA_CKSUM/d %s", md_path(&f));
    open_domain(&f);
    char want[256];
    snprintf(want, sizeof want,
             "metadata: SDUUID 3f2504e0-4f89-11d3-9a0c-0305e82c3301 does not match the folder %s",
             f.sd);
    CHECK_STR(f.d->reason, want);
    sh("rm %s", md_path(&f));
    open_domain(&f);
    CHECK_INT(f.d->status, VQ_STATUS_ILLEGAL);
    CHECK_STR(f.d->reason, "metadata: dom_md/metadata does not exist");
    CHECK_INT(f.d->version, -1);
    json_t *j = vq_domain_json(f.d, 0);
    CHECK(json_is_null(json_object_get(j, "version")));
    json_decref(j);
    teardown(&f);
}

/* ---- many disks on threads ---- */

/* A new buffer with the whole file name of folder dfd (slurp() stops at 64 KiB). */
static char *read_all(int dfd, const char *name, size_t *len)
{
    int fd = openat(dfd, name, O_RDONLY);
    struct stat st;
    REQUIRE(fd >= 0 && fstat(fd, &st) == 0);
    char *b = malloc((size_t)st.st_size + 1);
    REQUIRE(b && read(fd, b, (size_t)st.st_size) == st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

/* Image dst: a copy of image src (the same volume ids, each .meta's IMAGE
 * rewritten), so that hundreds of disks need no qemu-img each. */
static void copy_image(fx *f, const char *src, const char *dst)
{
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s", ipath(f, src, NULL));
    snprintf(to, sizeof to, "%s", ipath(f, dst, NULL));
    DIR *dir = opendir(from);
    REQUIRE(dir);
    REQUIRE(mkdir(to, 0755) == 0);
    int dfrom = dirfd(dir), dto = open(to, O_RDONLY | O_DIRECTORY);
    REQUIRE(dto >= 0);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.') continue;
        size_t len;
        char *b = read_all(dfrom, de->d_name, &len);
        char *img = strstr(de->d_name, ".meta") ? strstr(b, "\nIMAGE=") : NULL;
        if (img) memcpy(img + 7, dst, VQ_UUID_LEN);
        int fd = openat(dto, de->d_name, O_WRONLY | O_CREAT | O_EXCL, 0644);
        REQUIRE(fd >= 0 && write(fd, b, len) == (ssize_t)len);
        close(fd);
        free(b);
    }
    close(dto);
    closedir(dir);
}

/* JSON of a disk with sorted keys, for comparing two loads.  Free with free(). */
static char *disk_text(const vq_disk *disk)
{
    json_t *j = vq_disk_json(disk, NULL);
    char *t = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    REQUIRE(t);
    return t;
}

/* 1 when s says what vq_disk_load + vq_disk_check_amend of img say, one
 * after the other in this thread. */
static int same_as_serial(fx *f, const char *img, const vq_disk_scan *s)
{
    vq_disk *disk = NULL;
    vq_error e = {0};
    int done = 0, check_rc = 0, rc = vq_disk_load(f->d, img, &disk, &e);
    if (rc == 0) check_rc = vq_disk_check_amend(f->d, disk, &done, &e);
    int same = rc == s->rc && check_rc == s->check_rc && done == s->done &&
               strcmp(e.text, s->err.text) == 0 && !disk == !s->disk;
    if (same && disk) {
        char *a = disk_text(disk), *b = disk_text(s->disk);
        same = strcmp(a, b) == 0;
        free(a);
        free(b);
    }
    if (!same)
        fprintf(stderr, "# disk %.40s: serial rc %d/%d \"%s\", scan rc %d/%d \"%s\"\n", img, rc,
                check_rc, e.text, s->rc, s->check_rc, s->err.text);
    vq_disk_free(disk);
    return same;
}

/* What the scan found: disks to amend, already done, refused by the check
 * (illegal ones included), and ids that did not load. */
typedef struct tally {
    int todo, done, refused, illegal, failed;
} tally;

static tally count(const vq_disk_scan *s, size_t n)
{
    tally t = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i].rc) {
            t.failed++;
            continue;
        }
        t.illegal += s[i].disk->status == VQ_STATUS_ILLEGAL;
        if (s[i].check_rc)
            t.refused++;
        else if (s[i].done)
            t.done++;
        else
            t.todo++;
    }
    return t;
}

/* What a stream handed on: runs must be adjacent from 0; stop_at > 0 stops
 * the scan (returning 7) at the first run that reaches it. */
typedef struct runs {
    size_t next, calls, stop_at;
    int bad;
    const vq_disk_scan *out;
} runs;

static int on_run(void *arg, size_t lo, size_t hi)
{
    runs *r = arg;
    r->bad += lo != r->next || hi <= lo;
    for (size_t i = lo; i < hi; i++) r->bad += !r->out[i].disk && !r->out[i].rc; /* not loaded */
    r->next = hi;
    r->calls++;
    return r->stop_at && hi >= r->stop_at ? 7 : 0;
}

/* 300 copies of a 0.10 disk (4 damaged, 1 amended), a raw disk, a template,
 * and two ids that are no disk, scanned on 1..4 threads and by default, all
 * at once and as a stream: every result is what a serial load and check give,
 * in the caller's order. */
static void test_storage_load_many_matches_serial(void)
{
    enum { COPIES = 300, EXTRA = 2 };
    fx f;
    setup(&f, "--disks 1 --chain 2 --raw 1 --template --size-mib 1");
    chain2 c;
    first_disk(&f, &c);
    char(*copies)[VQ_UUID_SIZE] = calloc(COPIES, sizeof *copies);
    REQUIRE(copies);
    for (int i = 0; i < COPIES; i++) {
        vq_uuid_new(copies[i]);
        copy_image(&f, c.img, copies[i]);
    }
    sh("rm %s", ipath(&f, copies[10], c.base));
    sh("sed -i s/LEGALITY=LEGAL/LEGALITY=ILLEGAL/ %s.meta", ipath(&f, copies[100], c.leaf));
    sh("sed -i /^EOF/d %s.meta", ipath(&f, copies[200], c.leaf));
    sh("rm -r %s && ln -s %s %s", ipath(&f, copies[290], NULL), c.img,
       ipath(&f, copies[290], NULL));
    sh("cd %s && qemu-img amend -f qcow2 -o compat=1.1 %s && qemu-img amend -f qcow2 -o "
       "compat=1.1 %s", ipath(&f, copies[150], NULL), c.base, c.leaf);

    char(*listed)[VQ_UUID_SIZE];
    size_t nlisted;
    REQUIRE(vq_domain_images(f.d, &listed, &nlisted, NULL) == 0);
    CHECK_INT(nlisted, 1 + 1 + 1 + COPIES);
    size_t n = nlisted + EXTRA;
    char(*ids)[VQ_UUID_SIZE] = calloc(n, sizeof *ids);
    REQUIRE(ids);
    memcpy(ids, listed, nlisted * sizeof *ids);
    free(listed);
    snprintf(ids[n - 2], VQ_UUID_SIZE, "%s", "6a1b2c3d-0000-4000-8000-00000000b002"); /* none */
    snprintf(ids[n - 1], VQ_UUID_SIZE, "%s", "not-a-uuid");

    vq_disk_scan *s = calloc(n, sizeof *s);
    REQUIRE(s);
    const int threads[] = {1, 2, 3, 4, 0, 64};
    for (size_t t = 0; t < 2 * sizeof threads / sizeof threads[0]; t++) {
        size_t nt = sizeof threads / sizeof threads[0];
        runs r = {.out = s};
        if (t < nt) {
            vq_disk_load_many(f.d, (const char(*)[VQ_UUID_SIZE])ids, n, threads[t], s);
        } else {
            CHECK_INT(vq_disk_load_stream(f.d, (const char(*)[VQ_UUID_SIZE])ids, n,
                                          threads[t - nt], s, on_run, &r), 0);
            CHECK_INT(r.bad, 0);
            CHECK_INT(r.next, n);
            CHECK(r.calls >= 1);
        }
        int differ = 0;
        for (size_t i = 0; i < n; i++) differ += !same_as_serial(&f, ids[i], &s[i]);
        if (differ) fprintf(stderr, "# %d threads, pass %zu\n", threads[t % nt], t);
        CHECK_INT(differ, 0);
        tally k = count(s, n);
        /* To amend: the original and 295 good copies; done: the amended
         * copy; refused: the 3 illegal copies (missing base, no EOF, folder
         * a symlink), the copy with an ILLEGAL volume, raw and template. */
        CHECK_INT(k.todo, 1 + COPIES - 5);
        CHECK_INT(k.done, 1);
        CHECK_INT(k.illegal, 3);
        CHECK_INT(k.refused, 3 + 1 + 2);
        CHECK_INT(k.failed, EXTRA);
        CHECK_INT(s[n - 2].rc, VQ_ENOENT);
        CHECK_CONTAINS(s[n - 2].err.text, "6a1b2c3d-0000-4000-8000-00000000b002");
        CHECK_INT(s[n - 1].rc, VQ_EINVAL);
        CHECK_STR(s[n - 1].err.text, "disk id \"not-a-uuid\" is not a UUID");
        CHECK(s[n - 1].disk == NULL);
        for (size_t i = 0; i < n; i++) vq_disk_free(s[i].disk);
    }
    /* A stream stopped by its consumer: its answer comes back; each disk is
     * either loaded as a serial scan would or left zeroed (how far the
     * threads got meanwhile is theirs: not checked), never left as it was. */
    for (int t = 1; t <= 2; t++) {
        runs r = {.out = s, .stop_at = 40};
        memset(s, 0xff, n * sizeof *s);
        CHECK_INT(vq_disk_load_stream(f.d, (const char(*)[VQ_UUID_SIZE])ids, n, t, s, on_run,
                                      &r), 7);
        CHECK(r.next >= 40);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++) {
            int zero = !s[i].disk && !s[i].rc && !s[i].check_rc && !s[i].done && !s[i].err.text[0];
            wrong += i < r.next ? !same_as_serial(&f, ids[i], &s[i])
                                : !zero && !same_as_serial(&f, ids[i], &s[i]);
        }
        CHECK_INT(wrong, 0);
        for (size_t i = 0; i < n; i++) vq_disk_free(s[i].disk);
    }
    /* Fewer disks than a thread's share, and none at all. */
    vq_disk_load_many(f.d, (const char(*)[VQ_UUID_SIZE])ids, 1, 4, s);
    CHECK(same_as_serial(&f, ids[0], &s[0]));
    vq_disk_free(s[0].disk);
    vq_disk_load_many(f.d, (const char(*)[VQ_UUID_SIZE])ids, 0, 0, NULL);
    runs r = {.out = s};
    CHECK_INT(vq_disk_load_stream(f.d, (const char(*)[VQ_UUID_SIZE])ids, 50, 2, s, on_run, &r), 0);
    CHECK_INT(r.next, 50);
    CHECK_INT(r.calls, 2); /* alone: 32, then the rest */
    for (size_t i = 0; i < 50; i++) vq_disk_free(s[i].disk);
    CHECK_INT(vq_disk_load_stream(f.d, (const char(*)[VQ_UUID_SIZE])ids, 0, 0, NULL, on_run, &r), 0);
    free(s);
    free(ids);
    free(copies);
    teardown(&f);
}

T_MAIN(T(test_storage_fs_read_bounds_and_paths), T(test_storage_fs_write_atomic), T(test_storage_fs_run), T(test_storage_meta_remove_temps),
       T(test_storage_v4_domain_opens_sealed), T(test_storage_domain_list_skips_junk),
       T(test_storage_v3_and_v5_size_keys), T(test_storage_chain_json),
       T(test_storage_mixed_chain), T(test_storage_template_and_thin),
       T(test_storage_thin_old_style_backing), T(test_storage_raw_disk),
       T(test_storage_alias_truncated_json_and_plain_text), T(test_storage_junk_names),
       T(test_storage_symlinks_are_illegal), T(test_storage_hostile_backing_names),
       T(test_storage_puuid_mismatch_and_missing_parent), T(test_storage_loop_is_illegal),
       T(test_storage_external_data_file), T(test_storage_hard_linked_own_volume),
       T(test_storage_bad_meta_files), T(test_storage_chain_depth_limit),
       T(test_storage_meta_write_keeps_unknown_keys),
       T(test_storage_broken_seal_is_never_rewritten),
       T(test_storage_unsealed_rewrite_adds_seal), T(test_storage_domain_metadata_problems),
       T(test_storage_load_many_matches_serial))
