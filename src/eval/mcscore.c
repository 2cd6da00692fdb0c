/* mcscore: multiple-choice scoring (see mcscore.h). */
#include "eval/mcscore.h"
#include "forward/forward.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/mem.h"
#include "util/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A batch is at most this many (padded) tokens: the residual stream is [tokens, hidden]; logits
 * are never held for a whole batch (forward.h's target_logprob). */
#define MC_BATCH_TOKENS 16384
#define MC_MAX_BATCH 64
/* lm-eval's HFLM max_length when the config gives none (_DEFAULT_MAX_LENGTH). */
#define MC_DEFAULT_MAX_LENGTH 2048

/* One (item, choice) sequence: whole = ids[0..n) of context + continuation, the continuation
 * from start. As lm-eval's _loglikelihood_tokens, the model reads whole[-(max_length + 1):][:-1]:
 * positions off .. n-2 (len = n - 1 - off <= max_length tokens), each predicting the next. */
typedef struct {
    int32_t *ids;
    int n, start, off, len;
    size_t slot;    /* index of its log-likelihood */
} mc_seq;

/* Python's str.isspace: Unicode White_Space plus U+001C..U+001F (bidi class B/S). */
static bool py_isspace(int32_t cp)
{
    return (cp >= 0x1c && cp <= 0x1f) || sm_tok_is_whitespace(cp);
}

size_t sm_mc_rstrip_len(const char *s, size_t n)
{
    size_t keep = 0, len;
    for (size_t pos = 0; pos < n; pos += len) {
        int32_t cp = sm_tok_utf8_next(s + pos, n - pos, &len);
        if (!py_isspace(cp))
            keep = pos + len;
    }
    return keep;
}

size_t sm_mc_char_len(const char *s)
{
    size_t chars = 0;
    for (; *s; s++)
        chars += ((unsigned char)*s & 0xC0) != 0x80; /* count lead bytes */
    return chars;
}

static int too_long(const char *file, int line, size_t n)
{
    return sm_err("%s:%d: %zu tokens is too long", file, line, n);
}

/* lm-eval's _encode_pair for choice c of an item. */
static int encode_choice(sm_tok *tok, const char *file, const sm_mc_item *it, int c, const char *delim,
                         bool special, int32_t vocab, int max_len, size_t slot, mc_seq *out)
{
    size_t clen = strlen(it->context), keep = sm_mc_rstrip_len(it->context, clen);
    char *text = xasprintf("%s%s%s", it->context, delim, it->choices[c]);
    sm_tok_ids ctx = {0}, whole = {0};
    int rc = sm_tok_encode(tok, it->context, keep, special, &ctx);
    if (!rc)
        rc = sm_tok_encode(tok, text, strlen(text), special, &whole);
    free(text);
    if (rc)
        sm_err_prefix("%s:%d", file, it->line);
    else if (ctx.n == 0)
        rc = sm_err("%s:%d: the context encodes to no tokens: nothing to predict the choices from", file, it->line);
    else if (whole.n <= ctx.n)
        rc = sm_err("%s:%d: choices[%d] adds no tokens to the context", file, it->line, c);
    else if (whole.n > (size_t)1 << 30)
        rc = too_long(file, it->line, whole.n);
    else if (whole.n - ctx.n > (size_t)max_len)
        rc = sm_err("%s:%d: choices[%d] is %zu tokens, more than the model's max length of %d (lm-eval cannot "
                    "score it either; --max-length)", file, it->line, c, whole.n - ctx.n, max_len);
    for (size_t i = 0; !rc && i < whole.n; i++)
        if (whole.v[i] < 0 || whole.v[i] >= vocab)
            rc = sm_err("%s:%d: token id %d is outside the model's vocabulary of %d (a tokenizer of another "
                        "model?)", file, it->line, whole.v[i], vocab);
    free(ctx.v);
    if (rc) {
        free(whole.v);
        return -1;
    }
    out->slot = slot;
    out->ids = whole.v;
    out->n = (int)whole.n;
    out->start = (int)ctx.n;
    out->off = whole.n > (size_t)max_len + 1 ? (int)(whole.n - (size_t)max_len - 1) : 0; /* left-truncation */
    out->len = out->n - 1 - out->off;
    return 0;
}

/* Run seqs[0..n) right-padded to the longest (causal attention and per-token routing leave the
 * positions before the padding unchanged) and add up each continuation's log-probabilities. */
static int run_batch(const sm_model *m, const mc_seq *seqs, int n, const sm_mc_opts *o, double *ll,
                     uint64_t *tokens)
{
    int T = 0;
    for (int s = 0; s < n; s++)
        T = seqs[s].len > T ? seqs[s].len : T;
    size_t NT = (size_t)n * (size_t)T;
    int32_t *ids = xcalloc(NT, sizeof *ids), *targets = xmalloc(NT * sizeof *targets);
    double *lp = xcalloc(NT, sizeof *lp);
    for (size_t i = 0; i < NT; i++)
        targets[i] = -1;
    for (int s = 0; s < n; s++) {
        const mc_seq *q = &seqs[s];
        memcpy(ids + (size_t)s * T, q->ids + q->off, (size_t)q->len * sizeof *ids);
        for (int p = q->start - 1 - q->off; p < q->len; p++) /* position p predicts whole[off + p + 1] */
            targets[(size_t)s * T + (size_t)p] = q->ids[q->off + p + 1];
    }
    sm_forward_opts fo;
    sm_forward_opts_init(&fo);
    fo.targets = targets;
    fo.target_logprob = lp;
    fo.mon = o->mon;
    fo.precision = o->precision;
    fo.moe_override = o->moe_override;
    fo.moe_override_ctx = o->override_ctx;
    fo.on_layer = o->on_layer;
    fo.on_layer_ctx = o->override_ctx;
    int rc = sm_forward(m, ids, n, T, &fo);
    for (int s = 0; !rc && s < n; s++) {
        double sum = 0;
        for (int p = seqs[s].start - 1 - seqs[s].off; p < seqs[s].len; p++)
            sum += lp[(size_t)s * T + (size_t)p];
        ll[s] = sum;
    }
    *tokens += (uint64_t)NT;
    free(ids);
    free(targets);
    free(lp);
    return rc;
}

static int by_length(const void *a, const void *b)
{
    const mc_seq *x = a, *y = b;
    return x->len != y->len ? (x->len < y->len ? -1 : 1) : (x->slot < y->slot ? -1 : 1);
}

/* Sequences in order of length (little padding), in batches of at most MC_BATCH_TOKENS padded
 * tokens (at least one sequence). */
static int score_all(const sm_model *m, const mc_seq *seqs, size_t n, const sm_mc_opts *o, double *ll,
                     uint64_t *tokens)
{
    mc_seq *sorted = xmalloc(n * sizeof *sorted);
    memcpy(sorted, seqs, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, by_length);
    size_t budget = o->batch_tokens > 0 ? (size_t)o->batch_tokens : MC_BATCH_TOKENS,
           max_batch = o->batch_tokens > 0 ? n : MC_MAX_BATCH;
    double *bll = xmalloc((max_batch > 0 ? max_batch : 1) * sizeof *bll);
    sm_progress p;
    sm_progress_start(&p, "eval", n, o->quiet);
    int rc = 0;
    for (size_t s = 0; s < n && !rc;) {
        size_t k = 1;
        /* sorted: the last sequence of a batch is its longest */
        while (s + k < n && k < max_batch && (k + 1) * (size_t)sorted[s + k].len <= budget)
            k++;
        rc = sm_monitor_check(o->mon) || run_batch(m, sorted + s, (int)k, o, bll, tokens) ? -1 : 0;
        for (size_t i = 0; !rc && i < k; i++)
            ll[sorted[s + i].slot] = bll[i];
        s += k;
        sm_progress_update(&p, s);
        sm_monitor_report(o->mon, (double)s / (double)n, "eval");
    }
    free(sorted);
    free(bll);
    if (rc) {
        sm_progress_end(&p, false);
        return -1;
    }
    sm_progress_finish(&p);
    return sm_monitor_check(o->mon) ? -1 : 0;
}

/* lm-eval's mean and mean_stderr (sample standard deviation / sqrt(n)) of 0/1 outcomes. */
static void mean_stderr(const int *hit, size_t n, double *mean, double *se)
{
    double sum = 0, ss = 0;
    for (size_t i = 0; i < n; i++)
        sum += hit[i];
    *mean = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (hit[i] - *mean) * (hit[i] - *mean);
    *se = n > 1 ? sqrt(ss / (double)(n - 1)) / sqrt((double)n) : NAN;
}

/* The first choice with the highest ll[c] / len[c] (numpy's argmax). */
static int argmax_scaled(const double *ll, const double *len, int n)
{
    int best = 0;
    for (int c = 1; c < n; c++)
        if (ll[c] / len[c] > ll[best] / len[best])
            best = c;
    return best;
}

void sm_mc_metrics(const sm_mc_task *t, sm_mc_scores *s)
{
    int *hit[3];
    for (int k = 0; k < 3; k++)
        hit[k] = xcalloc(t->n, sizeof *hit[k]);
    for (size_t i = 0; i < t->n; i++) {
        const sm_mc_item *it = &t->items[i];
        double *one = xmalloc((size_t)it->n_choices * sizeof *one), *chars = xmalloc((size_t)it->n_choices * sizeof *chars),
               *bytes = xmalloc((size_t)it->n_choices * sizeof *bytes);
        for (int c = 0; c < it->n_choices; c++) {
            one[c] = 1;
            chars[c] = (double)sm_mc_char_len(it->choices[c]);
            bytes[c] = (double)strlen(it->choices[c]);
        }
        const double *ll = s->ll + s->first[i];
        s->pred[i] = argmax_scaled(ll, one, it->n_choices);
        s->pred_norm[i] = argmax_scaled(ll, chars, it->n_choices);
        s->pred_bytes[i] = argmax_scaled(ll, bytes, it->n_choices);
        hit[0][i] = s->pred[i] == it->gold;
        hit[1][i] = s->pred_norm[i] == it->gold;
        hit[2][i] = s->pred_bytes[i] == it->gold;
        free(one);
        free(chars);
        free(bytes);
    }
    mean_stderr(hit[0], t->n, &s->acc, &s->acc_stderr);
    mean_stderr(hit[1], t->n, &s->acc_norm, &s->acc_norm_stderr);
    mean_stderr(hit[2], t->n, &s->acc_bytes, &s->acc_bytes_stderr);
    for (int k = 0; k < 3; k++)
        free(hit[k]);
}

int sm_mc_score(const sm_model *m, sm_tok *tok, const sm_mc_task *t, const sm_mc_opts *o, sm_mc_scores *out)
{
    memset(out, 0, sizeof *out);
    double t0 = sm_now();
    const char *delim = o->delimiter ? o->delimiter : " ";
    out->n = t->n;
    out->first = xcalloc(t->n + 1, sizeof *out->first);
    for (size_t i = 0; i < t->n; i++)
        out->first[i + 1] = out->first[i] + (size_t)t->items[i].n_choices;
    size_t total = out->first[t->n];
    mc_seq *seqs = xcalloc(total, sizeof *seqs);
    out->ll = xcalloc(total, sizeof *out->ll);
    out->n_tokens = xcalloc(total, sizeof *out->n_tokens);
    out->pred = xcalloc(t->n, sizeof *out->pred);
    out->pred_norm = xcalloc(t->n, sizeof *out->pred_norm);
    out->pred_bytes = xcalloc(t->n, sizeof *out->pred_bytes);
    int rc = 0;
    int32_t vocab = sm_model_config(m)->vocab;
    int max_len = o->max_length > 0                        ? o->max_length
                  : sm_model_config(m)->max_positions > 0 ? sm_model_config(m)->max_positions
                                                          : MC_DEFAULT_MAX_LENGTH;
    /* Encode everything first: a bad item is reported before any forward work. */
    for (size_t i = 0; i < t->n && !rc; i++)
        for (int c = 0; c < t->items[i].n_choices && !rc; c++)
            rc = encode_choice(tok, t->path, &t->items[i], c, delim, o->add_special, vocab, max_len,
                               out->first[i] + (size_t)c, &seqs[out->first[i] + (size_t)c]);
    if (!rc)
        rc = score_all(m, seqs, total, o, out->ll, &out->tokens);
    for (size_t s = 0; s < total; s++) {
        out->n_tokens[s] = seqs[s].n - seqs[s].start;
        free(seqs[s].ids);
    }
    free(seqs);
    if (rc) {
        sm_mc_scores_free(out);
        return -1;
    }
    sm_mc_metrics(t, out);
    out->seconds = sm_now() - t0;
    return 0;
}

void sm_mc_scores_free(sm_mc_scores *s)
{
    free(s->first);
    free(s->ll);
    free(s->n_tokens);
    free(s->pred);
    free(s->pred_norm);
    free(s->pred_bytes);
    memset(s, 0, sizeof *s);
}
