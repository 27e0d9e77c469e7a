/*
 * sites.h - thousands of distinct call stacks from 64 small functions.
 *
 * site_alloc(path, levels, n) calls through `levels` of the 64 noinline
 * functions, choosing each by the next 6 bits of path, and the last one
 * calls malloc(n). Each function has its own call sites, so every path
 * below 64^levels gives a different stack (return addresses), e.g. 4096
 * stacks at 2 levels and 262144 at 3. The empty asm after each call keeps
 * the compiler from turning it into a tail jump, which would drop a frame.
 */
#ifndef HT_BENCH_SITES_H
#define HT_BENCH_SITES_H

#include <stddef.h>
#include <stdlib.h>

typedef void *(*site_fn)(unsigned path, unsigned levels, size_t n);
static const site_fn site_table[64];

#define SITE_FN(i)                                                                                 \
	static __attribute__((noinline)) void *site_##i(unsigned path, unsigned levels, size_t n)  \
	{                                                                                          \
		void *p;                                                                           \
		if (levels <= 1)                                                                   \
			p = malloc(n + (i & 1));                                                   \
		else                                                                               \
			p = site_table[path & 63](path >> 6, levels - 1, n);                       \
		__asm__ volatile("" : "+r"(p) : : "memory");                                       \
		return p;                                                                          \
	}
#define SITE_FN8(a)                                                                                \
	SITE_FN(a##0)                                                                              \
	SITE_FN(a##1)                                                                              \
	SITE_FN(a##2) SITE_FN(a##3) SITE_FN(a##4) SITE_FN(a##5) SITE_FN(a##6) SITE_FN(a##7)
SITE_FN8(0)
SITE_FN8(1)
SITE_FN8(2)
SITE_FN8(3)
SITE_FN8(4)
SITE_FN8(5)
SITE_FN8(6)
SITE_FN8(7)
#define SITE_REF8(a)                                                                               \
	site_##a##0, site_##a##1, site_##a##2, site_##a##3, site_##a##4, site_##a##5, site_##a##6, \
	        site_##a##7
static const site_fn site_table[64] = {SITE_REF8(0), SITE_REF8(1), SITE_REF8(2), SITE_REF8(3),
                                       SITE_REF8(4), SITE_REF8(5), SITE_REF8(6), SITE_REF8(7)};

/* Allocate n bytes from the stack numbered path (levels + 1 frames deep). */
static inline void *site_alloc(unsigned path, unsigned levels, size_t n)
{
	return site_table[path & 63](path >> 6, levels, n);
}

#endif
