/* test_calib: calibration capture, the stats file cache, foreign activations files, and the
 * engine's clustering recovering planted clusters of synth models end to end (model files →
 * forward pass → statistics → k-means / hierarchical). */
#include "engine/engine.h"
#include "forward/moelayer.h"
#include "model/st.h"
#include "model/synth.h"
#include "pipeline/calib.h"
#include "util/diag.h"
#include "util/rng.h"
#include "fixture.h"
#include "testutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp; /* the scratch directory */

static void write_tokens(const char *path, int n, int vocab, uint64_t seed)
{
    FILE *f = fopen(path, "wb");
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int i = 0; f && i < n; i++) {
        uint32_t u = (uint32_t)sm_rng_below(&r, (uint64_t)vocab);
        fwrite(&u, sizeof u, 1, f);
    }
    if (f)
        fclose(f);
}

static int same_analysis(const sm_layer_analysis *a, const sm_layer_analysis *b)
{
    if (a->n != b->n || a->sampled != b->sampled || a->hidden != b->hidden || a->tokens != b->tokens)
        return 0;
    int n = a->n;
    for (int i = 0; i < n; i++)
        if (a->counts[i] != b->counts[i] || a->freq[i] != b->freq[i])
            return 0;
    for (int i = 0; i < n * n; i++)
        if (a->sim_output[i] != b->sim_output[i] || a->sim_logit[i] != b->sim_logit[i] ||
            a->sim_weight[i] != b->sim_weight[i])
            return 0;
    return memcmp(a->outputs, b->outputs, sizeof(float) * (size_t)(n * a->sampled * a->hidden)) == 0;
}

/* Copy a safetensors file with its JSON header padded by trailing spaces so that the data
 * section starts at an odd offset (8 + header length ≡ 1 mod 4): every tensor is then only
 * byte-aligned, which the format allows. 0 on success. */
static int write_misaligned_copy(const char *src, const char *dst)
{
    FILE *f = fopen(src, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = size > 8 ? malloc((size_t)size) : NULL;
    int ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    uint64_t hlen = 0;
    for (int i = 7; ok && i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    ok = ok && hlen <= (uint64_t)size - 8;
    FILE *o = ok ? fopen(dst, "wb") : NULL;
    if (o) {
        uint64_t pad = 1;
        while ((8 + hlen + pad) % 4 != 1)
            pad++;
        unsigned char len[8];
        for (int i = 0; i < 8; i++)
            len[i] = (unsigned char)((hlen + pad) >> (8 * i));
        ok = fwrite(len, 1, 8, o) == 8 && fwrite(buf + 8, 1, (size_t)hlen, o) == hlen;
        for (uint64_t i = 0; ok && i < pad; i++)
            ok = fputc(' ', o) != EOF;
        ok = ok && fwrite(buf + 8 + hlen, 1, (size_t)size - 8 - hlen, o) == (size_t)size - 8 - hlen;
        ok = fclose(o) == 0 && ok;
    }
    free(buf);
    return ok && o ? 0 : -1;
}

/* Copy a stats file without its saliency tensors (a file written before them), or with every
 * saliency replaced by `bad` when bad is not 0. 0 on success. */
static int copy_stats_saliency(const char *src, const char *dst, float bad)
{
    static const char *const keys[] = {"format", "version", "fingerprint", "model_fingerprint", "model", "tokens",
                                       "samples", "seq_len", "rows", "heldout", "sample", "seed"};
    st_file *f = st_open(src);
    if (!f)
        return -1;
    st_writer *w = st_writer_new();
    int ok = 1;
    for (size_t i = 0; ok && i < st_count(f); i++) {
        const sm_tensor *t = st_tensor(f, i);
        if (!bad && strstr(t->name, ".saliency"))
            continue;
        ok = st_writer_declare(w, t->name, t->dtype, t->ndim, t->shape) == 0;
    }
    for (size_t k = 0; ok && k < sizeof keys / sizeof keys[0]; k++)
        if (st_metadata(f, keys[k]))
            ok = st_writer_meta(w, keys[k], st_metadata(f, keys[k])) == 0;
    ok = ok && st_writer_begin(w, dst) == 0;
    for (size_t i = 0; ok && i < st_count(f); i++) {
        const sm_tensor *t = st_tensor(f, i);
        if (!strstr(t->name, ".saliency")) {
            ok = st_writer_write(w, t->data, (size_t)t->nbytes) == 0;
        } else if (bad) {
            float *v = malloc((size_t)t->nbytes);
            for (uint64_t j = 0; v && j < t->numel; j++)
                v[j] = bad;
            ok = v && st_writer_write_f32(w, v, (size_t)t->numel) == 0;
            free(v);
        }
    }
    ok = ok && st_writer_finish(w) == 0;
    st_writer_free(w);
    st_close(f);
    return ok ? 0 : -1;
}

/* REAP saliencies (engine/saliency.h) in the stats file: stored by the capture and identical to
 * a fresh computation; a file written before them still reads, computes them from the layer's
 * experts (bit for bit what the capture stores) and has none without the experts; a malformed
 * one is refused, naming the tensor. */
static void test_saliency_stats(sm_model *m, sm_calib *c, const char *stats)
{
    const sm_config *cfg = sm_model_config(m);
    char old[300], bad[300];
    snprintf(old, sizeof old, "%s/old.stats", tmp);
    snprintf(bad, sizeof bad, "%s/bad-saliency.stats", tmp);
    CHECK(copy_stats_saliency(stats, old, 0) == 0 && copy_stats_saliency(stats, bad, -1.0f) == 0,
          "stats copied without saliencies and with negative ones");
    sm_calib *co = sm_calib_read(m, old, -1);
    CHECK(co && sm_calib_has_stats(co), "a stats file without saliencies reads, with statistics %s",
          co ? "" : sm_errmsg());
    for (int l = 0; c && co && l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        const sm_layer_analysis *stored = NULL, *none = NULL, *recomputed = NULL, *fresh = NULL;
        sm_moe_layer ml;
        if (sm_moe_layer_load(m, l, &ml))
            continue;
        CHECK(sm_calib_analysis(c, l, NULL, false, NULL, &stored) == 0 && stored->saliency,
              "layer %d: the stats file stores saliencies", l);
        double pos = 0;
        for (int i = 0; stored && stored->saliency && i < stored->n; i++)
            pos += stored->saliency[i] > 0 && stored->counts[i] > 0;
        CHECK(stored && pos > 0, "layer %d: routed experts have positive saliency", l);
        CHECK(sm_calib_analysis(co, l, NULL, false, NULL, &none) == 0 && !none->saliency,
              "layer %d: an old file read without the experts has none", l);
        CHECK(sm_calib_analysis(co, l, &ml.block, false, NULL, &recomputed) == 0 && recomputed->saliency &&
                  stored && stored->saliency &&
                  !memcmp(recomputed->saliency, stored->saliency, sizeof(double) * (size_t)stored->n),
              "layer %d: an old file computes them from the experts, identical to the stored ones", l);
        /* the same rows (its own split) computed from scratch by the analysis */
        sm_calib *cs = sm_calib_read(m, stats, -1);
        CHECK(cs && sm_calib_analysis(cs, l, &ml.block, true, NULL, &fresh) == 0 && fresh->saliency && stored &&
                  !memcmp(fresh->saliency, stored->saliency, sizeof(double) * (size_t)stored->n),
              "layer %d: a fresh analysis gives the stored saliencies exactly", l);
        sm_calib_free(cs);
        sm_moe_layer_free(&ml);
    }
    sm_calib_free(co);
    sm_err_clear();
    sm_calib *cb = sm_calib_read(m, bad, -1);
    CHECK(!cb && strstr(sm_errmsg(), "bad-saliency.stats") && strstr(sm_errmsg(), "saliency': entry 0"),
          "a negative saliency is refused: %s", sm_errmsg());
    sm_calib_free(cb);
}

/* A foreign activations file of more rows than SM_CALIB_MAX_ROWS: sm_calib_inputs gives a
 * bounded, evenly spaced sample of fit and held-out rows (reported by sm_calib_rows), while the
 * statistics still cover every fit row, streamed from the file: they equal sm_engine_analyse
 * on all fit rows in memory, bit for bit. */
static void test_large_foreign(sm_model *m)
{
    const sm_config *cfg = sm_model_config(m);
    const int64_t rows = 10000, H = cfg->hidden; /* more than SM_CALIB_MAX_ROWS; a quarter held out */
    float *x = malloc(sizeof(float) * (size_t)(rows * H));
    sm_rng r;
    sm_rng_seed(&r, 99);
    for (int64_t i = 0; i < rows * H; i++)
        x[i] = (float)sm_rng_normal(&r);
    char path[300];
    snprintf(path, sizeof path, "%s/large.st", tmp);
    st_writer *w = st_writer_new();
    int64_t sh[2] = {rows, H};
    for (int l = 0; l < cfg->n_layers; l++)
        if (cfg->is_moe[l]) {
            char name[64];
            snprintf(name, sizeof name, "layers.%d.moe_input", l);
            st_writer_declare(w, name, SM_DT_F32, 2, sh);
        }
    int ok = st_writer_begin(w, path) == 0;
    for (int l = 0; ok && l < cfg->n_layers; l++)
        if (cfg->is_moe[l])
            ok = st_writer_write_f32(w, x, (size_t)(rows * H)) == 0;
    ok = ok && st_writer_finish(w) == 0;
    st_writer_free(w);
    sm_calib *c = ok ? sm_calib_read(m, path, -1) : NULL;
    CHECK(c != NULL, "activations file of %lld rows reads %s", (long long)rows, c ? "" : sm_errmsg());
    if (!c) {
        free(x);
        return;
    }
    const int64_t F = rows - rows / 4, HO = rows / 4;
    const float *fit, *held;
    int64_t mf = 0, mh = 0, fr = 0, hr = 0, fu = 0, hu = 0;
    /* SM_CALIB_MAX_ROWS rows split like the file: floor(MAX · 2500 / 10000) held out (2048 of
     * 8192), the rest fit (6144). */
    const int64_t want_h = SM_CALIB_MAX_ROWS * HO / rows, want_f = SM_CALIB_MAX_ROWS - want_h;
    CHECK(SM_CALIB_MAX_ROWS < rows && sm_calib_inputs(c, 1, &fit, &mf, &held, &mh) == 0 && mf == want_f &&
              mh == want_h,
          "inputs bounded to SM_CALIB_MAX_ROWS = %d: %lld fit + %lld held-out rows", SM_CALIB_MAX_ROWS,
          (long long)mf, (long long)mh);
    CHECK(sm_calib_rows(c, 1, &fr, &hr, &fu, &hu) == 0 && fr == F && hr == HO && fu == mf && hu == mh,
          "sm_calib_rows reports %lld of %lld fit and %lld of %lld held-out rows used", (long long)fu,
          (long long)fr, (long long)hu, (long long)hr);
    int same = mf == want_f && mh == want_h;
    for (int64_t j = 0; same && j < mf; j++)
        same = !memcmp(fit + j * H, x + (j * F / mf) * H, sizeof(float) * (size_t)H);
    for (int64_t j = 0; same && j < mh; j++)
        same = !memcmp(held + j * H, x + (F + j * HO / mh) * H, sizeof(float) * (size_t)H);
    CHECK(same, "the sample is rows j·F/n of the fit part and F + j·H/n of the held-out part");
    sm_moe_layer ml;
    const sm_layer_analysis *a = NULL;
    sm_layer_analysis ref;
    CHECK(sm_moe_layer_load(m, 1, &ml) == 0, "layer 1 loads");
    sm_analysis_opts ao = {.sample = 512, .grams = true, .weight_sim = true};
    int rc = sm_calib_analysis(c, 1, &ml.block, true, NULL, &a);
    rc |= sm_engine_analyse(&ml.block, x, F, &ao, NULL, &ref);
    CHECK(rc == 0 && a->tokens == F, "statistics cover all %lld fit rows (%lld)", (long long)F,
          rc ? -1LL : (long long)a->tokens);
    if (rc == 0) {
        int grams = 1;
        for (int e = 0; e < ref.n; e++)
            grams &= !memcmp(a->gram_in[e], ref.gram_in[e], sizeof(float) * (size_t)(H * H)) &&
                     !memcmp(a->gram_mid[e], ref.gram_mid[e], sizeof(float) * (size_t)(ref.inter * ref.inter));
        /* sm_calib_analysis rounds similarities to float (the file's precision): do the same. */
        for (int i = 0; i < ref.n * ref.n; i++) {
            ref.sim_output[i] = (float)ref.sim_output[i];
            ref.sim_logit[i] = (float)ref.sim_logit[i];
            ref.sim_weight[i] = (float)ref.sim_weight[i];
        }
        CHECK(same_analysis(a, &ref) && grams,
              "streamed from the file = sm_engine_analyse on every fit row in memory (bit for bit, Grams too)");
        sm_layer_analysis_free(&ref);
    }
    sm_moe_layer_free(&ml);
    sm_calib_free(c);
    free(x);
}

/* The demo: a capture's statistics read back from the stats file equal a fresh computation. */
/* A layer loaded in bf16 as stored (sm_moe_layer_load_bf16; the demo is BF16) holds exactly the
 * bf16 copies that packing its fp32 conversion gives, and no fp32 routed matrices; the weight
 * similarity read from them equals the fp32 one bit for bit; a layer loaded on one thread or on
 * three (SUBMOE_THREADS) is the same. */
static int same_f32(const float *a, const float *b, int64_t n) { return a && b && !memcmp(a, b, sizeof *a * (size_t)n); }

static void test_bf16_layer_load(sm_model *m)
{
    const sm_config *cfg = sm_model_config(m);
    for (int l = 0; l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        sm_moe_layer f32, raw, one;
        sm_moe_bf16 packed;
        setenv("SUBMOE_THREADS", "3", 1);
        int rf = sm_moe_layer_load(m, l, &f32), rr = sm_moe_layer_load_bf16(m, l, NULL, &raw);
        setenv("SUBMOE_THREADS", "1", 1);
        int ro = sm_moe_layer_load(m, l, &one);
        unsetenv("SUBMOE_THREADS");
        int rp = rf == 0 ? sm_moe_bf16_make(&f32.block, &packed) : -1;
        CHECK(rf == 0 && rr == 0 && ro == 0 && rp == 0, "layer %d loads in fp32, bf16 as stored, on one thread", l);
        if (rf || rr || ro || rp)
            continue;
        int n = f32.block.n_experts, same16 = raw.block.n_experts == n, nof32 = 1, same1 = 1;
        for (int e = 0; e < n && same16; e++) {
            const sm_linear *a[3] = {&packed.experts[e].gate, &packed.experts[e].up, &packed.experts[e].down};
            const sm_linear *b[3] = {&raw.experts[e].gate, &raw.experts[e].up, &raw.experts[e].down};
            const sm_linear *c[3] = {&f32.experts[e].gate, &f32.experts[e].up, &f32.experts[e].down};
            const sm_linear *d[3] = {&one.experts[e].gate, &one.experts[e].up, &one.experts[e].down};
            for (int k = 0; k < 3; k++) {
                size_t len = (size_t)(a[k]->out * a[k]->in);
                same16 &= a[k]->wb && b[k]->wb && b[k]->out == a[k]->out && b[k]->in == a[k]->in &&
                          !memcmp(a[k]->wb, b[k]->wb, len * sizeof(uint16_t));
                nof32 &= !b[k]->w;
                same1 &= same_f32(c[k]->w, d[k]->w, (int64_t)len);
            }
        }
        CHECK(same16, "layer %d: the bf16 copies as stored equal the packed fp32 conversion", l);
        CHECK(nof32, "layer %d: no fp32 routed matrices when loaded in bf16 as stored", l);
        CHECK(same1 && same_f32(f32.router, one.router, (int64_t)n * cfg->hidden),
              "layer %d: one thread's load equals three threads'", l);
        CHECK(sm_moe_block_is_bf16(&raw.block) && sm_moe_block_is_bf16(&packed.block) &&
                  !sm_moe_block_is_bf16(&f32.block),
              "layer %d: blocks with bf16 copies say so, the fp32 one does not", l);
        const float **fs = calloc((size_t)n * 3, sizeof *fs);
        const uint16_t **bs = calloc((size_t)n * 3, sizeof *bs);
        double *sf = calloc((size_t)n * n, sizeof *sf), *sb = calloc((size_t)n * n, sizeof *sb);
        for (int e = 0; fs && bs && e < n; e++) {
            const sm_expert *fe = &f32.experts[e], *be = &raw.experts[e];
            fs[e] = fe->gate.w, fs[n + e] = fe->up.w, fs[2 * n + e] = fe->down.w;
            bs[e] = be->gate.wb, bs[n + e] = be->up.wb, bs[2 * n + e] = be->down.wb;
        }
        int64_t hi = f32.inter * cfg->hidden;
        sm_flat_experts ef = {n, 3, {fs, fs + n, fs + 2 * n}, {hi, hi, hi}, {NULL}};
        sm_flat_experts eb = {n, 3, {NULL}, {hi, hi, hi}, {bs, bs + n, bs + 2 * n}};
        /* bf16 segments run their Gram in bf16 (exact products, fp32 sums in oneDNN's order, not
         * ssyrk's): the same cosines to float rounding */
        double worst = fs && bs && sf && sb && sm_similarity_weight(&ef, NULL, sf) == 0 &&
                               sm_similarity_weight(&eb, NULL, sb) == 0
                           ? 0.0
                           : INFINITY;
        for (int i = 0; isfinite(worst) && i < n * n; i++)
            worst = fabs(sf[i] - sb[i]) > worst ? fabs(sf[i] - sb[i]) : worst;
        CHECK(worst <= 1e-5, "layer %d: the weight similarity from bf16 segments equals the fp32 one to 1e-5 (%.3g)",
              l, worst);
        free(fs), free(bs), free(sf), free(sb);
        sm_moe_bf16_free(&packed);
        sm_moe_layer_free(&f32), sm_moe_layer_free(&raw), sm_moe_layer_free(&one);
    }
}

static void test_demo_cache(void)
{
    sm_model *m = fx_demo_open();
    CHECK(m != NULL, "demo opens %s", m ? "" : sm_errmsg());
    if (!m)
        return;
    test_bf16_layer_load(m);
    char *tokens = fx_srcpath("data/calib.u32"), stats[300];
    snprintf(stats, sizeof stats, "%s/demo.stats", tmp);
    sm_calib_spec s;
    fx_calib_spec(&s, tokens, 8, 128);
    s.keep = 600;
    s.heldout = 100;
    s.sample = 64;
    bool reused = true;
    sm_calib *c = sm_calib_capture(m, &s, stats, NULL, &reused);
    CHECK(c && !reused, "first capture computes (%s)", c ? "" : sm_errmsg());
    sm_calib *c2 = sm_calib_capture(m, &s, stats, NULL, &reused);
    CHECK(c2 && reused, "second capture reuses the stats file");
    CHECK(c && sm_calib_has_stats(c), "stats file carries statistics");
    uint64_t fa = 0, fb = 1;
    CHECK(sm_calib_spec_fingerprint(m, &s, &fa) == 0 && sm_calib_file_fingerprint(stats, &fb) == 0 && fa == fb,
          "spec fingerprint %016llx = file fingerprint %016llx", (unsigned long long)fa, (unsigned long long)fb);
    const sm_config *cfg = sm_model_config(m);
    for (int l = 0; c && c2 && l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        const float *fit, *held;
        int64_t mf = 0, mh = 0;
        CHECK(sm_calib_inputs(c, l, &fit, &mf, &held, &mh) == 0 && mf == 500 && mh == 100,
              "layer %d: 500 fit + 100 held-out rows (%lld + %lld)", l, (long long)mf, (long long)mh);
        sm_moe_layer ml;
        CHECK(sm_moe_layer_load(m, l, &ml) == 0, "layer %d loads", l);
        const sm_layer_analysis *cached = NULL, *fresh = NULL;
        CHECK(sm_calib_analysis(c, l, NULL, false, NULL, &cached) == 0, "layer %d: statistics from the file", l);
        /* A grams request recomputes from the block; it must agree with the file exactly. */
        CHECK(sm_calib_analysis(c2, l, &ml.block, true, NULL, &fresh) == 0 && fresh->gram_in,
              "layer %d: recomputed with grams %s", l, sm_errmsg());
        CHECK(cached && fresh && same_analysis(cached, fresh),
              "layer %d: cached statistics identical to a fresh computation", l);
        if (cached) {
            int64_t tot = 0;
            for (int i = 0; i < cached->n; i++)
                tot += cached->counts[i];
            CHECK(tot == 500 * cfg->top_k, "layer %d: counts sum to fit rows x top-k (%lld)", l, (long long)tot);
        }
        sm_moe_layer_free(&ml);
    }
    sm_calib_free(c2);

    /* Tensor data is only byte-aligned in a safetensors file: a stats file whose header is padded
     * so that every tensor starts at an odd offset reads back with identical statistics (the
     * reader must not load floats through misaligned pointers; UBSan aborts if it does). */
    char padded[300];
    snprintf(padded, sizeof padded, "%s/padded.stats", tmp);
    CHECK(write_misaligned_copy(stats, padded) == 0, "stats file copied with a padded header");
    sm_calib *cp = sm_calib_read(m, padded, -1);
    CHECK(cp && sm_calib_has_stats(cp), "misaligned stats file reads, with statistics %s", cp ? "" : sm_errmsg());
    for (int l = 0; c && cp && l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        const sm_layer_analysis *orig = NULL, *mis = NULL;
        const float *fa, *fb;
        int64_t ma = 0, mb = 0;
        CHECK(sm_calib_analysis(c, l, NULL, false, NULL, &orig) == 0 &&
                  sm_calib_analysis(cp, l, NULL, false, NULL, &mis) == 0 && same_analysis(orig, mis),
              "layer %d: misaligned file gives identical statistics", l);
        CHECK(sm_calib_inputs(c, l, &fa, &ma, NULL, NULL) == 0 && sm_calib_inputs(cp, l, &fb, &mb, NULL, NULL) == 0 &&
                  ma == mb && memcmp(fa, fb, sizeof(float) * (size_t)(ma * cfg->hidden)) == 0,
              "layer %d: misaligned file gives identical inputs", l);
    }
    sm_calib_free(cp);

    test_saliency_stats(m, c, stats);

    /* A different split on read invalidates the stored statistics (they were fit on other rows). */
    sm_calib *c3 = sm_calib_read(m, stats, 200);
    CHECK(c3 && !sm_calib_has_stats(c3), "another held-out split recomputes statistics");
    sm_calib_free(c3);

    /* A foreign activations file: only moe_input, in bf16. */
    char foreign[300];
    snprintf(foreign, sizeof foreign, "%s/foreign.st", tmp);
    st_writer *w = st_writer_new();
    int64_t sh[2] = {40, cfg->hidden};
    for (int l = 0; l < cfg->n_layers; l++)
        if (cfg->is_moe[l]) {
            char name[64];
            snprintf(name, sizeof name, "layers.%d.moe_input", l);
            st_writer_declare(w, name, SM_DT_BF16, 2, sh);
        }
    int ok = st_writer_begin(w, foreign) == 0;
    for (int l = 0; ok && c && l < cfg->n_layers; l++)
        if (cfg->is_moe[l]) {
            const float *fit;
            sm_calib_inputs(c, l, &fit, NULL, NULL, NULL);
            ok = st_writer_write_f32(w, fit, 40 * (size_t)cfg->hidden) == 0;
        }
    ok = ok && st_writer_finish(w) == 0;
    st_writer_free(w);
    CHECK(ok, "foreign bf16 activations file written");
    sm_calib *cf = sm_calib_read(m, foreign, -1);
    CHECK(cf && !sm_calib_has_stats(cf), "foreign file reads, without statistics %s", cf ? "" : sm_errmsg());
    if (cf) {
        const float *fit;
        int64_t mf, mh;
        sm_calib_inputs(cf, 1, &fit, &mf, NULL, &mh);
        CHECK(mf == 30 && mh == 10, "default split: a quarter held out (%lld + %lld)", (long long)mf, (long long)mh);
        const sm_layer_analysis *a;
        CHECK(sm_calib_analysis(cf, 1, NULL, false, NULL, &a) != 0 && strstr(sm_errmsg(), "need the layer"),
              "statistics without the layer's experts: clear error (%s)", sm_errmsg());
        sm_moe_layer ml;
        sm_moe_layer_load(m, 1, &ml);
        CHECK(sm_calib_analysis(cf, 1, &ml.block, false, NULL, &a) == 0 && a->tokens == 30,
              "statistics computed from the foreign inputs");
        sm_moe_layer_free(&ml);
    }
    sm_calib_free(cf);
    sm_calib_free(c);
    test_large_foreign(m);

    /* Errors: a missing layer, a wrong width. */
    w = st_writer_new();
    int64_t bad[2] = {10, cfg->hidden + 1};
    st_writer_declare(w, "layers.0.moe_input", SM_DT_F32, 2, bad);
    snprintf(foreign, sizeof foreign, "%s/bad.st", tmp);
    if (st_writer_begin(w, foreign) == 0) {
        float *z = calloc((size_t)(10 * (cfg->hidden + 1)), sizeof *z);
        st_writer_write_f32(w, z, (size_t)(10 * (cfg->hidden + 1)));
        free(z);
        st_writer_finish(w);
    }
    st_writer_free(w);
    cf = sm_calib_read(m, foreign, -1);
    CHECK(!cf && strstr(sm_errmsg(), "bad.st") && strstr(sm_errmsg(), "layers.0.moe_input") &&
              strstr(sm_errmsg(), "must be [m >= 2, 128]"),
          "wrong width: %s", sm_errmsg());
    sm_calib_free(cf);
    sm_model_close(m);
    free(tokens);
}

/* Planted clusters in a synth model's weights are recovered from its own forward pass:
 * k-means on output similarity and average linkage give ARI 1.0 for 10 seeds, and the same
 * seed gives the same clusters. */
static void test_synth_recovery(void)
{
    int perfect_km = 0, perfect_hc = 0, runs = 0, stable = 1;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        sm_synth_opts o;
        sm_synth_defaults(&o, SM_ARCH_MIXTRAL);
        o.layers = 2;
        o.hidden = 64;
        o.intermediate = 96;
        o.experts = 8;
        o.clusters = 3;
        o.heads = 4;
        o.kv_heads = 2;
        o.vocab = 200;
        o.noise = 0.15;
        o.seed = seed;
        o.quiet = true;
        o.dtype = SM_DT_F32;
        char dir[300], tok[300];
        snprintf(dir, sizeof dir, "%s/synth%llu", tmp, (unsigned long long)seed);
        snprintf(tok, sizeof tok, "%s/synth.u32", tmp);
        if (seed == 1)
            write_tokens(tok, 4096, 200, 7);
        if (fx_synth(&o, dir)) {
            CHECK(0, "synth %llu: %s", (unsigned long long)seed, sm_errmsg());
            continue;
        }
        sm_model *m = sm_model_open(dir);
        sm_calib_spec s;
        fx_calib_spec(&s, tok, 4, 64);
        s.keep = 0;
        s.sample = 128;
        sm_calib *c = m ? sm_calib_capture(m, &s, NULL, NULL, NULL) : NULL;
        if (!c) {
            CHECK(0, "synth %llu capture: %s", (unsigned long long)seed, sm_errmsg());
            sm_model_close(m);
            continue;
        }
        for (int l = 0; l < 2; l++) {
            int planted[8], km[8], km2[8], hc[8];
            sm_synth_assignment(&o, l, planted);
            const sm_layer_analysis *a;
            if (sm_calib_analysis(c, l, NULL, false, NULL, &a) ||
                sm_engine_cluster(a, SM_CLUSTER_KMEANS, SM_SIM_OUTPUT, 3, seed, NULL, km) ||
                sm_engine_cluster(a, SM_CLUSTER_KMEANS, SM_SIM_OUTPUT, 3, seed, NULL, km2) ||
                sm_engine_cluster(a, SM_CLUSTER_HIERARCHICAL, SM_SIM_OUTPUT, 3, seed, NULL, hc)) {
                CHECK(0, "synth %llu layer %d: %s", (unsigned long long)seed, l, sm_errmsg());
                continue;
            }
            runs++;
            perfect_km += sm_adjusted_rand(planted, km, 8) == 1.0;
            perfect_hc += sm_adjusted_rand(planted, hc, 8) == 1.0;
            stable &= memcmp(km, km2, sizeof km) == 0;
        }
        sm_calib_free(c);
        sm_model_close(m);
    }
    CHECK(runs == 20 && perfect_km == runs, "k-means recovers the planted clusters: ARI 1.0 in %d/%d layers", perfect_km,
          runs);
    CHECK(runs == 20 && perfect_hc == runs, "hierarchical recovers the planted clusters: ARI 1.0 in %d/%d layers",
          perfect_hc, runs);
    CHECK(stable, "the same seed gives the same clusters");
}

int main(void)
{
    if (!(tmp = fx_tmpdir("test_calib")))
        return 1;
    if (getenv("DEMO") && getenv("SRCDIR"))
        test_demo_cache();
    else
        CHECK(0, "DEMO and SRCDIR must be set");
    test_synth_recovery();
    fx_tmpdir_remove(tmp);
    return tu_done();
}
