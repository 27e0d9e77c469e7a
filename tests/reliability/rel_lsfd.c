/*
 * rel_lsfd.c - print every open fd above 2 with what it points to and
 * whether it is close-on-exec, in one line:
 * "fds=N noncloexec=M 3:/path:cloexec 4:pipe:[123]:inherit ...".
 */
#include "rel_common.h"

#include <dirent.h>

int main(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 1;
	int self = dirfd(d);
	char out[8192] = "";
	int n = 0, inherit = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd <= 2 || fd == self)
			continue;
		char p[64], target[512] = "";
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		ssize_t k = readlink(p, target, sizeof(target) - 1);
		if (k > 0)
			target[k] = '\0';
		/* fdinfo "flags:" is octal; O_CLOEXEC is 02000000. */
		unsigned long flags = 0;
		snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
		FILE *f = fopen(p, "r");
		char line[256];
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "flags: %lo", &flags) == 1)
				break;
		if (f)
			fclose(f);
		int cloexec = (flags & 02000000) != 0;
		inherit += !cloexec;
		size_t len = strlen(out);
		snprintf(out + len, sizeof(out) - len, " %d:%s:%s", fd, target,
		         cloexec ? "cloexec" : "inherit");
		n++;
	}
	closedir(d);
	say("fds=%d noncloexec=%d%s", n, inherit, out);
	return 0;
}
