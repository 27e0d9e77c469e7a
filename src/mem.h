/*
 * mem.h - heaptap's own memory.
 *
 * Everything heaptap keeps (tables, rings, thread records, zlib state, profile
 * buffers, and whatever libc/libdw/libunwind allocate while a thread is inside
 * heaptap) comes from one reserved virtual region, never from the allocator
 * the application uses. ht_mem_owns() is the cheap range check free() uses to
 * route such pointers back here. All functions are thread-safe and
 * async-signal-unsafe; none of them calls malloc.
 */
#ifndef HT_MEM_H
#define HT_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reserve the region. Idempotent; returns 0 or a negative errno. */
int ht_mem_init(void);

void *ht_mem_alloc(size_t size);            /* 16-byte aligned, NULL on failure */
void *ht_mem_calloc(size_t n, size_t size); /* zeroed; NULL on overflow/failure */
void *ht_mem_realloc(void *p, size_t size); /* realloc semantics; size 0 frees, returns NULL */
void *ht_mem_memalign(size_t align, size_t size);
void ht_mem_free(void *p); /* NULL is fine */
size_t ht_mem_usable_size(const void *p);

/* Give back to the kernel the pages of every small-class slab with no block
 * handed out, and those of freed runs kept resident for reuse until at most
 * `keep` bytes of them are left (after a dump, whose working memory would
 * otherwise stay resident). */
void ht_mem_trim(size_t keep);

/* Bytes currently handed out, for the profile comments. */
size_t ht_mem_in_use(void);

/* Resident bytes (in RAM, by mincore) of the pages that [p, p + len)
 * touches; nothing for a part that is not mapped. No allocation, no lock; a
 * syscall per 1024 pages: cheap enough for every dump. */
size_t ht_mem_resident_range(const void *p, size_t len);

/* Resident bytes of this allocator's memory: every slab ever opened (in
 * use, on a free list or kept dirty), its tables and the fallback arena. */
size_t ht_mem_resident(void);

extern uintptr_t ht_mem_lo, ht_mem_hi;
/* True when p was returned by ht_mem_*: a pointer heaptap owns. */
static inline bool ht_mem_owns(const void *p)
{
	return (uintptr_t)p - ht_mem_lo < ht_mem_hi - ht_mem_lo;
}

/* Fork child: any size class whose lock was held at fork time is abandoned. */
void ht_mem_atfork_child(void);

/* Release the locks the calling thread holds: its busy section was
 * abandoned (a siglongjmp out of a signal handler). */
void ht_mem_release_mine(void);

#endif
