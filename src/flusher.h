/*
 * flusher.h - heaptap's background thread, its triggers, and dumps.
 *
 * The flusher writes a profile pair when the signal arrives or the interval
 * elapses, and between dumps drains whatever the threads have not drained
 * themselves and reaps records of finished threads. It exists only when a
 * dump trigger needs it, starts lazily (after the first sample or dump
 * request), never before the program's constructors have run, with every
 * signal blocked, and it is always "busy": whatever it or the libraries it
 * calls allocate comes from heaptap's own memory.
 */
#ifndef HT_FLUSHER_H
#define HT_FLUSHER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

extern _Atomic int ht_flusher_state; /* 0 stopped, 1 starting/running */
extern _Atomic bool ht_flusher_want;

static inline bool ht_flusher_running(void)
{
	return atomic_load_explicit(&ht_flusher_state, memory_order_acquire) != 0;
}

/* Should the slow path start the flusher now? */
bool ht_flusher_wanted(void);
/* A sample was taken, or the program started a thread of its own: start
 * heaptap's thread soon if a dump trigger needs it. */
void ht_flusher_note_need(void);
int ht_flusher_start(void);
void ht_flusher_kick(void);

/* Dumps (any thread; the caller is made busy). 0 or a negative errno. */
int ht_dump_files(void);
int ht_dump_to_fd(int fd, int kind);
int ht_dump_to_path(const char *path, int kind);

/* Signals: install over a default disposition only. */
void ht_signal_setup(void);
bool ht_signal_is_ours(int sig);
void ht_signal_note_app_handler(int sig, const void *handler);

/* Modules seen just before dlclose, for samples taken inside them. */
struct ht_module;
int ht_modules_note_gone(const struct ht_module *m); /* its index, or -1 */

/* Exit and fork. */
void ht_flusher_at_exit(void);
void ht_flusher_atfork_prepare(void);
void ht_flusher_atfork_parent(void);
void ht_flusher_atfork_child(void);

#endif
