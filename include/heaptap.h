/*
 * heaptap.h - the public API of heaptap.
 *
 * heaptap finds memory leaks and thread leaks in running programs: it samples
 * allocations (Poisson by bytes), remembers the call stacks that hold memory
 * and that created threads, and writes gzipped pprof profiles
 * (heaptap.<pid>.<seq>.heap.pb.gz and .threads.pb.gz).
 *
 * Three ways in, one API:
 *  - LD_PRELOAD=libheaptap.so ./service   (no rebuild)
 *  - link -lheaptap (shared) or libheaptap.a (static)
 *  - compile with -DHEAPTAP_WEAK: every heaptap_* function is declared weak,
 *    so a program can call them through HEAPTAP_CALL(): the call works when
 *    heaptap is linked or preloaded and is skipped (returning -ENOSYS) when
 *    heaptap is absent at run time.
 *
 * Errors: every function that can fail returns 0 (or a count) on success and
 * a negative errno value on failure; heaptap_strerror() describes it. No
 * function sets errno.
 */
#ifndef HEAPTAP_H
#define HEAPTAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEAPTAP_VERSION_MAJOR  0
#define HEAPTAP_VERSION_MINOR  1
#define HEAPTAP_VERSION_PATCH  0
#define HEAPTAP_VERSION_STRING "0.1.0"
/* Encoded as (major << 16) | (minor << 8) | patch. */
#define HEAPTAP_VERSION_HEX                                                                        \
	((HEAPTAP_VERSION_MAJOR << 16) | (HEAPTAP_VERSION_MINOR << 8) | HEAPTAP_VERSION_PATCH)

#if defined(HEAPTAP_WEAK)
#define HEAPTAP_API __attribute__((weak))
#else
#define HEAPTAP_API
#endif

/* Which profile heaptap_write() writes. */
enum heaptap_kind {
	HEAPTAP_HEAP = 1,    /* heap profile (alloc_* and inuse_*) */
	HEAPTAP_THREADS = 2, /* live threads by creation stack */
};

/* heaptap's counters, as heaptap_stats() fills them. */
struct heaptap_stats {
	uint64_t rate;            /* current mean bytes between samples */
	uint64_t samples;         /* heap samples taken since start */
	uint64_t live_samples;    /* sampled blocks not yet freed */
	uint64_t est_live_bytes;  /* estimated live heap (unbiased), bytes */
	uint64_t dropped_samples; /* samples lost: tables or buffers full */
	uint64_t dropped_events;  /* frees lost, counted the same way */
	uint64_t live_threads;    /* threads alive, heaptap's own excluded */
	uint64_t threads_created; /* threads created since start */
	uint64_t dumps;           /* profile pairs written */
	uint64_t dump_failures;   /* dumps that failed (one heaptap: line each) */
	uint64_t own_bytes;       /* heaptap's own memory in use */
	uint32_t paused;          /* 1 while heaptap_pause() is in force */
	uint32_t reserved[7];
	/* Appended fields: a library older than the header leaves them as the
	 * caller set them (clear the struct first). */
	uint64_t resident_bytes; /* all of heaptap's memory resident in RAM (own_bytes
	                            is what its allocator has handed out) */
};

/* Run-time version: HEAPTAP_VERSION_HEX of the library actually loaded. */
HEAPTAP_API unsigned heaptap_version(void);
HEAPTAP_API const char *heaptap_version_string(void);

/* Write one heap and one thread profile to HEAPTAP_DIR exactly as the signal
 * would (same names, next sequence number). Blocks until both files are in
 * place. 0 or a negative errno. */
HEAPTAP_API int heaptap_dump(void);

/* Write one profile of the given kind, gzipped profile.proto, to fd (a file,
 * a pipe, a socket). The fd is not closed. 0 or a negative errno. */
HEAPTAP_API int heaptap_write(int fd, enum heaptap_kind kind);

/* Write one profile of the given kind to path (created 0600 through a
 * temporary file and renamed). 0 or a negative errno. */
HEAPTAP_API int heaptap_write_path(const char *path, enum heaptap_kind kind);

/* Change the mean bytes between samples: 1 records every allocation, 0 turns
 * heap sampling off. Takes effect for each thread at its next sample. */
HEAPTAP_API int heaptap_set_rate(uint64_t rate);

/* Stop and restart taking new heap samples. Frees of blocks sampled before
 * the pause are still seen, so in-use figures stay right. */
HEAPTAP_API int heaptap_pause(void);
HEAPTAP_API int heaptap_resume(void);

/* Fill *out (size bytes of it, for ABI growth). 0 or a negative errno. */
HEAPTAP_API int heaptap_stats(struct heaptap_stats *out, size_t size);

/* A static description of a negative errno returned by heaptap. */
HEAPTAP_API const char *heaptap_strerror(int err);

#if defined(HEAPTAP_WEAK)
/* HEAPTAP_CALL(heaptap_dump) -> heaptap_dump() when present, -ENOSYS else;
 * HEAPTAP_CALL(heaptap_write, fd, HEAPTAP_HEAP) passes the arguments on. */
#include <errno.h>
#define HEAPTAP_PRESENT(fn)   ((fn) != 0)
#define HEAPTAP_CALL(fn, ...) (HEAPTAP_PRESENT(fn) ? fn(__VA_ARGS__) : -ENOSYS)
#endif

#ifdef __cplusplus
}
#endif
#endif
