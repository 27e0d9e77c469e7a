/*
 * init.c - heaptap's life cycle: start-up from whichever entry point comes
 * first, the constructor and destructor, and fork.
 *
 * Start-up runs inside the first allocation heaptap sees (often before any
 * constructor), on that thread, marked busy so everything it triggers is
 * served from heaptap's own memory. Other threads that arrive meanwhile wait
 * for it. A set-uid (AT_SECURE) process, or one where heaptap cannot get
 * memory of its own, only forwards: heaptap stays inert.
 */
#include "core.h"

#include "addrset.h"
#include "flusher.h"
#include "log.h"
#include "mem.h"
#include "options.h"
#include "real.h"
#include "thread.h"
#include "tls.h"
#include "unwind.h"

#include <sched.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

__thread struct ht_tls ht_tls __attribute__((tls_model("initial-exec")));

struct ht_core ht_core = {.rate = HT_DEFAULT_RATE};
static _Atomic pid_t init_tid;

static void atfork_prepare(void)
{
	ht_busy_enter(&ht_tls);
	ht_flusher_atfork_prepare();
}

static void atfork_parent(void)
{
	ht_flusher_atfork_parent();
	ht_busy_exit(&ht_tls);
}

static void atfork_child(void)
{
	ht_core.pid = getpid();
	ht_mem_atfork_child();
	ht_thread_atfork_child();
	ht_flusher_atfork_child();
	/* A child that dumps writes under its own pid, from sequence 1. */
	atomic_store(&ht_core.seq, 0);
	ht_busy_exit(&ht_tls);
}

/* Table size: room for about 8 GiB of sampled live heap at the given rate
 * at half load, within [2^12, 2^24] slots. Rate 1 gets the maximum. */
static size_t addrset_slots(uint64_t rate)
{
	if (rate == 0)
		rate = HT_DEFAULT_RATE;
	uint64_t want = ((uint64_t)1 << 34) / rate;
	if (want < (1u << 12))
		want = 1u << 12;
	if (want > (1u << 24))
		want = 1u << 24;
	return (size_t)want;
}

static int init_slow(void)
{
	if (ht_real_init() != 0)
		return HT_INERT;
	ht_core.pid = getpid();
	if (getauxval(AT_SECURE))
		return HT_INERT;
	ht_options_load(secure_getenv);
	atomic_store(&ht_core.rate, ht_opt.rate);
	if (ht_mem_init() != 0) {
		ht_log("cannot reserve memory of its own; heaptap is off for this process");
		return HT_INERT;
	}
	if (ht_addrset_init(addrset_slots(ht_opt.rate)) != 0) {
		ht_log("cannot allocate the sampled-block table; heaptap is off for this process");
		return HT_INERT;
	}
	ht_unwind_init();
	ht_signal_setup();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (ht_opt.interval_ms)
		atomic_store(&ht_flusher_want, true);
	return HT_READY;
}

int ht_init(void)
{
	int st = atomic_load_explicit(&ht_core.state, memory_order_acquire);
	if (st == HT_READY || st == HT_INERT)
		return st;
	int expect = HT_UNINIT;
	if (atomic_compare_exchange_strong(&ht_core.state, &expect, HT_INITIALIZING)) {
		struct ht_tls *t = &ht_tls;
		atomic_store(&init_tid, gettid());
		ht_busy_enter(t);
		st = init_slow();
		ht_busy_exit(t);
		atomic_store_explicit(&ht_core.state, st, memory_order_release);
		return st;
	}
	/* Someone is initialising. If it is this very thread (an allocation
	 * made by start-up itself), go on untracked. */
	if (atomic_load(&init_tid) == gettid())
		return HT_INITIALIZING;
	while ((st = atomic_load_explicit(&ht_core.state, memory_order_acquire)) == HT_INITIALIZING)
		sched_yield();
	return st;
}

__attribute__((constructor)) static void ht_ctor(void)
{
	ht_init();
	atomic_store(&ht_core.ctor_done, true);
}

__attribute__((destructor)) static void ht_dtor(void)
{
	if (atomic_load(&ht_core.state) == HT_READY)
		ht_flusher_at_exit();
}
