/*
 * output.c - putting a finished profile on disk, safely.
 *
 * Owns file naming and the write path. The directory is opened once per file
 * (following a symlink there: the user named that directory) and must not be
 * writable by others unless it is sticky and owned by root or by us, as /tmp
 * is; otherwise -EPERM. The data goes to ".heaptap.<pid>.<seq>.<kind>.<16 hex
 * random>.tmp" in that directory, created with
 * O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC and mode 0600 (a name already taken,
 * symlink or not, just means another random name), written completely,
 * fsync'ed and renamed into place.
 *
 * Policy for the final name: it is never clobbered. Whatever is there (a
 * profile of an earlier program image with the same pid, after an exec or in
 * a restarted container; a planted symlink; someone else's file) gives
 * -EEXIST and the data is not written; the caller moves on to the next
 * sequence number. When the name is free, renameat2(RENAME_NOREPLACE) makes the
 * check and the rename one atomic step, so a symlink planted in between is not
 * replaced either (where the filesystem lacks RENAME_NOREPLACE, plain rename
 * is used: it replaces a symlink, it never follows one). On any failure the
 * temporary file is removed and -errno is returned; nothing half-written is
 * ever visible under the final name.
 */
#include "output.h"

#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HT_TMP_TRIES 8

int ht_output_path(char *out, size_t n, const char *dir, int pid, unsigned seq, const char *kind)
{
	int k = snprintf(out, n, "%s/heaptap.%d.%04u.%s.pb.gz", dir, pid, seq, kind);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

int ht_output_write_fd(int fd, const void *data, size_t len)
{
	return ht_io_write_all(fd, data, len);
}

static uint64_t random64(void)
{
	uint64_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	v = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec << 32 ^
	    (uint64_t)(uintptr_t)&ts ^ (uint64_t)getpid() << 48;
	return v;
}

static int open_dir(const char *dir)
{
	int dfd;
	do
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (dfd < 0 && errno == EINTR);
	if (dfd < 0)
		return -errno;
	struct stat st;
	if (fstat(dfd, &st) != 0) {
		int err = -errno;
		close(dfd);
		return err;
	}
	if ((st.st_mode & S_IWOTH) &&
	    (!(st.st_mode & S_ISVTX) || (st.st_uid != 0 && st.st_uid != geteuid()))) {
		close(dfd);
		return -EPERM;
	}
	return dfd;
}

/* 0 when name is free, -EEXIST when anything is there (never replaced),
 * other -errno on failure. */
static int check_final(int dfd, const char *name)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -errno;
	return -EEXIST;
}

static int publish(int dfd, const char *tmp, const char *final)
{
	int err = check_final(dfd, final);
	if (err)
		return err;
	if (renameat2(dfd, tmp, dfd, final, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	return renameat(dfd, tmp, dfd, final) == 0 ? 0 : -errno;
}

/* Write data into a fresh temporary file named after `stem` in dfd, then
 * move it to `final`: never replacing anything when noreplace, else replacing
 * whatever is there (rename replaces a symlink itself, never its target).
 * The temporary file is gone on every failure. */
static int write_and_publish(int dfd, const char *stem, const char *final, const void *data,
                             size_t len, bool noreplace)
{
	char tmp[320];
	int fd = -1, err;
	for (int i = 0; i < HT_TMP_TRIES && fd < 0; i++) {
		snprintf(tmp, sizeof(tmp), ".%.200s.%016llx.tmp", stem,
		         (unsigned long long)random64());
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST && errno != EINTR)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	err = ht_output_write_fd(fd, data, len);
	if (!err && fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
		err = -errno;
	if (close(fd) != 0 && !err && errno != EINTR)
		err = -errno;
	if (!err)
		err = noreplace ? publish(dfd, tmp, final)
		                : (renameat(dfd, tmp, dfd, final) == 0 ? 0 : -errno);
	if (err)
		unlinkat(dfd, tmp, 0);
	return err;
}

int ht_output_write_file(const char *dir, int pid, unsigned seq, const char *kind, const void *data,
                         size_t len)
{
	char final[256], stem[256];
	int k = snprintf(final, sizeof(final), "heaptap.%d.%04u.%s.pb.gz", pid, seq, kind);
	if (k < 0 || (size_t)k >= sizeof(final))
		return -ENAMETOOLONG;
	snprintf(stem, sizeof(stem), "heaptap.%d.%04u.%s", pid, seq, kind);
	int dfd = open_dir(dir);
	if (dfd < 0)
		return dfd;
	int err = check_final(dfd, final);
	if (!err)
		err = write_and_publish(dfd, stem, final, data, len, true);
	close(dfd);
	return err;
}

int ht_output_write_path(const char *path, const void *data, size_t len)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t dlen = slash ? (size_t)(slash - path) : 1;
	if (!*base || dlen >= sizeof(dir) || strlen(base) > 200)
		return -EINVAL;
	if (slash) {
		memcpy(dir, path, dlen);
		dir[dlen] = '\0';
		if (dlen == 0)
			strcpy(dir, "/");
	} else {
		strcpy(dir, ".");
	}
	int dfd;
	do
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (dfd < 0 && errno == EINTR);
	if (dfd < 0)
		return -errno;
	/* The caller named this path: replace what is there. */
	int err = write_and_publish(dfd, base, base, data, len, false);
	close(dfd);
	return err;
}

/* An unnamed file in dfd holding data, fsync'ed: its fd, or -EOPNOTSUPP
 * where the file system (or kernel) has no O_TMPFILE, or -errno. */
static int unnamed_file(int dfd, const void *data, size_t len)
{
	int fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL ||
		        errno == ENOENT)
		               ? -EOPNOTSUPP
		               : -errno;
	int err = ht_output_write_fd(fd, data, len);
	if (!err && fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
		err = -errno;
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* Give an unnamed file its final name; never replaces (linkat fails with
 * EEXIST). Through /proc, which needs no privilege (AT_EMPTY_PATH does);
 * thread-self, since /proc/self reads empty once main has called
 * pthread_exit. */
static int link_final(int fd, int dfd, const char *final)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/thread-self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dfd, final, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	return errno == ENOENT || errno == ENOTDIR ? -EOPNOTSUPP : -errno;
}

static int pair_unnamed(int dfd, const char *final[2], const void *data[2], const size_t len[2])
{
	int fd[2] = {-1, -1}, err = 0;
	for (int i = 0; i < 2 && !err; i++) {
		fd[i] = unnamed_file(dfd, data[i], len[i]);
		if (fd[i] < 0)
			err = fd[i];
	}
	if (!err)
		err = link_final(fd[0], dfd, final[0]);
	if (!err) {
		err = link_final(fd[1], dfd, final[1]);
		if (err)
			unlinkat(dfd, final[0], 0);
	}
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	return err;
}

int ht_output_write_pair(const char *dir, int pid, unsigned seq, const void *heap, size_t heap_len,
                         const void *threads, size_t threads_len)
{
	char names[2][256];
	const char *final[2] = {names[0], names[1]};
	const char *kinds[2] = {"heap", "threads"};
	for (int i = 0; i < 2; i++) {
		int k = snprintf(names[i], sizeof(names[i]), "heaptap.%d.%04u.%s.pb.gz", pid, seq,
		                 kinds[i]);
		if (k < 0 || (size_t)k >= sizeof(names[i]))
			return -ENAMETOOLONG;
	}
	int dfd = open_dir(dir);
	if (dfd < 0)
		return dfd;
	int err = check_final(dfd, final[0]);
	if (!err)
		err = check_final(dfd, final[1]);
	if (!err) {
		const void *data[2] = {heap, threads};
		const size_t len[2] = {heap_len, threads_len};
		err = pair_unnamed(dfd, final, data, len);
	}
	close(dfd);
	if (err != -EOPNOTSUPP)
		return err;
	/* No O_TMPFILE here: named temporary files, one after the other. */
	err = ht_output_write_file(dir, pid, seq, "heap", heap, heap_len);
	if (!err) {
		err = ht_output_write_file(dir, pid, seq, "threads", threads, threads_len);
		if (err) {
			char path[4096];
			if (ht_output_path(path, sizeof(path), dir, pid, seq, "heap") == 0)
				unlink(path);
		}
	}
	return err;
}
