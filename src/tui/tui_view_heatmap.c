/* tui_view_heatmap: view 2, the selected layer's expert similarity (output, weight or router
 * logit), rows and columns in cluster order with group boundaries, a cursor cell and a legend.
 * Geometry (cell width, scrolling, labels) comes from tui_heat_geometry. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <math.h>
#include <stdio.h>
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
 * every line and marked [ ] on its middle one. */
static void cell(int y, int x, int cw, int shade_color, int shade_mono, bool cursor, bool marks, bool underline)
{
    attr_t a = (cursor ? A_REVERSE | A_BOLD : 0) | (underline ? A_UNDERLINE : 0);
    bool mark = cursor && marks;
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
        buf[cw] = 0;
        tc_on(TC_PAIR_RAMP + shade_color, a);
        mvaddstr(y, x, buf);
        tc_off(TC_PAIR_RAMP + shade_color, a);
    } else {
        attron(a);
        for (int q = 0; q < cw; q++) {
            const char *c = tc_mono_shade(shade_mono);
            if (mark && cw >= 2 && (q == 0 || q == cw - 1))
                c = q == 0 ? "[" : "]";
            else if (mark && cw == 1)
                c = "+";
            mvaddstr(y, x + q, c);
        }
        attroff(a);
    }
}

void tui_view_heatmap_draw(const tui_state *s, const tui_rect *r)
{
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer *p = &s->res[s->layer];
    char title[128];
    snprintf(title, sizeof title, "layer %d: %s similarity (s) %s %d groups", s->layer, kinds[s->sim_kind],
             tc_g("\u00b7", "-"), p->k);
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
    int order[TUI_MAX_EXPERTS], n = tui_cluster_order(p, order);
    const double *S = d->sim[s->sim_kind];
    double lo, hi;
    range(S, d->n, &lo, &hi);
    int x0 = r->x + 1, y0 = r->y + 1;
    tui_heat_geom g = tui_heat_geometry(p, s->ci, s->cj, r->w - 1, r->h - 2);
    if (g.cw < 1 || g.nrows < 1)
        return;
    int cx = x0 + g.label_w; /* first cell column */
    /* x of every visible column, walking boundaries as tui_heat_geometry does */
    int colx[TUI_MAX_EXPERTS + 1];
    bool sep_before[TUI_MAX_EXPERTS + 1];
    for (int b = g.col0, x = cx; b < g.col0 + g.ncols; b++) {
        sep_before[b] = b > g.col0 && p->assign[order[b]] != p->assign[order[b - 1]];
        x += sep_before[b];
        colx[b] = x;
        x += g.cw;
    }
    int dg = g.label_w - 1;
    /* column labels */
    for (int t = 0; t < g.label_rows; t++)
        for (int b = g.col0; b < g.col0 + g.ncols; b++) {
            bool cur = b == s->cj;
            tc_on(cur ? TC_PAIR_WARN : TC_PAIR_DIM, cur ? A_BOLD : 0);
            if (g.label_rows == 1) {
                tc_put(y0, colx[b], g.cw, "%*d", g.cw, order[b]);
            } else {
                char num[16];
                snprintf(num, sizeof num, "%*d", dg, order[b]);
                tc_put(y0 + t, colx[b] + g.cw - 1, 1, "%c", num[t + (int)strlen(num) - g.label_rows]);
            }
            tc_off(cur ? TC_PAIR_WARN : TC_PAIR_DIM, cur ? A_BOLD : 0);
        }
    int y = y0 + g.label_rows, ymax = r->y + r->h - 1;
    int right = colx[g.col0 + g.ncols - 1] + g.cw;
    for (int a = g.row0; a < g.row0 + g.nrows && y < ymax; a++, y++) {
        bool cur = a == s->ci;
        bool group_end = a + 1 < n && p->assign[order[a]] != p->assign[order[a + 1]];
        int mid = (g.ch - 1) / 2; /* the label and the cursor's marks go on the middle line */
        for (int t = 0; t < g.ch && y < ymax; t++, y++) {
            if (t == mid) {
                tc_on(cur ? TC_PAIR_WARN : TC_PAIR_DIM, cur ? A_BOLD : 0);
                tc_put(y, x0, g.label_w, "%*d", dg, order[a]);
                tc_off(cur ? TC_PAIR_WARN : TC_PAIR_DIM, cur ? A_BOLD : 0);
            }
            for (int b = g.col0; b < g.col0 + g.ncols; b++) {
                if (sep_before[b])
                    mvaddstr(y, colx[b] - 1, tc_g("\u2502", "|"));
                double v = S[order[a] * d->n + order[b]];
                bool here = a == s->ci && b == s->cj;
                cell(y, colx[b], g.cw, tui_shade(v, lo, hi, TC_RAMP), tui_shade(v, lo, hi, TC_MONO_RAMP), here,
                     t == mid, group_end && !g.sep_rows && t == g.ch - 1);
            }
        }
        y--;
        if (g.sep_rows && group_end && y + 1 < ymax) { /* a boundary row */
            y++;
            for (int x = cx; x < right; x++)
                mvaddstr(y, x, tc_g("\u2500", "-"));
            for (int b = g.col0; b < g.col0 + g.ncols; b++)
                if (sep_before[b])
                    mvaddstr(y, colx[b] - 1, tc_g("\u253c", "+"));
        }
    }
    /* legend, under the matrix: the ramp with its values, what the lines mean, the scroll */
    int ly = y + 1 < ymax ? y + 1 : ymax;
    int lx = x0, step = tc_color && r->w >= 64 ? 2 : 1;
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
    if (g.scrolled)
        tc_put(ly, lx, r->x + r->w - lx, "  rows %d-%d, cols %d-%d/%d", g.row0 + 1, g.row0 + g.nrows, g.col0 + 1,
               g.col0 + g.ncols, n);
    else
        tc_put(ly, lx, r->x + r->w - lx, "  %s groups", tc_g("\u2502", "|"));
    tc_off(TC_PAIR_DIM, 0);
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
    tc_put(y, x, w, "S(e%d, e%d) = %s %s %s e%d routes %.1f%%, group %d %s e%d %.1f%%, group %d", i, j, v,
           kinds[s->sim_kind], tc_g("\u00b7", "-"), i, 100 * d->freq[i], p->assign[i], tc_g("\u00b7", "-"), j,
           100 * d->freq[j], p->assign[j]);
}
