/*
 * leaks.c - `heaptap leaks FILE...`: from a series of dumps of one process,
 * say in plain words whether memory is leaking (and where), whether threads
 * are, whether the allocator is keeping freed memory, or whether growth
 * levels off or stays within the sampling noise.
 *
 * The series is put in order (profile time, then dump number), restricted to
 * one process and one run, and checked for what would make a verdict
 * unsound; each such gap is one line. Per-stack classes come from trend.c.
 * The process-level checks read heaptap's comment figures: the program's
 * resident memory (RSS minus heaptap's own), the live-heap estimate, glibc's
 * in-use and free-but-held bytes, and thread counts. Go heap profiles carry
 * no such figures, so only the per-stack verdicts are given for them.
 */
#include "cmds.h"

#include "json.h"
#include "prof.h"
#include "stacks.h"
#include "trend.h"
#include "util.h"

#include <getopt.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_GAPS 16
#define MIB      (1024.0 * 1024.0)

struct stack_res {
	struct hc_row *row;
	struct hc_stack_out o;
	double share;
};

struct thread_res {
	struct hc_row *row;
	const char *cls;
	double growth, first, last, unjoined;
};

struct series {
	struct hc_prof **heap, **thr; /* thr[k] may be NULL */
	size_t n;
	double *t, *x;
	double rate;
	int pid;
	char gaps[MAX_GAPS][256];
	size_t ngaps;
};

static void gap(struct series *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gap(struct series *s, const char *fmt, ...)
{
	if (s->ngaps == MAX_GAPS)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->gaps[s->ngaps++], sizeof(s->gaps[0]), fmt, ap);
	va_end(ap);
}

static int pid_of(const struct hc_prof *p)
{
	return p->fig.pid ? p->fig.pid : p->name_pid;
}

static int by_time(const void *a, const void *b)
{
	const struct hc_prof *x = *(struct hc_prof *const *)a, *y = *(struct hc_prof *const *)b;
	if (x->time_nanos != y->time_nanos)
		return x->time_nanos < y->time_nanos ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static char *sibling(const char *path, const char *from, const char *to)
{
	size_t n = strlen(path), f = strlen(from);
	if (n < f || strcmp(path + n - f, from))
		return NULL;
	char *s = hc_xmalloc(n - f + strlen(to) + 1);
	memcpy(s, path, n - f);
	strcpy(s + n - f, to);
	return s;
}

/* Load, split by kind, keep one pid and one run, order. */
static void load_series(struct series *s, char **files, size_t nfiles)
{
	struct hc_prof **heap = hc_xcalloc(nfiles + 1, sizeof(*heap));
	struct hc_prof **thr = hc_xcalloc(2 * nfiles + 1, sizeof(*thr));
	size_t nh = 0, nt = 0;
	char err[512];
	for (size_t i = 0; i < nfiles; i++) {
		struct hc_prof *p = hc_prof_load(files[i], err, sizeof(err));
		if (!p)
			hc_die(2, "%s", err);
		if (p->kind == HC_HEAP) {
			heap[nh++] = p;
		} else if (p->kind == HC_THREADS) {
			thr[nt++] = p;
		} else {
			hc_die(2, "%s: neither a heap nor a thread profile (sample type %s)",
			       files[i], p->ntypes ? p->types[0] : "?");
		}
	}
	if (nh == 0)
		hc_die(2, "leaks: no heap profile among the files (give the .heap.pb.gz dumps)");
	/* Thread profiles next to the heap dumps, when not given. */
	for (size_t i = 0; i < nh; i++) {
		char *sib = sibling(heap[i]->path, ".heap.pb.gz", ".threads.pb.gz");
		bool given = false;
		for (size_t j = 0; sib && j < nt; j++)
			given |= !strcmp(thr[j]->path, sib);
		if (sib && !given && access(sib, R_OK) == 0) {
			struct hc_prof *p = hc_prof_load(sib, err, sizeof(err));
			if (p && p->kind == HC_THREADS)
				thr[nt++] = p;
			else if (p)
				hc_prof_free(p);
		}
		free(sib);
	}

	/* One process: the pid with the most dumps. */
	int best = pid_of(heap[0]);
	size_t bestn = 0;
	for (size_t i = 0; i < nh; i++) {
		size_t c = 0;
		for (size_t j = 0; j < nh; j++)
			c += pid_of(heap[j]) == pid_of(heap[i]);
		if (c > bestn) {
			bestn = c;
			best = pid_of(heap[i]);
		}
	}
	if (bestn < nh)
		gap(s, "mixed pids: using the %zu dumps of pid %d, ignoring %zu of other processes",
		    bestn, best, nh - bestn);
	size_t k = 0;
	for (size_t i = 0; i < nh; i++) {
		if (pid_of(heap[i]) == best)
			heap[k++] = heap[i];
		else
			hc_prof_free(heap[i]);
	}
	nh = k;
	qsort(heap, nh, sizeof(*heap), by_time);

	/* A restart: cumulative allocation goes down. Keep the last run. */
	size_t start = 0;
	for (size_t i = 1; i < nh; i++) {
		int ia = hc_prof_type(heap[i], "alloc_space");
		int pa = hc_prof_type(heap[i - 1], "alloc_space");
		if (ia >= 0 && pa >= 0 &&
		    (double)hc_prof_total(heap[i], ia) <
		            0.99 * (double)hc_prof_total(heap[i - 1], pa))
			start = i;
	}
	if (start) {
		gap(s,
		    "a restart before %s (allocation counters went down): using the %zu dumps "
		    "after it",
		    heap[start]->path, nh - start);
		for (size_t i = 0; i < start; i++)
			hc_prof_free(heap[i]);
		memmove(heap, heap + start, (nh - start) * sizeof(*heap));
		nh -= start;
	}
	s->heap = heap;
	s->n = nh;
	s->pid = best;

	/* Thread dumps matched to heap dumps by pid and number, else by time. */
	s->thr = hc_xcalloc(nh + 1, sizeof(*s->thr));
	for (size_t i = 0; i < nh; i++)
		for (size_t j = 0; j < nt; j++) {
			if (!thr[j] || pid_of(thr[j]) != best)
				continue;
			bool match = heap[i]->seq && thr[j]->seq
			                     ? heap[i]->seq == thr[j]->seq
			                     : thr[j]->time_nanos == heap[i]->time_nanos;
			if (match) {
				s->thr[i] = thr[j];
				thr[j] = NULL;
				break;
			}
		}
	for (size_t j = 0; j < nt; j++)
		hc_prof_free(thr[j]);
	free(thr);

	s->t = hc_xcalloc(nh + 1, sizeof(double));
	s->x = hc_xcalloc(nh + 1, sizeof(double));
	bool have_time = true;
	for (size_t i = 0; i < nh; i++)
		have_time &= heap[i]->time_nanos > 0;
	if (!have_time)
		gap(s, "some dumps have no time: dumps are taken as evenly spaced");
	s->rate = (double)heap[0]->period;
	for (size_t i = 0; i < nh; i++) {
		s->t[i] = have_time ? (double)(heap[i]->time_nanos - heap[0]->time_nanos) / 1e9
		                    : (double)i;
		s->x[i] = (double)hc_prof_total(heap[i], hc_prof_type(heap[i], "alloc_space"));
		if ((double)heap[i]->period != s->rate) {
			gap(s, "the sampling rate changed within the series (%g, then %lld)",
			    s->rate, (long long)heap[i]->period);
			if ((double)heap[i]->period > s->rate)
				s->rate = (double)heap[i]->period;
		}
	}
}

static double fig(const struct hc_prof *p, int64_t v)
{
	(void)p;
	return v < 0 ? NAN : (double)v;
}

static const char *leaf(const struct hc_row *r)
{
	return r->rep->nframes ? r->rep->frames[0].name : "[no frames]";
}

static int by_class_growth(const void *a, const void *b)
{
	const struct stack_res *x = a, *y = b;
	bool lx = x->o.cls == HC_LEAKING, ly = y->o.cls == HC_LEAKING;
	if (lx != ly)
		return lx ? -1 : 1;
	double gx = x->o.growth, gy = y->o.growth;
	if (gx != gy)
		return gx > gy ? -1 : 1;
	return x->row->order < y->row->order ? -1 : 1;
}

static const char *per_unit(double span, double *scale)
{
	if (span < 120) {
		*scale = 1;
		return "s";
	}
	if (span < 7200) {
		*scale = 60;
		return "min";
	}
	*scale = 3600;
	return "h";
}

/* "f1 <- f2 <- f3 (file:line)" */
static void print_frames(FILE *out, const struct hc_row *r, size_t maxf)
{
	const struct hc_sample *s = r->rep;
	size_t nf = s->nframes;
	while (nf > 1 && hc_frame_is_startup(s->frames[nf - 1].name))
		nf--;
	for (size_t i = 0; i < nf && i < maxf; i++)
		fprintf(out, "%s%s", i ? " <- " : "", s->frames[i].name);
	if (nf > maxf)
		fprintf(out, " <- ...");
	if (s->nframes && s->frames[0].file[0]) {
		const char *f = strrchr(s->frames[0].file, '/');
		fprintf(out, " (%s:%lld)", f ? f + 1 : s->frames[0].file,
		        (long long)s->frames[0].line);
	}
}

static void json_frames(struct hc_json *j, const struct hc_row *r)
{
	hc_json_key(j, "frames");
	hc_json_arr(j);
	for (size_t i = 0; i < r->rep->nframes; i++)
		hc_json_str(j, r->rep->frames[i].name);
	hc_json_arr_end(j);
	hc_json_key(j, "locations");
	hc_json_arr(j);
	for (size_t i = 0; i < r->rep->nframes; i++) {
		char loc[600];
		const struct hc_frame *f = &r->rep->frames[i];
		if (f->file[0])
			snprintf(loc, sizeof(loc), "%s:%lld", f->file, (long long)f->line);
		else
			loc[0] = 0;
		hc_json_str(j, loc);
	}
	hc_json_arr_end(j);
}

static void json_series(struct hc_json *j, const char *key, const double *v, size_t n)
{
	hc_json_key(j, key);
	hc_json_arr(j);
	for (size_t i = 0; i < n; i++)
		if (isnan(v[i]))
			hc_json_null(j);
		else
			hc_json_num(j, v[i]);
	hc_json_arr_end(j);
}

int hc_cmd_leaks(int argc, char **argv)
{
	bool json = false, fail_retention = false, fail_leak = true, fail_threads = true;
	double min_growth = 256 << 10;
	int show = 5;
	static const struct option opts[] = {{"json", no_argument, 0, 'j'},
	                                     {"min-growth", required_argument, 0, 'g'},
	                                     {"fail-on", required_argument, 0, 'f'},
	                                     {"help", no_argument, 0, 'h'},
	                                     {0, 0, 0, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'g':
			if (hc_parse_size(optarg, &min_growth) != 0)
				hc_die(2, "leaks: --min-growth wants bytes (e.g. 256K, 4M): %s",
				       optarg);
			break;
		case 'n':
			show = atoi(optarg);
			if (show < 1)
				hc_die(2, "leaks: -n wants a positive number: %s", optarg);
			break;
		case 'f': {
			fail_leak = fail_threads = false;
			char *list = hc_xstrdup(optarg), *save = NULL;
			for (char *w = strtok_r(list, ",", &save); w;
			     w = strtok_r(NULL, ",", &save)) {
				if (!strcmp(w, "leak"))
					fail_leak = true;
				else if (!strcmp(w, "threads") || !strcmp(w, "thread_leak"))
					fail_threads = true;
				else if (!strcmp(w, "retention"))
					fail_retention = fail_leak = fail_threads = true;
				else
					hc_die(2,
					       "leaks: --fail-on takes leak, threads, retention: %s",
					       w);
			}
			free(list);
			break;
		}
		case 'h':
			printf("usage: heaptap leaks [--json] [-n N] [--min-growth BYTES] "
			       "[--fail-on leak,threads,retention] FILE...\n");
			return 0;
		default:
			hc_die(2,
			       "leaks: usage: heaptap leaks [--json] [-n N] [--min-growth BYTES] "
			       "[--fail-on leak,threads,retention] FILE...");
		}
	}
	if (optind >= argc)
		hc_die(2, "leaks: give the dumps of one process (heaptap.PID.*.heap.pb.gz)");
	struct hc_leaks_opts lo = {.min_growth = min_growth,
	                           .show = show,
	                           .fail_leak = fail_leak,
	                           .fail_threads = fail_threads,
	                           .fail_retention = fail_retention};
	return hc_leaks_run(argv + optind, (size_t)(argc - optind), &lo, json ? stdout : NULL,
	                    json ? NULL : stdout);
}

int hc_leaks_run(char **files, size_t nfiles, const struct hc_leaks_opts *lo, FILE *jout,
                 FILE *tout)
{
	double min_growth = lo->min_growth;
	int show = lo->show;
	bool fail_leak = lo->fail_leak, fail_threads = lo->fail_threads,
	     fail_retention = lo->fail_retention;
	struct series s = {0};
	load_series(&s, files, nfiles);
	size_t n = s.n, last = n - 1;
	const struct hc_prof *h0 = s.heap[0], *hl = s.heap[last];
	bool figs = h0->fig.have && hl->fig.have;
	if (n < 3)
		gap(&s,
		    "only %zu dump%s: a leak cannot be told from growth that levels off; need 3 "
		    "or more (6 or more recommended, some after the load)",
		    n, n == 1 ? "" : "s");
	else if (n < 6)
		gap(&s, "%zu dumps: verdicts are tentative (6 or more recommended)", n);
	if (!figs)
		gap(&s, "no process figures (not a heaptap profile, e.g. Go's): per-stack verdicts "
		        "only");
	double dropped = 0;
	for (size_t k = 0; k < n; k++) {
		const struct hc_figures *g = &s.heap[k]->fig;
		dropped += (g->samples_dropped > 0 ? g->samples_dropped : 0) +
		           (g->events_dropped > 0 ? g->events_dropped : 0) +
		           (g->table_overflow > 0 ? g->table_overflow : 0);
	}
	if (dropped > 0)
		gap(&s, "data incomplete: %.0f samples or events were dropped in these dumps",
		    dropped);
	bool glibc = figs && !strcmp(hl->fig.allocator, "glibc");
	if (figs && hl->fig.allocator[0] && !glibc)
		gap(&s,
		    "the allocator is %s, not glibc: glibc's figures do not apply, no retention "
		    "check",
		    hl->fig.allocator);
	int missing_thr = 0;
	for (size_t k = 0; k < n; k++)
		missing_thr += !s.thr[k];
	if (figs && missing_thr)
		gap(&s, "%d of %zu dumps have no thread profile beside them", missing_thr, n);

	/* Per-stack series: b (inuse_space) in slots [0,n), a (alloc_space) in [n,2n). */
	struct hc_stacks tab;
	hc_stacks_init(&tab, 2 * n);
	for (size_t k = 0; k < n; k++) {
		const struct hc_prof *p = s.heap[k];
		int iu = hc_prof_type(p, "inuse_space"), ia = hc_prof_type(p, "alloc_space");
		for (size_t i = 0; i < p->nsamples; i++) {
			const struct hc_sample *sm = &p->samples[i];
			struct hc_row *r = hc_stacks_row(&tab, sm);
			double b = iu >= 0 ? (double)sm->values[iu] : 0;
			double a = ia >= 0 ? (double)sm->values[ia] : 0;
			r->v[k] += b;
			r->v[n + k] += a;
			hc_stacks_noise(r, sm, b > 0 ? b : a, s.rate);
		}
	}
	struct hc_row **rows = hc_stacks_list(&tab);
	size_t *kept = hc_xcalloc(n + 1, sizeof(size_t));
	struct hc_window win;
	hc_window_make(s.t, s.x, n, kept, &win);
	struct hc_trend_opts to = {.min_growth = min_growth, .z = 3};
	struct stack_res *res = hc_xcalloc(tab.n + 1, sizeof(*res));
	double live0 = 0, livel = 0, pos_growth = 0, leak_growth = 0;
	double *live = hc_xcalloc(n, sizeof(double)), *alloc = hc_xcalloc(n, sizeof(double));
	double lnoise = 0;
	for (size_t i = 0; i < tab.n; i++) {
		struct hc_row *r = rows[i];
		res[i].row = r;
		struct hc_stack_in in = {r->v, r->v + n, hc_row_noise(r, s.rate)};
		hc_stack_classify(&win, s.t, s.x, &in, &to, &res[i].o);
		for (size_t k = 0; k < n; k++) {
			live[k] += r->v[k];
			alloc[k] += r->v[n + k];
		}
		lnoise += hc_row_noise(r, s.rate) * r->v[last];
		if (res[i].o.growth > 0)
			pos_growth += res[i].o.growth;
		if (res[i].o.cls == HC_LEAKING)
			leak_growth += res[i].o.growth;
	}
	live0 = live[win.w];
	livel = live[last];
	double live_growth = livel - live0;
	for (size_t i = 0; i < tab.n; i++)
		res[i].share = res[i].o.cls == HC_LEAKING && live_growth > 0
		                       ? res[i].o.growth / (live_growth > leak_growth ? live_growth
		                                                                      : leak_growth)
		                       : 0;
	qsort(res, tab.n, sizeof(*res), by_class_growth);
	/* The whole live heap as one series. */
	struct hc_stack_out whole;
	{
		double cl = livel > 0 ? lnoise / livel : s.rate > 1 ? s.rate : 0;
		struct hc_stack_in in = {live, alloc, cl};
		hc_stack_classify(&win, s.t, s.x, &in, &to, &whole);
	}
	size_t nleak = 0, nlevels = 0;
	for (size_t i = 0; i < tab.n; i++) {
		nleak += res[i].o.cls == HC_LEAKING;
		nlevels += res[i].o.cls == HC_LEVELS_OFF && res[i].o.early >= min_growth;
	}

	/* Threads by creation stack: counts per dump (all states) and unjoined. */
	struct hc_stacks ttab;
	hc_stacks_init(&ttab, 2 * n);
	size_t nthr = 0;
	double *tt = hc_xcalloc(n + 1, sizeof(double)), *tx = hc_xcalloc(n + 1, sizeof(double));
	size_t *tmap = hc_xcalloc(n + 1, sizeof(size_t));
	for (size_t k = 0; k < n; k++) {
		const struct hc_prof *p = s.thr[k];
		if (!p)
			continue;
		tt[nthr] = s.t[k];
		tx[nthr] = s.x[k];
		tmap[nthr] = k;
		for (size_t i = 0; i < p->nsamples; i++) {
			const struct hc_sample *sm = &p->samples[i];
			struct hc_row *r = hc_stacks_row(&ttab, sm);
			r->v[nthr] += (double)sm->values[0];
			const char *st = hc_sample_label(sm, "state");
			if (st && !strcmp(st, "unjoined"))
				r->v[n + nthr] += (double)sm->values[0];
		}
		nthr++;
	}
	struct hc_row **trows = hc_stacks_list(&ttab);
	struct thread_res *tres = hc_xcalloc(ttab.n + 1, sizeof(*tres));
	size_t ntleak = 0;
	size_t *tkept = hc_xcalloc(n + 1, sizeof(size_t));
	struct hc_window twin = {0};
	if (nthr)
		hc_window_make(tt, tx, nthr, tkept, &twin);
	for (size_t i = 0; i < ttab.n && nthr; i++) {
		struct hc_row *r = trows[i];
		const double *v = r->v;
		size_t tl = nthr - 1, tw = twin.w;
		double mx = 0;
		for (size_t k = tw; k < nthr; k++)
			mx = fmax(mx, v[k]);
		struct thread_res *q = &tres[i];
		q->row = r;
		q->first = v[tw];
		q->last = v[tl];
		q->growth = v[tl] - v[tw];
		q->unjoined = v[n + tl];
		double tau = hc_tau_b(v + tw, nthr - tw);
		if (nthr >= 3 && q->growth >= 3 && tau >= 0.7 && v[tl] >= mx - 1) {
			q->cls = "leaking";
			ntleak++;
		} else if (nthr >= 3 && v[tw] - v[0] >= 3 && fabs(q->growth) < 3) {
			q->cls = "warmup";
		} else if (mx - v[tw] >= 3 && v[tl] <= v[tw] + 1) {
			q->cls = "transient";
		} else if (q->growth >= 3) {
			q->cls = "levels_off";
		} else {
			q->cls = "steady";
		}
	}
	/* Leaking first, then by growth. */
	for (size_t i = 1; i < ttab.n; i++)
		for (size_t j = i; j > 0; j--) {
			struct thread_res *a = &tres[j - 1], *b = &tres[j];
			bool la = !strcmp(a->cls, "leaking"), lb = !strcmp(b->cls, "leaking");
			if ((lb && !la) || (la == lb && b->growth > a->growth)) {
				struct thread_res t = *a;
				*a = *b;
				*b = t;
			} else {
				break;
			}
		}

	/* Process figures. */
	double *rss = hc_xcalloc(n, sizeof(double)), *own = hc_xcalloc(n, sizeof(double));
	double *prog = hc_xcalloc(n, sizeof(double)), *inuse = hc_xcalloc(n, sizeof(double));
	double *held = hc_xcalloc(n, sizeof(double)), *thr = hc_xcalloc(n, sizeof(double));
	double *unj = hc_xcalloc(n, sizeof(double));
	for (size_t k = 0; k < n; k++) {
		const struct hc_prof *p = s.heap[k];
		const struct hc_figures *g = &p->fig;
		rss[k] = fig(p, g->rss);
		own[k] = g->own_resident >= 0 ? (double)g->own_resident : fig(p, g->own_bytes);
		prog[k] = rss[k] - (isnan(own[k]) ? 0 : own[k]);
		inuse[k] = g->in_use >= 0 ? (double)g->in_use +
		                                    (g->mmap_bytes > 0 ? (double)g->mmap_bytes : 0)
		                          : NAN;
		held[k] = fig(p, g->free_held);
		thr[k] = s.thr[k] ? (double)hc_prof_total(s.thr[k], 0) : fig(p, g->live_threads);
		unj[k] = fig(p, g->unjoined_threads);
	}

	/* Allocator retention: the program's resident memory stays up while the
	 * live heap does not, and glibc's free-but-held bytes explain it. */
	bool retention = false, outside = false;
	double d_prog = 0, d_live = 0, d_held = 0, live_peak = 0, prog_peak = 0;
	if (figs && glibc && n >= 2 && !isnan(prog[0]) && !isnan(held[0])) {
		for (size_t k = 0; k < n; k++) {
			live_peak = fmax(live_peak, live[k]);
			prog_peak = fmax(prog_peak, prog[k]);
		}
		d_prog = prog[last] - prog[0];
		d_live = live[last] - live[0];
		d_held = held[last] - held[0];
		double floor = fmax(16 * MIB, 0.1 * prog[0]);
		bool stayed =
		        d_prog >= floor || (live_peak - livel >= floor &&
		                            prog[last] >= prog_peak - 0.25 * (live_peak - livel));
		bool live_small = d_live <= 0.25 * d_prog || live_peak - livel >= floor;
		double gap_bytes = d_prog - (d_live > 0 ? d_live : 0);
		if (stayed && live_small) {
			if (held[last] - fmin(held[0], 0) >= 0.5 * gap_bytes &&
			    d_held >= 0.5 * gap_bytes)
				retention = true;
			else
				outside = true;
		}
	}
	bool leak = nleak > 0 && leak_growth >= min_growth;
	bool levels =
	        !leak && (nlevels > 0 || (whole.cls == HC_LEVELS_OFF && whole.early >= min_growth));
	bool tleak = ntleak > 0;

	/* Detection floor: a pure leak of about 16 x the noise per byte is
	 * found 95% of the time (tests/unit/test_cli_trend.c). */
	double cbar = livel > 0 ? lnoise / livel : s.rate > 1 ? s.rate : 0;
	double floor_bytes = fmax(min_growth, 16 * cbar);
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], d1[32];
	double scale;
	const char *unit = per_unit(s.t[last], &scale);

	/* Headline. */
	char headline[512];
	if (leak)
		snprintf(headline, sizeof(headline),
		         "LEAK: %zu stack%s keep%s growing: %s after warm-up, led by %s", nleak,
		         nleak == 1 ? "" : "s", nleak == 1 ? "s" : "",
		         hc_fmt_bytes(b1, sizeof(b1), leak_growth), leaf(res[0].row));
	else if (tleak)
		snprintf(headline, sizeof(headline),
		         "THREAD LEAK: live threads grow at %zu creation "
		         "stack%s",
		         ntleak, ntleak == 1 ? "" : "s");
	else if (retention)
		snprintf(
		        headline, sizeof(headline),
		        "ALLOCATOR RETENTION, not a leak: the program's resident memory grew %s while "
		        "the live heap %s %s; glibc holds %s freed",
		        hc_fmt_bytes(b1, sizeof(b1), d_prog), d_live < 0 ? "fell" : "grew",
		        hc_fmt_bytes(b2, sizeof(b2), fabs(d_live)),
		        hc_fmt_bytes(b3, sizeof(b3), held[last]));
	else if (levels)
		snprintf(
		        headline, sizeof(headline),
		        "LEVELS OFF: memory grew, then stopped growing (a warm-up or a bounded cache), "
		        "no leak seen");
	else
		snprintf(headline, sizeof(headline),
		         "NO LEAK SEEN: growth after warm-up is within sampling noise or below %s",
		         hc_fmt_bytes(b1, sizeof(b1), floor_bytes));

	int status = (leak && fail_leak) || (tleak && fail_threads) || (retention && fail_retention)
	                     ? 1
	                     : 0;

	if (jout) {
		struct hc_json j;
		hc_json_init(&j, jout);
		hc_json_obj(&j);
		hc_json_kint(&j, "dumps", (int64_t)n);
		hc_json_kint(&j, "pid", s.pid);
		hc_json_knum(&j, "rate", s.rate);
		hc_json_knum(&j, "span_seconds", s.t[last]);
		hc_json_kint(&j, "warmup_dumps", (int64_t)win.w);
		hc_json_knum(&j, "detection_floor_bytes", floor_bytes);
		hc_json_key(&j, "verdicts");
		hc_json_arr(&j);
		if (leak)
			hc_json_str(&j, "leak");
		if (tleak)
			hc_json_str(&j, "thread_leak");
		if (retention)
			hc_json_str(&j, "retention");
		if (levels)
			hc_json_str(&j, "levels_off");
		if (!leak && !tleak && !retention && !levels)
			hc_json_str(&j, "no_leak");
		hc_json_arr_end(&j);
		hc_json_kstr(&j, "headline", headline);
		hc_json_key(&j, "gaps");
		hc_json_arr(&j);
		for (size_t i = 0; i < s.ngaps; i++)
			hc_json_str(&j, s.gaps[i]);
		hc_json_arr_end(&j);
		hc_json_key(&j, "files");
		hc_json_arr(&j);
		for (size_t k = 0; k < n; k++)
			hc_json_str(&j, s.heap[k]->path);
		hc_json_arr_end(&j);
		hc_json_key(&j, "process");
		hc_json_obj(&j);
		json_series(&j, "seconds", s.t, n);
		json_series(&j, "allocated_bytes", s.x, n);
		json_series(&j, "live_heap_bytes", live, n);
		json_series(&j, "rss_bytes", rss, n);
		json_series(&j, "heaptap_resident_bytes", own, n);
		json_series(&j, "program_rss_bytes", prog, n);
		json_series(&j, "malloc_in_use_bytes", inuse, n);
		json_series(&j, "malloc_free_held_bytes", held, n);
		json_series(&j, "threads", thr, n);
		json_series(&j, "unjoined_threads", unj, n);
		hc_json_kstr(&j, "allocator", hl->fig.allocator);
		hc_json_obj_end(&j);
		hc_json_key(&j, "stacks");
		hc_json_arr(&j);
		size_t others = 0;
		for (size_t i = 0; i < tab.n; i++) {
			const struct stack_res *q = &res[i];
			if (q->o.cls != HC_LEAKING) {
				bool notable = q->o.cls != HC_NOISE ||
				               fabs(q->o.growth) >= min_growth ||
				               q->o.warmup >= min_growth;
				if (!notable || others++ >= 100)
					continue;
			}
			hc_json_obj(&j);
			hc_json_kstr(&j, "class", hc_class_name(q->o.cls));
			hc_json_knum(&j, "growth_bytes", q->o.growth);
			hc_json_knum(&j, "sigma_bytes", q->o.sigma);
			hc_json_knum(&j, "z", q->o.z);
			hc_json_knum(&j, "monotonicity", q->o.gamma);
			hc_json_knum(&j, "share", q->share);
			hc_json_key(&j, "keep_ratio");
			if (q->o.keep < 0)
				hc_json_null(&j);
			else
				hc_json_num(&j, q->o.keep);
			hc_json_knum(&j, "bytes_per_second", q->o.slope_t);
			hc_json_knum(&j, "warmup_bytes", q->o.warmup);
			hc_json_knum(&j, "live_bytes", q->row->v[last]);
			hc_json_knum(&j, "since_seconds", s.t[q->o.since]);
			hc_json_kstr(&j, "reason", q->o.reason);
			json_frames(&j, q->row);
			hc_json_obj_end(&j);
		}
		hc_json_arr_end(&j);
		hc_json_key(&j, "threads");
		hc_json_arr(&j);
		for (size_t i = 0; i < ttab.n; i++) {
			hc_json_obj(&j);
			hc_json_kstr(&j, "class", tres[i].cls);
			hc_json_knum(&j, "growth", tres[i].growth);
			hc_json_knum(&j, "first", tres[i].first);
			hc_json_knum(&j, "last", tres[i].last);
			hc_json_knum(&j, "unjoined", tres[i].unjoined);
			json_frames(&j, tres[i].row);
			hc_json_obj_end(&j);
		}
		hc_json_arr_end(&j);
		hc_json_obj_end(&j);
		hc_json_end(&j);
	}
	if (tout) {
		FILE *o = tout;
		fprintf(o, "heaptap leaks: %zu dump%s of pid %d over %s, ", n, n == 1 ? "" : "s",
		        s.pid, hc_fmt_dur(d1, sizeof(d1), s.t[last]));
		if (s.rate <= 1)
			fprintf(o, "every allocation recorded (rate 1)\n");
		else
			fprintf(o, "rate %s (leaks under ~%s may be missed)\n",
			        hc_fmt_bytes(b1, sizeof(b1), s.rate),
			        hc_fmt_bytes(b2, sizeof(b2), floor_bytes));
		for (size_t i = 0; i < s.ngaps; i++)
			fprintf(o, "note: %s\n", s.gaps[i]);
		fprintf(o, "%s\n", headline);
		if (figs) {
			fprintf(o,
			        "  program RSS %s -> %s (heaptap's own %s left out), live heap %s -> "
			        "%s",
			        hc_fmt_bytes(b1, sizeof(b1), prog[0]),
			        hc_fmt_bytes(b2, sizeof(b2), prog[last]),
			        hc_fmt_bytes(b3, sizeof(b3), isnan(own[last]) ? 0 : own[last]),
			        hc_fmt_bytes(b4, sizeof(b4), live[0]),
			        hc_fmt_bytes(b5, sizeof(b5), live[last]));
			if (glibc)
				fprintf(o, ", glibc free-but-held %s -> %s",
				        hc_fmt_bytes(b6, sizeof(b6), held[0]),
				        hc_fmt_bytes(b1, sizeof(b1), held[last]));
			fprintf(o, ", threads %.0f -> %.0f", thr[0], thr[last]);
			if (unj[last] > 0)
				fprintf(o, " (%.0f ended but never joined)", unj[last]);
			fprintf(o, ".\n");
		}
		int rank = 0;
		for (size_t i = 0; i < tab.n && res[i].o.cls == HC_LEAKING; i++) {
			const struct stack_res *q = &res[i];
			if (++rank > show) {
				fprintf(o, "  ... and %zu more leaking stacks (--json lists all)\n",
				        nleak - (size_t)show);
				break;
			}
			fprintf(o, "  #%d +%s", rank, hc_fmt_bytes(b1, sizeof(b1), q->o.growth));
			if (q->share > 0)
				fprintf(o, " (%.0f%% of the growth", 100 * q->share);
			else
				fprintf(o, " (");
			if (isinf(q->o.z))
				fprintf(o, ", exact");
			else
				fprintf(o, ", z=%.1f", q->o.z);
			fprintf(o, ", steadiness %.2f", q->o.gamma);
			fprintf(o, "), %s/%s", hc_fmt_bytes(b2, sizeof(b2), q->o.slope_t * scale),
			        unit);
			if (q->o.keep >= 0)
				fprintf(o, ", keeps %.0f%% of what it allocates",
				        100 * fmin(q->o.keep, 1));
			if (q->o.since == 0)
				fprintf(o, ", since the first dump\n     ");
			else
				fprintf(o, ", since %s in\n     ",
				        hc_fmt_dur(d1, sizeof(d1), s.t[q->o.since]));
			print_frames(o, q->row, 6);
			fprintf(o, "\n");
		}
		if (tleak || (ttab.n && nthr)) {
			int tr = 0;
			for (size_t i = 0; i < ttab.n; i++) {
				const struct thread_res *q = &tres[i];
				if (strcmp(q->cls, "leaking"))
					continue;
				if (!tr++)
					fprintf(o,
					        "Threads that keep growing (by creation stack):\n");
				fprintf(o, "  %.0f -> %.0f threads (+%.0f", q->first, q->last,
				        q->growth);
				if (q->unjoined > 0)
					fprintf(o, ", %.0f ended but never joined", q->unjoined);
				fprintf(o, ")  ");
				print_frames(o, q->row, 6);
				fprintf(o, "\n");
			}
		}
		if (retention) {
			fprintf(o,
			        "Allocator retention: the live heap is %s but the program holds %s "
			        "resident; glibc's free-but-held bytes (%s) explain the difference. "
			        "Remedies: call malloc_trim(0) when idle, set MALLOC_ARENA_MAX=2 "
			        "(fewer per-thread arenas), or use another allocator (jemalloc, "
			        "tcmalloc).\n",
			        hc_fmt_bytes(b1, sizeof(b1), livel),
			        hc_fmt_bytes(b2, sizeof(b2), prog[last]),
			        hc_fmt_bytes(b3, sizeof(b3), held[last]));
		} else if (outside) {
			fprintf(o,
			        "note: the program's resident memory grew %s outside the malloc heap "
			        "(glibc holds little freed memory): %s\n",
			        hc_fmt_bytes(b1, sizeof(b1), d_prog),
			        thr[last] > thr[0] ? "thread stacks may explain it"
			                           : "mmap, file mappings or another allocator");
		}
		int nb = 0;
		for (size_t i = 0; i < tab.n; i++) {
			const struct stack_res *q = &res[i];
			if (q->o.cls == HC_LEAKING)
				continue;
			bool notable = q->o.cls != HC_NOISE || fabs(q->o.growth) >= min_growth;
			if (!notable)
				continue;
			if (nb == 0)
				fprintf(o, "Not blamed:\n");
			if (++nb > show)
				break;
			fprintf(o, "  %s: %s (%s now)\n", leaf(q->row), q->o.reason,
			        hc_fmt_bytes(b1, sizeof(b1), q->row->v[last]));
		}
		if (!leak && !tleak && !retention && figs) {
			fprintf(o,
			        "Live heap %s -> %s after warm-up (sampling noise about +/-%s).\n",
			        hc_fmt_bytes(b1, sizeof(b1), live0),
			        hc_fmt_bytes(b2, sizeof(b2), livel),
			        hc_fmt_bytes(b3, sizeof(b3), whole.sigma));
		}
	}

	free(rss);
	free(own);
	free(prog);
	free(inuse);
	free(held);
	free(thr);
	free(unj);
	free(tres);
	free(trows);
	free(tkept);
	free(tt);
	free(tx);
	free(tmap);
	hc_stacks_free(&ttab);
	free(res);
	free(rows);
	free(kept);
	free(live);
	free(alloc);
	hc_stacks_free(&tab);
	for (size_t k = 0; k < n; k++) {
		hc_prof_free(s.heap[k]);
		hc_prof_free(s.thr[k]);
	}
	free(s.heap);
	free(s.thr);
	free(s.t);
	free(s.x);
	return status;
}
