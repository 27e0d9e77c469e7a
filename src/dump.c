/*
 * dump.c - one dump, from the tables to a file pair, an fd or a path. See
 * dump.h.
 *
 * A dump drains every ring and snapshots the tables under the aggregation
 * lock, then encodes and writes with that lock released, draining again now
 * and then (the encoder's tick), so application threads never wait on a
 * dump. The comments carry the process figures that tell a leak from
 * allocator retention, heaptap's own resident memory among them, so that
 * RSS minus heaptap's share is the program's.
 */
#include "dump.h"

#include "addrset.h"
#include "agg.h"
#include "core.h"
#include "flusher.h"
#include "loader.h"
#include "log.h"
#include "mem.h"
#include "options.h"
#include "output.h"
#include "profile.h"
#include "real.h"
#include "stack.h"
#include "thread.h"
#include "tls.h"
#include "unwind.h"

#include <errno.h>
#include <fcntl.h>
#include <heaptap.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned api_waiting; /* program threads waiting for dump_lock */

static void drain_locked(void)
{
	ht_agg_lock();
	ht_agg_drain_all();
	ht_agg_unlock();
}

static void tick(void *arg)
{
	(void)arg;
	drain_locked();
}

static uint64_t read_rss(void)
{
	/* thread-self: the leader's reads empty once it has called pthread_exit. */
	int fd = open("/proc/thread-self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[128];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	uint64_t resident = 0;
	const char *p = buf;
	while (*p && *p != ' ')
		p++;
	while (*p == ' ')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		resident = resident * 10 + (uint64_t)(*p - '0');
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

uint64_t ht_dump_own_resident(void)
{
	/* Measured with mincore: heaptap's allocator (every slab it opened:
	 * tables, records, rings, and what libdw, libunwind and zlib malloc
	 * inside heaptap), the table of sampled pointers, heaptap's own stacks,
	 * its thread's stack, its static arrays. Counted: libunwind's frame
	 * caches, its own mmaps (unwind.c). Left out: the file pages of
	 * heaptap's code and of the libraries it loads (libdw, libelf,
	 * libunwind, zlib: 1-2 MiB), shared with the page cache. */
	return (uint64_t)ht_mem_resident() + ht_addrset_resident() + ht_stack_resident() +
	       ht_flusher_resident() + ht_loader_resident() + ht_unwind_cache_bytes();
}

#define NCOMMENTS 10
struct snapshot {
	struct ht_heap_row *heap;
	size_t nheap;
	struct ht_thread_row *threads;
	size_t nthreads;
	int64_t live_threads, unjoined_threads;
	char text[NCOMMENTS][160];
	const char *comments[NCOMMENTS];
	size_t ncomments;
	struct ht_module *gone;
	size_t ngone;
};

static void snapshot_free(struct snapshot *s)
{
	ht_mem_free(s->heap);
	ht_mem_free(s->threads);
	ht_mem_free(s->gone);
}

static int snapshot_take(struct snapshot *s, bool want_heap)
{
	memset(s, 0, sizeof(*s));
	struct ht_agg_totals tot;
	int r = 0;
	ht_agg_lock();
	ht_agg_drain_all();
	if (want_heap)
		r = ht_agg_heap_rows(&s->heap, &s->nheap);
	if (r == 0)
		r = ht_thread_rows(&s->threads, &s->nthreads, &s->live_threads,
		                   &s->unjoined_threads);
	ht_agg_totals(&tot);
	ht_agg_unlock();
	if (r != 0) {
		snapshot_free(s);
		return r;
	}
	ht_loader_gone_copy(&s->gone, &s->ngone);

	/* Process figures, so a leak can be told from allocator retention. */
	struct mallinfo2 mi = mallinfo2();
	uint64_t rate = atomic_load(&ht_core.rate);
	size_t k = 0;
	snprintf(s->text[k++], sizeof(s->text[0]), "heaptap %s pid %d rate %llu",
	         HEAPTAP_VERSION_STRING, (int)ht_core.pid, (unsigned long long)rate);
	/* Taken together, so that one can be subtracted from the other. */
	uint64_t rss = read_rss(), own_resident = ht_dump_own_resident();
	snprintf(s->text[k++], sizeof(s->text[0]), "rss_bytes=%llu", (unsigned long long)rss);
	/* mallinfo2 describes glibc's arenas: under another allocator they hold
	 * next to nothing of the program's, and the comment says so. */
	char abuf[64];
	const char *alloc = ht_real_allocator(abuf, sizeof(abuf));
	bool glibc = strcmp(alloc, "glibc") == 0;
	snprintf(s->text[k++], sizeof(s->text[0]), "allocator=%s", alloc);
	snprintf(s->text[k++], sizeof(s->text[0]),
	         "malloc_in_use_bytes=%zu malloc_free_held_bytes=%zu malloc_mmap_bytes=%zu "
	         "malloc_releasable_bytes=%zu (glibc mallinfo2%s)",
	         mi.uordblks + mi.hblkhd, mi.fordblks, mi.hblkhd, mi.keepcost,
	         glibc ? "" : "; not the allocator in use");
	snprintf(s->text[k++], sizeof(s->text[0]),
	         "heap_live_estimate_bytes=%.0f heap_live_estimate_objects=%.0f live_samples=%llu",
	         tot.live_bytes, tot.live_objects, (unsigned long long)tot.live_samples);
	snprintf(s->text[k++], sizeof(s->text[0]), "live_threads=%lld unjoined_threads=%lld",
	         (long long)s->live_threads, (long long)s->unjoined_threads);
	snprintf(s->text[k++], sizeof(s->text[0]),
	         "samples_dropped=%llu events_dropped=%llu table_overflow_samples=%llu",
	         (unsigned long long)atomic_load(&ht_core.dropped_samples),
	         (unsigned long long)atomic_load(&ht_core.dropped_events),
	         (unsigned long long)tot.overflow_samples);
	ht_unwind_comment(s->text[k++], sizeof(s->text[0]));
	snprintf(s->text[k++], sizeof(s->text[0]), "small_stack_samples=%llu busy_resets=%llu",
	         (unsigned long long)atomic_load(&ht_core.small_stack_samples),
	         (unsigned long long)atomic_load(&ht_core.busy_resets));
	/* Per live sample: all of heaptap's resident memory over the live
	 * samples, fixed costs included (0 with none live). */
	snprintf(s->text[k++], sizeof(s->text[0]),
	         "heaptap_own_bytes=%zu heaptap_resident_bytes=%llu "
	         "heaptap_bytes_per_live_sample=%.1f heaptap_stacks=%llu",
	         ht_mem_in_use(), (unsigned long long)own_resident,
	         tot.live_samples ? (double)own_resident / (double)tot.live_samples : 0.0,
	         (unsigned long long)tot.stacks);
	for (size_t i = 0; i < k; i++)
		s->comments[i] = s->text[i];
	s->ncomments = k;
	return 0;
}

static void input_from(struct ht_profile_input *in, const struct snapshot *s)
{
	memset(in, 0, sizeof(*in));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	in->rate = atomic_load(&ht_core.rate);
	in->time_nanos = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	in->heap = s->heap;
	in->nheap = s->nheap;
	in->threads = s->threads;
	in->nthreads = s->nthreads;
	in->comments = s->comments;
	in->ncomments = s->ncomments;
	in->gone = s->gone;
	in->ngone = s->ngone;
	in->tick = tick;
}

static const char *errstr(int err)
{
	const char *d = strerrordesc_np(err < 0 ? -err : err);
	return d ? d : "unknown error";
}

/* Encode the requested kinds from one snapshot. */
static int encode(bool heap, bool threads, struct ht_buf *hb, struct ht_buf *tb)
{
	struct snapshot s;
	int r = snapshot_take(&s, heap);
	if (r != 0)
		return r;
	struct ht_profile_input in;
	input_from(&in, &s);
	struct ht_profile_ctx *ctx = NULL;
	r = ht_profile_ctx_open(&ctx, &in);
	if (r == 0 && heap)
		r = ht_profile_heap(&in, ctx, hb);
	if (r == 0 && threads)
		r = ht_profile_threads(&in, ctx, tb);
	ht_profile_ctx_close(ctx);
	snapshot_free(&s);
	return r;
}

static int dump_files_locked(void)
{
	struct ht_buf hb = {0}, tb = {0};
	int r = encode(true, true, &hb, &tb);
	if (r != 0) {
		ht_log("cannot build a profile: %s", errstr(r));
		goto out;
	}
	/* A name already taken (an earlier program image with this pid, or
	 * something planted) is skipped, never overwritten. */
	/* Dumps are serialised (dump_lock), so the sequence number is only
	 * taken for good when the pair made it: a failed write (disk full,
	 * directory gone) leaves no gap in the numbering. */
	unsigned seq = atomic_load(&ht_core.seq);
	for (int tries = 0; tries < 64; tries++) {
		seq++;
		r = ht_output_write_pair(ht_opt.dir, ht_core.pid, seq, hb.data, hb.len, tb.data,
		                         tb.len);
		if (r == -EEXIST)
			continue;
		if (r == 0) {
			atomic_store(&ht_core.seq, seq);
			atomic_fetch_add(&ht_core.dumps, 1);
		}
		break;
	}
	if (r != 0)
		ht_log("cannot write profiles to %s: %s; the next dump tries again", ht_opt.dir,
		       errstr(r));
out:
	if (r != 0)
		atomic_fetch_add(&ht_core.dump_failures, 1);
	ht_buf_free(&hb);
	ht_buf_free(&tb);
	return r;
}

/* Every dump entry point: serialise, be busy, keep the process's errno. The
 * API initialised heaptap before calling in; anything else is too early.
 * Inlined on purpose: a busy section is entered in the frame that lives as
 * long as it (tls.h). */
struct dump_entry {
	struct ht_tls *t;
	int saved_errno;
};

static inline __attribute__((always_inline)) int dump_enter(struct dump_entry *d)
{
	d->t = &ht_tls;
	d->saved_errno = errno;
	if (atomic_load(&ht_core.state) != HT_READY)
		return -ENOTSUP;
	ht_busy_enter(d->t);
	atomic_fetch_add(&api_waiting, 1);
	pthread_mutex_lock(&dump_lock);
	atomic_fetch_sub(&api_waiting, 1);
	return 0;
}

/* What a dump freed (its profile builder's tables, the symbolizer's, the
 * encoded files) would stay resident in heaptap's allocator as runs kept
 * for reuse, up to its budget of 16 MiB: 5.4 MiB after the first dump of a
 * small program, kept for the life of the process. A dump gives them back
 * down to 1 MiB, which still serves what the budget is for (a thread's ring
 * reused by the next thread without fresh pages): three rings of 320 KiB
 * at exact rates, eight of 128 KiB at the default rate. */
#define HT_DUMP_KEEP_DIRTY ((size_t)1 << 20)

static void dump_leave(const struct dump_entry *d)
{
	ht_mem_trim(HT_DUMP_KEEP_DIRTY);
	pthread_mutex_unlock(&dump_lock);
	ht_busy_exit(d->t);
	errno = d->saved_errno;
}

int ht_dump_files(void)
{
	struct dump_entry d;
	int r = dump_enter(&d);
	if (r != 0)
		return r;
	r = dump_files_locked();
	dump_leave(&d);
	return r;
}

/* One profile into b, then out through write(b, target). */
static int dump_one(int kind, int (*write)(const struct ht_buf *, const void *), const void *target)
{
	if (kind != HEAPTAP_HEAP && kind != HEAPTAP_THREADS)
		return -EINVAL;
	struct dump_entry d;
	int r = dump_enter(&d);
	if (r != 0)
		return r;
	struct ht_buf b = {0};
	r = encode(kind == HEAPTAP_HEAP, kind == HEAPTAP_THREADS, &b, &b);
	if (r == 0)
		r = write(&b, target);
	ht_buf_free(&b);
	dump_leave(&d);
	return r;
}

static int write_fd(const struct ht_buf *b, const void *target)
{
	return ht_output_write_fd(*(const int *)target, b->data, b->len);
}

static int write_path(const struct ht_buf *b, const void *target)
{
	return ht_output_write_path(target, b->data, b->len);
}

int ht_dump_to_fd(int fd, int kind)
{
	if (fd < 0)
		return -EBADF;
	return dump_one(kind, write_fd, &fd);
}

int ht_dump_to_path(const char *path, int kind)
{
	if (!path || !*path)
		return -EINVAL;
	return dump_one(kind, write_path, path);
}

/* ---------------------------------------------------- for the listener */

/* Rows are matched by stack (the table never frees a stack, so its pcs
 * pointer is its identity) and size. */
static uint64_t row_key(const struct ht_heap_row *r)
{
	uint64_t k = (uint64_t)(uintptr_t)r->pcs * 0x9e3779b97f4a7c15ull ^ r->size;
	return k ^ (k >> 29);
}

/* rows -= base, dropping rows that come to zero in every value (Go's
 * delta: all four values are differenced, inuse ones may go negative). */
static void subtract(struct ht_heap_row *rows, size_t *n, const struct ht_heap_row *base,
                     size_t nbase)
{
	size_t cap = 16;
	while (cap < 2 * nbase)
		cap *= 2;
	int64_t *slot = ht_mem_alloc(cap * sizeof(*slot));
	if (!slot)
		return; /* out of memory: the full values are served */
	for (size_t i = 0; i < cap; i++)
		slot[i] = -1;
	for (size_t i = 0; i < nbase; i++) {
		size_t j = row_key(&base[i]) & (cap - 1);
		while (slot[j] >= 0)
			j = (j + 1) & (cap - 1);
		slot[j] = (int64_t)i;
	}
	size_t k = 0;
	for (size_t i = 0; i < *n; i++) {
		struct ht_heap_row r = rows[i];
		for (size_t j = row_key(&r) & (cap - 1); slot[j] >= 0; j = (j + 1) & (cap - 1)) {
			const struct ht_heap_row *b = &base[slot[j]];
			if (b->pcs != r.pcs || b->size != r.size || b->depth != r.depth)
				continue;
			r.alloc_objects -= b->alloc_objects;
			r.alloc_bytes -= b->alloc_bytes;
			r.inuse_objects -= b->inuse_objects;
			r.inuse_bytes -= b->inuse_bytes;
			break;
		}
		if (llround(r.alloc_objects) || llround(r.alloc_bytes) ||
		    llround(r.inuse_objects) || llround(r.inuse_bytes))
			rows[k++] = r;
	}
	*n = k;
	ht_mem_free(slot);
}

static int cmp_weight(const void *a, const void *b)
{
	const struct ht_heap_row *x = a, *y = b;
	double wx = x->alloc_bytes + x->inuse_bytes, wy = y->alloc_bytes + y->inuse_bytes;
	return wx > wy ? -1 : wx < wy;
}

static int cmp_inuse(const void *a, const void *b)
{
	const struct ht_heap_row *x = a, *y = b;
	if (x->inuse_bytes != y->inuse_bytes)
		return x->inuse_bytes > y->inuse_bytes ? -1 : 1;
	return x->alloc_bytes > y->alloc_bytes ? -1 : x->alloc_bytes < y->alloc_bytes;
}

static int cmp_stack(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct ht_heap_row *)a)->pcs;
	uintptr_t y = (uintptr_t)((const struct ht_heap_row *)b)->pcs;
	return x < y ? -1 : x > y;
}

/* At most max samples (Pyroscope takes 16,000 by default): first one
 * sample per stack (sizes merged, no `bytes` label), then the heaviest
 * stacks and one "[other stacks]" sample for the rest, so totals stay. */
static void cap_rows(struct ht_heap_row *rows, size_t *n, size_t max)
{
	if (!max || *n <= max)
		return;
	qsort(rows, *n, sizeof(*rows), cmp_stack);
	size_t k = 0;
	for (size_t i = 0; i < *n; i++) {
		if (k && rows[k - 1].pcs == rows[i].pcs && rows[k - 1].depth == rows[i].depth &&
		    rows[i].depth) {
			struct ht_heap_row *m = &rows[k - 1];
			m->alloc_objects += rows[i].alloc_objects;
			m->alloc_bytes += rows[i].alloc_bytes;
			m->inuse_objects += rows[i].inuse_objects;
			m->inuse_bytes += rows[i].inuse_bytes;
			m->no_size = true;
			continue;
		}
		rows[k++] = rows[i];
	}
	*n = k;
	if (k <= max)
		return;
	qsort(rows, k, sizeof(*rows), cmp_weight);
	struct ht_heap_row *o = &rows[max - 1];
	for (size_t i = max; i < k; i++) {
		o->alloc_objects += rows[i].alloc_objects;
		o->alloc_bytes += rows[i].alloc_bytes;
		o->inuse_objects += rows[i].inuse_objects;
		o->inuse_bytes += rows[i].inuse_bytes;
	}
	o->pcs = NULL;
	o->depth = 0;
	o->pinned = 0;
	o->no_size = true;
	o->root = "[other stacks]";
	*n = max;
}

int ht_dump_build(const struct ht_dump_want *w, struct ht_buf *out)
{
	bool heap = w->kind == HEAPTAP_HEAP;
	if (!heap && w->kind != HEAPTAP_THREADS)
		return -EINVAL;
	struct dump_entry d;
	int r = dump_enter(&d);
	if (r != 0)
		return r;
	struct snapshot s;
	r = snapshot_take(&s, heap);
	if (r == 0) {
		if (heap && w->base) {
			subtract(s.heap, &s.nheap, w->base, w->nbase);
		}
		if (heap)
			cap_rows(s.heap, &s.nheap, w->max_samples);
		/* The text form is for reading: the heaviest in-use first, as
		 * Go sorts it, and a bounded number of records. */
		size_t text_left = 0;
		if (heap && w->text) {
			qsort(s.heap, s.nheap, sizeof(*s.heap), cmp_inuse);
			if (s.nheap > HT_DUMP_TEXT_MAX) {
				text_left = s.nheap - HT_DUMP_TEXT_MAX;
				s.nheap = HT_DUMP_TEXT_MAX;
			}
		}
		struct ht_profile_input in;
		input_from(&in, &s);
		in.default_type = w->default_type;
		if (w->base)
			in.duration_nanos = in.time_nanos - w->base_time;
		struct ht_profile_ctx *ctx = NULL;
		r = ht_profile_ctx_open(&ctx, &in);
		if (r == 0) {
			if (!w->text)
				r = heap ? ht_profile_heap(&in, ctx, out)
				         : ht_profile_threads(&in, ctx, out);
			else
				r = heap ? ht_profile_heap_text(&in, ctx, out)
				         : ht_profile_threads_text(&in, ctx, out);
			if (r == 0 && w->text && text_left) {
				char note[128];
				int n = snprintf(
				        note, sizeof(note),
				        "# %zu lighter records left out (the proto form has "
				        "them all)\n",
				        text_left);
				r = ht_buf_append(out, note, (size_t)n);
			}
		}
		ht_profile_ctx_close(ctx);
		snapshot_free(&s);
	}
	dump_leave(&d);
	return r;
}

int ht_dump_rows_copy(struct ht_heap_row **rows, size_t *n, int64_t *time_nanos)
{
	struct dump_entry d;
	int r = dump_enter(&d);
	if (r != 0)
		return r;
	ht_agg_lock();
	ht_agg_drain_all();
	r = ht_agg_heap_rows(rows, n);
	ht_agg_unlock();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	*time_nanos = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	dump_leave(&d);
	return r;
}

int ht_dump_symbols(const char *list, size_t len, struct ht_buf *out)
{
	struct dump_entry d;
	int r = dump_enter(&d);
	if (r != 0)
		return r;
	struct ht_profile_input in;
	memset(&in, 0, sizeof(in));
	struct ht_profile_ctx *ctx = NULL;
	r = ht_profile_ctx_open(&ctx, &in);
	if (r == 0)
		r = ht_profile_symbols(ctx, list, len, out);
	ht_profile_ctx_close(ctx);
	dump_leave(&d);
	return r;
}

int ht_dump_files_background(void)
{
	/* heaptap's thread is busy for life and keeps no errno of the
	 * program's. A program thread waiting in heaptap_dump() goes first: the
	 * periodic dumps must not starve it. */
	if (atomic_load(&api_waiting))
		return -EAGAIN;
	pthread_mutex_lock(&dump_lock);
	int r = dump_files_locked();
	pthread_mutex_unlock(&dump_lock);
	return r;
}

bool ht_dump_wait_idle(unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	if (pthread_mutex_timedlock(&dump_lock, &until) != 0)
		return false;
	pthread_mutex_unlock(&dump_lock);
	return true;
}

void ht_dump_atfork_child(void)
{
	pthread_mutex_init(&dump_lock, NULL);
	atomic_store(&api_waiting, 0);
}
