/*
 * leaky_server.c - the story heaptap exists for.
 *
 * A service handles requests. Under load its memory rises; when the load
 * stops, the memory stays. Is it a leak, or is the allocator just holding on
 * to freed memory? This program plays that story with simulated requests (no
 * network): every request parses its input and builds a response, both of
 * which are freed properly, and one request in LEAK_EVERY also passes through
 * remember_session(), which keeps a copy of the session "for later" and never
 * lets it go. That is the leak heaptap should put on top.
 *
 * Phases, each printed with the resident set size:
 *   start  before any request
 *   load   after --requests requests (hundreds of MiB allocated in total)
 *   idle   the load has stopped; the leaked sessions are still there
 * --rps N spreads the load over time (N requests per second) so periodic
 * dumps (HEAPTAP_INTERVAL) see it grow; `heaptap leaks` reads that series.
 * Then the program waits --idle seconds (send SIGUSR2 now: kill -USR2 <pid>),
 * optionally dumps through the API (--dump), and exits.
 *
 *   LD_PRELOAD=build/libheaptap.so ./leaky_server &
 *   kill -USR2 <pid>      # after the "phase idle" line
 *   go tool pprof -top -sample_index=inuse_space heaptap.<pid>.0001.heap.pb.gz
 *
 * Built twice: leaky_server keeps frame pointers, leaky_server_nofp does not,
 * so its stacks can only come from the DWARF unwind tables.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heaptap.h"

/* Keep every function a real, separately named frame in the profile. */
#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noipa))
#endif

#define LEAK_EVERY    8          /* one request in 8 leaks its session */
#define SESSION_BYTES (32 << 10) /* 32 KiB per leaked session */

/* Tell the compiler the memory is used, so it cannot drop the allocation. */
static inline void escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

struct request {
	unsigned id;
	size_t body_len;
};

struct session {
	struct session *next;
	unsigned request_id;
	size_t len;
	unsigned char data[];
};

/* The session cache. It should keep sessions only while they are open; the
 * bug is that nothing ever takes them out. */
static struct session *sessions;
static unsigned long session_count;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
	/* xorshift64*: deterministic, so every run holds the same memory. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static size_t resident_kib(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (size_t)sysconf(_SC_PAGESIZE) / 1024;
}

static void print_phase(const char *phase, unsigned long requests)
{
	printf("phase %s requests=%lu sessions=%lu leaked_mib=%.1f rss_mib=%.1f pid=%d\n", phase,
	       requests, session_count, session_count * (double)SESSION_BYTES / (1 << 20),
	       resident_kib() / 1024.0, (int)getpid());
	fflush(stdout);
}

/* Parse the request: a header buffer, used and freed. */
NOINLINE static unsigned parse_request(const struct request *req)
{
	size_t len = 2048 + req->body_len % 6144;
	unsigned char *buf = malloc(len);
	unsigned sum = 0;

	if (!buf)
		return 0;
	memset(buf, (int)(req->id & 0xff), len);
	escape(buf);
	for (size_t i = 0; i < len; i += 512)
		sum += buf[i];
	free(buf);
	return sum;
}

/* Build the response: a body of varying size, sent and freed. */
NOINLINE static size_t build_response(const struct request *req, unsigned checksum)
{
	size_t len = 4096 + req->body_len;
	char *body = malloc(len);

	if (!body)
		return 0;
	memset(body, 'x', len);
	snprintf(body, len, "HTTP/1.1 200 OK\r\nX-Request: %u\r\nX-Sum: %u\r\n\r\n", req->id,
	         checksum);
	escape(body);
	len = strlen(body) + req->body_len;
	free(body);
	return len;
}

/* THE LEAK: keep a copy of the session so a later request could reuse it.
 * Nothing ever looks the sessions up again or frees them. */
NOINLINE static void remember_session(const struct request *req)
{
	struct session *s = malloc(sizeof(*s) + SESSION_BYTES - sizeof(struct session));

	if (!s)
		return;
	s->request_id = req->id;
	s->len = SESSION_BYTES - sizeof(struct session);
	memset(s->data, 0x5a, s->len);
	s->next = sessions;
	sessions = s;
	session_count++;
}

NOINLINE static size_t handle_request(unsigned id)
{
	struct request req = {.id = id, .body_len = 1024 + rng_next() % (60 << 10)};
	unsigned sum = parse_request(&req);
	size_t sent = build_response(&req, sum);

	if (id % LEAK_EVERY == 0)
		remember_session(&req);
	return sent;
}

/* Serve the requests, at most rps per second when rps > 0 (paced in
 * batches of a tenth of a second, as traffic arrives). */
NOINLINE static size_t serve(unsigned long requests, double rps)
{
	size_t total = 0;
	unsigned long batch = rps > 0 ? (unsigned long)(rps / 10) + 1 : requests;

	for (unsigned long i = 0; i < requests; i++) {
		total += handle_request((unsigned)i);
		if (rps > 0 && (i + 1) % batch == 0) {
			struct timespec ts = {0, 100 * 1000 * 1000};
			while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
				;
		}
	}
	return total;
}

static void usage(void)
{
	fprintf(stderr, "usage: leaky_server [--requests N] [--rps N] [--idle SECONDS] [--dump]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long requests = 20000;
	double idle = 3.0, rps = 0;
	int dump = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--requests") && i + 1 < argc)
			requests = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--rps") && i + 1 < argc)
			rps = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--idle") && i + 1 < argc)
			idle = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--dump"))
			dump = 1;
		else
			usage();
	}

	print_phase("start", 0);
	size_t sent = serve(requests, rps);
	print_phase("load", requests);
	printf("served %lu requests, %zu bytes sent\n", requests, sent);

	/* The load is over: everything but the sessions has been freed. */
	print_phase("idle", requests);

	if (idle > 0) {
		struct timespec ts = {.tv_sec = (time_t)idle,
		                      .tv_nsec = (long)((idle - (time_t)idle) * 1e9)};
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
	if (dump) {
		int rc = HEAPTAP_CALL(heaptap_dump);
		if (rc == -ENOSYS)
			printf("dump: heaptap absent\n");
		else
			printf("dump: rc=%d (%s)\n", rc, rc ? heaptap_strerror(rc) : "ok");
	}
	print_phase("exit", requests);
	return 0;
}
