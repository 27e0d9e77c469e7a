/*
 * track.c - sampling on the slow path. See track.h.
 *
 * A sample: capture the stack (the thread is busy, so whatever libunwind
 * allocates is heaptap's own), give the sample an id (ring.h: the thread's
 * serial and sample count), enter the pointer in the sampled set, then
 * write an ALLOC event to the thread's ring.
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
#include "loader.h"
#include "mem.h"
#include "options.h"
#include "ring.h"
#include "sample.h"
#include "signals.h"
#include "stack.h"
#include "thread.h"
#include "unwind.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

/* Is the thread's busy section one this call is nested in (heaptap's own
 * work, or a signal handler that interrupted it), or one that was left for
 * good, by a siglongjmp out of a handler that interrupted it (matrix item
 * S04)? The frame that entered the section is alive while it lies above
 * this one on the same stack and still holds the return address it was
 * entered with (heaptap keeps frame pointers, so that is [frame + 8]).
 * Calls made on heaptap's own stack, or by a handler on an alternate stack,
 * are nested; a call back on the thread's stack when the section was
 * entered off it (on an alternate stack) is not. */
static bool busy_abandoned(struct ht_tls *t)
{
	uintptr_t here = (uintptr_t)__builtin_frame_address(0), at = t->busy_frame;
	const struct ht_thread *th = t->thr;
	if (th && ht_stack_is_own(th, here))
		return false;
	bool here_in = th && ht_stack_in_bounds(th, here), at_in = th && ht_stack_in_bounds(th, at);
	if (here_in != at_in)
		return here_in;
	if (at > here)
		return *(const volatile uintptr_t *)(at + sizeof(uintptr_t)) != t->busy_ret;
	uintptr_t lo, hi;
	if (ht_stack_alt(&lo, &hi) && (at <= lo || at > hi))
		return false; /* a handler on its own stack, above the section */
	return true;
}

/* Cancellation. A sample must never be a cancellation point: a thread
 * cancelled inside it would leave its busy section, a ring reservation or
 * heaptap's own allocator mid-way. Turning cancellation off costs two
 * locked instructions in glibc (pthread_setcancelstate), a tenth of a
 * sample at rate 1, so it is turned off only on the way into something
 * that may be a cancellation point: a wait (nanosleep), libunwind, a
 * thread's first set-up (stack bounds, ring); the busy section's end
 * (ht_busy_exit) turns it back on. The common sample (heaptap's own
 * unwinder, room in the ring and the set) calls nothing that could be one;
 * heaptap's writes (log lines, io.c) and the flusher's wake-up are raw
 * syscalls, which never are. */
void ht_track_nocancel(void)
{
	struct ht_tls *t = &ht_tls;
	if (t->cancel_off || !t->busy)
		return; /* off already; or no busy section to turn it back on */
	/* Marked off before glibc turns it off: a handler that leaves the
	 * section by longjmp after the change but before a mark made after it
	 * would leave cancellation disabled for good, and the next call here
	 * would save "disabled" as the program's state (reliability.longjmp
	 * under HEAPTAP_UNWIND_CHECK=1, where every sample calls libunwind).
	 * Until the call returns, cancel_state is what the thread's last call
	 * found, its usual state (a new thread's TLS: 0, enabled). */
	t->cancel_off = 1;
	int cs;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
	t->cancel_state = cs;
}

bool ht_track_recover_busy(struct ht_tls *t)
{
	if (!busy_abandoned(t))
		return false;
	/* What the abandoned section held is released: heaptap's own
	 * allocator's locks (each of its sections publishes with a single
	 * store, so at worst a block is lost) and the cancellation state it
	 * turned off. The aggregation lock is never held with signals open
	 * (agg.c). */
	ht_busy_close(t);
	ht_mem_release_mine();
	atomic_fetch_add_explicit(&ht_core.busy_resets, 1, memory_order_relaxed);
	return true;
}

enum ht_mode ht_track_enter(struct ht_tls *t)
{
	if (!ht_track_recover(t))
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

/* Drain this thread's own ring into the tables if the aggregation lock is
 * free (it is never waited for here). */
static bool drain_self(struct ht_thread *th)
{
	if (ht_agg_trylock() != 0)
		return false;
	ht_agg_drain_one(th);
	ht_agg_unlock();
	return true;
}

/* Room in the ring. A full ring is drained by the thread itself whenever the
 * aggregation lock is free; while someone else holds it the thread waits in
 * 50 us steps: up to 1 ms for an allocation, 10 ms for a free (a lost free
 * would leave a phantom live block), a second at exact rates, where nothing
 * may be lost. Then the event is dropped and counted. */
static __attribute__((noinline)) void *reserve_wait(struct ht_thread *th, uint32_t len,
                                                    uint64_t rate, int is_free)
{
	void *rec = NULL;
	int rounds = rate < HT_EXACT_RATE_LIMIT ? 20000 : is_free ? 200 : 20;
	ht_track_nocancel();
	for (int i = 0; i < rounds && !rec; i++) {
		/* If the aggregator is free, drain this ring ourselves rather than
		 * sleep: at exact rates that keeps every thread moving. */
		if (!drain_self(th)) {
			if (ht_flusher_running())
				ht_flusher_kick();
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
		rec = ht_ring_reserve(&th->ring, len);
	}
	return rec;
}

static inline void *reserve(struct ht_thread *th, uint32_t len, uint64_t rate, int is_free)
{
	void *rec = ht_ring_reserve(&th->ring, len);
	if (__builtin_expect(rec != NULL, 1))
		return rec;
	return reserve_wait(th, len, rate, is_free);
}

/* Publish a record. When it takes the ring past half full, or past a
 * further eighth, the thread drains its own ring into the tables if the
 * aggregation lock is free; otherwise the flusher, if there is one, is
 * woken. Only then: trying the lock (two syscalls when it is free) and
 * waking the flusher (a shared write and a syscall) on every record while
 * another thread holds the lock is what kept rate 1 from scaling with
 * threads. A ring that fills all the same waits in reserve(). */
static void commit(struct ht_thread *th, void *rec)
{
	struct ht_ring *r = &th->ring;
	uint32_t len = ((const struct ht_ev_hdr *)rec)->len;
	ht_ring_commit(r, rec);
	uint64_t fill = atomic_load_explicit(&r->tail, memory_order_relaxed) -
	                atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t eighth = r->size / 8;
	if (fill < r->size / 2 || fill / eighth == (fill - len) / eighth)
		return;
	if (!drain_self(th) && ht_flusher_running())
		ht_flusher_kick();
}

_Static_assert((HT_MAX_DEPTH + HT_UNWIND_SLACK) * sizeof(uintptr_t) <= HT_RING_WORK_AT,
               "a walk's frames fit the ring's scratch, below the unwinder's work area");

struct sample {
	struct ht_thread *th;
	void *p;
	size_t n;
	uint64_t rate;
	uintptr_t ra, fp;
};

/* Enter the sample in the sampled set. The aggregator grows the set in
 * time by the samples it has drained; when those still in the rings fill it
 * first, an insert finds no room near the pointer's home, and the set is
 * grown from here. The lock is only tried, as for a full ring; at exact
 * rates, where nothing may be lost, tried again in 50 us steps for up to a
 * second. */
static int enter(const struct sample *sm, uint64_t id)
{
	int r = ht_addrset_insert(sm->p, id);
	int rounds = sm->rate < HT_EXACT_RATE_LIMIT ? 20000 : 1;
	if (r == -ENOSPC)
		ht_track_nocancel();
	for (int i = 0; r == -ENOSPC && i < rounds; i++) {
		if (ht_agg_trylock() == 0) {
			int g = ht_agg_make_room();
			ht_agg_unlock();
			if (g != 0)
				return r; /* as large as it gets, or no memory */
		} else {
			if (ht_flusher_running())
				ht_flusher_kick();
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
		r = ht_addrset_insert(sm->p, id);
	}
	return r;
}

/* Enter the sample in the sampled set and its ALLOC event in the ring. */
static void record(const struct sample *sm, const uintptr_t *pcs, unsigned depth)
{
	struct ht_thread *th = sm->th;
	uint64_t id = ht_ev_id(th->serial, th->nsamples++);
	if (enter(sm, id) != 0) {
		atomic_fetch_add_explicit(&ht_core.dropped_samples, 1, memory_order_relaxed);
		return;
	}
	uint32_t len = (uint32_t)(sizeof(struct ht_ev_alloc) + depth * sizeof(uintptr_t));
	struct ht_ev_alloc *e = reserve(th, len, sm->rate, 0);
	if (!e) {
		uint64_t dummy;
		ht_addrset_remove(sm->p, &dummy);
		atomic_fetch_add_explicit(&ht_core.dropped_samples, 1, memory_order_relaxed);
		return;
	}
	e->h.kind = HT_EV_ALLOC;
	e->h.depth = (uint16_t)depth;
	e->id = id;
	e->size = sm->n;
	e->rate = sm->rate;
	e->ptr = (uintptr_t)sm->p;
	/* A few words: a loop, not a call to memcpy. */
	for (unsigned i = 0; i < depth; i++)
		e->pcs[i] = pcs[i];
	commit(th, e);
}

/* Walk and record, where stack.h says: in place on a roomy stack (inlined
 * into take_sample, so the walk crosses no extra frame), on heaptap's own
 * stack on a small one, where the frame array and the walk cost the
 * program's stack nothing. No ring reservation is held across the walk: an
 * event the thread writes meanwhile (a free) must not land in it. */
static inline __attribute__((always_inline)) void sample_here(void *arg)
{
	const struct sample *sm = arg;
	unsigned max = ht_opt.depth < HT_MAX_DEPTH ? ht_opt.depth : HT_MAX_DEPTH;
	/* The frames go to the thread's scratch beside its ring, not to this
	 * stack: 2 KiB at the deepest, which a small stack may not have. One
	 * sample at a time per thread (it is busy), so one scratch is enough. */
	uintptr_t *pcs = sm->th->ring.scratch;
	unsigned depth =
	        ht_unwind_capture(pcs, max, sm->ra, sm->rate < HT_EXACT_RATE_LIMIT, sm->fp);
	record(sm, pcs, depth);
}

static void sample_walk(void *arg)
{
	sample_here(arg);
}

/* The calling thread's record with its ring ready, or NULL. Made on the
 * thread's first sample or free event: with cancellation off (stack
 * bounds, the ring's memory). */
static inline struct ht_thread *self_ready(struct ht_tls *t)
{
	struct ht_thread *th = t->thr;
	if (__builtin_expect(th && atomic_load_explicit(&th->ring_ready, memory_order_relaxed), 1))
		return th;
	ht_track_nocancel();
	th = ht_thread_self();
	return th && ht_thread_ring(th) == 0 ? th : NULL;
}

static void take_sample(void *p, size_t n, uint64_t rate, uintptr_t ra, uintptr_t fp)
{
	struct ht_thread *th = self_ready(&ht_tls);
	if (!th) {
		atomic_fetch_add_explicit(&ht_core.dropped_samples, 1, memory_order_relaxed);
		return;
	}
	struct sample sm = {th, p, n, rate, ra, fp};
	switch (ht_stack_where(th)) {
	case HT_STACK_HERE:
		sample_here(&sm);
		break;
	case HT_STACK_OWN:
		ht_stack_call_own(th, sample_walk, &sm);
		break;
	default: {
		/* Too little room to walk: the caller, and a frame saying so. */
		uintptr_t pcs[2];
		record(&sm, pcs, ht_stack_not_taken(pcs, ra));
		break;
	}
	}
	ht_flusher_note_need();
}

void ht_track_alloc(struct ht_tls *t, void *p, size_t n, uintptr_t ra, uintptr_t fp)
{
	if (atomic_load_explicit(&ht_core.state, memory_order_relaxed) != HT_READY) {
		t->countdown = HT_SAMPLE_OFF_GAP;
		return;
	}
	int *err = ht_errno(t), saved_errno = *err;
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
			*err = saved_errno;
			return;
		}
	}
	uint64_t rate = t->gap_rate;
	if (p && rate != 0 && !atomic_load_explicit(&ht_core.paused, memory_order_relaxed)) {
		ht_busy_enter(t);
		take_sample(p, n, rate, ra, fp);
		ht_busy_exit(t);
	}
	t->gap_rate = now_rate;
	t->countdown = ht_sample_gap(&t->rng, now_rate);
	*err = saved_errno;
}

bool ht_track_forget(void *p, uint64_t *id)
{
	return ht_addrset_remove(p, id);
}

void ht_track_free_event(uint64_t id)
{
	struct ht_tls *t = &ht_tls;
	int *err = ht_errno(t), saved_errno = *err;
	ht_track_recover(t);
	ht_busy_enter(t);
	struct ht_thread *th = self_ready(t);
	struct ht_ev_free *e = NULL;
	if (th)
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
	*err = saved_errno;
}

void ht_track_restore(void *p, uint64_t id)
{
	if (ht_addrset_insert(p, id) != 0) {
		/* Cannot put it back: the aggregator sees it freed. */
		ht_track_free_event(id);
	}
}

/* ------------------------------------------------------- the shim's door */

int ht_track_start(void)
{
	return ht_init();
}

int ht_track_pthread_create(int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
                                        void *),
                            pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                            void *arg, uintptr_t ra)
{
	return ht_thread_create(real, thread, attr, fn, arg, ra);
}

void ht_track_thread_settled(pthread_t h)
{
	if (atomic_load(&ht_core.state) == HT_READY)
		ht_thread_settled(h);
}

void ht_track_dlclose_before(void *handle)
{
	ht_loader_before_dlclose(handle);
}

void ht_track_dlclose_after(void)
{
	ht_loader_after_dlclose();
}

bool ht_track_refuses_pipe(void)
{
	return ht_unwind_refuses_pipe();
}

bool ht_track_signal_watched(int sig)
{
	return ht_signal_watched(sig);
}

int ht_track_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	return ht_signal_action(sig, act, old);
}

__sighandler_t ht_track_signal(int sig, __sighandler_t handler)
{
	return ht_signal_bsd(sig, handler);
}

__sighandler_t ht_track_sysv_signal(int sig, __sighandler_t handler)
{
	return ht_signal_sysv(sig, handler);
}

__sighandler_t ht_track_sigset(int sig, __sighandler_t disp)
{
	return ht_signal_sigset(sig, disp);
}

long ht_track_call_alone(long (*fn)(long, long), long a, long b)
{
	return ht_flusher_call_alone(fn, a, b);
}
