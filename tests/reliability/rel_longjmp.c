/*
 * rel_longjmp.c - siglongjmp out of heaptap's sampled path (reliability
 * matrix item S04).
 *
 * A program may leave a signal handler with siglongjmp, abandoning whatever
 * the signal interrupted: an interpreter's timeout, a "safe" memory probe,
 * a test harness. If that was heaptap taking a sample, heaptap's per-thread
 * "busy" mark (its guard against recursion) must not stay set for ever: if
 * it did, every later allocation of that thread would be served from
 * heaptap's own memory and never sampled, and leaks would vanish from the
 * profile.
 *
 * The program finds libheaptap.so's executable ranges (dl_iterate_phdr),
 * then mallocs and frees in a loop while an interval timer (ITIMER_REAL,
 * every 200 us) fires a handler that siglongjmps back to the loop, but
 * only when the interrupted instruction (the ucontext's RIP) lies inside
 * libheaptap.so. Jumping out of libc or libunwind would leave their locks
 * held, which is undefined for any program, so the test never does that.
 * After JUMPS jumps (or SECONDS) the timer stops and, from a separate
 * function, the program allocates K blocks of FINAL bytes, keeps them,
 * prints where they are and the figures heaptap reports (before the loop
 * and now), and dumps.
 *
 *   rel_longjmp LOOP_MIN LOOP_MAX FINAL K JUMPS SECONDS
 *
 * Output: heaptap_text=N (executable ranges found: 0 without heaptap),
 * jumps= ticks= iterations=, jump_at=0xOFFSET count=N (the jump sites, as
 * offsets into libheaptap.so, for addr2line), "expect final_alloc ...",
 * in_heap= (final blocks inside the [heap] mapping, where glibc's main arena
 * puts them and heaptap's own memory never is), cancel_enabled= (the
 * sampled path turns cancellation off while it unwinds), own_before=
 * own_after= samples_before= samples_after= (heaptap_stats before the loop
 * and after the final phase), dump=, done=1.
 */
#include "rel_common.h"

#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/time.h>
#include <ucontext.h>

#define MAX_RANGES 8
#define MAX_SITES  512

static uintptr_t text_lo[MAX_RANGES], text_hi[MAX_RANGES], lib_base;
static int ntext;

static sigjmp_buf back;
static volatile sig_atomic_t armed;
static volatile sig_atomic_t jumps, ticks;
static uintptr_t site[MAX_SITES];

static int find_heaptap(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	if (!info->dlpi_name || !strstr(info->dlpi_name, "libheaptap"))
		return 0;
	lib_base = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum && ntext < MAX_RANGES; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			text_lo[ntext] = info->dlpi_addr + ph->p_vaddr;
			text_hi[ntext] = text_lo[ntext] + ph->p_memsz;
			ntext++;
		}
	}
	return 1;
}

static int in_heaptap(uintptr_t ip)
{
	for (int i = 0; i < ntext; i++)
		if (ip >= text_lo[i] && ip < text_hi[i])
			return 1;
	return 0;
}

static void on_tick(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	ticks++;
	uintptr_t ip = (uintptr_t)((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP];
	if (!armed || !in_heaptap(ip))
		return; /* anywhere else: just return, as a well-behaved handler */
	armed = 0;
	if (jumps < MAX_SITES)
		site[jumps] = ip - lib_base;
	jumps++;
	siglongjmp(back, 1);
}

static NOINLINE void *churn_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static size_t loop_min, loop_max;
static volatile unsigned long iterations;
static unsigned seed = 12345;

/* The interrupted loop. Everything it uses lives outside its frame, so a
 * jump back into main's sigsetjmp loses nothing. */
static NOINLINE void churn(int target, double until)
{
	while (jumps < target && rel_now() < until) {
		size_t n = loop_min + (size_t)rand_r(&seed) % (loop_max - loop_min + 1);
		void *p = churn_alloc(n);
		free(p);
		iterations++;
	}
}

static NOINLINE void *final_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

/* How many of the blocks lie inside the [heap] mapping. */
static int count_in_heap(void **blocks, int k)
{
	uintptr_t lo[8], hi[8];
	int nh = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[heap]") && nh < 8 &&
		    sscanf(line, "%lx-%lx", &lo[nh], &hi[nh]) == 2)
			nh++;
	if (f)
		fclose(f);
	int in = 0;
	for (int i = 0; i < k; i++)
		for (int j = 0; j < nh; j++)
			if ((uintptr_t)blocks[i] >= lo[j] && (uintptr_t)blocks[i] < hi[j]) {
				in++;
				break;
			}
	return in;
}

static void print_sites(void)
{
	int n = jumps < MAX_SITES ? (int)jumps : MAX_SITES;
	/* One line per distinct site, with its count (n is small). */
	for (int i = 0; i < n; i++) {
		int seen = 0, count = 0;
		for (int j = 0; j < i; j++)
			seen |= site[j] == site[i];
		if (seen)
			continue;
		for (int j = i; j < n; j++)
			count += site[j] == site[i];
		say("jump_at=%#lx count=%d", (unsigned long)site[i], count);
	}
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: rel_longjmp LOOP_MIN LOOP_MAX FINAL K JUMPS SECONDS\n");
		return 2;
	}
	loop_min = (size_t)atol(argv[1]);
	loop_max = (size_t)atol(argv[2]);
	size_t final = (size_t)atol(argv[3]);
	int k = atoi(argv[4]);
	int target = atoi(argv[5]);
	double seconds = atof(argv[6]);
	if (loop_max < loop_min || k <= 0)
		return 2;
	void **blocks = calloc((size_t)k, sizeof(void *));

	dl_iterate_phdr(find_heaptap, NULL);
	say("heaptap_text=%d", ntext);
	/* heaptap's figures before any jump (heaptap_stats takes heaptap's
	 * locks, which are all free here). */
	struct heaptap_stats s0;
	rel_stats(&s0);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_tick;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 200}, {0, 200}};
	/* Without heaptap there is nothing to jump out of: a short run. */
	double until = rel_now() + (ntext ? seconds : 0.2);
	setitimer(ITIMER_REAL, &it, NULL);
	/* Each jump lands here again, with the signal mask of this point
	 * (SIGALRM unblocked) restored. */
	sigsetjmp(back, 1);
	armed = 1;
	churn(target, until);
	armed = 0;
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	signal(SIGALRM, SIG_IGN); /* one may still be on its way */
	say("jumps=%d ticks=%d iterations=%lu", (int)jumps, (int)ticks, iterations);
	print_sites();

	/* Every allocation from here on must be sampled (at rate 1: each one)
	 * and come from the program's allocator. What needs no heaptap lock is
	 * printed first: a lock left held by an abandoned frame hangs
	 * heaptap_stats and heaptap_dump. */
	for (int i = 0; i < k; i++)
		blocks[i] = final_alloc(final);
	say("expect final_alloc %zu %d %zu %d", (size_t)k * final, k, (size_t)k * final, k);
	say("in_heap=%d of %d", count_in_heap(blocks, k), k);
	int old = -1;
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
	say("cancel_enabled=%d", old == PTHREAD_CANCEL_ENABLE);
	struct heaptap_stats s1;
	rel_stats(&s1);
	say("own_before=%llu own_after=%llu samples_before=%llu samples_after=%llu",
	    (unsigned long long)s0.own_bytes, (unsigned long long)s1.own_bytes,
	    (unsigned long long)s0.samples, (unsigned long long)s1.samples);
	say("dump=%d", rel_dump());
	say("done=1");
	return 0;
}
