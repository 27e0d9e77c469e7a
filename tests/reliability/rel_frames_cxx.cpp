/*
 * rel_frames_cxx.cpp - the C++ half of rel_frames (see rel_frames.c): every
 * operator new and delete, and a std::thread.
 *
 * Each cx_* function is extern "C" (its name in the profile is plain, as for
 * the C functions) and noipa, and calls one family of operator new: scalar,
 * array, aligned (std::align_val_t) and nothrow, with the matching deletes,
 * sized ones included. The block counts at the size operator new was asked
 * for; the sizes are multiples of the alignment, so libstdc++'s aligned new
 * (which rounds the size up before aligned_alloc) asks for the same size.
 * Types have trivial destructors: no array cookie.
 *
 * cx_spawn_std_thread starts a std::thread: libstdc++ calls pthread_create,
 * so the creation stack's leaf is libstdc++'s; cx_spawn_std_thread must be
 * in it all the same, with no heaptap frame anywhere.
 */
#include "rel_frames.h"

#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>

#if defined(__clang__)
#define LEAF __attribute__((noinline, used))
#else
#define LEAF __attribute__((noipa, used))
#endif

/* The pointer escapes: gcc may not elide a new/delete pair around it. */
#define ESCAPE(p) __asm__ volatile("" ::"r"(p) : "memory")

static const size_t BIG = (size_t)8 << 20;

struct Blob {
	char b[48];
};

struct alignas(64) Aligned {
	char b[128];
};

void *cx_kept[64];
static int cx_nkept;

static void keep(void *p)
{
	cx_kept[cx_nkept++] = p;
	ESCAPE(p);
}

extern "C" LEAF void cx_new_scalar(void)
{
	Blob *a = new Blob;
	fr_got(__func__, a, sizeof(Blob));
	keep(a);
	Blob *b = new Blob;
	fr_got(__func__, b, sizeof(Blob));
	ESCAPE(b);
	delete b; /* sized: operator delete(void *, size_t) */
	fr_lost(__func__, sizeof(Blob));
	void *c = ::operator new(700);
	fr_got(__func__, c, 700);
	ESCAPE(c);
	::operator delete(c);
	fr_lost(__func__, 700);
	void *big = ::operator new(BIG);
	fr_got(__func__, big, BIG);
	keep(big);
}

extern "C" LEAF void cx_new_array(void)
{
	char *a = new char[1000];
	fr_got(__func__, a, 1000);
	keep(a);
	char *b = new char[2000];
	fr_got(__func__, b, 2000);
	ESCAPE(b);
	delete[] b;
	fr_lost(__func__, 2000);
	void *c = ::operator new[](3000);
	fr_got(__func__, c, 3000);
	ESCAPE(c);
	::operator delete[](c, 3000); /* sized delete[] */
	fr_lost(__func__, 3000);
	char *big = new char[BIG];
	fr_got(__func__, big, BIG);
	keep(big);
}

extern "C" LEAF void cx_new_aligned(void)
{
	Aligned *a = new Aligned; /* operator new(128, align_val_t(64)) */
	fr_got(__func__, a, sizeof(Aligned));
	keep(a);
	Aligned *b = new Aligned[4]; /* operator new[](512, align_val_t(64)) */
	fr_got(__func__, b, 4 * sizeof(Aligned));
	keep(b);
	Aligned *c = new Aligned;
	fr_got(__func__, c, sizeof(Aligned));
	ESCAPE(c);
	delete c; /* operator delete(void *, size_t, align_val_t) */
	fr_lost(__func__, sizeof(Aligned));
	void *d = ::operator new(1024, std::align_val_t(256));
	fr_got(__func__, d, 1024);
	ESCAPE(d);
	::operator delete(d, std::align_val_t(256));
	fr_lost(__func__, 1024);
	void *big = ::operator new(BIG, std::align_val_t(4096));
	fr_got(__func__, big, BIG);
	keep(big);
}

extern "C" LEAF void cx_new_nothrow(void)
{
	Blob *a = new (std::nothrow) Blob;
	fr_got(__func__, a, sizeof(Blob));
	keep(a);
	char *b = new (std::nothrow) char[700];
	fr_got(__func__, b, 700);
	keep(b);
	void *c = ::operator new[](900, std::nothrow);
	fr_got(__func__, c, 900);
	ESCAPE(c);
	::operator delete[](c, std::nothrow);
	fr_lost(__func__, 900);
	void *d = ::operator new(256, std::align_val_t(128), std::nothrow);
	fr_got(__func__, d, 256);
	keep(d);
	void *e = ::operator new[](1024, std::align_val_t(64), std::nothrow);
	fr_got(__func__, e, 1024);
	keep(e);
	void *big = ::operator new(BIG, std::nothrow);
	fr_got(__func__, big, BIG);
	keep(big);
}

extern "C" void cx_allocs(void)
{
	cx_new_scalar();
	cx_new_array();
	cx_new_aligned();
	cx_new_nothrow();
}

static std::thread std_thread;

extern "C" LEAF void cx_spawn_std_thread(void)
{
	std_thread = std::thread([] { fr_gate_wait(); });
	ESCAPE(&std_thread);
}

extern "C" void cx_join_std_thread(void)
{
	std_thread.join();
}
