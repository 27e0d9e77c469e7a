/*
 * unwind.h - call stacks for samples and thread creation, from libunwind.
 *
 * heaptap's own unwinder (fastunwind.c) takes each stack when it can, and
 * libunwind the stacks it leaves (signal frames, CFA expressions, code
 * without unwind info); both unwind with DWARF CFI (.eh_frame), so code
 * built without frame pointers unwinds too. heaptap's own frames are removed by address: the
 * stack is cut at the return address of the interposed call (what
 * __builtin_return_address(0) gave the wrapper), and, if that is not found,
 * every leading frame inside heaptap's own text is dropped. Never a fixed
 * skip count, which breaks as soon as the compiler inlines differently.
 */
#ifndef HT_UNWIND_H
#define HT_UNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Code that is heaptap's own even when heaptap is linked into the program
 * (where no mapping tells it apart): frames in it are left out of stacks. */
#define HT_OWN_TEXT __attribute__((section("ht_own_text"), noinline))

/* Set libunwind's caching policy, find heaptap's own text, prime the
 * unwinder once. Nothing in it can fail in a way heaptap could act on: a
 * libunwind that cannot unwind gives empty stacks. */
void ht_unwind_init(void);

/* Room a capture needs beyond `max`: heaptap's own frames, unwound and then
 * dropped. */
#define HT_UNWIND_SLACK 16u

/* Fill out[0..max) with return addresses, out[0] being `ra` (the caller of
 * the interposed function) and each next entry its caller. out must have
 * room for max + HT_UNWIND_SLACK entries. Returns the depth
 * (0 when unwinding failed). exact: sampling at an exact rate (every
 * allocation unwinds), where libunwind's per-thread frame cache pays off at
 * once. wrap_fp: the frame of the heaptap function that ra returns from
 * (its saved rbp at [wrap_fp], ra at [wrap_fp + 8]), when the caller knows
 * it, else 0: the walk then starts there rather than stepping through the
 * frames of heaptap's in between; a frame that does not hold ra there is
 * ignored. Call with the thread busy. */
unsigned ht_unwind_capture(uintptr_t *out, unsigned max, uintptr_t ra, bool exact,
                           uintptr_t wrap_fp);

/* True while ht_unwind_init runs libunwind's one-time set-up: a pipe2()
 * call made inside heaptap (thread busy) then is libunwind's, and is refused
 * (see unwind.c). The caller checks that the thread is busy. */
bool ht_unwind_refuses_pipe(void);

/* Find C++'s operator new family, whose frames are cut like heaptap's. Once
 * the program's libraries are loaded (the constructor). */
void ht_unwind_note_allocators(void);

/* 0 when the page holding addr is readable, else -1: a probe of the
 * kernel (no fault), remembered for the page until the next dlclose. */
int ht_unwind_readable(uintptr_t addr);

/* Counts of captures by heaptap's own unwinder and by libunwind, and of
 * the mismatches HEAPTAP_UNWIND_CHECK found, as one profile comment line
 * ("unwind_fast=... unwind_fallback=... unwind_mismatches=..."). Takes the
 * aggregation lock: call without it. */
void ht_unwind_comment(char *buf, size_t size);

/* A thread record about to be freed (under the aggregation lock): its
 * counts go to the process's. */
struct ht_thread;
void ht_unwind_thread_reaped(const struct ht_thread *th);

/* Forget cached unwind info and known-readable pages (after dlclose). */
void ht_unwind_flush(void);

/* Resident bytes of the unwinders' caches outside heaptap's allocator:
 * libunwind's frame caches (its own mmaps, all resident) for the threads
 * alive that have one, and heaptap's rule cache (fastunwind.c, by mincore).
 * See unwind.c. */
size_t ht_unwind_cache_bytes(void);

/* Fork child: only the calling thread's cache is left. */
void ht_unwind_atfork_child(void);

#endif
