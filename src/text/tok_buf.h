/* tok_buf: growable buffers: bytes (the working string of the tokenizer's stages) and ids. */
#ifndef SM_TOK_BUF_H
#define SM_TOK_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/mem.h"

typedef struct sm_tok_buf {
    char *p;
    size_t len, cap;
} sm_tok_buf;

static inline void sm_tok_buf_reserve(sm_tok_buf *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap) {
        b->cap = (b->len + extra + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
}

static inline void sm_tok_buf_add(sm_tok_buf *b, const void *s, size_t n)
{
    sm_tok_buf_reserve(b, n);
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static inline void sm_tok_buf_set(sm_tok_buf *b, const void *s, size_t n)
{
    b->len = 0;
    sm_tok_buf_add(b, s, n);
}

typedef struct sm_tok_ids {
    int32_t *v;
    size_t n, cap;
} sm_tok_ids;

static inline void sm_tok_ids_push(sm_tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? ids->cap * 2 : 256;
        ids->v = xrealloc(ids->v, ids->cap * sizeof *ids->v);
    }
    ids->v[ids->n++] = id;
}

#endif
