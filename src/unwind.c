/*
 * unwind.c - stack capture with libunwind. See unwind.h.
 */
#include "unwind.h"

#include "options.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

/* heaptap's own executable ranges when it is a shared object (empty when it
 * was linked into the program, where such a range would cover the program's
 * own code too). */
static uintptr_t own_lo[4], own_hi[4];
static unsigned own_n;

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uintptr_t me = (uintptr_t)arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (me < lo || me >= lo + ph->p_memsz)
			continue;
		/* Found the module containing this code. The main program has an
		 * empty name: then heaptap is linked in and no range is used. */
		if (!info->dlpi_name || !info->dlpi_name[0])
			return 1;
		for (int j = 0; j < info->dlpi_phnum && own_n < 4; j++) {
			const ElfW(Phdr) *q = &info->dlpi_phdr[j];
			if (q->p_type == PT_LOAD && (q->p_flags & PF_X)) {
				own_lo[own_n] = info->dlpi_addr + q->p_vaddr;
				own_hi[own_n] = own_lo[own_n] + q->p_memsz;
				own_n++;
			}
		}
		return 1;
	}
	return 0;
}

static int is_own(uintptr_t ip)
{
	for (unsigned i = 0; i < own_n; i++)
		if (ip >= own_lo[i] && ip < own_hi[i])
			return 1;
	return 0;
}

int ht_unwind_init(void)
{
	/* Per-thread caches: no global lock shared by unwinding threads. */
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
	own_n = 0;
	dl_iterate_phdr(find_self, (void *)(uintptr_t)&ht_unwind_init);
	/* The first unwind sets up libunwind's state; do it now, inside
	 * heaptap, rather than in the middle of someone's malloc. */
	void *buf[4];
	unw_backtrace(buf, 4);
	return 0;
}

unsigned ht_unwind_capture(uintptr_t *out, unsigned max, uintptr_t ra)
{
	void *buf[HT_MAX_DEPTH + 16];
	if (max > HT_MAX_DEPTH)
		max = HT_MAX_DEPTH;
	int n = unw_backtrace(buf, (int)(max + 16));
	if (n <= 0)
		return 0;
	int start = -1;
	/* The wrapper's return address is the first frame we keep. Only look in
	 * the first few frames: deeper matches would be recursion. */
	for (int i = 0; i < n && i < 16; i++) {
		if ((uintptr_t)buf[i] == ra) {
			start = i;
			break;
		}
	}
	if (start < 0) {
		start = 0;
		while (start < n && is_own((uintptr_t)buf[start]))
			start++;
	}
	unsigned d = 0;
	for (int i = start; i < n && d < max; i++) {
		if (!buf[i])
			break;
		out[d++] = (uintptr_t)buf[i];
	}
	return d;
}

void ht_unwind_flush(void)
{
	unw_flush_cache(unw_local_addr_space, 0, 0);
}
