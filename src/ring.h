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
	/* The producer's scratch, HT_RING_SCRATCH bytes after the data (one
	 * allocation): where a sample's stack is walked into before it is
	 * copied into a record (its first HT_RING_WORK_AT bytes), and, after
	 * that, the unwinder's work area for computing a rule it has not
	 * cached (fastunwind.c), so that neither costs the program's stack
	 * anything (a sample may run on a small one). */
	void *scratch;
};

#define HT_RING_SCRATCH 4096
#define HT_RING_WORK_AT 2560

int ht_ring_init(struct ht_ring *r, size_t size);
void ht_ring_destroy(struct ht_ring *r);

/* Producer: reserve len bytes (multiple of 8) or NULL when full; commit
 * publishes the record. Inline: they run for every event. */
static inline void *ht_ring_reserve(struct ht_ring *r, uint32_t len)
{
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	uint64_t off = tail & (r->size - 1);
	/* The usual case first: room, and no wrap (records are at most a few
	 * KiB, far below size / 2). */
	if (__builtin_expect(off + len <= r->size && tail + len - head <= r->size, 1)) {
		struct ht_ev_hdr *h = (struct ht_ev_hdr *)(r->data + off);
		h->len = len;
		return h;
	}
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

static inline void ht_ring_commit(struct ht_ring *r, void *rec)
{
	const struct ht_ev_hdr *h = rec;
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	atomic_store_explicit(&r->tail, tail + h->len, memory_order_release);
}

/* Consumer: visit every committed record; returns how many. */
size_t ht_ring_drain(struct ht_ring *r, void (*fn)(const struct ht_ev_hdr *, void *), void *arg);

/* The same, for a consumer that keeps pointers into the records it
 * visits: `end` (when not NULL) runs after the last record is visited and
 * before the records are given back to the producer. Inline, so that a
 * caller's constant callbacks are called directly (at rate 1 this loop runs
 * for every event). */
static inline size_t ht_ring_drain_batch(struct ht_ring *r,
                                         void (*fn)(const struct ht_ev_hdr *, void *),
                                         void (*end)(void *), void *arg)
{
	if (!r->data)
		return 0;
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
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
	if (end)
		end(arg);
	atomic_store_explicit(&r->head, head, memory_order_release);
	return n;
}

static inline bool ht_ring_empty(struct ht_ring *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed) ==
	       atomic_load_explicit(&r->tail, memory_order_acquire);
}

#endif
