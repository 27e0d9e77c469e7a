/*
 * flusher.h - heaptap's own thread ("heaptap-flush").
 *
 * It writes a profile pair when the dump signal arrives or the interval
 * elapses, drains between dumps what the program's threads have not drained
 * themselves, reaps the records of finished threads, and ends the process
 * when the program's last thread has ended. It runs whenever a dump trigger
 * needs it, from the end of the program's constructors on (and in a forked
 * child from the fork on), with every signal blocked, and it is always
 * "busy": whatever it or the libraries it calls allocate comes from
 * heaptap's own memory.
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

/* Does a dump trigger need the thread (the handler is installed, or an
 * interval is set)? */
bool ht_flusher_needed(void);

/* Should the slow path start the thread now? Inline, its first two tests:
 * every slow path asks, and "not wanted" or "running" is the usual answer. */
bool ht_flusher_wanted_rest(void);
static inline bool ht_flusher_wanted(void)
{
	return atomic_load_explicit(&ht_flusher_want, memory_order_relaxed) &&
	       !ht_flusher_running() && ht_flusher_wanted_rest();
}

/* Start the thread soon (at the next slow path) if a trigger needs it.
 * Inline: every sample asks, and the answer is nearly always "wanted
 * already" or "running". */
static inline void ht_flusher_note_need(void)
{
	if (!atomic_load_explicit(&ht_flusher_want, memory_order_relaxed) &&
	    !ht_flusher_running() && ht_flusher_needed())
		atomic_store_explicit(&ht_flusher_want, true, memory_order_relaxed);
}

/* Start it now (0 or a negative errno); stop it and wait until it is gone
 * (for unshare(CLONE_NEWUSER), which refuses a multithreaded caller). */
int ht_flusher_start(void);
int ht_flusher_stop(void);

/* fn(a, b) failed with EINVAL (a multithreaded caller) while heaptap's
 * thread runs: stop the thread, call again until the kernel no longer
 * counts it, start it again. fn's result, errno as fn left it. */
long ht_flusher_call_alone(long (*fn)(long, long), long a, long b);

/* Resident bytes of its stack while it runs (for the profile comments). */
size_t ht_flusher_resident(void);

/* Wake it (async-signal-safe). */
void ht_flusher_kick(void);

/* Ask for a dump (async-signal-safe: the dump signal's handler). */
void ht_flusher_request_dump(void);

/* Exit: the at-exit or pending dump, then no more dumps. Fork child: a new
 * thread on the parent's terms. */
void ht_flusher_at_exit(void);
void ht_flusher_atfork_child(void);

#endif
