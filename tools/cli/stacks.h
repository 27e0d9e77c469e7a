/*
 * stacks.h - samples of several profiles merged by stack.
 *
 * Two samples are the same stack when their frames have the same function
 * names (the key prof.c builds), so dumps of one process, or of two builds
 * at different addresses, line up. Each row keeps a fixed number of value
 * slots the caller lays out (one per dump, or base and new), and the noise
 * factor of its objects (trend.h) accumulated from the `bytes` labels.
 */
#ifndef HC_STACKS_H
#define HC_STACKS_H

#include "prof.h"

#include <uthash.h>

struct hc_row {
	const char *key;
	const struct hc_sample *rep; /* a sample with these frames */
	double *v;                   /* nslots values */
	double noise_sum, noise_bytes;
	size_t order; /* insertion order, for stable output */
	UT_hash_handle hh;
};

struct hc_stacks {
	struct hc_row *map;
	size_t nslots, n;
};

void hc_stacks_init(struct hc_stacks *t, size_t nslots);
/* The row of this sample's stack, created with zero values if new. */
struct hc_row *hc_stacks_row(struct hc_stacks *t, const struct hc_sample *s);
/* Add a sample's contribution to its row's noise factor: live bytes b of
 * objects of the sample's `bytes` label size, at the given rate. */
void hc_stacks_noise(struct hc_row *r, const struct hc_sample *s, double b, double rate);
double hc_row_noise(const struct hc_row *r, double rate);
/* All rows, in insertion order (caller frees the array). */
struct hc_row **hc_stacks_list(struct hc_stacks *t);
void hc_stacks_free(struct hc_stacks *t);

#endif
