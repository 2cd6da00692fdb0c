/* test_resolve: the resolver's identities, without a model (pipeline/resolve.h).
 *   - every layer of tests/plans/full.yaml resolved, written back by the inverse and resolved
 *     again gives the same job (count, method, alignment, router, ranks, per-group ranks, groups,
 *     recorded auto choice);
 *   - the rank rule is the engine's: sm_resolve_rank_value = sm_rank_resolve where that gives a
 *     number, including fractional ranks of submoe-whitened, and the workbench shows it;
 *   - the expert-count rule is the planner's, and the workbench's default count is that rule;
 *   - calibration and planner settings come from the plan. */
#include "pipeline/resolve.h"
#include "tui/tui_state.h"
#include "tui/tui_worker.h"
#include "util/diag.h"
#include "util/mem.h"
#include "fixture.h"
#include "testutil.h"

static bool same_rank(sm_rank a, sm_rank b)
{
    return a.kind == b.kind && a.count == b.count && a.fraction == b.fraction;
}

/* Two resolved layers mean the same build. */
static bool same_layer(const sm_resolved_layer *a, const sm_resolved_layer *b)
{
    const sm_layer_job *x = &a->job, *y = &b->job;
    bool same = a->n == b->n && a->is_auto == b->is_auto && x->k == y->k && x->spec.method == y->spec.method &&
                x->spec.align == y->spec.align && x->spec.router == y->spec.router && x->seed == y->seed &&
                x->algo == y->algo && x->sim == y->sim && !x->groups == !y->groups &&
                !a->auto_why == !b->auto_why && (!a->auto_why || !strcmp(a->auto_why, b->auto_why)) &&
                x->spec.n_cluster == y->spec.n_cluster && !x->spec.cluster == !y->spec.cluster;
    for (int q = 0; q < 3 && same; q++)
        same = same_rank(x->spec.matrix[q].rank, y->spec.matrix[q].rank) &&
               x->spec.matrix[q].damping == y->spec.matrix[q].damping &&
               x->spec.matrix[q].usvd.solver == y->spec.matrix[q].usvd.solver;
    for (int i = 0; same && x->groups && i < a->n; i++)
        same = x->groups[i] == y->groups[i];
    for (int c = 0; same && x->spec.cluster && c < x->spec.n_cluster; c++)
        for (int q = 0; q < 3 && same; q++)
            same = same_rank(x->spec.cluster[c][q].rank, y->spec.cluster[c][q].rank);
    return same;
}

static void test_round_trip(void)
{
    sm_plan p;
    int rc = fx_test_plan("full.yaml", &p);
    CHECK(rc == 0, "full.yaml parses %s", rc ? sm_errmsg() : "");
    if (rc)
        return;
    const int n = 8, target = 6;
    int clustered[8] = {0, 1, 2, 3, 4, 5, 0, 1};
    for (int l = 0; l < 4; l++) {
        sm_resolved_layer rl, back;
        sm_resolve_layer(&p, sm_plan_find_layer(&p, l), l, n, target, clustered, &rl);
        sm_plan_layer entry;
        sm_resolve_layer_entry(&rl, rl.is_auto || rl.auto_why, rl.auto_why, true, &entry);
        sm_resolve_layer(&p, &entry, l, n, 0, NULL, &back);
        back.job.regroup = rl.job.regroup; /* the entry spells the clustering's groups out */
        CHECK(same_layer(&rl, &back), "layer %d: resolve, inverse, resolve gives the same job (%s, k %d)", l,
              sm_merge_method_name(rl.job.spec.method), rl.job.k);
        sm_plan q; /* the entry owned by a plan, freed with it */
        sm_plan_init(&q);
        q.layers = xcalloc(1, sizeof *q.layers);
        q.layers[0] = entry;
        q.n_layers = 1;
        sm_plan_free(&q);
        sm_resolved_layer_free(&back);
        sm_resolved_layer_free(&rl);
    }
    sm_resolved_layer rl;
    sm_resolve_layer(&p, sm_plan_find_layer(&p, 2), 2, n, target, clustered, &rl);
    CHECK(rl.job.k == 4 && rl.assign[5] == 2 && rl.job.groups == rl.assign && !rl.job.regroup &&
              rl.job.spec.method == SM_MERGE_SUBMOE_WHITENED && rl.job.spec.router == SM_ROUTER_REMAP &&
              rl.job.spec.cluster[0][1].rank.count == 32 && rl.job.spec.cluster[2][2].rank.fraction == 0.25 &&
              rl.job.spec.cluster[2][0].rank.count == 64 && rl.job.spec.matrix[0].damping == 0.02,
          "layer 2: the plan's groups, method, router, per-group ranks over the layer's, damping");
    sm_resolved_layer_free(&rl);
    sm_resolve_layer(&p, sm_plan_find_layer(&p, 3), 3, n, target, clustered, &rl);
    CHECK(!rl.is_auto && rl.auto_why && rl.job.spec.method == SM_MERGE_SUBMOE && rl.job.k == target &&
              rl.job.regroup && rl.assign[7] == 1 && !rl.groups_pending,
          "layer 3: auto decided by its recorded choice, on the clustering's groups");
    sm_resolved_layer_free(&rl);
    sm_resolve_layer(&p, sm_plan_find_layer(&p, 0), 0, n, 5, NULL, &rl);
    CHECK(rl.job.k == 5 && rl.groups_pending && rl.assign && rl.job.groups == rl.assign &&
              rl.job.algo == SM_CLUSTER_HIERARCHICAL && rl.job.seed == 3,
          "layer 0: the target's count, groups left to cluster (hierarchical, seed 3)");
    sm_resolved_layer_free(&rl);
    sm_plan_layer own = {.layer = 0, .s = {.has_similarity = true, .similarity = SM_SIM_WEIGHT}};
    sm_resolve_layer(&p, &own, 0, n, target, clustered, &rl);
    CHECK(rl.job.k == target && rl.groups_pending && rl.job.sim == SM_SIM_WEIGHT,
          "a layer with its own similarity is clustered on it, not given the target's groups");
    sm_resolved_layer_free(&rl);
    sm_resolve_layer(&p, sm_plan_find_layer(&p, 0), 0, n, 0, NULL, &rl);
    CHECK(rl.job.k == 0 && !rl.assign, "no count and no target: k 0 (apply refuses it)");
    sm_resolved_layer_free(&rl);

    sm_calib_spec s;
    sm_calib_spec_default(&s);
    sm_resolve_calib_spec(&p, &s);
    CHECK(s.samples == 16 && s.seq_len == 128 && s.keep == 2048 && s.heldout == 512 && s.sample == 256 && s.seed == 7,
          "calibration settings from the plan");
    sm_planner_opts po;
    CHECK(sm_resolve_planner_opts(&p, &po) && po.ratio == 0.25 && po.experts == 0 && po.adaptive && po.window == 2 &&
              po.algo == SM_CLUSTER_HIERARCHICAL && po.sim == SM_SIM_OUTPUT && po.seed == 3,
          "planner options from the plan's target");
    sm_plan_free(&p);
}

static void test_rank_rule(void)
{
    /* gate and up are 128 x 256 (inter x hidden), down 256 x 128: the demo's shapes */
    const int64_t outs[2] = {128, 256}, ins[2] = {256, 128};
    const sm_rank ranks[] = {{SM_RANK_FULL, 0, 0},      {SM_RANK_COUNT, 7, 0},    {SM_RANK_COUNT, 4000, 0},
                             {SM_RANK_FRACTION, 0, 0.5}, {SM_RANK_FRACTION, 0, 0.1}, {SM_RANK_FRACTION, 0, 1.0}};
    const sm_merge_method methods[2] = {SM_MERGE_SUBMOE, SM_MERGE_SUBMOE_WHITENED};
    int agree = 0, cases = 0;
    for (int m = 0; m < 2; m++)
        for (int s = 0; s < 2; s++)
            for (int members = 1; members <= 3; members++)
                for (size_t r = 0; r < sizeof ranks / sizeof ranks[0]; r++) {
                    int64_t want;
                    sm_rank_resolve(&ranks[r], methods[m], outs[s], ins[s], members, &want);
                    if (want == 0) /* full, or submoe's exact merge */
                        want = outs[s] < members * ins[s] ? outs[s] : members * ins[s];
                    cases++;
                    agree += sm_resolve_rank_value(&ranks[r], methods[m], outs[s], ins[s], members) == want;
                }
    CHECK(agree == cases, "the rank as a number is sm_rank_resolve's in %d of %d cases", agree, cases);
    sm_rank half = {SM_RANK_FRACTION, 0, 0.5};
    CHECK(sm_resolve_rank_value(&half, SM_MERGE_SUBMOE_WHITENED, 128, 256, 2) == 42 &&
              sm_resolve_rank_value(&half, SM_MERGE_SUBMOE, 128, 256, 2) == 64,
          "rank 0.5 of a 128 x 256 matrix: whitened 42 (of 128·256/384), submoe 64 (of 128)");

    static tui_state s; /* large: not on the stack */
    tui_state_init(&s);
    s.hidden = 256;
    s.inter = 128;
    s.n_layers = 1;
    s.top_k = 2;
    s.is_moe[0] = true;
    tui_plan_layer_init(&s, 0, 8);
    tui_set_method(&s, 0, false, SM_MERGE_SUBMOE_WHITENED);
    CHECK(tui_rank_value(&s, &s.res[0], half, 0, 2) == 42 && tui_rank_max(&s, 0, 2) == 128,
          "the workbench shows the whitened gate rank 0.5 of a group of 2 as 42 of 128");
    tui_set_method(&s, 0, false, SM_MERGE_AVERAGE);
    CHECK(tui_rank_value(&s, &s.res[0], half, 0, 2) == 64, "a method without ranks shows submoe's (64)");
    /* the estimate before a preview counts factors by the same rule: 4 groups of 2 at rank 0.5 */
    tui_set_method(&s, 0, false, SM_MERGE_SUBMOE_WHITENED);
    tui_set_rank(&s, 0, -1, half);
    int64_t est = 0;
    for (int j = 0; j < 3; j++) {
        int64_t out = j == 2 ? 256 : 128, in = j == 2 ? 128 : 256;
        est += sm_resolve_rank_value(&half, SM_MERGE_SUBMOE_WHITENED, out, in, 2) * (out + in);
    }
    tui_entry(&s, 0)->s.experts = 4; /* groups of two, as a clustering gave them */
    for (int i = 0; i < 8; i++)
        s.clustered[0][i] = i / 2;
    tui_layer_refresh(&s, 0);
    CHECK(tui_plan_params(&s, 0) == 4 * est, "the whitened estimate is the resolver's rank (%lld, want %lld)",
          (long long)tui_plan_params(&s, 0), (long long)(4 * est));
    tui_state_free_data(&s);
}

static void test_count_rule(void)
{
    int same = 0, cases = 0;
    for (int n = 1; n <= 64; n++)
        for (int top_k = 1; top_k <= 8; top_k++) {
            static tui_state s; /* large: not on the stack */
            tui_state_free_data(&s);
            tui_state_init(&s);
            s.n_layers = 1;
            s.top_k = top_k;
            s.is_moe[0] = true;
            tui_plan_layer_init(&s, 0, n);
            cases++;
            same += s.res[0].k == sm_planner_target_k(0, TUI_DEFAULT_RATIO, n, top_k) && tui_plan_consistent(&s.res[0]);
        }
    CHECK(same == cases, "the workbench's default count is the planner's rule at ratio %.2f (%d of %d)",
          TUI_DEFAULT_RATIO, same, cases);
    CHECK(sm_planner_target_k(0, 0.25, 8, 2) == 6 && sm_planner_target_k(0, 0.9, 8, 2) == 2 &&
              sm_planner_target_k(5, 0, 8, 2) == 5 && sm_planner_target_k(0, 0.5, 1, 2) == 1,
          "target counts: round(n(1-ratio)), at least top-k, at most n");
}

int main(void)
{
    test_round_trip();
    test_rank_rule();
    test_count_rule();
    return tu_failures ? 1 : 0;
}
