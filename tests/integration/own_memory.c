/*
 * own_memory.c - many small live blocks, for test_own_memory.py (issue 12).
 *
 * Holds N blocks of 32 to 80 bytes (N from argv[1], 200000 by default),
 * prints its RSS as heaptap reads it (/proc/self/statm), then dumps, reads
 * heaptap_stats and frees everything. Run without heaptap it prints the same
 * RSS line (the dump and the stats are skipped, -ENOSYS), which is what the
 * program holds on its own: RSS under heaptap minus heaptap_resident_bytes
 * should come back to it.
 *
 * Lines: rss_bytes=N, dump=RC, stats=RC own_bytes=N resident_bytes=N, done=1.
 */
#include "live_blocks.h"
#include "rel_common.h"

static long long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long long size = 0, resident = -1;
	if (f) {
		if (fscanf(f, "%lld %lld", &size, &resident) != 2)
			resident = -1;
		fclose(f);
	}
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	if (n <= 0)
		return 2;
	char **keep = live_blocks_hold(n);
	if (!keep)
		return 1;
	/* Read before anything prints: stdout's buffer comes after, in both
	 * runs alike. */
	long long rss = rss_bytes();
	say("rss_bytes=%lld", rss);
	say("dump=%d", rel_dump());
	struct heaptap_stats st;
	int rc = rel_stats(&st);
	say("stats=%d own_bytes=%llu resident_bytes=%llu", rc, (unsigned long long)st.own_bytes,
	    (unsigned long long)st.resident_bytes);
	for (long i = 0; i < n; i++)
		free(keep[i]);
	free(keep);
	say("done=1");
	return 0;
}
