/*
 * unwind_subject.cpp - stacks that heaptap's own unwinder must take exactly
 * as libunwind does (test_unwind_check.py runs it with HEAPTAP_UNWIND_CHECK=1
 * at HEAPTAP_RATE=1, so every allocation is captured by both and compared).
 *
 * Each part allocates through leaf_alloc() from a different shape of stack:
 * deep recursion (past HEAPTAP_DEPTH), two functions with equal frames
 * calling the same leaf in turn (a cache of the previous stack must tell
 * them apart by what it re-reads), alloca of changing size (rbp-based CFA
 * in optimised code), destructors that allocate while an exception unwinds
 * through them and catch blocks that allocate, longjmp out of a deep chain
 * between allocations, signal handlers that allocate on the thread's stack
 * and on an alternate stack (signal frames: libunwind's), and threads with
 * the smallest stacks (heaptap walks those on a stack of its own). Compiled
 * by the test at -O2 (no frame pointers) and -O0 with frame pointers.
 *
 * Prints "done" at the end; heaptap dumps at exit (HEAPTAP_AT_EXIT=1).
 */
#include <alloca.h>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define KEEP()   __asm__ volatile("" ::: "memory")

static void *volatile sink;

NOINLINE static void *leaf_alloc(size_t n)
{
	void *p = malloc(n);
	sink = p;
	KEEP();
	return p;
}

/* Deep recursion: allocations at every 16th level and at the bottom. */
NOINLINE static int deep(int n)
{
	if (n == 0) {
		free(leaf_alloc(48));
		return 0;
	}
	if (n % 16 == 0)
		free(leaf_alloc((size_t)n));
	int r = deep(n - 1);
	KEEP();
	return r + 1;
}

/* Twins: same frame size, same callee, different callers. */
NOINLINE static void twin_a(int i)
{
	char buf[64];
	memset(buf, i, sizeof(buf));
	sink = buf;
	free(leaf_alloc(32));
	KEEP();
}

NOINLINE static void twin_b(int i)
{
	char buf[64];
	memset(buf, i + 1, sizeof(buf));
	sink = buf;
	free(leaf_alloc(32));
	KEEP();
}

NOINLINE static void twins(int i)
{
	if (i & 1)
		twin_a(i);
	else
		twin_b(i);
	KEEP();
}

/* A frame whose size changes from call to call. */
NOINLINE static void with_alloca(int n)
{
	char *a = (char *)alloca(16 + (size_t)(n % 7) * 64);
	a[0] = (char)n;
	sink = a;
	free(leaf_alloc(24));
	KEEP();
}

/* Exceptions in flight: destructors allocate while the stack unwinds. */
struct Noisy {
	int level;
	~Noisy()
	{
		std::string s((size_t)(100 + level), 'x');
		sink = (void *)s.data();
		free(leaf_alloc(40));
	}
};

NOINLINE static void thrower(int depth)
{
	Noisy n{depth};
	if (depth == 0)
		throw std::runtime_error("unwinding through destructors that allocate");
	thrower(depth - 1);
	KEEP();
}

NOINLINE static void exceptions(void)
{
	for (int i = 0; i < 40; i++) {
		try {
			thrower(i % 6);
		} catch (const std::exception &e) {
			std::string s(e.what());
			free(leaf_alloc(s.size()));
		}
	}
}

/* longjmp out of a deep chain, then allocate from elsewhere. */
static jmp_buf jb;

NOINLINE static void jumper(int n)
{
	free(leaf_alloc(16));
	if (n == 0)
		longjmp(jb, 1);
	jumper(n - 1);
	KEEP();
}

NOINLINE static void jumps(void)
{
	for (int i = 0; i < 100; i++) {
		if (!setjmp(jb))
			jumper(i % 20);
		twins(i);
	}
}

/* Signal handlers that allocate (raise() runs them synchronously, with no
 * allocator lock held). */
static void on_signal(int sig)
{
	free(leaf_alloc(64 + (size_t)sig));
	with_alloca(sig);
}

NOINLINE static void signals(void)
{
	static char alt[64 << 10];
	stack_t ss = {};
	ss.ss_sp = alt;
	ss.ss_size = sizeof(alt);
	sigaltstack(&ss, NULL);
	struct sigaction sa = {};
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_flags = 0;
	sigaction(SIGUSR2, &sa, NULL);
	for (int i = 0; i < 30; i++) {
		raise(SIGUSR1);
		raise(SIGUSR2);
		twins(i);
	}
}

/* Threads on the smallest stacks. */
NOINLINE static void *small_thread(void *arg)
{
	int k = (int)(long)arg;
	for (int i = 0; i < 50; i++) {
		deep(10 + (i + k) % 8);
		twins(i);
		with_alloca(i);
	}
	return NULL;
}

NOINLINE static void threads(void)
{
	long min = sysconf(_SC_THREAD_STACK_MIN);
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, (size_t)(min > 16384 ? min : 16384) + 8192);
	pthread_t t[4];
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], &a, small_thread, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	pthread_attr_destroy(&a);
}

int main(int argc, char **argv)
{
	int depth = argc > 1 ? atoi(argv[1]) : 300;
	for (int round = 0; round < 3; round++) {
		deep(depth);
		for (int i = 0; i < 100; i++) {
			twins(i);
			with_alloca(i);
		}
		exceptions();
		jumps();
		signals();
		threads();
	}
	puts("done");
	return 0;
}
