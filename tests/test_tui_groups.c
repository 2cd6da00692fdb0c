/* test_tui_groups: the group count, the cluster assignment and the cluster order of a layer stay
 * consistent with what the views walk, whatever the edits and whenever the worker's results
 * arrive (issue 14 §1). Each case drives the keys, checks the state and draws it with the real
 * drawing code into a screen that goes to /dev/null (under ASan/UBSan an out-of-bounds walk
 * aborts here). */
#include "testutil.h"
#include "tui_fake.h"

static tui_state s; /* large: not on the stack */
static bool drawing;

/* Press keys (a string); after each, the state must draw at 80x24 and 60x16 and be consistent. */
static bool press(const char *keys, const char *ctx)
{
    for (const char *k = keys; *k; k++) {
        tui_key(&s, (unsigned char)*k);
        if (drawing) {
            fake_draw(&s, 80, 24);
            fake_draw(&s, 60, 16);
        }
        if (!fake_consistent(&s, ctx))
            return false;
    }
    return true;
}

static void fresh(void)
{
    fake_state(&s, 4, 8);
    s.view = TUI_VIEW_LAYERS;
}

/* The example: after calibration, 2 then -. */
static void test_minus(void)
{
    fresh();
    bool ok = press("2", "2") && press("-", "2 -");
    CHECK(ok && s.res[0].k == 3, "2 -: one group fewer, the groups still cover every expert (k %d)", s.res[0].k);
    fresh();
    ok = press("2-", "2 -") && press("-", "2 - -");
    CHECK(ok && s.res[0].k == 2, "2 - -: down to top-k groups (k %d)", s.res[0].k);
    fresh();
    ok = press("2+", "2 +") && press("+", "2 + +");
    CHECK(ok && s.res[0].k == 6, "2 + +: two groups more (k %d)", s.res[0].k);
    fresh();
    ok = press("2+++++", "2 + x5");
    CHECK(ok && s.res[0].k == 8 && strstr(s.status, "one group per expert"), "+ up to one group per expert (k %d)",
          s.res[0].k);
}

/* 2 - m, 2 - n, 2 - g: the group edits after - (they walk the order and the labels). */
static void test_minus_then_edit(void)
{
    const char *const seqs[] = {"2-m", "2-jjjm", "2-n", "2-jjjjjn", "2-g", "2-jjjjjlllg", "2-Gm", "2+jjjjjjjm",
                                "2+jjjjjjjn", "2+jjjjjjjllg", "2-jjjjjjjhhhhm"};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        fresh();
        bool ok = press(seqs[i], seqs[i]);
        if (ok) { /* End then the edit: the last cell */
            tui_key(&s, TUI_KEY_END);
            ok = press("mng", seqs[i]);
        }
        CHECK(ok, "%s (then End m n g): groups consistent, drawn", seqs[i]);
    }
}

/* Undo and redo across - / + and group edits. */
static void test_undo_redo(void)
{
    fresh();
    bool ok = press("2-jjm", "2 - j j m");
    ok = ok && press("u", "undo m") && press("u", "undo -") && s.res[0].k == 4;
    ok = ok && press("U", "redo -") && s.res[0].k == 3 && press("U", "redo m");
    ok = ok && press("uuuuUUUU+u-U", "mixed undo / redo");
    CHECK(ok, "undo / redo over -, m, + keep the groups consistent (k %d)", s.res[0].k);
}

/* The worker's results arriving while the layer is edited: a re-clustering asked for at one group
 * count lands after - / + / m changed the groups; a preview adopting auto's groups. */
static void test_worker_results(void)
{
    fresh();
    press("2-", "2 -");
    tui_layer asked = s.res[0]; /* what the re-clustering job read */
    press("-", "2 - -");
    int kmeans[TUI_MAX_EXPERTS] = {0, 0, 0, 1, 1, 1, 2, 2};
    bool adopted = tui_adopt_groups(&s, 0, &asked, kmeans);
    CHECK(!adopted && s.res[0].k == 2 && fake_consistent(&s, "stale re-cluster"),
          "a re-clustering for groups edited since is dropped");
    asked = s.res[0];
    int two[TUI_MAX_EXPERTS] = {1, 1, 0, 0, 1, 1, 0, 1};
    adopted = tui_adopt_groups(&s, 0, &asked, two);
    CHECK(adopted && s.res[0].k == 2 && s.res[0].assign[2] == 0 && fake_consistent(&s, "re-cluster"),
          "a current re-clustering is adopted");
    /* k-means may leave a group empty: fewer groups, no hole */
    asked = s.res[0];
    int holes[TUI_MAX_EXPERTS] = {0, 0, 3, 3, 5, 5, 5, 0};
    s.ci = s.cj = 7;
    s.spec_cluster = 1;
    adopted = tui_adopt_groups(&s, 0, &asked, holes);
    CHECK(adopted && s.res[0].k == 3 && fake_consistent(&s, "empty groups"),
          "labels with empty groups between them are compacted (k %d)", s.res[0].k);
    if (drawing)
        fake_draw(&s, 80, 24);
    /* labels out of range are refused, the plan kept */
    asked = s.res[0];
    int bad[TUI_MAX_EXPERTS] = {0, 1, -1, 2, 999, 0, 1, 2};
    tui_layer before = s.res[0];
    CHECK(!tui_adopt_groups(&s, 0, &asked, bad) && !memcmp(&before, &s.res[0], sizeof before),
          "labels out of range are refused");
    /* a result arriving while the cursor sits on another layer leaves the selection alone */
    press("1J", "next layer");
    int layer = s.layer;
    asked = s.res[0];
    int one_each[TUI_MAX_EXPERTS] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK(tui_adopt_groups(&s, 0, &asked, one_each) && s.layer == layer && s.res[0].k == 8 &&
              fake_consistent(&s, "other layer"),
          "a result for another layer");
}

/* Groups from an opened plan that names only a count: a provisional grouping at that count until
 * calibration clusters it, never a count without groups. */
static void test_group_count(void)
{
    fresh();
    const tui_layer *p = &s.res[0];
    fake_entry(&s, 0, 8, 5, NULL);
    CHECK(p->k == 5 && fake_consistent(&s, "count 5"), "5 groups from 4");
    fake_entry(&s, 0, 8, 2, NULL);
    CHECK(p->k == 2 && fake_consistent(&s, "count 2"), "2 groups from 5");
    fake_entry(&s, 0, 8, 8, NULL);
    CHECK(p->k == 8 && fake_consistent(&s, "count 8"), "one group per expert");
    fake_entry(&s, 0, 8, 99, NULL);
    CHECK(p->k == 8 && fake_consistent(&s, "count 99"), "no more groups than experts");
    fake_entry(&s, 0, 8, 0, NULL);
    CHECK(p->k == 1 && fake_consistent(&s, "count 0"), "at least one group");
    /* the same arithmetic on a layer's groups, as - and + use it before the re-clustering arrives */
    tui_layer g = s.res[0];
    tui_plan_group_count(&g, 5);
    CHECK(g.k == 5 && tui_plan_consistent(&g), "tui_plan_group_count: 5 groups from 1");
    tui_plan_group_count(&g, 0);
    CHECK(g.k == 1 && tui_plan_consistent(&g), "tui_plan_group_count: at least one group");
}

/* A plan whose groups are inconsistent however it came about (older code, a job that wrote the
 * labels without the count) is still walked safely: the order lists every expert once. */
static void test_order_total(void)
{
    fresh();
    tui_layer *p = &s.res[0];
    p->k = 3; /* labels go to 3 */
    int order[TUI_MAX_EXPERTS], seen[TUI_MAX_EXPERTS] = {0};
    int m = tui_cluster_order(p, order);
    bool perm = m == p->n;
    for (int i = 0; perm && i < m; i++)
        perm = order[i] >= 0 && order[i] < p->n && !seen[order[i]]++;
    CHECK(perm, "tui_cluster_order lists all %d experts even with labels beyond k (%d)", p->n, m);
    tui_selection_settle(&s);
    s.view = TUI_VIEW_HEATMAP;
    if (drawing)
        fake_draw(&s, 80, 24);
    CHECK(true, "... and such a plan draws");
}

int main(void)
{
    drawing = fake_term_open();
    if (!drawing)
        printf("# no terminfo for a curses screen: the drawing is not exercised\n");
    test_minus();
    test_minus_then_edit();
    test_undo_redo();
    test_worker_results();
    test_group_count();
    test_order_total();
    if (drawing)
        endwin();
    tui_state_free_data(&s);
    return tu_done();
}
