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

/* A sample's id: the sampling thread's serial (23 bits) and its count of
 * samples (40 bits). Unique without a shared counter; bit 63 clear, which
 * tells an id from a resolved slot value (agg.c). */
#define HT_ID_COUNT_BITS  40
#define HT_ID_COUNT_MASK  (((uint64_t)1 << HT_ID_COUNT_BITS) - 1)
#define HT_ID_SERIAL_MASK (((uint64_t)1 << 23) - 1)

static inline uint64_t ht_ev_id(uint32_t serial, uint64_t count)
{
	return (((uint64_t)serial & HT_ID_SERIAL_MASK) << HT_ID_COUNT_BITS) |
	       (count & HT_ID_COUNT_MASK);
}

struct ht_ev_alloc {
	struct ht_ev_hdr h;
	uint64_t id;
	uint64_t size;
	uint64_t rate; /* mean gap the sample was drawn with */
	uintptr_t ptr; /* the block: its slot in the sampled set gets resolved */
	uintptr_t pcs[];
};

struct ht_ev_free {
	struct ht_ev_hdr h;
	uint64_t id; /* what the block's slot held: its id, or its resolved value */
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

/* The same, with a first look at the same records (`first`, when not
 * NULL) before any is visited with fn: the aggregator learns which of the
 * thread's samples the batch itself frees. */
size_t ht_ring_drain_twice(struct ht_ring *r, void (*first)(const struct ht_ev_hdr *, void *),
                           void (*fn)(const struct ht_ev_hdr *, void *), void *arg);

static inline bool ht_ring_empty(struct ht_ring *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed) ==
	       atomic_load_explicit(&r->tail, memory_order_acquire);
}

#endif
