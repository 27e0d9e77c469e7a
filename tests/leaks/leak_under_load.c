/*
 * leak_under_load.c - a leak that only grows while there is load.
 *
 * Three phases: idle 1 s, load 3.4 s, idle 2 s. While idle the service
 * only runs its background (pool, churn ring: about 1 MiB/s allocated).
 * Under load it serves 900 requests per 10 ms step; one in 4 parses its input
 * in a scratch buffer (churn_request, freed: ~25 MiB/s) and one request in 50
 * also goes through leak_on_load(), which keeps 4 KiB and never frees it:
 * 24 MiB in the load phase, nothing before or after it.
 *
 * Expected from `heaptap leaks`: verdict leak naming leak_on_load (class
 * leaking); the idle dumps after the load, where the leak is flat, must not
 * make it levels_off.
 *
 *   leak_under_load [--scale F]    run 6.4 s x F
 */
#define _GNU_SOURCE
#include "leaks_common.h"

#define REQUESTS_PER_STEP 900
#define LEAK_EVERY        50
#define LEAK_BYTES        4096
#define IDLE_BEFORE       1.0
#define LOAD_SECONDS      3.4
#define IDLE_AFTER        2.0

struct held {
	struct held *next;
	unsigned char data[LEAK_BYTES - sizeof(struct held *)];
};

static struct held *held_list;
static unsigned long held_count;

/* THE LEAK: one request in LEAK_EVERY keeps its 4 KiB context. */
NOINLINE static void leak_on_load(unsigned id)
{
	struct held *h = malloc(sizeof(*h));

	if (!h)
		abort();
	memset(h->data, (int)(id & 0xff), sizeof(h->data));
	h->next = held_list;
	held_list = h;
	held_count++;
}

/* A request: small bodies are parsed in place, one in 4 needs a scratch
 * buffer (churn_request); one in LEAK_EVERY leaks. Cheap on purpose: 90,000
 * requests a second must stay a small part of each step, even at
 * HEAPTAP_RATE=1 on a slow machine. */
NOINLINE static void handle_request(unsigned id)
{
	if (id % 4 == 0)
		churn_request(lk_between(1024, 4096));
	if (id % LEAK_EVERY == LEAK_EVERY - 1)
		leak_on_load(id);
}

int main(int argc, char **argv)
{
	unsigned long idle1, load, idle2;
	unsigned id = 0;

	lk_start(argc, argv, NULL);
	idle1 = lk_steps(IDLE_BEFORE);
	load = lk_steps(LOAD_SECONDS);
	idle2 = lk_steps(IDLE_AFTER);
	pool_init();
	lk_clock_start();
	for (unsigned long s = 0; s < idle1 + load + idle2; s++) {
		if (s == 0)
			lk_phase("idle");
		else if (s == idle1)
			lk_phase("load");
		else if (s == idle1 + load)
			lk_phase("after");
		if (s >= idle1 && s < idle1 + load)
			for (int r = 0; r < REQUESTS_PER_STEP; r++)
				handle_request(id++);
		lk_background();
		lk_tick();
	}
	lk_phase("end");
	printf("requests=%u leaked count=%lu bytes=%lu\n", id, held_count,
	       held_count * (unsigned long)sizeof(struct held));
	lk_done();
	return 0;
}
