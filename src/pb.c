/*
 * pb.c - the protocol buffers encoder and the ht_buf byte buffer.
 *
 * Owns ht_buf_* (declared in pb.h) and the ht_pb_* writers: varints,
 * keys, scalars, length-delimited fields, repeated integers and nested
 * messages. Nested messages are closed by writing key and length after the
 * body and rotating them in front of it, so nothing is sized twice and no
 * memory is allocated per message. All memory comes from ht_mem_*.
 */
#include "pb.h"

#include "mem.h"

#include <errno.h>
#include <string.h>

int ht_buf_reserve(struct ht_buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return 0;
	if (extra > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < extra)
		cap *= 2;
	uint8_t *p = ht_mem_realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int ht_buf_append(struct ht_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	int err = ht_buf_reserve(b, n);
	if (err)
		return err;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void ht_buf_free(struct ht_buf *b)
{
	ht_mem_free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void ht_pb_init(struct ht_pb *pb)
{
	memset(pb, 0, sizeof(*pb));
}

void ht_pb_free(struct ht_pb *pb)
{
	ht_buf_free(&pb->buf);
	pb->nest = 0;
}

bool ht_pb_room(struct ht_pb *pb, size_t n)
{
	if (pb->err)
		return false;
	if (pb->buf.cap - pb->buf.len >= n)
		return true;
	pb->err = ht_buf_reserve(&pb->buf, n);
	return pb->err == 0;
}

void ht_pb_uint64(struct ht_pb *pb, unsigned field, uint64_t v)
{
	ht_pb_key(pb, field, HT_PB_VARINT);
	ht_pb_varint(pb, v);
}

void ht_pb_uint64_opt(struct ht_pb *pb, unsigned field, uint64_t v)
{
	if (v)
		ht_pb_uint64(pb, field, v);
}

void ht_pb_int64(struct ht_pb *pb, unsigned field, int64_t v)
{
	ht_pb_uint64(pb, field, (uint64_t)v);
}

void ht_pb_int64_opt(struct ht_pb *pb, unsigned field, int64_t v)
{
	if (v)
		ht_pb_uint64(pb, field, (uint64_t)v);
}

void ht_pb_bool(struct ht_pb *pb, unsigned field, bool v)
{
	ht_pb_uint64(pb, field, v ? 1 : 0);
}

void ht_pb_bool_opt(struct ht_pb *pb, unsigned field, bool v)
{
	if (v)
		ht_pb_bool(pb, field, true);
}

void ht_pb_bytes(struct ht_pb *pb, unsigned field, const void *s, size_t n)
{
	ht_pb_key(pb, field, HT_PB_BYTES);
	ht_pb_varint(pb, n);
	if (n && !pb->err)
		pb->err = ht_buf_append(&pb->buf, s, n);
}

/* The two repeated writers differ only in the element type. */
#define HT_PB_REPEATED(v, n, conv)                                                                 \
	do {                                                                                       \
		if ((n) <= 2) {                                                                    \
			for (size_t i_ = 0; i_ < (n); i_++) {                                      \
				ht_pb_key(pb, field, HT_PB_VARINT);                                \
				ht_pb_varint(pb, conv((v)[i_]));                                   \
			}                                                                          \
			return;                                                                    \
		}                                                                                  \
		size_t len_ = 0;                                                                   \
		for (size_t i_ = 0; i_ < (n); i_++)                                                \
			len_ += ht_pb_varint_size(conv((v)[i_]));                                  \
		ht_pb_key(pb, field, HT_PB_BYTES);                                                 \
		ht_pb_varint(pb, len_);                                                            \
		if (!ht_pb_room(pb, len_))                                                         \
			return;                                                                    \
		for (size_t i_ = 0; i_ < (n); i_++)                                                \
			ht_pb_varint(pb, conv((v)[i_]));                                           \
	} while (0)

#define HT_PB_AS_U64(x) ((uint64_t)(x))

void ht_pb_uint32s(struct ht_pb *pb, unsigned field, const uint32_t *v, size_t n)
{
	HT_PB_REPEATED(v, n, HT_PB_AS_U64);
}

void ht_pb_int64s(struct ht_pb *pb, unsigned field, const int64_t *v, size_t n)
{
	HT_PB_REPEATED(v, n, HT_PB_AS_U64);
}

size_t ht_pb_begin(struct ht_pb *pb)
{
	pb->nest++;
	return pb->buf.len;
}

void ht_pb_end(struct ht_pb *pb, unsigned field, size_t start)
{
	pb->nest--;
	if (pb->err)
		return;
	size_t body = pb->buf.len - start;
	uint8_t hdr[20];
	size_t h = 0;
	uint64_t v = (uint64_t)field << 3 | HT_PB_BYTES;
	for (int k = 0; k < 2; k++) {
		while (v >= 0x80) {
			hdr[h++] = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		hdr[h++] = (uint8_t)v;
		v = body;
	}
	if (!ht_pb_room(pb, h))
		return;
	uint8_t *p = pb->buf.data + start;
	memmove(p + h, p, body);
	memcpy(p, hdr, h);
	pb->buf.len += h;
}
