/*
 * prof.c - reading one profile file into struct hc_prof (prof.h).
 *
 * Three steps: the bytes (gunzipped when they start with the gzip magic, with
 * a cap on the inflated size so a small bomb cannot take the machine), the
 * wire decode (pbread.c) into string table, functions, locations and raw
 * samples, and the resolution of each sample into frames. Every index read
 * from the file (string, function, location) is checked, so a bad file is
 * one clear error naming the file, never a crash. Sample and location bodies
 * are kept as slices until the string table is complete, because proto3
 * allows the fields in any order.
 */
#include "prof.h"

#include "pbread.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_INFLATED ((size_t)2 << 30) /* 2 GiB */
/* The same for the resolved stacks of all samples (frames and keys): a small
 * file can name a location of many inlined lines, or of a long name, many
 * times over. */
#define MAX_STACKS MAX_INFLATED

struct slice {
	const uint8_t *data;
	size_t len;
};

struct func {
	uint64_t id;
	int64_t name, file;
};

struct line {
	uint64_t func;
	int64_t line;
};

struct loc {
	uint64_t id, address, mapping;
	struct line *lines;
	size_t nlines;
	size_t cost; /* bytes one use adds to a stack (loc_cost); 0 until known */
};

/* Mapping {id = 1, filename = 5}: for naming unsymbolized frames. */
struct map {
	uint64_t id;
	int64_t file;
	const char *label; /* "[basename]", made when first needed */
};

struct dec {
	struct hc_arena *a;
	struct slice *strs;
	size_t nstrs, capstrs;
	struct slice *samples, *locs, *types, *funcs, *maps;
	size_t nsamples, capsamples, nlocs, caplocs, ntypes, captypes, nfuncs, capfuncs;
	size_t nmaps, capmaps;
	int64_t *comments;
	size_t ncomments, capcomments;
	int64_t period, time_nanos, duration_nanos, default_type;
	struct slice period_type;
	bool have_period_type;
	struct func *fv;
	struct loc *lv;
	struct map *mv;
	size_t stack_bytes; /* taken by the samples so far, at most MAX_STACKS */
	const char *why;
};

static int fail(struct dec *d, const char *why)
{
	if (!d->why)
		d->why = why;
	return -EBADMSG;
}

static int push_comment(void *arg, uint64_t v)
{
	struct dec *d = arg;
	hc_grow(&d->comments, &d->capcomments, d->ncomments + 1, sizeof(int64_t));
	d->comments[d->ncomments++] = (int64_t)v;
	return 0;
}

static void push_slice(struct slice **arr, size_t *n, size_t *cap, const struct hc_pb_field *f)
{
	hc_grow(arr, cap, *n + 1, sizeof(struct slice));
	(*arr)[(*n)++] = (struct slice){f->data, f->len};
}

static int decode_top(struct dec *d, const uint8_t *buf, size_t len)
{
	struct hc_pb c = {buf, buf + len};
	struct hc_pb_field f;
	int r;
	while ((r = hc_pb_next(&c, &f)) == 1) {
		bool bytes = f.wire == HC_PB_LEN;
		switch (f.num) {
		case 1:
		case 2:
		case 3:
		case 4:
		case 5:
		case 6:
		case 11:
			if (!bytes)
				return fail(d, "a message field has the wrong wire type");
			break;
		default:
			break;
		}
		switch (f.num) {
		case 1:
			push_slice(&d->types, &d->ntypes, &d->captypes, &f);
			break;
		case 2:
			push_slice(&d->samples, &d->nsamples, &d->capsamples, &f);
			break;
		case 3:
			push_slice(&d->maps, &d->nmaps, &d->capmaps, &f);
			break;
		case 4:
			push_slice(&d->locs, &d->nlocs, &d->caplocs, &f);
			break;
		case 5:
			push_slice(&d->funcs, &d->nfuncs, &d->capfuncs, &f);
			break;
		case 6:
			push_slice(&d->strs, &d->nstrs, &d->capstrs, &f);
			break;
		case 9:
			d->time_nanos = (int64_t)f.v;
			break;
		case 10:
			d->duration_nanos = (int64_t)f.v;
			break;
		case 11:
			d->period_type = (struct slice){f.data, f.len};
			d->have_period_type = true;
			break;
		case 12:
			d->period = (int64_t)f.v;
			break;
		case 13:
			if (hc_pb_repeated(&f, push_comment, d) != 0)
				return fail(d, "bad comment list");
			break;
		case 14:
			d->default_type = (int64_t)f.v;
			break;
		default:
			break; /* drop_frames, keep_frames, doc_url, unknown */
		}
	}
	return r == 0 ? 0 : fail(d, "bad protobuf encoding");
}

static const char *str(struct dec *d, int64_t i, const char **out)
{
	if (i < 0 || (uint64_t)i >= d->nstrs) {
		fail(d, "a string index is out of range");
		return NULL;
	}
	/* Strings were copied NUL-terminated into the slices' replacement. */
	*out = (const char *)d->strs[i].data;
	return *out;
}

/* ValueType {type = 1, unit = 2}. */
static int value_type(struct dec *d, struct slice s, const char **type, const char **unit)
{
	struct hc_pb c = {s.data, s.data + s.len};
	struct hc_pb_field f;
	int64_t t = 0, u = 0;
	int r;
	while ((r = hc_pb_next(&c, &f)) == 1) {
		if (f.num == 1)
			t = (int64_t)f.v;
		else if (f.num == 2)
			u = (int64_t)f.v;
	}
	if (r != 0)
		return fail(d, "bad value type");
	if (!str(d, t, type) || !str(d, u, unit))
		return -EBADMSG;
	return 0;
}

/* Functions, locations and mappings all start with their id. */
_Static_assert(offsetof(struct func, id) == 0 && offsetof(struct loc, id) == 0 &&
                       offsetof(struct map, id) == 0,
               "cmp_id and find_id read the id at the start of each record");

static int cmp_id(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sort records by id; what != NULL: two records sharing an id are an error
 * ("two <what> share an id"). */
static int sort_by_id(struct dec *d, void *v, size_t n, size_t size, const char *dup)
{
	qsort(v, n, size, cmp_id);
	for (size_t i = 1; dup && i < n; i++)
		if (*(const uint64_t *)((char *)v + i * size) ==
		    *(const uint64_t *)((char *)v + (i - 1) * size))
			return fail(d, dup);
	return 0;
}

/* The record with this id, or NULL. pprof's writers number ids 1..n in
 * order, so the record is usually at id - 1. */
static void *find_id(void *v, size_t n, size_t size, uint64_t id)
{
	if (id >= 1 && id <= n && *(const uint64_t *)((char *)v + (id - 1) * size) == id)
		return (char *)v + (id - 1) * size;
	return bsearch(&id, v, n, size, cmp_id);
}

static int decode_funcs(struct dec *d)
{
	d->fv = hc_arena_alloc(d->a, (d->nfuncs + 1) * sizeof(*d->fv));
	for (size_t i = 0; i < d->nfuncs; i++) {
		struct hc_pb c = {d->funcs[i].data, d->funcs[i].data + d->funcs[i].len};
		struct hc_pb_field f;
		int r;
		struct func *fn = &d->fv[i];
		while ((r = hc_pb_next(&c, &f)) == 1) {
			if (f.num == 1)
				fn->id = f.v;
			else if (f.num == 2)
				fn->name = (int64_t)f.v;
			else if (f.num == 4)
				fn->file = (int64_t)f.v;
		}
		const char *s;
		if (r != 0 || !str(d, fn->name, &s) || !str(d, fn->file, &s))
			return fail(d, "bad function");
		if (fn->id == 0)
			return fail(d, "a function has id 0");
	}
	return sort_by_id(d, d->fv, d->nfuncs, sizeof(*d->fv), "two functions share an id");
}

static int decode_line(struct dec *d, struct slice s, struct line *ln)
{
	struct hc_pb c = {s.data, s.data + s.len};
	struct hc_pb_field f;
	int r;
	while ((r = hc_pb_next(&c, &f)) == 1) {
		if (f.num == 1)
			ln->func = f.v;
		else if (f.num == 2)
			ln->line = (int64_t)f.v;
	}
	return r == 0 ? 0 : fail(d, "bad line");
}

static int decode_locs(struct dec *d)
{
	d->lv = hc_arena_alloc(d->a, (d->nlocs + 1) * sizeof(*d->lv));
	for (size_t i = 0; i < d->nlocs; i++) {
		struct loc *l = &d->lv[i];
		size_t cap = 0;
		struct hc_pb c = {d->locs[i].data, d->locs[i].data + d->locs[i].len};
		struct hc_pb_field f;
		int r;
		while ((r = hc_pb_next(&c, &f)) == 1) {
			if (f.num == 1) {
				l->id = f.v;
			} else if (f.num == 2) {
				l->mapping = f.v;
			} else if (f.num == 3) {
				l->address = f.v;
			} else if (f.num == 4 && f.wire == HC_PB_LEN) {
				hc_grow(&l->lines, &cap, l->nlines + 1, sizeof(*l->lines));
				struct line *ln = &l->lines[l->nlines++];
				*ln = (struct line){0, 0};
				/* Out of the loop: l->lines goes to the arena below. */
				if (decode_line(d, (struct slice){f.data, f.len}, ln) != 0) {
					r = -EBADMSG;
					break;
				}
			}
		}
		hc_arena_adopt(d->a, l->lines);
		if (r != 0)
			return fail(d, "bad location");
		if (l->id == 0)
			return fail(d, "a location has id 0");
	}
	return sort_by_id(d, d->lv, d->nlocs, sizeof(*d->lv), "two locations share an id");
}

static int decode_maps(struct dec *d)
{
	d->mv = hc_arena_alloc(d->a, (d->nmaps + 1) * sizeof(*d->mv));
	for (size_t i = 0; i < d->nmaps; i++) {
		struct hc_pb c = {d->maps[i].data, d->maps[i].data + d->maps[i].len};
		struct hc_pb_field f;
		int r;
		struct map *m = &d->mv[i];
		while ((r = hc_pb_next(&c, &f)) == 1) {
			if (f.num == 1)
				m->id = f.v;
			else if (f.num == 5)
				m->file = (int64_t)f.v;
		}
		const char *s;
		if (r != 0 || !str(d, m->file, &s))
			return fail(d, "bad mapping");
	}
	return sort_by_id(d, d->mv, d->nmaps, sizeof(*d->mv), NULL);
}

/* What pprof -top shows for a frame without a function name (it aggregates
 * them by object file): "[basename of the mapping's file]", else "<unknown>". */
static const char *unsymbolized(struct dec *d, uint64_t mapping)
{
	struct map *m = mapping ? find_id(d->mv, d->nmaps, sizeof(*d->mv), mapping) : NULL;
	const char *file;
	if (!m || !str(d, m->file, &file) || !file[0])
		return "<unknown>";
	if (!m->label) {
		const char *base = strrchr(file, '/');
		base = base ? base + 1 : file;
		size_t n = strlen(base);
		char *l = hc_arena_alloc(d->a, n + 3);
		l[0] = '[';
		memcpy(l + 1, base, n);
		l[n + 1] = ']';
		m->label = l;
	}
	return m->label;
}

static const struct func *find_func(struct dec *d, uint64_t id)
{
	return find_id(d->fv, d->nfuncs, sizeof(*d->fv), id);
}

static struct loc *find_loc(struct dec *d, uint64_t id)
{
	return find_id(d->lv, d->nlocs, sizeof(*d->lv), id);
}

/* What one use of a location adds to a sample's stack: its frames, their
 * names in the key, and a "0x<addr>" name when unsymbolized. A missing
 * function is left to decode_sample to report. */
static size_t loc_cost(struct dec *d, struct loc *l)
{
	if (l->cost)
		return l->cost;
	size_t c = 0, nl = l->nlines ? l->nlines : 1;
	for (size_t j = 0; j < nl && c <= MAX_STACKS; j++) {
		const struct func *fn = l->nlines ? find_func(d, l->lines[j].func) : NULL;
		size_t n = fn ? strlen((const char *)d->strs[fn->name].data) : 0;
		c += sizeof(struct hc_frame) + (n ? n : 2 * 24) + 1;
	}
	l->cost = c;
	return c;
}

struct u64v {
	uint64_t *v;
	size_t n, cap;
};

static int push_u64(void *arg, uint64_t x)
{
	struct u64v *v = arg;
	if (v->n > (1u << 24))
		return -EBADMSG;
	hc_grow(&v->v, &v->cap, v->n + 1, sizeof(uint64_t));
	v->v[v->n++] = x;
	return 0;
}

static int decode_label(struct dec *d, struct slice s, struct hc_label *lb)
{
	struct hc_pb c = {s.data, s.data + s.len};
	struct hc_pb_field f;
	int64_t key = 0, sv = 0;
	int r;
	lb->num = 0;
	while ((r = hc_pb_next(&c, &f)) == 1) {
		if (f.num == 1)
			key = (int64_t)f.v;
		else if (f.num == 2)
			sv = (int64_t)f.v;
		else if (f.num == 3)
			lb->num = (int64_t)f.v;
	}
	if (r != 0)
		return fail(d, "bad label");
	if (!str(d, key, &lb->key))
		return -EBADMSG;
	const char *s2;
	if (!str(d, sv, &s2))
		return -EBADMSG;
	lb->str = sv ? s2 : NULL;
	return 0;
}

static int decode_sample(struct dec *d, struct slice s, struct hc_sample *out, size_t ntypes)
{
	struct u64v locs = {0}, vals = {0};
	struct hc_label *labels = NULL;
	size_t nlabels = 0, caplabels = 0;
	struct hc_pb c = {s.data, s.data + s.len};
	struct hc_pb_field f;
	int r, err = 0;
	while (err == 0 && (r = hc_pb_next(&c, &f)) == 1) {
		if (f.num == 1) {
			err = hc_pb_repeated(&f, push_u64, &locs);
		} else if (f.num == 2) {
			err = hc_pb_repeated(&f, push_u64, &vals);
		} else if (f.num == 3 && f.wire == HC_PB_LEN) {
			hc_grow(&labels, &caplabels, nlabels + 1, sizeof(*labels));
			err = decode_label(d, (struct slice){f.data, f.len}, &labels[nlabels++]);
		}
	}
	hc_arena_adopt(d->a, labels);
	if (err == 0 && r != 0)
		err = fail(d, "bad sample");
	if (err == 0 && vals.n != ntypes)
		err = fail(d, "a sample's value count differs from the sample types");
	if (err) {
		free(locs.v);
		free(vals.v);
		return fail(d, "bad sample");
	}
	out->values = hc_arena_alloc(d->a, (ntypes + 1) * sizeof(int64_t));
	for (size_t i = 0; i < ntypes; i++)
		out->values[i] = (int64_t)vals.v[i];
	free(vals.v);
	out->labels = labels;
	out->nlabels = nlabels;

	/* What the stack will take, before taking it. */
	size_t need = 0;
	for (size_t i = 0; i < locs.n; i++) {
		struct loc *l = find_loc(d, locs.v[i]);
		if (l)
			need += loc_cost(d, l);
		if (need > MAX_STACKS - d->stack_bytes) {
			free(locs.v);
			return fail(d, "the stacks take more than 2 GiB");
		}
	}
	d->stack_bytes += need;

	/* Frames: each location's lines, innermost inline first. */
	size_t nframes = 0, cap = 0;
	struct hc_frame *frames = NULL;
	size_t keylen = 0;
	for (size_t i = 0; i < locs.n; i++) {
		const struct loc *l = find_loc(d, locs.v[i]);
		if (!l) {
			free(locs.v);
			free(frames);
			return fail(d, "a sample names a location that is not in the profile");
		}
		size_t nl = l->nlines ? l->nlines : 1;
		hc_grow(&frames, &cap, nframes + nl, sizeof(*frames));
		for (size_t j = 0; j < nl; j++) {
			struct hc_frame *fr = &frames[nframes++];
			fr->address = l->address;
			fr->file = "";
			fr->line = 0;
			fr->name = NULL;
			if (l->nlines) {
				const struct func *fn = find_func(d, l->lines[j].func);
				if (!fn) {
					free(locs.v);
					free(frames);
					return fail(
					        d,
					        "a location names a function that is not in the profile");
				}
				str(d, fn->name, &fr->name);
				str(d, fn->file, &fr->file);
				fr->line = l->lines[j].line;
			}
			if (!fr->name || !fr->name[0]) {
				char hex[24];
				snprintf(hex, sizeof(hex), "0x%" PRIx64, l->address);
				fr->name = hc_arena_strndup(d->a, hex, strlen(hex));
				fr->func = unsymbolized(d, l->mapping);
			} else {
				fr->func = fr->name;
			}
			keylen += strlen(fr->name) + 1;
		}
	}
	free(locs.v);
	hc_arena_adopt(d->a, frames);
	out->frames = frames;
	out->nframes = nframes;
	char *key = hc_arena_alloc(d->a, keylen + 1);
	char *k = key;
	for (size_t i = 0; i < nframes; i++) {
		size_t n = strlen(frames[i].name);
		memcpy(k, frames[i].name, n);
		k += n;
		*k++ = '\n';
	}
	*k = 0;
	out->key = key;
	return 0;
}

/* "key=value" pairs in heaptap's comment lines. */
static void parse_figures(struct hc_prof *p)
{
	struct hc_figures *g = &p->fig;
	int64_t *slots[] = {&g->rss,
	                    &g->in_use,
	                    &g->free_held,
	                    &g->mmap_bytes,
	                    &g->releasable,
	                    &g->live_estimate,
	                    &g->live_objects,
	                    &g->live_samples,
	                    &g->live_threads,
	                    &g->unjoined_threads,
	                    &g->running_threads,
	                    &g->samples_dropped,
	                    &g->events_dropped,
	                    &g->table_overflow,
	                    &g->small_stack,
	                    &g->busy_resets,
	                    &g->own_bytes,
	                    &g->own_resident};
	static const char *names[] = {"rss_bytes",
	                              "malloc_in_use_bytes",
	                              "malloc_free_held_bytes",
	                              "malloc_mmap_bytes",
	                              "malloc_releasable_bytes",
	                              "heap_live_estimate_bytes",
	                              "heap_live_estimate_objects",
	                              "live_samples",
	                              "live_threads",
	                              "unjoined_threads",
	                              "running_threads",
	                              "samples_dropped",
	                              "events_dropped",
	                              "table_overflow_samples",
	                              "small_stack_samples",
	                              "busy_resets",
	                              "heaptap_own_bytes",
	                              "heaptap_resident_bytes"};
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
		*slots[i] = -1;
	g->pid = 0;
	g->rate = -1;
	for (size_t c = 0; c < p->ncomments; c++) {
		const char *line = p->comments[c];
		int pid;
		long long rate;
		char ver[32];
		if (sscanf(line, "heaptap %31s pid %d rate %lld", ver, &pid, &rate) == 3) {
			g->have = true;
			g->pid = pid;
			g->rate = rate;
			snprintf(g->version, sizeof(g->version), "%s", ver);
			continue;
		}
		if (sscanf(line, "live threads: %lld", &rate) == 1) {
			g->live_threads = rate;
			continue;
		}
		for (const char *t = line; *t;) {
			while (*t == ' ')
				t++;
			const char *eq = strchr(t, '=');
			const char *sp = strchr(t, ' ');
			if (!eq || (sp && sp < eq)) {
				if (!sp)
					break;
				t = sp;
				continue;
			}
			size_t klen = (size_t)(eq - t);
			const char *v = eq + 1;
			if (klen == 9 && !strncmp(t, "allocator", 9)) {
				size_t n = strcspn(v, " ");
				if (n >= sizeof(g->allocator))
					n = sizeof(g->allocator) - 1;
				memcpy(g->allocator, v, n);
				g->allocator[n] = 0;
			} else {
				for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
					if (strlen(names[i]) == klen && !strncmp(t, names[i], klen))
						*slots[i] = strtoll(v, NULL, 10);
			}
			t = v + strcspn(v, " ");
		}
	}
}

/* heaptap.<pid>.<seq>.<kind>.pb.gz */
static void parse_name(struct hc_prof *p)
{
	const char *base = strrchr(p->path, '/');
	base = base ? base + 1 : p->path;
	int pid, seq;
	char kind[16];
	if (sscanf(base, "heaptap.%d.%d.%15[a-z].pb.gz", &pid, &seq, kind) == 3) {
		p->name_pid = pid;
		p->seq = seq;
	}
}

struct hc_prof *hc_prof_parse(const uint8_t *data, size_t len, const char *path, char *err,
                              size_t errlen)
{
	struct hc_arena a = {0};
	struct dec d = {.a = &a};
	uint8_t *raw = NULL;
	const char *why = NULL;

	if (len == 0) {
		snprintf(err, errlen, "%s: empty file", path);
		return NULL;
	}
	if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
		z_stream z = {0};
		size_t cap = len * 4 + 4096, n = 0;
		if (inflateInit2(&z, 15 + 16) != Z_OK) {
			snprintf(err, errlen, "%s: cannot start zlib", path);
			return NULL;
		}
		raw = hc_xmalloc(cap);
		z.next_in = (uint8_t *)data;
		z.avail_in = (uInt)(len > UINT32_MAX ? UINT32_MAX : len);
		int zr;
		for (;;) {
			if (n == cap) {
				if (cap >= MAX_INFLATED) {
					why = "inflates to more than 2 GiB";
					break;
				}
				cap *= 2;
				raw = hc_xrealloc(raw, cap);
			}
			z.next_out = raw + n;
			z.avail_out = (uInt)(cap - n > UINT32_MAX ? UINT32_MAX : cap - n);
			zr = inflate(&z, Z_NO_FLUSH);
			n = (size_t)(z.next_out - raw);
			if (zr == Z_STREAM_END)
				break;
			if (zr == Z_BUF_ERROR && z.avail_in == 0) {
				why = "truncated (the gzip stream ends early)";
				break;
			}
			if (zr != Z_OK && zr != Z_BUF_ERROR) {
				why = "corrupt gzip data";
				break;
			}
		}
		inflateEnd(&z);
		if (why) {
			free(raw);
			snprintf(err, errlen, "%s: %s", path, why);
			return NULL;
		}
		data = raw;
		len = n;
		if (len == 0) {
			free(raw);
			snprintf(err, errlen, "%s: empty profile (gzip of nothing)", path);
			return NULL;
		}
	}
	hc_arena_adopt(&a, raw);

	struct hc_prof *p = hc_arena_alloc(&a, sizeof(*p));
	p->path = hc_arena_strndup(&a, path, strlen(path));
	if (decode_top(&d, data, len) != 0)
		goto bad;
	/* NUL-terminated copies of the strings, in place of the slices. */
	if (d.nstrs == 0) {
		fail(&d, "no string table");
		goto bad;
	}
	if (d.strs[0].len != 0) {
		fail(&d, "the string table does not start with \"\"");
		goto bad;
	}
	for (size_t i = 0; i < d.nstrs; i++)
		d.strs[i].data = (const uint8_t *)hc_arena_strndup(&a, (const char *)d.strs[i].data,
		                                                   d.strs[i].len);
	if (d.ntypes == 0) {
		fail(&d, "no sample types");
		goto bad;
	}
	p->ntypes = d.ntypes;
	p->types = hc_arena_alloc(&a, d.ntypes * sizeof(char *));
	p->units = hc_arena_alloc(&a, d.ntypes * sizeof(char *));
	for (size_t i = 0; i < d.ntypes; i++)
		if (value_type(&d, d.types[i], (const char **)&p->types[i],
		               (const char **)&p->units[i]) != 0)
			goto bad;
	const char *pt = "", *pu = "";
	if (d.have_period_type && value_type(&d, d.period_type, &pt, &pu) != 0)
		goto bad;
	p->period_type = (char *)pt;
	p->period_unit = (char *)pu;
	const char *dt = "";
	if (!str(&d, d.default_type, &dt))
		goto bad;
	p->default_type = (char *)dt;
	p->period = d.period;
	p->time_nanos = d.time_nanos;
	p->duration_nanos = d.duration_nanos;
	p->comments = hc_arena_alloc(&a, (d.ncomments + 1) * sizeof(char *));
	p->ncomments = d.ncomments;
	for (size_t i = 0; i < d.ncomments; i++)
		if (!str(&d, d.comments[i], (const char **)&p->comments[i]))
			goto bad;
	if (decode_funcs(&d) != 0 || decode_locs(&d) != 0 || decode_maps(&d) != 0)
		goto bad;
	p->samples = hc_arena_alloc(&a, (d.nsamples + 1) * sizeof(*p->samples));
	p->nsamples = d.nsamples;
	for (size_t i = 0; i < d.nsamples; i++)
		if (decode_sample(&d, d.samples[i], &p->samples[i], p->ntypes) != 0)
			goto bad;

	if (hc_prof_type(p, "inuse_space") >= 0 || hc_prof_type(p, "alloc_space") >= 0)
		p->kind = HC_HEAP;
	else if (p->ntypes == 1 && !strcmp(p->types[0], "threads"))
		p->kind = HC_THREADS;
	parse_figures(p);
	parse_name(p);
	free(d.strs);
	free(d.samples);
	free(d.locs);
	free(d.types);
	free(d.funcs);
	free(d.maps);
	free(d.comments);
	struct hc_arena *keep = hc_xmalloc(sizeof(*keep));
	*keep = a;
	p->arena = keep;
	return p;
bad:
	snprintf(err, errlen, "%s: not a pprof profile (%s)", path,
	         d.why ? d.why : "bad protobuf encoding");
	free(d.strs);
	free(d.samples);
	free(d.locs);
	free(d.types);
	free(d.funcs);
	free(d.maps);
	free(d.comments);
	hc_arena_free(&a);
	return NULL;
}

struct hc_prof *hc_prof_load(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
	uint8_t *buf = hc_xmalloc(cap);
	for (;;) {
		if (n == cap) {
			if (cap >= MAX_INFLATED) {
				snprintf(err, errlen, "%s: larger than 2 GiB", path);
				free(buf);
				close(fd);
				return NULL;
			}
			cap *= 2;
			buf = hc_xrealloc(buf, cap);
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	struct hc_prof *p = hc_prof_parse(buf, n, path, err, errlen);
	free(buf);
	return p;
}

void hc_prof_free(struct hc_prof *p)
{
	if (!p)
		return;
	struct hc_arena *a = p->arena;
	hc_arena_free(a);
	free(a);
}

int hc_prof_type(const struct hc_prof *p, const char *name)
{
	for (size_t i = 0; i < p->ntypes; i++)
		if (!strcmp(p->types[i], name))
			return (int)i;
	return -1;
}

int64_t hc_prof_total(const struct hc_prof *p, int type)
{
	/* Summed as unsigned: a file's values may be anything, and a signed sum
	 * that overflows is undefined behaviour. */
	uint64_t t = 0;
	if (type < 0 || (size_t)type >= p->ntypes)
		return 0;
	for (size_t i = 0; i < p->nsamples; i++)
		t += (uint64_t)p->samples[i].values[type];
	return (int64_t)t;
}

const char *hc_sample_label(const struct hc_sample *s, const char *key)
{
	for (size_t i = 0; i < s->nlabels; i++)
		if (s->labels[i].str && !strcmp(s->labels[i].key, key))
			return s->labels[i].str;
	return NULL;
}

int64_t hc_sample_num(const struct hc_sample *s, const char *key)
{
	for (size_t i = 0; i < s->nlabels; i++)
		if (!s->labels[i].str && !strcmp(s->labels[i].key, key))
			return s->labels[i].num;
	return -1;
}

struct hc_prof *hc_prof_load_or_die(const char *path)
{
	char err[512];
	struct hc_prof *p = hc_prof_load(path, err, sizeof(err));
	if (!p)
		hc_die(2, "%s", err);
	return p;
}
