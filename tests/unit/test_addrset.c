/*
 * test_addrset.c - the sampled-pointer set: insert/remove/ids, the
 * overflow bucket, a full table refusing, and four threads inserting and
 * removing their own pointers at once without losing any.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "addrset.h"

static void basics(void **state)
{
	(void)state;
	uint64_t id;
	for (uintptr_t p = 0x10000; p < 0x10000 + 16 * 1000; p += 16)
		assert_int_equal(ht_addrset_insert((void *)p, p * 7), 0);
	for (uintptr_t p = 0x10000; p < 0x10000 + 16 * 1000; p += 16) {
		assert_true(ht_addrset_maybe((void *)p));
		assert_true(ht_addrset_remove((void *)p, &id));
		assert_int_equal(id, p * 7);
		assert_false(ht_addrset_remove((void *)p, &id));
	}
	assert_int_equal(atomic_load(&ht_addrset.live), 0);
	/* Nothing left: most lookups stop at the count byte. */
	unsigned maybe = 0;
	for (uintptr_t p = 0x900000; p < 0x900000 + 16 * 10000; p += 16)
		maybe += ht_addrset_maybe((void *)p);
	assert_true(maybe < 100); /* only sticky overflow marks remain */
}

static void fills_up(void **state)
{
	(void)state;
	/* The table was sized for 1 << 16 slots: inserting 3x that must fail
	 * cleanly at some point, and everything inserted must come back. */
	size_t ok = 0, refused = 0;
	for (uintptr_t i = 0; i < 3 * (1u << 16); i++) {
		if (ht_addrset_insert((void *)(0x40000000 + i * 48), i) == 0)
			ok++;
		else
			refused++;
	}
	assert_true(refused > 0);
	assert_true(ok > (1u << 16) / 2);
	size_t back = 0;
	uint64_t id;
	for (uintptr_t i = 0; i < 3 * (1u << 16); i++)
		if (ht_addrset_remove((void *)(0x40000000 + i * 48), &id)) {
			assert_int_equal(id, i);
			back++;
		}
	assert_int_equal(back, ok);
}

#define PER_THREAD 16000 /* 4 threads x 4000 live: a quarter of the table */

static void *worker(void *arg)
{
	uintptr_t base = (uintptr_t)arg;
	uint64_t id;
	uintptr_t bad = 0;
	for (int round = 0; round < 4; round++) {
		for (uintptr_t i = 0; i < PER_THREAD / 4; i++)
			if (ht_addrset_insert((void *)(base + i * 32), base + i) != 0)
				bad++;
		for (uintptr_t i = 0; i < PER_THREAD / 4; i++)
			if (!ht_addrset_remove((void *)(base + i * 32), &id) || id != base + i)
				bad++;
	}
	return (void *)bad;
}

static void concurrent(void **state)
{
	(void)state;
	pthread_t t[4];
	for (uintptr_t k = 0; k < 4; k++)
		assert_int_equal(pthread_create(&t[k], NULL, worker, (void *)((k + 1) << 32)), 0);
	for (int k = 0; k < 4; k++) {
		void *bad;
		pthread_join(t[k], &bad);
		assert_int_equal((uintptr_t)bad, 0);
	}
	assert_int_equal(atomic_load(&ht_addrset.live), 0);
}

static int setup(void **state)
{
	(void)state;
	return ht_addrset_init(1 << 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(basics),
	        cmocka_unit_test(fills_up),
	        cmocka_unit_test(concurrent),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
