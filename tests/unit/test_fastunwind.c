/*
 * test_fastunwind.c - heaptap's CFI reader against binutils' readelf -wF.
 *
 * For every row of every FDE of libc, libstdc++ and this program, the rule
 * fastunwind.c derives at the row's first and last address (as a return
 * address: the address after) must be what readelf's table says: CFA
 * rsp+k or rbp+k, rbp unchanged or saved at CFA-k, return address at CFA-8
 * (or undefined: the outermost frame); and every row the walker does not
 * handle (CFA or rbp by expression, a signal frame's CIE, odd offsets)
 * must come back unsupported, never as a wrong rule. The walk itself is
 * checked against libunwind by test_unwind_check.py; here, the thread's
 * previous stack: every stack taken with it (repeated, changed above its
 * first frame, met again deeper or shallower, cut shorter or longer) must
 * be the stack a walk without it gives, and the leading frames the walker
 * vouches for (*plain) must lie outside heaptap's text.
 */
#include "unit_util.h"

#include "fastunwind.h"
#include "thread.h"
#include "unwind.h"

#include <errno.h>
#include <pthread.h>

struct expect {
	int kind; /* 0 a step, 1 the outermost frame, -1 unsupported */
	int cfa_rbp;
	int32_t cfa_off, rbp_save;
};

/* One readelf row's columns: "rsp+8", "u", "c-16", "exp", "r12"... */
static struct expect expect_of(const char *cfa, const char *rbp, const char *ra, int signal)
{
	struct expect e = {-1, 0, 0, 0};
	if (signal)
		return e;
	if (strcmp(ra, "u") == 0) {
		e.kind = 1;
		return e;
	}
	if (strcmp(ra, "c-8") != 0)
		return e;
	long off;
	char reg[8];
	if (sscanf(cfa, "%3[a-z]+%ld", reg, &off) != 2 ||
	    (strcmp(reg, "rsp") != 0 && strcmp(reg, "rbp") != 0) || off <= 0 || off % 8)
		return e;
	e.cfa_rbp = strcmp(reg, "rbp") == 0;
	e.cfa_off = (int32_t)off;
	if (rbp && strcmp(rbp, "u") != 0) {
		long k;
		if (sscanf(rbp, "c-%ld", &k) != 1 || k <= 0 || k % 8 || strchr(rbp, '+'))
			return e;
		e.rbp_save = (int32_t)k;
	}
	e.kind = 0;
	return e;
}

struct totals {
	unsigned checked, steps, last, unsupported, wrong;
};

static void check_pc(uintptr_t pc, const struct expect *want, struct totals *t, const char *what,
                     uintptr_t loc)
{
	int cfa_rbp = -1;
	int32_t cfa_off = -1, rbp_save = -1;
	int r = ht_fastunwind_rule(pc, &cfa_rbp, &cfa_off, &rbp_save);
	t->checked++;
	int ok;
	if (want->kind == 0) {
		ok = r == 0 && cfa_rbp == want->cfa_rbp && cfa_off == want->cfa_off &&
		     rbp_save == want->rbp_save;
		t->steps += ok;
	} else if (want->kind == 1) {
		ok = r == 1;
		t->last += ok;
	} else {
		ok = r < 0;
		t->unsupported += ok;
	}
	if (!ok && t->wrong++ < 10)
		print_message("%s: row at %#lx: want kind %d cfa %s+%d rbp@%d, got %d cfa %s+%d "
		              "rbp@%d\n",
		              what, (unsigned long)loc, want->kind, want->cfa_rbp ? "rbp" : "rsp",
		              want->cfa_off, want->rbp_save, r, cfa_rbp == 1 ? "rbp" : "rsp",
		              cfa_off, rbp_save);
}

#define MAX_CIES 64

/* Every row of path's .eh_frame, loaded at base. */
static struct totals check_module(const char *path, uintptr_t base)
{
	struct totals t = {0};
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "readelf -wF '%s' 2>/dev/null", path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	struct {
		unsigned long off;
		int signal;
		struct expect init;
	} cies[MAX_CIES];
	unsigned ncies = 0;
	char line[4096];
	/* The block being read: a CIE (its initial row) or an FDE. */
	int in_cie = -1, signal = 0, have_rows = 0;
	unsigned long fde_lo = 0, fde_hi = 0;
	int rbp_col = -1, ra_col = -1;
	struct expect cur = {-1, 0, 0, 0}, cie_init = {-1, 0, 0, 0};
	unsigned long cur_loc = 0;
	int have_cur = 0;
#define FLUSH(next)                                                                                \
	do {                                                                                       \
		if (have_cur && in_cie < 0) {                                                      \
			check_pc(base + cur_loc + 1, &cur, &t, path, cur_loc);                     \
			if ((next)-1 > cur_loc)                                                    \
				check_pc(base + (next), &cur, &t, path, cur_loc);                  \
		}                                                                                  \
		have_cur = 0;                                                                      \
	} while (0)
	while (fgets(line, sizeof(line), f)) {
		unsigned long off, cie, lo, hi;
		char aug[32];
		if (sscanf(line, "%lx %*x %*x CIE \"%31[^\"]\"", &off, aug) == 2) {
			FLUSH(fde_hi);
			if (ncies < MAX_CIES) {
				in_cie = (int)ncies;
				cies[ncies].off = off;
				cies[ncies].signal = strchr(aug, 'S') != NULL;
				cies[ncies].init = (struct expect){-1, 0, 0, 0};
				ncies++;
			}
			rbp_col = ra_col = -1;
			continue;
		}
		if (sscanf(line, "%*x %*x %*x FDE cie=%lx pc=%lx..%lx", &cie, &lo, &hi) == 3) {
			FLUSH(fde_hi);
			in_cie = -1;
			signal = 0;
			cie_init = (struct expect){-1, 0, 0, 0};
			for (unsigned i = 0; i < ncies; i++)
				if (cies[i].off == cie) {
					signal = cies[i].signal;
					cie_init = cies[i].init;
				}
			fde_lo = lo;
			fde_hi = hi;
			have_rows = 0;
			rbp_col = ra_col = -1;
			continue;
		}
		/* "r10 (r10)": one column, its register's name in parentheses. */
		for (char *q; (q = strstr(line, " (")) && strchr(q, ')');)
			memmove(q, strchr(q, ')') + 1, strlen(strchr(q, ')') + 1) + 1);
		char *tok[64];
		int nt = 0;
		for (char *s = strtok(line, " \t\n"); s && nt < 64; s = strtok(NULL, " \t\n"))
			tok[nt++] = s;
		if (nt == 0) {
			/* End of a block: an FDE with no table of its own has the
			 * CIE's initial row throughout. */
			if (in_cie < 0 && fde_hi > fde_lo && !have_rows && !have_cur) {
				cur = signal ? (struct expect){-1, 0, 0, 0} : cie_init;
				cur_loc = fde_lo;
				have_cur = 1;
				have_rows = 1;
			}
			FLUSH(fde_hi);
			continue;
		}
		if (strcmp(tok[0], "LOC") == 0) {
			for (int i = 2; i < nt; i++) {
				if (strcmp(tok[i], "rbp") == 0)
					rbp_col = i;
				if (strcmp(tok[i], "ra") == 0)
					ra_col = i;
			}
			continue;
		}
		char *end;
		unsigned long loc = strtoul(tok[0], &end, 16);
		if (*end || nt < 3 || ra_col < 0 || ra_col >= nt)
			continue;
		struct expect e =
		        expect_of(tok[1], rbp_col > 0 && rbp_col < nt ? tok[rbp_col] : NULL,
		                  tok[ra_col], signal);
		if (in_cie >= 0) {
			cies[in_cie].init = e;
			continue;
		}
		FLUSH(loc);
		cur = e;
		cur_loc = loc;
		have_cur = 1;
		have_rows = 1;
	}
	FLUSH(fde_hi);
#undef FLUSH
	pclose(f);
	print_message("%s: %u addresses: %u steps, %u outermost, %u unsupported, %u wrong\n", path,
	              t.checked, t.steps, t.last, t.unsupported, t.wrong);
	return t;
}

static int find_module(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	const char **want = arg;
	const char *name = info->dlpi_name;
	if ((!*want[0] && (!name || !*name)) || (name && *want[0] && strstr(name, want[0]))) {
		want[1] = name && *name ? name : "/proc/self/exe";
		want[2] = (const char *)(uintptr_t)info->dlpi_addr;
		return 1;
	}
	return 0;
}

static void check_named(const char *part, unsigned min_rows)
{
	const char *want[3] = {part, NULL, NULL};
	dl_iterate_phdr(find_module, want);
	if (!want[1]) {
		print_message("%s not loaded: skipped\n", part[0] ? part : "the program");
		return;
	}
	char path[PATH_MAX];
	if (strcmp(want[1], "/proc/self/exe") == 0) {
		ssize_t n = readlink(want[1], path, sizeof(path) - 1);
		assert_true(n > 0);
		path[n] = '\0';
	} else {
		snprintf(path, sizeof(path), "%s", want[1]);
	}
	struct totals t = check_module(path, (uintptr_t)want[2]);
	assert_int_equal(t.wrong, 0);
	assert_true(t.checked >= min_rows);
	/* Nearly all of it is plain (Debian 12's libc: 99.8% of rows). */
	assert_true(t.steps + t.last >= t.checked / 10 * 9);
}

static void rules_match_readelf(void **state)
{
	(void)state;
	if (system("readelf --version >/dev/null 2>&1") != 0)
		skip();
	ht_fastunwind_init();
	/* libstdc++ for its C++ code (exceptions, operator new). */
	void *cxx = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
	check_named("libc.so.6", 10000);
	if (cxx)
		check_named("libstdc++.so.6", 10000);
	check_named("", 10);
	if (cxx)
		dlclose(cxx);
}

/* After dlclose the cached rules are retired: the same address asked again
 * is computed afresh (here: still no module, so unsupported). */
static void forget_retires_rules(void **state)
{
	(void)state;
	int cfa_rbp;
	int32_t cfa_off, rbp_save;
	uintptr_t pc = (uintptr_t)&printf + 1;
	assert_true(ht_fastunwind_rule(pc, &cfa_rbp, &cfa_off, &rbp_save) >= 0);
	ht_fastunwind_forget();
	assert_true(ht_fastunwind_rule(pc, &cfa_rbp, &cfa_off, &rbp_save) >= 0);
	/* An address no module holds. */
	assert_true(ht_fastunwind_rule((uintptr_t)4096 * 17, &cfa_rbp, &cfa_off, &rbp_save) < 0);
}

/* ------------------------------------------------ the previous stack */

#define CAP_MAX 96

struct cap {
	uintptr_t pcs[CAP_MAX];
	int n;
	unsigned lead, plain;
};

static struct ht_thread *walker;       /* a thread record with this thread's stack */
static struct cap *cap_want, *cap_got; /* where capture() writes */
static volatile unsigned cap_max;      /* their n_max */
static volatile int sink;

/* Walks from here, as ht_unwind_capture makes them: this frame's pointer,
 * its return address as ra (so one frame of "heaptap's" below ra). The
 * stack without the thread's previous stack (want), then with it (got):
 * from the same frame, so the same stack. */
__attribute__((noinline)) static void capture(void)
{
	uintptr_t ra = (uintptr_t)__builtin_return_address(0);
	uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
	struct cap *c = cap_want;
	memset(c, 0, sizeof(*c));
	ht_fastunwind_use_prefix(false);
	c->n = ht_fastunwind_walk(c->pcs, cap_max, ra, fp, walker, &c->lead, &c->plain);
	c = cap_got;
	memset(c, 0, sizeof(*c));
	ht_fastunwind_use_prefix(true);
	c->n = ht_fastunwind_walk(c->pcs, cap_max, ra, fp, walker, &c->lead, &c->plain);
	__asm__ volatile("" ::: "memory");
}

/* Call paths to capture(), distinct functions (the stores keep them from
 * being merged), the empty asm after each call keeping it from being a
 * tail call. mid and mid2 have the same frame, so one path's frames sit
 * where the other's do. */
#define CALLS(name, k, next)                                                                       \
	__attribute__((noinline)) static void name(void)                                           \
	{                                                                                          \
		sink = k;                                                                          \
		next();                                                                            \
		__asm__ volatile("" ::: "memory");                                                 \
	}
CALLS(mid, 1, capture)
CALLS(mid2, 2, capture)
CALLS(deep, 3, mid2)
CALLS(via_a, 4, mid)
CALLS(via_b, 5, mid)

/* The same call site above whichever of mid, mid2, deep it calls. */
static void (*volatile below)(void);
CALLS(via_p, 6, below)

/* The stack from path, without the previous stack and with it. */
__attribute__((noinline)) static void take(void (*path)(void), unsigned n_max, struct cap *want,
                                           struct cap *got)
{
	cap_want = want;
	cap_got = got;
	cap_max = n_max;
	path();
	__asm__ volatile("" ::: "memory");
}

static uintptr_t own_lo, own_hi; /* as told ht_fastunwind_note_own */

/* One stack to take: path, with `below` under via_p, n_max frames. */
struct step {
	void (*path)(void);
	void (*below)(void);
	unsigned n_max;
	const char *what;
};

/* Each step's stack with the previous stack is the one without, twice in a
 * row (the second a repeat of the first), and *plain vouches only for
 * frames outside [own_lo, own_hi). All from one call site: the stacks of
 * successive steps differ only where their paths do. got: the last. */
static void check(const struct step *st, unsigned nst, struct cap *got)
{
	struct cap want;
	for (unsigned j = 0; j < 2 * nst; j++) {
		const struct step *s = &st[j / 2];
		below = s->below;
		take(s->path, s->n_max, &want, got);
		assert_true(want.n > 0);
		assert_int_equal(want.lead, 1);
		if (got->n != want.n ||
		    memcmp(got->pcs, want.pcs, (size_t)want.n * sizeof(uintptr_t)))
			fail_msg("%s, round %u: %d frames, want %d", s->what, j % 2, got->n,
			         want.n);
		assert_int_equal(got->lead, 1);
		assert_true(got->plain <= (unsigned)got->n);
		for (unsigned k = 0; k < got->plain; k++)
			assert_false(got->pcs[k] - 1 >= own_lo && got->pcs[k] - 1 < own_hi);
	}
}

static void note_own(uintptr_t lo, uintptr_t hi)
{
	own_lo = lo;
	own_hi = hi;
	ht_fastunwind_note_own(lo, hi);
}

static void previous_stack_is_the_walk(void **state)
{
	(void)state;
	ht_fastunwind_init();
	walker = calloc(1, sizeof(*walker));
	assert_non_null(walker);
	pthread_attr_t a;
	void *addr;
	size_t size;
	assert_int_equal(pthread_getattr_np(pthread_self(), &a), 0);
	assert_int_equal(pthread_attr_getstack(&a, &addr, &size), 0);
	pthread_attr_destroy(&a);
	walker->stack_lo = (uintptr_t)addr;
	walker->stack_hi = (uintptr_t)addr + size;
	/* A thread keeps its previous stack from its second stack on. */
	atomic_store(&walker->unwind_fast, 1);
	note_own(0, 0);

	unsigned all = CAP_MAX - HT_UNWIND_SLACK;
	const struct step steps[] = {
	        {via_a, NULL, all, "via_a"},
	        /* Its first frame the same, the one above not. */
	        {via_b, NULL, all, "via_b after via_a"},
	        {via_a, NULL, all, "via_a after via_b"},
	        /* Met again above a different first frame (mid2 for mid), then
	         * two frames deep for one (deep, mid2), then one for two. */
	        {via_p, mid, all, "via_p, mid"},
	        {via_p, mid2, all, "via_p, mid2"},
	        {via_p, deep, all, "via_p, deep"},
	        {via_p, mid, all, "via_p, mid after deep"},
	        /* Cut shorter than the previous stack, then longer again. */
	        {via_p, mid, 4, "via_p, 3 frames"},
	        {via_p, mid, all, "via_p after 3 frames"},
	        {via_p, deep, 5, "via_p, deep, 4 frames"},
	        {via_p, deep, 3, "via_p, deep, 2 frames"},
	        {via_p, mid2, 4, "via_p, mid2, 3 frames"},
	        {via_p, deep, all, "via_p, deep after 3 frames"},
	};
	struct cap c;
	check(steps, sizeof(steps) / sizeof(steps[0]), &c);
	assert_true(c.n > 4);

	/* One frame counted as heaptap's (via_p, deep's caller): *plain ends
	 * before it, whether the stack is walked or repeated. (Each check()
	 * starts from a stack of its own: the previous one, walked with other
	 * bounds, is never met again.) */
	note_own(c.pcs[2] - 1, c.pcs[2]);
	const struct step own[] = {
	        {via_p, mid, all, "via_p, mid, via_p heaptap's"},
	        {via_p, deep, all, "via_p, deep, via_p heaptap's"},
	};
	check(own, 2, &c);
	assert_int_equal(c.plain, 2);
	/* Nothing heaptap's: the whole stack vouched for once repeated. */
	note_own(0, 0);
	const struct step none[] = {{via_b, NULL, all, "via_b"}};
	check(none, 1, &c);
	assert_int_equal(c.plain, (unsigned)c.n);
	/* Until told, any frame may be heaptap's: nothing vouched for. */
	note_own(0, UINTPTR_MAX);
	const struct step any[] = {{via_a, NULL, all, "via_a, any frame heaptap's"}};
	check(any, 1, &c);
	assert_int_equal(c.plain, 0);
	note_own(0, 0);
	ht_fastunwind_thread_done(walker);
	free(walker);
	walker = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(rules_match_readelf),
	        cmocka_unit_test(forget_retires_rules),
	        cmocka_unit_test(previous_stack_is_the_walk),
	};
	return cmocka_run_group_tests(tests, unit_setup_mem, NULL);
}
