/*
 * leak_steady.c - a leak at a steady rate.
 *
 * A service handles 64 requests per 10 ms step. Each request parses its
 * input in a scratch buffer (churn_request, freed) and passes through
 * leak_here(), which keeps a 1 KiB copy "for later" and never frees it:
 * 6.4 MiB/s, 32 MiB in 5 s. The background (pool_init, churn_ring) is
 * flat.
 *
 * Expected from `heaptap leaks`: verdict leak, leak_here ranked #1 as
 * class leaking, no churn_* or pool_* site leaking.
 *
 *   leak_steady [--scale F]     run 5 s x F
 */
#define _GNU_SOURCE
#include "leaks_common.h"

#define REQUESTS_PER_STEP 64
#define LEAK_BYTES        1024
#define RUN_SECONDS       5.0

struct kept {
	struct kept *next;
	unsigned id;
	unsigned char data[LEAK_BYTES - sizeof(struct kept *) - sizeof(unsigned)];
};

static struct kept *kept_list;
static unsigned long kept_count;

/* THE LEAK: a copy of every request, linked in and never freed. */
NOINLINE static void leak_here(unsigned id)
{
	struct kept *k = malloc(sizeof(*k));

	if (!k)
		abort();
	k->id = id;
	memset(k->data, (int)(id & 0xff), sizeof(k->data));
	k->next = kept_list;
	kept_list = k;
	kept_count++;
}

NOINLINE static void handle_request(unsigned id)
{
	churn_request(lk_between(512, 4096));
	leak_here(id);
}

int main(int argc, char **argv)
{
	unsigned long steps;
	unsigned id = 0;

	lk_start(argc, argv, NULL);
	pool_init();
	lk_clock_start();
	lk_phase("load");
	steps = lk_steps(RUN_SECONDS);
	for (unsigned long s = 0; s < steps; s++) {
		for (int r = 0; r < REQUESTS_PER_STEP; r++)
			handle_request(id++);
		lk_background();
		lk_tick();
	}
	lk_phase("end");
	printf("leaked count=%lu bytes=%lu\n", kept_count,
	       kept_count * (unsigned long)sizeof(struct kept));
	lk_done();
	return 0;
}
