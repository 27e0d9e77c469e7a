/*
 * loader.c - libraries that go away. See loader.h.
 *
 * libunwind 1.6 does not watch dlclose on x86-64, so its cached unwind info
 * for an unloaded library would be used for whatever is mapped there next;
 * heaptap flushes it, and retires the rules of its own unwinder
 * (fastunwind.c) before and after the unload. The list of gone modules is
 * small, rarely written (once per distinct library unloaded) and read once
 * per dump, so a mutex guards it.
 */
#include "loader.h"

#include "agg.h"
#include "core.h"
#include "fastunwind.h"
#include "mem.h"
#include "profile.h"
#include "tls.h"
#include "track.h"
#include "unwind.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <string.h>

#define MAX_GONE 1024
static struct ht_module gone[MAX_GONE];
static size_t ngone;
static pthread_mutex_t gone_lock = PTHREAD_MUTEX_INITIALIZER;

/* Indexes stay valid for the life of the process (retired stacks point at
 * them), so the list only grows; past MAX_GONE new modules are not noted. */
int ht_loader_note_gone(const struct ht_module *m)
{
	pthread_mutex_lock(&gone_lock);
	size_t i;
	for (i = 0; i < ngone; i++)
		if (gone[i].start == m->start && gone[i].limit == m->limit &&
		    strcmp(gone[i].path, m->path) == 0)
			break;
	if (i == ngone && ngone < MAX_GONE)
		gone[ngone++] = *m;
	pthread_mutex_unlock(&gone_lock);
	return i < MAX_GONE ? (int)i : -1;
}

void ht_loader_gone_copy(struct ht_module **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&gone_lock);
	if (ngone && (*out = ht_mem_alloc(ngone * sizeof(gone[0])))) {
		memcpy(*out, gone, ngone * sizeof(gone[0]));
		*n = ngone;
	}
	pthread_mutex_unlock(&gone_lock);
}

size_t ht_loader_resident(void)
{
	/* A static array, touched only as modules are noted. */
	return ht_mem_resident_range(gone, sizeof(gone));
}

void ht_loader_before_dlclose(void *handle)
{
	struct ht_tls *t = &ht_tls;
	/* dlclose is declared nonnull, but programs do pass NULL (it fails
	 * with an error): never hand NULL to dlinfo. */
	void *volatile h = handle;
	if (atomic_load(&ht_core.state) != HT_READY || !h || !ht_track_recover(t))
		return;
	/* Rules cached from here on are retired again after the call (see
	 * ht_loader_after_dlclose); this retires those cached so far, so that
	 * only a capture racing with the unload itself could see a stale one. */
	ht_fastunwind_forget();
	int saved = errno;
	ht_busy_enter(t);
	struct link_map *lm = NULL;
	if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0]) {
		struct ht_module m;
		int gi;
		if (ht_module_from_memory(lm->l_name, lm->l_addr, &m) == 0 &&
		    (gi = ht_loader_note_gone(&m)) >= 0) {
			ht_agg_lock();
			ht_agg_retire_module(m.start, m.limit, gi);
			ht_agg_unlock();
		}
	}
	ht_busy_exit(t);
	errno = saved;
}

void ht_loader_after_dlclose(void)
{
	struct ht_tls *t = &ht_tls;
	if (atomic_load(&ht_core.state) != HT_READY)
		return;
	int saved = errno;
	ht_busy_enter(t);
	ht_fastunwind_forget();
	ht_unwind_flush();
	ht_busy_exit(t);
	errno = saved;
}

void ht_loader_atfork_prepare(void)
{
	pthread_mutex_lock(&gone_lock);
}

void ht_loader_atfork_parent(void)
{
	pthread_mutex_unlock(&gone_lock);
}

void ht_loader_atfork_child(void)
{
	pthread_mutex_init(&gone_lock, NULL);
}
