/*
 * unwind.c - stack capture: heaptap's own unwinder first (fastunwind.c),
 * libunwind for the stacks it leaves, the filtering both share, and the
 * cross-check of the two (HEAPTAP_UNWIND_CHECK). See unwind.h.
 *
 * It also owns how libunwind checks the memory it reads (and fastunwind.c
 * the stack memory outside a thread's known stack). libunwind 1.6.2 as
 * Debian builds it (conservative checks on) validates each new page of stack
 * it reads by write()ing one byte of it into a pipe it opens at start-up and
 * keeps for the life of the process (src/x86_64/Ginit.c, write_validate).
 * Two fds the program never opened break programs that count or pass their
 * fds: Python's test_subprocess (test_pass_fds_redirected) finds them in a
 * child. So heaptap refuses that pipe while libunwind initialises (the pipe2
 * wrapper asks ht_unwind_refuses_pipe) and puts its own access_mem into
 * libunwind's local address space: it probes a page with process_vm_readv
 * on its own pid (no fd; EFAULT when the page is not readable, PROT_NONE
 * guard pages included; rt_sigprocmask where a seccomp filter refuses it)
 * and remembers good pages in a small lock-free table that dlclose empties.
 *
 * And it counts libunwind's per-thread frame caches, for the figure of
 * heaptap's resident memory: they are libunwind's own mmaps, which heaptap
 * cannot see (libunwind's malloc calls, made while a thread is inside
 * heaptap, come from ht_mem and are counted there).
 */
#include "unwind.h"

#include "agg.h"
#include "fastunwind.h"
#include "log.h"
#include "mem.h"
#include "track.h"
#include "options.h"
#include "thread.h"
#include "tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

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

/* The linker's bounds of heaptap's own text section (HT_OWN_TEXT). */
extern const char __start_ht_own_text[] __attribute__((weak, visibility("hidden")));
extern const char __stop_ht_own_text[] __attribute__((weak, visibility("hidden")));

/* Bounds around all of heaptap's own text (the ranges and the section):
 * most frames are tested against this alone. */
static uintptr_t own_min, own_max;

static void note_own_bounds(void)
{
	own_min = UINTPTR_MAX;
	own_max = 0;
	for (unsigned i = 0; i < own_n; i++) {
		own_min = own_lo[i] < own_min ? own_lo[i] : own_min;
		own_max = own_hi[i] > own_max ? own_hi[i] : own_max;
	}
	uintptr_t s = (uintptr_t)__start_ht_own_text, e = (uintptr_t)__stop_ht_own_text;
	if (s < e) {
		own_min = s < own_min ? s : own_min;
		own_max = e > own_max ? e : own_max;
	}
	if (!own_max)
		own_min = 0;
}

static int is_own(uintptr_t ip)
{
	/* A return address is one past the call: ip - 1 is in the caller. */
	uintptr_t at = ip - 1;
	for (unsigned i = 0; i < own_n; i++)
		if (at >= own_lo[i] && at < own_hi[i])
			return 1;
	return at >= (uintptr_t)__start_ht_own_text && at < (uintptr_t)__stop_ht_own_text;
}

/* C++'s operator new and its variants (libstdc++'s, or a replacement the
 * program links) are allocator entry points that reach malloc from inside:
 * their frames are cut from the leaf like heaptap's, so that a stack starts
 * at the function that called new. Found by name once the program's
 * libraries are loaded (ht_unwind_note_allocators). */
#define MAX_WRAPPERS 8
static uintptr_t wrap_lo[MAX_WRAPPERS], wrap_hi[MAX_WRAPPERS];
static _Atomic unsigned wrap_n;

void ht_unwind_note_allocators(void)
{
	static const char *const names[MAX_WRAPPERS] = {
	        "_Znwm",
	        "_Znam",
	        "_ZnwmRKSt9nothrow_t",
	        "_ZnamRKSt9nothrow_t",
	        "_ZnwmSt11align_val_t",
	        "_ZnamSt11align_val_t",
	        "_ZnwmSt11align_val_tRKSt9nothrow_t",
	        "_ZnamSt11align_val_tRKSt9nothrow_t",
	};
	unsigned n = 0;
	for (unsigned i = 0; i < MAX_WRAPPERS; i++) {
		void *f = dlsym(RTLD_DEFAULT, names[i]);
		Dl_info info;
		const ElfW(Sym) *sym = NULL;
		if (!f || !dladdr1(f, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym ||
		    !sym->st_size)
			continue;
		wrap_lo[n] = (uintptr_t)f;
		wrap_hi[n] = (uintptr_t)f + sym->st_size;
		n++;
	}
	atomic_store_explicit(&wrap_n, n, memory_order_release);
}

static int is_allocator(uintptr_t ip)
{
	uintptr_t at = ip - 1;
	unsigned n = atomic_load_explicit(&wrap_n, memory_order_acquire);
	for (unsigned i = 0; i < n; i++)
		if (at >= wrap_lo[i] && at < wrap_hi[i])
			return 1;
	return 0;
}

/* ------------------------------------------------------- memory checks */

#define GOOD_PAGES 512
static _Atomic uintptr_t good_page[GOOD_PAGES];
static atomic_bool refuse_pipe;
/* How a page is checked: 0, process_vm_readv on heaptap's own pid; 1 (it is
 * refused, by a seccomp filter say), rt_sigprocmask with an invalid `how`,
 * which copies 8 bytes from the address before it looks at `how` (EFAULT
 * when they are unreadable, else EINVAL, nothing changed; kernel/signal.c);
 * 2, neither works: every check fails and stacks end where libunwind has to
 * check memory. */
static atomic_int probe_mode;

static unsigned page_slot(uintptr_t page)
{
	return (unsigned)(((page >> 12) * 0x9e3779b97f4a7c15ull) >> 55) & (GOOD_PAGES - 1);
}

static int probe_refused(int e)
{
	return e == ENOSYS || e == EPERM || e == EACCES;
}

static int probe_page(uintptr_t addr)
{
	uintptr_t page = addr & ~(uintptr_t)4095;
	unsigned i = page_slot(page);
	if (atomic_load_explicit(&good_page[i], memory_order_relaxed) == page)
		return 0;
	int mode = atomic_load_explicit(&probe_mode, memory_order_relaxed);
	if (mode == 0) {
		char byte;
		struct iovec local = {&byte, 1}, remote = {(void *)page, 1};
		/* The calling thread's id, each time: a forked child probes
		 * itself, and once the main thread has called pthread_exit the
		 * process id names a zombie with no memory to read. */
		ssize_t r = process_vm_readv((pid_t)syscall(SYS_gettid), &local, 1, &remote, 1, 0);
		if (r == 1)
			goto good;
		if (r == -1 && !probe_refused(errno))
			return -1;
		/* Refused by a seccomp filter, say: rt_sigprocmask checks as well,
		 * so nothing is lost and there is nothing to tell. */
		mode = 1;
		atomic_store(&probe_mode, 1);
	}
	if (mode == 1) {
		long r = syscall(SYS_rt_sigprocmask, -1, (void *)page, (void *)0, 8);
		if (r == -1 && errno == EINVAL)
			goto good;
		if (r == 0 || errno == EFAULT || !probe_refused(errno))
			return -1;
		if (atomic_exchange(&probe_mode, 2) == 1)
			ht_log("process_vm_readv and rt_sigprocmask are refused here; stacks end "
			       "where libunwind has to check memory");
	}
	return -1;
good:
	atomic_store_explicit(&good_page[i], page, memory_order_relaxed);
	return 0;
}

int ht_unwind_readable(uintptr_t addr)
{
	return probe_page(addr);
}

/* libunwind's local access_mem, minus the pipe. Every read is checked (the
 * cursor's own "validate" flag is private to libunwind; its conservative
 * build checks every read too), at the cost of one table look-up per page. */
static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
	(void)as;
	(void)arg;
	if (write) {
		*(unw_word_t *)addr = *val;
		return 0;
	}
	if (addr < 4096 || addr > UINTPTR_MAX - sizeof(unw_word_t))
		return -UNW_EINVAL;
	uintptr_t last = addr + sizeof(unw_word_t) - 1;
	if (probe_page(addr) != 0)
		return -UNW_EINVAL;
	if ((last >> 12) != (addr >> 12) && probe_page(last) != 0)
		return -UNW_EINVAL;
	*val = *(const unw_word_t *)addr;
	return 0;
}

/* ------------------------------------------------------- frame caches */

/* libunwind 1.6 maps a thread's frame cache on the thread's first
 * unw_backtrace, 2^14 slots of 16 bytes (unw_tdep_frame_t, private to
 * libunwind: an address and 64 bits of flags), and writes every slot, so
 * all of it is resident; it unmaps it from a key destructor when the thread
 * exits (src/x86_64/Gtrace.c). Counted here at that size, one per thread
 * that has called unw_backtrace and not exited; a key destructor of
 * heaptap's counts the thread out. A thread whose stacks reach more than
 * 8192 distinct return addresses gets its cache quadrupled, which this does
 * not see. */
#define FRAME_CACHE_BYTES (((size_t)1 << 14) * 16)
static pthread_key_t cache_key;
static atomic_bool cache_key_made;
static _Atomic size_t frame_caches;

static void frame_cache_gone(void *arg)
{
	(void)arg;
	atomic_fetch_sub_explicit(&frame_caches, 1, memory_order_relaxed);
}

/* Before the thread's unw_backtrace. A thread the key cannot be set for
 * (out of memory) is not counted, rather than counted for good. */
static void note_frame_cache(struct ht_tls *t)
{
	if (t->frame_cache)
		return;
	t->frame_cache = 1;
	if (atomic_load_explicit(&cache_key_made, memory_order_acquire) &&
	    pthread_setspecific(cache_key, (void *)1) == 0)
		atomic_fetch_add_explicit(&frame_caches, 1, memory_order_relaxed);
}

size_t ht_unwind_cache_bytes(void)
{
	return atomic_load_explicit(&frame_caches, memory_order_relaxed) * FRAME_CACHE_BYTES +
	       ht_fastunwind_resident();
}

void ht_unwind_atfork_child(void)
{
	/* The calling thread's cache is all that is left. */
	bool mine = ht_tls.frame_cache && atomic_load(&cache_key_made) &&
	            pthread_getspecific(cache_key) != NULL;
	atomic_store(&frame_caches, mine ? 1 : 0);
	ht_fastunwind_atfork_child();
}

bool ht_unwind_refuses_pipe(void)
{
	return atomic_load_explicit(&refuse_pipe, memory_order_relaxed);
}

void ht_unwind_init(void)
{
	/* unw_get_accessors runs libunwind's one-time set-up (which opens the
	 * pipe, refused here) if the program has not used libunwind already;
	 * then the local address space reads through access_mem above. */
	atomic_store(&refuse_pipe, true);
	unw_accessors_t *acc = unw_get_accessors(unw_local_addr_space);
	atomic_store(&refuse_pipe, false);
	if (acc)
		acc->access_mem = access_mem;
	/* Per-thread caches: no global lock shared by unwinding threads. */
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
	own_n = 0;
	dl_iterate_phdr(find_self, (void *)(uintptr_t)&ht_unwind_init);
	note_own_bounds();
	ht_fastunwind_note_own(own_min, own_max);
	ht_fastunwind_init();
	if (pthread_key_create(&cache_key, frame_cache_gone) == 0)
		atomic_store_explicit(&cache_key_made, true, memory_order_release);
	/* The first unwind sets up libunwind's state; do it now, inside
	 * heaptap, rather than in the middle of someone's malloc. */
	void *buf[4];
	note_frame_cache(&ht_tls);
	unw_backtrace(buf, 4);
}

/* A thread's first HT_UNWIND_STEPPED stacks are walked step by step rather
 * than with unw_backtrace. unw_backtrace's fast path gives each thread its
 * own frame cache: 256 KiB mmap'd with every slot written on the thread's
 * first call, munmap'd when the thread exits (libunwind 1.6.2,
 * src/x86_64/Gtrace.c). perf on bench_churn: that page-faulting, zeroing and
 * the TLB shootdowns of the munmap are most of a short-lived thread's cost
 * under heaptap. The step loop costs ~9 us per 15 frames against ~0.1 us
 * warm, so it is only worth it for the first few stacks: a thread that takes
 * more goes on to the cache. At exact rates every allocation is a sample and
 * the cache is used from the start. */
#define HT_UNWIND_STEPPED 4

__attribute__((noinline)) static int step_backtrace(void **buf, int max)
{
	unw_context_t uc;
	unw_cursor_t c;
	if (unw_getcontext(&uc) != 0 || unw_init_local(&c, &uc) != 0)
		return 0;
	int n = 0;
	while (n < max && unw_step(&c) > 0) {
		unw_word_t ip;
		if (unw_get_reg(&c, UNW_REG_IP, &ip) != 0)
			break;
		buf[n++] = (void *)ip;
	}
	return n;
}

/* What is kept of a raw stack buf[0..n) whose first frame of the program
 * is buf[start]: C++'s operator new frames are cut from the leaf, heaptap's
 * own frames further up are left out too (its pthread_create wrapper under
 * glibc's own allocations for a new thread, its thread trampoline at the
 * root of every thread it started), at most max frames, moved down to
 * out[0]. The same for both unwinders, so they give the same stacks.
 * plain: leading frames known to lie outside heaptap's text bounds (the
 * walker's word for them), not looked at again. */
static unsigned keep(uintptr_t *buf, int n, int start, unsigned max, unsigned plain)
{
	while (start < n && is_allocator(buf[start]))
		start++;
	unsigned d = 0;
	int i = start;
	if (start == 0) {
		/* Nothing moves until the first frame to leave out: the usual
		 * stack (none at all) is only scanned. */
		int lim = n < (int)max ? n : (int)max;
		i = plain < (unsigned)lim ? (int)plain : lim;
		uintptr_t span = own_max - own_min;
		while (i < lim && buf[i] && buf[i] - 1 - own_min >= span)
			i++;
		d = (unsigned)i;
	}
	for (; i < n && d < max; i++) {
		uintptr_t pc = buf[i];
		if (!pc)
			break;
		if (is_own(pc))
			continue;
		buf[d++] = pc;
	}
	return d;
}

/* The stack as libunwind gives it, as heaptap has always taken it. Inlined
 * into ht_unwind_capture, so that its backtrace starts from that same frame
 * (fastunwind.c counts heaptap's frames below ra the same way). */
static inline __attribute__((always_inline)) unsigned
libunwind_capture(struct ht_tls *t, uintptr_t *out, unsigned max, uintptr_t ra, bool exact)
{
	/* Unwound straight into out (no second buffer: this runs on whatever
	 * stack the allocation was made on, a small sigaltstack or fiber stack
	 * included), then moved down over heaptap's own frames. */
	void **buf = (void **)out;
	int n;
	/* libunwind is not heaptap's code: whatever it may call, cancellation
	 * stays off while it runs (track.c). */
	ht_track_nocancel();
	if (t->unwinds < HT_UNWIND_STEPPED && !exact) {
		t->unwinds++;
		n = step_backtrace(buf, (int)(max + HT_UNWIND_SLACK));
	} else {
		note_frame_cache(t);
		n = unw_backtrace(buf, (int)(max + HT_UNWIND_SLACK));
	}
	if (n <= 0)
		return 0;
	int start = -1;
	/* The wrapper's return address is the first frame we keep. Only look in
	 * the first few frames: deeper matches would be recursion. */
	for (int i = 0; i < n && i < (int)HT_UNWIND_SLACK; i++) {
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
	return keep(out, n, start, max, 0);
}

/* ------------------------------------------------ counts and the check */

/* Captures taken by each unwinder: per thread (struct ht_thread, written
 * by the thread alone, so no shared cache line per sample), plus those of
 * threads gone and of captures made with no record. Mismatches are rare:
 * one shared counter. */
static _Atomic uint64_t fast_other, fallback_other, mismatches;
static atomic_bool mismatch_told;

static void count(struct ht_thread *th, bool fast)
{
	if (th) {
		/* A load and a store, not an atomic add: nobody else writes it. */
		_Atomic uint64_t *c = fast ? &th->unwind_fast : &th->unwind_fallback;
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
		                      memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(fast ? &fast_other : &fallback_other, 1,
		                          memory_order_relaxed);
	}
}

void ht_unwind_thread_reaped(const struct ht_thread *th)
{
	atomic_fetch_add_explicit(&fast_other, atomic_load(&th->unwind_fast), memory_order_relaxed);
	atomic_fetch_add_explicit(&fallback_other, atomic_load(&th->unwind_fallback),
	                          memory_order_relaxed);
}

void ht_unwind_comment(char *buf, size_t size)
{
	uint64_t fast = 0, fallback = 0;
	/* The registry's records stay alive under the aggregation lock. */
	ht_agg_lock();
	for (struct ht_thread *th = atomic_load(&ht_threads); th; th = atomic_load(&th->next)) {
		fast += atomic_load_explicit(&th->unwind_fast, memory_order_relaxed);
		fallback += atomic_load_explicit(&th->unwind_fallback, memory_order_relaxed);
	}
	fast += atomic_load(&fast_other);
	fallback += atomic_load(&fallback_other);
	ht_agg_unlock();
	snprintf(buf, size, "unwind_fast=%llu unwind_fallback=%llu unwind_mismatches=%llu",
	         (unsigned long long)fast, (unsigned long long)fallback,
	         (unsigned long long)atomic_load(&mismatches));
}

/* Text into a fixed buffer without stdio (this runs inside a malloc):
 * appends what fits, always leaves it terminated. */
struct text {
	char *p;
	size_t used, room;
};

static void put_str(struct text *x, const char *s, size_t max)
{
	for (size_t i = 0; i < max && s[i] && x->used + 1 < x->room; i++)
		x->p[x->used++] = s[i];
	x->p[x->used] = '\0';
}

static void put_hex(struct text *x, uintptr_t v)
{
	char d[2 + 16];
	unsigned n = sizeof(d);
	do {
		d[--n] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	d[--n] = 'x';
	d[--n] = '0';
	put_str(x, d + n, sizeof(d) - n);
}

/* One frame as " module+0xoffset" (the offset from the module's load bias,
 * what addr2line and eu-addr2line take), through _dl_find_object: no lock. */
static void put_frame(struct text *x, uintptr_t pc)
{
	struct dl_find_object o;
	put_str(x, " ", 1);
	if (pc > 1 && _dl_find_object((void *)(pc - 1), &o) == 0 && o.dlfo_link_map) {
		const char *name = o.dlfo_link_map->l_name, *slash;
		if (!name || !*name)
			name = "exe";
		else if ((slash = strrchr(name, '/')))
			name = slash + 1;
		put_str(x, name, 40);
		put_str(x, "+", 1);
		put_hex(x, pc - o.dlfo_link_map->l_addr);
	} else {
		put_hex(x, pc);
	}
}

static void put_stack(char *buf, size_t room, const uintptr_t *pcs, unsigned n, unsigned from)
{
	struct text x = {buf, 0, room};
	buf[0] = '\0';
	for (unsigned i = from; i < n; i++)
		put_frame(&x, pcs[i]);
}

static void tell_mismatch(const uintptr_t *own, unsigned nown, const uintptr_t *lib, unsigned nlib)
{
	uint64_t k = atomic_fetch_add(&mismatches, 1) + 1;
	if (atomic_exchange(&mismatch_told, true))
		return;
	unsigned first = 0;
	while (first < nown && first < nlib && own[first] == lib[first])
		first++;
	/* From the frame before the first difference, as much as one line
	 * holds of each. */
	unsigned from = first ? first - 1 : 0;
	char a[200], b[200];
	put_stack(a, sizeof(a), own, nown, from);
	put_stack(b, sizeof(b), lib, nlib, from);
	ht_log("unwind check: mismatch %llu (only the first is shown) at frame %u of %u/%u; "
	       "own:%s | libunwind:%s",
	       (unsigned long long)k, first, nown, nlib, a, b);
}

unsigned ht_unwind_capture(uintptr_t *out, unsigned max, uintptr_t ra, bool exact,
                           uintptr_t wrap_fp)
{
	if (max > HT_MAX_DEPTH)
		max = HT_MAX_DEPTH;
	struct ht_tls *t = &ht_tls;
	struct ht_thread *th = t->thr;
	unsigned lead, plain;
	/* The wrapper's frame, a live frame below this one on this call chain
	 * (so readable), when it holds ra: the walker then finds it at its
	 * first step. Else from here, through heaptap's frames. */
	uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
	if (wrap_fp && !(wrap_fp & 7) && wrap_fp > fp &&
	    *(const uintptr_t *)(wrap_fp + sizeof(uintptr_t)) == ra)
		fp = wrap_fp;
	int n = ht_fastunwind_walk(out, max + HT_UNWIND_SLACK, ra, fp, th, &lead, &plain);
	if (n < 0) {
		/* A frame the walker leaves to libunwind: the whole stack is
		 * libunwind's, as it always was. */
		count(th, false);
		return libunwind_capture(t, out, max, ra, exact);
	}
	count(th, true);
	/* The walker vouched for every frame kept (a stack that repeats):
	 * only operator new at the leaf is left to rule out, without a call. */
	unsigned lim = (unsigned)n < max ? (unsigned)n : max, d;
	if (plain >= lim && !(n > 0 && is_allocator(out[0])))
		d = lim;
	else
		d = keep(out, n, 0, max, plain);
	if (__builtin_expect(ht_opt.unwind_check, 0)) {
		/* The same stack from libunwind, from this same frame, compared
		 * frame by frame after the same filtering. */
		uintptr_t lib[max + HT_UNWIND_SLACK];
		unsigned dl = libunwind_capture(t, lib, max, ra, exact);
		if (dl != d || memcmp(lib, out, d * sizeof(uintptr_t)) != 0)
			tell_mismatch(out, d, lib, dl);
	}
	return d;
}

void ht_unwind_flush(void)
{
	unw_flush_cache(unw_local_addr_space, 0, 0);
	/* Pages of an unloaded library are no longer known to be readable. */
	for (unsigned i = 0; i < GOOD_PAGES; i++)
		atomic_store_explicit(&good_page[i], 0, memory_order_relaxed);
}
