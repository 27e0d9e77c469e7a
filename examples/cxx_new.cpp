/*
 * cxx_new.cpp - C++ allocation at known sizes.
 *
 * operator new and delete in libstdc++ reach malloc and free (aligned new
 * reaches aligned_alloc), so heaptap sees C++ allocation without doing
 * anything C++-specific. Each cx_* function allocates through one C++ form,
 * keeps some objects and deletes others, tallies what it did, and after the
 * dump the program prints, like entry_points.c:
 *
 *   expect <function> <inuse_bytes> <inuse_objects> <alloc_bytes> <alloc_objects>
 *
 * Here the leaf frame is operator new (or the standard library) rather than
 * the cx_* function, so a test compares the totals of samples with the
 * cx_* function *anywhere* in their stack. Sizes follow the Itanium C++ ABI
 * and libstdc++: new T[n] of a type with a non-trivial destructor stores an
 * 8-byte element count before the array; a std::string with capacity c > 15
 * owns a c + 1 byte buffer; std::vector owns capacity() * sizeof(T) bytes.
 */
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <unistd.h>
#include <string>
#include <vector>

#include "heaptap.h" /* built with -DHEAPTAP_WEAK */

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noipa))
#endif

namespace
{

struct Tally {
	const char *fn;
	uint64_t inuse_bytes, inuse_objects, alloc_bytes, alloc_objects;

	void alloc(uint64_t n)
	{
		alloc_bytes += n;
		alloc_objects++;
		inuse_bytes += n;
		inuse_objects++;
	}
	void release(uint64_t n)
	{
		inuse_bytes -= n;
		inuse_objects--;
	}
};

Tally tallies[16];
int ntallies;
int failures;

Tally &tally(const char *fn)
{
	for (int i = 0; i < ntallies; i++)
		if (!strcmp(tallies[i].fn, fn))
			return tallies[i];
	tallies[ntallies].fn = fn;
	return tallies[ntallies++];
}

void check(bool ok, const char *name)
{
	std::printf("check %s %s\n", name, ok ? "ok" : "FAIL");
	if (!ok)
		failures++;
}

} // namespace

struct Node {
	Node *next;
	char payload[200];
};

struct Tracked {
	~Tracked()
	{
		value = 0;
	}
	long value;
	char pad[40];
};

struct alignas(64) Aligned {
	char bytes[192];
};

/* Objects kept alive until after the dump. */
static Node *nodes[8];
static char *arrays[8];
static Tracked *tracked;
static Aligned *aligned_one;
static Aligned *aligned_many;
static std::vector<uint64_t> numbers;
static std::string text;

NOINLINE void cx_new_scalar()
{
	Tally &t = tally(__func__);
	for (int i = 0; i < 8; i++) {
		Node *n = new Node();
		t.alloc(sizeof(Node));
		if (i < 5) {
			nodes[i] = n;
		} else {
			delete n; /* sized delete */
			t.release(sizeof(Node));
		}
	}
}

NOINLINE void cx_new_array()
{
	Tally &t = tally(__func__);
	for (int i = 0; i < 6; i++) {
		size_t n = 1000 * (i + 1);
		char *a = new char[n];
		t.alloc(n);
		std::memset(a, i, n);
		if (i % 2 == 0) {
			arrays[i / 2] = a;
		} else {
			delete[] a;
			t.release(n);
		}
	}
	/* Non-trivial destructor: the array carries its element count. */
	tracked = new Tracked[5];
	t.alloc(5 * sizeof(Tracked) + sizeof(size_t));
	Tracked *gone = new Tracked[2];
	t.alloc(2 * sizeof(Tracked) + sizeof(size_t));
	delete[] gone;
	t.release(2 * sizeof(Tracked) + sizeof(size_t));
}

NOINLINE void cx_new_nothrow()
{
	Tally &t = tally(__func__);
	char *a = new (std::nothrow) char[2000];
	if (a) {
		t.alloc(2000);
		arrays[4] = a;
	}
	char *b = new (std::nothrow) char[3000];
	if (b) {
		t.alloc(3000);
		delete[] b;
		t.release(3000);
	}
}

NOINLINE void cx_new_aligned()
{
	Tally &t = tally(__func__);
	aligned_one = new Aligned;
	t.alloc(sizeof(Aligned));
	aligned_many = new Aligned[3];
	t.alloc(3 * sizeof(Aligned));
	Aligned *gone = new Aligned;
	t.alloc(sizeof(Aligned));
	check(reinterpret_cast<uintptr_t>(aligned_one) % 64 == 0 &&
	              reinterpret_cast<uintptr_t>(aligned_many) % 64 == 0 &&
	              reinterpret_cast<uintptr_t>(gone) % 64 == 0,
	      "aligned_new_alignment");
	delete gone;
	t.release(sizeof(Aligned));
}

NOINLINE void cx_vector_growth()
{
	Tally &t = tally(__func__);
	size_t cap = numbers.capacity();
	for (uint64_t i = 0; i < 1000; i++) {
		numbers.push_back(i);
		if (numbers.capacity() != cap) {
			if (cap)
				t.release(cap * sizeof(uint64_t));
			cap = numbers.capacity();
			t.alloc(cap * sizeof(uint64_t));
		}
	}
}

NOINLINE void cx_string_growth()
{
	Tally &t = tally(__func__);
	const size_t sso = text.capacity(); /* 15 in libstdc++ */
	size_t cap = sso;
	for (int i = 0; i < 300; i++) {
		text.push_back(static_cast<char>('a' + i % 26));
		if (text.capacity() != cap) {
			if (cap > sso)
				t.release(cap + 1);
			cap = text.capacity();
			t.alloc(cap + 1);
		}
	}
}

/* Allocation failure must still throw std::bad_alloc (not tallied: the
 * exception object itself is allocated by the runtime). */
NOINLINE void check_bad_alloc()
{
	volatile size_t huge = SIZE_MAX / 4;
	bool thrown = false;
	try {
		char *p = new char[huge];
		delete[] p;
	} catch (const std::bad_alloc &) {
		thrown = true;
	}
	check(thrown, "bad_alloc_thrown");
}

int main()
{
	std::setvbuf(stdout, nullptr, _IOLBF, 0);
	/* The first output allocates stdio's buffer: do it here, not in a cx_*. */
	std::printf("pid %d\n", static_cast<int>(getpid()));
	cx_new_scalar();
	cx_new_array();
	cx_new_nothrow();
	cx_new_aligned();
	cx_vector_growth();
	cx_string_growth();
	check_bad_alloc();

	int rc = HEAPTAP_CALL(heaptap_dump);
	if (rc == -ENOSYS)
		std::printf("dump: heaptap absent\n");
	else
		std::printf("dump: rc=%d (%s)\n", rc, rc ? heaptap_strerror(rc) : "ok");

	for (int i = 0; i < ntallies; i++) {
		const Tally &t = tallies[i];
		std::printf("expect %s %llu %llu %llu %llu\n", t.fn,
		            static_cast<unsigned long long>(t.inuse_bytes),
		            static_cast<unsigned long long>(t.inuse_objects),
		            static_cast<unsigned long long>(t.alloc_bytes),
		            static_cast<unsigned long long>(t.alloc_objects));
	}

	for (int i = 0; i < 5; i++)
		delete nodes[i];
	for (int i = 0; i < 5; i++)
		delete[] arrays[i];
	delete[] tracked;
	delete aligned_one;
	delete[] aligned_many;
	std::printf("checks: %d failed\n", failures);
	return failures ? 1 : 0;
}
