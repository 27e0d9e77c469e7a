/*
 * sample.h - when to take a heap sample, and what a sample weighs.
 *
 * Sampling is a Poisson process over allocated bytes: the gaps between sample
 * points are exponential with mean `rate`, so an allocation of n bytes is
 * sampled with probability 1 - e^(-n/rate) and, when it is, stands for
 * 1 / (1 - e^(-n/rate)) allocations (Go's scaleHeapSample; jemalloc's
 * prof_sample_new_event_wait). Rate 1 samples everything with weight 1; rate
 * 0 samples nothing. Floating point is used only here, on the slow path, and
 * in the flusher.
 */
#ifndef HT_SAMPLE_H
#define HT_SAMPLE_H

#include <stdint.h>

/* Seed a per-thread generator state (never returns 0). */
uint64_t ht_sample_seed(uint64_t salt);

/* Uniform 64-bit value; advances *state (xorshift64*). */
uint64_t ht_sample_next_u64(uint64_t *state);

/* Next gap in bytes for the given rate: exponential with that mean, at least
 * 1; 0 for rate 1 (every allocation); a large finite gap for rate 0 so the
 * thread looks at the rate again now and then. */
int64_t ht_sample_gap(uint64_t *state, uint64_t rate);

#define HT_SAMPLE_OFF_GAP ((int64_t)64 << 20)

/* The unbiasing weight of one sampled allocation of `size` bytes. */
double ht_sample_weight(uint64_t size, uint64_t rate);

#endif
