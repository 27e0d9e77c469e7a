/*
 * addrset.h - the sampled blocks that are live: one 16-byte slot each.
 *
 * Every free() has to learn whether its pointer was sampled, and frees vastly
 * outnumber samples, so the answer must be cheap and lock-free; and at rate 1
 * every live block of the program is in here, so what is kept per block must
 * be small. A slot is the pointer and one 64-bit value. The sampling thread
 * stores the sample's id; once the aggregator has drained the allocation, it
 * puts the sample's (stack, size) bucket and the rate it was drawn with
 * there in place of the id (agg.c). From then on the slot is the only record
 * of the sample: nothing else is kept per live block, and its free() finds
 * in the slot all the aggregator needs to take the block back out.
 *
 * The table: 2^k buckets of 4 slots (a cache line), open addressing with
 * linear probing from bucket to bucket. Per bucket a 16-bit meta word: the
 * number of live keys whose home is that bucket (low byte), and the farthest
 * from home that one of them was ever put, in buckets (high byte; it only
 * grows until the table is replaced). The low byte is free()'s filter: 0 says
 * "not sampled" after one load, which is the answer for nearly every free at
 * the default rate. The high byte bounds a lookup, so deleting is one 16-byte
 * compare-and-swap back to empty, with no tombstones. The table doubles at
 * three quarters full (agg.c): 16.5 bytes per slot with the meta words, so
 * 22 to 44 bytes per live sample, nothing fixed beyond the first 256 KiB.
 *
 * Uncounted tables. At rate 1 every block is sampled, so the filter never
 * says "not sampled" to anything but a block heaptap could not sample, and
 * keeping the counts costs every malloc and every free a locked
 * read-modify-write of the meta word. A table made uncounted has the low
 * byte of every meta word set to 1 when it is made, and nothing changes it
 * after: inserts, removes and moves in or out of it leave it be. The filter
 * then answers "maybe" for every pointer, with no change to its code; the
 * high byte is kept as in a counted table. The aggregator makes a table
 * uncounted while the rate is 1, counted otherwise, and replaces one by the
 * other, through a migration, when the program changes the rate (agg.c).
 * A migration into a counted table counts each key as it arrives, so the
 * counts are right again once it is over; until then the filter says
 * "maybe", as during any migration.
 *
 * Growth: the table starts small and doubles by migration to a new table,
 * done a bucket at a time by the holder of the aggregation lock (agg.c),
 * while program threads go on inserting, freeing and checking without
 * waiting for it. A table being emptied is a "source"; should the new table
 * fill up before the sources are empty (the program allocates faster than
 * heaptap's thread moves keys), it becomes a source too and a larger one
 * takes its place, so nothing is ever refused for want of room while the
 * migration catches up. The protocol, in addrset.c, keeps three promises: a
 * live key is always found by whoever frees it, whatever the migration is
 * doing; memory of a table another thread may still be reading is never
 * unmapped; and a key moves with its value, so the pair is never torn.
 */
#ifndef HT_ADDRSET_H
#define HT_ADDRSET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HT_ADDRSET_WAYS 4 /* slots per bucket */

struct ht_addrslot {
	_Alignas(16) _Atomic uintptr_t key;
	_Atomic uint64_t val;
};

/* A table. The descriptor sits at the start of the mapping that holds the
 * meta words, which begin HT_ADDRTAB_HDR bytes in, so one word, the
 * descriptor's address (128-byte aligned) with the hash shift in its low 6
 * bits, gives free() both the array and how to index it. */
struct ht_addrtab {
	uint64_t nb;               /* buckets, a power of two */
	unsigned shift;            /* 64 - log2(nb) */
	bool counted;              /* low bytes count keys at home; else all 1, for good */
	struct ht_addrslot *slots; /* nb * WAYS, a mapping of their own */
	size_t slot_bytes, meta_bytes;
	uint64_t gen;           /* creation order: sources are emptied oldest first */
	struct ht_addrtab *all; /* every table made, newest first: none is unmapped */
	/* Bytes of slots given back to the kernel, from the start: a source's
	 * as the migration passes them, all of a retired table's. */
	_Atomic size_t released;
};
#define HT_ADDRTAB_HDR 64

#define HT_ADDRSET_SOURCES 3
#define HT_ADDRSET_SHIFT   ((uintptr_t)63)
#define HT_ADDRSET_MOVING  ((uintptr_t)64) /* in cur: a migration is under way */
#define HT_ADDRSET_TABLE   (~(uintptr_t)127)

struct ht_addrset {
	/* The current table (descriptor | shift | MOVING while there are
	 * sources), and the tables a migration is emptying (0 for none). Only
	 * the holder of the aggregation lock writes them. */
	_Alignas(64) _Atomic uintptr_t cur;
	_Atomic uintptr_t src[HT_ADDRSET_SOURCES];
};

extern struct ht_addrset ht_addrset;

/* Set up the first table, room for `slots` entries (rounded up to a power
 * of two), counted or not (above). 0 or -ENOMEM. Before it, the set is
 * empty and refuses inserts. */
int ht_addrset_init(size_t slots, bool counted);

static inline uint64_t ht_addrset_hash(uintptr_t p, unsigned shift)
{
	return ((uint64_t)(p >> 3) * 0x9E3779B97F4A7C15ull) >> shift;
}

/* Live keys whose home in table word w is p's home bucket (0 = none); 1,
 * whatever is there, in an uncounted table. */
static inline unsigned ht_addrset_homes(uintptr_t w, const void *p)
{
	const _Atomic uint16_t *meta =
	        (const _Atomic uint16_t *)((w & HT_ADDRSET_TABLE) + HT_ADDRTAB_HDR);
	return atomic_load_explicit(
	               &meta[ht_addrset_hash((uintptr_t)p, (unsigned)(w & HT_ADDRSET_SHIFT))],
	               memory_order_relaxed) &
	       0xffu;
}

/* Fast pre-check for free(): false means "certainly not sampled". A table
 * word read with acquire comes with the meta words it names. With no
 * migration under way, the one load and one test of the current word are
 * all: every live key is counted at its home in that table (an uncounted
 * one says "maybe" for every pointer), and stays counted there should the
 * table become a source meanwhile (a source keeps counting the keys moved
 * out of it), so a free() that read the word just before a migration began
 * still answers "maybe" for them. While one is under way the answer is
 * "maybe" whatever the count says, and ht_addrset_remove() looks for the
 * key: between this thread's reading of the current table's count and of
 * the sources', a key could move from a source into the current table and
 * the source be retired, so that no count read here would show it (the
 * remove reads every table word again after its lookups, and looks again
 * when they changed). Migrations are rare and short: the table doubles, or
 * the rate went to or from 1. */
static inline bool ht_addrset_maybe(const void *p)
{
	uintptr_t cur = atomic_load_explicit(&ht_addrset.cur, memory_order_acquire);
	if (ht_addrset_homes(cur, p))
		return true;
	return __builtin_expect((cur & HT_ADDRSET_MOVING) != 0, 0);
}

/* Record p with its value (bit 63 clear: the sample's id, for the
 * aggregator to resolve). 0; -ENOSPC when the table has no room near p's
 * home (it must grow first: ht_addrset_grow); -EINVAL for a pointer that is
 * NULL or not 8-byte aligned (never sampled). */
int ht_addrset_insert(const void *p, uint64_t val);

/* Remove p; true (and its value) when it was there. */
bool ht_addrset_remove(const void *p, uint64_t *val);

/* Aggregation lock held: if p's slot still holds `id`, put `val` there in
 * its place and say true; false when p was freed meanwhile (its free then
 * reports the id). */
bool ht_addrset_resolve(const void *p, uint64_t id, uint64_t val);

/* Slots of the current table, whether a migration is under way, and
 * whether the current table is counted. */
size_t ht_addrset_capacity(void);
bool ht_addrset_migrating(void);
bool ht_addrset_counted(void);

/* Aggregation lock held. Make a new current table of `slots` entries (a
 * power of two), counted or not, and start moving everything into it: the
 * current table becomes a source, beside any still being emptied. The same
 * size as the current one replaces a counted table by an uncounted one or
 * the reverse. 0; -EBUSY when there are HT_ADDRSET_SOURCES sources already;
 * -ENOSPC past 2^30 slots; -ENOMEM. */
int ht_addrset_grow(size_t slots, bool counted);

/* Aggregation lock held. Move up to `buckets` buckets out of the oldest
 * source; retire each source once empty. Returns the buckets left to move
 * (0: no migration under way any more), or -ENOSPC when the current table
 * had no room for a key (the key stays where it was: grow, or call again
 * once keys have been freed). */
long ht_addrset_migrate(size_t buckets);

/* Resident bytes of every table's mappings (for the profile comments). */
size_t ht_addrset_resident(void);

#endif
