/*
 * rel_frames.h - what the two halves of rel_frames (rel_frames.c and
 * rel_frames_cxx.cpp) call of each other. Plain C names on both sides.
 */
#ifndef REL_FRAMES_H
#define REL_FRAMES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* rel_frames.c */
void fr_got(const char *fn, void *p, size_t n);
void fr_lost(const char *fn, size_t n);
void fr_gate_wait(void);

/* rel_frames_cxx.cpp */
void cx_allocs(void);
void cx_spawn_std_thread(void);
void cx_join_std_thread(void);

#ifdef __cplusplus
}
#endif
#endif
