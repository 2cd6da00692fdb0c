/* test_guard: auto's plan guard (pipeline/guard.h, issue 18) on the from-scratch demo at 25% fewer
 * experts, the cell where auto's per-layer choices composed worse than one single method:
 * - the guard windows follow auto's own windows in the token file and do not overlap them;
 * - it compares the per-layer plan with every uniform plan of auto's candidates (prunings and
 *   merges);
 * - the property: the kept plan's loss on the guard windows is ≤ that of every plan scored on all
 *   of them, and every plan dropped after the first half was above the best there by more than
 *   SM_GUARD_DROP;
 * - its scores are what they claim: the uniform prune-output plan and the per-layer plan, built
 *   here directly (the explicit method on every layer; auto's own builds) and evaluated on the
 *   guard windows, give the same loss (to 1e-6: the guard runs the windows in two halves, so the
 *   forward's products have other sizes and round differently; plans differ by 1e-4 and more). */
#include "pipeline/build.h"
#include "pipeline/guard.h"
#include "pipeline/planner.h"
#include "pipeline/resolve.h"
#include "util/diag.h"
#include "fixture.h"
#include "testutil.h"

#include <stdlib.h>

/* log perplexity on the guard windows with these layers swapped in; NAN on failure. */
static double guard_loss(sm_model *m, sm_calib *c, const sm_moe_block **blocks)
{
    const int32_t *ids;
    int n, T;
    double ppl;
    if (sm_calib_guard_windows(c, &ids, &n, &T) || sm_perplexity_with(m, ids, n, T, blocks, NULL, &ppl))
        return NAN;
    return log(ppl);
}

static int index_of(const sm_guard *g, const char *name)
{
    for (int i = 1; i < g->n_plans; i++)
        if (!strcmp(g->name[i], name))
            return i;
    return -1;
}

int main(void)
{
    char *dir = fx_srcpath("data/demo-scratch"), *tokens = fx_srcpath("data/calib.u32");
    sm_model *m = sm_model_open(dir);
    sm_calib *c = NULL;
    CHECK(m != NULL, "open %s: %s", dir, m ? "" : sm_errmsg());
    if (!m)
        goto out;
    sm_calib_spec s;
    fx_calib_spec(&s, tokens, 16, 256);
    s.keep = 2048;
    c = sm_calib_capture(m, &s, NULL, NULL, NULL);
    CHECK(c != NULL, "calibration: %s", c ? "" : sm_errmsg());
    if (!c)
        goto out;
    const int32_t *eval_ids, *guard_ids;
    int n_eval, n_guard, T_eval, T_guard;
    CHECK(sm_calib_eval_windows(c, &eval_ids, &n_eval, &T_eval) == 0 &&
              sm_calib_guard_windows(c, &guard_ids, &n_guard, &T_guard) == 0 && n_eval == SM_CALIB_EVAL_WINDOWS &&
              n_guard == SM_CALIB_GUARD_WINDOWS && T_eval == T_guard &&
              guard_ids == eval_ids + (size_t)n_eval * (size_t)T_eval,
          "the guard's %d windows follow auto's %d in the token file, none shared", n_guard, n_eval);

    const sm_config *cfg = sm_model_config(m);
    int L = cfg->n_layers;
    sm_planned_layer *pl = calloc((size_t)L, sizeof *pl);
    sm_resolved_layer *rl = calloc((size_t)L, sizeof *rl);
    sm_layer_build *b = calloc((size_t)L, sizeof *b), *u = calloc((size_t)L, sizeof *u);
    sm_guard_layer *gl = calloc((size_t)L, sizeof *gl);
    char (*why)[600] = calloc((size_t)L, sizeof *why);
    const sm_moe_block **blocks = calloc((size_t)L, sizeof *blocks);
    sm_planner_opts po = {.ratio = 0.25, .window = 2, .algo = SM_CLUSTER_KMEANS, .sim = SM_SIM_OUTPUT, .seed = 1};
    int ok = sm_planner_run(m, c, &po, NULL, pl) == 0;
    CHECK(ok, "planner: %s", ok ? "" : sm_errmsg());
    sm_plan p; /* the default plan: auto, its format's router (remap) */
    sm_plan_init(&p);
    for (int l = 0; ok && l < L; l++) {
        if (pl[l].layer < 0)
            continue;
        sm_resolve_layer(&p, NULL, l, pl[l].n, pl[l].k, pl[l].assign, &rl[l]);
        ok = rl[l].is_auto && sm_layer_build_auto(m, c, &rl[l].job, NULL, &b[l], why[l], sizeof why[l]) == 0;
        CHECK(ok, "layer %d auto: %.120s", l, ok ? why[l] : sm_errmsg());
        gl[l] = (sm_guard_layer){&rl[l].job, why[l]};
    }
    sm_guard g;
    ok = ok && sm_guard_run(m, c, gl, L, NULL, &g) == 0;
    CHECK(ok && g.n_plans > 1, "the guard ran: %d plans (%s)", ok ? g.n_plans : 0, ok ? "" : sm_errmsg());
    if (!ok || g.n_plans <= 1)
        goto free_all;
    char note[2048];
    sm_guard_note(&g, note, sizeof note);
    printf("# %s\n", note);
    CHECK(index_of(&g, "submoe") > 0 && index_of(&g, "submoe+align") > 0 && index_of(&g, "prune-frequency") > 0 &&
              index_of(&g, "prune-output") > 0 && index_of(&g, "prune-reap") > 0 &&
              index_of(&g, "submoe/dominant") > 0,
          "the uniform plans include auto's merges and prunings (%d plans)", g.n_plans);
    double best_first = INFINITY;
    for (int i = 0; i < g.n_plans; i++)
        best_first = fmin(best_first, g.first[i]);
    int held = 1, n_full = 0;
    for (int i = 0; i < g.n_plans; i++) {
        if (g.dropped[i])
            held &= g.first[i] > best_first + SM_GUARD_DROP;
        else
            held &= g.loss[g.best] <= g.loss[i], n_full++;
    }
    CHECK(!g.dropped[g.best] && held,
          "the kept plan (%s, %.4f) is no worse than any of the %d plans scored on every guard window, and each "
          "dropped one was above the best first half by more than %g",
          g.name[g.best], g.loss[g.best], n_full, SM_GUARD_DROP);

    /* the per-layer plan: auto's own builds */
    for (int l = 0; l < L; l++)
        blocks[l] = pl[l].layer >= 0 ? &b[l].block : NULL;
    double direct = guard_loss(m, c, blocks);
    if (!g.dropped[0])
        CHECK_NEAR(g.loss[0], direct, 1e-6, "the per-layer plan's guard loss = its builds evaluated on the windows");
    else
        CHECK(g.first[0] > best_first + SM_GUARD_DROP, "the per-layer plan was dropped");
    /* uniform prune-output: the explicit method on every layer */
    int po_i = index_of(&g, "prune-output");
    for (int l = 0; ok && l < L; l++) {
        if (pl[l].layer < 0)
            continue;
        sm_layer_job j = rl[l].job;
        j.spec.method = SM_MERGE_PRUNE_OUTPUT;
        ok = sm_layer_build_run(m, c, &j, NULL, &u[l]) == 0;
        blocks[l] = &u[l].block;
    }
    direct = ok ? guard_loss(m, c, blocks) : NAN;
    if (po_i > 0 && !g.dropped[po_i])
        CHECK_NEAR(g.loss[po_i], direct, 1e-6, "uniform prune-output's guard loss = prune-output on every layer");
    else
        CHECK(po_i > 0 && g.first[po_i] > best_first + SM_GUARD_DROP, "uniform prune-output was dropped");
    /* a uniform winner names a candidate every layer can build */
    sm_layer_job cj;
    CHECK(sm_guard_candidate_job(&rl[cfg->n_layers - 1].job, "submoe+align/dominant", &cj) == 0 &&
              cj.spec.method == SM_MERGE_SUBMOE && cj.spec.align && !cj.groups && cj.algo == SM_CLUSTER_DOMINANT &&
              sm_guard_candidate_job(&rl[cfg->n_layers - 1].job, "prune-output (x)", &cj) == 0 &&
              cj.spec.method == SM_MERGE_PRUNE_OUTPUT && !cj.spec.align &&
              sm_guard_candidate_job(&rl[cfg->n_layers - 1].job, "submoe/bogus", &cj) == -1,
          "candidate names parse to jobs (groups, alignment), an unknown grouping is refused");
free_all:
    for (int l = 0; l < L; l++) {
        sm_layer_build_free(&b[l]);
        sm_layer_build_free(&u[l]);
        sm_resolved_layer_free(&rl[l]);
        sm_planned_layer_free(&pl[l]);
    }
    sm_plan_free(&p);
    free(pl), free(rl), free(b), free(u), free(gl), free(why), free(blocks);
out:
    sm_calib_free(c);
    sm_model_close(m);
    free(dir), free(tokens);
    return tu_done();
}
