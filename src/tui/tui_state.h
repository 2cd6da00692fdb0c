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

#include <stdarg.h>
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

/* Views 1-5: a layer's plan, its heatmap, its spectrum; every layer at once (the model view);
 * the plan against another one (compare). */
typedef enum { TUI_VIEW_LAYERS = 0, TUI_VIEW_HEATMAP, TUI_VIEW_SPECTRUM, TUI_VIEW_MODEL, TUI_VIEW_COMPARE,
               TUI_VIEW_COUNT } tui_view;

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
    TUI_ACT_PREVIEW_ALL = 1 << 14, /* several layers changed (the model view): preview every stale one */
    TUI_ACT_COMPARE = 1 << 15, /* open the plan s->input to compare against (view 5) */
    TUI_ACT_EXPORT = 1 << 20, /* E: the current view as figures into s->export_dir (tui_export.h) */
    TUI_ACT_PPL_BOTH = 1 << 21, /* with PERPLEXITY: of the plan compared against too (view 5's P) */
    TUI_ACT_OTHER_ERRORS = 1 << 22, /* build the compared plan's layers not built yet (view 5's p) */
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
    TUI_DIALOG_EXPERT,    /* /: the heatmap jumps to a typed expert */
    TUI_DIALOG_COMPARE,   /* plan file to compare against */
    TUI_DIALOG_EXPORT,    /* the directory the current view's figures go to */
    TUI_DIALOG_HELP,
    TUI_DIALOG_LOG        /* the session's messages (L) */
} tui_dialog;

/* One message of the session, as the log (L) shows it. */
typedef struct tui_message {
    long long time;       /* seconds since the epoch */
    bool error;
    char *text;           /* owned */
} tui_message;
#define TUI_STATUS_MAX 1024

/* One layer's entry before an edit, for undo. */
typedef struct tui_undo_layer {
    int layer;
    sm_plan_layer before;          /* a deep copy of the entry (sm_plan_layer_copy) */
    int clustered[TUI_MAX_EXPERTS];
} tui_undo_layer;
typedef struct tui_undo_step {
    int n;
    tui_undo_layer *l;             /* n layers (owned) */
} tui_undo_step;

/* A second plan, opened to compare against (view 5): read with sm_plan_read, checked against the
 * model and resolved by the same resolver, layer by layer (tui_compare.c). Its layers' errors
 * and, for entries without groups, their clusterings come from the worker. */
typedef struct tui_other {
    sm_plan plan;
    char path[512];
    tui_layer res[TUI_MAX_LAYERS];
    int clustered[TUI_MAX_LAYERS][TUI_MAX_EXPERTS]; /* groups of entries without their own */
    bool grouped[TUI_MAX_LAYERS];   /* the groups are known: the entry's own, or clustered */
    bool have_error[TUI_MAX_LAYERS];
    double error[TUI_MAX_LAYERS];   /* held-out output error of the layer built as it says */
    int64_t params[TUI_MAX_LAYERS]; /* its routed experts' parameters, built (0: not yet) */
    double ppl;                     /* its perplexity on the held-out windows P uses (< 0: not computed) */
    bool stopped;                   /* Esc dropped the building of its layers: the errors not built
                                     * yet wait for p (view 5) */
} tui_other;

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
    bool heat_overview;           /* z: the heatmap shrunk to one character per expert or group */
    /* undo: each step holds the entries it changed, one layer's or several (the model view's
     * apply-to-all: tui_edit_batch_begin) */
    tui_undo_step undo[TUI_UNDO], redo[TUI_UNDO];
    int n_undo, n_redo;
    bool batch, batch_open;       /* inside a batch; its step was started */
    /* the model view (4): its order, and the layers space selected for apply-to-all */
    bool model_sorted;            /* by error, worst first (S); else by layer */
    bool marked[TUI_MAX_LAYERS];
    /* the plan compared against (view 5, O), or NULL */
    tui_other *other;
    unsigned other_gen;           /* bumped by every plan opened to compare: older results are dropped */
    /* jobs and messages */
    bool busy;
    double progress;
    char job[64];
    int queued;                   /* jobs waiting behind the running one */
    char status[TUI_STATUS_MAX];  /* the message shown (wrapped into the message area, never cut) */
    bool status_error;            /* the status line holds an error */
    tui_message *log;             /* every message of the session (tui_say), oldest first */
    int n_log, cap_log;
    int log_scroll;               /* the log view: lines scrolled up from its end */
    int help_page;                /* the help overlay's page */
    int screen_cols, screen_rows; /* the terminal's size as last drawn (the log's and help's pages) */
    tui_dialog dialog;
    char input[512];              /* dialog text field */
    int rank_matrix;              /* TUI_DIALOG_RANK: −1 all three matrices, else one;
                                   * TUI_RANK_EVERY_LAYER: all three, on every (marked) layer */
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

/* A message: shown in the message area and kept in the log (L) with its time. Every status,
 * error or warning goes through here. A key that changes the layer or the view, or starts work,
 * without saying anything clears the shown message (its context is gone); the log keeps it. */
void tui_say(tui_state *s, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void tui_say_v(tui_state *s, bool error, const char *fmt, va_list ap);
/* Clear the shown message (the log keeps it). */
void tui_say_clear(tui_state *s);

/* Handle one key (curses key codes or characters). Returns tui_action flags. */
int tui_key(tui_state *s, int key);
/* The help overlay's lines, NULL-terminated: kept beside the key table (tui_keys.c). A line is
 * "Heading  text" (the heading in the first 9 columns) or free text. */
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
/* The same for any plan p: the index of layer l's entry (added when p has none), its groups
 * round robin into clustered[0..n). */
int tui_plan_entry_init(sm_plan *p, int layer, int n, int top_k, int *clustered);
/* Resolve layer l's entry again into s->res[l] (after every change of the entry or clustering). */
void tui_layer_refresh(tui_state *s, int layer);
/* The same for entry pl of any plan p (an opened plan to compare against): resolved for layer
 * `layer` of r->n experts, `clustered` its groups when the entry gives none. */
void tui_resolve_entry(const sm_plan *p, const sm_plan_layer *pl, int layer, int n, const int *clustered,
                       const char *chosen, sm_resolved_layer *rl);
void tui_refresh_entry(const sm_plan *p, const sm_plan_layer *pl, int layer, const int *clustered, tui_layer *r);
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
/* Several edits as one undo step (the model view's apply-to-all): every tui_edit_begin between
 * these two adds its layer's entry to the same step. */
void tui_edit_batch_begin(tui_state *s);
void tui_edit_batch_end(tui_state *s);
/* Undo / redo the last step: every layer it changed. Returns how many layers (0: nothing). */
int tui_undo(tui_state *s);
int tui_redo(tui_state *s);
void tui_clear_history(tui_state *s);
void tui_undo_step_free(tui_undo_step *st);
/* Keep the selection inside what it selects: the layer, the heatmap cursor within its n
 * experts, the spectrum's group within its k groups. After every key and every worker result. */
void tui_selection_settle(tui_state *s);

/* Experts of a layer in cluster order (order[pos] = expert). Returns n: all of them, always. */
int tui_cluster_order(const tui_layer *p, int *order);
/* Parameters of a layer's routed experts after the plan (its latest fresh preview when there is
 * one, else an estimate: each group as the writer stores it, tui_group_params). */
int64_t tui_plan_params(const tui_state *s, int layer);
/* Parameters of group c of a layer as the writer stores them at the group's ranks: per matrix,
 * r·(out + in) factors when sm_rank_factored says they are smaller, else the dense out·in (merge
 * methods without ranks count dense, and auto, unless its fresh preview built a rank-keeping
 * merge of the layer's groups). */
int64_t tui_group_params(const tui_state *s, int layer, int cluster);
/* The rank chooser's marks on a spectrum sv[0..len) of an out × in matrix: the smallest ranks
 * keeping 90, 95 and 99% of the energy Σσ², and the break-even: the largest rank stored as
 * factors (sm_rank_factored; 0 when none is). */
typedef struct tui_spec_marks {
    int64_t energy[3];
    int64_t break_even;
} tui_spec_marks;
void tui_spectrum_marks(const double *sv, int len, int64_t out, int64_t in, tui_spec_marks *m);
/* The estimate for a resolved layer p of entry pl (of any plan). */
int64_t tui_entry_params(const tui_state *s, const tui_layer *p, const sm_plan_layer *pl);
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

/* ---- the model view (tui_model.c): every layer at once, and settings for many ------------- */

/* The MoE layers in the model view's order (by layer, or by error, worst first, with the layers
 * without a preview last). Returns how many. */
int tui_model_rows(const tui_state *s, int *layers);
/* The layers apply-to-all changes: those marked (space), else every MoE layer. */
int tui_model_targets(const tui_state *s, int *layers);
bool tui_any_marked(const tui_state *s);
#define TUI_RANK_EVERY_LAYER (-2)
/* Set one setting on every target layer as one undo step; a layer whose entry already says it
 * is left alone (no undo, no new preview). Alignment only where the layer merges. Each changed
 * layer is resolved again and its preview marked stale. Return how many layers changed. */
int tui_apply_method(tui_state *s, bool is_auto, sm_merge_method m);
int tui_apply_router(tui_state *s, sm_router_mode r);
int tui_apply_align(tui_state *s, bool align);
int tui_apply_rank(tui_state *s, sm_rank r);
/* The largest count rank accepted for every target layer (the smallest of their groups' maxima). */
int64_t tui_apply_rank_max(const tui_state *s);

/* ---- comparing plans (tui_compare.c) ---------------------------------------------------------- */

/* Keep plan p (read and checked against the model by the caller; owned from now on) as the plan
 * compared against, every MoE layer resolved as the workbench resolves its own. */
void tui_other_open(tui_state *s, sm_plan *p, const char *path);
/* Forget it (tui_state.c: freed with the state). */
void tui_other_close(tui_state *s);
/* Layer l of the other plan resolved (its groups: the entry's, else other->clustered[l]). */
void tui_other_resolve(const tui_state *s, int layer, sm_resolved_layer *rl);
/* The groups the worker clustered for an entry without its own (labels of the layer's n experts). */
void tui_other_set_groups(tui_state *s, int layer, const int *assign);
/* What differs in layer l between the plan and the other one: TUI_DIFF_* flags. */
enum { TUI_DIFF_GROUPS = 1, TUI_DIFF_METHOD = 2, TUI_DIFF_ROUTER = 4, TUI_DIFF_RANK = 8, TUI_DIFF_ALIGN = 16 };
unsigned tui_compare_layer(const tui_state *s, int layer);
/* Whether a plan's entry gives some group of layer p a rank of its own other than the layer's. */
bool tui_entry_group_ranks(const sm_plan_layer *pl, const tui_layer *p);
/* Layer l's entry in the other plan. */
const sm_plan_layer *tui_other_entry(const tui_state *s, int layer);
/* Experts whose group-mates differ between two groupings of n experts. */
int tui_groups_moved(const tui_layer *a, const tui_layer *b);
/* The other plan's routed-expert parameters of a layer (built, else estimated) and the model's. */
int64_t tui_other_params(const tui_state *s, int layer);
int64_t tui_other_model_params(const tui_state *s);

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
    bool overview;      /* s->heat_overview: one character per expert ... */
    bool by_group;      /* ... or, when even that does not fit across, per group */
} tui_heat_geom;
tui_heat_geom tui_heat_geometry(const tui_layer *p, int ci, int cj, int w, int h);
/* The heatmap view's grid for the selected layer in a w × h panel: tui_heat_geometry, or the
 * overview (s->heat_overview), whose cells are one character: one per expert (with the group
 * boundaries when they fit too), else one per group. `units` gets what the rows and columns are
 * (the layer itself, or one boundary-less group of its experts or of its groups) and *uci, *ucj
 * the cursor's row and column among them. Paging (PgUp/PgDn) steps by what it shows. */
tui_heat_geom tui_heat_view_geometry(const tui_state *s, int w, int h, tui_layer *units, int *uci, int *ucj);

/* Heatmap shading: index in [0, levels) for a similarity in [lo, hi]. */
int tui_shade(double v, double lo, double hi, int levels);

/* Short method label for narrow columns ("submoe", "sub-whit", "freq-avg", "average", "prune-f",
 * "prune-o", "keep"). */
const char *tui_method_short(sm_merge_method m);

/* Word-wrap `text` to lines of at most `width` columns (breaking at spaces where possible). Lines
 * go to out[i] (each up to TUI_WRAP_LINE bytes); returns the number of lines (≤ max_lines; the
 * last line ends in "…" / "..." when text was cut). */
#define TUI_WRAP_LINE 1024
int tui_wrap(const char *text, int width, char out[][TUI_WRAP_LINE], int max_lines, bool utf8);

/* The message area: `msg` on the status line when it fits in `cols` − `keys_w` − 1 columns
 * (returns 1, out[0] the message), else wrapped to cols − 2 columns over up to max_lines lines
 * (the key hints give way). Returns the number of lines. */
int tui_message_lines(const char *msg, int cols, int keys_w, char out[][TUI_WRAP_LINE], int max_lines, bool utf8);

/* A value in at most `width` columns (≥ 4 gives a value, never a bare "0"): "%.4f" when it fits,
 * fewer decimals, ".153" without the leading zero, "2e-3" for small values, "<1e-4" below that
 * when it fits, else "~0". */
void tui_fmt_fit(double v, int width, char *out, size_t n);

/* The help at `width` columns: its lines wrapped, continuation lines under the text (not the
 * heading). Lines [first, first + max_lines) go to out (NULL: only count); returns the number of
 * lines of the whole help (tui_keys.c, beside the help). */
int tui_help_lines(int width, int first, char (*out)[TUI_WRAP_LINE], int max_lines);

/* The log view at `width` columns: each message is "HH:MM:SS " and its text wrapped, its
 * continuation lines indented under the text. Lines [first, first + max_lines) go to out (errors
 * flagged in is_error when not NULL). Returns the number of lines of the whole log. */
int tui_log_lines(const tui_state *s, int width, int first, char (*out)[TUI_WRAP_LINE], bool *is_error,
                  int max_lines);

/* A list that fits: `prefix`, then as many of the n items (joined by sep) as wrap into max_lines
 * lines of `width` columns, then " (+N more)" for the rest — never an item cut. Returns the
 * number of items shown. */
int tui_fit_items(char *out, size_t len, const char *prefix, const char *const *items, int n, const char *sep,
                  int width, int max_lines);

/* A line of items that fits (a title, a hint line): the n items in their order, joined by sep,
 * the least important left out first (the largest prio; of equals, the last) until it fits in
 * `width` columns — never an item cut. Returns the number of items kept (0: out is ""). */
int tui_fit_priority(char *out, size_t len, const char *const *items, const int *prio, int n, const char *sep,
                     int width);

/* Shorten a path to at most `width` columns, keeping its end ("…/models/demo"). */
void tui_short_path(const char *path, int width, char *out, size_t n, bool utf8);

/* Display width of a UTF-8 string (each code point one column), and the bytes of its first
 * `cols` columns. */
int tui_strwidth(const char *s);
size_t tui_bytes_for(const char *s, int cols);

#endif
