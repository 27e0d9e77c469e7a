/*
 * common.h - helpers shared by heaptap's allocation benchmarks.
 *
 * Every benchmark prints one or more machine-readable lines
 *     RESULT bench=<name> <key>=<value> ... metric=<unit> value=<number>
 * on stdout; bench/run.py parses them. Loops are time-bounded (they stop
 * after a fixed wall-clock budget and report a rate), so a slow profiler
 * makes a run no longer than a fast one.
 */
#ifndef HT_BENCH_COMMON_H
#define HT_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Keep the compiler from deleting a malloc/free pair or the stores to p. */
static inline void bench_sink(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

/* xorshift64*: per-thread, cheap, deterministic. */
static inline uint64_t bench_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Milliseconds per measurement from argv or BENCH_MS, else the default. */
static inline unsigned bench_ms(int argc, char **argv, int idx, unsigned dflt)
{
	if (argc > idx)
		return (unsigned)strtoul(argv[idx], NULL, 10);
	const char *e = getenv("BENCH_MS");
	return e && *e ? (unsigned)strtoul(e, NULL, 10) : dflt;
}

static inline long bench_ncpu(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? n : 1;
}

#endif
