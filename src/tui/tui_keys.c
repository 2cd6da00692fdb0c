/* tui_keys: what every key does to the workbench state (see tui_state.h), without a terminal.
 * Keys return tui_action flags; the loop in tui_app.c turns those into jobs for the worker. */
#include "tui/tui_state.h"
#include "tui/tui_export.h"
#include "tui/tui_prompt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int moe_step(const tui_state *s, int from, int dir)
{
    for (int l = from + dir; l >= 0 && l < s->n_layers; l += dir)
        if (s->is_moe[l])
            return l;
    return from;
}

/* One rank step of a group's matrix: a sixteenth of its largest rank (`fine`: one), up to full. */
static sm_rank rank_step(const tui_state *s, const tui_layer *p, int cluster, int matrix, int dir, bool fine)
{
    int layer = (int)(p - s->res);
    int members = tui_cluster_size(p, cluster);
    int64_t max = tui_rank_max(s, matrix, members);
    int64_t step = fine ? 1 : (max / 16 > 0 ? max / 16 : 1);
    int64_t cur = tui_rank_value(s, p, tui_group_rank(s, layer, cluster, matrix), matrix, members);
    cur += dir * step;
    if (cur >= max)
        return (sm_rank){SM_RANK_FULL, 0, 0};
    if (cur < 1)
        cur = 1;
    return (sm_rank){SM_RANK_COUNT, cur, 0};
}

static void status(tui_state *s, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void status(tui_state *s, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tui_say_v(s, error, fmt, ap);
    va_end(ap);
}

/* Rows of text a full-screen overlay (help, log) shows: the screen less its frame and footer. */
static int overlay_rows(const tui_state *s)
{
    int rows = s->screen_rows > 0 ? s->screen_rows : 24;
    return rows - 4 > 1 ? rows - 4 : 1;
}

/* The help's pages: Space, PgDn, j or Down the next one, PgUp, k or Up the one before; any other
 * key (or paging past the last) closes it. */
static int help_key(tui_state *s, int key)
{
    int lines = tui_help_lines((s->screen_cols > 0 ? s->screen_cols : 80) - 4, 0, NULL, 0); /* tui_dialog.c's */
    int pages = (lines + overlay_rows(s) - 1) / overlay_rows(s);
    if (key == ' ' || key == TUI_KEY_PGDN || key == 'j' || key == TUI_KEY_DOWN) {
        if (s->help_page + 1 < pages) {
            s->help_page++;
            return TUI_ACT_REDRAW;
        }
    } else if (key == TUI_KEY_PGUP || key == 'k' || key == TUI_KEY_UP) {
        if (s->help_page > 0)
            s->help_page--;
        return TUI_ACT_REDRAW;
    }
    s->dialog = TUI_DIALOG_NONE;
    return TUI_ACT_REDRAW;
}

/* The log: j/k (arrows) a line, PgUp/PgDn (Space) a page, g/G (Home/End) its start and end; Esc, q or
 * L close it. */
static int log_key(tui_state *s, int key)
{
    int page = overlay_rows(s);
    int cols = s->screen_cols > 0 ? s->screen_cols : 80;
    int most = tui_log_lines(s, cols - 4, 0, NULL, NULL, 0) - page; /* tui_dialog.c's width */
    most = most > 0 ? most : 0;
    switch (key) {
    case 'k': case TUI_KEY_UP: s->log_scroll++; break;
    case 'j': case TUI_KEY_DOWN: s->log_scroll--; break;
    case TUI_KEY_PGUP: s->log_scroll += page; break;
    case TUI_KEY_PGDN: case ' ': s->log_scroll -= page; break;
    case TUI_KEY_HOME: case 'g': s->log_scroll = most; break;
    case TUI_KEY_END: case 'G': s->log_scroll = 0; break;
    case TUI_KEY_ESC: case 'q': case 'L':
        s->dialog = TUI_DIALOG_NONE;
        return TUI_ACT_REDRAW;
    default:
        return TUI_ACT_NONE;
    }
    s->log_scroll = s->log_scroll < 0 ? 0 : s->log_scroll > most ? most : s->log_scroll;
    return TUI_ACT_REDRAW;
}

/* The selected layer changed: reset the cursors and ask for what the view shows. */
static int layer_changed(tui_state *s)
{
    s->ci = s->cj = s->spec_cluster = 0;
    return TUI_ACT_REDRAW | TUI_ACT_PREVIEW | (s->view == TUI_VIEW_SPECTRUM ? TUI_ACT_SPECTRUM : 0);
}

static int cluster_key(tui_state *s, const tui_layer *p, int key, const int *order, int n)
{
    if (s->view != TUI_VIEW_HEATMAP || s->ci >= n || s->cj >= n) {
        status(s, false, "m, n and g edit groups in the heatmap (2): move the cursor to a cell first");
        return TUI_ACT_REDRAW;
    }
    int ei = order[s->ci], ej = order[s->cj];
    int rc = key == 'm' ? tui_move_expert(s, s->layer, ei, p->assign[ej])
             : key == 'n' ? tui_move_expert(s, s->layer, ei, p->k)
                          : tui_merge_clusters(s, s->layer, p->assign[ei], p->assign[ej]);
    if (rc) {
        status(s, false, "%s", key == 'm' ? "the row's expert is already in the column's group"
                               : key == 'n' ? "the row's expert is already alone in its group"
                                            : "row and column are in the same group");
        return TUI_ACT_REDRAW;
    }
    /* keep the cursor on the row's expert, which may have moved in cluster order */
    int neworder[TUI_MAX_EXPERTS];
    tui_cluster_order(p, neworder);
    for (int q = 0; q < n; q++)
        if (neworder[q] == ei)
            s->ci = q;
    status(s, false, "layer %d: %s (%d groups)", s->layer,
           key == 'm' ? "expert moved" : key == 'n' ? "new group" : "groups merged", p->k);
    return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
}

/* What a key's handler sees: the state and the current layer as the views show it. */
typedef struct {
    tui_state *s;
    int key;
    const tui_layer *p;            /* the current layer resolved; NULL when the layer is out of range */
    sm_plan_effective eff;         /* its settings as the plan says them (entry, else defaults) */
    bool moe;                      /* the current layer is a MoE layer (then p is set) */
    int order[TUI_MAX_EXPERTS], n; /* its experts in cluster order: the heatmap's rows */
    bool heat, spec;               /* the heatmap / the spectrum is the view shown */
} key_ctx;

/* One handler per action (htop's Action.c style), bound to its keys in key_table below; each
 * returns the tui_action flags of its reaction. */
typedef int key_handler(key_ctx *c);

static int action_quit(key_ctx *c)
{
    if (c->s->modified) {
        c->s->dialog = TUI_DIALOG_QUIT;
        return TUI_ACT_REDRAW;
    }
    return TUI_ACT_QUIT;
}

static int action_help(key_ctx *c)
{
    c->s->dialog = TUI_DIALOG_HELP;
    c->s->help_page = 0;
    return TUI_ACT_REDRAW;
}

/* L: every message of the session, the newest at the bottom. */
static int action_log(key_ctx *c)
{
    c->s->dialog = TUI_DIALOG_LOG;
    c->s->log_scroll = 0;
    return TUI_ACT_REDRAW;
}

static int action_cancel(key_ctx *c)
{
    return c->s->busy ? TUI_ACT_CANCEL | TUI_ACT_REDRAW : TUI_ACT_NONE;
}

static int view_shown(tui_state *s, tui_view v)
{
    s->view = v;
    return TUI_ACT_REDRAW | (s->view == TUI_VIEW_SPECTRUM ? TUI_ACT_SPECTRUM : 0);
}

static int action_next_view(key_ctx *c)
{
    return view_shown(c->s, (tui_view)((c->s->view + 1) % TUI_VIEW_COUNT));
}

static int action_view(key_ctx *c)
{
    return view_shown(c->s, (tui_view)(c->key - '1'));
}

/* PgUp / PgDn in the heatmap: the cursor a page of rows and of columns on, so the grid shows the
 * next experts (or groups, in the overview); what a page is comes from the terminal's size. */
static int heat_page(key_ctx *c)
{
    tui_state *s = c->s;
    int dir = c->key == TUI_KEY_PGUP ? -1 : 1;
    tui_layout L = tui_layout_compute(s->screen_cols > 0 ? s->screen_cols : 80, s->screen_rows > 0 ? s->screen_rows : 24);
    static tui_layer u; /* large: not on the stack */
    int uci, ucj;
    tui_heat_geom g = tui_heat_view_geometry(s, L.main.w - 1, L.main.h - 2, &u, &uci, &ucj);
    int rows = g.nrows > 0 ? g.nrows : 1, cols = g.ncols > 0 ? g.ncols : 1;
    if (g.by_group) { /* to the first expert of the group a page on */
        int gi = uci + dir * rows, gj = ucj + dir * cols;
        gi = gi < 0 ? 0 : gi >= c->p->k ? c->p->k - 1 : gi;
        gj = gj < 0 ? 0 : gj >= c->p->k ? c->p->k - 1 : gj;
        for (int q = c->n - 1; q >= 0; q--) {
            if (c->p->assign[c->order[q]] == gi)
                s->ci = q;
            if (c->p->assign[c->order[q]] == gj)
                s->cj = q;
        }
    } else {
        s->ci += dir * rows, s->cj += dir * cols; /* tui_selection_settle keeps them inside */
    }
    return TUI_ACT_REDRAW;
}

/* /: a prompt for the expert the heatmap jumps to. */
static int action_jump_dialog(key_ctx *c)
{
    if (!c->heat || !c->moe)
        return TUI_ACT_NONE;
    tui_prompt_open(c->s, TUI_DIALOG_EXPERT, "");
    return TUI_ACT_REDRAW;
}

/* z: the heatmap's overview on or off (from another view: the heatmap, in its overview). */
static int action_overview(key_ctx *c)
{
    tui_state *s = c->s;
    s->heat_overview = !c->heat || !s->heat_overview;
    s->view = TUI_VIEW_HEATMAP;
    status(s, false, "heatmap %s", s->heat_overview ? "overview (z: cells again)" : "cells (z: overview)");
    return TUI_ACT_REDRAW;
}

static int action_layer_step(key_ctx *c)
{
    if (c->heat && c->moe && (c->key == TUI_KEY_PGUP || c->key == TUI_KEY_PGDN))
        return heat_page(c);
    c->s->layer = moe_step(c->s, c->s->layer, c->key == TUI_KEY_PGUP || c->key == 'K' ? -1 : 1);
    return layer_changed(c->s);
}

/* Up / down: the layer in the layer list, the row in the heatmap, the group in the spectrum. */
static int action_vertical(key_ctx *c)
{
    tui_state *s = c->s;
    int dir = c->key == TUI_KEY_UP || c->key == 'k' ? -1 : 1;
    if (s->view == TUI_VIEW_MODEL || s->view == TUI_VIEW_COMPARE) { /* the view's rows, in its order */
        int rows[TUI_MAX_LAYERS], n = tui_model_rows(s, rows), at = 0;
        if (s->view == TUI_VIEW_COMPARE) /* by layer */
            for (int l = 0, i = 0; l < s->n_layers; l++)
                if (s->is_moe[l])
                    rows[i++] = l;
        for (int i = 0; i < n; i++)
            if (rows[i] == s->layer)
                at = i;
        if (at + dir < 0 || at + dir >= n)
            return TUI_ACT_NONE;
        s->layer = rows[at + dir];
        return layer_changed(s);
    }
    if (s->view == TUI_VIEW_LAYERS) {
        int l = moe_step(s, s->layer, dir);
        if (l == s->layer)
            return TUI_ACT_NONE;
        s->layer = l;
        return layer_changed(s);
    }
    if (c->heat) {
        int ci = s->ci + dir;
        if (ci >= 0 && ci < c->n)
            s->ci = ci;
        return TUI_ACT_REDRAW;
    }
    if (c->spec && c->moe) { /* clusters */
        int cl = s->spec_cluster + dir;
        if (cl < 0 || cl >= c->p->k)
            return TUI_ACT_NONE;
        s->spec_cluster = cl;
        return TUI_ACT_REDRAW | TUI_ACT_SPECTRUM;
    }
    return TUI_ACT_NONE;
}

static int action_home_end(key_ctx *c)
{
    if (c->heat && c->n) {
        c->s->ci = c->s->cj = c->key == TUI_KEY_HOME ? 0 : c->n - 1;
        return TUI_ACT_REDRAW;
    }
    return TUI_ACT_NONE;
}

/* Left / right: the column in the heatmap, the shown matrix's rank in the spectrum ([ / ]: by one),
 * into the heatmap from the layer list. */
static int action_horizontal(key_ctx *c)
{
    tui_state *s = c->s;
    int key = c->key;
    int dir = key == TUI_KEY_LEFT || key == 'h' || key == '[' ? -1 : 1;
    bool fine = key == '[' || key == ']';
    if (c->heat && !fine) {
        int cj = s->cj + dir;
        if (cj >= 0 && cj < c->n)
            s->cj = cj;
        return TUI_ACT_REDRAW;
    }
    if (c->spec && c->moe) {
        sm_rank cur = tui_group_rank(s, s->layer, s->spec_cluster, s->spec_matrix);
        sm_rank r = rank_step(s, c->p, s->spec_cluster, s->spec_matrix, dir, fine);
        if (sm_rank_equal(&r, &cur))
            return TUI_ACT_NONE;
        if (tui_set_group_rank(s, s->layer, s->spec_cluster, s->spec_matrix, r)) {
            status(s, true, "layer %d has no group %d", s->layer, s->spec_cluster);
            return TUI_ACT_REDRAW;
        }
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    }
    if (s->view == TUI_VIEW_LAYERS && (key == TUI_KEY_RIGHT || key == 'l')) {
        s->view = TUI_VIEW_HEATMAP;
        return TUI_ACT_REDRAW;
    }
    return TUI_ACT_NONE;
}

static int action_similarity_kind(key_ctx *c)
{
    c->s->sim_kind = (c->s->sim_kind + 1) % 3;
    return TUI_ACT_REDRAW;
}

static int action_spectrum_matrix(key_ctx *c)
{
    c->s->spec_matrix = (c->s->spec_matrix + 1) % 3;
    return TUI_ACT_REDRAW;
}

static int action_spectrum_group(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    int cl = c->s->spec_cluster + (c->key == '<' || c->key == ',' ? -1 : 1);
    if (cl < 0 || cl >= c->p->k)
        return TUI_ACT_NONE;
    c->s->spec_cluster = cl;
    return TUI_ACT_REDRAW | TUI_ACT_SPECTRUM;
}

static int action_full_rank(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    tui_set_rank(c->s, c->s->layer, -1, (sm_rank){SM_RANK_FULL, 0, 0});
    status(c->s, false, "layer %d: full rank for gate, up and down of every group", c->s->layer);
    return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
}

static int action_rank_dialog(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    tui_state *s = c->s;
    /* in the spectrum: the shown group's matrix; in the model view: every (marked) layer; elsewhere:
     * the whole layer */
    s->rank_matrix = c->spec ? s->spec_matrix : s->view == TUI_VIEW_MODEL ? TUI_RANK_EVERY_LAYER : -1;
    tui_prompt_open(s, TUI_DIALOG_RANK, ""); /* empty: a typed digit is the rank, not appended to it */
    return TUI_ACT_REDRAW;
}

/* m: the row expert into the column expert's cluster; n: the row expert alone in a new cluster;
 * g: the row's and the column's clusters merged. */
static int action_cluster_edit(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    return cluster_key(c->s, c->p, c->key, c->order, c->n);
}

static int action_group_count(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    tui_state *s = c->s;
    const tui_layer *p = c->p;
    if (c->key == '+' && p->k >= p->n) {
        status(s, false, "layer %d: already one group per expert", s->layer);
        return TUI_ACT_REDRAW;
    }
    if (c->key == '-' && p->k <= (s->top_k > 0 ? s->top_k : 1)) {
        status(s, false, "layer %d: no fewer groups than experts per token (%d)", s->layer, s->top_k);
        return TUI_ACT_REDRAW;
    }
    /* groups at the new count now (the views walk them), k-means ones when they arrive */
    tui_set_group_count(s, s->layer, p->k + (c->key == '+' ? 1 : -1));
    status(s, false, "layer %d: re-clustering into %d groups (k-means, seed %llu)", s->layer, p->k,
           (unsigned long long)s->plan.seed);
    return TUI_ACT_REDRAW | TUI_ACT_RECLUSTER;
}

static int action_recluster(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    tui_state *s = c->s;
    tui_keep_groups(s, s->layer); /* k-means groups asked for by hand: auto keeps them */
    s->plan.seed++;
    status(s, false, "layer %d: re-clustering into %d groups (k-means, seed %llu)", s->layer, c->p->k,
           (unsigned long long)s->plan.seed);
    return TUI_ACT_REDRAW | TUI_ACT_RECLUSTER;
}

/* The status line and the reaction after apply-to-all changed n layers. */
static int applied(tui_state *s, int n, const char *what, const char *value)
{
    int t[TUI_MAX_LAYERS], targets = tui_model_targets(s, t);
    const char *kind = tui_any_marked(s) ? "marked" : "MoE", *layers = targets == 1 ? "layer" : "layers";
    if (n)
        status(s, false, "%s %s on %d of %d %s %s (u undoes %s)", what, value, n, targets, kind, layers,
               n == 1 ? "it" : "them all");
    else /* "on 0 of 1" read as a failure */
        status(s, false, "%s %s already on the %d %s %s: nothing changed", what, value, targets, kind, layers);
    return TUI_ACT_REDRAW | (n ? TUI_ACT_PREVIEW_ALL : 0);
}

/* The merge methods in turn, then auto, then the first method again. */
static int action_method(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    const tui_layer *p = c->p;
    bool is_auto = !p->is_auto && p->method + 1 >= SM_MERGE_METHOD_COUNT;
    sm_merge_method m = p->is_auto || is_auto ? SM_MERGE_SUBMOE : (sm_merge_method)(p->method + 1);
    if (c->s->view == TUI_VIEW_MODEL) { /* the step after the selected layer's, on every target */
        int n = tui_apply_method(c->s, is_auto, m);
        return applied(c->s, n, "method", is_auto ? "auto" : sm_merge_method_name(m));
    }
    tui_set_method(c->s, c->s->layer, is_auto, m);
    status(c->s, false, "layer %d: method %s", c->s->layer,
           p->is_auto ? "auto (merge or prune, whichever loses least)" : sm_merge_method_name(p->method));
    return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
}

/* A key that sets one per-layer setting is this: the entry's field set between tui_edit_begin and
 * tui_edit_end (undo, resolve), a status line, and a preview. */
static int action_align(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    const tui_layer *p = c->p;
    if (c->s->view == TUI_VIEW_MODEL) {
        bool on = !(!p->is_auto && sm_merge_method_merges(p->method) && p->align);
        return applied(c->s, tui_apply_align(c->s, on), "alignment", on ? "on (merging layers)" : "off");
    }
    if (p->is_auto || !sm_merge_method_merges(p->method)) {
        status(c->s, false, "alignment applies to merge methods; %s", p->is_auto ? "auto tries with and without it"
                                                                                  : "this method does not merge");
        return TUI_ACT_REDRAW;
    }
    sm_plan_layer *pl = tui_edit_begin(c->s, c->s->layer);
    pl->s.has_align = true, pl->s.align = !c->eff.align;
    tui_edit_end(c->s, c->s->layer);
    status(c->s, false, "layer %d: neuron alignment %s", c->s->layer, p->align ? "on" : "off");
    return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
}

/* refit: down, the merged down projections fitted to the members' routed outputs (DESIGN §2.10). */
static int action_refit(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    const tui_layer *p = c->p;
    if (p->is_auto || !sm_merge_method_merges(p->method)) {
        status(c->s, false, "refit applies to merge methods; %s", p->is_auto ? "auto tries with and without it"
                                                                              : "this method does not merge");
        return TUI_ACT_REDRAW;
    }
    sm_plan_layer *pl = tui_edit_begin(c->s, c->s->layer);
    pl->s.has_refit = true, pl->s.refit = !c->eff.refit;
    tui_edit_end(c->s, c->s->layer);
    status(c->s, false, "layer %d: refit %s", c->s->layer, c->eff.refit ? "none" : "down (merged down projections refitted)");
    return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
}

static int action_router(key_ctx *c)
{
    if (!c->moe)
        return TUI_ACT_NONE;
    if (c->s->view == TUI_VIEW_MODEL) {
        sm_router_mode r = (sm_router_mode)((c->p->router + 1) % SM_ROUTER_MODE_COUNT);
        return applied(c->s, tui_apply_router(c->s, r), "router", sm_router_mode_name(r));
    }
    sm_plan_layer *pl = tui_edit_begin(c->s, c->s->layer);
    pl->s.has_router = true, pl->s.router = (sm_router_mode)((c->eff.router + 1) % SM_ROUTER_MODE_COUNT);
    tui_edit_end(c->s, c->s->layer);
    status(c->s, false, "layer %d: router %s", c->s->layer, sm_router_mode_name(c->p->router));
    return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
}

static int action_undo(key_ctx *c)
{
    bool undo = c->key == 'u';
    int n = undo ? tui_undo(c->s) : tui_redo(c->s);
    if (n == 1)
        status(c->s, false, "%s (layer %d)", undo ? "undone" : "redone", c->s->layer);
    else if (n > 1)
        status(c->s, false, "%s on %d layers", undo ? "undone" : "redone", n);
    else
        status(c->s, false, "nothing to %s", undo ? "undo" : "redo");
    return TUI_ACT_REDRAW | (n > 1 ? TUI_ACT_PREVIEW_ALL : TUI_ACT_PREVIEW) | (c->spec ? TUI_ACT_SPECTRUM : 0);
}

static int action_preview(key_ctx *c)
{
    /* the compare view: the compared plan's layers not built yet too (after Esc stopped them) */
    int other = c->s->view == TUI_VIEW_COMPARE && c->s->other ? TUI_ACT_OTHER_ERRORS | TUI_ACT_REDRAW : 0;
    return (c->moe ? TUI_ACT_PREVIEW | TUI_ACT_FORCE | TUI_ACT_REDRAW : TUI_ACT_NONE) | other;
}

static int action_perplexity(key_ctx *c)
{
    /* the compare view: of the plan compared against too, on the same windows */
    bool both = c->s->view == TUI_VIEW_COMPARE && c->s->other;
    return TUI_ACT_PERPLEXITY | TUI_ACT_REDRAW | (both ? TUI_ACT_PPL_BOTH : 0);
}

static int action_accuracy(key_ctx *c)
{
    (void)c;
    return TUI_ACT_ACCURACY | TUI_ACT_REDRAW;
}

static int action_save_dialog(key_ctx *c)
{
    tui_prompt_open(c->s, TUI_DIALOG_SAVE, c->s->plan_path);
    return TUI_ACT_REDRAW;
}

static int action_open_dialog(key_ctx *c)
{
    tui_prompt_open(c->s, TUI_DIALOG_OPEN, c->s->plan_path);
    return TUI_ACT_REDRAW;
}

static int action_compare_dialog(key_ctx *c)
{
    tui_prompt_open(c->s, TUI_DIALOG_COMPARE, c->s->other ? c->s->other->path : c->s->plan_path);
    return TUI_ACT_REDRAW;
}

/* space: mark / unmark the selected layer for apply-to-all (the model view). */
static int action_mark(key_ctx *c)
{
    if (c->s->view != TUI_VIEW_MODEL || !c->moe)
        return TUI_ACT_NONE;
    c->s->marked[c->s->layer] = !c->s->marked[c->s->layer];
    int l = moe_step(c->s, c->s->layer, 1); /* on to the next layer, as a file manager's mark does */
    if (!c->s->model_sorted && l != c->s->layer) {
        c->s->layer = l;
        return layer_changed(c->s);
    }
    return TUI_ACT_REDRAW;
}

static int action_sort(key_ctx *c)
{
    if (c->s->view != TUI_VIEW_MODEL)
        return TUI_ACT_NONE;
    c->s->model_sorted = !c->s->model_sorted;
    status(c->s, false, "model view by %s", c->s->model_sorted ? "error, worst first" : "layer");
    return TUI_ACT_REDRAW;
}

/* Enter in the model view or the comparison: the selected layer's plan (view 1). */
static int action_enter(key_ctx *c)
{
    if (c->s->view != TUI_VIEW_MODEL && c->s->view != TUI_VIEW_COMPARE)
        return TUI_ACT_NONE;
    return view_shown(c->s, TUI_VIEW_LAYERS);
}

/* E: the current view as figures (tui_export.h), into the directory the prompt asks for. */
static int action_export_dialog(key_ctx *c)
{
    tui_prompt_open(c->s, TUI_DIALOG_EXPORT, c->s->export_dir[0] ? c->s->export_dir : TUI_EXPORT_DEFAULT_DIR);
    return TUI_ACT_REDRAW;
}

static int action_commit_dialog(key_ctx *c)
{
    tui_prompt_open(c->s, TUI_DIALOG_COMMIT, c->s->commit_dir);
    return TUI_ACT_REDRAW;
}

static int action_redraw(key_ctx *c)
{
    (void)c;
    return TUI_ACT_REDRAW;
}

/* The help overlay (?), beside the bindings it describes; NULL-terminated. A line is a section's
 * name (or blanks) to column 9, then items two spaces apart, each its keys ("J/K, PgDn/PgUp",
 * "j/k or Up/Down", "M r = a:") then what they do: tests/test_tui_walk.sh reads the keys from
 * the help screen this way and presses every one. */
const char *const tui_key_help[] = {
    "Views    1 plan  2 heatmap  3 spectrum  4 model  5 compare  Tab next view",
    "Layers   J/K, PgDn/PgUp outside the heatmap  j/k or Up/Down in view 1",
    "Heatmap  arrows, h/j/k/l move the cursor  s output/weight/router similarity",
    "         PgUp/PgDn page the experts  / jump to an expert  z overview",
    "         m row's expert into the column's group  n into a new group",
    "         g merge the row's and the column's groups  Home/End corners",
    "Spectrum h/l rank -/+ a sixteenth  [/] -/+1  x gate/up/down  j/k </> group",
    "Ranks    = type a rank (full, 64, 0.25)  f full rank for the whole layer",
    "Groups   +/- one group more/fewer (k-means)  c re-cluster (next seed)",
    "Method   M auto/submoe/.../keep  a neuron alignment  r router mode",
    "         R refit the merged down projections (refit: down)",
    "Preview  p this layer  P the plan's perplexity  A its accuracy  Esc cancels",
    "Model    space mark  S sort  Enter plan  M r = a: every (marked) layer",
    "Edits    u undo  U redo      ? this help  L the log of every message  q quit",
    "Files    w save  o open  O compare a plan (5)  C commit  E export figures",
    "",
    "error: relative MoE-block output error on held-out tokens (~ stale)",
    "method: * chosen by auto, +a neurons aligned before merging",
    NULL,
};

int tui_help_lines(int width, int first, char (*out)[TUI_WRAP_LINE], int max_lines)
{
    enum { INDENT = 9 }; /* "Spectrum " */
    int total = 0;
    for (int h = 0; tui_key_help[h]; h++) {
        const char *line = tui_key_help[h];
        bool keyed = strlen(line) > INDENT && line[INDENT - 1] == ' ' && line[INDENT] != ' ';
        char wrapped[16][TUI_WRAP_LINE];
        int nl = keyed ? tui_wrap(line + INDENT, width - INDENT, wrapped, 16, true) : tui_wrap(line, width, wrapped, 16, true);
        if (!nl)
            snprintf(wrapped[nl++], TUI_WRAP_LINE, "%s", ""); /* a blank line stays */
        for (int i = 0; i < nl; i++, total++) {
            int at = total - first;
            if (!out || at < 0 || at >= max_lines)
                continue;
            if (keyed)
                snprintf(out[at], TUI_WRAP_LINE, "%-*.*s%.1000s", INDENT, i ? 0 : INDENT, line, wrapped[i]);
            else
                snprintf(out[at], TUI_WRAP_LINE, "%.1000s", wrapped[i]);
        }
    }
    return total;
}

/* The key bindings; a key not here does nothing. The TUI_KEY_* codes are the largest keys. */
static key_handler *const key_table[TUI_KEY_END + 1] = {
    ['q'] = action_quit,
    ['?'] = action_help,
    [TUI_KEY_ESC] = action_cancel,
    [TUI_KEY_TAB] = action_next_view,
    ['1'] = action_view, ['2'] = action_view, ['3'] = action_view,
    ['4'] = action_view, ['5'] = action_view,
    [' '] = action_mark,
    ['S'] = action_sort,
    [TUI_KEY_ENTER] = action_enter,
    ['O'] = action_compare_dialog,
    [TUI_KEY_PGUP] = action_layer_step, ['K'] = action_layer_step,
    [TUI_KEY_PGDN] = action_layer_step, ['J'] = action_layer_step,
    [TUI_KEY_UP] = action_vertical, ['k'] = action_vertical,
    [TUI_KEY_DOWN] = action_vertical, ['j'] = action_vertical,
    [TUI_KEY_HOME] = action_home_end, [TUI_KEY_END] = action_home_end,
    [TUI_KEY_LEFT] = action_horizontal, ['h'] = action_horizontal,
    [TUI_KEY_RIGHT] = action_horizontal, ['l'] = action_horizontal,
    ['['] = action_horizontal, [']'] = action_horizontal,
    ['L'] = action_log,
    ['s'] = action_similarity_kind,
    ['x'] = action_spectrum_matrix,
    ['<'] = action_spectrum_group, [','] = action_spectrum_group,
    ['>'] = action_spectrum_group, ['.'] = action_spectrum_group,
    ['f'] = action_full_rank,
    ['='] = action_rank_dialog,
    ['/'] = action_jump_dialog,
    ['z'] = action_overview,
    ['m'] = action_cluster_edit, ['n'] = action_cluster_edit, ['g'] = action_cluster_edit,
    ['+'] = action_group_count, ['-'] = action_group_count,
    ['c'] = action_recluster,
    ['M'] = action_method,
    ['a'] = action_align,
    ['R'] = action_refit,
    ['r'] = action_router,
    ['u'] = action_undo,
    ['U'] = action_undo, [18] = action_undo, /* ctrl-r */
    ['p'] = action_preview,
    ['P'] = action_perplexity,
    ['A'] = action_accuracy,
    ['w'] = action_save_dialog,
    ['o'] = action_open_dialog,
    ['C'] = action_commit_dialog,
    ['E'] = action_export_dialog,
    [TUI_KEY_RESIZE] = action_redraw,
};

static int key_action(tui_state *s, int key)
{
    if (s->dialog == TUI_DIALOG_HELP) /* the overlays page; every other dialog takes input */
        return help_key(s, key);
    if (s->dialog == TUI_DIALOG_LOG)
        return log_key(s, key);
    if (s->dialog != TUI_DIALOG_NONE)
        return tui_prompt_key(s, key);
    if (key < 0 || key > TUI_KEY_END || !key_table[key])
        return TUI_ACT_NONE;
    key_ctx c = {.s = s, .key = key};
    c.p = s->layer >= 0 && s->layer < s->n_layers ? &s->res[s->layer] : NULL;
    c.moe = c.p && s->is_moe[s->layer];
    c.n = c.moe ? tui_cluster_order(c.p, c.order) : 0;
    if (c.moe)
        sm_plan_effective_settings(&s->plan, tui_entry(s, s->layer), &c.eff);
    c.heat = s->view == TUI_VIEW_HEATMAP;
    c.spec = s->view == TUI_VIEW_SPECTRUM;
    return key_table[key](&c);
}

/* The work a key starts: a message about what was there before no longer applies. */
#define TUI_ACT_WORK (TUI_ACT_PREVIEW | TUI_ACT_PERPLEXITY | TUI_ACT_SAVE | TUI_ACT_COMMIT | TUI_ACT_RECLUSTER | \
                      TUI_ACT_SPECTRUM | TUI_ACT_OPEN | TUI_ACT_ACCURACY)

int tui_key(tui_state *s, int key)
{
    int said = s->n_log, layer = s->layer;
    tui_view view = s->view;
    bool dialog = s->dialog != TUI_DIALOG_NONE;
    int act = key_action(s, key);
    /* the shown message's context changed (and the key said nothing new): clear it */
    if (!dialog && s->n_log == said && (s->layer != layer || s->view != view || (act & TUI_ACT_WORK)))
        tui_say_clear(s);
    tui_selection_settle(s); /* whatever the key changed, the cursors stay inside */
    return act;
}
