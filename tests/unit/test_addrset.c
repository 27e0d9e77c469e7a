/*
 * test_addrset.c - the sampled-pointer set: insert/remove/values, resolving
 * an id in place, a table with no room refusing, growth by migration with
 * every key still found, and threads inserting and removing their own
 * pointers at once while the main thread (playing the aggregation lock's
 * holder) grows the table again and again, a few buckets at a time: no key
 * lost, none reported twice, every value the one last stored.
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

#include <cmocka.h>

#include "addrset.h"
#include "agg.h"

static void fresh(size_t slots)
{
	while (ht_addrset_migrate(1 << 20) > 0)
		;
	assert_int_equal(ht_addrset_init(slots), 0);
}

static void basics(void **state)
{
	(void)state;
	fresh(1 << 16);
	uint64_t v;
	for (uintptr_t p = 0x10000; p < 0x10000 + 16 * 1000; p += 16)
		assert_int_equal(ht_addrset_insert((void *)p, p * 7), 0);
	for (uintptr_t p = 0x10000; p < 0x10000 + 16 * 1000; p += 16) {
		assert_true(ht_addrset_maybe((void *)p));
		assert_true(ht_addrset_remove((void *)p, &v));
		assert_int_equal(v, p * 7);
		assert_false(ht_addrset_remove((void *)p, &v));
	}
	/* Nothing left: every lookup stops at the count. */
	unsigned maybe = 0;
	for (uintptr_t p = 0x900000; p < 0x900000 + 16 * 10000; p += 16)
		maybe += ht_addrset_maybe((void *)p);
	assert_int_equal(maybe, 0);
	/* Never sampled: NULL and pointers that are not 8-byte aligned. */
	assert_int_equal(ht_addrset_insert(NULL, 1), -EINVAL);
	assert_int_equal(ht_addrset_insert((void *)0x10004, 1), -EINVAL);
}

static void resolve(void **state)
{
	(void)state;
	fresh(1 << 12);
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
	(void)state;
	/* Without growing, inserting 3x the slots must fail cleanly at some
	 * point, and everything inserted must come back. */
	fresh(1 << 12);
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
}

static void grows(void **state)
{
	(void)state;
	fresh(1 << 10);
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
				assert_int_equal(ht_addrset_grow(ht_addrset_capacity() * 2), 0);
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
	for (uintptr_t i = 0; i < n; i++) {
		assert_true(ht_addrset_remove((void *)(base + i * 32), &v));
		assert_int_equal(v, i);
	}
	assert_int_equal(inserted, n);
	assert_true(ht_addrset_resident() > 0);
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
	(void)state;
	fresh(1 << 10);
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
			    ht_addrset_grow(ht_addrset_capacity() * 2) == 0)
				chained++;
		} else {
			size_t cap = ht_addrset_capacity();
			assert_int_equal(ht_addrset_grow(cap < (1u << 16) ? cap * 2 : cap), 0);
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
	while (ht_addrset_migrate(1 << 20) > 0)
		;
	/* Nothing left behind in any form. */
	uint64_t v;
	for (uintptr_t k = 1; k <= 4; k++)
		for (uintptr_t i = 0; i < LIVE; i++)
			assert_false(ht_addrset_remove((void *)((k << 32) + i * 32), &v));
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(basics),
	        cmocka_unit_test(resolve),
	        cmocka_unit_test(fills_up),
	        cmocka_unit_test(grows),
	        cmocka_unit_test(concurrent_growth),
	};
	return cmocka_run_group_tests(tests, hold_lock, release_lock);
}
