/*
 * addrset.c - the table of sampled live pointers. See addrset.h.
 *
 * Keys. A slot's key is 0 (empty) or a pointer, which is 8-byte aligned, so
 * its low three bits can carry a migration's states (below). Every change of
 * a slot is one 16-byte compare-and-swap of key and value together, so a
 * value is always read with its own key: the aggregator putting a resolved
 * value in place of an id and the thread freeing that block never tear the
 * pair, whichever comes first.
 *
 * One incarnation of a pointer is inserted by the thread whose malloc
 * returned it, before returning it, and removed by the thread that frees it,
 * before the real free; so a key's insert and its remove never race, a later
 * incarnation's insert comes after the earlier one's remove, and at any time
 * at most one incarnation of a pointer is live. What races with them is the
 * migration, which moves key after key from the sources to the current
 * table, oldest source first, each move made by the holder of the
 * aggregation lock:
 *   empty               -> SEALED            no late insert lands behind it
 *   p                   -> p|FROZEN          the key is being moved
 *   current table: claim a slot d as p|PENDING, with the value
 *   p|FROZEN            -> p|MOVED, d         (the value names the copy)
 *   d: p|PENDING        -> p                  (published)
 *   p|MOVED, d          -> SEALED             (the move is over)
 * A thread freeing p looks through the sources, oldest first, then the
 * current table:
 *   p                   takes it (the move, if one comes, finds it gone);
 *   p|FROZEN            takes it (-> DEAD): the move, finding its freeze
 *                       undone, takes its claimed copy back out;
 *   p|MOVED, d          follows d and takes what is there: the copy,
 *                       pending or published (or frozen or moved again, in
 *                       a later move: then the same again);
 * and when it found nothing while the table words changed meanwhile (a
 * migration began or a source was retired), it looks again. A PENDING copy
 * is only ever taken through the MOVED marker that names it, and a marker
 * lives only until its move is over, so nothing stale is followed: while a
 * marker exists, its key is the live incarnation. Keys only move from older
 * tables to newer ones and the search goes the same way, so it cannot miss
 * a key that moves under it. Nobody ever waits for the migrating thread,
 * which may be descheduled anywhere.
 *
 * An insert goes to the current table. One that finds, once done, that the
 * table is no longer current (it read the word just before a migration
 * began; the table may even have been retired since) takes its key back out
 * if it still can, and inserts again; if it cannot, the migration has it.
 *
 * A source's slots go back to the kernel as the migration passes them
 * (MADV_DONTNEED, page by page, so a table and its successor are not both
 * resident for long): they then read as zeros, which every lookup takes for
 * empty, and hold nothing any more (sealed, or freed). They stay mapped, as
 * a thread that read the old words may still be inside them. A source's
 * meta words stay as they are, still counting the keys moved out, so a
 * free() that read the current word just before the table became a source
 * takes the slow path and finds its key where it went. That is 2 bytes per
 * 4 slots for each table ever made, and the tables only ever double.
 *
 * Counts (counted tables; addrset.h says what an uncounted one is). A table
 * counts a key at its home before claiming a slot for it there (an insert,
 * or a move into the table), and counts it out when the key leaves that
 * slot other than by moving on: taken by its free, taken back by an insert
 * that found the table no longer current, the pending copy of a key freed
 * while frozen taken back by its move, or no slot found at all. A key moved
 * on stays counted in its source (above). So each table's counts follow
 * from what happens in its own slots, whatever the kind of the table at the
 * other end of a move. A move from an uncounted source into a counted table
 * counts every key as it lands, and so rebuilds the counts: they are exact
 * once the last uncounted source is retired, when every live key has been
 * inserted into a counted table or moved into one. A move from a counted
 * source into an uncounted table leaves the source's counts as any move
 * does. An uncounted table skips all of it: nothing changes its 1s, and it
 * has no limit of 255 keys at one home (only the reach bounds where they
 * go).
 */
#include "addrset.h"

#include "mem.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#define WAYS      HT_ADDRSET_WAYS
#define SOURCES   HT_ADDRSET_SOURCES
#define TAGS      ((uintptr_t)7)
#define FROZEN    ((uintptr_t)1)
#define MOVED     ((uintptr_t)2)
#define PENDING   ((uintptr_t)4)
#define SEALED    FROZEN /* 0|FROZEN: an empty slot, or a key moved out */
#define DEAD      MOVED  /* 0|MOVED: a key freed while frozen */
#define FORM(tag) (1u << (tag))

#define MAX_DISP    255u /* buckets from home: what the meta word's high byte holds */
#define MAX_BUCKETS ((uint64_t)1 << 28)
#define MAX_FOLLOW  (SOURCES + 2)

/* Until init: two buckets, no slots. Every lookup reads a zero count. */
struct empty_tab {
	_Alignas(128) struct ht_addrtab t;
	_Alignas(64) _Atomic uint16_t meta[2];
};
_Static_assert(offsetof(struct empty_tab, meta) == HT_ADDRTAB_HDR,
               "meta words follow the descriptor at HT_ADDRTAB_HDR");
_Static_assert(sizeof(struct ht_addrtab) <= HT_ADDRTAB_HDR, "the descriptor fits its header");
static struct empty_tab empty = {.t = {.nb = 2, .shift = 63, .counted = true}};

/* The shift rides in the low bits of the 128-byte aligned descriptor's
 * address: + is | here, and a static initialiser can add. */
struct ht_addrset ht_addrset = {.cur = (uintptr_t)&empty + 63};

/* Lock holder only: the source being emptied (an index in src, -1 when
 * none) and the next bucket of it to move. */
static int emptying = -1;
static uint64_t cursor;
static size_t page = 4096;
static uint64_t generations;
/* Every table made, newest first, for finding a slot's table and for the
 * figure of resident memory. Pushed by the lock holder, read by anyone. */
static struct ht_addrtab *_Atomic all_tables;

static inline struct ht_addrtab *tab(uintptr_t w)
{
	return (struct ht_addrtab *)(w & HT_ADDRSET_TABLE);
}

static inline uintptr_t word(const struct ht_addrtab *t)
{
	return (uintptr_t)t | t->shift;
}

static inline _Atomic uint16_t *meta_of(const struct ht_addrtab *t, uintptr_t p)
{
	return (_Atomic uint16_t *)((uintptr_t)t + HT_ADDRTAB_HDR) + ht_addrset_hash(p, t->shift);
}

static inline struct ht_addrslot *bucket_at(const struct ht_addrtab *t, uint64_t b)
{
	return &t->slots[(b & (t->nb - 1)) * WAYS];
}

/* The table whose slots hold s (NULL when none does). */
static struct ht_addrtab *owner(const void *s)
{
	for (struct ht_addrtab *t = atomic_load_explicit(&all_tables, memory_order_acquire); t;
	     t = t->all)
		if ((uintptr_t)s - (uintptr_t)t->slots < t->slot_bytes)
			return t;
	return NULL;
}

/* Compare {*k, *v} with the slot and, if equal, store {nk, nv}; either way
 * *k and *v end up holding what the slot held, read as one. */
static inline bool cas16(struct ht_addrslot *s, uintptr_t *k, uint64_t *v, uintptr_t nk,
                         uint64_t nv)
{
#if defined(__x86_64__)
	bool ok;
	__asm__ __volatile__("lock cmpxchg16b %1"
	                     : "=@ccz"(ok), "+m"(*(unsigned __int128 *)s), "+a"(*k), "+d"(*v)
	                     : "b"(nk), "c"(nv)
	                     : "memory");
	return ok;
#else
	unsigned __int128 expect = ((unsigned __int128)*v << 64) | *k;
	unsigned __int128 want = ((unsigned __int128)nv << 64) | nk;
	bool ok = __atomic_compare_exchange_n((unsigned __int128 *)s, &expect, want, false,
	                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	*k = (uintptr_t)expect;
	*v = (uint64_t)(expect >> 64);
	return ok;
#endif
}

/* Count one more key at home, unless 255 already are (the table must grow). */
static bool count_up(_Atomic uint16_t *m)
{
	uint16_t v = atomic_load(m);
	do {
		if ((v & 0xff) == 0xff)
			return false;
	} while (!atomic_compare_exchange_weak(m, &v, (uint16_t)(v + 1)));
	return true;
}

static void count_down(const struct ht_addrtab *t, uintptr_t p)
{
	if (t && t->counted)
		atomic_fetch_sub(meta_of(t, p), 1);
}

static void raise_reach(_Atomic uint16_t *m, unsigned d)
{
	uint16_t v = atomic_load(m);
	while ((unsigned)(v >> 8) < d &&
	       !atomic_compare_exchange_weak(m, &v, (uint16_t)((v & 0xff) | (d << 8))))
		;
}

/* Put {stored, val} in the first empty slot at or after p's home. The slot,
 * or NULL when there is none within reach (or 255 keys share the home of a
 * counted table). The reach is raised after the slot is taken: whoever looks
 * for this key does so only after the insert has returned, or through a
 * marker written after. The count goes up before: a key in a slot is never
 * uncounted, so no free() filtering on the count can miss it. */
static inline __attribute__((always_inline)) struct ht_addrslot *
tab_insert(struct ht_addrtab *t, uintptr_t p, uintptr_t stored, uint64_t val)
{
	_Atomic uint16_t *m = meta_of(t, p);
	if (t->counted && !count_up(m))
		return NULL;
	uint64_t h = ht_addrset_hash(p, t->shift);
	uint64_t reach = t->nb < MAX_DISP + 1 ? t->nb : MAX_DISP + 1;
	for (uint64_t d = 0; d < reach; d++) {
		struct ht_addrslot *b = bucket_at(t, h + d);
		for (unsigned i = 0; i < WAYS; i++) {
			uintptr_t k = atomic_load_explicit(&b[i].key, memory_order_relaxed);
			if (k != 0)
				continue;
			uint64_t v = atomic_load_explicit(&b[i].val, memory_order_relaxed);
			if (cas16(&b[i], &k, &v, stored, val)) {
				raise_reach(m, (unsigned)d);
				return &b[i];
			}
		}
	}
	count_down(t, p);
	return NULL;
}

/* The slot within reach of p's home holding p in one of `forms` (a bit per
 * tag value). */
static struct ht_addrslot *tab_find(const struct ht_addrtab *t, uintptr_t p, unsigned forms)
{
	if (!t->slots)
		return NULL;
	/* Counted: no key has its home there, in any form. An uncounted
	 * table's low bytes are 1: it looks within the reach every time. */
	uint16_t m = atomic_load(meta_of(t, p));
	if ((m & 0xff) == 0)
		return NULL;
	uint64_t h = ht_addrset_hash(p, t->shift);
	for (unsigned d = 0; d <= (unsigned)(m >> 8); d++) {
		struct ht_addrslot *b = bucket_at(t, h + d);
		for (unsigned i = 0; i < WAYS; i++) {
			uintptr_t k = atomic_load(&b[i].key);
			if ((k & ~TAGS) == p && (forms & FORM(k & TAGS)))
				return &b[i];
		}
	}
	return NULL;
}

/* Take p from slot s of table t (NULL: s was reached through a marker,
 * its table is looked up), following a move to where it went. */
static bool take_at(struct ht_addrslot *s, const struct ht_addrtab *t, uintptr_t p, uint64_t *val,
                    int depth)
{
	if (!t && !(t = owner(s)))
		return false;
	uintptr_t k = atomic_load(&s->key);
	uint64_t v = atomic_load(&s->val);
	for (;;) {
		if ((k & ~TAGS) != p)
			return false; /* moved on and sealed, or never there */
		uintptr_t tag = k & TAGS;
		if (tag == MOVED)
			return depth < MAX_FOLLOW &&
			       take_at((struct ht_addrslot *)(uintptr_t)v, NULL, p, val, depth + 1);
		if (tag != 0 && tag != FROZEN && tag != PENDING)
			return false;
		if (cas16(s, &k, &v, tag == FROZEN ? DEAD : 0, 0)) {
			count_down(t, p);
			*val = v;
			return true;
		}
		/* k and v now hold what is there: a resolved value, a freeze, a
		 * move, a publication. Look again. */
	}
}

/* The tables a lookup goes through: sources oldest first, then the current
 * one. Returns how many. */
static int view(uintptr_t w[SOURCES + 1])
{
	const struct ht_addrtab *t[SOURCES];
	int n = 0;
	uintptr_t cur = atomic_load(&ht_addrset.cur), src[SOURCES];
	if (!(cur & HT_ADDRSET_MOVING)) {
		w[0] = cur; /* no migration: the usual case */
		return 1;
	}
	for (int i = 0; i < SOURCES; i++)
		src[i] = atomic_load(&ht_addrset.src[i]);
	for (int i = 0; i < SOURCES; i++) {
		uintptr_t s = src[i];
		if (!s || tab(s) == tab(cur))
			continue; /* a grow in progress: the same table twice */
		/* Insertion by creation order (at most three). */
		int j = n++;
		for (; j > 0 && t[j - 1]->gen > tab(s)->gen; j--) {
			t[j] = t[j - 1];
			w[j] = w[j - 1];
		}
		t[j] = tab(s);
		w[j] = s;
	}
	w[n++] = cur;
	return n;
}

static bool view_same(const uintptr_t *w, int n)
{
	uintptr_t again[SOURCES + 1];
	if (view(again) != n)
		return false;
	for (int i = 0; i < n; i++)
		if (again[i] != w[i])
			return false;
	return true;
}

/* --------------------------------------------------------------- tables */

static struct ht_addrtab *tab_new(size_t slots, bool counted)
{
	uint64_t nb = 2;
	unsigned bits = 1;
	while (nb * WAYS < slots && nb < MAX_BUCKETS)
		nb <<= 1, bits++;
	/* Plain anonymous memory: pages cost nothing until touched. */
	size_t meta_bytes = HT_ADDRTAB_HDR + nb * sizeof(uint16_t);
	size_t slot_bytes = nb * WAYS * sizeof(struct ht_addrslot);
	void *m =
	        mmap(NULL, meta_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	void *s =
	        mmap(NULL, slot_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED) {
		munmap(m, meta_bytes);
		return NULL;
	}
	struct ht_addrtab *t = m;
	t->nb = nb;
	t->shift = 64 - bits;
	t->slots = s;
	t->slot_bytes = slot_bytes;
	t->meta_bytes = meta_bytes;
	t->counted = counted;
	if (!counted) {
		/* Plain stores, before any thread can see the table (the word
		 * that publishes it comes after): its meta words are all 1
		 * from the start, and for good. They are all resident at once,
		 * 2 bytes per 4 slots. */
		uint16_t *meta = (uint16_t *)((char *)m + HT_ADDRTAB_HDR);
		for (uint64_t b = 0; b < nb; b++)
			meta[b] = 1;
	}
	t->gen = ++generations;
	t->all = atomic_load_explicit(&all_tables, memory_order_relaxed);
	atomic_store_explicit(&all_tables, t, memory_order_release);
	return t;
}

int ht_addrset_init(size_t slots, bool counted)
{
	long pg = sysconf(_SC_PAGESIZE);
	if (pg > 0)
		page = (size_t)pg;
	struct ht_addrtab *t = tab_new(slots, counted);
	if (!t)
		return -ENOMEM;
	/* The descriptor and its meta words (zeros, or all 1 uncounted) are
	 * written before the word that makes lookups use them. */
	atomic_store(&ht_addrset.cur, word(t));
	return 0;
}

size_t ht_addrset_capacity(void)
{
	const struct ht_addrtab *t = tab(atomic_load(&ht_addrset.cur));
	return t->slots ? t->nb * WAYS : 0;
}

bool ht_addrset_migrating(void)
{
	return (atomic_load(&ht_addrset.cur) & HT_ADDRSET_MOVING) != 0;
}

bool ht_addrset_counted(void)
{
	return tab(atomic_load(&ht_addrset.cur))->counted;
}

/* ------------------------------------------------------- program threads */

int ht_addrset_insert(const void *p, uint64_t val)
{
	uintptr_t key = (uintptr_t)p;
	if (!key || (key & TAGS))
		return -EINVAL;
	for (unsigned round = 0; round < 1000; round++) {
		struct ht_addrtab *t = tab(atomic_load(&ht_addrset.cur));
		if (!t->slots)
			return -ENOSPC;
		struct ht_addrslot *s = tab_insert(t, key, key, val);
		if (tab(atomic_load(&ht_addrset.cur)) == t)
			return s ? 0 : -ENOSPC;
		/* The table stopped being current meanwhile: take the key back
		 * unless the migration has frozen or moved it already. */
		if (s) {
			uintptr_t k = key;
			uint64_t v = val;
			if (!cas16(s, &k, &v, 0, 0))
				return 0;
			count_down(t, key);
		}
	}
	return -ENOSPC;
}

/* The usual remove, in one function: no migration under way, and the key
 * found plain in the current table and taken at the first try. Anything
 * else (a migration, a tag, a slot that changed under it: a resolved value
 * put there meanwhile, a grow begun) says false, and the full search
 * follows. Taking a plain key from a table that has just become a source
 * is what the full search does too (the move then finds it gone). */
static inline bool remove_quick(uintptr_t key, uint64_t *val)
{
	uintptr_t w = atomic_load(&ht_addrset.cur);
	if (w & HT_ADDRSET_MOVING)
		return false;
	const struct ht_addrtab *t = tab(w);
	if (!t->slots)
		return false;
	_Atomic uint16_t *m = meta_of(t, key);
	uint16_t mv = atomic_load_explicit(m, memory_order_relaxed);
	uint64_t h = ht_addrset_hash(key, t->shift);
	for (unsigned d = 0; d <= (unsigned)(mv >> 8); d++) {
		struct ht_addrslot *b = bucket_at(t, h + d);
		for (unsigned i = 0; i < WAYS; i++) {
			if (atomic_load_explicit(&b[i].key, memory_order_relaxed) != key)
				continue;
			uintptr_t k = key;
			uint64_t v = atomic_load_explicit(&b[i].val, memory_order_relaxed);
			if (!cas16(&b[i], &k, &v, 0, 0))
				return false;
			if (t->counted)
				atomic_fetch_sub(m, 1);
			*val = v;
			return true;
		}
	}
	return false;
}

bool ht_addrset_remove(const void *p, uint64_t *val)
{
	uintptr_t key = (uintptr_t)p;
	if (!key || (key & TAGS))
		return false;
	if (remove_quick(key, val))
		return true;
	for (unsigned round = 0; round < 1000; round++) {
		uintptr_t w[SOURCES + 1];
		int n = view(w);
		for (int i = 0; i < n; i++) {
			const struct ht_addrtab *t = tab(w[i]);
			struct ht_addrslot *s =
			        tab_find(t, key, FORM(0) | FORM(FROZEN) | FORM(MOVED));
			if (s && take_at(s, t, key, val, 0))
				return true;
		}
		if (view_same(w, n))
			return false;
	}
	return false;
}

/* ---------------------------------------------- the aggregation lock held */

bool ht_addrset_resolve(const void *p, uint64_t id, uint64_t val)
{
	uintptr_t key = (uintptr_t)p;
	if (!key || (key & TAGS))
		return false;
	/* Moves are made under this lock too: no key is frozen, pending or
	 * marked now, and the live one is plain wherever it is. */
	uintptr_t w[SOURCES + 1];
	int n = view(w);
	for (int i = 0; i < n; i++) {
		struct ht_addrslot *s = tab_find(tab(w[i]), key, FORM(0));
		if (!s)
			continue;
		uintptr_t k = key;
		uint64_t v = id;
		/* Fails when the block was freed meanwhile, or when this is a
		 * later incarnation of the pointer (another id). */
		return cas16(s, &k, &v, key, val);
	}
	return false;
}

static int oldest_source(void)
{
	int best = -1;
	for (int i = 0; i < SOURCES; i++) {
		uintptr_t s = atomic_load(&ht_addrset.src[i]);
		if (s && (best < 0 || tab(s)->gen < tab(atomic_load(&ht_addrset.src[best]))->gen))
			best = i;
	}
	return best;
}

int ht_addrset_grow(size_t slots, bool counted)
{
	if (slots > MAX_BUCKETS * WAYS)
		return -ENOSPC; /* as large as it gets */
	int free_i = -1;
	for (int i = SOURCES - 1; i >= 0; i--)
		if (!atomic_load(&ht_addrset.src[i]))
			free_i = i;
	if (free_i < 0)
		return -EBUSY;
	struct ht_addrtab *n = tab_new(slots, counted);
	if (!n)
		return -ENOMEM;
	/* The source first: a thread that sees the new current word sees
	 * every table it must also look in. */
	atomic_store(&ht_addrset.src[free_i], atomic_load(&ht_addrset.cur) & ~HT_ADDRSET_MOVING);
	atomic_store(&ht_addrset.cur, word(n) | HT_ADDRSET_MOVING);
	if (emptying < 0) {
		emptying = free_i;
		cursor = 0;
	}
	return 0;
}

/* Move one slot of a source to the current table n. False when n has no
 * room for it (the key is put back as it was, unless its free took it). */
static bool move_slot(struct ht_addrtab *n, struct ht_addrslot *s)
{
	uintptr_t k = atomic_load(&s->key);
	uint64_t v = atomic_load(&s->val);
	for (;;) {
		if (k & TAGS)
			return true; /* sealed, or freed while frozen */
		if (cas16(s, &k, &v, k ? k | FROZEN : SEALED, k ? v : 0))
			break;
	}
	if (!k)
		return true;
	uintptr_t p = k, fk = p | FROZEN, pk = p | PENDING;
	uint64_t fv = v, pv = v;
	struct ht_addrslot *d = tab_insert(n, p, p | PENDING, v);
	if (!d) {
		cas16(s, &fk, &fv, p, v);
		return false;
	}
	if (cas16(s, &fk, &fv, p | MOVED, (uint64_t)(uintptr_t)d)) {
		/* Fails only if the free took the pending copy first. */
		cas16(d, &pk, &pv, p, v);
		/* The move is over: the marker goes (nobody else changes it). */
		uintptr_t mk = p | MOVED;
		uint64_t mv = (uint64_t)(uintptr_t)d;
		cas16(s, &mk, &mv, SEALED, 0);
	} else if (cas16(d, &pk, &pv, 0, 0)) {
		/* The free took the frozen key (DEAD): the copy goes too. */
		count_down(n, p);
	}
	return true;
}

/* Give back the pages of o's slots that the migration has passed. */
static void release_passed(struct ht_addrtab *o)
{
	size_t upto = (size_t)(cursor * WAYS * sizeof(struct ht_addrslot)) & ~(page - 1);
	size_t done = atomic_load_explicit(&o->released, memory_order_relaxed);
	if (upto > done) {
		madvise((char *)o->slots + done, upto - done, MADV_DONTNEED);
		atomic_store_explicit(&o->released, upto, memory_order_relaxed);
	}
}

static void retire(int i)
{
	struct ht_addrtab *o = tab(atomic_load(&ht_addrset.src[i]));
	atomic_store(&ht_addrset.src[i], 0);
	if (o != &empty.t) {
		/* All of it, again: lookups that read passed pages meanwhile
		 * mapped the kernel's zero page there, which costs nothing but
		 * which mincore would count. */
		madvise(o->slots, o->slot_bytes, MADV_DONTNEED);
		atomic_store_explicit(&o->released, o->slot_bytes, memory_order_relaxed);
	}
	emptying = oldest_source();
	cursor = 0;
	if (emptying < 0)
		atomic_store(&ht_addrset.cur, atomic_load(&ht_addrset.cur) & ~HT_ADDRSET_MOVING);
}

long ht_addrset_migrate(size_t buckets)
{
	if (emptying < 0)
		emptying = oldest_source();
	if (emptying < 0)
		return 0;
	struct ht_addrtab *o = tab(atomic_load(&ht_addrset.src[emptying]));
	struct ht_addrtab *n = tab(atomic_load(&ht_addrset.cur));
	if (o->slots) {
		uint64_t end = o->nb - cursor > buckets ? cursor + buckets : o->nb;
		for (; cursor < end; cursor++) {
			struct ht_addrslot *b = &o->slots[cursor * WAYS];
			for (unsigned i = 0; i < WAYS; i++)
				if (!move_slot(n, &b[i])) {
					release_passed(o);
					return -ENOSPC;
				}
		}
		release_passed(o);
		if (cursor < o->nb)
			return (long)(o->nb - cursor);
	}
	retire(emptying);
	long left = 0;
	for (int i = 0; i < SOURCES; i++) {
		uintptr_t s = atomic_load(&ht_addrset.src[i]);
		if (s)
			left += (long)tab(s)->nb;
	}
	return left;
}

/* ------------------------------------------------------------- figures */

size_t ht_addrset_resident(void)
{
	/* Every table's meta words, and the slots not given back. What was
	 * given back is left out: a lookup reading it maps the kernel's shared
	 * zero page, which mincore counts but which is nobody's memory (and a
	 * late insert touching a page there before taking its key back, once
	 * in a long while, is 4 KiB). */
	size_t r = 0;
	for (const struct ht_addrtab *t = atomic_load_explicit(&all_tables, memory_order_acquire);
	     t; t = t->all) {
		size_t gone = atomic_load_explicit(&t->released, memory_order_relaxed);
		r += ht_mem_resident_range(t, t->meta_bytes);
		if (gone < t->slot_bytes)
			r += ht_mem_resident_range((const char *)t->slots + gone,
			                           t->slot_bytes - gone);
	}
	return r;
}
