/*
 * sample.c - sample gaps and weights. See sample.h for the model.
 */
#include "sample.h"

#include <math.h>
#include <time.h>

uint64_t ht_sample_seed(uint64_t salt)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* splitmix64 of time and salt (thread address, tid). */
	uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ salt;
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return z ? z : 0x2545F4914F6CDD1Dull;
}

uint64_t ht_sample_next_u64(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

int64_t ht_sample_gap(uint64_t *state, uint64_t rate)
{
	if (rate == 0)
		return HT_SAMPLE_OFF_GAP;
	if (rate == 1)
		return 0;
	/* Inverse transform: -rate * ln(U), U uniform in (0, 1]. 53 random bits
	 * keep U away from 0, so the gap stays below about 37 * rate. */
	double u = (double)((ht_sample_next_u64(state) >> 11) + 1) * 0x1.0p-53;
	double g = -log(u) * (double)rate;
	if (g < 1.0)
		return 1;
	if (g > (double)INT64_MAX / 4)
		return INT64_MAX / 4;
	return (int64_t)g;
}

double ht_sample_weight(uint64_t size, uint64_t rate)
{
	if (rate <= 1 || size == 0)
		return 1.0;
	/* 1 / (1 - e^(-size/rate)), computed with expm1 to stay exact for
	 * small size/rate. */
	double x = (double)size / (double)rate;
	return -1.0 / expm1(-x);
}
