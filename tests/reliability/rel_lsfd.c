/*
 * rel_lsfd.c - print every open fd above 2 with what it points to, in one
 * line: "fds=N 3:/path 4:pipe:[123] ...". Run without heaptap.
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
	int n = 0;
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
		size_t len = strlen(out);
		snprintf(out + len, sizeof(out) - len, " %d:%s", fd, target);
		n++;
	}
	closedir(d);
	say("fds=%d%s", n, out);
	return 0;
}
