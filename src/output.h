/*
 * output.h - writing profile files.
 *
 * Files are named <dir>/heaptap.<pid>.<seq>.<kind>.pb.gz (seq zero-padded to
 * four digits), created under a temporary name with
 * O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC and mode 0600, written completely,
 * fsync'ed and renamed into place. A planted symlink is never followed and a
 * failed write leaves no file behind. A dump's pair is written to two
 * unnamed files (O_TMPFILE) first and linked into place one right after the
 * other: a process that ends in the middle (_exit, a kill) leaves no
 * temporary file, and at most a heap file without its pair.
 */
#ifndef HT_OUTPUT_H
#define HT_OUTPUT_H

#include <stddef.h>

/* Build the final path into out (size n). 0 or -ENAMETOOLONG. */
int ht_output_path(char *out, size_t n, const char *dir, int pid, unsigned seq, const char *kind);

/* Write data to the final path through a temporary file. 0 or -errno. */
int ht_output_write_file(const char *dir, int pid, unsigned seq, const char *kind, const void *data,
                         size_t len);

/* A dump's heap and thread files under sequence number seq: both final
 * names free (-EEXIST otherwise, nothing written), both written, then both
 * published; if the second cannot be, the first is taken back. 0 or -errno. */
int ht_output_write_pair(const char *dir, int pid, unsigned seq, const void *heap, size_t heap_len,
                         const void *threads, size_t threads_len);

/* Write data to an exact path through a temporary file beside it, renamed
 * into place (replacing what is there, as the caller asked for this name).
 * 0 or -errno. */
int ht_output_write_path(const char *path, const void *data, size_t len);

/* Write all of data to fd, retrying on EINTR and short writes. 0 or -errno. */
int ht_output_write_fd(int fd, const void *data, size_t len);

#endif
