/*
 * test_output.c - profile files: names, modes, atomic replacement, and never
 * following or clobbering what someone else put at the name.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"
#include "unit_util.h"

struct ctx {
	char dir[PATH_MAX / 2];
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "%s/test_output.XXXXXX", HT_TEST_TMPDIR);
	if (!mkdtemp(c->dir))
		return -1;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	int rc = system(cmd);
	free(c);
	return rc;
}

/* Names in dir, one per line, sorted; returns how many. */
static int list_dir(const char *dir, char *out, size_t n)
{
	struct dirent **names;
	int k = scandir(dir, &names, NULL, alphasort), count = 0;
	assert_true(k >= 0);
	out[0] = 0;
	for (int i = 0; i < k; i++) {
		if (names[i]->d_name[0] != '.' || strlen(names[i]->d_name) > 2) {
			if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
				strncat(out, names[i]->d_name, n - strlen(out) - 2);
				strcat(out, "\n");
				count++;
			}
		}
		free(names[i]);
	}
	free(names);
	return count;
}

static size_t read_all(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW);
	assert_true(fd >= 0);
	ssize_t r = read(fd, buf, n);
	assert_true(r >= 0);
	close(fd);
	return (size_t)r;
}

static void test_path(void **state)
{
	(void)state;
	char p[256];
	assert_int_equal(ht_output_path(p, sizeof(p), "/d", 42, 1, "heap"), 0);
	assert_string_equal(p, "/d/heaptap.42.0001.heap.pb.gz");
	assert_int_equal(ht_output_path(p, sizeof(p), ".", 7, 12345, "threads"), 0);
	assert_string_equal(p, "./heaptap.7.12345.threads.pb.gz");
	assert_int_equal(ht_output_path(p, 10, "/d", 42, 1, "heap"), -ENAMETOOLONG);
	char exact[64];
	/* "/d/heaptap.1.0001.heap.pb.gz" is 28 characters: needs 29 bytes. */
	assert_int_equal(ht_output_path(exact, 28, "/d", 1, 1, "heap"), -ENAMETOOLONG);
	assert_int_equal(ht_output_path(exact, 29, "/d", 1, 1, "heap"), 0);
}

static void test_write(void **state)
{
	struct ctx *c = *state;
	static const char data[] = "profile bytes";
	assert_int_equal(ht_output_write_file(c->dir, 123, 1, "heap", data, sizeof(data)), 0);

	char path[PATH_MAX + 64], buf[256], names[4096];
	ht_output_path(path, sizeof(path), c->dir, 123, 1, "heap");
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(read_all(path, buf, sizeof(buf)), sizeof(data));
	assert_memory_equal(buf, data, sizeof(data));
	/* No temporary file left behind. */
	assert_int_equal(list_dir(c->dir, names, sizeof(names)), 1);
	assert_string_equal(names, "heaptap.123.0001.heap.pb.gz\n");

	/* A second kind and an empty file. */
	assert_int_equal(ht_output_write_file(c->dir, 123, 1, "threads", "", 0), 0);
	ht_output_path(path, sizeof(path), c->dir, 123, 1, "threads");
	assert_int_equal(read_all(path, buf, sizeof(buf)), 0);
	assert_int_equal(list_dir(c->dir, names, sizeof(names)), 2);
}

/* A file of ours already at the name (an earlier program image with the same
 * pid, after exec) is never replaced: -EEXIST, and it keeps its contents. */
static void test_replace_own(void **state)
{
	struct ctx *c = *state;
	char path[PATH_MAX + 64], buf[64], names[4096];
	ht_output_path(path, sizeof(path), c->dir, 9, 2, "heap");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "old", 3), 3);
	close(fd);
	assert_int_equal(ht_output_write_file(c->dir, 9, 2, "heap", "new!", 4), -EEXIST);
	assert_int_equal(read_all(path, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "old", 3);
	assert_int_equal(list_dir(c->dir, names, sizeof(names)), 1);
}

/* A planted symlink is neither followed nor replaced. */
static void test_symlink_not_followed(void **state)
{
	struct ctx *c = *state;
	char canary[PATH_MAX + 16], path[PATH_MAX + 64], buf[64], link[PATH_MAX], names[4096];
	snprintf(canary, sizeof(canary), "%s/canary", c->dir);
	int fd = open(canary, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "canary", 6), 6);
	close(fd);
	ht_output_path(path, sizeof(path), c->dir, 5, 1, "heap");
	assert_int_equal(symlink(canary, path), 0);

	assert_int_equal(ht_output_write_file(c->dir, 5, 1, "heap", "evil", 4), -EEXIST);
	assert_int_equal(read_all(canary, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "canary", 6);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = 0;
	assert_string_equal(link, canary);
	/* Only the canary and the symlink: no temporary file left. */
	assert_int_equal(list_dir(c->dir, names, sizeof(names)), 2);

	/* A dangling symlink (to where a file would be created) likewise. */
	char target[PATH_MAX + 16];
	snprintf(target, sizeof(target), "%s/created-through-link", c->dir);
	ht_output_path(path, sizeof(path), c->dir, 5, 2, "heap");
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(ht_output_write_file(c->dir, 5, 2, "heap", "evil", 4), -EEXIST);
	struct stat st;
	assert_int_equal(lstat(target, &st), -1);
	assert_int_equal(errno, ENOENT);

	/* A directory at the name is not touched either. */
	ht_output_path(path, sizeof(path), c->dir, 5, 3, "heap");
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(ht_output_write_file(c->dir, 5, 3, "heap", "x", 1), -EEXIST);
	assert_int_equal(list_dir(c->dir, names, sizeof(names)), 4);
}

/* A file someone else owns is not ours to replace (needs root to set up). */
static void test_foreign_file(void **state)
{
	struct ctx *c = *state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	char path[PATH_MAX + 64], buf[64];
	ht_output_path(path, sizeof(path), c->dir, 6, 1, "heap");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "theirs", 6), 6);
	assert_int_equal(fchown(fd, 65534, 65534), 0);
	close(fd);
	assert_int_equal(ht_output_write_file(c->dir, 6, 1, "heap", "ours", 4), -EEXIST);
	assert_int_equal(read_all(path, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "theirs", 6);
}

static void test_bad_dir(void **state)
{
	struct ctx *c = *state;
	char dir[PATH_MAX + 32], names[4096];
	snprintf(dir, sizeof(dir), "%s/missing", c->dir);
	assert_int_equal(ht_output_write_file(dir, 1, 1, "heap", "x", 1), -ENOENT);

	/* Not a directory. */
	snprintf(dir, sizeof(dir), "%s/file", c->dir);
	int fd = open(dir, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ht_output_write_file(dir, 1, 1, "heap", "x", 1), -ENOTDIR);

	/* World-writable without the sticky bit: refused. */
	snprintf(dir, sizeof(dir), "%s/open", c->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	assert_int_equal(ht_output_write_file(dir, 1, 1, "heap", "x", 1), -EPERM);
	/* Sticky and ours (like /tmp, which is root's): accepted. */
	assert_int_equal(chmod(dir, 01777), 0);
	assert_int_equal(ht_output_write_file(dir, 1, 1, "heap", "x", 1), 0);
	assert_int_equal(list_dir(dir, names, sizeof(names)), 1);

	/* A directory we cannot write to (meaningless for root). */
	if (geteuid() != 0) {
		snprintf(dir, sizeof(dir), "%s/ro", c->dir);
		assert_int_equal(mkdir(dir, 0500), 0);
		assert_int_equal(ht_output_write_file(dir, 1, 1, "heap", "x", 1), -EACCES);
		assert_int_equal(list_dir(dir, names, sizeof(names)), 0);
	}
}

/* A failed write leaves nothing; /dev/full stands in for a full disk. */
static void test_write_fd(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	char big[20000];
	memset(big, 'a', sizeof(big));
	assert_int_equal(ht_output_write_fd(p[1], "abc", 3), 0);
	char buf[8];
	assert_int_equal(read(p[0], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "abc", 3);
	close(p[0]);
	close(p[1]);
	assert_int_equal(ht_output_write_fd(p[1], "abc", 3), -EBADF);

	int full = open("/dev/full", O_WRONLY);
	if (full >= 0) {
		assert_int_equal(ht_output_write_fd(full, big, sizeof(big)), -ENOSPC);
		close(full);
	}
	int null = open("/dev/null", O_WRONLY);
	assert_true(null >= 0);
	assert_int_equal(ht_output_write_fd(null, big, sizeof(big)), 0);
	assert_int_equal(ht_output_write_fd(null, big, 0), 0);
	close(null);
}

/* Many writes with distinct sequence numbers, one file each. */
static void test_many(void **state)
{
	struct ctx *c = *state;
	char dir[PATH_MAX + 32], names[1 << 16];
	snprintf(dir, sizeof(dir), "%s/many", c->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (unsigned seq = 1; seq <= 50; seq++)
		assert_int_equal(ht_output_write_file(dir, 77, seq, "heap", &seq, sizeof(seq)), 0);
	assert_int_equal(list_dir(dir, names, sizeof(names)), 50);
	assert_non_null(strstr(names, "heaptap.77.0050.heap.pb.gz\n"));
	assert_null(strstr(names, ".tmp"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_path),
	        cmocka_unit_test_setup_teardown(test_write, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_replace_own, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_symlink_not_followed, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_foreign_file, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_dir, setup, teardown),
	        cmocka_unit_test(test_write_fd),
	        cmocka_unit_test_setup_teardown(test_many, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
