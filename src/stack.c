/*
 * stack.c - heaptap's own stacks and the room left on the program's. See
 * stack.h.
 *
 * ht_stack_switch moves to heaptap's stack and calls a function there. Its
 * CFI defines the caller's frame from %rbp, which holds the program stack's
 * pointer throughout, so libunwind (DWARF, its frame cache, or the
 * frame-pointer chain) walks from heaptap's stack back onto the program's
 * as through any other frame. heaptap's stacks come from a pool, mapped once
 * (guard page included) and never unmapped: a finished thread's stack is
 * taken by the next sampling thread, so thread churn costs no mmap, munmap
 * or TLB shootdown once the pool is as large as the most threads that
 * sampled at the same time. Every stack ever mapped is also on a list of
 * its own, which the figure of heaptap's resident memory walks.
 */
#include "stack.h"

#include "core.h"
#include "log.h"
#include "mem.h"
#include "profile.h"
#include "thread.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define GUARD    HT_STACK_GUARD
#define OWN_SIZE HT_STACK_OWN_SIZE
/* What the sampled path needs on the program's stack: with a stack of its
 * own, the few frames before the switch; without, the whole walk
 * (HT_STACK_NEED_HERE). */
#define NEED_OWN  ((size_t)1 << 10)
#define NEED_HERE HT_STACK_NEED_HERE

/* void ht_stack_switch(void (*fn)(void *), void *arg, void *top) */
__asm__(".text\n"
        ".globl ht_stack_switch\n"
        ".hidden ht_stack_switch\n"
        ".type ht_stack_switch,@function\n"
        "ht_stack_switch:\n"
        "  .cfi_startproc\n"
        "  push %rbp\n"
        "  .cfi_def_cfa_offset 16\n"
        "  .cfi_offset %rbp, -16\n"
        "  mov %rsp, %rbp\n"
        "  .cfi_def_cfa_register %rbp\n"
        "  mov %rdx, %rsp\n"
        "  mov %rdi, %rax\n"
        "  mov %rsi, %rdi\n"
        "  call *%rax\n"
        "  mov %rbp, %rsp\n"
        "  pop %rbp\n"
        "  .cfi_def_cfa %rsp, 8\n"
        "  ret\n"
        "  .cfi_endproc\n"
        ".size ht_stack_switch, .-ht_stack_switch\n");
void ht_stack_switch(void (*fn)(void *), void *arg, void *top);

static uintptr_t main_lo, main_hi;
/* (main_hi is rounded further up than this and may lie past the
 * mapping.) */
uintptr_t ht_stack_main_top;

/* At the top of each of heaptap's stacks, above where its stack pointer
 * starts: the pool's link, used while the stack is free, and the link of
 * the list of every stack mapped, written once before the stack is
 * published there. At the top rather than at the bottom, so a stack given
 * back does not have its lowest page made resident by the link. */
struct stack_hdr {
	struct stack_hdr *next_free;
	struct stack_hdr *next_all;
};
#define HDR_ROOM ((size_t)64) /* the stack's top stays 16-byte aligned */
_Static_assert(sizeof(struct stack_hdr) <= HDR_ROOM, "the header fits its room");

static struct stack_hdr *hdr_of(void *base)
{
	return (struct stack_hdr *)((char *)base + GUARD + OWN_SIZE - HDR_ROOM);
}

static void *base_of(struct stack_hdr *h)
{
	return (char *)h - (GUARD + OWN_SIZE - HDR_ROOM);
}

/* The pool: a spinlock is enough (taken at a thread's first sample and when
 * its record is reaped) and never waits on anything. The list of all
 * stacks only grows, under the same lock; it is read without it. */
static struct stack_hdr *pool;
static struct stack_hdr *_Atomic all_stacks;
static atomic_flag pool_lock = ATOMIC_FLAG_INIT;
static _Atomic bool map_failed_logged;

static uintptr_t sp_now(void)
{
	return (uintptr_t)__builtin_frame_address(0);
}

void ht_stack_init(void)
{
	extern void *__libc_stack_end;
	struct rlimit rl;
	uintptr_t top = (uintptr_t)__libc_stack_end;
	if (!top || getrlimit(RLIMIT_STACK, &rl) != 0)
		return; /* unknown: heaptap's own stack on the main thread */
	ht_stack_main_top = (top | 4095) + 1;
	/* __libc_stack_end is near the top; the stack may grow to the limit
	 * below the top of its mapping, a few pages above it at most. Without a
	 * limit it grows until it meets another mapping: take 64 MiB as known. */
	size_t limit = rl.rlim_cur == RLIM_INFINITY ? (size_t)64 << 20 : (size_t)rl.rlim_cur;
	main_hi = (top + 65535) & ~(uintptr_t)65535;
	if (limit >= main_hi)
		return;
	main_lo = main_hi - limit;
}

void ht_stack_note_main(struct ht_thread *th)
{
	th->stack_lo = main_lo;
	th->stack_hi = main_hi;
}

void ht_stack_note_bounds(struct ht_thread *th)
{
	pthread_attr_t a;
	void *addr;
	size_t size;
	if (pthread_getattr_np(pthread_self(), &a) != 0)
		return;
	if (pthread_attr_getstack(&a, &addr, &size) == 0) {
		th->stack_lo = (uintptr_t)addr;
		th->stack_hi = (uintptr_t)addr + size;
	}
	pthread_attr_destroy(&a);
}

bool ht_stack_in_bounds(const struct ht_thread *th, uintptr_t addr)
{
	return th->stack_lo && addr > th->stack_lo && addr <= th->stack_hi;
}

bool ht_stack_is_own(const struct ht_thread *th, uintptr_t addr)
{
	uintptr_t base = (uintptr_t)th->own_stack;
	return base && addr > base + GUARD && addr <= base + GUARD + OWN_SIZE;
}

static void pool_lock_take(void)
{
	while (atomic_flag_test_and_set_explicit(&pool_lock, memory_order_acquire))
		;
}

static void pool_lock_give(void)
{
	atomic_flag_clear_explicit(&pool_lock, memory_order_release);
}

static void *pool_take(void)
{
	pool_lock_take();
	struct stack_hdr *s = pool;
	if (s)
		pool = s->next_free;
	pool_lock_give();
	if (s)
		return base_of(s);
	void *m = mmap(NULL, GUARD + OWN_SIZE, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED || mprotect(m, GUARD, PROT_NONE) != 0) {
		if (m != MAP_FAILED)
			munmap(m, GUARD + OWN_SIZE);
		if (!atomic_exchange(&map_failed_logged, true))
			ht_log("cannot map a stack of its own; stacks are walked on the program's "
			       "stack where it has room");
		return NULL;
	}
	struct stack_hdr *h = hdr_of(m);
	pool_lock_take();
	h->next_all = atomic_load_explicit(&all_stacks, memory_order_relaxed);
	atomic_store_explicit(&all_stacks, h, memory_order_release);
	pool_lock_give();
	return m;
}

void ht_stack_release(struct ht_thread *th)
{
	if (!th->own_stack)
		return;
	struct stack_hdr *s = hdr_of(th->own_stack);
	th->own_stack = NULL;
	pool_lock_take();
	s->next_free = pool;
	pool = s;
	pool_lock_give();
}

size_t ht_stack_resident(void)
{
	/* Stacks are never unmapped and a header's next_all never changes once
	 * published: no lock. The guard page is never resident. */
	size_t r = 0;
	for (struct stack_hdr *h = atomic_load_explicit(&all_stacks, memory_order_acquire); h;
	     h = h->next_all)
		r += ht_mem_resident_range(base_of(h), GUARD + OWN_SIZE);
	return r;
}

bool ht_stack_alt(uintptr_t *lo, uintptr_t *hi)
{
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_ONSTACK))
		return false;
	*lo = (uintptr_t)ss.ss_sp;
	*hi = *lo + ss.ss_size;
	return true;
}

/* Room left below sp on the stack it is on; SIZE_MAX when unknown (a fiber,
 * a thread heaptap did not see start). Off the thread's own bounds it asks
 * the kernel about the alternate signal stack: a syscall, but only there. */
static size_t room(const struct ht_thread *th, uintptr_t sp)
{
	if (ht_stack_in_bounds(th, sp))
		return sp - th->stack_lo;
	uintptr_t lo, hi;
	if (ht_stack_alt(&lo, &hi) && sp > lo && sp <= hi)
		return sp - lo;
	return SIZE_MAX;
}

enum ht_stack_where ht_stack_where_off(struct ht_thread *th)
{
	size_t left = room(th, sp_now());
	if (left != SIZE_MAX && left >= NEED_HERE)
		return HT_STACK_HERE;
	/* A small stack, or one whose size is unknown (a fiber's): heaptap's. */
	if (left >= NEED_OWN) {
		if (!th->own_stack)
			th->own_stack = pool_take();
		if (th->own_stack)
			return HT_STACK_OWN;
	}
	return left >= NEED_HERE ? HT_STACK_HERE : HT_STACK_NONE;
}

void ht_stack_call_own(struct ht_thread *th, void (*fn)(void *), void *arg)
{
	/* Below the header: a call pushes under the stack pointer, never at it. */
	uintptr_t top = (uintptr_t)hdr_of(th->own_stack);
	ht_stack_switch(fn, arg, (void *)(top & ~(uintptr_t)15));
}

bool ht_stack_run(struct ht_thread *th, void (*fn)(void *), void *arg)
{
	switch (ht_stack_where(th)) {
	case HT_STACK_HERE:
		fn(arg);
		return true;
	case HT_STACK_OWN:
		ht_stack_call_own(th, fn, arg);
		return true;
	default:
		return false;
	}
}

unsigned ht_stack_not_taken(uintptr_t *out, uintptr_t ra)
{
	out[0] = ra;
	out[1] = HT_PC_NOT_TAKEN;
	atomic_fetch_add_explicit(&ht_core.small_stack_samples, 1, memory_order_relaxed);
	return 2;
}
