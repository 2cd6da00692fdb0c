/* tui_view_heatmap: view 2, the selected layer's expert similarity (output, weight or router
 * logit), rows and columns in cluster order with group boundaries, a cursor cell and a legend;
 * values inside cells wide enough for them, column numbers horizontal where they fit, and the
 * overview (z) of one character per expert or group. Geometry (cell width, scrolling, units)
 * comes from tui_heat_view_geometry. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[3] = {"output", "weight", "router-logit"};

/* Off-diagonal range of S (the diagonal is 1 by definition and would flatten the ramp). */
static void range(const double *S, int n, double *lo, double *hi)
{
    *lo = 1, *hi = -1;
    for (int i = 0; i < n * n; i++)
        if (i / n != i % n) {
            *lo = fmin(*lo, S[i]);
            *hi = fmax(*hi, S[i]);
        }
    if (*hi < *lo)
        *lo = *hi = 1;
}

/* One line of a cell: the colour (or shading) of its value; the cursor cell is reversed on
 * every line and marked [ ] on its middle one; `text` (the value, or NULL) is centred in it. */
static void cell(int y, int x, int cw, int shade_color, int shade_mono, bool cursor, bool marks, bool underline,
                 const char *text)
{
    attr_t a = (cursor ? A_REVERSE | A_BOLD : 0) | (underline ? A_UNDERLINE : 0);
    int tl = text ? (int)strlen(text) : 0, t0 = (cw - tl) / 2;
    bool mark = cursor && marks && (!text || tl + 2 <= cw); /* the value wins over the marks */
    if (tc_color) {
        char buf[16];
        for (int q = 0; q < cw; q++)
            buf[q] = ' ';
        if (mark) {
            if (cw == 1)
                buf[0] = '+';
            else
                buf[0] = '[', buf[cw - 1] = ']';
        }
        if (text)
            memcpy(buf + t0, text, (size_t)tl);
        buf[cw] = 0;
        tc_on(TC_PAIR_RAMP + shade_color, a);
        mvaddstr(y, x, buf);
        tc_off(TC_PAIR_RAMP + shade_color, a);
    } else {
        attron(a);
        for (int q = 0; q < cw; q++) {
            const char *c = tc_mono_shade(shade_mono);
            char one[2] = {0, 0};
            if (mark && cw >= 2 && (q == 0 || q == cw - 1))
                c = q == 0 ? "[" : "]";
            else if (mark && cw == 1)
                c = "+";
            if (text && q >= t0 && q < t0 + tl)
                one[0] = text[q - t0], c = one;
            mvaddstr(y, x + q, c);
        }
        attroff(a);
    }
}

/* A value as it fits in a cell of cw columns with a column to spare, so neighbours do not run
 * together ("0.87", "-.12"), or NULL when it does not. */
static const char *cell_text(double v, int cw, char *buf, size_t n)
{
    if (cw < 5)
        return NULL;
    snprintf(buf, n, "%.2f", v);
    if ((int)strlen(buf) > cw - 1) { /* "-0.12" in five columns: "-.12" */
        char *z = strstr(buf, "0.");
        if (z)
            memmove(z, z + 1, strlen(z));
    }
    return (int)strlen(buf) <= cw - 1 ? buf : NULL;
}

/* What the grid's rows and columns show: experts (S itself) or groups (the mean similarity of
 * their members' pairs, the diagonal's pairs of distinct members; 1 for a group of one). */
typedef struct {
    const tui_layer *p, *u; /* the layer, the units the grid walks (tui_heat_view_geometry) */
    int order[TUI_MAX_EXPERTS], uorder[TUI_MAX_EXPERTS];
    const double *S;
    int n;
    double *gmean; /* k × k, groups only */
} heat_units;

static void units_init(heat_units *h, const tui_layer *p, const tui_layer *u, const double *S, int n, bool by_group)
{
    h->p = p, h->u = u, h->S = S, h->n = n, h->gmean = NULL;
    tui_cluster_order(p, h->order);
    tui_cluster_order(u, h->uorder);
    if (!by_group)
        return;
    int k = p->k;
    h->gmean = calloc((size_t)k * (size_t)k * 2, sizeof(double));
    if (!h->gmean)
        return;
    double *cnt = h->gmean + (size_t)k * k;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j) {
                h->gmean[p->assign[i] * k + p->assign[j]] += S[i * n + j];
                cnt[p->assign[i] * k + p->assign[j]]++;
            }
    for (int q = 0; q < k * k; q++)
        h->gmean[q] = cnt[q] > 0 ? h->gmean[q] / cnt[q] : 1.0;
}

/* Similarity at grid row a, column b. */
static double unit_value(const heat_units *h, int a, int b)
{
    if (h->gmean)
        return h->gmean[a * h->p->k + b];
    return h->S[h->order[a] * h->n + h->order[b]];
}

/* A row's or column's label: the expert's number, or the group's. */
static int unit_label(const heat_units *h, int b)
{
    return h->gmean ? b : h->order[b];
}

/* Column labels, horizontal: the cursor's column first, then every step-th column, the step the
 * smallest at which each number fits before the next (a number starts at its column): a regular
 * step, so that an unlabelled column never reads as a missing expert. */
static void column_labels(const heat_units *h, const tui_heat_geom *g, const int *colx, int y, int ucj, int right)
{
    char num[16];
    int taken_l = -1, taken_r = -1; /* the cursor's label */
    if (ucj >= g->col0 && ucj < g->col0 + g->ncols) {
        int len = snprintf(num, sizeof num, "%d", unit_label(h, ucj));
        int x = colx[ucj] + len > right ? right - len : colx[ucj];
        tc_on(TC_PAIR_WARN, A_BOLD);
        tc_put(y, x, len, "%s", num);
        tc_off(TC_PAIR_WARN, A_BOLD);
        taken_l = x - 1, taken_r = x + len;
    }
    int end = g->col0 + g->ncols, step = 1;
    for (; step < g->ncols; step++) {
        bool fits = true;
        for (int b = g->col0; fits && b + step < end; b++)
            if (b % step == 0)
                fits = colx[b + step] - colx[b] >= snprintf(num, sizeof num, "%d", unit_label(h, b)) + 1;
        if (fits)
            break;
    }
    tc_on(TC_PAIR_DIM, 0);
    for (int b = g->col0; b < end; b++) {
        int len = snprintf(num, sizeof num, "%d", unit_label(h, b));
        int x = colx[b];
        if (b % step || b == ucj || x + len > right || (x + len >= taken_l && x <= taken_r))
            continue;
        tc_put(y, x, len, "%s", num);
    }
    tc_off(TC_PAIR_DIM, 0);
}

/* The matrix cells from row y0 + label_rows down; returns the row after the last drawn. */
static int draw_cells(const heat_units *h, const tui_heat_geom *g, const int *colx, const bool *sep_before, int x0,
                      int y, int ymax, int uci, int ucj, double lo, double hi)
{
    const tui_layer *u = h->u;
    int cx = x0 + g->label_w, right = colx[g->col0 + g->ncols - 1] + g->cw, dg = g->label_w - 1;
    for (int a = g->row0; a < g->row0 + g->nrows && y < ymax; a++, y++) {
        bool cur = a == uci;
        bool group_end = a + 1 < u->n && u->assign[h->uorder[a]] != u->assign[h->uorder[a + 1]];
        int mid = (g->ch - 1) / 2; /* the label, the value and the cursor's marks go on the middle line */
        for (int t = 0; t < g->ch && y < ymax; t++, y++) {
            if (t == mid) {
                tc_on(cur ? TC_PAIR_WARN : TC_PAIR_DIM, cur ? A_BOLD : 0);
                tc_put(y, x0, g->label_w, "%*d", dg, unit_label(h, a));
                tc_off(cur ? TC_PAIR_WARN : TC_PAIR_DIM, cur ? A_BOLD : 0);
            }
            for (int b = g->col0; b < g->col0 + g->ncols; b++) {
                if (sep_before[b])
                    mvaddstr(y, colx[b] - 1, tc_g("\u2502", "|"));
                double v = unit_value(h, a, b);
                char vb[16];
                const char *text = t == mid ? cell_text(v, g->cw, vb, sizeof vb) : NULL;
                cell(y, colx[b], g->cw, tui_shade(v, lo, hi, TC_RAMP), tui_shade(v, lo, hi, TC_MONO_RAMP),
                     a == uci && b == ucj, t == mid, group_end && !g->sep_rows && t == g->ch - 1, text);
            }
        }
        y--;
        if (g->sep_rows && group_end && y + 1 < ymax) { /* a boundary row */
            y++;
            for (int x = cx; x < right; x++)
                mvaddstr(y, x, tc_g("\u2500", "-"));
            for (int b = g->col0; b < g->col0 + g->ncols; b++)
                if (sep_before[b])
                    mvaddstr(y, colx[b] - 1, tc_g("\u253c", "+"));
        }
    }
    return y;
}

/* The legend under the matrix: the ramp with its values, what the lines mean, the scroll. */
static void legend(const tui_rect *r, const tui_heat_geom *g, int ly, double lo, double hi, int units)
{
    int lx = r->x + 1, step = tc_color && r->w >= 64 ? 2 : 1;
    lx += tc_put(ly, lx, r->x + r->w - lx, "%.2f ", lo);
    for (int i = 0; i < TC_RAMP && lx + step < r->x + r->w; i++, lx += step) {
        if (tc_color) {
            tc_on(TC_PAIR_RAMP + i, 0);
            mvaddstr(ly, lx, step == 2 ? "  " : " ");
            tc_off(TC_PAIR_RAMP + i, 0);
        } else {
            mvaddstr(ly, lx, tc_mono_shade(i * TC_MONO_RAMP / TC_RAMP));
        }
    }
    lx += tc_put(ly, lx, r->x + r->w - lx, " %.2f", hi);
    tc_on(TC_PAIR_DIM, 0);
    const char *what = g->by_group ? "groups" : "experts";
    char sc[96];
    int room = r->x + r->w - lx;
    snprintf(sc, sizeof sc, "  %srows %d-%d, cols %d-%d/%d", g->by_group ? "group " : "", g->row0 + 1,
             g->row0 + g->nrows, g->col0 + 1, g->col0 + g->ncols, units);
    if (tui_strwidth(sc) > room) /* narrow: the numbers only */
        snprintf(sc, sizeof sc, " %d-%d,%d-%d/%d%s", g->row0 + 1, g->row0 + g->nrows, g->col0 + 1,
                 g->col0 + g->ncols, units, g->by_group ? "g" : "");
    if (g->scrolled)
        tc_put(ly, lx, room, "%s", sc);
    else if (g->overview)
        tc_put(ly, lx, r->x + r->w - lx, "  all %d %s", units, what);
    else
        tc_put(ly, lx, r->x + r->w - lx, "  %s groups", tc_g("\u2502", "|"));
    tc_off(TC_PAIR_DIM, 0);
}

void tui_view_heatmap_draw(const tui_state *s, const tui_rect *r)
{
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer *p = &s->res[s->layer];
    /* the title in its longest form that fits: the groups, then the layer give way */
    char title[160];
    snprintf(title, sizeof title, "layer %d: %s similarity (s) %s %d groups", s->layer, kinds[s->sim_kind],
             tc_g("\u00b7", "-"), p->k);
    if (tui_strwidth(title) > r->w - 4)
        snprintf(title, sizeof title, "layer %d: %s similarity (s)", s->layer, kinds[s->sim_kind]);
    if (tui_strwidth(title) > r->w - 4)
        snprintf(title, sizeof title, "%s similarity (s)", kinds[s->sim_kind]);
    tc_title(r, title, true);
    if (!s->is_moe[s->layer]) {
        tc_put(r->y + 2, r->x + 2, r->w - 4, "a dense layer: no experts");
        return;
    }
    if (!d->have_stats) {
        tc_put(r->y + 2, r->x + 2, r->w - 4, "statistics not computed yet (calibrating)");
        return;
    }
    if (d->n != p->n) { /* never: the statistics are of the layer's experts; S is d->n × d->n */
        tc_put(r->y + 2, r->x + 2, r->w - 4, "statistics of %d experts for a layer of %d", d->n, p->n);
        return;
    }
    if (!d->sim[s->sim_kind]) {
        tc_put(r->y + 2, r->x + 2, r->w - 4, "%s similarity is not available for this layer (s switches)",
               kinds[s->sim_kind]);
        return;
    }
    const double *S = d->sim[s->sim_kind];
    double lo, hi;
    range(S, d->n, &lo, &hi);
    int x0 = r->x + 1, y0 = r->y + 1, uci, ucj;
    static tui_layer u; /* drawing runs on one thread; large */
    tui_heat_geom g = tui_heat_view_geometry(s, r->w - 1, r->h - 2, &u, &uci, &ucj);
    if (g.cw < 1 || g.nrows < 1)
        return;
    static heat_units h;
    units_init(&h, p, &u, S, d->n, g.by_group);
    /* x of every visible column, walking boundaries as tui_heat_geometry does */
    int colx[TUI_MAX_EXPERTS + 1];
    bool sep_before[TUI_MAX_EXPERTS + 1];
    for (int b = g.col0, x = x0 + g.label_w; b < g.col0 + g.ncols; b++) {
        sep_before[b] = b > g.col0 && u.assign[h.uorder[b]] != u.assign[h.uorder[b - 1]];
        x += sep_before[b];
        colx[b] = x;
        x += g.cw;
    }
    int right = r->x + r->w - 1;
    if (g.label_rows)
        column_labels(&h, &g, colx, y0, ucj, right);
    int ymax = r->y + r->h - 1;
    int y = draw_cells(&h, &g, colx, sep_before, x0, y0 + g.label_rows, ymax, uci, ucj, lo, hi);
    legend(r, &g, y + 1 < ymax ? y + 1 : ymax, lo, hi, u.n);
    free(h.gmean);
}

void tui_view_heatmap_detail(const tui_state *s, int y, int x, int w)
{
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer *p = &s->res[s->layer];
    int order[TUI_MAX_EXPERTS], n = tui_cluster_order(p, order);
    if (!d->have_stats || d->n != p->n || s->ci >= n || s->cj >= n) {
        tc_put(y, x, w, "statistics not computed yet");
        return;
    }
    int i = order[s->ci], j = order[s->cj];
    const double *S = d->sim[s->sim_kind];
    char v[32] = "n/a";
    if (S)
        snprintf(v, sizeof v, "%.3f", S[i * d->n + j]);
    char line[256];
    if (i == j) { /* the diagonal: one expert, said once */
        snprintf(line, sizeof line, "S(e%d, e%d) = %s %s %s e%d routes %.1f%%, group %d", i, j, v, kinds[s->sim_kind],
                 tc_g("\u00b7", "-"), i, 100 * d->freq[i], p->assign[i]);
        if (tui_strwidth(line) > w)
            snprintf(line, sizeof line, "S(e%d,e%d)=%s %s %s e%d %.1f%% group %d", i, j, v, kinds[s->sim_kind],
                     tc_g("\u00b7", "-"), i, 100 * d->freq[i], p->assign[i]);
        tc_put(y, x, w, "%s", line);
        return;
    }
    snprintf(line, sizeof line, "S(e%d, e%d) = %s %s %s e%d routes %.1f%%, group %d %s e%d %.1f%%, group %d", i, j, v,
             kinds[s->sim_kind], tc_g("\u00b7", "-"), i, 100 * d->freq[i], p->assign[i], tc_g("\u00b7", "-"), j,
             100 * d->freq[j], p->assign[j]);
    if (tui_strwidth(line) > w) /* narrow: the same facts, shorter */
        snprintf(line, sizeof line, "S(e%d,e%d)=%s %s %s e%d %.1f%% group %d %s e%d %.1f%% group %d", i, j, v,
                 kinds[s->sim_kind], tc_g("\u00b7", "-"), i, 100 * d->freq[i], p->assign[i], tc_g("\u00b7", "-"),
                 j, 100 * d->freq[j], p->assign[j]);
    tc_put(y, x, w, "%s", line);
}
