/* calib_read: reading a stats or activations file, its rows and its statistics (see calib.h). */
#include "pipeline/calib.h"
#include "pipeline/calib_file.h"
#include "model/st.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Similarities and saliencies are stored as float: round computed ones the same way. */
static void round_sims(sm_layer_analysis *a)
{
    double *s[3] = {a->sim_output, a->sim_logit, a->sim_weight};
    for (int j = 0; j < 3; j++)
        for (int i = 0; s[j] && i < a->n * a->n; i++)
            s[j][i] = (float)s[j][i];
    for (int i = 0; a->saliency && i < a->n; i++)
        a->saliency[i] = (float)a->saliency[i];
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

/* A stored saliency: F32 [E], every entry finite and >= 0 (a mean of weights times norms). */
static int check_saliency(const sm_tensor *t, int l, int64_t E)
{
    if (t->dtype != SM_DT_F32 || !shape_is(t, 1, E, 0, 0))
        return sm_err("tensor 'layers.%d.saliency' must be F32 [%" PRId64 "] for this model", l, E);
    for (int64_t i = 0; i < E; i++)
        if (!(f32_at(t, i) >= 0) || !isfinite(f32_at(t, i)))
            return sm_err("tensor 'layers.%d.saliency': entry %" PRId64 " is not a saliency (%g)", l, i,
                          (double)f32_at(t, i));
    return 0;
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
        if ((cl->saliency = find(f, l, "saliency")) && check_saliency(cl->saliency, l, E))
            goto fail;
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
    if (cl->saliency) {
        if (!(a->saliency = sm_alloc((size_t)n, sizeof *a->saliency))) {
            analysis_free(cl, a);
            return -1;
        }
        for (int i = 0; i < n; i++)
            a->saliency[i] = f32_at(cl->saliency, i);
    }
    if (sm_layer_analysis_check(a)) { /* stored statistics are held to what computing them guarantees */
        analysis_free(cl, a);
        return -1;
    }
    return 0;
}

/* A block with its routed experts (not a shell: the workbench reads stored statistics without). */
static bool has_experts(const sm_moe_block *b)
{
    return b && b->experts && b->n_experts > 0;
}

/* A file from before saliencies: compute them from the layer's experts on the fit rows (as the
 * capture would have), rounded like stored ones; not written back (the file stays as it was). */
static int saliency_from_rows(sm_calib *c, calib_layer *cl, int64_t m_fit, const sm_moe_block *block,
                              const sm_monitor *mon, sm_layer_analysis *a)
{
    file_rows fr = {c, cl, cl->x->shape[1]};
    if (!(a->saliency = sm_alloc((size_t)a->n, sizeof *a->saliency)) ||
        sm_saliency_rows(block, m_fit, rows_from_file, &fr, mon, a->saliency)) {
        free(a->saliency);
        a->saliency = NULL;
        return -1;
    }
    round_sims(a);
    return 0;
}

int sm_calib_analysis(sm_calib *c, int layer, const sm_moe_block *block, bool grams, const sm_monitor *mon,
                      const sm_layer_analysis **out)
{
    calib_layer *cl = get_layer(c, layer);
    if (!cl)
        return -1;
    const int64_t m_fit = cl->rows - c->heldout; /* statistics use every fit row of the file */
    if (cl->an && (cl->an_grams || !grams)) {
        /* read earlier without the experts from a file without saliencies: compute them now */
        if (!cl->an->saliency && has_experts(block) && saliency_from_rows(c, cl, m_fit, block, mon, cl->an))
            return sm_err_prefix("%s: layer %d saliency", sm_calib_path(c), layer);
        *out = cl->an;
        return 0;
    }
    sm_layer_analysis *a = sm_zalloc(1, sizeof *a);
    if (!a)
        return -1;
    int rc;
    if (c->stats && !grams) {
        rc = analysis_from_file(c, cl, m_fit, a);
        if (!rc && !a->saliency && has_experts(block) && (rc = saliency_from_rows(c, cl, m_fit, block, mon, a)))
            analysis_free(cl, a);
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
