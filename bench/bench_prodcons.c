/*
 * bench_prodcons.c - blocks freed on other threads than the ones that
 * allocated them.
 *
 * P producer/consumer pairs: each producer fills batches of 256 blocks of
 * 16..1024 bytes and hands them to its consumer through a bounded queue
 * (mutex + condition variables, 4 batches deep); the consumer frees them.
 * Reports ns_per_pair = wall x min(2P, cpus) / blocks allocated and freed.
 * Usage: bench_prodcons [ms] [pairs-list], default 300 ms, pairs 1,4
 * (2 and 8 threads).
 */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

#define BATCH 256
#define DEPTH 4

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	void **slots[DEPTH];
	unsigned head, count;
	int done;
	uint64_t produced;
	uint64_t consumed;
	uint64_t end_ns;
};

static _Atomic int stop;

static void *producer(void *arg)
{
	struct queue *q = arg;
	uint64_t seed = (uint64_t)(uintptr_t)q | 1;
	uint64_t n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		void **b = malloc(BATCH * sizeof(void *));
		for (int i = 0; i < BATCH; i++) {
			size_t sz = 16 + bench_rand(&seed) % 1009;
			char *p = malloc(sz);
			p[0] = 1;
			b[i] = p;
		}
		n += BATCH + 1;
		pthread_mutex_lock(&q->mu);
		while (q->count == DEPTH)
			pthread_cond_wait(&q->not_full, &q->mu);
		q->slots[(q->head + q->count) % DEPTH] = b;
		q->count++;
		pthread_cond_signal(&q->not_empty);
		pthread_mutex_unlock(&q->mu);
	}
	pthread_mutex_lock(&q->mu);
	q->done = 1;
	q->produced = n;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

static void *consumer(void *arg)
{
	struct queue *q = arg;
	uint64_t n = 0;
	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (q->count == 0 && !q->done)
			pthread_cond_wait(&q->not_empty, &q->mu);
		if (q->count == 0 && q->done) {
			pthread_mutex_unlock(&q->mu);
			break;
		}
		void **b = q->slots[q->head];
		q->head = (q->head + 1) % DEPTH;
		q->count--;
		pthread_cond_signal(&q->not_full);
		pthread_mutex_unlock(&q->mu);
		for (int i = 0; i < BATCH; i++)
			free(b[i]);
		free(b);
		n += BATCH + 1;
	}
	q->consumed = n;
	q->end_ns = bench_now_ns();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned ms = bench_ms(argc, argv, 1, 300);
	const char *list = argc > 2 ? argv[2] : "1,4";
	long ncpu = bench_ncpu();
	while (list && *list) {
		char *end;
		unsigned np = (unsigned)strtoul(list, &end, 10);
		list = *end == ',' ? end + 1 : NULL;
		struct queue *qs = calloc(np, sizeof(*qs));
		pthread_t *th = calloc(2 * np, sizeof(*th));
		if (!qs || !th)
			return 1;
		atomic_store(&stop, 0);
		uint64_t t0 = bench_now_ns();
		for (unsigned i = 0; i < np; i++) {
			pthread_mutex_init(&qs[i].mu, NULL);
			pthread_cond_init(&qs[i].not_empty, NULL);
			pthread_cond_init(&qs[i].not_full, NULL);
			pthread_create(&th[2 * i], NULL, producer, &qs[i]);
			pthread_create(&th[2 * i + 1], NULL, consumer, &qs[i]);
		}
		struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		atomic_store(&stop, 1);
		uint64_t pairs = 0, t_end = t0;
		for (unsigned i = 0; i < 2 * np; i++)
			pthread_join(th[i], NULL);
		for (unsigned i = 0; i < np; i++) {
			pairs += qs[i].consumed;
			if (qs[i].end_ns > t_end)
				t_end = qs[i].end_ns;
		}
		unsigned nt = 2 * np;
		double cores = (double)(nt < (unsigned)ncpu ? nt : (unsigned)ncpu);
		printf("RESULT bench=prodcons threads=%u metric=ns_per_pair value=%.3f\n", nt,
		       (double)(t_end - t0) * cores / (double)(pairs ? pairs : 1));
		fflush(stdout);
		free(qs);
		free(th);
	}
	return 0;
}
