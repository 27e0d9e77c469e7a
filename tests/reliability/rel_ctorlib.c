/*
 * rel_ctorlib.c - a library (DT_NEEDED by rel_threads) whose constructor
 * allocates and starts threads that allocate, all before main.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CTORLIB_BLOCKS 10
static _Atomic int ready, stop;
static pthread_t th[2];

__attribute__((noinline)) void *ctorlib_leak(size_t n)
{
	void *p = malloc(n);
	if (p)
		memset(p, 1, n);
	__asm__ volatile("" ::"r"(p) : "memory");
	return p;
}

__attribute__((noinline)) void *ctorlib_thread_leak(size_t n)
{
	void *p = malloc(n);
	if (p)
		memset(p, 2, n);
	__asm__ volatile("" ::"r"(p) : "memory");
	return p;
}

static void *ctorlib_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < CTORLIB_BLOCKS; i++)
		ctorlib_thread_leak(888);
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&stop))
		usleep(2000);
	return NULL;
}

__attribute__((constructor)) static void ctorlib_init(void)
{
	for (int i = 0; i < CTORLIB_BLOCKS; i++)
		ctorlib_leak(777);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, ctorlib_thread, NULL);
}

void ctorlib_wait_ready(void)
{
	while (atomic_load(&ready) < 2)
		usleep(1000);
}

void ctorlib_stop(void)
{
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
}
