/*
 * http_subject.c - a program for test_http.py (issue 13) to scrape.
 *
 * It does nothing until told: commands come one per line on stdin, and each
 * answers with one line on stdout, so between commands the program is steady
 * (blocked in read, allocating nothing) and a scrape sees the same heap
 * twice. Every allocation is made from a named function, so the driver finds
 * it in a profile.
 *
 *   alloc N SIZE       N blocks of SIZE from keep_block(), kept -> "alloc done"
 *   pace SIZE PERSEC SECONDS
 *                      one block of SIZE from paced_alloc() every 1/PERSEC s
 *                      for SECONDS, kept; each allocation prints
 *                      "a <before> <after>" (CLOCK_REALTIME ns around the
 *                      malloc call), then "pace done n=<count>"
 *   stacks N SIZE      N blocks of SIZE, each from a different stack
 *                      (15 levels of left()/right() chosen by the bits of
 *                      its number, so up to 32768 distinct stacks)
 *   spawn              fork and exec /bin/sleep 60 (its environment
 *                      unchanged) -> "child=<pid>"
 *   fork SECONDS       fork a child that only sleeps SECONDS (no exec) and
 *                      exits -> "forked=<pid>"
 *   stats              heaptap_stats() -> "stats rc=0 samples=N live_samples=N"
 *   exit               exit 0
 */
#include "rel_common.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

static void **kept;
static size_t nkept, capkept;

static void keep(void *p)
{
	if (nkept == capkept) {
		capkept = capkept ? 2 * capkept : 1024;
		kept = realloc(kept, capkept * sizeof(*kept));
		if (!kept)
			exit(1);
	}
	kept[nkept++] = p;
}

static inline void escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

NOINLINE static void *keep_block(size_t size)
{
	void *p = malloc(size);
	escape(p);
	return p;
}

NOINLINE static void *paced_alloc(size_t size)
{
	void *p = malloc(size);
	escape(p);
	return p;
}

/* A distinct call path per value of bits: no tail calls (the frame must stay
 * on the stack), hence the work after each call. */
NOINLINE static void *right(unsigned bits, int depth, size_t size);
NOINLINE static void *left(unsigned bits, int depth, size_t size);

NOINLINE static void *walk(unsigned bits, int depth, size_t size)
{
	void *p;
	if (depth == 0)
		p = malloc(size);
	else if (bits & 1)
		p = right(bits >> 1, depth - 1, size);
	else
		p = left(bits >> 1, depth - 1, size);
	escape(p);
	return p;
}

NOINLINE static void *left(unsigned bits, int depth, size_t size)
{
	void *p = walk(bits, depth, size);
	escape(p);
	return p;
}

NOINLINE static void *right(unsigned bits, int depth, size_t size)
{
	void *p = walk(bits, depth, size);
	escape(p);
	return p;
}

static void pace(size_t size, double persec, double seconds)
{
	long n = (long)(persec * seconds + 0.5);
	double t0 = rel_now(), step = 1.0 / persec;
	for (long i = 0; i < n; i++) {
		double due = t0 + (double)i * step, now = rel_now();
		if (due > now)
			rel_msleep((long)((due - now) * 1000.0 + 0.5));
		int64_t before = wall_ns();
		void *p = paced_alloc(size);
		int64_t after = wall_ns();
		if (!p)
			exit(1);
		keep(p);
		say("a %lld %lld", (long long)before, (long long)after);
	}
	say("pace done n=%ld", n);
}

/* A child lets go of the driver's pipes, so they end when the parent does. */
static void quiet(void)
{
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

int main(void)
{
	signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
	say("ready pid=%d", (int)getpid());
	char line[256];
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long n, size;
		double persec, seconds;
		if (sscanf(line, "alloc %lu %lu", &n, &size) == 2) {
			for (unsigned long i = 0; i < n; i++) {
				void *p = keep_block(size);
				if (!p)
					return 1;
				keep(p);
			}
			say("alloc done");
		} else if (sscanf(line, "pace %lu %lf %lf", &size, &persec, &seconds) == 3) {
			pace(size, persec, seconds);
		} else if (sscanf(line, "stacks %lu %lu", &n, &size) == 2) {
			for (unsigned long i = 0; i < n; i++) {
				void *p = walk((unsigned)i, 15, size);
				if (!p)
					return 1;
				keep(p);
			}
			say("stacks done");
		} else if (!strncmp(line, "spawn", 5)) {
			pid_t pid = fork();
			if (pid == 0) {
				quiet();
				execl("/bin/sleep", "sleep", "60", (char *)NULL);
				_exit(127);
			}
			say("child=%d", (int)pid);
		} else if (sscanf(line, "fork %lf", &seconds) == 1) {
			pid_t pid = fork();
			if (pid == 0) {
				quiet();
				rel_msleep((long)(seconds * 1000));
				_exit(0);
			}
			say("forked=%d", (int)pid);
		} else if (!strncmp(line, "stats", 5)) {
			struct heaptap_stats st;
			int rc = rel_stats(&st);
			say("stats rc=%d samples=%llu live_samples=%llu", rc,
			    (unsigned long long)st.samples, (unsigned long long)st.live_samples);
		} else if (!strncmp(line, "exit", 4)) {
			say("bye");
			return 0;
		} else {
			say("unknown command");
		}
	}
	return 0;
}
