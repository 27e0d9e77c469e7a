/*
 * track.c - sampling on the slow path. See track.h.
 *
 * A sample: capture the stack (the thread is busy, so whatever libunwind
 * allocates is heaptap's own), give the sample an id (thread serial << 40 |
 * the thread's sample count: unique without a shared counter), enter the
 * pointer in the sampled set, then write an ALLOC event to the thread's ring.
 * A thread drains its own ring into the aggregation tables when it is half
 * full and the aggregation lock is free (never waiting for it). If the ring
 * stays full the sample is dropped and taken out of the set again, so a later
 * free never reports an allocation the aggregator never saw, and the dropped
 * weight is not carried into any other sample.
 */
#include "track.h"

#include "addrset.h"
#include "agg.h"
#include "core.h"
#include "flusher.h"
#include "options.h"
#include "ring.h"
#include "sample.h"
#include "thread.h"
#include "unwind.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

int ht_track_enter(struct ht_tls *t)
{
	if (t->busy)
		return HT_MODE_INTERNAL;
	int st = atomic_load_explicit(&ht_core.state, memory_order_acquire);
	if (__builtin_expect(st != HT_READY, 0)) {
		if (st != HT_INERT)
			st = ht_init();
		if (st != HT_READY)
			return HT_MODE_FORWARD;
	}
	if (__builtin_expect(ht_flusher_wanted(), 0))
		ht_flusher_start();
	return HT_MODE_FORWARD;
}

/* Room in the ring. A full ring is drained by the thread itself whenever the
 * aggregation lock is free; while someone else holds it the thread waits in
 * 50 us steps: up to 1 ms for an allocation, 10 ms for a free (a lost free
 * would leave a phantom live block), a second at exact rates, where nothing
 * may be lost. Then the event is dropped and counted. */
static void *reserve(struct ht_thread *th, uint32_t len, uint64_t rate, int is_free)
{
	void *rec = ht_ring_reserve(&th->ring, len);
	if (rec)
		return rec;
	int rounds = rate < HT_EXACT_RATE_LIMIT ? 20000 : is_free ? 200 : 20;
	for (int i = 0; i < rounds && !rec; i++) {
		/* If the aggregator is free, drain this ring ourselves rather than
		 * sleep: at exact rates that keeps every thread moving. Never
		 * waits for the lock. */
		if (ht_agg_trylock() == 0) {
			ht_agg_drain_one(th);
			ht_agg_unlock();
		} else {
			if (ht_flusher_running())
				ht_flusher_kick();
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
		rec = ht_ring_reserve(&th->ring, len);
	}
	return rec;
}

/* Publish a record. Past half full, the thread drains its own ring into the
 * tables if the aggregation lock is free (it is never waited for here);
 * otherwise the flusher, if there is one, is woken. */
static void commit(struct ht_thread *th, void *rec)
{
	struct ht_ring *r = &th->ring;
	ht_ring_commit(r, rec);
	uint64_t fill = atomic_load_explicit(&r->tail, memory_order_relaxed) -
	                atomic_load_explicit(&r->head, memory_order_relaxed);
	if (fill < r->size / 2)
		return;
	if (ht_agg_trylock() == 0) {
		ht_agg_drain_one(th);
		ht_agg_unlock();
	} else if (ht_flusher_running()) {
		ht_flusher_kick();
	}
}

static void take_sample(struct ht_tls *t, void *p, size_t n, uint64_t rate, uintptr_t ra)
{
	struct ht_thread *th = ht_thread_self();
	if (!th || ht_thread_ring(th) != 0) {
		atomic_fetch_add_explicit(&ht_core.dropped_samples, 1, memory_order_relaxed);
		return;
	}
	/* Sized by HEAPTAP_DEPTH, not the maximum: this may run on a small
	 * stack (a signal handler's sigaltstack, a fiber). */
	unsigned max = ht_opt.depth < HT_MAX_DEPTH ? ht_opt.depth : HT_MAX_DEPTH;
	uintptr_t pcs[max + HT_UNWIND_SLACK];
	unsigned depth = ht_unwind_capture(pcs, max, ra, rate < HT_EXACT_RATE_LIMIT);
	uint64_t id = ((uint64_t)th->serial << 40) | (th->nsamples++ & (((uint64_t)1 << 40) - 1));
	if (ht_addrset_insert(p, id) != 0) {
		atomic_fetch_add_explicit(&ht_core.dropped_samples, 1, memory_order_relaxed);
		return;
	}
	uint32_t len = (uint32_t)(sizeof(struct ht_ev_alloc) + depth * sizeof(uintptr_t));
	struct ht_ev_alloc *e = reserve(th, len, rate, 0);
	if (!e) {
		uint64_t dummy;
		ht_addrset_remove(p, &dummy);
		atomic_fetch_add_explicit(&ht_core.dropped_samples, 1, memory_order_relaxed);
		return;
	}
	e->h.kind = HT_EV_ALLOC;
	e->h.depth = (uint16_t)depth;
	e->id = id;
	e->size = n;
	e->rate = rate;
	memcpy(e->pcs, pcs, depth * sizeof(uintptr_t));
	commit(th, e);
	(void)t;
	ht_flusher_note_need();
}

void ht_track_alloc(struct ht_tls *t, void *p, size_t n, uintptr_t ra)
{
	if (atomic_load_explicit(&ht_core.state, memory_order_relaxed) != HT_READY) {
		t->countdown = HT_SAMPLE_OFF_GAP;
		return;
	}
	int saved_errno = errno;
	uint64_t now_rate = atomic_load_explicit(&ht_core.rate, memory_order_relaxed);
	if (t->rng == 0) {
		/* The thread's first allocation: draw its first gap, then see
		 * whether this allocation reaches it. */
		t->rng = ht_sample_seed((uint64_t)(uintptr_t)t ^ (uint64_t)n);
		t->gap_rate = now_rate;
		int64_t c = ht_sample_gap(&t->rng, now_rate) -
		            (int64_t)(n > INT64_MAX / 2 ? INT64_MAX / 2 : n);
		if (c > 0 || now_rate == 0) {
			t->countdown = c > 0 ? c : HT_SAMPLE_OFF_GAP;
			errno = saved_errno;
			return;
		}
	}
	uint64_t rate = t->gap_rate;
	if (p && rate != 0 && !atomic_load_explicit(&ht_core.paused, memory_order_relaxed)) {
		ht_busy_enter(t);
		int cs;
		/* libunwind may read(2): never be a cancellation point here. */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
		take_sample(t, p, n, rate, ra);
		pthread_setcancelstate(cs, NULL);
		ht_busy_exit(t);
	}
	t->gap_rate = now_rate;
	t->countdown = ht_sample_gap(&t->rng, now_rate);
	errno = saved_errno;
}

int ht_track_forget(void *p, uint64_t *id)
{
	return ht_addrset_remove(p, id) ? 1 : 0;
}

void ht_track_free_event(uint64_t id)
{
	struct ht_tls *t = &ht_tls;
	int saved_errno = errno;
	ht_busy_enter(t);
	struct ht_thread *th = ht_thread_self();
	struct ht_ev_free *e = NULL;
	if (th && ht_thread_ring(th) == 0)
		e = reserve(th, sizeof(*e),
		            atomic_load_explicit(&ht_core.rate, memory_order_relaxed), 1);
	if (e) {
		e->h.kind = HT_EV_FREE;
		e->h.depth = 0;
		e->id = id;
		commit(th, e);
	} else {
		atomic_fetch_add_explicit(&ht_core.dropped_events, 1, memory_order_relaxed);
	}
	ht_busy_exit(t);
	errno = saved_errno;
}

void ht_track_restore(void *p, uint64_t id)
{
	if (ht_addrset_insert(p, id) != 0) {
		/* Cannot put it back: the aggregator sees it freed. */
		ht_track_free_event(id);
	}
}
