/*
 * rel_common.h - small helpers shared by the reliability test programs.
 *
 * The programs are plain C (one C++), print key=value lines on stdout for the
 * python drivers, and reach heaptap only through the weak API
 * (-DHEAPTAP_WEAK), so they also run without heaptap (the "baseline" runs):
 * every heaptap_* call then returns -ENOSYS.
 */
#ifndef REL_COMMON_H
#define REL_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <heaptap.h>

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#ifndef __cplusplus
#include <stdatomic.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static inline void rel_msleep(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static inline double rel_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One line on stdout, flushed (the driver reads lines as they come). */
static inline void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void say(const char *fmt, ...)
{
	/* One lock for the whole line: lines from two threads must not mix
	 * (rel_lastthread's worker and main both print). */
	va_list ap;
	va_start(ap, fmt);
	flockfile(stdout);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	funlockfile(stdout);
	va_end(ap);
}

static inline int rel_dump(void)
{
	return HEAPTAP_CALL(heaptap_dump);
}

static inline int rel_stats(struct heaptap_stats *s)
{
	memset(s, 0, sizeof(*s));
	return HEAPTAP_PRESENT(heaptap_stats) ? heaptap_stats(s, sizeof(*s)) : -ENOSYS;
}

/* Threads of this process, from /proc/self/task. */
static inline int rel_task_count(void)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Tasks heaptap started (its flusher, named heaptap-*), from /proc. */
static inline int rel_own_threads(void)
{
	int own = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[320], name[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f) {
			if (fgets(name, sizeof(name), f))
				own += strncmp(name, "heaptap", 7) == 0;
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	return own;
}

/* Keep the compiler from dropping an allocation. */
static inline void rel_touch(void *p, size_t n)
{
	if (p && n)
		((volatile char *)p)[0] = 1, ((volatile char *)p)[n - 1] = 2;
	__asm__ volatile("" ::"r"(p) : "memory");
}

#ifndef __cplusplus
/* Allocation churn until *stop: nslots (a power of two) live blocks of up to
 * max bytes from alloc, each replaced at random; all freed at the end. */
static inline void rel_churn(_Atomic int *stop, unsigned seed, void **slots, unsigned nslots,
                             size_t max, void *(*alloc)(size_t))
{
	while (!atomic_load(stop)) {
		unsigned i = rand_r(&seed) & (nslots - 1);
		free(slots[i]);
		slots[i] = alloc(rand_r(&seed) % max + 1);
	}
	for (unsigned i = 0; i < nslots; i++)
		free(slots[i]);
}
#endif

#endif
