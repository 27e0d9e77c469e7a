/*
 * leaks_common.h - what the `heaptap leaks` test subjects share.
 *
 * Each program in tests/leaks plays one memory story under periodic dumps
 * (HEAPTAP_INTERVAL=200ms): a leak, a cache that levels off, allocator
 * retention, a thread leak... Beside the site the story is about, every
 * program runs the same background, which `heaptap leaks` must never blame:
 *
 *   pool_init()      a fixed pool allocated once at start and kept to the end;
 *   churn_request()  a scratch buffer allocated, used and freed at once;
 *   churn_ring()     a ring of recent replies: each put frees the oldest, so a
 *                    bounded live set turns over all the time (noisy, flat);
 *                    filled by the first lk_background() call, at start.
 *
 * Pacing: a program is a series of steps of LK_STEP seconds of wall time.
 * Each step does a fixed, modest amount of work and then sleeps until the
 * step's deadline, so the sleeps dominate and a machine 4x slower or faster
 * gives the same picture, both against time and against the cumulative
 * allocation volume. Phase lengths are in seconds times --scale, rounded to
 * whole steps; the volume of every site is per step, so --scale shortens a
 * run and its totals in proportion.
 *
 * Output on stdout: `pid=<n>` first, `phase <name> ...` lines, a summary line
 * with the program's own figures, and `done` last.
 */
#ifndef LEAKS_COMMON_H
#define LEAKS_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Every site a real, separately named frame (no inlining, no IPA clones). */
#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noipa))
#endif
#define LK_UNUSED __attribute__((unused))

#define LK_STEP 0.010 /* seconds of wall time per step */

/* The compiler must not drop an allocation whose memory looks unused. */
static inline void escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

/* ------------------------------------------------------------------------ */
/* Options: --scale F for every program, plus each program's own.           */

struct lk_opt {
	const char *name;   /* "--trim" */
	int takes_value;    /* 1: "--mode X" */
	const char **value; /* where the value goes (takes_value) */
	int *flag;          /* set to 1 (flags) */
};

static double lk_scale = 1.0;

static LK_UNUSED void lk_usage(const char *prog, const struct lk_opt *opts)
{
	fprintf(stderr, "usage: %s [--scale F]", prog);
	for (const struct lk_opt *o = opts; o && o->name; o++)
		fprintf(stderr, " [%s%s]", o->name, o->takes_value ? " X" : "");
	fprintf(stderr, "\n");
	exit(2);
}

/* Parse argv; print pid=<n>. */
static LK_UNUSED void lk_start(int argc, char **argv, const struct lk_opt *opts)
{
	for (int i = 1; i < argc; i++) {
		const struct lk_opt *o;

		if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
			char *end;
			lk_scale = strtod(argv[++i], &end);
			if (*end || !(lk_scale > 0 && lk_scale <= 100))
				lk_usage(argv[0], opts);
			continue;
		}
		for (o = opts; o && o->name; o++)
			if (strcmp(argv[i], o->name) == 0)
				break;
		if (!o || !o->name)
			lk_usage(argv[0], opts);
		if (o->takes_value) {
			if (i + 1 >= argc)
				lk_usage(argv[0], opts);
			*o->value = argv[++i];
		} else {
			*o->flag = 1;
		}
	}
	printf("pid=%d scale=%g\n", (int)getpid(), lk_scale);
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Wall-time pacing.                                                        */

struct lk_pacer {
	struct timespec deadline;
};

static struct timespec lk_t0;
static struct lk_pacer lk_main_pacer;
static int lk_clock_started;

static LK_UNUSED double lk_ts_diff(const struct timespec *a, const struct timespec *b)
{
	return (double)(a->tv_sec - b->tv_sec) + (double)(a->tv_nsec - b->tv_nsec) / 1e9;
}

/* A pacer's steps start now. */
static LK_UNUSED void lk_pacer_start(struct lk_pacer *p)
{
	clock_gettime(CLOCK_MONOTONIC, &p->deadline);
}

/* Sleep until the end of the pacer's current step. A step that overran its
 * slot is not made up by bursts: the schedule restarts from now. */
static LK_UNUSED void lk_pacer_tick(struct lk_pacer *p)
{
	struct timespec now;
	long ns = (long)(LK_STEP * 1e9);

	p->deadline.tv_nsec += ns;
	while (p->deadline.tv_nsec >= 1000000000L) {
		p->deadline.tv_nsec -= 1000000000L;
		p->deadline.tv_sec++;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (lk_ts_diff(&now, &p->deadline) > 2 * LK_STEP) {
		p->deadline = now;
		return;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &p->deadline, NULL) == EINTR)
		;
}

/* The main thread's clock: time 0 and its pacer. */
static LK_UNUSED void lk_clock_start(void)
{
	clock_gettime(CLOCK_MONOTONIC, &lk_t0);
	lk_main_pacer.deadline = lk_t0;
	lk_clock_started = 1;
}

/* Seconds since lk_clock_start(). */
static LK_UNUSED double lk_now(void)
{
	struct timespec now;

	if (!lk_clock_started)
		lk_clock_start();
	clock_gettime(CLOCK_MONOTONIC, &now);
	return lk_ts_diff(&now, &lk_t0);
}

/* Steps in a phase of `seconds` (times --scale), at least 1. */
static LK_UNUSED unsigned long lk_steps(double seconds)
{
	double n = seconds * lk_scale / LK_STEP + 0.5;
	return n < 1 ? 1 : (unsigned long)n;
}

/* The main thread's step: sleep until its end. */
static LK_UNUSED void lk_tick(void)
{
	if (!lk_clock_started)
		lk_clock_start();
	lk_pacer_tick(&lk_main_pacer);
}

/* Sleep `seconds` (not scaled) without pacing bookkeeping (threads). */
static LK_UNUSED void lk_sleep(double seconds)
{
	struct timespec ts;

	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------------ */
/* Process figures, read without malloc (no stdio on /proc).                */

static LK_UNUSED double lk_rss_mib(void)
{
	char buf[128];
	unsigned long size = 0, resident = 0;
	ssize_t n;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
		return -1;
	return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

static LK_UNUSED void lk_phase(const char *name)
{
	printf("phase %s t=%.2f rss_mib=%.1f\n", name, lk_now(), lk_rss_mib());
	fflush(stdout);
}

static LK_UNUSED void lk_done(void)
{
	printf("done t=%.2f\n", lk_now());
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Deterministic randomness (xorshift64*): every run holds the same memory. */

static uint64_t lk_rng_state = 0x9e3779b97f4a7c15ull;

static LK_UNUSED uint64_t lk_rand(void)
{
	lk_rng_state ^= lk_rng_state >> 12;
	lk_rng_state ^= lk_rng_state << 25;
	lk_rng_state ^= lk_rng_state >> 27;
	return lk_rng_state * 0x2545f4914f6cdd1dull;
}

/* Uniform in [lo, hi]. */
static LK_UNUSED size_t lk_between(size_t lo, size_t hi)
{
	return lo + (size_t)(lk_rand() % (hi - lo + 1));
}

/* ------------------------------------------------------------------------ */
/* The background every program runs: never to be blamed.                   */

#define POOL_BLOCKS      64
#define POOL_BLOCK_BYTES (32 << 10) /* 2 MiB pool in all */
#define RING_SLOTS       256

static void *pool_blocks[POOL_BLOCKS];
static void *ring_slots[RING_SLOTS];
static unsigned ring_next;
static unsigned long churn_sink;

/* A fixed pool, allocated once before the first dump and kept to the end. */
NOINLINE static LK_UNUSED void pool_init(void)
{
	for (int i = 0; i < POOL_BLOCKS; i++) {
		pool_blocks[i] = malloc(POOL_BLOCK_BYTES);
		if (!pool_blocks[i])
			abort();
		memset(pool_blocks[i], i, POOL_BLOCK_BYTES);
	}
}

/* A scratch buffer: allocated, touched and freed at once. */
NOINLINE static LK_UNUSED void churn_request(size_t len)
{
	unsigned char *buf = malloc(len);

	if (!buf)
		abort();
	memset(buf, (int)(len & 0xff), len < 256 ? len : 256);
	buf[len - 1] = 1;
	escape(buf);
	churn_sink += buf[0] + buf[len - 1];
	free(buf);
}

/* A ring of recent replies (256 slots of 0.5-3.5 KiB, ~0.5 MiB live): each
 * put frees the oldest reply. Bounded, but the live set keeps turning over. */
NOINLINE static LK_UNUSED void churn_ring(void)
{
	size_t len = lk_between(512, 3584);
	unsigned slot = ring_next++ % RING_SLOTS;
	char *reply;

	free(ring_slots[slot]);
	reply = malloc(len);
	if (!reply)
		abort();
	memset(reply, 'r', len < 128 ? len : 128);
	ring_slots[slot] = reply;
}

/* The background of one step: two scratch buffers and one ring put (about
 * 10 KiB allocated per step, 1 MiB/s). The first call fills the whole ring,
 * so the ring's live set is flat from the first dump on. Call it from one
 * place only in a program: the ring's stack is then one stack. */
NOINLINE static LK_UNUSED void lk_background(void)
{
	static int filled;

	if (!filled) {
		for (int i = 0; i < RING_SLOTS; i++)
			churn_ring();
		filled = 1;
	}
	churn_request(lk_between(256, 8192));
	churn_request(lk_between(256, 8192));
	churn_ring();
}

#endif
