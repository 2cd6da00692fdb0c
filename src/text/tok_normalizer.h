/* tok_normalizer: tokenizer.json "normalizer" (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend,
 * Replace, Sequence), applied to each piece of text between added tokens, as the reference does. */
#ifndef SM_TOK_NORMALIZER_H
#define SM_TOK_NORMALIZER_H

#include <jansson.h>

#include "text/tok_buf.h"
#include "text/tok_json.h"
#include "text/tok_regex.h"

typedef enum {
    SM_TOK_NORM_NFC,
    SM_TOK_NORM_NFD,
    SM_TOK_NORM_NFKC,
    SM_TOK_NORM_NFKD,
    SM_TOK_NORM_LOWERCASE,
    SM_TOK_NORM_STRIP,
    SM_TOK_NORM_PREPEND,
    SM_TOK_NORM_REPLACE,
} sm_tok_norm_kind;

typedef struct sm_tok_norm_step {
    sm_tok_norm_kind kind;
    bool strip_left, strip_right;
    char *text;            /* Prepend's string, Replace's content */
    char *literal;         /* Replace with a String pattern */
    sm_tok_regex *regex;   /* Replace with a Regex pattern */
} sm_tok_norm_step;

/* A Sequence is flattened into its steps; no steps = no normalizer. */
typedef struct sm_tok_normalizer {
    sm_tok_norm_step *steps;
    size_t n;
} sm_tok_normalizer;

/* Read c->path (an object, or NULL for none). */
int sm_tok_normalizer_read(const sm_tok_jctx *c, json_t *v, sm_tok_normalizer *out);
void sm_tok_normalizer_free(sm_tok_normalizer *nz);
/* Normalize s[0..n) into out (replaced); tmp is scratch space. 0 or -1 (message set). */
int sm_tok_normalize(const sm_tok_normalizer *nz, const char *s, size_t n, sm_tok_buf *out, sm_tok_buf *tmp);

#endif
