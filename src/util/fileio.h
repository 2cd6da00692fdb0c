/* fileio: checked file helpers that report the file name on failure. */
#ifndef SM_FILEIO_H
#define SM_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Read a whole (small) file into a NUL-terminated buffer; refuses files over max_bytes. */
char *sm_read_file(const char *path, size_t max_bytes, size_t *len_out);
bool sm_is_dir(const char *path);
bool sm_exists(const char *path);
int sm_file_size(const char *path, uint64_t *out);
/* Bytes in the regular files under a directory (0 if it cannot be read). */
uint64_t sm_dir_size(const char *path);
/* path joined with a child name; caller frees. */
char *sm_path_join(const char *dir, const char *name);
const char *sm_basename(const char *path);
/* mkdir -p */
int sm_mkdirs(const char *path);
/* Write a whole buffer to a file (replacing it), checking every call. */
int sm_write_file(const char *path, const void *data, size_t n);
/* fwrite with error reporting naming path. */
int sm_fwrite(FILE *f, const void *data, size_t n, const char *path);
/* rename(2), through the failure-injection hook (util/fault.h): every "into place" rename uses it. */
int sm_rename(const char *from, const char *to);

#endif
