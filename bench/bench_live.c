/*
 * bench_live.c - what a profiler keeps per live allocation.
 *
 * Holds N live blocks of 32 to 80 bytes (N from argv[1], 1,000,000 by
 * default; the sizes of tests/integration/own_memory.c), then reports the
 * process's resident memory as the kernel counts it: VmRSS while the blocks
 * are held and VmHWM, its peak. Run once without a profiler and once under
 * each profiler, the difference divided by N is the profiler's memory per
 * live allocation, whatever the profiler (bench/run.py pairs the runs).
 * Under heaptap (weak symbols: the program runs without it too) it also
 * prints heaptap's own view from heaptap_stats(): all of its resident memory,
 * the live samples, and the quotient of the two.
 *
 * Lines: RESULT bench=live blocks=N what=<figure> metric=bytes value=V, for
 * what = rss, peak_rss and, under heaptap, heaptap_resident,
 * heaptap_live_samples, heaptap_per_live_sample.
 * Usage: bench_live [N]
 */
#define HEAPTAP_WEAK
#include <heaptap.h>

#include "common.h"
#include "live_blocks.h"

/* kB figure of a /proc/self/status line ("VmRSS:", "VmHWM:"), in bytes. */
static long long status_bytes(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	long long v = -1;
	size_t klen = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0) {
			v = strtoll(line + klen, NULL, 10) * 1024;
			break;
		}
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	if (n <= 0)
		return 2;
	char **keep = live_blocks_hold(n);
	if (!keep)
		return 1;
	/* Read before stdio allocates its buffer, alike in every run. */
	long long rss = status_bytes("VmRSS:"), peak = status_bytes("VmHWM:");
	struct heaptap_stats st;
	memset(&st, 0, sizeof(st));
	int rc = HEAPTAP_CALL(heaptap_stats, &st, sizeof(st));
	printf("RESULT bench=live blocks=%ld what=rss metric=bytes value=%lld\n", n, rss);
	printf("RESULT bench=live blocks=%ld what=peak_rss metric=bytes value=%lld\n", n, peak);
	if (rc == 0) {
		printf("RESULT bench=live blocks=%ld what=heaptap_resident metric=bytes value=%llu\n",
		       n, (unsigned long long)st.resident_bytes);
		printf("RESULT bench=live blocks=%ld what=heaptap_live_samples metric=count "
		       "value=%llu\n",
		       n, (unsigned long long)st.live_samples);
		printf("RESULT bench=live blocks=%ld what=heaptap_per_live_sample metric=bytes "
		       "value=%.1f\n",
		       n,
		       st.live_samples ? (double)st.resident_bytes / (double)st.live_samples : 0.0);
	}
	/* The blocks stay live until exit, as a profiler sees a program's
	 * long-lived data: no million frees in the timing of the slower
	 * profilers. */
	bench_sink(keep);
	return 0;
}
