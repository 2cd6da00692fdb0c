/* tui_compare: a second plan beside the workbench's own (view 5, see tui_state.h). It is resolved
 * by the same resolver against the same model, layer by layer, as the workbench resolves its own
 * plan (tui_plan.c), so the differences shown are differences of what `submoe apply` would build. */
#include "tui/tui_state.h"
#include "util/mem.h"

#include <stdio.h>
#include <string.h>

static const sm_plan_layer *other_entry(const tui_state *s, int layer)
{
    return sm_plan_find_layer(&s->other->plan, layer);
}

const sm_plan_layer *tui_other_entry(const tui_state *s, int layer)
{
    return other_entry(s, layer);
}

/* The rank group c's matrix j is merged at by entry pl: its own, else the layer's. */
static sm_rank group_rank(const sm_plan_layer *pl, const tui_layer *p, int c, int j)
{
    for (int i = 0; pl && i < pl->n_clusters; i++)
        if (pl->clusters[i].index == c && pl->clusters[i].rank.set[j])
            return pl->clusters[i].rank.r[j];
    return p->rank[j];
}

bool tui_entry_group_ranks(const sm_plan_layer *pl, const tui_layer *p)
{
    for (int c = 0; pl && c < p->k; c++)
        for (int j = 0; j < 3; j++) {
            sm_rank r = group_rank(pl, p, c, j);
            if (!sm_rank_equal(&r, &p->rank[j]))
                return true;
        }
    return false;
}

void tui_other_open(tui_state *s, sm_plan *p, const char *path)
{
    tui_other_close(s);
    tui_other *o = xcalloc(1, sizeof *o);
    o->plan = *p;
    memset(p, 0, sizeof *p);
    snprintf(o->path, sizeof o->path, "%s", path);
    o->ppl = -1;
    /* every MoE layer an entry first (the array may move), then each resolved */
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l])
            tui_plan_entry_init(&o->plan, l, s->res[l].n, s->top_k, o->clustered[l]);
    s->other = o;
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->is_moe[l])
            continue;
        o->res[l].n = s->res[l].n;
        const sm_plan_layer *pl = other_entry(s, l);
        tui_refresh_entry(&o->plan, pl, l, o->clustered[l], &o->res[l]);
        o->grouped[l] = pl->n_groups > 0; /* else the worker clusters them */
    }
}

void tui_other_resolve(const tui_state *s, int layer, sm_resolved_layer *rl)
{
    const tui_other *o = s->other;
    tui_resolve_entry(&o->plan, other_entry(s, layer), layer, o->res[layer].n, o->clustered[layer], NULL, rl);
}

void tui_other_set_groups(tui_state *s, int layer, const int *assign)
{
    tui_other *o = s->other;
    const sm_plan_layer *pl = other_entry(s, layer);
    tui_layer g = o->res[layer];
    if (pl->n_groups || tui_plan_set_groups(&g, assign) || g.k != o->res[layer].k)
        return; /* the entry's own groups, or not a grouping at its count */
    memcpy(o->clustered[layer], g.assign, sizeof(int) * (size_t)g.n);
    tui_refresh_entry(&o->plan, pl, layer, o->clustered[layer], &o->res[layer]);
    o->grouped[layer] = true;
}

int tui_groups_moved(const tui_layer *a, const tui_layer *b)
{
    int moved = 0;
    for (int i = 0; i < a->n && i < b->n; i++)
        for (int j = 0; j < a->n && j < b->n; j++)
            if ((a->assign[i] == a->assign[j]) != (b->assign[i] == b->assign[j])) {
                moved++;
                break;
            }
    return moved;
}

unsigned tui_compare_layer(const tui_state *s, int layer)
{
    const tui_layer *a = &s->res[layer], *b = &s->other->res[layer];
    unsigned d = 0;
    if (a->k != b->k || (s->other->grouped[layer] && tui_groups_moved(a, b)))
        d |= TUI_DIFF_GROUPS;
    if (a->is_auto != b->is_auto || (!a->is_auto && a->method != b->method))
        d |= TUI_DIFF_METHOD;
    if (a->router != b->router)
        d |= TUI_DIFF_ROUTER;
    /* the rank each group is merged at: the layer's, or the group's own */
    const sm_plan_layer *pa = tui_entry_c(s, layer), *pb = other_entry(s, layer);
    int k = a->k > b->k ? a->k : b->k;
    for (int c = 0; c < k; c++)
        for (int j = 0; j < 3; j++) {
            sm_rank ra = group_rank(pa, a, c, j), rb = group_rank(pb, b, c, j);
            if (!sm_rank_equal(&ra, &rb))
                d |= TUI_DIFF_RANK;
        }
    bool merges = !a->is_auto && !b->is_auto && sm_merge_method_merges(a->method);
    if (merges && a->align != b->align)
        d |= TUI_DIFF_ALIGN;
    return d;
}

int64_t tui_other_params(const tui_state *s, int layer)
{
    const tui_other *o = s->other;
    return o->params[layer] > 0 ? o->params[layer] : tui_entry_params(s, &o->res[layer], other_entry(s, layer));
}

int64_t tui_other_model_params(const tui_state *s)
{
    int64_t before = 0, after = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l]) {
            before += (int64_t)s->res[l].n * 3 * s->hidden * s->inter;
            after += tui_other_params(s, l);
        }
    return s->total_params - before + after;
}
