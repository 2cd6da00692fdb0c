/* tui_export (the workbench's E) on a fake state (tui_fake.h), without a terminal: each view
 * exports what it shows — the heatmap the shown similarity in the layer's groups (its CSV cells
 * are the state's), the spectrum the shown group's singular values with its ranks, the plan view
 * the model chart with one row per MoE layer — and a dense layer or missing data is said, not
 * written. The views still draw afterwards (tui_fake.h). */
#include "testutil.h"
#include "tui_fake.h"

#include "tui/tui_export.h"

#include <math.h>
#include <unistd.h>

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, ch;
    while (f && (ch = fgetc(f)) != EOF)
        n += ch == '\n';
    if (f)
        fclose(f);
    return f ? n : -1;
}

int main(void)
{
    char dir[] = "/tmp/submoe-tuiexport-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    static tui_state s;
    fake_state(&s, 3, 12);
    tui_export x;
    char msg[256], path[512];

    static const int thirds[12] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}; /* layer 2: a plan's own groups */
    fake_entry(&s, 2, 12, 3, thirds);
    s.view = TUI_VIEW_HEATMAP, s.layer = 2, s.sim_kind = 2;
    tui_export_prepare(&s, dir, &x);
    CHECK(x.kind == TUI_EXPORT_HEATMAP && x.n == 12, "heatmap view: the heatmap of 12 experts");
    bool same = x.sim != NULL;
    for (int i = 0; same && i < 144; i++)
        same = x.sim[i] == s.data[2].sim[2][i];
    CHECK(same, "the shown (logit) similarity, copied");
    CHECK(s.res[2].k == 3 && !memcmp(x.group, s.res[2].assign, sizeof(int) * 12), "in the plan's 3 groups");
    CHECK(!tui_export_write(&x, msg, sizeof msg), "written: %s", msg);
    CHECK(strstr(msg, "layer2-similarity-logit.{svg,pdf,png,csv}") != NULL, "the status names the files");
    snprintf(path, sizeof path, "%s/layer2-similarity-logit.csv", dir);
    CHECK(count_lines(path) == 1 + 144, "its CSV has a line per cell");
    FILE *f = fopen(path, "r");
    int i, j, gi, gj, bad = 0, rows = 0;
    double v;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%d,%d,%d,%d,%lf", &i, &j, &gi, &gj, &v) == 5 && rows++ >= 0)
            bad += fabs(v - s.data[2].sim[2][i * 12 + j]) > 1e-9 || gi != s.res[2].assign[i];
    if (f)
        fclose(f);
    CHECK(rows == 144 && bad == 0, "its cells are the state's similarities and groups (%d of %d differ)", bad, rows);
    tui_export_free(&x);

    s.sim_kind = 1; /* the fake has no weight similarity */
    tui_export_prepare(&s, dir, &x);
    CHECK(x.kind == TUI_EXPORT_NONE && tui_export_write(&x, msg, sizeof msg) && strstr(msg, "not computed"),
          "a similarity not computed is said: %s", msg);
    tui_export_free(&x);

    s.view = TUI_VIEW_SPECTRUM, s.layer = 0, s.spec_cluster = 0;
    tui_export_prepare(&s, dir, &x);
    CHECK(x.kind == TUI_EXPORT_SPECTRUM && x.len[0] == 40 && x.sv[1][3] == s.data[0].spec[1][3],
          "spectrum view: the group's singular values");
    CHECK(x.rank[2] == tui_rank_value(&s, &s.res[0], tui_group_rank(&s, 0, 0, 2), 2, tui_cluster_size(&s.res[0], 0)),
          "with the group's rank (%lld)", (long long)x.rank[2]);
    CHECK(!tui_export_write(&x, msg, sizeof msg) && strstr(msg, "layer0-group0-spectrum"), "written: %s", msg);
    tui_export_free(&x);

    s.layer = 1; /* dense */
    tui_export_prepare(&s, dir, &x);
    CHECK(x.kind == TUI_EXPORT_NONE && tui_export_write(&x, msg, sizeof msg) && strstr(msg, "dense"),
          "a dense layer is said: %s", msg);
    tui_export_free(&x);

    s.view = TUI_VIEW_LAYERS;
    tui_export_prepare(&s, dir, &x);
    CHECK(x.kind == TUI_EXPORT_MODEL && x.n_rows == 2 && x.rows[0].layer == 0 && x.rows[1].layer == 2,
          "plan view: the model chart, one row per MoE layer");
    CHECK(!tui_export_write(&x, msg, sizeof msg) && strstr(msg, "model-frequency.csv"), "written: %s", msg);
    snprintf(path, sizeof path, "%s/model-frequency.csv", dir);
    CHECK(count_lines(path) == 1 + 2 * 12, "the frequencies of both layers");
    tui_export_free(&x);

    snprintf(path, sizeof path, "%s/model.csv/sub", dir); /* a directory that cannot be made */
    tui_export_prepare(&s, path, &x);
    CHECK(tui_export_write(&x, msg, sizeof msg) && strstr(msg, "cannot create"), "an unusable directory: %s", msg);
    tui_export_free(&x);

    /* the export leaves the state whole: consistent, and every view draws (the dialog too) */
    CHECK(fake_consistent(&s, "after the exports"), "the state is consistent after the exports");
    if (fake_term_open()) {
        s.dialog = TUI_DIALOG_EXPORT;
        for (int v = 0; v < TUI_VIEW_COUNT; v++)
            s.view = (tui_view)v, fake_draw(&s, 80, 24);
        endwin();
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    tui_state_free_data(&s);
    fig_render_cleanup();
    return tu_done();
}
