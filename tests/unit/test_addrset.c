/*
 * test_addrset.c - the sampled-pointer set: insert/remove/values, resolving
 * an id in place, a table with no room refusing, growth by migration with
 * every key still found, and threads inserting and removing their own
 * pointers at once while the main thread (playing the aggregation lock's
 * holder) grows the table again and again, a few buckets at a time: no key
 * lost, none reported twice, every value the one last stored.
 *
 * Each runs with counted tables, with uncounted ones (rate 1: every meta
 * word's low byte 1 for good, free()'s filter always "maybe"), and where
 * there is a migration, with tables of the two kinds in turn. After each,
 * the current table's meta words are checked: in a counted table, the count
 * at every home is exactly the live keys whose home it is (so "maybe" is
 * false wherever none is); in an uncounted one, every low byte is still 1.
 * And a table is replaced by one of the same size and the other kind, as
 * heaptap_set_rate to or from 1 makes the aggregator do, while keys come
 * and go: the counts are rebuilt by the move into a counted table. Last,
 * free()'s filter is asked about live keys while their sources are retired
 * under it, thousands of times.
 *
 * heaptap_core starts itself in this program too (its constructor), and its
 * thread drains and moves tables under the aggregation lock: the tests hold
 * that lock throughout, as the one migrating side must.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "addrset.h"
#include "agg.h"

/* The kinds of table a test runs with; ALTERNATE: each new table is of the
 * other kind than the one it replaces. */
enum kind { COUNTED, UNCOUNTED, ALTERNATE };

static enum kind kind_of(void **state)
{
	return *(const enum kind *)*state;
}

static bool first_counted(enum kind k)
{
	return k != UNCOUNTED;
}

/* The kind of the next table, replacing the current one. */
static bool next_counted(enum kind k)
{
	return k == ALTERNATE ? !ht_addrset_counted() : k == COUNTED;
}

static void fresh(size_t slots, bool counted)
{
	while (ht_addrset_migrate(1 << 20) > 0)
		;
	assert_int_equal(ht_addrset_init(slots, counted), 0);
	assert_int_equal(ht_addrset_counted(), counted);
}

static void finish_migration(void)
{
	while (ht_addrset_migrate(1 << 20) > 0)
		;
	assert_false(ht_addrset_migrating());
}

/* No migration under way. The current table's meta words against the keys
 * live[0..n): in a counted table the count at each home is exactly the live
 * keys whose home it is, in an uncounted one every low byte is 1; then
 * maybe() of each pointer of probe[0..np) (never inserted) answers as that
 * says: true in an uncounted table, true in a counted one exactly where a
 * live key has the same home. Live keys: maybe() true. */
static void check_meta(const uintptr_t *live, size_t n, const uintptr_t *probe, size_t np)
{
	assert_false(ht_addrset_migrating());
	uintptr_t w = atomic_load(&ht_addrset.cur);
	const struct ht_addrtab *t = (const struct ht_addrtab *)(w & HT_ADDRSET_TABLE);
	const _Atomic uint16_t *meta =
	        (const _Atomic uint16_t *)((w & HT_ADDRSET_TABLE) + HT_ADDRTAB_HDR);
	assert_int_equal(t->counted, ht_addrset_counted());
	unsigned *want = calloc(t->nb, sizeof(*want));
	assert_non_null(want);
	for (size_t i = 0; i < n; i++)
		want[ht_addrset_hash(live[i], t->shift)]++;
	size_t wrong = 0;
	for (uint64_t b = 0; b < t->nb; b++) {
		unsigned low = atomic_load(&meta[b]) & 0xffu;
		wrong += t->counted ? low != want[b] : low != 1;
	}
	assert_int_equal(wrong, 0);
	for (size_t i = 0; i < n; i++)
		wrong += !ht_addrset_maybe((const void *)live[i]);
	assert_int_equal(wrong, 0);
	size_t maybe = 0, expect = 0;
	for (size_t i = 0; i < np; i++) {
		bool m = ht_addrset_maybe((const void *)probe[i]);
		bool e = !t->counted || want[ht_addrset_hash(probe[i], t->shift)] > 0;
		maybe += m;
		expect += e;
		wrong += m != e;
	}
	assert_int_equal(wrong, 0);
	assert_int_equal(maybe, expect);
	if (!t->counted)
		assert_int_equal(maybe, np);
	free(want);
}

/* n pointers from base, stride apart. Freed by the caller. */
static uintptr_t *range(uintptr_t base, uintptr_t stride, size_t n)
{
	uintptr_t *a = malloc((n ? n : 1) * sizeof(*a));
	assert_non_null(a);
	for (size_t i = 0; i < n; i++)
		a[i] = base + i * stride;
	return a;
}

static void basics(void **state)
{
	bool counted = first_counted(kind_of(state));
	fresh(1 << 16, counted);
	uint64_t v;
	for (uintptr_t p = 0x10000; p < 0x10000 + 16 * 1000; p += 16)
		assert_int_equal(ht_addrset_insert((void *)p, p * 7), 0);
	for (uintptr_t p = 0x10000; p < 0x10000 + 16 * 1000; p += 16) {
		assert_true(ht_addrset_maybe((void *)p));
		assert_true(ht_addrset_remove((void *)p, &v));
		assert_int_equal(v, p * 7);
		assert_false(ht_addrset_remove((void *)p, &v));
	}
	/* Nothing left: every lookup stops at the count (a counted table), or
	 * every pointer is a "maybe" (uncounted: the low bytes stay 1). */
	unsigned maybe = 0;
	for (uintptr_t p = 0x900000; p < 0x900000 + 16 * 10000; p += 16)
		maybe += ht_addrset_maybe((void *)p);
	assert_int_equal(maybe, counted ? 0 : 10000);
	uintptr_t *probe = range(0x900000, 16, 10000);
	check_meta(NULL, 0, probe, 10000);
	/* Half of them live: the counts are those of the live keys. */
	uintptr_t *live = range(0x10000, 16, 1000);
	for (size_t i = 0; i < 1000; i++)
		assert_int_equal(ht_addrset_insert((void *)live[i], i), 0);
	for (size_t i = 0; i < 1000; i += 2)
		assert_true(ht_addrset_remove((void *)live[i], &v));
	size_t n = 0;
	for (size_t i = 1; i < 1000; i += 2)
		live[n++] = live[i];
	check_meta(live, n, probe, 10000);
	for (size_t i = 0; i < n; i++)
		assert_true(ht_addrset_remove((void *)live[i], &v));
	check_meta(NULL, 0, probe, 10000);
	free(live);
	free(probe);
	/* Never sampled: NULL and pointers that are not 8-byte aligned. */
	assert_int_equal(ht_addrset_insert(NULL, 1), -EINVAL);
	assert_int_equal(ht_addrset_insert((void *)0x10004, 1), -EINVAL);
}

static void resolve(void **state)
{
	fresh(1 << 12, first_counted(kind_of(state)));
	void *p = (void *)0x7f0000001230;
	uint64_t v;
	assert_int_equal(ht_addrset_insert(p, 42), 0);
	assert_false(ht_addrset_resolve(p, 41, 99)); /* another incarnation's id */
	assert_true(ht_addrset_resolve(p, 42, (1ull << 63) | 99));
	assert_true(ht_addrset_remove(p, &v));
	assert_int_equal(v, (1ull << 63) | 99);
	/* Freed before its allocation was drained: nothing to resolve. */
	assert_int_equal(ht_addrset_insert(p, 43), 0);
	assert_true(ht_addrset_remove(p, &v));
	assert_int_equal(v, 43);
	assert_false(ht_addrset_resolve(p, 43, 100));
}

static void fills_up(void **state)
{
	/* Without growing, inserting 3x the slots must fail cleanly at some
	 * point, and everything inserted must come back. */
	fresh(1 << 12, first_counted(kind_of(state)));
	size_t ok = 0, refused = 0, cap = ht_addrset_capacity();
	assert_int_equal(cap, 1 << 12);
	for (uintptr_t i = 0; i < 3 * cap; i++) {
		if (ht_addrset_insert((void *)(0x40000000 + i * 48), i) == 0)
			ok++;
		else
			refused++;
	}
	assert_true(refused > 0);
	assert_true(ok > cap * 9 / 10);
	size_t back = 0;
	uint64_t v;
	for (uintptr_t i = 0; i < 3 * cap; i++)
		if (ht_addrset_remove((void *)(0x40000000 + i * 48), &v)) {
			assert_int_equal(v, i);
			back++;
		}
	assert_int_equal(back, ok);
	/* A refused insert gave back its count (counted), or left the 1s. */
	check_meta(NULL, 0, NULL, 0);
}

static void grows(void **state)
{
	enum kind k = kind_of(state);
	fresh(1 << 10, first_counted(k));
	const uintptr_t n = 20000, base = 0x50000000;
	uintptr_t inserted = 0;
	uint64_t v;
	/* Grow whenever the table says no, moving a few buckets between
	 * inserts, as the aggregator would. */
	for (uintptr_t i = 0; i < n; i++) {
		int r;
		while ((r = ht_addrset_insert((void *)(base + i * 32), i)) == -ENOSPC) {
			if (ht_addrset_migrating())
				ht_addrset_migrate(64);
			else
				assert_int_equal(
				        ht_addrset_grow(ht_addrset_capacity() * 2, next_counted(k)),
				        0);
		}
		assert_int_equal(r, 0);
		inserted++;
		if (ht_addrset_migrating())
			ht_addrset_migrate(8);
		/* Halfway through a migration, half the keys still in the old
		 * table: all found, with their values, and taken out once. */
		if (i % 997 == 0 && i > 0) {
			uintptr_t j = i / 2;
			assert_true(ht_addrset_remove((void *)(base + j * 32), &v));
			assert_int_equal(v, j);
			assert_int_equal(ht_addrset_insert((void *)(base + j * 32), j), 0);
		}
	}
	assert_true(ht_addrset_capacity() >= n);
	while (ht_addrset_migrate(1000) > 0)
		;
	assert_false(ht_addrset_migrating());
	uintptr_t *live = range(base, 32, n), *probe = range(base + 16, 32, n);
	check_meta(live, n, probe, n);
	for (uintptr_t i = 0; i < n; i++) {
		assert_true(ht_addrset_remove((void *)(base + i * 32), &v));
		assert_int_equal(v, i);
	}
	check_meta(NULL, 0, live, n);
	free(live);
	free(probe);
	assert_int_equal(inserted, n);
	assert_true(ht_addrset_resident() > 0);
}

/* heaptap_set_rate to or from 1: the table is replaced by one of the same
 * size and the other kind while keys come and go, a few buckets moved at a
 * time. Throughout, every live key is found with its value, and maybe()
 * says "maybe" for every pointer; after, the counts are exact (counted) or
 * all 1. */
static void switch_kind(bool from_counted)
{
	const size_t n = 12000;
	const uintptr_t base = 0x60000000, stride = 48;
	fresh(1 << 14, from_counted);
	size_t cap = ht_addrset_capacity();
	uint64_t *val = calloc(n, sizeof(*val)); /* 0: not live */
	assert_non_null(val);
	uint64_t v;
	/* Two thirds of the keys live, the other third inserted and removed
	 * (in a counted table, their counts came and went). */
	for (uintptr_t i = 0; i < n; i++) {
		assert_int_equal(ht_addrset_insert((void *)(base + i * stride), i + 1), 0);
		val[i] = i + 1;
	}
	for (uintptr_t i = 0; i < n; i += 3) {
		assert_true(ht_addrset_remove((void *)(base + i * stride), &v));
		assert_int_equal(v, i + 1);
		val[i] = 0;
	}
	uintptr_t *probe = range(base + 8, stride, n);
	assert_int_equal(ht_addrset_grow(cap, !from_counted), 0);
	assert_true(ht_addrset_migrating());
	assert_int_equal(ht_addrset_counted(), !from_counted);
	assert_int_equal(ht_addrset_capacity(), cap);
	unsigned steps = 0;
	uintptr_t j = 0;
	while (ht_addrset_migrating()) {
		/* While a migration is under way the filter says "maybe". */
		for (uintptr_t i = 0; i < n; i += 97)
			assert_true(ht_addrset_maybe((void *)probe[i]));
		/* Keys come and go mid-move: a removed key inserted again (a
		 * new value), a live one removed. */
		for (int r = 0; r < 4; r++, j = (j + 37) % n) {
			void *p = (void *)(base + j * stride);
			if (val[j]) {
				assert_true(ht_addrset_remove(p, &v));
				assert_int_equal(v, val[j]);
				val[j] = 0;
			} else {
				assert_int_equal(ht_addrset_insert(p, j + 1000000), 0);
				val[j] = j + 1000000;
			}
		}
		assert_true(ht_addrset_migrate(16) >= 0);
		steps++;
	}
	assert_true(steps >= cap / 4 / 16);
	assert_int_equal(ht_addrset_counted(), !from_counted);
	uintptr_t *live = malloc(n * sizeof(*live));
	assert_non_null(live);
	size_t nl = 0;
	for (uintptr_t i = 0; i < n; i++)
		if (val[i])
			live[nl++] = base + i * stride;
	assert_true(nl > n / 3);
	check_meta(live, nl, probe, n);
	for (uintptr_t i = 0; i < n; i++) {
		bool there = ht_addrset_remove((void *)(base + i * stride), &v);
		assert_int_equal(there, val[i] != 0);
		if (there)
			assert_int_equal(v, val[i]);
	}
	check_meta(NULL, 0, probe, n);
	free(live);
	free(probe);
	free(val);
}

static void uncounted_to_counted(void **state)
{
	(void)state;
	switch_kind(false);
}

static void counted_to_uncounted(void **state)
{
	(void)state;
	switch_kind(true);
}

#define LIVE   3000 /* per thread */
#define ROUNDS 1000

static _Atomic int workers_done;

static void *worker(void *arg)
{
	uintptr_t base = (uintptr_t)arg, bad = 0;
	uint64_t v;
	for (int round = 0; round < ROUNDS; round++) {
		for (uintptr_t i = 0; i < LIVE; i++) {
			/* The table may be full for a moment: the main thread
			 * grows it. */
			int r;
			while ((r = ht_addrset_insert((void *)(base + i * 32), base + i + round)) ==
			       -ENOSPC)
				sched_yield();
			bad += r != 0;
		}
		if (round == ROUNDS - 1)
			break; /* the last round's keys stay, for the counts */
		for (uintptr_t i = 0; i < LIVE; i++)
			if (!ht_addrset_remove((void *)(base + i * 32), &v) ||
			    v != base + i + round)
				bad++;
	}
	atomic_fetch_add(&workers_done, 1);
	return (void *)bad;
}

static void concurrent_growth(void **state)
{
	enum kind k = kind_of(state);
	fresh(1 << 10, first_counted(k));
	atomic_store(&workers_done, 0);
	pthread_t t[4];
	for (uintptr_t k = 0; k < 4; k++)
		assert_int_equal(pthread_create(&t[k], NULL, worker, (void *)((k + 1) << 32)), 0);
	/* The migrating side: grow as soon as the last migration is over, a
	 * few buckets at a time, so that every slot state meets the workers
	 * (hundreds of migrations on 2 cores), and growing again when the current table
	 * fills before the sources are empty. From 2^16 slots on it moves
	 * everything to a table of the same size, again and again. */
	unsigned grown = 0, chained = 0;
	while (atomic_load(&workers_done) < 4) {
		if (ht_addrset_migrating()) {
			if (ht_addrset_migrate(4) < 0 &&
			    ht_addrset_grow(ht_addrset_capacity() * 2, next_counted(k)) == 0)
				chained++;
		} else {
			size_t cap = ht_addrset_capacity();
			assert_int_equal(
			        ht_addrset_grow(cap < (1u << 16) ? cap * 2 : cap, next_counted(k)),
			        0);
			grown++;
		}
	}
	for (int k = 0; k < 4; k++) {
		void *bad;
		pthread_join(t[k], &bad);
		assert_int_equal((uintptr_t)bad, 0);
	}
	print_message("%u migrations while the workers ran, %u grown during one\n", grown, chained);
	assert_true(grown + chained >= 10);
	finish_migration();
	/* The last round's keys, and the counts of the table that holds them:
	 * what the moves in and the removes made of them. Then the same in
	 * the other kind of table: a single-threaded move rebuilds them. */
	uintptr_t *live = malloc(4 * LIVE * sizeof(*live));
	uintptr_t *probe = malloc(4 * LIVE * sizeof(*probe));
	assert_non_null(live);
	assert_non_null(probe);
	for (uintptr_t w = 1; w <= 4; w++)
		for (uintptr_t i = 0; i < LIVE; i++) {
			live[(w - 1) * LIVE + i] = (w << 32) + i * 32;
			probe[(w - 1) * LIVE + i] = (w << 32) + i * 32 + 8;
		}
	check_meta(live, 4 * LIVE, probe, 4 * LIVE);
	assert_int_equal(ht_addrset_grow(ht_addrset_capacity(), !ht_addrset_counted()), 0);
	finish_migration();
	check_meta(live, 4 * LIVE, probe, 4 * LIVE);
	uint64_t v;
	for (uintptr_t w = 1; w <= 4; w++)
		for (uintptr_t i = 0; i < LIVE; i++) {
			assert_true(ht_addrset_remove((void *)((w << 32) + i * 32), &v));
			assert_int_equal(v, (w << 32) + i + ROUNDS - 1);
		}
	/* Nothing left behind in any form. */
	for (uintptr_t w = 1; w <= 4; w++)
		for (uintptr_t i = 0; i < LIVE; i++)
			assert_false(ht_addrset_remove((void *)((w << 32) + i * 32), &v));
	check_meta(NULL, 0, probe, 4 * LIVE);
	free(live);
	free(probe);
}

/* free()'s filter, and the remove behind it, against a source retired
 * under them. Threads ask maybe() about their own keys over and over (one
 * of them also removes its key and puts it back) while the main thread
 * replaces a table of 16 buckets again and again, moving everything at
 * once. A filter that read the current table's count before the key moved
 * in and the sources after the source was retired (descheduled in between)
 * would answer "not sampled": the window is a few instructions wide, and
 * when the filter still read the sources itself, this saw it a few times a
 * run. Counted tables replaced by counted ones, uncounted by counted ones
 * (the rate leaving 1), and counted by uncounted ones. Each table costs two
 * mappings that are never unmapped (a page each): 10000 of them. */
#define CHECKERS 7
#define CYCLING  1 /* of them, removes and inserts again */
#define RETIRES  10000

static _Atomic int checkers_stop;

static void *checker(void *arg)
{
	uintptr_t k = (uintptr_t)arg;
	const void *p = (const void *)(0x7f0000001000 + k * 0x1008);
	uintptr_t bad = 0;
	uint64_t val = 1, v;
	if (ht_addrset_insert(p, val) != 0)
		return (void *)(uintptr_t)1000000;
	while (!atomic_load_explicit(&checkers_stop, memory_order_relaxed)) {
		for (int i = 0; i < 64; i++)
			bad += !ht_addrset_maybe(p);
		if (k < CHECKERS - CYCLING)
			continue;
		if (!ht_addrset_remove(p, &v) || v != val)
			bad++;
		while (ht_addrset_insert(p, ++val) == -ENOSPC)
			sched_yield();
	}
	if (!ht_addrset_remove(p, &v) || v != val)
		bad++;
	return (void *)bad;
}

static void maybe_across_retire(void **state)
{
	(void)state;
	fresh(64, true);
	atomic_store(&checkers_stop, 0);
	pthread_t t[CHECKERS];
	for (uintptr_t k = 0; k < CHECKERS; k++)
		assert_int_equal(pthread_create(&t[k], NULL, checker, (void *)k), 0);
	for (unsigned r = 0; r < RETIRES; r++) {
		assert_int_equal(ht_addrset_grow(64, r % 3 != 1), 0);
		finish_migration();
	}
	atomic_store(&checkers_stop, 1);
	uintptr_t bad = 0;
	for (int k = 0; k < CHECKERS; k++) {
		void *b;
		pthread_join(t[k], &b);
		bad += (uintptr_t)b;
	}
	assert_int_equal(bad, 0);
	check_meta(NULL, 0, NULL, 0);
}

static int hold_lock(void **state)
{
	(void)state;
	ht_agg_lock();
	/* The lock blocks every signal: let a test runner's timeout through. */
	sigset_t end;
	sigemptyset(&end);
	sigaddset(&end, SIGTERM);
	sigaddset(&end, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &end, NULL);
	return 0;
}

static int release_lock(void **state)
{
	(void)state;
	ht_agg_unlock();
	return 0;
}

static enum kind counted = COUNTED, uncounted = UNCOUNTED, alternate = ALTERNATE;

#define EACH_KIND(f)                                                                               \
	{#f " counted", f, NULL, NULL, &counted},                                                  \
	{                                                                                          \
#f " uncounted", f, NULL, NULL, &uncounted                                         \
	}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        EACH_KIND(basics),
	        EACH_KIND(resolve),
	        EACH_KIND(fills_up),
	        EACH_KIND(grows),
	        {"grows alternating", grows, NULL, NULL, &alternate},
	        cmocka_unit_test(uncounted_to_counted),
	        cmocka_unit_test(counted_to_uncounted),
	        EACH_KIND(concurrent_growth),
	        {"concurrent_growth alternating", concurrent_growth, NULL, NULL, &alternate},
	        cmocka_unit_test(maybe_across_retire),
	};
	return cmocka_run_group_tests(tests, hold_lock, release_lock);
}
