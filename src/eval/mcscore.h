/* mcscore: zero-shot multiple-choice scoring with lm-eval-harness's `multiple_choice` semantics.
 *
 * For a context c and a choice s the continuation is delimiter + s (default " "). As lm-eval's
 * HFLM._encode_pair: trailing whitespace of c (Python's str.isspace) moves to the continuation;
 * whole = encode(c + continuation), ctx = encode(c without it), and the continuation's tokens are
 * whole[len(ctx):] (both encoded with or without the tokenizer's special tokens). The score of a choice is the sum of log p over those tokens, each predicted
 * from everything before it in `whole`. acc: the highest score is the gold one; acc_norm: the
 * highest score divided by the choice's length in characters (Unicode code points, as Python's
 * len(str) that lm-eval uses); acc_bytes: divided by its UTF-8 byte length instead (lm-eval's
 * acc_bytes); ties go to the first choice (numpy argmax). Standard errors are lm-eval's
 * mean_stderr: sample standard deviation / sqrt(n).
 * Truncation as lm-eval's _loglikelihood_tokens: the model reads (whole)[-(max_length + 1):][:-1],
 * so an item longer than the model's max length loses its first tokens; a continuation longer
 * than max_length is an error. The head never holds more than a block of [rows, vocab] logits
 * (forward.h), so a long item with a large vocabulary stays in bounded memory. */
#ifndef SM_MCSCORE_H
#define SM_MCSCORE_H

#include <stdbool.h>
#include <stdint.h>

#include "util/matmul.h"
#include "util/monitor.h"
#include "eval/mctask.h"
#include "model/model.h"
#include "moe/moe.h"
#include "text/tok.h"

typedef struct sm_mc_opts {
    const char *delimiter;  /* lm-eval's target_delimiter; NULL: " " */
    bool add_special;       /* the tokenizer's BOS/EOS, as lm-eval's HFLM with add_bos_token unset
                             * (the tokenizer's default); false: add_bos_token=False */
    bool quiet;             /* no progress bar */
    int max_length;         /* lm-eval's max_length: longer items are left-truncated to it (their
                             * first tokens dropped; 0: the config's max_position_embeddings, else
                             * 2048, as lm-eval's HFLM) */
    const sm_monitor *mon;  /* cancellation (NULL: none) */
    sm_precision precision; /* the forward pass's products (fp32 when zeroed) */
    /* Another model's MoE layers (forward.h's moe_override and on_layer, passed to every
     * forward run; NULL: the model's own): the workbench scores a plan without writing it. Each
     * batch runs every layer again, so batches are then up to batch_tokens (0: the default). */
    int (*moe_override)(void *ctx, int layer, const sm_moe_block **block);
    void (*on_layer)(void *ctx, int layer_done);
    void *override_ctx;
    int batch_tokens;
} sm_mc_opts;

typedef struct sm_mc_scores {
    size_t n;               /* items */
    size_t *first;          /* [n + 1]: item i's choices are ll[first[i] .. first[i+1]) */
    double *ll;             /* sum of log p of each choice's continuation tokens */
    int *n_tokens;          /* continuation tokens of each choice */
    int *pred, *pred_norm, *pred_bytes; /* [n] argmax of ll, of ll / characters, of ll / bytes */
    double acc, acc_stderr, acc_norm, acc_norm_stderr, acc_bytes, acc_bytes_stderr; /* stderr NAN for one item */
    uint64_t tokens;        /* tokens run through the model */
    double seconds;
} sm_mc_scores;

/* 0, or -1 with a message naming the task file and line when an item is at fault. */
int sm_mc_score(const sm_model *m, sm_tok *tok, const sm_mc_task *t, const sm_mc_opts *o, sm_mc_scores *out);
void sm_mc_scores_free(sm_mc_scores *s);
/* The predictions and accuracies from s->ll (done by sm_mc_score; exposed for tests). */
void sm_mc_metrics(const sm_mc_task *t, sm_mc_scores *s);

/* Length of s (n bytes) without its trailing whitespace in Python's str.isspace sense. */
size_t sm_mc_rstrip_len(const char *s, size_t n);
/* Unicode code points in UTF-8 s (Python's len). */
size_t sm_mc_char_len(const char *s);

#endif
