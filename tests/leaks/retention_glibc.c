/*
 * retention_glibc.c - the program frees its memory, glibc keeps it.
 *
 * Eight worker threads (start_workers, created before the first dump) each
 * get an arena of their own from glibc. After a 0.6 s lead-in they fill it
 * with small blocks in fill_arena(): 12 MiB of 1 KiB blocks per thread,
 * 96 MiB in all, paced over 1.6 s (~60,000 blocks a second: modest even at
 * HEAPTAP_RATE=1). After 0.3 s they free every block but the last one they
 * allocated (release_most): that block sits at the top of the arena's heap,
 * so glibc can give none of the free space below it back to the kernel.
 * Then the service idles for 2.8 s: the live heap is back to what it was,
 * RSS stays ~96 MiB higher, and glibc's arenas hold ~96 MiB free (mallinfo2
 * fordblks).
 *
 *   retention_glibc [--scale F] [--trim] [--threads N] [--mib M]
 *
 * --trim        call malloc_trim(0) when the idle phase starts (trim_idle):
 *               RSS drops back, glibc's free-but-held figure stays high (the
 *               trimmed chunks stay in the bins).
 * --threads N   workers (default 8); --mib M: MiB per worker (default 12).
 *
 * Expected from `heaptap leaks`: verdict retention, no leak (fill_arena is
 * transient, never leaking). With --trim: no retention verdict, no leak.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "leaks_common.h"

#define BLOCK_BYTES  1024
#define LEAD_IN      0.6
#define FILL_SECONDS 1.6
#define HOLD_SECONDS 0.3
#define IDLE_SECONDS 2.8
#define MAX_THREADS  64

struct worker {
	pthread_t thread;
	unsigned index;
	size_t nblocks;
	void **blocks; /* from pool_worker_slots */
};

static struct worker workers[MAX_THREADS];
static unsigned nworkers = 8;
static size_t mib_per_worker = 12;
static unsigned long fill_steps;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int stage; /* 0 wait, 1 fill, 2 release, 3 quit */
static unsigned filled, released;

static void wait_stage(int want)
{
	pthread_mutex_lock(&lock);
	while (stage < want)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}

static void set_stage(int s)
{
	pthread_mutex_lock(&lock);
	stage = s;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void count_up(unsigned *counter)
{
	pthread_mutex_lock(&lock);
	++*counter;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void wait_count(unsigned *counter, unsigned target)
{
	pthread_mutex_lock(&lock);
	while (*counter < target)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}

/* The workers' block tables: one allocation at start, kept to the end. */
NOINLINE static void pool_worker_slots(void)
{
	size_t per = mib_per_worker * (1 << 20) / BLOCK_BYTES;
	void **all = calloc(per * nworkers, sizeof(void *));

	if (!all)
		abort();
	for (unsigned i = 0; i < nworkers; i++) {
		workers[i].nblocks = per;
		workers[i].blocks = all + i * per;
	}
}

/* THE FILL: blocks [from, to) of this worker, in its own arena. */
NOINLINE static void fill_arena(struct worker *w, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		unsigned char *b = malloc(BLOCK_BYTES);

		if (!b)
			abort();
		memset(b, (int)((w->index + i) & 0xff), BLOCK_BYTES);
		w->blocks[i] = b;
	}
}

/* Free all but the last block: the last one pins the top of the heap. */
NOINLINE static void release_most(struct worker *w)
{
	for (size_t i = 0; i + 1 < w->nblocks; i++) {
		free(w->blocks[i]);
		w->blocks[i] = NULL;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct lk_pacer pacer;
	size_t done = 0;

	wait_stage(1);
	lk_pacer_start(&pacer);
	for (unsigned long s = 0; s < fill_steps; s++) {
		size_t upto = w->nblocks * (s + 1) / fill_steps;

		fill_arena(w, done, upto);
		done = upto;
		lk_pacer_tick(&pacer);
	}
	count_up(&filled);
	wait_stage(2);
	release_most(w);
	count_up(&released);
	wait_stage(3);
	/* The last block stays: freeing it would let glibc trim the heap, and
	 * a dump taken in the last moments (HEAPTAP_INTERVAL) would then see
	 * RSS fall, which is not the picture this program paints. */
	return NULL;
}

/* The workers, created before the first dump: a fixed set of threads. */
NOINLINE static void start_workers(void)
{
	for (unsigned i = 0; i < nworkers; i++) {
		workers[i].index = i;
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
			abort();
	}
}

/* What a service that knows about retention does when it goes idle. */
NOINLINE static void trim_idle(void)
{
	malloc_trim(0);
}

static void background_for(double seconds)
{
	unsigned long steps = lk_steps(seconds);

	for (unsigned long s = 0; s < steps; s++) {
		lk_background();
		lk_tick();
	}
}

static void print_mallinfo(const char *when)
{
	struct mallinfo2 mi = mallinfo2();

	printf("mallinfo %s in_use_mib=%.1f free_held_mib=%.1f mmap_mib=%.1f rss_mib=%.1f\n", when,
	       (double)mi.uordblks / (1 << 20), (double)mi.fordblks / (1 << 20),
	       (double)mi.hblkhd / (1 << 20), lk_rss_mib());
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int trim = 0;
	const char *threads_arg = NULL, *mib_arg = NULL;
	struct lk_opt opts[] = {
	        {"--trim", 0, NULL, &trim},
	        {"--threads", 1, &threads_arg, NULL},
	        {"--mib", 1, &mib_arg, NULL},
	        {NULL, 0, NULL, NULL},
	};

	lk_start(argc, argv, opts);
	if (threads_arg)
		nworkers = (unsigned)atoi(threads_arg);
	if (mib_arg)
		mib_per_worker = (size_t)atoi(mib_arg);
	if (nworkers < 1 || nworkers > MAX_THREADS || mib_per_worker < 1 || mib_per_worker > 1024)
		lk_usage(argv[0], opts);
	fill_steps = lk_steps(FILL_SECONDS);

	pool_init();
	pool_worker_slots();
	start_workers();
	lk_clock_start();
	lk_phase("lead-in");
	background_for(LEAD_IN);

	lk_phase("fill");
	set_stage(1);
	background_for(FILL_SECONDS);
	wait_count(&filled, nworkers);
	lk_phase("filled");
	print_mallinfo("filled");
	background_for(HOLD_SECONDS);

	set_stage(2);
	wait_count(&released, nworkers);
	lk_phase("released");
	if (trim) {
		trim_idle();
		lk_phase("trimmed");
	}
	print_mallinfo("idle");
	background_for(IDLE_SECONDS);
	lk_phase("end");
	print_mallinfo("end");
	printf("workers=%u mib_per_worker=%zu trim=%d\n", nworkers, mib_per_worker, trim);
	lk_done();

	set_stage(3);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(workers[i].thread, NULL);
	return 0;
}
