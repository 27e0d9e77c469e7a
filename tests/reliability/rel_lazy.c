/*
 * rel_lazy.c - heaptap's thread must never take the application's signals.
 *
 * heaptrack tests/manual/signals.cpp shape: the main thread blocks every
 * signal before it creates any thread, so all threads inherit a full mask,
 * except one signal thread that unblocks SIGUSR1, SIGTERM and SIGHUP and
 * handles them. The other threads allocate (heaptap samples, so its flusher
 * starts). Process-directed signals must all arrive on the signal thread:
 * the handler records which thread ran it. SIGTERM ends the program.
 */
#include "rel_common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

static _Atomic int stop, usr1, hup, wrong_thread;
static _Atomic pid_t signal_tid;

static void handler(int sig)
{
	if ((pid_t)syscall(SYS_gettid) != atomic_load(&signal_tid))
		atomic_fetch_add(&wrong_thread, 1);
	if (sig == SIGUSR1)
		atomic_fetch_add(&usr1, 1);
	else if (sig == SIGHUP)
		atomic_fetch_add(&hup, 1);
	else
		atomic_store(&stop, 1);
}

static void *signal_thread(void *arg)
{
	(void)arg;
	atomic_store(&signal_tid, (pid_t)syscall(SYS_gettid));
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	while (!atomic_load(&stop))
		rel_msleep(5);
	return NULL;
}

static NOINLINE void *worker_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *slots[16] = {0};
	while (!atomic_load(&stop)) {
		unsigned i = rand_r(&seed) & 15;
		free(slots[i]);
		slots[i] = worker_alloc(rand_r(&seed) % 4000 + 16);
		if ((rand_r(&seed) & 255) == 0)
			rel_msleep(1);
	}
	for (int i = 0; i < 16; i++)
		free(slots[i]);
	return NULL;
}

/* "idle [threads]": allocate next to nothing (no sample at the default
 * rate), start that many threads that only sleep, say ready, and wait for
 * SIGTERM. heaptap's dump signal must be served while the program idles
 * once it has a thread of its own; a single-threaded one gets the dump at
 * exit. */
static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static int idle(int threads)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigaction(SIGTERM, &sa, NULL);
	for (int i = 0; i < threads; i++) {
		pthread_t t;
		pthread_create(&t, NULL, sleeper, NULL);
		pthread_detach(t);
	}
	say("ready pid=%d", (int)getpid());
	while (!atomic_load(&stop))
		pause();
	say("stopped=1");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "idle") == 0)
		return idle(argc > 2 ? atoi(argv[2]) : 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigfillset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	pthread_t st, w[2];
	pthread_create(&st, NULL, signal_thread, NULL);
	while (!atomic_load(&signal_tid))
		rel_msleep(1);
	for (int i = 0; i < 2; i++)
		pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	say("ready pid=%d signal_tid=%d", (int)getpid(), (int)atomic_load(&signal_tid));
	double t0 = rel_now();
	while (!atomic_load(&stop) && rel_now() - t0 < 60)
		rel_msleep(10);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	pthread_join(st, NULL);
	say("usr1=%d hup=%d wrong_thread=%d stopped=%d", atomic_load(&usr1), atomic_load(&hup),
	    atomic_load(&wrong_thread), atomic_load(&stop));
	return atomic_load(&stop) ? 0 : 1;
}
