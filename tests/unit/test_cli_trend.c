/*
 * test_cli_trend.c - the statistics of `heaptap leaks` against the sampling
 * model itself.
 *
 * Per-stack series are drawn the way heaptap samples: every allocation of z
 * bytes is taken with p = 1 - exp(-z/R) and the estimate is (objects taken)
 * * z / p. Over 1,000 seeds each:
 *  - a flat stack that churns (its whole live set replaced between dumps, or
 *    half of it) is called leaking in at most 1% of seeds;
 *  - a pure leak of 16 x R over the window is found in at least 95%;
 *  - a capped cache (grows, then stops) is never called leaking and is
 *    called "levels off" most of the time once the cap is well above noise;
 * plus exact (rate 1) cases and the small helpers.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trend.h"

#define N_DUMPS 20
#define SEEDS   1000
#define RATE    524288.0

static uint64_t rng;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uniform(void)
{
	return ((next() >> 11) + 0.5) / 9007199254740992.0;
}

/* Objects taken out of n, each with probability p. */
static double binomial(double n, double p)
{
	double mean = n * p;
	if (mean < 400) {
		/* Poisson (exact enough for p this small), by multiplication. */
		double l = exp(-mean), prod = uniform();
		double k = 0;
		while (prod > l) {
			k++;
			prod *= uniform();
		}
		return k;
	}
	double u1 = uniform(), u2 = uniform();
	double g = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
	double k = floor(mean + g * sqrt(mean * (1 - p)) + 0.5);
	return k < 0 ? 0 : k;
}

struct series {
	double t[N_DUMPS], x[N_DUMPS], b[N_DUMPS], a[N_DUMPS];
};

static void clocks(struct series *s)
{
	for (int k = 0; k < N_DUMPS; k++) {
		s->t[k] = k;
		s->x[k] = (k + 1) * 100e6; /* the process allocates 100 MB per interval */
	}
}

/* A stack of live bytes `live` in objects of `size`, of which `turnover`
 * (0..1) is replaced between dumps. */
static void churn(struct series *s, double live, double size, double turnover, double rate)
{
	double p = rate <= 1 ? 1 : -expm1(-size / rate), w = size / p;
	double nobj = live / size;
	double kept = binomial(nobj, p); /* taken among the first live set */
	double alloc = kept;
	for (int k = 0; k < N_DUMPS; k++) {
		if (k > 0) {
			/* Replace a share: each old sampled object goes with
			 * probability turnover; the new ones are sampled afresh. */
			double gone = 0;
			for (double i = 0; i < kept; i++)
				gone += uniform() < turnover;
			double fresh = binomial(nobj * turnover, p);
			kept = kept - gone + fresh;
			alloc += fresh;
		}
		s->b[k] = kept * w;
		s->a[k] = alloc * w;
	}
}

/* A leak of `total` bytes spread evenly over dumps from..N_DUMPS-1, plus a
 * cap: growth stops after `stop` (N_DUMPS for none). */
static void leak(struct series *s, double total, double size, int from, int stop, double rate)
{
	double p = rate <= 1 ? 1 : -expm1(-size / rate), w = size / p;
	int steps = (stop < N_DUMPS ? stop : N_DUMPS - 1) - from;
	double per = total / size / steps;
	double taken = 0;
	for (int k = 0; k < N_DUMPS; k++) {
		if (k > from && k <= stop)
			taken += binomial(per, p);
		s->b[k] = taken * w;
		s->a[k] = taken * w;
	}
}

static struct hc_stack_out classify(struct series *s, double rate)
{
	size_t kept[N_DUMPS];
	struct hc_window win;
	hc_window_make(s->t, s->x, N_DUMPS, kept, &win);
	struct hc_stack_in in = {s->b, s->a, hc_noise_per_byte(rate, 1024)};
	struct hc_trend_opts o = {.min_growth = 256 << 10, .z = 3};
	struct hc_stack_out out;
	hc_stack_classify(&win, s->t, s->x, &in, &o, &out);
	return out;
}

static void test_window(void **state)
{
	(void)state;
	struct series s;
	clocks(&s);
	size_t kept[N_DUMPS];
	struct hc_window win;
	hc_window_make(s.t, s.x, N_DUMPS, kept, &win);
	assert_int_equal(win.w, 2); /* 10% of 19 intervals */
	assert_true(win.m > win.w && win.m < N_DUMPS - 1);
	assert_int_equal(win.nkept, N_DUMPS - win.w);
	/* Idle dumps (the load clock does not move) are not trend points. */
	for (int k = 10; k < N_DUMPS; k++)
		s.x[k] = s.x[9];
	hc_window_make(s.t, s.x, N_DUMPS, kept, &win);
	assert_true(win.nkept < N_DUMPS - win.w);
	assert_int_equal(kept[win.nkept - 1], N_DUMPS - 1);
}

static void test_helpers(void **state)
{
	(void)state;
	assert_true(hc_noise_per_byte(1, 64) == 0);
	assert_true(hc_noise_per_byte(RATE, 0) == RATE);
	assert_true(hc_noise_per_byte(RATE, 64) <= RATE &&
	            hc_noise_per_byte(RATE, 64) > RATE * 0.99);
	assert_true(hc_noise_per_byte(RATE, 64 << 20) < 1);
	double y[] = {1, 2, 3, 4, 5};
	assert_true(hc_gamma(y, NULL, 5, 0, 0, NULL) == 1);
	double d[] = {5, 4, 3, 2, 1};
	assert_true(hc_gamma(d, NULL, 5, 0, 0, NULL) == -1);
	assert_true(fabs(hc_theil_sen(y, d, NULL, 5) + 1) < 1e-12);
	double flat[] = {3, 3, 3, 3};
	assert_true(hc_tau_b(flat, 4) == 0);
	double up[] = {1, 2, 3, 3, 3};
	assert_true(hc_tau_b(up, 5) > 0.8);
	assert_true(hc_growth_sigma(0, 1e6, 2e6, 1e6) == 0);
	/* A pure leak: sigma = sqrt(c G). */
	assert_true(fabs(hc_growth_sigma(RATE, 0, 16 * RATE, 16 * RATE) - 4 * RATE) < 1);
}

static void test_flat_churn_not_leaking(void **state)
{
	(void)state;
	const double lives[] = {8e6, 100e6};
	const double turnovers[] = {1.0, 0.5};
	for (size_t li = 0; li < 2; li++)
		for (size_t ti = 0; ti < 2; ti++) {
			int leaking = 0, not_noise = 0;
			rng = 1000 * (li * 2 + ti + 1);
			for (int seed = 0; seed < SEEDS; seed++) {
				struct series s;
				clocks(&s);
				churn(&s, lives[li], 1024, turnovers[ti], RATE);
				struct hc_stack_out o = classify(&s, RATE);
				leaking += o.cls == HC_LEAKING;
				not_noise += o.cls != HC_NOISE;
			}
			printf("flat churn %.0f MB turnover %.1f: leaking in %d of %d seeds, "
			       "other than noise in %d\n",
			       lives[li] / 1e6, turnovers[ti], leaking, SEEDS, not_noise);
			assert_true(leaking <= SEEDS / 100);
		}
}

static void test_leak_16r_found(void **state)
{
	(void)state;
	const double sizes[] = {64, 1024, 16384};
	rng = 42;
	for (int with_churn = 0; with_churn < 2; with_churn++)
		for (size_t si = 0; si < 3; si++) {
			int found = 0, misses[HC_LEAKING + 1] = {0};
			for (int seed = 0; seed < SEEDS; seed++) {
				struct series s, c;
				clocks(&s);
				clocks(&c);
				/* 16 R over the window (dumps 2..19), on top of a flat
				 * churn at the same stack. */
				size_t kept[N_DUMPS];
				struct hc_window win;
				hc_window_make(s.t, s.x, N_DUMPS, kept, &win);
				leak(&s, 16 * RATE, sizes[si], (int)win.w, N_DUMPS, RATE);
				churn(&c, 1e6, sizes[si], 1.0, RATE);
				for (int k = 0; k < N_DUMPS && with_churn; k++) {
					s.b[k] += c.b[k];
					s.a[k] += c.a[k];
				}
				struct hc_stack_in in = {s.b, s.a,
				                         hc_noise_per_byte(RATE, sizes[si])};
				struct hc_trend_opts o = {.min_growth = 256 << 10, .z = 3};
				struct hc_stack_out out;
				hc_stack_classify(&win, s.t, s.x, &in, &o, &out);
				found += out.cls == HC_LEAKING;
				misses[out.cls] += out.cls != HC_LEAKING;
			}
			printf("leak of 16 x rate in %.0f B objects%s: found in %d of %d seeds "
			       "(missed: noise %d, warmup %d, transient %d, levels off %d)\n",
			       sizes[si], with_churn ? " beside a 1 MB churn" : "", found, SEEDS,
			       misses[HC_NOISE], misses[HC_WARMUP], misses[HC_TRANSIENT],
			       misses[HC_LEVELS_OFF]);
			if (!with_churn)
				assert_true(found >= SEEDS * 95 / 100);
		}
}

static void test_capped_cache(void **state)
{
	(void)state;
	rng = 7;
	int leaking = 0, levels = 0;
	for (int seed = 0; seed < SEEDS; seed++) {
		struct series s;
		clocks(&s);
		/* 64 R filled between dumps 2 and 8, then flat. */
		leak(&s, 64 * RATE, 1024, 2, 8, RATE);
		struct hc_stack_out o = classify(&s, RATE);
		leaking += o.cls == HC_LEAKING;
		levels += o.cls == HC_LEVELS_OFF;
	}
	printf("capped cache: leaking %d, levels off %d of %d seeds\n", leaking, levels, SEEDS);
	assert_true(leaking <= SEEDS / 100);
	assert_true(levels >= SEEDS * 9 / 10);
}

static void test_exact(void **state)
{
	(void)state;
	struct series s;
	clocks(&s);
	rng = 9;
	/* At rate 1 a 1 MiB leak is certain, and a churn with a few objects
	 * more or less at the end is not. */
	leak(&s, 1 << 20, 64, 2, N_DUMPS, 1);
	struct hc_stack_out o = classify(&s, 1);
	assert_int_equal(o.cls, HC_LEAKING);
	assert_true(isinf(o.z));
	for (int k = 0; k < N_DUMPS; k++) {
		s.b[k] = 4e6 + (k % 3) * 1024 + (k == N_DUMPS - 1) * 2048;
		s.a[k] = 4e6 * (k + 1);
	}
	o = classify(&s, 1);
	assert_int_not_equal(o.cls, HC_LEAKING);
	/* Warm-up only: 8 MiB in the first two dumps, flat after. */
	for (int k = 0; k < N_DUMPS; k++)
		s.b[k] = s.a[k] = k >= 2 ? 8 << 20 : k * (4 << 20);
	o = classify(&s, 1);
	assert_int_equal(o.cls, HC_WARMUP);
	/* Sawtooth with flat troughs, and with rising ones. */
	for (int k = 0; k < N_DUMPS; k++) {
		s.b[k] = (k % 4) * (4 << 20);
		s.a[k] = k * (4 << 20);
	}
	o = classify(&s, 1);
	assert_true(o.sawtooth);
	assert_int_not_equal(o.cls, HC_LEAKING);
	for (int k = 0; k < N_DUMPS; k++)
		s.b[k] += (k / 4) * (1 << 20);
	o = classify(&s, 1);
	assert_true(o.sawtooth);
	assert_int_equal(o.cls, HC_LEAKING);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_window),
	        cmocka_unit_test(test_helpers),
	        cmocka_unit_test(test_flat_churn_not_leaking),
	        cmocka_unit_test(test_leak_16r_found),
	        cmocka_unit_test(test_capped_cache),
	        cmocka_unit_test(test_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
