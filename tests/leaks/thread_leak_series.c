/*
 * thread_leak_series.c - a thread per connection, some never end.
 *
 * start_pool() creates a fixed pool of 4 workers before the first dump; they
 * live to the end. Then, for 5 s, a "connection" arrives every 0.2 s, and
 * for each one the server:
 *   spawn_unjoined()  starts a joinable handler that finishes its work and
 *                     exits, and is never joined: its stack stays mapped
 *                     (an "unjoined" thread in heaptap's thread profile);
 *   spawn_stuck()     starts a handler that waits for an answer that never
 *                     comes: it blocks forever;
 *   churn_thread()    starts a short helper and joins it: the right way,
 *                     which leaves nothing behind.
 * The handlers allocate and free a request buffer (churn_request), and the
 * accept loop churns 16 scratch buffers per 10 ms step (~6 MiB/s), so the
 * allocation volume grows steadily while the heap stays flat.
 *
 *   thread_leak_series [--scale F] [--mode both|unjoined|stuck]
 *
 * --mode picks the leaking spawn sites (default both).
 *
 * Expected from `heaptap leaks`: verdict thread_leak naming the spawn
 * site(s) (class leaking in `threads`); start_pool and churn_thread never
 * class leaking; no heap leak.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "leaks_common.h"

#define POOL_SIZE         4
#define RUN_SECONDS       5.0
#define STEPS_PER_CONN    20 /* one connection per 0.2 s */
#define HANDLER_BUF       4096
#define REQUESTS_PER_STEP 16 /* the accept loop's own work: ~6 MiB/s churned */

static pthread_mutex_t never_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cond = PTHREAD_COND_INITIALIZER;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static pthread_t pool[POOL_SIZE];

static unsigned long n_unjoined, n_stuck, n_joined;

/* A handler's work: a request buffer, used and freed. */
static void handle(unsigned long conn)
{
	churn_request(HANDLER_BUF + (size_t)(conn % 8) * 512);
}

static void *unjoined_main(void *arg)
{
	handle((unsigned long)(uintptr_t)arg);
	return NULL; /* exits; nobody joins it */
}

static void *stuck_main(void *arg)
{
	handle((unsigned long)(uintptr_t)arg);
	pthread_mutex_lock(&never_lock);
	for (;;)
		pthread_cond_wait(&never_cond, &never_lock); /* the answer never comes */
	return NULL;
}

static void *helper_main(void *arg)
{
	handle((unsigned long)(uintptr_t)arg);
	return NULL;
}

static void *pool_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pool_lock);
	for (;;)
		pthread_cond_wait(&pool_cond, &pool_lock); /* idle workers, alive to the end */
	return NULL;
}

/* THE THREAD LEAK (1): a joinable handler that is never joined. */
NOINLINE static void spawn_unjoined(unsigned long conn)
{
	pthread_t t;

	if (pthread_create(&t, NULL, unjoined_main, (void *)(uintptr_t)conn) != 0)
		abort();
	n_unjoined++;
}

/* THE THREAD LEAK (2): a handler that blocks forever. */
NOINLINE static void spawn_stuck(unsigned long conn)
{
	pthread_t t;

	if (pthread_create(&t, NULL, stuck_main, (void *)(uintptr_t)conn) != 0)
		abort();
	n_stuck++;
}

/* Not a leak: a helper started and joined. */
NOINLINE static void churn_thread(unsigned long conn)
{
	pthread_t t;

	if (pthread_create(&t, NULL, helper_main, (void *)(uintptr_t)conn) != 0)
		abort();
	pthread_join(t, NULL);
	n_joined++;
}

/* Not a leak: the fixed pool, created before the first dump. */
NOINLINE static void start_pool(void)
{
	for (int i = 0; i < POOL_SIZE; i++)
		if (pthread_create(&pool[i], NULL, pool_main, NULL) != 0)
			abort();
}

int main(int argc, char **argv)
{
	const char *mode = "both";
	int unjoined, stuck;
	unsigned long steps, conn = 0;
	struct lk_opt opts[] = {
	        {"--mode", 1, &mode, NULL},
	        {NULL, 0, NULL, NULL},
	};

	lk_start(argc, argv, opts);
	unjoined = strcmp(mode, "both") == 0 || strcmp(mode, "unjoined") == 0;
	stuck = strcmp(mode, "both") == 0 || strcmp(mode, "stuck") == 0;
	if (!unjoined && !stuck)
		lk_usage(argv[0], opts);
	pool_init();
	start_pool();
	lk_clock_start();
	lk_phase("serve");
	steps = lk_steps(RUN_SECONDS);
	for (unsigned long s = 0; s < steps; s++) {
		if (s % STEPS_PER_CONN == STEPS_PER_CONN / 2) {
			if (unjoined)
				spawn_unjoined(conn);
			if (stuck)
				spawn_stuck(conn);
			churn_thread(conn);
			conn++;
		}
		for (int r = 0; r < REQUESTS_PER_STEP; r++)
			churn_request(lk_between(256, 8192));
		lk_background();
		lk_tick();
	}
	lk_phase("end");
	printf("mode=%s connections=%lu unjoined=%lu stuck=%lu joined=%lu pool=%d\n", mode, conn,
	       n_unjoined, n_stuck, n_joined, POOL_SIZE);
	lk_done();
	return 0; /* exit() ends the stuck handlers and the pool */
}
