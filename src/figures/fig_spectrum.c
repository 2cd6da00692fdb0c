/* fig_spectrum: see fig_spectrum.h. */
#include "figures/fig_spectrum.h"

#include "figures/fig_cairo.h"
#include "util/diag.h"
#include "util/mem.h"

#include <math.h>
#include <stdlib.h>

static const char *const mats[3] = {"gate", "up", "down"};
static const double energy_frac[3] = {0.90, 0.95, 0.99};

int fig_energy_rank(const double *sv, int len, double frac)
{
    double tot = 0, cum = 0;
    for (int i = 0; i < len; i++)
        tot += sv[i] * sv[i];
    for (int i = 0; i < len; i++) {
        cum += sv[i] * sv[i];
        if (cum >= frac * tot)
            return i + 1;
    }
    return len;
}

/* One panel at (x, y), w × h. */
static void panel(cairo_t *cr, const fig_spectrum *s, int q, double x, double y, double w, double h)
{
    const double *sv = s->sv[q];
    int len = s->len[q];
    cairo_set_source_rgb(cr, 0, 0, 0);
    fig_font(cr, 12, true);
    fig_text(cr, x + w / 2, y - 8, 0.5, "%s (%d values)", mats[q], len);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, x, y, w, h);
    cairo_stroke(cr);
    if (!sv || len < 1)
        return;
    double top = sv[0] > 0 ? log10(sv[0]) : 0, bot = top;
    for (int i = 0; i < len; i++)
        if (sv[i] > 0)
            bot = fmin(bot, log10(sv[i]));
    bot = fmax(bot, top - 8); /* eight decades at most; the rest sits on the axis */
    if (bot >= top)
        bot = top - 1;
    double tot = 0;
    for (int i = 0; i < len; i++)
        tot += sv[i] * sv[i];
    /* singular values (log scale, left axis) */
    cairo_set_source_rgb(cr, 0.16, 0.35, 0.65);
    cairo_set_line_width(cr, 1.6);
    for (int i = 0; i < len; i++) {
        double v = sv[i] > 0 ? fmax(log10(sv[i]), bot) : bot;
        double px = x + (len > 1 ? (double)i / (len - 1) : 0.5) * w, py = y + h - (v - bot) / (top - bot) * h;
        i ? cairo_line_to(cr, px, py) : cairo_move_to(cr, px, py);
    }
    cairo_stroke(cr);
    /* cumulative energy (0..100%, right axis) */
    cairo_set_source_rgb(cr, 0.2, 0.6, 0.3);
    double cum = 0;
    for (int i = 0; i < len; i++) {
        cum += sv[i] * sv[i];
        double px = x + (len > 1 ? (double)i / (len - 1) : 0.5) * w, py = y + h - (tot > 0 ? cum / tot : 1) * h;
        i ? cairo_line_to(cr, px, py) : cairo_move_to(cr, px, py);
    }
    cairo_stroke(cr);
    /* energy ranks (dashed grey) and the chosen rank (red) */
    fig_font(cr, 9, false);
    double dash[1] = {3};
    for (int e = 0; e < 3; e++) {
        int r = fig_energy_rank(sv, len, energy_frac[e]);
        double px = x + (len > 1 ? (double)(r - 1) / (len - 1) : 0.5) * w;
        cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
        cairo_set_dash(cr, dash, 1, 0);
        cairo_move_to(cr, px, y + h), cairo_line_to(cr, px, y);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        fig_text(cr, px + 2, y + 12 + 11 * e, 0, "%d%%: %d", (int)(100 * energy_frac[e]), r);
    }
    if (s->rank[q] > 0) {
        int64_t r = s->rank[q] > len ? len : s->rank[q];
        double px = x + (len > 1 ? (double)(r - 1) / (len - 1) : 0.5) * w;
        cairo_set_source_rgb(cr, 0.85, 0.15, 0.1);
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, px, y + h), cairo_line_to(cr, px, y);
        cairo_stroke(cr);
        fig_font(cr, 10, true);
        fig_text(cr, px, y + h + 26, 0.5, "rank %lld", (long long)s->rank[q]);
    }
    /* axes */
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    fig_font(cr, 9, false);
    fig_text(cr, x - 3, y + 8, 1, "%.3g", pow(10, top));
    fig_text(cr, x - 3, y + h, 1, "%.3g", pow(10, bot));
    fig_text(cr, x + w + 3, y + 8, 0, "100%%");
    fig_text(cr, x + w + 3, y + h, 0, "0%%");
    fig_text(cr, x, y + h + 12, 0.5, "1");
    fig_text(cr, x + w, y + h + 12, 0.5, "%d", len);
}

static void draw(cairo_t *cr, const void *data, double W, double H)
{
    const fig_spectrum *s = data;
    cairo_set_source_rgb(cr, 0, 0, 0);
    fig_font(cr, 15, true);
    fig_text(cr, 20, 26, 0, "%s", s->title);
    double pw = (W - 60) / 3 - 60, ph = H - 150;
    for (int q = 0; q < 3; q++)
        panel(cr, s, q, 60 + q * (pw + 60), 70, pw, ph);
    fig_font(cr, 11, false);
    double ly = H - 34;
    cairo_set_source_rgb(cr, 0.16, 0.35, 0.65);
    fig_text(cr, 60, ly, 0, "singular value of W_cat (log, left axis)");
    cairo_set_source_rgb(cr, 0.2, 0.6, 0.3);
    fig_text(cr, 330, ly, 0, "cumulative energy (right axis)");
    cairo_set_source_rgb(cr, 0.85, 0.15, 0.1);
    fig_text(cr, 560, ly, 0, "plan's rank");
    cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
    fig_text(cr, 660, ly, 0, "ranks keeping 90 / 95 / 99%% energy");
}

static char *spec_csv(const fig_spectrum *s)
{
    fig_buf b = {0};
    fig_buf_printf(&b, "matrix,index,singular_value,cumulative_energy,chosen,e90,e95,e99\n");
    for (int q = 0; q < 3; q++) {
        if (!s->sv[q])
            continue;
        int er[3];
        double tot = 0, cum = 0;
        for (int e = 0; e < 3; e++)
            er[e] = fig_energy_rank(s->sv[q], s->len[q], energy_frac[e]);
        for (int i = 0; i < s->len[q]; i++)
            tot += s->sv[q][i] * s->sv[q][i];
        for (int i = 0; i < s->len[q]; i++) {
            cum += s->sv[q][i] * s->sv[q][i];
            int64_t r = s->rank[q] > s->len[q] ? s->len[q] : s->rank[q];
            fig_buf_printf(&b, "%s,%d,%.9g,%.9g,%d,%d,%d,%d\n", mats[q], i + 1, s->sv[q][i], tot > 0 ? cum / tot : 1.0,
                           r == i + 1, er[0] == i + 1, er[1] == i + 1, er[2] == i + 1);
        }
    }
    return b.p ? b.p : xcalloc(1, 1);
}

int fig_spectrum_write(const char *dir, const char *base, const fig_spectrum *s, fig_written *wr)
{
    char *csv = spec_csv(s);
    int rc = fig_render_write(dir, base, FIG_SPECTRUM_W, FIG_SPECTRUM_H, draw, s, csv, wr);
    free(csv);
    return rc;
}
