/* tok_added: added and special tokens ("added_tokens"), found in the text before the model sees
 * it, as the reference does: tokens with normalized=false are matched in the raw text, the others
 * (their content normalized) in the normalized text; leftmost-longest, honouring lstrip, rstrip
 * and single_word. */
#ifndef SM_TOK_ADDED_H
#define SM_TOK_ADDED_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "text/tok_json.h"
#include "text/tok_normalizer.h"

typedef struct sm_tok_added_token {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} sm_tok_added_token;

/* A byte trie over the patterns of one set (raw or normalized). */
typedef struct sm_tok_trie {
    int32_t root[256];        /* node of each first byte, -1 none */
    struct trie_node *nodes;
    size_t n, cap;
} sm_tok_trie;

typedef struct sm_tok_added {
    sm_tok_added_token *tok;
    size_t n;
    sm_tok_trie raw, norm;
} sm_tok_added;

/* A stretch of text: [start, end), id >= 0 for an added token, -1 for ordinary text. */
typedef struct sm_tok_seg {
    size_t start, end;
    int32_t id;
} sm_tok_seg;

typedef struct sm_tok_segs {
    sm_tok_seg *v;
    size_t n, cap;
} sm_tok_segs;

/* Read the "added_tokens" list (c->path) and build the tries (normalized contents through nz). */
int sm_tok_added_read(const sm_tok_jctx *c, json_t *arr, const sm_tok_normalizer *nz, sm_tok_added *out);
void sm_tok_added_free(sm_tok_added *a);
/* Split s[0..n) by the raw (normalized=false) or the normalized set; segments appended to out. */
void sm_tok_added_split(const sm_tok_added *a, bool normalized_set, const char *s, size_t n, sm_tok_segs *out);
/* The added token with this id, or NULL. */
const sm_tok_added_token *sm_tok_added_by_id(const sm_tok_added *a, int32_t id);

#endif
