/*
 * test_sample.c - the sampler: gap mean and distribution, the rate 0 / 1
 * special cases, and the unbiasing weight.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sample.h"

#define N 200000

static void gap_mean_and_distribution(void **state)
{
	(void)state;
	const uint64_t rate = 524288;
	uint64_t rng = 0x9E3779B97F4A7C15ull; /* fixed: the test is deterministic */
	double sum = 0, sumsq = 0;
	/* Deciles of the exponential: P(X <= x) = 1 - e^(-x/rate). */
	unsigned bins[10] = {0};
	for (int i = 0; i < N; i++) {
		int64_t g = ht_sample_gap(&rng, rate);
		assert_true(g >= 1);
		double x = (double)g;
		sum += x;
		sumsq += x * x;
		double u = 1.0 - exp(-x / (double)rate);
		int b = (int)(u * 10);
		bins[b > 9 ? 9 : b]++;
	}
	double mean = sum / N;
	double sd = sqrt(sumsq / N - mean * mean);
	/* Mean within 4 standard errors; the exponential's sd equals its mean. */
	assert_true(fabs(mean - (double)rate) < 4.0 * (double)rate / sqrt(N));
	assert_true(fabs(sd - (double)rate) < 0.02 * (double)rate);
	/* Chi-square over 10 equiprobable bins, 9 dof: 99.9th percentile 27.9. */
	double chi = 0, e = N / 10.0;
	for (int i = 0; i < 10; i++)
		chi += (bins[i] - e) * (bins[i] - e) / e;
	assert_true(chi < 27.9);
}

static void gap_special_rates(void **state)
{
	(void)state;
	uint64_t rng = ht_sample_seed(7);
	assert_true(rng != 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(ht_sample_gap(&rng, 1), 0);
	assert_int_equal(ht_sample_gap(&rng, 0), HT_SAMPLE_OFF_GAP);
	/* Never zero, never overflows for the largest rate allowed. */
	for (int i = 0; i < 1000; i++) {
		int64_t g = ht_sample_gap(&rng, (uint64_t)1 << 40);
		assert_true(g >= 1 && g <= INT64_MAX / 4);
	}
}

static void weights(void **state)
{
	(void)state;
	assert_true(ht_sample_weight(100, 1) == 1.0);
	assert_true(ht_sample_weight(0, 524288) == 1.0);
	/* size == rate: 1 / (1 - 1/e). */
	assert_true(fabs(ht_sample_weight(524288, 524288) - 1.0 / (1.0 - exp(-1.0))) < 1e-12);
	/* Small allocations stand for about rate/size of their kind. */
	double w = ht_sample_weight(16, 524288);
	assert_true(fabs(w - 524288.0 / 16.0) < 1.0);
	/* Huge allocations are (almost) certainly sampled: weight 1. */
	assert_true(fabs(ht_sample_weight((uint64_t)1 << 40, 524288) - 1.0) < 1e-9);
}

/* Simulate the countdown over a stream of allocations and check the
 * unbiased estimate of the bytes allocated, per size class. */
static void countdown_estimate_unbiased(void **state)
{
	(void)state;
	const uint64_t rate = 65536;
	const size_t sizes[] = {24, 1000, 40000, 300000};
	uint64_t rng = 0x2545F4914F6CDD1Dull;
	double est[4] = {0}, truth[4] = {0}, samples[4] = {0};
	int64_t countdown = ht_sample_gap(&rng, rate);
	for (int i = 0; i < 2000000; i++) {
		int k = i % 4;
		size_t n = sizes[k];
		truth[k] += (double)n;
		countdown -= (int64_t)n;
		if (countdown <= 0) {
			est[k] += ht_sample_weight(n, rate) * (double)n;
			samples[k]++;
			countdown = ht_sample_gap(&rng, rate);
		}
	}
	/* Each class within 4 standard errors (about 1/sqrt(samples) for the
	 * small ones, which are rarely sampled) and never worse than 3% for the
	 * well-sampled ones. */
	for (int k = 0; k < 4; k++) {
		double tol = 4.0 / sqrt(samples[k] > 1 ? samples[k] : 1);
		if (tol < 0.03)
			tol = 0.03;
		assert_true(samples[k] > 0);
		assert_true(fabs(est[k] - truth[k]) / truth[k] < tol);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(gap_mean_and_distribution),
	        cmocka_unit_test(gap_special_rates),
	        cmocka_unit_test(weights),
	        cmocka_unit_test(countdown_estimate_unbiased),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
