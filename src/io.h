/*
 * io.h - whole reads and writes on a file descriptor.
 *
 * Short transfers are continued and EINTR is retried, so a caller sees one
 * result: 0, or a negative errno (-EIO when the file ends or the device
 * takes nothing). No allocation, no stdio.
 */
#ifndef HT_IO_H
#define HT_IO_H

#include <stddef.h>
#include <stdint.h>

int ht_io_write_all(int fd, const void *data, size_t len);
int ht_io_pread_all(int fd, void *buf, size_t len, uint64_t pos);

#endif
