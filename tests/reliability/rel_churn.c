/*
 * rel_churn.c - thread churn: heaptap's memory must not grow with the
 * number of threads that have ended.
 *
 *   rel_churn TOTAL CHECKPOINT [leak|noleak]
 *       TOTAL threads, 8 at a time, ending in turn by return (joined),
 *       detached return, pthread_exit and cancellation. Each allocates 10
 *       blocks from churn_alloc and frees 5 (all 10 with noleak). At CHECKPOINT and at TOTAL
 *       ended threads: wait until they are all gone, dump, read heaptap's
 *       own memory (own_bytes=). Finally 5 threads from live_creator stay
 *       alive for a last dump: the thread profile must count exactly 6.
 */
#include "rel_common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static _Atomic long detached_done;
static int leak = 1;
static _Atomic int cancel_ready;

static NOINLINE void *churn_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static void work(uintptr_t i)
{
	void *b[10];
	for (int k = 0; k < 10; k++)
		b[k] = churn_alloc(32 + (i % 64) + (size_t)k);
	for (int k = leak ? 0 : 1; k < 10; k += 2)
		free(b[k]);
	if (!leak)
		for (int k = 0; k < 10; k += 2)
			free(b[k]);
}

static void *t_join(void *arg)
{
	work((uintptr_t)arg);
	return NULL;
}

static void *t_detached(void *arg)
{
	work((uintptr_t)arg);
	atomic_fetch_add(&detached_done, 1);
	return NULL;
}

static void *t_exit(void *arg)
{
	work((uintptr_t)arg);
	pthread_exit(NULL);
}

static void *t_cancel(void *arg)
{
	work((uintptr_t)arg);
	atomic_store(&cancel_ready, 1);
	for (;;) {
		pthread_testcancel();
		sched_yield();
	}
	return NULL;
}

static void settle(long want_detached, int live)
{
	while (atomic_load(&detached_done) < want_detached)
		rel_msleep(1);
	for (int i = 0; i < 5000 && rel_task_count() > 1 + live + rel_own_threads(); i++)
		rel_msleep(1);
	/* Two dumps: the first drains and reaps what has ended. */
	rel_dump();
	rel_msleep(100);
}

/* Lines of /proc/self/maps (leaked mmap'd rings would show here) and
 * VmRSS in KiB. */
static void vm_figures(long *maps, long *rss_kb)
{
	*maps = 0;
	*rss_kb = 0;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strchr(line, '\n'))
			(*maps)++;
	if (f)
		fclose(f);
	f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", rss_kb) == 1)
			break;
	if (f)
		fclose(f);
}

static void checkpoint(const char *name, long ended, int live)
{
	long maps, rss;
	vm_figures(&maps, &rss);
	struct heaptap_stats s;
	int d = rel_dump();
	rel_stats(&s);
	say("%s ended=%ld dump=%d own_bytes=%llu maps=%ld rss_kb=%ld live_threads=%llu tasks=%d "
	    "samples=%llu dropped=%llu",
	    name, ended, d, (unsigned long long)s.own_bytes, maps, rss,
	    (unsigned long long)s.live_threads, rel_task_count(), (unsigned long long)s.samples,
	    (unsigned long long)s.dropped_samples);
	(void)live;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int release;

static void *t_live(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (!release)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return NULL;
}

static NOINLINE void live_creator(pthread_t *th, int n)
{
	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, t_live, NULL);
}

int main(int argc, char **argv)
{
	long total = argc > 1 ? atol(argv[1]) : 20000;
	long check = argc > 2 ? atol(argv[2]) : 5000;
	leak = !(argc > 3 && strcmp(argv[3], "noleak") == 0);
	pthread_attr_t det;
	pthread_attr_init(&det);
	pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED);
	long ndet = 0;
	double t0 = rel_now();
	for (long i = 0; i < total; i += 8) {
		pthread_t th[8];
		int kind[8];
		int k = total - i < 8 ? (int)(total - i) : 8;
		for (int j = 0; j < k; j++) {
			uintptr_t id = (uintptr_t)(i + j);
			kind[j] = (int)((i + j) % 4);
			int r;
			switch (kind[j]) {
			case 0:
				r = pthread_create(&th[j], NULL, t_join, (void *)id);
				break;
			case 1:
				r = pthread_create(&th[j], &det, t_detached, (void *)id);
				ndet++;
				break;
			case 2:
				r = pthread_create(&th[j], NULL, t_exit, (void *)id);
				break;
			default:
				atomic_store(&cancel_ready, 0);
				r = pthread_create(&th[j], NULL, t_cancel, (void *)id);
				if (r == 0) {
					while (!atomic_load(&cancel_ready))
						sched_yield();
					pthread_cancel(th[j]);
				}
				break;
			}
			if (r != 0) {
				say("pthread_create failed: %s", strerror(r));
				return 1;
			}
		}
		for (int j = 0; j < k; j++)
			if (kind[j] != 1)
				pthread_join(th[j], NULL);
		if (i + k == check) {
			settle(ndet, 0);
			checkpoint("checkpoint", i + k, 0);
		}
	}
	settle(ndet, 0);
	checkpoint("final", total, 0);
	say("churn_secs=%.1f", rel_now() - t0);
	say("expect_churn alloc_objects=%ld inuse_objects=%ld", total * 10, leak ? total * 5 : 0);
	pthread_t live[5];
	live_creator(live, 5);
	rel_msleep(50);
	struct heaptap_stats s;
	int d = rel_dump();
	rel_stats(&s);
	say("live dump=%d live_threads=%llu tasks=%d", d, (unsigned long long)s.live_threads,
	    rel_task_count());
	pthread_mutex_lock(&mu);
	release = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < 5; i++)
		pthread_join(live[i], NULL);
	return 0;
}
