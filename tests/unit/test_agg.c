/*
 * test_agg.c - the aggregation tables against hand-computed values: exact
 * counts at rate 1, unbiased weights at a sampled rate, a free drained before
 * its allocation, and one row per (stack, size); and a thread's ring drained
 * as one batch, where a sample freed within the batch only counts as an
 * allocation; and one stack with a thousand sizes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agg.h"
#include "mem.h"
#include "ring.h"
#include "sample.h"
#include "thread.h"

static void alloc_ev(uint64_t id, uint64_t size, uint64_t rate, const uintptr_t *pcs,
                     unsigned depth)
{
	union {
		struct ht_ev_alloc e;
		char b[sizeof(struct ht_ev_alloc) + 16 * sizeof(uintptr_t)];
	} u;
	u.e.h.kind = HT_EV_ALLOC;
	u.e.h.depth = (uint16_t)depth;
	u.e.h.len = (uint32_t)(sizeof(u.e) + depth * sizeof(uintptr_t));
	u.e.id = id;
	u.e.size = size;
	u.e.rate = rate;
	u.e.ptr = 0; /* no slot: every live sample keeps a record */
	memcpy(u.e.pcs, pcs, depth * sizeof(uintptr_t));
	ht_agg_event(&u.e.h);
}

static void free_ev(uint64_t id)
{
	struct ht_ev_free f = {.h = {.len = sizeof(f), .kind = HT_EV_FREE}, .id = id};
	ht_agg_event(&f.h);
}

static const struct ht_heap_row *find(const struct ht_heap_row *r, size_t n, uintptr_t pc0,
                                      uint64_t size)
{
	for (size_t i = 0; i < n; i++)
		if (r[i].depth && r[i].pcs[0] == pc0 && r[i].size == size)
			return &r[i];
	return NULL;
}

static void exact_and_sampled(void **state)
{
	(void)state;
	const uintptr_t a[] = {0x1000, 0x2000, 0x3000};
	const uintptr_t b[] = {0x1100, 0x2000, 0x3000};
	/* Stack a: 10 blocks of 100 bytes at rate 1, 4 freed. */
	for (uint64_t i = 0; i < 10; i++)
		alloc_ev(100 + i, 100, 1, a, 3);
	for (uint64_t i = 0; i < 4; i++)
		free_ev(100 + i);
	/* Stack b: 3 samples of 4096 bytes at rate 524288, one freed; the
	 * free of id 202 arrives before its allocation. */
	free_ev(202);
	for (uint64_t i = 0; i < 3; i++)
		alloc_ev(200 + i, 4096, 524288, b, 3);
	/* Same stack, another size: a row of its own, as Go keys its buckets
	 * by (stack, size), so each row's `bytes` label never changes. */
	alloc_ev(300, 64, 1, a, 3);

	struct ht_heap_row *rows;
	size_t n;
	assert_int_equal(ht_agg_heap_rows(&rows, &n), 0);
	assert_int_equal(n, 3);
	const struct ht_heap_row *ra = find(rows, n, 0x1000, 100);
	assert_non_null(ra);
	assert_true(ra->alloc_objects == 10 && ra->alloc_bytes == 1000);
	assert_true(ra->inuse_objects == 6 && ra->inuse_bytes == 600);
	assert_int_equal(ra->depth, 3);
	assert_true(ra->pcs[2] == 0x3000);
	const struct ht_heap_row *ra64 = find(rows, n, 0x1000, 64);
	assert_non_null(ra64);
	assert_true(ra64->alloc_objects == 1 && ra64->inuse_bytes == 64);
	assert_true(ra64->pcs == ra->pcs); /* one stack, two sizes */

	double w = 1.0 / (1.0 - exp(-4096.0 / 524288.0));
	const struct ht_heap_row *rb = find(rows, n, 0x1100, 4096);
	assert_non_null(rb);
	assert_true(fabs(rb->alloc_objects - 3 * w) < 1e-6);
	assert_true(fabs(rb->alloc_bytes - 3 * w * 4096) < 1e-3);
	assert_true(fabs(rb->inuse_objects - 2 * w) < 1e-6);
	assert_true(fabs(rb->inuse_bytes - 2 * w * 4096) < 1e-3);
	assert_int_equal(rb->size, 4096);
	ht_mem_free(rows);

	struct ht_agg_totals t;
	ht_agg_totals(&t);
	assert_int_equal(t.live_samples, 6 + 2 + 1);
	assert_int_equal(t.pending, 0);
	assert_true(fabs(t.live_bytes - (600 + 2 * w * 4096 + 64)) < 1e-3);
	assert_int_equal(t.stacks, 2);
}

static void free_everything(void **state)
{
	(void)state;
	/* Free the rest of exact_and_sampled's live samples: in-use goes to
	 * exactly zero while alloc_* stays. */
	for (uint64_t i = 4; i < 10; i++)
		free_ev(100 + i);
	free_ev(200);
	free_ev(201);
	free_ev(300);
	struct ht_agg_totals t;
	ht_agg_totals(&t);
	assert_int_equal(t.live_samples, 0);
	assert_true(t.live_bytes == 0);
	struct ht_heap_row *rows;
	size_t n;
	assert_int_equal(ht_agg_heap_rows(&rows, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_true(rows[i].inuse_bytes < 1e-6);
		assert_true(rows[i].alloc_objects > 0);
	}
	ht_mem_free(rows);
}

static void put_alloc(struct ht_ring *r, uint64_t id, const uintptr_t *pcs, unsigned depth)
{
	uint32_t len = (uint32_t)(sizeof(struct ht_ev_alloc) + depth * sizeof(uintptr_t));
	struct ht_ev_alloc *e = ht_ring_reserve(r, len);
	assert_non_null(e);
	e->h.kind = HT_EV_ALLOC;
	e->h.depth = (uint16_t)depth;
	e->id = id;
	e->size = 48;
	e->rate = 1;
	e->ptr = 0;
	memcpy(e->pcs, pcs, depth * sizeof(uintptr_t));
	ht_ring_commit(r, e);
}

static void put_free(struct ht_ring *r, uint64_t id)
{
	struct ht_ev_free *e = ht_ring_reserve(r, sizeof(*e));
	assert_non_null(e);
	e->h.kind = HT_EV_FREE;
	e->h.depth = 0;
	e->id = id;
	ht_ring_commit(r, e);
}

static void drain(struct ht_thread *th)
{
	ht_agg_lock();
	ht_agg_drain_one(th);
	ht_agg_unlock();
}

static void batch(void **state)
{
	(void)state;
	const uintptr_t c[] = {0x5000, 0x6000};
	struct ht_thread *th = ht_mem_calloc(1, sizeof(*th));
	assert_non_null(th);
	th->serial = 7;
	assert_int_equal(ht_ring_init(&th->ring, 1 << 16), 0);
	atomic_store(&th->ring_ready, 1);
	struct ht_agg_totals t0, t;
	ht_agg_totals(&t0);
	/* Batch 1: sample 10 taken and freed in it; 11 and 12 stay live; a
	 * free of another thread's sample (pending until its allocation). */
	put_alloc(&th->ring, ht_ev_id(7, 10), c, 2);
	put_alloc(&th->ring, ht_ev_id(7, 11), c, 2);
	put_free(&th->ring, ht_ev_id(7, 10));
	put_free(&th->ring, ht_ev_id(8, 10));
	put_alloc(&th->ring, ht_ev_id(7, 12), c, 2);
	drain(th);
	ht_agg_totals(&t);
	assert_int_equal(t.live_samples - t0.live_samples, 2);
	assert_int_equal(t.pending - t0.pending, 1);
	struct ht_heap_row *rows;
	size_t n;
	assert_int_equal(ht_agg_heap_rows(&rows, &n), 0);
	const struct ht_heap_row *r = find(rows, n, 0x5000, 48);
	assert_non_null(r);
	assert_true(r->alloc_objects == 3 && r->inuse_objects == 2 && r->inuse_bytes == 96);
	ht_mem_free(rows);
	/* Batch 2: the live two freed; the other thread's allocation arrives
	 * and meets its pending free. */
	put_free(&th->ring, ht_ev_id(7, 11));
	put_free(&th->ring, ht_ev_id(7, 12));
	drain(th);
	alloc_ev(ht_ev_id(8, 10), 48, 1, c, 2);
	ht_agg_totals(&t);
	assert_int_equal(t.live_samples, t0.live_samples);
	assert_int_equal(t.pending, t0.pending);
	assert_int_equal(ht_agg_heap_rows(&rows, &n), 0);
	r = find(rows, n, 0x5000, 48);
	assert_true(r->alloc_objects == 4 && r->inuse_objects == 0 && r->inuse_bytes == 0);
	ht_mem_free(rows);
	atomic_store(&th->ring_ready, 0);
	ht_ring_destroy(&th->ring);
	ht_mem_free(th);
}

/* One stack with 1,000 sizes, met in an order that is not the order they
 * were made in: every size keeps its own row and its own counts as the
 * stack's table of sizes grows (4 slots first, doubling at three quarters),
 * and a size met again after others finds its row, not a new one. */
static void many_sizes(void **state)
{
	(void)state;
	const uintptr_t s[] = {0x7000, 0x8000, 0x9000};
	struct ht_agg_totals t0, t;
	ht_agg_totals(&t0);
	uint64_t id = 1000;
	for (int round = 0; round < 3; round++)
		for (uint64_t k = 0; k < 1000; k++) {
			uint64_t size = 16 + ((k * 617) % 1000) * 8; /* a permutation */
			alloc_ev(id, size, 1, s, 3);
			if (round < 2)
				free_ev(id);
			id++;
		}
	ht_agg_totals(&t);
	assert_int_equal(t.live_samples - t0.live_samples, 1000);
	assert_int_equal(t.stacks - t0.stacks, 1);
	struct ht_heap_row *rows;
	size_t n;
	assert_int_equal(ht_agg_heap_rows(&rows, &n), 0);
	size_t mine = 0;
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].depth || rows[i].pcs[0] != 0x7000)
			continue;
		mine++;
		uint64_t size = rows[i].size;
		assert_true(size >= 16 && size < 16 + 8000 && (size - 16) % 8 == 0);
		assert_true(rows[i].alloc_objects == 3 &&
		            rows[i].alloc_bytes == 3.0 * (double)size);
		assert_true(rows[i].inuse_objects == 1 && rows[i].inuse_bytes == (double)size);
	}
	assert_int_equal(mine, 1000);
	ht_mem_free(rows);
}

int main(void)
{
	ht_mem_init();
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(exact_and_sampled),
	        cmocka_unit_test(free_everything),
	        cmocka_unit_test(batch),
	        cmocka_unit_test(many_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
