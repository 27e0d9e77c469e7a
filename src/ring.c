/*
 * ring.c - the per-thread single-producer/single-consumer event ring.
 * See ring.h for the protocol.
 */
#include "ring.h"

#include "mem.h"

#include <errno.h>
#include <string.h>

int ht_ring_init(struct ht_ring *r, size_t size)
{
	memset(r, 0, sizeof(*r));
	if (size < 4096 || (size & (size - 1)))
		return -EINVAL;
	r->data = ht_mem_alloc(size);
	if (!r->data)
		return -ENOMEM;
	r->size = size;
	return 0;
}

void ht_ring_destroy(struct ht_ring *r)
{
	ht_mem_free(r->data);
	r->data = NULL;
	r->size = 0;
}

void *ht_ring_reserve(struct ht_ring *r, uint32_t len)
{
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	uint64_t off = tail & (r->size - 1);
	uint64_t to_end = r->size - off;
	uint64_t need = len <= to_end ? len : to_end + len;
	if (len > r->size / 2 || tail + need - head > r->size)
		return NULL;
	if (len > to_end) {
		/* Pad to the end and start the record at offset 0. */
		struct ht_ev_hdr *pad = (struct ht_ev_hdr *)(r->data + off);
		pad->len = (uint32_t)to_end;
		pad->kind = HT_EV_PAD;
		pad->depth = 0;
		atomic_store_explicit(&r->tail, tail + to_end, memory_order_release);
		off = 0;
	}
	struct ht_ev_hdr *h = (struct ht_ev_hdr *)(r->data + off);
	h->len = len;
	return h;
}

void ht_ring_commit(struct ht_ring *r, void *rec)
{
	const struct ht_ev_hdr *h = rec;
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	atomic_store_explicit(&r->tail, tail + h->len, memory_order_release);
}

/* Visit the records in [head, tail). */
static size_t visit(const struct ht_ring *r, uint64_t head, uint64_t tail,
                    void (*fn)(const struct ht_ev_hdr *, void *), void *arg, uint64_t *end)
{
	size_t n = 0;
	while (head != tail) {
		const struct ht_ev_hdr *h =
		        (const struct ht_ev_hdr *)(r->data + (head & (r->size - 1)));
		uint32_t len = h->len;
		if (len < sizeof(*h) || (len & 7) || len > r->size)
			break; /* cannot happen with a well-behaved producer */
		if (h->kind != HT_EV_PAD) {
			fn(h, arg);
			n++;
		}
		head += len;
	}
	*end = head;
	return n;
}

size_t ht_ring_drain(struct ht_ring *r, void (*fn)(const struct ht_ev_hdr *, void *), void *arg)
{
	return ht_ring_drain_twice(r, NULL, fn, arg);
}

size_t ht_ring_drain_twice(struct ht_ring *r, void (*first)(const struct ht_ev_hdr *, void *),
                           void (*fn)(const struct ht_ev_hdr *, void *), void *arg)
{
	if (!r->data)
		return 0;
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint64_t end;
	if (first)
		visit(r, head, tail, first, arg, &end);
	size_t n = visit(r, head, tail, fn, arg, &end);
	atomic_store_explicit(&r->head, end, memory_order_release);
	return n;
}
