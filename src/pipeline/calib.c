/* calib: calibration capture and the writing of the stats file (see calib.h; reading it:
 * calib_read.c). */
#include "pipeline/calib.h"
#include "pipeline/calib_file.h"
#include "pipeline/calib_ids.h"
#include "forward/forward.h"
#include "forward/moelayer.h"
#include "model/st.h"
#include "model/tokens.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/publish.h"
#include "util/rng.h"
#include "util/signals.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATS_VERSION "2"

void sm_calib_spec_default(sm_calib_spec *s)
{
    memset(s, 0, sizeof *s);
    s->samples = 32;
    s->seq_len = 256;
    s->keep = 4096;
    s->heldout = -1;
    s->sample = DEFAULT_SAMPLE;
    s->seed = 1;
}

/* ---- settings ------------------------------------------------------------------------------- */

static int64_t total_rows(const sm_calib_spec *s)
{
    return (int64_t)s->samples * s->seq_len;
}

static int64_t kept_rows(const sm_calib_spec *s)
{
    int64_t t = total_rows(s);
    return s->keep > 0 && s->keep < t ? s->keep : t;
}

static int64_t held_rows(int64_t keep, int64_t heldout)
{
    return heldout < 0 ? keep / 4 : heldout;
}

static int check_spec(const sm_model *m, const sm_calib_spec *s, size_t n_tokens)
{
    const sm_config *cfg = sm_model_config(m);
    if (s->samples < 1 || s->seq_len < 2)
        return sm_err("calibration needs at least 1 sample of at least 2 tokens (got %d x %d)", s->samples,
                      s->seq_len);
    if (cfg->n_moe_layers < 1)
        return sm_err("%s: the model has no MoE layers to calibrate", sm_model_dir(m));
    if (total_rows(s) > INT32_MAX)
        return sm_err("%d samples x %d tokens is too many for one run", s->samples, s->seq_len);
    if ((uint64_t)total_rows(s) > n_tokens) /* (text: sm_corpus_windows has said so already) */
        return sm_err("%s holds %zu tokens; %d samples x %d tokens need %" PRId64, s->tokens, n_tokens, s->samples,
                      s->seq_len, total_rows(s));
    int64_t keep = kept_rows(s), held = held_rows(keep, s->heldout);
    if (held >= keep)
        return sm_err("%" PRId64 " held-out rows leave none of the %" PRId64 " kept rows to fit on", held, keep);
    return 0;
}

/* The source fields of s for calib_ids: text draws auto's windows, then its guard's, each run
 * the same whatever follows it. */
_Static_assert(SM_CALIB_EVAL_WINDOWS == SM_CORPUS_EXTRA_RUN, "auto's text windows are one run of the draw");
static sm_calib_source source_of(const sm_calib_spec *s)
{
    return (sm_calib_source){s->tokens, s->text, s->expect_text_digest, s->expect_tokenizer_digest,
                             s->samples, s->seq_len, SM_CALIB_EVAL_WINDOWS + SM_CALIB_GUARD_WINDOWS, s->seed};
}

static uint64_t fingerprint(const sm_model *m, const sm_calib_ids *ci, const sm_calib_spec *s)
{
    const int32_t *ids = ci->t.ids;
    uint64_t h = SM_FNV_OFFSET;
    h = sm_calib_ids_hash(h, ci); /* text: the whole text and the tokenizer, not only the windows */
    char *cfgpath = sm_path_join(sm_model_dir(m), "config.json");
    size_t len;
    char *txt = sm_read_file(cfgpath, 1 << 24, &len);
    if (txt)
        h = sm_fnv1a(h, txt, len);
    free(txt);
    free(cfgpath);
    for (int f = 0; f < sm_model_file_count(m); f++) {
        const st_file *sf = sm_model_file(m, f);
        for (size_t i = 0; i < st_count(sf); i++) {
            const sm_tensor *t = st_tensor(sf, i);
            h = sm_fnv1a(h, t->name, strlen(t->name));
            h = sm_fnv1a(h, t->shape, sizeof t->shape[0] * (size_t)t->ndim);
            h = sm_fnv1a(h, &t->dtype, sizeof t->dtype);
            /* and a sample of the weights themselves (64 bytes at the start, middle and end of
             * every tensor: a few pages per tensor), so that weights rewritten in place with the
             * same shapes do not reuse stale statistics */
            const unsigned char *d = t->data;
            uint64_t nb = t->nbytes, span = nb < 64 ? nb : 64;
            if (d && nb) {
                h = sm_fnv1a(h, d, (size_t)span);
                h = sm_fnv1a(h, d + (nb - span) / 2, (size_t)span);
                h = sm_fnv1a(h, d + nb - span, (size_t)span);
            }
        }
    }
    int64_t v[7] = {STATS_VERSION[0], s->samples, s->seq_len, kept_rows(s),
                    held_rows(kept_rows(s), s->heldout), s->sample > 0 ? s->sample : DEFAULT_SAMPLE,
                    (int64_t)s->seed};
    h = sm_fnv1a(h, v, sizeof v);
    if (s->precision == SM_PRECISION_BF16) /* fp32 fingerprints stay those of earlier files */
        h = sm_fnv1a(h, "bf16", 4);
    return sm_fnv1a(h, ids, (size_t)total_rows(s) * sizeof *ids);
}

int sm_calib_spec_fingerprint(const sm_model *m, const sm_calib_spec *s, uint64_t *out)
{
    sm_calib_ids ci;
    sm_calib_source src = source_of(s);
    if (sm_calib_ids_read(m, &src, &ci))
        return -1;
    int rc = check_spec(m, s, ci.t.n);
    if (!rc)
        *out = fingerprint(m, &ci, s);
    sm_tokens_free(&ci.t);
    return rc;
}

int sm_calib_file_fingerprint(const char *path, uint64_t *out)
{
    st_file *f = st_open(path);
    if (!f)
        return -1;
    const char *fmt = st_metadata(f, "format"), *fp = st_metadata(f, "fingerprint");
    int rc = -1;
    if (!fmt || strcmp(fmt, "submoe-activations") || !fp)
        sm_err("%s: not a submoe activations file", path);
    else {
        char *end;
        errno = 0;
        *out = strtoull(fp, &end, 16);
        rc = *end || errno || end == fp ? sm_err("%s: malformed fingerprint '%s'", path, fp) : 0;
    }
    st_close(f);
    return rc;
}

/* ---- capture -------------------------------------------------------------------------------- */

/* A layer's kept rows: MoE-block inputs, router logits and top-k choices (as floats). */
typedef struct {
    float *x, *l, *k;
} kept_set;

static int kept_alloc(kept_set *r, int64_t keep, int64_t hidden, int64_t experts, int64_t top_k)
{
    r->x = sm_alloc_f32((size_t)(keep * hidden)), r->l = sm_alloc_f32((size_t)(keep * experts));
    r->k = sm_alloc_f32((size_t)(keep * top_k));
    return r->x && r->l && r->k ? 0 : -1;
}

static void kept_free(kept_set *r)
{
    free(r->x), free(r->l), free(r->k);
    *r = (kept_set){0};
}

typedef struct {
    const sm_model *m;
    const sm_calib_spec *s;
    st_writer *w;
    int64_t total, keep, fit, sample;
    int k;
    const int *rows;           /* [keep] kept token rows (sorted), or NULL for all */
    int64_t next, got;         /* index into rows of the next kept row; rows gathered so far */
    kept_set kept;             /* the layer's kept rows */
    sm_moe_layer layer;        /* the layer running now (forward's override) */
    sm_moe_bf16 b16;           /* in bf16, its bf16 block: the forward pass's and the statistics' */
    const sm_monitor *mon;
    sm_progress *prog;
    int moe_done, n_moe;
    const char *path;          /* the stats file being written, for messages */
    kept_set spare;            /* the other set: the writer's while cap_chunk fills kept */
    struct layer_writer *wr;   /* the layer being written in the background, or NULL */
    float *spare_out;          /* the last written layer's expert outputs buffer, for the next */
    int64_t spare_len;
} cap_ctx;

static void cap_free_layer(cap_ctx *c)
{
    sm_moe_bf16_free(&c->b16);
    sm_moe_layer_free(&c->layer);
}

/* The layer for the forward pass, and then for the statistics (cap_write_layer): in bf16 one
 * block serves both; matrices stored in bf16 are read where the file is mapped (no copy, no fp32
 * one: the weight similarity reads their exact values there). */
static int cap_override(void *ctx, int layer, const sm_moe_block **block)
{
    cap_ctx *c = ctx;
    cap_free_layer(c);
    bool bf16 = c->s->precision == SM_PRECISION_BF16;
    if (bf16 ? sm_moe_layer_load_bf16(c->m, layer, c->mon, &c->layer)
             : sm_moe_layer_load_mon(c->m, layer, c->mon, &c->layer))
        return -1;
    *block = &c->layer.block;
    if (bf16) {
        if (sm_moe_bf16_make(&c->layer.block, &c->b16)) {
            cap_free_layer(c);
            return sm_err_prefix("layer %d", layer);
        }
        *block = &c->b16.block;
    }
    return 0;
}

static int write_doubles(st_writer *w, const double *d, size_t n)
{
    float *f = sm_alloc_f32(n);
    if (!f)
        return -1;
    for (size_t i = 0; i < n; i++)
        f[i] = (float)d[i];
    int rc = st_writer_write_f32(w, f, n);
    free(f);
    return rc;
}

/* A layer's tensors are written on their own thread while the forward pass runs the next layer:
 * writing a quarter of a GiB of expert outputs through the page cache is CPU work (about 2 s a GiB
 * on the 2-core machine of bench/README), which used to keep the other core idle. The file's
 * bytes and order are unchanged; one layer's statistics and kept rows are held meanwhile. */
typedef struct layer_writer {
    cap_ctx *c;
    int layer;
    kept_set kept;                /* the layer's kept rows (swapped with cap_ctx's spare set) */
    double *cnt;                  /* [a.n] the routed counts */
    sm_layer_analysis a;          /* its statistics; a.sim_weight is filled while writing */
    pthread_mutex_t lock;
    pthread_cond_t ready;
    int weights;                  /* 0 while sim_weight is computed, 1 done, -1 failed */
    pthread_t th;
    bool threaded;                /* false: no thread could start; written by the main thread */
    int rc;
    char err[1024];               /* its message, with the layer (sm_err's is the thread's own) */
} layer_writer;

/* Every expert's outputs (a quarter of a GiB per layer at real shapes): expert by expert, so that
 * the writing stays cancellable. */
static int write_outputs(cap_ctx *c, const sm_layer_analysis *a)
{
    size_t per = (size_t)a->sampled * (size_t)a->hidden;
    for (int e = 0; e < a->n; e++)
        if (sm_monitor_check(c->mon) || st_writer_write_f32(c->w, a->outputs + (size_t)e * per, per))
            return -1;
    return 0;
}

static int writer_wait_weights(layer_writer *lw)
{
    pthread_mutex_lock(&lw->lock);
    while (lw->weights == 0)
        pthread_cond_wait(&lw->ready, &lw->lock);
    int ok = lw->weights > 0;
    pthread_mutex_unlock(&lw->lock);
    return ok ? 0 : -1;
}

static void writer_weights_done(layer_writer *lw, bool ok)
{
    pthread_mutex_lock(&lw->lock);
    lw->weights = ok ? 1 : -1;
    pthread_cond_signal(&lw->ready);
    pthread_mutex_unlock(&lw->lock);
}

static int writer_tensors(layer_writer *lw)
{
    cap_ctx *c = lw->c;
    const sm_config *cfg = sm_model_config(c->m);
    const sm_layer_analysis *a = &lw->a;
    const size_t E = (size_t)a->n;
    if (sm_monitor_check(c->mon) || st_writer_write_f32(c->w, lw->kept.x, (size_t)c->keep * cfg->hidden) ||
        st_writer_write_f32(c->w, lw->kept.l, (size_t)c->keep * E) ||
        st_writer_write_f32(c->w, lw->kept.k, (size_t)c->keep * c->k) || write_doubles(c->w, lw->cnt, E) ||
        write_outputs(c, a) || write_doubles(c->w, a->sim_output, E * E) || write_doubles(c->w, a->sim_logit, E * E))
        return -1;
    if (writer_wait_weights(lw)) /* (the statistics' failure is reported by the main thread) */
        return 0;
    return write_doubles(c->w, a->sim_weight, E * E) || write_doubles(c->w, a->saliency, E) ? -1 : 0;
}

static void *writer_thread(void *p)
{
    layer_writer *lw = p;
    if ((lw->rc = writer_tensors(lw))) {
        sm_err_prefix("layer %d", lw->layer);
        snprintf(lw->err, sizeof lw->err, "%s", sm_errmsg());
    }
    return NULL;
}

/* Wait for the layer being written; 0, or -1 with its message (naming the file and the layer). */
static int writer_join(cap_ctx *c)
{
    layer_writer *lw = c->wr;
    if (!lw)
        return 0;
    if (lw->threaded)
        pthread_join(lw->th, NULL);
    else
        writer_thread(lw); /* (sim_weight is ready: writer_weights_done came first) */
    int rc = lw->rc ? sm_err("%s: %s", c->path, lw->err) : 0;
    c->spare = lw->kept; /* the spare set again */
    free(c->spare_out); /* (NULL: the analysis took it) */
    c->spare_out = lw->a.outputs, c->spare_len = (int64_t)lw->a.n * lw->a.sampled * lw->a.hidden;
    lw->a.outputs = NULL;
    sm_layer_analysis_free(&lw->a);
    free(lw->cnt);
    pthread_cond_destroy(&lw->ready);
    pthread_mutex_destroy(&lw->lock);
    free(lw);
    c->wr = NULL;
    return rc;
}

/* Start writing layer's kept rows and statistics a (moved into the writer); sim_weight follows
 * (writer_weights_done). Where no thread can start, the writing happens in writer_join. */
static int writer_start(cap_ctx *c, int layer, sm_layer_analysis *a)
{
    const int E = a->n;
    layer_writer *lw = sm_zalloc(1, sizeof *lw);
    double *cnt = sm_alloc((size_t)E, sizeof *cnt);
    if (!lw || !cnt) {
        free(lw), free(cnt);
        return -1;
    }
    for (int i = 0; i < E; i++)
        cnt[i] = (double)a->counts[i];
    *lw = (layer_writer){.c = c, .layer = layer, .kept = c->kept, .cnt = cnt, .a = *a};
    pthread_mutex_init(&lw->lock, NULL);
    pthread_cond_init(&lw->ready, NULL);
    lw->threaded = pthread_create(&lw->th, NULL, writer_thread, lw) == 0;
    memset(a, 0, sizeof *a);
    c->wr = lw;
    c->kept = c->spare; /* cap_chunk fills the spare set next */
    c->spare = (kept_set){0};
    return 0;
}

/* A layer's kept rows are complete: write them and its statistics, or say which file and layer
 * could not be (a non-finite value, a full disk). */
static int cap_write_layer(cap_ctx *c, int layer)
{
    if (writer_join(c)) /* the previous layer's writing */
        return -1;
    if (c->got != c->keep) {
        sm_err("internal: %lld of %lld rows captured", (long long)c->got, (long long)c->keep);
        goto fail;
    }
    if (sm_monitor_check(c->mon))
        goto fail;
    /* weight similarity: below, during the writing; the outputs into the last layer's buffer
     * (a quarter of a GiB of pages not zeroed again) */
    sm_analysis_opts ao = {.sample = c->sample, .outputs = c->spare_out, .outputs_len = c->spare_len};
    c->spare_out = NULL;
    sm_layer_analysis a;
    sm_monitor_span span;
    double lo = (double)c->moe_done / c->n_moe;
    const sm_monitor *mon = sm_monitor_span_init(&span, c->mon, lo, lo + 1.0 / c->n_moe);
    /* in bf16, the experts' products run on the bf16 block (the weight similarity reads fp32, or
     * the bf16 values of matrices stored in bf16: the same numbers) */
    bool bf16 = c->s->precision == SM_PRECISION_BF16;
    const sm_moe_block *block = bf16 ? &c->b16.block : &c->layer.block;
    if (sm_engine_analyse(block, c->kept.x, c->fit, &ao, mon, &a)) {
        sm_err_prefix("statistics");
        goto fail;
    }
    if (writer_start(c, layer, &a)) {
        sm_layer_analysis_free(&a);
        goto fail;
    }
    /* the weight similarity here, while the writer writes the rows and outputs */
    layer_writer *lw = c->wr;
    int rc = sm_engine_analyse_weights(block, mon, &lw->a);
    writer_weights_done(lw, rc == 0);
    if (rc) {
        char err[1024];
        snprintf(err, sizeof err, "%s", sm_errmsg());
        writer_join(c); /* (its own failure, if any, is second to this one) */
        sm_err("%s", err);
        sm_err_prefix("statistics");
        goto fail;
    }
    cap_free_layer(c);
    c->moe_done++;
    if (c->prog)
        sm_progress_update(c->prog, (uint64_t)c->moe_done);
    return 0;
fail:
    sm_err_prefix("layer %d", layer);
    return sm_err_prefix("%s", c->path);
}

static int cap_chunk(void *ctx, int layer, int64_t row0, int64_t n, int64_t total, const float *x,
                     const float *logits, const int *topk, const float *topw)
{
    (void)topw;
    cap_ctx *c = ctx;
    const sm_config *cfg = sm_model_config(c->m);
    int64_t H = cfg->hidden, E = sm_model_layer_experts(c->m, layer);
    if (total != c->total)
        return sm_err("internal: capture of %lld tokens, expected %lld", (long long)total, (long long)c->total);
    if (c->layer.layer != layer || !c->layer.router)
        return sm_err("internal: layer %d was not loaded for capture", layer);
    if (row0 == 0)
        c->next = c->got = 0;
    for (int64_t r = row0; r < row0 + n; r++) {
        if (c->rows) {
            if (c->next >= c->keep || c->rows[c->next] != r)
                continue;
            c->next++;
        }
        int64_t t = r - row0, g = c->got++;
        memcpy(c->kept.x + g * H, x + t * H, sizeof(float) * (size_t)H);
        memcpy(c->kept.l + g * E, logits + t * E, sizeof(float) * (size_t)E);
        for (int j = 0; j < c->k; j++)
            c->kept.k[g * c->k + j] = (float)topk[t * c->k + j];
    }
    if (sm_monitor_check(c->mon))
        return -1;
    return row0 + n == total ? cap_write_layer(c, layer) : 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int *sample_rows(int total, int keep, uint64_t seed)
{
    if (keep >= total)
        return NULL;
    int *perm = xmalloc(sizeof *perm * (size_t)total);
    for (int i = 0; i < total; i++)
        perm[i] = i;
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int i = 0; i < keep; i++) {
        int j = i + (int)sm_rng_below(&r, (uint64_t)(total - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    qsort(perm, (size_t)keep, sizeof *perm, cmp_int);
    return perm;
}

static int declare(st_writer *w, int l, const char *what, int ndim, int64_t a, int64_t b, int64_t c)
{
    char name[96];
    int64_t sh[3] = {a, b, c};
    snprintf(name, sizeof name, "layers.%d.%s", l, what);
    return st_writer_declare(w, name, SM_DT_F32, ndim, sh);
}

static int meta_i(st_writer *w, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return st_writer_meta(w, key, buf);
}

/* Capture into `path` (atomically: a temporary sibling renamed into place). */
static int capture_to(const sm_model *m, const sm_calib_spec *s, const sm_calib_ids *ci, uint64_t fp, const char *path,
                      const sm_monitor *mon)
{
    const sm_tokens *t = &ci->t;
    const sm_config *cfg = sm_model_config(m);
    int total = (int)total_rows(s), keep = (int)kept_rows(s);
    int fit = keep - (int)held_rows(keep, s->heldout);
    int sample = (int)(s->sample > 0 ? s->sample : DEFAULT_SAMPLE);
    if (sample > fit)
        sample = fit;
    int *rows = sample_rows(total, keep, s->seed);
    st_writer *w = st_writer_new();
    char *tmp = sm_temp_sibling(path);
    sm_signals_note_temp(tmp);
    cap_ctx c = {.m = m, .s = s, .w = w, .total = total, .keep = keep, .fit = fit, .sample = sample,
                 .k = cfg->top_k, .rows = rows, .mon = mon, .n_moe = cfg->n_moe_layers, .path = path};
    c.layer.layer = -1;
    int rc = -1, maxe = 1;
    for (int l = 0; l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        int E = sm_model_layer_experts(m, l);
        maxe = E > maxe ? E : maxe;
        if (declare(w, l, "moe_input", 2, keep, cfg->hidden, 0) || declare(w, l, "router_logits", 2, keep, E, 0) ||
            declare(w, l, "topk", 2, keep, cfg->top_k, 0) || declare(w, l, "counts", 1, E, 0, 0) ||
            declare(w, l, "expert_outputs", 3, E, sample, cfg->hidden) || declare(w, l, "sim_output", 2, E, E, 0) ||
            declare(w, l, "sim_logit", 2, E, E, 0) || declare(w, l, "sim_weight", 2, E, E, 0) ||
            declare(w, l, "saliency", 1, E, 0, 0))
            goto out;
    }
    char fph[32], mfp[32];
    snprintf(fph, sizeof fph, "%016" PRIx64, fp);
    sm_model_fingerprint(m, mfp);
    if (st_writer_meta(w, "format", "submoe-activations") || st_writer_meta(w, "version", STATS_VERSION) ||
        st_writer_meta(w, "fingerprint", fph) || st_writer_meta(w, "model_fingerprint", mfp) ||
        st_writer_meta(w, "model", sm_model_dir(m)) || sm_calib_ids_meta(w, ci) ||
        meta_i(w, "samples", s->samples) || meta_i(w, "seq_len", s->seq_len) || meta_i(w, "rows", keep) ||
        meta_i(w, "heldout", keep - fit) || meta_i(w, "sample", sample) || meta_i(w, "seed", (int64_t)s->seed))
        goto out;
    /* the kept rows, twice: one set is filled while the other is written (layer_writer) */
    if (kept_alloc(&c.kept, keep, cfg->hidden, maxe, cfg->top_k) ||
        kept_alloc(&c.spare, keep, cfg->hidden, maxe, cfg->top_k))
        goto out;
    if (st_writer_begin(w, tmp))
        goto out;

    sm_progress prog;
    sm_progress_start(&prog, "calibrate", (uint64_t)cfg->n_moe_layers, s->quiet);
    c.prog = &prog;
    sm_forward_opts fo;
    sm_forward_opts_init(&fo);
    fo.capture_chunk = cap_chunk;
    fo.capture_ctx = &c;
    fo.moe_override = cap_override;
    fo.moe_override_ctx = &c;
    fo.precision = s->precision;
    fo.mon = mon; /* the forward pass checks it within layers (cap_chunk only between chunks) */
    int last = 0; /* capture only: stop after the last MoE layer */
    for (int l = 0; l < cfg->n_layers; l++)
        if (cfg->is_moe[l])
            last = l;
    fo.stop_after_layer = last;
    int frc = sm_forward(m, t->ids, s->samples, s->seq_len, &fo);
    if (!frc)
        frc = writer_join(&c); /* the last layer's writing */
    sm_progress_end(&prog, frc == 0);
    c.prog = NULL;
    cap_free_layer(&c);
    if (frc || st_writer_finish(w))
        goto out;
    if (sm_publish(tmp, path, true)) /* a stats file replaces a stale one */
        goto out;
    rc = 0;
out:
    if (c.wr) { /* after a failure: wait for the writing (it stops at its next check, or runs out) */
        char first[1024];
        snprintf(first, sizeof first, "%s", sm_errmsg());
        writer_join(&c);
        sm_err("%s", first); /* the failure that stopped the capture, not the writer's */
    }
    if (rc)
        unlink(tmp);
    sm_signals_note_temp(NULL);
    st_writer_free(w);
    free(tmp);
    free(rows);
    kept_free(&c.kept), kept_free(&c.spare), free(c.spare_out);
    return rc;
}

sm_calib *sm_calib_capture(const sm_model *m, const sm_calib_spec *s, const char *cache, const sm_monitor *mon,
                           bool *reused)
{
    if (reused)
        *reused = false;
    sm_calib_ids ci;
    sm_calib_source src = source_of(s);
    if (sm_calib_ids_read(m, &src, &ci))
        return NULL;
    const sm_tokens t = ci.t;
    sm_calib *c = NULL;
    if (check_spec(m, s, t.n))
        goto out;
    uint64_t fp = fingerprint(m, &ci, s), have;
    if (cache && !s->refresh && sm_exists(cache) && sm_calib_file_fingerprint(cache, &have) == 0 && have == fp) {
        if ((c = sm_calib_read(m, cache, -1)) && reused)
            *reused = true;
        goto out;
    }
    sm_err_clear();
    char *path = cache ? xstrdup(cache) : NULL;
    if (!path) { /* no cache: an unlinked temporary file backs the mapping */
        const char *dir = getenv("TMPDIR");
        path = xasprintf("%s/submoe-calib-%ld", dir && *dir ? dir : "/tmp", (long)getpid());
    }
    if (capture_to(m, s, &ci, fp, path, mon) == 0) {
        c = sm_calib_read(m, path, -1);
        if (!cache) {
            unlink(path);
            if (c) {
                free(c->path);
                c->path = NULL;
            }
        }
    }
    free(path);
out:
    /* Windows right after the calibration ones, never used for statistics: held-out loss. */
    if (c && t.n >= (size_t)(total_rows(s) + s->seq_len)) {
        size_t avail = (t.n - (size_t)total_rows(s)) / (size_t)s->seq_len;
        int want = SM_CALIB_EVAL_WINDOWS + SM_CALIB_GUARD_WINDOWS; /* auto's windows, then its guard's */
        c->eval_n_seq = (int)(avail < (size_t)want ? avail : (size_t)want);
        c->eval_seq_len = s->seq_len;
        c->eval_ids = xmalloc(sizeof(int32_t) * (size_t)c->eval_n_seq * (size_t)s->seq_len);
        memcpy(c->eval_ids, t.ids + total_rows(s), sizeof(int32_t) * (size_t)c->eval_n_seq * (size_t)s->seq_len);
    }
    sm_tokens_free(&ci.t);
    return c;
}

int sm_calib_eval_windows(const sm_calib *c, const int32_t **ids, int *n_seq, int *seq_len)
{
    if (!c || !c->eval_ids)
        return -1;
    *ids = c->eval_ids;
    *n_seq = c->eval_n_seq < SM_CALIB_EVAL_WINDOWS ? c->eval_n_seq : SM_CALIB_EVAL_WINDOWS;
    *seq_len = c->eval_seq_len;
    return 0;
}

int sm_calib_guard_windows(const sm_calib *c, const int32_t **ids, int *n_seq, int *seq_len)
{
    if (!c || !c->eval_ids || c->eval_n_seq <= SM_CALIB_EVAL_WINDOWS)
        return -1;
    *ids = c->eval_ids + (size_t)SM_CALIB_EVAL_WINDOWS * (size_t)c->eval_seq_len;
    *n_seq = c->eval_n_seq - SM_CALIB_EVAL_WINDOWS;
    *seq_len = c->eval_seq_len;
    return 0;
}
