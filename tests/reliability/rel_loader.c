/*
 * rel_loader.c - dlopen/dlclose storm while sampling.
 *
 *   rel_loader DIR ITERS [a|ab]
 *                          4 threads each ITERS times: dlopen one of
 *                          DIR/librel_plugin_{a,b}.so (only a with "a"),
 *                          dlsym, call its
 *                          allocator (the block is kept: 1001 bytes from a,
 *                          1002 from b), dlclose. 2 more threads malloc and
 *                          free meanwhile. Then check both libraries are
 *                          unloaded and dump.
 */
#include "rel_common.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>

static const char *dir;
static int iters, only_a;
static _Atomic long count_a, count_b, failures;
static _Atomic int stop;

static void *storm(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	char path[4200];
	for (int i = 0; i < iters; i++) {
		int b = only_a ? 0 : rand_r(&seed) & 1;
		snprintf(path, sizeof(path), "%s/librel_plugin_%c.so", dir, b ? 'b' : 'a');
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			atomic_fetch_add(&failures, 1);
			continue;
		}
		void *(*fn)(size_t) = (void *(*)(size_t))dlsym(h, b ? "rel_plugin_alloc_b"
		                                                    : "rel_plugin_alloc_a");
		if (fn && fn(b ? 1002 : 1001))
			atomic_fetch_add(b ? &count_b : &count_a, 1);
		else
			atomic_fetch_add(&failures, 1);
		if (dlclose(h) != 0)
			atomic_fetch_add(&failures, 1);
	}
	return NULL;
}

static void *churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	while (!atomic_load(&stop))
		free(malloc(rand_r(&seed) % 3000 + 1));
	return NULL;
}

static int loaded_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	if (strstr(info->dlpi_name, "librel_plugin_"))
		(*(int *)data)++;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: rel_loader DIR ITERS [a|ab]\n");
		return 2;
	}
	dir = argv[1];
	iters = atoi(argv[2]);
	only_a = argc > 3 && strcmp(argv[3], "a") == 0;
	pthread_t s[4], c[2];
	double t0 = rel_now();
	for (int i = 0; i < 2; i++)
		pthread_create(&c[i], NULL, churn, (void *)(uintptr_t)(i + 11));
	for (int i = 0; i < 4; i++)
		pthread_create(&s[i], NULL, storm, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < 4; i++)
		pthread_join(s[i], NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(c[i], NULL);
	int still = 0;
	dl_iterate_phdr(loaded_cb, &still);
	long a = atomic_load(&count_a), b = atomic_load(&count_b);
	say("expect rel_plugin_alloc_a %ld %ld %ld %ld", a * 1001, a, a * 1001, a);
	say("expect rel_plugin_alloc_b %ld %ld %ld %ld", b * 1002, b, b * 1002, b);
	say("failures=%ld still_loaded=%d secs=%.1f", atomic_load(&failures), still,
	    rel_now() - t0);
	say("dump=%d", rel_dump());
	return atomic_load(&failures) ? 1 : 0;
}
