/*
 * rel_plugin.c - a small plugin for the dlopen/dlclose storm, built twice
 * (PLUGIN=a and PLUGIN=b) so the two libraries can take turns at the same
 * load address. Its constructor allocates, it has TLS, and
 * rel_plugin_alloc_<PLUGIN> allocates a block the caller keeps.
 */
#include <stdlib.h>
#include <string.h>

#define CAT2(a, b) a##b
#define CAT(a, b)  CAT2(a, b)
#define ALLOC_FN   CAT(rel_plugin_alloc_, PLUGIN)

static __thread int calls;
static void *ctor_block;

__attribute__((noinline)) void *ALLOC_FN(size_t n)
{
	calls++;
	void *p = malloc(n);
	if (p)
		memset(p, calls & 0xff, n);
	__asm__ volatile("" ::"r"(p) : "memory");
	return p;
}

__attribute__((constructor)) static void plugin_init(void)
{
	ctor_block = malloc(64);
	free(malloc(4000));
}

__attribute__((destructor)) static void plugin_fini(void)
{
	free(ctor_block);
}
