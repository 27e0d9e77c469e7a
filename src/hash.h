/*
 * hash.h - uthash, configured for heaptap: its tables live in heaptap's own
 * memory, running out of it is not fatal (HASH_NONFATAL_OOM: the insert is
 * skipped), and keys, always whole 64-bit words (ids, addresses, stacks),
 * are hashed a word at a time.
 */
#ifndef HT_HASH_H
#define HT_HASH_H

#include "mem.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HASH_NONFATAL_OOM    1
#define uthash_malloc(sz)    ht_mem_alloc(sz)
#define uthash_free(ptr, sz) ht_mem_free(ptr)
/* A word-at-a-time multiplicative hash is several times cheaper than
 * uthash's byte-wise default, and the flusher's cost per event is what
 * bounds exact (rate 1) profiling. */
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = ht_hash_words((keyptr), (keylen)))
static inline unsigned ht_hash_words(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 0x243F6A8885A308D3ull ^ len;
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x9E3779B97F4A7C15ull;
		h ^= h >> 29;
	}
	h *= 0xBF58476D1CE4E5B9ull;
	return (unsigned)(h ^ (h >> 32));
}
#include <uthash.h>

#endif
