/* tui_state: everything the workbench shows and edits, without a terminal.
 *
 * What it edits is the plan itself (an sm_plan, one entry per MoE layer: tui_plan.c); what the
 * views show of a layer is that entry resolved (pipeline/resolve.h), as `submoe apply` would.
 *
 * The screen is rendered from this state (tui_draw.c and the tui_view_*.c files); keys become
 * state changes and requests for work (tui_key, tui_keys.c); layouts are pure functions of the
 * terminal size (tui_layout.c). All three are unit-tested without curses. Work (calibration,
 * previews, spectra, perplexity, saving, committing) runs on the worker thread of tui_app.c,
 * which fills the data fields under the lock. */
#ifndef SM_TUI_STATE_H
#define SM_TUI_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "pipeline/resolve.h"

/* Keys, as tui_app translates them from curses (plain characters are themselves). */
enum { TUI_KEY_UP = 0x1001, TUI_KEY_DOWN, TUI_KEY_LEFT, TUI_KEY_RIGHT, TUI_KEY_BACKSPACE, TUI_KEY_RESIZE,
       TUI_KEY_PGUP, TUI_KEY_PGDN, TUI_KEY_HOME, TUI_KEY_END, TUI_KEY_ESC = 27, TUI_KEY_ENTER = '\n',
       TUI_KEY_TAB = '\t' };

#define TUI_MAX_EXPERTS 256
#define TUI_MAX_LAYERS 512
#define TUI_UNDO 64

typedef enum { TUI_VIEW_LAYERS = 0, TUI_VIEW_HEATMAP, TUI_VIEW_SPECTRUM, TUI_VIEW_COUNT } tui_view;

/* What resolving one MoE layer's plan entry gives (tui_layer_refresh, pipeline/resolve.h), as
 * the views read it. Never edited: every edit is an edit of the entry (tui_plan.c), then the
 * layer is resolved again. */
typedef struct tui_layer {
    int n, k;                      /* experts before, clusters (or experts kept) after */
    int assign[TUI_MAX_EXPERTS];   /* cluster of each expert, canonical labels */
    sm_merge_method method;        /* auto: its merge candidate */
    bool is_auto;                  /* method auto (the default): the worker chooses per layer */
    bool align;                    /* neuron alignment before merging (merge methods) */
    bool groups_auto;              /* the entry gives no groups: they are a clustering's
                                    * (s->clustered), which auto may regroup (dominant groups) */
    sm_router_mode router;
    sm_rank rank[3];               /* gate, up, down, for every group without its own */
    bool decided;                  /* auto, decided in the plan ("chosen:"): built as recorded */
} tui_layer;

/* What the worker knows about a layer. */
typedef struct tui_layer_data {
    bool have_stats;
    int n;
    double freq[TUI_MAX_EXPERTS];
    bool have_saliency;            /* REAP saliency (absent from stats files older than it) */
    double saliency[TUI_MAX_EXPERTS];
    double *sim[3];                /* n × n: output, weight, logit (owned; weight may be NULL) */
    /* the latest preview, of the plan as it was at plan_gen == preview_gen */
    bool have_preview;
    unsigned preview_gen;
    double output_error, member_error;
    int64_t params_before, params_after;
    sm_merge_method built_method;  /* what was built (auto: what it chose) */
    bool built_align;
    int built_slot[TUI_MAX_EXPERTS]; /* slot of each expert in the built layer, −1 = dropped */
    char chosen[600];              /* auto: "<method> (<metric>: <candidate> <score>, …)" */
    /* spectrum of one cluster */
    bool have_spectrum;
    int spec_cluster, spec_len[3];
    bool spec_member[TUI_MAX_EXPERTS]; /* the experts it was computed for */
    double *spec[3];               /* singular values of W_cat for gate, up, down (owned) */
} tui_layer_data;

typedef enum {
    TUI_ACT_NONE = 0,
    TUI_ACT_REDRAW = 1,
    TUI_ACT_QUIT = 2,
    TUI_ACT_PREVIEW = 4,      /* the current layer's plan changed: preview it */
    TUI_ACT_PERPLEXITY = 8,
    TUI_ACT_SAVE = 16,        /* save the plan to s->plan_path */
    TUI_ACT_COMMIT = 32,      /* commit to s->input in s->commit_format */
    TUI_ACT_CANCEL = 64,      /* cancel the running job and the queued background work */
    TUI_ACT_RECLUSTER = 128,  /* re-cluster the current layer with k-means at its k */
    TUI_ACT_SPECTRUM = 256,   /* the spectrum of s->spec_cluster in the current layer */
    TUI_ACT_OPEN = 512,       /* open the plan s->input */
    TUI_ACT_FORCE = 1024,     /* with COMMIT: replace an existing directory (the user said yes) */
    TUI_ACT_ACCURACY = 2048,  /* task accuracy of the original and the plan */
    TUI_ACT_EXPORT = 1 << 20, /* E: the current view as figures into s->export_dir (tui_export.h) */
} tui_action;

typedef enum {
    TUI_DIALOG_NONE = 0,
    TUI_DIALOG_QUIT,      /* unsaved edits: quit anyway? */
    TUI_DIALOG_COMMIT,    /* directory and format */
    TUI_DIALOG_OVERWRITE, /* the commit directory exists: replace? */
    TUI_DIALOG_SAVE,      /* plan file to save to */
    TUI_DIALOG_OPEN,      /* plan file to open */
    TUI_DIALOG_DISCARD,   /* unsaved edits: open another plan anyway? */
    TUI_DIALOG_RANK,      /* a typed rank for the layer (or one matrix) */
    TUI_DIALOG_EXPORT,    /* the directory the current view's figures go to */
    TUI_DIALOG_HELP
} tui_dialog;

typedef struct tui_state {
    /* model */
    char model[512];
    char arch[32];
    int n_layers, top_k, n_experts;
    bool is_moe[TUI_MAX_LAYERS];
    int64_t hidden, inter, total_params;
    /* the plan itself: its defaults, seed and merge options, and one entry per MoE layer (an
     * entry without groups leaves them to a clustering: s->clustered) */
    sm_plan plan;
    int entry[TUI_MAX_LAYERS];         /* index of layer l's entry in plan.layers, −1: none */
    int clustered[TUI_MAX_LAYERS][TUI_MAX_EXPERTS]; /* a clustering's groups, at the entry's count */
    tui_layer res[TUI_MAX_LAYERS];     /* each MoE layer resolved */
    unsigned plan_gen[TUI_MAX_LAYERS]; /* bumped by every edit of a layer */
    bool modified;
    /* data from the worker */
    tui_layer_data data[TUI_MAX_LAYERS];
    bool calibrated;
    double ppl_original, ppl_plan; /* < 0: not computed */
    unsigned ppl_gen;             /* sum of plan_gen when ppl_plan was computed */
    double acc_original, acc_plan; /* task accuracy (acc), < 0: not computed */
    unsigned acc_gen;             /* sum of plan_gen when acc_plan was computed */
    /* selection */
    tui_view view;
    int layer;                    /* selected layer */
    int ci, cj;                   /* heatmap cursor (positions in cluster order) */
    int sim_kind;                 /* 0 output, 1 weight, 2 logit */
    int spec_cluster, spec_matrix;
    /* undo */
    struct {
        int layer;
        sm_plan_layer before;          /* a deep copy of the entry (sm_plan_layer_copy) */
        int clustered[TUI_MAX_EXPERTS];
    } undo[TUI_UNDO], redo[TUI_UNDO];
    int n_undo, n_redo;
    /* jobs and messages */
    bool busy;
    double progress;
    char job[64];
    int queued;                   /* jobs waiting behind the running one */
    char status[256];
    bool status_error;            /* the status line holds an error */
    tui_dialog dialog;
    char input[512];              /* dialog text field */
    int rank_matrix;              /* TUI_DIALOG_RANK: −1 all three matrices, else one */
    int commit_format;            /* 0 submoe, 1 hf, 2 hf-expanded (Tab in the commit dialog) */
    char plan_path[512];
    char commit_dir[512];
    char export_dir[512];         /* E's directory (empty: TUI_EXPORT_DEFAULT_DIR) */
    char committed[512];
    bool color, utf8;
} tui_state;

void tui_state_init(tui_state *s);
/* Frees the worker's data, the plan and the undo history. */
void tui_state_free_data(tui_state *s);

/* Handle one key (curses key codes or characters). Returns tui_action flags. */
int tui_key(tui_state *s, int key);
/* The help overlay's lines, NULL-terminated: kept beside the key table (tui_keys.c). */
extern const char *const tui_key_help[];

/* ---- group arithmetic on a resolved layer (tui_state.c) ------------------------------------
 * A layer's groups are consistent when 1 ≤ k ≤ n, every label is in [0, k) and no group is
 * empty: the views, the keys and the jobs walk them that way. Every change of the groups goes
 * through tui_plan_set_groups or tui_plan_group_count, which keep it so.
 * Set the groups from labels in [0, TUI_MAX_EXPERTS): relabelled 0..k-1 in their order, empty
 * labels dropped, k counted. -1 (p unchanged) for a label out of range. */
int tui_plan_set_groups(tui_layer *p, const int *assign);
bool tui_plan_consistent(const tui_layer *p);
/* Change the group count to k (clamped to 1..n) at once: the two smallest groups merge, or the
 * largest gives its last member a group of its own, until there are k. The re-clustering the
 * user asked for (- and +) replaces them when it arrives; until then the plan is consistent. */
void tui_plan_group_count(tui_layer *p, int k);

/* ---- the plan (tui_plan.c): the state's sm_plan, edited entry by entry ---------------------- */

/* The workbench's target before a plan or the user says otherwise: a quarter of the experts. */
#define TUI_DEFAULT_RATIO 0.25
/* Layer l's entry in s->plan, or NULL (a dense layer). */
sm_plan_layer *tui_entry(tui_state *s, int layer);
const sm_plan_layer *tui_entry_c(const tui_state *s, int layer);
/* Give MoE layer l of n experts an entry: the plan's own when it has one, else an empty one (the
 * plan's defaults); without a count or groups it gets the count sm_planner_target_k gives for the
 * plan's target (TUI_DEFAULT_RATIO without one), groups round robin until calibration clusters
 * them. Resolves the layer. */
void tui_plan_layer_init(tui_state *s, int layer, int n);
/* Resolve layer l's entry again into s->res[l] (after every change of the entry or clustering). */
void tui_layer_refresh(tui_state *s, int layer);
/* The commit format (0 submoe, 1 hf, 2 hf-expanded) as the plan's output format: a layer that
 * names no router then previews with the one that format holds (remap, or hf's collapse:
 * plan.h sm_plan_default_router). Layers whose router changes are resolved again and their
 * previews marked stale; returns how many. */
int tui_set_commit_format(tui_state *s, int format);
/* The layer as the worker builds it: its entry resolved with sm_resolve_layer, the groups a
 * clustering made passed as `clustered` (auto may regroup them), with `chosen` as auto's recorded
 * choice when the entry has none (NULL: none). Free rl with sm_resolved_layer_free. */
void tui_layer_resolve(const tui_state *s, int layer, const char *chosen, sm_resolved_layer *rl);
/* The groups a worker computed for a layer from the resolved layer `asked` (its copy when the job
 * started): adopted only when the layer's groups are still those, and the labels valid — into the
 * entry when it gives groups, else as its clustering at the new count. Group ranks are dropped,
 * the plan's generation bumped, the selection settled. Returns whether the groups changed. */
bool tui_adopt_groups(tui_state *s, int layer, const tui_layer *asked, const int *assign);

/* Edits. tui_edit_begin records undo (a copy of the entry), marks the plan modified, drops the
 * entry's recorded auto choice (an edited layer is decided again) and returns the entry to edit;
 * tui_edit_end resolves the layer again. A key that sets one field of the entry is those two
 * calls around the assignment (tui_keys.c). */
sm_plan_layer *tui_edit_begin(tui_state *s, int layer);
void tui_edit_end(tui_state *s, int layer);
int tui_move_expert(tui_state *s, int layer, int expert, int cluster); /* cluster == k: a new one */
int tui_merge_clusters(tui_state *s, int layer, int a, int b);
/* The group count, now (tui_plan_group_count), until the re-clustering asked for arrives. */
void tui_set_group_count(tui_state *s, int layer, int k);
/* The current groups become the entry's own (a hand-asked re-clustering: auto keeps them). */
void tui_keep_groups(tui_state *s, int layer);
void tui_set_method(tui_state *s, int layer, bool is_auto, sm_merge_method m);
/* The layer's rank of a matrix (−1: all three), for every group (its own ranks are cleared). */
void tui_set_rank(tui_state *s, int layer, int matrix, sm_rank r);
/* One group's own rank of a matrix (−1: all three). 0, or -1 for a group the layer does not have. */
int tui_set_group_rank(tui_state *s, int layer, int cluster, int matrix, sm_rank r);
/* The rank a group's matrix is merged at: its own, else the layer's. */
sm_rank tui_group_rank(const tui_state *s, int layer, int cluster, int matrix);
bool tui_has_group_ranks(const tui_state *s, int layer);
/* Whether group c has its own rank for a matrix. */
bool tui_group_rank_set(const tui_state *s, int layer, int cluster, int matrix);
bool tui_undo(tui_state *s);
bool tui_redo(tui_state *s);
void tui_clear_history(tui_state *s);
/* Keep the selection inside what it selects: the layer, the heatmap cursor within its n
 * experts, the spectrum's group within its k groups. After every key and every worker result. */
void tui_selection_settle(tui_state *s);

/* Experts of a layer in cluster order (order[pos] = expert). Returns n: all of them, always. */
int tui_cluster_order(const tui_layer *p, int *order);
/* Parameters of a layer's routed experts after the plan (its latest fresh preview when there is
 * one, else an estimate: dense, or factors by each group's rank as the resolver counts it). */
int64_t tui_plan_params(const tui_state *s, int layer);
/* Whole-model parameters after the plan. */
int64_t tui_model_params_after(const tui_state *s);
/* The largest rank of a matrix (0 gate, 1 up, 2 down) for a cluster of `members` experts, and a
 * rank as the number of directions layer p's method keeps (full = that maximum): the resolver's
 * rule (sm_resolve_rank_value), which is the engine's. */
int64_t tui_rank_max(const tui_state *s, int matrix, int members);
int64_t tui_rank_value(const tui_state *s, const tui_layer *p, sm_rank r, int matrix, int members);
/* Members of cluster c of a layer. */
int tui_cluster_size(const tui_layer *p, int c);
/* Whether the layer's spectrum is of its current cluster s->spec_cluster (same members). */
bool tui_spectrum_fresh(const tui_state *s, int layer);
/* Whether a layer's preview / the perplexity is for the plan as it is now. */
bool tui_preview_fresh(const tui_state *s, int layer);
bool tui_ppl_fresh(const tui_state *s);
unsigned tui_plan_gen_sum(const tui_state *s);

/* ---- layout (tui_layout.c): pure functions of sizes ------------------------------------- */

typedef struct tui_rect {
    int y, x, h, w;
} tui_rect;
typedef struct tui_layout {
    tui_rect header, layers, main, detail, status;
    bool too_small;  /* below TUI_MIN_COLS × TUI_MIN_ROWS: only a message is drawn */
    bool wide;       /* room for the layer list's extra columns */
} tui_layout;
#define TUI_MIN_COLS 60
#define TUI_MIN_ROWS 16
tui_layout tui_layout_compute(int cols, int rows);

/* The heatmap inside a panel: n experts in k groups, cursor at (ci, cj) in cluster order.
 * Cells are cw columns wide; rows [row0, row0 + nrows) and columns [col0, col0 + ncols) of the
 * matrix are visible (the rest scrolls into view with the cursor). Group boundaries take a column
 * ('│') and, when everything fits, a row ('─'); `label_rows` rows of column labels sit on top. */
typedef struct tui_heat_geom {
    int cw;             /* cell width: 1..8 */
    int ch;             /* cell height: 1..4 (taller cells when the panel has room) */
    int row0, nrows, col0, ncols;
    bool sep_rows;      /* group boundaries drawn as rows */
    int label_rows;     /* 1: numbers per column; 2–3: digits stacked vertically; 0: none */
    /* nrows experts take nrows·ch rows (+ k − 1 boundary rows with sep_rows) */
    int label_w;        /* row label width */
    bool scrolled;      /* not everything is visible */
} tui_heat_geom;
tui_heat_geom tui_heat_geometry(const tui_layer *p, int ci, int cj, int w, int h);

/* Heatmap shading: index in [0, levels) for a similarity in [lo, hi]. */
int tui_shade(double v, double lo, double hi, int levels);

/* Short method label for narrow columns ("submoe", "sub-whit", "freq-avg", "average", "prune-f",
 * "prune-o", "keep"). */
const char *tui_method_short(sm_merge_method m);

/* Word-wrap `text` to lines of at most `width` columns (breaking at spaces where possible). Lines
 * go to out[i] (each up to TUI_WRAP_LINE bytes); returns the number of lines (≤ max_lines; the
 * last line ends in "…" / "..." when text was cut). */
#define TUI_WRAP_LINE 256
int tui_wrap(const char *text, int width, char out[][TUI_WRAP_LINE], int max_lines, bool utf8);

/* Shorten a path to at most `width` columns, keeping its end ("…/models/demo"). */
void tui_short_path(const char *path, int width, char *out, size_t n, bool utf8);

/* Display width of a UTF-8 string (each code point one column), and the bytes of its first
 * `cols` columns. */
int tui_strwidth(const char *s);
size_t tui_bytes_for(const char *s, int cols);

#endif
