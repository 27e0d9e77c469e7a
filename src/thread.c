/*
 * thread.c - thread records, the pthread_create trampoline, reaping.
 * See thread.h.
 */
#include "thread.h"

#include "agg.h"
#include "hash.h"
#include "core.h"
#include "fastunwind.h"
#include "flusher.h"
#include "log.h"
#include "mem.h"
#include "options.h"
#include "profile.h"
#include "stack.h"
#include "tls.h"
#include "track.h"
#include "unwind.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct ht_thread *_Atomic ht_threads;
_Atomic uint64_t ht_threads_created;
static _Atomic uint32_t next_serial = 1;

/* The main thread's record is static: it exists before any memory does. */
static union {
	struct ht_thread t;
	char bytes[sizeof(struct ht_thread) + 16];
} main_rec;
static _Atomic bool main_pushed;

#define MAX_OWN 4
static _Atomic pid_t own_tids[MAX_OWN];

/* The program's threads heaptap knows to be alive: the main thread, and
 * those started through its pthread_create, until their start routine or
 * the main thread's pthread_exit is over. Zero tells heaptap's thread to
 * look whether it is alone in the process (flusher.c). */
static _Atomic int program_threads = 1;
static pthread_key_t main_key;
static _Atomic bool main_gone; /* the main thread called pthread_exit */
static _Atomic bool main_watched;

static pid_t sys_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void registry_push(struct ht_thread *th)
{
	struct ht_thread *head = atomic_load_explicit(&ht_threads, memory_order_relaxed);
	do {
		atomic_store_explicit(&th->next, head, memory_order_relaxed);
	} while (!atomic_compare_exchange_weak_explicit(
	        &ht_threads, &head, th, memory_order_release, memory_order_relaxed));
}

static struct ht_thread *record_new(unsigned depth)
{
	struct ht_thread *th =
	        ht_mem_calloc(1, sizeof(*th) + (depth + HT_UNWIND_SLACK) * sizeof(uintptr_t));
	if (th)
		th->serial = atomic_fetch_add_explicit(&next_serial, 1, memory_order_relaxed);
	return th;
}

static void main_push_once(void)
{
	bool expect = false;
	if (!atomic_compare_exchange_strong(&main_pushed, &expect, true))
		return;
	struct ht_thread *m = &main_rec.t;
	m->is_main = true;
	m->is_static = true;
	m->serial = 0;
	atomic_store(&m->tid, ht_core.pid);
	atomic_store(&m->launched, 1);
	atomic_store(&m->state, HT_THR_RUNNING);
	ht_stack_note_main(m);
	registry_push(m);
}

struct ht_thread *ht_thread_self(void)
{
	struct ht_tls *t = &ht_tls;
	if (t->thr)
		return t->thr;
	main_push_once();
	pid_t tid = sys_gettid();
	struct ht_thread *th;
	if (tid == ht_core.pid) {
		th = &main_rec.t;
	} else {
		/* A thread heaptap did not see start: made before heaptap was
		 * loaded, or by clone() directly. No creation stack. */
		th = record_new(0);
		if (!th)
			return NULL;
		atomic_store(&th->tid, tid);
		atomic_store(&th->launched, 1);
		atomic_store(&th->state, HT_THR_RUNNING);
		registry_push(th);
	}
	t->thr = th;
	return th;
}

int ht_thread_ring(struct ht_thread *th)
{
	if (atomic_load_explicit(&th->ring_ready, memory_order_relaxed))
		return 0;
	uint64_t rate = atomic_load_explicit(&ht_core.rate, memory_order_relaxed);
	size_t size = rate < HT_EXACT_RATE_LIMIT ? (size_t)256 << 10 : (size_t)64 << 10;
	int r = ht_ring_init(&th->ring, size);
	if (r == 0)
		atomic_store_explicit(&th->ring_ready, 1, memory_order_release);
	return r;
}

static void program_thread_ended(void)
{
	if (atomic_fetch_sub(&program_threads, 1) == 1)
		ht_flusher_kick();
}

static void thread_exited(void *arg)
{
	struct ht_thread *th = arg;
	atomic_store_explicit(&th->state, HT_THR_EXITED, memory_order_release);
	program_thread_ended();
}

/* The main thread's key destructor: it ran pthread_exit, or was cancelled
 * (glibc runs key destructors then, not when main returns). */
static void main_ended(void *value)
{
	(void)value;
	atomic_store(&main_gone, true);
	atomic_store(&main_rec.t.state, HT_THR_EXITED);
	program_thread_ended();
}

void ht_thread_watch_main(void)
{
	if (sys_gettid() != getpid() || atomic_exchange(&main_watched, true))
		return;
	if (pthread_key_create(&main_key, main_ended) == 0)
		pthread_setspecific(main_key, (void *)1);
}

int ht_thread_program_alive(void)
{
	return atomic_load_explicit(&program_threads, memory_order_relaxed);
}

/* In heaptap's own text section, so that stacks leave it out even when
 * heaptap is linked into the program (unwind.c). */
HT_OWN_TEXT static void *thread_start(void *arg)
{
	struct ht_thread *th = arg;
	struct ht_tls *t = &ht_tls;
	atomic_store(&th->tid, sys_gettid());
	th->handle = pthread_self(); /* before the program can detach itself */
	t->thr = th;
	ht_busy_enter(t);
	ht_stack_note_bounds(th);
	ht_busy_exit(t);
	int expect = HT_THR_STARTING;
	atomic_compare_exchange_strong(&th->state, &expect, HT_THR_RUNNING);
	void *ret;
	/* Return, pthread_exit and cancellation all end here. */
	pthread_cleanup_push(thread_exited, th);
	ret = th->fn(th->arg);
	pthread_cleanup_pop(1);
	return ret;
}

struct capture {
	uintptr_t *out;
	unsigned max;
	uintptr_t ra;
	unsigned depth;
};

static void capture_on_stack(void *arg)
{
	struct capture *c = arg;
	c->depth = ht_unwind_capture(c->out, c->max, c->ra, false, 0);
}

int ht_thread_create(int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *),
                     pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg,
                     uintptr_t ra)
{
	struct ht_tls *t = &ht_tls;
	if (atomic_load(&ht_core.state) != HT_READY || !ht_track_recover(t))
		return real(thread, attr, fn, arg);
	ht_busy_enter(t);
	main_push_once();
	/* Reap ended threads now and then here, so heaptap's memory does not
	 * grow with thread churn even when no heaptap thread runs. */
	static _Atomic unsigned creations;
	if ((atomic_fetch_add_explicit(&creations, 1, memory_order_relaxed) & 63) == 63 &&
	    ht_agg_trylock() == 0) {
		ht_agg_drain_all();
		ht_agg_unlock();
	}
	unsigned depth = ht_opt.depth;
	struct ht_thread *th = record_new(depth);
	if (!th) {
		ht_busy_exit(t);
		return real(thread, attr, fn, arg);
	}
	th->from_create = true;
	th->fn = fn;
	th->arg = arg;
	/* Walked on heaptap's stack: the creator may run on a small one. */
	struct capture c = {th->pcs, depth, ra, 0};
	struct ht_thread *me = ht_thread_self();
	if (!me) {
		capture_on_stack(&c);
	} else if (!ht_stack_run(me, capture_on_stack, &c)) {
		c.depth = ht_stack_not_taken(th->pcs, ra);
	}
	th->depth = c.depth;
	atomic_store(&th->state, HT_THR_STARTING);
	registry_push(th);
	ht_busy_exit(t);
	atomic_fetch_add(&program_threads, 1);
	int r = real(thread, attr, thread_start, th);
	if (r != 0) {
		atomic_store(&th->state, HT_THR_DEAD);
		atomic_fetch_sub(&program_threads, 1);
		return r;
	}
	th->handle = *thread;
	int detach = PTHREAD_CREATE_JOINABLE;
	if (attr && pthread_attr_getdetachstate(attr, &detach) == 0 &&
	    detach == PTHREAD_CREATE_DETACHED)
		atomic_store(&th->settled, true);
	atomic_store_explicit(&th->launched, 1, memory_order_release);
	atomic_fetch_add_explicit(&ht_threads_created, 1, memory_order_relaxed);
	/* The program is multithreaded now, so heaptap's thread can no longer
	 * be what makes it so (unshare of a user namespace, fork from a signal
	 * handler): start it if a dump trigger needs it, so that a dump signal
	 * is served even before the first sample. */
	ht_flusher_note_need();
	if (ht_flusher_wanted())
		ht_flusher_start();
	return 0;
}

static bool task_gone(pid_t tid)
{
	if (tid <= 0)
		return false;
	return syscall(SYS_tgkill, ht_core.pid, tid, 0) != 0 && errno == ESRCH;
}

/* Ended, launched by heaptap's trampoline, and neither joined nor detached. */
static bool unjoined(const struct ht_thread *th)
{
	return th->from_create && atomic_load(&th->launched) &&
	       atomic_load(&th->state) == HT_THR_EXITED && !atomic_load(&th->settled);
}

void ht_thread_settled(pthread_t h)
{
	ht_agg_lock();
	for (struct ht_thread *th = atomic_load(&ht_threads); th; th = atomic_load(&th->next)) {
		/* Not "launched": a thread may detach itself before its creator
		 * returns from pthread_create; the trampoline set its handle
		 * before the start routine ran. */
		if (th->from_create && !atomic_load(&th->settled) && pthread_equal(th->handle, h)) {
			atomic_store(&th->settled, true);
			break;
		}
	}
	ht_agg_unlock();
}

void ht_thread_reap(void (*drain)(struct ht_thread *))
{
	int saved = errno;
	struct ht_thread *prev = NULL;
	struct ht_thread *th = atomic_load_explicit(&ht_threads, memory_order_acquire);
	while (th) {
		struct ht_thread *next = atomic_load_explicit(&th->next, memory_order_relaxed);
		int st = atomic_load_explicit(&th->state, memory_order_acquire);
		bool gone;
		if (th->is_static) {
			gone = false;
		} else if (st == HT_THR_DEAD && !atomic_load(&th->launched)) {
			gone = true; /* pthread_create failed */
		} else if (st == HT_THR_STARTING) {
			gone = false;
		} else {
			/* Exited threads, and threads heaptap never saw start, are
			 * gone when the kernel no longer knows their tid. */
			gone = (st == HT_THR_EXITED || st == HT_THR_DEAD || !th->from_create) &&
			       task_gone(atomic_load(&th->tid));
		}
		if (gone && unjoined(th)) {
			/* Ended, never joined or detached: glibc keeps its stack, so the
			 * record (its creation stack) stays until the program joins it.
			 * Its ring and heaptap's stack for it go now. */
			if (atomic_exchange_explicit(&th->ring_ready, 0, memory_order_acq_rel)) {
				drain(th);
				ht_ring_destroy(&th->ring);
			}
			ht_stack_release(th);
			ht_fastunwind_thread_done(th);
			gone = false;
		}
		if (!gone) {
			prev = th;
			th = next;
			continue;
		}
		if (atomic_load_explicit(&th->ring_ready, memory_order_acquire))
			drain(th);
		atomic_fetch_add_explicit(&ht_core.samples_reaped, th->nsamples,
		                          memory_order_relaxed);
		ht_unwind_thread_reaped(th);
		/* Unlink. Others only ever push at the head. */
		if (prev) {
			atomic_store_explicit(&prev->next, next, memory_order_relaxed);
		} else {
			struct ht_thread *expect = th;
			if (!atomic_compare_exchange_strong(&ht_threads, &expect, next)) {
				/* New records were pushed in front: find our predecessor. */
				struct ht_thread *p = atomic_load(&ht_threads);
				while (atomic_load(&p->next) != th)
					p = atomic_load(&p->next);
				atomic_store(&p->next, next);
				prev = p;
			}
		}
		ht_ring_destroy(&th->ring);
		ht_stack_release(th);
		ht_fastunwind_thread_done(th);
		ht_mem_free(th);
		th = next;
	}
	errno = saved;
}

void ht_thread_atfork_child(void)
{
	struct ht_thread *me = ht_tls.thr;
	for (struct ht_thread *th = atomic_load(&ht_threads); th; th = atomic_load(&th->next)) {
		if (th == me) {
			atomic_store(&th->tid, sys_gettid());
			continue;
		}
		if (atomic_load(&th->state) != HT_THR_DEAD)
			atomic_store(&th->state, th->is_static ? HT_THR_DEAD : HT_THR_EXITED);
		/* They do not exist here at all: nothing to join. */
		atomic_store(&th->settled, true);
	}
	for (unsigned i = 0; i < MAX_OWN; i++)
		atomic_store(&own_tids[i], 0);
	/* The thread that forked is the child's only one, and its leader. */
	atomic_store(&program_threads, 1);
	atomic_store(&main_gone, false);
}

void ht_thread_note_own(pid_t tid)
{
	for (unsigned i = 0; i < MAX_OWN; i++) {
		pid_t expect = 0;
		if (atomic_compare_exchange_strong(&own_tids[i], &expect, tid))
			return;
	}
}

void ht_thread_forget_own(pid_t tid)
{
	for (unsigned i = 0; i < MAX_OWN; i++) {
		pid_t expect = tid;
		if (atomic_compare_exchange_strong(&own_tids[i], &expect, 0))
			return;
	}
}

bool ht_thread_is_own(pid_t tid)
{
	for (unsigned i = 0; i < MAX_OWN; i++)
		if (atomic_load(&own_tids[i]) == tid)
			return true;
	return false;
}

unsigned ht_thread_own_count(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < MAX_OWN; i++)
		n += atomic_load(&own_tids[i]) != 0;
	return n;
}

/* ------------------------------------------------------ thread profile rows */

/* Live tasks of this process, read with getdents64 (opendir would malloc). */
static int64_t count_tasks(void)
{
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[4096];
	int64_t n = 0;
	for (;;) {
		long got = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		if (got <= 0)
			break;
		for (long off = 0; off < got;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			if (d->name[0] != '.') {
				pid_t tid = 0;
				for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
					tid = tid * 10 + (*c - '0');
				if (!ht_thread_is_own(tid))
					n++;
			}
			off += d->reclen;
		}
	}
	close(fd);
	return n;
}

struct tgroup {
	UT_hash_handle hh;
	const uintptr_t *pcs;
	uint32_t depth;
	int64_t count;
};

/* Count th under its creation stack in groups. */
static int group_add(struct tgroup **groups, size_t *ng, const struct ht_thread *th)
{
	struct tgroup *g;
	HASH_FIND(hh, *groups, th->pcs, th->depth * sizeof(uintptr_t), g);
	if (!g) {
		g = ht_mem_calloc(1, sizeof(*g));
		if (!g)
			return -ENOMEM;
		g->pcs = th->pcs;
		g->depth = th->depth;
		HASH_ADD_KEYPTR(hh, *groups, g->pcs, g->depth * sizeof(uintptr_t), g);
		(*ng)++;
	}
	g->count++;
	return 0;
}

static void groups_free(struct tgroup **groups)
{
	struct tgroup *g, *tmp;
	HASH_ITER(hh, *groups, g, tmp)
	{
		HASH_DEL(*groups, g);
		ht_mem_free(g);
	}
}

int ht_thread_rows(struct ht_thread_row **rows, size_t *n, int64_t *running, int64_t *unjoined_out)
{
	/* [0] running, [1] unjoined */
	struct tgroup *groups[2] = {NULL, NULL}, *g, *tmp;
	static const char *const states[2] = {"running", "unjoined"};
	int64_t known = 0, ended = 0, leaving = 0, main_alive = 0;
	size_t ng = 0;
	int rc = 0;
	for (struct ht_thread *th = atomic_load(&ht_threads); th && rc == 0;
	     th = atomic_load(&th->next)) {
		int st = atomic_load(&th->state);
		/* Ended, but its task may not have left /proc/self/task yet (the
		 * moment pthread_join returns, say): not an unknown thread. */
		if (st == HT_THR_EXITED && th->from_create && !task_gone(atomic_load(&th->tid)))
			leaving++;
		if (unjoined(th)) {
			ended++;
			rc = group_add(&groups[1], &ng, th);
			continue;
		}
		if (st != HT_THR_RUNNING && st != HT_THR_STARTING)
			continue;
		if (th->is_main) {
			main_alive = 1;
			continue;
		}
		if (!th->from_create || !atomic_load(&th->launched))
			continue;
		known++;
		rc = group_add(&groups[0], &ng, th);
	}
	if (rc != 0)
		goto out;
	/* The thread-group leader's task stays listed after it has called
	 * pthread_exit (a zombie, until the process ends). */
	int64_t tasks = count_tasks() - (atomic_load(&main_gone) ? 1 : 0);
	int64_t unknown = tasks < 0 ? 0 : tasks - main_alive - known - leaving;
	if (unknown < 0)
		unknown = 0;
	struct ht_thread_row *r = ht_mem_calloc(ng + 2, sizeof(*r));
	if (!r) {
		rc = -ENOMEM;
		goto out;
	}
	size_t k = 0;
	if (main_alive)
		r[k++] = (struct ht_thread_row){.label = "main", .state = "running", .count = 1};
	for (int i = 0; i < 2; i++)
		HASH_ITER(hh, groups[i], g, tmp)
		{
			r[k++] = (struct ht_thread_row){.pcs = g->pcs,
			                                .depth = g->depth,
			                                .state = states[i],
			                                .count = g->count};
		}
	if (unknown)
		r[k++] = (struct ht_thread_row){
		        .label = "unknown", .state = "running", .count = unknown};
	*rows = r;
	*n = k;
	*running = main_alive + known + unknown;
	*unjoined_out = ended;
out:
	groups_free(&groups[0]);
	groups_free(&groups[1]);
	return rc;
}
