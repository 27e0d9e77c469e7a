/*
 * rel_rate.c - heaptap_set_rate() from 1 to the default and back to 1: the
 * blocks sampled at rate 1 keep exact totals through both changes.
 *
 * At rate 1 heaptap's table of sampled pointers counts nothing (every free is
 * a sample's); at any other rate it counts the keys at each home, which is
 * what lets free() skip the blocks never sampled. Changing the rate makes
 * heaptap's thread move every key into a table of the other kind while the
 * program goes on allocating and freeing. A free that the table took for
 * "certainly not sampled" would leave its block in use in the profile for
 * good; one found twice would take out too much. Run at HEAPTAP_RATE=1:
 *   alloc_one      N1 blocks, kept (rate 1: each a sample of weight 1);
 *   heaptap_set_rate(default);
 *                  a second thread frees every other block of alloc_one's,
 *                  a slice at a time over ~300 ms (before, while and after
 *                  the table is replaced), while churn_sampled allocates
 *                  and frees 4 KiB blocks (a few sampled, all freed);
 *   heaptap_set_rate(1);
 *   settle         allocates and frees until this thread's pending gap,
 *                  drawn at the default rate, has run out (from there every
 *                  allocation is a sample);
 *   alloc_three    N3 blocks, kept; then the second thread frees a half of
 *                  what is left of alloc_one's, while this one frees half
 *                  of alloc_three's and churn_exact allocates and frees
 *                  blocks (every one a sample), over ~300 ms again.
 * The program prints what the profile must hold as
 *   expect <fn> <inuse bytes> <inuse objects> <alloc bytes> <alloc objects>
 * lines (exact), the functions whose blocks were all freed (inuse 0) as
 * freed=<fn> lines, the heaptap_stats() figures around each phase, dump= and
 * done=1. Without heaptap every call returns -ENOSYS and the program still
 * runs to the end.
 */
#include "rel_common.h"

#include <pthread.h>

#define RATE_DEFAULT 524288
#define N1           200000 /* enough for a table of 2^19 slots: a long move */
#define SIZE1        48
#define N3           40000
#define SIZE3        80
#define SLICES       150
#define SLICE_MS     2
#define CHURN_SIZE   4096

/* Global, so the compiler cannot drop the allocations. */
void *one[N1], *three[N3];

NOINLINE static void alloc_one(void)
{
	for (int i = 0; i < N1; i++)
		one[i] = malloc(SIZE1);
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void alloc_three(void)
{
	for (int i = 0; i < N3; i++)
		three[i] = malloc(SIZE3);
	__asm__ volatile("" ::: "memory");
}

/* n blocks allocated and freed, 16 live at a time. */
#define CHURN(name)                                                                                \
	NOINLINE static void name(int n)                                                           \
	{                                                                                          \
		void *live[16] = {0};                                                              \
		for (int i = 0; i < n; i++) {                                                      \
			free(live[i & 15]);                                                        \
			live[i & 15] = malloc(CHURN_SIZE);                                         \
			rel_touch(live[i & 15], CHURN_SIZE);                                       \
		}                                                                                  \
		for (int i = 0; i < 16; i++)                                                       \
			free(live[i]);                                                             \
	}
CHURN(churn_sampled)
CHURN(churn_exact)
CHURN(settle)

/* Frees arr[i] for i = first, first + step, ... below n, a slice at a
 * time, SLICE_MS apart. */
struct spread {
	void **arr;
	int n, first, step;
};

static void free_slice(const struct spread *s, int slice)
{
	int count = (s->n - s->first + s->step - 1) / s->step;
	int from = (int)((long)count * slice / SLICES),
	    to = (int)((long)count * (slice + 1) / SLICES);
	for (int k = from; k < to; k++) {
		int i = s->first + k * s->step;
		free(s->arr[i]);
		s->arr[i] = NULL;
	}
}

/* The second thread, started before the first figures are read (creating
 * a thread allocates, and at rate 1 that is a sample): it frees the blocks
 * of each job it is handed, a slice at a time. */
static struct spread *_Atomic job;
static _Atomic int jobs_done;

static void *freer(void *arg)
{
	(void)arg;
	for (int n = 0; n < 2;) {
		struct spread *s = atomic_load(&job);
		if (!s) {
			rel_msleep(1);
			continue;
		}
		for (int slice = 0; slice < SLICES; slice++) {
			free_slice(s, slice);
			rel_msleep(SLICE_MS);
		}
		atomic_store(&job, NULL);
		atomic_store(&jobs_done, ++n);
	}
	return NULL;
}

static void wait_job(int n)
{
	while (atomic_load(&jobs_done) < n)
		rel_msleep(1);
}

#define D(a, b, f) ((long long)((b).f - (a).f))

int main(void)
{
	struct heaptap_stats s0, s1, s2, s3;
	pthread_t th;
	/* stdout's buffer is allocated by this first line, before s0. */
	say("start=1");
	if (pthread_create(&th, NULL, freer, NULL) != 0)
		return 1;
	int st0 = rel_stats(&s0);
	alloc_one();
	int st1 = rel_stats(&s1);

	/* To the default rate: the table becomes a counted one meanwhile. */
	int to_default = HEAPTAP_CALL(heaptap_set_rate, RATE_DEFAULT);
	struct spread odd = {one, N1, 1, 2};
	atomic_store(&job, &odd);
	for (int slice = 0; slice < SLICES; slice++) {
		churn_sampled(256);
		rel_msleep(SLICE_MS);
	}
	wait_job(1);
	int st2 = rel_stats(&s2);

	/* Back to 1: an uncounted table again. */
	int to_one = HEAPTAP_CALL(heaptap_set_rate, 1);
	settle(16384); /* 64 MiB: past any gap drawn at the default rate */
	alloc_three();
	struct spread quarter = {one, N1, 0, 4}, half = {three, N3, 0, 2};
	atomic_store(&job, &quarter);
	for (int slice = 0; slice < SLICES; slice++) {
		free_slice(&half, slice);
		churn_exact(64);
		rel_msleep(SLICE_MS);
	}
	wait_job(2);
	int st3 = rel_stats(&s3);
	pthread_join(th, NULL);

	say("to_default=%d to_one=%d", to_default, to_one);
	say("stats=%d", st0 | st1 | st2 | st3);
	say("rate_one=%llu rate_default=%llu rate_end=%llu", (unsigned long long)s1.rate,
	    (unsigned long long)s2.rate, (unsigned long long)s3.rate);
	/* Live samples: alloc_one's N1; then half of them freed (the
	 * churn's samples all freed too); then a quarter freed, N3 / 2 kept. */
	say("live_one=%lld live_default=%lld live_back=%lld", D(s0, s1, live_samples),
	    D(s1, s2, live_samples), D(s2, s3, live_samples));
	say("want_live_one=%d want_live_default=%d want_live_back=%d", N1, -N1 / 2,
	    N3 / 2 - N1 / 4);
	say("dropped=%llu", (unsigned long long)(s3.dropped_samples + s3.dropped_events));
	say("expect alloc_one %d %d %d %d", (N1 / 4) * SIZE1, N1 / 4, N1 * SIZE1, N1);
	say("expect alloc_three %d %d %d %d", (N3 / 2) * SIZE3, N3 / 2, N3 * SIZE3, N3);
	say("expect churn_exact 0 0 %d %d", SLICES * 64 * CHURN_SIZE, SLICES * 64);
	say("freed=churn_sampled freed=settle");
	say("dump=%d", rel_dump());
	say("done=1");
	return 0;
}
