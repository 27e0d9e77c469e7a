/*
 * options.h - heaptap's settings, read once from HEAPTAP_* at start-up.
 *
 * Values come from secure_getenv, so a set-uid program sees none; a bad value
 * is reported in one "heaptap:" line naming the variable, the value and what
 * is used instead, and never stops the program.
 */
#ifndef HT_OPTIONS_H
#define HT_OPTIONS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define HT_DEFAULT_RATE  524288u
#define HT_DEFAULT_DEPTH 64u
#define HT_MAX_DEPTH     256u

struct ht_options {
	char dir[PATH_MAX];
	uint64_t rate;
	int signal;           /* 0: none */
	uint64_t interval_ms; /* 0: off */
	bool at_exit;
	unsigned depth;
	bool unwind_check; /* HEAPTAP_UNWIND_CHECK: every stack by both unwinders, compared */
	char http[128];    /* HEAPTAP_HTTP, "" when off; checked when the listener opens */
};

extern struct ht_options ht_opt;

/* Fill ht_opt from the environment (getenv is the lookup function, so tests
 * can pass their own). Logs one line per bad value. */
void ht_options_load(char *(*getenv_fn)(const char *));

/* Parsers, exposed for the unit tests. Each returns 0 or -EINVAL. */
int ht_options_parse_rate(const char *s, uint64_t *out);
int ht_options_parse_signal(const char *s, int *out);
int ht_options_parse_interval(const char *s, uint64_t *out_ms);
int ht_options_parse_bool(const char *s, bool *out);
int ht_options_parse_depth(const char *s, unsigned *out);

#endif
