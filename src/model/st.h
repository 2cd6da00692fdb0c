/* st: safetensors files — validated, memory-mapped reading and streaming writing.
 *
 * Reading never loads the data: st_open() maps the file, validates the whole header
 * (DESIGN §3.1) and returns tensor descriptors pointing into the mapping. The mapping is guarded
 * (util/mapguard.h): a file truncated while it is read fails the command with a message naming it
 * and the tensor, instead of SIGBUS. */
#ifndef SM_ST_H
#define SM_ST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/dtype.h"

#define ST_MAX_HEADER 100000000ULL
#define ST_MAX_DIMS 8

typedef struct sm_tensor {
    const char *name;
    const char *file;        /* path of the file it lives in (for messages) */
    sm_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t nbytes;
    const void *data;        /* into the mapping; valid until st_close. Read it with the CPU
                              * (memcpy, conversion), never hand it to a system call such as
                              * write(2), which fails with EFAULT where a read faults (and is
                              * caught) if the file shrank */
} sm_tensor;

typedef struct st_file st_file;

/* Open and validate; NULL with an error naming the file on any problem. */
st_file *st_open(const char *path);
void st_close(st_file *f);

size_t st_count(const st_file *f);
const sm_tensor *st_tensor(const st_file *f, size_t i);      /* in data-offset order */
const sm_tensor *st_find(const st_file *f, const char *name);
const char *st_metadata(const st_file *f, const char *key);  /* __metadata__ value or NULL */
const char *st_path(const st_file *f);
/* Drop the whole mapped pages inside [data, data + n) from this process (after converting them):
 * clean file-backed pages, so touching them again just re-reads them. Keeps a pass over a file
 * larger than RAM from holding what it no longer needs. */
void st_release(const void *data, uint64_t n);
uint64_t st_file_size(const st_file *f);

/* Streaming writer: declare every tensor, then begin (writes the header), then write each
 * tensor's bytes in declaration order, then finish. Tensors of any size; data never needs
 * to be in memory at once. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_free(st_writer *w);
int st_writer_declare(st_writer *w, const char *name, sm_dtype dt, int ndim, const int64_t *shape);
int st_writer_meta(st_writer *w, const char *key, const char *value);
uint64_t st_writer_data_size(const st_writer *w);   /* bytes of data declared so far */
int st_writer_begin(st_writer *w, const char *path);
int st_writer_write(st_writer *w, const void *data, size_t nbytes);
/* Convenience: write n floats converted to the current tensor's dtype. */
int st_writer_write_f32(st_writer *w, const float *src, size_t n);
int st_writer_finish(st_writer *w);   /* checks every declared byte was written, flushes, closes */

#endif
