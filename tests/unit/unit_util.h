/*
 * unit_util.h - small helpers shared by the cmocka unit tests (include after
 * cmocka.h, stdio.h and limits.h).
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

#endif
