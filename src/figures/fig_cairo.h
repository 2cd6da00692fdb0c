/* fig_cairo: cairo, loaded on first use (dlopen) rather than linked. Linked, cairo and what it
 * pulls in (pixman, fontconfig, freetype, X11/xcb, png) are mapped at every start of the program,
 * whatever the command, which alone exceeds the smallest address-space limits util/limits.c
 * reports with a message (the loader would fail before main); only the figures need them.
 *
 * A figure source includes this header (not <cairo.h> directly): each cairo function it calls is
 * then a call through the table fig_cairo_load filled. */
#ifndef SM_FIG_CAIRO_H
#define SM_FIG_CAIRO_H

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>

#define FIG_CAIRO_FUNCS(X)                                                                        \
    X(cairo_create) X(cairo_destroy) X(cairo_paint) X(cairo_fill) X(cairo_stroke)                 \
    X(cairo_move_to) X(cairo_line_to) X(cairo_rectangle) X(cairo_set_source_rgb)                   \
    X(cairo_set_line_width) X(cairo_set_dash) X(cairo_set_antialias) X(cairo_save)                 \
    X(cairo_restore) X(cairo_translate) X(cairo_rotate) X(cairo_select_font_face)                  \
    X(cairo_set_font_size) X(cairo_text_extents) X(cairo_show_text) X(cairo_status_to_string)      \
    X(cairo_surface_status) X(cairo_surface_flush) X(cairo_surface_finish)                         \
    X(cairo_surface_destroy) X(cairo_surface_write_to_png_stream) X(cairo_image_surface_create)    \
    X(cairo_svg_surface_create_for_stream) X(cairo_svg_surface_restrict_to_version)                \
    X(cairo_pdf_surface_create_for_stream) X(cairo_pdf_surface_set_metadata)                       \
    X(cairo_debug_reset_static_data)

typedef struct fig_cairo_api {
#define FIG_CAIRO_FIELD(f) __typeof__(&f) p_##f;
    FIG_CAIRO_FUNCS(FIG_CAIRO_FIELD)
#undef FIG_CAIRO_FIELD
} fig_cairo_api;
extern fig_cairo_api fig_cairo;

/* Load cairo once (any thread). 0, or -1 with a message naming the library and the Debian
 * package. */
int fig_cairo_load(void);
/* Whether it was loaded (nothing to release otherwise). */
int fig_cairo_loaded(void);
/* Release cairo's static caches and fontconfig's (FcFini, when fontconfig is loaded): at exit,
 * so a leak checker sees only what the program holds. */
void fig_cairo_release(void);

/* From here on, a call of a cairo function goes through the table. */
#define cairo_create (fig_cairo.p_cairo_create)
#define cairo_destroy (fig_cairo.p_cairo_destroy)
#define cairo_paint (fig_cairo.p_cairo_paint)
#define cairo_fill (fig_cairo.p_cairo_fill)
#define cairo_stroke (fig_cairo.p_cairo_stroke)
#define cairo_move_to (fig_cairo.p_cairo_move_to)
#define cairo_line_to (fig_cairo.p_cairo_line_to)
#define cairo_rectangle (fig_cairo.p_cairo_rectangle)
#define cairo_set_source_rgb (fig_cairo.p_cairo_set_source_rgb)
#define cairo_set_line_width (fig_cairo.p_cairo_set_line_width)
#define cairo_set_dash (fig_cairo.p_cairo_set_dash)
#define cairo_set_antialias (fig_cairo.p_cairo_set_antialias)
#define cairo_save (fig_cairo.p_cairo_save)
#define cairo_restore (fig_cairo.p_cairo_restore)
#define cairo_translate (fig_cairo.p_cairo_translate)
#define cairo_rotate (fig_cairo.p_cairo_rotate)
#define cairo_select_font_face (fig_cairo.p_cairo_select_font_face)
#define cairo_set_font_size (fig_cairo.p_cairo_set_font_size)
#define cairo_text_extents (fig_cairo.p_cairo_text_extents)
#define cairo_show_text (fig_cairo.p_cairo_show_text)
#define cairo_status_to_string (fig_cairo.p_cairo_status_to_string)
#define cairo_surface_status (fig_cairo.p_cairo_surface_status)
#define cairo_surface_flush (fig_cairo.p_cairo_surface_flush)
#define cairo_surface_finish (fig_cairo.p_cairo_surface_finish)
#define cairo_surface_destroy (fig_cairo.p_cairo_surface_destroy)
#define cairo_surface_write_to_png_stream (fig_cairo.p_cairo_surface_write_to_png_stream)
#define cairo_image_surface_create (fig_cairo.p_cairo_image_surface_create)
#define cairo_svg_surface_create_for_stream (fig_cairo.p_cairo_svg_surface_create_for_stream)
#define cairo_svg_surface_restrict_to_version (fig_cairo.p_cairo_svg_surface_restrict_to_version)
#define cairo_pdf_surface_create_for_stream (fig_cairo.p_cairo_pdf_surface_create_for_stream)
#define cairo_pdf_surface_set_metadata (fig_cairo.p_cairo_pdf_surface_set_metadata)
#define cairo_debug_reset_static_data (fig_cairo.p_cairo_debug_reset_static_data)

#endif
