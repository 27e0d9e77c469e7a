/*
 * pbread.h - a protocol buffers wire-format reader, enough for profile.proto.
 *
 * A cursor walks one message's fields; each call yields the field number,
 * the wire type and either the scalar or the bytes of a length-delimited
 * field. Every read is bounds-checked against the message, so a truncated or
 * hostile input ends in an error, never in a read past the buffer. Groups
 * (wire types 3 and 4, unused by profile.proto) are rejected.
 */
#ifndef HC_PBREAD_H
#define HC_PBREAD_H

#include <stddef.h>
#include <stdint.h>

enum { HC_PB_VARINT = 0, HC_PB_I64 = 1, HC_PB_LEN = 2, HC_PB_I32 = 5 };

struct hc_pb {
	const uint8_t *p, *end;
};

struct hc_pb_field {
	uint32_t num;
	int wire;
	uint64_t v;          /* varint / fixed value */
	const uint8_t *data; /* HC_PB_LEN */
	size_t len;
};

/* 1 and the next field, 0 at the end of the message, -EBADMSG on bad input. */
int hc_pb_next(struct hc_pb *c, struct hc_pb_field *f);

/* A repeated scalar field, packed or not: calls fn(arg, value) for each value
 * carried by field f. Returns 0 or -EBADMSG. */
int hc_pb_repeated(const struct hc_pb_field *f, int (*fn)(void *arg, uint64_t v), void *arg);

#endif
