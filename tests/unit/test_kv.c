/* KEY=VALUE parsing and formatting (volume .meta and dom_md/metadata). */
#include "t.h"
#include "volq/kv.h"

#define SD "3f2504e0-4f89-11d3-9a0c-0305e82c3301"

static int parse(const char *s, unsigned flags, vq_kv *kv, char ck[41], vq_error *e)
{
    return vq_kv_parse(s, strlen(s), flags, kv, ck, e);
}

static void test_kv_parse_keeps_file_order_and_values(void)
{
    vq_kv kv = {0};
    vq_error e = {0};
    const char *s = "VOLTYPE=LEAF\nDESCRIPTION={\"a\":\"b=c\"}\nEMPTY=\nEOF\ngarbage after EOF";
    CHECK_INT(parse(s, VQ_KV_EOF, &kv, NULL, &e), 0);
    REQUIRE(kv.n == 3);
    CHECK_STR(kv.v[0].key, "VOLTYPE");
    CHECK_STR(kv.v[1].key, "DESCRIPTION");
    CHECK_STR(vq_kv_get(&kv, "DESCRIPTION"), "{\"a\":\"b=c\"}");
    CHECK_STR(vq_kv_get(&kv, "EMPTY"), "");
    CHECK(vq_kv_get(&kv, "MISSING") == NULL);
    vq_kv_free(&kv);
    CHECK_INT(kv.n, 0);
    vq_kv_free(NULL);
}

static void test_kv_parse_errors_name_the_line(void)
{
    static const struct { const char *in; unsigned flags; const char *text; } cases[] = {
        {"A=1\nB=2\n", VQ_KV_EOF, "no EOF line"},
        {"A=1\nnoequals\nEOF\n", VQ_KV_EOF, "line 2: no '='"},
        {"=1\nEOF\n", VQ_KV_EOF, "line 1: bad key"},
        {"A-B=1\nEOF\n", VQ_KV_EOF, "line 1: bad key"},
        {"A=1\nA=2\nEOF\n", VQ_KV_EOF, "line 2: duplicate key A"},
        {"A=1\n\nEOF\n", VQ_KV_EOF, "line 2: no '='"},
        {"EOF\n", 0, "line 1: no '='"},
        {"A=1\n_SHA_CKSUM=xyz\n", VQ_KV_CKSUM, "line 2: _SHA_CKSUM is not 40 hex digits"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vq_kv kv = {0};
        vq_error e = {0};
        CHECK_INT(parse(cases[i].in, cases[i].flags, &kv, NULL, &e), VQ_EINVAL);
        CHECK_INT(e.code, VQ_EINVAL);
        CHECK_STR(e.text, cases[i].text);
        CHECK_INT(kv.n, 0);
        CHECK(kv.v == NULL);
    }
}

static void test_kv_parse_rejects_nul_byte(void)
{
    vq_kv kv = {0};
    vq_error e = {0};
    const char s[] = "A=1\nB=x\0y\nEOF\n";
    CHECK_INT(vq_kv_parse(s, sizeof s - 1, VQ_KV_EOF, &kv, NULL, &e), VQ_EINVAL);
    CHECK_STR(e.text, "line 2: NUL byte");
}

static void test_kv_parse_too_many_pairs(void)
{
    char buf[8192];
    size_t pos = 0;
    for (int i = 0; i <= VQ_KV_MAX_PAIRS; i++)
        pos += (size_t)snprintf(buf + pos, sizeof buf - pos, "K%d=v\n", i);
    vq_kv kv = {0};
    vq_error e = {0};
    CHECK_INT(vq_kv_parse(buf, pos, 0, &kv, NULL, &e), VQ_EINVAL);
    CHECK_STR(e.text, "line 129: more than 128 keys");
}

static void test_kv_checksum_is_vdsm_seal(void)
{
    vq_kv kv = {0};
    char ck[41];
    /* Unsorted on purpose: the seal sorts by key. */
    const char *s = "VERSION=4\nSDUUID=" SD "\nCLASS=Data\nROLE=Regular\n";
    CHECK_INT(parse(s, VQ_KV_CKSUM, &kv, ck, NULL), 0);
    CHECK_STR(ck, "");
    char sum[41];
    vq_kv_checksum(&kv, sum);
    /* sha1("CLASS=DataROLE=RegularSDUUID=" SD "VERSION=4") */
    CHECK_STR(sum, "18500053effd229407d5c26bf74994a5d56c0149");
    vq_kv_free(&kv);
}

static void test_kv_cksum_line_split_off(void)
{
    vq_kv kv = {0};
    char ck[41];
    const char *s = "CLASS=Data\n_SHA_CKSUM=18500053effd229407d5c26bf74994a5d56c0149\n";
    CHECK_INT(parse(s, VQ_KV_CKSUM, &kv, ck, NULL), 0);
    CHECK_INT(kv.n, 1);
    CHECK_STR(ck, "18500053effd229407d5c26bf74994a5d56c0149");
    CHECK(vq_kv_get(&kv, "_SHA_CKSUM") == NULL);
    vq_kv_free(&kv);
    const char *two = "_SHA_CKSUM=18500053effd229407d5c26bf74994a5d56c0149\n"
                      "_SHA_CKSUM=18500053effd229407d5c26bf74994a5d56c0149\n";
    vq_error e = {0};
    CHECK_INT(parse(two, VQ_KV_CKSUM, &kv, ck, &e), VQ_EINVAL);
    CHECK_STR(e.text, "line 2: second _SHA_CKSUM");
    CHECK_STR(ck, "");
}

static void test_kv_format_sorts_and_seals(void)
{
    vq_kv kv = {0};
    CHECK_INT(parse("VERSION=4\nSDUUID=" SD "\nCLASS=Data\nROLE=Regular\n", 0, &kv, NULL, NULL), 0);
    size_t len = 0;
    char *out = vq_kv_format(&kv, VQ_KV_CKSUM, &len);
    REQUIRE(out);
    CHECK_STR(out, "CLASS=Data\nROLE=Regular\nSDUUID=" SD "\nVERSION=4\n"
                   "_SHA_CKSUM=18500053effd229407d5c26bf74994a5d56c0149\n");
    CHECK_INT(len, strlen(out));
    free(out);
    out = vq_kv_format(&kv, VQ_KV_EOF, &len);
    REQUIRE(out);
    CHECK_STR(out, "CLASS=Data\nROLE=Regular\nSDUUID=" SD "\nVERSION=4\nEOF\n");
    free(out);
    vq_kv_free(&kv);
}

static void test_kv_set_get_del(void)
{
    vq_kv kv = {0};
    vq_error e = {0};
    CHECK_INT(vq_kv_set(&kv, "B", "2", &e), 0);
    CHECK_INT(vq_kv_set(&kv, "A", "1", &e), 0);
    CHECK_INT(vq_kv_set(&kv, "B", "3", &e), 0);
    CHECK_INT(kv.n, 2);
    CHECK_STR(vq_kv_get(&kv, "B"), "3");
    CHECK_INT(vq_kv_set(&kv, "C", "x\ny", &e), VQ_EINVAL);
    CHECK_STR(e.text, "C: value has a newline");
    vq_error_clear(&e);
    CHECK_INT(vq_kv_set(&kv, "C D", "x", &e), VQ_EINVAL);
    CHECK_STR(e.text, "bad key \"C D\"");
    vq_kv_del(&kv, "B");
    vq_kv_del(&kv, "nope");
    CHECK_INT(kv.n, 1);
    CHECK(vq_kv_get(&kv, "B") == NULL);
    CHECK_STR(vq_kv_get(&kv, "A"), "1");
    vq_kv_free(&kv);
}

static void test_kv_last_line_without_newline(void)
{
    vq_kv kv = {0};
    CHECK_INT(parse("A=1\nEOF", VQ_KV_EOF, &kv, NULL, NULL), 0);
    CHECK_INT(kv.n, 1);
    vq_kv_free(&kv);
}

T_MAIN(T(test_kv_parse_keeps_file_order_and_values), T(test_kv_parse_errors_name_the_line),
       T(test_kv_parse_rejects_nul_byte), T(test_kv_parse_too_many_pairs),
       T(test_kv_checksum_is_vdsm_seal), T(test_kv_cksum_line_split_off),
       T(test_kv_format_sorts_and_seals), T(test_kv_set_get_del),
       T(test_kv_last_line_without_newline))
