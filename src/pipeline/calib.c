/* calib: calibration capture, statistics and the stats file (see calib.h). */
#include "pipeline/calib.h"
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATS_VERSION "2"
#define DEFAULT_SAMPLE 512

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

typedef struct {
    int64_t rows;                /* m in the file */
    const sm_tensor *x, *counts, *outputs, *sim[3]; /* sim: output, logit, weight */
    float *xf;                   /* converted inputs (cached): the fit then the held-out sample */
    int64_t xf_fit, xf_held;     /* rows of each in xf */
    sm_layer_analysis *an;       /* cached statistics */
    bool an_grams;
    bool an_mapped;              /* an->outputs points into the file's mapping (not owned) */
} calib_layer;

struct sm_calib {
    const sm_model *m;
    st_file *f;
    char *path;                  /* NULL for an unlinked temporary */
    int n_layers;
    int64_t heldout;             /* rows held out at the end of every layer */
    int64_t sample;
    bool stats;
    calib_layer *layer;
    int32_t *eval_ids;           /* token windows after the calibration ones (auto's held-out loss) */
    int eval_n_seq, eval_seq_len;
};

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

/* The source fields of s for calib_ids. */
static sm_calib_source source_of(const sm_calib_spec *s)
{
    return (sm_calib_source){s->tokens, s->text, s->expect_text_digest, s->expect_tokenizer_digest,
                             s->samples, s->seq_len, SM_CALIB_EVAL_WINDOWS, s->seed};
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

typedef struct {
    const sm_model *m;
    const sm_calib_spec *s;
    st_writer *w;
    int64_t total, keep, fit, sample;
    int k;
    const int *rows;           /* [keep] kept token rows (sorted), or NULL for all */
    int64_t next, got;         /* index into rows of the next kept row; rows gathered so far */
    float *kx, *kl, *kk;       /* the layer's kept rows: inputs, logits, top-k (as floats) */
    sm_moe_layer layer;        /* the layer running now (forward's override) */
    const sm_monitor *mon;
    sm_progress *prog;
    int moe_done, n_moe;
    const char *path;          /* the stats file being written, for messages */
} cap_ctx;

static int cap_override(void *ctx, int layer, const sm_moe_block **block)
{
    cap_ctx *c = ctx;
    sm_moe_layer_free(&c->layer);
    if (sm_moe_layer_load_mon(c->m, layer, c->mon, &c->layer))
        return -1;
    *block = &c->layer.block;
    return 0;
}

/* Similarities are stored as float: round computed ones the same way. */
static void round_sims(sm_layer_analysis *a)
{
    double *s[3] = {a->sim_output, a->sim_logit, a->sim_weight};
    for (int j = 0; j < 3; j++)
        for (int i = 0; s[j] && i < a->n * a->n; i++)
            s[j][i] = (float)s[j][i];
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

static int cap_write_layer(cap_ctx *c, int layer);

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

/* A layer's kept rows are complete: write them and its statistics, or say which file and layer
 * could not be (a non-finite value, a full disk). */
static int cap_finish_layer(cap_ctx *c, int layer)
{
    if (cap_write_layer(c, layer) == 0)
        return 0;
    sm_err_prefix("layer %d", layer);
    return sm_err_prefix("%s", c->path);
}

static int cap_write_layer(cap_ctx *c, int layer)
{
    const sm_config *cfg = sm_model_config(c->m);
    int E = sm_model_layer_experts(c->m, layer);
    if (c->got != c->keep)
        return sm_err("internal: %lld of %lld rows captured", (long long)c->got, (long long)c->keep);
    if (sm_monitor_check(c->mon) || st_writer_write_f32(c->w, c->kx, (size_t)c->keep * cfg->hidden) ||
        st_writer_write_f32(c->w, c->kl, (size_t)c->keep * E) ||
        st_writer_write_f32(c->w, c->kk, (size_t)c->keep * c->k))
        return -1;
    sm_analysis_opts ao = {.sample = c->sample, .weight_sim = true};
    sm_layer_analysis a;
    sm_monitor_span span;
    double lo = (double)c->moe_done / c->n_moe;
    const sm_monitor *mon = sm_monitor_span_init(&span, c->mon, lo, lo + 1.0 / c->n_moe);
    /* in bf16, the experts' products run on bf16 copies (the weight similarity still reads fp32) */
    sm_moe_bf16 b16;
    bool bf16 = c->s->precision == SM_PRECISION_BF16;
    if (bf16 && sm_moe_bf16_make(&c->layer.block, &b16))
        return sm_err_prefix("statistics");
    int arc = sm_engine_analyse(bf16 ? &b16.block : &c->layer.block, c->kx, c->fit, &ao, mon, &a);
    if (bf16)
        sm_moe_bf16_free(&b16);
    if (arc)
        return sm_err_prefix("statistics");
    double *cnt = sm_alloc((size_t)E, sizeof *cnt);
    int rc = -1;
    if (cnt) {
        for (int i = 0; i < E; i++)
            cnt[i] = (double)a.counts[i];
        rc = write_doubles(c->w, cnt, (size_t)E) || write_outputs(c, &a) ||
                     write_doubles(c->w, a.sim_output, (size_t)E * E) ||
                     write_doubles(c->w, a.sim_logit, (size_t)E * E) ||
                     write_doubles(c->w, a.sim_weight, (size_t)E * E)
                 ? -1
                 : 0;
    }
    free(cnt);
    sm_layer_analysis_free(&a);
    sm_moe_layer_free(&c->layer);
    c->moe_done++;
    if (c->prog)
        sm_progress_update(c->prog, (uint64_t)c->moe_done);
    return rc;
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
        memcpy(c->kx + g * H, x + t * H, sizeof(float) * (size_t)H);
        memcpy(c->kl + g * E, logits + t * E, sizeof(float) * (size_t)E);
        for (int j = 0; j < c->k; j++)
            c->kk[g * c->k + j] = (float)topk[t * c->k + j];
    }
    if (sm_monitor_check(c->mon))
        return -1;
    return row0 + n == total ? cap_finish_layer(c, layer) : 0;
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
    float *kx = NULL, *kl = NULL, *kk = NULL;
    int rc = -1, maxe = 1;
    for (int l = 0; l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        int E = sm_model_layer_experts(m, l);
        maxe = E > maxe ? E : maxe;
        if (declare(w, l, "moe_input", 2, keep, cfg->hidden, 0) || declare(w, l, "router_logits", 2, keep, E, 0) ||
            declare(w, l, "topk", 2, keep, cfg->top_k, 0) || declare(w, l, "counts", 1, E, 0, 0) ||
            declare(w, l, "expert_outputs", 3, E, sample, cfg->hidden) || declare(w, l, "sim_output", 2, E, E, 0) ||
            declare(w, l, "sim_logit", 2, E, E, 0) || declare(w, l, "sim_weight", 2, E, E, 0))
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
    if (!(kx = sm_alloc_f32((size_t)keep * cfg->hidden)) || !(kl = sm_alloc_f32((size_t)keep * maxe)) ||
        !(kk = sm_alloc_f32((size_t)keep * cfg->top_k)))
        goto out;
    if (st_writer_begin(w, tmp))
        goto out;

    sm_progress prog;
    sm_progress_start(&prog, "calibrate", (uint64_t)cfg->n_moe_layers, s->quiet);
    cap_ctx c = {.m = m, .s = s, .w = w, .total = total, .keep = keep, .fit = fit, .sample = sample,
                 .k = cfg->top_k, .rows = rows, .kx = kx, .kl = kl, .kk = kk, .mon = mon, .prog = &prog,
                 .n_moe = cfg->n_moe_layers, .path = path};
    c.layer.layer = -1;
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
    sm_progress_end(&prog, frc == 0);
    sm_moe_layer_free(&c.layer);
    if (frc || st_writer_finish(w))
        goto out;
    if (sm_publish(tmp, path, true)) /* a stats file replaces a stale one */
        goto out;
    rc = 0;
out:
    if (rc)
        unlink(tmp);
    sm_signals_note_temp(NULL);
    st_writer_free(w);
    free(tmp);
    free(rows);
    free(kx);
    free(kl);
    free(kk);
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
        c->eval_n_seq = (int)(avail < SM_CALIB_EVAL_WINDOWS ? avail : SM_CALIB_EVAL_WINDOWS);
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
    *n_seq = c->eval_n_seq;
    *seq_len = c->eval_seq_len;
    return 0;
}

/* ---- reading -------------------------------------------------------------------------------- */

static const sm_tensor *find(st_file *f, int l, const char *what)
{
    char name[96];
    snprintf(name, sizeof name, "layers.%d.%s", l, what);
    return st_find(f, name);
}

static int shape_is(const sm_tensor *t, int ndim, int64_t a, int64_t b, int64_t c)
{
    int64_t want[3] = {a, b, c};
    if (t->ndim != ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != want[i])
            return 0;
    return 1;
}

/* Element i of an F32 tensor. Tensor data in a safetensors file is only byte-aligned (the header
 * may have any length), so floats are copied out, never loaded through a cast pointer. */
static float f32_at(const sm_tensor *t, int64_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)t->data + (size_t)i * sizeof v, sizeof v);
    return v;
}

static int64_t meta_int(st_file *f, const char *key, int64_t dflt)
{
    const char *v = st_metadata(f, key);
    if (!v || !*v)
        return dflt;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    return *end || errno ? dflt : (int64_t)x;
}

sm_calib *sm_calib_read(const sm_model *m, const char *path, int64_t heldout)
{
    const sm_config *cfg = sm_model_config(m);
    st_file *f = st_open(path);
    if (!f)
        return NULL;
    sm_calib *c = sm_zalloc(1, sizeof *c);
    if (!c) {
        st_close(f);
        return NULL;
    }
    c->f = f;
    if (!(c->layer = sm_zalloc((size_t)cfg->n_layers, sizeof *c->layer)))
        goto fail;
    c->m = m;
    c->path = xstrdup(path);
    c->n_layers = cfg->n_layers;
    const char *mfp = st_metadata(f, "model_fingerprint");
    char have[32];
    sm_model_fingerprint(m, have);
    if (mfp && strcmp(mfp, have)) {
        sm_err("was computed for a different model (fingerprint %s; %s has %s)", mfp, sm_model_dir(m), have);
        goto fail;
    }
    int64_t rows = -1;
    bool stats = true;
    for (int l = 0; l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        int64_t E = sm_model_layer_experts(m, l), H = cfg->hidden;
        calib_layer *cl = &c->layer[l];
        if (!(cl->x = find(f, l, "moe_input"))) {
            sm_err("no tensor 'layers.%d.moe_input' for MoE layer %d", l, l);
            goto fail;
        }
        if (cl->x->ndim != 2 || cl->x->shape[1] != H || cl->x->shape[0] < 2) {
            sm_err("tensor 'layers.%d.moe_input' must be [m >= 2, %" PRId64 "] for this model", l, H);
            goto fail;
        }
        cl->rows = cl->x->shape[0];
        rows = rows < 0 || cl->rows < rows ? cl->rows : rows;
        /* Router logits are not used (they are recomputed), but a file holding Inf or NaN in them
         * was made from overflowing activations: refused like the inputs themselves. */
        const sm_tensor *lg = find(f, l, "router_logits");
        size_t bad = lg ? sm_first_nonfinite(lg->dtype, lg->data, (size_t)lg->numel) : 0;
        if (lg && bad < lg->numel) {
            sm_err("tensor 'layers.%d.router_logits': row %" PRId64 " has a non-finite value", l,
                   lg->ndim == 2 && lg->shape[1] > 0 ? (int64_t)bad / lg->shape[1] : 0);
            goto fail;
        }
        cl->counts = find(f, l, "counts");
        cl->outputs = find(f, l, "expert_outputs");
        cl->sim[0] = find(f, l, "sim_output");
        cl->sim[1] = find(f, l, "sim_logit");
        cl->sim[2] = find(f, l, "sim_weight");
        bool ok = cl->counts && cl->outputs && cl->sim[0] && cl->sim[1] && cl->sim[2];
        if (ok) {
            ok = cl->counts->dtype == SM_DT_F32 && shape_is(cl->counts, 1, E, 0, 0) &&
                 cl->outputs->dtype == SM_DT_F32 && cl->outputs->ndim == 3 && cl->outputs->shape[0] == E &&
                 cl->outputs->shape[1] >= 1 && cl->outputs->shape[2] == H;
            for (int j = 0; j < 3; j++)
                ok = ok && cl->sim[j]->dtype == SM_DT_F32 && shape_is(cl->sim[j], 2, E, E, 0);
            if (!ok) {
                sm_err("layer %d statistics have the wrong dtype or shape for this model (%" PRId64 " experts)", l, E);
                goto fail;
            }
            for (int64_t i = 0; i < E; i++) {
                float v = f32_at(cl->counts, i);
                if (!(v >= 0 && v <= (float)cl->rows) || v != floorf(v)) {
                    sm_err("tensor 'layers.%d.counts': entry %" PRId64 " is not a count of rows", l, i);
                    goto fail;
                }
            }
        }
        stats = stats && ok;
    }
    c->stats = stats;
    if (heldout < 0)
        heldout = meta_int(f, "heldout", -1);
    c->heldout = heldout < 0 ? rows / 4 : heldout;
    if (c->heldout >= rows) {
        sm_err("%" PRId64 " held-out rows leave none of the %" PRId64 " rows to fit on", c->heldout, rows);
        goto fail;
    }
    /* Stored statistics were computed on the file's own split; another split invalidates them. */
    if (c->stats && meta_int(f, "heldout", -2) != c->heldout)
        c->stats = false;
    return c;
fail:
    sm_err_prefix("%s", path);
    sm_calib_free(c);
    return NULL;
}

void sm_calib_free(sm_calib *c)
{
    if (!c)
        return;
    for (int l = 0; c->layer && l < c->n_layers; l++)
        sm_calib_release(c, l);
    free(c->layer);
    free(c->eval_ids);
    st_close(c->f);
    free(c->path);
    free(c);
}

const char *sm_calib_path(const sm_calib *c)
{
    return c->path ? c->path : "(temporary)";
}

const char *sm_calib_metadata(const sm_calib *c, const char *key)
{
    return st_metadata(c->f, key);
}

bool sm_calib_has_stats(const sm_calib *c)
{
    return c->stats;
}

static calib_layer *get_layer(sm_calib *c, int l)
{
    if (l < 0 || l >= c->n_layers || !c->layer[l].x) {
        sm_err("layer %d is not a MoE layer with calibration data", l);
        return NULL;
    }
    return &c->layer[l];
}

/* How many fit and held-out rows of a layer sm_calib_inputs materialises: all of them up to
 * SM_CALIB_MAX_ROWS, else SM_CALIB_MAX_ROWS split in the file's proportion (at least one
 * held-out row when the file has any). */
static void input_rows(const sm_calib *c, const calib_layer *cl, int64_t *nf, int64_t *nh)
{
    int64_t held = c->heldout, fit = cl->rows - held;
    if (cl->rows <= SM_CALIB_MAX_ROWS) {
        *nf = fit, *nh = held;
        return;
    }
    int64_t h = (int64_t)((double)SM_CALIB_MAX_ROWS * (double)held / (double)cl->rows);
    *nh = held > 0 && h < 1 ? 1 : h;
    *nf = SM_CALIB_MAX_ROWS - *nh;
}

/* Convert `n` rows of layer cl's inputs starting at file row `row` into dst (n × H); -1 with a
 * message when a value is not finite. */
static int convert_rows(const sm_calib *c, const calib_layer *cl, int64_t row, int64_t n, float *dst)
{
    const int64_t H = cl->x->shape[1];
    const size_t esz = sm_dtype_size(cl->x->dtype);
    const unsigned char *src = (const unsigned char *)cl->x->data + (size_t)row * (size_t)H * esz;
    size_t i = sm_to_f32(cl->x->dtype, src, dst, (size_t)(n * H)); /* checked in the same pass */
    if (i < (size_t)(n * H))
        return sm_err("%s: tensor 'layers.%d.moe_input': row %" PRId64 " has a non-finite value (%s)",
                      sm_calib_path(c), (int)(cl - c->layer), row + (int64_t)i / H, sm_nonfinite_name(dst[i]));
    return 0;
}

int sm_calib_rows(sm_calib *c, int layer, int64_t *fit_rows, int64_t *held_rows, int64_t *fit_used,
                  int64_t *held_used)
{
    calib_layer *cl = get_layer(c, layer);
    if (!cl)
        return -1;
    int64_t nf, nh;
    input_rows(c, cl, &nf, &nh);
    if (fit_rows)
        *fit_rows = cl->rows - c->heldout;
    if (held_rows)
        *held_rows = c->heldout;
    if (fit_used)
        *fit_used = nf;
    if (held_used)
        *held_used = nh;
    return 0;
}

int sm_calib_inputs(sm_calib *c, int layer, const float **fit, int64_t *m_fit, const float **held, int64_t *m_held)
{
    calib_layer *cl = get_layer(c, layer);
    if (!cl)
        return -1;
    int64_t H = cl->x->shape[1];
    if (!cl->xf) {
        int64_t nf, nh, F = cl->rows - c->heldout;
        input_rows(c, cl, &nf, &nh);
        if (!(cl->xf = sm_alloc_f32((size_t)(nf + nh) * (size_t)H)))
            return -1;
        int rc = 0;
        if (nf == F && nh == c->heldout) { /* every row */
            rc = convert_rows(c, cl, 0, cl->rows, cl->xf);
        } else { /* evenly spaced rows of each part, in file order */
            for (int64_t j = 0; rc == 0 && j < nf; j++)
                rc = convert_rows(c, cl, j * F / nf, 1, cl->xf + j * H);
            for (int64_t j = 0; rc == 0 && j < nh; j++)
                rc = convert_rows(c, cl, F + j * c->heldout / nh, 1, cl->xf + (nf + j) * H);
        }
        st_release(cl->x->data, cl->x->nbytes);
        if (rc) {
            free(cl->xf);
            cl->xf = NULL;
            return -1;
        }
        cl->xf_fit = nf, cl->xf_held = nh;
    }
    if (fit)
        *fit = cl->xf;
    if (m_fit)
        *m_fit = cl->xf_fit;
    if (held)
        *held = cl->xf + cl->xf_fit * H;
    if (m_held)
        *m_held = cl->xf_held;
    return 0;
}

/* The fit rows of a layer as an engine row source: converted block by block from the file (the
 * converted pages are released as it goes), or served from xf when it holds all of them. */
typedef struct {
    const sm_calib *c;
    const calib_layer *cl;
    int64_t H;
} file_rows;

static const float *rows_from_file(void *ctx, int64_t t0, int64_t n, float *buf)
{
    file_rows *r = ctx;
    const calib_layer *cl = r->cl;
    if (cl->xf && cl->xf_fit == cl->rows - r->c->heldout)
        return cl->xf + t0 * r->H;
    if (convert_rows(r->c, cl, t0, n, buf))
        return NULL;
    if (n > 1) {
        size_t rb = (size_t)r->H * sm_dtype_size(cl->x->dtype);
        st_release((const unsigned char *)cl->x->data + (size_t)t0 * rb, (uint64_t)((size_t)n * rb));
    }
    return buf;
}

/* Free statistics of layer cl (outputs in the mapping are dropped from memory, not freed). */
static void analysis_free(calib_layer *cl, sm_layer_analysis *a)
{
    if (cl->an_mapped && a->outputs) {
        st_release(cl->outputs->data, cl->outputs->nbytes);
        a->outputs = NULL;
    }
    cl->an_mapped = false;
    sm_layer_analysis_free(a);
}

static int analysis_from_file(sm_calib *c, calib_layer *cl, int64_t m_fit, sm_layer_analysis *a)
{
    int n = (int)cl->counts->shape[0];
    memset(a, 0, sizeof *a);
    a->n = n;
    a->hidden = cl->outputs->shape[2];
    a->tokens = m_fit;
    a->sampled = cl->outputs->shape[1];
    sm_weight gw;
    a->inter = sm_model_weight(c->m, SM_W_EXPERT_GATE, (int)(cl - c->layer), 0, &gw) == 0 ? gw.rows : 0;
    a->counts = sm_alloc((size_t)n, sizeof *a->counts);
    a->freq = sm_alloc((size_t)n, sizeof *a->freq);
    /* The expert outputs are most of a layer's statistics (E·s·H floats: 256 MiB at OLMoE's
     * shape): used in place from the mapping when aligned, so that opening costs no copy and
     * only the pages read count; copied otherwise. */
    cl->an_mapped = (uintptr_t)cl->outputs->data % _Alignof(float) == 0;
    a->outputs = cl->an_mapped ? (float *)(uintptr_t)cl->outputs->data : sm_alloc_f32((size_t)cl->outputs->numel);
    double **dst[3] = {&a->sim_output, &a->sim_logit, &a->sim_weight};
    for (int j = 0; j < 3; j++)
        *dst[j] = sm_alloc((size_t)n * n, sizeof(double));
    if (!a->counts || !a->freq || !a->outputs || !a->sim_output || !a->sim_logit || !a->sim_weight) {
        analysis_free(cl, a);
        return -1;
    }
    for (int i = 0; i < n; i++)
        a->counts[i] = (int64_t)f32_at(cl->counts, i);
    for (int i = 0; i < n; i++)
        a->freq[i] = (double)a->counts[i] / (double)m_fit;
    if (!cl->an_mapped) {
        memcpy(a->outputs, cl->outputs->data, sizeof(float) * cl->outputs->numel);
        st_release(cl->outputs->data, cl->outputs->nbytes);
    }
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < n * n; i++)
            (*dst[j])[i] = f32_at(cl->sim[j], i);
    if (sm_layer_analysis_check(a)) { /* stored statistics are held to what computing them guarantees */
        analysis_free(cl, a);
        return -1;
    }
    return 0;
}

int sm_calib_analysis(sm_calib *c, int layer, const sm_moe_block *block, bool grams, const sm_monitor *mon,
                      const sm_layer_analysis **out)
{
    calib_layer *cl = get_layer(c, layer);
    if (!cl)
        return -1;
    if (cl->an && (cl->an_grams || !grams)) {
        *out = cl->an;
        return 0;
    }
    const int64_t m_fit = cl->rows - c->heldout; /* statistics use every fit row of the file */
    sm_layer_analysis *a = sm_zalloc(1, sizeof *a);
    if (!a)
        return -1;
    int rc;
    if (c->stats && !grams) {
        rc = analysis_from_file(c, cl, m_fit, a);
    } else if (!block) {
        rc = sm_err("layer %d: statistics need the layer's experts", layer);
    } else {
        int64_t sample = c->stats ? cl->outputs->shape[1] : meta_int(c->f, "sample", DEFAULT_SAMPLE);
        sm_analysis_opts ao = {.sample = sample > 0 ? sample : DEFAULT_SAMPLE, .grams = grams, .weight_sim = true};
        file_rows fr = {c, cl, cl->x->shape[1]};
        sm_row_source src = {m_fit, rows_from_file, &fr};
        rc = sm_engine_analyse_rows(block, &src, &ao, mon, a);
        if (!rc)
            round_sims(a);
    }
    if (rc) {
        free(a);
        sm_err_prefix("layer %d statistics", layer);
        return sm_err_prefix("%s", sm_calib_path(c));
    }
    if (cl->an) {
        analysis_free(cl, cl->an);
        free(cl->an);
    }
    cl->an_mapped = c->stats && !grams && a->outputs == (const float *)cl->outputs->data;
    cl->an = a;
    cl->an_grams = grams;
    *out = a;
    return 0;
}

void sm_calib_release(sm_calib *c, int layer)
{
    if (!c || layer < 0 || layer >= c->n_layers)
        return;
    calib_layer *cl = &c->layer[layer];
    free(cl->xf);
    cl->xf = NULL;
    if (cl->an) {
        analysis_free(cl, cl->an);
        free(cl->an);
        cl->an = NULL;
    }
}
