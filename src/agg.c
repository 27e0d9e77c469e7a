/*
 * agg.c - draining rings into the heap tables, and snapshotting them.
 * See agg.h for the tables.
 *
 * Values are unbiased when the allocation event is drained: each sample adds
 * its weight 1/(1-e^(-size/rate)) (rate as it was when the sample was drawn)
 * to its bucket's alloc and inuse counts, and its free takes the same weight
 * back out of inuse. Keeping the per-sample weight rather than scaling sums at
 * write time keeps stacks that mix sizes right, and with rate 1 every weight
 * is exactly 1, so the totals are exact integers.
 *
 * A live sample is kept in one place: its slot in the table of sampled
 * pointers (addrset.c), 16 bytes. The sampling thread leaves the sample's id
 * there; draining the allocation puts in its place the sample's bucket
 * number and the number of the rate it was drawn with. A free then reports
 * the slot's value: a resolved one names everything needed to take the
 * block out of its bucket, with no lookup (the bucket gives the size, and
 * the weight is computed again from size and rate: the same double). Only
 * samples freed before their allocation was drained (the free reports the
 * bare id) get a record here, keyed by id, as do frees drained before
 * their allocation ("pending"); both exist only while events are in flight
 * in the rings. Samples freed by their own thread within one drain of its
 * ring never touch the table or the records at all (see "batch" below).
 *
 * The table of sampled pointers grows here, under the aggregation lock: at
 * three quarters full it starts a migration to a table twice the size, which
 * moves a chunk of buckets on every drain (heaptap's thread keeps draining
 * until it is done), so no program thread waits for a whole table's move.
 * Every table made here is uncounted while the rate is 1 and counted
 * otherwise (addrset.h); when the program sets the rate to or from 1, the
 * next drain with no migration under way starts one to a table of the same
 * size and the other kind.
 */
#include "agg.h"

#include "addrset.h"
#include "core.h"
#include "flusher.h"
#include "mem.h"
#include "ring.h"
#include "sample.h"
#include "thread.h"
#include "tls.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hash.h"

static pthread_mutex_t agg_mutex = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(const void *) agg_owner; /* &ht_tls of the holder */
static sigset_t held_mask;              /* the holder's signal mask before */

/* Every signal is blocked while the lock is held: a handler that
 * siglongjmps out of a program thread holding it would leave it held for
 * good (every later dump waits for it), and the tables half-updated.
 * Holders are few and brief (a drain, a snapshot), so the two syscalls do
 * not show. */
static void block_all(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

void ht_agg_lock(void)
{
	sigset_t old;
	block_all(&old);
	pthread_mutex_lock(&agg_mutex);
	held_mask = old;
	atomic_store_explicit(&agg_owner, &ht_tls, memory_order_relaxed);
}

int ht_agg_trylock(void)
{
	/* Held by someone (the usual answer at exact rates, asked on every
	 * commit past half a ring): say so without the two syscalls. */
	if (atomic_load_explicit(&agg_owner, memory_order_relaxed) != NULL)
		return -EBUSY;
	sigset_t old;
	block_all(&old);
	if (pthread_mutex_trylock(&agg_mutex) != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return -EBUSY;
	}
	held_mask = old;
	atomic_store_explicit(&agg_owner, &ht_tls, memory_order_relaxed);
	return 0;
}

void ht_agg_unlock(void)
{
	sigset_t old = held_mask;
	atomic_store_explicit(&agg_owner, NULL, memory_order_relaxed);
	pthread_mutex_unlock(&agg_mutex);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

bool ht_agg_lock_is_mine(void)
{
	return atomic_load_explicit(&agg_owner, memory_order_relaxed) == &ht_tls;
}

/* One distinct call stack. What was sampled there is kept per allocation
 * size, as Go's buckets are keyed by (stack, size): each becomes one sample
 * whose `bytes` label never changes, so the identity of a sample (its
 * addresses and labels) is the same from one dump or scrape to the next and
 * scrapers that subtract consecutive profiles can match it. */
struct szb;
struct stack_ent {
	UT_hash_handle hh;
	struct szb *sizes;       /* its size buckets, newest first */
	struct szb *last;        /* the one used last (a stack's sizes repeat) */
	struct szent *stab;      /* its buckets by size (open addressing); NULL while one */
	uint32_t scap, nsz;      /* slots of stab (a power of two), buckets in it */
	struct stack_ent *older; /* retired stacks, newest first */
	int32_t gone;            /* retired at dlclose: that gone module; else -1 */
	uint32_t depth;
	uintptr_t pcs[];
};

struct szkey {
	const struct stack_ent *st;
	uint64_t size;
};

/* A stack's table of its buckets by size. Per stack rather than one table
 * of (stack, size) keys for all: at rate 1 a program can have millions of
 * buckets (every size from every place), and a lookup then costs a miss in
 * a large shared table and one per record on its chain; here it reads the
 * stack's own small array, 16 bytes a size. */
struct szent {
	uint64_t size;
	struct szb *b; /* NULL: empty slot */
};

struct szb {
	struct szkey k;
	struct szb *next;      /* in its stack */
	uint32_t id;           /* its number in by_id: what a resolved slot names */
	double an, ab, in, ib; /* unbiased alloc/inuse objects and bytes */
};

/* A live sample whose slot could not carry it: freed before its allocation
 * was drained, or in a bucket of another size (past HT_AGG_MAX_BUCKETS). */
struct live {
	UT_hash_handle hh;
	uint64_t id;
	struct szb *b;
	double w;      /* objects this sample stands for */
	uint64_t size; /* bytes of the sampled block */
};

/* A slot's value once resolved: bit 63, the bucket's number (31 bits), the
 * rate's number (32 bits). Ids have bit 63 clear (ring.h). */
#define RESOLVED  ((uint64_t)1 << 63)
#define NO_ID     UINT32_MAX
#define MAX_BY_ID ((uint32_t)1 << 31)
#define MAX_RATES 4096

struct pend {
	UT_hash_handle hh;
	uint64_t id;
};

#define SMALL_REC                                                                                  \
	(sizeof(struct live) > sizeof(struct pend) ? sizeof(struct live) : sizeof(struct pend))
static struct stack_ent *stacks;
static struct stack_ent *retired;
static uint64_t nbuckets;
static struct szb **by_id; /* bucket by number */
static uint32_t by_id_len, by_id_cap;
static struct live *lives;
static struct pend *pendings;
static uint64_t nstacks, overflow_samples, live_samples;
/* The rates samples were drawn with: they change only when the program
 * calls heaptap_set_rate. Past MAX_RATES of them, samples keep records. */
static uint64_t rates[MAX_RATES];
static uint32_t nrates, last_rate;
static double live_bytes, live_objects;
/* Samples whose stack did not fit the table all go to this one empty stack,
 * so their weight still counts and totals stay right. */
static struct stack_ent overflow_stack = {.gone = -1};

/* live and pend records come and go with every sample: keep freed ones for
 * reuse instead of going back to the shared allocator each time. */
static void *free_small;

static void *small_get(size_t size)
{
	void *p = free_small;
	if (p) {
		free_small = *(void **)p;
		return p;
	}
	return ht_mem_alloc(size);
}

_Static_assert(offsetof(struct live, hh) == 0 && offsetof(struct pend, hh) == 0,
               "small_new hands out records that start with their hash handle");

/* A zeroed hash handle and the id: what a live or pending record starts
 * with. NULL (and the event counted as dropped) when out of memory. */
static void *small_new(uint64_t id, size_t id_offset)
{
	UT_hash_handle *h = small_get(SMALL_REC);
	if (!h) {
		atomic_fetch_add_explicit(&ht_core.dropped_events, 1, memory_order_relaxed);
		return NULL;
	}
	memset(h, 0, sizeof(*h));
	memcpy((char *)h + id_offset, &id, sizeof(id));
	return h;
}

static void small_put(void *p)
{
	*(void **)p = free_small;
	free_small = p;
}

/* The stack interned last. A thread's samples in a row come from the same
 * place more often than not (a loop, a burst of one request type), and
 * comparing a few words costs less than hashing them and walking a chain.
 * Reset when stacks are retired. */
static struct stack_ent *last_stack;

static struct stack_ent *stack_intern(const uintptr_t *pcs, uint32_t depth)
{
	struct stack_ent *s = last_stack;
	size_t klen = depth * sizeof(uintptr_t);
	if (depth == 0)
		return &overflow_stack;
	if (s && s->depth == depth) {
		uint32_t i = 0;
		while (i < depth && s->pcs[i] == pcs[i])
			i++;
		if (i == depth)
			return s;
	}
	s = NULL;
	unsigned hv;
	HASH_VALUE(pcs, klen, hv);
	HASH_FIND_BYHASHVALUE(hh, stacks, pcs, klen, hv, s);
	if (s)
		return last_stack = s;
	if (nstacks >= HT_AGG_MAX_STACKS)
		goto overflow;
	s = ht_mem_calloc(1, sizeof(*s) + klen);
	if (!s)
		goto overflow;
	s->depth = depth;
	s->gone = -1;
	memcpy(s->pcs, pcs, klen);
	HASH_ADD_KEYPTR_BYHASHVALUE(hh, stacks, s->pcs, klen, hv, s);
	nstacks++;
	return last_stack = s;
overflow:
	overflow_samples++;
	return &overflow_stack;
}

/* A number for bucket b, so a slot can name it in 31 bits; NO_ID when the
 * array cannot grow (its samples then keep records here). */
static uint32_t number(struct szb *b)
{
	if (by_id_len == by_id_cap) {
		uint32_t cap = by_id_cap ? by_id_cap * 2 : 1024;
		struct szb **a = cap <= MAX_BY_ID ? ht_mem_realloc(by_id, cap * sizeof(*a)) : NULL;
		if (!a)
			return NO_ID;
		by_id = a;
		by_id_cap = cap;
	}
	by_id[by_id_len] = b;
	return by_id_len++;
}

/* The slot of `size` in a table of sizes: where it is, or the empty slot
 * where it goes (linear probing; the table is never full). */
static uint32_t size_slot(const struct szent *t, uint32_t cap, uint64_t size)
{
	uint32_t j = (uint32_t)((size * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
	while (t[j].b && t[j].size != size)
		j = (j + 1) & (cap - 1);
	return j;
}

/* Put b in st's table of sizes (known absent), growing it at three
 * quarters full. false when there is no memory for that. A stack's first
 * bucket needs no table (most stacks allocate one size: 64 bytes saved on
 * each); its second makes one, with the first put in it. */
static bool size_put(struct stack_ent *st, struct szb *b)
{
	if (st->nsz == 0) {
		st->nsz = 1;
		return true;
	}
	if ((st->nsz + 1) * 4 > st->scap * 3) {
		uint32_t cap = st->scap ? st->scap * 2 : 4;
		struct szent *t = ht_mem_calloc(cap, sizeof(*t));
		if (!t)
			return false;
		for (uint32_t i = 0; i < st->scap; i++)
			if (st->stab[i].b)
				t[size_slot(t, cap, st->stab[i].size)] = st->stab[i];
		if (!st->stab) /* the one bucket so far */
			t[size_slot(t, cap, st->sizes->k.size)] =
			        (struct szent){st->sizes->k.size, st->sizes};
		ht_mem_free(st->stab);
		st->stab = t;
		st->scap = cap;
	}
	st->stab[size_slot(st->stab, st->scap, b->k.size)] = (struct szent){b->k.size, b};
	st->nsz++;
	return true;
}

/* The (stack, size) bucket. Past HT_AGG_MAX_BUCKETS new sizes go to the
 * stack's newest bucket, so weight is never lost. */
static struct szb *bucket(struct stack_ent *st, uint64_t size)
{
	if (st->last && st->last->k.size == size)
		return st->last;
	if (st->stab) {
		struct szb *b = st->stab[size_slot(st->stab, st->scap, size)].b;
		if (b)
			return st->last = b;
	} else if (st->sizes && st->sizes->k.size == size) {
		return st->last = st->sizes;
	}
	if (nbuckets >= HT_AGG_MAX_BUCKETS && st->sizes)
		return st->sizes;
	struct szb *b = ht_mem_calloc(1, sizeof(*b));
	if (!b)
		return st->sizes;
	b->k.st = st;
	b->k.size = size;
	if (!size_put(st, b)) {
		ht_mem_free(b);
		return st->sizes;
	}
	b->id = number(b);
	b->next = st->sizes;
	st->sizes = b;
	nbuckets++;
	return st->last = b;
}

static uint32_t rate_number(uint64_t rate)
{
	if (last_rate < nrates && rates[last_rate] == rate)
		return last_rate;
	for (uint32_t i = 0; i < nrates; i++)
		if (rates[i] == rate)
			return last_rate = i;
	if (nrates == MAX_RATES)
		return NO_ID;
	rates[nrates] = rate;
	return last_rate = nrates++;
}

static void inuse_add(struct szb *b, double w, uint64_t size)
{
	double bytes = w * (double)size;
	b->in += w;
	b->ib += bytes;
	live_objects += w;
	live_bytes += bytes;
	live_samples++;
}

static void inuse_sub(struct szb *b, double w, uint64_t size)
{
	double bytes = w * (double)size;
	b->in -= w;
	b->ib -= bytes;
	live_objects -= w;
	live_bytes -= bytes;
	live_samples--;
}

/* A sample's weight (sample.h), computed once per size and rate: a
 * program allocates few distinct sizes at a time, and expm1 costs more
 * than the rest of an event's aggregation. The same double either way, so
 * a free takes back exactly what its allocation added. Aggregation lock
 * held. */
#define WEIGHTS 64
static struct {
	uint64_t size, rate;
	double w;
} weights[WEIGHTS];

static double weight_of(uint64_t size, uint64_t rate)
{
	if (rate <= 1)
		return 1.0;
	unsigned j = (unsigned)((size * 0x9E3779B97F4A7C15ull) >> 58);
	if (weights[j].size != size || weights[j].rate != rate) {
		weights[j].size = size;
		weights[j].rate = rate;
		weights[j].w = ht_sample_weight(size, rate);
	}
	return weights[j].w;
}

/* An ALLOC's counts: its weight added to its bucket's allocations. The
 * bucket, or NULL (counted as dropped) when there is none. */
static struct szb *alloc_counts(const struct ht_ev_alloc *e, double *weight)
{
	double w = *weight = weight_of(e->size, e->rate);
	struct stack_ent *st = stack_intern(e->pcs, e->h.depth);
	struct szb *b = bucket(st, e->size);
	if (!b) {
		atomic_fetch_add_explicit(&ht_core.dropped_events, 1, memory_order_relaxed);
		return NULL;
	}
	b->an += w;
	b->ab += w * (double)e->size;
	return b;
}

/* An ALLOC whose sample is still live as far as its ring says: in use
 * from now on (w objects), its slot resolved to its bucket. */
static void alloc_live(const struct ht_ev_alloc *e, struct szb *b, double w)
{
	/* Freed already (the free was drained first)? Then it is not live. */
	struct pend *p = NULL;
	if (pendings) {
		HASH_FIND(hh, pendings, &e->id, sizeof(e->id), p);
		if (p) {
			HASH_DEL(pendings, p);
			small_put(p);
			return;
		}
	}
	uint32_t r = rate_number(e->rate);
	if (b->id != NO_ID && r != NO_ID && b->k.size == e->size &&
	    ht_addrset_resolve((const void *)e->ptr, e->id, RESOLVED | (uint64_t)b->id << 32 | r)) {
		inuse_add(b, w, e->size);
		return;
	}
	/* Freed meanwhile, its free not drained yet (it reports the id), or a
	 * bucket the slot cannot name: a record until the free. */
	struct live *l = small_new(e->id, offsetof(struct live, id));
	if (!l)
		return;
	l->b = b;
	l->w = w;
	l->size = e->size;
	HASH_ADD(hh, lives, id, sizeof(l->id), l);
	inuse_add(b, w, e->size);
}

static void on_alloc(const struct ht_ev_alloc *e)
{
	double w;
	struct szb *b = alloc_counts(e, &w);
	if (b)
		alloc_live(e, b, w);
}

static void on_free(const struct ht_ev_free *e)
{
	if (e->id & RESOLVED) {
		uint32_t n = (uint32_t)(e->id >> 32) & (MAX_BY_ID - 1), r = (uint32_t)e->id;
		if (n < by_id_len && r < nrates) {
			struct szb *b = by_id[n];
			inuse_sub(b, weight_of(b->k.size, rates[r]), b->k.size);
		}
		return;
	}
	struct live *l = NULL;
	HASH_FIND(hh, lives, &e->id, sizeof(e->id), l);
	if (!l) {
		struct pend *p = small_new(e->id, offsetof(struct pend, id));
		if (p)
			HASH_ADD(hh, pendings, id, sizeof(p->id), p);
		return;
	}
	inuse_sub(l->b, l->w, l->size);
	HASH_DEL(lives, l);
	small_put(l);
}

void ht_agg_event(const struct ht_ev_hdr *h)
{
	if (h->kind == HT_EV_ALLOC)
		on_alloc((const struct ht_ev_alloc *)h);
	else if (h->kind == HT_EV_FREE)
		on_free((const struct ht_ev_free *)h);
}

/* One drain of one thread's ring is a batch. Most samples are freed soon,
 * and by the thread that took them: when a sample's FREE is in the same
 * batch as its ALLOC, the two only add to the alloc counts, with no record,
 * no slot to resolve (it is gone already) and no in-use to add and take
 * back (the same totals: at rate 1, integers either way). So the batch is
 * read once, in order: an ALLOC adds its counts and is put aside, by its
 * count in the thread (ids carry the thread's serial and a count that only
 * grows, so the batch's samples are numbered from its first ALLOC's); a
 * FREE of a sample put aside takes it off again; a FREE of any other is
 * taken out at once. At the end, before the ring gets the records back,
 * the samples still put aside become live. A thread's FREE always follows its
 * own ALLOC in its ring: the block is not the program's before the ALLOC
 * is written. */
#define BATCH_MAX 8192 /* ALLOCs put aside; a 256 KiB ring holds at most 6,553 */
#define NO_BASE   UINT64_MAX
static struct {
	uint64_t serial; /* the thread's, as ids carry it */
	uint64_t base;   /* count of the batch's first ALLOC */
	uint64_t n;      /* entries of aside[] that may be set */
	struct {
		/* NULL: no ALLOC of that count, or freed in the batch */
		const struct ht_ev_alloc *e;
		struct szb *b;
	} aside[BATCH_MAX];
} batch;

/* The entry of a sample of this batch's thread that may be in the batch. */
static bool batch_bit(uint64_t id, uint64_t *bit)
{
	if (id >> HT_ID_COUNT_BITS != batch.serial || batch.base == NO_BASE)
		return false; /* another thread's (or a resolved value: bit 63) */
	*bit = (id & HT_ID_COUNT_MASK) - batch.base;
	return *bit < BATCH_MAX;
}

static void batch_event(const struct ht_ev_hdr *h, void *arg)
{
	(void)arg;
	uint64_t bit;
	if (h->kind == HT_EV_ALLOC) {
		const struct ht_ev_alloc *e = (const struct ht_ev_alloc *)h;
		double w;
		struct szb *b = alloc_counts(e, &w);
		if (!b)
			return;
		if (batch.base == NO_BASE && e->id >> HT_ID_COUNT_BITS == batch.serial)
			batch.base = e->id & HT_ID_COUNT_MASK;
		if (batch_bit(e->id, &bit)) {
			batch.aside[bit].e = e;
			batch.aside[bit].b = b;
			if (bit >= batch.n)
				batch.n = bit + 1;
			return;
		}
		alloc_live(e, b, w);
	} else if (h->kind == HT_EV_FREE) {
		const struct ht_ev_free *e = (const struct ht_ev_free *)h;
		if (batch_bit(e->id, &bit) && bit < batch.n && batch.aside[bit].e) {
			/* Its ALLOC came before, in this batch: nothing to take
			 * back, and it never becomes live. */
			batch.aside[bit].e = NULL;
			return;
		}
		on_free(e);
	}
}

static void batch_end(void *arg)
{
	(void)arg;
	for (uint64_t i = 0; i < batch.n; i++) {
		const struct ht_ev_alloc *e = batch.aside[i].e;
		if (e)
			alloc_live(e, batch.aside[i].b, weight_of(e->size, e->rate));
		batch.aside[i].e = NULL;
	}
	batch.n = 0;
}

static void drain_thread(struct ht_thread *th)
{
	batch.serial = th->serial & HT_ID_SERIAL_MASK;
	batch.base = NO_BASE;
	ht_ring_drain_batch(&th->ring, batch_event, batch_end, NULL);
}

/* ------------------------------------------- the table of sampled pointers */

/* Buckets moved per chunk: about 4096 slots, a few hundred microseconds
 * with the lock held, so a thread whose ring is full waits no longer. */
#define MIGRATE_CHUNK 1024

/* The kind of table the rate wants: at rate 1 nearly every free is of a
 * sampled block, and counting keys at home would only cost each malloc and
 * free a locked instruction more (addrset.h). */
static bool counted_wanted(void)
{
	return atomic_load_explicit(&ht_core.rate, memory_order_relaxed) != 1;
}

/* Grow the table when the live samples would fill three quarters of the
 * current one (by the samples drained so far; the ones still in rings come
 * on top, which the quarter left covers for tables past a few rings'
 * worth). It doubles: a live sample then costs 16 bytes / load plus 2 bytes
 * per 4 slots of meta, 22 to 44 bytes. Should a migration not be over by
 * then, the current table joins its sources and the next size takes over.
 * A table of the wrong kind for the rate (the program called
 * heaptap_set_rate to or from 1) is replaced by one of the same size, once
 * no migration is under way: one at a time, so a rate going back and forth
 * never piles up sources (a growth meanwhile makes the kind wanted then). */
static void table_upkeep(bool move)
{
	size_t cap = ht_addrset_capacity();
	bool counted = counted_wanted();
	if (cap && live_samples > cap / 4 * 3)
		ht_addrset_grow(cap * 2, counted); /* -EBUSY: sources all in use, they go first */
	else if (cap && !ht_addrset_migrating() && ht_addrset_counted() != counted)
		ht_addrset_grow(cap, counted);
	if (move && ht_addrset_migrating())
		ht_addrset_migrate(MIGRATE_CHUNK);
}

bool ht_agg_table_work(void)
{
	return ht_addrset_migrating();
}

int ht_agg_make_room(void)
{
	/* Finish the migration under way, which may be all the room needed;
	 * else (or when the current table is what is full) double it now. */
	if (ht_addrset_migrating()) {
		long left;
		while ((left = ht_addrset_migrate(MIGRATE_CHUNK * 16)) > 0)
			;
		if (left == 0)
			return 0;
	}
	size_t cap = ht_addrset_capacity();
	return cap ? ht_addrset_grow(cap * 2, counted_wanted()) : -ENOSPC;
}

void ht_agg_drain_one(struct ht_thread *th)
{
	if (atomic_load_explicit(&th->ring_ready, memory_order_acquire))
		drain_thread(th);
	/* A program thread moves table chunks only when heaptap has no thread
	 * of its own to do it; otherwise that thread is woken for it. */
	bool own = ht_flusher_running();
	table_upkeep(!own);
	if (own && ht_addrset_migrating())
		ht_flusher_kick();
}

void ht_agg_drain_all(void)
{
	for (struct ht_thread *th = atomic_load_explicit(&ht_threads, memory_order_acquire); th;
	     th = atomic_load_explicit(&th->next, memory_order_acquire)) {
		if (atomic_load_explicit(&th->ring_ready, memory_order_acquire))
			drain_thread(th);
	}
	ht_thread_reap(drain_thread);
	table_upkeep(true);
}

static int64_t round_nonneg(double v)
{
	/* Drift from adding and removing the same weights stays far below
	 * 0.5; clamp the tiny negatives it can leave at zero. */
	if (v < 0.5)
		return 0;
	return (int64_t)(v + 0.5);
}

static void row_from(struct ht_heap_row *r, const struct stack_ent *s, const struct szb *b)
{
	r->pcs = s->pcs;
	r->depth = s->depth;
	r->pinned = (uint32_t)(s->gone + 1);
	r->size = b->k.size;
	r->alloc_objects = b->an;
	r->alloc_bytes = b->ab;
	r->inuse_objects = b->in < 0 ? 0 : b->in;
	r->inuse_bytes = b->ib < 0 ? 0 : b->ib;
}

static size_t rows_of(struct ht_heap_row *r, const struct stack_ent *s)
{
	size_t k = 0;
	for (const struct szb *b = s->sizes; b; b = b->next) {
		if (round_nonneg(b->an) == 0 && round_nonneg(b->in) == 0)
			continue;
		row_from(&r[k++], s, b);
	}
	return k;
}

int ht_agg_heap_rows(struct ht_heap_row **rows, size_t *n)
{
	size_t cap = nbuckets + 1, k = 0;
	struct ht_heap_row *r = ht_mem_calloc(cap, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (struct stack_ent *s = stacks; s; s = s->hh.next)
		k += rows_of(r + k, s);
	for (struct stack_ent *s = retired; s; s = s->older)
		k += rows_of(r + k, s);
	/* Samples that did not fit the table, and samples whose stack could not
	 * be walked at all: "[unknown stack]" rows, so their weight counts. */
	k += rows_of(r + k, &overflow_stack);
	*rows = r;
	*n = k;
	return 0;
}

void ht_agg_totals(struct ht_agg_totals *out)
{
	out->live_bytes = live_bytes < 0 ? 0 : live_bytes;
	out->live_objects = live_objects < 0 ? 0 : live_objects;
	out->live_samples = live_samples;
	out->stacks = nstacks;
	out->pending = HASH_COUNT(pendings);
	out->overflow_samples = overflow_samples;
}

void ht_agg_retire_module(uintptr_t start, uintptr_t limit, int32_t gone)
{
	ht_agg_drain_all();
	last_stack = NULL;
	struct stack_ent *s, *tmp;
	HASH_ITER(hh, stacks, s, tmp)
	{
		for (uint32_t i = 0; i < s->depth; i++) {
			if (s->pcs[i] - 1 >= start && s->pcs[i] - 1 < limit) {
				HASH_DEL(stacks, s);
				s->gone = gone;
				s->older = retired;
				retired = s;
				break;
			}
		}
	}
}

void ht_agg_atfork_child(void)
{
	/* Held across fork() by the forking thread (see core.c): its signal
	 * mask comes back with the lock. */
	bool mine = ht_agg_lock_is_mine();
	pthread_mutex_init(&agg_mutex, NULL);
	atomic_store(&agg_owner, NULL);
	if (mine)
		pthread_sigmask(SIG_SETMASK, &held_mask, NULL);
}
