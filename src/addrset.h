/*
 * addrset.h - which live blocks were sampled.
 *
 * Every free() has to learn whether its pointer was sampled, and frees vastly
 * outnumber samples, so the answer must be cheap and lock-free. The set is a
 * fixed-size table of 8-slot buckets (one cache line of keys each); a pointer
 * lives in its home bucket or, when that is full, in a second bucket. A byte
 * per bucket counts its keys and carries a sticky "overflowed" bit, so a free
 * of an unsampled pointer usually reads one byte of a small array and stops.
 *
 * No probing chains means no tombstones: deleting is one compare-and-swap of
 * the key back to zero. Each key carries the sample's id, which the free
 * event reports so the aggregator can match it to its allocation whatever
 * order the two events are drained in.
 */
#ifndef HT_ADDRSET_H
#define HT_ADDRSET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HT_ADDRSET_WAYS 8

struct ht_addrset {
	uint64_t mask;           /* buckets - 1 */
	_Atomic unsigned shift;  /* 64 - log2(buckets); published last */
	_Atomic uint8_t *occ;    /* per bucket: count (low 7 bits) | 0x80 overflowed */
	_Atomic uintptr_t *keys; /* buckets * WAYS */
	_Atomic uint64_t *ids;
	/* Written on every sampled insert and remove: kept off the line every
	 * free() reads, so threads sampling at high rates do not slow down
	 * everyone else's frees. */
	_Alignas(64) _Atomic uint64_t live;
};

extern struct ht_addrset ht_addrset;

/* Size the table for `slots` entries (rounded up to a power of two).
 * 0 or -ENOMEM. Must run before any other call. */
int ht_addrset_init(size_t slots);

static inline uint64_t ht_addrset_hash(uintptr_t p, unsigned shift)
{
	return ((uint64_t)(p >> 4) * 0x9E3779B97F4A7C15ull) >> shift;
}

/* Fast pre-check for free(): false means "certainly not sampled". The shift
 * is read with acquire: a reader that sees the new shift sees the new arrays;
 * one that sees the initial shift (63) indexes 0 or 1, valid in both. */
static inline bool ht_addrset_maybe(const void *p)
{
	unsigned shift = atomic_load_explicit(&ht_addrset.shift, memory_order_acquire);
	return atomic_load_explicit(&ht_addrset.occ[ht_addrset_hash((uintptr_t)p, shift)],
	                            memory_order_relaxed) != 0;
}

/* Record p (with its sample id). 0, or -ENOSPC when both buckets are full. */
int ht_addrset_insert(const void *p, uint64_t id);

/* Remove p; true (and *id) when it was there. */
bool ht_addrset_remove(const void *p, uint64_t *id);

/* Resident bytes of the table's mapping (for the profile comments). */
size_t ht_addrset_resident(void);

#endif
