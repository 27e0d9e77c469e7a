/*
 * real.h - the next definitions of every function heaptap interposes.
 *
 * Resolved once with dlsym(RTLD_NEXT): the allocator underneath may be glibc,
 * jemalloc (Debian's redis-server) or tcmalloc, and calling glibc's
 * __libc_malloc directly would mix allocators. dlsym can itself allocate
 * (dlerror's buffer on a miss); those calls land on the slow path with the
 * thread busy and are served from heaptap's own memory.
 */
#ifndef HT_REAL_H
#define HT_REAL_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>

struct ht_real {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*malloc_usable_size)(void *);
	void (*free_sized)(void *, size_t);                 /* NULL before glibc 2.43 */
	void (*free_aligned_sized)(void *, size_t, size_t); /* NULL before glibc 2.43 */
	int (*pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
	int (*pthread_join)(pthread_t, void **);
	int (*pthread_tryjoin_np)(pthread_t, void **);
	int (*pthread_timedjoin_np)(pthread_t, void **, const struct timespec *);
	int (*pthread_clockjoin_np)(pthread_t, void **, clockid_t, const struct timespec *);
	int (*pthread_detach)(pthread_t);
	int (*dlclose)(void *);
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
	__sighandler_t (*signal)(int, __sighandler_t);
	__sighandler_t (*sysv_signal)(int, __sighandler_t);
	__sighandler_t (*sigset)(int, __sighandler_t);
	int (*unshare)(int);
	int (*setns)(int, int);
	int (*pipe2)(int *, int);
};

extern struct ht_real ht_real;

/* Resolve everything. Call with the thread busy. 0 or -ENOENT when a
 * required function is missing (then heaptap cannot run at all). */
int ht_real_init(void);

/* Which allocator the next malloc is: "glibc", "jemalloc", "tcmalloc",
 * "mimalloc", or the file that defines it (the program's own, say). */
const char *ht_real_allocator(char *buf, size_t n);

#endif
