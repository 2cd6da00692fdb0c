#include "util/mem.h"
#include "util/diag.h"
#include "util/limits.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "out of memory (N bytes)", naming the address-space limit when there is one: that is
 * usually why. */
static const char *oom_message(unsigned long long bytes)
{
    static _Thread_local char msg[160];
    unsigned long long kib = sm_limits_address_kib();
    if (kib)
        snprintf(msg, sizeof msg, "out of memory (%llu bytes; the address-space limit, ulimit -v, is %llu KiB)",
                 bytes, kib);
    else
        snprintf(msg, sizeof msg, "out of memory (%llu bytes)", bytes);
    return msg;
}

void *sm_alloc(size_t n, size_t size)
{
    uint64_t total;
    if (!sm_mul_ok(n, size, &total) || total > SIZE_MAX) {
        sm_err("allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = malloc(total ? total : 1);
    if (!p)
        sm_err("%s", oom_message(total));
    return p;
}

void *sm_zalloc(size_t n, size_t size)
{
    uint64_t total;
    if (!sm_mul_ok(n, size, &total) || total > SIZE_MAX) {
        sm_err("allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        sm_err("%s", oom_message(total));
    return p;
}

/* total bytes (checked by the caller) rounded up to whole 64-byte lines, on a line boundary;
 * zeroed with zero */
static void *alloc_lines(uint64_t total, bool zero)
{
    total = (total + 63) & ~(uint64_t)63;
    void *p = NULL;
    if (total > SIZE_MAX || posix_memalign(&p, 64, total ? total : 64) != 0) {
        sm_err("%s", oom_message(total));
        return NULL;
    }
    if (zero)
        memset(p, 0, (size_t)total);
    return p;
}

float *sm_alloc_f32(size_t n)
{
    uint64_t total;
    if (!sm_mul_ok(n, sizeof(float), &total)) {
        sm_err("allocation of %zu floats overflows", n);
        return NULL;
    }
    return alloc_lines(total, false);
}

void *sm_zalloc_lines(size_t n, size_t size)
{
    uint64_t total;
    if (!sm_mul_ok(n, size, &total) || total > SIZE_MAX - 64) {
        sm_err("allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    return alloc_lines(total, true);
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        sm_die("%s", oom_message(size));
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        sm_die("%s", oom_message((unsigned long long)n * size));
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        sm_die("%s", oom_message(size));
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        sm_die("formatting failed");
    char *p = xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}
