/* tui_draw: the workbench screen, rendered from tui_state (the only code that draws). */
#ifndef SM_TUI_DRAW_H
#define SM_TUI_DRAW_H

#include "tui/tui_state.h"

/* Colour pairs (256-colour heatmap ramp, 8-colour fallback); turns s->color off when the
 * terminal has none. Call after initscr. */
void tui_draw_init_colors(tui_state *s);
void tui_draw(const tui_state *s, int cols, int rows);

#endif
