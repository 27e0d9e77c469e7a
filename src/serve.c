/*
 * serve.c - what the /debug/pprof listener serves (http.h): the heap
 * profile (as `heap`, default sample inuse_space, and as `allocs`, default
 * alloc_space), the thread profile, their ?debug=1 text forms, ?seconds=
 * deltas and symbol lookups, all built by dump.c exactly as a dump builds
 * them, so a scrape and a file say the same. Profiles served here hold at
 * most HT_SERVE_MAX_SAMPLES samples: Pyroscope's default limit.
 */
#include "dump.h"
#include "http.h"
#include "mem.h"

#include <errno.h>
#include <heaptap.h>

#define HT_SERVE_MAX_SAMPLES 16000

struct ht_serve_snap {
	struct ht_heap_row *rows;
	size_t n;
	int64_t time_nanos;
};

int ht_serve_profile(enum ht_serve_kind kind, int debug, const struct ht_serve_snap *base,
                     struct ht_buf *out)
{
	struct ht_dump_want w = {
	        .kind = kind == HT_SERVE_THREADS ? HEAPTAP_THREADS : HEAPTAP_HEAP,
	        .text = debug != 0,
	        .default_type = kind == HT_SERVE_ALLOCS ? "alloc_space" : NULL,
	        .max_samples = HT_SERVE_MAX_SAMPLES,
	};
	if (base) {
		w.base = base->rows;
		w.nbase = base->n;
		w.base_time = base->time_nanos;
	}
	return ht_dump_build(&w, out);
}

int ht_serve_snap_take(struct ht_serve_snap **out)
{
	struct ht_serve_snap *s = ht_mem_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	int r = ht_dump_rows_copy(&s->rows, &s->n, &s->time_nanos);
	if (r != 0) {
		ht_mem_free(s);
		return r;
	}
	*out = s;
	return 0;
}

void ht_serve_snap_free(struct ht_serve_snap *s)
{
	if (!s)
		return;
	ht_mem_free(s->rows);
	ht_mem_free(s);
}

int ht_serve_symbols(const char *list, size_t len, struct ht_buf *out)
{
	return ht_dump_symbols(list, len, out);
}
