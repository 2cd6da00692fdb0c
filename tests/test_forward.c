/* The built-in forward pass against the PyTorch reference fixtures (tools/ref_forward.py):
 * for every architecture and expert layout, regenerate the synth model from the fixture's command
 * line (plus the config.json keys the fixture sets after synth), run the same ids, and compare
 * logits (max |diff| <= 1e-3), MoE-block inputs, and top-k expert choices (identical except where
 * the reference's k-th and (k+1)-th router logits tie within 1e-6). Also checks that the fixtures
 * still cover what a wrong forward pass could get away with otherwise (norm weights that are not
 * all 1 and differ between norms, deepseek's routed_scaling_factor, qwen dense layers from
 * decoder_sparse_step and from mlp_only_layers), and the kernels against direct formulas. */
#include "cmd/cmd.h"
#include "pipeline/calib.h"
#include "forward/forward.h"
#include "model/model.h"
#include "model/synth.h"
#include "fixture.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/fileio.h"

#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#define MAXL 16

/* What the fixtures exercise, over all of them. */
static struct {
    int norms, routed_scaling, qwen_sparse_step, qwen_mlp_only;
} cover;

typedef struct {
    int k, H;
    float *x[MAXL];
    int *topk[MAXL];
    int n[MAXL];
} capture;

static int on_moe(void *ctx, int layer, int n, const float *x, const float *logits, const int *topk, const float *topw)
{
    (void)logits;
    (void)topw;
    capture *c = ctx;
    if (layer >= MAXL)
        return 0;
    c->n[layer] = n;
    c->x[layer] = malloc(sizeof(float) * (size_t)n * c->H);
    c->topk[layer] = malloc(sizeof(int) * (size_t)n * c->k);
    memcpy(c->x[layer], x, sizeof(float) * (size_t)n * c->H);
    memcpy(c->topk[layer], topk, sizeof(int) * (size_t)n * c->k);
    return 0;
}

static double max_diff(json_t *ref, const float *got, size_t n, int *bad_len)
{
    *bad_len = json_array_size(ref) != n;
    double md = 0;
    for (size_t i = 0; i < n && !*bad_len; i++) {
        double d = fabs(json_number_value(json_array_get(ref, i)) - got[i]);
        if (d > md || isnan(d))
            md = isnan(d) ? INFINITY : d;
    }
    return md;
}

/* max |w - 1| of a norm weight (its values are left in *keep); -1 when the model has none */
static double norm_dev(const sm_model *m, sm_wrole role, int layer, float **keep, int64_t *len)
{
    sm_weight w;
    if (!sm_model_has(m, role, layer) || sm_model_weight(m, role, layer, 0, &w))
        return -1;
    int64_t n = w.rows * w.cols;
    float *v = malloc(sizeof(float) * (size_t)n);
    sm_weight_to_f32(&w, v);
    double d = 0;
    for (int64_t i = 0; i < n; i++)
        d = fmax(d, fabs(v[i] - 1.0));
    *keep = v;
    *len = n;
    return d;
}

static void cover_features(const sm_model *m, const char *what)
{
    const sm_config *c = sm_model_config(m);
    /* Every norm is 1 ± noise and no two of a layer are equal: using the wrong one shows. */
    static const sm_wrole roles[] = {SM_W_ATTN_NORM, SM_W_FFN_NORM, SM_W_Q_NORM, SM_W_K_NORM};
    int good = 1, seen = 0;
    for (int L = -1; L < c->n_layers; L++) {
        float *v[4] = {0};
        int64_t n[4] = {0};
        for (int r = 0; r < (L < 0 ? 1 : 4); r++) {
            double d = norm_dev(m, L < 0 ? SM_W_FINAL_NORM : roles[r], L < 0 ? -1 : L, &v[r], &n[r]);
            if (d >= 0) {
                seen++;
                good &= d > 0.05;
            }
        }
        for (int a = 0; a < 4; a++)
            for (int b = a + 1; b < 4; b++)
                if (v[a] && v[b] && n[a] == n[b])
                    good &= memcmp(v[a], v[b], sizeof(float) * (size_t)n[a]) != 0;
        for (int r = 0; r < 4; r++)
            free(v[r]);
    }
    CHECK(good && seen >= 2 * c->n_layers + 1, "%s: %d norm weights, none all 1, none equal to another", what,
          seen);
    cover.norms += good;
    if (c->arch == SM_ARCH_DEEPSEEK && c->routed_scaling != 1.0)
        cover.routed_scaling++;
    if (c->arch == SM_ARCH_QWEN2_MOE || c->arch == SM_ARCH_QWEN3_MOE) {
        /* dense layers, by the key that makes them dense */
        char p[600];
        snprintf(p, sizeof p, "%s/config.json", sm_model_dir(m));
        json_t *cfg = json_load_file(p, 0, NULL);
        json_int_t step = json_integer_value(json_object_get(cfg, "decoder_sparse_step"));
        int by_step = 0, by_list = 0;
        for (int L = 0; L < c->n_layers; L++)
            if (!c->is_moe[L] && step > 1 && (L + 1) % step)
                by_step++;
            else if (!c->is_moe[L])
                by_list++;
        cover.qwen_sparse_step += by_step > 0;
        cover.qwen_mlp_only += by_list > 0;
        json_decref(cfg);
    }
}

static void run_fixture(const char *arch, const char *layout)
{
    char what[128];
    snprintf(what, sizeof what, "%s/%s", arch, layout);
    json_t *fx = fx_reference("fwd-%s-%s", arch, layout);
    CHECK(fx != NULL, "%s: the reference fixture loads", what);
    if (!fx)
        return;

    char *tmp = fx_tmpdir("test_forward");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/model", tmp ? tmp : "/nonexistent");
    int rc = fx_synth_reference(fx, dir);
    CHECK(rc != 1, "%s: synth regenerates the model", what);
    if (json_object_size(json_object_get(fx, "config")))
        CHECK(rc == 0, "%s: config.json patched", what);

    sm_model *m = sm_model_open(dir);
    CHECK(m != NULL, "%s: model opens %s", what, m ? "" : sm_errmsg());
    if (m) {
        const sm_config *c = sm_model_config(m);
        cover_features(m, what);
        int n_seq = (int)json_integer_value(json_object_get(fx, "n_seq"));
        int T = (int)json_integer_value(json_object_get(fx, "seq_len"));
        size_t n = (size_t)n_seq * T;
        json_t *jids = json_object_get(fx, "ids");
        int32_t *ids = malloc(sizeof *ids * n);
        for (size_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
        float *logits = malloc(sizeof(float) * n * c->vocab);
        capture cap = {.k = c->top_k, .H = c->hidden};
        sm_forward_opts o;
        sm_forward_opts_init(&o);
        o.logits = logits;
        o.capture = on_moe;
        o.capture_ctx = &cap;
        rc = sm_forward(m, ids, n_seq, T, &o);
        CHECK(rc == 0, "%s: forward runs %s", what, rc ? sm_errmsg() : "");
        int bad;
        double md = max_diff(json_object_get(fx, "logits"), logits, n * c->vocab, &bad);
        CHECK(!bad && md <= 1e-3, "%s: max |logit diff| %.3g <= 1e-3", what, md);
        printf("# %s max_logit_diff %.3g\n", what, md);

        /* The perplexity path (nll accumulated inside the head) against the reference logits. */
        double nll = 0, want = 0;
        uint64_t cnt = 0;
        sm_forward_opts_init(&o);
        o.nll_sum = &nll;
        o.nll_count = &cnt;
        CHECK(sm_forward(m, ids, n_seq, T, &o) == 0, "%s: forward (nll)", what);
        json_t *jl = json_object_get(fx, "logits");
        for (int s = 0; s < n_seq; s++)
            for (int t = 0; t + 1 < T; t++) {
                size_t row = ((size_t)s * T + t) * c->vocab;
                double z = 0;
                for (int v = 0; v < c->vocab; v++)
                    z += exp(json_number_value(json_array_get(jl, row + v)));
                want += log(z) - json_number_value(json_array_get(jl, row + ids[(size_t)s * T + t + 1]));
            }
        CHECK(cnt == (uint64_t)n_seq * (T - 1), "%s: %llu predicted tokens", what, (unsigned long long)cnt);
        CHECK_NEAR(nll / cnt, want / cnt, 1e-5, "mean nll vs reference logits");

        const char *key;
        json_t *lj;
        int layers_seen = 0;
        json_object_foreach(json_object_get(fx, "moe"), key, lj) {
            int L = atoi(key);
            layers_seen++;
            if (L >= MAXL || !cap.x[L]) {
                CHECK(0, "%s: layer %d captured", what, L);
                continue;
            }
            double mx = max_diff(json_object_get(lj, "input"), cap.x[L], n * c->hidden, &bad);
            CHECK(!bad && mx <= 1e-4, "%s: layer %d MoE inputs max diff %.3g", what, L, mx);
            json_t *rl = json_object_get(lj, "router_logits"), *tk = json_object_get(lj, "topk");
            int E = (int)json_integer_value(json_object_get(lj, "experts")), k = c->top_k;
            int mismatch = 0, ties = 0;
            for (size_t t = 0; t < n; t++) {
                /* reference k-th and (k+1)-th largest logits */
                double v[64];
                for (int e = 0; e < E && e < 64; e++)
                    v[e] = json_number_value(json_array_get(rl, t * E + e));
                for (int a = 0; a < E; a++)
                    for (int b = a + 1; b < E; b++)
                        if (v[b] > v[a]) {
                            double s = v[a];
                            v[a] = v[b];
                            v[b] = s;
                        }
                int tie = k < E && v[k - 1] - v[k] < 1e-6;
                for (int j = 0; j < k; j++) {
                    int want = (int)json_integer_value(json_array_get(tk, t * k + j)), found = 0;
                    for (int i = 0; i < k; i++)
                        found |= cap.topk[L][t * k + i] == want;
                    if (!found)
                        tie ? ties++ : mismatch++;
                }
            }
            CHECK(mismatch == 0, "%s: layer %d top-k choices identical (%d differ, %d excused by ties)", what, L,
                  mismatch, ties);
        }
        /* The activations file holds the same MoE inputs and top-k choices. */
        char act[300];
        snprintf(act, sizeof act, "%s/act.safetensors", tmp);
        char tokf[300];
        snprintf(tokf, sizeof tokf, "%s/ids.u32", tmp);
        FILE *tf = fopen(tokf, "wb");
        for (size_t t = 0; tf && t < n; t++) {
            uint32_t u = (uint32_t)ids[t];
            fwrite(&u, sizeof u, 1, tf);
        }
        CHECK(tf && fclose(tf) == 0, "%s: token file written", what);
        sm_calib_spec cs;
        fx_calib_spec(&cs, tokf, n_seq, T);
        cs.keep = 0;
        sm_calib *cal = sm_calib_capture(m, &cs, act, NULL, NULL);
        CHECK(cal != NULL, "%s: stats file written %s", what, cal ? "" : sm_errmsg());
        sm_calib_free(cal);
        st_file *af = st_open(act);
        CHECK(af != NULL, "%s: activations file opens %s", what, af ? "" : sm_errmsg());
        json_object_foreach(json_object_get(fx, "moe"), key, lj) {
            char name[64];
            snprintf(name, sizeof name, "layers.%s.moe_input", key);
            const sm_tensor *at = af ? st_find(af, name) : NULL;
            CHECK(at && at->shape[0] == (int64_t)n && at->shape[1] == c->hidden, "%s: %s [%zu, %d]", what, name, n,
                  c->hidden);
            if (at) {
                double mx = max_diff(json_object_get(lj, "input"), at->data, n * c->hidden, &bad);
                CHECK(!bad && mx <= 1e-4, "%s: %s matches the reference (%.3g)", what, name, mx);
            }
            snprintf(name, sizeof name, "layers.%s.topk", key);
            at = af ? st_find(af, name) : NULL;
            CHECK(at && at->shape[1] == c->top_k, "%s: %s present", what, name);
        }
        if (af)
            st_close(af);
        CHECK(layers_seen == c->n_moe_layers, "%s: %d MoE layers in the fixture", what, layers_seen);
        for (int L = 0; L < MAXL; L++) {
            free(cap.x[L]);
            free(cap.topk[L]);
        }
        free(ids);
        free(logits);
        sm_model_close(m);
    }
    fx_tmpdir_remove(tmp);
    json_decref(fx);
}

static void test_kernels(void)
{
    float x[4] = {1, -2, 3, 0.5f}, w[4] = {1, 2, 0.5f, -1}, y[4];
    sm_rmsnorm(y, x, w, 4, 1e-6f);
    double ms = (1 + 4 + 9 + 0.25) / 4;
    CHECK_NEAR(y[1], 2 * -2 / sqrt(ms + 1e-6), 1e-6, "rmsnorm");
    /* rope: head_dim 4, position 3: pairs (0,2) and (1,3) */
    float r[4] = {1, 2, 3, 4};
    sm_rope(r, 1, 1, 4, 10000.0, 3);
    double a0 = 3.0, a1 = 3.0 / 100.0;
    CHECK_NEAR(r[0], 1 * cos(a0) - 3 * sin(a0), 1e-6, "rope dim 0");
    CHECK_NEAR(r[2], 3 * cos(a0) + 1 * sin(a0), 1e-6, "rope dim 2");
    CHECK_NEAR(r[1], 2 * cos(a1) - 4 * sin(a1), 1e-6, "rope dim 1");
}

/* Chunked layers (bounded memory) give the same results as the whole batch at once. */
typedef struct {
    int64_t rows;
    double sum;
    int calls;
} chunk_acc;

static int acc_whole(void *ctx, int layer, int n, const float *x, const float *lg, const int *tk, const float *tw)
{
    (void)lg, (void)tk, (void)tw;
    chunk_acc *a = (chunk_acc *)ctx + layer;
    for (int64_t i = 0; i < (int64_t)n * 128; i++)
        a->sum += x[i];
    a->rows += n;
    a->calls++;
    return 0;
}

static int acc_chunk(void *ctx, int layer, int64_t row0, int64_t n, int64_t total, const float *x, const float *lg,
                     const int *tk, const float *tw)
{
    chunk_acc *a = (chunk_acc *)ctx + layer;
    if (row0 != a->rows || row0 + n > total)
        return sm_err("chunk rows out of order");
    return acc_whole(ctx, layer, (int)n, x, lg, tk, tw);
}

static void test_chunks(void)
{
    sm_model *m = fx_demo_open();
    CHECK(m != NULL, "demo opens for the chunk test");
    if (!m)
        return;
    enum { NS = 6, T = 64 };
    int32_t ids[NS * T];
    for (int i = 0; i < NS * T; i++)
        ids[i] = (i * 37 + 11) % 256;
    chunk_acc whole[8] = {{0}}, chunked[8] = {{0}};
    double nll_w = 0, nll_c = 0;
    uint64_t cnt_w = 0, cnt_c = 0;
    sm_forward_opts o;
    sm_forward_opts_init(&o);
    o.capture = acc_whole;
    o.capture_ctx = whole;
    o.nll_sum = &nll_w;
    o.nll_count = &cnt_w;
    int rw = sm_forward(m, ids, NS, T, &o);
    sm_forward_opts_init(&o);
    o.capture_chunk = acc_chunk;
    o.capture_ctx = chunked;
    o.chunk_tokens = 2 * T + 5; /* two sequences per chunk */
    o.nll_sum = &nll_c;
    o.nll_count = &cnt_c;
    int rc = sm_forward(m, ids, NS, T, &o);
    CHECK(rw == 0 && rc == 0, "whole and chunked runs");
    CHECK(whole[1].calls == 1 && chunked[1].calls == 3 && chunked[1].rows == NS * T,
          "chunks of two sequences: 3 calls covering all %d rows", NS * T);
    CHECK_NEAR(chunked[3].sum, whole[3].sum, 1e-5, "layer 3 inputs: chunked = whole");
    CHECK(cnt_c == cnt_w && fabs(nll_c - nll_w) <= 1e-5 * fabs(nll_w), "nll chunked %.9g = whole %.9g", nll_c,
          nll_w);
    sm_model_close(m);
}

/* synth's mlp_only_layers (no command-line option): the listed qwen layers are dense, with the
 * same weights as the layout --sparse-step gives, and the config says so. */
static void test_synth_mlp_only(void)
{
    char *tmp = fx_tmpdir("test_forward");
    char a[300], b[300], x[340]; /* x: a or b and a file name */
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(b, sizeof b, "%s/b", tmp);
    int list[] = {0, 2};
    sm_synth_opts o;
    sm_synth_defaults(&o, SM_ARCH_QWEN3_MOE);
    o.layers = 3, o.hidden = 16, o.intermediate = 8, o.experts = 4, o.vocab = 32, o.dense_intermediate = 24;
    o.quiet = true;
    o.mlp_only_layers = list;
    o.n_mlp_only_layers = 2;
    int ra = fx_synth(&o, a);
    sm_synth_opts s = o;
    s.mlp_only_layers = NULL, s.n_mlp_only_layers = 0, s.sparse_step = 2;
    int rb = fx_synth(&s, b);
    CHECK(ra == 0 && rb == 0, "synth with mlp_only_layers [0, 2] and with --sparse-step 2");
    sm_model *m = sm_model_open(a);
    CHECK(m != NULL, "the mlp_only_layers model opens %s", m ? "" : sm_errmsg());
    if (m) {
        const bool *moe = sm_model_config(m)->is_moe;
        CHECK(!moe[0] && moe[1] && !moe[2], "layers 0 and 2 dense, 1 MoE");
        sm_model_close(m);
    }
    size_t na = 0, nb = 0;
    snprintf(x, sizeof x, "%s/model.safetensors", a);
    char *da = sm_read_file(x, 1 << 24, &na);
    snprintf(x, sizeof x, "%s/model.safetensors", b);
    char *db = sm_read_file(x, 1 << 24, &nb);
    CHECK(da && db && na == nb && memcmp(da, db, na) == 0, "the same weights as --sparse-step 2 (%zu bytes)", na);
    free(da), free(db);
    snprintf(x, sizeof x, "%s/config.json", a);
    json_t *cfg = json_load_file(x, 0, NULL);
    json_t *mo = json_object_get(cfg, "mlp_only_layers");
    CHECK(json_array_size(mo) == 2 && json_integer_value(json_array_get(mo, 1)) == 2, "config mlp_only_layers [0, 2]");
    json_decref(cfg);
    list[1] = 3;
    CHECK(sm_synth_check(&o) != 0, "mlp_only_layers 3 of 3 layers refused: %s", sm_errmsg());
    list[1] = 2;
    sm_synth_defaults(&s, SM_ARCH_MIXTRAL);
    s.mlp_only_layers = list, s.n_mlp_only_layers = 1;
    CHECK(sm_synth_check(&s) != 0, "mlp_only_layers for mixtral refused: %s", sm_errmsg());
    fx_tmpdir_remove(tmp);
}

int main(void)
{
    test_kernels();
    test_chunks();
    test_synth_mlp_only();
    static const char *const archs[] = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek"};
    static const char *const layouts[] = {"per-expert", "fused"};
    for (int a = 0; a < 5; a++)
        for (int l = 0; l < 2; l++)
            run_fixture(archs[a], layouts[l]);
    CHECK(cover.norms == 10, "random norm weights in all %d fixtures", cover.norms);
    CHECK(cover.routed_scaling == 2, "routed_scaling_factor != 1 in %d deepseek fixtures", cover.routed_scaling);
    CHECK(cover.qwen_sparse_step >= 2, "qwen dense layers from decoder_sparse_step in %d fixtures",
          cover.qwen_sparse_step);
    CHECK(cover.qwen_mlp_only >= 2, "qwen dense layers from mlp_only_layers in %d fixtures", cover.qwen_mlp_only);
    return tu_done();
}
