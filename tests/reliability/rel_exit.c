/*
 * rel_exit.c - every way out of a process under heaptap.
 *
 *   rel_exit return|exit|_exit|abort|thread [N]
 *       Allocate N blocks from many distinct stacks (dumps have real work),
 *       then leave: return from main, exit(0), _exit(0), abort(), or exit(0)
 *       called from another thread while 3 threads keep allocating.
 *   rel_exit sigdump DELAY_MS [N]
 *       As above, then raise the dump signal and exit(0) DELAY_MS later,
 *       i.e. usually while the dump is being written.
 *   rel_exit wait [N]
 *       Allocate, print "ready", then allocate until killed.
 *   rel_exit doublefree [N]
 *       Allocate, then free one block twice: glibc detects it and aborts
 *       (glibc's tst-malloc-backtrace shape); heaptap must not hang that.
 */
#include "rel_common.h"

#include <pthread.h>
#include <signal.h>

static void *blocks[1 << 16];
static int nblocks;

static NOINLINE void *deep_alloc(int depth, size_t n)
{
	if (depth > 0) {
		void *p = deep_alloc(depth - 1, n + 1);
		__asm__ volatile("" ::"r"(p) : "memory");
		return p;
	}
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static void fill(int n)
{
	for (int i = 0; i < n && nblocks < (int)(sizeof(blocks) / sizeof(blocks[0])); i++)
		blocks[nblocks++] = deep_alloc(i % 48, 64 + (size_t)(i % 200) * 16);
}

static void *alloc_forever(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *slots[64] = {0};
	for (;;) {
		unsigned i = rand_r(&seed) & 63;
		free(slots[i]);
		slots[i] = deep_alloc(rand_r(&seed) % 20, rand_r(&seed) % 3000 + 1);
	}
	return NULL;
}

static void *exit_thread(void *arg)
{
	(void)arg;
	rel_msleep(200);
	say("exiting");
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: rel_exit return|exit|_exit|abort|thread|sigdump "
		                "D|wait|doublefree [N]\n");
		return 2;
	}
	const char *how = argv[1];
	int delay = 0;
	int argn = 2;
	if (strcmp(how, "sigdump") == 0 && argc > 2)
		delay = atoi(argv[argn++]);
	int n = argc > argn ? atoi(argv[argn]) : 3000;
	fill(n);
	say("ready pid=%d blocks=%d", (int)getpid(), nblocks);
	if (strcmp(how, "return") == 0)
		return 0;
	if (strcmp(how, "exit") == 0)
		exit(0);
	if (strcmp(how, "_exit") == 0)
		_exit(0);
	if (strcmp(how, "abort") == 0)
		abort();
	if (strcmp(how, "thread") == 0) {
		pthread_t th[4];
		for (int i = 0; i < 3; i++)
			pthread_create(&th[i], NULL, alloc_forever, (void *)(uintptr_t)(i + 1));
		pthread_create(&th[3], NULL, exit_thread, NULL);
		alloc_forever((void *)(uintptr_t)99);
	}
	if (strcmp(how, "sigdump") == 0) {
		raise(SIGUSR2);
		/* The flusher may need an allocation to start. */
		for (int i = 0; i < 10; i++)
			free(malloc(100));
		rel_msleep(delay);
		exit(0);
	}
	if (strcmp(how, "wait") == 0)
		alloc_forever((void *)(uintptr_t)5);
	if (strcmp(how, "doublefree") == 0) {
		void *volatile p = malloc(64);
		free(p);
		free(p);
		say("survived");
		return 3;
	}
	return 2;
}
