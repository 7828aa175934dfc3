/* Volume .meta files: KEY=VALUE lines then EOF, 512 bytes at most. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "volq/fsutil.h"
#include "volq/meta.h"

/* VDSM keeps GEN in 0..999: it bumps it as (GEN + 1) % 1000. */
#define GEN_LIMIT 1000
#define META_MODE 0660
/* Enough for "<uuid>.meta". */
#define META_NAME_SIZE (VQ_UUID_SIZE + 8)

static const char *const format_names[] = {"COW", "RAW"};
static const char *const voltype_names[] = {"LEAF", "INTERNAL", "SHARED"};
static const char *const legality_names[] = {"LEGAL", "ILLEGAL", "FAKE"};
static const char *const type_names[] = {"SPARSE", "PREALLOCATED", "UNKNOWN"};

#define NAME_OF(table, i) \
    ((unsigned)(i) < sizeof table / sizeof table[0] ? table[(unsigned)(i)] : "?")

const char *vq_format_name(enum vq_format f) { return NAME_OF(format_names, f); }
const char *vq_voltype_name(enum vq_voltype v) { return NAME_OF(voltype_names, v); }
const char *vq_legality_name(enum vq_legality l) { return NAME_OF(legality_names, l); }

/* Index of v in names, or -1. */
static int lookup(const char *const names[], int n, const char *v)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], v) == 0) return i;
    return -1;
}

/* A required enum key: *out gets its index. */
static int get_enum(const vq_kv *kv, const char *key, const char *const names[], int n,
                    int *out, vq_error *err)
{
    const char *v = vq_kv_get(kv, key);
    if (!v) return vq_error_set(err, VQ_EINVAL, "no %s", key);
    int i = lookup(names, n, v);
    if (i < 0) return vq_error_set(err, VQ_EINVAL, "bad %s \"%.40s\"", key, v);
    *out = i;
    return 0;
}

/* Decimal digits only, no sign, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int get_uuid(const vq_kv *kv, const char *key, int required, char out[VQ_UUID_SIZE],
                    vq_error *err)
{
    const char *v = vq_kv_get(kv, key);
    out[0] = '\0';
    if (!v) return required ? vq_error_set(err, VQ_EINVAL, "no %s", key) : 0;
    if (!vq_uuid_valid(v)) return vq_error_set(err, VQ_EINVAL, "%s is not a UUID", key);
    memcpy(out, v, VQ_UUID_SIZE);
    return 0;
}

/* CAP in bytes wins over SIZE in 512-byte blocks; one of them is required. */
static int get_capacity(const vq_kv *kv, uint64_t *cap, vq_error *err)
{
    const char *c = vq_kv_get(kv, "CAP"), *s = vq_kv_get(kv, "SIZE");
    uint64_t blocks;
    if (c) {
        if (parse_u64(c, cap) < 0) return vq_error_set(err, VQ_EINVAL, "bad CAP");
        return 0;
    }
    if (!s) return vq_error_set(err, VQ_EINVAL, "no SIZE or CAP");
    if (parse_u64(s, &blocks) < 0 || blocks > UINT64_MAX / 512)
        return vq_error_set(err, VQ_EINVAL, "bad SIZE");
    *cap = blocks * 512;
    return 0;
}

static int get_gen(const vq_kv *kv, unsigned *gen, vq_error *err)
{
    const char *g = vq_kv_get(kv, "GEN");
    uint64_t v = 0;
    if (g && (parse_u64(g, &v) < 0 || v >= GEN_LIMIT))
        return vq_error_set(err, VQ_EINVAL, "bad GEN");
    *gen = (unsigned)v;
    return 0;
}

/* TYPE is optional (UNKNOWN when absent), but must be valid when present. */
static int get_type(const vq_kv *kv, enum vq_preallocation *type, vq_error *err)
{
    int i = VQ_TYPE_UNKNOWN;
    int rc = vq_kv_get(kv, "TYPE") ? get_enum(kv, "TYPE", type_names, 3, &i, err) : 0;
    if (rc < 0) return rc;
    *type = (enum vq_preallocation)i;
    return 0;
}

/* Returns the end of the JSON string starting at p (its opening quote), just
 * past the closing quote; NULL when the buffer ends first (a cut string). */
static const char *json_string_end(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"') return p + 1;
    }
    return NULL;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* Decodes the complete JSON string [p, q) into a new json_t, or NULL. */
static json_t *json_string_decode(const char *p, const char *q)
{
    json_t *s = json_loadb(p, (size_t)(q - p), JSON_DECODE_ANY, NULL);
    if (s && !json_is_string(s)) {
        json_decref(s);
        return NULL;
    }
    return s;
}

/* Copies s into the alias, cut at a UTF-8 character boundary when too long.
 * Control characters (C0, DEL, and C1 as UTF-8 C2 80..9F) become '?': the
 * JSON may hold "\u001b[2J", and the alias is printed on terminals and in
 * one-line logs and events. */
static void set_alias_text(char alias[VQ_ALIAS_MAX + 1], const char *s)
{
    size_t n = strlen(s);
    if (n > VQ_ALIAS_MAX) {
        n = VQ_ALIAS_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    }
    memcpy(alias, s, n);
    alias[n] = '\0';
    for (unsigned char *p = (unsigned char *)alias; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) *p = '?';
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) p[0] = p[1] = '?';
    }
}

/* Walks {"key":"value",...} as far as it is complete; a cut or non-string
 * value ends the walk.  Sets alias when the DiskAlias string is complete. */
static void alias_from_description(const char *d, char alias[VQ_ALIAS_MAX + 1])
{
    const char *end = d + strlen(d), *p = skip_ws(d, end);
    alias[0] = '\0';
    if (p >= end || *p != '{') return; /* plain text: no alias */
    for (p = skip_ws(p + 1, end); p < end && *p == '"'; p = skip_ws(p + 1, end)) {
        const char *kend = json_string_end(p, end);
        if (!kend) return;
        const char *v = skip_ws(kend, end);
        if (v >= end || *v != ':') return;
        v = skip_ws(v + 1, end);
        const char *vend = v < end && *v == '"' ? json_string_end(v, end) : NULL;
        if (!vend) return;
        json_t *key = json_string_decode(p, kend);
        int is_alias = key && strcmp(json_string_value(key), "DiskAlias") == 0;
        json_decref(key);
        if (is_alias) {
            json_t *val = json_string_decode(v, vend);
            if (val) set_alias_text(alias, json_string_value(val));
            json_decref(val);
            return;
        }
        p = skip_ws(vend, end);
        if (p >= end || *p != ',') return;
    }
}

static int parse_fields(vq_meta *m, vq_error *err)
{
    const vq_kv *kv = &m->kv;
    int f = 0, v = 0, l = 0;
    if (get_enum(kv, "FORMAT", format_names, 2, &f, err) < 0 ||
        get_enum(kv, "VOLTYPE", voltype_names, 3, &v, err) < 0 ||
        get_enum(kv, "LEGALITY", legality_names, 3, &l, err) < 0 ||
        get_uuid(kv, "IMAGE", 1, m->image, err) < 0 ||
        get_uuid(kv, "PUUID", 1, m->puuid, err) < 0 ||
        get_uuid(kv, "DOMAIN", 0, m->domain, err) < 0 || get_type(kv, &m->type, err) < 0 ||
        get_capacity(kv, &m->capacity, err) < 0 || get_gen(kv, &m->gen, err) < 0)
        return err ? err->code : VQ_EINVAL;
    m->format = (enum vq_format)f;
    m->voltype = (enum vq_voltype)v;
    m->legality = (enum vq_legality)l;
    const char *d = vq_kv_get(kv, "DESCRIPTION");
    if (d)
        alias_from_description(d, m->alias);
    else
        m->alias[0] = '\0';
    return 0;
}

int vq_meta_parse(const char *buf, size_t len, vq_meta *m, vq_error *err)
{
    vq_error e = {0};
    if (len > VQ_META_MAX)
        return vq_error_set(err, VQ_EINVAL, "metadata is larger than %d bytes", VQ_META_MAX);
    int rc = vq_kv_parse(buf, len, VQ_KV_EOF, &m->kv, NULL, &e);
    if (rc == 0) rc = parse_fields(m, &e);
    if (rc < 0) {
        vq_meta_free(m);
        return vq_error_set(err, rc, "metadata: %s", e.text);
    }
    return 0;
}

static int meta_name(const char *vol, char name[META_NAME_SIZE], vq_error *err)
{
    if (!vq_uuid_valid(vol)) return vq_error_set(err, VQ_EINVAL, "bad volume id");
    snprintf(name, META_NAME_SIZE, "%s.meta", vol); /* 36 + 5 + NUL always fits */
    return 0;
}

int vq_meta_read(int imgfd, const char *vol, vq_meta *m, vq_error *err)
{
    char name[META_NAME_SIZE], *buf;
    size_t len;
    int rc = meta_name(vol, name, err);
    if (rc < 0) return rc;
    rc = vq_fs_read(imgfd, name, VQ_META_MAX, &buf, &len, err);
    if (rc < 0) return rc;
    rc = vq_meta_parse(buf, len, m, err);
    free(buf);
    return rc;
}

static int set_u64(vq_kv *kv, const char *key, uint64_t v, vq_error *err)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v); /* 20 digits at most */
    return vq_kv_set(kv, key, num, err);
}

static int sync_size(vq_meta *m, vq_error *err)
{
    int has_cap = vq_kv_get(&m->kv, "CAP") != NULL, has_size = vq_kv_get(&m->kv, "SIZE") != NULL;
    if (!has_cap && !has_size) return vq_error_set(err, VQ_EINVAL, "no SIZE or CAP key");
    if (has_size && m->capacity % 512 != 0)
        return vq_error_set(err, VQ_EINVAL, "capacity %" PRIu64 " is not a multiple of 512",
                            m->capacity);
    if (has_cap && set_u64(&m->kv, "CAP", m->capacity, err) < 0) return VQ_ENOMEM;
    if (has_size && set_u64(&m->kv, "SIZE", m->capacity / 512, err) < 0) return VQ_ENOMEM;
    return 0;
}

/* Puts the typed fields back into the pairs. */
static int sync_fields(vq_meta *m, vq_error *err)
{
    vq_kv *kv = &m->kv;
    if (!vq_uuid_valid(m->image) || !vq_uuid_valid(m->puuid) ||
        (m->domain[0] && !vq_uuid_valid(m->domain)))
        return vq_error_set(err, VQ_EINVAL, "IMAGE, PUUID or DOMAIN is not a UUID");
    if (m->gen >= GEN_LIMIT) return vq_error_set(err, VQ_EINVAL, "GEN %u out of range", m->gen);
    if (vq_kv_set(kv, "FORMAT", vq_format_name(m->format), err) < 0 ||
        vq_kv_set(kv, "VOLTYPE", vq_voltype_name(m->voltype), err) < 0 ||
        vq_kv_set(kv, "LEGALITY", vq_legality_name(m->legality), err) < 0 ||
        vq_kv_set(kv, "IMAGE", m->image, err) < 0 || vq_kv_set(kv, "PUUID", m->puuid, err) < 0 ||
        (m->domain[0] && vq_kv_set(kv, "DOMAIN", m->domain, err) < 0) ||
        ((m->type != VQ_TYPE_UNKNOWN || vq_kv_get(kv, "TYPE")) &&
         vq_kv_set(kv, "TYPE", NAME_OF(type_names, m->type), err) < 0) ||
        ((m->gen != 0 || vq_kv_get(kv, "GEN")) && set_u64(kv, "GEN", m->gen, err) < 0))
        return err ? err->code : VQ_EINVAL;
    return sync_size(m, err);
}

/* The text m is written as (*buf new, free()), at most VQ_META_MAX bytes. */
static int render(const char *vol, vq_meta *m, char **buf, size_t *len, vq_error *err)
{
    vq_error e = {0};
    int rc = sync_fields(m, &e);
    if (rc < 0) return vq_error_set(err, rc, "volume %s: metadata: %s", vol, e.text);
    *buf = vq_kv_format(&m->kv, VQ_KV_EOF, len);
    if (!*buf) return vq_error_set(err, VQ_ENOMEM, "volume %s: out of memory", vol);
    if (*len <= VQ_META_MAX) return 0;
    free(*buf);
    *buf = NULL;
    return vq_error_set(err, VQ_EINVAL, "volume %s: metadata would be %zu bytes, over %d", vol,
                        *len, VQ_META_MAX);
}

static int meta_write(int imgfd, const char *vol, vq_meta *m, vq_fs_run *run, vq_error *err)
{
    char name[META_NAME_SIZE], *buf;
    size_t len;
    int rc = meta_name(vol, name, err);
    if (rc < 0 || (rc = render(vol, m, &buf, &len, err)) < 0) return rc;
    mode_t mode = META_MODE | VQ_FS_KEEP_MODE; /* an existing file's mode is kept */
    rc = run ? vq_fs_run_write(imgfd, run, name, buf, len, mode, err)
             : vq_fs_write_atomic(imgfd, name, buf, len, mode, err);
    free(buf);
    return rc;
}

unsigned vq_meta_next_gen(unsigned gen)
{
    return (gen + 1) % GEN_LIMIT;
}

/* m came from a parse, which checked every field; a bump changes only the
 * GEN line: its length is the file's as written now, with that line's
 * value (or the line, when absent) replaced. */
int vq_meta_check_bump(const char *vol, const vq_meta *m, vq_error *err)
{
    size_t len;
    char *buf = vq_kv_format(&m->kv, VQ_KV_EOF, &len), next[8];
    if (!buf) return vq_error_set(err, VQ_ENOMEM, "volume %s: out of memory", vol);
    free(buf);
    const char *gen = vq_kv_get(&m->kv, "GEN");
    size_t now = gen ? strlen(gen) : 0, then = (size_t)snprintf(next, sizeof next, "%u",
                                                                 vq_meta_next_gen(m->gen));
    len += then - now + (gen ? 0 : strlen("GEN=\n"));
    if (len <= VQ_META_MAX) return 0;
    return vq_error_set(err, VQ_EINVAL, "volume %s: metadata would be %zu bytes, over %d", vol,
                        len, VQ_META_MAX);
}

int vq_meta_write(int imgfd, const char *vol, vq_meta *m, vq_error *err)
{
    return meta_write(imgfd, vol, m, NULL, err);
}

int vq_meta_write_run(int imgfd, const char *vol, vq_meta *m, vq_fs_run *run, vq_error *err)
{
    return meta_write(imgfd, vol, m, run, err);
}

/* "<uuid>.meta.tmp.<digits>" or "<uuid>.lease.tmp.<digits>", as the atomic
 * writes (vq_fs_run_write, vq_fs_write_atomic) name their temp files. */
static int is_meta_temp(const char *name)
{
    static const char *const suffixes[] = {".meta.tmp.", ".lease.tmp."};
    size_t n = strlen(name);
    if (n <= VQ_UUID_LEN || !vq_uuid_valid_n(name, VQ_UUID_LEN)) return 0;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t s = strlen(suffixes[i]);
        if (n <= VQ_UUID_LEN + s || memcmp(name + VQ_UUID_LEN, suffixes[i], s) != 0) continue;
        const char *p = name + VQ_UUID_LEN + s;
        while (*p >= '0' && *p <= '9') p++;
        return *p == '\0';
    }
    return 0;
}

typedef struct removed {
    int imgfd, n;
} removed;

static int remove_temp(const char *name, void *arg)
{
    removed *r = arg;
    if (is_meta_temp(name) && unlinkat(r->imgfd, name, 0) == 0) r->n++;
    return 0;
}

int vq_meta_remove_temps(int imgfd)
{
    removed r = {imgfd, 0};
    return vq_fs_each_name(imgfd, remove_temp, &r) < 0 ? -1 : r.n;
}

int vq_meta_init(vq_meta *m, int domain_version, vq_error *err)
{
    memset(m, 0, sizeof *m);
    m->format = VQ_FORMAT_COW;
    m->voltype = VQ_VOLTYPE_LEAF;
    m->legality = VQ_LEGAL;
    m->type = VQ_TYPE_SPARSE;
    memcpy(m->puuid, VQ_UUID_BLANK, VQ_UUID_SIZE);
    int v5 = domain_version >= 5;
    vq_error e = {0};
    if (set_u64(&m->kv, "CTIME", (uint64_t)time(NULL), &e) < 0 ||
        vq_kv_set(&m->kv, "DISKTYPE", "DATA", &e) < 0 ||
        vq_kv_set(&m->kv, v5 ? "CAP" : "SIZE", "0", &e) < 0 ||
        vq_kv_set(&m->kv, v5 ? "SEQ" : "MTIME", "0", &e) < 0) {
        vq_kv_free(&m->kv);
        return vq_error_set(err, e.code, "new metadata: %s", e.text);
    }
    return 0;
}

int vq_meta_set_alias(vq_meta *m, const char *alias, vq_error *err)
{
    json_t *o = json_pack("{s:s, s:s}", "DiskAlias", alias, "DiskDescription", "");
    /* JSON_PRESERVE_ORDER keeps DiskAlias first, as oVirt writes it. */
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!s) return vq_error_set(err, VQ_EINVAL, "alias is not valid UTF-8");
    int rc = 0;
    if (strlen(s) > VQ_DESCRIPTION_MAX)
        rc = vq_error_set(err, VQ_EINVAL, "alias is too long: DESCRIPTION over %d bytes",
                          VQ_DESCRIPTION_MAX);
    else if ((rc = vq_kv_set(&m->kv, "DESCRIPTION", s, err)) == 0)
        set_alias_text(m->alias, alias);
    free(s);
    return rc;
}

void vq_meta_free(vq_meta *m)
{
    if (!m) return;
    vq_kv_free(&m->kv);
    memset(m, 0, sizeof *m);
}
