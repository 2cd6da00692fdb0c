/* tui_state: everything the workbench shows and edits, without a terminal.
 *
 * The screen is rendered from this state (tui_draw.c); keys become state changes and requests for
 * work (tui_key); layouts are a pure function of the terminal size (tui_layout). All three are
 * unit-tested without curses. Work (calibration, statistics, previews, perplexity, saving,
 * committing) runs on the worker thread of tui_app.c, which fills the data fields under the lock. */
#ifndef SM_TUI_STATE_H
#define SM_TUI_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"

/* Keys, as tui_app translates them from curses (plain characters are themselves). */
enum { TUI_KEY_UP = 0x1001, TUI_KEY_DOWN, TUI_KEY_LEFT, TUI_KEY_RIGHT, TUI_KEY_BACKSPACE, TUI_KEY_RESIZE,
       TUI_KEY_PGUP, TUI_KEY_PGDN, TUI_KEY_ESC = 27, TUI_KEY_ENTER = '\n', TUI_KEY_TAB = '\t' };

#define TUI_MAX_EXPERTS 256
#define TUI_UNDO 64
#define TUI_SPECTRUM_MAX 4096

typedef enum { TUI_VIEW_LAYERS = 0, TUI_VIEW_HEATMAP, TUI_VIEW_SPECTRUM, TUI_VIEW_COUNT } tui_view;

/* One MoE layer's plan, as edited. */
typedef struct tui_layer_plan {
    int n, k;                      /* experts before, clusters after */
    int assign[TUI_MAX_EXPERTS];   /* cluster of each expert, canonical labels */
    sm_merge_method method;
    bool is_auto;                  /* method auto (the default) */
    sm_router_mode router;
    sm_rank rank[3];               /* gate, up, down */
} tui_layer_plan;

/* What the worker knows about a layer. */
typedef struct tui_layer_data {
    bool have_stats;
    int n;
    double freq[TUI_MAX_EXPERTS];
    double *sim[3];                /* n × n: output, weight, logit (owned) */
    bool have_preview;             /* for the plan as it was when previewed (preview_gen) */
    unsigned preview_gen;
    double output_error, member_error;
    int64_t params_before, params_after;
    char chosen[160];              /* auto: what was chosen */
    /* spectrum of the selected cluster */
    bool have_spectrum;
    int spec_cluster, spec_len[3];
    unsigned spec_gen;
    double *spec[3];               /* singular values of W_cat for gate, up, down (owned) */
} tui_layer_data;

typedef enum {
    TUI_ACT_NONE = 0,
    TUI_ACT_REDRAW = 1,
    TUI_ACT_QUIT = 2,
    TUI_ACT_PREVIEW = 4,      /* the current layer's plan changed: preview it */
    TUI_ACT_PERPLEXITY = 8,
    TUI_ACT_SAVE = 16,
    TUI_ACT_COMMIT = 32,
    TUI_ACT_CANCEL = 64,      /* cancel the running job */
    TUI_ACT_RECLUSTER = 128,  /* re-cluster the current layer with k-means at its k */
    TUI_ACT_SPECTRUM = 256,
} tui_action;

typedef enum { TUI_DIALOG_NONE = 0, TUI_DIALOG_QUIT, TUI_DIALOG_COMMIT, TUI_DIALOG_OVERWRITE, TUI_DIALOG_HELP } tui_dialog;

typedef struct tui_state {
    /* model */
    char model[512];
    char arch[32];
    int n_layers, top_k;
    bool is_moe[512];
    int64_t hidden, inter, total_params;
    /* plan */
    tui_layer_plan plan[512];
    unsigned plan_gen[512];       /* bumped by every edit of a layer */
    bool modified;
    uint64_t seed;
    /* data from the worker */
    tui_layer_data data[512];
    double ppl_original, ppl_plan; /* < 0: not computed */
    unsigned ppl_gen;             /* sum of plan_gen when ppl_plan was computed */
    /* selection */
    tui_view view;
    int layer;                    /* selected layer */
    int ci, cj;                   /* heatmap cursor (positions in cluster order) */
    int sim_kind;                 /* 0 output, 1 weight, 2 logit */
    int spec_cluster, spec_matrix;
    /* undo */
    struct {
        int layer;
        tui_layer_plan before;
    } undo[TUI_UNDO], redo[TUI_UNDO];
    int n_undo, n_redo;
    /* jobs and messages */
    bool busy;
    double progress;
    char job[64];
    char status[256];
    tui_dialog dialog;
    char input[512];              /* dialog text field (commit directory) */
    int commit_format;            /* 0 submoe, 1 hf, 2 hf-expanded (Tab in the commit dialog) */
    char plan_path[512];
    char committed[512];
    bool color, utf8;
} tui_state;

void tui_state_init(tui_state *s);
void tui_state_free_data(tui_state *s);

/* Handle one key (curses key codes or characters). Returns tui_action flags. */
int tui_key(tui_state *s, int key);

/* Edits (each records undo and marks the plan modified). */
void tui_edit_begin(tui_state *s, int layer);
int tui_move_expert(tui_state *s, int layer, int expert, int cluster); /* cluster == k: a new one */
int tui_merge_clusters(tui_state *s, int layer, int a, int b);
void tui_set_rank(tui_state *s, int layer, int matrix, sm_rank r);  /* matrix -1: all three */
bool tui_undo(tui_state *s);
bool tui_redo(tui_state *s);

/* Experts of a layer in cluster order (order[pos] = expert), with cluster boundaries. */
int tui_cluster_order(const tui_layer_plan *p, int *order);
/* Parameters of the routed experts after the plan (dense estimate; factors counted by rank). */
int64_t tui_plan_params(const tui_state *s, int layer);

/* Layout: non-overlapping rectangles for a terminal of cols × rows (≥ 80 × 24 recommended;
 * smaller sizes still give valid, possibly empty, rectangles). */
typedef struct tui_rect {
    int y, x, h, w;
} tui_rect;
typedef struct tui_layout {
    tui_rect header, layers, main, detail, status;
    bool too_small;
} tui_layout;
tui_layout tui_layout_compute(int cols, int rows);

/* Heatmap shading: index in [0, levels) for a similarity in [lo, hi]. */
int tui_shade(double v, double lo, double hi, int levels);

#endif
