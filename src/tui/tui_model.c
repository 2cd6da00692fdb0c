/* tui_model: the model view's state (see tui_state.h) — its rows in order, the layers it
 * targets, and one setting set on all of them as a single undo step (issue 19: 48 presses of `r`
 * for a 48-layer model were one too many). Each change is an edit of a layer's entry, as the
 * per-layer keys make it (tui_plan.c). */
#include "tui/tui_state.h"

#include <stdlib.h>

static const tui_state *sort_state; /* qsort has no context argument; the UI thread only */

/* Worst error first; layers without a preview after those with one; then by layer. */
static int by_error(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    const tui_layer_data *da = &sort_state->data[a], *db = &sort_state->data[b];
    if (da->have_preview != db->have_preview)
        return da->have_preview ? -1 : 1;
    if (da->have_preview && da->output_error != db->output_error)
        return da->output_error > db->output_error ? -1 : 1;
    return a - b;
}

int tui_model_rows(const tui_state *s, int *layers)
{
    int n = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l])
            layers[n++] = l;
    if (s->model_sorted) {
        sort_state = s;
        qsort(layers, (size_t)n, sizeof *layers, by_error);
        sort_state = NULL;
    }
    return n;
}

bool tui_any_marked(const tui_state *s)
{
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l] && s->marked[l])
            return true;
    return false;
}

int tui_model_targets(const tui_state *s, int *layers)
{
    int n = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l] && s->marked[l])
            layers[n++] = l;
    if (n)
        return n;
    for (int l = 0; l < s->n_layers; l++) /* none marked: every layer */
        if (s->is_moe[l])
            layers[n++] = l;
    return n;
}

/* The change each apply makes to one layer; returns whether it changes anything (then it has
 * edited the entry between tui_edit_begin and tui_edit_end). */
typedef struct {
    int what; /* 0 method, 1 router, 2 align, 3 rank */
    bool is_auto, align;
    sm_merge_method method;
    sm_router_mode router;
    sm_rank rank;
} apply_change;

static bool apply_one(tui_state *s, int l, const apply_change *c)
{
    const tui_layer *p = &s->res[l];
    switch (c->what) {
    case 0:
        if (p->is_auto == c->is_auto && (c->is_auto || p->method == c->method))
            return false;
        tui_set_method(s, l, c->is_auto, c->method);
        return true;
    case 1: {
        if (p->router == c->router)
            return false;
        sm_plan_layer *pl = tui_edit_begin(s, l);
        pl->s.has_router = true, pl->s.router = c->router;
        tui_edit_end(s, l);
        return true;
    }
    case 2: {
        if (p->is_auto || !sm_merge_method_merges(p->method) || p->align == c->align)
            return false;
        sm_plan_layer *pl = tui_edit_begin(s, l);
        pl->s.has_align = true, pl->s.align = c->align;
        tui_edit_end(s, l);
        return true;
    }
    default: {
        bool same = !tui_has_group_ranks(s, l);
        for (int j = 0; j < 3; j++)
            same = same && sm_rank_equal(&p->rank[j], &c->rank);
        if (same)
            return false;
        tui_set_rank(s, l, -1, c->rank);
        return true;
    }
    }
}

static int apply_all(tui_state *s, const apply_change *c)
{
    int layers[TUI_MAX_LAYERS], n = tui_model_targets(s, layers), changed = 0;
    tui_edit_batch_begin(s);
    for (int i = 0; i < n; i++)
        changed += apply_one(s, layers[i], c);
    tui_edit_batch_end(s);
    return changed;
}

int tui_apply_method(tui_state *s, bool is_auto, sm_merge_method m)
{
    return apply_all(s, &(apply_change){.what = 0, .is_auto = is_auto, .method = m});
}

int tui_apply_router(tui_state *s, sm_router_mode r)
{
    return apply_all(s, &(apply_change){.what = 1, .router = r});
}

int tui_apply_align(tui_state *s, bool align)
{
    return apply_all(s, &(apply_change){.what = 2, .align = align});
}

int tui_apply_rank(tui_state *s, sm_rank r)
{
    return apply_all(s, &(apply_change){.what = 3, .rank = r});
}

int64_t tui_apply_rank_max(const tui_state *s)
{
    int layers[TUI_MAX_LAYERS], n = tui_model_targets(s, layers);
    int64_t max = -1;
    for (int i = 0; i < n; i++) {
        const tui_layer *p = &s->res[layers[i]];
        for (int c = 0; c < p->k; c++)
            for (int j = 0; j < 3; j++) {
                int64_t m = tui_rank_max(s, j, tui_cluster_size(p, c));
                max = max < 0 || m < max ? m : max;
            }
    }
    return max < 1 ? 1 : max;
}
