/* tok_decoder: ids back to text for display, through the tokenizer.json "decoder" (ByteLevel,
 * Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder, Sequence); with no decoder the
 * tokens are joined with spaces, as the reference does. */
#ifndef SM_TOK_DECODER_H
#define SM_TOK_DECODER_H

#include <jansson.h>
#include <stdbool.h>

#include "text/tok_buf.h"
#include "text/tok_json.h"
#include "text/tok_pretok.h"

typedef enum {
    SM_TOK_DEC_BYTELEVEL,
    SM_TOK_DEC_METASPACE,
    SM_TOK_DEC_BYTEFALLBACK,
    SM_TOK_DEC_FUSE,
    SM_TOK_DEC_STRIP,
    SM_TOK_DEC_REPLACE,
    SM_TOK_DEC_BPE,
} sm_tok_dec_kind;

typedef struct sm_tok_dec_step {
    sm_tok_dec_kind kind;
    char *a, *b;          /* Metaspace replacement; Strip content; Replace pattern, content; BPE suffix */
    int start, stop;      /* Strip */
    bool prepend;         /* Metaspace: prepend_scheme is not "never" */
} sm_tok_dec_step;

typedef struct sm_tok_decoder {
    sm_tok_dec_step *steps;
    size_t n;
    bool present;
} sm_tok_decoder;

int sm_tok_decoder_read(const sm_tok_jctx *c, json_t *v, sm_tok_decoder *out);
void sm_tok_decoder_free(sm_tok_decoder *d);
/* Decode token strings (tokens[i], NUL-terminated) into out (replaced). */
void sm_tok_decode_tokens(const sm_tok_decoder *d, const char *const *tokens, size_t n, sm_tok_buf *out);

#endif
