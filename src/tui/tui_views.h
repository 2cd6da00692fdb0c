/* tui_views: what the frame (tui_draw.c) draws in its panels: the views (tui_view_*.c) and the
 * dialogs (tui_dialog.c). Internal to src/tui. */
#ifndef SM_TUI_VIEWS_H
#define SM_TUI_VIEWS_H

#include "tui/tui_state.h"

/* The views (tui_view_*.c): the main panel and the lines they add to the detail panel. */
void tui_view_plan_draw(const tui_state *s, const tui_rect *r);
void tui_view_heatmap_draw(const tui_state *s, const tui_rect *r);
void tui_view_spectrum_draw(const tui_state *s, const tui_rect *r);
/* The model view (4) and the comparison (5) take the layer list's room too. */
void tui_view_model_draw(const tui_state *s, const tui_rect *r);
void tui_view_compare_draw(const tui_state *s, const tui_rect *r);
/* One line about the cursor / selection of the view, at (y, x) within w columns. */
void tui_view_heatmap_detail(const tui_state *s, int y, int x, int w);
void tui_view_spectrum_detail(const tui_state *s, int y, int x, int w);
void tui_view_plan_detail(const tui_state *s, int y, int x, int w);
void tui_view_model_detail(const tui_state *s, int y, int x, int w);
void tui_view_compare_detail(const tui_state *s, int y, int x, int w);
/* Dialogs and the help overlay (tui_dialog.c). */
void tui_dialog_draw(const tui_state *s, int cols, int rows);

#endif
