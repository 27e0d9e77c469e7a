/*
 * stack.h - which stack heaptap's sampled path runs on, and how much room
 * the program's stack has left.
 *
 * Walking a stack with libunwind takes about 6 KiB of stack (its DWARF path
 * holds a cursor, a context and CFI state), more than an 8 KiB alternate
 * signal stack has left once the kernel's signal frame is on it (3.4 KiB with
 * AVX-512, more with AMX). So heaptap first checks the room left: below the
 * thread's stack bounds (taken when the thread starts), or the alternate
 * signal stack's when it runs there. With room to spare (12 KiB) the walk
 * runs right there; on a smaller stack, or one of unknown size (a fiber's),
 * it runs on a stack of heaptap's own, one per such thread, with a PROT_NONE
 * guard page below it, and only a few frames stay on the program's stack.
 * With too little room even for those, or when no stack of heaptap's own can
 * be had and the program's stack is too small for the walk, the sample is
 * taken without a stack.
 */
#ifndef HT_STACK_H
#define HT_STACK_H

#include "thread.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The main thread's bounds (from the stack's top and RLIMIT_STACK). Once,
 * at start-up. */
void ht_stack_init(void);

/* Note the calling thread's stack bounds in th (pthread_getattr_np; call
 * busy, at the start of a thread heaptap created). */
void ht_stack_note_bounds(struct ht_thread *th);

/* The main thread's record gets the bounds found by ht_stack_init. */
void ht_stack_note_main(struct ht_thread *th);

/* Where a walk from here should run: HERE with room to spare (12 KiB below
 * the stack pointer within known bounds: an ordinary thread's stack), OWN on
 * th's own stack (taken from the pool on first use) when this one is small or
 * of unknown size, NONE when there is too little room for either. Call busy.
 * A caller that inlines the HERE case walks with no frame of ht_stack_run's
 * to walk through (about 20 ns a sample at rate 1). */
enum ht_stack_where { HT_STACK_HERE, HT_STACK_OWN, HT_STACK_NONE };

/* Room the whole walk needs on the program's stack: about 6 KiB measured
 * with bench/stack_use, twice that for a margin. */
#define HT_STACK_NEED_HERE ((size_t)12 << 10)

/* ht_stack_where for a stack pointer outside th's noted bounds, or with
 * less than HT_STACK_NEED_HERE below it. */
enum ht_stack_where ht_stack_where_off(struct ht_thread *th);

/* Inline: the usual answer, HERE on a thread's roomy stack, is a few
 * compares on every sample (at rate 1, every allocation), with no call. */
static inline enum ht_stack_where ht_stack_where(struct ht_thread *th)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	if (th->stack_lo && sp > th->stack_lo && sp <= th->stack_hi &&
	    sp - th->stack_lo >= HT_STACK_NEED_HERE)
		return HT_STACK_HERE;
	return ht_stack_where_off(th);
}

/* Call fn(arg) on th's own stack (after ht_stack_where said OWN). */
void ht_stack_call_own(struct ht_thread *th, void (*fn)(void *), void *arg);

/* ht_stack_where, then fn(arg) here or on th's own stack. Returns false,
 * without calling fn, for NONE: the caller then takes its sample without a
 * stack. Call busy. */
bool ht_stack_run(struct ht_thread *th, void (*fn)(void *), void *arg);

/* A stack not taken: out[0] = ra (the caller), out[1] = HT_PC_NOT_TAKEN,
 * counted in small_stack_samples. Returns the depth, 2. */
unsigned ht_stack_not_taken(uintptr_t *out, uintptr_t ra);

/* Is the thread running on its alternate signal stack? Its bounds then. */
bool ht_stack_alt(uintptr_t *lo, uintptr_t *hi);

/* Is addr on th's own stack (heaptap's, not the program's)? */
bool ht_stack_is_own(const struct ht_thread *th, uintptr_t addr);

/* heaptap's own stacks: a PROT_NONE guard page, then the stack. */
#define HT_STACK_GUARD    ((size_t)4096)
#define HT_STACK_OWN_SIZE ((size_t)128 << 10)

/* The end of the page holding __libc_stack_end: the main thread's stack is
 * mapped from its stack pointer up to there at least (set once by
 * ht_stack_init). */
extern uintptr_t ht_stack_main_top;

/* Memory from sp up that is surely mapped, when sp is on th's own stack or
 * within its noted bounds: [sp, *hi) (the main thread's up to the page
 * holding __libc_stack_end, where its mapping is known to reach). False
 * when sp is elsewhere (a signal or fiber stack) or th is NULL. */
static inline bool ht_stack_read_range(const struct ht_thread *th, uintptr_t sp, uintptr_t *lo,
                                       uintptr_t *hi)
{
	/* Inline: the unwinder asks on every capture, and most of these
	 * compares fold into what it does next. */
	if (!th)
		return false;
	uintptr_t base = (uintptr_t)th->own_stack;
	if (base && sp - (base + HT_STACK_GUARD) < HT_STACK_OWN_SIZE) {
		*lo = sp;
		*hi = base + HT_STACK_GUARD + HT_STACK_OWN_SIZE;
		return true;
	}
	if (!th->stack_lo || sp < th->stack_lo || sp >= th->stack_hi)
		return false;
	*lo = sp;
	*hi = th->stack_hi;
	if (th->is_main) {
		if (sp >= ht_stack_main_top)
			return false;
		if (*hi > ht_stack_main_top)
			*hi = ht_stack_main_top;
	}
	return true;
}

/* Is addr within th's noted stack bounds? */
bool ht_stack_in_bounds(const struct ht_thread *th, uintptr_t addr);

/* A finished thread's own stack goes back to the pool. */
void ht_stack_release(struct ht_thread *th);

/* Resident bytes of every stack of heaptap's own ever mapped, in use or in
 * the pool (for the profile comments). */
size_t ht_stack_resident(void);

#endif
