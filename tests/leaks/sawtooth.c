/*
 * sawtooth.c - a batch that grows and is released, cycle after cycle.
 *
 * After a 0.2 s lead-in, 6 cycles of 1 s (about 4 dumps each): for 0.64 s
 * batch_add() collects 8 records of 32 KiB per 10 ms step (16 MiB per
 * batch), then batch_release() frees the whole batch, then 0.36 s pass with
 * an empty batch (so about a third of the dumps see a trough). The live heap
 * saws between ~0 and 16 MiB; the troughs are flat.
 *
 * Built twice from this file:
 *   sawtooth          as above. Expected: no leak verdict; batch_add never
 *                     class leaking.
 *   sawtooth_rising   (-DSAWTOOTH_RISING) at each release keep_one() keeps an
 *                     8 MiB copy of the batch's last record for good: 48 MiB
 *                     over 6 cycles, a staircase under the saw. Expected:
 *                     verdict leak, keep_one class leaking; batch_add not.
 *
 * keep_one's blocks are 8 MiB so that even at the default rate (512 KiB)
 * each is sampled with probability 1-e^-16: the staircase is seen whole at
 * either rate. (With 2 MiB blocks, 1-e^-4 = 0.98, one run in eight missed a
 * step, and a staircase with a step missing near its end looks level.)
 *
 *   sawtooth [--scale F]    6 cycles; --scale changes the number of cycles
 *                           (rounded, at least 3), not their length
 */
#define _GNU_SOURCE
#include "leaks_common.h"

#define RECORD_BYTES     (32 << 10)
#define RECORDS_PER_STEP 8
#define GROW_STEPS       64 /* 512 records: 16 MiB */
#define EMPTY_STEPS      36
#define CYCLES           6
#define KEEP_BYTES       ((size_t)8 << 20)

static void *batch[GROW_STEPS * RECORDS_PER_STEP];
static unsigned batch_len;

/* THE SAW: one more record in the current batch. */
NOINLINE static void batch_add(unsigned id)
{
	unsigned char *r = malloc(RECORD_BYTES);

	if (!r)
		abort();
	memset(r, (int)(id & 0xff), RECORD_BYTES);
	batch[batch_len++] = r;
}

#ifdef SAWTOOTH_RISING
static void **kept;
static unsigned kept_len;

/* THE LEAK: a copy of one record per cycle, kept for good. */
NOINLINE static void keep_one(const unsigned char *record)
{
	unsigned char *k = malloc(KEEP_BYTES);

	if (!k)
		abort();
	for (size_t off = 0; off < KEEP_BYTES; off += RECORD_BYTES)
		memcpy(k + off, record, RECORD_BYTES);
	kept[kept_len++] = k;
}
#endif

NOINLINE static void batch_release(void)
{
#ifdef SAWTOOTH_RISING
	keep_one(batch[batch_len - 1]);
#endif
	for (unsigned i = 0; i < batch_len; i++)
		free(batch[i]);
	batch_len = 0;
}

int main(int argc, char **argv)
{
	const unsigned long lead_in = 20, cycle = GROW_STEPS + EMPTY_STEPS;
	unsigned cycles;
	unsigned id = 0;

	lk_start(argc, argv, NULL);
	cycles = (unsigned)(CYCLES * lk_scale + 0.5);
	if (cycles < 3)
		cycles = 3;
	pool_init();
#ifdef SAWTOOTH_RISING
	kept = calloc(cycles, sizeof(*kept)); /* part of the fixed pool */
	if (!kept)
		abort();
#endif
	lk_clock_start();
	lk_phase("lead-in");
	for (unsigned long s = 0; s < lead_in + cycles * cycle; s++) {
		if (s >= lead_in) {
			unsigned long in_cycle = (s - lead_in) % cycle;

			if (in_cycle == 0) {
				printf("cycle %lu t=%.2f\n", (s - lead_in) / cycle + 1, lk_now());
				fflush(stdout);
			}
			if (in_cycle < GROW_STEPS)
				for (int r = 0; r < RECORDS_PER_STEP; r++)
					batch_add(id++);
			if (in_cycle == GROW_STEPS - 1)
				batch_release();
		}
		lk_background();
		lk_tick();
	}
	lk_phase("end");
#ifdef SAWTOOTH_RISING
	printf("cycles=%u kept count=%u bytes=%zu\n", cycles, kept_len, kept_len * KEEP_BYTES);
#else
	printf("cycles=%u\n", cycles);
#endif
	lk_done();
	return 0;
}
