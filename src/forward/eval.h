/* eval: perplexity of a model on a token stream with the built-in forward pass.
 *
 * Non-overlapping windows of seq_len tokens (trailing tokens that do not fill a window are
 * dropped; a stream shorter than one window is evaluated as one window of its length); in each
 * window tokens 1..seq_len-1 are predicted from the preceding ones in the same window. Windows
 * are run in batches (layer-at-a-time within a batch) sized to keep activations bounded. */
#ifndef SM_EVAL_H
#define SM_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/matmul.h"
#include "util/monitor.h"
#include "model/model.h"

typedef struct sm_eval_result {
    double nll;            /* mean negative log-likelihood, nats per predicted token */
    double ppl;            /* exp(nll) */
    double bits_per_byte;  /* log2(ppl) for byte-level (vocab 256) models, else NAN */
    uint64_t predicted;    /* tokens predicted */
    uint64_t tokens;       /* tokens consumed (windows * seq_len) */
    int windows, seq_len;
    double seconds;
} sm_eval_result;

/* max_tokens 0: all. quiet: no progress bar. 0 or -1 with a message. */
int sm_eval_perplexity(const sm_model *m, const int32_t *ids, size_t n, int seq_len, size_t max_tokens,
                       bool quiet, sm_eval_result *out);
/* The same, reporting progress to mon and stopping with -1 ("cancelled") within a chunk of a
 * layer once mon->cancel is set. mon may be NULL. */
int sm_eval_perplexity_mon(const sm_model *m, const int32_t *ids, size_t n, int seq_len, size_t max_tokens,
                           bool quiet, const sm_monitor *mon, sm_eval_result *out);
/* The same with the forward pass's products in `precision` (the two above: fp32). */
int sm_eval_perplexity_prec(const sm_model *m, const int32_t *ids, size_t n, int seq_len, size_t max_tokens,
                            bool quiet, sm_precision precision, const sm_monitor *mon, sm_eval_result *out);

#endif
