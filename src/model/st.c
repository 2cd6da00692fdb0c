/* Validated, memory-mapped safetensors reader (DESIGN §3.1). Every count and offset is checked
 * against the file size before use, in the spirit of ggml's gguf reader. */
#include "model/st.h"
#include "util/diag.h"
#include "util/fault.h"
#include "util/fileio.h"
#include "util/limits.h"
#include "util/mapguard.h"
#include "util/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *key, *value;
} st_meta;

struct st_file {
    char *path;
    void *map;
    uint64_t size;
    sm_tensor *tensors;  /* sorted by data offset */
    size_t count;
    size_t *by_name;     /* indices sorted by name, for lookup */
    st_meta *meta;
    size_t n_meta;
};

/* Every message starts with the file path. */
static int fail(st_file *f, const char *fmt, ...) SM_PRINTF(2, 3);
static int fail(st_file *f, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sm_err("%s: %s", f->path, msg);
}

static int parse_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Parse one tensor entry; data_offsets are checked against data_size here, tiling later. */
static int parse_entry(st_file *f, const char *name, json_t *e, uint64_t data_size, sm_tensor *t,
                       uint64_t *begin, uint64_t *end)
{
    if (!json_is_object(e))
        return fail(f, "tensor '%s': header entry is not a JSON object", name);
    const char *key;
    json_t *val;
    json_object_foreach(e, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return fail(f, "tensor '%s': unexpected key '%s' in header entry", name, key);
    }
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return fail(f, "tensor '%s': missing or non-string \"dtype\"", name);
    if (!json_is_array(js))
        return fail(f, "tensor '%s': missing or non-array \"shape\"", name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return fail(f, "tensor '%s': \"data_offsets\" must be an array [begin, end]", name);
    const char *ds = json_string_value(jd);
    if (!strcmp(ds, "F32"))
        t->dtype = SM_DT_F32;
    else if (!strcmp(ds, "F16"))
        t->dtype = SM_DT_F16;
    else if (!strcmp(ds, "BF16"))
        t->dtype = SM_DT_BF16;
    else
        return fail(f, "tensor '%s': dtype '%s' is not supported (F32, F16, BF16)", name, ds);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return fail(f, "tensor '%s': %zu dimensions (at most %d supported)", name, nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (parse_u64(json_array_get(js, i), &d) != 0)
            return fail(f, "tensor '%s': shape entries must be non-negative integers", name);
        if (!sm_mul_ok(numel, d, &numel) || numel > (UINT64_MAX >> 3))
            return fail(f, "tensor '%s': shape product overflows", name);
        t->shape[i] = (int64_t)d;
    }
    uint64_t nbytes;
    if (!sm_mul_ok(numel, sm_dtype_size(t->dtype), &nbytes))
        return fail(f, "tensor '%s': byte size overflows", name);
    if (parse_u64(json_array_get(jo, 0), begin) != 0 || parse_u64(json_array_get(jo, 1), end) != 0)
        return fail(f, "tensor '%s': data_offsets must be non-negative integers", name);
    char range[128];
    snprintf(range, sizeof range, "[%llu, %llu]", (unsigned long long)*begin, (unsigned long long)*end);
    if (*end < *begin)
        return fail(f, "tensor '%s': data_offsets %s end before they begin", name, range);
    if (*end - *begin != nbytes) {
        char msg[256];
        snprintf(msg, sizeof msg, "data_offsets %s span %llu bytes but shape x dtype needs %llu", range,
                 (unsigned long long)(*end - *begin), (unsigned long long)nbytes);
        return fail(f, "tensor '%s': %s", name, msg);
    }
    if (*end > data_size) {
        char msg[256];
        snprintf(msg, sizeof msg, "data_offsets %s run past the end of the data (%llu bytes): truncated or incomplete file?",
                 range, (unsigned long long)data_size);
        return fail(f, "tensor '%s': %s", name, msg);
    }
    t->numel = numel;
    t->nbytes = nbytes;
    return 0;
}

typedef struct {
    sm_tensor t;
    uint64_t begin, end;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

static const st_file *sort_ctx;
static int cmp_name_idx(const void *a, const void *b)
{
    return strcmp(sort_ctx->tensors[*(const size_t *)a].name, sort_ctx->tensors[*(const size_t *)b].name);
}

static int parse_header(st_file *f, const char *text, uint64_t hlen, uint64_t data_size, const unsigned char *data)
{
    if (hlen == 0 || text[0] != '{')
        return fail(f, "header is not a JSON object (it must start with '{')");
    json_error_t jerr;
    json_t *root = json_loadb(text, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char msg[512];
        snprintf(msg, sizeof msg, "header JSON is malformed at byte %d: %s", jerr.position, jerr.text);
        return fail(f, "%s", msg);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(f, "header is not a JSON object");
    }
    size_t n = json_object_size(root);
    entry *ents = sm_zalloc(n ? n : 1, sizeof *ents);
    if (!ents) {
        json_decref(root);
        return sm_err_prefix("%s", f->path);
    }
    size_t ne = 0;
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                rc = fail(f, "__metadata__ must be an object of strings");
                break;
            }
            f->meta = xcalloc(json_object_size(val) + 1, sizeof *f->meta);
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = fail(f, "__metadata__ value for '%s' is not a string", mk);
                    break;
                }
                f->meta[f->n_meta].key = xstrdup(mk);
                f->meta[f->n_meta].value = xstrdup(json_string_value(mv));
                f->n_meta++;
            }
            if (rc)
                break;
            continue;
        }
        if (key[0] == '\0') {
            rc = fail(f, "a tensor has an empty name");
            break;
        }
        entry *e = &ents[ne];
        e->t.name = xstrdup(key);
        ne++;
        if ((rc = parse_entry(f, key, val, data_size, &e->t, &e->begin, &e->end)) != 0)
            break;
    }
    json_decref(root);
    if (rc == 0) {
        qsort(ents, ne, sizeof *ents, cmp_entry);
        uint64_t pos = 0;
        const char *prev = NULL;
        for (size_t i = 0; i < ne && rc == 0; i++) {
            char msg[512];
            if (ents[i].begin < pos) {
                snprintf(msg, sizeof msg, "data_offsets [%llu, %llu] overlap the previous tensor '%s'",
                         (unsigned long long)ents[i].begin, (unsigned long long)ents[i].end, prev);
                rc = fail(f, "tensor '%s': %s", ents[i].t.name, msg);
            } else if (ents[i].begin > pos) {
                snprintf(msg, sizeof msg, "data bytes [%llu, %llu) before it belong to no tensor (a hole)",
                         (unsigned long long)pos, (unsigned long long)ents[i].begin);
                rc = fail(f, "tensor '%s': %s", ents[i].t.name, msg);
            }
            pos = ents[i].end;
            prev = ents[i].t.name;
        }
        if (rc == 0 && pos != data_size) {
            char msg[256];
            snprintf(msg, sizeof msg, "%llu bytes after the last tensor belong to no tensor",
                     (unsigned long long)(data_size - pos));
            rc = fail(f, "%s", msg);
        }
    }
    f->tensors = xcalloc(ne ? ne : 1, sizeof *f->tensors);
    for (size_t i = 0; i < ne; i++) {
        f->tensors[i] = ents[i].t;
        f->tensors[i].file = f->path;
        f->tensors[i].data = data + ents[i].begin;
    }
    f->count = ne;
    free(ents);
    if (rc)
        return rc;
    f->by_name = xcalloc(ne ? ne : 1, sizeof *f->by_name);
    for (size_t i = 0; i < ne; i++)
        f->by_name[i] = i;
    sort_ctx = f;
    qsort(f->by_name, ne, sizeof *f->by_name, cmp_name_idx);
    sort_ctx = NULL;
    return 0;
}

/* What lies at byte `offset` of the file, for util/mapguard's message. */
static void describe_offset(const void *owner, uint64_t offset, char *buf, size_t n)
{
    const st_file *f = owner;
    const unsigned char *a = (const unsigned char *)f->map + offset;
    size_t lo = 0, hi = f->count; /* tensors are in data order: the last one starting at or before a */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((const unsigned char *)f->tensors[mid].data <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo && a < (const unsigned char *)f->tensors[lo - 1].data + f->tensors[lo - 1].nbytes)
        snprintf(buf, n, "tensor %s", f->tensors[lo - 1].name);
    else
        snprintf(buf, n, "%s", f->count && a >= (const unsigned char *)f->tensors[0].data ? "its data"
                                                                                         : "its header");
}

st_file *st_open(const char *path)
{
    st_file *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    int fd = sm_open_input(path);
    if (fd < 0) {
        st_close(f);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        sm_err("%s: cannot open: %s", path, strerror(errno));
        close(fd);
        st_close(f);
        return NULL;
    }
    f->size = (uint64_t)st.st_size;
    if (f->size < 8) {
        sm_err("%s: file is %llu bytes, too short to hold a safetensors header", path, (unsigned long long)f->size);
        close(fd);
        st_close(f);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        if (errno == ENOMEM && sm_limits_address_kib()) /* say why: the limit, not the machine */
            sm_err("%s: cannot map its %llu bytes: out of memory (the address-space limit, ulimit -v, is %llu KiB)",
                   path, (unsigned long long)f->size, sm_limits_address_kib());
        else
            sm_err("%s: cannot map: %s", path, strerror(errno));
        st_close(f);
        return NULL;
    }
    /* guarded from the first read: the file may be truncated or fail at any time from now on */
    if (sm_mapguard_add(map, (size_t)f->size, f->path, f, describe_offset)) {
        sm_err("%s: more than %d model files open at once", f->path, SM_MAPGUARD_SLOTS);
        munmap(map, (size_t)f->size);
        st_close(f);
        return NULL;
    }
    f->map = map;
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER) {
        sm_err("%s: header length %llu exceeds the 100000000-byte limit (not a safetensors file?)", path,
               (unsigned long long)hlen);
        st_close(f);
        return NULL;
    }
    if (hlen > f->size - 8) {
        sm_err("%s: header length %llu runs past the end of the %llu-byte file (truncated or still downloading?)",
               path, (unsigned long long)hlen, (unsigned long long)f->size);
        st_close(f);
        return NULL;
    }
    int rc = parse_header(f, (const char *)p + 8, hlen, f->size - 8 - hlen, p + 8 + hlen);
    if (rc || sm_mapguard_tripped()) {
        if (sm_mapguard_tripped()) /* the header read zeros: the file changed, it is not malformed */
            sm_err("%s", sm_mapguard_message());
        st_close(f);
        return NULL;
    }
    (void)sm_fault_hit(SM_FAULT_MAP, 0, NULL); /* a test may change the file now (util/fault.h) */
    return f;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    if (f->map) {
        sm_mapguard_remove(f->map);
        munmap(f->map, (size_t)f->size);
    }
    for (size_t i = 0; i < f->count; i++)
        free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->path);
    free(f);
}

size_t st_count(const st_file *f) { return f->count; }
const sm_tensor *st_tensor(const st_file *f, size_t i) { return i < f->count ? &f->tensors[i] : NULL; }
const char *st_path(const st_file *f) { return f->path; }
uint64_t st_file_size(const st_file *f) { return f->size; }

const sm_tensor *st_find(const st_file *f, const char *name)
{
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0)
            return &f->tensors[f->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key))
            return f->meta[i].value;
    return NULL;
}

void st_release(const void *data, uint64_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || !data)
        return;
    uintptr_t a = (uintptr_t)data, b = a + (uintptr_t)n;
    a = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    b &= ~((uintptr_t)pg - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}
