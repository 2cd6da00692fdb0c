/* tui_export: key E, the current view as figures (src/figures: SVG, PDF, PNG and the CSV of its
 * numbers) in a directory the user names — the current layer's heatmap (in the shown similarity,
 * experts in the plan's groups), the current group's spectrum (with its ranks), or, from any
 * other view (the plan view, the model view), the whole-model chart.
 *
 * In two steps so the state's lock is held only while copying: tui_export_prepare copies what the
 * view shows (under the lock), tui_export_write draws and writes it (without). No curses. */
#ifndef SM_TUI_EXPORT_H
#define SM_TUI_EXPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "figures/fig_model.h"
#include "tui/tui_state.h"

/* The directory the prompt offers first. */
#define TUI_EXPORT_DEFAULT_DIR "submoe-figures"

typedef enum { TUI_EXPORT_NONE = 0, TUI_EXPORT_HEATMAP, TUI_EXPORT_SPECTRUM, TUI_EXPORT_MODEL } tui_export_kind;

typedef struct tui_export {
    tui_export_kind kind;
    char why[160];              /* NONE: why there is nothing to export yet */
    char dir[512], base[64], title[256];
    int n;                      /* heatmap: experts */
    double *sim;                /* n × n (owned) */
    int group[TUI_MAX_EXPERTS];
    double *sv[3];              /* spectrum (owned) */
    int len[3];
    int64_t rank[3];
    int n_rows;                 /* model chart */
    fig_model_layer *rows;      /* (owned, with their freq and method below) */
    double (*freq)[TUI_MAX_EXPERTS];
} tui_export;

/* Copy what the current view shows into x, to be written into `dir`. */
void tui_export_prepare(const tui_state *s, const char *dir, tui_export *x);
/* The whole-model chart of the plan as the state knows it (previews, statistics), whatever the
 * view: what a model view exports. */
void tui_export_prepare_model(const tui_state *s, const char *dir, tui_export *x);
/* Create dir when it does not exist and write the figure. msg: the status line (the files
 * written, or what failed). Returns true on an error. */
bool tui_export_write(const tui_export *x, char *msg, size_t n);
void tui_export_free(tui_export *x);

#endif
