/*
 * test_cli_prof.c - the heaptap command's profile reader (tools/cli/prof.c,
 * pbread.c) on hand-built input: the deterministic side of the fuzz target
 * tests/fuzz/fuzz_prof.c.
 *
 * A tiny protobuf encoder below builds one small but complete profile (two
 * sample types, inlined lines, an unsymbolized location, string and numeric
 * labels, comments, a mapping, fields the reader skips) whose decoded form
 * is checked field by field, the same with every repeated field packed and
 * unpacked, raw and gzipped. Then that profile with one defect at a time:
 * each must be refused with one error line naming the file and the reason,
 * never a crash. Inputs the fuzzer found are at the end, as regressions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pbread.h"
#include "prof.h"

#define PATH "t/heaptap.42.0007.heap.pb.gz"

/* ------------------------------------------------------------------------ */
/* The encoder. */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	if (n)
		memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void put_byte(struct buf *b, uint8_t c)
{
	put(b, &c, 1);
}

static void put_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		put_byte(b, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	put_byte(b, (uint8_t)v);
}

static void put_key(struct buf *b, uint32_t field, int wire)
{
	put_varint(b, (uint64_t)field << 3 | (unsigned)wire);
}

static void put_uint(struct buf *b, uint32_t field, uint64_t v)
{
	put_key(b, field, HC_PB_VARINT);
	put_varint(b, v);
}

static void put_bytes(struct buf *b, uint32_t field, const void *d, size_t n)
{
	put_key(b, field, HC_PB_LEN);
	put_varint(b, n);
	put(b, d, n);
}

static void put_str(struct buf *b, uint32_t field, const char *s)
{
	put_bytes(b, field, s, strlen(s));
}

/* m as a message field; m is emptied. */
static void put_msg(struct buf *b, uint32_t field, struct buf *m)
{
	put_bytes(b, field, m->p, m->n);
	free(m->p);
	*m = (struct buf){0};
}

/* A repeated scalar: one length-delimited field, or one field per value. */
static void put_rep(struct buf *b, uint32_t field, const uint64_t *v, size_t n, bool packed)
{
	if (!packed) {
		for (size_t i = 0; i < n; i++)
			put_uint(b, field, v[i]);
		return;
	}
	struct buf m = {0};
	for (size_t i = 0; i < n; i++)
		put_varint(&m, v[i]);
	put_msg(b, field, &m);
}

static void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){0};
}

/* gzip of data, as heaptap writes its files. */
static struct buf gzip(const void *data, size_t len)
{
	z_stream z = {0};
	struct buf out = {0};
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	out.cap = deflateBound(&z, len) + 64;
	out.p = malloc(out.cap);
	assert_non_null(out.p);
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	z.next_out = out.p;
	z.avail_out = (uInt)out.cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	out.n = z.total_out;
	deflateEnd(&z);
	return out;
}

/* ------------------------------------------------------------------------ */
/* The profile, and its defects. */

enum {
	S_EMPTY,
	S_INUSE_OBJECTS,
	S_COUNT,
	S_INUSE_SPACE,
	S_BYTES,
	S_SPACE,
	S_LEAF,
	S_INLINED,
	S_LIB_C,
	S_MAIN,
	S_MAIN_C,
	S_THREAD,
	S_WORKER,
	S_SIZE,
	S_HEADER,
	S_FIGURES,
	S_LIBFOO,
	N_STRINGS
};

static const char *strings[N_STRINGS] = {
        "",
        "inuse_objects",
        "count",
        "inuse_space",
        "bytes",
        "space",
        "leaf_fn",
        "inlined_fn",
        "lib.c",
        "main",
        "main.c",
        "thread",
        "worker-1",
        "size",
        "heaptap 0.1.0 pid 42 rate 1",
        "rss_bytes=1000 allocator=glibc live_samples=2",
        "/usr/lib/libfoo.so",
};

struct variant {
	bool packed;            /* repeated fields packed */
	const char *str0;       /* string_table[0] */
	uint64_t unit1;         /* the second sample type's unit */
	uint64_t s2_loc;        /* sample 2's leaf location */
	uint64_t loc2_func;     /* location 2's function */
	size_t nvals;           /* values per sample */
	uint64_t main_func_id;  /* the id of main's function */
	uint64_t loc3_id;       /* the id of the unsymbolized location */
	bool line_past_loc;     /* location 1's second line runs past the location */
	bool line_body_bad;     /* location 1's second line holds a truncated field */
	bool label_past_sample; /* sample 1's label runs past the sample */
	bool packed_truncated;  /* sample 1's packed location ids end inside a varint */
	int64_t value;          /* sample 1's second value */
};

static const struct variant good = {
        .str0 = "",
        .unit1 = S_BYTES,
        .s2_loc = 3,
        .loc2_func = 30,
        .nvals = 2,
        .main_func_id = 30,
        .loc3_id = 3,
        .value = 300,
};

static void value_type(struct buf *b, uint32_t field, uint64_t type, uint64_t unit)
{
	struct buf m = {0};
	put_uint(&m, 1, type);
	put_uint(&m, 2, unit);
	put_msg(b, field, &m);
}

static void function(struct buf *b, uint64_t id, uint64_t name, uint64_t file)
{
	struct buf m = {0};
	put_uint(&m, 1, id);
	put_uint(&m, 2, name);
	put_uint(&m, 3, name); /* system_name */
	put_uint(&m, 4, file);
	put_uint(&m, 5, 1); /* start_line */
	put_msg(b, 5, &m);
}

static void line(struct buf *b, uint64_t func, uint64_t ln)
{
	struct buf m = {0};
	put_uint(&m, 1, func);
	put_uint(&m, 2, ln);
	put_msg(b, 4, &m);
}

static void sample(struct buf *b, const struct variant *v, const uint64_t *locs, size_t nlocs,
                   const uint64_t *vals, bool labels, bool truncate)
{
	struct buf m = {0};
	if (truncate) {
		/* Packed ids whose last varint has its continuation bit set. */
		struct buf ids = {0};
		for (size_t i = 0; i < nlocs; i++)
			put_varint(&ids, locs[i]);
		put_byte(&ids, 0x80);
		put_msg(&m, 1, &ids);
	} else {
		put_rep(&m, 1, locs, nlocs, v->packed);
	}
	put_rep(&m, 2, vals, v->nvals, v->packed);
	if (labels) {
		struct buf l = {0};
		put_uint(&l, 1, S_THREAD);
		put_uint(&l, 2, S_WORKER);
		if (v->label_past_sample) {
			/* The label claims 3 bytes more than the sample has. */
			put_key(&m, 3, HC_PB_LEN);
			put_varint(&m, l.n + 3);
			put(&m, l.p, l.n);
			buf_free(&l);
		} else {
			put_msg(&m, 3, &l);
		}
		put_uint(&l, 1, S_SIZE);
		put_uint(&l, 3, 64);
		put_uint(&l, 4, S_BYTES); /* num_unit */
		if (!v->label_past_sample)
			put_msg(&m, 3, &l);
		buf_free(&l);
	}
	put_msg(b, 2, &m);
}

static struct buf build(const struct variant *v)
{
	struct buf b = {0}, m = {0};

	value_type(&b, 1, S_INUSE_OBJECTS, S_COUNT);
	value_type(&b, 1, S_INUSE_SPACE, v->unit1);

	/* Samples come before the locations and strings they name: proto3
	 * allows any order. Sample 1: locations 1 (two lines: inlined_fn
	 * inlined into leaf_fn) and 2 (main). Sample 2: the unsymbolized
	 * location 3, then main. */
	uint64_t s1_locs[] = {1, 2}, s2_locs[] = {v->s2_loc, 2};
	uint64_t s1_vals[] = {3, (uint64_t)v->value, 7}, s2_vals[] = {1, 10, 7};
	sample(&b, v, s1_locs, 2, s1_vals, true, v->packed_truncated);
	sample(&b, v, s2_locs, 2, s2_vals, false, false);

	/* A mapping (for location 3), which the reader may skip. */
	put_uint(&m, 1, 1);
	put_uint(&m, 2, 0x400000);
	put_uint(&m, 3, 0x500000);
	put_uint(&m, 5, S_LIBFOO);
	put_msg(&b, 3, &m);

	/* Locations out of order: 3, 1, 2. */
	put_uint(&m, 1, v->loc3_id);
	put_uint(&m, 2, 1); /* mapping_id */
	put_uint(&m, 3, 0xdeadbeef);
	put_msg(&b, 4, &m);

	put_uint(&m, 1, 1);
	put_uint(&m, 3, 0x1000);
	line(&m, 20, 12); /* innermost first */
	if (v->line_past_loc) {
		/* A line that claims 4 bytes more than the location holds; the
		 * buffer goes on, so only the location's bounds catch it. */
		put_key(&m, 4, HC_PB_LEN);
		put_varint(&m, 4 + 4);
		put_uint(&m, 1, 10);
		put_uint(&m, 2, 30);
	} else if (v->line_body_bad) {
		/* A line whose own field runs past the line. */
		struct buf l = {0};
		put_uint(&l, 1, 10);
		put_key(&l, 6, HC_PB_LEN);
		put_varint(&l, 24);
		put_msg(&m, 4, &l);
	} else {
		line(&m, 10, 30);
	}
	put_msg(&b, 4, &m);

	put_uint(&m, 1, 2);
	put_uint(&m, 3, 0x2000);
	line(&m, v->loc2_func, 5);
	put_msg(&b, 4, &m);

	/* Functions out of order, ids not their positions. */
	function(&b, v->main_func_id, S_MAIN, S_MAIN_C);
	function(&b, 10, S_LEAF, S_LIB_C);
	function(&b, 20, S_INLINED, S_LIB_C);

	put_str(&b, 6, v->str0);
	for (int i = 1; i < N_STRINGS; i++)
		put_str(&b, 6, strings[i]);

	put_uint(&b, 7, 0); /* drop_frames */
	put_uint(&b, 8, 0); /* keep_frames */
	put_uint(&b, 9, 1700000000123456789ull);
	put_uint(&b, 10, 1500000000);
	value_type(&b, 11, S_SPACE, S_BYTES);
	put_uint(&b, 12, 524288);
	uint64_t comments[] = {S_HEADER, S_FIGURES};
	put_rep(&b, 13, comments, 2, v->packed);
	put_uint(&b, 14, S_INUSE_SPACE);
	/* Unknown fields of every wire type the reader accepts. */
	put_uint(&b, 100, 5);
	put_key(&b, 101, HC_PB_I64);
	put(&b, "\1\2\3\4\5\6\7\x08", 8);
	put_key(&b, 102, HC_PB_I32);
	put(&b, "\1\2\3\4", 4);
	put_str(&b, 103, "skipped");
	return b;
}

/* ------------------------------------------------------------------------ */
/* Checks. */

static struct hc_prof *parse_ok(const void *data, size_t len)
{
	char err[512] = "";
	struct hc_prof *p = hc_prof_parse(data, len, PATH, err, sizeof(err));
	if (!p)
		fail_msg("refused: %s", err);
	return p;
}

/* Refused, with one line naming the file and containing why (if not NULL). */
static void refused(const void *data, size_t len, const char *why)
{
	char err[512] = "";
	struct hc_prof *p = hc_prof_parse(data, len, "bad.pb", err, sizeof(err));
	if (p) {
		hc_prof_free(p);
		fail_msg("accepted an input that should fail with \"%s\"", why ? why : "");
	}
	if (why)
		printf("  %s\n", err);
	assert_int_equal(strncmp(err, "bad.pb: ", 8), 0);
	assert_null(strchr(err, '\n'));
	if (why && !strstr(err, why))
		fail_msg("error \"%s\" does not say \"%s\"", err, why);
}

static void refused_variant(const struct variant *v, const char *why)
{
	struct buf b = build(v);
	refused(b.p, b.n, why);
	buf_free(&b);
}

/* Everything decoded, as text: equal texts, equal profiles. */
static char *describe(const struct hc_prof *p)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	assert_non_null(f);
	fprintf(f, "kind %d default %s period %s/%s %lld time %lld dur %lld\n", p->kind,
	        p->default_type, p->period_type, p->period_unit, (long long)p->period,
	        (long long)p->time_nanos, (long long)p->duration_nanos);
	for (size_t i = 0; i < p->ntypes; i++)
		fprintf(f, "type %s/%s\n", p->types[i], p->units[i]);
	for (size_t i = 0; i < p->ncomments; i++)
		fprintf(f, "comment %s\n", p->comments[i]);
	for (size_t i = 0; i < p->nsamples; i++) {
		const struct hc_sample *s2 = &p->samples[i];
		fprintf(f, "sample");
		for (size_t t = 0; t < p->ntypes; t++)
			fprintf(f, " %lld", (long long)s2->values[t]);
		fprintf(f, "\n");
		for (size_t j = 0; j < s2->nframes; j++)
			fprintf(f, " %s %s:%lld 0x%llx\n", s2->frames[j].name, s2->frames[j].file,
			        (long long)s2->frames[j].line,
			        (unsigned long long)s2->frames[j].address);
		for (size_t j = 0; j < s2->nlabels; j++)
			fprintf(f, " label %s=%s/%lld\n", s2->labels[j].key,
			        s2->labels[j].str ? s2->labels[j].str : "(num)",
			        (long long)s2->labels[j].num);
	}
	fprintf(f, "figures %d pid %d rate %lld rss %lld live_samples %lld alloc %s ver %s\n",
	        p->fig.have, p->fig.pid, (long long)p->fig.rate, (long long)p->fig.rss,
	        (long long)p->fig.live_samples, p->fig.allocator, p->fig.version);
	fprintf(f, "seq %d pid %d\n", p->seq, p->name_pid);
	assert_int_equal(fclose(f), 0);
	return s;
}

static void check_frame(const struct hc_frame *f, const char *name, const char *file, int64_t line,
                        uint64_t addr)
{
	assert_string_equal(f->name, name);
	assert_string_equal(f->file, file);
	assert_int_equal(f->line, line);
	assert_int_equal(f->address, addr);
}

/* ------------------------------------------------------------------------ */
/* The valid profile. */

static void test_valid(void **state)
{
	(void)state;
	struct buf b = build(&good);
	struct hc_prof *p = parse_ok(b.p, b.n);

	assert_string_equal(p->path, PATH);
	assert_int_equal(p->kind, HC_HEAP);
	assert_int_equal(p->ntypes, 2);
	assert_string_equal(p->types[0], "inuse_objects");
	assert_string_equal(p->units[0], "count");
	assert_string_equal(p->types[1], "inuse_space");
	assert_string_equal(p->units[1], "bytes");
	assert_string_equal(p->default_type, "inuse_space");
	assert_string_equal(p->period_type, "space");
	assert_string_equal(p->period_unit, "bytes");
	assert_int_equal(p->period, 524288);
	assert_int_equal(p->time_nanos, 1700000000123456789ll);
	assert_int_equal(p->duration_nanos, 1500000000);
	assert_int_equal(p->ncomments, 2);
	assert_string_equal(p->comments[0], strings[S_HEADER]);
	assert_string_equal(p->comments[1], strings[S_FIGURES]);
	assert_int_equal(p->seq, 7);
	assert_int_equal(p->name_pid, 42);

	/* The comment figures. */
	assert_true(p->fig.have);
	assert_int_equal(p->fig.pid, 42);
	assert_int_equal(p->fig.rate, 1);
	assert_string_equal(p->fig.version, "0.1.0");
	assert_int_equal(p->fig.rss, 1000);
	assert_int_equal(p->fig.live_samples, 2);
	assert_int_equal(p->fig.in_use, -1);
	assert_string_equal(p->fig.allocator, "glibc");

	assert_int_equal(p->nsamples, 2);
	const struct hc_sample *s = &p->samples[0];
	assert_int_equal(s->values[0], 3);
	assert_int_equal(s->values[1], 300);
	/* Leaf first, the inlined function before the one it is inlined in. */
	assert_int_equal(s->nframes, 3);
	check_frame(&s->frames[0], "inlined_fn", "lib.c", 12, 0x1000);
	check_frame(&s->frames[1], "leaf_fn", "lib.c", 30, 0x1000);
	check_frame(&s->frames[2], "main", "main.c", 5, 0x2000);
	assert_string_equal(s->key, "inlined_fn\nleaf_fn\nmain\n");
	assert_int_equal(s->nlabels, 2);
	assert_string_equal(s->labels[0].key, "thread");
	assert_string_equal(s->labels[0].str, "worker-1");
	assert_string_equal(s->labels[1].key, "size");
	assert_null(s->labels[1].str);
	assert_int_equal(s->labels[1].num, 64);
	assert_string_equal(hc_sample_label(s, "thread"), "worker-1");
	assert_null(hc_sample_label(s, "size"));
	assert_int_equal(hc_sample_num(s, "size"), 64);
	assert_int_equal(hc_sample_num(s, "thread"), -1);

	s = &p->samples[1];
	assert_int_equal(s->values[0], 1);
	assert_int_equal(s->values[1], 10);
	assert_int_equal(s->nframes, 2);
	check_frame(&s->frames[0], "0xdeadbeef", "", 0, 0xdeadbeef);
	check_frame(&s->frames[1], "main", "main.c", 5, 0x2000);
	assert_string_equal(s->key, "0xdeadbeef\nmain\n");
	assert_int_equal(s->nlabels, 0);
	assert_null(hc_sample_label(s, "thread"));

	assert_int_equal(hc_prof_type(p, "inuse_space"), 1);
	assert_int_equal(hc_prof_type(p, "alloc_space"), -1);
	assert_int_equal(hc_prof_total(p, 0), 4);
	assert_int_equal(hc_prof_total(p, 1), 310);
	assert_int_equal(hc_prof_total(p, -1), 0);
	assert_int_equal(hc_prof_total(p, 2), 0);
	hc_prof_free(p);
	buf_free(&b);
}

/* Packed and unpacked repeated fields, raw and gzip: one profile. */
static void test_packed_unpacked_gzip(void **state)
{
	(void)state;
	struct variant v = good;
	struct buf unpacked = build(&v);
	v.packed = true;
	struct buf packed = build(&v);
	/* Not the same bytes (with two values a list takes as long either way). */
	assert_true(packed.n <= unpacked.n);
	assert_true(packed.n != unpacked.n || memcmp(packed.p, unpacked.p, packed.n) != 0);
	struct buf gz = gzip(packed.p, packed.n);

	struct hc_prof *p1 = parse_ok(unpacked.p, unpacked.n);
	struct hc_prof *p2 = parse_ok(packed.p, packed.n);
	struct hc_prof *p3 = parse_ok(gz.p, gz.n);
	char *d1 = describe(p1), *d2 = describe(p2), *d3 = describe(p3);
	assert_string_equal(d1, d2);
	assert_string_equal(d1, d3);
	assert_non_null(strstr(d1, " 0xdeadbeef :0 0xdeadbeef\n"));
	free(d1);
	free(d2);
	free(d3);
	hc_prof_free(p1);
	hc_prof_free(p2);
	hc_prof_free(p3);
	buf_free(&unpacked);
	buf_free(&packed);
	buf_free(&gz);
}

/* A profile with nothing but what is required: a type and the "" string. */
static void test_minimal(void **state)
{
	(void)state;
	struct buf b = {0};
	value_type(&b, 1, 1, 2);
	put_str(&b, 6, "");
	put_str(&b, 6, "threads");
	put_str(&b, 6, "count");
	struct hc_prof *p = parse_ok(b.p, b.n);
	assert_int_equal(p->kind, HC_THREADS);
	assert_int_equal(p->nsamples, 0);
	assert_int_equal(p->ncomments, 0);
	assert_false(p->fig.have);
	assert_string_equal(p->default_type, "");
	assert_string_equal(p->period_type, "");
	assert_int_equal(hc_prof_total(p, 0), 0);
	hc_prof_free(p);
	buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Refused input. */

static void test_empty_and_gzip(void **state)
{
	(void)state;
	refused("", 0, "empty file");
	struct buf gz = gzip("", 0);
	refused(gz.p, gz.n, "gzip of nothing");
	buf_free(&gz);

	struct buf b = build(&good);
	gz = gzip(b.p, b.n);
	for (size_t cut = 2; cut < gz.n; cut += cut < 40 ? 1 : 97)
		refused(gz.p, cut, NULL);
	refused(gz.p, gz.n / 2, "truncated");
	refused(gz.p, 10, "truncated"); /* the header alone */
	/* A flipped bit in the deflate data or the CRC. */
	gz.p[gz.n / 2] ^= 0x10;
	refused(gz.p, gz.n, NULL);
	gz.p[gz.n / 2] ^= 0x10;
	gz.p[gz.n - 6] ^= 0x01;
	refused(gz.p, gz.n, "corrupt gzip");
	buf_free(&gz);
	buf_free(&b);
	/* The gzip magic alone, and one byte. */
	refused("\x1f\x8b", 2, NULL);
	refused("\x1f", 1, NULL);
}

static void test_varints(void **state)
{
	(void)state;
	/* Ten bytes is the most a varint has: 2^64-1 is accepted. */
	struct buf b = build(&good);
	size_t n = b.n;
	put_key(&b, 9, HC_PB_VARINT);
	put(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10);
	struct hc_prof *p = parse_ok(b.p, b.n);
	assert_int_equal(p->time_nanos, -1);
	hc_prof_free(p);
	/* Eleven bytes is not, as a value or as a key. */
	b.n = n;
	put_key(&b, 9, HC_PB_VARINT);
	put(&b, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11);
	refused(b.p, b.n, "bad protobuf encoding");
	b.n = n;
	put(&b, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11);
	refused(b.p, b.n, "bad protobuf encoding");
	/* A varint cut by the end of the input. */
	b.n = n;
	put(&b, "\x48\xff\xff", 3);
	refused(b.p, b.n, "bad protobuf encoding");
	/* Field number 0, and one past 2^29-1. */
	b.n = n;
	put(&b, "\x00\x00", 2);
	refused(b.p, b.n, "bad protobuf encoding");
	b.n = n;
	put_varint(&b, (uint64_t)1 << 32);
	put_byte(&b, 0);
	refused(b.p, b.n, "bad protobuf encoding");
	buf_free(&b);
}

static void test_lengths_and_wire_types(void **state)
{
	(void)state;
	struct buf b = build(&good);
	size_t n = b.n;
	/* A length prefix past the end. */
	put_key(&b, 6, HC_PB_LEN);
	put_varint(&b, 100);
	put(&b, "abc", 3);
	refused(b.p, b.n, "bad protobuf encoding");
	/* A length of 2^64-1. */
	b.n = n;
	put_key(&b, 103, HC_PB_LEN);
	put_varint(&b, UINT64_MAX);
	refused(b.p, b.n, "bad protobuf encoding");
	/* Fixed-size fields cut short. */
	b.n = n;
	put_key(&b, 101, HC_PB_I64);
	put(&b, "1234567", 7);
	refused(b.p, b.n, "bad protobuf encoding");
	b.n = n;
	put_key(&b, 102, HC_PB_I32);
	put(&b, "123", 3);
	refused(b.p, b.n, "bad protobuf encoding");
	/* Wire types 3 and 4 (groups), 6 and 7 (none): at the top, and inside
	 * a message. */
	for (int w = 3; w <= 7; w++) {
		if (w == HC_PB_I32)
			continue;
		b.n = n;
		put_key(&b, 100, w);
		put_varint(&b, 0);
		refused(b.p, b.n, "bad protobuf encoding");
		b.n = n;
		struct buf m = {0};
		put_uint(&m, 1, 1);
		put_key(&m, 100, w);
		put_varint(&m, 0);
		put_msg(&b, 5, &m); /* a function */
		refused(b.p, b.n, "bad function");
	}
	/* A message field with a scalar wire type. */
	b.n = n;
	put_uint(&b, 4, 1);
	refused(b.p, b.n, "wrong wire type");
	buf_free(&b);
}

static void test_bad_references(void **state)
{
	(void)state;
	struct variant v = good;
	v.unit1 = N_STRINGS;
	refused_variant(&v, "string index is out of range");
	v.unit1 = UINT64_MAX; /* -1 */
	refused_variant(&v, "string index is out of range");

	v = good;
	v.s2_loc = 99;
	refused_variant(&v, "location that is not in the profile");
	v.s2_loc = 0;
	refused_variant(&v, "location that is not in the profile");

	v = good;
	v.loc2_func = 99;
	refused_variant(&v, "function that is not in the profile");

	v = good;
	v.nvals = 1;
	refused_variant(&v, "value count");
	v.nvals = 3;
	refused_variant(&v, "value count");

	v = good;
	v.main_func_id = 10;
	v.loc2_func = 10;
	refused_variant(&v, "two functions share an id");
	v.main_func_id = 0;
	refused_variant(&v, "a function has id 0");

	v = good;
	v.loc3_id = 1;
	v.s2_loc = 1;
	refused_variant(&v, "two locations share an id");
	v.loc3_id = 0;
	refused_variant(&v, "a location has id 0");

	v = good;
	v.str0 = "x";
	refused_variant(&v, "does not start with");

	/* No string table, no sample types. */
	struct buf b = {0};
	value_type(&b, 1, 0, 0);
	refused(b.p, b.n, "no string table");
	buf_free(&b);
	put_str(&b, 6, "");
	refused(b.p, b.n, "no sample types");
	buf_free(&b);
}

static void test_truncated_nesting(void **state)
{
	(void)state;
	struct variant v = good;
	/* Profile > Location > Line: the line runs past the location (but not
	 * past the buffer). */
	v.line_past_loc = true;
	refused_variant(&v, "bad location");
	v = good;
	v.line_body_bad = true;
	refused_variant(&v, "bad line");
	/* Profile > Sample > Label. */
	v = good;
	v.label_past_sample = true;
	refused_variant(&v, "bad sample");
	/* A packed field ending inside a varint. */
	v = good;
	v.packed = true;
	v.packed_truncated = true;
	refused_variant(&v, "bad sample");
	/* Packed comments likewise. */
	struct buf b = build(&good);
	put_bytes(&b, 13, "\x01\x81", 2);
	refused(b.p, b.n, "bad comment list");
	buf_free(&b);
}

/* 50 MB of zeros in ~50 KB of gzip: inflated under the cap, then refused
 * (field number 0), without taking more than the inflated size. */
static void test_gzip_bomb(void **state)
{
	(void)state;
	static uint8_t zeros[1 << 20];
	z_stream z = {0};
	struct buf out = {0};
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
	out.cap = 1 << 20;
	out.p = malloc(out.cap);
	assert_non_null(out.p);
	z.next_out = out.p;
	z.avail_out = (uInt)out.cap;
	for (int i = 0; i < 50; i++) {
		z.next_in = zeros;
		z.avail_in = sizeof(zeros);
		assert_int_equal(deflate(&z, i == 49 ? Z_FINISH : Z_NO_FLUSH),
		                 i == 49 ? Z_STREAM_END : Z_OK);
		assert_int_equal(z.avail_in, 0);
	}
	out.n = z.total_out;
	deflateEnd(&z);
	printf("  50 MiB of zeros: %zu bytes of gzip\n", out.n);
	refused(out.p, out.n, "bad protobuf encoding");
	buf_free(&out);
}

/* The reader's primitives. */
static void test_pbread(void **state)
{
	(void)state;
	const uint8_t in[] = {0x08, 0x96, 0x01, 0x12, 0x02, 'h', 'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0};
	struct hc_pb c = {in, in + sizeof(in)};
	struct hc_pb_field f;
	assert_int_equal(hc_pb_next(&c, &f), 1);
	assert_int_equal(f.num, 1);
	assert_int_equal(f.wire, HC_PB_VARINT);
	assert_int_equal(f.v, 150);
	assert_int_equal(hc_pb_next(&c, &f), 1);
	assert_int_equal(f.num, 2);
	assert_int_equal(f.wire, HC_PB_LEN);
	assert_int_equal(f.len, 2);
	assert_memory_equal(f.data, "hi", 2);
	/* Nothing left over from the varint before. */
	assert_int_equal(f.v, 0);
	assert_int_equal(hc_pb_next(&c, &f), 1);
	assert_int_equal(f.num, 3);
	assert_int_equal(f.wire, HC_PB_I64);
	assert_int_equal(f.v, 1);
	assert_null(f.data);
	assert_int_equal(hc_pb_next(&c, &f), 0);
}

/* ------------------------------------------------------------------------ */
/* Found by the fuzzer (tests/fuzz/fuzz_prof.c), or while reading the reader
 * for it. The inputs are in tests/fuzz/regressions/ too. */

/* A location whose line has a length past the line's end: decode_locs
 * returned before handing the location's lines to the arena (a leak, seen
 * by LeakSanitizer). Minimized: sample_type {}, location {line {field 6,
 * length 24}}, string "". */
static void test_fuzz_leak_bad_line(void **state)
{
	(void)state;
	static const uint8_t in[] = {0x0a, 0x00, 0x22, 0x04, 0x22, 0x02, 0x32, 0x18, 0x32, 0x00};
	refused(in, sizeof(in), "bad line");
}

/* Sample values summing past INT64_MAX: hc_prof_total's signed sum
 * overflowed (undefined behaviour, UBSan). It now wraps. */
static void test_total_overflow(void **state)
{
	(void)state;
	struct variant v = good;
	v.value = INT64_MAX;
	struct buf b = build(&v);
	struct hc_prof *p = parse_ok(b.p, b.n);
	assert_int_equal(p->samples[0].values[1], INT64_MAX);
	assert_int_equal(hc_prof_total(p, 1), (int64_t)((uint64_t)INT64_MAX + 10));
	hc_prof_free(p);
	buf_free(&b);
}

/* A scalar field sent length-delimited read the value of the field before
 * it (hc_pb_next left f->v as it was): time_nanos became the period. */
static void test_stale_value(void **state)
{
	(void)state;
	struct buf b = {0};
	value_type(&b, 1, 1, 2);
	put_str(&b, 6, "");
	put_str(&b, 6, "threads");
	put_str(&b, 6, "count");
	put_uint(&b, 12, 524288);
	put_str(&b, 9, "abc");
	struct hc_prof *p = parse_ok(b.p, b.n);
	assert_int_equal(p->period, 524288);
	assert_int_equal(p->time_nanos, 0);
	hc_prof_free(p);
	buf_free(&b);
}

/* One function named name, one location with nlines lines of it, one sample
 * naming that location nrefs times: nlines * nrefs frames from a file of
 * about 4 * nlines + nrefs bytes. */
static struct buf amplifier(size_t nlines, size_t nrefs, const char *name)
{
	struct buf b = {0}, m = {0}, l = {0};
	value_type(&b, 1, 1, 1);
	put_uint(&m, 1, 1);
	for (size_t i = 0; i < nlines; i++) {
		put_uint(&l, 1, 1);
		put_msg(&m, 4, &l);
	}
	put_msg(&b, 4, &m);
	put_uint(&m, 1, 1);
	put_uint(&m, 2, 2);
	put_msg(&b, 5, &m);
	for (size_t i = 0; i < nrefs; i++)
		put_byte(&l, 1);
	put_msg(&m, 1, &l);
	put_uint(&m, 2, 1);
	put_msg(&b, 2, &m);
	put_str(&b, 6, "");
	put_str(&b, 6, "x");
	put_str(&b, 6, name);
	return b;
}

/* A location of 20,000 inlined lines named 80,000 times by one sample:
 * 1.6 billion frames from 160 KB (282 bytes gzipped). The reader took all
 * the memory there was (23 GB here) and was killed. The stacks now have a
 * budget (2 GiB, like the inflated file), checked before they are built. */
static void test_stack_amplification(void **state)
{
	(void)state;
	struct buf b = amplifier(100, 100, "f");
	struct hc_prof *p = parse_ok(b.p, b.n);
	assert_int_equal(p->samples[0].nframes, 100 * 100);
	assert_int_equal(strlen(p->samples[0].key), 2 * 100 * 100);
	hc_prof_free(p);
	buf_free(&b);

	b = amplifier(20000, 80000, "f");
	refused(b.p, b.n, "the stacks take more than 2 GiB");
	struct buf gz = gzip(b.p, b.n);
	printf("  %zu bytes, %zu gzipped\n", b.n, gz.n);
	refused(gz.p, gz.n, "the stacks take more than 2 GiB");
	buf_free(&gz);
	buf_free(&b);
	/* Unsymbolized: each frame also gets its "0x<addr>" name. */
	b = amplifier(20000, 80000, "");
	refused(b.p, b.n, "the stacks take more than 2 GiB");
	buf_free(&b);
	/* One line, but a name of 100 KB in each of 30,000 frames' key. */
	char *name = malloc(100001);
	assert_non_null(name);
	memset(name, 'n', 100000);
	name[100000] = 0;
	b = amplifier(1, 30000, name);
	refused(b.p, b.n, "the stacks take more than 2 GiB");
	buf_free(&b);
	free(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_valid),
	        cmocka_unit_test(test_packed_unpacked_gzip),
	        cmocka_unit_test(test_minimal),
	        cmocka_unit_test(test_empty_and_gzip),
	        cmocka_unit_test(test_varints),
	        cmocka_unit_test(test_lengths_and_wire_types),
	        cmocka_unit_test(test_bad_references),
	        cmocka_unit_test(test_truncated_nesting),
	        cmocka_unit_test(test_gzip_bomb),
	        cmocka_unit_test(test_pbread),
	        cmocka_unit_test(test_fuzz_leak_bad_line),
	        cmocka_unit_test(test_total_overflow),
	        cmocka_unit_test(test_stale_value),
	        cmocka_unit_test(test_stack_amplification),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
