/*
 * entry_points.c - every allocation entry point, at known sizes.
 *
 * Each ep_* function below calls one allocation entry point (or a family of
 * them) at sizes chosen here, keeps some blocks alive and frees others. The
 * program keeps its own tally per function and, after heaptap has dumped,
 * prints what the heap profile must show for that function:
 *
 *   expect <function> <inuse_bytes> <inuse_objects> <alloc_bytes> <alloc_objects>
 *
 * With HEAPTAP_RATE=1 heaptap records every allocation, so the profile's
 * values for samples whose leaf frame (the caller of the allocator) is
 * <function> must equal these numbers exactly. The conventions:
 *  - a block counts at the requested size (sizes here avoid any rounding:
 *    pvalloc/valloc sizes are page multiples, aligned_alloc sizes are
 *    multiples of the alignment);
 *  - realloc(p, n) with p != NULL and n > 0 is a free of p and a new
 *    allocation of n bytes at the caller of realloc, even if the block stays
 *    in place; realloc(NULL, n) is malloc(n); realloc(p, 0) frees p (glibc);
 *  - a block freed by another thread is gone from inuse all the same.
 *
 * It also checks that the allocator's results and errno survive
 * interposition (overflow, bad alignment, free preserving errno) and prints
 * "check <name> ok" or "check <name> FAIL ..."; any failure exits 1.
 *
 * The dump is taken through the weak API (heaptap_dump()) by default, or with
 * --signal by sending SIGUSR2 to itself and waiting for the files to appear.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "heaptap.h"

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noipa))
#endif

/* ---------------------------------------------------------------------------
 * Bookkeeping: what each function should have in the profile. No allocation
 * here, so the tally never shows up in its own numbers. */

struct tally {
	const char *fn;
	uint64_t inuse_bytes, inuse_objects, alloc_bytes, alloc_objects;
};

static struct tally tallies[32];
static int ntallies;
static int failures;

static struct tally *tally(const char *fn)
{
	for (int i = 0; i < ntallies; i++)
		if (!strcmp(tallies[i].fn, fn))
			return &tallies[i];
	tallies[ntallies].fn = fn;
	return &tallies[ntallies++];
}

static void *noted(struct tally *t, void *p, size_t size)
{
	if (p) {
		t->alloc_bytes += size;
		t->alloc_objects++;
		t->inuse_bytes += size;
		t->inuse_objects++;
	}
	return p;
}

static void gone(struct tally *t, size_t size)
{
	t->inuse_bytes -= size;
	t->inuse_objects--;
}

static void check(int ok, const char *name, const char *detail)
{
	if (ok) {
		printf("check %s ok\n", name);
	} else {
		printf("check %s FAIL %s\n", name, detail);
		failures++;
	}
}

/* The blocks kept alive until after the dump. */
static void *live[64];
static int nlive;

static void keep(void *p)
{
	live[nlive++] = p;
}

/* Write to the block so it is really used. */
static void touch(void *p, size_t n)
{
	if (p)
		memset(p, 0xab, n);
}

/* ---------------------------------------------------------------------------
 * The entry points. */

NOINLINE static void ep_malloc(void)
{
	struct tally *t = tally(__func__);

	for (size_t i = 1; i <= 8; i++) {
		size_t n = 100 * i;
		void *p = noted(t, malloc(n), n);
		touch(p, n);
		if (i % 2) {
			keep(p);
		} else {
			free(p);
			gone(t, n);
		}
	}
	/* One mmap-sized block kept, one freed. */
	void *big = noted(t, malloc(1 << 20), 1 << 20);
	touch(big, 1 << 20);
	keep(big);
	void *bigger = noted(t, malloc(4 << 20), 4 << 20);
	touch(bigger, 4 << 20);
	free(bigger);
	gone(t, 4 << 20);

	volatile size_t huge = SIZE_MAX; /* volatile: no compile-time warning */
	errno = 0;
	void *none = malloc(huge);
	check(none == NULL && errno == ENOMEM, "malloc_huge_enomem", "malloc(SIZE_MAX)");

	void *q = malloc(64);
	errno = EDOM;
	free(q);
	check(errno == EDOM, "free_preserves_errno", "free() changed errno");
	errno = EDOM;
	free(NULL);
	check(errno == EDOM, "free_null", "free(NULL) changed errno");
	/* q was allocated and freed here: it counts in alloc, not inuse. */
	t->alloc_bytes += 64;
	t->alloc_objects++;
}

NOINLINE static void ep_calloc(void)
{
	struct tally *t = tally(__func__);
	static const size_t shape[][2] = {{10, 30}, {7, 100}, {3, 1000}, {1, 4096}};

	for (int i = 0; i < 4; i++) {
		size_t n = shape[i][0], m = shape[i][1];
		unsigned char *p = noted(t, calloc(n, m), n * m);
		int zero = p != NULL;
		for (size_t k = 0; p && k < n * m; k++)
			zero &= p[k] == 0;
		check(zero, "calloc_zeroed", "calloc memory not zero");
		if (i % 2 == 0) {
			keep(p);
		} else {
			free(p);
			gone(t, n * m);
		}
	}
	volatile size_t half = SIZE_MAX / 2;
	errno = 0;
	void *none = calloc(half, 4);
	check(none == NULL && errno == ENOMEM, "calloc_overflow", "calloc(SIZE_MAX/2, 4)");
}

NOINLINE static void ep_realloc_grow(void)
{
	struct tally *t = tally(__func__);
	char *p = noted(t, malloc(300), 300);

	touch(p, 300);
	char *q = realloc(p, 3000);
	if (q) {
		gone(t, 300);
		noted(t, q, 3000);
		p = q;
	}
	check(q && (unsigned char)q[299] == 0xab, "realloc_grow_keeps_data", "data lost");
	q = realloc(p, 30000);
	if (q) {
		gone(t, 3000);
		noted(t, q, 30000);
		p = q;
	}
	keep(p);
}

NOINLINE static void ep_realloc_shrink(void)
{
	struct tally *t = tally(__func__);
	char *p = noted(t, malloc(20000), 20000);

	touch(p, 20000);
	char *q = realloc(p, 500);
	if (q) {
		gone(t, 20000);
		noted(t, q, 500);
		p = q;
	}
	check(q && (unsigned char)q[499] == 0xab, "realloc_shrink_keeps_data", "data lost");
	keep(p);
}

NOINLINE static void ep_realloc_null(void)
{
	struct tally *t = tally(__func__);

	for (int i = 0; i < 3; i++) {
		void *p = noted(t, realloc(NULL, 777), 777);
		touch(p, 777);
		keep(p);
	}
}

NOINLINE static void ep_realloc_zero(void)
{
	struct tally *t = tally(__func__);
	void *p = noted(t, malloc(900), 900);

	touch(p, 900);
	void *q = realloc(p, 0); /* glibc: frees p, returns NULL */
	gone(t, 900);
	if (q) {
		/* Another allocator may return a minimal block instead. */
		printf("note realloc(p, 0) returned a block\n");
		free(q);
	}
}

NOINLINE static void ep_reallocarray(void)
{
	struct tally *t = tally(__func__);
	void *p = noted(t, reallocarray(NULL, 50, 16), 800);

	touch(p, 800);
	void *q = reallocarray(p, 500, 16);
	if (q) {
		gone(t, 800);
		noted(t, q, 8000);
		p = q;
	}
	volatile size_t half = SIZE_MAX / 2;
	errno = 0;
	q = reallocarray(p, half, 4);
	check(q == NULL && errno == ENOMEM, "reallocarray_overflow", "reallocarray overflow");
	/* A failed reallocarray leaves p alone; gcc cannot know the call failed. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
	keep(p);
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif
}

NOINLINE static void ep_posix_memalign(void)
{
	struct tally *t = tally(__func__);
	static const size_t shape[][2] = {{64, 1000}, {4096, 5000}, {256, 333}};

	for (int i = 0; i < 3; i++) {
		void *p = NULL;
		int rc = posix_memalign(&p, shape[i][0], shape[i][1]);
		check(rc == 0 && ((uintptr_t)p % shape[i][0]) == 0, "posix_memalign_aligned",
		      "bad result");
		noted(t, rc == 0 ? p : NULL, shape[i][1]);
		touch(p, shape[i][1]);
		if (i < 2) {
			keep(p);
		} else {
			free(p);
			gone(t, shape[i][1]);
		}
	}
	void *bad = (void *)&bad;
	errno = 0;
	int rc = posix_memalign(&bad, 3, 100);
	check(rc == EINVAL && bad == (void *)&bad && errno == 0, "posix_memalign_einval",
	      "alignment 3 accepted, or errno/out changed");
}

NOINLINE static void ep_aligned_alloc(void)
{
	struct tally *t = tally(__func__);
	static const size_t shape[][2] = {{64, 640}, {4096, 8192}, {128, 1280}};

	for (int i = 0; i < 3; i++) {
		void *p = noted(t, aligned_alloc(shape[i][0], shape[i][1]), shape[i][1]);
		check(p && ((uintptr_t)p % shape[i][0]) == 0, "aligned_alloc_aligned",
		      "bad result");
		touch(p, shape[i][1]);
		if (i < 2) {
			keep(p);
		} else {
			free(p);
			gone(t, shape[i][1]);
		}
	}
}

NOINLINE static void ep_memalign(void)
{
	struct tally *t = tally(__func__);
	static const size_t shape[][2] = {{32, 96}, {1024, 3072}, {16, 160}};

	for (int i = 0; i < 3; i++) {
		void *p = noted(t, memalign(shape[i][0], shape[i][1]), shape[i][1]);
		check(p && ((uintptr_t)p % shape[i][0]) == 0, "memalign_aligned", "bad result");
		touch(p, shape[i][1]);
		if (i < 2) {
			keep(p);
		} else {
			free(p);
			gone(t, shape[i][1]);
		}
	}
}

NOINLINE static void ep_valloc(void)
{
	struct tally *t = tally(__func__);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *p = noted(t, valloc(page), page);
	void *q = noted(t, valloc(3 * page), 3 * page);

	check(p && (uintptr_t)p % page == 0, "valloc_aligned", "bad result");
	touch(p, page);
	touch(q, 3 * page);
	keep(p);
	free(q);
	gone(t, 3 * page);
}

NOINLINE static void ep_pvalloc(void)
{
	struct tally *t = tally(__func__);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *p = noted(t, pvalloc(2 * page), 2 * page);
	void *q = noted(t, pvalloc(page), page);

	check(p && (uintptr_t)p % page == 0, "pvalloc_aligned", "bad result");
	touch(p, 2 * page);
	touch(q, page);
	keep(p);
	free(q);
	gone(t, page);
}

/* malloc_usable_size allocates nothing: nothing may appear under it. */
NOINLINE static void ep_usable_size(void)
{
	(void)tally(__func__);
	size_t n = malloc_usable_size(live[0]);
	check(n >= 100, "malloc_usable_size", "smaller than requested");
	check(malloc_usable_size(NULL) == 0, "malloc_usable_size_null", "nonzero for NULL");
}

/* Allocated here, 25 of the 40 freed by another thread. */
static void *handoff[40];

NOINLINE static void ep_cross_thread(void)
{
	struct tally *t = tally(__func__);

	for (int i = 0; i < 40; i++) {
		handoff[i] = noted(t, malloc(700), 700);
		touch(handoff[i], 700);
	}
}

static void *freer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 25; i++)
		free(handoff[i]);
	return NULL;
}

static void free_in_other_thread(void)
{
	pthread_t th;
	struct tally *t = tally("ep_cross_thread");

	if (pthread_create(&th, NULL, freer, NULL) != 0) {
		check(0, "pthread_create", "failed");
		return;
	}
	pthread_join(th, NULL);
	for (int i = 0; i < 25; i++)
		gone(t, 700);
	for (int i = 25; i < 40; i++)
		keep(handoff[i]);
}

/* ---------------------------------------------------------------------------
 * Dumping. */

static int wait_for_file(const char *path, int seconds)
{
	struct stat st;
	struct timespec ts = {0, 50 * 1000 * 1000};

	for (int i = 0; i < seconds * 20; i++) {
		if (stat(path, &st) == 0)
			return 0;
		nanosleep(&ts, NULL);
	}
	return -1;
}

static int dump_by_signal(void)
{
	const char *dir = getenv("HEAPTAP_DIR");
	char heap[4096], threads[4096];

	snprintf(heap, sizeof(heap), "%s/heaptap.%d.0001.heap.pb.gz", dir ? dir : ".",
	         (int)getpid());
	snprintf(threads, sizeof(threads), "%s/heaptap.%d.0001.threads.pb.gz", dir ? dir : ".",
	         (int)getpid());
	kill(getpid(), SIGUSR2);
	if (wait_for_file(heap, 10) || wait_for_file(threads, 10))
		return -ETIMEDOUT;
	return 0;
}

int main(int argc, char **argv)
{
	int by_signal = argc > 1 && !strcmp(argv[1], "--signal");

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("pid %d\n", (int)getpid());

	ep_malloc();
	ep_calloc();
	ep_realloc_grow();
	ep_realloc_shrink();
	ep_realloc_null();
	ep_realloc_zero();
	ep_reallocarray();
	ep_posix_memalign();
	ep_aligned_alloc();
	ep_memalign();
	ep_valloc();
	ep_pvalloc();
	ep_usable_size();
	ep_cross_thread();
	free_in_other_thread();

	int rc;
	if (by_signal) {
		rc = dump_by_signal();
		printf("dump: signal rc=%d\n", rc);
	} else {
		rc = HEAPTAP_CALL(heaptap_dump);
		if (rc == -ENOSYS)
			printf("dump: heaptap absent\n");
		else
			printf("dump: rc=%d (%s)\n", rc, rc ? heaptap_strerror(rc) : "ok");
	}

	for (int i = 0; i < ntallies; i++) {
		struct tally *t = &tallies[i];
		printf("expect %s %llu %llu %llu %llu\n", t->fn, (unsigned long long)t->inuse_bytes,
		       (unsigned long long)t->inuse_objects, (unsigned long long)t->alloc_bytes,
		       (unsigned long long)t->alloc_objects);
	}

	for (int i = 0; i < nlive; i++)
		free(live[i]);
	printf("checks: %d failed\n", failures);
	return failures ? 1 : 0;
}
