/*
 * main.c - the heaptap command: dispatch, `run` and `dump`.
 *
 * `run` sets the HEAPTAP_* variables and LD_PRELOAD and executes the
 * program. `dump PID` asks a running process for a dump and waits for the
 * new pair of files: it checks first that the process catches the dump
 * signal (an uncaught SIGUSR2 would kill it), finds where the process writes
 * (its HEAPTAP_DIR, else its working directory) from /proc, and waits until
 * the thread profile of a newer dump number exists (heaptap links the heap
 * profile first, then the thread profile).
 */
#include "cmds.h"

#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef HC_VERSION
#define HC_VERSION "0.0.0"
#endif

static void usage(FILE *o)
{
	fprintf(o,
	        "usage: heaptap run [options] -- command [args...]\n"
	        "       heaptap dump [--signal S] [--dir D] [--timeout SECONDS] PID\n"
	        "       heaptap top FILE [-n N] [--sample TYPE] [--json]\n"
	        "       heaptap threads FILE [-n N] [--json]\n"
	        "       heaptap diff BASE FILE [-n N] [--sample TYPE] [--json]\n"
	        "       heaptap leaks [--json] [-n N] [--min-growth BYTES] [--fail-on LIST] FILE...\n"
	        "       heaptap report -o OUT.html [--min-growth BYTES] [--max-nodes N] FILE...\n"
	        "       heaptap --version | --help\n"
	        "\n"
	        "heaptap run options (each sets the HEAPTAP_* variable of the same name):\n"
	        "  --rate N        mean bytes between heap samples (1 = every allocation, 0 = off)\n"
	        "  --dir D         directory the profiles go to\n"
	        "  --interval T    periodic dumps: 30, 30s, 500ms, 5m (0 = off)\n"
	        "  --at-exit       one more dump at normal exit\n"
	        "  --signal S      signal that requests a dump: USR2, SIGUSR1, a number or none\n"
	        "  --depth N       most frames kept per stack\n"
	        "  --http ADDR     serve /debug/pprof on ADDR (HEAPTAP_HTTP)\n"
	        "\n"
	        "dump asks PID for a dump and prints the two new files once both exist.\n"
	        "top: the functions holding the most (like pprof -top), headed by the process\n"
	        "figures. threads: live threads by creation stack. diff: what grew and shrank,\n"
	        "with each change's significance. leaks: from a series of dumps of one process,\n"
	        "whether memory or threads leak, the allocator keeps freed memory, or growth\n"
	        "levels off. report: one self-contained HTML page for the series (the leaks\n"
	        "verdict, a chart over time, flame graphs) that opens offline. Exit status: 0\n"
	        "nothing found (report: the page is written), 1 a leak (or failure), 2 usage or\n"
	        "an unreadable file.\n");
}

int hc_parse_size(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return -EINVAL;
	double m = 1;
	switch (toupper((unsigned char)*end)) {
	case 0:
		break;
	case 'K':
		m = 1024;
		break;
	case 'M':
		m = 1024.0 * 1024;
		break;
	case 'G':
		m = 1024.0 * 1024 * 1024;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (toupper((unsigned char)*end) == 'I')
			end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
		if (*end)
			return -EINVAL;
	}
	*out = v * m;
	return 0;
}

/* ---- run ---------------------------------------------------------------- */

static int exists(const char *p)
{
	return access(p, R_OK) == 0;
}

/* The library: $HEAPTAP_LIB, else next to this program as installed, else
 * the build tree's (only for the build tree's copy of the command), else
 * the configured install path. */
static void find_lib(char *out, size_t len)
{
	const char *env = getenv("HEAPTAP_LIB");
	if (env && *env) {
		snprintf(out, len, "%s", env);
		return;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
#ifdef HC_REL_LIB
			char real[PATH_MAX];
			if (snprintf(out, len, "%s/%s", self, HC_REL_LIB) < (int)len &&
			    exists(out) && realpath(out, real)) {
				snprintf(out, len, "%s", real);
				return;
			}
#endif
#if defined(HC_BUILD_LIB) && defined(HC_BUILD_BINDIR)
			char here[PATH_MAX], bin[PATH_MAX];
			if (realpath(self, here) && realpath(HC_BUILD_BINDIR, bin) &&
			    !strcmp(here, bin) && exists(HC_BUILD_LIB)) {
				snprintf(out, len, "%s", HC_BUILD_LIB);
				return;
			}
#endif
		}
	}
#ifdef HC_INSTALL_LIB
	snprintf(out, len, "%s", HC_INSTALL_LIB);
#else
	snprintf(out, len, "libheaptap.so");
#endif
}

int hc_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"rate", required_argument, 0, 'r'},     {"dir", required_argument, 0, 'd'},
	        {"interval", required_argument, 0, 'i'}, {"signal", required_argument, 0, 's'},
	        {"depth", required_argument, 0, 'D'},    {"http", required_argument, 0, 'H'},
	        {"at-exit", no_argument, 0, 'a'},        {0, 0, 0, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		const char *var = NULL;
		switch (c) {
		case 'r':
			var = "HEAPTAP_RATE";
			break;
		case 'd':
			var = "HEAPTAP_DIR";
			break;
		case 'i':
			var = "HEAPTAP_INTERVAL";
			break;
		case 's':
			var = "HEAPTAP_SIGNAL";
			break;
		case 'D':
			var = "HEAPTAP_DEPTH";
			break;
		case 'H':
			var = "HEAPTAP_HTTP";
			break;
		case 'a':
			setenv("HEAPTAP_AT_EXIT", "1", 1);
			continue;
		case ':':
			hc_die(2, "option %s needs a value", argv[optind - 1]);
		default:
			hc_die(2, "unknown run option: %s (see heaptap --help)", argv[optind - 1]);
		}
		setenv(var, optarg, 1);
	}
	if (optind >= argc)
		hc_die(2, "run: no command given (heaptap run [options] -- command [args...])");
	char lib[PATH_MAX];
	find_lib(lib, sizeof(lib));
	if (!exists(lib))
		hc_die(2, "library not found: %s (set HEAPTAP_LIB)", lib);
	if (lib[0] != '/') {
		char real[PATH_MAX];
		if (realpath(lib, real))
			snprintf(lib, sizeof(lib), "%s", real);
	}
	/* Before any existing LD_PRELOAD, so heaptap sees allocations first. */
	const char *old = getenv("LD_PRELOAD");
	size_t need = strlen(lib) + (old ? strlen(old) + 2 : 1);
	char *pre = hc_xmalloc(need);
	snprintf(pre, need, "%s%s%s", lib, old && *old ? ":" : "", old && *old ? old : "");
	setenv("LD_PRELOAD", pre, 1);
	execvp(argv[optind], argv + optind);
	hc_die(127, "run: cannot execute %s: %s", argv[optind], strerror(errno));
}

/* ---- dump --------------------------------------------------------------- */

static const struct {
	const char *name;
	int sig;
} signames[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
                {"USR2", SIGUSR2}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH},
                {"CONT", SIGCONT}, {"PROF", SIGPROF}, {"URG", SIGURG},   {"IO", SIGIO},
                {"PWR", SIGPWR},   {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"VTALRM", SIGVTALRM},
                {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"SYS", SIGSYS},   {"CHLD", SIGCHLD}};

/* 0 for none, -1 for bad, else the signal. */
static int parse_signal(const char *s)
{
	if (!strcasecmp(s, "none") || !*s)
		return 0;
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	if (isdigit((unsigned char)*s)) {
		char *end;
		long v = strtol(s, &end, 10);
		return *end || v < 1 || v > SIGRTMAX ? -1 : (int)v;
	}
	if (!strncasecmp(s, "RTMIN+", 6))
		return SIGRTMIN + atoi(s + 6) <= SIGRTMAX ? SIGRTMIN + atoi(s + 6) : -1;
	for (size_t i = 0; i < sizeof(signames) / sizeof(signames[0]); i++)
		if (!strcasecmp(s, signames[i].name))
			return signames[i].sig;
	return -1;
}

/* A variable from /proc/PID/environ (the environment at exec), or NULL. */
static char *proc_env(int pid, const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/environ", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = hc_xmalloc(cap + 1);
	ssize_t r;
	while ((r = read(fd, buf + n, cap - n)) > 0) {
		n += (size_t)r;
		if (n == cap) {
			cap *= 2;
			buf = hc_xrealloc(buf, cap + 1);
		}
	}
	close(fd);
	buf[n] = 0;
	size_t nl = strlen(name);
	char *found = NULL;
	for (char *p = buf; p < buf + n; p += strlen(p) + 1)
		if (!strncmp(p, name, nl) && p[nl] == '=') {
			found = hc_xstrdup(p + nl + 1);
			break;
		}
	free(buf);
	return found;
}

/* Does the process catch signal sig? -1 when unknown. */
static int catches(int pid, int sig)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	int r = -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "SigCgt:", 7)) {
			unsigned long long mask = strtoull(line + 7, NULL, 16);
			r = (mask >> (sig - 1)) & 1;
		}
	fclose(f);
	return r;
}

static int alive(int pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* The highest dump number with a complete pair in dir. */
static int latest(const char *dir, int pid)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *e;
	int best = 0;
	char prefix[64];
	int pl = snprintf(prefix, sizeof(prefix), "heaptap.%d.", pid);
	while ((e = readdir(d))) {
		int seq;
		char rest[32];
		if (strncmp(e->d_name, prefix, (size_t)pl))
			continue;
		if (sscanf(e->d_name + pl, "%d.%31s", &seq, rest) == 2 &&
		    !strcmp(rest, "threads.pb.gz") && seq > best)
			best = seq;
	}
	closedir(d);
	return best;
}

int hc_cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {{"signal", required_argument, 0, 's'},
	                                     {"dir", required_argument, 0, 'd'},
	                                     {"timeout", required_argument, 0, 't'},
	                                     {0, 0, 0, 0}};
	const char *sigs = NULL, *dir_opt = NULL;
	double timeout = 10;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sigs = optarg;
			break;
		case 'd':
			dir_opt = optarg;
			break;
		case 't': {
			char *end;
			timeout = strtod(optarg, &end);
			if (end == optarg || *end || !(timeout > 0))
				hc_die(2, "dump: --timeout wants seconds: %s", optarg);
			break;
		}
		default:
			hc_die(2,
			       "dump: usage: heaptap dump [--signal S] [--dir D] [--timeout SECONDS] "
			       "PID");
		}
	}
	if (argc - optind != 1)
		hc_die(2, "dump: give exactly one PID");
	const char *ps = argv[optind];
	if (!*ps || strspn(ps, "0123456789") != strlen(ps) || strlen(ps) > 9)
		hc_die(2, "dump: not a pid: %s", ps);
	int pid = atoi(ps);
	if (pid <= 0 || !alive(pid))
		hc_die(1, "dump: no process %d", pid);

	char *penv = sigs ? NULL : proc_env(pid, "HEAPTAP_SIGNAL");
	if (!sigs)
		sigs = penv ? penv : getenv("HEAPTAP_SIGNAL") ? getenv("HEAPTAP_SIGNAL") : "USR2";
	int sig = parse_signal(sigs);
	if (sig < 0)
		hc_die(2, "dump: not a signal: %s", sigs);
	if (sig == 0)
		hc_die(2, "dump: the dump signal is 'none'; use --signal or heaptap_dump()");
	int cg = catches(pid, sig);
	if (cg == 0)
		hc_die(1,
		       "dump: process %d does not catch signal %d (%s): it does not run heaptap, "
		       "or its dump signal is another one; not sent",
		       pid, sig, sigs);

	char dir[PATH_MAX];
	char *penvdir = dir_opt ? NULL : proc_env(pid, "HEAPTAP_DIR");
	if (dir_opt || (penvdir && *penvdir)) {
		snprintf(dir, sizeof(dir), "%s", dir_opt ? dir_opt : penvdir);
		/* A relative HEAPTAP_DIR is relative to the process's directory. */
		if (!dir_opt && dir[0] != '/') {
			char cwd[64], base[PATH_MAX];
			snprintf(cwd, sizeof(cwd), "/proc/%d/cwd", pid);
			ssize_t n = readlink(cwd, base, sizeof(base) - 1);
			if (n > 0) {
				base[n] = 0;
				char joined[2 * PATH_MAX + 2];
				snprintf(joined, sizeof(joined), "%s/%s", base, dir);
				if (strlen(joined) >= sizeof(dir))
					hc_die(1, "dump: directory name too long: %s", joined);
				memcpy(dir, joined, strlen(joined) + 1);
			}
		}
	} else {
		char cwd[64];
		snprintf(cwd, sizeof(cwd), "/proc/%d/cwd", pid);
		ssize_t n = readlink(cwd, dir, sizeof(dir) - 1);
		if (n <= 0)
			hc_die(1,
			       "dump: cannot tell where process %d writes (no access to %s); "
			       "use --dir",
			       pid, cwd);
		dir[n] = 0;
	}
	free(penv);
	free(penvdir);

	int before = latest(dir, pid);
	if (kill(pid, sig) != 0)
		hc_die(1, "dump: cannot send signal %d to %d: %s", sig, pid, strerror(errno));
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int seq = latest(dir, pid);
		if (seq > before && seq > 0) {
			printf("%s/heaptap.%d.%04d.heap.pb.gz\n%s/heaptap.%d.%04d.threads.pb.gz\n",
			       dir, pid, seq, dir, pid, seq);
			return 0;
		}
		if (!alive(pid))
			hc_die(1, "dump: process %d ended before its dump appeared in %s", pid,
			       dir);
		clock_gettime(CLOCK_MONOTONIC, &now);
		double el =
		        (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
		if (el >= timeout)
			hc_die(1, "dump: no new dump from process %d in %s within %gs (%s)", pid,
			       dir, timeout,
			       cg < 0 ? "cannot read its signal mask"
			              : "its directory may be elsewhere: use --dir, or a longer --timeout");
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	opterr = 0; /* every message is one "heaptap: " line of our own */
	const char *cmd = argv[1];
	argc--;
	argv++;
	if (!strcmp(cmd, "run"))
		return hc_cmd_run(argc, argv);
	if (!strcmp(cmd, "dump"))
		return hc_cmd_dump(argc, argv);
	if (!strcmp(cmd, "top"))
		return hc_cmd_top(argc, argv);
	if (!strcmp(cmd, "threads"))
		return hc_cmd_threads(argc, argv);
	if (!strcmp(cmd, "diff"))
		return hc_cmd_diff(argc, argv);
	if (!strcmp(cmd, "leaks"))
		return hc_cmd_leaks(argc, argv);
	if (!strcmp(cmd, "report"))
		return hc_cmd_report(argc, argv);
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("heaptap %s\n", HC_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	hc_die(2, "unknown command: %s (see heaptap --help)", cmd);
}
