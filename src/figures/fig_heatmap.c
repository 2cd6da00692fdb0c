/* fig_heatmap: see fig_heatmap.h. */
#include "figures/fig_heatmap.h"

#include "figures/fig_cairo.h"
#include "util/diag.h"
#include "util/mem.h"

#include <math.h>
#include <stdlib.h>

typedef struct heat_ctx {
    const fig_heatmap *h;
    int *order;           /* position -> expert */
    double lo, hi;
} heat_ctx;

/* The plot: left/top margins and the side of the square. */
enum { HX = 70, HY = 56, HSIDE = 540 };

static int group_of(const fig_heatmap *h, int e)
{
    return h->group ? h->group[e] : 0;
}

static void order_experts(const fig_heatmap *h, int *order)
{
    int n = 0, gmax = 0;
    for (int e = 0; e < h->n; e++)
        gmax = group_of(h, e) > gmax ? group_of(h, e) : gmax;
    for (int g = 0; g <= gmax; g++) /* stable: index order within a group */
        for (int e = 0; e < h->n; e++)
            if (group_of(h, e) == g)
                order[n++] = e;
    for (int e = 0; e < h->n && n < h->n; e++) /* labels outside 0..gmax (−1: dropped) last */
        if (group_of(h, e) < 0)
            order[n++] = e;
}

/* A label step that keeps labels at least `px` apart: 1, 2, 5, 10, 20, 50, ... */
static int label_step(double cell, double px)
{
    for (int m = 1;; m *= 10)
        for (int k = 0; k < 3; k++) {
            int s = m * (k == 0 ? 1 : k == 1 ? 2 : 5);
            if (s * cell >= px)
                return s;
        }
}

static void draw_cells(cairo_t *cr, const heat_ctx *c, double cell)
{
    const fig_heatmap *h = c->h;
    cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE); /* neighbouring cells meet without seams */
    for (int i = 0; i < h->n; i++)
        for (int j = 0; j < h->n; j++) {
            double v = h->sim[(size_t)c->order[i] * (size_t)h->n + (size_t)c->order[j]], rgb[3];
            fig_ramp(c->hi > c->lo ? (v - c->lo) / (c->hi - c->lo) : 1, rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_rectangle(cr, HX + j * cell, HY + i * cell, cell + 0.5, cell + 0.5);
            cairo_fill(cr);
        }
    cairo_set_antialias(cr, CAIRO_ANTIALIAS_DEFAULT);
    if (cell >= 34) { /* values inside the cells when they are readable */
        fig_font(cr, fmin(11, cell / 3.6), false);
        for (int i = 0; i < h->n; i++)
            for (int j = 0; j < h->n; j++) {
                double v = h->sim[(size_t)c->order[i] * (size_t)h->n + (size_t)c->order[j]];
                double t = c->hi > c->lo ? (v - c->lo) / (c->hi - c->lo) : 1;
                cairo_set_source_rgb(cr, t > 0.6 ? 0 : 1, t > 0.6 ? 0 : 1, t > 0.6 ? 0 : 1);
                fig_text(cr, HX + (j + 0.5) * cell, HY + (i + 0.5) * cell + 4, 0.5, "%.2f", v);
            }
    }
    /* group boundaries */
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_set_line_width(cr, cell >= 6 ? 2 : 1);
    for (int i = 1; h->group && i < h->n; i++)
        if (group_of(h, c->order[i]) != group_of(h, c->order[i - 1])) {
            cairo_move_to(cr, HX + i * cell, HY);
            cairo_line_to(cr, HX + i * cell, HY + HSIDE);
            cairo_move_to(cr, HX, HY + i * cell);
            cairo_line_to(cr, HX + HSIDE, HY + i * cell);
        }
    cairo_stroke(cr);
}

static void draw_labels(cairo_t *cr, const heat_ctx *c, double cell)
{
    const fig_heatmap *h = c->h;
    fig_font(cr, cell >= 14 ? 10 : 8, false);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    int step = label_step(cell, 14);
    for (int i = 0; i < h->n; i += step) {
        fig_text(cr, HX - 4, HY + (i + 0.5) * cell + 3, 1, "%d", c->order[i]);
        fig_text(cr, HX + (i + 0.5) * cell, HY - 5, 0.5, "%d", c->order[i]);
    }
    fig_font(cr, 11, false);
    fig_text_vertical(cr, 18, HY + HSIDE / 2.0, h->group ? "expert (grouped as the plan merges them)" : "expert");
    fig_text(cr, HX + HSIDE / 2.0, HY + HSIDE + 22, 0.5, "expert");
}

static void draw_colorbar(cairo_t *cr, const heat_ctx *c)
{
    const double x = HX + HSIDE + 24, w = 18;
    for (int k = 0; k < HSIDE; k++) {
        double rgb[3];
        fig_ramp(1 - (double)k / (HSIDE - 1), rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, x, HY + k, w, 1.5);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    fig_font(cr, 10, false);
    for (int t = 0; t <= 4; t++) {
        double v = c->hi - (c->hi - c->lo) * t / 4;
        fig_text(cr, x + w + 4, HY + HSIDE * t / 4.0 + 4, 0, "%.3g", v);
    }
}

static void draw(cairo_t *cr, const void *data, double W, double H)
{
    const heat_ctx *c = data;
    (void)W, (void)H;
    double cell = (double)HSIDE / c->h->n;
    cairo_set_source_rgb(cr, 0, 0, 0);
    fig_font(cr, 15, true);
    fig_text(cr, HX, 24, 0, "%s", c->h->title);
    draw_cells(cr, c, cell);
    draw_labels(cr, c, cell);
    draw_colorbar(cr, c);
}

static char *heat_csv(const heat_ctx *c)
{
    const fig_heatmap *h = c->h;
    fig_buf b = {0};
    fig_buf_printf(&b, "row_expert,col_expert,row_group,col_group,similarity\n");
    for (int i = 0; i < h->n; i++)
        for (int j = 0; j < h->n; j++) {
            int ei = c->order[i], ej = c->order[j];
            fig_buf_printf(&b, "%d,%d,%d,%d,%.9g\n", ei, ej, group_of(h, ei), group_of(h, ej),
                           h->sim[(size_t)ei * (size_t)h->n + (size_t)ej]);
        }
    return b.p;
}

int fig_heatmap_write(const char *dir, const char *base, const fig_heatmap *h, fig_written *wr)
{
    if (h->n < 1 || !h->sim)
        return sm_err("%s/%s: no similarities to draw", dir, base);
    heat_ctx c = {h, xmalloc(sizeof(int) * (size_t)h->n), INFINITY, -INFINITY};
    order_experts(h, c.order);
    for (size_t i = 0; i < (size_t)h->n * (size_t)h->n; i++)
        if (isfinite(h->sim[i]))
            c.lo = fmin(c.lo, h->sim[i]), c.hi = fmax(c.hi, h->sim[i]);
    if (!(c.lo <= c.hi))
        c.lo = 0, c.hi = 1;
    char *csv = heat_csv(&c);
    int rc = fig_render_write(dir, base, FIG_HEATMAP_W, FIG_HEATMAP_H, draw, &c, csv, wr);
    free(csv);
    free(c.order);
    return rc;
}
