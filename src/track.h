/*
 * track.h - the slow path behind every interposed allocation function.
 *
 * A wrapper subtracts the request from the thread's countdown and, only when
 * it reaches zero or below, calls in here: to set heaptap up, to serve
 * heaptap's own allocations (thread busy), or to take a sample. free() comes
 * here only when the sampled-pointer set might hold its pointer.
 */
#ifndef HT_TRACK_H
#define HT_TRACK_H

#include "tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ht_mode {
	HT_MODE_FORWARD = 0,  /* call the real function, then ht_track_alloc */
	HT_MODE_INTERNAL = 1, /* heaptap is allocating: use ht_mem */
};

/* Entering heaptap from the program with the thread marked busy: false if
 * that busy section is one this call is nested in (heaptap's own work, or a
 * signal handler that interrupted it); true if it was abandoned (a
 * siglongjmp out of a handler that interrupted it), in which case what it
 * held is released and the thread is no longer busy. */
bool ht_track_recover(struct ht_tls *t);

/* First thing on the slow path. */
int ht_track_enter(struct ht_tls *t);

/* After the real call: maybe sample p (n bytes), then draw the next gap.
 * p may be NULL (the call failed): nothing is sampled. */
void ht_track_alloc(struct ht_tls *t, void *p, size_t n, uintptr_t ra);

/* p is about to be freed (or handed to realloc) and ht_addrset_maybe(p)
 * said it might be sampled. Returns 1 and *id if it was. */
int ht_track_forget(void *p, uint64_t *id);

/* Record the free of a sample forgotten with ht_track_forget. */
void ht_track_free_event(uint64_t id);

/* Put a forgotten sample back (a realloc that failed). */
void ht_track_restore(void *p, uint64_t id);

#endif
