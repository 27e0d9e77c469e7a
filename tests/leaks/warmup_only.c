/*
 * warmup_only.c - a large table built at start-up, then a flat service.
 *
 * In the first 0.64 s build_table() allocates a 64 MiB lookup table (1024
 * rows of 64 KiB, 16 rows per 10 ms step) that the service keeps to the end.
 * Then, for 4.4 s, requests read the table and churn scratch buffers
 * (churn_request, 128 per step of 1-15 KiB: ~100 MiB/s allocated and freed at
 * once) while nothing grows. The table is thus built in the first ~15% of
 * the run's allocation volume as well as in the first ~15% of its time.
 *
 * Expected from `heaptap leaks`: no leak verdict; build_table's stack is
 * class warmup (or levels_off), never leaking.
 *
 *   warmup_only [--scale F]    run 5 s x F (the table is always 64 MiB)
 */
#define _GNU_SOURCE
#include "leaks_common.h"

#define ROWS              1024
#define ROW_BYTES         (64 << 10)
#define ROWS_PER_STEP     16
#define SERVE_SECONDS     4.4
#define REQUESTS_PER_STEP 128

static unsigned char *table[ROWS];
static unsigned rows_built;

/* THE WARM-UP: one more row of the table, kept for the whole run. */
NOINLINE static void build_table(void)
{
	unsigned char *row = malloc(ROW_BYTES);

	if (!row)
		abort();
	memset(row, (int)(rows_built & 0xff), ROW_BYTES);
	table[rows_built++] = row;
}

NOINLINE static void handle_request(unsigned id)
{
	churn_request(lk_between(1024, 15360));
	churn_sink += table[id % ROWS][id % ROW_BYTES];
}

int main(int argc, char **argv)
{
	unsigned long build = (ROWS + ROWS_PER_STEP - 1) / ROWS_PER_STEP;
	unsigned long serve;
	unsigned id = 0;

	lk_start(argc, argv, NULL);
	serve = lk_steps(SERVE_SECONDS);
	pool_init();
	lk_clock_start();
	for (unsigned long s = 0; s < build + serve; s++) {
		if (s == 0)
			lk_phase("build");
		else if (s == build)
			lk_phase("serve");
		if (s < build) {
			for (int i = 0; i < ROWS_PER_STEP && rows_built < ROWS; i++)
				build_table();
		} else {
			for (int r = 0; r < REQUESTS_PER_STEP; r++)
				handle_request(id++);
		}
		lk_background();
		lk_tick();
	}
	lk_phase("end");
	printf("table rows=%u bytes=%lu requests=%u\n", rows_built,
	       (unsigned long)rows_built * ROW_BYTES, id);
	lk_done();
	return 0;
}
