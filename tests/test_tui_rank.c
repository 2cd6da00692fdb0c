/* test_tui_rank: the workbench's rank chooser tells the truth (issue 19 item 3).
 *   - the spectrum's marks on a known spectrum: the smallest ranks keeping 90/95/99% of Σσ², and
 *     the break-even of sm_rank_factored (85 for the demo's 256 × 128 matrices: 85·384 < 32768 ≤
 *     86·384);
 *   - tui_plan_params, the estimate shown before a preview, equals what `submoe apply` writes:
 *     the expert tensors of the written model (factors A, B or dense matrices) of every layer
 *     counted, on the demo, at a rank below the break-even (submoe, rank 32: factors) and above
 *     it (submoe-whitened, rank 100: dense, though the whitened merge is a product of factors);
 *   - the heatmap's keys (PgDn/PgUp, /, z) on a 128-expert layer, without a terminal. */
#include "engine/merge.h"
#include "model/model.h"
#include "pipeline/apply.h"
#include "tui/tui_state.h"
#include "util/diag.h"
#include "fixture.h"
#include "testutil.h"

static void test_marks(void)
{
    /* energies 50, 30, 10, 5, 4, 1 of 100: 90% at rank 3, 95% at 4, 99% at 5 */
    const double e[6] = {50, 30, 10, 5, 4, 1};
    double sv[6];
    for (int i = 0; i < 6; i++)
        sv[i] = sqrt(e[i]);
    tui_spec_marks m;
    tui_spectrum_marks(sv, 6, 256, 128, &m);
    CHECK(m.energy[0] == 3 && m.energy[1] == 4 && m.energy[2] == 5, "90/95/99%% of the energy at ranks %lld/%lld/%lld",
          (long long)m.energy[0], (long long)m.energy[1], (long long)m.energy[2]);
    CHECK(m.break_even == 85 && sm_rank_factored(85, 256, 128) && !sm_rank_factored(86, 256, 128),
          "break-even of 256 x 128 at rank %lld (the writer's rule)", (long long)m.break_even);
    tui_spectrum_marks(sv, 6, 128, 256, &m);
    CHECK(m.break_even == 85, "the same for 128 x 256");
    tui_spectrum_marks(sv, 6, 2, 2, &m);
    CHECK(m.break_even == 0, "a 2 x 2 matrix is never factored (1·4 = 4 is not below 4)");
    const double flat[4] = {1, 1, 1, 1};
    tui_spectrum_marks(flat, 4, 4096, 1024, &m);
    CHECK(m.energy[0] == 4 && m.energy[1] == 4 && m.energy[2] == 4 && m.break_even == 819,
          "a flat spectrum needs every direction; 4096 x 1024 breaks even at 819 (%lld)", (long long)m.break_even);
}

/* The heatmap's keys without a terminal (the tmux test drives the real binary): PgDn/PgUp page
 * the experts by what the grid shows at the recorded terminal size and leave the layer alone,
 * / jumps (refusing an expert outside the layer as typed), z toggles the overview. */
static void test_heat_keys(void)
{
    static tui_state s; /* large: not on the stack */
    tui_state_init(&s);
    s.n_layers = 2, s.top_k = 8, s.n_experts = 128, s.hidden = 32, s.inter = 32;
    for (int l = 0; l < 2; l++) {
        s.is_moe[l] = true;
        tui_plan_layer_init(&s, l, 128);
    }
    s.layer = 0, s.view = TUI_VIEW_HEATMAP, s.screen_cols = 80, s.screen_rows = 24;
    tui_layout L = tui_layout_compute(80, 24);
    tui_layer u;
    int uci, ucj;
    tui_heat_geom g = tui_heat_view_geometry(&s, L.main.w - 1, L.main.h - 2, &u, &uci, &ucj);
    tui_key(&s, TUI_KEY_PGDN);
    CHECK(s.layer == 0 && s.ci == g.nrows && s.cj == g.ncols && g.ncols > 1,
          "PgDn in the heatmap: a page of rows (%d) and of columns (%d), the same layer", s.ci, s.cj);
    int presses = 1;
    while ((s.ci < 127 || s.cj < 127) && presses < 128)
        tui_key(&s, TUI_KEY_PGDN), presses++;
    CHECK(s.ci == 127 && s.cj == 127 && presses <= 127 / 8, "... expert position 127 after %d pages", presses);
    g = tui_heat_view_geometry(&s, L.main.w - 1, L.main.h - 2, &u, &uci, &ucj); /* pages vary with the boundaries */
    tui_key(&s, TUI_KEY_PGUP);
    CHECK(s.cj == 127 - g.ncols && s.ci == 127 - g.nrows && s.layer == 0, "PgUp: a page back (%d columns)", g.ncols);
    tui_key(&s, '/');
    CHECK(s.dialog == TUI_DIALOG_EXPERT && !s.input[0], "/: the expert prompt, empty");
    tui_key(&s, '1'), tui_key(&s, '3'), tui_key(&s, '0');
    CHECK(!strcmp(s.input, "13") && s.status_error && strstr(s.status, "0..127"),
          "130 refused as typed (field '%s': %s)", s.input, s.status);
    tui_key(&s, TUI_KEY_ENTER);
    int order[TUI_MAX_EXPERTS];
    tui_cluster_order(&s.res[0], order);
    CHECK(s.dialog == TUI_DIALOG_NONE && order[s.ci] == 13 && order[s.cj] == 13, "Enter: the cursor on expert 13");
    tui_key(&s, 'z');
    g = tui_heat_view_geometry(&s, L.main.w - 1, L.main.h - 2, &u, &uci, &ucj);
    CHECK(s.heat_overview && g.overview && g.by_group && g.cw == 1 && u.n == s.res[0].k &&
              uci == s.res[0].assign[13],
          "z: the overview, one column per group at 80x24 (%d groups), the cursor on expert 13's", u.n);
    tui_layout W = tui_layout_compute(200, 60);
    g = tui_heat_view_geometry(&s, W.main.w - 1, W.main.h - 2, &u, &uci, &ucj);
    CHECK(!g.by_group && g.cw == 1 && g.ncols == 128 && u.n == 128, "... one column per expert at 200x60");
    tui_key(&s, 'z');
    CHECK(!s.heat_overview, "z again: the cells");
    s.view = TUI_VIEW_LAYERS;
    tui_key(&s, TUI_KEY_PGDN);
    CHECK(s.layer == 1, "PgDn outside the heatmap: the next layer");
    tui_state_free_data(&s);
}

/* Routed expert parameters of layer l as stored in the written model. */
static int64_t written_params(const sm_model *m, int l)
{
    static const sm_wrole roles[3] = {SM_W_EXPERT_GATE, SM_W_EXPERT_UP, SM_W_EXPERT_DOWN};
    int64_t tot = 0;
    for (int e = 0; e < sm_model_layer_experts(m, l); e++)
        for (int j = 0; j < 3; j++) {
            sm_weight a, b;
            int f = sm_model_expert_factors(m, l, e, j, &a, &b);
            if (f == 1)
                tot += a.rows * a.cols + b.rows * b.cols;
            else if (f == 0 && sm_model_weight(m, roles[j], l, e, &a) == 0)
                tot += a.rows * a.cols;
            else
                return -1;
        }
    return tot;
}

/* The estimate for a plan (what the workbench shows before a preview) and the written model. */
static void estimate_vs_written(const char *method, int rank, bool factored)
{
    char *dir = fx_tmpdir("submoe-test-tui-rank"), *tokens = fx_srcpath("data/calib.u32");
    char text[2048], out[1024];
    snprintf(text, sizeof text,
             "submoe_plan: 1\nmodel:\n  path: %s\ncalibration:\n  tokens: %s\n  samples: 8\n  seq_len: 128\n"
             "defaults:\n  method: %s\n  router: remap\n  experts: 6\n  rank: %d\n",
             getenv("DEMO"), tokens, method, rank);
    snprintf(out, sizeof out, "%s/out", dir);
    static tui_state s; /* large: not on the stack */
    tui_state_free_data(&s);
    tui_state_init(&s);
    sm_model *m = fx_demo_open();
    bool ok = m && sm_plan_parse(text, strlen(text), "rank.yaml", &s.plan) == 0;
    CHECK(ok, "%s rank %d: the plan parses, the demo opens (%s)", method, rank, sm_errmsg());
    if (!ok) {
        sm_model_close(m);
        fx_tmpdir_remove(dir);
        free(tokens);
        return;
    }
    const sm_config *c = sm_model_config(m);
    s.n_layers = c->n_layers, s.top_k = c->top_k, s.n_experts = c->n_experts;
    s.hidden = c->hidden, s.inter = c->expert_intermediate;
    s.total_params = (int64_t)sm_model_param_count(m);
    for (int l = 0; l < c->n_layers; l++)
        if ((s.is_moe[l] = c->is_moe[l]))
            tui_plan_layer_init(&s, l, sm_model_layer_experts(m, l));
    sm_apply_opts o = {.outdir = out, .format = -1, .quiet = true};
    sm_apply_report rep;
    int rc = sm_apply(&s.plan, &o, &rep);
    CHECK(rc == 0, "%s rank %d: apply writes the model (%s)", method, rank, rc ? sm_errmsg() : "");
    sm_model *w = rc == 0 ? sm_model_open(out) : NULL;
    int64_t est = 0, got = 0, dense = 0;
    bool each = w != NULL;
    for (int l = 0; w && l < c->n_layers; l++)
        if (c->is_moe[l]) {
            int64_t e = tui_plan_params(&s, l), g = written_params(w, l);
            each &= e == g;
            if (e != g)
                printf("# layer %d: estimate %lld, written %lld\n", l, (long long)e, (long long)g);
            est += e, got += g;
            dense += (int64_t)s.res[l].k * 3 * s.hidden * s.inter;
        }
    CHECK(each && got > 0, "%s rank %d: the estimate of every layer is what the writer stores (%lld, written %lld)",
          method, rank, (long long)est, (long long)got);
    CHECK(factored ? got < dense : got == dense, "%s rank %d: %s (%lld of %lld dense)", method, rank,
          factored ? "factors, smaller than dense" : "above the break-even: dense", (long long)got, (long long)dense);
    CHECK(w && tui_model_params_after(&s) == (int64_t)sm_model_param_count(w),
          "%s rank %d: the whole model's estimate is the written model's parameter count", method, rank);
    sm_model_close(w);
    sm_model_close(m);
    tui_state_free_data(&s);
    fx_tmpdir_remove(dir);
    free(tokens);
}

int main(void)
{
    test_marks();
    test_heat_keys();
    if (!getenv("DEMO") || !getenv("SRCDIR")) {
        CHECK(0, "DEMO and SRCDIR must be set");
        return tu_done();
    }
    estimate_vs_written("submoe", 32, true);
    estimate_vs_written("submoe-whitened", 100, false);
    return tu_done();
}
