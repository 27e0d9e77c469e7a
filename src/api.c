/*
 * api.c - the public heaptap_* functions (include/heaptap.h).
 *
 * They behave the same whether heaptap was preloaded or linked: each makes
 * sure heaptap is initialised and then uses the same engine paths the signal
 * and timer use. None sets errno; all return 0 or a negative errno.
 */
#include <heaptap.h>

#include "addrset.h"
#include "agg.h"
#include "core.h"
#include "dump.h"
#include "mem.h"
#include "thread.h"
#include "tls.h"
#include "track.h"

#include <errno.h>
#include <string.h>

#define API __attribute__((visibility("default")))

static int ready(void)
{
	if (!ht_track_recover(&ht_tls))
		return -EDEADLK; /* called from inside heaptap: a signal handler */
	int st = ht_init();
	if (st == HT_READY)
		return 0;
	return st == HT_INERT ? -ENOTSUP : -EAGAIN;
}

API unsigned heaptap_version(void)
{
	return HEAPTAP_VERSION_HEX;
}

API const char *heaptap_version_string(void)
{
	return HEAPTAP_VERSION_STRING;
}

API int heaptap_dump(void)
{
	int r = ready();
	return r ? r : ht_dump_files();
}

API int heaptap_write(int fd, enum heaptap_kind kind)
{
	int r = ready();
	return r ? r : ht_dump_to_fd(fd, (int)kind);
}

API int heaptap_write_path(const char *path, enum heaptap_kind kind)
{
	int r = ready();
	return r ? r : ht_dump_to_path(path, (int)kind);
}

API int heaptap_set_rate(uint64_t rate)
{
	int r = ready();
	if (r)
		return r;
	if (rate > ((uint64_t)1 << 40))
		return -EINVAL;
	atomic_store(&ht_core.rate, rate);
	return 0;
}

static int set_paused(bool paused)
{
	int r = ready();
	if (r == 0)
		atomic_store(&ht_core.paused, paused);
	return r;
}

API int heaptap_pause(void)
{
	return set_paused(true);
}

API int heaptap_resume(void)
{
	return set_paused(false);
}

API int heaptap_stats(struct heaptap_stats *out, size_t size)
{
	if (!out)
		return -EINVAL;
	int r = ready();
	if (r)
		return r;
	struct ht_tls *t = &ht_tls;
	struct heaptap_stats s;
	memset(&s, 0, sizeof(s));
	ht_busy_enter(t);
	struct ht_agg_totals tot;
	uint64_t samples = atomic_load(&ht_core.samples_reaped);
	int64_t live = 0, unjoined = 0;
	struct ht_thread_row *rows = NULL;
	size_t nrows = 0;
	ht_agg_lock();
	ht_agg_drain_all();
	ht_agg_totals(&tot);
	for (struct ht_thread *th = atomic_load(&ht_threads); th; th = atomic_load(&th->next))
		samples += th->nsamples;
	if (ht_thread_rows(&rows, &nrows, &live, &unjoined) == 0)
		ht_mem_free(rows);
	ht_agg_unlock();
	ht_busy_exit(t);
	s.rate = atomic_load(&ht_core.rate);
	s.samples = samples;
	s.live_samples = tot.live_samples;
	s.est_live_bytes = (uint64_t)(tot.live_bytes + 0.5);
	s.dropped_samples = atomic_load(&ht_core.dropped_samples);
	s.dropped_events = atomic_load(&ht_core.dropped_events);
	s.live_threads = (uint64_t)live;
	s.threads_created = atomic_load(&ht_threads_created);
	s.dumps = atomic_load(&ht_core.dumps);
	s.dump_failures = atomic_load(&ht_core.dump_failures);
	s.own_bytes = ht_mem_in_use();
	s.paused = atomic_load(&ht_core.paused) ? 1 : 0;
	s.resident_bytes = ht_dump_own_resident();
	memcpy(out, &s, size < sizeof(s) ? size : sizeof(s));
	return 0;
}

/* One list gives both the messages and the errors heaptap returns. */
#define HT_ERRORS(X)                                                                               \
	X(EINVAL, "invalid argument")                                                              \
	X(ENOMEM, "heaptap is out of its own memory")                                              \
	X(ENOTSUP, "heaptap is not active in this process (set-uid, or no memory of its own)")     \
	X(EAGAIN, "heaptap is still starting up")                                                  \
	X(EBADF, "bad file descriptor")                                                            \
	X(EEXIST, "a file with the profile's name already exists")                                 \
	X(ENOSPC, "no space left on the device")                                                   \
	X(EACCES, "permission denied")                                                             \
	X(ENOENT, "no such file or directory")                                                     \
	X(EPIPE, "the reader of the pipe or socket went away")                                     \
	X(ENOSYS, "heaptap is not loaded in this process")

API const char *heaptap_strerror(int err)
{
	if (err == 0)
		return "success";
	switch (err < 0 ? -err : err) {
#define HT_ERR_CASE(code, text)                                                                    \
	case code:                                                                                 \
		return text;
		HT_ERRORS(HT_ERR_CASE)
#undef HT_ERR_CASE
	default: {
		const char *d = strerrordesc_np(err < 0 ? -err : err);
		return d ? d : "unknown error";
	}
	}
}
