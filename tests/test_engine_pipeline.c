/* The engine pipeline on a small synthetic layer with planted expert groups (upcycled-like:
 * experts of a group are one FFN plus small perturbations): analysis → clusters → merged
 * layer → errors, with progress and cancellation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/rng.h"

enum { N = 8, G = 4, H = 16, I = 12, M = 1200 };
static const int group[N] = {0, 1, 2, 3, 1, 0, 3, 2};

static float wg[N][I * H], wu[N][I * H], wd[N][H * I], router[N * H], x[M * H];
static sm_expert experts[N];

static void build_layer(void)
{
    sm_rng r;
    sm_rng_seed(&r, 77);
    float bg[G][I * H], bu[G][I * H], bd[G][H * I], br[G][H];
    for (int g = 0; g < G; g++) {
        for (int e = 0; e < I * H; e++)
            bg[g][e] = (float)(sm_rng_normal(&r) / 4), bu[g][e] = (float)(sm_rng_normal(&r) / 4),
            bd[g][e] = (float)(sm_rng_normal(&r) / 3.5);
        for (int h = 0; h < H; h++)
            br[g][h] = (float)sm_rng_normal(&r);
    }
    for (int i = 0; i < N; i++) {
        for (int e = 0; e < I * H; e++) {
            wg[i][e] = bg[group[i]][e] + (float)(0.01 * sm_rng_normal(&r));
            wu[i][e] = bu[group[i]][e] + (float)(0.01 * sm_rng_normal(&r));
            wd[i][e] = bd[group[i]][e] + (float)(0.01 * sm_rng_normal(&r));
        }
        for (int h = 0; h < H; h++)
            router[i * H + h] = br[group[i]][h] + (float)(0.3 * sm_rng_normal(&r));
        experts[i] = sm_expert_dense(H, I, wg[i], wu[i], wd[i]);
    }
    for (int e = 0; e < M * H; e++)
        x[e] = (float)sm_rng_normal(&r);
}

typedef struct {
    int calls;
    double last;
    int monotone;
} progress;

static void on_progress(void *ctx, double f, const char *what)
{
    progress *p = ctx;
    (void)what;
    p->monotone &= f >= p->last - 1e-12;
    p->last = f;
    p->calls++;
}

int main(void)
{
    build_layer();
    sm_moe_block src = {H, N, router, {2, true, 1.0f}, N, experts, NULL, 0, NULL, NULL};
    const float *xcal = x, *xheld = x + 800 * H; /* 800 calibration, 400 held-out tokens */

    progress pr = {0, 0, 1};
    sm_monitor mon = {on_progress, &pr, NULL};
    sm_analysis_opts ao = {.block = 100, .sample = 200, .grams = true, .weight_sim = true};
    sm_layer_analysis a;
    int rc = sm_engine_analyse(&src, xcal, 800, &ao, &mon, &a);
    CHECK(rc == 0, "analysis %s", rc ? sm_errmsg() : "");
    double fs = 0;
    for (int i = 0; i < N; i++)
        fs += a.freq[i];
    CHECK(fabs(fs - 2.0) < 1e-12, "frequencies sum to top-k (%.6f)", fs);
    CHECK(pr.calls > 5 && pr.monotone && pr.last == 1.0, "progress: %d calls, monotone, ends at 1",
          pr.calls);
    CHECK(a.sim_output[0 * N + 5] > 0.99 && a.sim_output[0 * N + 1] < 0.5 &&
              a.sim_weight[0 * N + 5] > 0.99 && fabs(a.sim_logit[3 * N + 3] - 1) < 1e-12,
          "similarities: same group %.4f, other group %.4f, weight %.4f", a.sim_output[5],
          a.sim_output[1], a.sim_weight[5]);

    /* Clusters: every algorithm recovers the planted groups. */
    int assign[N];
    const sm_cluster_algo algos[3] = {SM_CLUSTER_KMEANS, SM_CLUSTER_HIERARCHICAL,
                                      SM_CLUSTER_KMEDOIDS};
    for (int q = 0; q < 3; q++) {
        CHECK(sm_engine_cluster(&a, algos[q], SM_SIM_OUTPUT, G, 1, NULL, assign) == 0 &&
                  sm_adjusted_rand(assign, group, N) == 1.0,
              "%s on output similarity recovers the groups", sm_cluster_algo_name(algos[q]));
    }
    CHECK(sm_engine_cluster(&a, SM_CLUSTER_HIERARCHICAL, SM_SIM_WEIGHT, G, 1, NULL, assign) == 0 &&
              sm_adjusted_rand(assign, group, N) == 1.0,
          "hierarchical on weight similarity too");
    CHECK(sm_engine_cluster(&a, SM_CLUSTER_KMEANS, SM_SIM_LOGIT, G, 1, NULL, assign) == -1,
          "k-means on logit similarity is refused: %s", sm_errmsg());
    sm_engine_cluster(&a, SM_CLUSTER_KMEANS, SM_SIM_OUTPUT, G, 1, NULL, assign);

    /* Merged layers and their held-out errors. */
    sm_layer_spec spec = {.method = SM_MERGE_SUBMOE, .router = SM_ROUTER_REMAP};
    sm_merged_layer ml;
    double e_merge, e_fa, e_prune, e_pout, e_keep, e_lsq, e_white;
    rc = sm_engine_merge(&src, &a, assign, G, &spec, xcal, 800, NULL, &ml);
    CHECK(rc == 0 && ml.n_experts == G && ml.n_router == N, "submoe full rank, remap %s",
          rc ? sm_errmsg() : "");
    CHECK(sm_engine_error(&src, &ml, xheld, 400, NULL, &e_merge) == 0, "error");
    {   /* a shared reference forward (auto's candidates) gives the same figure, bit for bit */
        float *ref = malloc(sizeof(float) * 800 * (size_t)src.hidden);
        double e_ref = -1, e_ref_cal = -1, e_cal = -2;
        CHECK(ref && sm_engine_reference(&src, xheld, 400, NULL, ref) == 0 &&
                  sm_engine_error_ref(&src, &ml, xheld, ref, 400, NULL, &e_ref) == 0 && e_ref == e_merge,
              "error against a precomputed reference %.9g = %.9g", e_ref, e_merge);
        CHECK(ref && sm_engine_reference(&src, xcal, 800, NULL, ref) == 0 &&
                  sm_engine_error_ref(&src, &ml, xcal, ref, 800, NULL, &e_ref_cal) == 0 &&
                  sm_engine_error(&src, &ml, xcal, 800, NULL, &e_cal) == 0 && e_ref_cal == e_cal && e_cal > 0,
              "on 800 rows too %.9g = %.9g", e_ref_cal, e_cal);
        free(ref);
    }
    CHECK(ml.mats[0][0].member_err[0] < 0.05, "member error of a near-duplicate %.4f",
          ml.mats[0][0].member_err[0]);
    sm_merged_layer_free(&ml);

    spec.method = SM_MERGE_FREQ_AVERAGE;
    sm_engine_merge(&src, &a, assign, G, &spec, xcal, 800, NULL, &ml);
    sm_engine_error(&src, &ml, xheld, 400, NULL, &e_fa);
    CHECK(fabs(e_fa - e_merge) < 1e-6, "full-rank submoe layer = freq-average layer (%.6f, %.6f)",
          e_merge, e_fa);
    sm_merged_layer_free(&ml);

    spec.method = SM_MERGE_PRUNE_FREQUENCY;
    CHECK(sm_engine_merge(&src, &a, NULL, G, &spec, NULL, 0, NULL, &ml) == 0 && ml.n_experts == G,
          "prune-frequency");
    sm_engine_error(&src, &ml, xheld, 400, NULL, &e_prune);
    sm_merged_layer_free(&ml);
    spec.method = SM_MERGE_PRUNE_OUTPUT;
    CHECK(sm_engine_merge(&src, &a, NULL, G, &spec, xcal, 800, NULL, &ml) == 0, "prune-output");
    double e_pout_cal, e_prune_cal;
    sm_engine_error(&src, &ml, xcal, 800, NULL, &e_pout_cal);
    sm_engine_error(&src, &ml, xheld, 400, NULL, &e_pout);
    sm_merged_layer_free(&ml);
    spec.method = SM_MERGE_PRUNE_FREQUENCY;
    sm_engine_merge(&src, &a, NULL, G, &spec, NULL, 0, NULL, &ml);
    sm_engine_error(&src, &ml, xcal, 800, NULL, &e_prune_cal);
    sm_merged_layer_free(&ml);
    CHECK(e_pout_cal <= e_prune_cal + 1e-12,
          "prune-output (exhaustive) ≤ prune-frequency on calibration (%.4f ≤ %.4f)", e_pout_cal,
          e_prune_cal);
    CHECK(e_merge < 0.25 * e_prune && e_merge < 0.25 * e_pout,
          "merging planted duplicates beats pruning (held-out: merge %.4f, prune-frequency %.4f, "
          "prune-output %.4f)", e_merge, e_prune, e_pout);

    spec.method = SM_MERGE_KEEP;
    sm_engine_merge(&src, &a, NULL, 0, &spec, NULL, 0, NULL, &ml);
    CHECK(sm_engine_error(&src, &ml, xheld, 400, NULL, &e_keep) == 0 && e_keep == 0.0,
          "keep: error exactly 0");
    sm_merged_layer_free(&ml);

    spec = (sm_layer_spec){.method = SM_MERGE_SUBMOE, .router = SM_ROUTER_COLLAPSE_LSTSQ};
    CHECK(sm_engine_merge(&src, &a, assign, G, &spec, xcal, 800, NULL, &ml) == 0 &&
              ml.n_router == G && !ml.expert_map,
          "collapse-lstsq: one router row per cluster");
    sm_engine_error(&src, &ml, xheld, 400, NULL, &e_lsq);
    CHECK(e_lsq < e_prune, "collapsed router still beats pruning (%.4f)", e_lsq);
    sm_merged_layer_free(&ml);

    /* Whitened at parameter ratio 0.5 on every matrix: factored experts. */
    spec = (sm_layer_spec){.method = SM_MERGE_SUBMOE_WHITENED, .router = SM_ROUTER_REMAP};
    for (int j = 0; j < 3; j++)
        spec.matrix[j].rank = (sm_rank){SM_RANK_FRACTION, 0, 0.5};
    rc = sm_engine_merge(&src, &a, assign, G, &spec, xcal, 800, NULL, &ml);
    const int r = (int)floor(0.5 * I * H / (I + H));
    CHECK(rc == 0 && ml.experts[0].gate.rank == r &&
              sm_merged_layer_params(&ml) == (int64_t)G * 3 * r * (I + H),
          "whitened ρ=0.5: rank %d, %lld parameters %s", r,
          rc ? 0LL : (long long)sm_merged_layer_params(&ml), rc ? sm_errmsg() : "");
    if (rc == 0) {
        /* Rank 3 of 12×16 matrices is a drastic cut: only check it runs end to end and report
         * it next to plain Sub-MoE at the same rank (exactness is test_engine_unionsvd's job). */
        double e_plain;
        sm_engine_error(&src, &ml, xheld, 400, NULL, &e_white);
        sm_merged_layer_free(&ml);
        spec.method = SM_MERGE_SUBMOE;
        for (int j = 0; j < 3; j++)
            spec.matrix[j].rank = (sm_rank){SM_RANK_COUNT, r, 0};
        sm_engine_merge(&src, &a, assign, G, &spec, xcal, 800, NULL, &ml);
        sm_engine_error(&src, &ml, xheld, 400, NULL, &e_plain);
        sm_merged_layer_free(&ml);
        CHECK(isfinite(e_white) && e_white < 1.0,
              "rank-%d layers: whitened error %.4f, plain Sub-MoE %.4f", r, e_white, e_plain);
    }

    /* Per-cluster overrides (spec.cluster), whitened so that ranks are stored: every matrix at
     * rank 6, cluster 1 at rank 2 in all three, cluster 3's gate at ρ = 0.5 (r = floor(0.5 · 12 ·
     * 16 / 28) = 3). Exact ranks and r(out + in) parameters per matrix; the lower rank raises
     * cluster 1's member errors over the same merge without overrides, and clusters without an
     * override come out identical to it. */
    {
        sm_layer_spec base = {.method = SM_MERGE_SUBMOE_WHITENED, .router = SM_ROUTER_REMAP};
        for (int j = 0; j < 3; j++)
            base.matrix[j].rank = (sm_rank){SM_RANK_COUNT, 6, 0};
        sm_merge_opts per[G][3];
        for (int c = 0; c < G; c++)
            memcpy(per[c], base.matrix, sizeof per[c]);
        for (int j = 0; j < 3; j++)
            per[1][j].rank = (sm_rank){SM_RANK_COUNT, 2, 0};
        per[3][0].rank = (sm_rank){SM_RANK_FRACTION, 0, 0.5};
        sm_layer_spec over = base;
        over.cluster = (const sm_merge_opts(*)[3])per;
        over.n_cluster = G;
        sm_merged_layer m0, m1;
        int rc0 = sm_engine_merge(&src, &a, assign, G, &base, xcal, 800, NULL, &m0);
        int rc1 = sm_engine_merge(&src, &a, assign, G, &over, xcal, 800, NULL, &m1);
        CHECK(rc0 == 0 && rc1 == 0, "merges with and without per-cluster overrides %s",
              rc0 || rc1 ? sm_errmsg() : "");
        if (rc0 == 0 && rc1 == 0) {
            int ranks_ok = 1, same_others = 1;
            for (int c = 0; c < G; c++)
                for (int j = 0; j < 3; j++) {
                    int64_t want = c == 1 ? 2 : c == 3 && j == 0 ? 3 : 6;
                    ranks_ok &= m1.mats[c][j].rank == want && m0.mats[c][j].rank == 6;
                    if (c == 0 || c == 2)
                        same_others &= !memcmp(m0.mats[c][j].a, m1.mats[c][j].a, sizeof(float) * 6 * m0.mats[c][j].out) &&
                                        !memcmp(m0.mats[c][j].b, m1.mats[c][j].b, sizeof(float) * 6 * m0.mats[c][j].in);
                }
            /* (3 + 3) matrices at 6, 3 at 2, cluster 3 at 3 + 6 + 6, each r · (12 + 16). */
            const int64_t want_params = (int64_t)(6 * 6 + 3 * 2 + 3 + 6 + 6) * (I + H);
            CHECK(ranks_ok && sm_merged_layer_params(&m1) == want_params &&
                      sm_merged_layer_params(&m0) == (int64_t)G * 3 * 6 * (I + H),
                  "per-cluster ranks: cluster 1 at 2, cluster 3 gate at 3, the rest at 6; %lld parameters (want %lld)",
                  (long long)sm_merged_layer_params(&m1), (long long)want_params);
            double lo = INFINITY, hi = 0;
            int worse = 1;
            for (int j = 0; j < 3; j++)
                for (int i = 0; i < m1.mats[1][j].n_members; i++) {
                    worse &= m1.mats[1][j].member_err[i] > m0.mats[1][j].member_err[i];
                    lo = fmin(lo, m1.mats[1][j].member_err[i]);
                    hi = fmax(hi, m0.mats[1][j].member_err[i]);
                }
            CHECK(worse && m1.mats[3][0].member_err[0] > m0.mats[3][0].member_err[0],
                  "lower-rank clusters have larger member errors (cluster 1 at rank 2: ≥ %.3f; at 6: ≤ %.3f)", lo, hi);
            CHECK(same_others, "clusters without an override are identical to the merge without overrides");
            sm_merged_layer_free(&m0), sm_merged_layer_free(&m1);
        }
    }

    /* Cancellation between blocks. */
    volatile int stop = 1;
    sm_monitor cm = {NULL, NULL, &stop};
    sm_layer_analysis b;
    CHECK(sm_engine_analyse(&src, xcal, 800, &ao, &cm, &b) == -1 &&
              strcmp(sm_errmsg(), "cancelled") == 0,
          "analysis is cancellable");
    spec = (sm_layer_spec){.method = SM_MERGE_SUBMOE, .router = SM_ROUTER_REMAP};
    spec.matrix[0].rank = (sm_rank){SM_RANK_COUNT, 4, 0};
    CHECK(sm_engine_merge(&src, &a, assign, G, &spec, NULL, 0, &cm, &ml) == -1 &&
              strcmp(sm_errmsg(), "cancelled") == 0 && !ml.experts,
          "merge is cancellable and owns nothing after");
    sm_layer_analysis_free(&a);
    return tu_done();
}
