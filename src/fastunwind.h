/*
 * fastunwind.h - heaptap's own x86-64 stack walker, in front of libunwind.
 *
 * It walks heaptap's own frames by their frame pointers up to the frame the
 * interposed call returns to, then the program's frames with DWARF CFI
 * (.eh_frame, found through _dl_find_object and .eh_frame_hdr), one rule
 * per return address, kept in a process-wide lock-free cache so that a new
 * thread starts warm. It handles the rules nearly all code has (CFA =
 * rsp+k or rbp+k, return address at CFA-8, rbp unchanged or saved at
 * CFA-k); anything else (signal frames, CFA expressions, code with no
 * unwind info) makes it give up the whole stack, and the caller takes it
 * with libunwind instead (unwind.c).
 */
#ifndef HT_FASTUNWIND_H
#define HT_FASTUNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ht_thread;

/* Map the rule cache (at start-up; without it every rule is computed). */
void ht_fastunwind_init(void);

/* Say where heaptap's own text lies, [lo, hi) around all of it (unwind.c,
 * once, before any walk: the bounds are remembered with the stacks walked):
 * frames there may be left out of a stack, the others never. */
void ht_fastunwind_note_own(uintptr_t lo, uintptr_t hi);

/* Walk the calling thread's stack from fp, the frame pointer of a function
 * of heaptap's own (built with frame pointers), whose chain of callers
 * reaches the frame that returns to ra, the return address of the
 * interposed call, within its first HT_UNWIND_SLACK - 1 frames. out[0] is
 * ra, each next entry its caller's return address. n_max bounds the stack
 * as libunwind's backtrace from fp's function would be bounded: it counts
 * *lead, heaptap's frames below ra in that backtrace (fp's own pc among
 * them), so out gets at most n_max - *lead entries. *plain: how many
 * leading entries of out are surely outside heaptap's own text
 * (ht_fastunwind_note_own), known without looking when the stack repeats
 * the thread's previous one; 0 when unknown. th: the calling thread's
 * record (its stack bounds), or NULL. Returns the number of entries, or
 * -ENOENT (ra not found), -EOPNOTSUPP (a frame needs libunwind), -EFAULT
 * (a read left readable memory): the caller then takes the whole stack
 * with libunwind. Never locks or allocates, but for the thread's
 * previous-stack cache, taken once from heaptap's own memory. */
int ht_fastunwind_walk(uintptr_t *out, unsigned n_max, uintptr_t ra, uintptr_t fp,
                       struct ht_thread *th, unsigned *lead, unsigned *plain);

/* A thread record whose thread is gone: its previous stack (the walker's
 * per-thread cache, heaptap memory) is freed. */
void ht_fastunwind_thread_done(struct ht_thread *th);

/* In a forked child: the area shared for rules computed outside a sample
 * is free (its holder, another thread, is gone). */
void ht_fastunwind_atfork_child(void);

/* Whether threads keep their previous stack to re-verify rather than
 * re-walk (on by default; off only for bench_capture's comparison). */
void ht_fastunwind_use_prefix(bool on);

/* Forget every cached rule (around dlclose: a library loaded later at the
 * same address has other rules). */
void ht_fastunwind_forget(void);

/* Resident bytes of the rule cache (for heaptap's resident figure). */
size_t ht_fastunwind_resident(void);

/* For tests and the benchmark: how a return address would be stepped, as
 * the walker sees it. *cfa_rbp: the CFA is rbp+cfa_off (else rsp+cfa_off);
 * *rbp_save: rbp is saved at CFA-rbp_save (0: unchanged). Returns 0, 1 for
 * the outermost frame (no caller), or -EOPNOTSUPP/-ENOENT. */
int ht_fastunwind_rule(uintptr_t pc, int *cfa_rbp, int32_t *cfa_off, int32_t *rbp_save);

#endif
