/*
 * live_blocks.h - a program's heap held by many small blocks, the same in
 * every run: n blocks of 32 to 80 bytes (a fixed pseudo-random sequence),
 * each written, kept in an array that is itself allocated first. Shared by
 * the memory benchmark (bench/bench_live.c) and the test of heaptap's own
 * memory (tests/integration/own_memory.c), which compare runs with and
 * without a profiler over exactly this heap.
 */
#ifndef HT_LIVE_BLOCKS_H
#define HT_LIVE_BLOCKS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The array of n live blocks, or NULL when an allocation fails. */
static inline char **live_blocks_hold(long n)
{
	/* The array of pointers is the program's own memory too, the same in
	 * every run. */
	char **keep = malloc((size_t)n * sizeof(*keep));
	if (!keep)
		return NULL;
	uint32_t x = 12345;
	for (long i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		size_t size = 32 + (x >> 16) % 49;
		keep[i] = malloc(size);
		if (!keep[i])
			return NULL;
		memset(keep[i], (int)i, size);
	}
	return keep;
}

#endif
