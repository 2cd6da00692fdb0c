/* fuzz: shared helpers of the fuzz harnesses (libFuzzer entry points; fuzz/driver.c replays files
 * through the same entry points without libFuzzer, for regression tests). */
#ifndef SM_FUZZ_H
#define SM_FUZZ_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file: an in-memory file (memfd) whose /proc path is written to `path`. Returns
 * the descriptor (close it after use) or -1. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t n)
{
    int fd = memfd_create("fuzz", 0);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
