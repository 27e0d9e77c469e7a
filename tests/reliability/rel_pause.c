/*
 * rel_pause.c - heaptap_pause() and heaptap_resume(): no new samples while
 * paused, but frees of blocks sampled before the pause are still seen.
 *
 * Run at HEAPTAP_RATE=1 (every allocation a sample):
 *   before_pause  N blocks, kept;
 *   heaptap_pause();
 *   during_pause  M blocks, kept; and free_half frees every other block of
 *                 before_pause's;
 *   heaptap_resume();
 *   after_resume  K blocks, kept.
 * heaptap_stats() is read around each phase, nothing else allocating in
 * between; the program prints what it read as key=value lines (samples and
 * live samples taken in each phase, the paused flag, the estimated live
 * bytes), what the profile must hold as
 *   expect <fn> <inuse bytes> <inuse objects> <alloc bytes> <alloc objects>
 * lines, dump= and done=1. Without heaptap every call returns -ENOSYS and the
 * program still runs to the end.
 */
#include "rel_common.h"

#define N      64
#define SIZE_N 1000
#define M      32
#define SIZE_M 1500
#define K      16
#define SIZE_K 700

/* Global, so the compiler cannot drop the allocations. */
void *before[N], *during[M], *after[K];

#define ALLOCATOR(name, arr, count, size)                                                          \
	NOINLINE static void name(void)                                                            \
	{                                                                                          \
		for (int i = 0; i < (count); i++)                                                  \
			arr[i] = malloc(size);                                                     \
		__asm__ volatile("" ::: "memory");                                                 \
	}
ALLOCATOR(before_pause, before, N, SIZE_N)
ALLOCATOR(during_pause, during, M, SIZE_M)
ALLOCATOR(after_resume, after, K, SIZE_K)

NOINLINE static void free_half(void)
{
	for (int i = 0; i < N; i += 2) {
		free(before[i]);
		before[i] = NULL;
	}
	__asm__ volatile("" ::: "memory");
}

/* Differences of the counters between two reads. */
#define D(a, b, f) ((long long)((b).f - (a).f))

int main(void)
{
	struct heaptap_stats s0, s1, s2, s3, s4;
	/* stdout's buffer is allocated by this first line, before s0. */
	say("start=1");
	int st0 = rel_stats(&s0);
	before_pause();
	int st1 = rel_stats(&s1);
	int pause = HEAPTAP_CALL(heaptap_pause);
	int st2 = rel_stats(&s2);
	during_pause();
	free_half();
	int st3 = rel_stats(&s3);
	int resume = HEAPTAP_CALL(heaptap_resume);
	after_resume();
	int st4 = rel_stats(&s4);

	say("pause=%d resume=%d", pause, resume);
	say("stats=%d", st0 | st1 | st2 | st3 | st4);
	say("paused_before=%u paused_during=%u paused_after=%u", s1.paused, s2.paused, s4.paused);
	/* Samples taken by before_pause; during the pause (allocations and
	 * frees); by after_resume. */
	say("samples_before=%lld samples_during=%lld samples_after=%lld", D(s0, s1, samples),
	    D(s2, s3, samples), D(s3, s4, samples));
	say("live_before=%lld live_during=%lld live_after=%lld", D(s0, s1, live_samples),
	    D(s2, s3, live_samples), D(s3, s4, live_samples));
	say("bytes_before=%lld bytes_during=%lld bytes_after=%lld", D(s0, s1, est_live_bytes),
	    D(s2, s3, est_live_bytes), D(s3, s4, est_live_bytes));
	say("want_samples_before=%d want_samples_during=0 want_samples_after=%d", N, K);
	say("want_live_before=%d want_live_during=%d want_live_after=%d", N, -N / 2, K);
	say("want_bytes_before=%d want_bytes_during=%d want_bytes_after=%d", N * SIZE_N,
	    -(N / 2) * SIZE_N, K * SIZE_K);
	say("expect before_pause %d %d %d %d", (N / 2) * SIZE_N, N / 2, N * SIZE_N, N);
	say("expect during_pause 0 0 0 0");
	say("expect after_resume %d %d %d %d", K * SIZE_K, K, K * SIZE_K, K);
	say("dump=%d", rel_dump());
	say("done=1");
	return 0;
}
