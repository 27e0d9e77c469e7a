/*
 * flusher.c - the background thread, dump triggers, and writing dumps.
 * See flusher.h.
 *
 * Wake-ups go through one futex word: the signal handler, a full ring and a
 * dump request all bump it and FUTEX_WAKE, which is async-signal-safe and
 * needs no file descriptor. A dump takes the dump mutex (dumps never
 * overlap), drains and snapshots the tables under the aggregation lock, then
 * encodes and writes with that lock released, draining again now and then so
 * application threads never wait on a dump.
 */
#include "flusher.h"

#include "addrset.h"
#include "agg.h"
#include "core.h"
#include "log.h"
#include "mem.h"
#include "options.h"
#include "output.h"
#include "profile.h"
#include "real.h"
#include "thread.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <heaptap.h>
#include <linux/futex.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Atomic int ht_flusher_state;
static _Atomic bool flusher_known; /* its tid is noted as heaptap's own */
static int installed_sig;          /* the dump signal, while heaptap's handler is in place */
_Atomic bool ht_flusher_want;
static _Atomic uint32_t wake_word;
static _Atomic bool dump_requested;
static _Atomic bool stopping;
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned api_waiting; /* threads waiting for dump_lock in the API */

#define DRAIN_PERIOD_MS 50

/* ---------------------------------------------------------------- wake-ups */

void ht_flusher_kick(void)
{
	atomic_fetch_add_explicit(&wake_word, 1, memory_order_release);
	syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void wait_for_kick(uint32_t seen, uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	syscall(SYS_futex, &wake_word, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* When to start: once the program's constructors have run, at the first
 * slow-path allocation after a sample was taken or a dump was asked for, or
 * when the program creates a thread of its own (it is multithreaded then
 * anyway), and only if something needs a thread (the dump signal, an interval): samples do
 * not, since threads drain their own rings. With HEAPTAP_SIGNAL=none and no
 * interval heaptap never starts a thread (dumps come from heaptap_dump() or
 * at exit); a program that must stay single-threaded (unshare of a user
 * namespace, fork() from a signal handler) runs that way. */
bool ht_flusher_wanted(void)
{
	return atomic_load_explicit(&ht_flusher_want, memory_order_relaxed) &&
	       !ht_flusher_running() &&
	       atomic_load_explicit(&ht_core.ctor_done, memory_order_relaxed);
}

void ht_flusher_note_need(void)
{
	if (!atomic_load_explicit(&ht_flusher_want, memory_order_relaxed) &&
	    (installed_sig != 0 || ht_opt.interval_ms != 0))
		atomic_store_explicit(&ht_flusher_want, true, memory_order_relaxed);
}

/* ----------------------------------------------------------------- signals */

static _Atomic bool app_owns_logged;

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	atomic_store_explicit(&dump_requested, true, memory_order_relaxed);
	atomic_store_explicit(&ht_flusher_want, true, memory_order_relaxed);
	if (!ht_flusher_running()) {
		/* No flusher yet: make this thread's next allocation take the
		 * slow path, which starts it. */
		if (!ht_tls.busy)
			ht_tls.countdown = 0;
	}
	ht_flusher_kick();
	errno = saved;
}

static const char *sig_name(int sig, char *buf, size_t n)
{
	const char *abbrev = sigabbrev_np(sig);
	if (abbrev)
		snprintf(buf, n, "SIG%s", abbrev);
	else
		snprintf(buf, n, "signal %d", sig);
	return buf;
}

void ht_signal_setup(void)
{
	int sig = ht_opt.signal;
	if (sig <= 0)
		return;
	struct sigaction old;
	if (sigaction(sig, NULL, &old) != 0)
		return;
	char name[32];
	if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) {
		atomic_store(&app_owns_logged, true);
		ht_log("the program already handles %s; heaptap leaves it alone (set "
		       "HEAPTAP_SIGNAL "
		       "to another signal, or call heaptap_dump())",
		       sig_name(sig, name, sizeof(name)));
		return;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART | SA_ONSTACK; /* SA_ONSTACK: cgo requires it */
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) == 0)
		installed_sig = sig;
}

bool ht_signal_is_ours(int sig)
{
	return sig > 0 && sig == installed_sig;
}

void ht_signal_note_app_handler(int sig, const void *handler)
{
	if (!ht_signal_is_ours(sig) || handler == (const void *)on_signal ||
	    handler == (const void *)SIG_DFL)
		return;
	installed_sig = 0;
	bool expect = false;
	char name[32];
	if (atomic_compare_exchange_strong(&app_owns_logged, &expect, true))
		ht_log("the program installs its own %s handler; heaptap leaves it alone (set "
		       "HEAPTAP_SIGNAL to another signal, or call heaptap_dump())",
		       sig_name(sig, name, sizeof(name)));
}

/* ------------------------------------------------------------ gone modules */

#define MAX_GONE 1024
static struct ht_module gone[MAX_GONE];
static size_t ngone;
static pthread_mutex_t gone_lock = PTHREAD_MUTEX_INITIALIZER;

/* Indexes stay valid for the life of the process (retired stacks point at
 * them), so the list only grows; past MAX_GONE new modules are not noted. */
int ht_modules_note_gone(const struct ht_module *m)
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

/* ------------------------------------------------------------------- dumps */

static void drain_locked(void)
{
	ht_agg_lock();
	ht_agg_drain_all();
	ht_agg_unlock();
}

static void tick(void *arg)
{
	(void)arg;
	drain_locked();
}

static uint64_t read_rss(void)
{
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[128];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	uint64_t resident = 0;
	const char *p = buf;
	while (*p && *p != ' ')
		p++;
	while (*p == ' ')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		resident = resident * 10 + (uint64_t)(*p - '0');
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

#define NCOMMENTS 8
struct snapshot {
	struct ht_heap_row *heap;
	size_t nheap;
	struct ht_thread_row *threads;
	size_t nthreads;
	int64_t live_threads;
	char text[NCOMMENTS][160];
	const char *comments[NCOMMENTS];
	size_t ncomments;
	struct ht_module *gone;
	size_t ngone;
};

static void snapshot_free(struct snapshot *s)
{
	ht_mem_free(s->heap);
	ht_mem_free(s->threads);
	ht_mem_free(s->gone);
}

static int snapshot_take(struct snapshot *s, bool want_heap)
{
	memset(s, 0, sizeof(*s));
	struct ht_agg_totals tot;
	int r = 0;
	ht_agg_lock();
	ht_agg_drain_all();
	if (want_heap)
		r = ht_agg_heap_rows(&s->heap, &s->nheap);
	if (r == 0)
		r = ht_agg_thread_rows(&s->threads, &s->nthreads, &s->live_threads);
	ht_agg_totals(&tot);
	ht_agg_unlock();
	if (r != 0) {
		snapshot_free(s);
		return r;
	}
	pthread_mutex_lock(&gone_lock);
	if (ngone && (s->gone = ht_mem_alloc(ngone * sizeof(gone[0])))) {
		memcpy(s->gone, gone, ngone * sizeof(gone[0]));
		s->ngone = ngone;
	}
	pthread_mutex_unlock(&gone_lock);

	/* Process figures, so a leak can be told from allocator retention. */
	struct mallinfo2 mi = mallinfo2();
	uint64_t rate = atomic_load(&ht_core.rate);
	size_t k = 0;
	snprintf(s->text[k++], sizeof(s->text[0]), "heaptap %s pid %d rate %llu",
	         HEAPTAP_VERSION_STRING, (int)ht_core.pid, (unsigned long long)rate);
	snprintf(s->text[k++], sizeof(s->text[0]), "rss_bytes=%llu",
	         (unsigned long long)read_rss());
	snprintf(s->text[k++], sizeof(s->text[0]),
	         "malloc_in_use_bytes=%zu malloc_free_held_bytes=%zu malloc_mmap_bytes=%zu "
	         "malloc_releasable_bytes=%zu (glibc mallinfo2)",
	         mi.uordblks + mi.hblkhd, mi.fordblks, mi.hblkhd, mi.keepcost);
	snprintf(s->text[k++], sizeof(s->text[0]),
	         "heap_live_estimate_bytes=%.0f heap_live_estimate_objects=%.0f live_samples=%llu",
	         tot.live_bytes, tot.live_objects, (unsigned long long)tot.live_samples);
	snprintf(s->text[k++], sizeof(s->text[0]), "live_threads=%lld", (long long)s->live_threads);
	snprintf(s->text[k++], sizeof(s->text[0]),
	         "samples_dropped=%llu events_dropped=%llu table_overflow_samples=%llu",
	         (unsigned long long)atomic_load(&ht_core.dropped_samples),
	         (unsigned long long)atomic_load(&ht_core.dropped_events),
	         (unsigned long long)tot.overflow_samples);
	snprintf(s->text[k++], sizeof(s->text[0]), "heaptap_own_bytes=%zu heaptap_stacks=%llu",
	         ht_mem_in_use(), (unsigned long long)tot.stacks);
	for (size_t i = 0; i < k; i++)
		s->comments[i] = s->text[i];
	s->ncomments = k;
	return 0;
}

static void input_from(struct ht_profile_input *in, const struct snapshot *s)
{
	memset(in, 0, sizeof(*in));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	in->rate = atomic_load(&ht_core.rate);
	in->time_nanos = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	in->heap = s->heap;
	in->nheap = s->nheap;
	in->threads = s->threads;
	in->nthreads = s->nthreads;
	in->comments = s->comments;
	in->ncomments = s->ncomments;
	in->gone = s->gone;
	in->ngone = s->ngone;
	in->tick = tick;
}

static const char *errstr(int err)
{
	const char *d = strerrordesc_np(err < 0 ? -err : err);
	return d ? d : "unknown error";
}

/* Encode the requested kinds from one snapshot. */
static int encode(bool heap, bool threads, struct ht_buf *hb, struct ht_buf *tb)
{
	struct snapshot s;
	int r = snapshot_take(&s, heap);
	if (r != 0)
		return r;
	struct ht_profile_input in;
	input_from(&in, &s);
	struct ht_profile_ctx *ctx = NULL;
	r = ht_profile_ctx_open(&ctx, &in);
	if (r == 0 && heap)
		r = ht_profile_heap(&in, ctx, hb);
	if (r == 0 && threads)
		r = ht_profile_threads(&in, ctx, tb);
	ht_profile_ctx_close(ctx);
	snapshot_free(&s);
	return r;
}

static int dump_files_locked(void)
{
	struct ht_buf hb = {0}, tb = {0};
	int r = encode(true, true, &hb, &tb);
	if (r != 0) {
		ht_log("cannot build a profile: %s", errstr(r));
		goto out;
	}
	/* A name already taken (an earlier program image with this pid, or
	 * something planted) is skipped, never overwritten. */
	/* Dumps are serialised (dump_lock), so the sequence number is only
	 * taken for good when the heap file made it: a failed write (disk full,
	 * directory gone) leaves no gap in the numbering. */
	unsigned seq = atomic_load(&ht_core.seq);
	for (int tries = 0; tries < 64; tries++) {
		seq++;
		r = ht_output_write_file(ht_opt.dir, ht_core.pid, seq, "heap", hb.data, hb.len);
		if (r == -EEXIST)
			continue;
		if (r == 0) {
			atomic_store(&ht_core.seq, seq);
			r = ht_output_write_file(ht_opt.dir, ht_core.pid, seq, "threads", tb.data,
			                         tb.len);
			if (r == 0)
				atomic_fetch_add(&ht_core.dumps, 1);
		}
		break;
	}
	if (r != 0)
		ht_log("cannot write profiles to %s: %s; the next dump tries again", ht_opt.dir,
		       errstr(r));
out:
	if (r != 0)
		atomic_fetch_add(&ht_core.dump_failures, 1);
	ht_buf_free(&hb);
	ht_buf_free(&tb);
	return r;
}

/* Every dump entry point: serialise, be busy, keep the process's errno. */
#define DUMP_BEGIN                                                                                 \
	struct ht_tls *t = &ht_tls;                                                                \
	int saved_errno = errno;                                                                   \
	if (atomic_load(&ht_core.state) != HT_READY && ht_init() != HT_READY)                      \
		return -ENOTSUP;                                                                   \
	ht_busy_enter(t);                                                                          \
	atomic_fetch_add(&api_waiting, 1);                                                         \
	pthread_mutex_lock(&dump_lock);                                                            \
	atomic_fetch_sub(&api_waiting, 1)
#define DUMP_END                                                                                   \
	pthread_mutex_unlock(&dump_lock);                                                          \
	ht_busy_exit(t);                                                                           \
	errno = saved_errno

int ht_dump_files(void)
{
	DUMP_BEGIN;
	int r = dump_files_locked();
	DUMP_END;
	return r;
}

static int dump_one(int kind, struct ht_buf *b)
{
	if (kind != HEAPTAP_HEAP && kind != HEAPTAP_THREADS)
		return -EINVAL;
	return encode(kind == HEAPTAP_HEAP, kind == HEAPTAP_THREADS, b, b);
}

int ht_dump_to_fd(int fd, int kind)
{
	if (fd < 0)
		return -EBADF;
	DUMP_BEGIN;
	struct ht_buf b = {0};
	int r = dump_one(kind, &b);
	if (r == 0)
		r = ht_output_write_fd(fd, b.data, b.len);
	ht_buf_free(&b);
	DUMP_END;
	return r;
}

int ht_dump_to_path(const char *path, int kind)
{
	if (!path || !*path)
		return -EINVAL;
	DUMP_BEGIN;
	struct ht_buf b = {0};
	int r = dump_one(kind, &b);
	if (r == 0)
		r = ht_output_write_path(path, b.data, b.len);
	ht_buf_free(&b);
	DUMP_END;
	return r;
}

/* ----------------------------------------------------------------- thread */

static void *flusher_main(void *arg)
{
	(void)arg;
	struct ht_tls *t = &ht_tls;
	ht_busy_enter(t); /* for life */
	pid_t tid = (pid_t)syscall(SYS_gettid);
	ht_thread_note_own(tid);
	atomic_store_explicit(&flusher_known, true, memory_order_release);
	pthread_setname_np(pthread_self(), "heaptap-flush");
	/* Background work: SCHED_BATCH never preempts a running application
	 * thread when the flusher wakes up, and a slightly raised nice value
	 * lets application threads win when the CPUs are busy. Both are
	 * allowed without privileges; failure changes nothing else. */
	struct sched_param sp = {0};
	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	setpriority(PRIO_PROCESS, (id_t)tid, 5);
	uint64_t interval = ht_opt.interval_ms;
	uint64_t next_dump = interval ? now_ms() + interval : 0;
	for (;;) {
		uint32_t seen = atomic_load_explicit(&wake_word, memory_order_acquire);
		uint64_t wait = DRAIN_PERIOD_MS;
		if (interval) {
			uint64_t now = now_ms();
			wait = next_dump > now ? next_dump - now : 0;
			if (wait > DRAIN_PERIOD_MS)
				wait = DRAIN_PERIOD_MS;
		}
		if (wait && !atomic_load(&dump_requested))
			wait_for_kick(seen, wait);
		if (atomic_load(&stopping))
			break;
		drain_locked();
		bool want = atomic_exchange(&dump_requested, false);
		if (interval && now_ms() >= next_dump)
			want = true;
		/* A program thread waiting in heaptap_dump() and friends goes
		 * first (its dump serves this request too): the flusher's
		 * periodic dumps must not starve it. */
		if (want && atomic_load(&api_waiting)) {
			want = false;
			if (interval)
				next_dump = now_ms() + interval;
		}
		if (want && !atomic_load(&stopping)) {
			uint64_t began = now_ms();
			pthread_mutex_lock(&dump_lock);
			dump_files_locked();
			pthread_mutex_unlock(&dump_lock);
			/* Missed periods are not made up, and the next periodic dump
			 * waits at least as long as this one took: a short interval
			 * never keeps heaptap's thread busy more than half the time. */
			uint64_t end = now_ms(), took = end - began;
			if (interval)
				next_dump = end + (interval > took ? interval : took);
		}
	}
	atomic_store(&ht_flusher_state, 0);
	return NULL;
}

int ht_flusher_start(void)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&ht_flusher_state, &expect, 1))
		return 0;
	if (atomic_load(&stopping) || !ht_real.pthread_create) {
		atomic_store(&ht_flusher_want, false);
		atomic_store(&ht_flusher_state, 0);
		return -ENOTSUP;
	}
	struct ht_tls *t = &ht_tls;
	ht_busy_enter(t);
	int saved_errno = errno;
	/* Every signal blocked in the new thread: the application's signals
	 * must never be delivered to heaptap's thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 << 10);
	pthread_t tid;
	atomic_store(&flusher_known, false);
	int r = ht_real.pthread_create(&tid, &attr, flusher_main, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* Wait (briefly, once) until the new thread has noted its tid, so no
	 * thread profile ever counts heaptap's own thread as the program's. */
	for (int i = 0; r == 0 && i < 2000 && !atomic_load(&flusher_known); i++) {
		struct timespec ts = {0, 50000};
		nanosleep(&ts, NULL);
	}
	if (r != 0) {
		atomic_store(&ht_flusher_state, 0);
		atomic_store(&ht_flusher_want, false);
		ht_log("cannot start heaptap's thread: %s; profiles are written only by "
		       "heaptap_dump()",
		       errstr(r));
	}
	errno = saved_errno;
	ht_busy_exit(t);
	return -r;
}

/* ------------------------------------------------------------ exit & fork */

void ht_flusher_at_exit(void)
{
	/* HEAPTAP_AT_EXIT, or a signal that came in and was not served yet
	 * (the thread had not started): one more dump, on this thread. */
	bool pending = atomic_exchange(&dump_requested, false);
	if ((ht_opt.at_exit || pending) && atomic_load(&ht_core.state) == HT_READY)
		ht_dump_files();
	/* No new dumps from the flusher once exit is under way: a file it
	 * started could not be finished before the process ends. */
	atomic_store(&stopping, true);
	ht_flusher_kick();
	/* A dump the flusher already has under way is let finish, so its pair
	 * is complete and no temporary file is left behind; for a second at
	 * most, so that exit stays prompt whatever the dump's size. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	if (pthread_mutex_timedlock(&dump_lock, &until) == 0)
		pthread_mutex_unlock(&dump_lock);
}

/* fork() from a signal handler can nest inside another fork() on the same
 * thread (the signal lands while the outer fork is between its prepare and
 * parent handlers: glibc's tst-mallocfork2 shape), or interrupt heaptap
 * holding the aggregation lock. A lock this thread already holds is never
 * taken again (that would wait for itself), and only the outermost fork
 * releases what it took. Handlers of different threads serialise on
 * gone_lock, so the two statics below are only touched by its holder. */
static _Atomic(const void *) gone_owner;
static unsigned fork_nested;
static bool fork_took_agg;

void ht_flusher_atfork_prepare(void)
{
	if (atomic_load_explicit(&gone_owner, memory_order_relaxed) == &ht_tls) {
		fork_nested++;
		return;
	}
	pthread_mutex_lock(&gone_lock);
	atomic_store_explicit(&gone_owner, &ht_tls, memory_order_relaxed);
	fork_nested = 0;
	fork_took_agg = !ht_agg_lock_is_mine();
	if (fork_took_agg)
		ht_agg_lock();
}

void ht_flusher_atfork_parent(void)
{
	if (fork_nested) {
		fork_nested--;
		return;
	}
	if (fork_took_agg)
		ht_agg_unlock();
	atomic_store_explicit(&gone_owner, NULL, memory_order_relaxed);
	pthread_mutex_unlock(&gone_lock);
}

void ht_flusher_atfork_child(void)
{
	/* The flusher does not exist here. The tables were consistent at fork
	 * (the lock was held); a dump in progress died with its thread. */
	ht_agg_atfork_child();
	pthread_mutex_init(&gone_lock, NULL);
	atomic_store(&gone_owner, NULL);
	fork_nested = 0;
	pthread_mutex_init(&dump_lock, NULL);
	atomic_store(&ht_flusher_state, 0);
	atomic_store(&dump_requested, false);
	atomic_store(&api_waiting, 0);
	atomic_store(&wake_word, 0);
	/* The child gets its own thread on the same terms as the parent: an
	 * interval, or samples (inherited ones count) with a dump signal. */
	atomic_store(&ht_flusher_want, ht_opt.interval_ms != 0);
	if (atomic_load(&ht_addrset.live) != 0)
		ht_flusher_note_need();
}
