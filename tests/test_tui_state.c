/* test_tui_state: the workbench without a terminal — layout at several sizes, key handling,
 * cluster edits with undo/redo, rank keys, dialogs, the monochrome ramp. */
#include "tui/tui_state.h"
#include "testutil.h"

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
    const int sizes[][2] = {{80, 24}, {100, 30}, {132, 43}, {200, 50}, {60, 16}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int c = sizes[i][0], r = sizes[i][1];
        tui_layout L = tui_layout_compute(c, r);
        tui_rect all[5] = {L.header, L.layers, L.main, L.detail, L.status};
        bool ok = !L.too_small;
        for (int a = 0; a < 5; a++) {
            ok &= inside(all[a], c, r);
            for (int b = a + 1; b < 5; b++)
                ok &= !overlap(all[a], all[b]);
        }
        ok &= L.layers.w >= 30 && L.main.w >= 40 && L.main.h >= 8 && L.detail.h >= 4;
        if (c == 60)
            ok = !L.too_small && inside(L.main, c, r);
        CHECK(ok, "%dx%d: five panes inside the screen, none overlapping (layers %d wide, main %dx%d)", c, r,
              L.layers.w, L.main.w, L.main.h);
    }
    CHECK(tui_layout_compute(40, 10).too_small, "40x10 is reported too small");
}

static void demo_state(tui_state *s)
{
    tui_state_init(s);
    s->n_layers = 2;
    s->top_k = 2;
    s->hidden = 128;
    s->inter = 256;
    s->is_moe[0] = s->is_moe[1] = true;
    for (int l = 0; l < 2; l++) {
        tui_layer_plan *p = &s->plan[l];
        p->n = 8;
        p->k = 4;
        for (int i = 0; i < 8; i++)
            p->assign[i] = i / 2; /* {0,1} {2,3} {4,5} {6,7} */
        p->is_auto = true;
        p->router = SM_ROUTER_COLLAPSE_LSTSQ;
        for (int j = 0; j < 3; j++)
            p->rank[j] = (sm_rank){SM_RANK_FULL, 0, 0};
    }
}

static void test_edits(void)
{
    tui_state s;
    demo_state(&s);
    CHECK(tui_move_expert(&s, 0, 1, 2) == 0 && s.plan[0].k == 4 && s.plan[0].assign[1] == s.plan[0].assign[4] &&
              s.plan[0].assign[1] != s.plan[0].assign[0] && s.modified,
          "move expert 1 into group 2 (with experts 4 and 5)");
    /* expert 0 alone; moving it to a new group keeps 4 groups, labels canonical */
    CHECK(tui_move_expert(&s, 0, 0, s.plan[0].k) == 0 && s.plan[0].k == 4 && s.plan[0].assign[0] == 0,
          "expert 0 into a new group: still 4 groups, canonical labels");
    /* move the last member out of a group: the group disappears */
    int before = s.plan[0].k;
    tui_move_expert(&s, 0, 3, s.plan[0].assign[2]);
    int after = s.plan[0].k;
    int maxl = -1;
    for (int i = 0; i < 8; i++) {
        maxl = s.plan[0].assign[i] > maxl ? s.plan[0].assign[i] : maxl;
    }
    CHECK(maxl + 1 == after, "labels stay 0..k-1 after moves (k %d -> %d)", before, after);
    CHECK(tui_merge_clusters(&s, 0, 0, 1) == 0 && s.plan[0].k == after - 1, "merging two groups: %d groups",
          s.plan[0].k);
    int n_undo = s.n_undo;
    CHECK(tui_undo(&s) && s.plan[0].k == after, "undo restores the merge (%d undo steps)", n_undo);
    CHECK(tui_redo(&s) && s.plan[0].k == after - 1, "redo repeats it");
    while (tui_undo(&s))
        ;
    CHECK(s.plan[0].k == 4 && s.plan[0].assign[1] == 0 && s.plan[0].assign[7] == 3, "undo all: the original plan");
    CHECK(!tui_undo(&s), "nothing more to undo");
}

static void test_keys(void)
{
    tui_state s;
    demo_state(&s);
    CHECK(tui_key(&s, 'q') == TUI_ACT_QUIT, "q quits an unmodified plan at once");
    CHECK((tui_key(&s, TUI_KEY_TAB) & TUI_ACT_REDRAW) && s.view == TUI_VIEW_HEATMAP, "Tab: the heatmap");
    tui_key(&s, TUI_KEY_DOWN);
    tui_key(&s, TUI_KEY_DOWN);
    CHECK(s.ci == 2 && s.cj == 0, "cursor moves down");
    int act = tui_key(&s, 'm'); /* row expert 2 into column expert 0's group */
    CHECK((act & TUI_ACT_PREVIEW) && s.plan[0].assign[2] == s.plan[0].assign[0] && s.modified,
          "m: row expert joins the column's group and asks for a preview");
    CHECK(tui_key(&s, 'q') == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_QUIT, "q with edits asks first");
    CHECK(tui_key(&s, 'n') == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_NONE, "n keeps the workbench open");
    CHECK(tui_key(&s, 'u') & TUI_ACT_PREVIEW, "u undoes");
    CHECK(s.plan[0].assign[2] == 1, "... expert 2 back in group 1");
    /* spectrum: rank keys */
    s.view = TUI_VIEW_SPECTRUM;
    s.spec_matrix = 2;
    tui_key(&s, TUI_KEY_LEFT);
    CHECK(s.plan[0].rank[2].kind == SM_RANK_COUNT && s.plan[0].rank[2].count == 128 - 8 &&
              s.plan[0].rank[0].kind == SM_RANK_FULL,
          "h on down lowers only its rank (%lld)", (long long)s.plan[0].rank[2].count);
    tui_key(&s, TUI_KEY_RIGHT);
    CHECK(s.plan[0].rank[2].kind == SM_RANK_FULL, "l back up to full rank");
    /* layers, method, router */
    s.view = TUI_VIEW_LAYERS;
    CHECK((tui_key(&s, 'j') & TUI_ACT_PREVIEW) && s.layer == 1, "j: next MoE layer");
    tui_key(&s, 'M');
    CHECK(!s.plan[1].is_auto && s.plan[1].method == SM_MERGE_SUBMOE, "M: auto -> submoe");
    tui_key(&s, 'r');
    CHECK(s.plan[1].router == SM_ROUTER_COLLAPSE_MEAN, "r: next router mode (%s)", sm_router_mode_name(s.plan[1].router));
    CHECK((tui_key(&s, '-') & TUI_ACT_RECLUSTER) && s.plan[1].k == 3, "-: one group fewer, re-cluster");
    s.plan[1].k = 2;
    CHECK(tui_key(&s, '-') == TUI_ACT_NONE, "never fewer groups than top-k");
    /* commit dialog: typing and backspace, Esc */
    tui_key(&s, 'C');
    s.input[0] = 0;
    tui_key(&s, 'o');
    tui_key(&s, 'x');
    tui_key(&s, TUI_KEY_BACKSPACE);
    tui_key(&s, 'u');
    CHECK(!strcmp(s.input, "ou") && s.dialog == TUI_DIALOG_COMMIT, "commit dialog edits the directory (%s)", s.input);
    CHECK(tui_key(&s, TUI_KEY_ENTER) & TUI_ACT_COMMIT, "Enter commits");
    tui_key(&s, '?');
    CHECK(s.dialog == TUI_DIALOG_HELP && tui_key(&s, 'x') == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_NONE,
          "? opens help, any key closes it");
    s.busy = true;
    CHECK(tui_key(&s, TUI_KEY_ESC) & TUI_ACT_CANCEL, "Esc cancels running work");
}

static void test_shade(void)
{
    CHECK(tui_shade(0.0, 0, 1, 8) == 0 && tui_shade(1.0, 0, 1, 8) == 7 && tui_shade(0.5, 0, 1, 8) == 4 &&
              tui_shade(2, 0, 1, 8) == 7 && tui_shade(-1, 0, 1, 8) == 0 && tui_shade(0.3, 1, 1, 8) == 7,
          "shading levels clamp to the ramp");
}

int main(void)
{
    test_layout();
    test_edits();
    test_keys();
    test_shade();
    return tu_done();
}
