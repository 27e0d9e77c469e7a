/*
 * tiny_leak.c - a leak too small to see at the default rate.
 *
 * For 5 s, every 10 ms step, the service churns scratch buffers
 * (churn_request, 16 per step: ~6 MiB/s) and leak_tiny() keeps 4 blocks of
 * 1 KiB: 2 MiB in all (2000 blocks spread over the run: --scale changes the
 * rate of the leak, not its total). At the default rate (512 KiB) that is about 4 sampled
 * objects: below the detection floor (a pure leak needs about 9R, 4.5 MiB,
 * to be told from noise). At HEAPTAP_RATE=1 it is exact and plain.
 *
 * Expected from `heaptap leaks`: at the default rate no leak verdict and
 * leak_tiny not class leaking; at HEAPTAP_RATE=1 verdict leak with
 * leak_tiny class leaking.
 *
 *   tiny_leak [--scale F]    run 5 s x F
 */
#define _GNU_SOURCE
#include "leaks_common.h"

#define RUN_SECONDS       5.0
#define LEAK_BYTES        1024
#define LEAK_BLOCKS       2000 /* 2 MiB in all, however long the run */
#define REQUESTS_PER_STEP 16

struct crumb {
	struct crumb *next;
	unsigned char data[LEAK_BYTES - sizeof(struct crumb *)];
};

static struct crumb *crumbs;
static unsigned long crumb_count;

/* THE (TINY) LEAK: 1 KiB kept now and then. */
NOINLINE static void leak_tiny(unsigned long id)
{
	struct crumb *c = malloc(sizeof(*c));

	if (!c)
		abort();
	memset(c->data, (int)(id & 0xff), sizeof(c->data));
	c->next = crumbs;
	crumbs = c;
	crumb_count++;
}

int main(int argc, char **argv)
{
	unsigned long steps;

	lk_start(argc, argv, NULL);
	pool_init();
	lk_clock_start();
	lk_phase("load");
	steps = lk_steps(RUN_SECONDS);
	for (unsigned long s = 0; s < steps; s++) {
		for (int r = 0; r < REQUESTS_PER_STEP; r++)
			churn_request(lk_between(256, 8192));
		while (crumb_count < LEAK_BLOCKS * (s + 1) / steps)
			leak_tiny(s);
		lk_background();
		lk_tick();
	}
	lk_phase("end");
	printf("leaked count=%lu bytes=%lu\n", crumb_count,
	       crumb_count * (unsigned long)sizeof(struct crumb));
	lk_done();
	return 0;
}
