/*
 * test_profile.c - the profile builder, round trip: rows in, gzipped
 * profile.proto out, decoded by protoc (and read by `go tool pprof -raw`),
 * compared with hand-computed values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "maps.h"
#include "mem.h"
#include "profile.h"
#include "unit_util.h"

/* ---------------------------------------------------------------------------
 * Addresses with known names and lines in this very file. */

struct probe {
	uintptr_t leaf, caller; /* return addresses, as an unwinder reports them */
	int leaf_line, caller_line;
};

#define BARRIER() __asm__ volatile("" ::: "memory")

__attribute__((noinline)) static uintptr_t return_address(void)
{
	uintptr_t r = (uintptr_t)__builtin_return_address(0);
	BARRIER();
	return r;
}

__attribute__((noinline, used)) void probe_leaf(struct probe *p)
{
	p->leaf_line = __LINE__ + 1;
	p->leaf = return_address();
	p->caller = (uintptr_t)__builtin_return_address(0);
	BARRIER();
}

__attribute__((noinline, used)) void probe_root(struct probe *p)
{
	p->caller_line = __LINE__ + 1;
	probe_leaf(p);
	BARRIER();
}

/* ---------------------------------------------------------------------------
 * protoc's text format, read into a tree. */

struct node {
	char *name, *value;
	struct node *kids;
	size_t n, cap;
};

/* The top-level repeated messages, in order and by id. */
struct table {
	struct node **v;
	size_t n;
	struct node **byid; /* maxid + 1 entries */
	unsigned long long maxid;
};

struct prof {
	struct node root;
	char *text;
	char **strs;
	size_t nstrs;
	struct table samples, mappings, locations, functions;
};

static char *parse_block(struct node *parent, char *p)
{
	while (*p) {
		char *eol = strchr(p, '\n');
		if (eol)
			*eol = 0;
		char *line = p;
		p = eol ? eol + 1 : p + strlen(p);
		while (*line == ' ')
			line++;
		if (!*line)
			continue;
		if (strcmp(line, "}") == 0)
			return p;
		if (parent->n == parent->cap) {
			parent->cap = parent->cap ? parent->cap * 2 : 8;
			parent->kids = realloc(parent->kids, parent->cap * sizeof(*parent->kids));
			assert_non_null(parent->kids);
		}
		struct node *k = &parent->kids[parent->n++];
		memset(k, 0, sizeof(*k));
		size_t len = strlen(line);
		if (len >= 2 && strcmp(line + len - 2, " {") == 0) {
			line[len - 2] = 0;
			k->name = line;
			p = parse_block(k, p);
		} else {
			char *colon = strstr(line, ": ");
			assert_non_null(colon);
			*colon = 0;
			k->name = line;
			k->value = colon + 2;
		}
	}
	return p;
}

static void free_node(struct node *n)
{
	for (size_t i = 0; i < n->n; i++)
		free_node(&n->kids[i]);
	free(n->kids);
}

static struct node *kid(const struct node *n, const char *name, size_t idx)
{
	for (size_t i = 0; i < n->n; i++)
		if (strcmp(n->kids[i].name, name) == 0 && idx-- == 0)
			return &n->kids[i];
	return NULL;
}

static size_t count(const struct node *n, const char *name)
{
	size_t c = 0;
	for (size_t i = 0; i < n->n; i++)
		c += strcmp(n->kids[i].name, name) == 0;
	return c;
}

/* Integer value of the idx-th field name; 0 when absent (proto3). */
static long long numi(const struct node *n, const char *name, size_t idx)
{
	const struct node *k = kid(n, name, idx);
	if (!k)
		return 0;
	if (strcmp(k->value, "true") == 0)
		return 1;
	return strtoll(k->value, NULL, 10);
}

static long long num(const struct node *n, const char *name)
{
	return numi(n, name, 0);
}

static unsigned long long unum(const struct node *n, const char *name)
{
	const struct node *k = kid(n, name, 0);
	return k ? strtoull(k->value, NULL, 10) : 0;
}

/* Unquote a protoc string value in place: "..." with C escapes. */
static char *unquote(char *v)
{
	size_t len = strlen(v);
	assert_true(len >= 2 && v[0] == '"' && v[len - 1] == '"');
	v[len - 1] = 0;
	char *in = v + 1, *out = v;
	while (*in) {
		if (*in != '\\') {
			*out++ = *in++;
			continue;
		}
		in++;
		if (*in >= '0' && *in <= '7') {
			int c = 0;
			for (int i = 0; i < 3 && *in >= '0' && *in <= '7'; i++)
				c = c * 8 + (*in++ - '0');
			*out++ = (char)c;
			continue;
		}
		char c = *in++;
		*out++ = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
	}
	*out = 0;
	return v;
}

static const char *str(const struct prof *p, long long idx)
{
	assert_true(idx >= 0 && (size_t)idx < p->nstrs);
	return p->strs[idx];
}

/* gunzip (the buffer must be one complete gzip stream) */
static void *gunzip(const struct ht_buf *gz, size_t *len)
{
	assert_true(gz->len > 18);
	assert_int_equal(gz->data[0], 0x1f);
	assert_int_equal(gz->data[1], 0x8b);
	size_t cap = 1 << 20, n = 0;
	uint8_t *out = malloc(cap);
	z_stream z;
	memset(&z, 0, sizeof(z));
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = gz->data;
	z.avail_in = (uInt)gz->len;
	int r;
	do {
		if (cap - n < 65536) {
			cap *= 2;
			out = realloc(out, cap);
		}
		z.next_out = out + n;
		z.avail_out = (uInt)(cap - n);
		r = inflate(&z, Z_NO_FLUSH);
		n = cap - z.avail_out;
		assert_true(r == Z_OK || r == Z_STREAM_END);
	} while (r != Z_STREAM_END);
	assert_int_equal(z.avail_in, 0); /* nothing after the stream */
	inflateEnd(&z);
	*len = n;
	return out;
}

static unsigned long long unum(const struct node *n, const char *name);

/* Collect the top-level messages called name; with ids, index them by id
 * (ids must be non-zero and unique). */
static void table_fill(struct table *t, const struct node *root, const char *name, bool ids)
{
	memset(t, 0, sizeof(*t));
	t->v = calloc(root->n + 1, sizeof(*t->v));
	for (size_t i = 0; i < root->n; i++)
		if (strcmp(root->kids[i].name, name) == 0)
			t->v[t->n++] = &root->kids[i];
	if (!ids)
		return;
	for (size_t i = 0; i < t->n; i++) {
		unsigned long long id = unum(t->v[i], "id");
		assert_true(id != 0);
		assert_true(id <= 10 * t->n + 10); /* keeps the index small */
		if (id > t->maxid)
			t->maxid = id;
	}
	t->byid = calloc(t->maxid + 1, sizeof(*t->byid));
	for (size_t i = 0; i < t->n; i++) {
		unsigned long long id = unum(t->v[i], "id");
		assert_null(t->byid[id]); /* unique */
		t->byid[id] = t->v[i];
	}
}

static void table_free(struct table *t)
{
	free(t->v);
	free(t->byid);
}

/* Decode a gzipped profile with protoc and read the text back. */
static void decode(const struct ht_buf *gz, struct prof *p)
{
	size_t len;
	void *data = gunzip(gz, &len);
	memset(p, 0, sizeof(*p));
	p->text = unit_protoc_decode(data, len, "test_profile");
	free(data);

	parse_block(&p->root, p->text);
	p->strs = calloc(p->root.n + 1, sizeof(char *));
	for (size_t i = 0; i < p->root.n; i++)
		if (strcmp(p->root.kids[i].name, "string_table") == 0)
			p->strs[p->nstrs++] = unquote(p->root.kids[i].value);
	table_fill(&p->samples, &p->root, "sample", false);
	table_fill(&p->mappings, &p->root, "mapping", true);
	table_fill(&p->locations, &p->root, "location", true);
	table_fill(&p->functions, &p->root, "function", true);
}

static void prof_free(struct prof *p)
{
	free_node(&p->root);
	free(p->strs);
	table_free(&p->samples);
	table_free(&p->mappings);
	table_free(&p->locations);
	table_free(&p->functions);
	free(p->text);
}

static const struct table *table_of(const struct prof *p, const char *what)
{
	if (strcmp(what, "mapping") == 0)
		return &p->mappings;
	if (strcmp(what, "location") == 0)
		return &p->locations;
	if (strcmp(what, "function") == 0)
		return &p->functions;
	return &p->samples;
}

static struct node *by_id(const struct prof *p, const char *what, unsigned long long id)
{
	const struct table *t = table_of(p, what);
	return id <= t->maxid && t->byid ? t->byid[id] : NULL;
}

/* i-th top-level message of a kind, NULL past the end. */
static struct node *nth(const struct prof *p, const char *what, size_t i)
{
	const struct table *t = table_of(p, what);
	return i < t->n ? t->v[i] : NULL;
}

/* pprof's validity rules (profile.CheckValid), plus string_table[0] == "". */
static void check_valid(const struct prof *p, size_t nvalues)
{
	assert_true(p->nstrs >= 1);
	assert_string_equal(p->strs[0], "");
	assert_int_equal(count(&p->root, "sample_type"), nvalues);
	/* Ids non-zero and unique: checked by table_fill. */
	for (size_t i = 0; i < p->samples.n; i++) {
		const struct node *s = p->samples.v[i];
		assert_int_equal(count(s, "value"), nvalues);
		for (size_t j = 0; j < s->n; j++)
			if (strcmp(s->kids[j].name, "location_id") == 0)
				assert_non_null(
				        by_id(p, "location", strtoull(s->kids[j].value, NULL, 10)));
	}
	for (size_t i = 0; i < p->locations.n; i++) {
		const struct node *l = p->locations.v[i];
		unsigned long long m = unum(l, "mapping_id");
		if (m) {
			const struct node *mp = by_id(p, "mapping", m);
			assert_non_null(mp);
			unsigned long long a = unum(l, "address");
			assert_true(a >= unum(mp, "memory_start") && a < unum(mp, "memory_limit"));
		}
		for (size_t j = 0; j < count(l, "line"); j++) {
			const struct node *fn =
			        by_id(p, "function", unum(kid(l, "line", j), "function_id"));
			assert_non_null(fn);
			str(p, num(fn, "name"));
			str(p, num(fn, "filename"));
		}
	}
}

/* Function name / file / line of the location with this address. */
static const struct node *loc_at(const struct prof *p, unsigned long long addr)
{
	for (size_t i = 0; i < p->locations.n; i++)
		if (unum(p->locations.v[i], "address") == addr)
			return p->locations.v[i];
	return NULL;
}

static const char *loc_func(const struct prof *p, const struct node *l, long long *line,
                            const char **file)
{
	const struct node *ln = kid(l, "line", 0);
	if (!ln)
		return NULL;
	const struct node *fn = by_id(p, "function", unum(ln, "function_id"));
	assert_non_null(fn);
	if (line)
		*line = num(ln, "line");
	if (file)
		*file = str(p, num(fn, "filename"));
	assert_string_equal(str(p, num(fn, "name")), str(p, num(fn, "system_name")));
	return str(p, num(fn, "name"));
}

static void check_value_type(const struct prof *p, const struct node *vt, const char *type,
                             const char *unit)
{
	assert_non_null(vt);
	assert_string_equal(str(p, num(vt, "type")), type);
	assert_string_equal(str(p, num(vt, "unit")), unit);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Run `go tool pprof -raw`; NULL (with a message) when go is absent. */
static char *go_pprof_raw(const struct ht_buf *gz)
{
	if (system("command -v go >/dev/null 2>&1") != 0) {
		print_message("go not found: skipping the `go tool pprof -raw` check\n");
		return NULL;
	}
	char dir[PATH_MAX / 2], file[PATH_MAX], cmd[4 * PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/test_profile.go.%d", HT_TEST_TMPDIR, (int)getpid());
	snprintf(file, sizeof(file), "%s/p.pb.gz", dir);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
	assert_int_equal(system(cmd), 0);
	unit_write_file(file, gz->data, gz->len);
	snprintf(cmd, sizeof(cmd),
	         "HOME='%s' GOCACHE='%s/cache' GOFLAGS= PPROF_TMPDIR='%s' go tool pprof -raw '%s' "
	         "2>&1",
	         dir, dir, dir, file);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t cap = 1 << 20, n = 0;
	char *out = malloc(cap);
	size_t r;
	while ((r = fread(out + n, 1, cap - 1 - n, f)) > 0)
		n += r;
	out[n] = 0;
	int rc = pclose(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		print_message("could not remove %s\n", dir);
	if (rc != 0)
		fail_msg("go tool pprof -raw failed:\n%s", out);
	return out;
}

/* ---------------------------------------------------------------------------
 * Tests */

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

#define RATE       524288
#define TIME_NS    1700000000123456789LL
#define UNKNOWN_PC ((uintptr_t)0x11)

static void test_heap(void **state)
{
	(void)state;
	struct probe pr;
	probe_root(&pr);

	uintptr_t stack_a[2] = {pr.leaf, pr.caller};
	uintptr_t stack_b[1] = {UNKNOWN_PC};
	struct ht_heap_row rows[] = {
	        {stack_a, 2, 100, 1.5, 150.4, 0.49, 49.5},
	        {stack_b, 1, 4096, 2.5, 10240.5, 1e12 + 0.4, 3.499999},
	        {stack_a + 1, 1, 8, 1, 8, 1, 8},
	};
	const char *comments[] = {"rss: 12345 bytes", "dropped: 0", "with \"quotes\" and \\"};
	struct ht_profile_input in = {.rate = RATE,
	                              .time_nanos = TIME_NS,
	                              .heap = rows,
	                              .nheap = 3,
	                              .comments = comments,
	                              .ncomments = 3};
	struct ht_buf out = {0};
	assert_int_equal(ht_buf_append(&out, "keep", 4), 0);
	int fds = count_fds();
	assert_int_equal(ht_profile_heap(&in, NULL, &out), 0);
	assert_int_equal(count_fds(), fds); /* libdw closed everything */
	/* Appended after what was there. */
	assert_memory_equal(out.data, "keep", 4);
	struct ht_buf gz = {out.data + 4, out.len - 4, out.len - 4};

	struct prof p;
	decode(&gz, &p);
	check_valid(&p, 4);

	/* Types, in order, and the period. */
	check_value_type(&p, kid(&p.root, "sample_type", 0), "alloc_objects", "count");
	check_value_type(&p, kid(&p.root, "sample_type", 1), "alloc_space", "bytes");
	check_value_type(&p, kid(&p.root, "sample_type", 2), "inuse_objects", "count");
	check_value_type(&p, kid(&p.root, "sample_type", 3), "inuse_space", "bytes");
	assert_string_equal(str(&p, num(&p.root, "default_sample_type")), "inuse_space");
	check_value_type(&p, kid(&p.root, "period_type", 0), "space", "bytes");
	assert_int_equal(num(&p.root, "period"), RATE);
	assert_int_equal(num(&p.root, "time_nanos"), TIME_NS);
	assert_int_equal(count(&p.root, "comment"), 3);
	assert_string_equal(str(&p, numi(&p.root, "comment", 0)), comments[0]);
	assert_string_equal(str(&p, numi(&p.root, "comment", 1)), comments[1]);
	assert_string_equal(str(&p, numi(&p.root, "comment", 2)), comments[2]);

	/* Values: llround of each double, in the sample_type order. */
	static const long long want[3][4] = {
	        {2, 150, 0, 50},
	        {3, 10241, 1000000000000LL, 3},
	        {1, 8, 1, 8},
	};
	static const long long want_bytes[3] = {100, 4096, 8};
	assert_int_equal(p.samples.n, 3);
	for (int i = 0; i < 3; i++) {
		const struct node *s = nth(&p, "sample", i);
		for (int v = 0; v < 4; v++)
			assert_int_equal(numi(s, "value", v), want[i][v]);
		assert_int_equal(count(s, "label"), 1);
		const struct node *l = kid(s, "label", 0);
		assert_string_equal(str(&p, num(l, "key")), "bytes");
		assert_int_equal(num(l, "num"), want_bytes[i]);
		assert_string_equal(str(&p, num(l, "num_unit")), "bytes");
		assert_null(kid(l, "str", 0));
		/* Leaf first, each address one before the return address. */
		assert_int_equal(count(s, "location_id"), rows[i].depth);
		for (uint32_t d = 0; d < rows[i].depth; d++) {
			const struct node *loc = by_id(
			        &p, "location", (unsigned long long)numi(s, "location_id", d));
			assert_int_equal(unum(loc, "address"), rows[i].pcs[d] - 1);
		}
	}
	/* One location per distinct pc: the caller frame is shared. */
	assert_int_equal(p.locations.n, 3);
	assert_int_equal(numi(nth(&p, "sample", 0), "location_id", 1),
	                 numi(nth(&p, "sample", 2), "location_id", 0));

	/* Names and lines from this file's debug info. */
	long long line;
	const char *file;
	const struct node *leaf = loc_at(&p, pr.leaf - 1), *caller = loc_at(&p, pr.caller - 1);
	assert_non_null(leaf);
	assert_non_null(caller);
	assert_string_equal(loc_func(&p, leaf, &line, &file), "probe_leaf");
	assert_int_equal(line, pr.leaf_line);
	assert_true(ends_with(file, "test_profile.c"));
	assert_string_equal(loc_func(&p, caller, &line, &file), "probe_root");
	assert_int_equal(line, pr.caller_line);
	assert_true(ends_with(file, "test_profile.c"));
	/* probe_leaf and probe_root: two functions, deduplicated by name+file. */
	assert_int_equal(p.functions.n, 2);

	/* An address no mapping covers: a location all the same, no mapping. */
	const struct node *unk = loc_at(&p, UNKNOWN_PC - 1);
	assert_non_null(unk);
	assert_int_equal(unum(unk, "mapping_id"), 0);
	assert_null(kid(unk, "line", 0));

	/* mapping[0] is the main executable, with its build ID. */
	const struct node *m0 = nth(&p, "mapping", 0);
	assert_non_null(m0);
	assert_int_equal(unum(m0, "id"), 1);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = 0;
	assert_string_equal(str(&p, num(m0, "filename")), exe);
	char bid[256];
	readelf_build_id(exe, bid, sizeof(bid));
	assert_true(strlen(bid) >= 16);
	assert_string_equal(str(&p, num(m0, "build_id")), bid);
	assert_int_equal(unum(leaf, "mapping_id"), 1);
	assert_int_equal(unum(caller, "mapping_id"), 1);
	assert_true(unum(m0, "memory_start") <= pr.leaf - 1);
	assert_true(unum(m0, "memory_limit") > pr.leaf - 1);
	assert_true(unum(m0, "file_offset") % 4096 == 0);
	assert_int_equal(num(m0, "has_functions"), 1);
	assert_int_equal(num(m0, "has_filenames"), 1);
	assert_int_equal(num(m0, "has_line_numbers"), 1);
	/* Only the main executable: nothing else was referenced. */
	assert_int_equal(p.mappings.n, 1);
	prof_free(&p);

	/* The same profile, read by pprof itself. */
	char *raw = go_pprof_raw(&gz);
	if (raw) {
		char want_line[256];
		assert_non_null(strstr(raw, "PeriodType: space bytes"));
		assert_non_null(strstr(raw, "Period: 524288"));
		assert_non_null(strstr(raw, "Comment: rss: 12345 bytes"));
		assert_non_null(strstr(raw, "inuse_space/bytes[dflt]"));
		assert_non_null(strstr(raw, "bytes:[100 bytes]"));
		assert_non_null(strstr(raw, "2        150          0         50: "));
		assert_non_null(strstr(raw, " probe_leaf "));
		snprintf(want_line, sizeof(want_line), "test_profile.c:%d", pr.leaf_line);
		assert_non_null(strstr(raw, want_line));
		snprintf(want_line, sizeof(want_line), "test_profile.c:%d", pr.caller_line);
		assert_non_null(strstr(raw, want_line));
		assert_non_null(strstr(raw, bid));
		free(raw);
	}
	ht_buf_free(&out);
}

static void test_threads(void **state)
{
	(void)state;
	struct probe pr;
	probe_root(&pr);
	uintptr_t stack[2] = {pr.leaf, pr.caller};
	struct ht_thread_row rows[] = {
	        {NULL, 0, "main", 1},
	        {NULL, 0, "unknown", 2},
	        {stack, 2, NULL, 3, "unjoined"},
	        {stack + 1, 1, "pool", 4},
	};
	struct ht_profile_input in = {
	        .rate = RATE, .time_nanos = TIME_NS, .threads = rows, .nthreads = 4};
	struct ht_buf out = {0};
	assert_int_equal(ht_profile_threads(&in, NULL, &out), 0);
	struct prof p;
	decode(&out, &p);
	check_valid(&p, 1);
	check_value_type(&p, kid(&p.root, "sample_type", 0), "threads", "count");
	check_value_type(&p, kid(&p.root, "period_type", 0), "threads", "count");
	assert_int_equal(num(&p.root, "period"), 1);
	assert_int_equal(num(&p.root, "time_nanos"), TIME_NS);
	assert_null(kid(&p.root, "default_sample_type", 0));
	assert_int_equal(count(&p.root, "comment"), 2);
	assert_string_equal(str(&p, num(&p.root, "comment")), "live threads: 10");
	assert_string_equal(str(&p, numi(&p.root, "comment", 1)),
	                    "running_threads=7 unjoined_threads=3");

	static const char *const roots[] = {"[main thread]", "[created before heaptap started]",
	                                    NULL, "[pool]"};
	static const char *const origin[] = {"main", "unknown", NULL, "pool"};
	assert_int_equal(p.samples.n, 4);
	for (int i = 0; i < 4; i++) {
		const struct node *s = nth(&p, "sample", i);
		assert_int_equal(num(s, "value"), rows[i].count);
		size_t nloc = count(s, "location_id");
		assert_int_equal(nloc, rows[i].depth + (roots[i] ? 1 : 0));
		for (uint32_t d = 0; d < rows[i].depth; d++) {
			const struct node *loc = by_id(
			        &p, "location", (unsigned long long)numi(s, "location_id", d));
			assert_int_equal(unum(loc, "address"), rows[i].pcs[d] - 1);
		}
		if (roots[i]) {
			/* The synthetic frame is the root: the last location. */
			const struct node *loc =
			        by_id(&p, "location",
			              (unsigned long long)numi(s, "location_id", nloc - 1));
			assert_string_equal(loc_func(&p, loc, NULL, NULL), roots[i]);
			assert_int_equal(unum(loc, "address"), 0);
			assert_int_equal(unum(loc, "mapping_id"), 0);
		}
		/* Every sample has its state; synthetic ones their origin too. */
		assert_int_equal(count(s, "label"), origin[i] ? 2 : 1);
		const struct node *st = kid(s, "label", 0);
		assert_string_equal(str(&p, num(st, "key")), "state");
		assert_string_equal(str(&p, num(st, "str")), i == 2 ? "unjoined" : "running");
		if (origin[i]) {
			const struct node *l = kid(s, "label", 1);
			assert_string_equal(str(&p, num(l, "key")), "origin");
			assert_string_equal(str(&p, num(l, "str")), origin[i]);
		}
	}
	long long line;
	assert_string_equal(loc_func(&p, loc_at(&p, pr.leaf - 1), &line, NULL), "probe_leaf");
	assert_int_equal(line, pr.leaf_line);
	prof_free(&p);

	char *raw = go_pprof_raw(&out);
	if (raw) {
		assert_non_null(strstr(raw, "PeriodType: threads count"));
		assert_non_null(strstr(raw, "[main thread]"));
		assert_non_null(strstr(raw, "origin:[unknown]"));
		free(raw);
	}
	ht_buf_free(&out);
}

/* A module that is gone (dlclosed) is still named from its file, at the
 * address it had, through its own bias. Simulated by moving libz's
 * executable range to a free address range. */
static void test_gone_module(void **state)
{
	(void)state;
	struct link_map *lm;
	uintptr_t fn;
	void *h = unit_open_libz(&lm, &fn);

	struct ht_module real;
	assert_int_equal(ht_module_from_memory(lm->l_name, lm->l_addr, &real), 0);
	assert_true(fn >= real.start && fn < real.limit);
	size_t size = real.limit - real.start;
	void *hole = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(hole != MAP_FAILED);
	munmap(hole, size);

	struct ht_module gone = real;
	gone.start = (uintptr_t)hole;
	gone.limit = gone.start + size;
	gone.bias = real.bias + (gone.start - real.start);
	uintptr_t pc = gone.bias + (fn - real.bias) + 2; /* a "return address" inside */

	uintptr_t stack[1] = {pc};
	struct ht_heap_row rows[] = {{stack, 1, 32, 1, 32, 1, 32}};
	struct ht_profile_input in = {
	        .rate = 1, .time_nanos = 1, .heap = rows, .nheap = 1, .gone = &gone, .ngone = 1};
	struct ht_buf out = {0};
	assert_int_equal(ht_profile_heap(&in, NULL, &out), 0);
	struct prof p;
	decode(&out, &p);
	check_valid(&p, 4);
	assert_int_equal(num(&p.root, "period"), 1);
	const struct node *loc = loc_at(&p, pc - 1);
	assert_non_null(loc);
	assert_string_equal(loc_func(&p, loc, NULL, NULL), "zlibVersion");
	const struct node *m = by_id(&p, "mapping", unum(loc, "mapping_id"));
	assert_non_null(m);
	assert_string_equal(str(&p, num(m, "filename")), lm->l_name);
	assert_int_equal(unum(m, "memory_start"), gone.start);
	assert_int_equal(unum(m, "memory_limit"), gone.limit);
	assert_int_equal(unum(m, "file_offset"), real.file_offset);
	char bid[256];
	readelf_build_id(lm->l_name, bid, sizeof(bid));
	assert_string_equal(str(&p, num(m, "build_id")), bid);
	prof_free(&p);
	ht_buf_free(&out);
	dlclose(h);
}

static int ticks;
static void on_tick(void *arg)
{
	assert_ptr_equal(arg, &ticks);
	ticks++;
}

/* Many rows sharing frames: the dedup, the chunked gzip, the tick. */
static void test_many_rows(void **state)
{
	(void)state;
	struct probe pr;
	probe_root(&pr);
	enum { NROWS = 5000, DEPTH = 12 };
	uintptr_t *pcs = calloc(NROWS * DEPTH, sizeof(*pcs));
	struct ht_heap_row *rows = calloc(NROWS, sizeof(*rows));
	for (int r = 0; r < NROWS; r++) {
		uintptr_t *s = pcs + r * DEPTH;
		s[0] = 0x1000 + (uintptr_t)r * 16; /* distinct leaf, no mapping */
		for (int d = 1; d < DEPTH; d++)
			s[d] = d % 2 ? pr.caller : pr.leaf; /* shared frames */
		rows[r] = (struct ht_heap_row){s, DEPTH, (uint64_t)r, r, r * 2.0, 0, 0};
	}
	ticks = 0;
	struct ht_profile_input in = {
	        .rate = RATE, .heap = rows, .nheap = NROWS, .tick = on_tick, .tick_arg = &ticks};
	struct ht_buf out = {0};
	assert_int_equal(ht_profile_heap(&in, NULL, &out), 0);
	assert_true(ticks >= NROWS / 1024);
	struct prof p;
	decode(&out, &p);
	check_valid(&p, 4);
	assert_int_equal(p.samples.n, NROWS);
	assert_int_equal(p.locations.n, NROWS + 2);
	for (int r = 0; r < NROWS; r += 997) {
		const struct node *s = nth(&p, "sample", (size_t)r);
		assert_int_equal(numi(s, "value", 1), r * 2);
		assert_int_equal(num(kid(s, "label", 0), "num"), r);
		assert_int_equal(count(s, "location_id"), DEPTH);
	}
	prof_free(&p);
	ht_buf_free(&out);
	free(rows);
	free(pcs);
}

/* Nothing to report is still a valid profile. */
static void test_empty(void **state)
{
	(void)state;
	struct ht_profile_input in = {.rate = RATE};
	struct ht_buf out = {0};
	assert_int_equal(ht_profile_heap(&in, NULL, &out), 0);
	struct prof p;
	decode(&out, &p);
	check_valid(&p, 4);
	assert_int_equal(p.samples.n, 0);
	prof_free(&p);
	char *raw = go_pprof_raw(&out);
	free(raw);
	ht_buf_free(&out);

	assert_int_equal(ht_profile_threads(&in, NULL, &out), 0);
	decode(&out, &p);
	check_valid(&p, 1);
	assert_string_equal(str(&p, num(&p.root, "comment")), "live threads: 0");
	prof_free(&p);
	ht_buf_free(&out);
}

static int same_buf(const struct ht_buf *a, const struct ht_buf *b)
{
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* The two profiles of a dump share one context (maps snapshot, symbolizer):
 * the bytes are exactly what each encoder writes with a context of its own,
 * whichever profile is encoded first. */
static void test_shared_ctx(void **state)
{
	(void)state;
	struct probe pr;
	probe_root(&pr);
	uintptr_t stack[3] = {pr.leaf, pr.caller, UNKNOWN_PC};
	struct ht_heap_row heap[] = {
	        {stack, 3, 100, 2, 200, 1, 100, 0},
	        {stack + 1, 2, 50, 1, 50, 1, 50, 0},
	};
	struct ht_thread_row threads[] = {{NULL, 0, "main", 1}, {stack, 2, NULL, 3}};
	struct ht_profile_input in = {.rate = RATE,
	                              .time_nanos = TIME_NS,
	                              .heap = heap,
	                              .nheap = 2,
	                              .threads = threads,
	                              .nthreads = 2};
	struct ht_buf h1 = {0}, t1 = {0}, h2 = {0}, t2 = {0}, h3 = {0}, t3 = {0};
	assert_int_equal(ht_profile_heap(&in, NULL, &h1), 0);
	assert_int_equal(ht_profile_threads(&in, NULL, &t1), 0);

	struct ht_profile_ctx *ctx = NULL;
	assert_int_equal(ht_profile_ctx_open(&ctx, &in), 0);
	assert_int_equal(ht_profile_heap(&in, ctx, &h2), 0);
	assert_int_equal(ht_profile_threads(&in, ctx, &t2), 0);
	ht_profile_ctx_close(ctx);
	assert_int_equal(ht_profile_ctx_open(&ctx, &in), 0);
	assert_int_equal(ht_profile_threads(&in, ctx, &t3), 0);
	assert_int_equal(ht_profile_heap(&in, ctx, &h3), 0);
	ht_profile_ctx_close(ctx);

	assert_true(same_buf(&h1, &h2) && same_buf(&h1, &h3));
	assert_true(same_buf(&t1, &t2) && same_buf(&t1, &t3));
	/* And the shared one still names the frames. */
	struct prof p;
	decode(&t3, &p);
	const struct node *leaf = loc_at(&p, pr.leaf - 1);
	long long line;
	const char *file;
	assert_non_null(leaf);
	assert_string_equal(loc_func(&p, leaf, &line, &file), "probe_leaf");
	prof_free(&p);
	struct ht_buf *all[] = {&h1, &t1, &h2, &t2, &h3, &t3};
	for (int i = 0; i < 6; i++)
		ht_buf_free(all[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_heap),        cmocka_unit_test(test_threads),
	        cmocka_unit_test(test_gone_module), cmocka_unit_test(test_many_rows),
	        cmocka_unit_test(test_empty),       cmocka_unit_test(test_shared_ctx),
	};
	return cmocka_run_group_tests(tests, unit_setup_mem, NULL);
}
