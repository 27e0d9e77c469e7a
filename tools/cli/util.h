/*
 * util.h - small things every part of the heaptap command uses: an arena
 * that frees a profile in one call, growable arrays, checked allocation, and
 * the one-line "heaptap: " messages.
 *
 * The command is an ordinary program (it never runs under heaptap's shim), so
 * it allocates with malloc; running out of memory is one line and exit 2.
 */
#ifndef HC_UTIL_H
#define HC_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct hc_arena {
	void **ptrs;
	size_t n, cap;
};

void *hc_xmalloc(size_t n);
void *hc_xcalloc(size_t n, size_t size);
void *hc_xrealloc(void *p, size_t n);
char *hc_xstrdup(const char *s);
/* A block owned by the arena (freed by hc_arena_free). */
void *hc_arena_alloc(struct hc_arena *a, size_t n);
char *hc_arena_strndup(struct hc_arena *a, const char *s, size_t n);
/* Hand a malloc'ed block to the arena. */
void hc_arena_adopt(struct hc_arena *a, void *p);
void hc_arena_free(struct hc_arena *a);

/* Grow *arr (of elem-sized items, *cap of them) to hold at least n. */
void hc_grow(void *arrp, size_t *cap, size_t n, size_t elem);

/* "heaptap: ..." on stderr, one line. */
void hc_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* hc_say, then exit(status). */
_Noreturn void hc_die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frames every stack ends in (libc's start-up, thread start): printed
 * stacks stop before them; JSON keeps them. */
int hc_frame_is_startup(const char *name);

/* Human-readable bytes ("12.3 MiB") into buf; returns buf. */
char *hc_fmt_bytes(char *buf, size_t len, double bytes);
/* Human-readable duration ("2h10m", "45s", "800ms"). */
char *hc_fmt_dur(char *buf, size_t len, double seconds);

#endif
