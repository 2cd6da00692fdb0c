/* test_tui_model: the model view (4) and the comparison of plans (5), in-process (issue 19 items
 * 1 and 2): apply-to-all sets a setting on every MoE layer, or on the marked ones, as ONE undo
 * step that u undoes and U redoes on every layer; the rank prompt of the model view refuses a
 * rank outside [1, max] of every layer; S sorts by error; Enter goes to the layer's plan; a second
 * plan resolves by the workbench's resolver and its differences are those of its entries; both
 * views draw at 80x24 and 200x60 (under ASan an out-of-bounds walk aborts here). */
#include "testutil.h"
#include "tui_fake.h"

static tui_state s; /* large: not on the stack */
static bool drawing;

static void press(const char *keys)
{
    for (const char *k = keys; *k; k++) {
        tui_key(&s, *k == '\r' ? TUI_KEY_ENTER : (unsigned char)*k);
        if (drawing) {
            fake_draw(&s, 80, 24);
            fake_draw(&s, 200, 60);
        }
    }
}

/* 6 layers (1 dense), 8 experts, previews with errors 0.1·(l+1) except layer 3's 0.9. */
static void fresh(void)
{
    fake_state(&s, 6, 8);
    for (int l = 0; l < 6; l++)
        if (s.is_moe[l]) {
            s.data[l].have_preview = true;
            s.data[l].preview_gen = s.plan_gen[l];
            s.data[l].output_error = l == 3 ? 0.9 : 0.1 * (l + 1);
        }
}

static int count_method(sm_merge_method m, bool is_auto)
{
    int n = 0;
    for (int l = 0; l < s.n_layers; l++)
        n += s.is_moe[l] && s.res[l].is_auto == is_auto && (is_auto || s.res[l].method == m);
    return n;
}

static void test_apply_all_undo(void)
{
    fresh();
    press("4");
    CHECK(s.view == TUI_VIEW_MODEL, "4 shows the model view");
    CHECK(count_method(SM_MERGE_SUBMOE, true) == 5, "every MoE layer starts auto");
    press("M");
    CHECK(count_method(SM_MERGE_SUBMOE, false) == 5 && s.n_undo == 1,
          "M in the model view: submoe on all 5 MoE layers, one undo step (%d)", s.n_undo);
    bool stale = true;
    for (int l = 0; l < 6; l++)
        stale = stale && (!s.is_moe[l] || !tui_preview_fresh(&s, l));
    CHECK(stale, "every changed layer's preview is stale");
    press("u");
    CHECK(count_method(SM_MERGE_SUBMOE, true) == 5 && s.n_undo == 0 && s.n_redo == 1,
          "u undoes the method on every layer at once");
    press("U");
    CHECK(count_method(SM_MERGE_SUBMOE, false) == 5 && s.n_undo == 1, "U redoes it on every layer");
    press("M");
    CHECK(count_method(SM_MERGE_SUBMOE_WHITENED, false) == 5 && s.n_undo == 2, "M again: the next method on all");
    press("u");
    CHECK(count_method(SM_MERGE_SUBMOE, false) == 5, "u goes back one step, not one layer");
    /* a per-layer edit after an apply-to-all is a step of its own */
    press("1M4");
    CHECK(s.n_undo == 2 && s.res[0].method == SM_MERGE_SUBMOE_WHITENED && s.res[2].method == SM_MERGE_SUBMOE,
          "M in the plan view changes one layer, one step");
    press("u");
    CHECK(s.res[0].method == SM_MERGE_SUBMOE && count_method(SM_MERGE_SUBMOE, false) == 5,
          "its undo leaves the other layers alone");
}

static void test_marks_router_align(void)
{
    fresh();
    press("4");
    sm_router_mode r0 = s.res[0].router;
    press(" ");
    CHECK(s.marked[0] && s.layer == 2, "space marks layer 0 and moves on to the next MoE layer (%d)", s.layer);
    press(" ");
    CHECK(s.marked[2] && s.layer == 3, "space marks layer 2");
    press("k");
    int t[TUI_MAX_LAYERS];
    CHECK(tui_model_targets(&s, t) == 2 && t[0] == 0 && t[1] == 2, "the marked layers are the targets");
    press("r");
    CHECK(s.res[0].router != r0 && s.res[2].router == s.res[0].router && s.res[3].router == r0 &&
              s.res[4].router == r0,
          "r changes the router of the marked layers only");
    press("u");
    CHECK(s.res[0].router == r0 && s.res[2].router == r0, "u undoes both");
    /* alignment only where the layer merges */
    press("M"); /* submoe on 0 and 2 */
    bool before = s.res[0].align;
    press("a");
    CHECK(s.res[0].align == !before && s.res[2].align == !before && s.res[3].is_auto,
          "a toggles the alignment of the marked merging layers");
}

static void test_rank_prompt(void)
{
    fresh();
    press("4M=");
    CHECK(s.dialog == TUI_DIALOG_RANK && s.rank_matrix == TUI_RANK_EVERY_LAYER && !s.input[0],
          "= in the model view: an empty prompt for every layer");
    int64_t max = tui_apply_rank_max(&s);
    char big[32];
    snprintf(big, sizeof big, "%lld", (long long)max * 10 + 8);
    press(big);
    CHECK(strlen(s.input) < strlen(big) && s.status_error && strstr(s.status, "outside 1.."),
          "a rank above %lld is refused as it is typed ('%s', %s)", (long long)max, s.input, s.status);
    press("\x15" "4\r"); /* Ctrl-U clears */
    bool four = true;
    for (int l = 0; l < s.n_layers; l++)
        for (int j = 0; j < 3 && s.is_moe[l]; j++)
            four = four && s.res[l].rank[j].kind == SM_RANK_COUNT && s.res[l].rank[j].count == 4;
    CHECK(four && s.n_undo == 2, "rank 4 on every layer's three matrices, one step (%d)", s.n_undo);
    press("u");
    CHECK(s.res[0].rank[0].kind == SM_RANK_FULL && s.res[5].rank[2].kind == SM_RANK_FULL, "u restores full rank");
}

static void test_sort_enter(void)
{
    fresh();
    press("4");
    int rows[TUI_MAX_LAYERS], n = tui_model_rows(&s, rows);
    CHECK(n == 5 && rows[0] == 0 && rows[4] == 5, "by layer: 0 2 3 4 5");
    press("S");
    n = tui_model_rows(&s, rows);
    CHECK(n == 5 && rows[0] == 3 && rows[1] == 5 && rows[4] == 0, "S: by error, worst first (3, then 5 ... 0)");
    press("j");
    CHECK(s.layer == 0, "j from the last sorted row (layer 0) stays (%d)", s.layer);
    s.layer = 3;
    press("j");
    CHECK(s.layer == 5, "j from the worst layer goes to the next worst (%d)", s.layer);
    press("\r");
    CHECK(s.view == TUI_VIEW_LAYERS && s.layer == 5, "Enter shows the layer's plan");
}

/* The other plan: every layer at the fake's count, layer 0 kept whole, layer 4 router lstsq. */
static void other_plan(sm_plan *p)
{
    sm_plan_init(p);
    p->n_layers = 5;
    p->layers = calloc(5, sizeof *p->layers);
    int at = 0;
    for (int l = 0; l < 6; l++) {
        if (l == 1)
            continue;
        sm_plan_layer *pl = &p->layers[at++];
        pl->layer = l;
        pl->s.has_experts = true;
        pl->s.experts = 4;
        if (l == 0)
            pl->s.has_method = true, pl->s.method = SM_MERGE_KEEP;
        if (l == 4)
            pl->s.has_router = true, pl->s.router = SM_ROUTER_COLLAPSE_LSTSQ;
    }
}

static void test_compare(void)
{
    fresh();
    press("5");
    CHECK(s.view == TUI_VIEW_COMPARE, "5 shows the comparison (nothing to compare yet)");
    sm_plan p;
    other_plan(&p);
    tui_other_open(&s, &p, "/tmp/other.yaml");
    CHECK(s.other && tui_compare_layer(&s, 0) == TUI_DIFF_METHOD, "layer 0: only the method differs (%u)",
          tui_compare_layer(&s, 0));
    CHECK(tui_compare_layer(&s, 4) == TUI_DIFF_ROUTER, "layer 4: only the router differs");
    CHECK(tui_compare_layer(&s, 2) == 0 && tui_compare_layer(&s, 3) == 0, "layers 2 and 3: the same");
    /* the worker clusters layer 2 of the other plan differently: its groups differ */
    int other[8] = {0, 0, 1, 2, 1, 2, 3, 3};
    tui_other_set_groups(&s, 2, other);
    CHECK(s.other->grouped[2] && tui_compare_layer(&s, 2) == TUI_DIFF_GROUPS &&
              tui_groups_moved(&s.res[2], &s.other->res[2]) == 4,
          "other groups at the same count: 4 experts have other group-mates (%d)",
          tui_groups_moved(&s.res[2], &s.other->res[2]));
    int same[8] = {3, 3, 2, 2, 1, 1, 0, 0}; /* the same pairs under other labels */
    tui_other_set_groups(&s, 3, same);
    CHECK(tui_compare_layer(&s, 3) == 0, "the same groups under other labels do not differ");
    int64_t keep = (int64_t)8 * 3 * s.hidden * s.inter, merged = (int64_t)4 * 3 * s.hidden * s.inter;
    CHECK(tui_other_params(&s, 0) == keep && tui_other_params(&s, 2) == merged,
          "the other plan's parameters: layer 0 kept whole, layer 2 in 4 groups");
    CHECK(tui_other_model_params(&s) == tui_model_params_after(&s) + keep - merged,
          "its whole-model total differs by layer 0's saving");
    press("jjk\r");
    CHECK(s.view == TUI_VIEW_LAYERS && s.layer == 2, "j/k walk the layers, Enter shows the plan (%d)", s.layer);
    press("O");
    CHECK(s.dialog == TUI_DIALOG_COMPARE && !strcmp(s.input, "/tmp/other.yaml"),
          "O asks for a plan, offering the one compared");
    int act = tui_key(&s, TUI_KEY_ENTER);
    CHECK(act & TUI_ACT_COMPARE, "Enter asks the worker to open it");
    tui_other_close(&s);
    CHECK(!s.other, "closed");
}

static void test_undo_depth(void)
{
    fresh();
    press("4");
    for (int i = 0; i < TUI_UNDO + 6; i++)
        press(i % 2 ? "r" : "M");
    CHECK(s.n_undo == TUI_UNDO, "the history keeps the last %d steps (%d)", TUI_UNDO, s.n_undo);
    int undone = 0;
    while (tui_undo(&s))
        undone++;
    CHECK(undone == TUI_UNDO, "each undo takes back one whole step (%d)", undone);
}

int main(void)
{
    drawing = fake_term_open();
    if (!drawing)
        printf("# no terminfo: the views are not drawn\n");
    test_apply_all_undo();
    test_marks_router_align();
    test_rank_prompt();
    test_sort_enter();
    test_compare();
    test_undo_depth();
    if (drawing)
        endwin();
    tui_state_free_data(&s);
    printf("%d checks, %d failed\n", tu_checks, tu_failures);
    return tu_failures != 0;
}
