/*
 * flusher.c - heaptap's own thread. See flusher.h.
 *
 * Wake-ups go through one futex word: the signal handler, a full ring and a
 * dump request all bump it and FUTEX_WAKE, which is async-signal-safe and
 * needs no file descriptor. Between dumps the thread drains what the
 * program's threads have not drained themselves and reaps the records of
 * threads that are gone.
 *
 * It also ends the process when the program's last thread has ended.
 * glibc's last thread calls exit(0) when the count of threads it keeps
 * reaches zero, and heaptap's thread is in that count; so when the main
 * thread has called pthread_exit and the last worker ends, only heaptap's
 * thread would be left, with every signal blocked, and the process would
 * never end. heaptap's thread then calls exit(0) itself, as glibc would have.
 *
 * Its stack is glibc's (with the thread's static TLS at the top); the thread
 * notes the bounds while it runs, for the figure of heaptap's resident
 * memory.
 */
#include "flusher.h"

#include "agg.h"
#include "core.h"
#include "dump.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "options.h"
#include "real.h"
#include "signals.h"
#include "thread.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Atomic int ht_flusher_state;
_Atomic bool ht_flusher_want;
static _Atomic bool flusher_known; /* its tid is noted as heaptap's own */
static pthread_t flusher;
static _Atomic uint32_t wake_word;
static _Atomic bool dump_requested;
static _Atomic bool stopping; /* exit under way: for good */
static _Atomic bool pausing;  /* ht_flusher_stop: until the next start */
/* The running thread's stack, 0 when none: glibc keeps an ended thread's
 * stack for its next thread, which may be the program's. */
static _Atomic uintptr_t stack_lo, stack_hi;

#define DRAIN_PERIOD_MS 50
#define GONE_CHECK_MS   10

/* ---------------------------------------------------------------- wake-ups */

/* With a listener open, heaptap's thread sleeps in poll() instead of on the
 * futex, and a kick also writes this eventfd (write is async-signal-safe). */
static _Atomic int kick_fd = -1;
static bool http_tried; /* HEAPTAP_HTTP is opened once per process */

void ht_flusher_kick(void)
{
	atomic_fetch_add_explicit(&wake_word, 1, memory_order_release);
	syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	int fd = atomic_load_explicit(&kick_fd, memory_order_acquire);
	if (fd >= 0) {
		uint64_t one = 1;
		/* A raw syscall: write() is a cancellation point, and a
		 * sample may kick with cancellation on (track.c). */
		long r = syscall(SYS_write, fd, &one, sizeof(one));
		(void)r;
	}
}

/* Wait for a kick, the listener or a connection, for at most ms. */
static void wait_polling(uint32_t seen, uint64_t ms)
{
	struct pollfd fds[HT_HTTP_POLL_ENTRIES + 1];
	int timeout = ms > 60000 ? 60000 : (int)ms;
	int n = ht_http_pollfds(fds + 1, &timeout);
	int kfd = atomic_load(&kick_fd);
	fds[0] = (struct pollfd){.fd = kfd, .events = POLLIN};
	if (atomic_load_explicit(&wake_word, memory_order_acquire) != seen)
		timeout = 0;
	int r = poll(fds, (nfds_t)n + 1, timeout);
	if (r > 0 && (fds[0].revents & POLLIN)) {
		uint64_t v;
		ssize_t k = read(kfd, &v, sizeof(v));
		(void)k;
	}
	ht_http_service(fds + 1, r >= 0 ? n : 0);
}

static void http_open_once(void)
{
	if (http_tried || !ht_opt.http[0])
		return;
	http_tried = true;
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return;
	if (ht_http_open(ht_opt.http) != 0) {
		close(fd);
		return;
	}
	atomic_store_explicit(&kick_fd, fd, memory_order_release);
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

void ht_flusher_request_dump(void)
{
	atomic_store_explicit(&dump_requested, true, memory_order_relaxed);
	if (!ht_flusher_running()) {
		/* No thread yet (the signal came before the program's
		 * constructors ran, say): this thread's next allocation takes the
		 * slow path, which starts it; exit serves it otherwise. */
		atomic_store_explicit(&ht_flusher_want, true, memory_order_relaxed);
		if (!ht_tls.busy)
			ht_tls.countdown = 0;
	}
	ht_flusher_kick();
}

/* ------------------------------------------------------------------ policy */

/* heaptap's thread runs whenever a dump trigger needs it (the dump signal's
 * handler is installed, or an interval is set), from the end of the
 * program's constructors on: a dump signal is then answered in every
 * process, idle, single-threaded or not sampling at all. HEAPTAP_SIGNAL=none
 * and no interval is the no-thread mode, for programs that must stay
 * single-threaded (fork() from a signal handler). */
bool ht_flusher_needed(void)
{
	return ht_signal_installed() || ht_opt.interval_ms != 0 || (ht_opt.http[0] && !http_tried);
}

bool ht_flusher_wanted_rest(void)
{
	return !atomic_load_explicit(&pausing, memory_order_relaxed) &&
	       atomic_load_explicit(&ht_core.ctor_done, memory_order_relaxed);
}

/* ------------------------------------------------------- the program's end */

/* True when the thread-group leader is a zombie and heaptap's threads are
 * all that is left (/proc/self/stat: state, num_threads). */
static bool only_heaptap_left(void)
{
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char buf[512];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return false;
	char state = p[2];
	/* num_threads is the 20th field; the state is the 3rd. */
	p += 2;
	for (int field = 3; field < 20 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p)
		return false;
	long threads = strtol(p, NULL, 10);
	return (state == 'Z' || state == 'X') && threads == 1 + (long)ht_thread_own_count();
}

/* ----------------------------------------------------------------- thread */

static void note_stack(bool running)
{
	uintptr_t lo = 0, hi = 0;
	pthread_attr_t a;
	if (running && pthread_getattr_np(pthread_self(), &a) == 0) {
		void *addr;
		size_t size;
		if (pthread_attr_getstack(&a, &addr, &size) == 0) {
			lo = (uintptr_t)addr;
			hi = lo + size;
		}
		pthread_attr_destroy(&a);
	}
	/* hi first when clearing, last when setting: a reader that sees hi
	 * sees the lo that goes with it. */
	if (!running)
		atomic_store_explicit(&stack_hi, 0, memory_order_release);
	atomic_store_explicit(&stack_lo, lo, memory_order_relaxed);
	if (running)
		atomic_store_explicit(&stack_hi, hi, memory_order_release);
}

size_t ht_flusher_resident(void)
{
	uintptr_t hi = atomic_load_explicit(&stack_hi, memory_order_acquire);
	uintptr_t lo = atomic_load_explicit(&stack_lo, memory_order_relaxed);
	return lo && hi > lo ? ht_mem_resident_range((const void *)lo, hi - lo) : 0;
}

static void *flusher_main(void *arg)
{
	(void)arg;
	struct ht_tls *t = &ht_tls;
	ht_busy_enter(t); /* for life */
	note_stack(true);
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
	/* A migration of the sampled-pointer table is under way: each drain
	 * moves a chunk of it, and the next comes without waiting. */
	bool table_work = false;
	http_open_once();
	for (;;) {
		uint32_t seen = atomic_load_explicit(&wake_word, memory_order_acquire);
		uint64_t wait = ht_thread_program_alive() > 0 ? DRAIN_PERIOD_MS : GONE_CHECK_MS;
		if (table_work)
			wait = 0;
		if (interval) {
			uint64_t now = now_ms();
			uint64_t until = next_dump > now ? next_dump - now : 0;
			if (until < wait)
				wait = until;
		}
		if (ht_http_active())
			wait_polling(seen, atomic_load(&dump_requested) ? 0 : wait);
		else if (wait && !atomic_load(&dump_requested))
			wait_for_kick(seen, wait);
		if (atomic_load(&stopping) || atomic_load(&pausing))
			break;
		if (ht_thread_program_alive() <= 0 && only_heaptap_left())
			exit(0); /* what glibc's last thread would have done */
		bool want = atomic_exchange(&dump_requested, false);
		if (interval && now_ms() >= next_dump)
			want = true;
		if (!want) {
			ht_agg_lock();
			ht_agg_drain_all();
			table_work = ht_agg_table_work();
			ht_agg_unlock();
			continue;
		}
		uint64_t began = now_ms();
		if (ht_dump_files_background() == -EAGAIN) {
			/* A program thread's dump serves this request. */
			if (interval)
				next_dump = now_ms() + interval;
			continue;
		}
		/* Missed periods are not made up, and the next periodic dump waits
		 * at least as long as this one took: a short interval never keeps
		 * heaptap's thread busy more than half the time. */
		uint64_t end = now_ms(), took = end - began;
		if (interval)
			next_dump = end + (interval > took ? interval : took);
	}
	note_stack(false);
	ht_thread_forget_own(tid);
	return NULL;
}

static const char *errstr(int err)
{
	const char *d = strerrordesc_np(err < 0 ? -err : err);
	return d ? d : "unknown error";
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
	pthread_attr_setstacksize(&attr, 256 << 10);
	atomic_store(&flusher_known, false);
	int r = ht_real.pthread_create(&flusher, &attr, flusher_main, NULL);
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
		ht_log("cannot start heaptap's thread: %s; profiles are written only by heaptap_dump() and at exit",
		       errstr(r));
	}
	errno = saved_errno;
	ht_busy_exit(t);
	return -r;
}

int ht_flusher_stop(void)
{
	if (!ht_flusher_running() || atomic_load(&stopping))
		return 0;
	struct ht_tls *t = &ht_tls;
	ht_busy_enter(t);
	atomic_store(&pausing, true);
	ht_flusher_kick();
	int r = pthread_join(flusher, NULL);
	atomic_store(&ht_flusher_state, 0);
	atomic_store(&pausing, false);
	ht_busy_exit(t);
	return -r;
}

long ht_flusher_call_alone(long (*fn)(long, long), long a, long b)
{
	if (!ht_flusher_running() || ht_tls.busy) {
		errno = EINVAL;
		return -1;
	}
	ht_flusher_stop();
	long r;
	/* The thread's task leaves the thread group a moment after pthread_join
	 * returns; 100 ms at most, and not at all if the program has threads
	 * of its own (the call fails for them as it would without heaptap). */
	for (int i = 0;; i++) {
		r = fn(a, b);
		if (r != -1 || errno != EINVAL || i == 50 || ht_thread_program_alive() > 1)
			break;
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	int saved = errno;
	ht_flusher_note_need();
	if (ht_flusher_wanted())
		ht_flusher_start();
	errno = saved;
	return r;
}

/* ------------------------------------------------------------ exit & fork */

void ht_flusher_at_exit(void)
{
	/* HEAPTAP_AT_EXIT, or a signal that came in and was not served yet:
	 * one more dump, on this thread. */
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
	ht_dump_wait_idle(1000);
}

void ht_flusher_atfork_child(void)
{
	/* The flusher does not exist here; the child gets its own thread on
	 * the parent's terms, now, so that it answers the dump signal too. */
	atomic_store(&ht_flusher_state, 0);
	note_stack(false); /* the parent's thread is gone, its stack glibc's to reuse */
	/* The parent's listener is the parent's: a child holding the port would
	 * keep it after the parent ends. (A program the child execs reads
	 * HEAPTAP_HTTP afresh and may name its own port.) */
	ht_http_close();
	int kfd = atomic_exchange(&kick_fd, -1);
	if (kfd >= 0)
		close(kfd);
	atomic_store(&dump_requested, false);
	atomic_store(&pausing, false);
	atomic_store(&wake_word, 0);
	atomic_store(&ht_flusher_want, false);
	ht_flusher_note_need();
	if (ht_flusher_wanted())
		ht_flusher_start();
}
