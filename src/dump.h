/*
 * dump.h - one dump: a snapshot of the tables and process figures, encoded
 * as heap and thread profiles, written as a file pair or to an fd or path.
 *
 * Dumps never overlap (one dump lock). Any thread may dump: heaptap's own
 * thread on a signal or interval, a program thread through the API, the
 * exiting thread at exit. The caller is made busy for the duration, so what
 * the dump and the libraries it calls allocate comes from heaptap's memory.
 * Every function returns 0 or a negative errno and keeps the caller's errno.
 */
#ifndef HT_DUMP_H
#define HT_DUMP_H

#include <stdbool.h>
#include <stdint.h>

/* A file pair in HEAPTAP_DIR, waiting for any dump under way. */
int ht_dump_files(void);

/* The same for heaptap's own thread: -EAGAIN, and nothing written, when a
 * program thread is waiting to dump (its dump serves the request too). */
int ht_dump_files_background(void);

/* One profile (HEAPTAP_HEAP or HEAPTAP_THREADS) to an fd or a path. */
int ht_dump_to_fd(int fd, int kind);
int ht_dump_to_path(const char *path, int kind);

/* heaptap's own memory resident in RAM, bytes (the heaptap_resident_bytes
 * figure, and heaptap_stats' resident_bytes): a few mincore() calls, no
 * lock, no allocation. */
uint64_t ht_dump_own_resident(void);

/* Wait up to ms for a dump under way to finish; true if none is left. */
bool ht_dump_wait_idle(unsigned ms);

/* Fork child: a dump under way died with the thread that ran it. */
void ht_dump_atfork_child(void);

/* For the /debug/pprof listener (serve.c). */
#include "pb.h"
#include "profile.h"
#include <stdbool.h>
#include <stddef.h>
struct ht_dump_want {
	int kind;                 /* HEAPTAP_HEAP or HEAPTAP_THREADS */
	bool text;                /* the ?debug=1 text form */
	const char *default_type; /* heap: NULL for inuse_space */
	/* A delta: the rows of an earlier ht_dump_rows_copy, subtracted. */
	const struct ht_heap_row *base;
	size_t nbase;
	int64_t base_time;
	size_t max_samples; /* 0: no cap */
};
/* Records in a ?debug=1 heap text (the heaviest in-use first). */
#define HT_DUMP_TEXT_MAX 2000
/* One profile into out, as a dump would make it. 0 or a negative errno. */
int ht_dump_build(const struct ht_dump_want *w, struct ht_buf *out);
/* The heap rows now (ht_mem; free with ht_mem_free) and the wall clock. */
int ht_dump_rows_copy(struct ht_heap_row **rows, size_t *n, int64_t *time_nanos);
/* pprof's symbol lookups. */
int ht_dump_symbols(const char *list, size_t len, struct ht_buf *out);

#endif
