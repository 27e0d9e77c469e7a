/*
 * rel_frames.c - no heaptap frame anywhere in any stack, for every
 * allocation entry point and for thread creation (contract: "a stack starts
 * at the function that called the allocator: no heaptap frame anywhere in
 * it"; thread profile: the stack that called pthread_create, its caller
 * first).
 *
 * Built several times (rel_frames_O0, _O2, _O3, _lto: see CMakeLists.txt),
 * because what heaptap has to skip depends on how the caller was compiled:
 * frame pointers or not, PLT or GOT calls, clones and tail calls.
 *
 * Each entry point is called from its own function (ep_* here, cx_* in
 * rel_frames_cxx.cpp), noipa so that the name survives -O3 and LTO intact
 * (no inlining, no .constprop/.isra clone, no identical-code folding), with
 * every block's pointer stored in a global (or passed through an empty asm)
 * so the compiler can neither drop an allocation nor turn realloc(NULL, n)
 * into malloc(n). Every function also makes one 8 MiB block, sampled at the
 * default rate with probability 1 - e^-16, so stacks through each entry
 * point are checked there too.
 *
 * Threads: main starts 3 (fr_spawn_l1), each starts 2 (fr_spawn_l2), each of
 * those 1 (fr_spawn_l3); all 15 allocate (fr_thread_alloc) and stay blocked
 * on a gate until after the dump, with one std::thread (cx_spawn_std_thread).
 * Two threads from fr_spawn_joined are joined before the dump.
 *
 * Prints, for the driver (test_frames.py):
 *   own <lo> <hi>        executable PT_LOAD ranges of the loaded libheaptap
 *   unwind <lo> <hi>     the same for libunwind (heaptap's unwinder: this
 *                        program does not use it, so its frames are heaptap's)
 *   expect <fn> <inuse bytes> <inuse objects> <alloc bytes> <alloc objects>
 *   texpect <fn> <n>     live threads whose creation stack's leaf is fn
 *   texpect_any <fn> <n> live threads with fn anywhere in the creation stack
 *   threads_live=<n>, realloc_moved=<0|1>, dump=<rc>, done=1
 */
#include "rel_common.h"
#include "rel_frames.h"

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

/* noipa: gcc keeps the function whole and under its own name at any -O and
 * under LTO. clang has no noipa; noinline is the closest. */
#if defined(__clang__)
#define LEAF __attribute__((noinline, used))
#else
#define LEAF __attribute__((noipa, used))
#endif

#define BIG ((size_t)8 << 20)

/* The pointer escapes and memory is clobbered: the allocation before it and
 * the free after it cannot be elided or merged. */
#define ESCAPE(p) __asm__ volatile("" ::"r"(p) : "memory")

/* Values the compiler cannot see through, so realloc(NULL, n) stays a
 * realloc and realloc(p, 0) is not special-cased. */
static inline void *opaque_ptr(void *p)
{
	__asm__ volatile("" : "+r"(p));
	return p;
}

static inline size_t opaque_size(size_t n)
{
	__asm__ volatile("" : "+r"(n));
	return n;
}

/* ------------------------------------------------------------ tallies */

/* What each function must hold in the heap profile. Updated by the main
 * thread only (the thread part is computed from its constants). */
struct tally {
	const char *fn;
	long long inuse_b, inuse_o, alloc_b, alloc_o;
};
static struct tally tallies[64];
static int ntallies;

static struct tally *tally(const char *fn)
{
	for (int i = 0; i < ntallies; i++)
		if (strcmp(tallies[i].fn, fn) == 0)
			return &tallies[i];
	tallies[ntallies].fn = fn;
	return &tallies[ntallies++];
}

/* A block of n bytes at fn (when p is not NULL): used, so it is real. */
void fr_got(const char *fn, void *p, size_t n)
{
	struct tally *t = tally(fn);
	if (!p)
		return;
	rel_touch(p, n);
	t->alloc_b += (long long)n;
	t->alloc_o++;
	t->inuse_b += (long long)n;
	t->inuse_o++;
}

/* A block of n bytes made at fn was freed. */
void fr_lost(const char *fn, size_t n)
{
	struct tally *t = tally(fn);
	t->inuse_b -= (long long)n;
	t->inuse_o--;
}

/* Blocks kept until after the dump. */
void *kept[128];
static int nkept;

static void keep(void *p)
{
	kept[nkept++] = p;
	ESCAPE(p);
}

/* free_sized and free_aligned_sized (C23): glibc 2.36 has neither; heaptap
 * exports both, so main looks them up at run time (there, not in an ep_*
 * function: dlsym may allocate). */
static void (*free_sized_fn)(void *, size_t);
static void (*free_aligned_sized_fn)(void *, size_t, size_t);

static void sized_free(void *p, size_t n)
{
	if (free_sized_fn)
		free_sized_fn(p, n);
	else
		free(p);
}

static void aligned_sized_free(void *p, size_t a, size_t n)
{
	if (free_aligned_sized_fn)
		free_aligned_sized_fn(p, a, n);
	else
		free(p);
}

/* -------------------------------------------------------- entry points */

LEAF void ep_malloc(void)
{
	void *a = malloc(opaque_size(100));
	fr_got(__func__, a, 100);
	keep(a);
	void *b = malloc(opaque_size(200));
	fr_got(__func__, b, 200);
	ESCAPE(b);
	free(b);
	fr_lost(__func__, 200);
	void *c = malloc(opaque_size(300));
	fr_got(__func__, c, 300);
	ESCAPE(c);
	sized_free(c, 300);
	fr_lost(__func__, 300);
	void *big = malloc(opaque_size(BIG));
	fr_got(__func__, big, BIG);
	keep(big);
}

/* Through a function pointer the compiler cannot resolve: an indirect call
 * to whatever malloc the dynamic linker bound (heaptap's when preloaded). */
void *(*volatile malloc_ptr)(size_t) = malloc;

LEAF void ep_malloc_indirect(void)
{
	void *a = malloc_ptr(150);
	fr_got(__func__, a, 150);
	keep(a);
	void *big = malloc_ptr(BIG);
	fr_got(__func__, big, BIG);
	keep(big);
}

LEAF void ep_calloc(void)
{
	void *a = calloc(opaque_size(10), 30);
	fr_got(__func__, a, 300);
	keep(a);
	void *b = calloc(opaque_size(7), 100);
	fr_got(__func__, b, 700);
	ESCAPE(b);
	free(b);
	fr_lost(__func__, 700);
	void *big = calloc(opaque_size(1024), BIG / 1024);
	fr_got(__func__, big, BIG);
	keep(big);
}

/* realloc(NULL, n) is malloc(n), at the caller of realloc. */
LEAF void ep_realloc_null(void)
{
	void *a = realloc(opaque_ptr(NULL), opaque_size(777));
	fr_got(__func__, a, 777);
	keep(a);
	void *big = realloc(opaque_ptr(NULL), opaque_size(BIG));
	fr_got(__func__, big, BIG);
	keep(big);
}

/* realloc(p, n), p != NULL, n > 0: the old block is freed and n bytes are
 * allocated at the caller of realloc, in place or not. (Each function calls
 * realloc itself: a helper would be the leaf.) */
LEAF void ep_realloc_grow(void)
{
	void *p = malloc(opaque_size(300));
	fr_got(__func__, p, 300);
	void *q = realloc(p, opaque_size(3000));
	if (q) {
		fr_lost(__func__, 300);
		fr_got(__func__, q, 3000);
		p = q;
	}
	q = realloc(p, opaque_size(BIG));
	if (q) {
		fr_lost(__func__, 3000);
		fr_got(__func__, q, BIG);
		p = q;
	}
	keep(p);
}

LEAF void ep_realloc_shrink(void)
{
	void *p = malloc(opaque_size(BIG));
	fr_got(__func__, p, BIG);
	void *q = realloc(p, opaque_size(20000));
	if (q) {
		fr_lost(__func__, BIG);
		fr_got(__func__, q, 20000);
		p = q;
	}
	q = realloc(p, opaque_size(500));
	if (q) {
		fr_lost(__func__, 20000);
		fr_got(__func__, q, 500);
		p = q;
	}
	keep(p);
}

/* realloc(p, 0): glibc frees p and returns NULL. */
LEAF void ep_realloc_zero(void)
{
	void *p = malloc(opaque_size(555));
	fr_got(__func__, p, 555);
	void *q = realloc(p, opaque_size(0));
	fr_lost(__func__, 555);
	if (q) {
		say("note realloc(p, 0) returned a block");
		free(q);
	}
	void *big = malloc(opaque_size(BIG));
	fr_got(__func__, big, BIG);
	q = realloc(big, opaque_size(0));
	fr_lost(__func__, BIG);
	if (q)
		free(q);
}

/* A realloc that must move: the block right after it is in use, so glibc
 * cannot grow it in place. Then a move into an mmap'd chunk. */
static int realloc_moved = -1;

LEAF void ep_realloc_move(void)
{
	void *p = malloc(opaque_size(200));
	fr_got(__func__, p, 200);
	void *blocker = malloc(opaque_size(200));
	fr_got(__func__, blocker, 200);
	keep(blocker);
	uintptr_t before = (uintptr_t)p;
	void *q = realloc(p, opaque_size(4000));
	if (q) {
		realloc_moved = (uintptr_t)q != before;
		fr_lost(__func__, 200);
		fr_got(__func__, q, 4000);
		p = q;
	}
	q = realloc(p, opaque_size(BIG));
	if (q) {
		fr_lost(__func__, 4000);
		fr_got(__func__, q, BIG);
		p = q;
	}
	keep(p);
}

LEAF void ep_reallocarray_null(void)
{
	void *a = reallocarray(opaque_ptr(NULL), opaque_size(10), 70);
	fr_got(__func__, a, 700);
	keep(a);
	void *big = reallocarray(opaque_ptr(NULL), opaque_size(1024), BIG / 1024);
	fr_got(__func__, big, BIG);
	keep(big);
}

LEAF void ep_reallocarray(void)
{
	void *p = malloc(opaque_size(100));
	fr_got(__func__, p, 100);
	void *q = reallocarray(p, opaque_size(20), 50);
	if (q) {
		fr_lost(__func__, 100);
		fr_got(__func__, q, 1000);
		p = q;
	}
	q = reallocarray(p, opaque_size(1024), BIG / 1024);
	if (q) {
		fr_lost(__func__, 1000);
		fr_got(__func__, q, BIG);
		p = q;
	}
	keep(p);
}

LEAF void ep_posix_memalign(void)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, opaque_size(640)) == 0)
		fr_got(__func__, p, 640);
	keep(p);
	void *big = NULL;
	if (posix_memalign(&big, 4096, opaque_size(BIG)) == 0)
		fr_got(__func__, big, BIG);
	keep(big);
}

LEAF void ep_aligned_alloc(void)
{
	void *a = aligned_alloc(64, opaque_size(1280));
	fr_got(__func__, a, 1280);
	keep(a);
	void *b = aligned_alloc(256, opaque_size(512));
	fr_got(__func__, b, 512);
	ESCAPE(b);
	aligned_sized_free(b, 256, 512);
	fr_lost(__func__, 512);
	void *big = aligned_alloc(4096, opaque_size(BIG));
	fr_got(__func__, big, BIG);
	keep(big);
}

LEAF void ep_memalign(void)
{
	void *a = memalign(128, opaque_size(384));
	fr_got(__func__, a, 384);
	keep(a);
	void *big = memalign(4096, opaque_size(BIG));
	fr_got(__func__, big, BIG);
	keep(big);
}

LEAF void ep_valloc(void)
{
	void *a = valloc(opaque_size(8192));
	fr_got(__func__, a, 8192);
	keep(a);
	void *big = valloc(opaque_size(BIG));
	fr_got(__func__, big, BIG);
	keep(big);
}

/* Page multiples: pvalloc rounds up, and blocks count at the requested size. */
LEAF void ep_pvalloc(void)
{
	void *a = pvalloc(opaque_size(3 * 4096));
	fr_got(__func__, a, 3 * 4096);
	keep(a);
	void *big = pvalloc(opaque_size(BIG));
	fr_got(__func__, big, BIG);
	keep(big);
}

/* ------------------------------------------------------------- threads */

#define N_L1         3 /* started by main */
#define N_L2         2 /* by each level-1 thread */
#define N_L3         1 /* by each level-2 thread */
#define N_NESTED     (N_L1 + N_L1 * N_L2 + N_L1 * N_L2 * N_L3)
#define THREAD_BLOCK ((size_t)8 << 20)

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_arrived, gate_open;
static void *thread_blocks[N_NESTED];
static atomic_int thread_slot;

/* Arrive, then block until main opens the gate (after the dump). */
void fr_gate_wait(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_arrived++;
	pthread_cond_broadcast(&gate_cv);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}

static void gate_wait_arrivals(int n)
{
	pthread_mutex_lock(&gate_mu);
	while (gate_arrived < n)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}

static void gate_release(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = 1;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

static void must(int r, const char *what)
{
	if (r != 0) {
		say("error %s: %s", what, strerror(r));
		exit(1);
	}
}

LEAF void fr_thread_alloc(void)
{
	int i = atomic_fetch_add(&thread_slot, 1);
	thread_blocks[i] = malloc(opaque_size(THREAD_BLOCK));
	rel_touch(thread_blocks[i], THREAD_BLOCK);
}

void *fr_thread_l3(void *arg);
void *fr_thread_l2(void *arg);
void *fr_thread_l1(void *arg);

/* Each spawner checks the result after the call, so pthread_create is never
 * a tail call (its caller would then be missing from the stack). */
LEAF void fr_spawn_l3(pthread_t *t)
{
	must(pthread_create(t, NULL, fr_thread_l3, NULL), "pthread_create l3");
}

LEAF void fr_spawn_l2(pthread_t *t)
{
	must(pthread_create(t, NULL, fr_thread_l2, NULL), "pthread_create l2");
}

LEAF void fr_spawn_l1(pthread_t *t)
{
	must(pthread_create(t, NULL, fr_thread_l1, NULL), "pthread_create l1");
}

LEAF void *fr_thread_l3(void *arg)
{
	fr_thread_alloc();
	fr_gate_wait();
	return arg;
}

LEAF void *fr_thread_l2(void *arg)
{
	pthread_t t[N_L3];
	for (int i = 0; i < N_L3; i++)
		fr_spawn_l3(&t[i]);
	fr_thread_alloc();
	fr_gate_wait();
	for (int i = 0; i < N_L3; i++)
		pthread_join(t[i], NULL);
	return arg;
}

LEAF void *fr_thread_l1(void *arg)
{
	pthread_t t[N_L2];
	for (int i = 0; i < N_L2; i++)
		fr_spawn_l2(&t[i]);
	fr_thread_alloc();
	fr_gate_wait();
	for (int i = 0; i < N_L2; i++)
		pthread_join(t[i], NULL);
	return arg;
}

LEAF void *fr_thread_short(void *arg)
{
	void *p = malloc(opaque_size(64));
	ESCAPE(p);
	free(p);
	return arg;
}

/* Started and joined before the dump: no thread of these is alive. */
LEAF void fr_spawn_joined(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		must(pthread_create(&t[i], NULL, fr_thread_short, NULL), "pthread_create joined");
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
}

/* ----------------------------------------------------------- own ranges */

static int print_ranges(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	const char *tag = NULL;
	if (!info->dlpi_name)
		return 0;
	if (strstr(info->dlpi_name, "libheaptap"))
		tag = "own";
	else if (strstr(info->dlpi_name, "libunwind"))
		tag = "unwind";
	if (!tag)
		return 0;
	say("%s_file %s", tag, info->dlpi_name);
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
			say("%s %#lx %#lx", tag, (unsigned long)lo,
			    (unsigned long)(lo + ph->p_memsz));
		}
	}
	return 0;
}

int main(void)
{
	free_sized_fn = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
	free_aligned_sized_fn =
	        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
	say("free_sized=%d free_aligned_sized=%d", free_sized_fn != NULL,
	    free_aligned_sized_fn != NULL);
	ep_malloc();
	ep_malloc_indirect();
	ep_calloc();
	ep_realloc_null();
	ep_realloc_grow();
	ep_realloc_shrink();
	ep_realloc_zero();
	ep_realloc_move();
	ep_reallocarray_null();
	ep_reallocarray();
	ep_posix_memalign();
	ep_aligned_alloc();
	ep_memalign();
	ep_valloc();
	ep_pvalloc();
	cx_allocs();

	fr_spawn_joined();
	pthread_t l1[N_L1];
	for (int i = 0; i < N_L1; i++)
		fr_spawn_l1(&l1[i]);
	cx_spawn_std_thread();
	gate_wait_arrivals(N_NESTED + 1);

	say("dump=%d", rel_dump());
	dl_iterate_phdr(print_ranges, NULL);
	for (int i = 0; i < ntallies; i++) {
		struct tally *t = &tallies[i];
		say("expect %s %lld %lld %lld %lld", t->fn, t->inuse_b, t->inuse_o, t->alloc_b,
		    t->alloc_o);
	}
	say("expect fr_thread_alloc %lld %d %lld %d", (long long)(N_NESTED * THREAD_BLOCK),
	    N_NESTED, (long long)(N_NESTED * THREAD_BLOCK), N_NESTED);
	say("texpect fr_spawn_l1 %d", N_L1);
	say("texpect fr_spawn_l2 %d", N_L1 * N_L2);
	say("texpect fr_spawn_l3 %d", N_L1 * N_L2 * N_L3);
	say("texpect fr_spawn_joined 0");
	/* std::thread calls pthread_create from inside libstdc++. */
	say("texpect_any cx_spawn_std_thread 1");
	say("threads_live=%d", 1 + N_NESTED + 1);
	say("realloc_moved=%d", realloc_moved);

	gate_release();
	for (int i = 0; i < N_L1; i++)
		pthread_join(l1[i], NULL);
	cx_join_std_thread();
	say("done=1");
	return 0;
}
