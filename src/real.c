/*
 * real.c - resolving the next malloc, free, ... See real.h.
 *
 * Until resolution every pointer targets a stub that initialises heaptap and
 * then calls the resolved function, so any entry point can come first. Should
 * dlsym find no next malloc at all (an unusual loader set-up), glibc's own
 * exported __libc_* entry points are the allocator underneath: forwarding
 * somewhere is the only way to keep the program running.
 */
#include "real.h"

#include "core.h"
#include "mem.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

/* Stubs: in force only until resolution. If resolution is running on this
 * very thread, heaptap's own memory serves (and a free is dropped). */
static void *stub_malloc(size_t n);
static void stub_free(void *p);
static void *stub_calloc(size_t n, size_t s);
static void *stub_realloc(void *p, size_t n);

static void *stub_malloc(size_t n)
{
	ht_init();
	return ht_real.malloc != stub_malloc ? ht_real.malloc(n) : ht_mem_alloc(n);
}
static void stub_free(void *p)
{
	ht_init();
	if (ht_real.free != stub_free)
		ht_real.free(p);
}
static void *stub_calloc(size_t n, size_t s)
{
	ht_init();
	return ht_real.calloc != stub_calloc ? ht_real.calloc(n, s) : ht_mem_calloc(n, s);
}
static void *stub_realloc(void *p, size_t n)
{
	ht_init();
	return ht_real.realloc != stub_realloc ? ht_real.realloc(p, n) : NULL;
}

struct ht_real ht_real = {
        .malloc = stub_malloc,
        .free = stub_free,
        .calloc = stub_calloc,
        .realloc = stub_realloc,
};

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

#define RESOLVE(field, name) *(void **)&ht_real.field = next(name)

int ht_real_init(void)
{
	struct ht_real r = ht_real;
	RESOLVE(malloc, "malloc");
	RESOLVE(free, "free");
	RESOLVE(calloc, "calloc");
	RESOLVE(realloc, "realloc");
	if (!ht_real.malloc || !ht_real.free || !ht_real.calloc || !ht_real.realloc) {
		/* No next definition found: glibc's exported entry points. */
		ht_real = r;
		ht_real.malloc = __libc_malloc;
		ht_real.free = __libc_free;
		ht_real.calloc = __libc_calloc;
		ht_real.realloc = __libc_realloc;
		ht_real.memalign = __libc_memalign;
		ht_real.valloc = __libc_valloc;
		ht_real.pvalloc = __libc_pvalloc;
	} else {
		RESOLVE(memalign, "memalign");
		RESOLVE(valloc, "valloc");
		RESOLVE(pvalloc, "pvalloc");
	}
	RESOLVE(posix_memalign, "posix_memalign");
	RESOLVE(aligned_alloc, "aligned_alloc");
	RESOLVE(malloc_usable_size, "malloc_usable_size");
	RESOLVE(free_sized, "free_sized");
	RESOLVE(free_aligned_sized, "free_aligned_sized");
	RESOLVE(pthread_create, "pthread_create");
	RESOLVE(pthread_join, "pthread_join");
	RESOLVE(pthread_tryjoin_np, "pthread_tryjoin_np");
	RESOLVE(pthread_timedjoin_np, "pthread_timedjoin_np");
	RESOLVE(pthread_clockjoin_np, "pthread_clockjoin_np");
	RESOLVE(pthread_detach, "pthread_detach");
	RESOLVE(dlclose, "dlclose");
	RESOLVE(sigaction, "sigaction");
	RESOLVE(signal, "signal");
	RESOLVE(sysv_signal, "sysv_signal");
	RESOLVE(sigset, "sigset");
	RESOLVE(unshare, "unshare");
	RESOLVE(setns, "setns");
	RESOLVE(pipe2, "pipe2");
	return 0;
}

const char *ht_real_allocator(char *buf, size_t n)
{
	static const char *const known[][2] = {
	        {"libc.so", "glibc"},     {"libc-", "glibc"},       {"jemalloc", "jemalloc"},
	        {"tcmalloc", "tcmalloc"}, {"mimalloc", "mimalloc"},
	};
	Dl_info info;
	if (!dladdr((void *)ht_real.malloc, &info) || !info.dli_fname)
		return "unknown";
	const char *base = strrchr(info.dli_fname, '/');
	base = base ? base + 1 : info.dli_fname;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strstr(base, known[i][0]))
			return known[i][1];
	snprintf(buf, n, "%s", *base ? base : "the program");
	return buf;
}
