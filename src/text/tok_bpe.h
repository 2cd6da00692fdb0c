/* tok_bpe: the BPE model of tokenizer.json ("model": {"type": "BPE"}), byte-level or
 * SentencePiece-style: vocab, merges (either "a b" strings or [a, b] pairs), unk_token, fuse_unk,
 * byte_fallback, ignore_merges, continuing_subword_prefix, end_of_word_suffix. Merging follows the
 * reference exactly: lowest rank first, leftmost on ties, by a priority queue. */
#ifndef SM_TOK_BPE_H
#define SM_TOK_BPE_H

#include <jansson.h>
#include <stdbool.h>

#include "text/tok_buf.h"
#include "text/tok_json.h"
#include "text/tok_strmap.h"

typedef struct sm_tok_bpe {
    sm_tok_strmap vocab;
    sm_tok_pairmap merges;
    char *unk_token;           /* NULL: unknown characters are dropped, as the reference does */
    char *prefix, *suffix;     /* continuing_subword_prefix, end_of_word_suffix ("" = none) */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256];     /* ids of "<0xXX>", -1 where missing */
    int32_t max_id;
    /* word cache: word -> ids (cache_pool[cache_off[e] .. + cache_n[e]]) */
    sm_tok_strmap cache;
    int32_t *cache_pool;
    size_t cache_pool_len, cache_pool_cap;
    uint32_t *cache_off, *cache_n;
    size_t cache_entries, cache_cap;
    struct bpe_work *work;
} sm_tok_bpe;

/* Read c->path (the "model" object). */
int sm_tok_bpe_read(const sm_tok_jctx *c, json_t *model, sm_tok_bpe *out);
void sm_tok_bpe_free(sm_tok_bpe *m);
/* Append the ids of one word. 0 or -1 (message set). Not thread-safe (the cache). */
int sm_tok_bpe_encode(sm_tok_bpe *m, const char *word, size_t n, sm_tok_ids *out);

#endif
