/*
 * bench_sites.c - allocations from thousands of distinct call stacks.
 *
 * Each of T threads (default 2) allocates 16..512 bytes from one of 4096
 * stacks (sites.h, 2 levels) chosen at random, keeps the block in a window of
 * 1024 live blocks and frees the block it replaces. Reports ns_per_op (one
 * allocation + one free) = wall x min(T, cpus) / ops.
 * Usage: bench_sites [ms] [threads] [levels]; default 300 ms, 2 threads.
 */
#include "common.h"
#include "sites.h"

#include <pthread.h>
#include <stdatomic.h>

#define WINDOW 1024

static _Atomic int stop;
static unsigned levels = 2;

struct worker {
	pthread_t th;
	uint64_t ops, end_ns;
	unsigned id;
};

static void *run(void *arg)
{
	struct worker *w = arg;
	void *live[WINDOW] = {0};
	uint64_t seed = 0x9E3779B97F4A7C15ull * (w->id + 1);
	unsigned nsites = 1u << (6 * levels);
	uint64_t ops = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < 64; i++) {
			uint64_t r = bench_rand(&seed);
			unsigned slot = (unsigned)(r % WINDOW);
			free(live[slot]);
			char *p = site_alloc((unsigned)((r >> 16) % nsites), levels,
			                     16 + (size_t)((r >> 40) % 497));
			p[0] = 1;
			live[slot] = p;
		}
		ops += 64;
	}
	for (unsigned i = 0; i < WINDOW; i++)
		free(live[i]);
	w->ops = ops;
	w->end_ns = bench_now_ns();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned ms = bench_ms(argc, argv, 1, 300);
	unsigned nt = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 2;
	if (argc > 3)
		levels = (unsigned)strtoul(argv[3], NULL, 10);
	if (nt < 1)
		nt = 1;
	struct worker *w = calloc(nt, sizeof(*w));
	if (!w)
		return 1;
	/* Untimed warm-up: every stack once, so a profiler's first sight of a
	 * stack (symbolization, interning) is not in the steady-state figure. */
	for (unsigned i = 0; i < (1u << (6 * levels)); i++)
		free(site_alloc(i, levels, 16 + i % 497));
	uint64_t t0 = bench_now_ns();
	for (unsigned i = 0; i < nt; i++) {
		w[i].id = i;
		pthread_create(&w[i].th, NULL, run, &w[i]);
	}
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	atomic_store(&stop, 1);
	uint64_t ops = 0, end = t0;
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(w[i].th, NULL);
		ops += w[i].ops;
		if (w[i].end_ns > end)
			end = w[i].end_ns;
	}
	long ncpu = bench_ncpu();
	double cores = (double)(nt < (unsigned)ncpu ? nt : (unsigned)ncpu);
	printf("RESULT bench=sites threads=%u stacks=%u metric=ns_per_op value=%.3f\n", nt,
	       1u << (6 * levels), (double)(end - t0) * cores / (double)(ops ? ops : 1));
	free(w);
	return 0;
}
