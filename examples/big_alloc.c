/*
 * big_alloc.c - hundreds of MiB from two sites, for the sampled estimates.
 *
 * hold_big() keeps about 400 MiB and hold_medium() about 200 MiB, each in
 * blocks of 4 KiB, 64 KiB and 1 MiB; churn() allocates and frees as much
 * again so alloc_* and inuse_* differ. At heaptap's default rate (one sample
 * per 512 KiB on average) each sample stands for many blocks, and the
 * unbiased estimates should land within a few percent of the truth, which the
 * program prints after the dump:
 *
 *   expect <function> <inuse_bytes> <inuse_objects> <alloc_bytes> <alloc_objects>
 *
 * The blocks are not written to: sampling is by bytes requested, not pages
 * touched, and this keeps the program fast.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heaptap.h"

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noipa))
#endif

struct tally {
	const char *fn;
	uint64_t inuse_bytes, inuse_objects, alloc_bytes, alloc_objects;
};

static const size_t sizes[] = {4 << 10, 64 << 10, 1 << 20};

/* Keep a third of the target in each block size. Blocks are chained through
 * their first word so no bookkeeping array is needed. */
static void *hold(struct tally *t, size_t target, void **chain)
{
	for (int s = 0; s < 3; s++) {
		size_t n = sizes[s];
		for (size_t have = 0; have < target / 3; have += n) {
			void **p = malloc(n);
			if (!p) {
				perror("malloc");
				exit(1);
			}
			*p = *chain;
			*chain = p;
			t->alloc_bytes += n;
			t->alloc_objects++;
			t->inuse_bytes += n;
			t->inuse_objects++;
		}
	}
	return *chain;
}

NOINLINE static void *hold_big(struct tally *t, void **chain)
{
	return hold(t, (size_t)400 << 20, chain);
}

NOINLINE static void *hold_medium(struct tally *t, void **chain)
{
	return hold(t, (size_t)200 << 20, chain);
}

/* Allocated and freed: only in alloc_*. */
NOINLINE static void churn(struct tally *t)
{
	for (int round = 0; round < 100; round++) {
		void *blocks[64];
		for (int i = 0; i < 64; i++) {
			size_t n = sizes[(round + i) % 3];
			blocks[i] = malloc(n);
			__asm__ volatile("" : : "r"(blocks[i]) : "memory");
			t->alloc_bytes += n;
			t->alloc_objects++;
		}
		for (int i = 0; i < 64; i++)
			free(blocks[i]);
	}
}

static void release(void *chain)
{
	while (chain) {
		void *next = *(void **)chain;
		free(chain);
		chain = next;
	}
}

int main(void)
{
	struct tally big = {.fn = "hold_big"}, medium = {.fn = "hold_medium"},
	             churned = {.fn = "churn"};
	void *big_chain = NULL, *medium_chain = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("pid %d\n", (int)getpid());
	hold_big(&big, &big_chain);
	churn(&churned);
	hold_medium(&medium, &medium_chain);

	int rc = HEAPTAP_CALL(heaptap_dump);
	if (rc == -ENOSYS)
		printf("dump: heaptap absent\n");
	else
		printf("dump: rc=%d (%s)\n", rc, rc ? heaptap_strerror(rc) : "ok");

	const struct tally *all[] = {&big, &medium, &churned};
	for (int i = 0; i < 3; i++)
		printf("expect %s %llu %llu %llu %llu\n", all[i]->fn,
		       (unsigned long long)all[i]->inuse_bytes,
		       (unsigned long long)all[i]->inuse_objects,
		       (unsigned long long)all[i]->alloc_bytes,
		       (unsigned long long)all[i]->alloc_objects);
	release(big_chain);
	release(medium_chain);
	return 0;
}
