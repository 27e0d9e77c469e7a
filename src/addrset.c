/*
 * addrset.c - the lock-free set of sampled live pointers. See addrset.h.
 *
 * Slot protocol: 0 = empty, 1 = claimed (being written), else the pointer.
 * Insert claims an empty slot with CAS, writes the id, then publishes the key
 * with release; remove reads the key with acquire, reads the id, and CASes the
 * key back to 0. A pointer is removed by the thread freeing it, before the
 * real free, and inserted by the thread that got it from the real allocator,
 * so one pointer's insert and remove never race with each other.
 */
#include "addrset.h"

#include "mem.h"

#include <errno.h>
#include <sys/mman.h>

#define KEY_CLAIMED ((uintptr_t)1)
#define OVERFLOWED  0x80u

/* Until init, every lookup reads this zero byte and answers "no". */
static _Atomic uint8_t zero_occ[2];
struct ht_addrset ht_addrset = {.mask = 0, .shift = 63, .occ = zero_occ};
/* The whole mapping (keys, ids, counts), kept apart from the fields every
 * free() reads. */
static _Atomic size_t map_bytes;

int ht_addrset_init(size_t slots)
{
	size_t buckets = 1;
	unsigned bits = 0;
	while (buckets * HT_ADDRSET_WAYS < slots)
		buckets <<= 1, bits++;
	if (bits == 0)
		buckets = 2, bits = 1;
	size_t nkeys = buckets * HT_ADDRSET_WAYS;
	/* Plain anonymous memory: zero pages cost nothing until touched. */
	size_t bytes = buckets + nkeys * 2 * sizeof(uint64_t);
	void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -ENOMEM;
	struct ht_addrset s = {
	        .mask = buckets - 1,
	        .shift = 64 - bits,
	        .keys = mem,
	        .ids = (_Atomic uint64_t *)((char *)mem + nkeys * sizeof(uint64_t)),
	        .occ = (_Atomic uint8_t *)((char *)mem + nkeys * 2 * sizeof(uint64_t)),
	};
	/* Publish the arrays before the shift that makes lookups use them. */
	ht_addrset.keys = s.keys;
	ht_addrset.ids = s.ids;
	ht_addrset.mask = s.mask;
	ht_addrset.occ = s.occ;
	atomic_store_explicit(&map_bytes, bytes, memory_order_release);
	atomic_store_explicit(&ht_addrset.shift, s.shift, memory_order_release);
	return 0;
}

size_t ht_addrset_resident(void)
{
	/* The size is published after the keys. A bucket's keys and ids
	 * become resident when the first pointer lands in it: with pointers
	 * spread by the hash, nearly the whole table is resident long before it
	 * is half full (at rate 1, 258 MiB from ~100,000 live samples on). */
	size_t bytes = atomic_load_explicit(&map_bytes, memory_order_acquire);
	return bytes ? ht_mem_resident_range((const void *)ht_addrset.keys, bytes) : 0;
}

static inline uint64_t alt_bucket(uint64_t b)
{
	/* A second home far from the first. */
	return (b ^ 0x5bd1e995u ^ (b * 0x9E3779B9u)) & ht_addrset.mask;
}

static bool bucket_insert(uint64_t b, uintptr_t key, uint64_t id)
{
	_Atomic uintptr_t *k = &ht_addrset.keys[b * HT_ADDRSET_WAYS];
	/* Count first, so a reader never sees the key before the count. */
	atomic_fetch_add_explicit(&ht_addrset.occ[b], 1, memory_order_relaxed);
	for (unsigned i = 0; i < HT_ADDRSET_WAYS; i++) {
		uintptr_t expect = 0;
		if (atomic_load_explicit(&k[i], memory_order_relaxed) != 0)
			continue;
		if (atomic_compare_exchange_strong_explicit(&k[i], &expect, KEY_CLAIMED,
		                                            memory_order_acquire,
		                                            memory_order_relaxed)) {
			atomic_store_explicit(&ht_addrset.ids[b * HT_ADDRSET_WAYS + i], id,
			                      memory_order_relaxed);
			atomic_store_explicit(&k[i], key, memory_order_release);
			return true;
		}
	}
	atomic_fetch_sub_explicit(&ht_addrset.occ[b], 1, memory_order_relaxed);
	return false;
}

int ht_addrset_insert(const void *p, uint64_t id)
{
	if (!ht_addrset.keys)
		return -ENOSPC;
	uintptr_t key = (uintptr_t)p;
	uint64_t b = ht_addrset_hash(key, atomic_load(&ht_addrset.shift));
	if (bucket_insert(b, key, id))
		goto ok;
	/* Mark the home bucket before using the other, so a remove that
	 * misses at home knows to look there. */
	atomic_fetch_or_explicit(&ht_addrset.occ[b], OVERFLOWED, memory_order_release);
	if (bucket_insert(alt_bucket(b), key, id))
		goto ok;
	return -ENOSPC;
ok:
	atomic_fetch_add_explicit(&ht_addrset.live, 1, memory_order_relaxed);
	return 0;
}

static bool bucket_remove(uint64_t b, uintptr_t key, uint64_t *id)
{
	_Atomic uintptr_t *k = &ht_addrset.keys[b * HT_ADDRSET_WAYS];
	for (unsigned i = 0; i < HT_ADDRSET_WAYS; i++) {
		uintptr_t cur = atomic_load_explicit(&k[i], memory_order_acquire);
		if (cur != key)
			continue;
		uint64_t v = atomic_load_explicit(&ht_addrset.ids[b * HT_ADDRSET_WAYS + i],
		                                  memory_order_relaxed);
		if (atomic_compare_exchange_strong_explicit(&k[i], &cur, 0, memory_order_acq_rel,
		                                            memory_order_relaxed)) {
			atomic_fetch_sub_explicit(&ht_addrset.occ[b], 1, memory_order_relaxed);
			*id = v;
			return true;
		}
	}
	return false;
}

bool ht_addrset_remove(const void *p, uint64_t *id)
{
	if (!ht_addrset.keys)
		return false;
	uintptr_t key = (uintptr_t)p;
	uint64_t b = ht_addrset_hash(key, atomic_load(&ht_addrset.shift));
	uint8_t occ = atomic_load_explicit(&ht_addrset.occ[b], memory_order_acquire);
	if ((occ & ~OVERFLOWED) && bucket_remove(b, key, id))
		goto found;
	if ((occ & OVERFLOWED) && bucket_remove(alt_bucket(b), key, id))
		goto found;
	return false;
found:
	atomic_fetch_sub_explicit(&ht_addrset.live, 1, memory_order_relaxed);
	return true;
}
