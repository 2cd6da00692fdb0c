/* mem: allocation with overflow-checked sizes.
 * sm_alloc* return NULL and set the diag message on failure (for sizes derived from files);
 * xmalloc/xcalloc/xstrdup exit on OOM (for small internal bookkeeping only). */
#ifndef SM_MEM_H
#define SM_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* a*b without overflow: returns false on overflow. */
static inline bool sm_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

void *sm_alloc(size_t n, size_t size);   /* malloc(n*size), checked */
void *sm_zalloc(size_t n, size_t size);  /* calloc(n, size), checked */
float *sm_alloc_f32(size_t n);           /* 64-byte aligned, free with free() */
void *sm_zalloc_lines(size_t n, size_t size); /* zeroed, 64-byte aligned (a kernel's operands), free() */

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
