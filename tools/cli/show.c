/*
 * show.c - `heaptap top`, `heaptap threads` and `heaptap diff`: one profile
 * (or two) as tables.
 *
 * top and diff count the way `pprof -top` does at its default granularity
 * (functions): a sample's value is flat for the function of its leaf frame
 * (the innermost inlined one) and cumulative, once, for every function on
 * its stack; rows are ordered by |flat|, then name, then |cum|. Frames
 * without a function name count under their object file ("[libfoo.so]"),
 * and rows whose flat and cum are both 0 are left out, as pprof does. So the
 * numbers can be checked against `go tool pprof -top` value for value.
 * diff also compares whole stacks and says which changes stand out of the
 * sampling noise (trend.h), which a plain subtraction cannot.
 */
#include "cmds.h"

#include "json.h"
#include "prof.h"
#include "stacks.h"
#include "trend.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#undef uthash_fatal
#define uthash_fatal(msg) hc_die(2, "out of memory")

struct fn_row {
	const char *name;
	double flat, cum;
	size_t seen; /* last sample that counted it in cum */
	UT_hash_handle hh;
};

struct fn_table {
	struct fn_row *map;
	size_t n, stamp;
};

static struct fn_row *fn_get(struct fn_table *t, const char *name)
{
	struct fn_row *r;
	HASH_FIND_STR(t->map, name, r);
	if (!r) {
		r = hc_xcalloc(1, sizeof(*r));
		r->name = name;
		r->seen = (size_t)-1;
		HASH_ADD_KEYPTR(hh, t->map, r->name, strlen(r->name), r);
		t->n++;
	}
	return r;
}

static void fn_add(struct fn_table *t, const struct hc_sample *s, double v)
{
	if (v == 0)
		return;
	t->stamp++;
	if (s->nframes == 0)
		return;
	fn_get(t, s->frames[0].func)->flat += v;
	for (size_t i = 0; i < s->nframes; i++) {
		struct fn_row *r = fn_get(t, s->frames[i].func);
		if (r->seen != t->stamp) {
			r->seen = t->stamp;
			r->cum += v;
		}
	}
}

static int fn_order(const void *a, const void *b)
{
	const struct fn_row *x = *(struct fn_row *const *)a, *y = *(struct fn_row *const *)b;
	if (fabs(x->flat) != fabs(y->flat))
		return fabs(x->flat) > fabs(y->flat) ? -1 : 1;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	if (fabs(x->cum) != fabs(y->cum))
		return fabs(x->cum) > fabs(y->cum) ? -1 : 1;
	return 0;
}

/* The rows to show, sorted; *n gets their number. As in pprof, a function
 * whose flat and cum are both 0 (a diff where they cancel) is left out. */
static struct fn_row **fn_sorted(struct fn_table *t, size_t *n)
{
	struct fn_row **l = hc_xcalloc(t->n + 1, sizeof(*l));
	size_t i = 0;
	for (struct fn_row *r = t->map; r; r = r->hh.next)
		if (r->flat != 0 || r->cum != 0)
			l[i++] = r;
	qsort(l, i, sizeof(*l), fn_order);
	*n = i;
	return l;
}

static void fn_free(struct fn_table *t)
{
	struct fn_row *r, *tmp;
	HASH_ITER(hh, t->map, r, tmp)
	{
		HASH_DEL(t->map, r);
		free(r);
	}
}

/* The sample type: --sample, else the profile's default, else the last. */
static int pick_type(const struct hc_prof *p, const char *want)
{
	if (want) {
		int i = hc_prof_type(p, want);
		if (i < 0) {
			char list[256] = "";
			for (size_t k = 0; k < p->ntypes; k++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				         k ? ", " : "", p->types[k]);
			hc_die(2, "%s: no sample type %s (it has %s)", p->path, want, list);
		}
		return i;
	}
	if (p->default_type[0]) {
		int i = hc_prof_type(p, p->default_type);
		if (i >= 0)
			return i;
	}
	return (int)p->ntypes - 1;
}

static char *fmt_value(char *buf, size_t len, double v, const char *unit)
{
	if (!strcmp(unit, "bytes"))
		return hc_fmt_bytes(buf, len, v);
	snprintf(buf, len, "%.0f", v);
	return buf;
}

/* The process figures heaptap put in the comments, one line. */
static void print_figures(FILE *o, const struct hc_prof *p)
{
	const struct hc_figures *g = &p->fig;
	char b1[32], b2[32], b3[32], b4[32], b5[32];
	const char *base = strrchr(p->path, '/');
	fprintf(o, "File: %s", base ? base + 1 : p->path);
	if (g->have)
		fprintf(o, " (pid %d, heaptap %s, rate %lld)", g->pid, g->version,
		        (long long)g->rate);
	if (p->time_nanos > 0) {
		time_t t = (time_t)(p->time_nanos / 1000000000);
		struct tm tm;
		char when[64];
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
		fprintf(o, ", %s", when);
	}
	fprintf(o, "\n");
	if (!g->have || p->kind != HC_HEAP)
		return;
	fprintf(o, "Process: RSS %s", hc_fmt_bytes(b1, sizeof(b1), (double)g->rss));
	if (g->own_resident >= 0 || g->own_bytes >= 0)
		fprintf(o, " (heaptap's own %s)",
		        hc_fmt_bytes(
		                b2, sizeof(b2),
		                (double)(g->own_resident >= 0 ? g->own_resident : g->own_bytes)));
	fprintf(o, ", live heap %s", hc_fmt_bytes(b3, sizeof(b3), (double)g->live_estimate));
	if (!strcmp(g->allocator, "glibc") && g->in_use >= 0)
		fprintf(o, ", glibc in use %s, free but held %s",
		        hc_fmt_bytes(b4, sizeof(b4),
		                     (double)g->in_use +
		                             (g->mmap_bytes > 0 ? (double)g->mmap_bytes : 0)),
		        hc_fmt_bytes(b5, sizeof(b5), (double)g->free_held));
	if (g->allocator[0])
		fprintf(o, ", allocator %s", g->allocator);
	if (g->live_threads >= 0)
		fprintf(o, ", threads %lld", (long long)g->live_threads);
	if (g->unjoined_threads > 0)
		fprintf(o, " (%lld unjoined)", (long long)g->unjoined_threads);
	fprintf(o, "\n");
	long long dropped = (g->samples_dropped > 0 ? g->samples_dropped : 0) +
	                    (g->events_dropped > 0 ? g->events_dropped : 0);
	if (dropped)
		fprintf(o, "Dropped: %lld samples or events (the profile is incomplete)\n",
		        dropped);
}

/* "f1 <- f2 <- ...", leaf first, without the start-up frames. */
static void print_stack(const struct hc_sample *s, size_t maxf)
{
	size_t nf = s->nframes;
	while (nf > 1 && hc_frame_is_startup(s->frames[nf - 1].name))
		nf--;
	for (size_t k = 0; k < nf && k < maxf; k++)
		printf("%s%s", k ? " <- " : "", s->frames[k].name);
	if (nf > maxf)
		printf(" <- ...");
}

struct table_opts {
	bool json;
	int n;
	const char *sample;
};

static void table_args(int argc, char **argv, const char *cmd, int nfiles, struct table_opts *t,
                       char **files)
{
	static const struct option opts[] = {{"json", no_argument, 0, 'j'},
	                                     {"sample", required_argument, 0, 's'},
	                                     {"sample_index", required_argument, 0, 's'},
	                                     {0, 0, 0, 0}};
	int c, got = 0;
	t->json = false;
	t->n = 20;
	t->sample = NULL;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			t->json = true;
			break;
		case 's':
			t->sample = optarg;
			break;
		case 'n': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 1000000)
				hc_die(2, "%s: -n wants a positive number: %s", cmd, optarg);
			t->n = (int)v;
			break;
		}
		default:
			hc_die(2, "%s: usage: heaptap %s%s [-n N] [--sample TYPE] [--json]", cmd,
			       cmd, nfiles == 2 ? " BASE FILE" : " FILE");
		}
	}
	for (int i = optind; i < argc; i++) {
		if (got < nfiles) {
			files[got++] = argv[i];
		} else if (got == nfiles && nfiles == 1 && i == argc - 1 &&
		           strspn(argv[i], "0123456789") == strlen(argv[i]) && argv[i][0]) {
			t->n = atoi(argv[i]); /* the older "heaptap top FILE N" */
			if (t->n < 1)
				hc_die(2, "%s: N must be a positive number: %s", cmd, argv[i]);
		} else {
			hc_die(2, "%s: unexpected argument: %s", cmd, argv[i]);
		}
	}
	if (got != nfiles)
		hc_die(2, "%s: usage: heaptap %s%s [-n N] [--sample TYPE] [--json]", cmd, cmd,
		       nfiles == 2 ? " BASE FILE" : " FILE");
}

static void print_rows(FILE *o, struct fn_row **rows, size_t nrows, int n, double total,
                       const char *unit, const char *sample)
{
	char b1[32], b2[32];
	size_t shown = nrows < (size_t)n ? nrows : (size_t)n;
	fprintf(o, "Type: %s\n", sample);
	fprintf(o, "Showing top %zu of %zu functions, total %s\n", shown, nrows,
	        fmt_value(b1, sizeof(b1), total, unit));
	fprintf(o, "%12s %6s %6s %12s %6s\n", "flat", "flat%", "sum%", "cum", "cum%");
	double sum = 0;
	for (size_t i = 0; i < shown; i++) {
		sum += rows[i]->flat;
		double pf = total ? 100 * rows[i]->flat / total : 0;
		double ps = total ? 100 * sum / total : 0;
		double pc = total ? 100 * rows[i]->cum / total : 0;
		fprintf(o, "%12s %5.1f%% %5.1f%% %12s %5.1f%%  %s\n",
		        fmt_value(b1, sizeof(b1), rows[i]->flat, unit), pf, ps,
		        fmt_value(b2, sizeof(b2), rows[i]->cum, unit), pc, rows[i]->name);
	}
}

static void json_rows(struct hc_json *j, struct fn_row **rows, size_t nrows, int n)
{
	hc_json_key(j, "rows");
	hc_json_arr(j);
	for (size_t i = 0; i < nrows && i < (size_t)n; i++) {
		hc_json_obj(j);
		hc_json_kstr(j, "name", rows[i]->name);
		hc_json_knum(j, "flat", rows[i]->flat);
		hc_json_knum(j, "cum", rows[i]->cum);
		hc_json_obj_end(j);
	}
	hc_json_arr_end(j);
}

/* "frames": the stack's function names, leaf first. */
static void json_frames(struct hc_json *j, const struct hc_sample *s)
{
	hc_json_key(j, "frames");
	hc_json_arr(j);
	for (size_t k = 0; k < s->nframes; k++)
		hc_json_str(j, s->frames[k].name);
	hc_json_arr_end(j);
}

static void json_figures(struct hc_json *j, const struct hc_prof *p)
{
	const struct hc_figures *g = &p->fig;
	hc_json_key(j, "process");
	if (!g->have) {
		hc_json_null(j);
		return;
	}
	hc_json_obj(j);
	hc_json_kint(j, "pid", g->pid);
	hc_json_kint(j, "rate", g->rate);
	hc_json_kstr(j, "allocator", g->allocator);
	const struct {
		const char *k;
		int64_t v;
	} f[] = {{"rss_bytes", g->rss},
	         {"heaptap_own_bytes", g->own_bytes},
	         {"heaptap_resident_bytes", g->own_resident},
	         {"live_heap_bytes", g->live_estimate},
	         {"malloc_in_use_bytes", g->in_use},
	         {"malloc_mmap_bytes", g->mmap_bytes},
	         {"malloc_free_held_bytes", g->free_held},
	         {"live_threads", g->live_threads},
	         {"unjoined_threads", g->unjoined_threads},
	         {"samples_dropped", g->samples_dropped},
	         {"events_dropped", g->events_dropped}};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		hc_json_key(j, f[i].k);
		if (f[i].v < 0)
			hc_json_null(j);
		else
			hc_json_int(j, f[i].v);
	}
	hc_json_obj_end(j);
}

int hc_cmd_top(int argc, char **argv)
{
	struct table_opts t;
	char *file;
	table_args(argc, argv, "top", 1, &t, &file);
	struct hc_prof *p = hc_prof_load_or_die(file);
	int ti = pick_type(p, t.sample);
	struct fn_table ft = {0};
	double total = 0;
	for (size_t i = 0; i < p->nsamples; i++) {
		double v = (double)p->samples[i].values[ti];
		total += v;
		fn_add(&ft, &p->samples[i], v);
	}
	size_t nrows;
	struct fn_row **rows = fn_sorted(&ft, &nrows);
	if (t.json) {
		struct hc_json j;
		hc_json_init(&j, stdout);
		hc_json_obj(&j);
		hc_json_kstr(&j, "file", p->path);
		hc_json_kstr(&j, "sample", p->types[ti]);
		hc_json_kstr(&j, "unit", p->units[ti]);
		hc_json_knum(&j, "total", total);
		json_figures(&j, p);
		json_rows(&j, rows, nrows, t.n);
		hc_json_obj_end(&j);
		hc_json_end(&j);
	} else {
		print_figures(stdout, p);
		print_rows(stdout, rows, nrows, t.n, total, p->units[ti], p->types[ti]);
	}
	free(rows);
	fn_free(&ft);
	hc_prof_free(p);
	return 0;
}

struct thr_row {
	struct hc_row *row;
	double total, running, unjoined;
};

static int thr_order(const void *a, const void *b)
{
	const struct thr_row *x = a, *y = b;
	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return x->row->order < y->row->order ? -1 : 1;
}

int hc_cmd_threads(int argc, char **argv)
{
	struct table_opts t;
	char *file;
	table_args(argc, argv, "threads", 1, &t, &file);
	struct hc_prof *p = hc_prof_load_or_die(file);
	if (p->kind != HC_THREADS)
		hc_die(2, "%s: not a thread profile (sample type %s); give a .threads.pb.gz file",
		       file, p->types[0]);
	struct hc_stacks tab;
	hc_stacks_init(&tab, 3);
	double total = 0, running = 0, unjoined = 0;
	for (size_t i = 0; i < p->nsamples; i++) {
		const struct hc_sample *s = &p->samples[i];
		struct hc_row *r = hc_stacks_row(&tab, s);
		double v = (double)s->values[0];
		const char *st = hc_sample_label(s, "state");
		bool unj = st && !strcmp(st, "unjoined");
		r->v[0] += v;
		r->v[unj ? 2 : 1] += v;
		total += v;
		*(unj ? &unjoined : &running) += v;
	}
	struct hc_row **rows = hc_stacks_list(&tab);
	struct thr_row *tr = hc_xcalloc(tab.n + 1, sizeof(*tr));
	for (size_t i = 0; i < tab.n; i++)
		tr[i] = (struct thr_row){rows[i], rows[i]->v[0], rows[i]->v[1], rows[i]->v[2]};
	qsort(tr, tab.n, sizeof(*tr), thr_order);
	size_t shown = tab.n < (size_t)t.n ? tab.n : (size_t)t.n;
	if (t.json) {
		struct hc_json j;
		hc_json_init(&j, stdout);
		hc_json_obj(&j);
		hc_json_kstr(&j, "file", p->path);
		hc_json_knum(&j, "total", total);
		hc_json_knum(&j, "running", running);
		hc_json_knum(&j, "unjoined", unjoined);
		hc_json_key(&j, "rows");
		hc_json_arr(&j);
		for (size_t i = 0; i < shown; i++) {
			hc_json_obj(&j);
			hc_json_knum(&j, "count", tr[i].total);
			hc_json_knum(&j, "running", tr[i].running);
			hc_json_knum(&j, "unjoined", tr[i].unjoined);
			json_frames(&j, tr[i].row->rep);
			hc_json_obj_end(&j);
		}
		hc_json_arr_end(&j);
		hc_json_obj_end(&j);
		hc_json_end(&j);
	} else {
		print_figures(stdout, p);
		printf("Live threads: %.0f (%.0f running, %.0f ended but never joined), %zu creation "
		       "stacks\n",
		       total, running, unjoined, tab.n);
		printf("%7s %8s %9s  %s\n", "threads", "running", "unjoined",
		       "created at (caller of pthread_create first)");
		for (size_t i = 0; i < shown; i++) {
			printf("%7.0f %8.0f %9.0f  ", tr[i].total, tr[i].running, tr[i].unjoined);
			const struct hc_sample *s = tr[i].row->rep;
			print_stack(s, 8);
			printf("\n");
		}
		if (shown < tab.n)
			printf("(%zu more creation stacks; -n to see them)\n", tab.n - shown);
	}
	free(tr);
	free(rows);
	hc_stacks_free(&tab);
	hc_prof_free(p);
	return 0;
}

struct diff_row {
	struct hc_row *row;
	double base, value, delta, sigma, z;
};

static int diff_order(const void *a, const void *b)
{
	const struct diff_row *x = a, *y = b;
	if (fabs(x->delta) != fabs(y->delta))
		return fabs(x->delta) > fabs(y->delta) ? -1 : 1;
	return x->row->order < y->row->order ? -1 : 1;
}

int hc_cmd_diff(int argc, char **argv)
{
	struct table_opts t;
	char *files[2];
	table_args(argc, argv, "diff", 2, &t, files);
	struct hc_prof *a = hc_prof_load_or_die(files[0]), *b = hc_prof_load_or_die(files[1]);
	int tb = pick_type(b, t.sample);
	int ta = hc_prof_type(a, b->types[tb]);
	if (ta < 0)
		hc_die(2, "%s: no sample type %s, which %s has", files[0], b->types[tb], files[1]);
	/* Function rows as pprof -diff_base prints them: FILE minus BASE. */
	struct fn_table ft = {0};
	double total = 0;
	for (size_t i = 0; i < b->nsamples; i++) {
		double v = (double)b->samples[i].values[tb];
		total += v;
		fn_add(&ft, &b->samples[i], v);
	}
	for (size_t i = 0; i < a->nsamples; i++)
		fn_add(&ft, &a->samples[i], -(double)a->samples[i].values[ta]);
	size_t nrows;
	struct fn_row **rows = fn_sorted(&ft, &nrows);

	/* Stacks, with the noise of each change. */
	double rate = (double)(b->period > a->period ? b->period : a->period);
	if (strcmp(b->period_type, "space"))
		rate = 1; /* counts (threads) are exact */
	bool inuse = !strcmp(b->types[tb], "inuse_space");
	int aa = hc_prof_type(a, "alloc_space"), ab = hc_prof_type(b, "alloc_space");
	struct hc_stacks tab;
	hc_stacks_init(&tab, 4);
	for (int side = 0; side < 2; side++) {
		const struct hc_prof *p = side ? b : a;
		int ti = side ? tb : ta, ai = side ? ab : aa;
		for (size_t i = 0; i < p->nsamples; i++) {
			const struct hc_sample *s = &p->samples[i];
			struct hc_row *r = hc_stacks_row(&tab, s);
			double v = (double)s->values[ti];
			r->v[side] += v;
			if (ai >= 0)
				r->v[2 + side] += (double)s->values[ai];
			hc_stacks_noise(r, s, fabs(v), rate);
		}
	}
	struct hc_row **srows = hc_stacks_list(&tab);
	struct diff_row *d = hc_xcalloc(tab.n + 1, sizeof(*d));
	size_t nsig = 0;
	for (size_t i = 0; i < tab.n; i++) {
		struct hc_row *r = srows[i];
		double c = hc_row_noise(r, rate);
		double da = inuse && aa >= 0 && ab >= 0 ? r->v[3] - r->v[2] : -1;
		d[i] = (struct diff_row){r, r->v[0], r->v[1], r->v[1] - r->v[0], 0, 0};
		d[i].sigma = hc_growth_sigma(c, fabs(r->v[0]), fabs(r->v[1]), da);
		d[i].z = d[i].sigma > 0   ? d[i].delta / d[i].sigma
		         : d[i].delta > 0 ? INFINITY
		         : d[i].delta < 0 ? -INFINITY
		                          : 0;
		nsig += fabs(d[i].z) >= 3;
	}
	qsort(d, tab.n, sizeof(*d), diff_order);
	size_t shown = tab.n < (size_t)t.n ? tab.n : (size_t)t.n;
	const char *unit = b->units[tb];
	if (t.json) {
		struct hc_json j;
		hc_json_init(&j, stdout);
		hc_json_obj(&j);
		hc_json_kstr(&j, "base", a->path);
		hc_json_kstr(&j, "file", b->path);
		hc_json_kstr(&j, "sample", b->types[tb]);
		hc_json_kstr(&j, "unit", unit);
		hc_json_knum(&j, "total", total);
		json_rows(&j, rows, nrows, t.n);
		hc_json_key(&j, "stacks");
		hc_json_arr(&j);
		for (size_t i = 0; i < shown; i++) {
			hc_json_obj(&j);
			hc_json_knum(&j, "base", d[i].base);
			hc_json_knum(&j, "value", d[i].value);
			hc_json_knum(&j, "delta", d[i].delta);
			hc_json_knum(&j, "sigma", d[i].sigma);
			hc_json_knum(&j, "z", d[i].z);
			hc_json_kbool(&j, "significant", fabs(d[i].z) >= 3);
			json_frames(&j, d[i].row->rep);
			hc_json_obj_end(&j);
		}
		hc_json_arr_end(&j);
		hc_json_obj_end(&j);
		hc_json_end(&j);
	} else {
		char b1[32], b2[32], b3[32];
		printf("Base: ");
		print_figures(stdout, a);
		printf("New:  ");
		print_figures(stdout, b);
		print_rows(stdout, rows, nrows, t.n, total, unit, b->types[tb]);
		printf("\nStacks that changed most (%zu of %zu changes stand out of the sampling "
		       "noise, |z| >= 3):\n",
		       nsig, tab.n);
		printf("%12s %12s %12s %7s  %s\n", "change", "base", "new", "z", "stack");
		for (size_t i = 0; i < shown; i++) {
			if (d[i].delta == 0)
				break;
			char z[16];
			if (isinf(d[i].z))
				snprintf(z, sizeof(z), "exact");
			else
				snprintf(z, sizeof(z), "%.1f", d[i].z);
			printf("%12s %12s %12s %7s%s ", fmt_value(b1, sizeof(b1), d[i].delta, unit),
			       fmt_value(b2, sizeof(b2), d[i].base, unit),
			       fmt_value(b3, sizeof(b3), d[i].value, unit), z,
			       fabs(d[i].z) >= 3 ? " " : "?");
			const struct hc_sample *s = d[i].row->rep;
			print_stack(s, 6);
			printf("\n");
		}
		printf("(? = within sampling noise: could be chance)\n");
	}
	free(d);
	free(srows);
	hc_stacks_free(&tab);
	free(rows);
	fn_free(&ft);
	hc_prof_free(a);
	hc_prof_free(b);
	return 0;
}
