/*
 * trend.h - the statistics behind `heaptap leaks` and `heaptap diff`.
 *
 * Everything here works on plain arrays, with no profile in sight, so the
 * unit tests can feed it series drawn from the sampling model itself.
 *
 * Sampling noise. heaptap (like Go and jemalloc) samples by bytes: an
 * allocation of z bytes is taken with p = 1 - exp(-z/R) and weighted 1/p.
 * The variance of an estimate B made of objects of size z is B * f(z) with
 * f(z) = z / (exp(z/R) - 1) <= R; f is 0 when R <= 1 (every allocation
 * counted, exact). hc_noise_per_byte() is that factor; a stack mixes sizes,
 * so callers average it weighted by bytes.
 *
 * The series. Dumps k = 0..n-1 have a wall clock t (seconds) and a load
 * clock x (bytes the process has allocated so far). Trends are judged along
 * the load clock as well as time: a leak that grows only under load is flat
 * while the service idles, and idle dumps must not read as "levels off".
 */
#ifndef HC_TREND_H
#define HC_TREND_H

#include <stdbool.h>
#include <stddef.h>

double hc_noise_per_byte(double rate, double size);

/* The part of a series that trends are judged on. */
struct hc_window {
	size_t n;     /* dumps in the series */
	size_t w;     /* first dump after warm-up */
	size_t m;     /* first dump of the late half (load clock); w < m < n-1, or 0 */
	size_t *kept; /* dumps where the load clock moved (plus w and n-1) */
	size_t nkept;
	bool by_time; /* the load clock did not move: time is used instead */
};

/* Fills win (kept points to kept_buf, which holds n entries). */
void hc_window_make(const double *t, const double *x, size_t n, size_t *kept_buf,
                    struct hc_window *win);

enum hc_class {
	HC_NOISE = 0,
	HC_WARMUP,
	HC_TRANSIENT,
	HC_LEVELS_OFF,
	HC_LEAKING,
};
const char *hc_class_name(enum hc_class c);

struct hc_stack_in {
	const double *b; /* estimated live bytes at each dump */
	const double *a; /* estimated bytes allocated so far, or NULL */
	double c;        /* noise per byte (hc_noise_per_byte averaged) */
};

struct hc_stack_out {
	enum hc_class cls;
	double growth;      /* b[n-1] - b[w] */
	double sigma;       /* its standard deviation from sampling */
	double z;           /* growth / sigma (inf when exact and non-zero) */
	double gamma;       /* noise-aware monotonicity, -1..1 (0 when undetermined) */
	double early, late; /* growth in the early and late half of the load */
	double warmup;      /* growth before w */
	double peak;        /* highest b in the window */
	double keep;        /* growth / bytes allocated in the window (-1 unknown) */
	double slope_t;     /* Theil-Sen bytes per second over the window */
	size_t since;       /* first dump with b > 0 */
	bool sawtooth;
	char reason[160];
};

struct hc_trend_opts {
	double min_growth; /* bytes; growth below this is never a leak */
	double z;          /* significance, default 3 */
};

void hc_stack_classify(const struct hc_window *win, const double *t, const double *x,
                       const struct hc_stack_in *in, const struct hc_trend_opts *o,
                       struct hc_stack_out *out);

/* Kendall-style monotonicity of y over the given points, ignoring pairs
 * closer than tol(i,j) = 2 sqrt(c (|y_i| + |y_j|)) + floor: (concordant -
 * discordant) / (concordant + discordant); 0 when no pair is decided.
 * *decided gets the number of decided pairs. */
double hc_gamma(const double *y, const size_t *idx, size_t n, double c, double floor,
                size_t *decided);
/* Kendall's tau-b of y against its order (for exact counts). */
double hc_tau_b(const double *y, size_t n);
/* Theil-Sen slope of y on x over the given points (median of pairwise slopes). */
double hc_theil_sen(const double *x, const double *y, const size_t *idx, size_t n);
/* The standard deviation of the growth b2 - b1 of one stack between two dumps,
 * given the bytes it allocated in between (da < 0: unknown). */
double hc_growth_sigma(double c, double b1, double b2, double da);

#endif
