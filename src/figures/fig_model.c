/* fig_model: see fig_model.h. */
#include "figures/fig_model.h"

#include "figures/fig_cairo.h"
#include "util/diag.h"
#include "util/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Columns: x and width of each chart in a row. */
enum { ROW_H = 26, TOP = 84, KEPT_X = 70, KEPT_W = 90, SAVED_X = 290, SAVED_W = 100, FREQ_X = 460,
       FREQ_W = 250, ERR_X = 740, ERR_W = 110, BAR_H = 16 };

static int by_freq_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void bar(cairo_t *cr, double x, double y, double w, double frac, const double rgb[3])
{
    cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
    cairo_rectangle(cr, x, y, w, BAR_H);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(cr, x, y, w * fmin(1, fmax(0, frac)), BAR_H);
    cairo_fill(cr);
}

static void freq_bars(cairo_t *cr, const fig_model_layer *l, double y, double fmax_all)
{
    if (!l->freq || l->experts < 1)
        return;
    double *f = xmalloc(sizeof(double) * (size_t)l->experts);
    memcpy(f, l->freq, sizeof(double) * (size_t)l->experts);
    qsort(f, (size_t)l->experts, sizeof *f, by_freq_desc);
    double bw = (double)FREQ_W / l->experts;
    for (int i = 0; i < l->experts; i++) {
        double hh = fmax_all > 0 ? f[i] / fmax_all * (ROW_H - 6) : 0, rgb[3];
        fig_ramp(fmax_all > 0 ? f[i] / fmax_all : 0, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, FREQ_X + i * bw, y + ROW_H - 4 - hh, bw > 2 ? bw - 0.5 : bw, hh);
        cairo_fill(cr);
    }
    free(f);
}

static void header(cairo_t *cr, const fig_model *m)
{
    cairo_set_source_rgb(cr, 0, 0, 0);
    fig_font(cr, 15, true);
    fig_text(cr, 20, 26, 0, "%s", m->title);
    fig_font(cr, 11, true);
    fig_text(cr, 20, TOP - 12, 0, "layer");
    fig_text(cr, KEPT_X, TOP - 12, 0, "experts kept");
    fig_text(cr, SAVED_X, TOP - 12, 0, "parameters saved");
    fig_text(cr, FREQ_X, TOP - 12, 0, "routing frequency (sorted)");
    fig_text(cr, ERR_X, TOP - 12, 0, "held-out output error");
}

static void draw(cairo_t *cr, const void *data, double W, double H)
{
    const fig_model *m = data;
    (void)W, (void)H;
    double fmax_all = 0, emax = 0;
    for (int i = 0; i < m->n; i++) {
        const fig_model_layer *l = &m->layers[i];
        for (int e = 0; l->freq && e < l->experts; e++)
            fmax_all = fmax(fmax_all, l->freq[e]);
        emax = fmax(emax, l->error);
    }
    header(cr, m);
    static const double blue[3] = {0.16, 0.35, 0.65}, green[3] = {0.2, 0.6, 0.3}, red[3] = {0.8, 0.3, 0.2};
    for (int i = 0; i < m->n; i++) {
        const fig_model_layer *l = &m->layers[i];
        double y = TOP + i * ROW_H, by = y + (ROW_H - BAR_H) / 2.0;
        cairo_set_source_rgb(cr, 0, 0, 0);
        fig_font(cr, 11, false);
        fig_text(cr, 20, by + 12, 0, "%d", l->layer);
        if (l->kept >= 0) {
            bar(cr, KEPT_X, by, KEPT_W, l->experts ? (double)l->kept / l->experts : 0, blue);
            cairo_set_source_rgb(cr, 0, 0, 0);
            fig_text(cr, KEPT_X + KEPT_W + 6, by + 12, 0, "%d/%d%s%s", l->kept, l->experts, l->method ? " " : "",
                     l->method ? l->method : "");
        } else
            fig_text(cr, KEPT_X, by + 12, 0, "%d experts (no plan)", l->experts);
        if (l->params_after >= 0 && l->params_before > 0) {
            double saved = (double)(l->params_before - l->params_after) / (double)l->params_before;
            bar(cr, SAVED_X, by, SAVED_W, saved, green);
            cairo_set_source_rgb(cr, 0, 0, 0);
            fig_text(cr, SAVED_X + SAVED_W + 6, by + 12, 0, "%.1f%%", 100 * saved);
        }
        freq_bars(cr, l, y, fmax_all);
        if (l->error >= 0) {
            bar(cr, ERR_X, by, ERR_W, emax > 0 ? l->error / emax : 0, red);
            cairo_set_source_rgb(cr, 0, 0, 0);
            fig_text(cr, ERR_X + ERR_W + 6, by + 12, 0, "%.4f", l->error);
        }
    }
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    fig_font(cr, 10, false);
    fig_text(cr, 20, TOP + m->n * ROW_H + 20, 0,
             "frequency bars share one scale (largest %.3f); error bars scale to the largest error (%.4f)", fmax_all,
             emax);
}

static void csvs(const fig_model *m, fig_buf *main, fig_buf *freq)
{
    fig_buf_printf(main, "layer,experts,kept,method,params_before,params_after,params_saved,output_error\n");
    fig_buf_printf(freq, "layer,expert,frequency,position\n");
    for (int i = 0; i < m->n; i++) {
        const fig_model_layer *l = &m->layers[i];
        fig_buf_printf(main, "%d,%d,", l->layer, l->experts);
        if (l->kept >= 0)
            fig_buf_printf(main, "%d", l->kept);
        fig_buf_printf(main, ",%s,%lld,", l->method ? l->method : "", (long long)l->params_before);
        if (l->params_after >= 0)
            fig_buf_printf(main, "%lld,%lld", (long long)l->params_after,
                           (long long)(l->params_before - l->params_after));
        else
            fig_buf_printf(main, ",");
        fig_buf_printf(main, ",");
        if (l->error >= 0)
            fig_buf_printf(main, "%.9g", l->error);
        fig_buf_printf(main, "\n");
        for (int e = 0; l->freq && e < l->experts; e++) {
            int pos = 0; /* the sorted bar's place: larger ones first, ties by expert index */
            for (int o = 0; o < l->experts; o++)
                pos += l->freq[o] > l->freq[e] || (l->freq[o] == l->freq[e] && o < e);
            fig_buf_printf(freq, "%d,%d,%.9g,%d\n", l->layer, e, l->freq[e], pos);
        }
    }
}

int fig_model_write(const char *dir, const char *base, const fig_model *m, fig_written *wr)
{
    if (m->n < 1)
        return sm_err("%s/%s: the model has no MoE layer to chart", dir, base);
    fig_buf main = {0}, freq = {0};
    csvs(m, &main, &freq);
    int rc = fig_render_write(dir, base, FIG_MODEL_W, FIG_MODEL_H(m->n), draw, m, main.p, wr);
    if (!rc) {
        char *name = xasprintf("%s-frequency.csv", base);
        rc = fig_write_csv(dir, name, freq.p, wr);
        free(name);
    }
    fig_buf_free(&main);
    fig_buf_free(&freq);
    return rc;
}
