/*
 * maps.h - the process's executable mappings, with load bias and GNU build ID.
 *
 * Read from /proc/self/maps with open/read into ht_mem memory (no stdio, no
 * malloc). Only executable mappings are kept, in address order; " (deleted)"
 * is trimmed from names. The build ID and load bias come from the ELF headers
 * in memory when the file's offset-0 mapping is readable, else from the file
 * on disk. One loaded module at a time (ht_module_from_memory) is read here too.
 */
#ifndef HT_MAPS_H
#define HT_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A module heaptap saw loaded (e.g. just before dlclose), kept so samples
 * taken inside it still get a mapping and names after it is gone. */
struct ht_module {
	uintptr_t start, limit; /* executable range in memory */
	uint64_t file_offset;   /* file offset that start corresponds to */
	uintptr_t bias;         /* load bias (runtime address - link-time address) */
	char path[256];
	uint8_t build_id[32];
	uint8_t build_id_len;
};

struct ht_mapping {
	struct ht_module m; /* start, limit, file_offset, bias, path, build ID */
	bool path_ok;       /* m.path is a whole, real file path (not [vdso], not cut short) */
	bool bias_ok;       /* m.bias was read from the ELF headers */
	bool deleted;       /* the name carried " (deleted)" */
};

struct ht_maps {
	struct ht_mapping *v; /* sorted by start, not overlapping */
	size_t n;
	size_t main; /* index of the main executable's first text mapping; n if none */
};

/* Read /proc/self/maps. 0 or a negative errno; on error maps is empty. */
int ht_maps_read(struct ht_maps *maps);

/* Parse maps text (the /proc/<pid>/maps format). exe is the main executable's
 * path (may be NULL). With read_elf, bias and build IDs are read from memory
 * or disk; without it (fixtures), bias = start - offset and no build IDs. */
int ht_maps_parse(struct ht_maps *maps, const char *text, size_t len, const char *exe,
                  bool read_elf);

void ht_maps_free(struct ht_maps *maps);

/* The mapping containing pc, or NULL. */
const struct ht_mapping *ht_maps_find(const struct ht_maps *maps, uintptr_t pc);

/* GNU build ID of the ELF file at path, into id (up to cap bytes).
 * Returns its length, or a negative errno (-ENOENT: the file has none). */
int ht_maps_build_id_file(const char *path, uint8_t *id, size_t cap);

/* Read the executable range of one loaded module (e.g. from dlinfo's
 * link_map) from memory into m. Used by the dlclose hook; must not allocate
 * through malloc. Returns 0 or a negative errno. */
int ht_module_from_memory(const char *path, uintptr_t bias, struct ht_module *m);

/* Lowercase hex of id into out (2n+1 bytes); returns out. */
char *ht_maps_hex(const uint8_t *id, size_t n, char *out);

#endif
