/*
 * two_leaks.c - two leaks at rates 10:1.
 *
 * For 5 s, every 10 ms step:
 *   leak_big()    keeps 32 KiB records: 100 MiB in all (20 MiB/s);
 *   leak_small()  keeps one 2 MiB block every second: 10 MiB in all (2 MiB/s).
 * Plus the usual background (pool, churn).
 *
 * leak_small's blocks are large on purpose: at the default rate (512 KiB) a
 * 2 MiB block is sampled with probability 1-e^-4 = 0.98 and its estimate has
 * a small variance, so a 10 MiB leak is measurable; made of small blocks it
 * would be near the detection floor (about 16 x the rate) at that rate.
 * (1 MiB blocks, sampled with probability 0.86, left flat stretches in the
 * staircase when a few in a row were missed.)
 *
 * Expected from `heaptap leaks`: verdict leak; leak_big and leak_small both
 * class leaking, leak_big ranked before leak_small.
 *
 *   two_leaks [--scale F]    run 5 s x F
 */
#define _GNU_SOURCE
#include "leaks_common.h"

#define RUN_SECONDS    5.0
#define BIG_BYTES      (32 << 10)
#define BIG_PER_SECOND 640 /* 20 MiB/s */
#define SMALL_BYTES    ((size_t)2 << 20)
#define SMALL_EVERY    100 /* steps: one block per second, 2 MiB/s */

struct node {
	struct node *next;
};

static struct node *big_list, *small_list;
static unsigned long big_count, small_count;

/* LEAK 1: a record per event, kept. */
NOINLINE static void leak_big(unsigned long id)
{
	struct node *n = malloc(BIG_BYTES);

	if (!n)
		abort();
	memset(n + 1, (int)(id & 0xff), BIG_BYTES - sizeof(*n));
	n->next = big_list;
	big_list = n;
	big_count++;
}

/* LEAK 2: a snapshot now and then, kept. */
NOINLINE static void leak_small(unsigned long id)
{
	struct node *n = malloc(SMALL_BYTES);

	if (!n)
		abort();
	memset(n + 1, (int)(id & 0xff), SMALL_BYTES - sizeof(*n));
	n->next = small_list;
	small_list = n;
	small_count++;
}

int main(int argc, char **argv)
{
	unsigned long steps, big_done = 0;

	lk_start(argc, argv, NULL);
	pool_init();
	lk_clock_start();
	lk_phase("load");
	steps = lk_steps(RUN_SECONDS);
	for (unsigned long s = 0; s < steps; s++) {
		/* BIG_PER_SECOND spread evenly over the steps */
		unsigned long big_due = (unsigned long)((double)(s + 1) * LK_STEP * BIG_PER_SECOND);

		while (big_done < big_due)
			leak_big(big_done++);
		if (s % SMALL_EVERY == SMALL_EVERY / 2)
			leak_small(s);
		churn_request(lk_between(256, 8192));
		lk_background();
		lk_tick();
	}
	lk_phase("end");
	printf("big count=%lu bytes=%lu small count=%lu bytes=%lu\n", big_count,
	       big_count * (unsigned long)BIG_BYTES, small_count, small_count * SMALL_BYTES);
	lk_done();
	return 0;
}
