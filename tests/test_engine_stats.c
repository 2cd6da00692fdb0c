/* The engine's streamed statistics (sm_engine_analyse) against naive double-precision
 * references: input Grams Σ x xᵀ and down-projection Grams over the tokens routed to each
 * expert, the router-logit correlation against a two-pass Pearson; results independent of the
 * block size and of how the rows are supplied (sm_engine_analyse_rows); and prune-output
 * scoring every row (past PRUNE_ROWS_EARLY, where it once stopped keeping reference outputs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "moe/route.h"
#include "testutil.h"

/* Rows after which the later, different rows begin in test_prune_output_streamed. */
#define PRUNE_ROWS_EARLY 4096
#include "util/diag.h"
#include "util/rng.h"

enum { N = 6, H = 12, I = 9, K = 2, M = 777 };

static float wg[N][I * H], wu[N][I * H], wd[N][H * I], router[N * H];
static sm_expert experts[N];

static sm_moe_block make_layer(uint64_t seed)
{
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int i = 0; i < N; i++) {
        for (int e = 0; e < I * H; e++) {
            wg[i][e] = (float)(0.3 * sm_rng_normal(&r));
            wu[i][e] = (float)(0.3 * sm_rng_normal(&r));
            wd[i][e] = (float)(0.3 * sm_rng_normal(&r));
        }
        experts[i] = sm_expert_dense(H, I, wg[i], wu[i], wd[i]);
    }
    /* A shared component gives every logit a common offset (inputs have mean 0.5), which a
     * one-pass covariance must centre away. */
    float common[H];
    for (int h = 0; h < H; h++)
        common[h] = (float)(2.0 + sm_rng_normal(&r));
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
            router[i * H + h] = common[h] + (float)sm_rng_normal(&r);
    sm_moe_block b = {H, N, router, {K, true, 1.0f}, N, experts, NULL, 0, NULL, NULL};
    return b;
}

static float *make_inputs(int64_t m, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)(m * H));
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int64_t e = 0; e < m * H; e++)
        x[e] = (float)(sm_rng_normal(&r) + 0.5); /* non-zero mean */
    return x;
}

static double max_abs(const float *a, int64_t n)
{
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)a[i]));
    return mx;
}

/* Grams and logit correlation against naive references. */
static void test_against_naive(const sm_moe_block *b, const float *x, const sm_layer_analysis *a)
{
    float *z = malloc(sizeof(float) * M * N), *w = malloc(sizeof(float) * M * K);
    int *idx = malloc(sizeof(int) * M * K);
    sm_route_logits(x, M, H, router, N, z);
    sm_route_select(&b->rule, z, M, N, idx, w);
    double gin_err = 0, gin_max = 0, gmid_err = 0, gmid_max = 0;
    int64_t routed_total = 0;
    for (int e = 0; e < N; e++) {
        double gi[H * H] = {0}, gm[I * I] = {0};
        for (int t = 0; t < M; t++) {
            int routed = 0;
            for (int j = 0; j < K; j++)
                routed |= idx[t * K + j] == e;
            if (!routed)
                continue;
            routed_total++;
            const float *xt = x + (int64_t)t * H;
            double hmid[I];
            for (int q = 0; q < I; q++) {
                double g = 0, u = 0;
                for (int h = 0; h < H; h++)
                    g += (double)wg[e][q * H + h] * xt[h], u += (double)wu[e][q * H + h] * xt[h];
                hmid[q] = g / (1 + exp(-g)) * u;
            }
            for (int p = 0; p < H; p++)
                for (int q = 0; q < H; q++)
                    gi[p * H + q] += (double)xt[p] * xt[q];
            for (int p = 0; p < I; p++)
                for (int q = 0; q < I; q++)
                    gm[p * I + q] += hmid[p] * hmid[q];
        }
        for (int q = 0; q < H * H; q++)
            gin_err = fmax(gin_err, fabs(a->gram_in[e][q] - gi[q])), gin_max = fmax(gin_max, fabs(gi[q]));
        for (int q = 0; q < I * I; q++)
            gmid_err = fmax(gmid_err, fabs(a->gram_mid[e][q] - gm[q])), gmid_max = fmax(gmid_max, fabs(gm[q]));
    }
    /* Float accumulation (ssyrk per block into a float Gram) over ~260 routed tokens per
     * expert: relative error ~ sqrt(m)·eps ≈ 1e-6; 1e-5 of the largest entry leaves margin,
     * while routing even one token to the wrong expert changes entries by ~|x|² ≈ 1e-2 of it. */
    CHECK(routed_total == (int64_t)M * K, "every token routed to %d experts", K);
    CHECK(gin_err <= 1e-5 * gin_max, "gram_in = Σ x xᵀ over routed tokens: max diff %.2e (max entry %.3g)", gin_err,
          gin_max);
    CHECK(gmid_err <= 1e-5 * gmid_max,
          "gram_mid = Σ h hᵀ (h = silu(W_gate x) ⊙ W_up x) over routed tokens: max diff %.2e (max entry %.3g)",
          gmid_err, gmid_max);

    double corr_err = 0, zmean = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double mi = 0, mj = 0;
            for (int t = 0; t < M; t++)
                mi += z[t * N + i], mj += z[t * N + j];
            mi /= M, mj /= M;
            double c = 0, vi = 0, vj = 0;
            for (int t = 0; t < M; t++) {
                double p = z[t * N + i] - mi, q = z[t * N + j] - mj;
                c += p * q, vi += p * p, vj += q * q;
            }
            corr_err = fmax(corr_err, fabs(c / sqrt(vi * vj) - a->sim_logit[i * N + j]));
            if (i == j)
                zmean += fabs(mi) / N;
        }
    /* The engine sums logits centred on the first block's mean in float per block (ssyrk) and
     * across blocks in double: ~1e-6 relative; 1e-5 absolute on correlations in [−1, 1]. */
    CHECK(corr_err <= 1e-5, "router-logit correlation = two-pass Pearson: max diff %.2e (mean |logit| %.1f)",
          corr_err, zmean);
    free(z), free(w), free(idx);
}

typedef struct {
    const float *x;
    int calls;
} copy_rows;

/* A source that always copies into the engine's buffer, like a file reader. */
static const float *rows_copy(void *ctx, int64_t t0, int64_t n, float *buf)
{
    copy_rows *c = ctx;
    c->calls++;
    memcpy(buf, c->x + t0 * H, sizeof(float) * (size_t)(n * H));
    return buf;
}

static int same_bits(const sm_layer_analysis *a, const sm_layer_analysis *b)
{
    int ok = a->n == b->n && a->tokens == b->tokens && a->sampled == b->sampled &&
             !memcmp(a->counts, b->counts, sizeof(int64_t) * N) && !memcmp(a->freq, b->freq, sizeof(double) * N) &&
             !memcmp(a->sim_output, b->sim_output, sizeof(double) * N * N) &&
             !memcmp(a->sim_logit, b->sim_logit, sizeof(double) * N * N) &&
             !memcmp(a->sim_weight, b->sim_weight, sizeof(double) * N * N) &&
             !memcmp(a->outputs, b->outputs, sizeof(float) * (size_t)(N * a->sampled * H));
    for (int e = 0; ok && e < N; e++)
        ok = !memcmp(a->gram_in[e], b->gram_in[e], sizeof(float) * H * H) &&
             !memcmp(a->gram_mid[e], b->gram_mid[e], sizeof(float) * I * I);
    return ok;
}

static void test_blocks(const sm_moe_block *b, const float *x)
{
    sm_analysis_opts o7 = {.block = 7, .sample = 50, .grams = true, .weight_sim = true};
    sm_analysis_opts o1000 = o7;
    o1000.block = 1000; /* one block: everything at once */
    sm_layer_analysis a7, a1000, as;
    int rc = sm_engine_analyse(b, x, M, &o7, NULL, &a7);
    rc |= sm_engine_analyse(b, x, M, &o1000, NULL, &a1000);
    CHECK(rc == 0, "analyses with blocks of 7 and 1000 tokens %s", rc ? sm_errmsg() : "");
    if (rc)
        return;
    test_against_naive(b, x, &a7);
    double ds = 0, dg = 0, gmax = 0;
    for (int i = 0; i < N * N; i++)
        ds = fmax(ds, fmax(fabs(a7.sim_logit[i] - a1000.sim_logit[i]), fabs(a7.sim_output[i] - a1000.sim_output[i])));
    for (int e = 0; e < N; e++) {
        for (int q = 0; q < H * H; q++)
            dg = fmax(dg, fabs((double)a7.gram_in[e][q] - a1000.gram_in[e][q]));
        for (int q = 0; q < I * I; q++)
            dg = fmax(dg, fabs((double)a7.gram_mid[e][q] - a1000.gram_mid[e][q]));
        gmax = fmax(gmax, fmax(max_abs(a1000.gram_in[e], H * H), max_abs(a1000.gram_mid[e], I * I)));
    }
    CHECK(!memcmp(a7.counts, a1000.counts, sizeof(int64_t) * N) && !memcmp(a7.freq, a1000.freq, sizeof(double) * N),
          "block 7 vs 1000: identical counts and frequencies");
    /* Only the float summation order differs between block sizes. */
    CHECK(ds <= 1e-6, "block 7 vs 1000: similarities within 1e-6 (max diff %.2e)", ds);
    CHECK(dg <= 1e-6 * gmax, "block 7 vs 1000: Grams within 1e-6 relative (max diff %.2e of %.3g)", dg, gmax);
    CHECK(!memcmp(a7.outputs, a1000.outputs, sizeof(float) * (size_t)(N * a7.sampled * H)),
          "block 7 vs 1000: identical expert outputs on the sample");

    /* A row source that copies every block gives the same bits as the array in memory. */
    copy_rows cr = {x, 0};
    sm_row_source src = {M, rows_copy, &cr};
    rc = sm_engine_analyse_rows(b, &src, &o7, NULL, &as);
    CHECK(rc == 0 && same_bits(&as, &a7) && cr.calls == (M + 6) / 7 + 50,
          "row source = in-memory rows, bit for bit (%d calls: %d blocks of 7 + 50 sample rows)", cr.calls,
          (M + 6) / 7);
    if (rc == 0)
        sm_layer_analysis_free(&as);
    sm_layer_analysis_free(&a7);
    sm_layer_analysis_free(&a1000);
}

/* prune-output over many rows: the subset it picks has the least output error over all rows, as
 * measured independently by sm_engine_error, although the later rows change which subset that is. */
static void test_prune_output_streamed(const sm_moe_block *b)
{
    const int64_t m = PRUNE_ROWS_EARLY + 600, late = PRUNE_ROWS_EARLY;
    float *x = make_inputs(m, 31);
    /* The later rows come from elsewhere and weigh more (inputs × 4 along
     * another direction), so they decide the choice. */
    sm_rng r;
    sm_rng_seed(&r, 32);
    float dir[H];
    for (int h = 0; h < H; h++)
        dir[h] = (float)sm_rng_normal(&r);
    for (int64_t t = late; t < m; t++)
        for (int h = 0; h < H; h++)
            x[t * H + h] = 4.0f * (x[t * H + h] - 0.5f) + 3.0f * dir[h];
    const int k = 3;
    sm_layer_spec spec = {.method = SM_MERGE_PRUNE_OUTPUT};
    sm_merged_layer ml;
    int rc = sm_engine_merge(b, NULL, NULL, k, &spec, x, m, NULL, &ml);
    CHECK(rc == 0, "prune-output on %lld rows %s", (long long)m, rc ? sm_errmsg() : "");
    if (rc) {
        free(x);
        return;
    }
    int chosen = 0;
    for (int j = 0; j < k; j++)
        chosen |= 1 << ml.source[j];
    double e_chosen;
    sm_engine_error(b, &ml, x, m, NULL, &e_chosen);
    sm_merged_layer_free(&ml);
    /* Every 3-subset, kept through prune-frequency with frequencies that select it. */
    double best_all = INFINITY, best_early = INFINITY;
    int arg_all = 0, arg_early = 0;
    for (int mask = 0; mask < 1 << N; mask++) {
        if (__builtin_popcount((unsigned)mask) != k)
            continue;
        double f[N];
        for (int i = 0; i < N; i++)
            f[i] = mask >> i & 1;
        sm_layer_analysis fa = {.n = N, .freq = f};
        spec.method = SM_MERGE_PRUNE_FREQUENCY;
        double e_all, e_early;
        if (sm_engine_merge(b, &fa, NULL, k, &spec, NULL, 0, NULL, &ml) ||
            sm_engine_error(b, &ml, x, m, NULL, &e_all) || sm_engine_error(b, &ml, x, late, NULL, &e_early)) {
            CHECK(0, "subset %#x: %s", mask, sm_errmsg());
            continue;
        }
        sm_merged_layer_free(&ml);
        if (e_all < best_all)
            best_all = e_all, arg_all = mask;
        if (e_early < best_early)
            best_early = e_early, arg_early = mask;
    }
    CHECK(chosen == arg_all && fabs(e_chosen - best_all) <= 1e-12 * best_all,
          "prune-output picks the best subset over all %lld rows (%#x, error %.6f; best %#x %.6f)", (long long)m,
          chosen, e_chosen, arg_all, best_all);
    CHECK(arg_all != arg_early, "the rows past the first %d decide it (best on the first %lld rows: %#x)",
          PRUNE_ROWS_EARLY, (long long)late, arg_early);
    free(x);
}

int main(void)
{
    sm_moe_block b = make_layer(5);
    float *x = make_inputs(M, 6);
    test_blocks(&b, x);
    test_prune_output_streamed(&b);
    free(x);
    return tu_done();
}
