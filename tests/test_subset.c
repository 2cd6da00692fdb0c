/* test_subset: the output error of a pruned layer scored from cached expert outputs
 * (engine/subset.h) equals the block-forward evaluation (sm_moe_output_error of the full block
 * against the pruned one) to 1e-5 relative, on every MoE layer of the demo and of synths of all
 * five architectures (qwen2_moe's gated shared expert, deepseek's always-on shared experts and
 * routed scaling, renormalised and raw top-k weights), for subsets from all experts down to fewer
 * than the routing top-k, on calibration inputs captured with the forward pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/router.h"
#include "engine/subset.h"
#include "forward/moelayer.h"
#include "pipeline/calib.h"
#include "fixture.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/rng.h"

#define SUBSETS_PER_SIZE 4
/* Errors are relative to ||Y||. The block forward sums its outputs in float32, so its error of a
 * subset that changes (almost) nothing is float32 rounding, a few 1e-8 (e.g. 7.1e-8 where the
 * exact value is 5.4e-8 on a demo layer): 1e-5 relative holds above this floor of 4 float32 ulps. */
#define ROUNDING_FLOOR 5e-7

/* A random k-subset of n, ascending. */
static void random_subset(sm_rng *r, int n, int k, int *keep)
{
    int perm[256];
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(sm_rng_u64(r) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    unsigned char in[256] = {0};
    for (int j = 0; j < k; j++)
        in[perm[j]] = 1;
    for (int i = 0, j = 0; i < n; i++)
        if (in[i])
            keep[j++] = i;
}

/* The pruned block's error by the block forward. */
static int forward_error(const sm_moe_block *src, const int *keep, int k, const float *x, int64_t m, double *rel)
{
    float *rows = malloc(sizeof(float) * (size_t)(k * src->hidden));
    sm_expert *ex = malloc(sizeof(sm_expert) * (size_t)k);
    int rc = rows && ex ? sm_router_prune(src->router, src->n_experts, src->hidden, keep, k, rows) : -1;
    for (int j = 0; rc == 0 && j < k; j++)
        ex[j] = src->experts[keep[j]];
    sm_moe_block b = *src;
    b.n_router = b.n_experts = k;
    b.router = rows;
    b.experts = ex;
    if (b.rule.top_k > k)
        b.rule.top_k = k;
    if (rc == 0)
        rc = sm_moe_output_error(src, &b, x, m, 0, rel);
    free(rows), free(ex);
    return rc;
}

/* Every MoE layer of m: subsets of every size from n down to min(top_k - 1, ...) (at least 1). */
static void check_model(const char *name, const sm_model *m, sm_calib *c)
{
    const sm_config *cfg = sm_model_config(m);
    sm_rng r;
    sm_rng_seed(&r, 7);
    for (int l = 0; l < cfg->n_layers; l++) {
        if (!cfg->is_moe[l])
            continue;
        sm_moe_layer ml;
        const float *x;
        int64_t mx;
        if (sm_moe_layer_load(m, l, &ml) || sm_calib_inputs(c, l, &x, &mx, NULL, NULL)) {
            CHECK(0, "%s layer %d: %s", name, l, sm_errmsg());
            continue;
        }
        const sm_moe_block *b = &ml.block;
        const int n = b->n_experts, min_keep = b->rule.top_k > 1 ? b->rule.top_k - 1 : 1;
        sm_subset_cache *sc = sm_subset_cache_new(b, x, mx, min_keep, NULL);
        CHECK(sc != NULL, "%s layer %d: cache of %lld rows, %d experts, top-%d, %d shared", name, l, (long long)mx, n,
              b->rule.top_k, b->n_shared);
        double worst = 0;
        int tried = 0, bad = 0;
        for (int k = n; sc && k >= min_keep; k--)
            for (int s = 0; s < (k == n ? 1 : SUBSETS_PER_SIZE); s++) {
                int keep[256];
                random_subset(&r, n, k, keep);
                double a = -1, f = -1;
                if (sm_subset_cache_error(sc, keep, k, &a) || forward_error(b, keep, k, x, mx, &f)) {
                    CHECK(0, "%s layer %d, %d kept: %s", name, l, k, sm_errmsg());
                    bad++;
                    continue;
                }
                double d = fabs(a - f) / (f > 0 ? f : 1);
                worst = f > ROUNDING_FLOOR && d > worst ? d : worst;
                tried++;
                if (!(fabs(a - f) <= 1e-5 * f + ROUNDING_FLOOR)) {
                    CHECK(0, "%s layer %d, %d kept: cached %.9g vs forward %.9g", name, l, k, a, f);
                    bad++;
                } else if (k == n && a != 0.0) {
                    CHECK(0, "%s layer %d: keeping every expert costs %.3g", name, l, a);
                    bad++;
                }
            }
        CHECK(sc && !bad && tried > 0, "%s layer %d: %d subsets, cached = block forward (worst relative difference above the floor %.2g)",
              name, l, tried, worst);
        /* fewer experts than the cache was built for are refused, not guessed */
        int keep[256];
        random_subset(&r, n, min_keep > 1 ? min_keep - 1 : 1, keep);
        double e;
        if (sc && min_keep > 1)
            CHECK(sm_subset_cache_error(sc, keep, min_keep - 1, &e) == -1, "%s layer %d: below min_keep refused: %s",
                  name, l, sm_errmsg());
        sm_subset_cache_free(sc);
        sm_moe_layer_free(&ml);
    }
}

int main(void)
{
    int missing = fx_each_calibrated("submoe-test-subset", 100, check_model);
    CHECK(missing == 0, "the demo and the five architectures' synths calibrated (%d not)", missing);
    return tu_done();
}
