/* tokens: raw uint32 and .npy token files (see tokens.h). */
#include "model/tokens.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SM_TOKENS_MAX_BYTES ((size_t)1 << 34) /* 16 GiB of ids */

static uint32_t rd_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Find the value text of 'key' in a Python dict literal header; NULL if absent. */
static const char *npy_field(const char *hdr, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        p = strstr(hdr, pat);
    }
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static int check_id(const char *path, int64_t v, size_t pos, int vocab)
{
    if (v < 0)
        return sm_err("%s: token %zu has negative id %lld", path, pos, (long long)v);
    if (vocab > 0 && v >= vocab)
        return sm_err("%s: token %zu has id %lld, outside the vocabulary of %d", path, pos, (long long)v, vocab);
    if (v > INT32_MAX)
        return sm_err("%s: token %zu has id %lld, too large", path, pos, (long long)v);
    return 0;
}

static int parse_npy(const char *path, const unsigned char *d, size_t len, int vocab, sm_tokens *out)
{
    if (len < 10)
        return sm_err("%s: truncated .npy header", path);
    int major = d[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (size_t)d[8] | (size_t)d[9] << 8;
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return sm_err("%s: truncated .npy header", path);
        hlen = rd_u32(d + 8);
        hoff = 12;
    } else {
        return sm_err("%s: unsupported .npy version %d", path, major);
    }
    if (hlen > len - hoff || hlen > 1u << 20)
        return sm_err("%s: .npy header length %zu runs past the end of the file", path, hlen);
    char *hdr = xmalloc(hlen + 1);
    memcpy(hdr, d + hoff, hlen);
    hdr[hlen] = 0;
    int rc = -1;
    const char *descr = npy_field(hdr, "descr");
    const char *fo = npy_field(hdr, "fortran_order");
    const char *shape = npy_field(hdr, "shape");
    if (!descr || !fo || !shape) {
        sm_err("%s: .npy header lacks descr, fortran_order or shape", path);
        goto done;
    }
    int width;
    if (!strncmp(descr, "'<i4'", 5) || !strncmp(descr, "'|i4'", 5))
        width = 4;
    else if (!strncmp(descr, "'<i8'", 5))
        width = 8;
    else {
        sm_err("%s: .npy dtype %.8s is not little-endian int32 or int64", path, descr);
        goto done;
    }
    if (strncmp(fo, "False", 5)) {
        if (!strncmp(fo, "True", 4)) {
            /* Fortran order: refuse unless 1-D, where it is the same; checked with the shape. */
        } else {
            sm_err("%s: .npy fortran_order is neither True nor False", path);
            goto done;
        }
    }
    bool fortran = !strncmp(fo, "True", 4);
    if (*shape != '(') {
        sm_err("%s: .npy shape is not a tuple", path);
        goto done;
    }
    uint64_t count = 1;
    int ndim = 0;
    const char *p = shape + 1;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        if (!isdigit((unsigned char)*p)) {
            sm_err("%s: malformed .npy shape", path);
            goto done;
        }
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (!sm_mul_ok(count, v, &count) || count > SM_TOKENS_MAX_BYTES) {
            sm_err("%s: .npy shape is too large", path);
            goto done;
        }
        ndim++;
        p = end;
    }
    if (fortran && ndim > 1) {
        sm_err("%s: Fortran-order .npy arrays with more than one dimension are not supported", path);
        goto done;
    }
    size_t data_off = hoff + hlen;
    if ((uint64_t)(len - data_off) != count * (uint64_t)width) {
        sm_err("%s: .npy data is %zu bytes but the shape needs %llu", path, len - data_off,
               (unsigned long long)(count * (uint64_t)width));
        goto done;
    }
    out->ids = sm_alloc(count ? count : 1, sizeof *out->ids);
    if (!out->ids)
        goto done;
    const unsigned char *q = d + data_off;
    for (size_t i = 0; i < count; i++) {
        int64_t v;
        if (width == 4) {
            v = (int32_t)rd_u32(q + 4 * i);
        } else {
            uint64_t u = rd_u32(q + 8 * i) | (uint64_t)rd_u32(q + 8 * i + 4) << 32;
            v = (int64_t)u;
        }
        if (check_id(path, v, i, vocab)) {
            free(out->ids);
            out->ids = NULL;
            goto done;
        }
        out->ids[i] = (int32_t)v;
    }
    out->n = count;
    rc = 0;
done:
    free(hdr);
    return rc;
}

int sm_tokens_parse(const char *path, const void *data, size_t len, int vocab, sm_tokens *out)
{
    const unsigned char *d = data;
    out->ids = NULL;
    out->n = 0;
    if (len >= 6 && !memcmp(d, "\x93NUMPY", 6))
        return parse_npy(path, d, len, vocab, out);
    if (len == 0)
        return sm_err("%s: empty token file", path);
    if (len % 4)
        return sm_err("%s: size %zu is not a multiple of 4 (expected raw little-endian uint32 ids or .npy)", path,
                      len);
    size_t n = len / 4;
    out->ids = sm_alloc(n, sizeof *out->ids);
    if (!out->ids)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = rd_u32(d + 4 * i);
        if (check_id(path, v, i, vocab)) {
            free(out->ids);
            out->ids = NULL;
            return -1;
        }
        out->ids[i] = (int32_t)v;
    }
    out->n = n;
    return 0;
}

int sm_tokens_read(const char *path, int vocab, sm_tokens *out)
{
    size_t len;
    out->ids = NULL;
    out->n = 0;
    char *buf = sm_read_file(path, SM_TOKENS_MAX_BYTES, &len);
    if (!buf)
        return -1;
    int rc = sm_tokens_parse(path, buf, len, vocab, out);
    free(buf);
    return rc;
}

void sm_tokens_free(sm_tokens *t)
{
    free(t->ids);
    t->ids = NULL;
    t->n = 0;
}
