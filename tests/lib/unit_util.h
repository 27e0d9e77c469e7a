/*
 * unit_util.h - what the cmocka unit tests share: the paths the build passes
 * in (with fallbacks for a build by hand), the group setup of the tests that
 * use heaptap's own memory, protoc as an independent decoder, and libz as a
 * module to read. Includes what it needs, cmocka.h among it.
 */
#ifndef HT_UNIT_UTIL_H
#define HT_UNIT_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"

/* tests/CMakeLists.txt defines these for every unit test. */
#ifndef HT_TEST_PROTOC
#define HT_TEST_PROTOC "protoc"
#endif
#ifndef HT_TEST_PROTO_DIR
#define HT_TEST_PROTO_DIR "/usr/share/gocode/src/github.com/google/pprof/proto"
#endif
#ifndef HT_TEST_TMPDIR
#define HT_TEST_TMPDIR "/tmp"
#endif

/* Group setup of the tests whose code takes heaptap's own memory. */
static inline int unit_setup_mem(void **state)
{
	(void)state;
	return ht_mem_init();
}

static inline void unit_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* protoc as CMake found it, or from PATH. */
static inline const char *unit_protoc(void)
{
	const char *p = HT_TEST_PROTOC;
	if (!*p || strstr(p, "NOTFOUND"))
		p = "protoc";
	return p;
}

/* Decode raw profile.proto bytes with protoc (pprof's own profile.proto);
 * returns the text format, malloc'd. tag names the scratch files. */
static inline char *unit_protoc_decode(const void *data, size_t len, const char *tag)
{
	char raw[PATH_MAX], txt[PATH_MAX], cmd[3 * PATH_MAX];
	snprintf(raw, sizeof(raw), "%s/%s.%d.pb", HT_TEST_TMPDIR, tag, (int)getpid());
	snprintf(txt, sizeof(txt), "%s/%s.%d.txt", HT_TEST_TMPDIR, tag, (int)getpid());
	unit_write_file(raw, data, len);
	snprintf(cmd, sizeof(cmd),
	         "%s --decode perftools.profiles.Profile --proto_path %s profile.proto < %s > %s",
	         unit_protoc(), HT_TEST_PROTO_DIR, raw, txt);
	int rc = system(cmd);
	if (rc != 0)
		fail_msg("protoc could not decode (status %d): %s", rc, cmd);
	FILE *f = fopen(txt, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	assert_true(size >= 0);
	assert_int_equal(fseek(f, 0, SEEK_SET), 0);
	char *out = malloc((size_t)size + 1);
	assert_non_null(out);
	assert_int_equal(fread(out, 1, (size_t)size, f), (size_t)size);
	out[size] = 0;
	fclose(f);
	unlink(raw);
	unlink(txt);
	return out;
}

/* The GNU build ID of an ELF file as readelf prints it (hex), "" if none:
 * an oracle independent of heaptap's own ELF reader. */
static inline void readelf_build_id(const char *path, char *out, size_t n)
{
	char cmd[PATH_MAX + 64], line[512];
	snprintf(cmd, sizeof(cmd), "readelf -n '%s' 2>/dev/null", path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		char *b = strstr(line, "Build ID: ");
		if (b) {
			snprintf(out, n, "%s", b + 10);
			out[strcspn(out, "\n")] = 0;
		}
	}
	pclose(f);
}

/* libz, loaded (heaptap links it, so it is mapped already): its handle, its
 * link-map entry and, when fn is not NULL, the address of one of its
 * functions. Close the handle with dlclose. */
static inline void *unit_open_libz(struct link_map **lm, uintptr_t *fn)
{
	void *h = dlopen("libz.so.1", RTLD_NOW);
	assert_non_null(h);
	*lm = NULL;
	assert_int_equal(dlinfo(h, RTLD_DI_LINKMAP, lm), 0);
	if (fn) {
		*fn = (uintptr_t)dlsym(h, "zlibVersion");
		assert_true(*fn != 0);
	}
	return h;
}

#endif
