/* Volume .meta parsing: sizes on V4 and V5, GEN, aliases, errors. */
#include "t.h"
#include "volq/meta.h"

#define IMG "6a1b2c3d-0000-4000-8000-00000000a001"
#define PARENT "6a1b2c3d-0000-4000-8000-00000000b001"
#define SD "6a1b2c3d-0000-4000-8000-00000000c001"

#define V4_HEAD "CTIME=1500000000\n"
#define V4_TAIL                                                                           \
    "DISKTYPE=DATA\nDOMAIN=" SD "\nFORMAT=COW\nGEN=7\nIMAGE=" IMG "\nLEGALITY=LEGAL\n"    \
    "MTIME=0\nPUUID=" PARENT "\nSIZE=2097152\nTYPE=SPARSE\nVOLTYPE=LEAF\nEOF\n"

static int parse(const char *s, vq_meta *m, vq_error *e)
{
    memset(m, 0, sizeof *m);
    return vq_meta_parse(s, strlen(s), m, e);
}

static void test_meta_parse_v4(void)
{
    vq_meta m;
    vq_error e = {0};
    const char *s =
        V4_HEAD "DESCRIPTION={\"DiskAlias\":\"vm-001_Disk1\",\"DiskDescription\":\"\"}\n" V4_TAIL;
    CHECK_INT(parse(s, &m, &e), 0);
    CHECK_INT(m.format, VQ_FORMAT_COW);
    CHECK_INT(m.voltype, VQ_VOLTYPE_LEAF);
    CHECK_INT(m.legality, VQ_LEGAL);
    CHECK_INT(m.type, VQ_TYPE_SPARSE);
    CHECK_STR(m.image, IMG);
    CHECK_STR(m.domain, SD);
    CHECK_STR(m.puuid, PARENT);
    CHECK_INT(m.capacity, 1073741824ull);
    CHECK_INT(m.gen, 7);
    CHECK_STR(m.alias, "vm-001_Disk1");
    CHECK_STR(vq_kv_get(&m.kv, "MTIME"), "0");
    vq_meta_free(&m);
    vq_meta_free(NULL);
}

static void test_meta_parse_v5_cap_and_no_gen(void)
{
    vq_meta m;
    const char *s = "CAP=5368709120\nCTIME=1\nDESCRIPTION=plain old text\nFORMAT=RAW\nIMAGE=" IMG
                    "\nLEGALITY=ILLEGAL\nPUUID=" VQ_UUID_BLANK "\nSEQ=0\nVOLTYPE=INTERNAL\nEOF\n";
    CHECK_INT(parse(s, &m, NULL), 0);
    CHECK_INT(m.capacity, 5368709120ull);
    CHECK_INT(m.gen, 0);
    CHECK_INT(m.format, VQ_FORMAT_RAW);
    CHECK_INT(m.legality, VQ_ILLEGAL);
    CHECK_INT(m.voltype, VQ_VOLTYPE_INTERNAL);
    CHECK_INT(m.type, VQ_TYPE_UNKNOWN);
    CHECK_STR(m.domain, "");
    CHECK_STR(m.puuid, VQ_UUID_BLANK);
    CHECK_STR(m.alias, ""); /* plain text has no alias */
    vq_meta_free(&m);
}

/* The alias is taken when its string is complete, even if the object is cut. */
static void test_meta_alias_from_truncated_json(void)
{
    static const struct { const char *desc, *alias; } v[] = {
        {"{\"DiskAlias\":\"vm-7_Disk1\",\"DiskDescription\":\"a very long text that was cu",
         "vm-7_Disk1"},
        {"{\"DiskDescription\":\"x\", \"DiskAlias\" : \"second\"", "second"},
        {"{\"DiskAlias\":\"cut in the mid", ""},
        {"{\"DiskAlias\":\"esc \\\"q\\\" \\u00e9\\n\"}", "esc \"q\" \xc3\xa9?"},
        {"{\"DiskDescription\":\"has \\\"DiskAlias\\\":\\\"fake\\\"\"}", ""},
        {"{\"DiskAlias\":42}", ""},
        {"{\"DiskAlias\":\"nul \\u0000 inside\"}", ""},
        {"  {\"DiskAlias\":\"ws\"}", "ws"},
        {"", ""},
        {"{", ""},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "DESCRIPTION=%s\n" V4_TAIL, v[i].desc);
        vq_meta m;
        vq_error e = {0};
        CHECK_INT(parse(buf, &m, &e), 0);
        CHECK_STR(m.alias, v[i].alias);
        vq_meta_free(&m);
    }
}

/* A hostile alias cannot reach a terminal or a log line as control bytes
 * (found by fuzz/fuzz_meta.c: a raw DEL inside the JSON string). */
static void test_meta_alias_control_characters_replaced(void)
{
    static const struct { const char *desc, *alias; } v[] = {
        {"{\"DiskAlias\":\"evil\\u001b[31mRED\\u0007\\r\\nx\"}", "evil?[31mRED???x"},
        {"{\"DiskAlias\":\"del\x7f\"}", "del?"},
        {"{\"DiskAlias\":\"csi\\u009b2J \\u00a0ok\"}", "csi??2J \xc2\xa0ok"},
        {"{\"DiskAlias\":\"tab\\tend\"}", "tab?end"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "DESCRIPTION=%s\n" V4_TAIL, v[i].desc);
        vq_meta m;
        vq_error e = {0};
        CHECK_INT(parse(buf, &m, &e), 0);
        CHECK_STR(m.alias, v[i].alias);
        vq_meta_free(&m);
    }
}

static void test_meta_parse_errors(void)
{
    static const struct { const char *in, *text; } v[] = {
        {"FORMAT=COW\n", "metadata: no EOF line"},
        {"IMAGE=" IMG "\nEOF\n", "metadata: no FORMAT"},
        {"FORMAT=QCOW\nEOF\n", "metadata: bad FORMAT \"QCOW\""},
        {"FORMAT=COW\nVOLTYPE=LEAF\nLEGALITY=LEGAL\nIMAGE=" IMG "\nPUUID=" PARENT "\nEOF\n",
         "metadata: no SIZE or CAP"},
        {"FORMAT=COW\nVOLTYPE=LEAF\nLEGALITY=LEGAL\nIMAGE=../../etc\nEOF\n",
         "metadata: IMAGE is not a UUID"},
        {"FORMAT=COW\nVOLTYPE=LEAF\nLEGALITY=LEGAL\nIMAGE=" IMG "\nPUUID=" PARENT
         "\nSIZE=1\nGEN=1000\nEOF\n", "metadata: bad GEN"},
        {"FORMAT=COW\nVOLTYPE=LEAF\nLEGALITY=LEGAL\nIMAGE=" IMG "\nPUUID=" PARENT
         "\nSIZE=-1\nEOF\n", "metadata: bad SIZE"},
        {"FORMAT=COW\nVOLTYPE=LEAF\nLEGALITY=LEGAL\nIMAGE=" IMG "\nPUUID=" PARENT
         "\nSIZE=36028797018963968\nEOF\n", "metadata: bad SIZE"},
        {"FORMAT=COW\nVOLTYPE=LEAF\nLEGALITY=LEGAL\nIMAGE=" IMG "\nPUUID=" PARENT
         "\nSIZE=1\nTYPE=THICK\nEOF\n", "metadata: bad TYPE \"THICK\""},
        {"\x7f\x45\x4c\x46\x02\x01=\n", "metadata: line 1: bad key"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        vq_meta m;
        vq_error e = {0};
        CHECK_INT(parse(v[i].in, &m, &e), VQ_EINVAL);
        CHECK_STR(e.text, v[i].text);
        CHECK_INT(m.kv.n, 0);
    }
}

static void test_meta_parse_refuses_over_512_bytes(void)
{
    char big[600];
    memset(big, 'A', sizeof big);
    vq_meta m = {0};
    vq_error e = {0};
    CHECK_INT(vq_meta_parse(big, sizeof big, &m, &e), VQ_EINVAL);
    CHECK_STR(e.text, "metadata is larger than 512 bytes");
}

static void test_meta_init_sets_size_keys_by_version(void)
{
    vq_meta m;
    CHECK_INT(vq_meta_init(&m, 4, NULL), 0);
    CHECK_STR(vq_kv_get(&m.kv, "SIZE"), "0");
    CHECK_STR(vq_kv_get(&m.kv, "MTIME"), "0");
    CHECK_STR(vq_kv_get(&m.kv, "DISKTYPE"), "DATA");
    CHECK(vq_kv_get(&m.kv, "CAP") == NULL);
    CHECK(vq_kv_get(&m.kv, "CTIME") != NULL);
    CHECK_STR(m.puuid, VQ_UUID_BLANK);
    vq_meta_free(&m);
    CHECK_INT(vq_meta_init(&m, 5, NULL), 0);
    CHECK_STR(vq_kv_get(&m.kv, "CAP"), "0");
    CHECK_STR(vq_kv_get(&m.kv, "SEQ"), "0");
    CHECK(vq_kv_get(&m.kv, "SIZE") == NULL);
    vq_meta_free(&m);
}

static void test_meta_set_alias(void)
{
    vq_meta m;
    vq_error e = {0};
    CHECK_INT(vq_meta_init(&m, 4, NULL), 0);
    CHECK_INT(vq_meta_set_alias(&m, "web \"01\"", &e), 0);
    CHECK_STR(vq_kv_get(&m.kv, "DESCRIPTION"),
              "{\"DiskAlias\":\"web \\\"01\\\"\",\"DiskDescription\":\"\"}");
    CHECK_STR(m.alias, "web \"01\"");
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_INT(vq_meta_set_alias(&m, longname, &e), VQ_EINVAL);
    CHECK_STR(e.text, "alias is too long: DESCRIPTION over 210 bytes");
    CHECK_STR(m.alias, "web \"01\"");
    vq_meta_free(&m);
}

static void test_meta_names(void)
{
    CHECK_STR(vq_format_name(VQ_FORMAT_RAW), "RAW");
    CHECK_STR(vq_voltype_name(VQ_VOLTYPE_SHARED), "SHARED");
    CHECK_STR(vq_legality_name(VQ_FAKE), "FAKE");
    CHECK_STR(vq_format_name((enum vq_format)9), "?");
}

T_MAIN(T(test_meta_parse_v4), T(test_meta_parse_v5_cap_and_no_gen),
       T(test_meta_alias_from_truncated_json), T(test_meta_alias_control_characters_replaced),
       T(test_meta_parse_errors),
       T(test_meta_parse_refuses_over_512_bytes), T(test_meta_init_sets_size_keys_by_version),
       T(test_meta_set_alias), T(test_meta_names))
