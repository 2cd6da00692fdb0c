/* fig_render: one figure drawn once and written as SVG, PDF and PNG (cairo), next to the CSV of
 * every number it draws. The figure modules (fig_heatmap, fig_spectrum, fig_model) take plain
 * data and a drawing callback; this module owns the surfaces, the shared look (fonts, colour
 * ramp) and the files.
 *
 * Output is deterministic: the same data gives the same bytes (the PDF's creation date is fixed;
 * text uses cairo's toy font API, so no pango). Every file is written atomically
 * (util/publish.h), so a reader never sees half a figure. */
#ifndef SM_FIG_RENDER_H
#define SM_FIG_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include <cairo.h>

/* Draws the figure on cr over w × h user units (points for PDF/SVG, pixels for PNG). */
typedef void (*fig_draw_fn)(cairo_t *cr, const void *data, double w, double h);

/* The names of the files written, for a status message: "BASE.{svg,pdf,png,csv}". */
typedef struct fig_written {
    char names[2048];
    int n_files;
} fig_written;

/* Write DIR/BASE.svg, .pdf and .png (w × h) drawn by draw(data), and DIR/BASE.csv holding csv
 * (csv may be NULL: no CSV). `w` (optional) collects the names. 0, or -1 with a message naming
 * the file. */
int fig_render_write(const char *dir, const char *base, int w, int h, fig_draw_fn draw, const void *data,
                     const char *csv, fig_written *wr);
/* An extra CSV beside a figure (e.g. the model chart's frequencies). 0 or -1 with a message. */
int fig_write_csv(const char *dir, const char *name, const char *csv, fig_written *wr);

/* Release cairo's caches (fonts) once no figure is being drawn: at the end of a command or of
 * the workbench, so a leak checker sees only what the program itself still holds. */
void fig_render_cleanup(void);

/* ---- shared drawing helpers ---------------------------------------------------------------- */
/* The colour of v in [0, 1] on the figures' perceptual ramp (viridis-like, dark to light). */
void fig_ramp(double v, double rgb[3]);
void fig_font(cairo_t *cr, double size, bool bold);
/* Text anchored at (x, y): ax 0 left, 0.5 centre, 1 right; baseline at y. */
void fig_text(cairo_t *cr, double x, double y, double ax, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The same, rotated 90° counter-clockwise about (x, y) (a vertical axis label). */
void fig_text_vertical(cairo_t *cr, double x, double y, const char *text);

/* A growing text buffer for CSVs. */
typedef struct fig_buf {
    char *p;
    size_t n, cap;
} fig_buf;
void fig_buf_printf(fig_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fig_buf_free(fig_buf *b);

#endif
