/*
 * options.c - parsing HEAPTAP_* into ht_opt.
 *
 * Runs inside the first allocation heaptap sees, so it must not allocate: the
 * parsers work on the environment strings in place and the directory is kept
 * in a fixed buffer. A default directory is the working directory at
 * start-up, made absolute so a later chdir() does not move the output.
 */
#include "options.h"

#include "log.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct ht_options ht_opt = {
        .rate = HT_DEFAULT_RATE,
        .signal = SIGUSR2,
        .depth = HT_DEFAULT_DEPTH,
};

static int parse_u64(const char *s, const char **end, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*end = p;
	*out = v;
	return 0;
}

int ht_options_parse_rate(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v, mul = 1;
	if (parse_u64(s, &end, &v) != 0)
		return -EINVAL;
	if (*end == 'k' || *end == 'K')
		mul = (uint64_t)1 << 10, end++;
	else if (*end == 'm' || *end == 'M')
		mul = (uint64_t)1 << 20, end++;
	else if (*end == 'g' || *end == 'G')
		mul = (uint64_t)1 << 30, end++;
	if (*end != '\0' || v > ((uint64_t)1 << 40) / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

static const struct {
	const char *name;
	int sig;
} sig_names[] = {
        {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
        {"USR2", SIGUSR2}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH},
        {"PWR", SIGPWR},   {"URG", SIGURG},   {"PROF", SIGPROF}, {"TTIN", SIGTTIN},
        {"TTOU", SIGTTOU}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM},
};

int ht_options_parse_signal(const char *s, int *out)
{
	if (strcasecmp(s, "none") == 0 || strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	const char *end;
	uint64_t v;
	if (parse_u64(s, &end, &v) == 0) {
		if (*end != '\0' || v < 1 || v > (uint64_t)SIGRTMAX || v == SIGKILL || v == SIGSTOP)
			return -EINVAL;
		*out = (int)v;
		return 0;
	}
	const char *n = s;
	if (strncasecmp(n, "SIG", 3) == 0)
		n += 3;
	for (size_t i = 0; i < sizeof(sig_names) / sizeof(sig_names[0]); i++) {
		if (strcasecmp(n, sig_names[i].name) == 0) {
			*out = sig_names[i].sig;
			return 0;
		}
	}
	/* RTMIN, RTMIN+n, RTMAX, RTMAX-n */
	int base = 0, sign = 0;
	if (strncasecmp(n, "RTMIN", 5) == 0)
		base = SIGRTMIN, sign = 1;
	else if (strncasecmp(n, "RTMAX", 5) == 0)
		base = SIGRTMAX, sign = -1;
	if (!base)
		return -EINVAL;
	n += 5;
	if (*n == '\0') {
		*out = base;
		return 0;
	}
	if ((sign > 0 && *n != '+') || (sign < 0 && *n != '-'))
		return -EINVAL;
	if (parse_u64(n + 1, &end, &v) != 0 || *end != '\0')
		return -EINVAL;
	long sig = base + sign * (long)v;
	if (v > 64 || sig < SIGRTMIN || sig > SIGRTMAX)
		return -EINVAL;
	*out = (int)sig;
	return 0;
}

int ht_options_parse_interval(const char *s, uint64_t *out_ms)
{
	const char *end;
	uint64_t v, mul;
	if (parse_u64(s, &end, &v) != 0)
		return -EINVAL;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mul / 1000000)
		return -EINVAL;
	*out_ms = v * mul;
	return 0;
}

int ht_options_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "yes", "true", "on"};
	static const char *const no[] = {"0", "no", "false", "off", ""};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, 0;
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, 0;
	return -EINVAL;
}

int ht_options_parse_depth(const char *s, unsigned *out)
{
	const char *end;
	uint64_t v;
	if (parse_u64(s, &end, &v) != 0 || *end != '\0' || v < 1 || v > HT_MAX_DEPTH)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* Values are quoted in messages only up to a sane length. */
#define QV    "%.64s%s"
#define QA(s) (s), (strlen(s) > 64 ? "..." : "")

void ht_options_load(char *(*getenv_fn)(const char *))
{
	const char *v;
	ht_opt.rate = HT_DEFAULT_RATE;
	ht_opt.signal = SIGUSR2;
	ht_opt.interval_ms = 0;
	ht_opt.at_exit = false;
	ht_opt.depth = HT_DEFAULT_DEPTH;
	ht_opt.unwind_check = false;

	if ((v = getenv_fn("HEAPTAP_RATE")) && ht_options_parse_rate(v, &ht_opt.rate) != 0)
		ht_log("HEAPTAP_RATE=\"" QV
		       "\" is not a byte count (1 = every allocation, 0 = off); using %u",
		       QA(v), HT_DEFAULT_RATE);
	if ((v = getenv_fn("HEAPTAP_SIGNAL")) && ht_options_parse_signal(v, &ht_opt.signal) != 0)
		ht_log("HEAPTAP_SIGNAL=\"" QV
		       "\" is not a signal (USR2, SIGUSR1, a number or none); using SIGUSR2",
		       QA(v));
	if ((v = getenv_fn("HEAPTAP_INTERVAL")) &&
	    ht_options_parse_interval(v, &ht_opt.interval_ms) != 0) {
		ht_opt.interval_ms = 0;
		ht_log("HEAPTAP_INTERVAL=\"" QV
		       "\" is not a duration (30, 30s, 500ms, 5m, 0 = off); periodic dumps stay off",
		       QA(v));
	}
	if ((v = getenv_fn("HEAPTAP_AT_EXIT")) && ht_options_parse_bool(v, &ht_opt.at_exit) != 0)
		ht_log("HEAPTAP_AT_EXIT=\"" QV "\" is not 0 or 1; using 0", QA(v));
	if ((v = getenv_fn("HEAPTAP_DEPTH")) && ht_options_parse_depth(v, &ht_opt.depth) != 0)
		ht_log("HEAPTAP_DEPTH=\"" QV "\" is not a frame count from 1 to %u; using %u",
		       QA(v), HT_MAX_DEPTH, HT_DEFAULT_DEPTH);

	if ((v = getenv_fn("HEAPTAP_UNWIND_CHECK")) &&
	    ht_options_parse_bool(v, &ht_opt.unwind_check) != 0)
		ht_log("HEAPTAP_UNWIND_CHECK=\"" QV "\" is not 0 or 1; using 0", QA(v));

	ht_opt.http[0] = '\0';
	if ((v = getenv_fn("HEAPTAP_HTTP")) && *v) {
		if (strlen(v) >= sizeof(ht_opt.http))
			ht_log("HEAPTAP_HTTP=\"" QV
			       "\" is too long for an address; serving no profiles",
			       QA(v));
		else
			strcpy(ht_opt.http, v);
	}

	ht_opt.dir[0] = '\0';
	v = getenv_fn("HEAPTAP_DIR");
	if (v && *v) {
		size_t n = strlen(v);
		if (n >= sizeof(ht_opt.dir)) {
			ht_log("HEAPTAP_DIR is %zu bytes long, longer than a path can be; using the working directory",
			       n);
		} else if (v[0] == '/') {
			memcpy(ht_opt.dir, v, n + 1);
		} else if (getcwd(ht_opt.dir, sizeof(ht_opt.dir)) &&
		           strlen(ht_opt.dir) + 1 + n < sizeof(ht_opt.dir)) {
			strcat(ht_opt.dir, "/");
			strcat(ht_opt.dir, v);
		} else {
			ht_log("HEAPTAP_DIR=\"" QV "\" cannot be made absolute; using it as given",
			       QA(v));
			memcpy(ht_opt.dir, v, n + 1);
		}
	}
	if (!ht_opt.dir[0] && !getcwd(ht_opt.dir, sizeof(ht_opt.dir)))
		strcpy(ht_opt.dir, ".");
}
