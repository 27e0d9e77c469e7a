/*
 * mem.c - heaptap's own allocator.
 *
 * One virtual region is reserved PROT_NONE at start-up and handed out in
 * 64 KiB slabs made readable and writable on demand. Small requests are served
 * from 40 size classes of 16 B .. 32 KiB (below), each with a free list under
 * its own spinlock; larger ones take a run of whole slabs, and freed runs are
 * returned to the kernel with MADV_DONTNEED and kept for reuse. Because every
 * block lives inside [ht_mem_lo, ht_mem_hi), free() can tell heaptap's memory
 * from the application's with two compares.
 *
 * Fork: a lock held by some other thread at fork() belongs to a thread that
 * does not exist in the child, and the list it guarded may be half-updated, so
 * the child abandons that list (the memory stays mapped; it is only leaked).
 *
 * It also measures: what is resident of a range (mincore), for the figure of
 * heaptap's own resident memory in the profile comments. Bytes handed out
 * (ht_mem_in_use) say nothing of slabs sitting in free lists or kept dirty,
 * nor of the memory heaptap maps outside this region.
 */
#include "mem.h"

#include "tls.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLAB_SHIFT  16
#define SLAB_SIZE   ((size_t)1 << SLAB_SHIFT)
#define NLINEAR     8                 /* 16, 32, .. 128 */
#define NCLASSES    (NLINEAR + 4 * 8) /* then 160, 192, 224, 256, 320 .. 32 KiB */
#define MAX_SLABS   (1u << 16)        /* region of at most 4 GiB */
#define CLASS_LARGE 0xff
#define CLASS_NONE  0

uintptr_t ht_mem_lo = 1, ht_mem_hi = 1; /* empty range until reserved */

static _Alignas(16) char fallback[64 << 10];
static _Atomic size_t fallback_used;

/* The owner is noted so that a thread whose busy section was abandoned (a
 * siglongjmp out of a signal handler that interrupted it) can release what
 * it held: every locked section below publishes with one pointer store, so
 * the lists stay whole. */
struct spin {
	_Atomic(const void *) owner; /* &ht_tls of the holder, NULL when free */
};

/* Taking the lock and noting the owner are one compare-and-swap: a signal
 * can never find the lock held with no owner noted. */
static void spin_lock(struct spin *s)
{
	unsigned n = 0;
	const void *none = NULL;
	while (!atomic_compare_exchange_weak_explicit(&s->owner, &none, &ht_tls,
	                                              memory_order_acquire, memory_order_relaxed)) {
		none = NULL;
		if (++n > 64) {
			sched_yield();
			n = 0;
		}
	}
}

static void spin_unlock(struct spin *s)
{
	atomic_store_explicit(&s->owner, NULL, memory_order_release);
}

static void spin_release_mine(struct spin *s)
{
	if (atomic_load_explicit(&s->owner, memory_order_relaxed) == &ht_tls)
		spin_unlock(s);
}

static bool spin_held(struct spin *s)
{
	/* Only called in the fork child, where nobody else runs. */
	return atomic_load_explicit(&s->owner, memory_order_relaxed) != NULL;
}

struct free_block {
	struct free_block *next;
};

struct free_run {
	struct free_run *next;
	uint32_t slabs;
	uint32_t dirty; /* pages still resident (not given back to the kernel) */
};

/* Freed runs of up to DIRTY_RUN_MAX slabs stay resident, up to DIRTY_BUDGET
 * bytes in all: a thread's ring released at its exit is taken again by the
 * next thread without a madvise, fresh zero pages and the TLB shootdowns
 * both cost in a multithreaded process (thread-per-request servers). */
#define DIRTY_RUN_MAX 16
#define DIRTY_BUDGET  ((size_t)16 << 20)

static struct {
	_Atomic int state; /* 0 none, 1 reserving, 2 ready, -1 failed */
	size_t nslabs;
	_Atomic size_t next_slab; /* bump index of the next never-used slab */
	struct spin lock[NCLASSES];
	struct free_block *free[NCLASSES];
	struct spin run_lock;
	struct free_run *runs;
	size_t dirty_bytes; /* under run_lock */
	_Atomic size_t in_use;
	uint8_t slab_class[MAX_SLABS];
	uint16_t slab_used[MAX_SLABS]; /* a small class's blocks handed out, under its lock */
	uint32_t slab_span[MAX_SLABS]; /* slabs in the run that starts here */
} M;

int ht_mem_init(void)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&M.state, &expect, 1)) {
		while (atomic_load(&M.state) == 1)
			sched_yield();
		return atomic_load(&M.state) == 2 ? 0 : -ENOMEM;
	}
	/* Try a roomy region first; fall back under RLIMIT_AS or strict
	 * overcommit. PROT_NONE reservations are not charged to the commit
	 * limit; only what mprotect() opens is. */
	static const size_t sizes[] = {(size_t)4 << 30, (size_t)1 << 30, (size_t)256 << 20,
	                               (size_t)64 << 20, (size_t)16 << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mmap(NULL, sizes[i], PROT_NONE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			continue;
		/* Align the start to a slab so slab indexes are plain shifts. */
		uintptr_t lo = ((uintptr_t)p + SLAB_SIZE - 1) & ~(SLAB_SIZE - 1);
		size_t n = (sizes[i] - (lo - (uintptr_t)p)) >> SLAB_SHIFT;
		M.nslabs = n;
		ht_mem_lo = lo;
		ht_mem_hi = lo + (n << SLAB_SHIFT);
		atomic_store(&M.state, 2);
		return 0;
	}
	/* No region at all (a tiny RLIMIT_AS): a small static arena still
	 * serves the allocations made while resolving the real functions, so the
	 * program runs on with heaptap inert. */
	ht_mem_lo = (uintptr_t)fallback;
	ht_mem_hi = (uintptr_t)fallback + sizeof(fallback);
	atomic_store(&M.state, -1);
	return -ENOMEM;
}

static void *fallback_alloc(size_t size)
{
	size_t need = ((size + 15) & ~(size_t)15) + 16;
	size_t off = atomic_fetch_add(&fallback_used, need);
	if (off + need > sizeof(fallback))
		return NULL;
	char *p = fallback + off;
	*(size_t *)p = size;
	return p + 16;
}

static inline size_t slab_index(const void *p)
{
	return ((uintptr_t)p - ht_mem_lo) >> SLAB_SHIFT;
}

static inline void *slab_addr(size_t i)
{
	return (void *)(ht_mem_lo + (i << SLAB_SHIFT));
}

/* Take n contiguous slabs, readable and writable. Returns the first index or
 * (size_t)-1. */
static size_t slabs_take(size_t n)
{
	if (atomic_load_explicit(&M.state, memory_order_acquire) != 2 && ht_mem_init() != 0)
		return (size_t)-1;
	/* Reuse a freed run first (first fit, split the rest). */
	spin_lock(&M.run_lock);
	for (struct free_run **pp = &M.runs; *pp; pp = &(*pp)->next) {
		struct free_run *r = *pp;
		if (r->slabs < n)
			continue;
		size_t idx = slab_index(r);
		if (r->dirty)
			M.dirty_bytes -= n << SLAB_SHIFT;
		if (r->slabs > n) {
			struct free_run *rest = slab_addr(idx + n);
			rest->slabs = r->slabs - (uint32_t)n;
			rest->dirty = r->dirty;
			rest->next = r->next;
			*pp = rest;
		} else {
			*pp = r->next;
		}
		spin_unlock(&M.run_lock);
		return idx;
	}
	spin_unlock(&M.run_lock);
	size_t idx = atomic_fetch_add(&M.next_slab, n);
	if (idx + n > M.nslabs || idx + n > MAX_SLABS)
		return (size_t)-1; /* the bump index stays past the end: full */
	if (mprotect(slab_addr(idx), n << SLAB_SHIFT, PROT_READ | PROT_WRITE) != 0)
		return (size_t)-1;
	return idx;
}

/* Put the n slabs from idx on the list of free runs; dirty when their pages
 * are still resident (counted in dirty_bytes by the caller). */
static void run_push(size_t idx, size_t n, bool dirty)
{
	struct free_run *r = slab_addr(idx);
	r->slabs = (uint32_t)n;
	r->dirty = dirty;
	spin_lock(&M.run_lock);
	r->next = M.runs;
	M.runs = r;
	spin_unlock(&M.run_lock);
}

static void slabs_give_back(size_t idx, size_t n)
{
	size_t bytes = n << SLAB_SHIFT;
	bool keep = false;
	if (n <= DIRTY_RUN_MAX) {
		spin_lock(&M.run_lock);
		if (M.dirty_bytes + bytes <= DIRTY_BUDGET) {
			M.dirty_bytes += bytes;
			keep = true;
		}
		spin_unlock(&M.run_lock);
	}
	/* Otherwise drop the pages but keep the mapping, so the range stays
	 * ours. */
	if (!keep)
		madvise(slab_addr(idx), bytes, MADV_DONTNEED);
	run_push(idx, n, keep);
}

/* Take the slabs of class c none of whose blocks is handed out off its
 * free list and give their pages back, as free runs of one slab. A slab is
 * known to be wholly free only under the class's lock (its count and its
 * blocks on the list change together there), so the list is walked with
 * the lock held; at most RELEASE_BATCH slabs per walk, marked CLASS_NONE as
 * they are found so that their remaining blocks further down are taken off
 * too (no free() can come for a block of a slab with none handed out). */
#define RELEASE_BATCH 256
static size_t release_free_slabs(unsigned c)
{
	size_t rel[RELEASE_BATCH], n = 0;
	spin_lock(&M.lock[c]);
	for (struct free_block **pp = &M.free[c]; *pp;) {
		size_t idx = slab_index(*pp);
		if (M.slab_class[idx] == (uint8_t)(c + 1) && M.slab_used[idx] == 0 &&
		    n < RELEASE_BATCH) {
			M.slab_class[idx] = CLASS_NONE;
			rel[n++] = idx;
		}
		if (M.slab_class[idx] == CLASS_NONE)
			*pp = (*pp)->next;
		else
			pp = &(*pp)->next;
	}
	spin_unlock(&M.lock[c]);
	for (size_t i = 0; i < n; i++) {
		madvise(slab_addr(rel[i]), SLAB_SIZE, MADV_DONTNEED);
		run_push(rel[i], 1, false);
	}
	return n;
}

void ht_mem_trim(size_t keep)
{
	if (atomic_load_explicit(&M.state, memory_order_acquire) != 2)
		return;
	for (unsigned c = 0; c < NCLASSES; c++)
		while (release_free_slabs(c) == RELEASE_BATCH)
			;
	for (;;) {
		/* One dirty run at a time, taken off the list so nobody reuses
		 * it while its pages go back, with the lock not held across
		 * the syscall. */
		spin_lock(&M.run_lock);
		struct free_run *r = NULL;
		if (M.dirty_bytes > keep) {
			for (struct free_run **pp = &M.runs; *pp; pp = &(*pp)->next) {
				if ((*pp)->dirty) {
					r = *pp;
					*pp = r->next;
					break;
				}
			}
		}
		if (!r) {
			spin_unlock(&M.run_lock);
			return;
		}
		uint32_t n = r->slabs;
		M.dirty_bytes -= (size_t)n << SLAB_SHIFT;
		spin_unlock(&M.run_lock);
		madvise(r, (size_t)n << SLAB_SHIFT, MADV_DONTNEED);
		run_push(slab_index(r), n, false);
	}
}

/* Size classes: every multiple of 16 up to 128 bytes, then four per
 * doubling, so a block over 128 bytes wastes less than a fifth of itself.
 * Powers of two alone wasted up to half: a stack record of 280 bytes took
 * 512, and at rate 1 a program with deep recursion keeps hundreds of
 * thousands of them (espresso: 228,000 stacks, 160 MB of heaptap's memory
 * with powers of two, 113 MB with these classes and the stacks' size tables
 * made only for a second size, agg.c). The powers of two are classes still,
 * for memalign: a block of class size c sits at a multiple of c inside its
 * 64 KiB-aligned slab, so it is aligned to the largest power of two
 * dividing c. */
static inline unsigned class_of(size_t size)
{
	if (size <= 16 * NLINEAR)
		return size ? (unsigned)((size - 1) >> 4) : 0;
	unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)(size - 1)); /* >= 7 */
	return NLINEAR + 4 * (e - 7) + (unsigned)(((size - 1) >> (e - 2)) & 3);
}

static inline size_t class_size(unsigned c)
{
	if (c < NLINEAR)
		return (size_t)(c + 1) << 4;
	unsigned g = (c - NLINEAR) / 4, q = (c - NLINEAR) % 4;
	return ((size_t)128 << g) + (size_t)(q + 1) * ((size_t)32 << g);
}

static void *small_alloc(unsigned c)
{
	size_t bsize = class_size(c);
	spin_lock(&M.lock[c]);
	struct free_block *b = M.free[c];
	if (b) {
		M.free[c] = b->next;
		M.slab_used[slab_index(b)]++;
		spin_unlock(&M.lock[c]);
		atomic_fetch_add_explicit(&M.in_use, bsize, memory_order_relaxed);
		return b;
	}
	spin_unlock(&M.lock[c]);
	size_t idx = slabs_take(1);
	if (idx == (size_t)-1)
		return NULL;
	M.slab_class[idx] = (uint8_t)(c + 1);
	M.slab_span[idx] = 1;
	M.slab_used[idx] = 1; /* nobody else sees the slab before its list is */
	/* Keep the first block, thread the rest onto the free list. */
	char *base = slab_addr(idx);
	size_t count = SLAB_SIZE / bsize;
	struct free_block *first = NULL, *last = NULL;
	for (size_t i = 1; i < count; i++) {
		struct free_block *fb = (struct free_block *)(base + i * bsize);
		fb->next = NULL;
		if (last)
			last->next = fb;
		else
			first = fb;
		last = fb;
	}
	if (first) {
		spin_lock(&M.lock[c]);
		last->next = M.free[c];
		M.free[c] = first;
		spin_unlock(&M.lock[c]);
	}
	atomic_fetch_add_explicit(&M.in_use, bsize, memory_order_relaxed);
	return base;
}

static void *large_alloc(size_t size)
{
	size_t n = (size + SLAB_SIZE - 1) >> SLAB_SHIFT;
	if (n == 0 || n > MAX_SLABS)
		return NULL;
	size_t idx = slabs_take(n);
	if (idx == (size_t)-1)
		return NULL;
	M.slab_class[idx] = CLASS_LARGE;
	M.slab_span[idx] = (uint32_t)n;
	atomic_fetch_add_explicit(&M.in_use, n << SLAB_SHIFT, memory_order_relaxed);
	return slab_addr(idx);
}

void *ht_mem_alloc(size_t size)
{
	if (size > ((size_t)1 << 40))
		return NULL;
	if (atomic_load_explicit(&M.state, memory_order_acquire) != 2 && ht_mem_init() != 0)
		return fallback_alloc(size);
	if (size <= SLAB_SIZE / 2)
		return small_alloc(class_of(size));
	return large_alloc(size);
}

void *ht_mem_calloc(size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total))
		return NULL;
	void *p = ht_mem_alloc(total);
	if (p)
		memset(p, 0, total); /* recycled blocks are dirty */
	return p;
}

size_t ht_mem_usable_size(const void *p)
{
	if (!p || !ht_mem_owns(p))
		return 0;
	if (atomic_load_explicit(&M.state, memory_order_relaxed) != 2)
		return *(const size_t *)((const char *)p - 16);
	size_t idx = slab_index(p);
	uint8_t c = M.slab_class[idx];
	if (c == CLASS_LARGE)
		return (size_t)M.slab_span[idx] << SLAB_SHIFT;
	if (c == CLASS_NONE)
		return 0;
	return class_size(c - 1u);
}

void ht_mem_free(void *p)
{
	if (!p || !ht_mem_owns(p))
		return;
	if (atomic_load_explicit(&M.state, memory_order_relaxed) != 2)
		return; /* the static fallback arena is never reused */
	size_t idx = slab_index(p);
	uint8_t c = M.slab_class[idx];
	if (c == CLASS_LARGE) {
		size_t n = M.slab_span[idx];
		atomic_fetch_sub_explicit(&M.in_use, n << SLAB_SHIFT, memory_order_relaxed);
		M.slab_class[idx] = CLASS_NONE;
		slabs_give_back(idx, n);
		return;
	}
	if (c == CLASS_NONE)
		return; /* not a block we handed out (or a stray pointer): ignore */
	unsigned k = c - 1u;
	struct free_block *b = p;
	atomic_fetch_sub_explicit(&M.in_use, class_size(k), memory_order_relaxed);
	spin_lock(&M.lock[k]);
	b->next = M.free[k];
	M.free[k] = b;
	M.slab_used[idx]--;
	spin_unlock(&M.lock[k]);
}

void *ht_mem_realloc(void *p, size_t size)
{
	if (!p)
		return ht_mem_alloc(size);
	if (size == 0) {
		ht_mem_free(p);
		return NULL;
	}
	size_t have = ht_mem_usable_size(p);
	if (size <= have && (size > have / 4 || have <= 64))
		return p;
	void *q = ht_mem_alloc(size);
	if (!q)
		return NULL;
	memcpy(q, p, have < size ? have : size);
	ht_mem_free(p);
	return q;
}

void *ht_mem_memalign(size_t align, size_t size)
{
	if (align <= 16)
		return ht_mem_alloc(size);
	if (align & (align - 1))
		return NULL;
	if (atomic_load_explicit(&M.state, memory_order_acquire) != 2 && ht_mem_init() != 0)
		return NULL;
	/* A class whose size is a power of two is aligned to it (above), and
	 * runs start on a slab boundary. */
	if (align > SLAB_SIZE)
		return NULL;
	size_t need = size < align ? align : size;
	if (need <= SLAB_SIZE / 2) {
		size_t pow2 = (size_t)1 << (64 - __builtin_clzll((unsigned long long)(need - 1)));
		return small_alloc(class_of(pow2));
	}
	return large_alloc(need);
}

size_t ht_mem_in_use(void)
{
	return atomic_load_explicit(&M.in_use, memory_order_relaxed);
}

size_t ht_mem_resident_range(const void *p, size_t len)
{
	static _Atomic size_t page_size;
	size_t pg = atomic_load_explicit(&page_size, memory_order_relaxed);
	if (!pg) {
		long v = sysconf(_SC_PAGESIZE);
		pg = v > 0 ? (size_t)v : 4096;
		atomic_store_explicit(&page_size, pg, memory_order_relaxed);
	}
	if (!p || !len)
		return 0;
	uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(pg - 1);
	uintptr_t hi = (uintptr_t)p + len;
	if (hi < lo)
		return 0;
	/* A small vector, so that this can run on any thread's stack (a
	 * heaptap_stats() caller's included): one mincore() per 1024 pages. */
	unsigned char vec[1024];
	size_t pages = 0;
	while (lo < hi) {
		size_t n = (hi - lo + pg - 1) / pg;
		if (n > sizeof(vec))
			n = sizeof(vec);
		/* Unmapped (ENOMEM): nothing of ours is resident there. */
		if (mincore((void *)lo, n * pg, vec) == 0)
			for (size_t i = 0; i < n; i++)
				pages += vec[i] & 1;
		lo += n * pg;
	}
	return pages * pg;
}

size_t ht_mem_resident(void)
{
	/* The statics: the slab tables (pages of them touched as the region is
	 * used) and the fallback arena (touched only when no region could be
	 * reserved). */
	size_t r = ht_mem_resident_range(&M, sizeof(M)) +
	           ht_mem_resident_range(fallback, sizeof(fallback));
	if (atomic_load_explicit(&M.state, memory_order_acquire) != 2)
		return r;
	/* Every slab ever opened, whatever holds it now: blocks handed out,
	 * blocks on the free lists, runs kept dirty. Runs given back with
	 * MADV_DONTNEED are not resident and count nothing. The bump index
	 * stays past the end once the region is full. */
	size_t n = atomic_load_explicit(&M.next_slab, memory_order_relaxed);
	if (n > M.nslabs)
		n = M.nslabs;
	return r + ht_mem_resident_range((const void *)ht_mem_lo, n << SLAB_SHIFT);
}

void ht_mem_atfork_child(void)
{
	for (unsigned c = 0; c < NCLASSES; c++) {
		if (spin_held(&M.lock[c])) {
			M.free[c] = NULL;
			spin_unlock(&M.lock[c]);
		}
	}
	if (spin_held(&M.run_lock)) {
		M.runs = NULL;
		M.dirty_bytes = 0;
		spin_unlock(&M.run_lock);
	}
}

void ht_mem_release_mine(void)
{
	for (unsigned c = 0; c < NCLASSES; c++)
		spin_release_mine(&M.lock[c]);
	spin_release_mine(&M.run_lock);
}
