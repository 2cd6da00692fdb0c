/* tui_app: the workbench — load a model, calibrate, look at expert similarity and spectra, edit
 * clusters, ranks, methods and routers, preview errors and perplexity, save the plan, commit the
 * merged model. The loop and its worker thread; drawing is tui_draw, state and keys tui_state. */
#ifndef SM_TUI_APP_H
#define SM_TUI_APP_H

/* Run on the terminal until the user quits (or `frames` screens were drawn, when > 0: for tests
 * under sanitizers). plan_path: a plan to open (edited and saved there), or NULL. 0, or -1 with a
 * message (before the terminal was taken). calib_path: a stats/activations file to read instead
 * of calibrating on the bundled tokens (NULL). */
int tui_run(const char *model_dir, const char *plan_path, const char *calib_path, int frames);

#endif
