/* tui_curses: drawing helpers (tui_curses.c) shared by the workbench's drawing files (tui_draw.c,
 * tui_view_*.c, tui_dialog.c), which with tui_app.c are the only files that include curses.
 * Below the frame and the views: calls neither. Internal to src/tui. */
#ifndef SM_TUI_CURSES_H
#define SM_TUI_CURSES_H

#include <curses.h>
#include <stdbool.h>

#include "tui/tui_state.h"

/* Colour pairs. The heatmap ramp takes TC_RAMP pairs from TC_PAIR_RAMP. */
enum {
    TC_PAIR_TITLE = 1,  /* panel titles */
    TC_PAIR_SELECT,     /* the selected row */
    TC_PAIR_DIM,
    TC_PAIR_WARN,       /* progress, the rank marker, [modified] */
    TC_PAIR_OK,         /* the energy curve */
    TC_PAIR_ERROR,      /* errors in the status line */
    TC_PAIR_BAR,        /* the status bar */
    TC_PAIR_SPEC_BAR,   /* the spectrum's bars of kept ranks */
    TC_PAIR_SPEC_DOT,   /* the energy curve over such a bar, on the bar's colour */
    TC_PAIR_RAMP = 10
};
#define TC_RAMP 10      /* colour levels of the heatmap */
#define TC_MONO_RAMP 8  /* shading characters without colour */

/* Set by tui_draw for the frame being drawn. */
extern bool tc_utf8, tc_color;

/* The UTF-8 glyph, or its ASCII stand-in on terminals without UTF-8. */
static inline const char *tc_g(const char *utf8, const char *ascii)
{
    return tc_utf8 ? utf8 : ascii;
}

/* printf at (y, x), cut to maxw display columns (nothing when maxw ≤ 0). Returns the columns
 * written. */
int tc_put(int y, int x, int maxw, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A horizontal rule of w columns. */
void tc_hrule(int y, int x, int w);
/* A panel's title rule: "─ title ─────". */
void tc_title(const tui_rect *r, const char *title, bool active);
/* Turn a colour pair (and attributes) on / off, ignoring the pair without colour. */
void tc_on(int pair, attr_t attrs);
void tc_off(int pair, attr_t attrs);
/* Shading string of level i in [0, TC_MONO_RAMP). */
const char *tc_mono_shade(int i);
/* "3.41M", "786k", "1.20B". */
void tc_fmt_params(char *buf, size_t n, double v);

#endif
