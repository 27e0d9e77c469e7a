/*
 * agg.h - the aggregated heap state the profiles are written from.
 *
 * Only the holder of the aggregation lock touches these tables: it drains the
 * per-thread rings into them (ht_agg_drain_all) and snapshots them for a dump
 * (ht_agg_heap_rows; the thread rows are thread.c's). Tables are uthash, in heaptap's own
 * memory:
 *   stacks   distinct call stacks, interned and never freed;
 *   buckets  (stack, size) pairs, each with its unbiased alloc/inuse objects
 *            and bytes, numbered so a slot of the sampled-pointer table
 *            (addrset.h) can name one: that slot is a live sample's only
 *            record;
 *   live     sample id -> its bucket, weight and size, for the few live
 *            samples no slot carries (freed before their allocation was
 *            drained);
 *   pending  frees drained before their allocation (the two were recorded by
 *            different threads), matched when the allocation arrives.
 */
#ifndef HT_AGG_H
#define HT_AGG_H

#include "profile.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* The aggregation lock. Never waited for on the allocation path (only
 * tried); its owner is known so a fork() from a signal handler that
 * interrupted the owner does not wait for itself. */
void ht_agg_lock(void);
int ht_agg_trylock(void); /* 0 when taken */
void ht_agg_unlock(void);
bool ht_agg_lock_is_mine(void);

/* Drain every thread's ring and reap finished threads. Lock held. */
void ht_agg_drain_all(void);

/* Drain one thread's ring (a producer helping when its ring is full). Lock
 * held. */
struct ht_thread;
void ht_agg_drain_one(struct ht_thread *th);

/* Lock held. A migration of the sampled-pointer table is under way: heaptap's
 * thread keeps draining, which moves it a chunk at a time, until it is done. */
bool ht_agg_table_work(void);

/* Lock held. An insert found no room in the sampled-pointer table: finish
 * the migration under way, or start doubling the table. 0, or a negative
 * errno when nothing could be done (the table is as large as it gets, or
 * out of memory). */
int ht_agg_make_room(void);

/* Snapshot rows (ht_mem memory, free with ht_mem_free). Lock held. The pcs
 * they point to stay valid for the life of the process. */
int ht_agg_heap_rows(struct ht_heap_row **rows, size_t *n);

struct ht_agg_totals {
	double live_bytes, live_objects;
	uint64_t live_samples, stacks, pending;
	uint64_t overflow_samples; /* folded into the "table full" stack */
};
void ht_agg_totals(struct ht_agg_totals *out);

/* A library at [start, limit) is about to be unloaded (gone: its index in
 * the list of gone modules). Drain everything, then take the stacks with a
 * frame in it out of the lookup table, pinned to that module: samples taken
 * later at the same addresses belong to whatever is loaded there next.
 * Lock held. */
void ht_agg_retire_module(uintptr_t start, uintptr_t limit, int32_t gone);

/* Fork child: the tables are consistent (the lock was held across fork). */
void ht_agg_atfork_child(void);

/* Limits (tables have limits; what does not fit is counted). */
#define HT_AGG_MAX_STACKS  (1u << 20)
#define HT_AGG_MAX_BUCKETS (1u << 22) /* (stack, size) pairs */

/* For tests: feed one event as if drained from a ring. */
struct ht_ev_hdr;
void ht_agg_event(const struct ht_ev_hdr *h);

#endif
