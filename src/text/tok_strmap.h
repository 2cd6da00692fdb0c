/* tok_strmap: string -> int32 map (open addressing) for vocabularies of up to millions of
 * tokens, and a (int32, int32) -> (rank, id) map for BPE merges. Keys are copied into the map. */
#ifndef SM_TOK_STRMAP_H
#define SM_TOK_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sm_tok_strmap {
    uint32_t *slots;   /* index+1 into the entry arrays, 0 = empty */
    size_t mask;
    char *keys;        /* all keys, back to back */
    size_t keys_len, keys_cap;
    size_t *key_off;
    uint32_t *key_len;
    int32_t *val;
    size_t n, cap;
} sm_tok_strmap;

void sm_tok_strmap_init(sm_tok_strmap *m);
void sm_tok_strmap_free(sm_tok_strmap *m);
/* Insert or overwrite. */
void sm_tok_strmap_put(sm_tok_strmap *m, const char *key, size_t len, int32_t val);
/* The value, or -1 when absent. */
int32_t sm_tok_strmap_get(const sm_tok_strmap *m, const char *key, size_t len);

typedef struct sm_tok_pairmap {
    uint64_t *keys;    /* (a << 32 | b) + 1, 0 = empty */
    uint32_t *rank;
    int32_t *id;
    size_t mask, n;
} sm_tok_pairmap;

void sm_tok_pairmap_init(sm_tok_pairmap *m, size_t expected);
void sm_tok_pairmap_free(sm_tok_pairmap *m);
/* Insert or overwrite (a later merge of the same pair wins, as in the reference's map). */
void sm_tok_pairmap_put(sm_tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
/* 1 and (rank, id) when present, else 0. */
int sm_tok_pairmap_get(const sm_tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id);

#endif
