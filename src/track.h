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

#include <pthread.h>
#include <signal.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ht_mode {
	HT_MODE_FORWARD = 0,  /* call the real function, then ht_track_alloc */
	HT_MODE_INTERNAL = 1, /* heaptap is allocating: use ht_mem */
};

/* Entering heaptap from the program: true when the thread is not busy.
 * When it is (ht_track_recover_busy): false if that busy section is one
 * this call is nested in (heaptap's own work, or a signal handler that
 * interrupted it); true if it was abandoned (a siglongjmp out of a handler
 * that interrupted it), in which case what it held is released and the
 * thread is no longer busy. */
bool ht_track_recover_busy(struct ht_tls *t);
static inline bool ht_track_recover(struct ht_tls *t)
{
	/* Inline, the usual answer: not busy, nothing to recover. */
	return !t->busy || ht_track_recover_busy(t);
}

/* Turn cancellation off for the rest of the thread's busy section, before
 * a call that may be a cancellation point; turned back on as the outermost
 * busy section ends (ht_busy_exit) or is found abandoned. */
void ht_track_nocancel(void);

/* First thing on the slow path. */
enum ht_mode ht_track_enter(struct ht_tls *t);

/* After the real call: maybe sample p (n bytes), then draw the next gap.
 * p may be NULL (the call failed): nothing is sampled. fp: the calling
 * wrapper's own frame (ht_unwind_capture's wrap_fp), or 0. */
void ht_track_alloc(struct ht_tls *t, void *p, size_t n, uintptr_t ra, uintptr_t fp);

/* p is about to be freed (or handed to realloc) and ht_addrset_maybe(p)
 * said it might be sampled. Returns 1 and *id if it was: what its slot
 * held, the sample's id or its resolved value (addrset.h), passed on as is. */
bool ht_track_forget(void *p, uint64_t *id);

/* Record the free of a sample forgotten with ht_track_forget. */
void ht_track_free_event(uint64_t id);

/* Put a forgotten sample back (a realloc that failed), with what its slot
 * held. */
void ht_track_restore(void *p, uint64_t id);

/* ------------------------------------------------------------------------
 * The rest of the shim's door into the engine: each forwards to the file
 * that owns the work, so preload.c includes this header alone (with the
 * support headers its fast paths inline). */

/* Start heaptap (any entry point may be first): the state, as ht_init. */
int ht_track_start(void);

/* pthread_create through heaptap's trampoline (thread.c). */
int ht_track_pthread_create(int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
                                        void *),
                            pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                            void *arg, uintptr_t ra);

/* A successful join or detach of thread h (thread.c). */
void ht_track_thread_settled(pthread_t h);

/* Around the real dlclose (loader.c). */
void ht_track_dlclose_before(void *handle);
void ht_track_dlclose_after(void);

/* Is a pipe2() made inside heaptap libunwind's, to be refused (unwind.c)? */
bool ht_track_refuses_pipe(void);

/* The dump signal's disposition as the program sees it (signals.c). */
bool ht_track_signal_watched(int sig);
int ht_track_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
__sighandler_t ht_track_signal(int sig, __sighandler_t handler);
__sighandler_t ht_track_sysv_signal(int sig, __sighandler_t handler);
__sighandler_t ht_track_sigset(int sig, __sighandler_t disp);

/* A call that needs a single-threaded caller, made again without heaptap's
 * thread (flusher.c). */
long ht_track_call_alone(long (*fn)(long, long), long a, long b);

#endif
