/*
 * thread.h - heaptap's record of each application thread.
 *
 * A record holds the thread's event ring, its sample-id counter and, for
 * threads started through pthread_create, the stack that created it. Records
 * live in heaptap's own memory on one lock-free list: threads push
 * themselves, and only the holder of the aggregation lock (normally the
 * flusher) unlinks and frees a record, after the kernel says the thread is
 * gone (tgkill(pid, tid, 0) fails with ESRCH) and its ring has been drained
 * one last time. So a free() made by a thread's TLS or key destructors, after
 * heaptap saw the thread's start routine end, still has a ring to write to.
 */
#ifndef HT_THREAD_H
#define HT_THREAD_H

#include "ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum ht_thread_state {
	HT_THR_STARTING = 0, /* pthread_create in progress */
	HT_THR_RUNNING = 1,  /* alive */
	HT_THR_EXITED = 2,   /* start routine over (returned, pthread_exit, cancelled) */
	HT_THR_DEAD = 3,     /* never started, or gone: reclaim once drained */
};

struct ht_thread {
	struct ht_thread *_Atomic next;
	_Atomic int state;
	_Atomic int launched; /* real pthread_create returned success */
	bool from_create;     /* started through heaptap's pthread_create */
	bool is_main;
	bool is_static;    /* not in ht_mem: never freed */
	_Atomic pid_t tid; /* 0 until the thread runs */
	uint32_t serial;
	uint64_t nsamples; /* producer-only sample counter */
	_Atomic int ring_ready;
	struct ht_ring ring;
	void *(*fn)(void *);
	void *arg;
	uintptr_t stack_lo, stack_hi; /* the thread's stack; 0 unknown (stack.c) */
	pthread_t handle;             /* as pthread_create gave it */
	_Atomic bool settled;         /* joined or detached: nothing holds it once ended */
	void *own_stack;              /* heaptap's stack for it; NULL until needed */
	uint64_t stack_hash;
	/* Stacks taken by heaptap's unwinder and by libunwind (unwind.c):
	 * written by the thread alone, read for the profile comments. */
	_Atomic uint64_t unwind_fast, unwind_fallback;
	void *unwind_prefix; /* its previous stack (fastunwind.c); NULL until needed */
	uint32_t depth;      /* creation stack depth; 0 unknown */
	uintptr_t pcs[];     /* creation stack, caller of pthread_create first */
};

extern struct ht_thread *_Atomic ht_threads;

/* Counters for heaptap_stats and the profile comments. */
extern _Atomic uint64_t ht_threads_created;

/* The record of the calling thread, made on first use (NULL if out of
 * memory). Call with the thread busy. */
struct ht_thread *ht_thread_self(void);

/* Make sure the calling thread's ring exists. 0 or -ENOMEM. */
int ht_thread_ring(struct ht_thread *th);

/* The pthread_create wrapper's work: `real` is the next pthread_create. */
int ht_thread_create(int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *),
                     pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg,
                     uintptr_t ra);

/* Under the aggregation lock: unlink and free records of threads that are
 * gone, after `drain` has emptied their ring. */
void ht_thread_reap(void (*drain)(struct ht_thread *));

/* Fork child: every record but the caller's is dead. */
void ht_thread_atfork_child(void);

/* The main thread's end by pthread_exit or cancellation is noted (a key
 * destructor). Call on the main thread; once is enough. */
void ht_thread_watch_main(void);

/* How many of the program's threads heaptap knows to be alive. */
int ht_thread_program_alive(void);

/* Thread profile rows: threads grouped by creation stack and state
 * ("running", or "unjoined": ended but never joined or detached, so glibc
 * still holds its stack), the main thread, and tasks heaptap did not see
 * start (ht_mem memory, free with ht_mem_free; the pcs stay valid for the
 * life of the process). Under the aggregation lock, which keeps the
 * registry's records alive. *running and *unjoined get the two totals.
 * 0 or -ENOMEM. */
struct ht_thread_row;
int ht_thread_rows(struct ht_thread_row **rows, size_t *n, int64_t *running, int64_t *unjoined);

/* The program joined or detached thread h (its wrapper saw success): once
 * ended, it holds nothing. */
void ht_thread_settled(pthread_t h);

/* Threads heaptap itself runs (excluded from every count). */
void ht_thread_note_own(pid_t tid);
void ht_thread_forget_own(pid_t tid);
bool ht_thread_is_own(pid_t tid);
unsigned ht_thread_own_count(void);

#endif
