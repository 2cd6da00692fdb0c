/* activations: calibration capture into a safetensors activations file (see activations.h). */
#include "forward/activations.h"
#include "forward/forward.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/rng.h"

#include "util/hash.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t sm_calib_fingerprint(const sm_model *m, const int32_t *ids, size_t n, const sm_calib_opts *o)
{
    uint64_t h = SM_FNV_OFFSET;
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
        }
    }
    int64_t s[4] = {o->samples, o->seq_len, (int64_t)o->keep, (int64_t)o->seed};
    h = sm_fnv1a(h, s, sizeof s);
    size_t used = (size_t)o->samples * (size_t)o->seq_len;
    if (used > n)
        used = n;
    return sm_fnv1a(h, ids, used * sizeof *ids);
}

typedef struct {
    const sm_model *m;
    st_writer *w;
    int n_total, m_keep, k;
    const int *rows;     /* [m_keep] kept token rows, or NULL for all */
    float *buf;
    sm_progress *prog;
} cap_ctx;

static int write_rows(cap_ctx *c, const float *src, int cols)
{
    if (!c->rows)
        return st_writer_write_f32(c->w, src, (size_t)c->n_total * cols);
    for (int i = 0; i < c->m_keep; i++)
        memcpy(c->buf + (size_t)i * cols, src + (size_t)c->rows[i] * cols, sizeof(float) * (size_t)cols);
    return st_writer_write_f32(c->w, c->buf, (size_t)c->m_keep * cols);
}

static int on_moe(void *ctx, int layer, int n, const float *x, const float *logits, const int *topk, const float *topw)
{
    (void)layer;
    (void)topw;
    cap_ctx *c = ctx;
    const sm_config *cfg = sm_model_config(c->m);
    int E = sm_model_layer_experts(c->m, layer);
    if (n != c->n_total)
        return sm_err("internal: capture of %d tokens, expected %d", n, c->n_total);
    float *tk = sm_alloc_f32((size_t)n * c->k);
    if (!tk)
        return -1;
    for (size_t i = 0; i < (size_t)n * c->k; i++)
        tk[i] = (float)topk[i];
    int rc = write_rows(c, x, cfg->hidden) || write_rows(c, logits, E) || write_rows(c, tk, c->k) ? -1 : 0;
    free(tk);
    return rc;
}

static void on_layer(void *ctx, int l)
{
    cap_ctx *c = ctx;
    sm_progress_update(c->prog, (uint64_t)l + 1);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int sm_calib_write(const sm_model *m, const int32_t *ids, size_t n, const sm_calib_opts *o, const char *path)
{
    const sm_config *cfg = sm_model_config(m);
    if (o->samples < 1 || o->seq_len < 1)
        return sm_err("--samples and --seq-len must be positive");
    if (cfg->n_moe_layers < 1)
        return sm_err("%s: the model has no MoE layers to calibrate", sm_model_dir(m));
    uint64_t need = (uint64_t)o->samples * (uint64_t)o->seq_len;
    if (need > (uint64_t)INT32_MAX)
        return sm_err("%d samples x %d tokens is too many for one run", o->samples, o->seq_len);
    if (need > n)
        return sm_err("%s holds %zu tokens; %d samples x %d tokens need %" PRIu64, o->tokens_name ? o->tokens_name
                                                                                                    : "token file",
                      n, o->samples, o->seq_len, need);
    int total = (int)need;
    int keep = o->keep && o->keep < (size_t)total ? (int)o->keep : total;
    int *rows = NULL;
    if (keep < total) {
        int *perm = xmalloc(sizeof *perm * (size_t)total);
        for (int i = 0; i < total; i++)
            perm[i] = i;
        sm_rng r;
        sm_rng_seed(&r, o->seed);
        for (int i = 0; i < keep; i++) {
            int j = i + (int)sm_rng_below(&r, (uint64_t)(total - i));
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        qsort(perm, (size_t)keep, sizeof *perm, cmp_int);
        rows = perm;
    }

    st_writer *w = st_writer_new();
    char meta[64];
    int rc = -1;
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    float *buf = NULL;
    int maxc = cfg->hidden;
    for (int l = 0; l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        int E = sm_model_layer_experts(m, l);
        if (E > maxc)
            maxc = E;
        char name[96];
        int64_t sh[2] = {keep, cfg->hidden};
        snprintf(name, sizeof name, "layers.%d.moe_input", l);
        if (st_writer_declare(w, name, SM_DT_F32, 2, sh))
            goto out;
        sh[1] = E;
        snprintf(name, sizeof name, "layers.%d.router_logits", l);
        if (st_writer_declare(w, name, SM_DT_F32, 2, sh))
            goto out;
        sh[1] = cfg->top_k;
        snprintf(name, sizeof name, "layers.%d.topk", l);
        if (st_writer_declare(w, name, SM_DT_F32, 2, sh))
            goto out;
    }
    snprintf(meta, sizeof meta, "%016" PRIx64, sm_calib_fingerprint(m, ids, n, o));
    if (st_writer_meta(w, "format", "submoe-activations") || st_writer_meta(w, "version", "1") ||
        st_writer_meta(w, "fingerprint", meta) || st_writer_meta(w, "model", sm_model_dir(m)) ||
        st_writer_meta(w, "tokens", o->tokens_name ? o->tokens_name : ""))
        goto out;
    snprintf(meta, sizeof meta, "%d", o->samples);
    if (st_writer_meta(w, "samples", meta))
        goto out;
    snprintf(meta, sizeof meta, "%d", o->seq_len);
    if (st_writer_meta(w, "seq_len", meta))
        goto out;
    snprintf(meta, sizeof meta, "%d", keep);
    if (st_writer_meta(w, "rows", meta))
        goto out;
    snprintf(meta, sizeof meta, "%" PRIu64, o->seed);
    if (st_writer_meta(w, "seed", meta))
        goto out;
    if (rows && !(buf = sm_alloc_f32((size_t)keep * (size_t)maxc)))
        goto out;
    if (st_writer_begin(w, tmp))
        goto out;

    sm_progress prog;
    sm_progress_start(&prog, "calibrate", (uint64_t)cfg->n_layers, o->quiet);
    cap_ctx c = {.m = m, .w = w, .n_total = total, .m_keep = keep, .k = cfg->top_k, .rows = rows, .buf = buf,
                 .prog = &prog};
    sm_forward_opts fo;
    sm_forward_opts_init(&fo);
    fo.capture = on_moe;
    fo.capture_ctx = &c;
    fo.on_layer = on_layer;
    fo.on_layer_ctx = &c;
    /* capture only: the last MoE layer is the last layer we need */
    int last = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        if (cfg->is_moe[l])
            last = l;
    fo.stop_after_layer = last;
    int frc = sm_forward(m, ids, o->samples, o->seq_len, &fo);
    sm_progress_finish(&prog);
    if (frc || st_writer_finish(w))
        goto out;
    if (rename(tmp, path)) {
        sm_err("%s: cannot rename into place: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (rc)
        unlink(tmp);
    st_writer_free(w);
    free(tmp);
    free(rows);
    free(buf);
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
        *out = strtoull(fp, &end, 16);
        rc = *end ? sm_err("%s: malformed fingerprint", path) : 0;
    }
    st_close(f);
    return rc;
}
