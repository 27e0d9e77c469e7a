/*
 * symbolize.h - function names and file:line for addresses, with elfutils.
 *
 * One ht_symbolizer lives for one dump. Modules are identified by a small index the
 * caller chooses (0..nmodules-1, e.g. its mapping table index) and described
 * by an ht_module (path and load bias); each is opened lazily, in its own
 * Dwfl, the first time an address in it is looked up, so a module that was
 * unloaded and one now loaded at the same address never collide. Nothing is
 * fetched over the network (debuginfod is never consulted); separate debug
 * files are found under /usr/lib/debug/.build-id. ht_symbolize_close() ends every
 * Dwfl, so no file descriptor stays open after a dump.
 */
#ifndef HT_SYMBOLIZE_H
#define HT_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "maps.h"

struct ht_symbolizer;

struct ht_symbolize_frame {
	const char *func; /* symbol name, or NULL */
	const char *file; /* source file, or NULL */
	int line;         /* 0 when unknown */
};

/* 0 or -ENOMEM. */
int ht_symbolize_open(struct ht_symbolizer **out, size_t nmodules);

/* Describe addr (an address inside module index key, already adjusted to
 * point into the call instruction, i.e. return address - 1). Strings stay
 * valid until ht_symbolize_close. Returns 0 when a function name was found,
 * -ENOENT otherwise (f is then partly or wholly empty). */
int ht_symbolize_lookup(struct ht_symbolizer *s, size_t key, const struct ht_module *m,
                        uintptr_t addr, struct ht_symbolize_frame *f);

/* Release everything, closing all files. NULL is fine. */
void ht_symbolize_close(struct ht_symbolizer *s);

#endif
