/*
 * tls.h - the per-thread state every allocation touches.
 *
 * One small initial-exec TLS block per thread (the glibc manual requires the
 * initial-exec model of a malloc replacement: a dynamic TLS access may itself
 * call malloc). It starts all-zero, so a thread's first allocation finds a
 * countdown of 0 and takes the slow path, which sets the thread up.
 *
 * The countdown doubles as the reentrancy guard: inside heaptap ("busy") it is
 * parked far below zero, so every allocation the thread makes there drops to
 * the slow path, which sees `busy` and serves it from heaptap's own memory
 * without sampling. The fast path stays one subtraction and one branch.
 */
#ifndef HT_TLS_H
#define HT_TLS_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

struct ht_thread;

struct ht_tls {
	int64_t countdown;       /* bytes until the next sample point */
	uint32_t busy;           /* nesting depth inside heaptap */
	uint32_t unwinds;        /* stacks walked so far, counted up to a few (unwind.c) */
	int64_t saved_countdown; /* countdown outside the outermost busy section */
	uint64_t rng;            /* xorshift state, 0 until seeded */
	uint64_t gap_rate;       /* the rate the current gap was drawn with */
	struct ht_thread *thr;   /* this thread's record and ring; NULL until needed */
	uintptr_t busy_frame;    /* frame that entered the outermost busy section */
	uintptr_t busy_ret;      /* and its return address, as saved in that frame */
	int *errp;               /* this thread's errno, once asked for (ht_errno) */
	int cancel_state;        /* the cancellation state a busy section turned off */
	uint8_t frame_cache;     /* libunwind has a frame cache for it, counted (unwind.c) */
	uint8_t cancel_off;      /* the busy section turned cancellation off (track.c) */
};

#define HT_BUSY_COUNTDOWN (INT64_MIN / 4)

/* The calling thread's errno, for a sample to leave as it found it: its
 * address is fixed for the thread's life, so __errno_location (a call into
 * libc through the PLT) is asked once per thread rather than twice per
 * sample. */
static inline int *ht_errno(struct ht_tls *t)
{
	int *e = t->errp;
	if (__builtin_expect(e == NULL, 0))
		e = t->errp = __errno_location();
	return e;
}

extern __thread struct ht_tls ht_tls __attribute__((tls_model("initial-exec")));

/* The frame is noted so that a busy section left by a siglongjmp out of a
 * signal handler can be told from a nested one (track.c): enter a busy
 * section in the frame that lives as long as the section, never in a helper
 * that returns before it ends. */
static inline void ht_busy_enter(struct ht_tls *t)
{
	if (t->busy++ == 0) {
		t->saved_countdown = t->countdown;
		t->countdown = HT_BUSY_COUNTDOWN;
		t->busy_frame = (uintptr_t)__builtin_frame_address(0);
		t->busy_ret = (uintptr_t)__builtin_return_address(0);
	}
}

/* Cancellation back as it was, if the busy section turned it off (track.c:
 * only on the way into a possible cancellation point). */
static inline void ht_busy_cancel_restore(struct ht_tls *t)
{
	/* The mark goes after the call: a section left by longjmp in between
	 * is still busy (ht_busy_close) and its recovery restores again. */
	if (__builtin_expect(t->cancel_off, 0)) {
		pthread_setcancelstate(t->cancel_state, NULL);
		t->cancel_off = 0;
	}
}

/* End the outermost busy section, whether it returns (ht_busy_exit) or was
 * left by longjmp and is recovered (track.c): cancellation is restored
 * before busy is cleared, so a longjmp between the two leaves a section
 * that is still busy and gets recovered again. */
static inline void ht_busy_close(struct ht_tls *t)
{
	ht_busy_cancel_restore(t);
	t->busy = 0;
	t->countdown = t->saved_countdown;
}

static inline void ht_busy_exit(struct ht_tls *t)
{
	if (t->busy == 0)
		return; /* the section was abandoned and reset meanwhile */
	if (t->busy > 1) {
		t->busy--;
		return;
	}
	ht_busy_close(t);
}

#endif
