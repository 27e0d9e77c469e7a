/*
 * core.c - heaptap's life cycle: start-up from whichever entry point comes
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
#include "agg.h"
#include "dump.h"
#include "flusher.h"
#include "loader.h"
#include "log.h"
#include "mem.h"
#include "options.h"
#include "real.h"
#include "signals.h"
#include "stack.h"
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

/* fork() from a signal handler can nest inside another fork() on the same
 * thread (the signal lands while the outer fork is between its prepare and
 * parent handlers: glibc's tst-mallocfork2 shape), or interrupt heaptap
 * holding the aggregation lock. A lock this thread already holds is never
 * taken again (that would wait for itself), and only the outermost fork
 * releases what it took. Forks of different threads serialise on the
 * loader's lock, so the statics below are only touched by its holder.
 *
 * The aggregation lock is taken first and given back last because holding
 * it blocks every signal (agg.c): no handler can run while the loader's
 * lock is held, so none can find it held with fork_owner not (yet, or any
 * more) saying so. In the other order a signal landing inside the
 * loader's unlock, after fork_owner was cleared, forked again and waited
 * for the lock the interrupted unlock had not yet let go (reliability.fork,
 * nestfork: 3 hangs in 30 runs of 1,000 forks). */
static _Atomic(const void *) fork_owner;
static unsigned fork_nested;
static bool fork_took_agg;

static void atfork_prepare(void)
{
	ht_busy_enter(&ht_tls);
	if (atomic_load_explicit(&fork_owner, memory_order_relaxed) == &ht_tls) {
		fork_nested++;
		return;
	}
	bool took_agg = !ht_agg_lock_is_mine();
	if (took_agg)
		ht_agg_lock();
	ht_loader_atfork_prepare();
	atomic_store_explicit(&fork_owner, &ht_tls, memory_order_relaxed);
	fork_nested = 0;
	fork_took_agg = took_agg;
}

static void atfork_parent(void)
{
	if (fork_nested) {
		fork_nested--;
	} else {
		bool took_agg = fork_took_agg;
		atomic_store_explicit(&fork_owner, NULL, memory_order_relaxed);
		ht_loader_atfork_parent();
		if (took_agg)
			ht_agg_unlock();
	}
	ht_busy_exit(&ht_tls);
}

static void atfork_child(void)
{
	ht_core.pid = getpid();
	ht_mem_atfork_child();
	ht_thread_atfork_child();
	ht_loader_atfork_child();
	ht_unwind_atfork_child();
	atomic_store(&fork_owner, NULL);
	fork_nested = 0;
	ht_dump_atfork_child();
	/* A child that dumps writes under its own pid, from sequence 1. */
	atomic_store(&ht_core.seq, 0);
	/* The tables were consistent at fork (the lock was held); a dump in
	 * progress died with its thread. Last, as the lock's release gives the
	 * thread its signals back (above). */
	ht_agg_atfork_child();
	ht_busy_exit(&ht_tls);
	ht_flusher_atfork_child();
}

/* The sampled-pointer table's first size, whatever the rate: it grows with
 * the live samples (agg.c). 4096 buckets keep free()'s filter as sharp as
 * the table of fixed size it replaces at the default rate (a false "maybe"
 * for about 1 free in 4096 per live sample), and cost 256 KiB of address
 * space, resident only where samples land. At rate 1 it is uncounted
 * (addrset.h): nearly every free is of a sample, so the filter would say
 * "maybe" anyway, and its meta words (8 KiB) are resident from the start. */
#define ADDRSET_FIRST_SLOTS ((size_t)1 << 14)

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
	if (ht_addrset_init(ADDRSET_FIRST_SLOTS, atomic_load(&ht_core.rate) != 1) != 0) {
		ht_log("cannot allocate the sampled-block table; heaptap is off for this process");
		return HT_INERT;
	}
	ht_unwind_init();
	ht_stack_init();
	ht_signal_setup();
	ht_thread_watch_main();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	ht_flusher_note_need();
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

/* heaptap's thread starts here, once the program's constructors have run
 * (those of libraries loaded before heaptap's included), when a dump trigger
 * needs it. */
__attribute__((constructor)) static void ht_ctor(void)
{
	if (ht_init() != HT_READY)
		return;
	ht_thread_watch_main();
	struct ht_tls *t = &ht_tls;
	ht_busy_enter(t);
	ht_unwind_note_allocators();
	ht_busy_exit(t);
	atomic_store(&ht_core.ctor_done, true);
	if (ht_flusher_wanted())
		ht_flusher_start();
}

__attribute__((destructor)) static void ht_dtor(void)
{
	if (atomic_load(&ht_core.state) == HT_READY)
		ht_flusher_at_exit();
}
