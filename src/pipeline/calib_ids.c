/* calib_ids: the ids of a calibration, from a token file or from text (see calib_ids.h). */
#include "pipeline/calib_ids.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/hash.h"

#include <stdlib.h>
#include <string.h>

static int check_digest(const char *what, const char *names, const char *want, const char *have)
{
    if (want && strcmp(want, have))
        return sm_err("the %s (%s) changed since the plan was written (digest %s, now %s): recalibrating on it "
                      "would not reproduce the plan's statistics", what, names, want, have);
    return 0;
}

int sm_calib_ids_read(const sm_model *m, const sm_calib_source *s, sm_calib_ids *out)
{
    memset(out, 0, sizeof *out);
    out->src = *s;
    if (!s->text)
        return s->tokens ? sm_tokens_read(s->tokens, sm_model_config(m)->vocab, &out->t)
                         : sm_err("calibration needs a token file or text");
    sm_corpus c;
    if (sm_corpus_load(s->text, sm_model_dir(m), sm_model_config(m)->vocab, &c))
        return -1;
    char *names = sm_text_source_names(s->text), *tok = sm_path_join(sm_model_dir(m), "tokenizer.json");
    int n_win = 0;
    int rc = check_digest("calibration text", names, s->expect_text_digest, c.text_digest) ||
                     check_digest("tokenizer", tok, s->expect_tokenizer_digest, c.tokenizer_digest) ||
                     (s->samples >= 1 && s->seq_len >= 2 &&
                      sm_corpus_windows(&c, names, s->samples, s->seq_len, s->eval_windows, s->seed, &out->t.ids,
                                        &n_win))
                 ? -1
                 : 0;
    out->t.n = (size_t)n_win * (size_t)(s->seq_len > 0 ? s->seq_len : 0);
    out->text = true;
    memcpy(out->text_digest, c.text_digest, sizeof c.text_digest);
    memcpy(out->tokenizer_digest, c.tokenizer_digest, sizeof c.tokenizer_digest);
    out->separator = c.separator_kind;
    free(names);
    free(tok);
    sm_corpus_free(&c);
    if (rc)
        sm_tokens_free(&out->t);
    return rc;
}

uint64_t sm_calib_ids_hash(uint64_t h, const sm_calib_ids *ci)
{
    if (!ci->text)
        return h;
    const sm_calib_source *s = &ci->src;
    const char *field = s->text->field ? s->text->field : "text";
    h = sm_fnv1a(h, ci->text_digest, strlen(ci->text_digest));
    h = sm_fnv1a(h, ci->tokenizer_digest, strlen(ci->tokenizer_digest));
    return sm_fnv1a(h, field, strlen(field) + 1);
}

int sm_calib_ids_meta(st_writer *w, const sm_calib_ids *ci)
{
    const sm_calib_source *s = &ci->src;
    if (!ci->text)
        return st_writer_meta(w, "tokens", s->tokens);
    char *names = sm_text_source_names(s->text);
    int rc = st_writer_meta(w, "text", names) ||
             st_writer_meta(w, "text_field", s->text->field ? s->text->field : "text") ||
             st_writer_meta(w, "text_digest", ci->text_digest) ||
             st_writer_meta(w, "tokenizer_digest", ci->tokenizer_digest) ||
             st_writer_meta(w, "text_separator", ci->separator) || st_writer_meta(w, "text_windows", "seeded");
    free(names);
    return rc ? -1 : 0;
}
