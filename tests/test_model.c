/* Model loading: safetensors writer/reader round trip; synthetic models of every architecture
 * load identically in the per-expert layout, the fused layout and sharded; planted clusters
 * are really there. */
#include "model/model.h"
#include "model/synth.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "fixture.h"
#include "testutil.h"

#include <stdlib.h>
#include <unistd.h>

static char *tmpl; /* the scratch directory */

static char *make_synth(const sm_synth_opts *o, const char *tag)
{
    char *dir = xasprintf("%s/%s", tmpl, tag);
    if (fx_synth(o, dir) != 0) {
        printf("synth failed: %s\n", sm_errmsg());
        return NULL;
    }
    return dir;
}

static float *load(const sm_model *m, sm_wrole role, int layer, int idx, int64_t *n)
{
    sm_weight w;
    if (sm_model_weight(m, role, layer, idx, &w) != 0)
        return NULL;
    float *buf = xmalloc((size_t)(w.rows * w.cols) * sizeof *buf);
    sm_weight_to_f32(&w, buf);
    *n = w.rows * w.cols;
    return buf;
}

/* Compare every expert matrix and the router of every MoE layer of two models. */
static int same_experts(const sm_model *a, const sm_model *b)
{
    const sm_config *c = sm_model_config(a);
    int diffs = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int e = 0; e < sm_model_layer_experts(a, l); e++)
            for (sm_wrole r = SM_W_EXPERT_GATE; r <= SM_W_EXPERT_DOWN; r++) {
                int64_t na, nb;
                float *x = load(a, r, l, e, &na), *y = load(b, r, l, e, &nb);
                diffs += !x || !y || na != nb || memcmp(x, y, (size_t)na * 4) != 0;
                free(x);
                free(y);
            }
    return diffs;
}

static double cosine(const float *x, const float *y, int64_t n)
{
    double xy = 0, xx = 0, yy = 0;
    for (int64_t i = 0; i < n; i++) {
        xy += (double)x[i] * y[i];
        xx += (double)x[i] * x[i];
        yy += (double)y[i] * y[i];
    }
    return xy / sqrt(xx * yy);
}

static void test_writer_roundtrip(void)
{
    char *path = xasprintf("%s/rt.safetensors", tmpl);
    st_writer *w = st_writer_new();
    int64_t s1[2] = {3, 5}, s2[1] = {7}, s3[3] = {2, 0, 4};
    st_writer_meta(w, "format", "pt");
    CHECK(st_writer_declare(w, "a", SM_DT_F32, 2, s1) == 0, "declare a");
    CHECK(st_writer_declare(w, "b", SM_DT_BF16, 1, s2) == 0, "declare b");
    CHECK(st_writer_declare(w, "empty", SM_DT_F16, 3, s3) == 0, "declare zero-size tensor");
    CHECK(st_writer_declare(w, "a", SM_DT_F32, 2, s1) == 0, "declaring a twice is caught at begin");
    CHECK(st_writer_begin(w, path) != 0, "begin refuses duplicate names: %s", sm_errmsg());
    st_writer_free(w);
    w = st_writer_new();
    st_writer_meta(w, "format", "pt");
    st_writer_declare(w, "a", SM_DT_F32, 2, s1);
    st_writer_declare(w, "b", SM_DT_BF16, 1, s2);
    st_writer_declare(w, "empty", SM_DT_F16, 3, s3);
    float va[15], vb[7];
    for (int i = 0; i < 15; i++)
        va[i] = (float)i * 0.5f - 3;
    for (int i = 0; i < 7; i++)
        vb[i] = (float)i + 0.25f;
    CHECK(st_writer_begin(w, path) == 0, "begin");
    CHECK(st_writer_write_f32(w, va, 15) == 0 && st_writer_write_f32(w, vb, 7) == 0, "write");
    CHECK(st_writer_finish(w) == 0, "finish: %s", sm_errmsg());
    st_writer_free(w);
    st_file *f = st_open(path);
    CHECK(f != NULL, "reopen: %s", f ? "" : sm_errmsg());
    if (!f)
        return;
    CHECK(st_count(f) == 3, "3 tensors");
    CHECK_STR(st_metadata(f, "format"), "pt", "metadata format");
    const sm_tensor *a = st_find(f, "a"), *b = st_find(f, "b"), *z = st_find(f, "empty");
    CHECK(a && a->ndim == 2 && a->shape[0] == 3 && a->shape[1] == 5 && a->dtype == SM_DT_F32, "a shape/dtype");
    CHECK(b && b->dtype == SM_DT_BF16 && b->numel == 7, "b shape/dtype");
    CHECK(z && z->numel == 0 && z->nbytes == 0, "zero-size tensor");
    CHECK(st_find(f, "nope") == NULL, "missing name not found");
    float ra[15], rb[7];
    sm_to_f32(a->dtype, a->data, ra, 15);
    sm_to_f32(b->dtype, b->data, rb, 7);
    CHECK(memcmp(ra, va, sizeof va) == 0, "f32 data round trip");
    CHECK(memcmp(rb, vb, sizeof vb) == 0, "bf16 data round trip (exact values)");
    CHECK(((const char *)a->data - (const char *)st_tensor(f, 0)->data) == 0, "first tensor starts the data");
    st_close(f);
    free(path);
}

int main(void)
{
    if (!(tmpl = fx_tmpdir("submoe-test-model")))
        return 1;
    test_writer_roundtrip();
    for (int a = 0; a < SM_ARCH_COUNT; a++) {
        sm_synth_opts o;
        sm_synth_defaults(&o, (sm_arch)a);
        o.layers = 3;
        o.dtype = SM_DT_BF16;
        o.quiet = true;
        o.seed = 42 + (uint64_t)a;
        char tag[64];
        snprintf(tag, sizeof tag, "%s-per", sm_arch_name((sm_arch)a));
        char *d1 = make_synth(&o, tag);
        o.layout = SM_LAYOUT_FUSED;
        snprintf(tag, sizeof tag, "%s-fused", sm_arch_name((sm_arch)a));
        char *d2 = make_synth(&o, tag);
        o.layout = SM_LAYOUT_PER_EXPERT;
        o.shard_size = 20000;
        snprintf(tag, sizeof tag, "%s-sharded", sm_arch_name((sm_arch)a));
        char *d3 = make_synth(&o, tag);
        /* Same shapes in another dtype and with other values: same fingerprint. */
        o.shard_size = 0;
        o.dtype = SM_DT_F32;
        o.seed += 100;
        snprintf(tag, sizeof tag, "%s-f32", sm_arch_name((sm_arch)a));
        char *d4 = make_synth(&o, tag);
        o.dtype = SM_DT_BF16;
        o.seed -= 100;
        o.layers = 2;
        snprintf(tag, sizeof tag, "%s-2layers", sm_arch_name((sm_arch)a));
        char *d5 = make_synth(&o, tag);
        o.layers = 3;
        sm_model *m4 = d4 ? sm_model_open(d4) : NULL, *m5 = d5 ? sm_model_open(d5) : NULL;
        if (m4 && m5) {
            char fa[32], fb[32], fc[32];
            sm_model *m1b = sm_model_open(d1);
            sm_model_fingerprint(m1b, fa);
            sm_model_fingerprint(m4, fb);
            sm_model_fingerprint(m5, fc);
            CHECK(strcmp(fa, fb) == 0, "%s fingerprint ignores dtype and values", sm_arch_name((sm_arch)a));
            CHECK(strcmp(fa, fc) != 0, "%s fingerprint changes with the layer count", sm_arch_name((sm_arch)a));
            sm_model_close(m1b);
        }
        CHECK(m4 && m5, "f32 and 2-layer variants open");
        sm_model_close(m4);
        sm_model_close(m5);
        free(d4);
        free(d5);
        sm_model *m1 = d1 ? sm_model_open(d1) : NULL;
        CHECK(m1 != NULL, "%s per-expert opens %s", sm_arch_name((sm_arch)a), m1 ? "" : sm_errmsg());
        sm_model *m2 = d2 ? sm_model_open(d2) : NULL;
        CHECK(m2 != NULL, "%s fused opens %s", sm_arch_name((sm_arch)a), m2 ? "" : sm_errmsg());
        sm_model *m3 = d3 ? sm_model_open(d3) : NULL;
        CHECK(m3 != NULL, "%s sharded opens %s", sm_arch_name((sm_arch)a), m3 ? "" : sm_errmsg());
        if (m1 && m2 && m3) {
            CHECK(sm_model_layout(m1) == SM_LAYOUT_PER_EXPERT && sm_model_layout(m2) == SM_LAYOUT_FUSED,
                  "%s layouts detected", sm_arch_name((sm_arch)a));
            CHECK(sm_model_file_count(m3) > 1, "%s sharded into %d files", sm_arch_name((sm_arch)a),
                  sm_model_file_count(m3));
            CHECK(same_experts(m1, m2) == 0, "%s fused experts equal per-expert ones", sm_arch_name((sm_arch)a));
            CHECK(same_experts(m1, m3) == 0, "%s sharded experts equal single-file ones", sm_arch_name((sm_arch)a));
            CHECK(sm_model_param_count(m1) == sm_model_param_count(m2) &&
                      sm_model_param_count(m1) == sm_model_param_count(m3),
                  "%s parameter counts agree across layouts", sm_arch_name((sm_arch)a));
            /* Planted structure: within-cluster expert cosine far above across-cluster. */
            const sm_config *c = sm_model_config(m1);
            int L = c->n_layers - 1;
            int *cl = xmalloc((size_t)c->n_experts * sizeof *cl);
            sm_synth_assignment(&o, L, cl);
            double within = 1, across = 0;
            for (int i = 0; i < c->n_experts; i++)
                for (int j = i + 1; j < c->n_experts; j++) {
                    int64_t n;
                    float *x = load(m1, SM_W_EXPERT_UP, L, i, &n), *y = load(m1, SM_W_EXPERT_UP, L, j, &n);
                    double cs = cosine(x, y, n);
                    if (cl[i] == cl[j] && cs < within)
                        within = cs;
                    if (cl[i] != cl[j] && fabs(cs) > across)
                        across = fabs(cs);
                    free(x);
                    free(y);
                }
            CHECK(within > 0.99 && across < 0.2, "%s planted clusters: min within-cluster cosine %.4f, max across %.4f",
                  sm_arch_name((sm_arch)a), within, across);
            free(cl);
            /* Roles the architecture has, and does not have. */
            CHECK(sm_model_has(m1, SM_W_Q_BIAS, 0) == (a == SM_ARCH_QWEN2_MOE), "%s q bias presence",
                  sm_arch_name((sm_arch)a));
            CHECK(sm_model_has(m1, SM_W_Q_NORM, 0) == (a == SM_ARCH_QWEN3_MOE || a == SM_ARCH_OLMOE),
                  "%s q norm presence", sm_arch_name((sm_arch)a));
            CHECK(sm_model_has(m1, SM_W_SHARED_UP, L) == (a == SM_ARCH_QWEN2_MOE || a == SM_ARCH_DEEPSEEK),
                  "%s shared expert presence", sm_arch_name((sm_arch)a));
            CHECK(sm_model_has(m1, SM_W_DENSE_UP, 0) == (a == SM_ARCH_DEEPSEEK), "%s dense first layer",
                  sm_arch_name((sm_arch)a));
            sm_weight w;
            CHECK(sm_model_weight(m1, SM_W_EXPERT_GATE, L, c->n_experts, &w) != 0, "expert index out of range refused");
            char f1[32], f2[32], f3[32];
            sm_model_fingerprint(m1, f1);
            sm_model_fingerprint(m2, f2);
            sm_model_fingerprint(m3, f3);
            CHECK(strcmp(f1, f3) == 0, "%s fingerprint ignores sharding: %s", sm_arch_name((sm_arch)a), f1);
            CHECK(strcmp(f1, f2) != 0, "%s fingerprint tells the fused layout apart: %s", sm_arch_name((sm_arch)a), f2);
        }
        sm_model_close(m1);
        sm_model_close(m2);
        sm_model_close(m3);
        free(d1);
        free(d2);
        free(d3);
    }
    fx_tmpdir_remove(tmpl);
    return tu_done();
}
