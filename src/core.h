/*
 * core.h - process-wide engine state shared by the engine's files.
 */
#ifndef HT_CORE_H
#define HT_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum ht_state {
	HT_UNINIT = 0,
	HT_INITIALIZING = 1,
	HT_READY = 2,
	HT_INERT = 3, /* set-uid, or no memory of its own: forward only */
};

struct ht_core {
	_Atomic int state;
	_Atomic bool ctor_done; /* constructors ran: threads may be started */
	_Atomic uint64_t rate;  /* current mean gap */
	_Atomic bool paused;
	pid_t pid;
	/* counters (relaxed) */
	_Atomic uint64_t samples_reaped; /* samples of threads already gone */
	_Atomic uint64_t dropped_samples;
	_Atomic uint64_t dropped_events;
	_Atomic uint64_t small_stack_samples; /* taken without a stack: no room */
	_Atomic uint64_t busy_resets;         /* busy sections left by a siglongjmp */
	_Atomic uint64_t dumps;
	_Atomic uint64_t dump_failures;
	_Atomic unsigned seq; /* last dump sequence number used */
};

extern struct ht_core ht_core;

/* Initialise from whichever entry point comes first. Returns the state. */
int ht_init(void);

/* Rates below this are "exact" modes: a full ring waits for the flusher
 * instead of dropping. */
#define HT_EXACT_RATE_LIMIT 4096

#endif
