/* tok_pretok: tokenizer.json "pre_tokenizer": splits normalized text into the words the model
 * encodes one by one. ByteLevel, Split, Metaspace, Digits, Punctuation, Whitespace,
 * WhitespaceSplit, BertPreTokenizer and Sequence, with the reference's split behaviours. */
#ifndef SM_TOK_PRETOK_H
#define SM_TOK_PRETOK_H

#include <jansson.h>
#include <stdbool.h>

#include "text/tok_buf.h"
#include "text/tok_json.h"
#include "text/tok_regex.h"

/* A word: bytes [off, off+len) of the arena. first: it starts where the input starts (the
 * reference's offsets_original().0 == 0, which Metaspace's prepend_scheme "first" tests). */
typedef struct sm_tok_piece {
    size_t off, len;
    bool first;
} sm_tok_piece;

typedef struct sm_tok_pieces {
    sm_tok_piece *v;
    size_t n, cap;
} sm_tok_pieces;

/* Working space of one pre-tokenization: the arena holds the input and every rewritten text
 * (append-only, so pieces refer to it by offset); out is the result. Reused between calls. */
struct splitter;
typedef struct sm_tok_prework {
    sm_tok_buf arena;
    sm_tok_pieces out, tmp;
    struct splitter *sp;
} sm_tok_prework;

typedef enum {
    SM_TOK_SPLIT_REMOVED,
    SM_TOK_SPLIT_ISOLATED,
    SM_TOK_SPLIT_MERGED_WITH_PREVIOUS,
    SM_TOK_SPLIT_MERGED_WITH_NEXT,
    SM_TOK_SPLIT_CONTIGUOUS,
} sm_tok_split_behavior;

typedef enum {
    SM_TOK_PRE_SPLIT,        /* regex or literal pattern */
    SM_TOK_PRE_BYTELEVEL,
    SM_TOK_PRE_METASPACE,
    SM_TOK_PRE_DIGITS,
    SM_TOK_PRE_PUNCTUATION,
    SM_TOK_PRE_WHITESPACE,
    SM_TOK_PRE_WHITESPACE_SPLIT,
} sm_tok_pre_kind;

typedef enum { SM_TOK_PREPEND_ALWAYS, SM_TOK_PREPEND_FIRST, SM_TOK_PREPEND_NEVER } sm_tok_prepend_scheme;

typedef struct sm_tok_pre_step {
    sm_tok_pre_kind kind;
    sm_tok_split_behavior behavior;
    bool invert;
    sm_tok_regex *regex;   /* Split (Regex), ByteLevel (use_regex), Whitespace */
    char *literal;         /* Split (String) */
    bool add_prefix_space; /* ByteLevel */
    bool individual;       /* Digits */
    char replacement[8];   /* Metaspace, UTF-8 */
    sm_tok_prepend_scheme prepend;
    bool split;            /* Metaspace */
} sm_tok_pre_step;

typedef struct sm_tok_pretok {
    sm_tok_pre_step *steps;
    size_t n;
} sm_tok_pretok;

int sm_tok_pretok_read(const sm_tok_jctx *c, json_t *v, sm_tok_pretok *out);
void sm_tok_pretok_free(sm_tok_pretok *pt);
/* Split s[0..n) into words (w->out; text in w->arena). first: s starts the input.
 * 0 or -1 (message set). */
int sm_tok_pretokenize(const sm_tok_pretok *pt, const char *s, size_t n, bool first, sm_tok_prework *w);
void sm_tok_prework_free(sm_tok_prework *w);

/* The GPT-2 byte-to-character table: the UTF-8 (*len bytes) of the character standing for byte b. */
const char *sm_tok_byte_char(unsigned b, size_t *len);
/* The byte a GPT-2 character stands for, or -1. */
int sm_tok_char_byte(int32_t cp);

#endif
