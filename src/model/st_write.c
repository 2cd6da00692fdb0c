/* Streaming safetensors writer: the header is known up front from the declared shapes, so
 * tensors of any total size are written in order without ever being held in memory. */
#include "model/st.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/signals.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    sm_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
} decl;

struct st_writer {
    decl *decls;
    size_t n, cap;
    json_t *meta;
    uint64_t data_size;
    FILE *fp;
    char *path;
    size_t cur;          /* tensor being written */
    uint64_t cur_done;   /* bytes of it written */
    char *convbuf;
    size_t convcap;
};

st_writer *st_writer_new(void)
{
    st_writer *w = xcalloc(1, sizeof *w);
    w->meta = json_object();
    return w;
}

void st_writer_free(st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->decls[i].name);
    free(w->decls);
    json_decref(w->meta);
    if (w->fp)
        fclose(w->fp);
    free(w->path);
    free(w->convbuf);
    free(w);
}

int st_writer_declare(st_writer *w, const char *name, sm_dtype dt, int ndim, const int64_t *shape)
{
    if (w->fp)
        return sm_err("safetensors writer: tensor '%s' declared after writing began", name);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return sm_err("safetensors writer: tensor '%s' has %d dimensions", name, ndim);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || !sm_mul_ok(numel, (uint64_t)shape[i], &numel))
            return sm_err("safetensors writer: tensor '%s' has an invalid shape", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->decls = xrealloc(w->decls, w->cap * sizeof *w->decls);
    }
    decl *d = &w->decls[w->n++];
    d->name = xstrdup(name);
    d->dtype = dt;
    d->ndim = ndim;
    memcpy(d->shape, shape, (size_t)ndim * sizeof *shape);
    d->nbytes = numel * sm_dtype_size(dt);
    w->data_size += d->nbytes;
    return 0;
}

int st_writer_meta(st_writer *w, const char *key, const char *value)
{
    json_object_set_new(w->meta, key, json_string(value));
    return 0;
}

uint64_t st_writer_data_size(const st_writer *w) { return w->data_size; }

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_unique(const st_writer *w)
{
    /* O(n log n) duplicate check through a sorted copy of the names. */
    const char **names = xcalloc(w->n ? w->n : 1, sizeof *names);
    for (size_t i = 0; i < w->n; i++)
        names[i] = w->decls[i].name;
    qsort(names, w->n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 1; i < w->n; i++)
        if (!strcmp(names[i], names[i - 1])) {
            rc = sm_err("safetensors writer: tensor '%s' declared twice", names[i]);
            break;
        }
    free(names);
    return rc;
}

int st_writer_begin(st_writer *w, const char *path)
{
    if (check_unique(w) != 0)
        return -1;
    json_t *root = json_object();
    if (json_object_size(w->meta))
        json_object_set(root, "__metadata__", w->meta);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        decl *d = &w->decls[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        json_object_set_new(e, "dtype", json_string(sm_dtype_name(d->dtype)));
        for (int k = 0; k < d->ndim; k++)
            json_array_append_new(shape, json_integer(d->shape[k]));
        json_object_set_new(e, "shape", shape);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + d->nbytes)));
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(root, d->name, e);
        off += d->nbytes;
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        return sm_err("%s: cannot encode the safetensors header", path);
    size_t len = strlen(text);
    size_t padded = (len + 7) & ~(size_t)7; /* 8-byte alignment of the data, as the Python library does */
    w->path = xstrdup(path);
    w->fp = fopen(path, "wb");
    if (!w->fp) {
        free(text);
        return sm_err("%s: cannot create: %s", path, strerror(errno));
    }
    setvbuf(w->fp, NULL, _IOFBF, 1 << 20);
    unsigned char hdr[8];
    for (int i = 0; i < 8; i++)
        hdr[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int rc = sm_fwrite(w->fp, hdr, 8, path);
    if (!rc)
        rc = sm_fwrite(w->fp, text, len, path);
    for (size_t i = len; i < padded && !rc; i++)
        rc = sm_fwrite(w->fp, " ", 1, path);
    free(text);
    w->cur = 0;
    w->cur_done = 0;
    return rc;
}

/* Write bytes as they are, tensor after tensor; the callers have checked them. */
static int write_bytes(st_writer *w, const void *data, size_t nbytes)
{
    const unsigned char *p = data;
    while (nbytes) {
        while (w->cur < w->n && w->cur_done == w->decls[w->cur].nbytes) {
            w->cur++;
            w->cur_done = 0;
        }
        if (w->cur >= w->n)
            return sm_err("%s: more data written than the declared tensors hold", w->path);
        uint64_t room = w->decls[w->cur].nbytes - w->cur_done;
        size_t k = nbytes < room ? nbytes : (size_t)room;
        if (sm_check_interrupt() != 0)
            return sm_err_prefix("%s", w->path);
        if (sm_fwrite(w->fp, p, k, w->path) != 0)
            return -1;
        w->cur_done += k;
        p += k;
        nbytes -= k;
    }
    return 0;
}

/* Advance to the tensor the next byte belongs to; -1 past the last one. */
static int current(st_writer *w)
{
    while (w->cur < w->n && w->cur_done == w->decls[w->cur].nbytes) {
        w->cur++;
        w->cur_done = 0;
    }
    if (w->cur >= w->n)
        return sm_err("%s: more data written than the declared tensors hold", w->path);
    return 0;
}

/* A file never gets an Inf or NaN (nor a float that overflows the tensor's dtype): `bad` is the
 * index, among n elements about to be written from the current position, of the first
 * non-finite stored value, or n. The message names the tensor; callers add the file and layer. */
static int refuse_nonfinite(const st_writer *w, size_t bad, size_t n, const void *stored)
{
    if (bad == n)
        return 0;
    const decl *d = &w->decls[w->cur];
    float v;
    sm_to_f32(d->dtype, (const char *)stored + bad * sm_dtype_size(d->dtype), &v, 1);
    return sm_err("tensor '%s' would hold a non-finite value (%s as %s) at element %llu", d->name,
                  sm_nonfinite_name(v), sm_dtype_name(d->dtype),
                  (unsigned long long)(w->cur_done / sm_dtype_size(d->dtype) + bad));
}

int st_writer_write(st_writer *w, const void *data, size_t nbytes)
{
    const unsigned char *p = data;
    while (nbytes) { /* checked tensor by tensor, so the message names the right one */
        if (current(w))
            return -1;
        const decl *d = &w->decls[w->cur];
        size_t es = sm_dtype_size(d->dtype), room = (size_t)(d->nbytes - w->cur_done);
        size_t k = nbytes < room ? nbytes : room, n = k / es;
        if (refuse_nonfinite(w, sm_first_nonfinite(d->dtype, p, n), n, p) || write_bytes(w, p, k))
            return -1;
        p += k;
        nbytes -= k;
    }
    return 0;
}

int st_writer_write_f32(st_writer *w, const float *src, size_t n)
{
    if (current(w))
        return -1;
    sm_dtype dt = w->decls[w->cur].dtype;
    if (dt == SM_DT_F32)
        return st_writer_write(w, src, n * 4);
    const size_t chunk = 1 << 16;
    size_t esz = sm_dtype_size(dt);
    if (w->convcap < chunk * esz) {
        w->convcap = chunk * esz;
        w->convbuf = xrealloc(w->convbuf, w->convcap);
    }
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        size_t bad = sm_from_f32(dt, src + i, w->convbuf, k);
        if (refuse_nonfinite(w, bad, k, w->convbuf) || write_bytes(w, w->convbuf, k * esz) != 0)
            return -1;
    }
    return 0;
}

int st_writer_finish(st_writer *w)
{
    if (!w->fp)
        return sm_err("safetensors writer: finish without begin");
    while (w->cur < w->n && w->cur_done == w->decls[w->cur].nbytes) {
        w->cur++;
        w->cur_done = 0;
    }
    int rc = 0;
    if (w->cur < w->n)
        rc = sm_err("%s: tensor '%s' was declared but not fully written", w->path, w->decls[w->cur].name);
    if (fflush(w->fp) != 0 && !rc)
        rc = sm_err("%s: write failed: %s", w->path, strerror(errno));
    if (!rc)
        rc = sm_fsync_fd(fileno(w->fp), w->path);
    if (fclose(w->fp) != 0 && !rc)
        rc = sm_err("%s: write failed: %s", w->path, strerror(errno));
    w->fp = NULL;
    return rc;
}
