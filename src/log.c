/*
 * log.c - heaptap's diagnostics: one "heaptap: ..." line per message.
 *
 * Formatting uses vsnprintf into a stack buffer (glibc's vsnprintf does not
 * allocate for the plain conversions heaptap uses) and the line leaves with a
 * single write(2), so messages from different threads never interleave and no
 * FILE lock is ever taken. After HT_LOG_MAX messages heaptap goes quiet.
 */
#include "log.h"

#include "io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define HT_LOG_MAX 100

int ht_log_fd = 2;
unsigned ht_log_count;
static _Atomic unsigned log_seen;

void ht_log(const char *fmt, ...)
{
	char line[512];
	int saved = errno;
	unsigned n = atomic_fetch_add_explicit(&log_seen, 1, memory_order_relaxed);
	if (n >= HT_LOG_MAX || ht_log_fd < 0)
		goto out;
	memcpy(line, "heaptap: ", 9);
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(line + 9, sizeof(line) - 10, fmt, ap);
	va_end(ap);
	if (len < 0)
		goto out;
	size_t total = 9 + ((size_t)len < sizeof(line) - 10 ? (size_t)len : sizeof(line) - 11);
	/* One message is one line: fold any newline a value may carry. */
	for (size_t i = 9; i < total; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[total++] = '\n';
	ht_io_write_all(ht_log_fd, line, total); /* never a cancellation point */
	ht_log_count++;
out:
	errno = saved;
}
