/* fileio: checked file helpers that report the file name on failure. */
#ifndef SM_FILEIO_H
#define SM_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every input file of every command is opened here: read-only, and only if it is a regular file.
 * A FIFO, socket, device or directory is refused ("PATH: not a regular file (a FIFO)") without
 * ever blocking in open(2), and a signal during the call is reported as the signal. The
 * descriptor (blocking, close-on-exec), or -1 with a message. */
int sm_open_input(const char *path);
/* Read a whole (small) input file (through sm_open_input) into a NUL-terminated buffer; refuses
 * files over max_bytes. */
char *sm_read_file(const char *path, size_t max_bytes, size_t *len_out);
bool sm_is_dir(const char *path);
bool sm_exists(const char *path);
int sm_file_size(const char *path, uint64_t *out);
/* Bytes in the regular files under a directory (0 if it cannot be read). */
uint64_t sm_dir_size(const char *path);
/* path joined with a child name; caller frees. */
char *sm_path_join(const char *dir, const char *name);
/* An absolute path for path, which need not exist: realpath(3) when it does; else its
 * directory's real path and its last name (a dangling link keeps its own name); else, for a
 * relative path, the working directory joined with it. Caller frees. */
char *sm_path_absolute(const char *path);
const char *sm_basename(const char *path);
/* mkdir -p */
int sm_mkdirs(const char *path);
/* Write a whole buffer to a file (replacing it), checking every call. */
int sm_write_file(const char *path, const void *data, size_t n);
/* fwrite with error reporting naming path; fails ("interrupted") once a signal has arrived. */
int sm_fwrite(FILE *f, const void *data, size_t n, const char *path);
/* Durability before and after a rename into place: a crash or power loss must leave the old
 * output or the complete new one, never a renamed file whose data never reached the disk.
 * sm_fsync_fd: fsync(2) a written file (file systems that cannot sync it, EINVAL/EROFS/ENOTSUP, are
 * not an error). sm_fsync_dir: the same for a directory's entries by name. sm_fsync_parent: the
 * directory holding path, best effort (the rename has already happened). */
int sm_fsync_fd(int fd, const char *path);
int sm_fsync_dir(const char *dir);
void sm_fsync_parent(const char *path);

/* rm -rf */
int sm_remove_tree(const char *path);

#endif
