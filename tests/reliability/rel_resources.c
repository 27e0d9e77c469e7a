/*
 * rel_resources.c - heaptap under resource pressure.
 *
 *   rel_resources oom       under a small RLIMIT_AS (set by the driver):
 *                           allocate 1 MiB blocks until malloc fails, then
 *                           check calloc, realloc and posix_memalign fail the
 *                           same way; free everything, allocate again, dump.
 *   rel_resources cmd       reads commands on stdin: "dump" (prints dump=R),
 *                           "quit". Allocates in between (disk full tests).
 *   rel_resources tables N  allocate N blocks of 8 MiB (never touched) at a
 *                           high sampling rate so the sampled-block table
 *                           has to grow; print heaptap's counters; free;
 *                           again.
 */
#include "rel_common.h"

#include <malloc.h>

static NOINLINE void *cmd_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static int mode_oom(void)
{
	enum { MAXB = 1 << 16 };
	static void *b[MAXB];
	int n = 0;
	errno = 0;
	while (n < MAXB) {
		void *p = malloc(1 << 20);
		if (!p)
			break;
		((volatile char *)p)[0] = 1;
		b[n++] = p;
	}
	int malloc_errno = errno;
	errno = 0;
	void *c = calloc(1, 1 << 20);
	int calloc_errno = errno;
	void *small = malloc(16);
	errno = 0;
	void *r = small ? realloc(small, (size_t)1 << 30) : NULL;
	int realloc_errno = errno;
	int intact = small != NULL && r == NULL;
	void *pm = NULL;
	int pm_r = posix_memalign(&pm, 64, (size_t)1 << 30);
	errno = 0;
	void *big = malloc((size_t)1 << 40);
	int big_errno = errno;
	say("malloc=%s/%d calloc=%s/%d realloc=%s/%d/intact%d posix_memalign=%d huge=%s/%d",
	    n < MAXB ? "NULL" : "ok", malloc_errno, c ? "ok" : "NULL", calloc_errno,
	    r ? "ok" : "NULL", realloc_errno, intact, pm_r, big ? "ok" : "NULL", big_errno);
	say("blocks_before_null=%d", n);
	free(c);
	free(r ? r : small);
	for (int i = 0; i < n; i++)
		free(b[i]);
	void *again = malloc(1 << 20);
	say("recovered=%d", again != NULL);
	free(again);
	int d = rel_dump();
	say("dump_done=1 dump_ok=%d", d == 0 || d == -ENOSYS);
	return 0;
}

static int mode_cmd(void)
{
	char line[256];
	static void *keep[4096];
	int nk = 0;
	say("ready pid=%d", (int)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		for (int i = 0; i < 50 && nk < 4096; i++, nk++)
			keep[nk] = cmd_alloc(100 + (size_t)nk);
		if (strncmp(line, "dump", 4) == 0) {
			int r = rel_dump();
			say("dump=%d", r);
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		}
	}
	for (int i = 0; i < nk; i++)
		free(keep[i]);
	return 0;
}

static void print_stats(const char *when)
{
	struct heaptap_stats s;
	int r = rel_stats(&s);
	say("%s stats=%d samples=%llu live_samples=%llu dropped_samples=%llu "
	    "dropped_events=%llu est_live_bytes=%llu own_bytes=%llu",
	    when, r, (unsigned long long)s.samples, (unsigned long long)s.live_samples,
	    (unsigned long long)s.dropped_samples, (unsigned long long)s.dropped_events,
	    (unsigned long long)s.est_live_bytes, (unsigned long long)s.own_bytes);
}

static int mode_tables(int n)
{
	void **b = calloc((size_t)n, sizeof(void *));
	int got = 0;
	for (int i = 0; i < n; i++) {
		b[i] = malloc((size_t)8 << 20);
		got += b[i] != NULL;
	}
	say("allocated=%d live_bytes=%llu", got, (unsigned long long)got * (8ull << 20));
	say("dump_full=%d", rel_dump());
	print_stats("full");
	for (int i = 0; i < n; i++)
		free(b[i]);
	free(b);
	say("dump_freed=%d", rel_dump());
	print_stats("freed");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "oom") == 0)
		return mode_oom();
	if (argc >= 2 && strcmp(argv[1], "cmd") == 0)
		return mode_cmd();
	if (argc >= 3 && strcmp(argv[1], "tables") == 0)
		return mode_tables(atoi(argv[2]));
	fprintf(stderr, "usage: rel_resources oom | cmd | tables N\n");
	return 2;
}
