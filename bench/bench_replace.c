/*
 * bench_replace.c - random replacement in a large live heap: the pattern of
 * a cache or a key-value store (redis-benchmark with random keys).
 *
 * Holds N live blocks of 16 to 72 bytes (N from argv[2], 1,000,000 by
 * default), then for a fixed time frees a block chosen at random and
 * allocates its replacement, of another size, in its place. Every free and
 * every allocation then touches a different, random part of whatever a
 * profiler keeps per live block: at rate 1 that is heaptap's table of
 * sampled pointers (tens of MiB here), so this measures its cache misses,
 * which bench_malloc (the same few blocks again and again) never sees.
 *
 * Line: RESULT bench=replace blocks=N metric=ns_per_replace value=V
 * (wall time per free + malloc, after an untimed warm-up over every block).
 * Usage: bench_replace [ms] [N]   (default 1000 ms)
 */
#include "common.h"

static size_t size_of(uint64_t r)
{
	return 16 + (size_t)(r % 8) * 8;
}

int main(int argc, char **argv)
{
	unsigned ms = bench_ms(argc, argv, 1, 1000);
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
	if (n == 0)
		n = 1;
	void **live = malloc(n * sizeof(*live));
	if (!live)
		return 1;
	uint64_t rng = 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < n; i++) {
		live[i] = malloc(size_of(bench_rand(&rng)));
		memset(live[i], 1, 16);
	}
	/* Warm-up: every block replaced once, in order (tables grown, caches
	 * as they will be). */
	for (size_t i = 0; i < n; i++) {
		free(live[i]);
		live[i] = malloc(size_of(bench_rand(&rng)));
		memset(live[i], 2, 16);
	}
	uint64_t ops = 0, t0 = bench_now_ns(), end = t0 + (uint64_t)ms * 1000000ull, t = t0;
	while (t < end) {
		for (int k = 0; k < 1024; k++) {
			size_t i = (size_t)(bench_rand(&rng) % n);
			free(live[i]);
			live[i] = malloc(size_of(bench_rand(&rng)));
			memset(live[i], 3, 16);
		}
		ops += 1024;
		t = bench_now_ns();
	}
	printf("RESULT bench=replace blocks=%zu metric=ns_per_replace value=%.1f\n", n,
	       (double)(t - t0) / (double)ops);
	for (size_t i = 0; i < n; i++)
		free(live[i]);
	free(live);
	return 0;
}
