/* tui_draw: render the workbench from its state (the only drawing code; see tui_draw.h). */
#include "tui/tui_draw.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define RAMP 8
/* colour pairs: 1 title, 2 selected, 3 dim, 4 warn, 5 ok, 10.. 10+RAMP-1 heatmap ramp */
static const short ramp256[RAMP] = {17, 18, 24, 30, 36, 142, 214, 196};
static const short ramp8[RAMP] = {COLOR_BLUE, COLOR_BLUE, COLOR_CYAN, COLOR_CYAN, COLOR_GREEN, COLOR_YELLOW, COLOR_YELLOW, COLOR_RED};
static const char *const mono_utf8[RAMP] = {" ", "\u2591", "\u2591", "\u2592", "\u2592", "\u2593", "\u2593", "\u2588"};
static const char *const mono_ascii[RAMP] = {" ", ".", ":", "-", "=", "+", "#", "@"};

void tui_draw_init_colors(tui_state *s)
{
    if (!s->color || !has_colors()) {
        s->color = false;
        return;
    }
    start_color();
    use_default_colors();
    init_pair(1, COLOR_CYAN, -1);
    init_pair(2, COLOR_BLACK, COLOR_CYAN);
    init_pair(3, COLOR_WHITE, -1);
    init_pair(4, COLOR_YELLOW, -1);
    init_pair(5, COLOR_GREEN, -1);
    for (int i = 0; i < RAMP; i++)
        init_pair((short)(10 + i), COLOR_WHITE, COLORS >= 256 ? ramp256[i] : ramp8[i]);
}

static void put(int y, int x, int maxw, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(int y, int x, int maxw, const char *fmt, ...)
{
    if (maxw <= 0)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mvaddnstr(y, x, buf, maxw);
}

static bool g_utf8;

/* A horizontal rule: box-drawing line in UTF-8, dashes otherwise (no alternate charset, so it
 * reads the same in every terminal and in captured screens). */
static void hrule(int y, int x, int w)
{
    for (int i = 0; i < w; i++)
        mvaddstr(y, x + i, g_utf8 ? "\u2500" : "-");
}

static void box_title(const tui_rect *r, const char *title, bool active)
{
    if (r->h < 2 || r->w < 4)
        return;
    attron(active ? COLOR_PAIR(1) | A_BOLD : A_DIM);
    hrule(r->y, r->x, r->w);
    put(r->y, r->x + 1, r->w - 2, " %s ", title);
    attroff(active ? COLOR_PAIR(1) | A_BOLD : A_DIM);
}

static const char *method_label(const tui_layer_plan *p)
{
    return p->is_auto ? "auto" : sm_merge_method_name(p->method);
}

static void fmt_params(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fB", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else
        snprintf(buf, n, "%.0fk", v / 1e3);
}

static void draw_header(const tui_state *s, const tui_rect *r)
{
    int64_t before = 0, after = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l]) {
            before += (int64_t)s->plan[l].n * 3 * s->hidden * s->inter;
            after += tui_plan_params(s, l);
        }
    int64_t total_after = s->total_params - before + after;
    char a[32], b[32];
    fmt_params(a, sizeof a, (double)s->total_params);
    fmt_params(b, sizeof b, (double)total_after);
    attron(A_BOLD);
    /* the flag first: a long model path must not push it off an 80-column screen */
    put(r->y, r->x, r->w, "submoe workbench%s  %s  (%s, %d layers, top-%d)", s->modified ? " [modified]" : "", s->model,
        s->arch, s->n_layers, s->top_k);
    attroff(A_BOLD);
    if (s->busy) {
        int bw = r->w - 40 > 10 ? 30 : 10, fill = (int)(s->progress * bw + 0.5);
        char bar[64];
        for (int i = 0; i < bw && i < 63; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[bw < 63 ? bw : 63] = 0;
        attron(COLOR_PAIR(4));
        put(r->y + 1, r->x, r->w, "%s [%s] %3.0f%%  (Esc cancels)", s->job, bar, s->progress * 100);
        attroff(COLOR_PAIR(4));
    } else {
        char pp[96] = "P: perplexity";
        if (s->ppl_original > 0 && s->ppl_plan > 0)
            snprintf(pp, sizeof pp, "perplexity %.3f -> %.3f", s->ppl_original, s->ppl_plan);
        put(r->y + 1, r->x, r->w, "params %s -> %s (%.1f%%)   %s", a, b,
            s->total_params ? 100.0 * (double)total_after / (double)s->total_params : 100.0, pp);
    }
}

static void draw_layers(const tui_state *s, const tui_rect *r)
{
    box_title(r, "layers", s->view == TUI_VIEW_LAYERS);
    put(r->y + 1, r->x, r->w, " L kind  experts method     error%s", r->w >= 44 ? "   saved" : "");
    int first = s->layer - (r->h - 3) + 1;
    first = first < 0 ? 0 : first;
    for (int l = first, row = r->y + 2; l < s->n_layers && row < r->y + r->h; l++, row++) {
        const tui_layer_plan *p = &s->plan[l];
        const tui_layer_data *d = &s->data[l];
        bool sel = l == s->layer;
        if (sel)
            attron(COLOR_PAIR(2) | A_BOLD);
        if (!s->is_moe[l]) {
            put(row, r->x, r->w, "%2d dense", l);
        } else {
            char err[16] = "   -";
            if (d->have_preview && d->preview_gen == s->plan_gen[l])
                snprintf(err, sizeof err, "%.4f", d->output_error);
            else if (d->have_preview)
                snprintf(err, sizeof err, "(%.3f)", d->output_error);
            int k = p->method == SM_MERGE_KEEP && !p->is_auto ? p->n : p->k;
            put(row, r->x, r->w, "%2d MoE  %3d>%-3d  %-10.10s %-7s", l, p->n, k, method_label(p), err);
            if (r->w >= 44) {
                double before = (double)p->n * 3 * s->hidden * s->inter, after = (double)tui_plan_params(s, l);
                put(row, r->x + 36, r->w - 36, " %5.1f%%", before > 0 ? 100 * (before - after) / before : 0.0);
            }
        }
        if (sel)
            attroff(COLOR_PAIR(2) | A_BOLD);
    }
}

static void draw_heatmap(const tui_state *s, const tui_rect *r)
{
    static const char *const kinds[3] = {"output", "weight", "router logit"};
    char title[96];
    snprintf(title, sizeof title, "layer %d: %s similarity (s: switch)", s->layer, kinds[s->sim_kind]);
    box_title(r, title, true);
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer_plan *p = &s->plan[s->layer];
    if (!s->is_moe[s->layer] || !d->have_stats || !d->sim[s->sim_kind]) {
        put(r->y + 2, r->x + 2, r->w - 4, s->is_moe[s->layer] ? "statistics not computed yet" : "dense layer");
        return;
    }
    int order[TUI_MAX_EXPERTS], n = tui_cluster_order(p, order);
    const double *S = d->sim[s->sim_kind];
    double lo = 1, hi = -1;
    for (int i = 0; i < n * n; i++)
        if (i / n != i % n) {
            lo = fmin(lo, S[i]);
            hi = fmax(hi, S[i]);
        }
    int cw = (r->w - 6) / (n + p->k) >= 2 ? 2 : 1;
    int rows_avail = r->h - 4;
    for (int a = 0; a < n && a < rows_avail; a++) {
        int y = r->y + 1 + a, x = r->x + 5;
        put(y, r->x, 5, "%3d ", order[a]);
        for (int b = 0; b < n && x + cw <= r->x + r->w; b++) {
            if (b > 0 && p->assign[order[b]] != p->assign[order[b - 1]]) { /* cluster boundary */
                mvaddstr(y, x, s->utf8 ? "\u2502" : "|");
                x++;
            }
            double v = S[order[a] * n + order[b]];
            int sh = tui_shade(v, lo, hi, RAMP);
            bool cur = a == s->ci && b == s->cj;
            if (s->color) {
                attron(COLOR_PAIR(10 + sh) | (cur ? A_REVERSE | A_BOLD : 0));
                mvaddstr(y, x, cw == 2 ? (cur ? "[]" : "  ") : (cur ? "*" : " "));
                attroff(COLOR_PAIR(10 + sh) | (cur ? A_REVERSE | A_BOLD : 0));
            } else {
                const char *c = s->utf8 ? mono_utf8[sh] : mono_ascii[sh];
                if (cur)
                    attron(A_REVERSE);
                for (int q = 0; q < cw; q++)
                    mvaddstr(y, x + q, cur && q == 0 ? "*" : c);
                if (cur)
                    attroff(A_REVERSE);
            }
            x += cw;
        }
    }
    /* legend */
    int ly = r->y + r->h - 2, lx = r->x + 1;
    put(ly, lx, r->w - 2, "%.2f ", lo);
    lx += 6;
    for (int i = 0; i < RAMP && lx < r->x + r->w - 8; i++, lx += 2) {
        if (s->color) {
            attron(COLOR_PAIR(10 + i));
            mvaddstr(ly, lx, "  ");
            attroff(COLOR_PAIR(10 + i));
        } else {
            mvaddstr(ly, lx, s->utf8 ? mono_utf8[i] : mono_ascii[i]);
            mvaddstr(ly, lx + 1, s->utf8 ? mono_utf8[i] : mono_ascii[i]);
        }
    }
    put(ly, lx + 1, r->x + r->w - lx - 1, "%.2f  clusters separated by |", hi);
}

static void draw_spectrum(const tui_state *s, const tui_rect *r)
{
    static const char *const mats[3] = {"gate", "up", "down"};
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer_plan *p = &s->plan[s->layer];
    char title[128];
    snprintf(title, sizeof title, "layer %d cluster %d/%d: %s singular values (x: matrix, </>: cluster, h/l: rank)",
             s->layer, s->spec_cluster, p->k, mats[s->spec_matrix]);
    box_title(r, title, true);
    if (!s->is_moe[s->layer] || !d->have_spectrum || d->spec_cluster != s->spec_cluster ||
        !d->spec[s->spec_matrix]) {
        put(r->y + 2, r->x + 2, r->w - 4, "spectrum not computed yet");
        return;
    }
    const double *sv = d->spec[s->spec_matrix];
    int len = d->spec_len[s->spec_matrix];
    double tot = 0;
    for (int i = 0; i < len; i++)
        tot += sv[i] * sv[i];
    int64_t rk = p->rank[s->spec_matrix].kind == SM_RANK_FULL ? len
                 : p->rank[s->spec_matrix].kind == SM_RANK_COUNT ? p->rank[s->spec_matrix].count
                                                                : (int64_t)(p->rank[s->spec_matrix].fraction * len);
    if (rk > len)
        rk = len;
    int W = r->w - 8, H = r->h - 4;
    if (W < 4 || H < 3)
        return;
    double top = log10(sv[0] > 0 ? sv[0] : 1e-30), bot = top - 6;
    for (int i = 0; i < len; i++)
        if (sv[i] > 0)
            bot = fmax(top - 6, fmin(bot, log10(sv[i])));
    if (bot >= top)
        bot = top - 1;
    double cum = 0;
    int rank_col = (int)((double)rk / len * W);
    for (int c = 0; c < W; c++) {
        int i0 = (int)((double)c / W * len), i1 = (int)((double)(c + 1) / W * len);
        i1 = i1 <= i0 ? i0 + 1 : i1;
        double v = 0;
        for (int i = i0; i < i1 && i < len; i++) {
            v = fmax(v, sv[i]);
            cum += sv[i] * sv[i];
        }
        int hbar = v > 0 ? (int)((log10(v) - bot) / (top - bot) * H + 0.5) : 0;
        int he = tot > 0 ? (int)(cum / tot * (H - 1) + 0.5) : 0;
        for (int y = 0; y < H; y++) {
            int yy = r->y + 1 + H - 1 - y;
            if (c == rank_col) {
                attron(COLOR_PAIR(4) | A_BOLD);
                mvaddstr(yy, r->x + 7 + c, "|");
                attroff(COLOR_PAIR(4) | A_BOLD);
            } else if (y == he) {
                attron(COLOR_PAIR(5));
                mvaddstr(yy, r->x + 7 + c, "*");
                attroff(COLOR_PAIR(5));
            } else if (y < hbar) {
                mvaddstr(yy, r->x + 7 + c, s->utf8 ? "\u2588" : "#");
            }
        }
    }
    put(r->y + 1, r->x, 7, "1e%+.0f", top);
    put(r->y + H, r->x, 7, "1e%+.0f", bot);
    double kept = 0;
    for (int i = 0; i < rk; i++)
        kept += sv[i] * sv[i];
    put(r->y + H + 1, r->x + 1, r->w - 2, "rank %lld of %d  energy kept %.2f%%  W_cat truncation error %.4f   (* cumulative "
                                          "energy, | chosen rank)",
        (long long)rk, len, tot > 0 ? 100 * kept / tot : 100.0, tot > 0 ? sqrt(fmax(0, 1 - kept / tot)) : 0.0);
}

static void draw_layer_view(const tui_state *s, const tui_rect *r)
{
    char title[64];
    snprintf(title, sizeof title, "layer %d plan", s->layer);
    box_title(r, title, true);
    if (!s->is_moe[s->layer]) {
        put(r->y + 2, r->x + 2, r->w - 4, "dense layer: not merged");
        return;
    }
    const tui_layer_plan *p = &s->plan[s->layer];
    const tui_layer_data *d = &s->data[s->layer];
    char rk[3][24];
    for (int j = 0; j < 3; j++)
        sm_rank_format(&p->rank[j], rk[j], sizeof rk[j]);
    put(r->y + 1, r->x + 1, r->w - 2, "method %s (M)   router %s (r)   ranks gate %s, up %s, down %s", method_label(p),
        sm_router_mode_name(p->router), rk[0], rk[1], rk[2]);
    if (d->chosen[0] && p->is_auto)
        put(r->y + 2, r->x + 1, r->w - 2, "auto chose %s", d->chosen);
    int y = r->y + 3;
    for (int c = 0; c < p->k && y < r->y + r->h; c++, y++) {
        char line[512];
        size_t n = (size_t)snprintf(line, sizeof line, "group %2d:", c);
        for (int i = 0; i < p->n && n < sizeof line - 24; i++)
            if (p->assign[i] == c)
                n += (size_t)snprintf(line + n, sizeof line - n, " %d(%.2f)", i, d->have_stats ? d->freq[i] : 0.0);
        put(y, r->x + 1, r->w - 2, "%s", line);
    }
    if (y < r->y + r->h)
        put(y, r->x + 1, r->w - 2, "(expert(routing frequency)); Tab: heatmap, spectrum; +/-: groups; c: re-cluster");
}

static void draw_detail(const tui_state *s, const tui_rect *r)
{
    box_title(r, "preview", false);
    if (!s->is_moe[s->layer])
        return;
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer_plan *p = &s->plan[s->layer];
    if (s->view == TUI_VIEW_HEATMAP && d->have_stats) {
        int order[TUI_MAX_EXPERTS], n = tui_cluster_order(p, order);
        if (s->ci < n && s->cj < n) {
            int i = order[s->ci], j = order[s->cj];
            put(r->y + 1, r->x + 1, r->w - 2, "S[%d,%d]=%.3f  e%d: f %.3f g%d  e%d: f %.3f g%d",
                i, j, d->sim[s->sim_kind] ? d->sim[s->sim_kind][i * d->n + j] : 0.0, i, d->freq[i], p->assign[i], j,
                d->freq[j], p->assign[j]);
        }
    }
    if (d->have_preview) {
        char a[32], b[32];
        fmt_params(a, sizeof a, (double)d->params_before);
        fmt_params(b, sizeof b, (double)d->params_after);
        bool fresh = d->preview_gen == s->plan_gen[s->layer];
        if (!fresh)
            attron(A_DIM);
        char we[16] = "-";
        if (d->member_error >= 0)
            snprintf(we, sizeof we, "%.4f", d->member_error);
        put(r->y + 2, r->x + 1, r->w - 2, "output err %.4f  weight err %s  experts %s->%s%s", d->output_error, we, a, b,
            fresh ? "" : " (updating)");
        if (!fresh)
            attroff(A_DIM);
    }
    if (s->view == TUI_VIEW_HEATMAP)
        put(r->y + 3, r->x + 1, r->w - 2, "m move to column's group  n new group  g merge  u undo");
    else if (s->view == TUI_VIEW_SPECTRUM)
        put(r->y + 3, r->x + 1, r->w - 2, "h/l rank  x matrix  </> cluster  f full rank");
    else
        put(r->y + 3, r->x + 1, r->w - 2, "M method  r router  +/- groups  P perplexity  C commit");
}

static void draw_dialog(const tui_state *s, int cols, int rows)
{
    static const char *const help[] = {
        "Keys",
        "  Tab, 1 2 3   views: layers, heatmap, spectrum",
        "  j/k, arrows  select layer (layers view) / move the heatmap cursor",
        "  J/K, PgDn/Up next / previous MoE layer (any view)",
        "  s            similarity: output, weight, router logit",
        "  m  n  g      heatmap: row expert to column's group / new group / merge",
        "  + -          one group more / fewer (re-clusters with k-means)",
        "  c            re-cluster the layer (k-means, next seed)",
        "  M  r         method (auto, submoe, ... keep); router mode",
        "  x  < >       spectrum: matrix gate/up/down; cluster",
        "  h/l, arrows  spectrum: rank down / up (f: full rank for all matrices)",
        "  p  P         preview the layer; perplexity of the whole plan (Esc cancels)",
        "  u  U         undo / redo",
        "  w            save the plan (YAML)",
        "  C            commit: write the merged model",
        "  ?  q         this help; quit",
        "",
        "any key closes",
    };
    const char *const *lines = help;
    int n = (int)(sizeof help / sizeof help[0]);
    char buf[3][600];
    const char *dl[3] = {buf[0], buf[1], buf[2]};
    if (s->dialog == TUI_DIALOG_QUIT) {
        snprintf(buf[0], sizeof buf[0], "The plan has unsaved edits.");
        snprintf(buf[1], sizeof buf[1], "Quit and discard them? (y/n)");
        lines = dl;
        n = 2;
    } else if (s->dialog == TUI_DIALOG_COMMIT) {
        static const char *const fmts[3] = {"submoe (native: any plan)", "hf (standard layout)",
                                            "hf-expanded (original expert count)"};
        snprintf(buf[0], sizeof buf[0], "Commit: write the merged model, format %s, to", fmts[s->commit_format % 3]);
        snprintf(buf[1], sizeof buf[1], "> %s_", s->input);
        snprintf(buf[2], sizeof buf[2], "Enter: write   Tab: format   Esc: cancel");
        lines = dl;
        n = 3;
    } else if (s->dialog == TUI_DIALOG_OVERWRITE) {
        snprintf(buf[0], sizeof buf[0], "%s already exists.", s->input);
        snprintf(buf[1], sizeof buf[1], "Replace it? (y/n)");
        lines = dl;
        n = 2;
    }
    int w = 0;
    for (int i = 0; i < n; i++)
        w = (int)strlen(lines[i]) > w ? (int)strlen(lines[i]) : w;
    w = w + 4 > cols ? cols : w + 4;
    int h = n + 2 > rows ? rows : n + 2, y0 = (rows - h) / 2, x0 = (cols - w) / 2;
    for (int y = 0; y < h; y++)
        mvhline(y0 + y, x0, ' ', w);
    attron(COLOR_PAIR(1));
    hrule(y0, x0, w);
    hrule(y0 + h - 1, x0, w);
    attroff(COLOR_PAIR(1));
    for (int i = 0; i < n && i + 1 < h - 1; i++)
        put(y0 + 1 + i, x0 + 2, w - 4, "%s", lines[i]);
}

void tui_draw(const tui_state *s, int cols, int rows)
{
    g_utf8 = s->utf8;
    erase();
    tui_layout L = tui_layout_compute(cols, rows);
    if (L.too_small) {
        put(0, 0, cols, "terminal too small (%dx%d): the workbench needs at least 60x16", cols, rows);
        refresh();
        return;
    }
    draw_header(s, &L.header);
    draw_layers(s, &L.layers);
    if (s->view == TUI_VIEW_HEATMAP)
        draw_heatmap(s, &L.main);
    else if (s->view == TUI_VIEW_SPECTRUM)
        draw_spectrum(s, &L.main);
    else
        draw_layer_view(s, &L.main);
    draw_detail(s, &L.detail);
    attron(A_REVERSE);
    mvhline(L.status.y, 0, ' ', cols);
    int hint = cols >= 100 ? 26 : 9;
    put(L.status.y, 0, cols - hint, " %s", s->status);
    put(L.status.y, cols - hint, hint, hint > 9 ? "  ? help  q quit  w save " : "  ? help ");
    attroff(A_REVERSE);
    if (s->dialog != TUI_DIALOG_NONE)
        draw_dialog(s, cols, rows);
    refresh();
}
