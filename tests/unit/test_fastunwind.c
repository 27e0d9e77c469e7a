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
 * checked against libunwind by test_unwind_check.py.
 */
#include "unit_util.h"

#include "fastunwind.h"

#include <errno.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(rules_match_readelf),
	        cmocka_unit_test(forget_retires_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
