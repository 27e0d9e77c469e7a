/*
 * stack_use.c - how much stack one malloc (or pthread_create) call uses
 * below its call site, with heaptap preloaded or without it.
 *
 * A profiler's malloc runs on whatever stack the program allocates on: a
 * signal handler's sigaltstack (8 KiB traditionally, less than 4 KiB left
 * after the signal frame on AVX-512 machines at the minimum), a thread with a
 * PTHREAD_STACK_MIN stack, a fiber. This measures what it needs there:
 *
 *   each measurement runs on a thread whose 1 MiB stack is mmap'd here (with
 *   a guard page below it), so its bottom is known; the stack below the
 *   current sp is painted with a byte pattern (rep stosb from inline asm:
 *   painting must not itself use the stack it paints), the call is made
 *   through a noinline function that records the sp at its call
 *   instruction, then the stack is scanned upward from the bottom for the
 *   first byte that no longer holds the pattern.
 *
 *   bytes = sp at the call instruction - that byte's address
 *
 * i.e. the deepest byte written by the call (return address included),
 * which is what decides whether a guard page below would be hit. Space
 * reserved but never written (an unused part of a large local array) does
 * not count; a written byte that happens to equal the pattern can make the
 * figure a few bytes low.
 *
 * Modes, each printed as "stack_use mode=<mode> bytes=<N> ...":
 *   malloc_first   first malloc(64 MiB) of a fresh thread (64 MiB is sampled
 *                  at the default rate with probability 1 - e^-128, so this
 *                  is a sample at rate 1 and at the default rate alike);
 *   malloc_steady  the 1000th malloc(64 MiB) on that thread (999 earlier
 *                  samples: caches warm);
 *   free_steady    free of that block;
 *   small_first    first malloc(64) of another fresh thread;
 *   small_steady   its 1000th malloc(64) (at the default rate usually not a
 *                  sample: the fast path);
 *   create_first   pthread_create on a fresh thread (the creating side);
 *   create_steady  its 51st pthread_create.
 *
 * Run:  build/bench/stack_use
 *       LD_PRELOAD=build/libheaptap.so HEAPTAP_RATE=1 build/bench/stack_use
 *       LD_PRELOAD=build/libheaptap.so build/bench/stack_use
 * (cmake --build build --target stack_use; x86-64 only: it reads rsp.)
 */
#define HEAPTAP_WEAK
#include <heaptap.h>

#include "common.h"

#include <pthread.h>
#include <sys/mman.h>

#define NOINLINE __attribute__((noinline))
#define STACK    (1u << 20)
#define PATTERN  0xa5
#define BIG      ((size_t)64 << 20)
#define SMALL    64
#define STEADY   1000
#define CREATES  50

static size_t page;

static inline __attribute__((always_inline)) uintptr_t cur_sp(void)
{
	uintptr_t sp;
	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
	return sp;
}

/* Fill [lo, top) without a call: a memset would put its own frame in the
 * range it is filling. */
static inline __attribute__((always_inline)) void paint(char *lo, uintptr_t top)
{
	size_t n = top - (uintptr_t)lo;
	__asm__ volatile("rep stosb" : "+D"(lo), "+c"(n) : "a"(PATTERN) : "memory");
}

/* The deepest byte written since painting: the first one, from the bottom,
 * that lost the pattern. */
static uintptr_t deepest(const char *lo, uintptr_t top)
{
	const volatile char *p = lo;
	while ((uintptr_t)p < top && (unsigned char)*p == PATTERN)
		p++;
	return (uintptr_t)p;
}

/* sp at the call instruction of the measured call (x86-64 keeps rsp fixed in
 * a function body, so the value read just before the call is the one the
 * call pushes its return address below). */
static uintptr_t site_sp;

NOINLINE static void *call_malloc(size_t n)
{
	site_sp = cur_sp();
	void *p = malloc(n);
	bench_sink(p);
	return p;
}

NOINLINE static void call_free(void *p)
{
	site_sp = cur_sp();
	free(p);
	bench_sink(p);
}

static void *idle(void *arg)
{
	return arg;
}

NOINLINE static int call_create(pthread_t *t)
{
	site_sp = cur_sp();
	int rc = pthread_create(t, NULL, idle, NULL);
	bench_sink(t);
	return rc;
}

/* The bottom of the measurement thread's stack. */
static char *stack_lo;

enum op { OP_MALLOC, OP_FREE, OP_CREATE };

/* Paint below this frame, make one call, return the bytes it used below its
 * call site. */
NOINLINE static size_t measure(enum op op, size_t n, void **pp)
{
	uintptr_t top = cur_sp();
	pthread_t t;
	int created = 0;
	paint(stack_lo, top);
	if (op == OP_MALLOC)
		*pp = call_malloc(n);
	else if (op == OP_FREE)
		call_free(*pp);
	else
		created = call_create(&t) == 0;
	/* Scan before anything else runs below this frame (the join). */
	uintptr_t low = deepest(stack_lo, top);
	if (created)
		pthread_join(t, NULL);
	return site_sp > low ? site_sp - low : 0;
}

static void report(const char *mode, size_t bytes, size_t size)
{
	if (size)
		printf("stack_use mode=%s bytes=%zu size=%zu\n", mode, bytes, size);
	else
		printf("stack_use mode=%s bytes=%zu\n", mode, bytes);
}

static void *mallocs(void *arg)
{
	size_t n = *(size_t *)arg;
	int big = n == BIG;
	void *p;
	report(big ? "malloc_first" : "small_first", measure(OP_MALLOC, n, &p), n);
	for (int i = 1; i < STEADY - 1; i++) {
		free(p);
		p = call_malloc(n);
	}
	free(p);
	report(big ? "malloc_steady" : "small_steady", measure(OP_MALLOC, n, &p), n);
	if (big)
		report("free_steady", measure(OP_FREE, 0, &p), n);
	else
		free(p);
	return NULL;
}

static void *creates(void *arg)
{
	(void)arg;
	report("create_first", measure(OP_CREATE, 0, NULL), 0);
	for (int i = 1; i < CREATES; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, idle, NULL) == 0)
			pthread_join(t, NULL);
	}
	report("create_steady", measure(OP_CREATE, 0, NULL), 0);
	return NULL;
}

/* One fresh thread on a 1 MiB stack of ours, a guard page below it. */
static void on_own_stack(void *(*fn)(void *), void *arg)
{
	size_t len = STACK + page;
	char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
	                 -1, 0);
	if (map == MAP_FAILED || mprotect(map, page, PROT_NONE) != 0) {
		perror("stack_use: mmap");
		exit(1);
	}
	stack_lo = map + page;
	pthread_attr_t at;
	pthread_t t;
	pthread_attr_init(&at);
	if (pthread_attr_setstack(&at, stack_lo, STACK) != 0 ||
	    pthread_create(&t, &at, fn, arg) != 0) {
		fprintf(stderr, "stack_use: pthread_create failed\n");
		exit(1);
	}
	pthread_join(t, NULL);
	pthread_attr_destroy(&at);
	munmap(map, len);
}

int main(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	page = ps > 0 ? (size_t)ps : 4096;
	/* Lines go out as they are made, before the next thread starts. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *rate = getenv("HEAPTAP_RATE");
	printf("stack_use heaptap=%s rate=%s\n", HEAPTAP_PRESENT(heaptap_dump) ? "yes" : "no",
	       HEAPTAP_PRESENT(heaptap_dump) ? (rate && *rate ? rate : "default") : "-");
	size_t big = BIG, small = SMALL;
	on_own_stack(mallocs, &big);
	on_own_stack(mallocs, &small);
	on_own_stack(creates, NULL);
	return 0;
}
