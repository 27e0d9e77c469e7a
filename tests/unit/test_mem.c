/*
 * test_mem.c - heaptap's own allocator (src/mem.c) through its API: every
 * size class, runs of 64 KiB slabs (reuse, first fit and split, pages given
 * back), calloc, realloc, memalign, usable sizes, ht_mem_owns, the in-use
 * figure, the resident figures (mincore over a range, the allocator's
 * memory), four threads at once, the fork child that finds a size class
 * locked by a thread that no longer exists, and the release of the locks of
 * a section abandoned by a siglongjmp out of a signal handler.
 */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mem.h"
#include "unit_util.h"

/* What mem.c promises, restated here: a change there must change these. */
#define SLAB      ((size_t)64 << 10)
#define MIN_CLASS ((size_t)16)
#define MAX_CLASS ((size_t)32 << 10)
#define NCLASSES  40 /* 16, 32 .. 128, then four per doubling up to 32 KiB */

static size_t class_size(unsigned k)
{
	if (k < 8)
		return MIN_CLASS * (k + 1);
	unsigned g = (k - 8) / 4, q = (k - 8) % 4;
	return ((size_t)128 << g) + (q + 1) * ((size_t)32 << g);
}

static bool aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Fill [p, p+n) with a pattern derived from seed; check it. */
static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed * 31u + i * 7u);
}

static bool intact(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != (unsigned char)(seed * 31u + i * 7u))
			return false;
	return true;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

/* ------------------------------------------------------------------------- */

static void size_classes(void **state)
{
	(void)state;
	assert_int_equal(class_size(NCLASSES - 1), MAX_CLASS);
	for (unsigned k = 0; k < NCLASSES; k++) {
		size_t cls = class_size(k);
		/* The smallest and the largest request the class serves; no
		 * request wastes more than a fifth of its block past 128 B. */
		size_t lo = k == 0 ? 0 : class_size(k - 1) + 1;
		assert_true(cls <= 128 || (cls - lo) * 5 < cls);
		size_t sizes[] = {lo, cls};
		for (unsigned s = 0; s < 2; s++) {
			size_t before = ht_mem_in_use();
			void *a = ht_mem_alloc(sizes[s]);
			void *b = ht_mem_alloc(sizes[s]);
			void *c = ht_mem_alloc(sizes[s]);
			assert_non_null(a);
			assert_non_null(b);
			assert_non_null(c);
			assert_true(a != b && b != c && a != c);
			assert_int_equal(ht_mem_in_use(), before + 3 * cls);
			void *blocks[] = {a, b, c};
			for (unsigned i = 0; i < 3; i++) {
				assert_true(ht_mem_owns(blocks[i]));
				assert_true(aligned(blocks[i], 16));
				/* Blocks of a class sit at multiples of its size
				 * in a 64 KiB-aligned slab: aligned to the largest
				 * power of two dividing it. */
				assert_true(aligned(blocks[i], cls & -cls));
				assert_int_equal(ht_mem_usable_size(blocks[i]), cls);
				fill(blocks[i], cls, k * 8 + i);
			}
			/* Writing all of one block touched none of the others. */
			for (unsigned i = 0; i < 3; i++)
				assert_true(intact(blocks[i], cls, k * 8 + i));
			ht_mem_free(b);
			assert_int_equal(ht_mem_in_use(), before + 2 * cls);
			/* The block just freed is the next one handed out. */
			void *again = ht_mem_alloc(sizes[s]);
			assert_ptr_equal(again, b);
			ht_mem_free(again);
			ht_mem_free(a);
			ht_mem_free(c);
			assert_int_equal(ht_mem_in_use(), before);
		}
	}
	/* Just above the largest class: a run of one slab. */
	void *p = ht_mem_alloc(MAX_CLASS + 1);
	assert_non_null(p);
	assert_int_equal(ht_mem_usable_size(p), SLAB);
	ht_mem_free(p);
}

static void many_blocks_of_a_class(void **state)
{
	(void)state;
	/* More blocks than one slab holds: the class takes further slabs. */
	enum { N = 3000 };
	static void *p[N];
	size_t before = ht_mem_in_use();
	for (unsigned i = 0; i < N; i++) {
		p[i] = ht_mem_alloc(56);
		assert_non_null(p[i]);
		*(uint32_t *)p[i] = i;
	}
	assert_int_equal(ht_mem_in_use(), before + (size_t)N * 64);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(*(uint32_t *)p[i], i);
	for (unsigned i = 0; i < N; i++)
		ht_mem_free(p[i]);
	assert_int_equal(ht_mem_in_use(), before);
}

static void large_runs(void **state)
{
	(void)state;
	size_t before = ht_mem_in_use();

	/* Several slabs: usable to the last byte, slab-aligned. */
	void *a = ht_mem_alloc(3 * SLAB + 1);
	assert_non_null(a);
	assert_true(ht_mem_owns(a));
	assert_true(aligned(a, SLAB));
	assert_int_equal(ht_mem_usable_size(a), 4 * SLAB);
	assert_int_equal(ht_mem_in_use(), before + 4 * SLAB);
	fill(a, 4 * SLAB, 1);
	assert_true(intact(a, 4 * SLAB, 1));
	assert_true(ht_mem_owns((char *)a + 4 * SLAB - 1));

	/* A freed run is what the next request of its size gets. */
	ht_mem_free(a);
	assert_int_equal(ht_mem_in_use(), before);
	void *b = ht_mem_alloc(4 * SLAB);
	assert_ptr_equal(b, a);

	/* First fit, the rest split off: one slab from the front of the freed
	 * four, then the remaining three. */
	ht_mem_free(b);
	void *one = ht_mem_alloc(SLAB);
	assert_ptr_equal(one, a);
	assert_int_equal(ht_mem_usable_size(one), SLAB);
	void *three = ht_mem_alloc(3 * SLAB);
	assert_ptr_equal(three, (char *)a + SLAB);
	assert_int_equal(ht_mem_usable_size(three), 3 * SLAB);
	assert_int_equal(ht_mem_in_use(), before + 4 * SLAB);
	/* Neither overlaps the other. */
	fill(one, SLAB, 2);
	fill(three, 3 * SLAB, 3);
	assert_true(intact(one, SLAB, 2));
	assert_true(intact(three, 3 * SLAB, 3));
	ht_mem_free(three);
	ht_mem_free(one);

	/* A run too large to keep resident is given back to the kernel
	 * (MADV_DONTNEED): reused, it reads as zeros past its first slab (whose
	 * first bytes held the run's free-list record meanwhile). */
	void *big = ht_mem_alloc(20 * SLAB);
	assert_non_null(big);
	fill(big, 20 * SLAB, 4);
	ht_mem_free(big);
	void *big2 = ht_mem_alloc(20 * SLAB);
	assert_ptr_equal(big2, big);
	assert_true(all_zero((char *)big2 + SLAB, 19 * SLAB));
	ht_mem_free(big2);

	assert_int_equal(ht_mem_in_use(), before);
	/* Beyond any region: refused. */
	assert_null(ht_mem_alloc((size_t)1 << 41));
	assert_null(ht_mem_alloc(SIZE_MAX));
	assert_int_equal(ht_mem_in_use(), before);
}

static void calloc_zeroes_and_checks_overflow(void **state)
{
	(void)state;
	size_t before = ht_mem_in_use();
	/* A recycled block is dirty; calloc hands it out zeroed. */
	for (size_t size = 24; size <= 2 * SLAB; size *= 3) {
		unsigned char *p = ht_mem_alloc(size);
		assert_non_null(p);
		memset(p, 0xa5, size);
		ht_mem_free(p);
		unsigned char *q = ht_mem_calloc(size / 8, 8);
		assert_ptr_equal(q, p);
		assert_true(all_zero(q, size / 8 * 8));
		ht_mem_free(q);
	}
	/* n * size overflows: NULL, nothing taken. */
	assert_null(ht_mem_calloc(SIZE_MAX / 2 + 1, 2));
	assert_null(ht_mem_calloc(2, SIZE_MAX / 2 + 1));
	assert_null(ht_mem_calloc(SIZE_MAX, SIZE_MAX));
	assert_null(ht_mem_calloc((size_t)1 << 33, (size_t)1 << 31));
	assert_int_equal(ht_mem_in_use(), before);
	/* The largest product that does not overflow still gets a block. */
	void *ok = ht_mem_calloc(1000, 3);
	assert_non_null(ok);
	assert_true(all_zero(ok, 3000));
	ht_mem_free(ok);
	assert_int_equal(ht_mem_in_use(), before);
}

static void realloc_semantics(void **state)
{
	(void)state;
	size_t before = ht_mem_in_use();

	/* NULL: an allocation. */
	char *p = ht_mem_realloc(NULL, 100);
	assert_non_null(p);
	assert_int_equal(ht_mem_usable_size(p), 112);
	fill(p, 100, 5);

	/* Within the block (and not below a quarter of it): in place. */
	assert_ptr_equal(ht_mem_realloc(p, 112), p);
	assert_ptr_equal(ht_mem_realloc(p, 33), p);
	assert_true(intact(p, 33, 5));

	/* Grow past the block: moved, contents kept, old block freed. */
	fill(p, 100, 5);
	char *g = ht_mem_realloc(p, 5000);
	assert_non_null(g);
	assert_true(g != p);
	assert_true(intact(g, 100, 5));
	assert_int_equal(ht_mem_usable_size(g), 5120);
	assert_int_equal(ht_mem_in_use(), before + 5120);

	/* Shrink below a quarter of a block larger than 64 B: moved to the
	 * smaller class, the prefix kept. */
	fill(g, 5000, 6);
	char *s = ht_mem_realloc(g, 1000);
	assert_non_null(s);
	assert_true(s != g);
	assert_int_equal(ht_mem_usable_size(s), 1024);
	assert_true(intact(s, 1000, 6));
	assert_int_equal(ht_mem_in_use(), before + 1024);

	/* Blocks of 64 B or less never move when they shrink. */
	char *t = ht_mem_alloc(64);
	assert_ptr_equal(ht_mem_realloc(t, 1), t);

	/* Large to larger and back to small. */
	char *l = ht_mem_realloc(s, 3 * SLAB);
	assert_non_null(l);
	assert_true(intact(l, 1000, 6));
	assert_int_equal(ht_mem_usable_size(l), 3 * SLAB);
	fill(l, 3 * SLAB, 7);
	char *l2 = ht_mem_realloc(l, 5 * SLAB);
	assert_non_null(l2);
	assert_true(intact(l2, 3 * SLAB, 7));
	char *l3 = ht_mem_realloc(l2, 200);
	assert_non_null(l3);
	assert_int_equal(ht_mem_usable_size(l3), 224);
	assert_true(intact(l3, 200, 7));

	/* Size 0 frees and returns NULL. */
	assert_int_equal(ht_mem_in_use(), before + 64 + 224);
	assert_null(ht_mem_realloc(l3, 0));
	assert_null(ht_mem_realloc(t, 0));
	assert_int_equal(ht_mem_in_use(), before);

	/* Too large: NULL, and the block is left as it was. */
	char *keep = ht_mem_alloc(48);
	fill(keep, 48, 8);
	assert_null(ht_mem_realloc(keep, SIZE_MAX));
	assert_int_equal(ht_mem_usable_size(keep), 48);
	assert_true(intact(keep, 48, 8));
	ht_mem_free(keep);
	assert_int_equal(ht_mem_in_use(), before);
}

static void memalign_powers_of_two(void **state)
{
	(void)state;
	size_t before = ht_mem_in_use();
	for (size_t align = 1; align <= SLAB; align <<= 1) {
		size_t sizes[] = {1, align / 2 + 1, align, align + 1, 3 * align};
		for (unsigned s = 0; s < 5; s++) {
			void *p = ht_mem_memalign(align, sizes[s]);
			assert_non_null(p);
			assert_true(ht_mem_owns(p));
			assert_true(aligned(p, align < 16 ? 16 : align));
			assert_true(ht_mem_usable_size(p) >= sizes[s]);
			fill(p, sizes[s], (unsigned)align + s);
			assert_true(intact(p, sizes[s], (unsigned)align + s));
			ht_mem_free(p);
		}
	}
	/* Not a power of two, or beyond a slab: refused. */
	assert_null(ht_mem_memalign(48, 16));
	assert_null(ht_mem_memalign(3 * 4096, 16));
	assert_null(ht_mem_memalign(2 * SLAB, 16));
	assert_int_equal(ht_mem_in_use(), before);
}

static void usable_size_and_owns(void **state)
{
	(void)state;
	for (size_t n = 1; n <= 4 * SLAB; n = n * 5 / 3 + 1) {
		void *p = ht_mem_alloc(n);
		assert_non_null(p);
		size_t u = ht_mem_usable_size(p);
		assert_true(u >= n);
		/* No more than twice the request (a class) or one slab more (a run). */
		assert_true(n <= 16 || u < 2 * n || u < n + SLAB);
		assert_true(ht_mem_owns(p));
		assert_true(ht_mem_owns((char *)p + u - 1));
		ht_mem_free(p);
	}
	int local = 0;
	static int global;
	void *theirs = malloc(64);
	assert_non_null(theirs);
	assert_false(ht_mem_owns(NULL));
	assert_false(ht_mem_owns(&local));
	assert_false(ht_mem_owns(&global));
	assert_false(ht_mem_owns(theirs));
	assert_false(ht_mem_owns((const void *)(uintptr_t)&now));
	assert_false(ht_mem_owns((const void *)(ht_mem_lo - 1)));
	assert_false(ht_mem_owns((const void *)ht_mem_hi));
	assert_true(ht_mem_owns((const void *)ht_mem_lo));
	assert_int_equal(ht_mem_usable_size(NULL), 0);
	assert_int_equal(ht_mem_usable_size(theirs), 0);
	assert_int_equal(ht_mem_usable_size(&local), 0);
	/* Freeing what is not ours is ignored: nothing changes, and the libc
	 * block is still whole. */
	size_t before = ht_mem_in_use();
	memset(theirs, 0x3c, 64);
	ht_mem_free(theirs);
	ht_mem_free(&local);
	ht_mem_free(NULL);
	assert_int_equal(ht_mem_in_use(), before);
	for (int i = 0; i < 64; i++)
		assert_int_equal(((unsigned char *)theirs)[i], 0x3c);
	free(theirs);
}

/* ------------------------------------------------------------------------- */
/* Four threads: storms of allocations and frees of every size at once. Each
 * thread writes its own pattern over all of every block it holds and checks
 * it before the free: a block handed out twice is overwritten by the other
 * holder. (cmocka's assertions are not for other threads: they count.) */

#define STORM_THREADS 4
#define STORM_ROUNDS  400
#define STORM_BATCH   48

struct storm {
	unsigned id;
	unsigned long bad;  /* blocks found overwritten */
	unsigned long null; /* allocations refused */
	unsigned long held; /* blocks checked */
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t storm_size(uint64_t *rng)
{
	uint64_t r = xorshift(rng);
	if (r % 64 == 0)
		return MAX_CLASS + 1 + (size_t)(r >> 8) % (3 * SLAB); /* a run */
	return 1 + (size_t)(r >> 8) % class_size((unsigned)((r >> 40) % NCLASSES));
}

static void *storm_thread(void *arg)
{
	struct storm *st = arg;
	uint64_t rng = 0x9E3779B97F4A7C15ull * (st->id + 1);
	void *p[STORM_BATCH];
	size_t n[STORM_BATCH];
	memset(p, 0, sizeof(p));
	for (unsigned round = 0; round < STORM_ROUNDS; round++) {
		/* Replace about half of what is held, so blocks live across
		 * rounds while the others come and go. */
		for (unsigned i = 0; i < STORM_BATCH; i++) {
			if (p[i] && xorshift(&rng) % 2)
				continue;
			if (p[i]) {
				st->held++;
				if (!intact(p[i], n[i], st->id * 1000 + i))
					st->bad++;
				ht_mem_free(p[i]);
			}
			n[i] = storm_size(&rng);
			p[i] = xorshift(&rng) % 4 ? ht_mem_alloc(n[i]) : ht_mem_memalign(64, n[i]);
			if (!p[i]) {
				st->null++;
				continue;
			}
			n[i] = ht_mem_usable_size(p[i]); /* all of it is ours */
			fill(p[i], n[i], st->id * 1000 + i);
		}
	}
	for (unsigned i = 0; i < STORM_BATCH; i++) {
		if (!p[i])
			continue;
		st->held++;
		if (!intact(p[i], n[i], st->id * 1000 + i))
			st->bad++;
		ht_mem_free(p[i]);
	}
	return NULL;
}

/* A dump's trim (ht_mem_trim), again and again while the storm runs: a
 * slab given back while another thread takes or frees one of its blocks
 * would show as a block not intact, or as a crash. */
static _Atomic int storm_over;
static void *trim_thread(void *arg)
{
	unsigned *trims = arg;
	while (!atomic_load(&storm_over)) {
		ht_mem_trim(0);
		(*trims)++;
	}
	return NULL;
}

static void four_threads(void **state)
{
	(void)state;
	size_t before = ht_mem_in_use();
	pthread_t t[STORM_THREADS], trimmer;
	struct storm st[STORM_THREADS];
	unsigned trims = 0;
	atomic_store(&storm_over, 0);
	assert_int_equal(pthread_create(&trimmer, NULL, trim_thread, &trims), 0);
	for (unsigned i = 0; i < STORM_THREADS; i++) {
		st[i] = (struct storm){.id = i + 1};
		assert_int_equal(pthread_create(&t[i], NULL, storm_thread, &st[i]), 0);
	}
	for (unsigned i = 0; i < STORM_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	atomic_store(&storm_over, 1);
	assert_int_equal(pthread_join(trimmer, NULL), 0);
	assert_true(trims > 0);
	for (unsigned i = 0; i < STORM_THREADS; i++) {
		assert_int_equal(st[i].bad, 0);
		assert_int_equal(st[i].null, 0);
		assert_true(st[i].held > STORM_ROUNDS * STORM_BATCH / 4);
	}
	/* Everything came back: the figure is where it started. */
	assert_int_equal(ht_mem_in_use(), before);
}

/* ------------------------------------------------------------------------- */
/* fork() while another thread is inside the allocator: the child may find a
 * size class (or the run list) locked by a thread it does not have. After
 * ht_mem_atfork_child() (what heaptap's atfork child handler in core.c calls;
 * core.c's constructor registers that handler in this process too, and a
 * second call is harmless) every class must serve the child. A child that
 * hangs is killed and counted. */

#define FORKS          150
#define CHILD_DEADLINE 3.0 /* seconds */

static _Atomic int spin_stop;

static void *spinner(void *arg)
{
	unsigned k = (unsigned)(uintptr_t)arg;
	while (!atomic_load_explicit(&spin_stop, memory_order_relaxed)) {
		/* Every class and the run list, over and over. */
		for (unsigned c = 0; c < NCLASSES; c++) {
			void *p = ht_mem_alloc(class_size((c + k) % NCLASSES));
			ht_mem_free(p);
		}
		void *r = ht_mem_alloc(MAX_CLASS + 1);
		ht_mem_free(r);
	}
	return NULL;
}

/* The child's whole life: 0 when every class (and a run) serves it. */
static int child_allocates(void)
{
	ht_mem_atfork_child();
	for (unsigned k = 0; k < NCLASSES; k++) {
		void *p[3];
		for (unsigned i = 0; i < 3; i++) {
			p[i] = ht_mem_alloc(class_size(k));
			if (!p[i] || ht_mem_usable_size(p[i]) != class_size(k))
				return 2;
			fill(p[i], class_size(k), k + i);
		}
		for (unsigned i = 0; i < 3; i++) {
			if (!intact(p[i], class_size(k), k + i))
				return 3;
			ht_mem_free(p[i]);
		}
	}
	void *r = ht_mem_alloc(2 * SLAB);
	if (!r)
		return 4;
	fill(r, 2 * SLAB, 9);
	ht_mem_free(r);
	return 0;
}

/* Wait for pid until the deadline; kill it if it is still there. Returns its
 * status, or -1 when it had to be killed. */
static int wait_deadline(pid_t pid, double secs)
{
	double end = now() + secs;
	int status;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return status;
		if (w < 0 || now() > end)
			break;
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* ht_mem_resident_range counts the pages of a range that are in RAM, in
 * chunks of 1024 pages; ht_mem_resident covers the allocator's memory. */
/* ht_mem_trim: slabs of a class with no block handed out leave RAM and are
 * reused; a slab with one block still out keeps it intact; runs kept dirty
 * leave RAM too. Blocks of 48 bytes: a class no other test here fills. */
static void trim_gives_back_free_slabs(void **state)
{
	(void)state;
	enum { PER_SLAB = 65536 / 48, N = 4 * PER_SLAB };
	static char *p[N];
	size_t before = ht_mem_in_use();
	for (unsigned i = 0; i < N; i++) {
		p[i] = ht_mem_alloc(48);
		assert_non_null(p[i]);
		fill(p[i], 48, i);
	}
	/* Keep one block: its slab must stay. */
	char *keep = p[N / 2];
	char *run = ht_mem_alloc(3 * SLAB); /* kept dirty once freed */
	assert_non_null(run);
	memset(run, 1, 3 * SLAB);
	for (unsigned i = 0; i < N; i++)
		if (p[i] != keep)
			ht_mem_free(p[i]);
	ht_mem_free(run);
	size_t resident = ht_mem_resident();
	ht_mem_trim(0);
	size_t after = ht_mem_resident();
	/* At least two of the four slabs and the run went (all but the page
	 * holding each free run's header). */
	assert_true(resident - after >= 2 * (SLAB - 4096) + 3 * SLAB - 4096);
	assert_true(intact(keep, 48, N / 2));
	assert_int_equal(ht_mem_usable_size(keep), 48);
	assert_int_equal(ht_mem_in_use(), before + 48);
	/* Everything given back is reusable, and nothing overlaps the block
	 * kept or each other. */
	for (unsigned i = 0; i < N; i++) {
		if (p[i] == keep)
			continue;
		p[i] = ht_mem_alloc(48);
		assert_non_null(p[i]);
		assert_true(p[i] != keep);
		fill(p[i], 48, i + 7);
	}
	for (unsigned i = 0; i < N; i++)
		if (p[i] != keep)
			assert_true(intact(p[i], 48, i + 7));
	assert_true(intact(keep, 48, N / 2));
	for (unsigned i = 0; i < N; i++)
		ht_mem_free(p[i]);
	assert_int_equal(ht_mem_in_use(), before);
	/* Nothing free to give back: a second trim changes nothing it should
	 * not. */
	ht_mem_trim(0);
	assert_int_equal(ht_mem_in_use(), before);
}

static void resident_figures(void **state)
{
	(void)state;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t npages = 3000; /* more than one mincore() chunk */
	char *m =
	        mmap(NULL, npages * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	/* Page by page, even where transparent huge pages are "always". */
	madvise(m, npages * pg, MADV_NOHUGEPAGE);
	assert_int_equal(ht_mem_resident_range(m, npages * pg), 0);
	for (size_t i = 0; i < npages; i += 2)
		m[i * pg] = 1;
	assert_int_equal(ht_mem_resident_range(m, npages * pg), (npages / 2) * pg);
	/* Pages touched by an unaligned range count whole. */
	assert_int_equal(ht_mem_resident_range(m + 100, 1), pg);
	assert_int_equal(ht_mem_resident_range(m + pg + 100, 1), 0);
	assert_int_equal(ht_mem_resident_range(m + pg - 1, 2), pg);
	assert_int_equal(ht_mem_resident_range(NULL, pg), 0);
	/* Nothing mapped there: nothing resident. */
	munmap(m, npages * pg);
	assert_int_equal(ht_mem_resident_range(m, npages * pg), 0);

	/* The allocator: at least what it has handed out, when that is
	 * written; a run too large to be kept dirty leaves RAM when freed. */
	enum { NSMALL = 200 };
	void *small[NSMALL];
	for (int i = 0; i < NSMALL; i++) {
		small[i] = ht_mem_alloc(1000);
		assert_non_null(small[i]);
		memset(small[i], 1, 1000);
	}
	size_t big = 32 * SLAB; /* past the runs kept dirty (16 slabs) */
	char *b = ht_mem_alloc(big);
	assert_non_null(b);
	memset(b, 1, big);
	size_t with = ht_mem_resident();
	assert_true(with >= ht_mem_in_use());
	assert_true(ht_mem_resident_range(b, big) == big);
	ht_mem_free(b);
	/* All but the page that holds the free run's header. */
	size_t without = ht_mem_resident();
	assert_true(without + big <= with + pg);
	assert_true(ht_mem_resident_range(b, big) <= pg);
	for (int i = 0; i < NSMALL; i++)
		ht_mem_free(small[i]);
	/* Freed small blocks stay in RAM, on their class's free list. */
	assert_int_equal(ht_mem_resident(), without);
}

static void fork_child_with_class_locked(void **state)
{
	(void)state;
	pthread_t t[2];
	atomic_store(&spin_stop, 0);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, spinner, (void *)(uintptr_t)(i * 5)),
		                 0);
	unsigned hung = 0, failed = 0, ok = 0;
	for (unsigned i = 0; i < FORKS; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(child_allocates());
		if (pid < 0)
			break;
		int status = wait_deadline(pid, CHILD_DEADLINE);
		if (status == -1)
			hung++;
		else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
		else
			ok++;
		if (hung)
			break; /* one is enough to know; each costs the deadline */
	}
	atomic_store(&spin_stop, 1);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(hung, 0);
	assert_int_equal(failed, 0);
	assert_int_equal(ok, FORKS);
}

/* ------------------------------------------------------------------------- */
/* ht_mem_release_mine(): a signal interrupts this thread in a tight loop of
 * ht_mem_alloc/ht_mem_free of one class; the handler abandons that section
 * with siglongjmp, as heaptap's recovery does (track.c). Before it leaves,
 * the handler has a prober thread allocate from the same class. When the
 * prober does not get through, the interrupted section holds the class lock;
 * after ht_mem_release_mine() it must get through. The spinlock itself is
 * private to mem.c, so this is seen through behaviour only. */

#define RM_SIZE      200 /* the 256-byte class */
#define RM_WANT_HELD 25  /* interruptions that found the lock held */
#define RM_BUDGET    2.0 /* seconds at most */

static sigjmp_buf rm_jmp;
static sem_t rm_go;
static _Atomic int rm_armed, rm_started, rm_done, rm_quit;
static _Atomic unsigned rm_held, rm_stuck, rm_signals;

static void *rm_prober(void *arg)
{
	(void)arg;
	for (;;) {
		while (sem_wait(&rm_go) != 0)
			;
		if (atomic_load(&rm_quit))
			return NULL;
		atomic_store(&rm_started, 1);
		ht_mem_free(ht_mem_alloc(RM_SIZE));
		atomic_store(&rm_done, 1);
	}
}

static bool rm_wait(_Atomic int *flag, double secs)
{
	double end = now() + secs;
	while (!atomic_load(flag))
		if (now() > end)
			return false;
	return true;
}

/* Runs with SIGUSR1 blocked, and the jump keeps it blocked (rm_jmp does not
 * save the mask): the loop unblocks it once it is ready for the next. */
static void rm_handler(int sig)
{
	(void)sig;
	if (!atomic_load(&rm_armed))
		return; /* outside the loop: rm_jmp is not ours to jump to */
	atomic_fetch_add(&rm_signals, 1);
	/* Every probe runs to its end before the handler leaves, so the
	 * prober is idle here. */
	atomic_store(&rm_started, 0);
	atomic_store(&rm_done, 0);
	sem_post(&rm_go);
	if (!rm_wait(&rm_started, 10.0)) {
		atomic_fetch_add(&rm_stuck, 1); /* never scheduled: give up */
		siglongjmp(rm_jmp, 1);
	}
	/* An uncontended alloc/free takes well under a microsecond. */
	if (!rm_wait(&rm_done, 0.005)) {
		atomic_fetch_add(&rm_held, 1);
		ht_mem_release_mine();
		if (!rm_wait(&rm_done, 2.0))
			atomic_fetch_add(&rm_stuck, 1);
	}
	siglongjmp(rm_jmp, 1);
}

static _Atomic int rm_kick_stop;

static void *rm_kicker(void *arg)
{
	pthread_t target = *(pthread_t *)arg;
	while (!atomic_load(&rm_kick_stop)) {
		pthread_kill(target, SIGUSR1);
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void release_mine_after_siglongjmp(void **state)
{
	(void)state;
	assert_int_equal(sem_init(&rm_go, 0, 0), 0);
	sigset_t usr1, mask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &usr1, &mask), 0);
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = rm_handler;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

	/* Warm the class so the loop below never needs a new slab. */
	ht_mem_free(ht_mem_alloc(RM_SIZE));

	pthread_t self = pthread_self(), prober, kicker;
	assert_int_equal(pthread_create(&prober, NULL, rm_prober, NULL), 0);
	assert_int_equal(pthread_create(&kicker, NULL, rm_kicker, &self), 0);
	double end = now() + RM_BUDGET;
	for (;;) {
		if (sigsetjmp(rm_jmp, 0) == 0) {
			atomic_store(&rm_armed, 1);
			pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
			for (;;) {
				void *volatile p = ht_mem_alloc(RM_SIZE);
				ht_mem_free(p);
			}
		}
		/* Back from the handler, SIGUSR1 blocked. */
		atomic_store(&rm_armed, 0);
		if (atomic_load(&rm_held) >= RM_WANT_HELD || atomic_load(&rm_stuck) || now() > end)
			break;
	}
	atomic_store(&rm_kick_stop, 1);
	pthread_join(kicker, NULL);
	/* Ignoring it drops a kick still pending; then the old state back. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR1, &old, NULL);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	unsigned held = atomic_load(&rm_held), stuck = atomic_load(&rm_stuck);
	print_message("release_mine: %u signals, %u found the class locked, %u stuck\n",
	              atomic_load(&rm_signals), held, stuck);
	if (stuck)
		/* The prober spins on the lock for ever: leave it there. */
		fail_msg("the class lock held by the abandoned section was not released");
	atomic_store(&rm_quit, 1);
	sem_post(&rm_go);
	pthread_join(prober, NULL);
	/* Not vacuous: the scenario happened. */
	assert_true(held > 0);
	/* And the class still serves this thread. */
	void *p = ht_mem_alloc(RM_SIZE);
	assert_non_null(p);
	ht_mem_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(size_classes),
	        cmocka_unit_test(many_blocks_of_a_class),
	        cmocka_unit_test(large_runs),
	        cmocka_unit_test(calloc_zeroes_and_checks_overflow),
	        cmocka_unit_test(realloc_semantics),
	        cmocka_unit_test(memalign_powers_of_two),
	        cmocka_unit_test(usable_size_and_owns),
	        cmocka_unit_test(resident_figures),
	        cmocka_unit_test(trim_gives_back_free_slabs),
	        cmocka_unit_test(four_threads),
	        cmocka_unit_test(fork_child_with_class_locked),
	        /* Last: when it fails, a thread is left spinning on a lock. */
	        cmocka_unit_test(release_mine_after_siglongjmp),
	};
	return cmocka_run_group_tests(tests, unit_setup_mem, NULL);
}
