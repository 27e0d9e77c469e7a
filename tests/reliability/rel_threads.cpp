/*
 * rel_threads.cpp - thread exits in every order, allocations after
 * heaptap's own thread-exit hook, and allocations before main.
 *
 *   rel_threads orders N   N rounds of threads that end by return,
 *                          pthread_exit, cancellation (deferred, inside a
 *                          malloc/free loop), detached and joined; each leaks
 *                          one 48-byte block from orders_leak.
 *   rel_threads dtors N    N threads, each with a C++ thread_local whose
 *                          destructor leaks 333 bytes (dtor_leak) and
 *                          mallocs/frees, and a pthread key destructor that
 *                          re-arms itself (4 rounds), leaking 444 bytes per
 *                          round (keydtor_leak); strerror_l and strsignal make
 *                          glibc free in __libc_thread_freeres.
 *   rel_threads ctor       allocations from this program's constructor and a
 *                          thread it starts (exe_ctor_leak 555,
 *                          exe_ctor_thread_leak 666), and from
 *                          librel_ctorlib.so's constructor and its 2 threads
 *                          (ctorlib_leak 777, ctorlib_thread_leak 888), 10
 *                          blocks each; dump while those threads live.
 *   rel_threads exitthread a thread calls exit(0) while 3 others allocate.
 *   rel_threads nocancel N a thread with a cancellation request pending
 *                          makes N malloc/free pairs (no cancellation point
 *                          of its own) while the main thread dumps back to
 *                          back (100,000 buckets to snapshot each time), so
 *                          its ring fills and heaptap waits for
 *                          room; it must finish all N and be cancelled only
 *                          at its own pthread_testcancel (nocancel_done=1
 *                          nocancel_pairs=N cancelled=1).
 * Each prints "expect <fn> <inuse_bytes> <inuse_objs> <alloc_bytes> <alloc_objs>"
 * lines (exact at HEAPTAP_RATE=1) and live_threads=<n> before its dump.
 */
#include "rel_common.h"

#include <atomic>
#include <locale.h>
#include <pthread.h>
#include <signal.h>

extern "C" void ctorlib_wait_ready(void);
extern "C" void ctorlib_stop(void);

static std::atomic<int> stop_flag{0};

extern "C" NOINLINE void *orders_leak(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static void churn_some(void)
{
	for (int i = 0; i < 20; i++)
		free(malloc(64 + i * 8));
}

static void *t_return(void *)
{
	churn_some();
	orders_leak(48);
	return nullptr;
}

static void *t_pexit(void *)
{
	churn_some();
	orders_leak(48);
	pthread_exit(nullptr);
}

static std::atomic<int> cancel_ready{0};

static void *t_cancel(void *)
{
	orders_leak(48);
	cancel_ready.fetch_add(1);
	for (;;) {
		free(malloc(100));
		pthread_testcancel();
	}
	return nullptr;
}

static std::atomic<int> detached_done{0};

static void *t_detached(void *)
{
	churn_some();
	orders_leak(48);
	detached_done.fetch_add(1);
	return nullptr;
}

static void wait_tasks(int want)
{
	for (int i = 0; i < 5000 && rel_task_count() > want; i++)
		rel_msleep(1);
}

static int mode_orders(int rounds)
{
	long leaked = 0;
	for (int r = 0; r < rounds; r++) {
		pthread_t a, b, c, d, j;
		pthread_create(&a, nullptr, t_return, nullptr);
		pthread_create(&b, nullptr, t_pexit, nullptr);
		pthread_create(&c, nullptr, t_cancel, nullptr);
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_create(&d, &attr, t_detached, nullptr);
		pthread_attr_destroy(&attr);
		pthread_create(&j, nullptr, t_return, nullptr);
		while (cancel_ready.load() <= r)
			sched_yield();
		pthread_cancel(c);
		void *ret;
		pthread_join(c, &ret);
		if (ret != PTHREAD_CANCELED)
			say("cancel_failed round=%d", r);
		pthread_join(a, nullptr);
		pthread_join(b, nullptr);
		pthread_join(j, nullptr);
		leaked += 5;
	}
	while (detached_done.load() < rounds)
		rel_msleep(1);
	wait_tasks(1 + rel_own_threads());
	say("expect orders_leak %ld %ld %ld %ld", leaked * 48, leaked, leaked * 48, leaked);
	say("live_threads=1 tasks=%d", rel_task_count());
	say("dump=%d", rel_dump());
	return 0;
}

/* ------------------------------------------------------------- dtors mode */

extern "C" NOINLINE void *dtor_leak(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

extern "C" NOINLINE void *keydtor_leak(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

struct Obj {
	void *held = nullptr;
	Obj()
	{
		held = malloc(10);
	}
	~Obj()
	{
		free(held);
		dtor_leak(333);
		free(malloc(12345));
		void *p = malloc(50);
		p = realloc(p, 5000);
		free(p);
	}
};

static thread_local Obj tl_obj;
static pthread_key_t key;

static void key_dtor(void *v)
{
	long round = (long)(intptr_t)v;
	keydtor_leak(444);
	free(malloc(777));
	if (round < 4)
		pthread_setspecific(key, (void *)(intptr_t)(round + 1));
}

static void *t_dtors(void *)
{
	tl_obj.held = realloc(tl_obj.held, 20);
	pthread_setspecific(key, (void *)(intptr_t)1);
	locale_t loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	(void)strerror_l(EINVAL, loc);
	(void)strsignal(SIGUSR1);
	freelocale(loc);
	churn_some();
	return nullptr;
}

static int mode_dtors(int n)
{
	pthread_key_create(&key, key_dtor);
	for (int i = 0; i < n; i += 4) {
		pthread_t th[4];
		int k = n - i < 4 ? n - i : 4;
		for (int j = 0; j < k; j++)
			pthread_create(&th[j], nullptr, t_dtors, nullptr);
		for (int j = 0; j < k; j++)
			pthread_join(th[j], nullptr);
	}
	wait_tasks(1 + rel_own_threads());
	say("expect dtor_leak %d %d %d %d", n * 333, n, n * 333, n);
	say("expect keydtor_leak %d %d %d %d", n * 4 * 444, n * 4, n * 4 * 444, n * 4);
	say("live_threads=1 tasks=%d", rel_task_count());
	say("dump=%d", rel_dump());
	return 0;
}

/* -------------------------------------------------------------- ctor mode */

extern "C" NOINLINE void *exe_ctor_leak(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

extern "C" NOINLINE void *exe_ctor_thread_leak(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static pthread_t ctor_thread;
static std::atomic<int> ctor_thread_ready{0};

static void *ctor_thread_fn(void *)
{
	for (int i = 0; i < 10; i++)
		exe_ctor_thread_leak(666);
	ctor_thread_ready.store(1);
	while (!stop_flag.load())
		rel_msleep(2);
	return nullptr;
}

__attribute__((constructor)) static void exe_ctor(void)
{
	for (int i = 0; i < 10; i++)
		exe_ctor_leak(555);
	pthread_create(&ctor_thread, nullptr, ctor_thread_fn, nullptr);
}

static int mode_ctor(void)
{
	ctorlib_wait_ready();
	while (!ctor_thread_ready.load())
		rel_msleep(1);
	say("expect exe_ctor_leak %d %d %d %d", 10 * 555, 10, 10 * 555, 10);
	say("expect exe_ctor_thread_leak %d %d %d %d", 10 * 666, 10, 10 * 666, 10);
	say("expect ctorlib_leak %d %d %d %d", 10 * 777, 10, 10 * 777, 10);
	say("expect ctorlib_thread_leak %d %d %d %d", 20 * 888, 20, 20 * 888, 20);
	say("live_threads=4 tasks=%d", rel_task_count());
	say("dump=%d", rel_dump());
	stop_flag.store(1);
	ctorlib_stop();
	pthread_join(ctor_thread, nullptr);
	return 0;
}

/* -------------------------------------------------------- exitthread mode */

static void *t_alloc_forever(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *slots[64] = {};
	for (;;) {
		unsigned i = rand_r(&seed) & 63;
		free(slots[i]);
		slots[i] = malloc(rand_r(&seed) % 3000 + 1);
	}
	return nullptr;
}

static void *t_exit(void *)
{
	rel_msleep(300);
	say("exiting");
	exit(0);
}

static int mode_exitthread(void)
{
	pthread_t th[4];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], nullptr, t_alloc_forever, (void *)(uintptr_t)(i + 1));
	pthread_create(&th[3], nullptr, t_exit, nullptr);
	for (;;)
		free(malloc(200));
}

static std::atomic<int> nc_ready{0}, nc_go{0}, nc_done{0};
static std::atomic<long> nc_pairs{0};

static void *t_nocancel(void *arg)
{
	long n = (long)(uintptr_t)arg;
	nc_ready.store(1);
	while (!nc_go.load())
		; /* spin: sched_yield and the like are no cancellation points, but
		   * nothing here may be one */
	for (long i = 0; i < n; i++) {
		void *volatile p = malloc(64 + (size_t)(i & 1023)); /* not elided */
		free(p);
		nc_pairs.store(i + 1, std::memory_order_relaxed);
	}
	nc_done.store(1);
	pthread_testcancel();
	return nullptr;
}

static int mode_nocancel(long n)
{
	/* 100,000 (stack, size) buckets make each dump hold the tables for a
	 * while: the thread's ring fills meanwhile. */
	for (size_t sz = 1; sz <= 100000; sz++) {
		void *volatile p = malloc(sz);
		free(p);
	}
	pthread_t t;
	pthread_create(&t, nullptr, t_nocancel, (void *)(uintptr_t)n);
	while (!nc_ready.load())
		sched_yield();
	pthread_cancel(t);
	nc_go.store(1);
	int dumps = 0;
	while (!nc_done.load() && dumps < 2000) {
		rel_dump();
		dumps++;
	}
	void *ret;
	pthread_join(t, &ret);
	say("nocancel_done=%d", nc_done.load());
	say("nocancel_pairs=%ld", nc_pairs.load());
	say("cancelled=%d", ret == PTHREAD_CANCELED);
	say("dumps_meanwhile=%d", dumps);
	say("dump=%d", rel_dump());
	return 0;
}

static void stop_ctor_threads(void)
{
	stop_flag.store(1);
	ctorlib_stop();
	pthread_join(ctor_thread, nullptr);
	stop_flag.store(0);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "ctor") == 0)
		return mode_ctor();
	/* The other modes count threads: end the constructors' threads first. */
	stop_ctor_threads();
	if (argc >= 3 && strcmp(argv[1], "orders") == 0)
		return mode_orders(atoi(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "dtors") == 0)
		return mode_dtors(atoi(argv[2]));
	if (argc >= 2 && strcmp(argv[1], "exitthread") == 0)
		return mode_exitthread();
	if (argc >= 3 && strcmp(argv[1], "nocancel") == 0)
		return mode_nocancel(atol(argv[2]));
	fprintf(stderr, "usage: rel_threads orders N | dtors N | ctor | exitthread | nocancel N\n");
	return 2;
}
