/*
 * rel_errno.c - a successful allocation call leaves errno as it found it,
 * with heaptap as without.
 *
 * A sample runs a good deal of heaptap's code between the program's call and
 * its return: the stack walk (whose probe of an unknown page is a system
 * call), the table of sampled pointers, the ring and, when the ring is half
 * full, the aggregation (the aggregation lock, heaptap's own memory); a
 * thread's first sample also sets up its ring. None of it may leave its
 * errno behind. Before each call the program puts a value of its own in
 * errno and checks it after: malloc, calloc, realloc (grow, shrink, NULL),
 * posix_memalign, aligned_alloc, memalign, large blocks (mmap'd by glibc),
 * free and free(NULL), on the main thread and on fresh threads (whose first
 * call is their first sample), enough of them to fill and drain the ring
 * many times at rate 1. It prints
 *   checked=<calls> changed=<calls that changed errno> first=<the first such call>
 * and done=1.
 */
#include "rel_common.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>

#define ROUNDS  20000
#define THREADS 4

static _Atomic long checked, changed;
static _Atomic(const char *) first = "none";

static void note(const char *call, int want)
{
	atomic_fetch_add(&checked, 1);
	if (errno != want) {
		const char *none = "none";
		if (atomic_fetch_add(&changed, 1) == 0)
			atomic_compare_exchange_strong(&first, &none, call);
	}
}

/* Each call with errno set to a value no allocator would set. */
#define CHECK(call, expr)                                                                          \
	do {                                                                                       \
		int want_ = 4242 + (int)(i & 255);                                                 \
		errno = want_;                                                                     \
		expr;                                                                              \
		note(call, want_);                                                                 \
	} while (0)

NOINLINE static void calls(long rounds)
{
	for (long i = 0; i < rounds; i++) {
		void *p, *q, *r = NULL;
		size_t n = 16 + (size_t)(i % 61) * 24;
		CHECK("malloc", p = malloc(n));
		rel_touch(p, n);
		CHECK("calloc", q = calloc(3, n));
		CHECK("realloc_grow", p = realloc(p, n * 3));
		CHECK("realloc_shrink", p = realloc(p, n / 2 + 1));
		CHECK("realloc_null", r = realloc(NULL, n));
		CHECK("free", free(r));
		CHECK("posix_memalign", (void)!posix_memalign(&r, 64, n));
		CHECK("free", free(r));
		CHECK("aligned_alloc", r = aligned_alloc(256, 512));
		CHECK("free", free(r));
		CHECK("memalign", r = memalign(4096, n));
		CHECK("free", free(r));
		if (i % 512 == 0) {
			CHECK("malloc_large", r = malloc((size_t)1 << 20));
			rel_touch(r, (size_t)1 << 20);
			CHECK("free_large", free(r));
		}
		CHECK("free", free(q));
		CHECK("free", free(p));
		CHECK("free_null", free(NULL));
	}
}

static void *thread_main(void *arg)
{
	calls((long)(intptr_t)arg);
	return NULL;
}

int main(void)
{
	calls(ROUNDS);
	for (int k = 0; k < THREADS; k++) {
		pthread_t t;
		if (pthread_create(&t, NULL, thread_main, (void *)(intptr_t)(ROUNDS / THREADS)) !=
		    0)
			return 1;
		pthread_join(t, NULL);
	}
	say("checked=%ld changed=%ld first=%s", atomic_load(&checked), atomic_load(&changed),
	    atomic_load(&first));
	say("done=1");
	return 0;
}
