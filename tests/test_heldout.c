/* test_heldout: a layer variant's held-out output error scored from the source experts' cached
 * outputs (engine/heldout.h, what method auto scores its candidates with) equals the block-forward
 * evaluation (sm_engine_error) to 1e-5 relative, on every MoE layer of the demo and of synths of
 * all five architectures (qwen2_moe's gated shared expert, deepseek's always-on shared experts and
 * routed scaling, renormalised and raw top-k weights), for the variants auto builds: pruned
 * subsets (down to fewer than the routing top-k), merges with remap and collapsed routers,
 * aligned, refitted and low-rank merges. Keeping every expert costs exactly 0 (every slot is
 * answered from the cache). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/heldout.h"
#include "forward/moelayer.h"
#include "pipeline/calib.h"
#include "fixture.h"
#include "testutil.h"
#include "util/diag.h"

/* As in test_subset: below this the block forward's own float32 rounding dominates. */
#define ROUNDING_FLOOR 5e-7

typedef struct variant {
    const char *name;
    sm_merge_method method;
    sm_router_mode router;
    bool align, refit, low_rank;
    int drop; /* experts (pruning) or clusters (merges) fewer than n */
} variant;

static const variant variants[] = {
    {"keep every expert", SM_MERGE_PRUNE_FREQUENCY, SM_ROUTER_REMAP, false, false, false, 0},
    {"prune-frequency", SM_MERGE_PRUNE_FREQUENCY, SM_ROUTER_REMAP, false, false, false, 2},
    {"prune-output", SM_MERGE_PRUNE_OUTPUT, SM_ROUTER_REMAP, false, false, false, 3},
    {"prune-reap below top-k", SM_MERGE_PRUNE_REAP, SM_ROUTER_REMAP, false, false, false, -1},
    {"submoe remap", SM_MERGE_SUBMOE, SM_ROUTER_REMAP, false, false, false, 2},
    {"submoe collapse-lstsq", SM_MERGE_SUBMOE, SM_ROUTER_COLLAPSE_LSTSQ, false, false, false, 3},
    {"submoe+align", SM_MERGE_SUBMOE, SM_ROUTER_REMAP, true, false, false, 3},
    {"submoe+refit", SM_MERGE_SUBMOE, SM_ROUTER_REMAP, false, true, false, 2},
    {"submoe rank 8", SM_MERGE_SUBMOE, SM_ROUTER_REMAP, false, false, true, 2},
    {"freq-average collapse-mean", SM_MERGE_FREQ_AVERAGE, SM_ROUTER_COLLAPSE_MEAN, false, false, false, 2},
};

static int variant_k(const variant *v, int n, int top_k)
{
    int k = v->drop >= 0 ? n - v->drop : (top_k > 1 ? top_k - 1 : 1);
    return k < 1 ? 1 : k;
}

static void check_variant(const char *name, int l, const variant *v, const sm_moe_block *b, const sm_layer_analysis *a,
                          const float *fit, int64_t m_fit, const float *held, int64_t m_held, sm_heldout *hc)
{
    const int n = b->n_experts, k = variant_k(v, n, b->rule.top_k);
    int *assign = malloc(sizeof(int) * (size_t)n);
    sm_layer_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.method = v->method, spec.router = v->router, spec.align = v->align, spec.refit = v->refit;
    for (int j = 0; j < 3 && v->low_rank; j++)
        spec.matrix[j].rank = (sm_rank){.kind = SM_RANK_COUNT, .count = 8};
    sm_merged_layer ml;
    memset(&ml, 0, sizeof ml);
    int rc = assign ? 0 : -1;
    if (rc == 0 && sm_merge_method_merges(v->method))
        rc = sm_engine_cluster(a, SM_CLUSTER_KMEANS, SM_SIM_OUTPUT, k, 1, NULL, assign);
    if (rc == 0)
        rc = sm_engine_merge(b, a, assign, k, &spec, fit, m_fit, NULL, &ml);
    double f = -1, c = -1;
    if (rc == 0) {
        sm_moe_block mb = sm_merged_layer_block(&ml, b);
        rc = sm_engine_error(b, &ml, held, m_held, NULL, &f) || sm_heldout_error(hc, &mb, NULL, &c) ? -1 : 0;
    }
    if (rc != 0)
        CHECK(0, "%s layer %d, %s: %s", name, l, v->name, sm_errmsg());
    else if (v->drop == 0)
        CHECK(c == 0.0 && f < ROUNDING_FLOOR, "%s layer %d, %s: cached %.3g (exactly 0), forward %.3g", name, l, v->name, c, f);
    else
        CHECK(fabs(c - f) <= 1e-5 * f + ROUNDING_FLOOR, "%s layer %d, %s (%d of %d): cached %.9g = forward %.9g",
              name, l, v->name, k, n, c, f);
    sm_merged_layer_free(&ml);
    free(assign);
}

static void check_model(const char *name, const sm_model *m, sm_calib *c)
{
    const sm_config *cfg = sm_model_config(m);
    for (int l = 0; l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        sm_moe_layer ml;
        const float *fit, *held;
        int64_t m_fit, m_held;
        const sm_layer_analysis *a;
        if (sm_moe_layer_load(m, l, &ml)) {
            CHECK(0, "%s layer %d: %s", name, l, sm_errmsg());
            continue;
        }
        if (sm_calib_inputs(c, l, &fit, &m_fit, &held, &m_held) || sm_calib_analysis(c, l, &ml.block, false, NULL, &a)) {
            CHECK(0, "%s layer %d: %s", name, l, sm_errmsg());
            sm_moe_layer_free(&ml);
            continue;
        }
        sm_heldout *hc = sm_heldout_new(&ml.block, held, m_held, NULL);
        CHECK(hc != NULL, "%s layer %d: cache of %lld held-out rows, %d experts, top-%d, %d shared", name, l,
              (long long)m_held, ml.block.n_experts, ml.block.rule.top_k, ml.block.n_shared);
        for (size_t v = 0; hc && v < sizeof variants / sizeof variants[0]; v++)
            check_variant(name, l, &variants[v], &ml.block, a, fit, m_fit, held, m_held, hc);
        /* a block that is not a variant of the cached layer (other shared experts) is refused */
        if (hc && ml.block.n_shared > 0) {
            sm_moe_block other = ml.block;
            other.n_shared = 0, other.shared = NULL, other.shared_gate = NULL;
            double e;
            CHECK(sm_heldout_error(hc, &other, NULL, &e) == -1, "%s layer %d: a block without the shared experts is refused: %s",
                  name, l, sm_errmsg());
        }
        sm_heldout_free(hc);
        sm_calib_release(c, l);
        sm_moe_layer_free(&ml);
    }
}

int main(void)
{
    int missing = fx_each_calibrated("submoe-test-heldout", 150, check_model);
    CHECK(missing == 0, "the demo and the five architectures' synths calibrated (%d not)", missing);
    return tu_done();
}
