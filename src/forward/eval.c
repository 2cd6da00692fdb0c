/* eval: windowed perplexity (see eval.h). */
#include "forward/eval.h"
#include "forward/forward.h"
#include "util/diag.h"
#include "util/progress.h"

#include <math.h>
#include <string.h>

/* Activation budget per batch: the forward pass keeps ~3 [n, H] buffers plus q/k/v/attention
 * and the MoE scratch; 64 MiB of [n, H] floats keeps a batch well under a few hundred MiB. */
#define EVAL_ACT_BYTES ((size_t)64 << 20)

typedef struct {
    sm_progress *p;
    uint64_t base, span;
    int layers;
    const sm_monitor *mon;
} prog_ctx;

/* Called after every chunk of every MoE layer: the place to notice cancellation (a batch of a
 * large model runs for minutes). */
/* Move the bar within a batch, layer by layer (a batch of a large model takes a while). */
static void on_layer(void *ctx, int l)
{
    prog_ctx *c = ctx;
    sm_progress_update(c->p, c->base + c->span * (uint64_t)(l + 1) / (uint64_t)c->layers);
}

int sm_eval_perplexity(const sm_model *m, const int32_t *ids, size_t n, int seq_len, size_t max_tokens,
                       bool quiet, sm_eval_result *out)
{
    return sm_eval_perplexity_mon(m, ids, n, seq_len, max_tokens, quiet, NULL, out);
}

int sm_eval_perplexity_mon(const sm_model *m, const int32_t *ids, size_t n, int seq_len, size_t max_tokens,
                           bool quiet, const sm_monitor *mon, sm_eval_result *out)
{
    return sm_eval_perplexity_prec(m, ids, n, seq_len, max_tokens, quiet, SM_PRECISION_FP32, mon, out);
}

int sm_eval_perplexity_prec(const sm_model *m, const int32_t *ids, size_t n, int seq_len, size_t max_tokens,
                            bool quiet, sm_precision precision, const sm_monitor *mon, sm_eval_result *out)
{
    const sm_config *c = sm_model_config(m);
    memset(out, 0, sizeof *out);
    if (seq_len < 2)
        return sm_err("--seq-len must be at least 2 (got %d)", seq_len);
    if (max_tokens && max_tokens < n)
        n = max_tokens;
    if (n < 2)
        return sm_err("need at least 2 tokens to evaluate, have %zu", n);
    if (n < (size_t)seq_len)
        seq_len = (int)n;
    size_t windows = n / (size_t)seq_len;
    if (windows > (size_t)INT32_MAX)
        return sm_err("too many windows");
    size_t per = EVAL_ACT_BYTES / ((size_t)seq_len * (size_t)c->hidden * sizeof(float));
    int batch = per < 1 ? 1 : per > 64 ? 64 : (int)per;

    double t0 = sm_now(), nll = 0;
    uint64_t count = 0;
    sm_progress p;
    sm_progress_start(&p, "eval", windows * (uint64_t)seq_len, quiet);
    for (size_t w = 0; w < windows; w += (size_t)batch) {
        int nb = (int)(windows - w < (size_t)batch ? windows - w : (size_t)batch);
        sm_forward_opts o;
        sm_forward_opts_init(&o);
        o.nll_sum = &nll;
        o.nll_count = &count;
        o.precision = precision;
        prog_ctx pc = {&p, w * (uint64_t)seq_len, (uint64_t)nb * (uint64_t)seq_len, c->n_layers + 1, mon};
        o.on_layer = on_layer;
        o.on_layer_ctx = &pc;
        o.mon = mon; /* cancellable after every chunk of every layer, dense ones too */
        if (sm_monitor_check(mon) || sm_forward(m, ids + w * (size_t)seq_len, nb, seq_len, &o)) {
            sm_progress_end(&p, false);
            return -1;
        }
        sm_progress_update(&p, (w + (size_t)nb) * (uint64_t)seq_len);
        sm_monitor_report(mon, (double)(w + (size_t)nb) / (double)windows, "eval");
    }
    sm_progress_finish(&p);
    if (sm_monitor_check(mon))
        return -1;
    out->windows = (int)windows;
    out->seq_len = seq_len;
    out->tokens = windows * (uint64_t)seq_len;
    out->predicted = count;
    out->nll = nll / (double)count;
    out->ppl = exp(out->nll);
    /* The forward pass already refuses non-finite weights and activations (naming the layer);
     * what is left is a mean loss too large for exp. Never report nan or inf as a perplexity. */
    if (!isfinite(out->nll) || !isfinite(out->ppl))
        return sm_err("the perplexity is not finite (mean loss %g nats/token): the model's predictions overflow",
                      out->nll);
    out->bits_per_byte = c->vocab == 256 ? out->nll / log(2.0) : NAN;
    out->seconds = sm_now() - t0;
    return 0;
}
