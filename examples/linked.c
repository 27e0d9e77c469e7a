/*
 * linked.c - a program that uses heaptap's API itself.
 *
 * Instead of waiting for a signal, a service can decide when to profile and
 * where the profile goes: to a file, or to a file descriptor (its own admin
 * endpoint, a log shipper, a socket). This program serves a few "requests",
 * some of which leave results in a cache, and then:
 *   1. writes a heap profile to HEAP_PATH with heaptap_write_path();
 *   2. writes a heap profile into a pipe with heaptap_write() from a writer
 *      thread, reads every byte back on the main thread, checks the gzip
 *      magic (1f 8b) and saves the bytes to PIPE_PATH;
 *   3. writes the thread profile next to HEAP_PATH (".threads" added).
 *
 *   usage: linked HEAP_PATH PIPE_PATH
 *
 * It is built three ways from this one file:
 *   linked_shared  linked with -lheaptap (libheaptap.so)
 *   linked_static  linked with libheaptap.a and its dependencies
 *   linked_plain   compiled with -DHEAPTAP_WEAK and linked with nothing: the
 *                  calls go through HEAPTAP_CALL(), so the program works under
 *                  LD_PRELOAD=libheaptap.so and also without heaptap at all.
 * It prints what it expects, like the other examples:
 *   expect <function> <inuse_bytes> <inuse_objects> <alloc_bytes> <alloc_objects>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heaptap.h"

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noipa))
#endif

/* One spelling for both builds: a direct call when heaptap is linked, a
 * checked call through the weak symbol when it may be absent. */
#ifdef HEAPTAP_WEAK
#define HT(fn, ...)    HEAPTAP_CALL(fn, __VA_ARGS__)
#define HT_PRESENT(fn) HEAPTAP_PRESENT(fn)
#else
#define HT(fn, ...)    fn(__VA_ARGS__)
#define HT_PRESENT(fn) 1
#endif

#define CACHE_ENTRY 4096
#define REQUESTS    24

static char *cache[REQUESTS];
static uint64_t cache_bytes, cache_objects;
static uint64_t scratch_bytes, scratch_objects;

/* Results of every third request are cached: they stay in use. */
NOINLINE static void cache_result(unsigned id, const char *result)
{
	char *copy = malloc(CACHE_ENTRY);
	if (!copy)
		return;
	snprintf(copy, CACHE_ENTRY, "%u:%s", id, result);
	cache[id] = copy;
	cache_bytes += CACHE_ENTRY;
	cache_objects++;
}

/* Scratch space: allocated and freed for every request. */
NOINLINE static void serve_request(unsigned id)
{
	size_t n = 1000 + 100 * id;
	char *scratch = malloc(n);
	if (!scratch)
		return;
	scratch_bytes += n;
	scratch_objects++;
	memset(scratch, 'a' + id % 26, n - 1);
	scratch[n - 1] = 0;
	if (id % 3 == 0)
		cache_result(id, scratch + n - 8);
	free(scratch);
}

struct writer {
	int fd;
	int rc;
};

static void *pipe_writer(void *arg)
{
	struct writer *w = arg;
	w->rc = HT(heaptap_write, w->fd, HEAPTAP_HEAP);
	close(w->fd);
	return NULL;
}

/* Write a heap profile into a pipe and read it back. Returns 0 or -1. */
static int profile_through_pipe(const char *out_path)
{
	int fds[2];
	struct writer w;
	pthread_t th;
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0;

	if (pipe2(fds, O_CLOEXEC) != 0) {
		perror("pipe2");
		return -1;
	}
	w.fd = fds[1];
	w.rc = 0;
	if (pthread_create(&th, NULL, pipe_writer, &w) != 0) {
		fprintf(stderr, "linked: pthread_create failed\n");
		return -1;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? 2 * cap : 65536;
			unsigned char *nb = realloc(buf, cap);
			if (!nb)
				break;
			buf = nb;
		}
		ssize_t n = read(fds[0], buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fds[0]);
	pthread_join(th, NULL);

	int ok = w.rc == 0 && len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
	printf("pipe: rc=%d bytes=%zu gzip=%s\n", w.rc, len, ok ? "yes" : "no");
	if (ok) {
		FILE *f = fopen(out_path, "wb");
		if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
			perror(out_path);
			ok = 0;
		}
	}
	free(buf);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	int failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3) {
		fprintf(stderr, "usage: linked HEAP_PATH PIPE_PATH\n");
		return 2;
	}

	if (!HT_PRESENT(heaptap_version)) {
		/* Only possible in the -DHEAPTAP_WEAK build. */
		printf("heaptap absent: serving without profiles\n");
		for (unsigned i = 0; i < REQUESTS; i++)
			serve_request(i);
		printf("served %d requests\n", REQUESTS);
		return 0;
	}
	/* Present (checked above), so the functions can be called directly. */
	printf("heaptap %s (0x%06x), header 0x%06x\n", heaptap_version_string(), heaptap_version(),
	       HEAPTAP_VERSION_HEX);

	for (unsigned i = 0; i < REQUESTS; i++)
		serve_request(i);
	printf("served %d requests\n", REQUESTS);

	int rc = HT(heaptap_write_path, argv[1], HEAPTAP_HEAP);
	printf("write_path: rc=%d (%s)\n", rc, rc ? heaptap_strerror(rc) : "ok");
	failed |= rc != 0;

	failed |= profile_through_pipe(argv[2]) != 0;

	char threads_path[4096];
	snprintf(threads_path, sizeof(threads_path), "%s.threads", argv[1]);
	rc = HT(heaptap_write_path, threads_path, HEAPTAP_THREADS);
	printf("write_path threads: rc=%d (%s)\n", rc, rc ? heaptap_strerror(rc) : "ok");
	failed |= rc != 0;

	struct heaptap_stats st;
	rc = HT(heaptap_stats, &st, sizeof(st));
	if (rc == 0)
		printf("stats: rate=%llu samples=%llu live_samples=%llu est_live_bytes=%llu "
		       "live_threads=%llu dumps=%llu\n",
		       (unsigned long long)st.rate, (unsigned long long)st.samples,
		       (unsigned long long)st.live_samples, (unsigned long long)st.est_live_bytes,
		       (unsigned long long)st.live_threads, (unsigned long long)st.dumps);
	else
		printf("stats: rc=%d (%s)\n", rc, heaptap_strerror(rc));
	failed |= rc != 0;

	printf("expect cache_result %llu %llu %llu %llu\n", (unsigned long long)cache_bytes,
	       (unsigned long long)cache_objects, (unsigned long long)cache_bytes,
	       (unsigned long long)cache_objects);
	printf("expect serve_request 0 0 %llu %llu\n", (unsigned long long)scratch_bytes,
	       (unsigned long long)scratch_objects);

	for (unsigned i = 0; i < REQUESTS; i++)
		free(cache[i]);
	printf("%s\n", failed ? "linked: FAILED" : "linked: ok");
	return failed ? 1 : 0;
}
