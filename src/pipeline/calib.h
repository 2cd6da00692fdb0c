/* calib: a model's calibration data — the MoE-block inputs of every MoE layer and the engine's
 * statistics on them (DESIGN §2.1) — captured with the built-in forward pass or read from a file,
 * and cached in a "stats file" keyed by a fingerprint so that `plan`, `apply` and the workbench
 * reuse it instantly.
 *
 * Capture: the model runs on `samples` windows of `seq_len` consecutive tokens (from the start of
 * the stream, non-overlapping), all windows through layer L before layer L+1. Of the
 * samples·seq_len tokens, `keep` rows are kept per MoE layer (a uniform sample without
 * replacement drawn with `seed`, the same token rows in every layer, in stream order). The last
 * `heldout` kept rows (the end of the stream: text the statistics never saw) are held out for
 * error previews; the others are the "fit" rows that statistics, clustering, router fits and
 * alignment use.
 *
 * The stats file is safetensors (little-endian), tensors in layer order:
 *   layers.L.moe_input       F32 [m, H]   MoE-block inputs (post_attention_layernorm output)
 *   layers.L.router_logits   F32 [m, E]   router logits
 *   layers.L.topk            F32 [m, k]   experts chosen by the model's routing rule (exact ints)
 *   layers.L.counts          F32 [E]      fit rows routed to each expert (exact ints)
 *   layers.L.expert_outputs  F32 [E, s, H] every expert on s evenly spaced fit rows
 *   layers.L.sim_output      F32 [E, E]   output similarity (paper Eq. 2)
 *   layers.L.sim_logit       F32 [E, E]   router-logit correlation
 *   layers.L.sim_weight      F32 [E, E]   weight similarity
 *   layers.L.saliency        F32 [E]      REAP saliency (engine/saliency.h) on every fit row;
 *                                         files written before it lack it: it is then computed
 *                                         from the layer's experts when statistics are asked
 *                                         for with them (sm_calib_analysis), not stored back
 *   __metadata__: format "submoe-activations", version "2", fingerprint (16 hex: model config,
 *   tensor shapes and dtypes, settings, token ids), model_fingerprint (sm_model_fingerprint),
 *   model, tokens, samples, seq_len, rows, heldout, sample, seed; from text instead of tokens:
 *   text (the files), text_field, text_digest, tokenizer_digest, text_separator (bos, eos or
 *   none), text_windows ("seeded": the draw of sm_corpus_windows with `seed`). The fingerprint
 *   covers the text and tokenizer digests, so a changed byte in either recalibrates.
 * Files from elsewhere need only `layers.L.moe_input` (any float dtype) for every MoE layer;
 * everything else is recomputed. Similarities are kept at float precision whether computed or
 * read, so a cached run and a fresh one cluster identically.
 *
 * An sm_calib is backed by a mapped file (a capture without a cache path writes an unlinked
 * temporary file), so its memory is what the caller asks for, one layer at a time. */
#ifndef SM_CALIB_H
#define SM_CALIB_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "util/matmul.h"
#include "model/model.h"
#include "text/corpus.h"

typedef struct sm_calib_spec {
    const char *tokens;   /* token file (raw uint32 or .npy), or NULL with text */
    /* Text instead (text/corpus.h): the stream of its documents through the model's tokenizer;
     * the windows are its non-overlapping windows drawn with `seed` (sm_corpus_windows), the
     * calibration ones then SM_CALIB_EVAL_WINDOWS more for held-out loss and
     * SM_CALIB_GUARD_WINDOWS more for auto's plan guard. */
    const sm_text_source *text;
    /* Digests a plan recorded (NULL: unchecked): a capture from other text or another tokenizer
     * is refused, naming which changed. */
    const char *expect_text_digest, *expect_tokenizer_digest;
    int samples, seq_len; /* windows */
    int64_t keep;         /* rows kept per layer (0 = all) */
    int64_t heldout;      /* of those, held out for previews (-1 = a quarter, 0 = none) */
    int64_t sample;       /* fit rows every expert runs on for output statistics (0 = 512) */
    uint64_t seed;
    bool quiet;           /* no progress bar */
    bool refresh;         /* recompute even when the cache file matches */
    sm_precision precision; /* the forward pass's and the statistics' products (fp32 when zeroed;
                             * bf16 is part of the cache fingerprint) */
} sm_calib_spec;

/* samples 32, seq_len 256, keep 4096, heldout -1, sample 512, seed 1, tokens and text NULL. */
void sm_calib_spec_default(sm_calib_spec *s);

typedef struct sm_calib sm_calib;

/* Capture with the forward pass and compute the statistics. With `cache` non-NULL: if that file
 * exists and its fingerprint matches, it is read instead (*reused = true); otherwise it is
 * (re)written atomically. NULL with a message on failure. */
sm_calib *sm_calib_capture(const sm_model *m, const sm_calib_spec *s, const char *cache,
                           const sm_monitor *mon, bool *reused);
/* Read a stats or activations file for model m (shapes are checked against it; a recorded model
 * fingerprint must match). heldout < 0: use the file's own split (a quarter if it has none). */
sm_calib *sm_calib_read(const sm_model *m, const char *path, int64_t heldout);
void sm_calib_free(sm_calib *c);

/* The fingerprint a capture with these settings would record (tokens must be readable). */
int sm_calib_spec_fingerprint(const sm_model *m, const sm_calib_spec *s, uint64_t *out);
/* The fingerprint recorded in a file: 0 and *out, or -1. */
int sm_calib_file_fingerprint(const char *path, uint64_t *out);

const char *sm_calib_path(const sm_calib *c);   /* the file, or "(temporary)" */
/* A metadata value of the stats file (text_digest, tokenizer_digest, ...), or NULL. */
const char *sm_calib_metadata(const sm_calib *c, const char *key);
bool sm_calib_has_stats(const sm_calib *c);     /* the file carried statistics */

/* Inputs of MoE layer L as f32: fit rows then held-out rows (views valid until release/free),
 * used for router fits, prune-output, alignment and error previews. Memory is bounded: a layer
 * of more than SM_CALIB_MAX_ROWS rows (a large foreign activations file, or a capture with a
 * large `keep`) gives SM_CALIB_MAX_ROWS rows, split between fit and held-out in the file's
 * proportion (at least one held-out row if the file holds any), evenly spaced within each part
 * and in file order; *m_fit and *m_held are the counts given. Up to SM_CALIB_MAX_ROWS rows,
 * every row. 8192 rows are 128 MiB of f32 at H = 4096. */
#define SM_CALIB_MAX_ROWS 8192
int sm_calib_inputs(sm_calib *c, int layer, const float **fit, int64_t *m_fit,
                    const float **held, int64_t *m_held);
/* Rows of MoE layer L: in the file (fit and held-out) and those sm_calib_inputs gives (any
 * pointer may be NULL), so a front end can report "using N of M rows". 0 or -1. */
int sm_calib_rows(sm_calib *c, int layer, int64_t *fit_rows, int64_t *held_rows, int64_t *fit_used,
                  int64_t *held_used);
/* Statistics of MoE layer L on all of its fit rows (not only those sm_calib_inputs samples):
 * read from the file, or computed with `block` (the layer's fp32 experts, which may be NULL
 * when the file has them and grams is false; a file without saliencies gets them computed when
 * `block` has its experts, else the analysis' saliency is NULL), streaming the rows from the file block by block
 * so memory does not grow with the row count. grams: also the per-expert input Grams (for
 * submoe-whitened; always computed; n·(H² + I²) floats). Cached until release. */
int sm_calib_analysis(sm_calib *c, int layer, const sm_moe_block *block, bool grams,
                      const sm_monitor *mon, const sm_layer_analysis **out);
/* Token windows that follow the calibration windows in the token file (at most
 * SM_CALIB_EVAL_WINDOWS of seq_len tokens), never used for statistics: method auto scores its
 * candidates by held-out loss on them. 0, or -1 when the calib was read from a file or the token
 * file had nothing after the calibration windows. */
#define SM_CALIB_EVAL_WINDOWS 8
int sm_calib_eval_windows(const sm_calib *c, const int32_t **ids, int *n_seq, int *seq_len);
/* The next SM_CALIB_GUARD_WINDOWS windows of the token file (as many as it has), after those:
 * auto's plan guard (pipeline/guard.h) scores whole plans on them, windows the per-layer choice
 * never saw (text: the next 8 windows of the draw). 0, or -1 when there are none. */
#define SM_CALIB_GUARD_WINDOWS 8
int sm_calib_guard_windows(const sm_calib *c, const int32_t **ids, int *n_seq, int *seq_len);

/* Drop what is cached for layer L. */
void sm_calib_release(sm_calib *c, int layer);

#endif
