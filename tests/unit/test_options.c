/*
 * test_options.c - HEAPTAP_* parsing: good values, bad values (one line each,
 * defaults kept), and values of any length or content.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "options.h"

static void rates(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(ht_options_parse_rate("524288", &v), 0);
	assert_int_equal(v, 524288);
	assert_int_equal(ht_options_parse_rate("1", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(ht_options_parse_rate("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(ht_options_parse_rate("512k", &v), 0);
	assert_int_equal(v, 524288);
	assert_int_equal(ht_options_parse_rate("2M", &v), 0);
	assert_int_equal(v, 2 << 20);
	assert_int_equal(ht_options_parse_rate("abc", &v), -EINVAL);
	assert_int_equal(ht_options_parse_rate("-5", &v), -EINVAL);
	assert_int_equal(ht_options_parse_rate("", &v), -EINVAL);
	assert_int_equal(ht_options_parse_rate("12x", &v), -EINVAL);
	assert_int_equal(ht_options_parse_rate("99999999999999999999999", &v), -EINVAL);
}

static void signals(void **state)
{
	(void)state;
	int s;
	assert_int_equal(ht_options_parse_signal("USR2", &s), 0);
	assert_int_equal(s, SIGUSR2);
	assert_int_equal(ht_options_parse_signal("SIGUSR1", &s), 0);
	assert_int_equal(s, SIGUSR1);
	assert_int_equal(ht_options_parse_signal("sigusr1", &s), 0);
	assert_int_equal(s, SIGUSR1);
	assert_int_equal(ht_options_parse_signal("12", &s), 0);
	assert_int_equal(s, 12);
	assert_int_equal(ht_options_parse_signal("none", &s), 0);
	assert_int_equal(s, 0);
	assert_int_equal(ht_options_parse_signal("RTMIN+2", &s), 0);
	assert_int_equal(s, SIGRTMIN + 2);
	assert_int_equal(ht_options_parse_signal("9", &s), -EINVAL); /* SIGKILL */
	assert_int_equal(ht_options_parse_signal("FOO", &s), -EINVAL);
	assert_int_equal(ht_options_parse_signal("1000", &s), -EINVAL);
	assert_int_equal(ht_options_parse_signal("", &s), -EINVAL);
}

static void intervals(void **state)
{
	(void)state;
	uint64_t ms;
	assert_int_equal(ht_options_parse_interval("30", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(ht_options_parse_interval("30s", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(ht_options_parse_interval("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(ht_options_parse_interval("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(ht_options_parse_interval("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(ht_options_parse_interval("-5", &ms), -EINVAL);
	assert_int_equal(ht_options_parse_interval("5 s", &ms), -EINVAL);
	assert_int_equal(ht_options_parse_interval("fast", &ms), -EINVAL);
}

static void bools_and_depth(void **state)
{
	(void)state;
	bool b;
	unsigned d;
	assert_int_equal(ht_options_parse_bool("1", &b), 0);
	assert_true(b);
	assert_int_equal(ht_options_parse_bool("0", &b), 0);
	assert_false(b);
	assert_int_equal(ht_options_parse_bool("maybe", &b), -EINVAL);
	assert_int_equal(ht_options_parse_depth("64", &d), 0);
	assert_int_equal(d, 64);
	assert_int_equal(ht_options_parse_depth("0", &d), -EINVAL);
	assert_int_equal(ht_options_parse_depth("100000", &d), -EINVAL);
}

/* A fake environment for ht_options_load. */
static const char *env_names[8], *env_values[8];
static int env_n;

static char *fake_getenv(const char *name)
{
	for (int i = 0; i < env_n; i++)
		if (strcmp(env_names[i], name) == 0)
			return (char *)env_values[i];
	return NULL;
}

static void setenv_fake(const char *n, const char *v)
{
	env_names[env_n] = n;
	env_values[env_n++] = v;
}

/* Capture what ht_log writes. */
static int log_pipe[2];

static size_t read_log(char *buf, size_t n)
{
	ssize_t got = read(log_pipe[0], buf, n - 1);
	buf[got > 0 ? got : 0] = '\0';
	return got > 0 ? (size_t)got : 0;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void load_bad_values(void **state)
{
	(void)state;
	assert_int_equal(pipe(log_pipe), 0);
	ht_log_fd = log_pipe[1];
	env_n = 0;
	setenv_fake("HEAPTAP_RATE", "abc");
	setenv_fake("HEAPTAP_INTERVAL", "-5");
	setenv_fake("HEAPTAP_SIGNAL", "FOO");
	setenv_fake("HEAPTAP_DEPTH", "0");
	setenv_fake("HEAPTAP_AT_EXIT", "perhaps");
	ht_options_load(fake_getenv);
	char buf[8192];
	read_log(buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 5);
	assert_non_null(strstr(buf, "heaptap: HEAPTAP_RATE=\"abc\""));
	assert_non_null(strstr(buf, "HEAPTAP_INTERVAL=\"-5\""));
	assert_non_null(strstr(buf, "HEAPTAP_SIGNAL=\"FOO\""));
	assert_non_null(strstr(buf, "HEAPTAP_DEPTH=\"0\""));
	assert_non_null(strstr(buf, "HEAPTAP_AT_EXIT=\"perhaps\""));
	/* Every line starts with the prefix. */
	for (char *line = buf; *line; line = strchr(line, '\n') + 1)
		assert_memory_equal(line, "heaptap: ", 9);
	assert_int_equal(ht_opt.rate, HT_DEFAULT_RATE);
	assert_int_equal(ht_opt.interval_ms, 0);
	assert_int_equal(ht_opt.signal, SIGUSR2);
	assert_int_equal(ht_opt.depth, HT_DEFAULT_DEPTH);
	assert_false(ht_opt.at_exit);
	close(log_pipe[0]);
	close(log_pipe[1]);
	ht_log_fd = 2;
}

static void load_good_and_huge_values(void **state)
{
	(void)state;
	assert_int_equal(pipe(log_pipe), 0);
	ht_log_fd = log_pipe[1];
	static char huge[100000];
	memset(huge, 'x', sizeof(huge) - 1);
	env_n = 0;
	setenv_fake("HEAPTAP_RATE", "1");
	setenv_fake("HEAPTAP_DIR", huge);
	setenv_fake("HEAPTAP_INTERVAL", "%n%s%n");
	setenv_fake("HEAPTAP_AT_EXIT", "1");
	ht_options_load(fake_getenv);
	char buf[8192];
	read_log(buf, sizeof(buf));
	/* Two complaints (the directory, the interval), each one line. */
	assert_int_equal(count_lines(buf), 2);
	assert_true(strlen(buf) < 2 * 520);
	assert_int_equal(ht_opt.rate, 1);
	assert_true(ht_opt.at_exit);
	assert_int_equal(ht_opt.interval_ms, 0);
	assert_true(ht_opt.dir[0] == '/'); /* fell back to the working directory */
	close(log_pipe[0]);
	close(log_pipe[1]);
	ht_log_fd = 2;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(rates),           cmocka_unit_test(signals),
	        cmocka_unit_test(intervals),       cmocka_unit_test(bools_and_depth),
	        cmocka_unit_test(load_bad_values), cmocka_unit_test(load_good_and_huge_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
