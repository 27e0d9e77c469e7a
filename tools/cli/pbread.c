/*
 * pbread.c - the bounds-checked protocol buffers reader (pbread.h).
 */
#include "pbread.h"

#include <errno.h>

static int varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (p >= end)
			return -EBADMSG;
		uint8_t b = *p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*pp = p;
			*out = v;
			return 0;
		}
	}
	return -EBADMSG; /* more than ten bytes */
}

int hc_pb_next(struct hc_pb *c, struct hc_pb_field *f)
{
	if (c->p >= c->end)
		return 0;
	uint64_t key;
	if (varint(&c->p, c->end, &key) != 0)
		return -EBADMSG;
	f->num = (uint32_t)(key >> 3);
	f->wire = (int)(key & 7);
	/* Whatever the wire type, no member is left from the previous field. */
	f->v = 0;
	f->data = NULL;
	f->len = 0;
	if (f->num == 0 || key >> 32)
		return -EBADMSG;
	switch (f->wire) {
	case HC_PB_VARINT:
		return varint(&c->p, c->end, &f->v) == 0 ? 1 : -EBADMSG;
	case HC_PB_I64:
	case HC_PB_I32: {
		size_t n = f->wire == HC_PB_I64 ? 8 : 4;
		if ((size_t)(c->end - c->p) < n)
			return -EBADMSG;
		f->v = 0;
		for (size_t i = 0; i < n; i++)
			f->v |= (uint64_t)c->p[i] << (8 * i);
		c->p += n;
		return 1;
	}
	case HC_PB_LEN: {
		uint64_t n;
		if (varint(&c->p, c->end, &n) != 0 || n > (uint64_t)(c->end - c->p))
			return -EBADMSG;
		f->data = c->p;
		f->len = (size_t)n;
		c->p += n;
		return 1;
	}
	default:
		return -EBADMSG;
	}
}

int hc_pb_repeated(const struct hc_pb_field *f, int (*fn)(void *arg, uint64_t v), void *arg)
{
	if (f->wire == HC_PB_VARINT || f->wire == HC_PB_I64 || f->wire == HC_PB_I32)
		return fn(arg, f->v);
	if (f->wire != HC_PB_LEN)
		return -EBADMSG;
	const uint8_t *p = f->data, *end = f->data + f->len;
	while (p < end) {
		uint64_t v;
		if (varint(&p, end, &v) != 0)
			return -EBADMSG;
		int err = fn(arg, v);
		if (err)
			return err;
	}
	return 0;
}
