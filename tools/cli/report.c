/*
 * report.c - `heaptap report FILE... -o OUT.html`: one self-contained HTML
 * page for a leak investigation.
 *
 * The page is the template tools/cli/report.html (compiled in as a byte
 * array by tools/embed.cmake) with one JSON blob put in its data script. The
 * blob holds the `heaptap leaks --json` document for the files, verbatim
 * (hc_leaks_run writes it into memory, so its numbers are the command's by
 * construction; only the stacks and threads lists are cut after
 * HC_REPORT_MAX_LISTED entries, and the cut is recorded beside it), the
 * `heaptap leaks` text, and flame graph trees built here from the samples:
 * inuse_space and alloc_space at the last dump, the growth and the shrink of
 * inuse_space from the first to the last dump (per stack), and threads by
 * creation stack at the last thread dump. A tree keeps every sample's value:
 * children narrower than a threshold are merged into one "(N small)" node
 * per parent, and the threshold rises until the tree fits --max-nodes, so a
 * 100k-stack profile stays a few MiB. Everything the page shows comes from
 * this blob; the page loads nothing.
 */
#include "cmds.h"

#include "json.h"
#include "prof.h"
#include "stacks.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uthash.h>

#undef uthash_fatal
#define uthash_fatal(msg) hc_die(2, "out of memory")

#ifndef HC_VERSION
#define HC_VERSION "0.0.0"
#endif

/* Entries of the leaks document's stacks and threads lists kept in the page. */
#define HC_REPORT_MAX_LISTED 200
/* Levels below the root a tree keeps (deeper frames stay in their ancestor). */
#define HC_REPORT_MAX_DEPTH 200

/* The template, from tools/embed.cmake. */
extern const unsigned char hc_report_template[];
extern const size_t hc_report_template_len;

/* ---- names: function names (and their source files) interned ------------ */

struct str_ent {
	char *s;
	uint32_t idx;
	UT_hash_handle hh;
};

struct strtab {
	struct str_ent *map;
	char **v;
	size_t n, cap;
};

static uint32_t strtab_get(struct strtab *t, const char *s)
{
	struct str_ent *e;
	HASH_FIND_STR(t->map, s, e);
	if (e)
		return e->idx;
	e = hc_xcalloc(1, sizeof(*e));
	e->s = hc_xstrdup(s);
	e->idx = (uint32_t)t->n;
	hc_grow(&t->v, &t->cap, t->n + 1, sizeof(*t->v));
	t->v[t->n++] = e->s;
	HASH_ADD_KEYPTR(hh, t->map, e->s, strlen(e->s), e);
	return e->idx;
}

static void strtab_free(struct strtab *t)
{
	struct str_ent *e, *tmp;
	HASH_ITER(hh, t->map, e, tmp)
	{
		HASH_DEL(t->map, e);
		free(e->s);
		free(e);
	}
	free(t->v);
}

struct names {
	struct strtab names, files;
	uint32_t *file_of; /* per name: index into files */
	size_t cap;
};

static uint32_t name_idx(struct names *nm, const char *name, const char *file)
{
	size_t before = nm->names.n;
	uint32_t i = strtab_get(&nm->names, name);
	if (nm->names.n > before) {
		hc_grow(&nm->file_of, &nm->cap, nm->names.n, sizeof(*nm->file_of));
		nm->file_of[i] = strtab_get(&nm->files, file ? file : "");
	}
	return i;
}

/* ---- trees: a trie of stacks, root first --------------------------------- */

struct tnode {
	int64_t value;
	uint32_t name, first, next, depth; /* first child, next sibling: 0 = none */
};

struct tree {
	struct tnode *v;
	size_t n, cap;
	uint64_t *hkey; /* (parent << 32 | name) + 1; 0 = empty */
	uint32_t *hval;
	size_t hcap;
	size_t nstacks;
};

static void tree_init(struct tree *t, struct names *nm)
{
	memset(t, 0, sizeof(*t));
	hc_grow(&t->v, &t->cap, 1, sizeof(*t->v));
	t->v[0] = (struct tnode){.name = name_idx(nm, "(all)", "")};
	t->n = 1;
	t->hcap = 1024;
	t->hkey = hc_xcalloc(t->hcap, sizeof(*t->hkey));
	t->hval = hc_xcalloc(t->hcap, sizeof(*t->hval));
}

static void tree_free(struct tree *t)
{
	free(t->v);
	free(t->hkey);
	free(t->hval);
}

static size_t slot_of(uint64_t key, size_t cap)
{
	key ^= key >> 30;
	key *= 0xbf58476d1ce4e5b9ull;
	key ^= key >> 27;
	key *= 0x94d049bb133111ebull;
	key ^= key >> 31;
	return (size_t)key & (cap - 1);
}

static void tree_rehash(struct tree *t)
{
	size_t ncap = t->hcap * 2;
	uint64_t *nk = hc_xcalloc(ncap, sizeof(*nk));
	uint32_t *nv = hc_xcalloc(ncap, sizeof(*nv));
	for (size_t i = 0; i < t->hcap; i++) {
		if (!t->hkey[i])
			continue;
		size_t s = slot_of(t->hkey[i], ncap);
		while (nk[s])
			s = (s + 1) & (ncap - 1);
		nk[s] = t->hkey[i];
		nv[s] = t->hval[i];
	}
	free(t->hkey);
	free(t->hval);
	t->hkey = nk;
	t->hval = nv;
	t->hcap = ncap;
}

static uint32_t tree_child(struct tree *t, uint32_t parent, uint32_t name)
{
	uint64_t key = (((uint64_t)parent << 32) | name) + 1;
	size_t s = slot_of(key, t->hcap);
	while (t->hkey[s]) {
		if (t->hkey[s] == key)
			return t->hval[s];
		s = (s + 1) & (t->hcap - 1);
	}
	if (t->n >= UINT32_MAX - 1)
		hc_die(2, "report: too many frames");
	uint32_t idx = (uint32_t)t->n;
	hc_grow(&t->v, &t->cap, t->n + 1, sizeof(*t->v));
	t->v[idx] = (struct tnode){
	        .name = name, .next = t->v[parent].first, .depth = t->v[parent].depth + 1};
	t->v[parent].first = idx;
	t->n++;
	t->hkey[s] = key;
	t->hval[s] = idx;
	if (2 * t->n > t->hcap)
		tree_rehash(t);
	return idx;
}

/* One stack (frames leaf first), plus an optional pseudo-frame on top of
 * its leaf. libc's start-up frames at the root end are left out, as printed
 * stacks leave them out. */
static void tree_add(struct tree *t, struct names *nm, const struct hc_sample *s, const char *tip,
                     int64_t value)
{
	if (value == 0)
		return;
	t->nstacks++;
	size_t nf = s->nframes;
	while (nf > 0 && hc_frame_is_startup(s->frames[nf - 1].name))
		nf--;
	uint32_t cur = 0;
	t->v[0].value += value;
	for (size_t i = nf; i-- > 0;) {
		if (t->v[cur].depth >= HC_REPORT_MAX_DEPTH)
			break;
		cur = tree_child(t, cur, name_idx(nm, s->frames[i].name, s->frames[i].file));
		t->v[cur].value += value;
	}
	if (tip && t->v[cur].depth < HC_REPORT_MAX_DEPTH) {
		cur = tree_child(t, cur, name_idx(nm, tip, ""));
		t->v[cur].value += value;
	}
}

static int64_t mag(int64_t v)
{
	return v < 0 ? -v : v;
}

static int by_value_desc(const void *a, const void *b, void *arg)
{
	const struct tnode *v = arg;
	int64_t x = mag(v[*(const uint32_t *)a].value), y = mag(v[*(const uint32_t *)b].value);
	if (x != y)
		return x > y ? -1 : 1;
	return v[*(const uint32_t *)a].name < v[*(const uint32_t *)b].name ? -1 : 1;
}

struct walk_item {
	uint32_t node; /* UINT32_MAX: a merged "(N small)" node */
	uint32_t nsmall;
	int64_t vsmall;
};

/* Walk the tree as the page gets it: children of at least thr (in
 * magnitude) are kept, the others of each parent become one "(N small)"
 * node. Returns the number of nodes; with j, writes them in preorder as
 * [name, value, children] triples (name -N for a merged node). */
static size_t tree_walk(const struct tree *t, int64_t thr, struct hc_json *j)
{
	size_t cap = 64, n = 0, count = 0;
	struct walk_item *st = hc_xmalloc(cap * sizeof(*st));
	uint32_t *kids = NULL;
	size_t kcap = 0;
	st[n++] = (struct walk_item){0, 0, 0};
	while (n) {
		struct walk_item it = st[--n];
		count++;
		if (it.node == UINT32_MAX) {
			if (j) {
				hc_json_int(j, -(int64_t)it.nsmall);
				hc_json_int(j, it.vsmall);
				hc_json_int(j, 0);
			}
			continue;
		}
		const struct tnode *nd = &t->v[it.node];
		size_t nk = 0;
		uint32_t nsmall = 0;
		int64_t vsmall = 0;
		for (uint32_t c = nd->first; c; c = t->v[c].next) {
			if (mag(t->v[c].value) >= thr) {
				hc_grow(&kids, &kcap, nk + 1, sizeof(*kids));
				kids[nk++] = c;
			} else if (t->v[c].value) {
				nsmall++;
				vsmall += t->v[c].value;
			}
		}
		if (j) {
			qsort_r(kids, nk, sizeof(*kids), by_value_desc, t->v);
			hc_json_int(j, nd->name);
			hc_json_int(j, nd->value);
			hc_json_int(j, (int64_t)(nk + (nsmall > 0)));
		}
		/* Pushed in reverse, so popped in order: kept children, then the merged one. */
		hc_grow(&st, &cap, n + nk + 1, sizeof(*st));
		if (nsmall)
			st[n++] = (struct walk_item){UINT32_MAX, nsmall, vsmall};
		for (size_t k = nk; k-- > 0;)
			st[n++] = (struct walk_item){kids[k], 0, 0};
	}
	free(kids);
	free(st);
	return count;
}

/* ---- reading the leaks document ------------------------------------------ */

/* Just enough JSON to find top-level members of the document hc_leaks_run
 * wrote, read their strings and cut a list. NULL on anything malformed. */
static const char *js_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

static void put_utf8(char **o, unsigned cp)
{
	unsigned char *u = (unsigned char *)*o;
	if (cp < 0x80) {
		*u++ = (unsigned char)cp;
	} else if (cp < 0x800) {
		*u++ = (unsigned char)(0xc0 | cp >> 6);
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*u++ = (unsigned char)(0xe0 | cp >> 12);
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else {
		*u++ = (unsigned char)(0xf0 | cp >> 18);
		*u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	}
	*o = (char *)u;
}

static int hex4(const char *p, const char *e, unsigned *out)
{
	if (e - p < 4)
		return -1;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* A string at p (at its quote); *out (when wanted) gets it decoded. */
static const char *js_string(const char *p, const char *e, char **out)
{
	if (p >= e || *p != '"')
		return NULL;
	p++;
	char *buf = out ? hc_xmalloc((size_t)(e - p) + 1) : NULL, *o = buf;
	while (p < e && *p != '"') {
		char c = *p++;
		if (c != '\\') {
			if (o)
				*o++ = c;
			continue;
		}
		if (p >= e)
			break;
		c = *p++;
		unsigned cp;
		switch (c) {
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			if (hex4(p, e, &cp)) {
				free(buf);
				return NULL;
			}
			p += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && e - p >= 6 && p[0] == '\\' &&
			    p[1] == 'u') {
				unsigned lo;
				if (!hex4(p + 2, e, &lo) && lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				}
			}
			break;
		default:
			cp = (unsigned char)c;
		}
		if (o)
			put_utf8(&o, cp);
	}
	if (p >= e) {
		free(buf);
		return NULL;
	}
	if (o) {
		*o = 0;
		*out = buf;
	}
	return p + 1;
}

static const char *js_value(const char *p, const char *e, int depth)
{
	p = js_ws(p, e);
	if (p >= e || depth > 200)
		return NULL;
	if (*p == '"')
		return js_string(p, e, NULL);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		p = js_ws(p + 1, e);
		if (p < e && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				p = js_string(js_ws(p, e), e, NULL);
				p = p ? js_ws(p, e) : NULL;
				if (!p || p >= e || *p != ':')
					return NULL;
				p++;
			}
			p = js_value(p, e, depth + 1);
			p = p ? js_ws(p, e) : NULL;
			if (!p || p >= e)
				return NULL;
			if (*p == close)
				return p + 1;
			if (*p != ',')
				return NULL;
			p++;
		}
	}
	const char *s = p;
	while (p < e && strchr("+-.0123456789eEtruefalsn", *p))
		p++;
	return p > s ? p : NULL;
}

/* The value of a top-level member: [*b, *end). */
static int js_member(const char *doc, size_t len, const char *key, const char **b, const char **end)
{
	const char *e = doc + len, *p = js_ws(doc, e);
	if (p >= e || *p != '{')
		return -1;
	p = js_ws(p + 1, e);
	while (p < e && *p != '}') {
		char *k = NULL;
		p = js_string(p, e, &k);
		p = p ? js_ws(p, e) : NULL;
		if (!p || p >= e || *p != ':') {
			free(k);
			return -1;
		}
		const char *vb = js_ws(p + 1, e), *ve = js_value(vb, e, 0);
		if (!ve) {
			free(k);
			return -1;
		}
		bool hit = !strcmp(k, key);
		free(k);
		if (hit) {
			*b = vb;
			*end = ve;
			return 0;
		}
		p = js_ws(ve, e);
		if (p < e && *p == ',')
			p = js_ws(p + 1, e);
	}
	return -1;
}

/* A cut of the document: [b, e) is left out. */
struct cut {
	const char *b, *e;
	size_t omitted;
};

/* Cut the array [b, e) after max elements. */
static struct cut cut_array(const char *b, const char *e, size_t max)
{
	struct cut c = {NULL, NULL, 0};
	const char *p = js_ws(b + 1, e), *keep_end = NULL;
	size_t n = 0;
	while (p && p < e && *p != ']') {
		const char *ve = js_value(p, e, 0);
		if (!ve)
			return c;
		if (++n == max)
			keep_end = ve;
		p = js_ws(ve, e);
		if (p < e && *p == ',')
			p = js_ws(p + 1, e);
	}
	if (n > max && p) {
		c.b = keep_end;
		c.e = p;
		c.omitted = n - max;
	}
	return c;
}

/* The heap dumps the analysis used, in its order (its "files"). */
static char **series_files(const char *jdoc, size_t jlen, size_t *n)
{
	const char *fb, *fe;
	if (js_member(jdoc, jlen, "files", &fb, &fe) || *fb != '[')
		hc_die(2, "report: cannot read the analysis (a bug)");
	char **used = NULL;
	size_t nused = 0, cap = 0;
	for (const char *p = js_ws(fb + 1, fe); p && p < fe && *p == '"';) {
		hc_grow(&used, &cap, nused + 1, sizeof(*used));
		p = js_string(p, fe, &used[nused]);
		if (!p)
			hc_die(2, "report: cannot read the analysis (a bug)");
		nused++;
		p = js_ws(p, fe);
		if (p < fe && *p == ',')
			p = js_ws(p + 1, fe);
	}
	if (!nused)
		hc_die(2, "report: no heap profile among the files");
	*n = nused;
	return used;
}

/* The analysis with its stacks and threads lists cut after
 * HC_REPORT_MAX_LISTED entries (a new string; how many were left out). */
static char *cut_lists(const char *jdoc, size_t jlen, size_t *len, size_t *stacks_omitted,
                       size_t *threads_omitted)
{
	struct cut cuts[2] = {{0}};
	const char *lb, *le;
	if (!js_member(jdoc, jlen, "stacks", &lb, &le) && *lb == '[')
		cuts[0] = cut_array(lb, le, HC_REPORT_MAX_LISTED);
	if (!js_member(jdoc, jlen, "threads", &lb, &le) && *lb == '[')
		cuts[1] = cut_array(lb, le, HC_REPORT_MAX_LISTED);
	*stacks_omitted = cuts[0].omitted;
	*threads_omitted = cuts[1].omitted;
	if (cuts[1].b && cuts[0].b && cuts[1].b < cuts[0].b) {
		struct cut t = cuts[0];
		cuts[0] = cuts[1];
		cuts[1] = t;
	}
	char *d = NULL;
	FILE *df = open_memstream(&d, len);
	if (!df)
		hc_die(2, "out of memory");
	const char *p = jdoc;
	for (int k = 0; k < 2; k++) {
		if (!cuts[k].b)
			continue;
		fwrite(p, 1, (size_t)(cuts[k].b - p), df);
		p = cuts[k].e;
	}
	fwrite(p, 1, (size_t)(jdoc + jlen - p), df);
	fclose(df);
	return d;
}

/* ---- output --------------------------------------------------------------- */

/* A raw JSON value after a key (hc_json has just written the key). */
static void json_raw(struct hc_json *j, const char *b, size_t len)
{
	j->after_key = false;
	j->first[j->depth] = false;
	fwrite(b, 1, len, j->f);
}

/* The blob goes inside <script>: no "</" or "<!--" may appear in it. Both
 * can only be inside strings, where "<\/" and "\u003c" mean the same. */
static void put_escaped(FILE *o, const char *s, size_t len)
{
	size_t from = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] != '<')
			continue;
		if (s[i + 1] == '/') {
			fwrite(s + from, 1, i + 1 - from, o);
			fputs("\\", o);
			from = i + 1;
		} else if (s[i + 1] == '!') {
			fwrite(s + from, 1, i - from, o);
			fputs("\\u003c", o);
			from = i + 1;
		}
	}
	fwrite(s + from, 1, len - from, o);
}

struct tree_spec {
	const char *id, *title, *sample, *unit, *file, *note;
	struct tree *t;
};

static int by_mag_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x > y ? -1 : x < y;
}

/* The smallest threshold, from a millionth of the total up, at which the
 * tree fits in max_nodes. Where values do not grow from leaf to root (no
 * negative values), the nodes of at least thr are whole subtrees from the
 * root, and each adds at most one merged node: the k-th largest value fits
 * for k = max_nodes / 2. From there, a binary search between that and the
 * max_nodes-th largest, each step one walk of only the kept part. */
static int64_t pick_threshold(const struct tree *t, size_t max_nodes)
{
	int64_t floor_thr = mag(t->v[0].value) / 1000000;
	if (floor_thr < 1)
		floor_thr = 1;
	if (t->n <= max_nodes)
		return floor_thr;
	int64_t *v = hc_xmalloc(t->n * sizeof(*v));
	for (size_t i = 0; i < t->n; i++)
		v[i] = mag(t->v[i].value);
	qsort(v, t->n, sizeof(*v), by_mag_desc);
	size_t lo = max_nodes / 2, hi = max_nodes < t->n ? max_nodes : t->n - 1;
	int64_t thr = v[lo] > floor_thr ? v[lo] : floor_thr;
	if (tree_walk(t, thr, NULL) > max_nodes) {
		while (tree_walk(t, thr, NULL) > max_nodes)
			thr += thr / 4 + 1;
		free(v);
		return thr;
	}
	while (lo < hi) { /* v[lo] fits; find the last index that does */
		size_t mid = lo + (hi - lo + 1) / 2;
		int64_t m = v[mid] > floor_thr ? v[mid] : floor_thr;
		if (tree_walk(t, m, NULL) <= max_nodes)
			lo = mid;
		else
			hi = mid - 1;
	}
	thr = v[lo] > floor_thr ? v[lo] : floor_thr;
	free(v);
	return thr;
}

static void write_tree(struct hc_json *j, const struct tree_spec *ts, size_t max_nodes)
{
	const struct tree *t = ts->t;
	int64_t total = t->v[0].value;
	int64_t thr = pick_threshold(t, max_nodes);
	hc_json_obj(j);
	hc_json_kstr(j, "id", ts->id);
	hc_json_kstr(j, "title", ts->title);
	hc_json_kstr(j, "sample", ts->sample);
	hc_json_kstr(j, "unit", ts->unit);
	hc_json_kstr(j, "file", ts->file);
	hc_json_kstr(j, "note", ts->note);
	hc_json_kint(j, "total", total);
	hc_json_kint(j, "stacks", (int64_t)t->nstacks);
	hc_json_kint(j, "frames_all", (int64_t)t->n);
	hc_json_kint(j, "merged_below", thr);
	hc_json_key(j, "nodes");
	hc_json_arr(j);
	tree_walk(t, thr, j);
	hc_json_arr_end(j);
	hc_json_obj_end(j);
}

/* A new tree and its description. */
static struct tree_spec spec(struct names *nm, const char *id, const char *title,
                             const char *sample, const char *unit, const char *file,
                             const char *note)
{
	struct tree_spec ts = {.id = id,
	                       .title = title,
	                       .sample = sample,
	                       .unit = unit,
	                       .file = file,
	                       .note = note,
	                       .t = hc_xmalloc(sizeof(struct tree))};
	tree_init(ts.t, nm);
	return ts;
}

/* The flame graphs: inuse_space at the last dump, its growth and shrink
 * since the first (per stack, as `heaptap leaks` merges stacks), alloc_space
 * at the last dump, threads at the last thread dump. Returns how many. */
static size_t build_trees(const struct hc_prof *first, const struct hc_prof *last,
                          const struct hc_prof *thr, struct names *nm, struct tree_spec *out)
{
	size_t n = 0;
	int iu = hc_prof_type(last, "inuse_space"), ia = hc_prof_type(last, "alloc_space");
	int fiu = first ? hc_prof_type(first, "inuse_space") : -1;
	if (iu >= 0) {
		out[n] = spec(nm, "inuse", "Live heap", "inuse_space", "bytes", last->path,
		              "memory in use at the last dump, by the stack that allocated it");
		for (size_t i = 0; i < last->nsamples; i++)
			tree_add(out[n].t, nm, &last->samples[i], NULL,
			         last->samples[i].values[iu]);
		n++;
	}
	if (iu >= 0 && fiu >= 0) {
		struct hc_stacks st;
		hc_stacks_init(&st, 2);
		for (size_t i = 0; i < first->nsamples; i++)
			hc_stacks_row(&st, &first->samples[i])->v[0] +=
			        (double)first->samples[i].values[fiu];
		for (size_t i = 0; i < last->nsamples; i++)
			hc_stacks_row(&st, &last->samples[i])->v[1] +=
			        (double)last->samples[i].values[iu];
		struct hc_row **rows = hc_stacks_list(&st);
		struct tree_spec *g = &out[n++], *sh = &out[n++];
		*g = spec(nm, "growth", "Growth", "inuse_space", "bytes", last->path,
		          "live heap at the last dump minus the first, per stack: the stacks that "
		          "grew");
		*sh = spec(nm, "shrink", "Shrink", "inuse_space", "bytes", last->path,
		           "live heap at the first dump minus the last, per stack: the stacks that "
		           "gave memory back");
		for (size_t i = 0; i < st.n; i++) {
			int64_t d = (int64_t)(rows[i]->v[1] - rows[i]->v[0]);
			if (d > 0)
				tree_add(g->t, nm, rows[i]->rep, NULL, d);
			else if (d < 0)
				tree_add(sh->t, nm, rows[i]->rep, NULL, -d);
		}
		free(rows);
		hc_stacks_free(&st);
	}
	if (ia >= 0) {
		out[n] = spec(nm, "alloc", "Allocated", "alloc_space", "bytes", last->path,
		              "bytes allocated since the program started, by stack (freed or not)");
		for (size_t i = 0; i < last->nsamples; i++)
			tree_add(out[n].t, nm, &last->samples[i], NULL,
			         last->samples[i].values[ia]);
		n++;
	}
	if (thr && thr->ntypes) {
		out[n] = spec(nm, "threads", "Threads", thr->types[0], "count", thr->path,
		              "live threads at the last dump, by the stack that created them");
		for (size_t i = 0; i < thr->nsamples; i++) {
			const struct hc_sample *s = &thr->samples[i];
			const char *st = hc_sample_label(s, "state");
			bool unj = st && !strcmp(st, "unjoined");
			tree_add(out[n].t, nm, s, unj ? "[ended, never joined]" : NULL,
			         s->values[0]);
		}
		n++;
	}
	return n;
}

/* The thread profile of the last dump: beside it, or among the files given. */
static char *thread_file_for(const char *heap, char **files, size_t nfiles)
{
	const char *suf = ".heap.pb.gz";
	size_t n = strlen(heap), sl = strlen(suf);
	if (n < sl || strcmp(heap + n - sl, suf))
		return NULL;
	char *sib = hc_xmalloc(n + 8);
	memcpy(sib, heap, n - sl);
	strcpy(sib + n - sl, ".threads.pb.gz");
	if (access(sib, R_OK) == 0)
		return sib;
	char *want = basename(sib);
	for (size_t i = 0; i < nfiles; i++) {
		char *copy = hc_xstrdup(files[i]);
		bool same = !strcmp(basename(copy), want);
		free(copy);
		if (same && access(files[i], R_OK) == 0) {
			free(sib);
			return hc_xstrdup(files[i]);
		}
	}
	free(sib);
	return NULL;
}

static void usage_die(void)
{
	hc_die(2, "report: usage: heaptap report -o OUT.html [--min-growth BYTES] "
	          "[--max-nodes N] FILE...");
}

/* Write the page to out ("-" = stdout), through a temporary file beside it
 * that is renamed into place, so no half page is ever seen there. */
static void write_page(const char *out, const char *blob, size_t bloblen)
{
	static const char marker[] = "@HT_DATA@";
	const char *tpl = (const char *)hc_report_template;
	size_t tlen = hc_report_template_len;
	const char *m = memmem(tpl, tlen, marker, sizeof(marker) - 1);
	if (!m)
		hc_die(2, "report: the page template has no data marker (a build problem)");
	FILE *o = stdout;
	char *tmp = NULL;
	if (strcmp(out, "-")) {
		tmp = hc_xmalloc(strlen(out) + 16);
		sprintf(tmp, "%s.tmpXXXXXX", out);
		int fd = mkstemp(tmp);
		if (fd < 0)
			hc_die(1, "report: cannot write %s: %s", out, strerror(errno));
		mode_t um = umask(0);
		umask(um);
		if (fchmod(fd, 0666 & ~um) != 0 || !(o = fdopen(fd, "w"))) {
			unlink(tmp);
			hc_die(1, "report: cannot write %s: %s", out, strerror(errno));
		}
	}
	fwrite(tpl, 1, (size_t)(m - tpl), o);
	put_escaped(o, blob, bloblen);
	const char *rest = m + sizeof(marker) - 1;
	fwrite(rest, 1, tlen - (size_t)(rest - tpl), o);
	if (tmp) {
		int bad = ferror(o);
		bad |= fflush(o) != 0;
		bad |= fsync(fileno(o)) != 0 && errno != EINVAL;
		bad |= fclose(o) != 0;
		if (bad || rename(tmp, out) != 0) {
			int e = errno;
			unlink(tmp);
			hc_die(1, "report: cannot write %s: %s", out, strerror(e));
		}
		free(tmp);
	} else if (fflush(o) != 0) {
		hc_die(1, "report: cannot write the page: %s", strerror(errno));
	}
}

int hc_cmd_report(int argc, char **argv)
{
	const char *out = NULL;
	double min_growth = 256 << 10;
	long max_nodes = 20000;
	static const struct option opts[] = {{"output", required_argument, 0, 'o'},
	                                     {"min-growth", required_argument, 0, 'g'},
	                                     {"max-nodes", required_argument, 0, 'm'},
	                                     {"help", no_argument, 0, 'h'},
	                                     {0, 0, 0, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'g':
			if (hc_parse_size(optarg, &min_growth) != 0)
				hc_die(2, "report: --min-growth wants bytes (e.g. 256K, 4M): %s",
				       optarg);
			break;
		case 'm': {
			char *end;
			max_nodes = strtol(optarg, &end, 10);
			if (*end || max_nodes < 100 || max_nodes > 10000000)
				hc_die(2, "report: --max-nodes wants a number from 100 up: %s",
				       optarg);
			break;
		}
		case 'h':
			printf("usage: heaptap report -o OUT.html [--min-growth BYTES] "
			       "[--max-nodes N] FILE...\n");
			return 0;
		default:
			usage_die();
		}
	}
	if (optind >= argc)
		hc_die(2, "report: give the dumps of one process (heaptap.PID.*.heap.pb.gz) and "
		          "-o OUT.html");
	if (!out)
		hc_die(2, "report: say where the page goes: -o OUT.html (or -o - for stdout)");
	char **files = argv + optind;
	size_t nfiles = (size_t)(argc - optind);

	/* The analysis, as `heaptap leaks --json` and `heaptap leaks` print it. */
	char *jdoc = NULL, *tdoc = NULL;
	size_t jlen = 0, tlen = 0;
	FILE *jf = open_memstream(&jdoc, &jlen), *tf = open_memstream(&tdoc, &tlen);
	if (!jf || !tf)
		hc_die(2, "out of memory");
	struct hc_leaks_opts lo = {.min_growth = min_growth,
	                           .show = 5,
	                           .fail_leak = true,
	                           .fail_threads = true,
	                           .fail_retention = false};
	hc_leaks_run(files, nfiles, &lo, jf, tf);
	fclose(jf);
	fclose(tf);
	while (jlen && (jdoc[jlen - 1] == '\n' || jdoc[jlen - 1] == ' '))
		jlen--;

	/* The dumps it used, in order. */
	size_t nused;
	char **used = series_files(jdoc, jlen, &nused);

	size_t doclen, stacks_omitted, threads_omitted;
	char *doc = cut_lists(jdoc, jlen, &doclen, &stacks_omitted, &threads_omitted);

	/* The trees. */
	struct hc_prof *last = hc_prof_load_or_die(used[nused - 1]);
	struct hc_prof *first = nused > 1 ? hc_prof_load_or_die(used[0]) : NULL;
	char *thr_path = thread_file_for(used[nused - 1], files, nfiles);
	struct hc_prof *thr = thr_path ? hc_prof_load_or_die(thr_path) : NULL;
	if (thr && thr->kind != HC_THREADS) {
		hc_prof_free(thr);
		thr = NULL;
	}
	struct names nm = {0};
	struct tree_spec specs[5];
	size_t nspecs = build_trees(first, last, thr, &nm, specs);

	/* The blob. */
	char *blob = NULL;
	size_t bloblen = 0;
	FILE *bf = open_memstream(&blob, &bloblen);
	if (!bf)
		hc_die(2, "out of memory");
	struct hc_json j;
	hc_json_init(&j, bf);
	hc_json_obj(&j);
	hc_json_kstr(&j, "format", "heaptap-report/1");
	hc_json_kstr(&j, "heaptap_version", HC_VERSION);
	hc_json_key(&j, "leaks");
	json_raw(&j, doc, doclen);
	hc_json_key(&j, "leaks_omitted");
	hc_json_obj(&j);
	hc_json_kint(&j, "stacks", (int64_t)stacks_omitted);
	hc_json_kint(&j, "threads", (int64_t)threads_omitted);
	hc_json_obj_end(&j);
	hc_json_kstr(&j, "leaks_text", tdoc); /* open_memstream ends it with a 0 */
	hc_json_kstr(&j, "first_file", used[0]);
	hc_json_kstr(&j, "last_file", used[nused - 1]);
	hc_json_key(&j, "threads_file");
	if (thr)
		hc_json_str(&j, thr->path);
	else
		hc_json_null(&j);
	hc_json_key(&j, "names");
	hc_json_arr(&j);
	for (size_t i = 0; i < nm.names.n; i++)
		hc_json_str(&j, nm.names.v[i]);
	hc_json_arr_end(&j);
	hc_json_key(&j, "name_files");
	hc_json_arr(&j);
	for (size_t i = 0; i < nm.names.n; i++)
		hc_json_int(&j, nm.file_of[i]);
	hc_json_arr_end(&j);
	hc_json_key(&j, "source_files");
	hc_json_arr(&j);
	for (size_t i = 0; i < nm.files.n; i++)
		hc_json_str(&j, nm.files.v[i]);
	hc_json_arr_end(&j);
	hc_json_key(&j, "trees");
	hc_json_arr(&j);
	for (size_t i = 0; i < nspecs; i++)
		write_tree(&j, &specs[i], (size_t)max_nodes);
	hc_json_arr_end(&j);
	hc_json_obj_end(&j);
	fclose(bf);

	write_page(out, blob, bloblen);

	free(blob);
	for (size_t i = 0; i < nspecs; i++) {
		tree_free(specs[i].t);
		free(specs[i].t);
	}
	strtab_free(&nm.names);
	strtab_free(&nm.files);
	free(nm.file_of);
	hc_prof_free(last);
	hc_prof_free(first);
	hc_prof_free(thr);
	free(thr_path);
	for (size_t i = 0; i < nused; i++)
		free(used[i]);
	free(used);
	free(doc);
	free(jdoc);
	free(tdoc);
	return 0;
}
