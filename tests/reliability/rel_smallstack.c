/*
 * rel_smallstack.c - allocations on small stacks that FAULT when overrun
 * (issue 10: heaptap's sampled path must fit where glibc's malloc fits).
 *
 * heaptap's malloc runs on whatever stack the program allocates on: a signal
 * handler's alternate stack, a thread started with a minimal stack. An
 * overrun there does not always crash: rel_unwind's "smallstack" mode uses a
 * malloc'd sigaltstack with nothing below it, so an overrun silently writes
 * over the heap. Here every stack is mmap'd with a PROT_NONE guard page
 * directly below its usable area, so one byte too many is a SIGSEGV.
 *
 * Cases (one per run, the name as argument; the driver runs each separately
 * so one fault does not hide the others):
 *
 *   sig8k   a SIGUSR1 handler (SA_ONSTACK) on an 8 KiB sigaltstack, the
 *           traditional SIGSTKSZ, raised ROUNDS times;
 *   sigmin  the same on getauxval(AT_MINSIGSTKSZ) + 4 KiB: the kernel's own
 *           signal frame (which grows with the CPU's xsave state) plus 4 KiB
 *           for the handler, so the size follows the machine it runs on;
 *   threads THREADS threads, each on a PTHREAD_STACK_MIN stack of our own;
 *   nested  PARENTS threads on PTHREAD_STACK_MIN stacks that each create a
 *           child on another such stack (heaptap unwinds at thread creation
 *           too), both allocating.
 *
 * Each allocating function (NOINLINE, one per case and size: 64 B, 100000 B,
 * 2 MiB) frees the block it made last time and makes a new one, so both
 * malloc and free run on the small stack, and at the end one block per slot
 * is live. Printed: the sizes used, "expect <fn> <inuse bytes> <objects>
 * <alloc bytes> <objects>" per function (exact at HEAPTAP_RATE=1), dump=<rc>
 * and done=1.
 *
 * A SIGSEGV handler names the guard page that was hit (fault=... line) on
 * stdout and lets the fault kill the program, so the driver sees the signal
 * and the log says which stack overflowed and where. There is no such line
 * when SIGSEGV was blocked at the fault (libunwind blocks every signal while
 * it holds its cache lock): the kernel then kills the program at once.
 */
#include "rel_common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <ucontext.h>

#define ROUNDS   50 /* signals per sigaltstack size */
#define THREADS  8
#define T_ROUNDS 20
#define PARENTS  4
#define N_ROUNDS 10
#define SIG8K    8192 /* the traditional SIGSTKSZ */
#define MAXSLOTS (THREADS + 2 * PARENTS + 1)

static size_t page;

/* ------------------------------------------------------------------------
 * Stacks with a guard page: [map, map+page) PROT_NONE, the usable area
 * [lo, lo+size) right above it. Registered so the SIGSEGV handler can say
 * which one was overrun. */
struct gstack {
	char *map;
	size_t maplen;
	char *lo;
	size_t size;
};

#define GUARDS 64
static struct {
	_Atomic(uintptr_t) guard;
	const char *name;
	size_t size;
} guards[GUARDS];

static int gstack_new(struct gstack *g, size_t size, const char *name)
{
	g->size = size;
	g->maplen = page + ((size + page - 1) & ~(page - 1));
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE,
	              MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (g->map == MAP_FAILED || mprotect(g->map, page, PROT_NONE) != 0) {
		say("error=mmap/mprotect of a %zu byte stack failed errno=%d", size, errno);
		return -1;
	}
	g->lo = g->map + page;
	for (int i = 0; i < GUARDS; i++) {
		uintptr_t none = 0;
		if (atomic_compare_exchange_strong(&guards[i].guard, &none, (uintptr_t)g->map)) {
			guards[i].name = name;
			guards[i].size = size;
			break;
		}
	}
	return 0;
}

static void gstack_free(struct gstack *g)
{
	for (int i = 0; i < GUARDS; i++) {
		uintptr_t mine = (uintptr_t)g->map;
		if (atomic_compare_exchange_strong(&guards[i].guard, &mine, 0))
			break;
	}
	munmap(g->map, g->maplen);
}

/* ------------------------------------------------------------------------
 * The fault report. Runs on the faulting thread's sigaltstack: for a thread
 * that is the report stack set up below; for the handler cases it is the
 * small stack itself, whose top the kernel uses again because the faulting
 * sp (in the guard) is outside it. Formats by hand (no stdio: the fault may
 * be inside it or inside malloc). */
static char *put(char *b, const char *s)
{
	while (*s)
		*b++ = *s++;
	return b;
}

static char *put_hex(char *b, uintptr_t v)
{
	char t[2 + 16];
	int n = 0;
	do
		t[n++] = "0123456789abcdef"[v & 15];
	while ((v >>= 4) && n < 16);
	b = put(b, "0x");
	while (n)
		*b++ = t[--n];
	return b;
}

static char *put_dec(char *b, uintptr_t v)
{
	char t[24];
	int n = 0;
	do
		t[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < 20);
	while (n)
		*b++ = t[--n];
	return b;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	uintptr_t a = (uintptr_t)si->si_addr;
	uintptr_t ip = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
	char buf[512], *b = buf;
	b = put(b, "fault=SIGSEGV addr=");
	b = put_hex(b, a);
	for (int i = 0; i < GUARDS; i++) {
		uintptr_t g = atomic_load(&guards[i].guard);
		if (g && a >= g && a < g + page) {
			b = put(b, " in_guard_of=");
			b = put(b, guards[i].name);
			b = put(b, " stack_size=");
			b = put_dec(b, guards[i].size);
			b = put(b, " overrun_by=");
			b = put_dec(b, g + page - a);
		}
	}
	b = put(b, " ip=");
	b = put_hex(b, ip);
	/* dladdr takes the loader's lock; the program is dying anyway, and the
	 * function name is most of the evidence. */
	Dl_info di;
	if (dladdr((void *)ip, &di) && di.dli_fname) {
		const char *base = strrchr(di.dli_fname, '/');
		b = put(b, " in=");
		b = put(b, di.dli_sname ? di.dli_sname : "?");
		b = put(b, "+");
		b = put_hex(b, ip - (uintptr_t)(di.dli_sname ? di.dli_saddr : di.dli_fbase));
		b = put(b, " (");
		b = put(b, base ? base + 1 : di.dli_fname);
		b = put(b, ")");
	}
	*b++ = '\n';
	write(1, buf, (size_t)(b - buf));
	/* SA_RESETHAND: returning re-runs the faulting access, which now kills
	 * the program with SIGSEGV, the status the driver checks. */
}

static void install_segv_report(void)
{
	struct sigaction sa = {0};
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
	sigaction(SIGSEGV, &sa, NULL);
}

/* A thread's report stack (64 KiB): without one, a fault on the thread's
 * own stack could not be reported (the kernel has nowhere to put the frame)
 * and the thread just dies with SIGSEGV. */
static void report_stack_on(struct gstack *g)
{
	if (gstack_new(g, 64 << 10, "report") == 0) {
		stack_t ss = {.ss_sp = g->lo, .ss_size = g->size};
		sigaltstack(&ss, NULL);
	}
}

static void report_stack_off(struct gstack *g)
{
	stack_t ss = {.ss_flags = SS_DISABLE};
	sigaltstack(&ss, NULL);
	if (g->map && g->map != MAP_FAILED)
		gstack_free(g);
}

/* ------------------------------------------------------------------------
 * Allocating functions. Each frees its previous block and allocates again,
 * in slot[i]: at the end one block per slot is live. */
#define S64   64
#define S100K 100000
#define S2M   (2 << 20)

#define ALLOCATOR(name, size)                                                                      \
	static void *name##_slot[MAXSLOTS];                                                        \
	NOINLINE static void name(int i)                                                           \
	{                                                                                          \
		free(name##_slot[i]);                                                              \
		name##_slot[i] = malloc(size);                                                     \
		rel_touch(name##_slot[i], size);                                                   \
	}
#define ALLOCATORS(prefix)                                                                         \
	ALLOCATOR(prefix##_64, S64)                                                                \
	ALLOCATOR(prefix##_100k, S100K)                                                            \
	ALLOCATOR(prefix##_2m, S2M)

ALLOCATORS(sig8k)
ALLOCATORS(sigmin)
ALLOCATORS(thr)
ALLOCATORS(parent)
ALLOCATORS(child)

/* The expect lines of one prefix: `slots` live blocks, `allocs` made. */
static void expect3(const char *prefix, int slots, int allocs)
{
	const struct {
		const char *suffix;
		long long size;
	} sz[] = {{"64", S64}, {"100k", S100K}, {"2m", S2M}};
	for (int k = 0; k < 3; k++)
		say("expect %s_%s %lld %d %lld %d", prefix, sz[k].suffix, sz[k].size * slots, slots,
		    sz[k].size * allocs, allocs);
}

/* ------------------------------------------------------------------------
 * Signal handler cases. */
static void (*volatile sig_alloc[3])(int);
static volatile sig_atomic_t sig_hits;

static void on_usr1(int sig)
{
	(void)sig;
	for (int k = 0; k < 3; k++)
		sig_alloc[k](0);
	sig_hits++;
}

/* The traditional size, or the kernel's minimum signal frame + 4 KiB. */
static size_t min_sigstack(const char **from)
{
	unsigned long v = 0;
#ifdef AT_MINSIGSTKSZ
	v = getauxval(AT_MINSIGSTKSZ);
	*from = "AT_MINSIGSTKSZ";
#endif
#ifdef _SC_MINSIGSTKSZ
	if (v == 0) {
		long s = sysconf(_SC_MINSIGSTKSZ);
		v = s > 0 ? (unsigned long)s : 0;
		*from = "_SC_MINSIGSTKSZ";
	}
#endif
	if (v == 0) {
		v = 2048; /* the old MINSIGSTKSZ constant */
		*from = "default_2048";
	}
	return v + 4096;
}

static int run_sig(const char *name, size_t size, void (*a64)(int), void (*a100k)(int),
                   void (*a2m)(int))
{
	struct gstack g;
	if (gstack_new(&g, size, name) != 0)
		return 1;
	sig_alloc[0] = a64;
	sig_alloc[1] = a100k;
	sig_alloc[2] = a2m;
	stack_t ss = {.ss_sp = g.lo, .ss_size = g.size};
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0) {
		say("error=sigaltstack(%zu) or sigaction failed errno=%d", size, errno);
		return 1;
	}
	say("case=%s sigaltstack_bytes=%zu", name, size);
	for (int i = 0; i < ROUNDS; i++)
		raise(SIGUSR1);
	/* Back to the main stack for everything after the handler. */
	stack_t off = {.ss_flags = SS_DISABLE};
	sigaltstack(&off, NULL);
	say("sig_hits=%d", (int)sig_hits);
	expect3(name, 1, ROUNDS);
	return sig_hits == ROUNDS ? 0 : 1;
}

/* ------------------------------------------------------------------------
 * Thread cases: every thread on a PTHREAD_STACK_MIN stack of our own. */
static size_t thread_stack;
static _Atomic int thread_errors;

static int start_small(pthread_t *t, struct gstack *g, const char *name, void *(*fn)(void *),
                       void *arg)
{
	pthread_attr_t at;
	int rc = gstack_new(g, thread_stack, name);
	if (rc == 0) {
		pthread_attr_init(&at);
		rc = pthread_attr_setstack(&at, g->lo, g->size);
		if (rc == 0)
			rc = pthread_create(t, &at, fn, arg);
		pthread_attr_destroy(&at);
		if (rc != 0) {
			say("error=pthread_create on a %zu byte stack: %s", g->size, strerror(rc));
			gstack_free(g);
		}
	}
	if (rc != 0)
		atomic_fetch_add(&thread_errors, 1);
	return rc;
}

static void *thr_main(void *arg)
{
	int i = (int)(intptr_t)arg;
	struct gstack rep = {0};
	report_stack_on(&rep);
	for (int r = 0; r < T_ROUNDS; r++) {
		thr_64(i);
		thr_100k(i);
		thr_2m(i);
	}
	report_stack_off(&rep);
	return NULL;
}

static void *child_main(void *arg)
{
	int i = (int)(intptr_t)arg;
	struct gstack rep = {0};
	report_stack_on(&rep);
	for (int r = 0; r < N_ROUNDS; r++) {
		child_64(i);
		child_100k(i);
		child_2m(i);
	}
	report_stack_off(&rep);
	return NULL;
}

static void *parent_main(void *arg)
{
	int i = (int)(intptr_t)arg;
	struct gstack rep = {0}, cs;
	pthread_t c;
	report_stack_on(&rep);
	/* pthread_create from this small stack: heaptap records (unwinds) the
	 * creation here. */
	int rc = start_small(&c, &cs, "child_stack", child_main, arg);
	for (int r = 0; r < N_ROUNDS; r++) {
		parent_64(i);
		parent_100k(i);
		parent_2m(i);
	}
	if (rc == 0) {
		pthread_join(c, NULL);
		gstack_free(&cs);
	}
	report_stack_off(&rep);
	return NULL;
}

static int run_threads(int n, const char *stack_name, void *(*fn)(void *))
{
	pthread_t t[THREADS];
	struct gstack g[THREADS];
	int ok[THREADS];
	for (int i = 0; i < n; i++)
		ok[i] = start_small(&t[i], &g[i], stack_name, fn, (void *)(intptr_t)i) == 0;
	for (int i = 0; i < n; i++) {
		if (ok[i]) {
			pthread_join(t[i], NULL);
			gstack_free(&g[i]);
		}
	}
	return atomic_load(&thread_errors) ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
int main(int argc, char **argv)
{
	const char *which = argc > 1 ? argv[1] : "";
	/* A fault is the failure this test looks for: no core files. */
	struct rlimit no_core = {0, 0};
	setrlimit(RLIMIT_CORE, &no_core);
	long ps = sysconf(_SC_PAGESIZE);
	page = ps > 0 ? (size_t)ps : 4096;
	thread_stack = PTHREAD_STACK_MIN;
	const char *from = "";
	size_t sigmin = min_sigstack(&from);
	say("sizes sig8k=%d sigmin=%zu sigmin_from=%s(%zu) pthread_stack_min=%zu page=%zu", SIG8K,
	    sigmin, from, sigmin - 4096, thread_stack, page);

	/* Bind malloc, free and raise now, on the main stack: glibc's lazy
	 * binding saves the whole xsave state on the stack, which on its own
	 * can overrun the minimal sigaltstack on a first call from the handler
	 * (that would be a fault of this program, not of any allocator). */
	void *warm = malloc(1);
	rel_touch(warm, 1);
	free(warm);
	struct sigaction ign = {0};
	ign.sa_handler = SIG_IGN;
	sigaction(SIGUSR1, &ign, NULL);
	raise(SIGUSR1);

	/* The main thread's report stack, for faults outside the signal cases
	 * (the signal cases replace it with the small stack). */
	struct gstack rep = {0};
	report_stack_on(&rep);
	install_segv_report();

	int rc;
	if (strcmp(which, "sig8k") == 0) {
		rc = run_sig("sig8k", SIG8K, sig8k_64, sig8k_100k, sig8k_2m);
	} else if (strcmp(which, "sigmin") == 0) {
		rc = run_sig("sigmin", sigmin, sigmin_64, sigmin_100k, sigmin_2m);
	} else if (strcmp(which, "threads") == 0) {
		say("case=threads threads=%d stack_bytes=%zu", THREADS, thread_stack);
		rc = run_threads(THREADS, "thread_stack", thr_main);
		expect3("thr", THREADS, THREADS * T_ROUNDS);
	} else if (strcmp(which, "nested") == 0) {
		say("case=nested parents=%d stack_bytes=%zu", PARENTS, thread_stack);
		rc = run_threads(PARENTS, "parent_stack", parent_main);
		expect3("parent", PARENTS, PARENTS * N_ROUNDS);
		expect3("child", PARENTS, PARENTS * N_ROUNDS);
	} else {
		say("usage: rel_smallstack sig8k|sigmin|threads|nested");
		return 2;
	}
	say("thread_errors=%d", atomic_load(&thread_errors));
	say("dump=%d", rel_dump());
	say("done=%d", rc == 0);
	return rc;
}
