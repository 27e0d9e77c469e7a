/*
 * loader.h - libraries that go away: what heaptap must do around dlclose.
 *
 * Before a library is unloaded, its mapping and build ID are noted (so
 * samples taken inside it keep their names in every later dump) and the
 * samples' stacks inside it are retired; after, libunwind's cached unwind
 * info and heaptap's known-readable pages are forgotten. The noted modules
 * form a list that only grows: retired stacks refer to them by index.
 */
#ifndef HT_LOADER_H
#define HT_LOADER_H

#include <stddef.h>

struct ht_module;

/* Around the real dlclose(handle), on the calling thread. */
void ht_loader_before_dlclose(void *handle);
void ht_loader_after_dlclose(void);

/* Note a module about to go away: its index, or -1 (list full). */
int ht_loader_note_gone(const struct ht_module *m);

/* A copy of the list in heaptap's memory (*out NULL when empty); the
 * caller frees it with ht_mem_free. */
void ht_loader_gone_copy(struct ht_module **out, size_t *n);

/* Resident bytes of the list's static array (for the profile comments). */
size_t ht_loader_resident(void);

/* Fork: the list's lock is held across fork() so the child's copy is whole. */
void ht_loader_atfork_prepare(void);
void ht_loader_atfork_parent(void);
void ht_loader_atfork_child(void);

#endif
