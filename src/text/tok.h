/* tok: a Hugging Face tokenizer.json encoder with the reference library's ids (tokenizers
 * 0.22): added tokens, normalizer, pre-tokenizer, BPE model, post-processor; and decoding for
 * display. Anything in the file it does not implement is refused when loading, naming the file
 * and the JSON path, so there is never a silent difference. */
#ifndef SM_TOK_H
#define SM_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/tok_buf.h"

typedef struct sm_tok sm_tok;

/* path: a model directory holding tokenizer.json (and optionally tokenizer_config.json), or a
 * tokenizer.json file (its directory's tokenizer_config.json is read too). NULL on failure
 * (message set, naming the file). */
sm_tok *sm_tok_load(const char *path);
/* The same from memory (for tests and fuzzing); config may be NULL. */
sm_tok *sm_tok_load_mem(const char *name, const char *json, size_t len, const char *config_name,
                        const char *config, size_t config_len);
void sm_tok_free(sm_tok *t);

/* Encode valid UTF-8 text (see sm_tok_utf8_repair for other bytes), appending ids to out.
 * add_special: the post-processor's BOS/EOS (as the reference's add_special_tokens=True).
 * 0 or -1 (message set). */
int sm_tok_encode(sm_tok *t, const char *text, size_t n, bool add_special, sm_tok_ids *out);
/* Text of ids for display (malloc'ed, NUL-terminated); skip_special drops special tokens.
 * Unknown ids are skipped, as the reference does. */
char *sm_tok_decode(const sm_tok *t, const int32_t *ids, size_t n, bool skip_special);
/* Number of ids: one more than the largest id of the vocabulary or an added token. */
int32_t sm_tok_vocab_size(const sm_tok *t);
/* The token string of an id, or NULL. */
const char *sm_tok_id_token(const sm_tok *t, int32_t id);

/* tokenizer_config.json's bos_token and eos_token as ids (-1 when it names none, or there is no
 * tokenizer_config.json), whether or not the post-processor adds them. */
void sm_tok_special_ids(const sm_tok *t, int32_t *bos, int32_t *eos);

#endif
