/*
 * pb.h - a tiny protocol buffers encoder, enough for profile.proto.
 *
 * Output goes into an ht_buf (below). Errors are sticky: every writer
 * returns nothing, and the first allocation failure is kept in pb->err and
 * turns later writes into no-ops, so callers check once at the end.
 *
 * Nested messages need no size pre-pass: ht_pb_begin() remembers where the
 * body starts, and ht_pb_end() writes the key and length after the body and
 * rotates them in front of it.
 */
#ifndef HT_PB_H
#define HT_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer in ht_mem memory. */
struct ht_buf {
	uint8_t *data;
	size_t len, cap;
};
int ht_buf_reserve(struct ht_buf *b, size_t extra); /* 0 or -ENOMEM */
int ht_buf_append(struct ht_buf *b, const void *p, size_t n);
void ht_buf_free(struct ht_buf *b);

/* Wire types. */
enum {
	HT_PB_VARINT = 0,
	HT_PB_BYTES = 2,
};

/* perftools.profiles field numbers, named after message and field. */
enum {
	HT_PB_PROFILE_SAMPLE_TYPE = 1,          /* repeated ValueType */
	HT_PB_PROFILE_SAMPLE = 2,               /* repeated Sample */
	HT_PB_PROFILE_MAPPING = 3,              /* repeated Mapping */
	HT_PB_PROFILE_LOCATION = 4,             /* repeated Location */
	HT_PB_PROFILE_FUNCTION = 5,             /* repeated Function */
	HT_PB_PROFILE_STRING_TABLE = 6,         /* repeated string */
	HT_PB_PROFILE_DROP_FRAMES = 7,          /* int64 (string index) */
	HT_PB_PROFILE_KEEP_FRAMES = 8,          /* int64 (string index) */
	HT_PB_PROFILE_TIME_NANOS = 9,           /* int64 */
	HT_PB_PROFILE_DURATION_NANOS = 10,      /* int64 */
	HT_PB_PROFILE_PERIOD_TYPE = 11,         /* ValueType */
	HT_PB_PROFILE_PERIOD = 12,              /* int64 */
	HT_PB_PROFILE_COMMENT = 13,             /* repeated int64 (string index) */
	HT_PB_PROFILE_DEFAULT_SAMPLE_TYPE = 14, /* int64 (string index) */

	HT_PB_VALUETYPE_TYPE = 1, /* int64 (string index) */
	HT_PB_VALUETYPE_UNIT = 2, /* int64 (string index) */

	HT_PB_SAMPLE_LOCATION_ID = 1, /* repeated uint64 */
	HT_PB_SAMPLE_VALUE = 2,       /* repeated int64 */
	HT_PB_SAMPLE_LABEL = 3,       /* repeated Label */

	HT_PB_LABEL_KEY = 1,      /* int64 (string index) */
	HT_PB_LABEL_STR = 2,      /* int64 (string index) */
	HT_PB_LABEL_NUM = 3,      /* int64 */
	HT_PB_LABEL_NUM_UNIT = 4, /* int64 (string index) */

	HT_PB_MAPPING_ID = 1,                 /* uint64 */
	HT_PB_MAPPING_MEMORY_START = 2,       /* uint64 */
	HT_PB_MAPPING_MEMORY_LIMIT = 3,       /* uint64 */
	HT_PB_MAPPING_FILE_OFFSET = 4,        /* uint64 */
	HT_PB_MAPPING_FILENAME = 5,           /* int64 (string index) */
	HT_PB_MAPPING_BUILD_ID = 6,           /* int64 (string index) */
	HT_PB_MAPPING_HAS_FUNCTIONS = 7,      /* bool */
	HT_PB_MAPPING_HAS_FILENAMES = 8,      /* bool */
	HT_PB_MAPPING_HAS_LINE_NUMBERS = 9,   /* bool */
	HT_PB_MAPPING_HAS_INLINE_FRAMES = 10, /* bool */

	HT_PB_LOCATION_ID = 1,         /* uint64 */
	HT_PB_LOCATION_MAPPING_ID = 2, /* uint64 */
	HT_PB_LOCATION_ADDRESS = 3,    /* uint64 */
	HT_PB_LOCATION_LINE = 4,       /* repeated Line */
	HT_PB_LOCATION_IS_FOLDED = 5,  /* bool */

	HT_PB_LINE_FUNCTION_ID = 1, /* uint64 */
	HT_PB_LINE_LINE = 2,        /* int64 */

	HT_PB_FUNCTION_ID = 1,          /* uint64 */
	HT_PB_FUNCTION_NAME = 2,        /* int64 (string index) */
	HT_PB_FUNCTION_SYSTEM_NAME = 3, /* int64 (string index) */
	HT_PB_FUNCTION_FILENAME = 4,    /* int64 (string index) */
	HT_PB_FUNCTION_START_LINE = 5,  /* int64 */
};

struct ht_pb {
	struct ht_buf buf; /* encoded bytes; the owner may consume and reset buf.len */
	int err;           /* first error (negative errno), sticky */
	unsigned nest;     /* open messages; 0 = between top-level fields */
};

/* Bytes a varint of v takes (1..10). */
static inline size_t ht_pb_varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Make room for n more bytes; false (and pb->err set) on failure. */
bool ht_pb_room(struct ht_pb *pb, size_t n);

static inline void ht_pb_varint(struct ht_pb *pb, uint64_t v)
{
	if (!ht_pb_room(pb, 10))
		return;
	uint8_t *p = pb->buf.data + pb->buf.len;
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	pb->buf.len = (size_t)(p - pb->buf.data);
}

static inline void ht_pb_key(struct ht_pb *pb, unsigned field, unsigned wire)
{
	ht_pb_varint(pb, (uint64_t)field << 3 | wire);
}

void ht_pb_init(struct ht_pb *pb);
void ht_pb_free(struct ht_pb *pb);

/* Scalars. int64 is written as its two's complement uint64, as proto int64
 * is (not zigzag). The _opt variants write nothing for 0 / false / empty. */
void ht_pb_uint64(struct ht_pb *pb, unsigned field, uint64_t v);
void ht_pb_uint64_opt(struct ht_pb *pb, unsigned field, uint64_t v);
void ht_pb_int64(struct ht_pb *pb, unsigned field, int64_t v);
void ht_pb_int64_opt(struct ht_pb *pb, unsigned field, int64_t v);
void ht_pb_bool(struct ht_pb *pb, unsigned field, bool v);
void ht_pb_bool_opt(struct ht_pb *pb, unsigned field, bool v);

/* Length-delimited: bytes and strings (s may be NULL when n == 0). */
void ht_pb_bytes(struct ht_pb *pb, unsigned field, const void *s, size_t n);

/* Repeated integers: packed when more than two, one key each otherwise
 * (decoders must accept both). */
void ht_pb_uint32s(struct ht_pb *pb, unsigned field, const uint32_t *v, size_t n);
void ht_pb_int64s(struct ht_pb *pb, unsigned field, const int64_t *v, size_t n);

/* Nested message: start = ht_pb_begin(pb); ...fields...;
 * ht_pb_end(pb, field, start). */
size_t ht_pb_begin(struct ht_pb *pb);
void ht_pb_end(struct ht_pb *pb, unsigned field, size_t start);

#endif
