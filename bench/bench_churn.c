/*
 * bench_churn.c - short-lived threads that allocate.
 *
 * Rounds of: create 4 threads, each does 2000 malloc/free of 16..1024 bytes
 * (keeping 16 blocks live), join them. Runs rounds until the time budget is
 * spent; reports us_per_thread = wall x min(4, cpus) / threads run, i.e.
 * the core-time one thread's life (create, allocate, exit, join) costs.
 * Usage: bench_churn [ms]; default 300 ms.
 */
#include "common.h"

#include <pthread.h>

#define PER_ROUND 4
#define ALLOCS    2000

static void *run(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
	void *live[16] = {0};
	for (int i = 0; i < ALLOCS; i++) {
		uint64_t r = bench_rand(&seed);
		unsigned slot = (unsigned)(r & 15);
		free(live[slot]);
		char *p = malloc(16 + (size_t)((r >> 8) % 1009));
		p[0] = 1;
		live[slot] = p;
	}
	for (int i = 0; i < 16; i++)
		free(live[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned ms = bench_ms(argc, argv, 1, 300);
	uint64_t t0 = bench_now_ns(), deadline = t0 + (uint64_t)ms * 1000000ull, now;
	uint64_t threads = 0;
	do {
		pthread_t th[PER_ROUND];
		for (int i = 0; i < PER_ROUND; i++)
			pthread_create(&th[i], NULL, run,
			               (void *)(uintptr_t)(threads + (uint64_t)i));
		for (int i = 0; i < PER_ROUND; i++)
			pthread_join(th[i], NULL);
		threads += PER_ROUND;
		now = bench_now_ns();
	} while (now < deadline);
	long ncpu = bench_ncpu();
	double cores = (double)(PER_ROUND < ncpu ? PER_ROUND : ncpu);
	printf("RESULT bench=churn threads=%d metric=us_per_thread value=%.3f\n", PER_ROUND,
	       (double)(now - t0) * cores / 1000.0 / (double)threads);
	return 0;
}
