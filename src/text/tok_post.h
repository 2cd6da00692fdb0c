/* tok_post: the special tokens put around a single sequence: the tokenizer.json "post_processor"
 * (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence), then the
 * add_bos_token / add_eos_token switches of tokenizer_config.json, which transformers applies on
 * top (true: the token is added if the post-processor does not; false: it is dropped). */
#ifndef SM_TOK_POST_H
#define SM_TOK_POST_H

#include <jansson.h>

#include "text/tok_buf.h"
#include "text/tok_json.h"

typedef struct sm_tok_post {
    sm_tok_ids prefix, suffix;
} sm_tok_post;

/* Read the "post_processor" value (c->path; NULL or null: none). */
int sm_tok_post_read(const sm_tok_jctx *c, json_t *v, sm_tok_post *out);
/* Apply tokenizer_config.json's add_bos_token/add_eos_token; the token ids come from the caller
 * (-1 when the config names no such token). */
void sm_tok_post_override(sm_tok_post *p, int add_bos, int32_t bos, int add_eos, int32_t eos);
void sm_tok_post_free(sm_tok_post *p);

#endif
