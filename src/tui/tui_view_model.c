/* tui_view_model: view 4, every MoE layer at once — per layer its held-out error (a bar against
 * the worst layer's), the experts it keeps and how, the routing-frequency distribution (the
 * experts' token shares, sorted, as bars), and the parameters it saves. Rows grow taller when the
 * screen has room and scroll when it has not; the selected layer is the workbench's. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One of 8 eighth-blocks (1..8), or a space (0); ASCII: one of 8 marks. */
static const char *eighth(int i)
{
    static const char *const u[9] = {" ", "\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587",
                                     "\u2588"};
    static const char *const a[9] = {" ", ".", ".", ":", ":", "=", "=", "#", "#"};
    i = i < 0 ? 0 : i > 8 ? 8 : i;
    return tc_utf8 ? u[i] : a[i];
}

/* A horizontal bar cell filled e eighths from the left (≥ 8: full, ≤ 0: empty). */
static const char *left_eighths(int e)
{
    static const char *const u[8] = {" ", "\u258f", "\u258e", "\u258d", "\u258c", "\u258b", "\u258a", "\u2589"};
    if (e >= 8)
        return tc_g("\u2588", "#");
    return e <= 0 ? " " : tc_utf8 ? u[e] : e >= 4 ? "#" : "+";
}

static int by_share_desc(const void *pa, const void *pb, const double *f)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    return f[a] != f[b] ? (f[a] < f[b] ? 1 : -1) : a - b;
}

/* Experts by routing share, largest first (insertion sort: n ≤ 256). */
static void sort_by_share(const double *f, int n, int *order)
{
    for (int i = 0; i < n; i++) {
        int e = i, j = i;
        for (; j > 0 && by_share_desc(&e, &order[j - 1], f) < 0; j--)
            order[j] = order[j - 1];
        order[j] = e;
    }
}

/* The sorted shares as bars h rows tall in w columns from (y, x): an expert per column group when
 * they fit, else the mean of a run of experts per column. Experts the preview dropped are dim. */
static void draw_freq(const tui_state *s, int l, int y, int x, int w, int h)
{
    const tui_layer_data *d = &s->data[l];
    if (!d->have_stats || d->n < 1) {
        tc_on(TC_PAIR_DIM, 0);
        tc_put(y + h - 1, x, w, "(after calibration)");
        tc_off(TC_PAIR_DIM, 0);
        return;
    }
    int order[TUI_MAX_EXPERTS];
    sort_by_share(d->freq, d->n, order);
    double top = d->freq[order[0]] > 0 ? d->freq[order[0]] : 1;
    bool pruned = tui_preview_fresh(s, l) && d->have_preview && d->built_method != SM_MERGE_KEEP &&
                  !sm_merge_method_merges(d->built_method);
    int per = d->n <= w ? (w / d->n > 6 ? 6 : w / d->n) : 0; /* columns per expert; 0: buckets */
    int cols = per ? d->n * per : w;
    for (int c = 0; c < cols; c++) {
        int e0 = per ? c / per : (int)((int64_t)c * d->n / cols), e1 = per ? e0 + 1 : (int)((int64_t)(c + 1) * d->n / cols);
        if (e1 <= e0)
            e1 = e0 + 1;
        double v = 0;
        for (int e = e0; e < e1; e++)
            v += d->freq[order[e]];
        v /= (e1 - e0) * top;
        bool dim = per && pruned && d->built_slot[order[e0]] < 0;
        if (per && c % per == per - 1 && per > 1) /* a gap between experts */
            continue;
        int eighths = (int)(v * h * 8 + 0.5);
        if (eighths < 1 && v > 0)
            eighths = 1; /* a routed expert is never invisible */
        if (dim)
            tc_on(TC_PAIR_DIM, 0);
        else
            tc_on(TC_PAIR_OK, 0);
        for (int r = 0; r < h; r++)
            tc_put(y + h - 1 - r, x + c, 1, "%s", eighth(eighths - r * 8));
        if (dim)
            tc_off(TC_PAIR_DIM, 0);
        else
            tc_off(TC_PAIR_OK, 0);
    }
}

/* The largest error of a previewed layer (the error bars' scale). */
static double worst_error(const tui_state *s)
{
    double w = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l] && s->data[l].have_preview && s->data[l].output_error > w)
            w = s->data[l].output_error;
    return w;
}

static void draw_row(const tui_state *s, int l, int y, int h, const tui_rect *r, int barw, double worst)
{
    const tui_layer *p = &s->res[l];
    const tui_layer_data *d = &s->data[l];
    bool sel = l == s->layer, fresh = tui_preview_fresh(s, l);
    int x = r->x, right = r->x + r->w;
    if (sel) {
        tc_on(TC_PAIR_SELECT, A_BOLD | (s->color ? 0 : A_REVERSE));
        for (int i = 0; i < h; i++)
            mvhline(y + i, r->x, ' ', r->w);
    }
    int ty = y + h - 1; /* text on the row's last line, beside the bars' base */
    x += tc_put(ty, x, right - x, "%s%3d ", s->marked[l] ? "*" : " ", l);
    /* error: the number, stale marked ~, and a bar against the worst layer */
    char err[16] = "      -";
    if (d->have_preview) { /* a tiny error reads 7e-8, not 0.0000 (as the plan view) */
        char v[16];
        tui_fmt_fit(d->output_error, 7, v, sizeof v);
        snprintf(err, sizeof err, "%7s", v);
    }
    x += tc_put(ty, x, right - x, "%s%s ", err, d->have_preview && !fresh ? "~" : " ");
    int fill = d->have_preview && worst > 0 ? (int)(d->output_error / worst * barw * 8 + 0.5) : 0;
    if (!sel)
        tc_on(TC_PAIR_WARN, 0);
    for (int i = 0; i < barw; i++) {
        int e = fill - i * 8;
        x += tc_put(ty, x, right - x, "%s", left_eighths(e));
    }
    if (!sel)
        tc_off(TC_PAIR_WARN, 0);
    /* experts kept and the method */
    char m[24];
    if (p->is_auto && fresh && d->chosen[0])
        snprintf(m, sizeof m, "%s*", tui_method_short(d->built_method));
    else
        snprintf(m, sizeof m, "%s", p->is_auto ? "auto" : tui_method_short(p->method));
    int k = p->method == SM_MERGE_KEEP && !p->is_auto ? p->n : p->k;
    char kept[24];
    snprintf(kept, sizeof kept, "%d%s%d", p->n, tc_g("\u2192", ">"), k);
    x += tc_put(ty, x, right - x, " %-8s %-9s", kept, m);
    /* saved, at the right edge; the routing distribution between */
    double before = (double)p->n * 3 * (double)s->hidden * (double)s->inter;
    double after = (double)tui_plan_params(s, l);
    char saved[16];
    snprintf(saved, sizeof saved, "%6.1f%%", before > 0 ? 100 * (before - after) / before : 0.0);
    int sw = 8;
    tc_put(ty, right - sw, sw, " %s", saved);
    if (sel)
        tc_off(TC_PAIR_SELECT, A_BOLD | (s->color ? 0 : A_REVERSE));
    int fw = right - sw - 1 - (x + 1);
    int bh = h >= 3 ? h - 1 : h; /* a blank line above, so that two layers' bars do not touch */
    if (fw >= 4)
        draw_freq(s, l, y + h - bh, x + 1, fw, bh);
}

/* Layout of the rows: their height (1-12 rows, the whole panel when it has room) and the first. */
static void rows_geometry(const tui_state *s, const int *rows, int n, int avail, int *h, int *first)
{
    *h = n > 0 ? avail / n : 1;
    *h = *h < 1 ? 1 : *h > 12 ? 12 : *h; /* taller bars while the screen has room */
    int shown = avail / *h;
    int cur = 0;
    for (int i = 0; i < n; i++)
        if (rows[i] == s->layer)
            cur = i;
    *first = 0;
    if (n > shown) { /* scroll: the selected layer in view */
        *first = cur - shown / 2;
        *first = *first < 0 ? 0 : *first > n - shown ? n - shown : *first;
    }
}

void tui_view_model_draw(const tui_state *s, const tui_rect *r)
{
    int rows[TUI_MAX_LAYERS], n = tui_model_rows(s, rows), marked = 0;
    for (int i = 0; i < n; i++)
        marked += s->marked[rows[i]];
    int avail = r->h - 2, h, first;
    rows_geometry(s, rows, n, avail, &h, &first);
    int shown = avail / h;
    char title[128];
    int nfrom = n > shown ? first : 0, nto = n > shown ? first + shown : n;
    snprintf(title, sizeof title, "model: %d MoE layer%s, by %s", n, n == 1 ? "" : "s",
             s->model_sorted ? "error (S)" : "layer (S)");
    if (n > shown)
        snprintf(title + strlen(title), sizeof title - strlen(title), ", %d-%d shown", nfrom + 1, nto);
    if (marked)
        snprintf(title + strlen(title), sizeof title - strlen(title), ", %d marked", marked);
    tc_title(r, title, true);
    int barw = r->w >= 120 ? 16 : r->w >= 90 ? 8 : 4;
    tc_on(TC_PAIR_DIM, 0);
    int x = r->x + tc_put(r->y + 1, r->x, r->w, "    L   error %*s experts  method    ", barw, "");
    /* the routing column's header in the longest form that fits whole (60 columns: "routing") */
    static const char *const routing[] = {"routing: expert shares, sorted", "routing: shares, sorted", "routing",
                                          ""};
    int rw = r->x + r->w - 9 - x, f = 0;
    while (f < 3 && tui_strwidth(routing[f]) > rw)
        f++;
    tc_put(r->y + 1, x + 1, rw, "%s", routing[f]);
    tc_put(r->y + 1, r->x + r->w - 7, 7, " saved");
    tc_off(TC_PAIR_DIM, 0);
    double worst = worst_error(s);
    for (int i = first, y = r->y + 2; i < n && y + h <= r->y + r->h; i++, y += h)
        draw_row(s, rows[i], y, h, r, barw, worst);
}

void tui_view_model_detail(const tui_state *s, int y, int x, int w)
{
    int t[TUI_MAX_LAYERS], n = tui_model_targets(s, t), marked = 0;
    for (int l = 0; l < s->n_layers; l++)
        marked += s->is_moe[l] && s->marked[l];
    const tui_layer *p = &s->res[s->layer];
    tc_put(y, x, w, "layer %d%s: %d %s %d experts %s M r = a set on %s%d %s %s", s->layer,
           s->marked[s->layer] ? " (marked)" : "", p->n, tc_g("\u2192", "->"), p->k, tc_g("\u00b7", "-"),
           marked || n == 1 ? "the " : "all ", n, marked ? "marked" : "MoE", n == 1 ? "layer" : "layers");
}
