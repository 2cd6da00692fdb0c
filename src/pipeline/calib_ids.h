/* calib_ids: the token ids a calibration runs on (internal to pipeline/calib.c): a token file's,
 * or windows drawn from text (text/corpus.h) with the text and tokenizer digests that key the
 * stats cache and go into its metadata. */
#ifndef SM_CALIB_IDS_H
#define SM_CALIB_IDS_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "model/st.h"
#include "model/tokens.h"
#include "text/corpus.h"

/* Where the ids come from: a calibration spec's source fields (pipeline/calib.h's sm_calib_spec;
 * calib.c uses this module, not the other way round). */
typedef struct sm_calib_source {
    const char *tokens;
    const sm_text_source *text;
    const char *expect_text_digest, *expect_tokenizer_digest; /* NULL: unchecked */
    int samples, seq_len;
    int eval_windows;       /* text: windows drawn after the calibration ones */
    uint64_t seed;
} sm_calib_source;

typedef struct sm_calib_ids {
    sm_calib_source src;    /* a copy (its strings are the caller's) */
    sm_tokens t;            /* the calibration windows, then (text) up to src.eval_windows more */
    bool text;
    char text_digest[SM_CORPUS_DIGEST_LEN], tokenizer_digest[SM_CORPUS_DIGEST_LEN];
    const char *separator;  /* "bos", "eos" or "none" */
} sm_calib_ids;

/* The ids of source s for model m; a plan's recorded digests (s->expect_*) are checked. 0 or -1. */
int sm_calib_ids_read(const sm_model *m, const sm_calib_source *s, sm_calib_ids *out);
/* The fingerprint h continued with what the ids do not show: the text's digests and field. */
uint64_t sm_calib_ids_hash(uint64_t h, const sm_calib_ids *ci);
/* The stats file's metadata on the source: "tokens", or text, text_field, text_digest,
 * tokenizer_digest, text_separator and text_windows. */
int sm_calib_ids_meta(st_writer *w, const sm_calib_ids *ci);

#endif
