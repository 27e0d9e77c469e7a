/*
 * io.c - whole reads and writes on a file descriptor. See io.h.
 */
#include "io.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* write (pipes and sockets have no offset) or pread at pos, to the end.
 * Raw syscalls: glibc's write() and pread() are cancellation points, and
 * heaptap writes from program threads (a log line inside a sample, a dump
 * by heaptap_dump) that must not end there. */
static int transfer(int fd, char *p, size_t len, uint64_t pos, bool out)
{
	while (len > 0) {
		long r = out ? syscall(SYS_write, fd, p, len)
		             : syscall(SYS_pread64, fd, p, len, (off_t)pos);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r;
		pos += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

int ht_io_write_all(int fd, const void *data, size_t len)
{
	return transfer(fd, (char *)(uintptr_t)data, len, 0, true);
}

int ht_io_pread_all(int fd, void *buf, size_t len, uint64_t pos)
{
	return transfer(fd, buf, len, pos, false);
}
