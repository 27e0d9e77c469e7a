/*
 * agg.c - draining rings into the heap tables, and snapshotting them.
 * See agg.h for the tables.
 *
 * Values are unbiased when the allocation event is drained: each sample adds
 * its weight 1/(1-e^(-size/rate)) (rate as it was when the sample was drawn)
 * to its stack's alloc and inuse counts, and its free takes the same weight
 * back out of inuse. Keeping the per-sample weight rather than scaling sums at
 * write time keeps stacks that mix sizes right, and with rate 1 every weight
 * is exactly 1, so the totals are exact integers.
 */
#include "agg.h"

#include "core.h"
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
	struct stack_ent *older; /* retired stacks, newest first */
	int32_t gone;            /* retired at dlclose: that gone module; else -1 */
	uint32_t depth;
	uintptr_t pcs[];
};

struct szkey {
	const struct stack_ent *st;
	uint64_t size;
};

struct szb {
	UT_hash_handle hh;
	struct szkey k;
	struct szb *next;      /* in its stack */
	double an, ab, in, ib; /* unbiased alloc/inuse objects and bytes */
};

struct live {
	UT_hash_handle hh;
	uint64_t id;
	struct szb *b;
	double w;      /* objects this sample stands for */
	uint64_t size; /* bytes of the sampled block */
};

struct pend {
	UT_hash_handle hh;
	uint64_t id;
};

#define SMALL_REC                                                                                  \
	(sizeof(struct live) > sizeof(struct pend) ? sizeof(struct live) : sizeof(struct pend))
static struct stack_ent *stacks;
static struct stack_ent *retired;
static struct szb *buckets;
static uint64_t nbuckets;
static struct live *lives;
static struct pend *pendings;
static uint64_t nstacks, overflow_samples;
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

static struct stack_ent *stack_intern(const uintptr_t *pcs, uint32_t depth)
{
	struct stack_ent *s = NULL;
	size_t klen = depth * sizeof(uintptr_t);
	if (depth == 0)
		return &overflow_stack;
	unsigned hv;
	HASH_VALUE(pcs, klen, hv);
	HASH_FIND_BYHASHVALUE(hh, stacks, pcs, klen, hv, s);
	if (s)
		return s;
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
	return s;
overflow:
	overflow_samples++;
	return &overflow_stack;
}

/* The (stack, size) bucket. Past HT_AGG_MAX_BUCKETS new sizes go to the
 * stack's newest bucket, so weight is never lost. */
static struct szb *bucket(struct stack_ent *st, uint64_t size)
{
	struct szkey k;
	memset(&k, 0, sizeof(k));
	k.st = st;
	k.size = size;
	struct szb *b = NULL;
	HASH_FIND(hh, buckets, &k, sizeof(k), b);
	if (b)
		return b;
	if (nbuckets >= HT_AGG_MAX_BUCKETS && st->sizes)
		return st->sizes;
	b = ht_mem_calloc(1, sizeof(*b));
	if (!b)
		return st->sizes;
	b->k = k;
	b->next = st->sizes;
	st->sizes = b;
	HASH_ADD(hh, buckets, k, sizeof(b->k), b);
	nbuckets++;
	return b;
}

static void on_alloc(const struct ht_ev_alloc *e)
{
	double w = ht_sample_weight(e->size, e->rate);
	struct stack_ent *st = stack_intern(e->pcs, e->h.depth);
	struct szb *b = bucket(st, e->size);
	if (!b) {
		atomic_fetch_add_explicit(&ht_core.dropped_events, 1, memory_order_relaxed);
		return;
	}
	b->an += w;
	b->ab += w * (double)e->size;
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
	struct live *l = small_new(e->id, offsetof(struct live, id));
	if (!l)
		return;
	l->b = b;
	l->w = w;
	l->size = e->size;
	HASH_ADD(hh, lives, id, sizeof(l->id), l);
	b->in += w;
	b->ib += w * (double)e->size;
	live_objects += w;
	live_bytes += w * (double)e->size;
}

static void on_free(const struct ht_ev_free *e)
{
	struct live *l = NULL;
	HASH_FIND(hh, lives, &e->id, sizeof(e->id), l);
	if (!l) {
		struct pend *p = small_new(e->id, offsetof(struct pend, id));
		if (p)
			HASH_ADD(hh, pendings, id, sizeof(p->id), p);
		return;
	}
	struct szb *b = l->b;
	double bytes = l->w * (double)l->size;
	b->in -= l->w;
	b->ib -= bytes;
	live_objects -= l->w;
	live_bytes -= bytes;
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

static void drain_cb(const struct ht_ev_hdr *h, void *arg)
{
	(void)arg;
	ht_agg_event(h);
}

static void drain_thread(struct ht_thread *th)
{
	ht_ring_drain(&th->ring, drain_cb, NULL);
}

void ht_agg_drain_one(struct ht_thread *th)
{
	if (atomic_load_explicit(&th->ring_ready, memory_order_acquire))
		drain_thread(th);
}

void ht_agg_drain_all(void)
{
	for (struct ht_thread *th = atomic_load_explicit(&ht_threads, memory_order_acquire); th;
	     th = atomic_load_explicit(&th->next, memory_order_acquire)) {
		if (atomic_load_explicit(&th->ring_ready, memory_order_acquire))
			drain_thread(th);
	}
	ht_thread_reap(drain_thread);
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
	out->live_samples = HASH_COUNT(lives);
	out->stacks = nstacks;
	out->pending = HASH_COUNT(pendings);
	out->overflow_samples = overflow_samples;
}

void ht_agg_retire_module(uintptr_t start, uintptr_t limit, int32_t gone)
{
	ht_agg_drain_all();
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
