/* tui_prompt: the keys of the workbench's open dialog (s->dialog): typed input, prompts refused on
 * the spot, yes/no questions (not the help's or the log's pages: tui_keys.c). */
#ifndef SM_TUI_PROMPT_H
#define SM_TUI_PROMPT_H

#include "tui/tui_state.h"

/* Open dialog d with `initial` in its text field. */
void tui_prompt_open(tui_state *s, tui_dialog d, const char *initial);
/* A key while a dialog is open: tui_action flags. */
int tui_prompt_key(tui_state *s, int key);

#endif
