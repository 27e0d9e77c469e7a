/*
 * bench_dump.c - what a dump costs heaptap, and what it costs the program.
 *
 * Run under LD_PRELOAD=libheaptap.so with HEAPTAP_RATE=1 and HEAPTAP_DIR set
 * (bench/run.py does). heaptap's API is reached through weak symbols, so the
 * program also runs (and says "skipped") without heaptap.
 *
 * 1. Dump time: allocate 32-byte blocks from 1k, then 10k, then 100k distinct
 *    stacks (sites.h, 3 levels) and keep them live; after each step time
 *    heaptap_dump() (it builds and writes the heap and thread profiles on the
 *    calling thread, the same work the flusher does for a signal) 3 times.
 * 2. Stalls: with all stacks live, W worker threads time every malloc(64) +
 *    free with clock_gettime; first for a quiet period, then while the main
 *    thread raises the dump signal over and over (each dump then runs on
 *    heaptap's flusher thread) and waits for each dump to land. Workers block
 *    the signal so only the main thread takes it. Reported: the longest op
 *    and the number of ops over 1 ms in each period. Run with the workers at
 *    the default rate and at rate 1.
 * Usage: bench_dump [counts] [workers] [period_ms]
 *        default 1000,10000,100000  1,2  1000
 */
#define HEAPTAP_WEAK
#include <heaptap.h>

#include "common.h"
#include "sites.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

static _Atomic int phase; /* 0 warm-up, 1 quiet, 2 dumping, 3 stop */

struct worker {
	pthread_t th;
	uint64_t max_ns[3], over_1ms[3], ops[3];
	char pad[64];
};

static void *work(void *arg)
{
	struct worker *w = arg;
	int ph;
	while ((ph = atomic_load_explicit(&phase, memory_order_relaxed)) != 3) {
		uint64_t t0 = bench_now_ns();
		char *p = malloc(64);
		p[0] = 1;
		bench_sink(p);
		free(p);
		uint64_t d = bench_now_ns() - t0;
		if (d > w->max_ns[ph])
			w->max_ns[ph] = d;
		if (d > 1000000)
			w->over_1ms[ph]++;
		w->ops[ph]++;
	}
	return NULL;
}

static uint64_t dumps_done(void)
{
	struct heaptap_stats st;
	if (heaptap_stats(&st, sizeof(st)) != 0)
		return 0;
	return st.dumps;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void stall_test(unsigned nworkers, unsigned period_ms, uint64_t rate, unsigned stacks)
{
	heaptap_set_rate(rate);
	struct worker *w = calloc(nworkers, sizeof(*w));
	sigset_t usr2, old;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &usr2, &old);
	atomic_store(&phase, 0);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_create(&w[i].th, NULL, work, &w[i]);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	struct timespec warm = {0, 100 * 1000000L};
	nanosleep(&warm, NULL);
	atomic_store(&phase, 1);
	struct timespec quiet = {(time_t)(period_ms / 1000), (long)(period_ms % 1000) * 1000000L};
	nanosleep(&quiet, NULL);
	atomic_store(&phase, 2);
	uint64_t t_end = bench_now_ns() + (uint64_t)period_ms * 1000000ull;
	unsigned ndumps = 0;
	double dump_ms[256];
	while ((bench_now_ns() < t_end || ndumps < 3) && ndumps < 256) {
		uint64_t before = dumps_done(), t0 = bench_now_ns();
		raise(SIGUSR2);
		while (dumps_done() == before && bench_now_ns() - t0 < 5000000000ull) {
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
		}
		dump_ms[ndumps++] = (double)(bench_now_ns() - t0) / 1e6;
	}
	atomic_store(&phase, 3);
	uint64_t mx[3] = {0}, over[3] = {0}, ops[3] = {0};
	for (unsigned i = 0; i < nworkers; i++) {
		pthread_join(w[i].th, NULL);
		for (int ph = 1; ph < 3; ph++) {
			if (w[i].max_ns[ph] > mx[ph])
				mx[ph] = w[i].max_ns[ph];
			over[ph] += w[i].over_1ms[ph];
			ops[ph] += w[i].ops[ph];
		}
	}
	qsort(dump_ms, ndumps, sizeof(double), cmp_double);
	const char *rn = rate == 1 ? "1" : "default";
	printf("RESULT bench=stall stacks=%u workers=%u rate=%s phase=quiet metric=max_op_us "
	       "value=%.1f over_1ms=%llu ops=%llu\n",
	       stacks, nworkers, rn, (double)mx[1] / 1e3, (unsigned long long)over[1],
	       (unsigned long long)ops[1]);
	printf("RESULT bench=stall stacks=%u workers=%u rate=%s phase=dumping metric=max_op_us "
	       "value=%.1f over_1ms=%llu ops=%llu dumps=%u signal_to_file_ms_median=%.1f\n",
	       stacks, nworkers, rn, (double)mx[2] / 1e3, (unsigned long long)over[2],
	       (unsigned long long)ops[2], ndumps, dump_ms[ndumps / 2]);
	fflush(stdout);
	free(w);
}

int main(int argc, char **argv)
{
	const char *counts = argc > 1 ? argv[1] : "1000,10000,100000";
	const char *workers = argc > 2 ? argv[2] : "1,2";
	unsigned period_ms = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 1000;
	struct heaptap_stats st;
	if (!HEAPTAP_PRESENT(heaptap_stats) || heaptap_stats(&st, sizeof(st)) != 0) {
		printf("RESULT bench=dump skipped=heaptap_not_loaded metric=none value=0\n");
		return 0;
	}
	if (st.rate != 1)
		fprintf(stderr, "bench_dump: HEAPTAP_RATE is %llu, not 1: stacks may be missed\n",
		        (unsigned long long)st.rate);
	unsigned have = 0, maxk = 0;
	void **live = NULL;
	const char *c = counts;
	while (c && *c) {
		char *end;
		unsigned k = (unsigned)strtoul(c, &end, 10);
		c = *end == ',' ? end + 1 : NULL;
		void **nl = realloc(live, (size_t)k * sizeof(void *));
		if (!nl)
			return 1;
		live = nl;
		for (; have < k; have++)
			live[have] = site_alloc(have, 3, 32);
		maxk = have;
		double t[3];
		for (int i = 0; i < 3; i++) {
			uint64_t t0 = bench_now_ns();
			int r = heaptap_dump();
			t[i] = (double)(bench_now_ns() - t0) / 1e6;
			if (r != 0)
				fprintf(stderr, "bench_dump: heaptap_dump: %s\n",
				        heaptap_strerror(r));
		}
		qsort(t, 3, sizeof(double), cmp_double);
		heaptap_stats(&st, sizeof(st));
		printf("RESULT bench=dump stacks=%u metric=dump_ms value=%.2f min=%.2f max=%.2f "
		       "live_samples=%llu own_mib=%.1f\n",
		       k, t[1], t[0], t[2], (unsigned long long)st.live_samples,
		       (double)st.own_bytes / 1048576.0);
		fflush(stdout);
	}
	c = workers;
	while (c && *c) {
		char *end;
		unsigned nw = (unsigned)strtoul(c, &end, 10);
		c = *end == ',' ? end + 1 : NULL;
		stall_test(nw, period_ms, 524288, maxk);
		stall_test(nw, period_ms, 1, maxk);
	}
	for (unsigned i = 0; i < have; i++)
		free(live[i]);
	free(live);
	return 0;
}
