/*
 * util.c - allocation, arenas and messages for the heaptap command (util.h).
 */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void oom(void)
{
	fputs("heaptap: out of memory\n", stderr);
	exit(2);
}

void *hc_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *hc_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *hc_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom();
	return q;
}

char *hc_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(hc_xmalloc(n), s, n);
}

void hc_arena_adopt(struct hc_arena *a, void *p)
{
	if (!p)
		return;
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 64;
		a->ptrs = hc_xrealloc(a->ptrs, a->cap * sizeof(*a->ptrs));
	}
	a->ptrs[a->n++] = p;
}

void *hc_arena_alloc(struct hc_arena *a, size_t n)
{
	void *p = hc_xcalloc(1, n);
	hc_arena_adopt(a, p);
	return p;
}

char *hc_arena_strndup(struct hc_arena *a, const char *s, size_t n)
{
	char *p = hc_arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

void hc_arena_free(struct hc_arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->ptrs[i]);
	free(a->ptrs);
	a->ptrs = NULL;
	a->n = a->cap = 0;
}

void hc_grow(void *arrp, size_t *cap, size_t n, size_t elem)
{
	void **arr = arrp;
	if (n <= *cap)
		return;
	size_t c = *cap ? *cap : 8;
	while (c < n) {
		if (c > SIZE_MAX / 2 / elem)
			oom();
		c *= 2;
	}
	*arr = hc_xrealloc(*arr, c * elem);
	*cap = c;
}

void hc_say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One line: a newline inside a file name must not start another. */
	for (char *c = line; *c; c++)
		if (*c == '\n')
			*c = ' ';
	fprintf(stderr, "heaptap: %s\n", line);
}

_Noreturn void hc_die(int status, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	hc_say("%s", line);
	exit(status);
}

char *hc_fmt_bytes(char *buf, size_t len, double b)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double a = fabs(b);
	int u = 0;
	while (a >= 1024 && u < 4) {
		a /= 1024;
		b /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%.0f B", b);
	else
		snprintf(buf, len,
		         a >= 100  ? "%.0f %s"
		         : a >= 10 ? "%.1f %s"
		                   : "%.2f %s",
		         b, units[u]);
	return buf;
}

char *hc_fmt_dur(char *buf, size_t len, double s)
{
	if (s < 0)
		s = 0;
	if (s < 1)
		snprintf(buf, len, "%.0fms", s * 1000);
	else if (s < 60)
		snprintf(buf, len, s < 10 ? "%.1fs" : "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else
		snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
	return buf;
}

int hc_frame_is_startup(const char *name)
{
	static const char *const names[] = {"__libc_start_call_main",
	                                    "__libc_start_main",
	                                    "_start",
	                                    "start_thread",
	                                    "clone",
	                                    "clone3"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);
		if (!strncmp(name, names[i], n) && (name[n] == 0 || name[n] == '@'))
			return 1;
	}
	return 0;
}
