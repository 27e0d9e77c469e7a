/*
 * bench_capture.c - what one stack capture costs, heaptap's own unwinder
 * against libunwind's unw_backtrace.
 *
 * Linked with heaptap_core (no preloading): a chain of distinct noinline
 * functions f1..f9, then leaf(), which calls ht_unwind_capture as
 * heaptap's malloc wrapper would (its own return address as ra, a thread
 * record with the thread's stack bounds, an exact rate), or
 * unw_backtrace on the same stack. The stack repeats: after the first
 * capture every rule is cached, which is the steady state of an allocation
 * loop. Each loop runs for a fixed time; the figure is the median of 5
 * windows, in ns per capture, printed as
 *     RESULT bench=capture unwinder=<u> frames=<N> metric=ns value=<x>
 * u: own (heaptap's walker as it runs: the thread's previous stack
 * re-verified), own_rules_only (every frame stepped with the rule cache)
 * and libunwind (unw_backtrace with its per-thread cache). Last, own again
 * from a shallow stack (the loop called from main, as bench_malloc's
 * allocations are): what a capture costs beyond the frames themselves.
 * Usage: bench_capture [ms per window] (default 200).
 */
#include "common.h"

#include "fastunwind.h"
#include "thread.h"
#include "tls.h"
#include "unwind.h"

#include <pthread.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define WINDOWS 5
#define MAXF    64

static unsigned window_ms;
static volatile int which; /* 0: heaptap's unwinder, 1: unw_backtrace */
static unsigned last_depth;

/* One capture from the wrapper's place: the return address of leaf() is
 * the "allocation site", as RA() in preload.c. */
__attribute__((noinline)) static void leaf(void)
{
	uintptr_t out[MAXF + HT_UNWIND_SLACK];
	if (which == 0) {
		last_depth = ht_unwind_capture(out, MAXF, (uintptr_t)__builtin_return_address(0),
		                               true, 0);
	} else {
		void *buf[MAXF + HT_UNWIND_SLACK];
		last_depth = (unsigned)unw_backtrace(buf, MAXF + HT_UNWIND_SLACK);
	}
	bench_sink(out);
}

/* The timed loop runs at the bottom of the chain, so the frames above it
 * stay put and each capture walks the same stack. */
__attribute__((noinline)) static double timed(void)
{
	double w[WINDOWS];
	for (int k = 0; k < WINDOWS; k++) {
		uint64_t n = 0, t0 = bench_now_ns(),
		         end = t0 + (uint64_t)window_ms * 1000000 / WINDOWS;
		uint64_t t;
		do {
			for (int i = 0; i < 256; i++)
				leaf();
			n += 256;
		} while ((t = bench_now_ns()) < end);
		w[k] = (double)(t - t0) / (double)n;
	}
	for (int i = 1; i < WINDOWS; i++)
		for (int j = i; j > 0 && w[j] < w[j - 1]; j--) {
			double x = w[j];
			w[j] = w[j - 1];
			w[j - 1] = x;
		}
	return w[WINDOWS / 2];
}

static double result;

/* f1 .. f9: distinct functions, so every frame has its own return address
 * (and rule), as in a real stack: with timed(), measure(), main() and
 * libc's three start-up frames, a capture from leaf() keeps 15 frames. The
 * empty asm after each call keeps it from being a tail call. */
__attribute__((noinline)) static void f9(void)
{
	result = timed();
	__asm__ volatile("" ::: "memory");
}

#define CHAIN(name, next)                                                                          \
	__attribute__((noinline)) static void name(void)                                           \
	{                                                                                          \
		next();                                                                            \
		__asm__ volatile("" ::: "memory");                                                 \
	}
CHAIN(f8, f9)
CHAIN(f7, f8)
CHAIN(f6, f7)
CHAIN(f5, f6)
CHAIN(f4, f5)
CHAIN(f3, f4)
CHAIN(f2, f3)
CHAIN(f1, f2)

static struct ht_thread *record;

__attribute__((noinline)) static double measure(int w)
{
	which = w;
	f1();
	__asm__ volatile("" ::: "memory");
	return result;
}

int main(int argc, char **argv)
{
	window_ms = bench_ms(argc, argv, 1, 200);
	/* A thread record with this thread's stack bounds, as heaptap's
	 * wrapper has (tls.h, stack.c). */
	record = calloc(1, sizeof(*record));
	pthread_attr_t a;
	void *addr;
	size_t size;
	if (!record || pthread_getattr_np(pthread_self(), &a) != 0 ||
	    pthread_attr_getstack(&a, &addr, &size) != 0)
		return 1;
	record->stack_lo = (uintptr_t)addr;
	record->stack_hi = (uintptr_t)addr + size;
	ht_tls.thr = record;
	ht_unwind_init();

	double own = measure(0);
	unsigned own_depth = last_depth;
	ht_fastunwind_use_prefix(false);
	double rules = measure(0);
	ht_fastunwind_use_prefix(true);
	double lib = measure(1);
	/* unw_backtrace's count includes leaf() itself: one more frame than
	 * heaptap keeps. */
	unsigned lib_depth = last_depth;
	printf("RESULT bench=capture unwinder=own frames=%u metric=ns value=%.1f\n", own_depth,
	       own);
	printf("RESULT bench=capture unwinder=own_rules_only frames=%u metric=ns value=%.1f\n",
	       own_depth, rules);
	printf("RESULT bench=capture unwinder=libunwind frames=%u metric=ns value=%.1f\n",
	       lib_depth, lib);
	which = 0;
	double shallow = timed();
	printf("RESULT bench=capture unwinder=own frames=%u metric=ns value=%.1f\n", last_depth,
	       shallow);
	return 0;
}
