/* fig_render: surfaces, files and the shared look of every figure (see fig_render.h). */
#include "figures/fig_render.h"

#include "figures/fig_cairo.h"

#include "util/diag.h"
#include "util/mem.h"
#include "util/publish.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

void fig_buf_printf(fig_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0)
        return;
    if (b->n + (size_t)need + 1 > b->cap) {
        b->cap = (b->n + (size_t)need + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

void fig_buf_free(fig_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static cairo_status_t to_buf(void *closure, const unsigned char *data, unsigned int len)
{
    fig_buf *b = closure;
    if (b->n + len + 1 > b->cap) {
        b->cap = (b->n + len + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    return CAIRO_STATUS_SUCCESS;
}

static void paint(cairo_surface_t *sf, fig_draw_fn draw, const void *data, int w, int h)
{
    cairo_t *cr = cairo_create(sf);
    cairo_set_source_rgb(cr, 1, 1, 1); /* figures sit on white, in print and on screen */
    cairo_paint(cr);
    draw(cr, data, w, h);
    cairo_destroy(cr);
}

/* One format into buf: 0, or -1 when cairo failed. */
static int render(int fmt, fig_buf *buf, fig_draw_fn draw, const void *data, int w, int h)
{
    cairo_surface_t *sf;
    if (fmt == 0) {
        sf = cairo_svg_surface_create_for_stream(to_buf, buf, w, h);
        cairo_svg_surface_restrict_to_version(sf, CAIRO_SVG_VERSION_1_1);
    } else if (fmt == 1) {
        sf = cairo_pdf_surface_create_for_stream(to_buf, buf, w, h);
        /* a fixed date: the same figure is the same bytes */
        cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_CREATE_DATE, "2000-01-01T00:00:00Z");
        cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_CREATOR, "submoe figures");
    } else {
        sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    }
    if (cairo_surface_status(sf) == CAIRO_STATUS_SUCCESS)
        paint(sf, draw, data, w, h);
    cairo_surface_flush(sf);
    if (fmt == 2 && cairo_surface_status(sf) == CAIRO_STATUS_SUCCESS)
        cairo_surface_write_to_png_stream(sf, to_buf, buf);
    cairo_surface_finish(sf);
    cairo_status_t st = cairo_surface_status(sf);
    cairo_surface_destroy(sf);
    if (st != CAIRO_STATUS_SUCCESS)
        return sm_err("cairo: %s", cairo_status_to_string(st));
    return 0;
}

static void add_name(fig_written *wr, const char *name)
{
    if (!wr)
        return;
    size_t n = strlen(wr->names);
    snprintf(wr->names + n, sizeof wr->names - n, "%s%s", n ? " " : "", name);
    wr->n_files++;
}

static int write_one(const char *dir, const char *name, const void *p, size_t n, fig_written *wr)
{
    char *path = xasprintf("%s/%s", dir, name);
    int rc = sm_write_file_atomic(path, p, n); /* its message names the file */
    free(path);
    if (!rc)
        add_name(wr, name);
    return rc;
}

int fig_write_csv(const char *dir, const char *name, const char *csv, fig_written *wr)
{
    return write_one(dir, name, csv, strlen(csv), wr);
}

int fig_render_write(const char *dir, const char *base, int w, int h, fig_draw_fn draw, const void *data,
                     const char *csv, fig_written *wr)
{
    static const char *const ext[3] = {"svg", "pdf", "png"};
    if (fig_cairo_load())
        return sm_err_prefix("%s/%s", dir, base);
    int rc = 0;
    for (int f = 0; f < 3 && !rc; f++) {
        fig_buf buf = {0};
        char *name = xasprintf("%s.%s", base, ext[f]);
        rc = render(f, &buf, draw, data, w, h);
        if (rc)
            sm_err_prefix("%s/%s", dir, name);
        else
            rc = write_one(dir, name, buf.p, buf.n, wr);
        free(name);
        fig_buf_free(&buf);
    }
    if (!rc && csv) {
        char *name = xasprintf("%s.csv", base);
        rc = fig_write_csv(dir, name, csv, wr);
        free(name);
    }
    return rc;
}

void fig_render_cleanup(void)
{
    fig_cairo_release();
}

/* viridis at nine stops (matplotlib's table, every 32nd entry), linearly interpolated */
void fig_ramp(double v, double rgb[3])
{
    static const double stop[9][3] = {
        {0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530}, {0.207, 0.372, 0.553},
        {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551}, {0.135, 0.659, 0.518}, {0.267, 0.749, 0.441},
        {0.993, 0.906, 0.144},
    };
    v = isfinite(v) ? fmin(1, fmax(0, v)) : 0;
    double t = v * 8;
    int i = (int)t;
    if (i >= 8)
        i = 7;
    double f = t - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = stop[i][c] + f * (stop[i + 1][c] - stop[i][c]);
}

void fig_font(cairo_t *cr, double size, bool bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

void fig_text(cairo_t *cr, double x, double y, double ax, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cairo_text_extents_t e;
    cairo_text_extents(cr, text, &e);
    cairo_move_to(cr, x - ax * e.x_advance, y);
    cairo_show_text(cr, text);
}

void fig_text_vertical(cairo_t *cr, double x, double y, const char *text)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, text, &e);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -M_PI / 2);
    cairo_move_to(cr, -e.x_advance / 2, 0);
    cairo_show_text(cr, text);
    cairo_restore(cr);
}
