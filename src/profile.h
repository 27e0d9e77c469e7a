/*
 * profile.h - turning heaptap's aggregated state into pprof profiles.
 *
 * The engine (agg.c, thread.c) hands the writer plain arrays of rows; the
 * writer owns everything after that: the profile.proto encoding (pb.c), the
 * mapping table with build IDs (maps.c), symbol names and file:line
 * (symbolize.c), gzip (profile.c, with zlib), files (output.c). All memory
 * comes from ht_mem_*. The writer's headers form a chain that ends here:
 * pb.h and maps.h include nothing of the writer's, symbolize.h includes
 * maps.h, profile.h includes all three; none of them calls the engine.
 *
 * Values in rows are already unbiased (see agg.c); the writer rounds them to
 * integers and never scales again.
 */
#ifndef HT_PROFILE_H
#define HT_PROFILE_H

#include "maps.h"
#include "pb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A pc that stands for the rest of a stack heaptap did not walk (too little
 * room on the stack the allocation was made on): written as a frame named
 * HT_NOT_TAKEN_NAME, so the sample keeps its weight. */
#define HT_PC_NOT_TAKEN   ((uintptr_t)1)
#define HT_NOT_TAKEN_NAME "[stack not taken: small stack]"

/* One heap profile sample: a distinct (stack, allocation size). */
struct ht_heap_row {
	const uintptr_t *pcs; /* return addresses, caller of the allocator first */
	uint32_t depth;
	uint64_t size; /* the `bytes` label */
	double alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
	/* 1 + the index into ht_profile_input.gone of the unloaded module this
	 * stack's frames in its range belong to (retired at dlclose); 0: none. */
	uint32_t pinned;
	bool no_size;     /* several sizes merged: no `bytes` label */
	const char *root; /* depth 0: the synthetic frame's name; NULL: "[unknown stack]" */
};

/* One thread profile sample: a distinct creation stack. */
struct ht_thread_row {
	const uintptr_t *pcs; /* stack that called pthread_create, its caller first */
	uint32_t depth;       /* 0: unknown creation stack */
	const char *label;    /* optional: "main", "unknown"; NULL for none */
	int64_t count;        /* live threads created there */
	const char *state;    /* "running" or "unjoined"; NULL: running */
};

struct ht_profile_input {
	uint64_t rate;            /* period of the heap profile */
	int64_t time_nanos;       /* wall clock of the dump */
	int64_t duration_nanos;   /* a delta's window; 0 for a snapshot */
	const char *default_type; /* heap: NULL for inuse_space */
	const struct ht_heap_row *heap;
	size_t nheap;
	const struct ht_thread_row *threads;
	size_t nthreads;
	const char *const *comments; /* heap profile comments (process figures) */
	size_t ncomments;
	const struct ht_module *gone; /* modules no longer mapped; may be NULL */
	size_t ngone;
	/* Called now and then during long work so the caller can keep draining
	 * per-thread buffers; may be NULL. */
	void (*tick)(void *arg);
	void *tick_arg;
};

/* What the profiles of one dump share: a /proc/self/maps snapshot and the
 * symbolizer (open files, sorted symbol tables). Open it for an input, pass
 * it to both encoders, close it after. 0 or a negative errno. */
struct ht_profile_ctx;
int ht_profile_ctx_open(struct ht_profile_ctx **out, const struct ht_profile_input *in);
void ht_profile_ctx_close(struct ht_profile_ctx *ctx); /* NULL is fine */

/* Encode the heap / thread profile as gzipped profile.proto into out
 * (appended). ctx: the dump's context from ht_profile_ctx_open, or NULL for
 * one of its own. Return 0 or a negative errno. */
int ht_profile_heap(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                    struct ht_buf *out);
int ht_profile_threads(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                       struct ht_buf *out);

/* The text forms served for ?debug=1, as Go's legacy ones: "heap profile:
 * ..." with one record per sample and "#" lines naming each frame, and
 * "threads profile: total N" with a count per creation stack. Values are
 * heaptap's unbiased estimates, so the header says heap_v2/1 (no further
 * scaling by readers). */
int ht_profile_heap_text(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                         struct ht_buf *out);
int ht_profile_threads_text(const struct ht_profile_input *in, struct ht_profile_ctx *ctx,
                            struct ht_buf *out);
/* pprof's symbol protocol: list is "0xA+0xB..."; writes "num_symbols: 1\n"
 * and "0xA name\n" for each address found. */
int ht_profile_symbols(struct ht_profile_ctx *ctx, const char *list, size_t len,
                       struct ht_buf *out);

#endif
