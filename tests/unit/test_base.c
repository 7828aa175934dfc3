/* Unit tests of the base helpers: errors and UUIDs. */
#include "t.h"
#include "volq/error.h"
#include "volq/text.h"
#include "volq/uuid.h"

static void test_error_keeps_first(void)
{
    vq_error e = {0};
    CHECK_INT(vq_error_set(&e, VQ_EINVAL, "disk %s: bad", "x"), VQ_EINVAL);
    CHECK_INT(vq_error_set(&e, VQ_EIO, "second"), VQ_EIO);
    CHECK_INT(e.code, VQ_EINVAL);
    CHECK_STR(e.text, "disk x: bad");
    vq_error_prefix(&e, "job %d", 42);
    CHECK_STR(e.text, "job 42: disk x: bad");
    CHECK_INT(vq_error_set(NULL, VQ_EIO, "ignored"), VQ_EIO);
}

static void test_error_one_line(void)
{
    vq_error e = {0};
    vq_error_set(&e, VQ_ESPAWN, "qemu-img: a\nb\r\n");
    CHECK(strchr(e.text, '\n') == NULL);
    CHECK_STR(vq_strerror(VQ_ENOENT), "not found");
    CHECK_STR(vq_strerror(-999), "unknown error");
}

static void test_uuid_valid(void)
{
    CHECK(vq_uuid_valid("3f2504e0-4f89-11d3-9a0c-0305e82c3301"));
    CHECK(vq_uuid_valid(VQ_UUID_BLANK));
    CHECK(!vq_uuid_valid("3F2504E0-4F89-11D3-9A0C-0305E82C3301"));
    CHECK(!vq_uuid_valid("3f2504e0-4f89-11d3-9a0c-0305e82c330"));
    CHECK(!vq_uuid_valid("3f2504e0-4f89-11d3-9a0c-0305e82c33011"));
    CHECK(!vq_uuid_valid("../../etc/passwd"));
    CHECK(!vq_uuid_valid("3f2504e0x4f89-11d3-9a0c-0305e82c3301"));
    CHECK(!vq_uuid_valid(""));
    CHECK(!vq_uuid_valid(NULL));
    CHECK(!vq_uuid_valid_n("3f2504e0-4f89-11d3-9a0c-0305e82c3301", 35));
}

static void test_uuid_new_is_valid_and_unique(void)
{
    char a[VQ_UUID_SIZE], b[VQ_UUID_SIZE];
    vq_uuid_new(a);
    vq_uuid_new(b);
    CHECK(vq_uuid_valid(a));
    CHECK(vq_uuid_valid(b));
    CHECK(strcmp(a, b) != 0);
}

/* One line of valid UTF-8: controls to ' ', bad bytes to '?', a character
 * that does not fit left out whole, in place too. */
static void test_text_clean(void)
{
    char out[16];
    CHECK_INT((int)vq_text_clean(out, sizeof out, "a\tb\x7f\xff\xc3\xa9"), 7);
    CHECK_STR(out, "a b ?\xc3\xa9");
    /* overlong, surrogate, past U+10FFFF, a stray 0xF5 lead byte */
    CHECK_INT((int)vq_text_clean(out, sizeof out, "\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xf5\x80"), 11);
    CHECK_STR(out, "???????????");
    CHECK_INT((int)vq_text_clean(out, 4, "ab\xc3\xa9"), 2); /* 3 bytes of room: no half é */
    CHECK_STR(out, "ab");
    char s[] = "x\ny\xc3";
    CHECK_INT((int)vq_text_clean(s, sizeof s, s), 4);
    CHECK_STR(s, "x y?");
    CHECK_INT((int)vq_text_clean(out, 0, "abc"), 0);
}

T_MAIN(T(test_text_clean), T(test_error_keeps_first), T(test_error_one_line), T(test_uuid_valid),
       T(test_uuid_new_is_valid_and_unique))
