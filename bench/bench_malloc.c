/*
 * bench_malloc.c - malloc+free pair cost by block size and thread count.
 *
 * For every (threads, size) cell: start the threads, release them together,
 * let each run p = malloc(size); touch; free(p) until the time budget is
 * spent, and report
 *     ns_per_pair = wall time x min(threads, cpus) / total pairs
 * i.e. the core-time one pair costs (idle cores, e.g. threads asleep on a
 * profiler's lock, count as cost); the median of 5 windows of ms/5 each. Usage: bench_malloc [ms]
 * [sizes] [threads] with comma-separated lists; default 60 ms per cell, sizes 16..65536, threads
 * 1,2,8. bench_malloc --pairs N SIZE: exactly N pairs on one thread, no output (for instruction
 * counts under callgrind).
 */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

static _Atomic int stop;
static pthread_barrier_t start_bar;
static size_t cell_size;

struct worker {
	pthread_t th;
	uint64_t pairs;
	uint64_t start_ns, end_ns;
	char pad[40];
};

static void *run(void *arg)
{
	struct worker *w = arg;
	size_t n = cell_size;
	uint64_t pairs = 0;
	pthread_barrier_wait(&start_bar);
	w->start_ns = bench_now_ns();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < 256; i++) {
			char *p = malloc(n);
			p[0] = (char)i;
			bench_sink(p);
			free(p);
		}
		pairs += 256;
	}
	w->end_ns = bench_now_ns();
	w->pairs = pairs;
	return NULL;
}

static int parse_list(const char *s, unsigned long *out, int max)
{
	int n = 0;
	while (s && *s && n < max) {
		char *end;
		out[n++] = strtoul(s, &end, 10);
		s = *end == ',' ? end + 1 : NULL;
	}
	return n;
}

#define WINDOWS 5

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One window: nt threads, block size n, ms milliseconds; ns per pair. */
static double cell(unsigned nt, size_t n, unsigned ms, long ncpu)
{
	struct worker *w = calloc(nt, sizeof(*w));
	if (!w)
		exit(1);
	cell_size = n;
	atomic_store(&stop, 0);
	pthread_barrier_init(&start_bar, NULL, nt + 1);
	for (unsigned i = 0; i < nt; i++)
		pthread_create(&w[i].th, NULL, run, &w[i]);
	pthread_barrier_wait(&start_bar);
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	atomic_store(&stop, 1);
	uint64_t pairs = 0, end = 0, t0 = UINT64_MAX;
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(w[i].th, NULL);
		pairs += w[i].pairs;
		if (w[i].start_ns < t0)
			t0 = w[i].start_ns;
		if (w[i].end_ns > end)
			end = w[i].end_ns;
	}
	pthread_barrier_destroy(&start_bar);
	free(w);
	double cores = (double)(nt < (unsigned)ncpu ? nt : (unsigned)ncpu);
	return (double)(end - t0) * cores / (double)(pairs ? pairs : 1);
}

int main(int argc, char **argv)
{
	if (argc > 3 && strcmp(argv[1], "--pairs") == 0) {
		unsigned long n = strtoul(argv[2], NULL, 10);
		size_t sz = strtoul(argv[3], NULL, 10);
		for (unsigned long i = 0; i < n; i++) {
			char *p = malloc(sz);
			p[0] = (char)i;
			bench_sink(p);
			free(p);
		}
		return 0;
	}
	unsigned ms = bench_ms(argc, argv, 1, 60);
	unsigned long sizes[16] = {16, 64, 256, 1024, 4096, 65536};
	unsigned long threads[8] = {1, 2, 8};
	int nsizes = 6, nthreads = 3;
	if (argc > 2)
		nsizes = parse_list(argv[2], sizes, 16);
	if (argc > 3)
		nthreads = parse_list(argv[3], threads, 8);
	long ncpu = bench_ncpu();
	/* Untimed warm-up: the profiler's start-up is not a pair's cost. */
	cell(1, 64, 20, ncpu);
	for (int ti = 0; ti < nthreads; ti++) {
		for (int si = 0; si < nsizes; si++) {
			/* Median of WINDOWS short windows: a preempted window on a
			 * noisy VM does not move the result. */
			double v[WINDOWS];
			for (int k = 0; k < WINDOWS; k++)
				v[k] = cell((unsigned)threads[ti], sizes[si], ms / WINDOWS, ncpu);
			qsort(v, WINDOWS, sizeof(double), cmp_double);
			printf("RESULT bench=malloc size=%lu threads=%lu metric=ns_per_pair "
			       "value=%.3f\n",
			       sizes[si], threads[ti], v[WINDOWS / 2]);
			fflush(stdout);
		}
	}
	return 0;
}
