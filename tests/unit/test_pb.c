/*
 * test_pb.c - the protobuf encoder against golden bytes, and a hand-built
 * Profile decoded by protoc.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pb.h"
#include "unit_util.h"

/* Compare what pb holds with the expected bytes, then empty it. */
#define EXPECT_BYTES(pb, ...)                                                                      \
	do {                                                                                       \
		static const uint8_t want_[] = {__VA_ARGS__};                                      \
		assert_int_equal((pb)->err, 0);                                                    \
		assert_int_equal((pb)->buf.len, sizeof(want_));                                    \
		assert_memory_equal((pb)->buf.data, want_, sizeof(want_));                         \
		(pb)->buf.len = 0;                                                                 \
	} while (0)

static void test_varint(void **state)
{
	(void)state;
	struct ht_pb pb;
	ht_pb_init(&pb);
	ht_pb_varint(&pb, 0);
	EXPECT_BYTES(&pb, 0x00);
	ht_pb_varint(&pb, 1);
	EXPECT_BYTES(&pb, 0x01);
	ht_pb_varint(&pb, 127);
	EXPECT_BYTES(&pb, 0x7f);
	ht_pb_varint(&pb, 128);
	EXPECT_BYTES(&pb, 0x80, 0x01);
	ht_pb_varint(&pb, 300);
	EXPECT_BYTES(&pb, 0xac, 0x02);
	ht_pb_varint(&pb, UINT64_MAX);
	EXPECT_BYTES(&pb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
	assert_int_equal(ht_pb_varint_size(0), 1);
	assert_int_equal(ht_pb_varint_size(127), 1);
	assert_int_equal(ht_pb_varint_size(128), 2);
	assert_int_equal(ht_pb_varint_size(UINT64_MAX), 10);
	ht_pb_free(&pb);
}

static void test_scalars(void **state)
{
	(void)state;
	struct ht_pb pb;
	ht_pb_init(&pb);
	ht_pb_key(&pb, 1, HT_PB_VARINT);
	EXPECT_BYTES(&pb, 0x08);
	ht_pb_key(&pb, 16, HT_PB_BYTES);
	EXPECT_BYTES(&pb, 0x82, 0x01);
	ht_pb_uint64(&pb, 1, 150);
	EXPECT_BYTES(&pb, 0x08, 0x96, 0x01);
	ht_pb_uint64(&pb, 2, 0);
	EXPECT_BYTES(&pb, 0x10, 0x00);
	/* int64 is two's complement, ten bytes for negatives (not zigzag). */
	ht_pb_int64(&pb, 3, -1);
	EXPECT_BYTES(&pb, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
	ht_pb_bool(&pb, 7, true);
	EXPECT_BYTES(&pb, 0x38, 0x01);
	ht_pb_bool(&pb, 7, false);
	EXPECT_BYTES(&pb, 0x38, 0x00);

	/* The _opt variants write nothing for zero. */
	ht_pb_uint64_opt(&pb, 1, 0);
	ht_pb_int64_opt(&pb, 1, 0);
	ht_pb_bool_opt(&pb, 1, false);
	assert_int_equal(pb.buf.len, 0);
	ht_pb_uint64_opt(&pb, 1, 5);
	ht_pb_int64_opt(&pb, 2, 6);
	ht_pb_bool_opt(&pb, 3, true);
	EXPECT_BYTES(&pb, 0x08, 0x05, 0x10, 0x06, 0x18, 0x01);
	ht_pb_free(&pb);
}

static void test_bytes(void **state)
{
	(void)state;
	struct ht_pb pb;
	ht_pb_init(&pb);
	ht_pb_bytes(&pb, 6, "abc", 3);
	EXPECT_BYTES(&pb, 0x32, 0x03, 'a', 'b', 'c');
	ht_pb_bytes(&pb, 6, "", 0);
	EXPECT_BYTES(&pb, 0x32, 0x00);
	ht_pb_bytes(&pb, 6, NULL, 0);
	EXPECT_BYTES(&pb, 0x32, 0x00);
	ht_pb_bytes(&pb, 1, "\0\1", 2);
	EXPECT_BYTES(&pb, 0x0a, 0x02, 0x00, 0x01);

	char big[300];
	memset(big, 'x', sizeof(big));
	ht_pb_bytes(&pb, 6, big, sizeof(big));
	assert_int_equal(pb.buf.len, 1 + 2 + 300);
	assert_int_equal(pb.buf.data[0], 0x32);
	assert_int_equal(pb.buf.data[1], 0xac);
	assert_int_equal(pb.buf.data[2], 0x02);
	assert_memory_equal(pb.buf.data + 3, big, 300);
	ht_pb_free(&pb);
}

static void test_repeated(void **state)
{
	(void)state;
	struct ht_pb pb;
	ht_pb_init(&pb);
	static const int64_t u[] = {1, 2, 300};
	/* Packed once there are more than two. */
	ht_pb_int64s(&pb, 1, u, 3);
	EXPECT_BYTES(&pb, 0x0a, 0x04, 0x01, 0x02, 0xac, 0x02);
	/* One key each for one or two. */
	ht_pb_int64s(&pb, 1, u, 2);
	EXPECT_BYTES(&pb, 0x08, 0x01, 0x08, 0x02);
	ht_pb_int64s(&pb, 1, u, 0);
	assert_int_equal(pb.buf.len, 0);

	static const uint32_t w[] = {5, 128, 7, 1};
	ht_pb_uint32s(&pb, 1, w, 4);
	EXPECT_BYTES(&pb, 0x0a, 0x05, 0x05, 0x80, 0x01, 0x07, 0x01);

	static const int64_t s[] = {-1, 0, 1};
	ht_pb_int64s(&pb, 2, s, 3);
	EXPECT_BYTES(&pb, 0x12, 0x0c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
	             0x00, 0x01);
	ht_pb_free(&pb);
}

static void test_nested(void **state)
{
	(void)state;
	struct ht_pb pb;
	ht_pb_init(&pb);

	/* Something before the message stays in place. */
	ht_pb_uint64(&pb, 9, 1);
	size_t s = ht_pb_begin(&pb);
	assert_int_equal(pb.nest, 1);
	ht_pb_uint64(&pb, 1, 150);
	ht_pb_end(&pb, 3, s);
	assert_int_equal(pb.nest, 0);
	EXPECT_BYTES(&pb, 0x48, 0x01, 0x1a, 0x03, 0x08, 0x96, 0x01);

	/* Empty message. */
	s = ht_pb_begin(&pb);
	ht_pb_end(&pb, 2, s);
	EXPECT_BYTES(&pb, 0x12, 0x00);

	/* Two levels: Location { id: 1, line { function_id: 2, line: 3 } } */
	s = ht_pb_begin(&pb);
	ht_pb_uint64(&pb, HT_PB_LOCATION_ID, 1);
	size_t l = ht_pb_begin(&pb);
	ht_pb_uint64(&pb, HT_PB_LINE_FUNCTION_ID, 2);
	ht_pb_int64(&pb, HT_PB_LINE_LINE, 3);
	ht_pb_end(&pb, HT_PB_LOCATION_LINE, l);
	ht_pb_end(&pb, HT_PB_PROFILE_LOCATION, s);
	EXPECT_BYTES(&pb, 0x22, 0x08, 0x08, 0x01, 0x22, 0x04, 0x08, 0x02, 0x10, 0x03);

	/* A body over 127 bytes needs a two-byte length in front. */
	s = ht_pb_begin(&pb);
	for (int i = 0; i < 100; i++)
		ht_pb_uint64(&pb, 1, 1);
	ht_pb_end(&pb, 2, s);
	assert_int_equal(pb.buf.len, 3 + 200);
	assert_int_equal(pb.buf.data[0], 0x12);
	assert_int_equal(pb.buf.data[1], 0xc8);
	assert_int_equal(pb.buf.data[2], 0x01);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(pb.buf.data[3 + 2 * i], 0x08);
		assert_int_equal(pb.buf.data[4 + 2 * i], 0x01);
	}
	ht_pb_free(&pb);
}

static void test_buf(void **state)
{
	(void)state;
	struct ht_buf b = {0};
	assert_int_equal(ht_buf_append(&b, "hello", 5), 0);
	assert_int_equal(ht_buf_append(&b, NULL, 0), 0);
	char big[100000];
	memset(big, 7, sizeof(big));
	assert_int_equal(ht_buf_append(&b, big, sizeof(big)), 0);
	assert_int_equal(b.len, 5 + sizeof(big));
	assert_true(b.cap >= b.len);
	assert_memory_equal(b.data, "hello", 5);
	assert_memory_equal(b.data + 5, big, sizeof(big));
	assert_int_equal(ht_buf_reserve(&b, SIZE_MAX - 8), -ENOMEM);
	ht_buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
}

/* A minimal Profile, built field by field, as protoc reads it. */
static void test_protoc_decodes(void **state)
{
	(void)state;
	struct ht_pb pb;
	ht_pb_init(&pb);
	size_t s = ht_pb_begin(&pb);
	ht_pb_int64(&pb, HT_PB_VALUETYPE_TYPE, 1);
	ht_pb_int64(&pb, HT_PB_VALUETYPE_UNIT, 2);
	ht_pb_end(&pb, HT_PB_PROFILE_SAMPLE_TYPE, s);

	s = ht_pb_begin(&pb);
	static const uint32_t locs[] = {1, 2, 3};
	ht_pb_uint32s(&pb, HT_PB_SAMPLE_LOCATION_ID, locs, 3);
	static const int64_t vals[] = {-5};
	ht_pb_int64s(&pb, HT_PB_SAMPLE_VALUE, vals, 1);
	size_t l = ht_pb_begin(&pb);
	ht_pb_int64(&pb, HT_PB_LABEL_KEY, 2);
	ht_pb_int64(&pb, HT_PB_LABEL_NUM, 4096);
	ht_pb_end(&pb, HT_PB_SAMPLE_LABEL, l);
	ht_pb_end(&pb, HT_PB_PROFILE_SAMPLE, s);

	s = ht_pb_begin(&pb);
	ht_pb_uint64(&pb, HT_PB_MAPPING_ID, 1);
	ht_pb_uint64(&pb, HT_PB_MAPPING_MEMORY_START, 0x400000);
	ht_pb_bool(&pb, HT_PB_MAPPING_HAS_FUNCTIONS, true);
	ht_pb_end(&pb, HT_PB_PROFILE_MAPPING, s);

	ht_pb_bytes(&pb, HT_PB_PROFILE_STRING_TABLE, "", 0);
	ht_pb_bytes(&pb, HT_PB_PROFILE_STRING_TABLE, "objects", 7);
	ht_pb_bytes(&pb, HT_PB_PROFILE_STRING_TABLE, "count", 5);
	ht_pb_int64(&pb, HT_PB_PROFILE_TIME_NANOS, 1234567890123LL);
	static const int64_t comments[] = {1, 2};
	ht_pb_int64s(&pb, HT_PB_PROFILE_COMMENT, comments, 2);
	assert_int_equal(pb.err, 0);
	assert_int_equal(pb.nest, 0);

	char *t = unit_protoc_decode(pb.buf.data, pb.buf.len, "test_pb");
	static const char want[] = "sample_type {\n"
	                           "  type: 1\n"
	                           "  unit: 2\n"
	                           "}\n"
	                           "sample {\n"
	                           "  location_id: 1\n"
	                           "  location_id: 2\n"
	                           "  location_id: 3\n"
	                           "  value: -5\n"
	                           "  label {\n"
	                           "    key: 2\n"
	                           "    num: 4096\n"
	                           "  }\n"
	                           "}\n"
	                           "mapping {\n"
	                           "  id: 1\n"
	                           "  memory_start: 4194304\n"
	                           "  has_functions: true\n"
	                           "}\n"
	                           "string_table: \"\"\n"
	                           "string_table: \"objects\"\n"
	                           "string_table: \"count\"\n"
	                           "time_nanos: 1234567890123\n"
	                           "comment: 1\n"
	                           "comment: 2\n";
	assert_string_equal(t, want);
	free(t);
	ht_pb_free(&pb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_varint),         cmocka_unit_test(test_scalars),
	        cmocka_unit_test(test_bytes),          cmocka_unit_test(test_repeated),
	        cmocka_unit_test(test_nested),         cmocka_unit_test(test_buf),
	        cmocka_unit_test(test_protoc_decodes),
	};
	return cmocka_run_group_tests(tests, unit_setup_mem, NULL);
}
