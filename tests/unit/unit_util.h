/*
 * unit_util.h - small helpers shared by the cmocka unit tests (include after
 * cmocka.h, stdio.h, limits.h, dlfcn.h and link.h).
 */
#ifndef HT_UNIT_UTIL_H
#define HT_UNIT_UTIL_H

/* The GNU build ID of an ELF file as readelf prints it (hex), "" if none:
 * an oracle independent of heaptap's own ELF reader. */
static void readelf_build_id(const char *path, char *out, size_t n)
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
