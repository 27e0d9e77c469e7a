/*
 * rel_unwind.c - allocations made through a frame with no unwind info
 * (issue 5: heaptap checks the memory libunwind reads, without an fd).
 *
 * nocfi_call is hand-written assembly with no CFI, like JIT code: libunwind
 * finds no FDE for it and falls back to the frame-pointer chain, reading
 * [rbp] and [rbp+8] through heaptap's memory check. Four phases, each with its
 * own allocating function, ALLOCS blocks kept live:
 *
 *   good      rbp is nocfi_call's real frame: the walk goes on to main;
 *   protnone  rbp points into a PROT_NONE page (mapped, not readable);
 *   unmapped  rbp points at an address with nothing mapped;
 *   garbage   rbp points at readable memory whose "saved rbp" and "return
 *             address" point into the PROT_NONE page.
 *
 * Without a working check the last three fault inside the allocator. With
 * `seccomp` as argument, a seccomp filter makes process_vm_readv trap first
 * (SIGSYS, counted; the call fails), so heaptap's second way of checking is
 * the one used.
 * With `threads`, `smallstack` or `getattr`: see run_threads, run_smallstack
 * and run_getattr below.
 * Prints "expect <fn> <inuse bytes> <objects> <alloc bytes> <objects>" lines,
 * dump=, and done=1.
 */
#include "rel_common.h"

#include <linux/filter.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <ucontext.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define ALLOCS 500
#define SIZE   200

/* void nocfi_call(void (*fn)(void), void *rbp): calls fn with rbp set to
 * the second argument when it is not NULL. No .cfi directives. */
__asm__(".text\n"
        ".globl nocfi_call\n"
        ".type nocfi_call,@function\n"
        "nocfi_call:\n"
        "  push %rbp\n"
        "  mov %rsp, %rbp\n"
        "  test %rsi, %rsi\n"
        "  jz 1f\n"
        "  mov %rsi, %rbp\n"
        "1:\n"
        "  call *%rdi\n"
        "  pop %rbp\n"
        "  ret\n"
        ".size nocfi_call, .-nocfi_call\n");
void nocfi_call(void (*fn)(void), void *rbp);

/* Global, so the compiler cannot drop the allocations. */
void *kept[4][ALLOCS];

#define ALLOCATOR(name, k)                                                                         \
	NOINLINE static void name(void)                                                            \
	{                                                                                          \
		for (int i = 0; i < ALLOCS; i++)                                                   \
			kept[k][i] = malloc(SIZE);                                                 \
		__asm__ volatile("" ::: "memory");                                                 \
	}
ALLOCATOR(alloc_good, 0)
ALLOCATOR(alloc_protnone, 1)
ALLOCATOR(alloc_unmapped, 2)
ALLOCATOR(alloc_garbage, 3)

/* process_vm_readv traps: SIGSYS, counted, and the call returns ENOSYS, as
 * a sandbox that emulates refused calls does. */
static volatile sig_atomic_t sigsys;

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
	sigsys++;
}

static int refuse_process_vm_readv(void)
{
	struct sock_filter f[] = {
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	struct sigaction sa = {0};
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSYS, &sa, NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* "threads": short-lived threads, each taking one sample (an 8 MiB block is
 * sampled at the default rate with probability 1 - e^-16): their stacks are
 * walked by heaptap's step-by-step path, not libunwind's frame cache. */
#define THREADS 40
#define BIG     (8 << 20)
void *big[THREADS];

NOINLINE static void thread_big_alloc(int i)
{
	big[i] = malloc(BIG);
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void *worker(void *arg)
{
	thread_big_alloc((int)(intptr_t)arg);
	return NULL;
}

static int run_threads(void)
{
	for (int i = 0; i < THREADS; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker, (void *)(intptr_t)i) != 0)
			return 1;
		pthread_join(t, NULL);
	}
	say("big_bytes=%lld", (long long)THREADS * BIG);
	say("dump=%d", rel_dump());
	say("done=1");
	return 0;
}

/* "smallstack": small stacks. 50 threads with PTHREAD_STACK_MIN stacks
 * allocate, then a SIGUSR1 handler running on an 8 KiB (the traditional
 * SIGSTKSZ) sigaltstack allocates, 50 times. heaptap's sampled path runs on
 * those stacks; it must fit where glibc's malloc alone fits. */
/* 8 KiB, or more where the kernel's own signal frame needs it (AMX). */
static size_t alt_stack_size(void)
{
	size_t min = (size_t)getauxval(AT_MINSIGSTKSZ);
	return min + 4096 > 8192 ? min + 4096 : 8192;
}

NOINLINE static void small_thread_alloc(int i)
{
	kept[0][i % ALLOCS] = malloc(1 << 20);
	free(kept[0][i % ALLOCS]);
	kept[0][i % ALLOCS] = NULL;
}

static void *small_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20; i++)
		small_thread_alloc(i);
	return NULL;
}

static volatile sig_atomic_t alt_hits;

NOINLINE static void on_altstack(int sig)
{
	(void)sig;
	void *p = malloc(2 << 20);
	free(p);
	p = malloc(64);
	free(p);
	alt_hits++;
}

static int run_smallstack(void)
{
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, PTHREAD_STACK_MIN);
	for (int k = 0; k < 50; k++) {
		pthread_t t;
		if (pthread_create(&t, &at, small_thread, NULL) != 0)
			return 1;
		pthread_join(t, NULL);
	}
	stack_t ss = {.ss_sp = malloc(alt_stack_size()), .ss_size = alt_stack_size()};
	struct sigaction sa = {0};
	sa.sa_handler = on_altstack;
	sa.sa_flags = SA_ONSTACK;
	if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
		return 1;
	for (int i = 0; i < 50; i++)
		raise(SIGUSR1);
	say("expect on_altstack 0 0 %d 100", 50 * ((2 << 20) + 64));
	say("alt_hits=%d", (int)alt_hits);
	say("dump=%d", rel_dump());
	say("done=1");
	return 0;
}

/* "getattr": 8 threads and the main thread call pthread_getattr_np on
 * themselves in a loop while allocating (ddprof's pthread_deadlock test
 * shape: glibc allocates inside it, for the main thread while reading
 * /proc/self/maps, and an unwinder that asked for stack bounds there
 * deadlocked). Prints getattr_failures=. */
static _Atomic int getattr_failures;

NOINLINE static void getattr_round(int i)
{
	pthread_attr_t a;
	void *p = malloc(32 + (size_t)(i % 200));
	if (pthread_getattr_np(pthread_self(), &a) != 0)
		atomic_fetch_add(&getattr_failures, 1);
	else
		pthread_attr_destroy(&a);
	free(p);
}

static void *getattr_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++)
		getattr_round(i);
	return NULL;
}

static int run_getattr(void)
{
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		if (pthread_create(&t[i], NULL, getattr_thread, NULL) != 0)
			return 1;
	for (int i = 0; i < 200; i++)
		getattr_round(i);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	say("getattr_failures=%d", atomic_load(&getattr_failures));
	say("done=1");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "getattr") == 0)
		return run_getattr();
	if (argc > 1 && strcmp(argv[1], "smallstack") == 0)
		return run_smallstack();
	if (argc > 1 && strcmp(argv[1], "threads") == 0)
		return run_threads();
	if (argc > 1 && strcmp(argv[1], "seccomp") == 0 && refuse_process_vm_readv() != 0) {
		say("seccomp=failed errno=%d", errno);
		return 1;
	}
	char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Reserve then release a range, so nothing is mapped there. */
	char *gone = mmap(NULL, 1 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (none == MAP_FAILED || gone == MAP_FAILED)
		return 1;
	munmap(gone, 1 << 20);
	static uintptr_t fake[4];
	fake[0] = (uintptr_t)(none + 64);  /* saved rbp */
	fake[1] = (uintptr_t)(none + 128); /* return address */

	nocfi_call(alloc_good, NULL);
	nocfi_call(alloc_protnone, none + 256);
	nocfi_call(alloc_unmapped, gone + 4096);
	nocfi_call(alloc_garbage, fake);
	const char *names[] = {"alloc_good", "alloc_protnone", "alloc_unmapped", "alloc_garbage"};
	for (int k = 0; k < 4; k++)
		say("expect %s %d %d %d %d", names[k], ALLOCS * SIZE, ALLOCS, ALLOCS * SIZE,
		    ALLOCS);
	say("sigsys=%d", (int)sigsys);
	say("dump=%d", rel_dump());
	say("done=1");
	return 0;
}
