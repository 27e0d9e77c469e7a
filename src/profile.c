/*
 * profile.c - the profile builder: rows in, gzipped profile.proto out.
 *
 * Owns ht_profile_heap and ht_profile_threads. The shape follows Go's
 * profileBuilder: a string table with "" at index 0, interned through a hash;
 * one Location per distinct return address (id = index + 1), each symbolized
 * once per dump; Functions deduplicated by name and file; one Mapping per
 * executable mapping any location falls in, the main executable first. Samples
 * are written as rows are read, the tables after them (protobuf does not care
 * about field order), and the encoded bytes are handed to deflate between
 * top-level messages whenever 64 KiB have built up. Everything is allocated
 * from ht_mem; libdw (symbolize.c) is the only code here that uses malloc.
 */
#include "profile.h"

#include "maps.h"
#include "mem.h"
#include "pb.h"
#include "symbolize.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HT_FLUSH_AT   (64u << 10)
#define HT_TICK_EVERY 1024
#define HT_GZIP_LEVEL Z_BEST_SPEED

/* Location keys: a pc, or (for synthetic frames) this bit | string index.
 * User-space addresses never have the top bit set. */
#define HT_SYNTH_KEY (1ull << 63)

/* ---------------------------------------------------------------------------
 * A uint64 -> uint32 hash map (open addressing, linear probing). */

struct u64map {
	uint64_t *keys;
	uint32_t *vals; /* value + 1; 0 marks an empty slot */
	size_t mask, n;
};

static inline size_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (size_t)x;
}

static int u64map_resize(struct u64map *m, size_t cap)
{
	uint64_t *keys = ht_mem_alloc(cap * sizeof(*keys));
	uint32_t *vals = ht_mem_calloc(cap, sizeof(*vals));
	if (!keys || !vals) {
		ht_mem_free(keys);
		ht_mem_free(vals);
		return -ENOMEM;
	}
	size_t mask = cap - 1;
	for (size_t i = 0; m->vals && i <= m->mask; i++) {
		if (!m->vals[i])
			continue;
		size_t j = mix64(m->keys[i]) & mask;
		while (vals[j])
			j = (j + 1) & mask;
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	ht_mem_free(m->keys);
	ht_mem_free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->mask = mask;
	return 0;
}

/* Find key; if absent insert it with value v. *out gets the stored value.
 * Returns 1 when inserted, 0 when found, or -ENOMEM. */
static int u64map_put(struct u64map *m, uint64_t key, uint32_t v, uint32_t *out)
{
	if (!m->vals || (m->n + 1) * 4 > (m->mask + 1) * 3) {
		int err = u64map_resize(m, m->vals ? (m->mask + 1) * 2 : 1024);
		if (err)
			return err;
	}
	size_t j = mix64(key) & m->mask;
	while (m->vals[j]) {
		if (m->keys[j] == key) {
			*out = m->vals[j] - 1;
			return 0;
		}
		j = (j + 1) & m->mask;
	}
	m->keys[j] = key;
	m->vals[j] = v + 1;
	m->n++;
	*out = v;
	return 1;
}

static void u64map_free(struct u64map *m)
{
	ht_mem_free(m->keys);
	ht_mem_free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------------------
 * The string table. Strings are copied into arena chunks that never move. */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

struct str {
	const char *p;
	uint32_t len;
	uint32_t hash;
};

struct strtab {
	struct str *v;
	size_t n, cap;
	uint32_t *slots; /* index + 1 */
	size_t mask;
	struct chunk *chunks;
};

static uint32_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ h >> 32);
}

static const char *strtab_copy(struct strtab *t, const char *s, size_t n)
{
	struct chunk *c = t->chunks;
	if (!c || c->cap - c->used < n + 1) {
		size_t cap = n + 1 > 60000 ? n + 1 : 60000;
		c = ht_mem_alloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = t->chunks;
		c->used = 0;
		c->cap = cap;
		t->chunks = c;
	}
	char *p = c->data + c->used;
	memcpy(p, s, n);
	p[n] = 0;
	c->used += n + 1;
	return p;
}

static int strtab_rehash(struct strtab *t, size_t cap)
{
	uint32_t *slots = ht_mem_calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t j = t->v[i].hash & (cap - 1);
		while (slots[j])
			j = (j + 1) & (cap - 1);
		slots[j] = (uint32_t)i + 1;
	}
	ht_mem_free(t->slots);
	t->slots = slots;
	t->mask = cap - 1;
	return 0;
}

/* Index of s (length n) in the table, adding it if new; -ENOMEM on failure. */
static int64_t strtab_intern_n(struct strtab *t, const char *s, size_t n)
{
	if (n > UINT32_MAX)
		n = UINT32_MAX;
	if (!t->slots || (t->n + 1) * 4 > (t->mask + 1) * 3) {
		if (strtab_rehash(t, t->slots ? (t->mask + 1) * 2 : 1024))
			return -ENOMEM;
	}
	uint32_t h = hash_bytes(s, n);
	size_t j = h & t->mask;
	while (t->slots[j]) {
		const struct str *e = &t->v[t->slots[j] - 1];
		if (e->hash == h && e->len == n && memcmp(e->p, s, n) == 0)
			return t->slots[j] - 1;
		j = (j + 1) & t->mask;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct str *v = ht_mem_realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	const char *p = strtab_copy(t, s, n);
	if (!p)
		return -ENOMEM;
	t->v[t->n] = (struct str){p, (uint32_t)n, h};
	t->slots[j] = (uint32_t)t->n + 1;
	return (int64_t)t->n++;
}

static void strtab_free(struct strtab *t)
{
	while (t->chunks) {
		struct chunk *c = t->chunks;
		t->chunks = c->next;
		ht_mem_free(c);
	}
	ht_mem_free(t->v);
	ht_mem_free(t->slots);
	memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------------------
 * The builder. */

struct loc {
	uintptr_t pc;  /* return address; 0 for synthetic frames */
	int32_t gone;  /* gone module these frames were pinned to; -1 none */
	uint32_t func; /* function index + 1; 0 = none */
	uint32_t map;  /* profile mapping id; 0 = none */
	int32_t line;
};

struct func {
	int64_t name, file;
};

/* A mapping written to the profile: a current one (key < maps.n) or a gone
 * module (key - maps.n). Counts say how well its locations were symbolized. */
struct pmap {
	const struct ht_module *m;
	size_t key;
	size_t nloc, nfunc, nfile, nline;
};

struct builder {
	const struct ht_profile_input *in;
	struct ht_buf *out;
	size_t out_start; /* out's length before: restored on failure */
	struct ht_pb pb;
	z_stream z;
	bool z_open;
	int err;
	unsigned ticks;

	struct strtab strs;
	struct u64map locmap; /* key -> loc index */
	struct loc *locs;
	size_t nlocs, caplocs;
	struct u64map funcmap; /* name << 32 | file -> func index */
	struct func *funcs;
	size_t nfuncs, capfuncs;

	struct ht_profile_ctx *ctx;     /* the dump's maps snapshot and symbolizer */
	struct ht_profile_ctx *own_ctx; /* made here when the caller gave none */
	const struct ht_maps *maps;
	uint32_t *pmap_of_key; /* profile mapping id by module key; 0 = not yet */
	struct pmap *pmaps;
	size_t npmaps;

	uint32_t *ids; /* scratch: one sample's location ids */
	size_t capids;
};

static void tick(struct builder *b)
{
	if (b->in->tick)
		b->in->tick(b->in->tick_arg);
}

static void maybe_tick(struct builder *b)
{
	if (++b->ticks % HT_TICK_EVERY == 0)
		tick(b);
}

static int64_t intern(struct builder *b, const char *s)
{
	if (b->err)
		return 0;
	int64_t i = strtab_intern_n(&b->strs, s ? s : "", s ? strlen(s) : 0);
	if (i < 0) {
		b->err = (int)i;
		return 0;
	}
	return i;
}

static void *zalloc_ht(void *opaque, uInt items, uInt size)
{
	(void)opaque;
	return ht_mem_calloc(items, size);
}

static void zfree_ht(void *opaque, void *p)
{
	(void)opaque;
	ht_mem_free(p);
}

/* Compress what the encoder holds. finish ends the gzip stream. */
static int deflate_out(struct builder *b, bool finish)
{
	b->z.next_in = b->pb.buf.data;
	b->z.avail_in = (uInt)b->pb.buf.len;
	int mode = finish ? Z_FINISH : Z_NO_FLUSH;
	for (;;) {
		int err = ht_buf_reserve(b->out, 64u << 10);
		if (err)
			return err;
		size_t room = b->out->cap - b->out->len;
		if (room > (1u << 30))
			room = 1u << 30;
		b->z.next_out = b->out->data + b->out->len;
		b->z.avail_out = (uInt)room;
		int r = deflate(&b->z, mode);
		b->out->len += room - b->z.avail_out;
		if (r == Z_STREAM_END)
			break;
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -EIO;
		if (!finish && b->z.avail_in == 0 && b->z.avail_out != 0)
			break;
	}
	b->pb.buf.len = 0;
	return 0;
}

/* Between top-level fields: hand the bytes to deflate once enough built up. */
static void flush(struct builder *b)
{
	if (b->err || b->pb.nest != 0 || b->pb.buf.len < HT_FLUSH_AT)
		return;
	if (b->pb.err) {
		b->err = b->pb.err;
		return;
	}
	b->err = deflate_out(b, false);
	tick(b);
}

/* ------------------------------------------------------ per-dump context */

/* The two profiles of one dump share one /proc/self/maps snapshot and one
 * symbolizer: module keys (maps index, then gone modules) mean the same in
 * both, and a module both profiles touch (the executable, libc) is opened and
 * its symbols sorted once per dump rather than once per profile. */
struct ht_profile_ctx {
	struct ht_maps maps;
	size_t nkeys;
	struct ht_symbolizer *sym; /* opened by the first profile that symbolizes */
};

int ht_profile_ctx_open(struct ht_profile_ctx **out, const struct ht_profile_input *in)
{
	struct ht_profile_ctx *c = ht_mem_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	/* A missing /proc is not fatal: locations just get no mapping. */
	if (ht_maps_read(&c->maps) != 0)
		memset(&c->maps, 0, sizeof(c->maps));
	c->nkeys = c->maps.n + in->ngone;
	*out = c;
	return 0;
}

void ht_profile_ctx_close(struct ht_profile_ctx *c)
{
	if (!c)
		return;
	ht_symbolize_close(c->sym);
	ht_maps_free(&c->maps);
	ht_mem_free(c);
}

static int builder_init(struct builder *b, const struct ht_profile_input *in,
                        struct ht_profile_ctx *ctx, struct ht_buf *out)
{
	memset(b, 0, sizeof(*b));
	b->in = in;
	b->out = out;
	b->out_start = out->len;
	ht_pb_init(&b->pb);
	b->z.zalloc = zalloc_ht;
	b->z.zfree = zfree_ht;
	if (deflateInit2(&b->z, HT_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	b->z_open = true;
	if (intern(b, "") != 0)
		return b->err ? b->err : -EINVAL;

	if (!ctx) {
		int err = ht_profile_ctx_open(&b->own_ctx, in);
		if (err)
			return err;
		ctx = b->own_ctx;
	}
	b->ctx = ctx;
	b->maps = &ctx->maps;
	size_t nkeys = b->maps->n + in->ngone;
	b->pmap_of_key = ht_mem_calloc(nkeys ? nkeys : 1, sizeof(*b->pmap_of_key));
	b->pmaps = ht_mem_calloc(nkeys + 1, sizeof(*b->pmaps));
	if (!b->pmap_of_key || !b->pmaps)
		return -ENOMEM;
	return 0;
}

static void builder_free(struct builder *b)
{
	if (b->z_open)
		deflateEnd(&b->z);
	ht_pb_free(&b->pb);
	strtab_free(&b->strs);
	u64map_free(&b->locmap);
	u64map_free(&b->funcmap);
	ht_mem_free(b->locs);
	ht_mem_free(b->funcs);
	ht_profile_ctx_close(b->own_ctx);
	ht_mem_free(b->pmap_of_key);
	ht_mem_free(b->pmaps);
	ht_mem_free(b->ids);
}

static const struct ht_module *module_key(struct builder *b, size_t key)
{
	return key < b->maps->n ? &b->maps->v[key].m : &b->in->gone[key - b->maps->n];
}

/* Profile mapping id for module key, assigning the next id when new. */
static uint32_t pmap_id(struct builder *b, size_t key)
{
	if (!b->pmap_of_key[key]) {
		struct pmap *p = &b->pmaps[b->npmaps++];
		p->m = module_key(b, key);
		p->key = key;
		b->pmap_of_key[key] = (uint32_t)b->npmaps;
	}
	return b->pmap_of_key[key];
}

/* Module key of the mapping holding addr, or SIZE_MAX. Current mappings
 * first; gone modules only for what nothing mapped now covers (newest first). */
static size_t find_module(struct builder *b, uintptr_t addr, int32_t gone)
{
	/* A stack retired at dlclose: its frames in that module's range are
	 * that module's, whatever is loaded there now. */
	if (gone >= 0 && (size_t)gone < b->in->ngone) {
		const struct ht_module *g = &b->in->gone[gone];
		if (addr >= g->start && addr < g->limit)
			return b->maps->n + (size_t)gone;
	}
	const struct ht_mapping *x = ht_maps_find(b->maps, addr);
	if (x)
		return (size_t)(x - b->maps->v);
	for (size_t i = b->in->ngone; i-- > 0;) {
		const struct ht_module *g = &b->in->gone[i];
		if (addr >= g->start && addr < g->limit)
			return b->maps->n + i;
	}
	return SIZE_MAX;
}

/* Index of key in map, or n when it is new (room for one more element of
 * size elem is then made in *v); UINT32_MAX with b->err set on failure. */
static uint32_t table_slot(struct builder *b, struct u64map *map, uint64_t key, size_t n, void **v,
                           size_t *cap, size_t elem, size_t first_cap)
{
	uint32_t idx;
	int r = u64map_put(map, key, (uint32_t)n, &idx);
	if (r <= 0) {
		if (r < 0)
			b->err = r;
		return r < 0 ? UINT32_MAX : idx;
	}
	if (n == *cap) {
		size_t c = *cap ? *cap * 2 : first_cap;
		void *nv = ht_mem_realloc(*v, c * elem);
		if (!nv) {
			b->err = -ENOMEM;
			return UINT32_MAX;
		}
		*v = nv;
		*cap = c;
	}
	return (uint32_t)n;
}

/* Location index for key, adding a new location when unseen. */
static uint32_t location(struct builder *b, uint64_t key, uintptr_t pc)
{
	uint32_t idx = table_slot(b, &b->locmap, key, b->nlocs, (void **)&b->locs, &b->caplocs,
	                          sizeof(*b->locs), 1024);
	if (idx == UINT32_MAX)
		return 0;
	if (idx == b->nlocs)
		b->locs[b->nlocs++] = (struct loc){.pc = pc, .gone = -1};
	return idx;
}

static uint32_t function(struct builder *b, int64_t name, int64_t file)
{
	uint32_t idx = table_slot(b, &b->funcmap, (uint64_t)name << 32 | (uint64_t)file, b->nfuncs,
	                          (void **)&b->funcs, &b->capfuncs, sizeof(*b->funcs), 256);
	if (idx == UINT32_MAX)
		return 0;
	if (idx == b->nfuncs)
		b->funcs[b->nfuncs++] = (struct func){name, file};
	return idx;
}

/* A frame that stands for something with no address (the main thread, a
 * thread created before heaptap started): a location with only a name. */
static uint32_t synthetic(struct builder *b, const char *name)
{
	int64_t s = intern(b, name);
	uint32_t idx = location(b, HT_SYNTH_KEY | (uint64_t)s, 0);
	if (!b->err && !b->locs[idx].func)
		b->locs[idx].func = function(b, s, 0) + 1;
	return idx;
}

/* Location ids of one stack (leaf first), optionally ending with a
 * synthetic root frame; returns how many. */
static size_t stack_ids(struct builder *b, const uintptr_t *pcs, uint32_t depth, const char *root,
                        int32_t gone)
{
	size_t need = (size_t)depth + 1;
	if (need > b->capids) {
		uint32_t *v = ht_mem_realloc(b->ids, need * sizeof(*v));
		if (!v) {
			b->err = -ENOMEM;
			return 0;
		}
		b->ids = v;
		b->capids = need;
	}
	size_t n = 0;
	for (uint32_t i = 0; i < depth && !b->err; i++) {
		if (pcs[i] == HT_PC_NOT_TAKEN) {
			b->ids[n++] = synthetic(b, HT_NOT_TAKEN_NAME) + 1;
			continue;
		}
		uintptr_t pc = pcs[i] & ~(uintptr_t)HT_SYNTH_KEY;
		/* The same address in two modules (one unloaded, another loaded
		 * there since) is two locations. */
		uint64_t key = gone >= 0 ? pc ^ ((uint64_t)(gone + 1) << 48) : pc;
		uint32_t idx = location(b, key, pc);
		if (!b->err && gone >= 0)
			b->locs[idx].gone = gone;
		b->ids[n++] = idx + 1;
	}
	if (root && !b->err)
		b->ids[n++] = synthetic(b, root) + 1;
	return b->err ? 0 : n;
}

static void value_type(struct builder *b, unsigned field, const char *type, const char *unit)
{
	int64_t t = intern(b, type), u = intern(b, unit);
	size_t start = ht_pb_begin(&b->pb);
	ht_pb_int64_opt(&b->pb, HT_PB_VALUETYPE_TYPE, t);
	ht_pb_int64_opt(&b->pb, HT_PB_VALUETYPE_UNIT, u);
	ht_pb_end(&b->pb, field, start);
}

static int64_t round_value(double v)
{
	if (!(v == v))
		return 0;
	if (v >= 9.2e18)
		return INT64_MAX;
	if (v <= -9.2e18)
		return INT64_MIN;
	return llround(v);
}

/* Symbolize every location and settle its mapping. */
static void symbolize_locations(struct builder *b)
{
	if (!b->ctx->sym) {
		int err = ht_symbolize_open(&b->ctx->sym, b->ctx->nkeys);
		if (err) {
			b->err = err;
			return;
		}
	}
	struct ht_symbolizer *sym = b->ctx->sym;
	for (size_t i = 0; i < b->nlocs && !b->err; i++) {
		struct loc *l = &b->locs[i];
		maybe_tick(b);
		if (!l->pc)
			continue;
		uintptr_t addr = l->pc - 1;
		size_t key = find_module(b, addr, l->gone);
		if (key == SIZE_MAX)
			continue;
		l->map = pmap_id(b, key);
		struct pmap *pm = &b->pmaps[l->map - 1];
		pm->nloc++;
		struct ht_symbolize_frame f;
		if (ht_symbolize_lookup(sym, key, pm->m, addr, &f) != 0)
			continue;
		int64_t name = intern(b, f.func), file = intern(b, f.file);
		l->func = function(b, name, file) + 1;
		l->line = f.line;
		pm->nfunc++;
		pm->nfile += f.file != NULL;
		pm->nline += f.line > 0;
	}
}

static void write_locations(struct builder *b)
{
	struct ht_pb *pb = &b->pb;
	for (size_t i = 0; i < b->nlocs && !b->err; i++) {
		const struct loc *l = &b->locs[i];
		size_t start = ht_pb_begin(pb);
		ht_pb_uint64(pb, HT_PB_LOCATION_ID, i + 1);
		ht_pb_uint64_opt(pb, HT_PB_LOCATION_MAPPING_ID, l->map);
		ht_pb_uint64_opt(pb, HT_PB_LOCATION_ADDRESS, l->pc ? l->pc - 1 : 0);
		if (l->func) {
			size_t ls = ht_pb_begin(pb);
			ht_pb_uint64(pb, HT_PB_LINE_FUNCTION_ID, l->func);
			ht_pb_int64_opt(pb, HT_PB_LINE_LINE, l->line);
			ht_pb_end(pb, HT_PB_LOCATION_LINE, ls);
		}
		ht_pb_end(pb, HT_PB_PROFILE_LOCATION, start);
		flush(b);
		maybe_tick(b);
	}
	for (size_t i = 0; i < b->nfuncs && !b->err; i++) {
		const struct func *f = &b->funcs[i];
		size_t start = ht_pb_begin(pb);
		ht_pb_uint64(pb, HT_PB_FUNCTION_ID, i + 1);
		ht_pb_int64_opt(pb, HT_PB_FUNCTION_NAME, f->name);
		ht_pb_int64_opt(pb, HT_PB_FUNCTION_SYSTEM_NAME, f->name);
		ht_pb_int64_opt(pb, HT_PB_FUNCTION_FILENAME, f->file);
		ht_pb_end(pb, HT_PB_PROFILE_FUNCTION, start);
		flush(b);
	}
}

static void write_mappings(struct builder *b)
{
	struct ht_pb *pb = &b->pb;
	for (size_t i = 0; i < b->npmaps && !b->err; i++) {
		const struct pmap *p = &b->pmaps[i];
		char hex[2 * sizeof(p->m->build_id) + 1];
		ht_maps_hex(p->m->build_id, p->m->build_id_len, hex);
		int64_t file = intern(b, p->m->path), bid = intern(b, hex);
		bool all = p->nloc > 0;
		size_t start = ht_pb_begin(pb);
		ht_pb_uint64(pb, HT_PB_MAPPING_ID, i + 1);
		ht_pb_uint64_opt(pb, HT_PB_MAPPING_MEMORY_START, p->m->start);
		ht_pb_uint64_opt(pb, HT_PB_MAPPING_MEMORY_LIMIT, p->m->limit);
		ht_pb_uint64_opt(pb, HT_PB_MAPPING_FILE_OFFSET, p->m->file_offset);
		ht_pb_int64_opt(pb, HT_PB_MAPPING_FILENAME, file);
		ht_pb_int64_opt(pb, HT_PB_MAPPING_BUILD_ID, bid);
		ht_pb_bool_opt(pb, HT_PB_MAPPING_HAS_FUNCTIONS, all && p->nfunc == p->nloc);
		ht_pb_bool_opt(pb, HT_PB_MAPPING_HAS_FILENAMES, all && p->nfile == p->nloc);
		ht_pb_bool_opt(pb, HT_PB_MAPPING_HAS_LINE_NUMBERS, all && p->nline == p->nloc);
		ht_pb_end(pb, HT_PB_PROFILE_MAPPING, start);
		flush(b);
	}
}

/* The tail every profile shares: locations, functions, mappings, comments,
 * times, the string table (last, once every string is in), then gzip's end. */
static int finish(struct builder *b, const int64_t *comments, size_t ncomments)
{
	struct ht_pb *pb = &b->pb;
	if (!b->err)
		symbolize_locations(b);
	write_locations(b);
	write_mappings(b);
	ht_pb_int64s(pb, HT_PB_PROFILE_COMMENT, comments, ncomments);
	ht_pb_int64_opt(pb, HT_PB_PROFILE_TIME_NANOS, b->in->time_nanos);
	ht_pb_int64_opt(pb, HT_PB_PROFILE_DURATION_NANOS, b->in->duration_nanos);
	for (size_t i = 0; i < b->strs.n && !b->err; i++) {
		ht_pb_bytes(pb, HT_PB_PROFILE_STRING_TABLE, b->strs.v[i].p, b->strs.v[i].len);
		flush(b);
	}
	if (!b->err && pb->err)
		b->err = pb->err;
	if (!b->err)
		b->err = deflate_out(b, true);
	return b->err;
}

/* Each profile kind is its schema and one loop over rows; these write the
 * parts they share. */

/* A profile kind: its sample types (type, unit), the default one, its period
 * type and period. */
struct schema {
	const char *const (*types)[2];
	size_t ntypes;
	const char *default_type; /* NULL: pprof's default, the last */
	const char *period_type[2];
	int64_t period;
};

/* A builder for one profile, its schema written; the main executable is
 * mapping 1, referenced or not. */
static int profile_begin(struct builder *b, const struct ht_profile_input *in,
                         struct ht_profile_ctx *ctx, struct ht_buf *out, const struct schema *s)
{
	int err = builder_init(b, in, ctx, out);
	if (err)
		return err;
	if (b->maps->main < b->maps->n)
		pmap_id(b, b->maps->main);
	for (size_t i = 0; i < s->ntypes; i++)
		value_type(b, HT_PB_PROFILE_SAMPLE_TYPE, s->types[i][0], s->types[i][1]);
	if (s->default_type)
		ht_pb_int64(&b->pb, HT_PB_PROFILE_DEFAULT_SAMPLE_TYPE, intern(b, s->default_type));
	value_type(b, HT_PB_PROFILE_PERIOD_TYPE, s->period_type[0], s->period_type[1]);
	ht_pb_int64_opt(&b->pb, HT_PB_PROFILE_PERIOD, s->period);
	return 0;
}

/* The tables, the comments and gzip; on failure out is left as it was. */
static int profile_end(struct builder *b, int err, const int64_t *comments, size_t ncomments)
{
	if (!err)
		err = finish(b, comments, b->err ? 0 : ncomments);
	builder_free(b);
	if (err)
		b->out->len = b->out_start;
	return err;
}

/* A sample's locations (b->ids) and values; labels follow, then
 * sample_end. */
static size_t sample_begin(struct builder *b, size_t nids, const int64_t *v, size_t nv)
{
	size_t start = ht_pb_begin(&b->pb);
	ht_pb_uint32s(&b->pb, HT_PB_SAMPLE_LOCATION_ID, b->ids, nids);
	ht_pb_int64s(&b->pb, HT_PB_SAMPLE_VALUE, v, nv);
	return start;
}

static void sample_label(struct builder *b, int64_t key, int64_t str, int64_t num, int64_t unit)
{
	size_t start = ht_pb_begin(&b->pb);
	ht_pb_int64(&b->pb, HT_PB_LABEL_KEY, key);
	if (str)
		ht_pb_int64(&b->pb, HT_PB_LABEL_STR, str);
	else
		ht_pb_int64(&b->pb, HT_PB_LABEL_NUM, num);
	if (unit)
		ht_pb_int64(&b->pb, HT_PB_LABEL_NUM_UNIT, unit);
	ht_pb_end(&b->pb, HT_PB_SAMPLE_LABEL, start);
}

static void sample_end(struct builder *b, size_t start)
{
	ht_pb_end(&b->pb, HT_PB_PROFILE_SAMPLE, start);
	flush(b);
	maybe_tick(b);
}

int ht_profile_heap(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                    struct ht_buf *out)
{
	static const char *const types[][2] = {{"alloc_objects", "count"},
	                                       {"alloc_space", "bytes"},
	                                       {"inuse_objects", "count"},
	                                       {"inuse_space", "bytes"}};
	const struct schema heap = {types,
	                            4,
	                            in->default_type ? in->default_type : "inuse_space",
	                            {"space", "bytes"},
	                            (int64_t)in->rate};
	struct builder b;
	int err = profile_begin(&b, in, ctx, out, &heap);
	if (err)
		return profile_end(&b, err, NULL, 0);

	int64_t kbytes = intern(&b, "bytes");
	for (size_t i = 0; i < in->nheap && !b.err; i++) {
		const struct ht_heap_row *r = &in->heap[i];
		size_t n = stack_ids(&b, r->pcs, r->depth,
		                     r->depth  ? NULL
		                     : r->root ? r->root
		                               : "[unknown stack]",
		                     (int32_t)r->pinned - 1);
		int64_t v[4] = {round_value(r->alloc_objects), round_value(r->alloc_bytes),
		                round_value(r->inuse_objects), round_value(r->inuse_bytes)};
		size_t start = sample_begin(&b, n, v, 4);
		if (!r->no_size)
			sample_label(&b, kbytes, 0, (int64_t)r->size, kbytes);
		sample_end(&b, start);
	}

	int64_t cbuf[32], *comments = cbuf;
	size_t nc = in->ncomments;
	if (nc > 32) {
		comments = ht_mem_calloc(nc, sizeof(*comments));
		if (!comments && !b.err)
			b.err = -ENOMEM;
	}
	for (size_t i = 0; i < nc && !b.err; i++)
		comments[i] = intern(&b, in->comments[i]);
	err = profile_end(&b, 0, comments, nc);
	if (comments != cbuf)
		ht_mem_free(comments);
	return err;
}

/* Names for the synthetic root frame of threads with a label. */
static const char *thread_root(const char *label, char *buf, size_t n)
{
	if (!label)
		return "[unknown creation stack]";
	if (strcmp(label, "main") == 0)
		return "[main thread]";
	if (strcmp(label, "unknown") == 0)
		return "[created before heaptap started]";
	snprintf(buf, n, "[%s]", label);
	return buf;
}

int ht_profile_threads(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                       struct ht_buf *out)
{
	static const char *const types[][2] = {{"threads", "count"}};
	const struct schema threads = {types, 1, NULL, {"threads", "count"}, 1};
	struct builder b;
	int err = profile_begin(&b, in, ctx, out, &threads);
	if (err)
		return profile_end(&b, err, NULL, 0);

	int64_t korigin = intern(&b, "origin"), kstate = intern(&b, "state");
	int64_t total = 0, ended = 0;
	for (size_t i = 0; i < in->nthreads && !b.err; i++) {
		const struct ht_thread_row *r = &in->threads[i];
		char name[96];
		const char *root = NULL;
		if (r->depth == 0 || r->label)
			root = thread_root(r->label, name, sizeof(name));
		size_t n = stack_ids(&b, r->pcs, r->depth, root, -1);
		size_t start = sample_begin(&b, n, &r->count, 1);
		bool unjoined = r->state && strcmp(r->state, "unjoined") == 0;
		sample_label(&b, kstate, intern(&b, unjoined ? "unjoined" : "running"), 0, 0);
		if (r->label)
			sample_label(&b, korigin, intern(&b, r->label), 0, 0);
		sample_end(&b, start);
		total += r->count;
		if (unjoined)
			ended += r->count;
	}

	char line[2][96];
	snprintf(line[0], sizeof(line[0]), "live threads: %lld", (long long)total);
	snprintf(line[1], sizeof(line[1]), "running_threads=%lld unjoined_threads=%lld",
	         (long long)(total - ended), (long long)ended);
	int64_t comments[2] = {intern(&b, line[0]), intern(&b, line[1])};
	return profile_end(&b, 0, comments, 2);
}

/* ------------------------------------------------------------ text forms */

/* printf into a buffer (sticky error in *err). */
static void tprintf(struct ht_buf *out, int *err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void tprintf(struct ht_buf *out, int *err, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (*err || n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	*err = ht_buf_append(out, line, (size_t)n);
}

/* The module key of addr for a text form (no gone modules there). */
static int describe(struct ht_profile_ctx *ctx, uintptr_t addr, struct ht_symbolize_frame *f)
{
	memset(f, 0, sizeof(*f));
	const struct ht_mapping *x = ht_maps_find(&ctx->maps, addr);
	if (!x)
		return -ENOENT;
	if (!ctx->sym) {
		int err = ht_symbolize_open(&ctx->sym, ctx->nkeys ? ctx->nkeys : ctx->maps.n);
		if (err)
			return err;
	}
	return ht_symbolize_lookup(ctx->sym, (size_t)(x - ctx->maps.v), &x->m, addr, f);
}

static void text_stack(struct ht_profile_ctx *ctx, const uintptr_t *pcs, uint32_t depth,
                       struct ht_buf *out, int *err)
{
	tprintf(out, err, " @");
	for (uint32_t i = 0; i < depth; i++)
		tprintf(out, err, " 0x%lx", (unsigned long)pcs[i]);
	tprintf(out, err, "\n");
	for (uint32_t i = 0; i < depth && !*err; i++) {
		struct ht_symbolize_frame f;
		if (pcs[i] <= HT_PC_NOT_TAKEN || describe(ctx, pcs[i] - 1, &f) != 0 || !f.func)
			continue;
		if (f.file)
			tprintf(out, err, "#\t0x%lx\t%s\t%s:%d\n", (unsigned long)pcs[i], f.func,
			        f.file, f.line);
		else
			tprintf(out, err, "#\t0x%lx\t%s\n", (unsigned long)pcs[i], f.func);
	}
	tprintf(out, err, "\n");
}

int ht_profile_heap_text(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                         struct ht_buf *out)
{
	int err = 0;
	double io = 0, ib = 0, ao = 0, ab = 0;
	for (size_t i = 0; i < in->nheap; i++) {
		io += in->heap[i].inuse_objects;
		ib += in->heap[i].inuse_bytes;
		ao += in->heap[i].alloc_objects;
		ab += in->heap[i].alloc_bytes;
	}
	tprintf(out, &err, "heap profile: %lld: %lld [%lld: %lld] @ heap_v2/1\n",
	        (long long)round_value(io), (long long)round_value(ib), (long long)round_value(ao),
	        (long long)round_value(ab));
	for (size_t i = 0; i < in->nheap && !err; i++) {
		const struct ht_heap_row *r = &in->heap[i];
		tprintf(out, &err, "%lld: %lld [%lld: %lld]",
		        (long long)round_value(r->inuse_objects),
		        (long long)round_value(r->inuse_bytes),
		        (long long)round_value(r->alloc_objects),
		        (long long)round_value(r->alloc_bytes));
		text_stack(ctx, r->pcs, r->depth, out, &err);
		if (in->tick && i % 256 == 255)
			in->tick(in->tick_arg);
	}
	tprintf(out, &err, "\n# heaptap (sampling rate %llu; values are unbiased estimates)\n",
	        (unsigned long long)in->rate);
	for (size_t i = 0; i < in->ncomments; i++)
		tprintf(out, &err, "# %s\n", in->comments[i]);
	return err;
}

int ht_profile_threads_text(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                            struct ht_buf *out)
{
	int err = 0;
	int64_t total = 0;
	for (size_t i = 0; i < in->nthreads; i++)
		total += in->threads[i].count;
	tprintf(out, &err, "threads profile: total %lld\n", (long long)total);
	for (size_t i = 0; i < in->nthreads && !err; i++) {
		const struct ht_thread_row *r = &in->threads[i];
		tprintf(out, &err, "%lld", (long long)r->count);
		if (r->depth == 0) {
			/* pprof's legacy reader wants an address on every record. */
			char buf[64];
			tprintf(out, &err, " @ 0x0\n# %s%s%s\n\n",
			        thread_root(r->label, buf, sizeof(buf)), r->state ? " state=" : "",
			        r->state ? r->state : "");
			continue;
		}
		text_stack(ctx, r->pcs, r->depth, out, &err);
		if (r->state && strcmp(r->state, "running")) {
			/* The blank line text_stack ended with stays the record's end. */
			out->len--;
			tprintf(out, &err, "# state=%s\n\n", r->state);
		}
	}
	return err;
}

int ht_profile_symbols(struct ht_profile_ctx *ctx, const char *list, size_t len, struct ht_buf *out)
{
	int err = 0;
	tprintf(out, &err, "num_symbols: 1\n");
	size_t i = 0;
	while (i < len && !err) {
		/* Addresses are separated by '+' (and, leniently, by spaces). */
		while (i < len && (list[i] == '+' || list[i] == ' ' || list[i] == '\n'))
			i++;
		size_t j = i;
		while (j < len && list[j] != '+' && list[j] != ' ' && list[j] != '\n')
			j++;
		char tok[32];
		if (j > i && j - i < sizeof(tok)) {
			memcpy(tok, list + i, j - i);
			tok[j - i] = 0;
			char *end;
			unsigned long long a = strtoull(tok, &end, 0);
			struct ht_symbolize_frame f;
			if (*end == 0 && a && describe(ctx, (uintptr_t)a, &f) == 0 && f.func)
				tprintf(out, &err, "%#llx %s\n", a, f.func);
		}
		i = j;
	}
	return err;
}
