/*
 * trend.c - sampling noise, windows and per-stack classes (trend.h).
 *
 * The classes, in the order they are tried:
 *  - LEAKING: the growth over the window is significant (z >= 3) and at
 *    least min_growth, the series rises without significant reversals
 *    (gamma >= 0.6), the late half of the load did not flatten it, and it was
 *    not given back after its peak. A stack whose series is a sawtooth (two
 *    or more significant drops) is judged on its troughs instead, and only
 *    with three or more of them.
 *  - TRANSIENT: it rose significantly and gave back most of it (or shrank).
 *  - LEVELS OFF: it grew significantly in the early half of the load, and
 *    the late half grew significantly less than the early half's pace
 *    predicts (a warm-up, a cache with a cap).
 *  - WARM-UP: it grew before the window and not in it.
 *  - NOISE: nothing above the sampling noise.
 * Why those tests: a single two-point difference cannot tell a leak from a
 * cache still filling, so a leak must keep its pace through the late half;
 * the late half is measured on the load clock, so idle time is not
 * mistaken for leveling off. The simulation in tests/unit/test_trend.c checks
 * the false-positive and detection rates against the sampling model.
 */
#include "trend.h"

#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double hc_noise_per_byte(double rate, double size)
{
	if (rate <= 1)
		return 0;
	if (size <= 0)
		return rate; /* unknown size: the bound */
	double q = size / rate;
	if (q > 700)
		return 0;
	if (q < 1e-9)
		return rate;
	return size / expm1(q);
}

const char *hc_class_name(enum hc_class c)
{
	switch (c) {
	case HC_LEAKING:
		return "leaking";
	case HC_LEVELS_OFF:
		return "levels_off";
	case HC_TRANSIENT:
		return "transient";
	case HC_WARMUP:
		return "warmup";
	default:
		return "noise";
	}
}

void hc_window_make(const double *t, const double *x, size_t n, size_t *kept, struct hc_window *win)
{
	memset(win, 0, sizeof(*win));
	win->n = n;
	win->kept = kept;
	if (n == 0)
		return;
	double span_x = x[n - 1] - x[0], span_t = t[n - 1] - t[0];
	/* With no allocation to speak of, the load clock is time. */
	win->by_time = !(span_x > 0);
	const double *clk = win->by_time ? t : x;
	double span = win->by_time ? span_t : span_x;

	/* Warm-up: the first 10% of the load and of the time. */
	size_t w = 0;
	while (w + 1 < n && (clk[w] - clk[0] < 0.1 * span || t[w] - t[0] < 0.1 * span_t))
		w++;
	if (n >= 3 && w > n - 3)
		w = n - 3;
	if (n < 3)
		w = 0;
	win->w = w;

	/* Points where the load moved by at least 1% of its span. */
	size_t nk = 0;
	kept[nk++] = w;
	for (size_t k = w + 1; k < n; k++)
		if (clk[k] - clk[kept[nk - 1]] >= 0.01 * span || k == n - 1)
			kept[nk++] = k;
	win->nkept = nk;

	/* The late half starts where the load passes its midpoint. */
	double mid = (clk[w] + clk[n - 1]) / 2;
	win->m = 0;
	for (size_t i = 1; i + 1 < nk; i++)
		if (clk[kept[i]] >= mid) {
			win->m = kept[i];
			break;
		}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double hc_gamma(const double *y, const size_t *idx, size_t n, double c, double floor,
                size_t *decided)
{
	size_t conc = 0, disc = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			double yi = y[idx ? idx[i] : i], yj = y[idx ? idx[j] : j];
			double tol = 2 * sqrt(c * (fabs(yi) + fabs(yj))) + floor;
			if (yj - yi > tol)
				conc++;
			else if (yi - yj > tol)
				disc++;
		}
	if (decided)
		*decided = conc + disc;
	if (conc + disc == 0)
		return 0;
	return ((double)conc - (double)disc) / (double)(conc + disc);
}

double hc_tau_b(const double *y, size_t n)
{
	double conc = 0, disc = 0, ties = 0, pairs = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			pairs++;
			if (y[j] > y[i])
				conc++;
			else if (y[j] < y[i])
				disc++;
			else
				ties++;
		}
	double d = sqrt(pairs * (pairs - ties));
	return d > 0 ? (conc - disc) / d : 0;
}

double hc_theil_sen(const double *x, const double *y, const size_t *idx, size_t n)
{
	size_t np = 0;
	double *s = malloc((n * (n - 1) / 2 + 1) * sizeof(double));
	if (!s)
		return 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			size_t a = idx ? idx[i] : i, b = idx ? idx[j] : j;
			if (x[b] != x[a])
				s[np++] = (y[b] - y[a]) / (x[b] - x[a]);
		}
	double r = 0;
	if (np) {
		qsort(s, np, sizeof(double), cmp_double);
		r = np % 2 ? s[np / 2] : (s[np / 2 - 1] + s[np / 2]) / 2;
	}
	free(s);
	return r;
}

double hc_growth_sigma(double c, double b1, double b2, double da)
{
	if (c <= 0)
		return 0;
	b1 = b1 > 0 ? b1 : 0;
	b2 = b2 > 0 ? b2 : 0;
	if (da < 0)
		return sqrt(c * (b1 + b2));
	/* Objects alive at both dumps were sampled once and cancel: only what
	 * was allocated in between and kept, and what was freed, add noise. */
	double g = b2 - b1;
	double kept = b2 < da ? b2 : da;
	double gone = da - g > 0 ? da - g : 0;
	gone = b1 < gone ? b1 : gone;
	return sqrt(c * (kept + gone));
}

static double zscore(double g, double sigma)
{
	if (sigma > 0)
		return g / sigma;
	return g > 0 ? INFINITY : g < 0 ? -INFINITY : 0;
}

static double delta_a(const double *a, size_t i, size_t j)
{
	return a ? a[j] - a[i] : -1;
}

/* Growth i -> j and its noise. */
static double seg(const struct hc_stack_in *in, size_t i, size_t j, double *sigma)
{
	double g = in->b[j] - in->b[i];
	*sigma = hc_growth_sigma(in->c, in->b[i], in->b[j], delta_a(in->a, i, j));
	return g;
}

/* A sawtooth: two or more significant drops between consecutive dumps. The
 * troughs (lowest point of each stretch between drops) are written to tr. */
static size_t troughs(const struct hc_window *win, const struct hc_stack_in *in, double floor,
                      double *tr, size_t *drops)
{
	size_t n = win->n, nt = 0, nd = 0;
	double lo = in->b[win->w];
	for (size_t k = win->w + 1; k < n; k++) {
		double d = in->b[k] - in->b[k - 1];
		double s = sqrt(in->c * (fabs(in->b[k]) + fabs(in->b[k - 1])));
		if (d < -3 * s && -d > floor) {
			/* The stretch before the first drop may start mid-cycle:
			 * its lowest point is not a trough. */
			if (nd++)
				tr[nt++] = lo;
			lo = in->b[k];
		} else if (in->b[k] < lo) {
			lo = in->b[k];
		}
	}
	if (nd)
		tr[nt++] = lo;
	*drops = nd;
	return nt;
}

void hc_stack_classify(const struct hc_window *win, const double *t, const double *x,
                       const struct hc_stack_in *in, const struct hc_trend_opts *o,
                       struct hc_stack_out *out)
{
	size_t n = win->n, w = win->w, last = n ? n - 1 : 0;
	double zmin = o->z > 0 ? o->z : 3;
	/* Ties below 1/64 of min_growth: at rate 1 a churning stack's few
	 * objects more or less are not a trend. */
	double floor = o->min_growth / 64;
	memset(out, 0, sizeof(*out));
	out->keep = -1;
	if (n == 0)
		return;
	for (size_t k = 0; k < n; k++)
		if (in->b[k] > 0) {
			out->since = k;
			break;
		}
	double sw;
	out->warmup = seg(in, 0, w, &sw);
	double zw = zscore(out->warmup, sw);
	out->growth = seg(in, w, last, &out->sigma);
	out->z = zscore(out->growth, out->sigma);
	double da = delta_a(in->a, w, last);
	out->keep = da > 0 ? out->growth / da : -1;
	out->peak = in->b[w];
	for (size_t k = w; k < n; k++)
		if (in->b[k] > out->peak)
			out->peak = in->b[k];
	size_t decided = 0;
	out->gamma = hc_gamma(in->b, win->kept, win->nkept, in->c, floor, &decided);
	out->slope_t = win->nkept >= 2 ? hc_theil_sen(t, in->b, win->kept, win->nkept) : 0;

	/* Early and late halves of the load. */
	double se = 0, sl = 0, ratio = 0;
	bool halves = win->m > w && win->m < last;
	if (halves) {
		const double *clk = win->by_time ? t : x;
		out->early = seg(in, w, win->m, &se);
		out->late = seg(in, win->m, last, &sl);
		double xe = clk[win->m] - clk[w], xl = clk[last] - clk[win->m];
		ratio = xe > 0 ? xl / xe : 0;
	}
	double ze = zscore(out->early, se);
	bool early_sig = halves && ze >= zmin && out->early >= o->min_growth / 2;
	double expect = out->early * ratio;
	double sd = sqrt(sl * sl + ratio * ratio * se * se);
	bool flattened = early_sig && ratio > 0 && out->late < 0.5 * expect &&
	                 (sd > 0 ? out->late - expect < -zmin * sd : true);

	/* Given back after its peak. */
	double rise_sigma;
	double rise = out->peak - in->b[w];
	rise_sigma = sqrt(in->c * (out->peak + fabs(in->b[w])));
	bool rose = zscore(rise, rise_sigma) >= zmin && rise >= o->min_growth;
	double back = rise > 0 ? (out->peak - in->b[last]) / rise : 0;

	char gb[32];
	/* Sawtooth: judge the troughs. */
	double *tr = malloc((n + 1) * sizeof(double));
	size_t ndrops = 0, nt = tr ? troughs(win, in, o->min_growth / 4, tr, &ndrops) : 0;
	if (tr && ndrops >= 2) {
		out->sawtooth = true;
		if (nt < 3) {
			out->cls = HC_NOISE;
			snprintf(out->reason, sizeof(out->reason),
			         "sawtooth with fewer than 3 cycles: unjudged (run longer)");
			free(tr);
			return;
		}
		double g = tr[nt - 1] - tr[0];
		double s = sqrt(in->c * (fabs(tr[0]) + fabs(tr[nt - 1])));
		size_t dec;
		double gm = hc_gamma(tr, NULL, nt, in->c, floor, &dec);
		/* Troughs carry the dump's phase in the cycle on top of the
		 * sampling noise, so they must rise without exception. */
		if (zscore(g, s) >= zmin && g >= o->min_growth && gm >= 0.8) {
			out->cls = HC_LEAKING;
			out->growth = g;
			out->sigma = s;
			out->z = zscore(g, s);
			out->gamma = gm;
			snprintf(out->reason, sizeof(out->reason),
			         "sawtooth whose troughs rise over %zu cycles", nt);
		} else {
			out->cls = HC_TRANSIENT;
			snprintf(out->reason, sizeof(out->reason),
			         "sawtooth: freed every cycle, troughs flat over %zu cycles", nt);
		}
		free(tr);
		return;
	}
	free(tr);

	if (out->z >= zmin && out->growth >= o->min_growth && out->gamma >= 0.6 && !flattened &&
	    back < 0.25) {
		out->cls = HC_LEAKING;
		snprintf(out->reason, sizeof(out->reason), "grows steadily");
		return;
	}
	if ((rose && back >= 0.75) || (out->z <= -zmin && -out->growth >= o->min_growth)) {
		out->cls = HC_TRANSIENT;
		snprintf(out->reason, sizeof(out->reason), "rose %s and gave it back",
		         hc_fmt_bytes(gb, sizeof(gb), rise));
		return;
	}
	if (flattened) {
		out->cls = HC_LEVELS_OFF;
		snprintf(out->reason, sizeof(out->reason),
		         "grew %s in the early half of the load, then leveled off",
		         hc_fmt_bytes(gb, sizeof(gb), out->early));
		return;
	}
	if (zw >= zmin && out->warmup >= o->min_growth) {
		out->cls = HC_WARMUP;
		snprintf(out->reason, sizeof(out->reason), "grew %s during warm-up, not after",
		         hc_fmt_bytes(gb, sizeof(gb), out->warmup));
		return;
	}
	out->cls = HC_NOISE;
	if (out->z >= zmin && out->growth >= o->min_growth)
		snprintf(out->reason, sizeof(out->reason),
		         "grew, but not steadily (monotonicity %.2f)", out->gamma);
	else if (out->growth > 0 && out->z >= zmin)
		snprintf(out->reason, sizeof(out->reason), "grew less than the minimum growth");
	else
		snprintf(out->reason, sizeof(out->reason), "within sampling noise");
}
