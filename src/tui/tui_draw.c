/* tui_draw: the workbench's frame — header, layer list, detail panel, status line. The views and
 * dialogs draw themselves (tui_views.h), with the helpers of tui_curses.h; all of it only reads
 * the state. */
#include "tui/tui_draw.h"
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* 256 colours: a viridis-like ramp from dark violet (least similar) to yellow (most). */
static const short ramp256[TC_RAMP] = {53, 54, 61, 24, 30, 36, 71, 113, 148, 220};
static const short ramp8[TC_RAMP] = {COLOR_MAGENTA, COLOR_BLUE, COLOR_BLUE, COLOR_CYAN, COLOR_CYAN,
                                     COLOR_GREEN, COLOR_GREEN, COLOR_YELLOW, COLOR_YELLOW, COLOR_WHITE};

void tui_draw_init_colors(tui_state *s)
{
    if (!s->color || !has_colors()) {
        s->color = false;
        return;
    }
    start_color();
    use_default_colors();
    init_pair(TC_PAIR_TITLE, COLOR_CYAN, -1);
    init_pair(TC_PAIR_SELECT, COLOR_BLACK, COLOR_CYAN);
    init_pair(TC_PAIR_DIM, COLORS >= 256 ? 245 : COLOR_WHITE, -1);
    init_pair(TC_PAIR_WARN, COLOR_YELLOW, -1);
    init_pair(TC_PAIR_OK, COLOR_GREEN, -1);
    init_pair(TC_PAIR_ERROR, COLOR_RED, -1);
    init_pair(TC_PAIR_BAR, COLOR_BLACK, COLOR_WHITE);
    init_pair(TC_PAIR_SPEC_BAR, COLORS >= 256 ? 250 : COLOR_WHITE, -1);
    init_pair(TC_PAIR_SPEC_DOT, COLORS >= 256 ? 28 : COLOR_GREEN, COLORS >= 256 ? 250 : COLOR_WHITE);
    for (int i = 0; i < TC_RAMP; i++)
        init_pair((short)(TC_PAIR_RAMP + i), i >= 7 ? COLOR_BLACK : COLOR_WHITE, COLORS >= 256 ? ramp256[i] : ramp8[i]);
}

static void draw_header(const tui_state *s, const tui_rect *r)
{
    /* line 1: name, [modified], the model and its shape */
    char shape[128];
    snprintf(shape, sizeof shape, "%s %s %d layer%s %s %d experts %s top-%d", s->arch, tc_g("\u00b7", "-"), s->n_layers,
             s->n_layers == 1 ? "" : "s", tc_g("\u00b7", "-"), s->n_experts, tc_g("\u00b7", "-"), s->top_k);
    int x = r->x;
    tc_on(0, A_BOLD);
    x += tc_put(r->y, x, r->w, "submoe workbench");
    tc_off(0, A_BOLD);
    if (s->modified) { /* before the path: a long path must not hide it */
        tc_on(TC_PAIR_WARN, A_BOLD);
        x += tc_put(r->y, x, r->x + r->w - x, " [modified]");
        tc_off(TC_PAIR_WARN, A_BOLD);
    }
    int room = r->x + r->w - x - 2 - tui_strwidth(shape) - 2;
    char path[512];
    tui_short_path(s->model, room > 12 ? room : 12, path, sizeof path, s->utf8);
    x += tc_put(r->y, x, r->x + r->w - x, "  %s", path);
    if (tui_strwidth(shape) + 2 > r->x + r->w - x) /* narrow: the shape in fewer words, or none */
        snprintf(shape, sizeof shape, "%s %s %d experts", s->arch, tc_g("\u00b7", "-"), s->n_experts);
    if (tui_strwidth(shape) + 2 > r->x + r->w - x)
        snprintf(shape, sizeof shape, "%s", s->arch);
    tc_on(TC_PAIR_DIM, 0);
    if (tui_strwidth(shape) + 2 <= r->x + r->w - x)
        tc_put(r->y, x, r->x + r->w - x, "  %s", shape);
    tc_off(TC_PAIR_DIM, 0);

    /* line 2: size before → after, perplexity; the running job on the right */
    char jobtxt[128] = "";
    int jw = 0;
    if (s->busy) {
        int bw = r->w >= 100 ? 20 : 10, fill = (int)(s->progress * bw + 0.5);
        char bar[64] = "";
        for (int i = 0; i < bw; i++)
            strcat(bar, i < fill ? tc_g("\u2588", "#") : tc_g("\u00b7", "."));
        snprintf(jobtxt, sizeof jobtxt, "%.28s %s %3.0f%%", s->job, bar, s->progress * 100);
        jw = tui_strwidth(jobtxt);
    }
    int64_t after = tui_model_params_after(s);
    char a[32], b[32], pp[96];
    tc_fmt_params(a, sizeof a, (double)s->total_params);
    tc_fmt_params(b, sizeof b, (double)after);
    if (s->ppl_original > 0 && s->ppl_plan > 0)
        snprintf(pp, sizeof pp, "perplexity %.3f %s %.3f%s", s->ppl_original, tc_g("\u2192", "->"), s->ppl_plan,
                 tui_ppl_fresh(s) ? "" : " (before edits)");
    else
        snprintf(pp, sizeof pp, "perplexity: P");
    char acc[96]; /* after the perplexity when there is room */
    if (s->acc_original >= 0 && s->acc_plan >= 0)
        snprintf(acc, sizeof acc, "accuracy %.3f %s %.3f%s", s->acc_original, tc_g("\u2192", "->"), s->acc_plan,
                 s->acc_gen == tui_plan_gen_sum(s) ? "" : " (before edits)");
    else
        snprintf(acc, sizeof acc, "accuracy: A");
    int leftw = r->w - (jw ? jw + 2 : 0);
    x = r->x + tc_put(r->y + 1, r->x, leftw, "params %s %s %s (%+.1f%%)", a, tc_g("\u2192", "->"), b,
                      s->total_params ? 100.0 * (double)(after - s->total_params) / (double)s->total_params : 0.0);
    if (tui_strwidth(pp) + 3 <= r->x + leftw - x)
        x += tc_put(r->y + 1, x, r->x + leftw - x, "   %s", pp);
    if (tui_strwidth(acc) + 3 <= r->x + leftw - x)
        tc_put(r->y + 1, x, r->x + leftw - x, "   %s", acc);
    if (jw) {
        tc_on(TC_PAIR_WARN, A_BOLD);
        tc_put(r->y + 1, r->x + r->w - jw, jw, "%s", jobtxt);
        tc_off(TC_PAIR_WARN, A_BOLD);
    }
}

/* The method column: what will be done, "*" when auto chose it, "+a" when aligned. */
static void method_cell(const tui_state *s, int l, char *buf, size_t n)
{
    const tui_layer *p = &s->res[l];
    const tui_layer_data *d = &s->data[l];
    if (p->is_auto) {
        if (tui_preview_fresh(s, l) && d->chosen[0])
            snprintf(buf, n, "%s%s*", tui_method_short(d->built_method), d->built_align ? "+a" : "");
        else
            snprintf(buf, n, "auto");
    } else {
        snprintf(buf, n, "%s%s", tui_method_short(p->method),
                 p->align && sm_merge_method_merges(p->method) ? "+a" : "");
    }
}

static void draw_layers(const tui_state *s, const tui_rect *r, bool wide)
{
    int rows = r->h - 2; /* title and column header */
    int first = 0;
    if (s->n_layers > rows && rows > 0) {
        first = s->layer - rows / 2;
        first = first < 0 ? 0 : first > s->n_layers - rows ? s->n_layers - rows : first;
    }
    char title[64];
    if (s->n_layers > rows)
        snprintf(title, sizeof title, "layers %d-%d of %d", first, first + rows - 1, s->n_layers);
    else
        snprintf(title, sizeof title, "layers");
    tc_title(r, title, s->view == TUI_VIEW_LAYERS);
    tc_on(TC_PAIR_DIM, 0);
    bool narrow = r->w < 30; /* experts kept only, so that the error keeps 4 columns or more */
    if (narrow)
        tc_put(r->y + 1, r->x, r->w, "  L kept method   error");
    else
        tc_put(r->y + 1, r->x, r->w, "%s", wide ? "  L experts method      error   saved router" : "  L experts method    error");
    tc_off(TC_PAIR_DIM, 0);
    const char *arrow = tc_g("\u2192", ">");
    for (int l = first, row = r->y + 2; l < s->n_layers && row < r->y + r->h; l++, row++) {
        const tui_layer *p = &s->res[l];
        const tui_layer_data *d = &s->data[l];
        bool sel = l == s->layer;
        if (sel) {
            tc_on(TC_PAIR_SELECT, A_BOLD | (s->color ? 0 : A_REVERSE));
            mvhline(row, r->x, ' ', r->w - 1);
        }
        if (!s->is_moe[l]) {
            tc_on(TC_PAIR_DIM, 0);
            tc_put(row, r->x, r->w - 1, " %2d dense", l);
            tc_off(TC_PAIR_DIM, 0);
        } else {
            char m[24], err[16] = "     -";
            method_cell(s, l, m, sizeof m);
            bool fresh = tui_preview_fresh(s, l);
            int k = p->method == SM_MERGE_KEEP && !p->is_auto ? p->n : p->k;
            /* wide: room for the longest method cell ("sub-whit+a*"), so that the columns after
             * the error stay where the header puts them */
            int x = r->x + (narrow ? tc_put(row, r->x, r->w - 1, " %2d %4d %-8s ", l, k, m)
                                   : tc_put(row, r->x, r->w - 1, " %2d %3d%s%-3d %-*s ", l, p->n, arrow, k,
                                            wide ? 11 : 9, m));
            if (d->have_preview) { /* the value in the columns left (a narrow list: "2e-3", never "0") */
                int room = r->x + r->w - 1 - x - (fresh ? 0 : 1);
                char v[16];
                room = room < 6 ? room : 6;
                tui_fmt_fit(d->output_error, room, v, sizeof v);
                snprintf(err, sizeof err, "%*s", room, v);
            }
            if (!fresh && !sel)
                tc_on(TC_PAIR_DIM, 0);
            x += tc_put(row, x, r->x + r->w - 1 - x, "%s%s", err, fresh || !d->have_preview ? "" : "~");
            if (!fresh && !sel)
                tc_off(TC_PAIR_DIM, 0);
            if (wide) {
                double before = (double)p->n * 3 * (double)s->hidden * (double)s->inter;
                double after = (double)tui_plan_params(s, l);
                static const char *const rshort[3] = {"remap", "lstsq", "mean"};
                tc_put(row, r->x + 31, r->w - 32, "%5.1f%% %s", before > 0 ? 100 * (before - after) / before : 0.0,
                       p->method == SM_MERGE_KEEP || (!p->is_auto && !sm_merge_method_merges(p->method))
                           ? "-"
                           : rshort[p->router % 3]);
            }
        }
        if (sel)
            tc_off(TC_PAIR_SELECT, A_BOLD | (s->color ? 0 : A_REVERSE));
    }
}

/* A line of items separated by sep, its last items dropped until it fits in w columns (a hint
 * line, a summary), so that no item is cut. */
static void put_items(int y, int x, int w, const char *text, const char *sep)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    while (tui_strwidth(buf) > w) {
        char *cut = NULL;
        for (char *p = strstr(buf, sep); p; p = strstr(p + 1, sep))
            cut = p;
        if (!cut)
            break;
        *cut = 0;
    }
    tc_put(y, x, w, "%s", buf);
}

static void draw_detail(const tui_state *s, const tui_rect *r)
{
    char title[64];
    snprintf(title, sizeof title, "layer %d", s->layer);
    tc_title(r, title, false);
    int x = r->x + 1, w = r->w - 2, y = r->y + 1, last = r->y + r->h - 1;
    if (!s->is_moe[s->layer]) {
        tc_put(y, x, w, "a dense layer: nothing to merge");
        return;
    }
    const tui_layer_data *d = &s->data[s->layer];
    /* what the view is pointing at */
    if (s->view == TUI_VIEW_HEATMAP)
        tui_view_heatmap_detail(s, y, x, w);
    else if (s->view == TUI_VIEW_SPECTRUM)
        tui_view_spectrum_detail(s, y, x, w);
    else if (s->view == TUI_VIEW_MODEL)
        tui_view_model_detail(s, y, x, w);
    else if (s->view == TUI_VIEW_COMPARE)
        tui_view_compare_detail(s, y, x, w);
    else
        tui_view_plan_detail(s, y, x, w);
    y++;
    /* the layer's preview */
    if (y < last) {
        if (d->have_preview) {
            bool fresh = tui_preview_fresh(s, s->layer);
            char a[32], b[32];
            tc_fmt_params(a, sizeof a, (double)d->params_before);
            tc_fmt_params(b, sizeof b, (double)d->params_after);
            char oe[16], we[16] = "n/a"; /* as the lists print them: 7e-8, never 0.0000 */
            tui_fmt_fit(d->output_error, 6, oe, sizeof oe);
            if (d->member_error >= 0)
                tui_fmt_fit(d->member_error, 6, we, sizeof we);
            if (!fresh)
                tc_on(TC_PAIR_DIM, 0);
            char line[256];
            snprintf(line, sizeof line, "preview%s: output error %s %s weight error %s %s experts %s %s %s",
                     fresh ? "" : " (before the last edit; updating)", oe, tc_g("\u00b7", "-"), we,
                     tc_g("\u00b7", "-"), a, tc_g("\u2192", "->"), b);
            put_items(y, x, w, line, tc_g(" \u00b7 ", " - "));
            if (!fresh)
                tc_off(TC_PAIR_DIM, 0);
        } else {
            tc_put(y, x, w, "preview: %s", s->calibrated ? "computing (p recomputes)" : "after calibration");
        }
        y++;
    }
    /* key hints for the view, the most important first where not all fit (tui_fit_priority) */
    static const struct {
        const char *keys;
        int prio;
    } hints[TUI_VIEW_COUNT][8] = {
        {{"M method", 0}, {"a align", 2}, {"r router", 1}, {"+/- groups", 0}, {"c re-cluster", 2}, {"= rank", 1},
         {"P perplexity", 1}},
        {{"m row's expert to column's group", 0}, {"n new group", 3}, {"g merge groups", 3}, {"s similarity", 2},
         {"/ jump", 1}, {"z overview", 1}, {"PgUp/PgDn page", 1}},
        {{"h/l rank", 0}, {"[/] by one", 2}, {"= type a rank", 1}, {"f full", 1}, {"x gate/up/down", 0},
         {"j/k group", 1}},
        {{"space mark", 0}, {"M r = a: every (marked) layer", 0}, {"S sort", 1}, {"Enter the layer", 1},
         {"u undo", 2}},
        {{"O open a plan to compare", 0}, {"j/k layer", 2}, {"Enter the layer", 2}, {"P perplexity", 1},
         {"p errors", 2}},
    };
    if (last > y - 1 && last >= r->y + 2) {
        const char *items[8];
        int prio[8], n = 0;
        for (; n < 8 && hints[s->view][n].keys; n++)
            items[n] = hints[s->view][n].keys, prio[n] = hints[s->view][n].prio;
        char line[256];
        tui_fit_priority(line, sizeof line, items, prio, n, "  ", w);
        tc_on(TC_PAIR_DIM, 0);
        tc_put(last, x, w, "%s", line);
        tc_off(TC_PAIR_DIM, 0);
    }
}

/* The status bar, and above it the rest of a message too long for it: the message area grows up
 * over the detail panel (never cutting the message; the log, L, keeps it too). */
static void draw_status(const tui_state *s, const tui_rect *r, int rows)
{
    const char *keys = r->w >= 100 ? " ? help  L log  w save  C commit  q quit " : " ? help  L log  q quit ";
    int kw = (int)strlen(keys);
    static char lines[32][TUI_WRAP_LINE];
    int max = rows - 4 < 32 ? rows - 4 : 32;
    int n = tui_message_lines(s->status, r->w, kw, lines, max, s->utf8);
    /* the keys share the bottom row with the message's last line when it leaves room */
    int h = n + (n > 0 && tui_strwidth(lines[n - 1]) > r->w - kw - 1);
    h = h < 1 ? 1 : h;
    int y0 = r->y - (h - 1);
    attr_t bar = s->color ? 0 : A_REVERSE;
    for (int i = 0; i < h; i++) {
        tc_on(TC_PAIR_BAR, bar);
        mvhline(y0 + i, r->x, ' ', r->w);
        tc_off(TC_PAIR_BAR, bar);
        if (i >= n)
            continue;
        if (s->status_error)
            tc_on(TC_PAIR_ERROR, A_BOLD | A_REVERSE);
        else
            tc_on(TC_PAIR_BAR, bar);
        tc_put(y0 + i, r->x, r->w - 1, " %s", lines[i]);
        if (s->status_error)
            tc_off(TC_PAIR_ERROR, A_BOLD | A_REVERSE);
        else
            tc_off(TC_PAIR_BAR, bar);
    }
    tc_on(TC_PAIR_BAR, A_BOLD | bar);
    tc_put(r->y, r->x + r->w - kw, kw, "%s", keys);
    tc_off(TC_PAIR_BAR, A_BOLD | bar);
}

void tui_draw(const tui_state *s, int cols, int rows)
{
    tc_utf8 = s->utf8;
    tc_color = s->color;
    erase();
    tui_layout L = tui_layout_compute(cols, rows);
    if (L.too_small) {
        tc_put(0, 0, cols, "submoe workbench: the terminal is %dx%d;", cols, rows);
        tc_put(1, 0, cols, "it needs at least %dx%d (q quits).", TUI_MIN_COLS, TUI_MIN_ROWS);
        refresh();
        return;
    }
    draw_header(s, &L.header);
    tui_rect body = {L.layers.y, 0, L.layers.h, cols}; /* views 4 and 5 take the layer list's room too */
    if (s->view == TUI_VIEW_MODEL)
        tui_view_model_draw(s, &body);
    else if (s->view == TUI_VIEW_COMPARE)
        tui_view_compare_draw(s, &body);
    else
        draw_layers(s, &L.layers, L.wide);
    if (s->view == TUI_VIEW_HEATMAP)
        tui_view_heatmap_draw(s, &L.main);
    else if (s->view == TUI_VIEW_SPECTRUM)
        tui_view_spectrum_draw(s, &L.main);
    else if (s->view == TUI_VIEW_LAYERS)
        tui_view_plan_draw(s, &L.main);
    draw_detail(s, &L.detail);
    draw_status(s, &L.status, rows);
    if (s->dialog != TUI_DIALOG_NONE)
        tui_dialog_draw(s, cols, rows);
    refresh();
}
