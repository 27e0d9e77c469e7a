/*
 * thread_leak.c - the other half of the story: a thread leak.
 *
 * A server starts one thread per request. Most handlers finish, but one
 * request in four waits for an answer that never comes, so its thread never
 * ends: threads (and their stacks) climb with the load. Beside them runs a
 * small fixed worker pool, which is fine. heaptap's thread profile shows the
 * live threads by the stack that created them: spawn_handler() with exactly
 * the leaked count, start_pool() with the pool size, and the main thread.
 *
 * The program dumps through the API at several points while threads come and
 * go, and before each dump prints what the profile should show:
 *
 *   dump <seq> rc=<rc> handlers=<leaked> pool=<workers> main=1 tasks=<live>
 *
 * tasks counts /proc/self/task entries whose name does not start with
 * "heaptap" (heaptap's own threads are named heaptap-*).
 *
 * Built with -DHEAPTAP_WEAK: without heaptap it runs the same and says so.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heaptap.h"

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noipa))
#endif

#define POOL_SIZE   3
#define STUCK_EVERY 4 /* request ids 3, 7, 11, ... never finish */

/* Requests that wait here never get their answer. */
static pthread_mutex_t never_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cond = PTHREAD_COND_INITIALIZER;

/* The pool: workers wait for work until told to stop. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static int pool_stop;
static pthread_t pool[POOL_SIZE];
static int pool_running;

static unsigned leaked;

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Live tasks of this process, heaptap's own threads left out. */
static int live_tasks(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue; /* the thread ended while we looked */
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
		if (strncmp(comm, "heaptap", 7) != 0)
			n++;
	}
	closedir(d);
	return n;
}

NOINLINE static void *handler_main(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	char *scratch = malloc(1024 + id);

	if (scratch)
		memset(scratch, 0, 1024 + id);
	if (id % STUCK_EVERY == STUCK_EVERY - 1) {
		/* Waits for an answer nobody will send: this thread never ends. */
		pthread_mutex_lock(&never_lock);
		for (;;)
			pthread_cond_wait(&never_cond, &never_lock);
	}
	free(scratch);
	return NULL;
}

/* One thread per request: the creation stack the profile should blame. */
NOINLINE static int spawn_handler(unsigned id, pthread_t *out)
{
	return pthread_create(out, NULL, handler_main, (void *)(uintptr_t)id);
}

NOINLINE static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pool_lock);
	while (!pool_stop)
		pthread_cond_wait(&pool_cond, &pool_lock);
	pthread_mutex_unlock(&pool_lock);
	return NULL;
}

/* The fixed pool. */
NOINLINE static void start_pool(void)
{
	pool_stop = 0;
	for (int i = 0; i < POOL_SIZE; i++) {
		if (pthread_create(&pool[i], NULL, worker_main, NULL) != 0) {
			perror("pthread_create");
			exit(1);
		}
	}
	pool_running = POOL_SIZE;
}

NOINLINE static void stop_pool(void)
{
	pthread_mutex_lock(&pool_lock);
	pool_stop = 1;
	pthread_cond_broadcast(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
	for (int i = 0; i < POOL_SIZE; i++)
		pthread_join(pool[i], NULL);
	pool_running = 0;
}

/* Serve requests [first, first + n): even finished handlers are joined, odd
 * ones are detached, stuck ones are left alone. */
NOINLINE static void serve_batch(unsigned first, unsigned n)
{
	pthread_t *tids = calloc(n, sizeof(*tids));

	if (!tids)
		exit(1);
	for (unsigned i = 0; i < n; i++) {
		int rc = spawn_handler(first + i, &tids[i]);
		if (rc != 0) {
			fprintf(stderr, "pthread_create: %s\n", strerror(rc));
			exit(1);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		unsigned id = first + i;
		if (id % STUCK_EVERY == STUCK_EVERY - 1) {
			pthread_detach(tids[i]);
			leaked++;
		} else if (id % 2 == 0) {
			pthread_join(tids[i], NULL);
		} else {
			pthread_detach(tids[i]);
		}
	}
	free(tids);
}

/* Wait until the detached handlers have really gone, then dump. */
NOINLINE static void dump_and_report(int seq)
{
	int expected = 1 + pool_running + (int)leaked;
	int tasks = live_tasks();

	for (int i = 0; i < 500 && tasks != expected; i++) {
		sleep_ms(10);
		tasks = live_tasks();
	}
	int rc = HEAPTAP_CALL(heaptap_dump);
	printf("dump %d rc=%d handlers=%u pool=%d main=1 tasks=%d\n", seq, rc, leaked, pool_running,
	       tasks);
	if (rc == -ENOSYS)
		printf("heaptap absent: no profile written\n");
}

int main(void)
{
	unsigned next = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("pid %d\n", (int)getpid());

	start_pool();
	dump_and_report(1); /* main + pool */

	serve_batch(next, 8); /* 2 stuck */
	next += 8;
	dump_and_report(2);

	serve_batch(next, 12); /* 3 more stuck */
	next += 12;
	dump_and_report(3);

	stop_pool(); /* the pool goes away, the stuck handlers stay */
	dump_and_report(4);

	serve_batch(next, 20); /* 5 more stuck */
	next += 20;
	dump_and_report(5);

	printf("served %u requests, %u handler threads leaked\n", next, leaked);
	return 0;
}
