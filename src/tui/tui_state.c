/* tui_state: workbench state, key handling, edits and layout, without curses (see tui_state.h). */
#include "tui/tui_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tui_state_init(tui_state *s)
{
    memset(s, 0, sizeof *s);
    s->ppl_original = s->ppl_plan = -1;
    s->seed = 1;
    s->color = true;
    s->utf8 = true;
}

void tui_state_free_data(tui_state *s)
{
    for (int l = 0; l < s->n_layers && l < 512; l++) {
        for (int q = 0; q < 3; q++) {
            free(s->data[l].sim[q]);
            free(s->data[l].spec[q]);
            s->data[l].sim[q] = s->data[l].spec[q] = NULL;
        }
    }
}

static void canonical(tui_layer_plan *p)
{
    int map[TUI_MAX_EXPERTS], next = 0;
    for (int c = 0; c < TUI_MAX_EXPERTS; c++)
        map[c] = -1;
    for (int i = 0; i < p->n; i++) {
        int c = p->assign[i];
        if (map[c] < 0)
            map[c] = next++;
        p->assign[i] = map[c];
    }
    p->k = next;
}

void tui_edit_begin(tui_state *s, int layer)
{
    if (s->n_undo == TUI_UNDO) {
        memmove(s->undo, s->undo + 1, sizeof s->undo[0] * (TUI_UNDO - 1));
        s->n_undo--;
    }
    s->undo[s->n_undo].layer = layer;
    s->undo[s->n_undo++].before = s->plan[layer];
    s->n_redo = 0;
    s->modified = true;
    s->plan_gen[layer]++;
}

int tui_move_expert(tui_state *s, int layer, int expert, int cluster)
{
    tui_layer_plan *p = &s->plan[layer];
    if (expert < 0 || expert >= p->n || cluster < 0 || cluster > p->k)
        return -1;
    if (p->assign[expert] == cluster)
        return 0;
    tui_edit_begin(s, layer);
    p->assign[expert] = cluster == p->k ? TUI_MAX_EXPERTS - 1 : cluster; /* a new cluster, relabelled below */
    canonical(p);
    return 0;
}

int tui_merge_clusters(tui_state *s, int layer, int a, int b)
{
    tui_layer_plan *p = &s->plan[layer];
    if (a == b || a < 0 || b < 0 || a >= p->k || b >= p->k)
        return -1;
    tui_edit_begin(s, layer);
    for (int i = 0; i < p->n; i++)
        if (p->assign[i] == b)
            p->assign[i] = a;
    canonical(p);
    return 0;
}

void tui_set_rank(tui_state *s, int layer, int matrix, sm_rank r)
{
    tui_edit_begin(s, layer);
    for (int j = 0; j < 3; j++)
        if (matrix < 0 || matrix == j)
            s->plan[layer].rank[j] = r;
}

static bool swap_plan(tui_state *s, bool undo)
{
    int *n = undo ? &s->n_undo : &s->n_redo, *m = undo ? &s->n_redo : &s->n_undo;
    typeof(s->undo[0]) *from = undo ? s->undo : s->redo, *to = undo ? s->redo : s->undo;
    if (*n == 0)
        return false;
    int l = from[*n - 1].layer;
    to[*m].layer = l;
    to[*m].before = s->plan[l];
    (*m)++;
    s->plan[l] = from[--*n].before;
    s->plan_gen[l]++;
    s->layer = l;
    s->modified = true;
    return true;
}

bool tui_undo(tui_state *s)
{
    return swap_plan(s, true);
}

bool tui_redo(tui_state *s)
{
    return swap_plan(s, false);
}

int tui_cluster_order(const tui_layer_plan *p, int *order)
{
    int pos = 0;
    for (int c = 0; c < p->k; c++)
        for (int i = 0; i < p->n; i++)
            if (p->assign[i] == c)
                order[pos++] = i;
    return pos;
}

int64_t tui_plan_params(const tui_state *s, int layer)
{
    const tui_layer_plan *p = &s->plan[layer];
    int64_t per = 3 * s->hidden * s->inter;
    if (p->method == SM_MERGE_KEEP && !p->is_auto)
        return per * p->n;
    if (p->method == SM_MERGE_SUBMOE_WHITENED && !p->is_auto) {
        int64_t tot = 0;
        for (int j = 0; j < 3; j++) {
            int64_t out = j == 2 ? s->hidden : s->inter, in = j == 2 ? s->inter : s->hidden, r = 0;
            if (sm_rank_resolve(&p->rank[j], p->method, out, in, 2, &r) || r == 0)
                tot += out * in;
            else
                tot += r * (out + in);
        }
        return tot * p->k;
    }
    return per * p->k;
}

static int moe_step(const tui_state *s, int from, int dir)
{
    for (int l = from + dir; l >= 0 && l < s->n_layers; l += dir)
        if (s->is_moe[l])
            return l;
    return from;
}

static sm_rank rank_step(const tui_state *s, sm_rank r, int matrix, int dir)
{
    int64_t out = matrix == 2 ? s->hidden : s->inter, in = matrix == 2 ? s->inter : s->hidden;
    int64_t max = out < 2 * in ? out : 2 * in, step = max / 16 > 0 ? max / 16 : 1, cur;
    if (r.kind == SM_RANK_FULL)
        cur = max;
    else if (r.kind == SM_RANK_COUNT)
        cur = r.count;
    else
        cur = (int64_t)(r.fraction * (double)max);
    cur += dir * step;
    if (cur >= max)
        return (sm_rank){SM_RANK_FULL, 0, 0};
    if (cur < 1)
        cur = 1;
    return (sm_rank){SM_RANK_COUNT, cur, 0};
}

static int dialog_key(tui_state *s, int key)
{
    size_t n = strlen(s->input);
    switch (s->dialog) {
    case TUI_DIALOG_HELP:
        s->dialog = TUI_DIALOG_NONE;
        return TUI_ACT_REDRAW;
    case TUI_DIALOG_QUIT:
        s->dialog = TUI_DIALOG_NONE;
        if (key == 'y' || key == 'Y')
            return TUI_ACT_QUIT;
        snprintf(s->status, sizeof s->status, "quit cancelled");
        return TUI_ACT_REDRAW;
    case TUI_DIALOG_OVERWRITE:
        s->dialog = TUI_DIALOG_NONE;
        if (key == 'y' || key == 'Y')
            return TUI_ACT_COMMIT | TUI_ACT_REDRAW;
        snprintf(s->status, sizeof s->status, "commit cancelled: %.200s exists", s->input);
        return TUI_ACT_REDRAW;
    case TUI_DIALOG_COMMIT:
        if (key == TUI_KEY_ESC) {
            s->dialog = TUI_DIALOG_NONE;
            snprintf(s->status, sizeof s->status, "commit cancelled");
        } else if (key == TUI_KEY_ENTER || key == '\r') {
            s->dialog = TUI_DIALOG_NONE;
            if (!n)
                snprintf(s->status, sizeof s->status, "commit cancelled: no directory");
            else
                return TUI_ACT_COMMIT | TUI_ACT_REDRAW;
        } else if (key == TUI_KEY_TAB) {
            s->commit_format = (s->commit_format + 1) % 3;
        } else if (key == TUI_KEY_BACKSPACE || key == 127 || key == 8) {
            if (n)
                s->input[n - 1] = 0;
        } else if (key >= 32 && key < 127 && n + 1 < sizeof s->input) {
            s->input[n] = (char)key;
            s->input[n + 1] = 0;
        }
        return TUI_ACT_REDRAW;
    default:
        return TUI_ACT_NONE;
    }
}

int tui_key(tui_state *s, int key)
{
    if (s->dialog != TUI_DIALOG_NONE)
        return dialog_key(s, key);
    tui_layer_plan *p = s->layer >= 0 && s->layer < s->n_layers ? &s->plan[s->layer] : NULL;
    bool moe = p && s->is_moe[s->layer];
    int order[TUI_MAX_EXPERTS], n = moe ? tui_cluster_order(p, order) : 0;
    switch (key) {
    case 'q':
        if (s->modified) {
            s->dialog = TUI_DIALOG_QUIT;
            return TUI_ACT_REDRAW;
        }
        return TUI_ACT_QUIT;
    case '?':
        s->dialog = TUI_DIALOG_HELP;
        return TUI_ACT_REDRAW;
    case TUI_KEY_ESC:
        return s->busy ? TUI_ACT_CANCEL | TUI_ACT_REDRAW : TUI_ACT_NONE;
    case TUI_KEY_TAB:
        s->view = (tui_view)((s->view + 1) % TUI_VIEW_COUNT);
        return TUI_ACT_REDRAW | (s->view == TUI_VIEW_SPECTRUM ? TUI_ACT_SPECTRUM : 0);
    case '1': case '2': case '3':
        s->view = (tui_view)(key - '1');
        return TUI_ACT_REDRAW | (s->view == TUI_VIEW_SPECTRUM ? TUI_ACT_SPECTRUM : 0);
    case TUI_KEY_PGUP:
    case 'K':
        s->layer = moe_step(s, s->layer, -1);
        s->ci = s->cj = s->spec_cluster = 0;
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW | TUI_ACT_SPECTRUM;
    case TUI_KEY_PGDN:
    case 'J':
        s->layer = moe_step(s, s->layer, 1);
        s->ci = s->cj = s->spec_cluster = 0;
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW | TUI_ACT_SPECTRUM;
    case TUI_KEY_UP:
    case 'k':
        if (s->view == TUI_VIEW_LAYERS) {
            s->layer = moe_step(s, s->layer, -1);
            return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
        }
        if (s->view == TUI_VIEW_HEATMAP && s->ci > 0)
            s->ci--;
        return TUI_ACT_REDRAW;
    case TUI_KEY_DOWN:
    case 'j':
        if (s->view == TUI_VIEW_LAYERS) {
            s->layer = moe_step(s, s->layer, 1);
            return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
        }
        if (s->view == TUI_VIEW_HEATMAP && s->ci + 1 < n)
            s->ci++;
        return TUI_ACT_REDRAW;
    case TUI_KEY_LEFT:
    case 'h':
        if (s->view == TUI_VIEW_HEATMAP && s->cj > 0)
            s->cj--;
        if (s->view == TUI_VIEW_SPECTRUM && moe) {
            tui_set_rank(s, s->layer, s->spec_matrix, rank_step(s, p->rank[s->spec_matrix], s->spec_matrix, -1));
            return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
        }
        return TUI_ACT_REDRAW;
    case TUI_KEY_RIGHT:
    case 'l':
        if (s->view == TUI_VIEW_HEATMAP && s->cj + 1 < n)
            s->cj++;
        if (s->view == TUI_VIEW_SPECTRUM && moe) {
            tui_set_rank(s, s->layer, s->spec_matrix, rank_step(s, p->rank[s->spec_matrix], s->spec_matrix, 1));
            return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
        }
        return TUI_ACT_REDRAW;
    case 's':
        s->sim_kind = (s->sim_kind + 1) % 3;
        return TUI_ACT_REDRAW;
    case 'x':
        s->spec_matrix = (s->spec_matrix + 1) % 3;
        return TUI_ACT_REDRAW;
    case '<':
    case ',':
        if (moe && s->spec_cluster > 0)
            s->spec_cluster--;
        return TUI_ACT_REDRAW | TUI_ACT_SPECTRUM;
    case '>':
    case '.':
        if (moe && s->spec_cluster + 1 < p->k)
            s->spec_cluster++;
        return TUI_ACT_REDRAW | TUI_ACT_SPECTRUM;
    case 'f':
        if (moe) {
            tui_set_rank(s, s->layer, -1, (sm_rank){SM_RANK_FULL, 0, 0});
            snprintf(s->status, sizeof s->status, "layer %d: full rank", s->layer);
        }
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    case 'm': /* move the row expert into the column expert's cluster */
    case 'n': /* the row expert alone in a new cluster */
    case 'g': /* merge the row's and the column's clusters */
        if (!moe || s->view != TUI_VIEW_HEATMAP || s->ci >= n || s->cj >= n)
            return TUI_ACT_NONE;
        {
            int ei = order[s->ci], ej = order[s->cj];
            int rc = key == 'm' ? tui_move_expert(s, s->layer, ei, p->assign[ej])
                     : key == 'n' ? tui_move_expert(s, s->layer, ei, p->k)
                                  : tui_merge_clusters(s, s->layer, p->assign[ei], p->assign[ej]);
            if (rc == 0)
                snprintf(s->status, sizeof s->status, "layer %d: %s (%d clusters)", s->layer,
                         key == 'm' ? "expert moved" : key == 'n' ? "new cluster" : "clusters merged", p->k);
        }
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    case '+':
    case '-':
        if (!moe)
            return TUI_ACT_NONE;
        if ((key == '+' && p->k >= p->n) || (key == '-' && p->k <= (s->top_k > 0 ? s->top_k : 1)))
            return TUI_ACT_NONE;
        tui_edit_begin(s, s->layer);
        p->k += key == '+' ? 1 : -1;
        snprintf(s->status, sizeof s->status, "layer %d: re-clustering into %d", s->layer, p->k);
        return TUI_ACT_REDRAW | TUI_ACT_RECLUSTER;
    case 'c':
        if (!moe)
            return TUI_ACT_NONE;
        tui_edit_begin(s, s->layer);
        s->seed++;
        snprintf(s->status, sizeof s->status, "layer %d: k-means with seed %llu", s->layer,
                 (unsigned long long)s->seed);
        return TUI_ACT_REDRAW | TUI_ACT_RECLUSTER;
    case 'M':
        if (!moe)
            return TUI_ACT_NONE;
        tui_edit_begin(s, s->layer);
        if (p->is_auto) {
            p->is_auto = false;
            p->method = SM_MERGE_SUBMOE;
        } else if (p->method + 1 < SM_MERGE_METHOD_COUNT) {
            p->method = (sm_merge_method)(p->method + 1);
        } else {
            p->is_auto = true;
            p->method = SM_MERGE_SUBMOE;
        }
        snprintf(s->status, sizeof s->status, "layer %d: method %s", s->layer,
                 p->is_auto ? "auto" : sm_merge_method_name(p->method));
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    case 'r':
        if (!moe)
            return TUI_ACT_NONE;
        tui_edit_begin(s, s->layer);
        p->router = (sm_router_mode)((p->router + 1) % 3);
        snprintf(s->status, sizeof s->status, "layer %d: router %s", s->layer, sm_router_mode_name(p->router));
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    case 'u':
        if (tui_undo(s))
            snprintf(s->status, sizeof s->status, "undone (layer %d)", s->layer);
        else
            snprintf(s->status, sizeof s->status, "nothing to undo");
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    case 'U':
    case 18: /* ctrl-r */
        if (tui_redo(s))
            snprintf(s->status, sizeof s->status, "redone (layer %d)", s->layer);
        else
            snprintf(s->status, sizeof s->status, "nothing to redo");
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    case 'p':
        return TUI_ACT_PREVIEW | TUI_ACT_REDRAW;
    case 'P':
        return TUI_ACT_PERPLEXITY | TUI_ACT_REDRAW;
    case 'w':
        return TUI_ACT_SAVE | TUI_ACT_REDRAW;
    case 'C':
        s->dialog = TUI_DIALOG_COMMIT;
        return TUI_ACT_REDRAW;
    case TUI_KEY_RESIZE:
        return TUI_ACT_REDRAW;
    default:
        return TUI_ACT_NONE;
    }
}

tui_layout tui_layout_compute(int cols, int rows)
{
    tui_layout L;
    memset(&L, 0, sizeof L);
    L.too_small = cols < 60 || rows < 16;
    if (cols < 1 || rows < 3)
        return L;
    L.header = (tui_rect){0, 0, 2, cols};
    L.status = (tui_rect){rows - 1, 0, 1, cols};
    int body = rows - 3;
    /* the layer list needs 36 columns; the rest goes to the heatmap / spectrum */
    int left = cols >= 120 ? 44 : 36;
    if (left > cols / 2)
        left = cols / 2;
    L.layers = (tui_rect){2, 0, body, left};
    int rw = cols - left;
    int dh = body >= 20 ? 6 : body / 4;
    L.main = (tui_rect){2, left, body - dh, rw};
    L.detail = (tui_rect){2 + body - dh, left, dh, rw};
    return L;
}

int tui_shade(double v, double lo, double hi, int levels)
{
    if (!(hi > lo))
        return levels - 1;
    double t = (v - lo) / (hi - lo);
    int i = (int)(t * levels);
    return i < 0 ? 0 : i >= levels ? levels - 1 : i;
}
