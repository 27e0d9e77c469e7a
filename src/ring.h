/*
 * ring.h - one thread's event buffer: single producer (the thread), single
 * consumer (whoever holds the aggregation lock, normally the flusher).
 *
 * Records are variable length, 8-byte aligned, and never wrap: a record that
 * would cross the end is preceded by a padding record. Head and tail are
 * free-running byte counters; the producer publishes the tail with release
 * after writing a record, the consumer reads it with acquire, and publishes
 * the head with release only after it has copied the records out, so the
 * producer never overwrites what is still being read.
 */
#ifndef HT_RING_H
#define HT_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ht_ev_kind {
	HT_EV_PAD = 0,
	HT_EV_ALLOC = 1,
	HT_EV_FREE = 2,
};

struct ht_ev_hdr {
	uint32_t len; /* whole record, bytes, multiple of 8 */
	uint16_t kind;
	uint16_t depth; /* frames that follow an ALLOC */
};

struct ht_ev_alloc {
	struct ht_ev_hdr h;
	uint64_t id;
	uint64_t size;
	uint64_t rate; /* mean gap the sample was drawn with */
	uintptr_t pcs[];
};

struct ht_ev_free {
	struct ht_ev_hdr h;
	uint64_t id;
};

struct ht_ring {
	_Atomic uint64_t head; /* consumer */
	char pad1[56];
	_Atomic uint64_t tail; /* producer */
	char pad2[56];
	uint64_t size; /* power of two */
	uint8_t *data;
};

int ht_ring_init(struct ht_ring *r, size_t size);
void ht_ring_destroy(struct ht_ring *r);

/* Producer: reserve len bytes (multiple of 8) or NULL when full. */
void *ht_ring_reserve(struct ht_ring *r, uint32_t len);
void ht_ring_commit(struct ht_ring *r, void *rec);

/* Consumer: visit every committed record; returns how many. */
size_t ht_ring_drain(struct ht_ring *r, void (*fn)(const struct ht_ev_hdr *, void *), void *arg);

static inline bool ht_ring_empty(struct ht_ring *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed) ==
	       atomic_load_explicit(&r->tail, memory_order_acquire);
}

#endif
