/*
 * test_maps.c - the /proc/self/maps parser on fixture text and on this
 * process, build IDs against readelf, and ht_module_from_memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "mem.h"
#include "unit_util.h"

static const char fixture[] =
        "55d4c8a00000-55d4c8a02000 r--p 00000000 08:01 1234567                    /usr/bin/app\n"
        "55d4c8a02000-55d4c8a08000 r-xp 00002000 08:01 1234567                    /usr/bin/app\n"
        "55d4c8a08000-55d4c8a0a000 r--p 00008000 08:01 1234567                    /usr/bin/app\n"
        "55d4c8c00000-55d4c8c21000 rw-p 00000000 00:00 0                          [heap]\n"
        "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \n"
        "7f0000200000-7f0000400000 r-xp 00000000 00:00 0\n"
        "7f1000000000-7f1000028000 r--p 00000000 08:01 42                         /lib/libc.so.6\n"
        "7f1000028000-7f10001bd000 r-xp 00028000 08:01 42                         /lib/libc.so.6\n"
        "7f2000001000-7f2000002000 r-xp 00001000 08:01 77                         /tmp/my lib.so "
        "(deleted)\n"
        "this line is garbage\n"
        "7f3000000000-7f2000000000 r-xp 00000000 08:01 1 /backwards\n"
        "7ffd1c1f0000-7ffd1c1f2000 r-xp 00000000 00:00 0                          [vdso]\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";

static void test_parse_fixture(void **state)
{
	(void)state;
	struct ht_maps m;
	assert_int_equal(ht_maps_parse(&m, fixture, strlen(fixture), "/usr/bin/app", false), 0);
	/* app text, libc text, the deleted library, [vdso], [vsyscall]; not the
	 * nameless pieces, not the malformed lines, not the data mappings. */
	assert_int_equal(m.n, 5);
	assert_int_equal(m.main, 0);

	const struct ht_mapping *x = &m.v[0];
	assert_int_equal(x->m.start, 0x55d4c8a02000);
	assert_int_equal(x->m.limit, 0x55d4c8a08000);
	assert_int_equal(x->m.file_offset, 0x2000);
	assert_int_equal(x->m.bias, 0x55d4c8a00000); /* start - offset without ELF */
	assert_string_equal(x->m.path, "/usr/bin/app");
	assert_true(x->path_ok);
	assert_false(x->deleted);
	assert_int_equal(x->m.build_id_len, 0);

	assert_string_equal(m.v[1].m.path, "/lib/libc.so.6");
	assert_int_equal(m.v[1].m.file_offset, 0x28000);

	x = &m.v[2];
	assert_string_equal(x->m.path, "/tmp/my lib.so"); /* spaces kept, marker gone */
	assert_true(x->deleted);
	assert_true(x->path_ok);

	assert_string_equal(m.v[3].m.path, "[vdso]");
	assert_false(m.v[3].path_ok);
	assert_string_equal(m.v[4].m.path, "[vsyscall]");

	/* Lookups: inside, at the edges, in gaps. */
	assert_ptr_equal(ht_maps_find(&m, 0x55d4c8a02000), &m.v[0]);
	assert_ptr_equal(ht_maps_find(&m, 0x55d4c8a07fff), &m.v[0]);
	assert_null(ht_maps_find(&m, 0x55d4c8a08000));
	assert_null(ht_maps_find(&m, 0x55d4c8a01fff));
	assert_null(ht_maps_find(&m, 0x7f0000000010)); /* nameless exec piece */
	assert_ptr_equal(ht_maps_find(&m, 0x7f1000100000), &m.v[1]);
	assert_ptr_equal(ht_maps_find(&m, 0xffffffffff600100), &m.v[4]);
	assert_null(ht_maps_find(&m, 0));
	assert_null(ht_maps_find(&m, UINTPTR_MAX));
	ht_maps_free(&m);
	assert_int_equal(m.n, 0);

	/* The main executable may itself be deleted; or not be found at all. */
	assert_int_equal(
	        ht_maps_parse(&m, fixture, strlen(fixture), "/tmp/my lib.so (deleted)", false), 0);
	assert_int_equal(m.main, 2);
	ht_maps_free(&m);
	assert_int_equal(ht_maps_parse(&m, fixture, strlen(fixture), "/nowhere", false), 0);
	assert_int_equal(m.main, m.n);
	ht_maps_free(&m);
	assert_int_equal(ht_maps_parse(&m, fixture, strlen(fixture), NULL, false), 0);
	assert_int_equal(m.main, m.n);
	ht_maps_free(&m);

	/* Empty input. */
	assert_int_equal(ht_maps_parse(&m, "", 0, NULL, false), 0);
	assert_int_equal(m.n, 0);
	assert_null(ht_maps_find(&m, 0x1000));
	ht_maps_free(&m);
}

static void test_long_path(void **state)
{
	(void)state;
	char text[1024];
	char path[400];
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[sizeof(path) - 1] = 0;
	snprintf(text, sizeof(text), "1000-2000 r-xp 00000000 08:01 5 %s\n", path);
	struct ht_maps m;
	assert_int_equal(ht_maps_parse(&m, text, strlen(text), NULL, false), 0);
	assert_int_equal(m.n, 1);
	assert_false(m.v[0].path_ok); /* cut short: never opened */
	assert_int_equal(strlen(m.v[0].m.path), sizeof(m.v[0].m.path) - 1);
	ht_maps_free(&m);
}

static const char *hex(const struct ht_module *m, char *buf)
{
	return ht_maps_hex(m->build_id, m->build_id_len, buf);
}

__attribute__((noinline, used)) int here(void)
{
	return 42;
}

/* The real thing: this process. */
static void test_read_self(void **state)
{
	(void)state;
	struct ht_maps m;
	assert_int_equal(ht_maps_read(&m), 0);
	assert_true(m.n >= 2);
	for (size_t i = 1; i < m.n; i++)
		assert_true(m.v[i - 1].m.limit <= m.v[i].m.start);

	/* Main executable: found, holds our code, build ID as readelf says. */
	char exe[PATH_MAX], want[256], got[80];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = 0;
	assert_true(m.main < m.n);
	const struct ht_mapping *x = &m.v[m.main];
	assert_string_equal(x->m.path, exe);
	assert_ptr_equal(ht_maps_find(&m, (uintptr_t)&here), x);
	readelf_build_id(exe, want, sizeof(want));
	assert_true(strlen(want) >= 16);
	assert_string_equal(hex(&x->m, got), want);
	/* Bias as the dynamic linker has it. */
	struct link_map *lm = NULL;
	void *self = dlopen(NULL, RTLD_NOW);
	assert_int_equal(dlinfo(self, RTLD_DI_LINKMAP, &lm), 0);
	assert_true(x->bias_ok);
	assert_int_equal(x->m.bias, lm->l_addr);

	/* libc likewise, and its build ID read from disk matches. */
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	assert_non_null(libc);
	assert_int_equal(dlinfo(libc, RTLD_DI_LINKMAP, &lm), 0);
	const struct ht_mapping *c = ht_maps_find(&m, (uintptr_t)dlsym(libc, "malloc"));
	assert_non_null(c);
	assert_true(c->bias_ok);
	assert_int_equal(c->m.bias, lm->l_addr);
	readelf_build_id(c->m.path, want, sizeof(want));
	assert_string_equal(hex(&c->m, got), want);
	uint8_t id[32];
	int len = ht_maps_build_id_file(c->m.path, id, sizeof(id));
	assert_int_equal(len, c->m.build_id_len);
	assert_memory_equal(id, c->m.build_id, (size_t)len);

	/* [vdso] has a build ID in memory only. */
	for (size_t i = 0; i < m.n; i++)
		if (strcmp(m.v[i].m.path, "[vdso]") == 0)
			assert_true(m.v[i].m.build_id_len > 0);
	ht_maps_free(&m);
	dlclose(libc);
	dlclose(self);
}

static void test_build_id_file(void **state)
{
	(void)state;
	uint8_t id[32];
	char want[256], got[80];
	int n = ht_maps_build_id_file("/proc/self/exe", id, sizeof(id));
	assert_true(n >= 8);
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(len > 0);
	exe[len] = 0;
	readelf_build_id(exe, want, sizeof(want)); /* not /proc/self: that is readelf */
	assert_string_equal(ht_maps_hex(id, (size_t)n, got), want);
	/* Too small a buffer: treated as having none. */
	assert_int_equal(ht_maps_build_id_file("/proc/self/exe", id, 4), -ENOENT);
	assert_int_equal(ht_maps_build_id_file("/nonexistent/file", id, sizeof(id)), -ENOENT);

	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/test_maps.%d.notelf", HT_TEST_TMPDIR, (int)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	char junk[200];
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);
	assert_int_equal(ht_maps_build_id_file(path, id, sizeof(id)), -ENOEXEC);
	/* Shorter than an ELF header. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "\177ELF", 4), 4);
	close(fd);
	assert_true(ht_maps_build_id_file(path, id, sizeof(id)) < 0);
	unlink(path);

	static const uint8_t b[] = {0x00, 0x0f, 0xa5, 0xff};
	assert_string_equal(ht_maps_hex(b, 4, got), "000fa5ff");
	assert_string_equal(ht_maps_hex(b, 0, got), "");
}

static void test_module_from_memory(void **state)
{
	(void)state;
	struct link_map *lm;
	uintptr_t fn;
	void *h = unit_open_libz(&lm, &fn);

	struct ht_module mod;
	assert_int_equal(ht_module_from_memory(lm->l_name, lm->l_addr, &mod), 0);
	assert_string_equal(mod.path, lm->l_name);
	assert_int_equal(mod.bias, lm->l_addr);
	assert_true(fn >= mod.start && fn < mod.limit);

	/* The same as /proc/self/maps says. */
	struct ht_maps m;
	assert_int_equal(ht_maps_read(&m), 0);
	const struct ht_mapping *x = ht_maps_find(&m, fn);
	assert_non_null(x);
	assert_int_equal(mod.start, x->m.start);
	assert_int_equal(mod.limit, x->m.limit);
	assert_int_equal(mod.file_offset, x->m.file_offset);
	assert_int_equal(mod.build_id_len, x->m.build_id_len);
	assert_memory_equal(mod.build_id, x->m.build_id, mod.build_id_len);
	char want[256], got[80];
	readelf_build_id(lm->l_name, want, sizeof(want));
	assert_string_equal(ht_maps_hex(mod.build_id, mod.build_id_len, got), want);
	ht_maps_free(&m);

	/* Not loaded at that bias: read from the file instead, same answers
	 * shifted by the bias given. */
	struct ht_module other;
	uintptr_t bias = 0x100000000000;
	assert_int_equal(ht_module_from_memory(lm->l_name, bias, &other), 0);
	assert_int_equal(other.bias, bias);
	assert_int_equal(other.start - bias, mod.start - mod.bias);
	assert_int_equal(other.limit - bias, mod.limit - mod.bias);
	assert_int_equal(other.file_offset, mod.file_offset);
	assert_int_equal(other.build_id_len, mod.build_id_len);
	assert_memory_equal(other.build_id, mod.build_id, mod.build_id_len);

	assert_int_equal(ht_module_from_memory("/nonexistent.so", bias, &other), -ENOENT);
	assert_int_equal(ht_module_from_memory("", bias, &other), -EINVAL);
	assert_int_equal(ht_module_from_memory(NULL, bias, &other), -EINVAL);
	char longp[300];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	assert_int_equal(ht_module_from_memory(longp, bias, &other), -ENAMETOOLONG);
	dlclose(h);
}

/* A file mapped by hand (not in the link map) is read from disk; once
 * deleted, its name is trimmed and nothing is read through it any more. */
static void test_mapped_by_hand(void **state)
{
	(void)state;
	struct link_map *lm;
	void *h = unit_open_libz(&lm, NULL);
	struct ht_module z;
	assert_int_equal(ht_module_from_memory(lm->l_name, lm->l_addr, &z), 0);

	char copy[PATH_MAX], cmd[2 * PATH_MAX + 16];
	snprintf(copy, sizeof(copy), "%s/test_maps.%d.so", HT_TEST_TMPDIR, (int)getpid());
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", lm->l_name, copy);
	assert_int_equal(system(cmd), 0);
	int fd = open(copy, O_RDONLY);
	assert_true(fd >= 0);
	size_t size = z.limit - z.start;
	void *p = mmap(NULL, size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, (off_t)z.file_offset);
	assert_true(p != MAP_FAILED);
	close(fd);

	struct ht_maps m;
	assert_int_equal(ht_maps_read(&m), 0);
	const struct ht_mapping *x = ht_maps_find(&m, (uintptr_t)p);
	assert_non_null(x);
	assert_string_equal(x->m.path, copy);
	assert_false(x->deleted);
	assert_true(x->bias_ok);
	assert_int_equal(x->m.bias, (uintptr_t)p - (z.start - z.bias));
	assert_int_equal(x->m.file_offset, z.file_offset);
	assert_int_equal(x->m.build_id_len, z.build_id_len);
	assert_memory_equal(x->m.build_id, z.build_id, z.build_id_len);
	ht_maps_free(&m);

	unlink(copy);
	assert_int_equal(ht_maps_read(&m), 0);
	x = ht_maps_find(&m, (uintptr_t)p);
	assert_non_null(x);
	assert_string_equal(x->m.path, copy);
	assert_true(x->deleted);
	assert_int_equal(x->m.build_id_len, 0);
	ht_maps_free(&m);
	munmap(p, size);
	dlclose(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_fixture),      cmocka_unit_test(test_long_path),
	        cmocka_unit_test(test_read_self),          cmocka_unit_test(test_build_id_file),
	        cmocka_unit_test(test_module_from_memory), cmocka_unit_test(test_mapped_by_hand),
	};
	return cmocka_run_group_tests(tests, unit_setup_mem, NULL);
}
