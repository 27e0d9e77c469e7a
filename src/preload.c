/*
 * preload.c - the interposed symbols, and nothing else.
 *
 * Each allocation wrapper is the fast path: subtract the request from the
 * thread's byte countdown and, while it stays above zero, tail-call the next
 * definition. Everything else (start-up, heaptap's own allocations, taking a
 * sample) is behind that one branch in track.c. free() first asks whether the
 * pointer is heaptap's own (two compares), then whether it might be sampled
 * (one byte), then forwards. Each wrapper behaves exactly like the function
 * it wraps: same result, same errno, same handling of NULL, 0 and overflow,
 * because the real function does the work and heaptap never re-validates.
 */
#include "track.h"

#include "addrset.h"
#include "mem.h"
#include "real.h"
#include "tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define EXPORT      __attribute__((visibility("default")))
#define SLOW        __attribute__((noinline, cold))
#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RA()        ((uintptr_t)__builtin_return_address(0))
/* The slow path's own frame: the wrappers jump to their slow path, so its
 * return address is the program's (ht_unwind_capture checks that it is). */
#define FP() ((uintptr_t)__builtin_frame_address(0))

/* Countdown step: true when this request reaches a sample point (or the
 * thread is busy). Unsigned arithmetic: no overflow, sign tells. */
static inline int hit(struct ht_tls *t, size_t n)
{
	uint64_t r = (uint64_t)t->countdown - (uint64_t)n;
	t->countdown = (int64_t)r;
	return (int64_t)r <= 0;
}

static void *internal_result(void *p)
{
	if (!p)
		errno = ENOMEM;
	return p;
}

/* ------------------------------------------------------------------ malloc */

static SLOW void *malloc_slow(size_t n, uintptr_t ra)
{
	struct ht_tls *t = &ht_tls;
	if (ht_track_enter(t) == HT_MODE_INTERNAL)
		return internal_result(ht_mem_alloc(n));
	void *p = ht_real.malloc(n);
	ht_track_alloc(t, p, n, ra, FP());
	return p;
}

EXPORT void *malloc(size_t n)
{
	if (LIKELY(!hit(&ht_tls, n)))
		return ht_real.malloc(n);
	return malloc_slow(n, RA());
}

/* -------------------------------------------------------------------- free */

static SLOW void free_slow(void *p)
{
	uint64_t id;
	if (ht_track_forget(p, &id))
		ht_track_free_event(id);
}

static inline int before_free(void *p)
{
	if (UNLIKELY(ht_mem_owns(p))) {
		ht_mem_free(p);
		return 1;
	}
	if (UNLIKELY(ht_addrset_maybe(p)) && p)
		free_slow(p);
	return 0;
}

EXPORT void free(void *p)
{
	if (before_free(p))
		return;
	ht_real.free(p);
}

/* glibc 2.43 (C23). Forward to the next definition where there is one. */
EXPORT void free_sized(void *p, size_t n)
{
	if (before_free(p))
		return;
	if (ht_real.free_sized)
		ht_real.free_sized(p, n);
	else
		ht_real.free(p);
}

EXPORT void free_aligned_sized(void *p, size_t align, size_t n)
{
	if (before_free(p))
		return;
	if (ht_real.free_aligned_sized)
		ht_real.free_aligned_sized(p, align, n);
	else
		ht_real.free(p);
}

/* ------------------------------------------------------------------ calloc */

static SLOW void *calloc_slow(size_t n, size_t s, size_t total, uintptr_t ra)
{
	struct ht_tls *t = &ht_tls;
	if (ht_track_enter(t) == HT_MODE_INTERNAL)
		return internal_result(ht_mem_calloc(n, s));
	void *p = ht_real.calloc(n, s);
	ht_track_alloc(t, p, total, ra, FP());
	return p;
}

EXPORT void *calloc(size_t n, size_t s)
{
	size_t total;
	if (UNLIKELY(__builtin_mul_overflow(n, s, &total))) {
		if (ht_tls.busy)
			return internal_result(NULL);
		return ht_real.calloc(n, s); /* fails with ENOMEM, as it should */
	}
	if (LIKELY(!hit(&ht_tls, total)))
		return ht_real.calloc(n, s);
	return calloc_slow(n, s, total, RA());
}

/* ----------------------------------------------------------------- realloc */

/* realloc and reallocarray: the old block is taken out of the sampled set
 * before the real call (so its address, once freed, can be sampled again by
 * another thread without confusion) and put back if the call fails. glibc's
 * realloc(p, 0) frees p and returns NULL: that is a free. */
static void *realloc_common(void *p, size_t n, uintptr_t ra)
{
	if (UNLIKELY(ht_mem_owns(p))) {
		void *q = ht_mem_realloc(p, n);
		if (!q && n)
			errno = ENOMEM;
		return q;
	}
	uint64_t id = 0;
	int had = 0;
	if (p && UNLIKELY(ht_addrset_maybe(p)))
		had = ht_track_forget(p, &id);
	struct ht_tls *t = &ht_tls;
	void *q;
	if (LIKELY(!hit(t, n))) {
		q = ht_real.realloc(p, n);
	} else {
		int mode = ht_track_enter(t);
		if (mode == HT_MODE_INTERNAL && !p)
			return internal_result(ht_mem_alloc(n));
		q = ht_real.realloc(p, n);
		if (mode == HT_MODE_FORWARD)
			ht_track_alloc(t, q, n, ra, FP());
	}
	if (UNLIKELY(had)) {
		if (q || n == 0)
			ht_track_free_event(id);
		else
			ht_track_restore(p, id);
	}
	return q;
}

EXPORT void *realloc(void *p, size_t n)
{
	return realloc_common(p, n, RA());
}

/* glibc's reallocarray is an overflow check and a call to realloc through
 * its PLT, which would reach the wrapper above a second time: the check is
 * made here and the realloc path taken once. */
EXPORT void *reallocarray(void *p, size_t n, size_t s)
{
	size_t total;
	if (UNLIKELY(__builtin_mul_overflow(n, s, &total))) {
		errno = ENOMEM;
		return NULL; /* glibc: overflow leaves the block untouched */
	}
	return realloc_common(p, total, RA());
}

/* ------------------------------------------------------- aligned families */

static SLOW int posix_memalign_slow(void **pp, size_t a, size_t n, uintptr_t ra)
{
	struct ht_tls *t = &ht_tls;
	if (ht_track_enter(t) == HT_MODE_INTERNAL) {
		if (a < sizeof(void *) || (a & (a - 1)))
			return EINVAL;
		void *p = ht_mem_memalign(a, n);
		if (!p)
			return ENOMEM;
		*pp = p;
		return 0;
	}
	int r = ht_real.posix_memalign(pp, a, n);
	ht_track_alloc(t, r == 0 ? *pp : NULL, n, ra, FP());
	return r;
}

EXPORT int posix_memalign(void **pp, size_t a, size_t n)
{
	if (LIKELY(!hit(&ht_tls, n)))
		return ht_real.posix_memalign(pp, a, n);
	return posix_memalign_slow(pp, a, n, RA());
}

enum { K_ALIGNED, K_MEMALIGN, K_VALLOC, K_PVALLOC };

static SLOW void *aligned_slow(int kind, size_t a, size_t n, uintptr_t ra)
{
	struct ht_tls *t = &ht_tls;
	if (ht_track_enter(t) == HT_MODE_INTERNAL) {
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		if (kind == K_VALLOC || kind == K_PVALLOC)
			a = page;
		if (kind == K_PVALLOC)
			n = (n + page - 1) & ~(page - 1);
		/* glibc rounds a non-power-of-two alignment up. */
		while (a & (a - 1))
			a = (a | (a - 1)) + 1;
		return internal_result(ht_mem_memalign(a, n));
	}
	void *p;
	switch (kind) {
	case K_ALIGNED:
		p = ht_real.aligned_alloc(a, n);
		break;
	case K_MEMALIGN:
		p = ht_real.memalign(a, n);
		break;
	case K_VALLOC:
		p = ht_real.valloc(n);
		break;
	default:
		p = ht_real.pvalloc(n);
		break;
	}
	ht_track_alloc(t, p, n, ra, FP());
	return p;
}

EXPORT void *aligned_alloc(size_t a, size_t n)
{
	if (LIKELY(!hit(&ht_tls, n)))
		return ht_real.aligned_alloc(a, n);
	return aligned_slow(K_ALIGNED, a, n, RA());
}

EXPORT void *memalign(size_t a, size_t n)
{
	if (LIKELY(!hit(&ht_tls, n)))
		return ht_real.memalign(a, n);
	return aligned_slow(K_MEMALIGN, a, n, RA());
}

EXPORT void *valloc(size_t n)
{
	if (LIKELY(!hit(&ht_tls, n)))
		return ht_real.valloc(n);
	return aligned_slow(K_VALLOC, 0, n, RA());
}

EXPORT void *pvalloc(size_t n)
{
	if (LIKELY(!hit(&ht_tls, n)))
		return ht_real.pvalloc(n);
	return aligned_slow(K_PVALLOC, 0, n, RA());
}

EXPORT size_t malloc_usable_size(void *p)
{
	if (UNLIKELY(ht_mem_owns(p)))
		return ht_mem_usable_size(p);
	if (UNLIKELY(!ht_real.malloc_usable_size)) {
		ht_track_start();
		if (!ht_real.malloc_usable_size)
			return 0;
	}
	return ht_real.malloc_usable_size(p);
}

/* ----------------------------------------------------------------- threads */

EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (UNLIKELY(!ht_real.pthread_create)) {
		ht_track_start();
		if (!ht_real.pthread_create)
			return EAGAIN;
	}
	return ht_track_pthread_create(ht_real.pthread_create, th, attr, fn, arg, RA());
}

/* A thread that ended is only gone once joined or detached: until then glibc
 * keeps its stack, and the thread profile counts it as "unjoined". */
static int settled(int r, pthread_t th)
{
	if (r == 0)
		ht_track_thread_settled(th);
	return r;
}

#define NEXT_OR(fn, fail)                                                                          \
	if (UNLIKELY(!ht_real.fn)) {                                                               \
		ht_track_start();                                                                  \
		if (!ht_real.fn)                                                                   \
			return fail;                                                               \
	}

EXPORT int pthread_join(pthread_t th, void **ret)
{
	NEXT_OR(pthread_join, ENOSYS);
	return settled(ht_real.pthread_join(th, ret), th);
}

EXPORT int pthread_tryjoin_np(pthread_t th, void **ret)
{
	NEXT_OR(pthread_tryjoin_np, ENOSYS);
	return settled(ht_real.pthread_tryjoin_np(th, ret), th);
}

EXPORT int pthread_timedjoin_np(pthread_t th, void **ret, const struct timespec *abstime)
{
	NEXT_OR(pthread_timedjoin_np, ENOSYS);
	return settled(ht_real.pthread_timedjoin_np(th, ret, abstime), th);
}

EXPORT int pthread_clockjoin_np(pthread_t th, void **ret, clockid_t clock,
                                const struct timespec *abstime)
{
	NEXT_OR(pthread_clockjoin_np, ENOSYS);
	return settled(ht_real.pthread_clockjoin_np(th, ret, clock, abstime), th);
}

EXPORT int pthread_detach(pthread_t th)
{
	NEXT_OR(pthread_detach, ENOSYS);
	return settled(ht_real.pthread_detach(th), th);
}

/* ------------------------------------------------------------------ loader */

EXPORT int dlclose(void *handle)
{
	if (UNLIKELY(!ht_real.dlclose)) {
		ht_track_start();
		if (!ht_real.dlclose)
			return -1;
	}
	ht_track_dlclose_before(handle);
	int r = ht_real.dlclose(handle);
	ht_track_dlclose_after();
	return r;
}

/* --------------------------------------------------------------------- fds */

/* libunwind opens a pipe at its one-time set-up (to check that memory is
 * readable) and keeps it for the life of the process: two fds the program
 * never opened. heaptap reads memory for libunwind without it (unwind.c), so
 * the pipe is refused when heaptap's own set-up asks for it. */
EXPORT int pipe2(int fds[2], int flags)
{
	if (UNLIKELY(!ht_real.pipe2)) {
		ht_track_start();
		if (!ht_real.pipe2) {
			errno = ENOSYS;
			return -1;
		}
	}
	if (UNLIKELY(ht_tls.busy) && ht_track_refuses_pipe()) {
		errno = EMFILE;
		return -1;
	}
	return ht_real.pipe2(fds, flags);
}

/* ----------------------------------------------------------------- signals */

/* The dump signal's disposition is shown to the program as it would be
 * without heaptap (signal.c); every other signal goes straight through. */
static int resolve_signals(void)
{
	if (UNLIKELY(!ht_real.sigaction)) {
		ht_track_start();
		if (!ht_real.sigaction) {
			errno = ENOSYS;
			return -1;
		}
	}
	return 0;
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (resolve_signals() != 0)
		return -1;
	if (UNLIKELY(ht_track_signal_watched(sig)))
		return ht_track_sigaction(sig, act, old);
	return ht_real.sigaction(sig, act, old);
}

typedef __sighandler_t (*set_fn)(int, __sighandler_t);

/* signal(), sysv_signal(), sigset(): heaptap's view for the dump signal,
 * the next definition for every other. */
static __sighandler_t set_disposition(int sig, __sighandler_t h, set_fn *next, set_fn ours)
{
	if (resolve_signals() != 0 || !*next)
		return SIG_ERR;
	if (UNLIKELY(ht_track_signal_watched(sig)))
		return ours(sig, h);
	return (*next)(sig, h);
}

EXPORT __sighandler_t signal(int sig, __sighandler_t handler)
{
	return set_disposition(sig, handler, &ht_real.signal, ht_track_signal);
}

EXPORT __sighandler_t bsd_signal(int sig, __sighandler_t handler)
{
	return set_disposition(sig, handler, &ht_real.signal, ht_track_signal);
}

EXPORT __sighandler_t sysv_signal(int sig, __sighandler_t handler)
{
	return set_disposition(sig, handler, &ht_real.sysv_signal, ht_track_sysv_signal);
}

EXPORT __sighandler_t __sysv_signal(int sig, __sighandler_t handler)
{
	return set_disposition(sig, handler, &ht_real.sysv_signal, ht_track_sysv_signal);
}

EXPORT __sighandler_t sigset(int sig, __sighandler_t disp)
{
	return set_disposition(sig, disp, &ht_real.sigset, ht_track_sigset);
}

/* ------------------------------------------------------------- namespaces */

/* Joining or making a user namespace needs a single-threaded caller; heaptap's
 * own thread must not be what makes the program fail (unshare --user). When
 * the call fails with EINVAL while that thread runs, it is stopped, the call
 * made again, and the thread started again. */
static long call_unshare(long flags, long unused)
{
	(void)unused;
	return ht_real.unshare((int)flags);
}

static long call_setns(long fd, long nstype)
{
	return ht_real.setns((int)fd, (int)nstype);
}

EXPORT int unshare(int flags)
{
	if (UNLIKELY(!ht_real.unshare)) {
		ht_track_start();
		if (!ht_real.unshare) {
			errno = ENOSYS;
			return -1;
		}
	}
	int r = ht_real.unshare(flags);
	if (r == -1 && errno == EINVAL)
		r = (int)ht_track_call_alone(call_unshare, flags, 0);
	return r;
}

EXPORT int setns(int fd, int nstype)
{
	if (UNLIKELY(!ht_real.setns)) {
		ht_track_start();
		if (!ht_real.setns) {
			errno = ENOSYS;
			return -1;
		}
	}
	int r = ht_real.setns(fd, nstype);
	if (r == -1 && errno == EINVAL)
		r = (int)ht_track_call_alone(call_setns, fd, nstype);
	return r;
}
