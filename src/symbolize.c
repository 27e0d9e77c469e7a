/*
 * symbolize.c - names and file:line for a dump's addresses, through libdwfl.
 *
 * Owns the per-dump symbolizer: one Dwfl per module, reported by hand with
 * dwfl_report_elf at the module's load bias (so /proc/self/maps modules and
 * "gone" modules can overlap in address), opened lazily and ended together
 * in ht_symbolize_close. Function names come from the module's symbol table, which
 * is sorted once per module here: dwfl_module_addrname scans the whole table
 * for every address (seconds for a few thousand addresses in libc). File and
 * line come from dwfl_module_getsrc. Separate debug info is looked up by build
 * ID under /usr/lib/debug only: the standard elfutils callback would call
 * debuginfod over the network when DEBUGINFOD_URLS is set, which a profiler
 * inside a service must never do. libdw allocates with malloc; while heaptap
 * is preloaded the shim routes those allocations to ht_mem.
 */
#include "symbolize.h"

#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <elfutils/libdwfl.h>

enum { MOD_UNTRIED = 0, MOD_OK = 1, MOD_FAILED = -1 };

/* A module's function symbols, sorted by address. */
struct fsym {
	uintptr_t addr, size;
	const char *name; /* owned by the Dwfl */
	int rank;         /* binding preference: global > weak > local */
};

struct sym_mod {
	Dwfl *dwfl;
	Dwfl_Module *mod;
	int state;
	struct fsym *syms;
	size_t nsyms;
};

struct ht_symbolizer {
	size_t n;
	struct sym_mod mods[];
};

static int no_find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                       char **file_name, Elf **elfp)
{
	(void)mod, (void)userdata, (void)modname, (void)base, (void)file_name, (void)elfp;
	return -1;
}

/* Separate debug info by build ID: /usr/lib/debug/.build-id/ab/cdef....debug */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                          const char *file_name, const char *debuglink_file,
                          GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	(void)userdata, (void)modname, (void)base, (void)file_name, (void)debuglink_file;
	(void)debuglink_crc, (void)debuginfo_file_name;
	const unsigned char *bits;
	GElf_Addr vaddr;
	int n = dwfl_module_build_id(mod, &bits, &vaddr);
	if (n < 2 || n > 64)
		return -1;
	char path[64 + 2 * 64 + 16];
	size_t k = (size_t)snprintf(path, sizeof(path), "/usr/lib/debug/.build-id/%02x/", bits[0]);
	for (int i = 1; i < n; i++)
		k += (size_t)snprintf(path + k, sizeof(path) - k, "%02x", bits[i]);
	snprintf(path + k, sizeof(path) - k, ".debug");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -1 : fd;
}

static const Dwfl_Callbacks callbacks = {
        .find_elf = no_find_elf,
        .find_debuginfo = find_debuginfo,
        .section_address = dwfl_offline_section_address,
};

int ht_symbolize_open(struct ht_symbolizer **out, size_t nmodules)
{
	struct ht_symbolizer *s = ht_mem_calloc(1, sizeof(*s) + nmodules * sizeof(s->mods[0]));
	if (!s)
		return -ENOMEM;
	s->n = nmodules;
	*out = s;
	return 0;
}

static bool fsym_less(const struct fsym *a, const struct fsym *b)
{
	if (a->addr != b->addr)
		return a->addr < b->addr;
	return a->rank > b->rank || (a->rank == b->rank && a->size > b->size);
}

static void sift_down(struct fsym *v, size_t i, size_t n)
{
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && fsym_less(&v[c], &v[c + 1]))
			c++;
		if (!fsym_less(&v[i], &v[c]))
			return;
		struct fsym t = v[i];
		v[i] = v[c];
		v[c] = t;
		i = c;
	}
}

/* Heapsort: no allocation, no recursion, O(n log n). */
static void fsym_sort(struct fsym *v, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(v, i, n);
	for (size_t end = n; end-- > 1;) {
		struct fsym t = v[0];
		v[0] = v[end];
		v[end] = t;
		sift_down(v, 0, end);
	}
}

/* Collect, sort and deduplicate (best binding first per address) the
 * module's function symbols. On failure the module simply has no names. */
static void load_symbols(struct sym_mod *sm)
{
	int n = dwfl_module_getsymtab(sm->mod);
	if (n <= 0)
		return;
	sm->syms = ht_mem_alloc((size_t)n * sizeof(*sm->syms));
	if (!sm->syms)
		return;
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		GElf_Sym sym;
		GElf_Addr addr;
		GElf_Word shndx;
		Elf *elf = NULL;
		const char *name =
		        dwfl_module_getsym_info(sm->mod, i, &sym, &addr, &shndx, &elf, NULL);
		int type = GELF_ST_TYPE(sym.st_info);
		if (!name || !*name || shndx == SHN_UNDEF ||
		    (type != STT_FUNC && type != STT_GNU_IFUNC))
			continue;
		if (sym.st_size == 0) {
			/* Sizeless (_init, hand-written assembly): it runs to the
			 * end of its section at most, as libdwfl assumes. */
			GElf_Shdr sh;
			Elf_Scn *scn = elf ? elf_getscn(elf, shndx) : NULL;
			if (!scn || !gelf_getshdr(scn, &sh) || sym.st_value < sh.sh_addr ||
			    sym.st_value >= sh.sh_addr + sh.sh_size)
				continue;
			sym.st_size = sh.sh_addr + sh.sh_size - sym.st_value;
		}
		int bind = GELF_ST_BIND(sym.st_info);
		sm->syms[k++] = (struct fsym){addr, sym.st_size, name,
		                              bind == STB_GLOBAL ? 2
		                              : bind == STB_WEAK ? 1
		                                                 : 0};
	}
	fsym_sort(sm->syms, k);
	size_t u = 0;
	for (size_t i = 0; i < k; i++)
		if (u == 0 || sm->syms[u - 1].addr != sm->syms[i].addr)
			sm->syms[u++] = sm->syms[i];
	sm->nsyms = u;
}

/* The function symbol containing addr, or NULL. */
static const char *find_symbol(const struct sym_mod *sm, uintptr_t addr)
{
	size_t lo = 0, hi = sm->nsyms;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sm->syms[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* lo - 1 is the last symbol starting at or below addr; a few earlier
	 * ones may still enclose it (nested or aliased ranges). */
	for (size_t i = lo, tries = 0; i-- > 0 && tries < 4; tries++) {
		const struct fsym *f = &sm->syms[i];
		if (addr - f->addr < f->size)
			return f->name;
	}
	return NULL;
}

static struct sym_mod *sym_mod_get(struct ht_symbolizer *s, size_t key, const struct ht_module *m)
{
	if (key >= s->n)
		return NULL;
	struct sym_mod *sm = &s->mods[key];
	if (sm->state == MOD_UNTRIED) {
		sm->state = MOD_FAILED;
		if (m->path[0] != '/')
			return NULL;
		sm->dwfl = dwfl_begin(&callbacks);
		if (!sm->dwfl)
			return NULL;
		dwfl_report_begin(sm->dwfl);
		sm->mod = dwfl_report_elf(sm->dwfl, m->path, m->path, -1, m->bias, true);
		if (dwfl_report_end(sm->dwfl, NULL, NULL) != 0 || !sm->mod) {
			dwfl_end(sm->dwfl);
			sm->dwfl = NULL;
			sm->mod = NULL;
			return NULL;
		}
		sm->state = MOD_OK;
		load_symbols(sm);
	}
	return sm->state == MOD_OK ? sm : NULL;
}

int ht_symbolize_lookup(struct ht_symbolizer *s, size_t key, const struct ht_module *m,
                        uintptr_t addr, struct ht_symbolize_frame *f)
{
	memset(f, 0, sizeof(*f));
	struct sym_mod *sm = sym_mod_get(s, key, m);
	if (!sm)
		return -ENOENT;
	f->func = find_symbol(sm, addr);
	Dwfl_Line *l = dwfl_module_getsrc(sm->mod, addr);
	if (l) {
		int line = 0;
		f->file = dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL);
		f->line = f->file ? line : 0;
	}
	return f->func ? 0 : -ENOENT;
}

void ht_symbolize_close(struct ht_symbolizer *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		if (s->mods[i].dwfl)
			dwfl_end(s->mods[i].dwfl);
		ht_mem_free(s->mods[i].syms);
	}
	ht_mem_free(s);
}
