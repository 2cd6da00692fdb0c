/* test_tui_state: the workbench without a terminal — layouts at several sizes, the heatmap's
 * geometry (cell widths, scrolling that keeps the cursor visible), text wrapping, cluster edits
 * with undo/redo, per-group ranks, every key of the help and the dialogs. */
#include "tui/tui_state.h"
#include "testutil.h"

#include <stdlib.h>

static bool inside(tui_rect r, int cols, int rows)
{
    return r.x >= 0 && r.y >= 0 && r.w >= 0 && r.h >= 0 && r.x + r.w <= cols && r.y + r.h <= rows;
}

static bool overlap(tui_rect a, tui_rect b)
{
    if (!a.w || !a.h || !b.w || !b.h)
        return false;
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

static void test_layout(void)
{
    const int sizes[][2] = {{80, 24}, {100, 30}, {132, 43}, {200, 50}, {60, 16}, {81, 25}, {300, 100}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int c = sizes[i][0], r = sizes[i][1];
        tui_layout L = tui_layout_compute(c, r);
        tui_rect all[5] = {L.header, L.layers, L.main, L.detail, L.status};
        bool ok = !L.too_small;
        int area = 0;
        for (int a = 0; a < 5; a++) {
            ok &= inside(all[a], c, r);
            area += all[a].w * all[a].h;
            for (int b = a + 1; b < 5; b++)
                ok &= !overlap(all[a], all[b]);
        }
        ok &= area == c * r; /* the panes tile the screen */
        ok &= L.layers.w >= 24 && L.main.w >= 36 && L.main.h >= 9 && L.detail.h >= 4;
        if (c >= 80)
            ok &= L.layers.w >= 30 && L.main.w >= 50 && L.main.h >= 16 - (r < 30 ? 0 : 0);
        CHECK(ok, "%dx%d: five panes tile the screen without overlap (layers %d wide, main %dx%d, detail %d)", c, r,
              L.layers.w, L.main.w, L.main.h, L.detail.h);
    }
    CHECK(tui_layout_compute(59, 24).too_small && tui_layout_compute(80, 15).too_small,
          "59x24 and 80x15 are reported too small");
    CHECK(!tui_layout_compute(80, 24).wide && tui_layout_compute(120, 40).wide,
          "the layer list's extra columns from 110 columns on");
}

static void plan_with(tui_layer *p, int n, int k)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    p->k = k;
    for (int i = 0; i < n; i++)
        p->assign[i] = i % k;
    for (int j = 0; j < 3; j++)
        p->rank[j] = (sm_rank){SM_RANK_FULL, 0, 0};
}

/* Columns the drawing uses for the visible window (cells plus group boundaries). */
static int used_width(const tui_layer *p, const tui_heat_geom *g)
{
    int order[TUI_MAX_EXPERTS];
    tui_cluster_order(p, order);
    int x = 0;
    for (int b = g->col0; b < g->col0 + g->ncols; b++)
        x += g->cw + (b > g->col0 && p->assign[order[b]] != p->assign[order[b - 1]]);
    return x;
}

static void test_heat_geometry(void)
{
    tui_layer p;
    plan_with(&p, 8, 6);
    tui_heat_geom g = tui_heat_geometry(&p, 0, 0, 49, 14);
    CHECK(g.cw == 4 && !g.scrolled && g.ncols == 8 && g.nrows == 8 && g.sep_rows && g.label_rows == 1 &&
              g.label_w + used_width(&p, &g) <= 49,
          "8 experts in 6 groups at 80x24: 4-wide cells, boundary rows, all visible (cw %d)", g.cw);
    g = tui_heat_geometry(&p, 0, 0, 87, 29);
    CHECK(g.ch == 2 && g.cw == 4 && g.sep_rows && g.label_rows + 8 * g.ch + 5 <= 29 && !g.scrolled,
          "a big panel: cells 2 rows tall, 4 wide, with boundary rows (ch %d cw %d)", g.ch, g.cw);
    g = tui_heat_geometry(&p, 0, 0, 100, 60);
    CHECK(g.ch == 4 && g.cw == 8 && g.label_rows + 8 * g.ch + 5 <= 60, "a very big panel: 4 x 8 cells");
    g = tui_heat_geometry(&p, 0, 0, 49, 9);
    CHECK(!g.sep_rows && g.nrows == 8 && !g.scrolled, "shorter panel: boundary rows dropped before scrolling");

    plan_with(&p, 64, 48);
    const int cur[][2] = {{0, 0}, {33, 40}, {63, 63}, {63, 0}, {5, 62}};
    bool ok = true;
    for (size_t i = 0; i < sizeof cur / sizeof cur[0]; i++) {
        int ci = cur[i][0], cj = cur[i][1];
        g = tui_heat_geometry(&p, ci, cj, 49, 13);
        ok &= g.scrolled && g.cw >= 1 && ci >= g.row0 && ci < g.row0 + g.nrows && cj >= g.col0 &&
              cj < g.col0 + g.ncols && g.row0 + g.nrows <= 64 && g.col0 + g.ncols <= 64 &&
              g.label_rows + g.nrows <= 13 && g.label_w + used_width(&p, &g) <= 49;
        if (!ok)
            printf("# cursor %d,%d: rows %d+%d cols %d+%d cw %d labels %d\n", ci, cj, g.row0, g.nrows, g.col0,
                   g.ncols, g.cw, g.label_rows);
    }
    CHECK(ok, "64 experts in a 49x13 panel: scrolled, the cursor always visible, within the panel");
    g = tui_heat_geometry(&p, 0, 0, 49, 13);
    CHECK(g.label_rows == 1 && g.label_w == 3,
          "two-digit expert labels on one row, horizontal (issue 19: stacked digits garbled) (%d)", g.label_rows);
    plan_with(&p, 128, 128);
    g = tui_heat_geometry(&p, 127, 127, 150, 60);
    CHECK(g.scrolled && g.ncols >= 20 && g.label_rows == 1 && g.label_w == 4 && g.label_w + used_width(&p, &g) <= 150,
          "128 experts: 3-digit labels on one row, %d columns visible", g.ncols);
}

static void test_text(void)
{
    char lines[8][TUI_WRAP_LINE];
    int n = tui_wrap("held-out loss, nats/token: submoe 1.187, submoe+align 1.187, prune-frequency 1.161", 30, lines, 8,
                     false);
    bool ok = n == 3;
    for (int i = 0; i < n; i++)
        ok &= tui_strwidth(lines[i]) <= 30 && lines[i][0] != ' ';
    CHECK(ok && !strcmp(lines[0], "held-out loss, nats/token:"), "wrap at spaces within 30 columns (%d lines: '%s')",
          n, lines[0]);
    n = tui_wrap("aaaa bbbb cccc dddd eeee ffff", 9, lines, 2, true);
    CHECK(n == 2 && !strcmp(lines[0], "aaaa bbbb") && tui_strwidth(lines[1]) <= 9 && strstr(lines[1], "\u2026"),
          "cut text ends in an ellipsis ('%s')", lines[1]);
    n = tui_wrap("abcdefghijklmnop", 5, lines, 8, false);
    CHECK(n == 4 && !strcmp(lines[3], "p"), "a word longer than the line is split");
    char out[64];
    tui_short_path("/home/someone/models/mixtral-8x7b-instruct", 24, out, sizeof out, true);
    CHECK(tui_strwidth(out) <= 24 && strstr(out, "mixtral-8x7b-instruct") && !strncmp(out, "\u2026", 3),
          "a long path keeps its end (%s)", out);
    tui_short_path("/data/demo", 24, out, sizeof out, true);
    CHECK_STR(out, "/data/demo", "a short path is unchanged");
}

/* Two MoE layers of 8 experts (layer 1 dense), their groups {0,1} {2,3} {4,5} {6,7} as a
 * clustering gave them, everything else the plan's defaults (auto, full ranks, lstsq router). */
static void demo_state(tui_state *s)
{
    tui_state_free_data(s);
    tui_state_init(s);
    s->n_layers = 3;
    s->top_k = 2;
    s->hidden = 128;
    s->inter = 256;
    s->total_params = 4000000;
    s->is_moe[0] = s->is_moe[2] = true; /* layer 1 is dense */
    int pairs[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    for (int l = 0; l < 3; l += 2) {
        tui_plan_layer_init(s, l, 8);
        tui_entry(s, l)->s.experts = 4;
        memcpy(s->clustered[l], pairs, sizeof pairs);
        tui_layer_refresh(s, l);
    }
}

/* What the plan says of layer l: its entry's settings over the plan's defaults. */
static sm_plan_effective said(tui_state *s, int l)
{
    sm_plan_effective e;
    sm_plan_effective_settings(&s->plan, tui_entry(s, l), &e);
    return e;
}

static void test_edits(void)
{
    static tui_state s; /* large: not on the stack */
    demo_state(&s);
    CHECK(tui_move_expert(&s, 0, 1, 2) == 0 && s.res[0].k == 4 && s.res[0].assign[1] == s.res[0].assign[4] &&
              s.res[0].assign[1] != s.res[0].assign[0] && s.modified,
          "move expert 1 into group 2 (with experts 4 and 5)");
    CHECK(tui_move_expert(&s, 0, 0, s.res[0].k) == 1 && s.n_undo == 1,
          "expert 0, alone in its group, into a new group: nothing to do, no undo step");
    CHECK(tui_move_expert(&s, 0, 4, s.res[0].k) == 0 && s.res[0].k == 5, "expert 4 into a new group: 5 groups");
    int before = s.res[0].k;
    tui_move_expert(&s, 0, 3, s.res[0].assign[2]); /* expert 2 is alone: nothing; 3 joins 2 */
    int maxl = -1;
    for (int i = 0; i < 8; i++)
        maxl = s.res[0].assign[i] > maxl ? s.res[0].assign[i] : maxl;
    int after = s.res[0].k;
    CHECK(maxl + 1 == after, "labels stay 0..k-1 after moves (k %d -> %d)", before, after);
    CHECK(tui_merge_clusters(&s, 0, 0, 1) == 0 && s.res[0].k == after - 1, "merging two groups: %d groups",
          s.res[0].k);
    CHECK(tui_merge_clusters(&s, 0, 1, 1) == -1, "a group cannot merge with itself");
    CHECK(tui_undo(&s) && s.res[0].k == after, "undo restores the merge");
    CHECK(tui_redo(&s) && s.res[0].k == after - 1, "redo repeats it");
    while (tui_undo(&s))
        ;
    CHECK(s.res[0].k == 4 && s.res[0].assign[1] == 0 && s.res[0].assign[7] == 3, "undo all: the original plan");
    CHECK(!tui_undo(&s), "nothing more to undo");

    /* per-group ranks: set, shown by tui_group_rank, cleared by group edits and by a layer rank */
    tui_set_group_rank(&s, 0, 2, 0, (sm_rank){SM_RANK_COUNT, 64, 0});
    CHECK(tui_has_group_ranks(&s, 0) && tui_group_rank(&s, 0, 2, 0).count == 64 &&
              tui_group_rank(&s, 0, 1, 0).kind == SM_RANK_FULL,
          "a group's own rank overrides the layer's for that group only");
    tui_move_expert(&s, 0, 0, 3);
    CHECK(!tui_has_group_ranks(&s, 0), "moving an expert relabels groups: their own ranks are cleared");
    tui_undo(&s);
    CHECK(tui_has_group_ranks(&s, 0), "undo brings them back");
    tui_set_rank(&s, 0, 0, (sm_rank){SM_RANK_COUNT, 32, 0});
    CHECK(!tui_has_group_ranks(&s, 0) && tui_group_rank(&s, 0, 2, 0).count == 32,
          "a layer rank for gate applies to every group");
    /* room for every group's three ranks in the widest layer (was 48 entries: a 128-expert layer's
     * 64 groups lost ranks, silently, when a plan was opened) */
    s.is_moe[1] = true;
    tui_plan_layer_init(&s, 1, TUI_MAX_EXPERTS);
    int each[TUI_MAX_EXPERTS];
    for (int i = 0; i < TUI_MAX_EXPERTS; i++)
        each[i] = i;
    tui_entry(&s, 1)->s.experts = TUI_MAX_EXPERTS;
    memcpy(s.clustered[1], each, sizeof each);
    tui_layer_refresh(&s, 1);
    int set_all = 0;
    for (int c = 0; c < TUI_MAX_EXPERTS; c++)
        set_all += tui_set_group_rank(&s, 1, c, -1, (sm_rank){SM_RANK_COUNT, 1 + c, 0}) == 0;
    int n_group_ranks = 0; /* the entry's per-cluster ranks, as a saved plan lists them */
    for (int i = 0; i < tui_entry(&s, 1)->n_clusters; i++)
        for (int j = 0; j < 3; j++)
            n_group_ranks += tui_entry(&s, 1)->clusters[i].rank.set[j];
    CHECK(set_all == TUI_MAX_EXPERTS && n_group_ranks == 3 * TUI_MAX_EXPERTS &&
              tui_group_rank(&s, 1, TUI_MAX_EXPERTS - 1, 2).count == TUI_MAX_EXPERTS,
          "every group of a %d-expert layer keeps its own three ranks (%d set)", TUI_MAX_EXPERTS, set_all);
    CHECK(tui_set_group_rank(&s, 1, TUI_MAX_EXPERTS, 0, (sm_rank){SM_RANK_COUNT, 8, 0}) == -1,
          "a group the layer does not have is refused");
    tui_entry(&s, 0)->chosen = strdup("submoe (held-out loss, nats/token: submoe 1.2, prune-frequency 1.3)");
    tui_layer_refresh(&s, 0);
    CHECK(s.res[0].decided, "an opened plan's recorded choice decides the layer");
    tui_set_rank(&s, 0, 1, (sm_rank){SM_RANK_COUNT, 32, 0});
    CHECK(!s.res[0].decided && !tui_entry(&s, 0)->chosen,
          "an edit makes auto decide again (a plan's recorded choice is dropped)");

    /* parameter estimate, then the preview's exact count when fresh */
    demo_state(&s);
    int64_t per = 3 * 128 * 256;
    CHECK(tui_plan_params(&s, 0) == 4 * per, "4 groups: 4 experts' parameters");
    s.data[0].have_preview = true;
    s.data[0].preview_gen = s.plan_gen[0];
    s.data[0].params_after = 3 * per;
    CHECK(tui_plan_params(&s, 0) == 3 * per && tui_preview_fresh(&s, 0), "a fresh preview gives the exact count");
    tui_merge_clusters(&s, 0, 0, 1);
    CHECK(!tui_preview_fresh(&s, 0) && tui_plan_params(&s, 0) == 3 * per,
          "an edit makes the preview stale (estimate: 3 groups)");
    CHECK(tui_model_params_after(&s) == 4000000 - 2 * 8 * per + 3 * per + 4 * per, "whole model after the plan");

    /* a group's figure (the spectrum's): auto counts it dense, until its fresh preview built a
     * rank-keeping merge of these very groups; then the group's ranks count, as they did in the
     * layer's exact count (the walk-through: group 98k beside a layer 590k -> 582k) */
    demo_state(&s);
    tui_set_group_rank(&s, 0, 0, 1, (sm_rank){SM_RANK_COUNT, 32, 0}); /* group 0's up at rank 32 */
    int64_t up32 = 2 * 128 * 256 + 32 * (256 + 128);
    CHECK(s.res[0].is_auto && tui_group_params(&s, 0, 0) == per, "auto, not previewed: dense (%lld)",
          (long long)tui_group_params(&s, 0, 0));
    tui_layer_data *d = &s.data[0];
    d->have_preview = true, d->preview_gen = s.plan_gen[0], d->built_method = SM_MERGE_SUBMOE;
    for (int i = 0; i < 8; i++)
        d->built_slot[i] = s.res[0].assign[i];
    CHECK(tui_group_params(&s, 0, 0) == up32, "auto built submoe of these groups: up at rank 32 as factors (%lld)",
          (long long)tui_group_params(&s, 0, 0));
    d->built_slot[7] = d->built_slot[0];
    CHECK(tui_group_params(&s, 0, 0) == per, "auto built other groups: dense");
    d->built_slot[7] = s.res[0].assign[7], d->built_method = SM_MERGE_PRUNE_FREQUENCY;
    CHECK(tui_group_params(&s, 0, 0) == per, "auto pruned: dense");
    d->built_method = SM_MERGE_SUBMOE, d->preview_gen--;
    CHECK(tui_group_params(&s, 0, 0) == per, "a stale preview: dense");
}

/* Press a key; return its action flags. */
static int key(tui_state *s, int k)
{
    return tui_key(s, k);
}

static void type(tui_state *s, const char *text)
{
    key(s, 21); /* Ctrl-U clears the field */
    for (; *text; text++)
        key(s, (unsigned char)*text);
}

static void test_keys(void)
{
    static tui_state s; /* large: not on the stack */
    demo_state(&s);
    CHECK(key(&s, 'q') == TUI_ACT_QUIT, "q quits an unmodified plan at once");
    CHECK((key(&s, TUI_KEY_TAB) & TUI_ACT_REDRAW) && s.view == TUI_VIEW_HEATMAP, "Tab: the heatmap");
    key(&s, TUI_KEY_DOWN);
    key(&s, 'j');
    CHECK(s.ci == 2 && s.cj == 0, "arrows and j move the heatmap cursor");
    key(&s, TUI_KEY_END);
    CHECK(s.ci == 7 && s.cj == 7, "End: the last cell");
    key(&s, TUI_KEY_HOME);
    key(&s, 'j');
    key(&s, 'j');
    int act = key(&s, 'm'); /* row expert 2 into column expert 0's group */
    CHECK((act & TUI_ACT_PREVIEW) && s.res[0].assign[2] == s.res[0].assign[0] && s.modified,
          "m: the row's expert joins the column's group and asks for a preview");
    int order[TUI_MAX_EXPERTS];
    tui_cluster_order(&s.res[0], order);
    CHECK(order[s.ci] == 2, "... the cursor stays on expert 2");
    CHECK(!(key(&s, 'm') & TUI_ACT_PREVIEW) && strstr(s.status, "already"), "m again: already there (%s)", s.status);
    CHECK((key(&s, 'n') & TUI_ACT_PREVIEW) && s.res[0].k == 5, "n: the row's expert alone in a new group");
    s.ci = 0, s.cj = 7;
    int k0 = s.res[0].k;
    CHECK((key(&s, 'g') & TUI_ACT_PREVIEW) && s.res[0].k == k0 - 1, "g: merge the row's and the column's groups");
    CHECK(key(&s, 's') && s.sim_kind == 1 && key(&s, 's') && key(&s, 's') && s.sim_kind == 0,
          "s cycles output, weight, router similarity");
    CHECK(key(&s, 'q') == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_QUIT, "q with edits asks first");
    CHECK(key(&s, 'n') == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_NONE, "n keeps the workbench open");
    CHECK(key(&s, 'u') & TUI_ACT_PREVIEW, "u undoes");
    CHECK(key(&s, 'U') & TUI_ACT_PREVIEW, "U redoes");

    /* spectrum: per-group ranks with h/l and [/], the rank dialog, groups with j/k and < > */
    demo_state(&s);
    CHECK((key(&s, '3') & TUI_ACT_SPECTRUM) && s.view == TUI_VIEW_SPECTRUM, "3: the spectrum view");
    s.spec_matrix = 2;
    key(&s, TUI_KEY_LEFT);
    /* down is 128 x 256 per expert; a group of 2: largest rank min(128, 512) = 128, steps of 8 */
    CHECK(tui_group_rank_set(&s, 0, 0, 2) && tui_group_rank(&s, 0, 0, 2).count == 120 &&
              said(&s, 0).rank[2].kind == SM_RANK_FULL && !tui_group_rank_set(&s, 0, 1, 2),
          "h lowers group 0's down rank by a sixteenth (%lld), nothing else",
          (long long)tui_group_rank(&s, 0, 0, 2).count);
    key(&s, '[');
    CHECK(tui_group_rank(&s, 0, 0, 2).count == 119, "[ by one");
    key(&s, ']');
    key(&s, 'l');
    CHECK(tui_group_rank(&s, 0, 0, 2).kind == SM_RANK_FULL, "] and l back up to full rank");
    CHECK((key(&s, 'j') & TUI_ACT_SPECTRUM) && s.spec_cluster == 1 && (key(&s, '>') & TUI_ACT_SPECTRUM) &&
              s.spec_cluster == 2 && key(&s, '<') && s.spec_cluster == 1,
          "j and > / < choose the group");
    CHECK(key(&s, 'x') && s.spec_matrix == 0, "x cycles the matrix");
    key(&s, '=');
    CHECK(s.dialog == TUI_DIALOG_RANK && s.rank_matrix == 0 && !strcmp(s.input, ""),
          "= in the spectrum: the group's gate rank, the prompt empty (issue 19: typing replaces, never appends)");
    type(&s, "64");
    CHECK((key(&s, TUI_KEY_ENTER) & TUI_ACT_PREVIEW) && tui_group_rank(&s, 0, 1, 0).count == 64 &&
              tui_group_rank(&s, 0, 0, 0).kind == SM_RANK_FULL,
          "Enter sets it for that group");
    key(&s, '1');
    key(&s, '=');
    type(&s, "0.25");
    key(&s, TUI_KEY_ENTER);
    CHECK(said(&s, 0).rank[1].kind == SM_RANK_FRACTION && !tui_has_group_ranks(&s, 0),
          "= elsewhere: every matrix of every group");
    key(&s, '=');
    type(&s, "lots");
    CHECK(!(key(&s, TUI_KEY_ENTER) & TUI_ACT_PREVIEW) && s.status_error && strstr(s.status, "not a rank"),
          "a bad rank is refused with a message (%s)", s.status);
    CHECK((key(&s, 'f') & TUI_ACT_PREVIEW) && said(&s, 0).rank[1].kind == SM_RANK_FULL, "f: full rank");
    /* the largest rank of the layer: down, 128 x 256, in groups of 2 (issue 19: 1288 was taken) */
    key(&s, '=');
    type(&s, "1288");
    CHECK(!strcmp(s.input, "128") && s.status_error && strstr(s.status, "outside 1..128"),
          "a rank above the largest is refused as it is typed (%s; field '%s')", s.status, s.input);
    key(&s, 21);
    type(&s, "0");
    CHECK(!(key(&s, TUI_KEY_ENTER) & TUI_ACT_PREVIEW) && strstr(s.status, "outside 1..128") &&
              said(&s, 0).rank[1].kind == SM_RANK_FULL,
          "rank 0 is refused at Enter, the plan unchanged");

    /* layers, method, alignment, router, groups */
    s.view = TUI_VIEW_LAYERS;
    CHECK((key(&s, 'j') & TUI_ACT_PREVIEW) && s.layer == 2, "j: the next MoE layer (skips the dense one)");
    CHECK(key(&s, 'j') == TUI_ACT_NONE && s.layer == 2, "... and stops at the last");
    CHECK(key(&s, 'K') && s.layer == 0 && key(&s, TUI_KEY_PGDN) && s.layer == 2, "K / PgDn: previous / next MoE layer");
    CHECK(!(key(&s, 'a') & TUI_ACT_PREVIEW) && !said(&s, 2).align, "a on auto: it tries both, nothing to toggle");
    CHECK(!(key(&s, 'R') & TUI_ACT_PREVIEW) && !said(&s, 2).refit, "R on auto: it tries both, nothing to toggle");
    key(&s, 'M');
    CHECK(!said(&s, 2).is_auto && said(&s, 2).method == SM_MERGE_SUBMOE, "M: auto -> submoe");
    CHECK((key(&s, 'a') & TUI_ACT_PREVIEW) && said(&s, 2).align, "a: alignment on");
    CHECK((key(&s, 'R') & TUI_ACT_PREVIEW) && said(&s, 2).refit && tui_entry_c(&s, 2)->s.has_refit,
          "R: refit down, written in the layer's entry");
    key(&s, 'u');
    CHECK(!said(&s, 2).refit && said(&s, 2).align, "u: undoes R alone");
    for (int i = 0; i < 4; i++)
        key(&s, 'M');
    CHECK(said(&s, 2).method == SM_MERGE_PRUNE_FREQUENCY && !(key(&s, 'a') & TUI_ACT_PREVIEW),
          "pruning: alignment does not apply");
    key(&s, 'M');
    key(&s, 'M');
    CHECK(said(&s, 2).method == SM_MERGE_KEEP && tui_plan_params(&s, 2) == 8 * 3 * 128 * 256, "keep: every expert");
    key(&s, 'M');
    CHECK(!said(&s, 2).is_auto && said(&s, 2).method == SM_MERGE_PRUNE_REAP, "M: keep -> prune-reap (issue 18)");
    key(&s, 'M');
    CHECK(said(&s, 2).is_auto, "M cycles back to auto");
    key(&s, 'r');
    CHECK(said(&s, 2).router == SM_ROUTER_COLLAPSE_LSTSQ, "r: next router mode after the default remap (%s)", sm_router_mode_name(said(&s, 2).router));
    CHECK((key(&s, '-') & TUI_ACT_RECLUSTER) && s.res[2].k == 3, "-: one group fewer, re-cluster");
    tui_set_group_count(&s, 2, 2);
    CHECK(!(key(&s, '-') & TUI_ACT_RECLUSTER) && strstr(s.status, "no fewer"), "never fewer groups than top-k");
    CHECK((key(&s, '+') & TUI_ACT_RECLUSTER) && s.res[2].k == 3, "+: one group more");
    uint64_t seed = s.plan.seed;
    CHECK((key(&s, 'c') & TUI_ACT_RECLUSTER) && s.plan.seed == seed + 1, "c: re-cluster with the next seed");
    CHECK((key(&s, 'p') & TUI_ACT_PREVIEW) && (key(&s, 'p') & TUI_ACT_FORCE), "p: preview now");
    CHECK(key(&s, 'P') & TUI_ACT_PERPLEXITY, "P: perplexity of the plan");

    /* save, open, commit dialogs */
    snprintf(s.plan_path, sizeof s.plan_path, "a.yaml");
    key(&s, 'w');
    CHECK(s.dialog == TUI_DIALOG_SAVE && !strcmp(s.input, "a.yaml"), "w asks where, prefilled with the plan's file");
    key(&s, TUI_KEY_BACKSPACE);
    key(&s, 127);
    key(&s, 'm');
    key(&s, 'l');
    CHECK((key(&s, TUI_KEY_ENTER) & TUI_ACT_SAVE) && !strcmp(s.plan_path, "a.yaml"),
          "Enter saves to the edited name (%s)", s.plan_path);
    key(&s, 'o');
    type(&s, "b.yaml");
    CHECK(!(key(&s, TUI_KEY_ENTER) & TUI_ACT_OPEN) && s.dialog == TUI_DIALOG_DISCARD,
          "o with unsaved edits asks before discarding them");
    CHECK(key(&s, 'y') & TUI_ACT_OPEN, "y opens");
    s.modified = false;
    key(&s, 'o');
    CHECK(key(&s, TUI_KEY_ENTER) & TUI_ACT_OPEN, "o on a saved plan opens at once");
    snprintf(s.commit_dir, sizeof s.commit_dir, "out");
    key(&s, 'C');
    CHECK(s.dialog == TUI_DIALOG_COMMIT && !strcmp(s.input, "out"), "C asks where, prefilled");
    key(&s, TUI_KEY_TAB);
    CHECK(s.commit_format == 1, "Tab: the next format");
    { /* issue 18: a layer naming no router previews with the one the commit format holds */
        int l = 0;
        while (l < s.n_layers && (!s.is_moe[l] || tui_entry_c(&s, l)->s.has_router))
            l++;
        CHECK(l < s.n_layers && s.res[l].router == SM_PLAN_DEFAULT_COLLAPSE,
              "hf: layer %d (no router of its own) previews with hf's collapse (%s)", l,
              l < s.n_layers ? sm_router_mode_name(s.res[l].router) : "none");
        unsigned gen = l < s.n_layers ? s.plan_gen[l] : 0;
        key(&s, TUI_KEY_TAB);
        key(&s, TUI_KEY_TAB);
        CHECK(s.commit_format == 0 && l < s.n_layers && s.res[l].router == SM_ROUTER_REMAP && s.plan_gen[l] != gen,
              "submoe again: remap, and the layer's preview is stale");
        key(&s, TUI_KEY_TAB);
    }
    key(&s, 'x');
    key(&s, TUI_KEY_BACKSPACE);
    key(&s, '2');
    CHECK((key(&s, TUI_KEY_ENTER) & TUI_ACT_COMMIT) && !strcmp(s.commit_dir, "out2"), "Enter commits to out2");
    s.dialog = TUI_DIALOG_OVERWRITE;
    CHECK((key(&s, 'y') & (TUI_ACT_COMMIT | TUI_ACT_FORCE)) == (TUI_ACT_COMMIT | TUI_ACT_FORCE),
          "y to the replace question commits with force");
    s.dialog = TUI_DIALOG_OVERWRITE;
    CHECK(!(key(&s, 'n') & TUI_ACT_COMMIT) && strstr(s.status, "commit cancelled"), "n keeps the directory");
    key(&s, 'C');
    CHECK(key(&s, TUI_KEY_ESC) == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_NONE, "Esc closes a dialog");
    key(&s, '?');
    CHECK(s.dialog == TUI_DIALOG_HELP && key(&s, 'x') == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_NONE,
          "? opens help, any key closes it");
    CHECK(key(&s, TUI_KEY_ESC) == TUI_ACT_NONE, "Esc with nothing running does nothing");
    s.busy = true;
    CHECK(key(&s, TUI_KEY_ESC) & TUI_ACT_CANCEL, "Esc cancels running work");
    CHECK(key(&s, TUI_KEY_RESIZE) == TUI_ACT_REDRAW, "a resize redraws");
    s.layer = 1; /* the dense layer: edits do nothing */
    CHECK(key(&s, 'M') == TUI_ACT_NONE && key(&s, '+') == TUI_ACT_NONE && key(&s, 'm') == TUI_ACT_NONE,
          "a dense layer ignores edits");
}

static void test_shade(void)
{
    CHECK(tui_shade(0.0, 0, 1, 8) == 0 && tui_shade(1.0, 0, 1, 8) == 7 && tui_shade(0.5, 0, 1, 8) == 4 &&
              tui_shade(2, 0, 1, 8) == 7 && tui_shade(-1, 0, 1, 8) == 0 && tui_shade(0.3, 1, 1, 8) == 7,
          "shading levels clamp to the ramp");
    CHECK(!strcmp(tui_method_short(SM_MERGE_PRUNE_FREQUENCY), "prune-f") && strlen(tui_method_short(SM_MERGE_SUBMOE_WHITENED)) <= 8,
          "short method names fit the layer list");
}

int main(void)
{
    test_layout();
    test_heat_geometry();
    test_text();
    test_edits();
    test_keys();
    test_shade();
    return tu_done();
}
