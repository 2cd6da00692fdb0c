/* tui_plan: the workbench's plan — the state's sm_plan, one entry per MoE layer — and its edits
 * (see tui_state.h). Every edit changes the layer's entry (undo keeps a copy of it), then the
 * layer is resolved again with pipeline/resolve.h's sm_resolve_layer, as `submoe apply` resolves
 * the saved plan: what the views show is what the plan means. */
#include "engine/merge.h"
#include "pipeline/planner.h"
#include "tui/tui_state.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

sm_plan_layer *tui_entry(tui_state *s, int layer)
{
    return layer >= 0 && layer < TUI_MAX_LAYERS && s->entry[layer] >= 0 ? &s->plan.layers[s->entry[layer]] : NULL;
}

const sm_plan_layer *tui_entry_c(const tui_state *s, int layer)
{
    return layer >= 0 && layer < TUI_MAX_LAYERS && s->entry[layer] >= 0 ? &s->plan.layers[s->entry[layer]] : NULL;
}

/* The entry's count: its groups', else its experts'. */
static int entry_k(const sm_plan_layer *pl)
{
    return pl->n_groups ? pl->n_groups : pl->s.has_experts ? pl->s.experts : 0;
}

int tui_plan_entry_init(sm_plan *p, int layer, int n, int top_k, int *clustered)
{
    int at = -1;
    for (int i = 0; i < p->n_layers && at < 0; i++)
        if (p->layers[i].layer == layer)
            at = i;
    if (at < 0) { /* a layer the plan does not name: its defaults */
        p->layers = xrealloc(p->layers, sizeof *p->layers * (size_t)(p->n_layers + 1));
        at = p->n_layers++;
        memset(&p->layers[at], 0, sizeof p->layers[at]);
        p->layers[at].layer = layer;
    }
    sm_plan_layer *pl = &p->layers[at];
    if (!entry_k(pl)) { /* the plan's target, else the workbench's, by the planner's rule */
        sm_planner_opts o;
        bool target = sm_resolve_planner_opts(p, &o);
        pl->s.has_experts = true;
        pl->s.experts = sm_planner_target_k(target ? o.experts : 0, target ? o.ratio : TUI_DEFAULT_RATIO, n, top_k);
    }
    for (int i = 0; i < n; i++) /* until calibration clusters them */
        clustered[i] = i % entry_k(pl);
    return at;
}

void tui_plan_layer_init(tui_state *s, int layer, int n)
{
    s->entry[layer] = tui_plan_entry_init(&s->plan, layer, n, s->top_k, s->clustered[layer]);
    s->res[layer].n = n;
    tui_layer_refresh(s, layer);
}

void tui_resolve_entry(const sm_plan *p, const sm_plan_layer *pl, int layer, int n, const int *clustered,
                       const char *chosen, sm_resolved_layer *rl)
{
    sm_plan_layer e;
    sm_plan_layer_copy(&e, pl);
    /* the workbench clusters a layer itself (with the entry's clustering and similarity, below):
     * its groups are the resolver's `clustered`, as the planner's are for `submoe apply` */
    e.s.has_clustering = e.s.has_similarity = false;
    if (chosen && !e.chosen)
        e.chosen = xstrdup(chosen);
    sm_resolve_layer(p, &e, layer, n, entry_k(pl), pl->n_groups ? NULL : clustered, rl);
    sm_plan_effective eff;
    sm_plan_effective_settings(p, pl, &eff);
    rl->job.algo = eff.clustering;
    rl->job.sim = eff.similarity;
    sm_plan_layer_free(&e);
}

void tui_layer_resolve(const tui_state *s, int layer, const char *chosen, sm_resolved_layer *rl)
{
    tui_resolve_entry(&s->plan, tui_entry_c(s, layer), layer, s->res[layer].n, s->clustered[layer], chosen, rl);
}

void tui_refresh_entry(const sm_plan *p, const sm_plan_layer *pl, int layer, const int *clustered, tui_layer *r)
{
    sm_resolved_layer rl;
    tui_resolve_entry(p, pl, layer, r->n, clustered, NULL, &rl);
    sm_plan_effective eff; /* an auto layer's own alignment, for when its method is set */
    sm_plan_effective_settings(p, pl, &eff);
    r->is_auto = eff.is_auto;
    r->decided = eff.is_auto && !rl.is_auto;
    r->method = eff.is_auto ? eff.method : rl.job.spec.method;
    r->align = eff.align;
    r->router = rl.job.spec.router;
    for (int q = 0; q < 3; q++)
        r->rank[q] = rl.job.spec.matrix[q].rank;
    r->groups_auto = !pl->n_groups;
    if (pl->n_groups && rl.assign) { /* sm_plan_check_model: every expert in exactly one group */
        tui_plan_set_groups(r, rl.assign);
    } else {
        r->k = entry_k(pl);
        memcpy(r->assign, clustered, sizeof(int) * (size_t)r->n);
    }
    sm_resolved_layer_free(&rl);
}

void tui_layer_refresh(tui_state *s, int layer)
{
    const sm_plan_layer *pl = tui_entry_c(s, layer);
    if (pl)
        tui_refresh_entry(&s->plan, pl, layer, s->clustered[layer], &s->res[layer]);
}

int tui_set_commit_format(tui_state *s, int format)
{
    static const sm_out_format fmts[3] = {SM_OUT_SUBMOE, SM_OUT_HF, SM_OUT_HF_EXPANDED};
    s->commit_format = format % 3;
    s->plan.output.has_format = true;
    s->plan.output.format = fmts[s->commit_format];
    int changed = 0;
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->is_moe[l] || !tui_entry_c(s, l))
            continue;
        sm_router_mode before = s->res[l].router;
        tui_layer_refresh(s, l);
        if (s->res[l].router != before)
            s->plan_gen[l]++, changed++;
    }
    return changed;
}

/* ---- edits ---------------------------------------------------------------------------------- */

void tui_edit_batch_begin(tui_state *s)
{
    s->batch = true;
    s->batch_open = false;
}

void tui_edit_batch_end(tui_state *s)
{
    s->batch = s->batch_open = false;
}

/* The undo step an edit of `layer` records into: a new one, unless a batch's step is open. */
static tui_undo_layer *undo_slot(tui_state *s)
{
    if (!(s->batch && s->batch_open)) {
        if (s->n_undo == TUI_UNDO) { /* the oldest step goes */
            tui_undo_step_free(&s->undo[0]);
            memmove(s->undo, s->undo + 1, sizeof s->undo[0] * (TUI_UNDO - 1));
            s->n_undo--;
        }
        s->undo[s->n_undo++] = (tui_undo_step){0, NULL};
        s->batch_open = s->batch;
    }
    tui_undo_step *st = &s->undo[s->n_undo - 1];
    st->l = xrealloc(st->l, sizeof *st->l * (size_t)(st->n + 1));
    return &st->l[st->n++];
}

sm_plan_layer *tui_edit_begin(tui_state *s, int layer)
{
    sm_plan_layer *pl = tui_entry(s, layer);
    for (int i = 0; i < s->n_redo; i++)
        tui_undo_step_free(&s->redo[i]);
    s->n_redo = 0;
    tui_undo_layer *u = undo_slot(s);
    u->layer = layer;
    sm_plan_layer_copy(&u->before, pl);
    memcpy(u->clustered, s->clustered[layer], sizeof s->clustered[layer]);
    s->modified = true;
    s->plan_gen[layer]++;
    free(pl->chosen); /* an edited auto layer is decided again */
    pl->chosen = NULL;
    return pl;
}

void tui_edit_end(tui_state *s, int layer)
{
    tui_layer_refresh(s, layer);
}

/* The groups' own ranks of a matrix (−1: every matrix) dropped. */
static void drop_group_ranks(sm_plan_layer *pl, int matrix)
{
    int n = 0;
    for (int i = 0; i < pl->n_clusters; i++) {
        sm_plan_cluster c = pl->clusters[i];
        for (int j = 0; j < 3; j++)
            c.rank.set[j] &= matrix >= 0 && matrix != j;
        if (c.rank.set[0] || c.rank.set[1] || c.rank.set[2])
            pl->clusters[n++] = c;
    }
    pl->n_clusters = n;
}

/* Consistent groups g as the entry's own (its groups, or its clustering at g's count when it gives
 * none and `own` is false); the groups are relabelled, so their own ranks go. */
static void set_groups(tui_state *s, int layer, sm_plan_layer *pl, const tui_layer *g, bool own)
{
    drop_group_ranks(pl, -1);
    pl->s.has_experts = true;
    pl->s.experts = g->k;
    if (!own && !pl->n_groups) {
        memcpy(s->clustered[layer], g->assign, sizeof(int) * (size_t)g->n);
        return;
    }
    for (int c = 0; c < pl->n_groups; c++)
        free(pl->groups[c]);
    pl->n_groups = g->k;
    pl->group_len = xrealloc(pl->group_len, sizeof *pl->group_len * (size_t)g->k);
    pl->groups = xrealloc(pl->groups, sizeof *pl->groups * (size_t)g->k);
    for (int c = 0; c < g->k; c++) {
        pl->groups[c] = xcalloc((size_t)g->n, sizeof(int));
        pl->group_len[c] = 0;
        for (int i = 0; i < g->n; i++)
            if (g->assign[i] == c)
                pl->groups[c][pl->group_len[c]++] = i;
    }
}

int tui_move_expert(tui_state *s, int layer, int expert, int cluster)
{
    const tui_layer *p = &s->res[layer];
    if (expert < 0 || expert >= p->n || cluster < 0 || cluster > p->k)
        return -1;
    if (p->assign[expert] == cluster)
        return 1;
    /* a new group for an expert that is already alone changes nothing */
    if (cluster == p->k && tui_cluster_size(p, p->assign[expert]) == 1)
        return 1;
    tui_layer g = *p;
    int assign[TUI_MAX_EXPERTS];
    memcpy(assign, p->assign, sizeof(int) * (size_t)p->n);
    assign[expert] = cluster == p->k ? TUI_MAX_EXPERTS - 1 : cluster; /* a new group, relabelled k */
    tui_plan_set_groups(&g, assign);
    set_groups(s, layer, tui_edit_begin(s, layer), &g, true);
    tui_edit_end(s, layer);
    return 0;
}

int tui_merge_clusters(tui_state *s, int layer, int a, int b)
{
    const tui_layer *p = &s->res[layer];
    if (a == b || a < 0 || b < 0 || a >= p->k || b >= p->k)
        return -1;
    tui_layer g = *p;
    int assign[TUI_MAX_EXPERTS];
    for (int i = 0; i < p->n; i++)
        assign[i] = p->assign[i] == b ? a : p->assign[i];
    tui_plan_set_groups(&g, assign);
    set_groups(s, layer, tui_edit_begin(s, layer), &g, true);
    tui_edit_end(s, layer);
    return 0;
}

void tui_set_group_count(tui_state *s, int layer, int k)
{
    tui_layer g = s->res[layer];
    tui_plan_group_count(&g, k);
    set_groups(s, layer, tui_edit_begin(s, layer), &g, false);
    tui_edit_end(s, layer);
}

void tui_keep_groups(tui_state *s, int layer)
{
    tui_layer g = s->res[layer];
    set_groups(s, layer, tui_edit_begin(s, layer), &g, true);
    tui_edit_end(s, layer);
}

bool tui_adopt_groups(tui_state *s, int layer, const tui_layer *asked, const int *assign)
{
    const tui_layer *p = &s->res[layer];
    if (p->n != asked->n || p->k != asked->k || memcmp(p->assign, asked->assign, sizeof(int) * (size_t)p->n))
        return false; /* the groups were edited since the job read them: its result is stale */
    tui_layer next = *p;
    if (tui_plan_set_groups(&next, assign) || !memcmp(next.assign, p->assign, sizeof(int) * (size_t)p->n))
        return false;
    set_groups(s, layer, tui_entry(s, layer), &next, false);
    s->plan_gen[layer]++;
    tui_layer_refresh(s, layer);
    tui_selection_settle(s);
    return true;
}

void tui_set_method(tui_state *s, int layer, bool is_auto, sm_merge_method m)
{
    sm_plan_layer *pl = tui_edit_begin(s, layer);
    pl->s.has_method = true;
    pl->s.method_auto = is_auto;
    pl->s.method = m;
    tui_edit_end(s, layer);
}

void tui_set_rank(tui_state *s, int layer, int matrix, sm_rank r)
{
    if (!tui_entry(s, layer))
        return;
    sm_plan_layer *pl = tui_edit_begin(s, layer);
    for (int j = 0; j < 3; j++)
        if (matrix < 0 || matrix == j)
            pl->s.rank.set[j] = true, pl->s.rank.r[j] = r;
    drop_group_ranks(pl, matrix);
    tui_edit_end(s, layer);
}

static const sm_plan_cluster *find_cluster(const sm_plan_layer *pl, int cluster)
{
    for (int i = 0; pl && i < pl->n_clusters; i++)
        if (pl->clusters[i].index == cluster)
            return &pl->clusters[i];
    return NULL;
}

int tui_set_group_rank(tui_state *s, int layer, int cluster, int matrix, sm_rank r)
{
    if (!tui_entry(s, layer) || cluster < 0 || cluster >= s->res[layer].k)
        return -1;
    sm_plan_layer *pl = tui_edit_begin(s, layer);
    sm_plan_cluster *c = (sm_plan_cluster *)find_cluster(pl, cluster);
    if (!c) {
        pl->clusters = xrealloc(pl->clusters, sizeof *pl->clusters * (size_t)(pl->n_clusters + 1));
        c = &pl->clusters[pl->n_clusters++];
        memset(c, 0, sizeof *c);
        c->index = cluster;
    }
    for (int j = 0; j < 3; j++)
        if (matrix < 0 || matrix == j)
            c->rank.set[j] = true, c->rank.r[j] = r;
    tui_edit_end(s, layer);
    return 0;
}

sm_rank tui_group_rank(const tui_state *s, int layer, int cluster, int matrix)
{
    const sm_plan_cluster *c = find_cluster(tui_entry_c(s, layer), cluster);
    return c && c->rank.set[matrix] ? c->rank.r[matrix] : s->res[layer].rank[matrix];
}

bool tui_group_rank_set(const tui_state *s, int layer, int cluster, int matrix)
{
    const sm_plan_cluster *c = find_cluster(tui_entry_c(s, layer), cluster);
    return c && c->rank.set[matrix];
}

bool tui_has_group_ranks(const tui_state *s, int layer)
{
    const sm_plan_layer *pl = tui_entry_c(s, layer);
    return pl && pl->n_clusters > 0;
}

/* ---- history ------------------------------------------------------------------------------- */

/* The entries and clusterings of the history's top step swap places with the plan's: nothing is
 * copied. The selection goes to the step's layer (of several: stays when it is one of them). */
static int swap_plan(tui_state *s, bool undo)
{
    int *n = undo ? &s->n_undo : &s->n_redo, *m = undo ? &s->n_redo : &s->n_undo;
    tui_undo_step *from = undo ? s->undo : s->redo, *to = undo ? s->redo : s->undo;
    s->batch_open = false; /* an edit after this starts a step of its own */
    if (!*n)
        return 0;
    tui_undo_step st = from[--*n];
    from[*n] = (tui_undo_step){0, NULL};
    bool here = false;
    for (int i = st.n - 1; i >= 0; i--) { /* the last change first: a layer may appear twice */
        tui_undo_layer *u = &st.l[i];
        sm_plan_layer *pl = tui_entry(s, u->layer);
        if (!pl)
            continue;
        sm_plan_layer cur = *pl;
        *pl = u->before;
        u->before = cur;
        int tmp[TUI_MAX_EXPERTS];
        memcpy(tmp, s->clustered[u->layer], sizeof tmp);
        memcpy(s->clustered[u->layer], u->clustered, sizeof tmp);
        memcpy(u->clustered, tmp, sizeof tmp);
        s->plan_gen[u->layer]++;
        tui_layer_refresh(s, u->layer);
        here |= u->layer == s->layer;
    }
    /* the reverse step, in the reverse order: undoing it walks the layers back again */
    for (int i = 0, j = st.n - 1; i < j; i++, j--) {
        tui_undo_layer t = st.l[i];
        st.l[i] = st.l[j];
        st.l[j] = t;
    }
    to[(*m)++] = st;
    if (!here && st.n) {
        s->layer = st.l[st.n - 1].layer;
        s->ci = s->cj = s->spec_cluster = 0;
    }
    tui_selection_settle(s);
    s->modified = true;
    return st.n;
}

int tui_undo(tui_state *s)
{
    return swap_plan(s, true);
}

int tui_redo(tui_state *s)
{
    return swap_plan(s, false);
}

/* ---- what the plan costs ---------------------------------------------------------------------- */

/* Whether layer p's merges keep ranks the writer may store as factors (auto's are its own). */
static bool stores_ranks(const tui_layer *p)
{
    return !p->is_auto && (p->method == SM_MERGE_SUBMOE || p->method == SM_MERGE_SUBMOE_WHITENED);
}

/* Whether auto's latest preview of the layer built a rank-keeping merge of the plan's own
 * groups (each group one merged expert): then the entry's ranks are stored as they are. */
static bool auto_built_ranks(const tui_state *s, int layer)
{
    const tui_layer *p = &s->res[layer];
    const tui_layer_data *d = &s->data[layer];
    if (!p->is_auto || !tui_preview_fresh(s, layer) ||
        (d->built_method != SM_MERGE_SUBMOE && d->built_method != SM_MERGE_SUBMOE_WHITENED))
        return false;
    int slot_of[TUI_MAX_EXPERTS];
    for (int c = 0; c < p->k; c++)
        slot_of[c] = -2;
    for (int i = 0; i < p->n; i++) { /* one slot per group, and no two groups in one slot */
        int c = p->assign[i], slot = d->built_slot[i];
        if (slot < 0 || (slot_of[c] != -2 && slot_of[c] != slot))
            return false;
        slot_of[c] = slot;
    }
    for (int c = 0; c < p->k; c++)
        for (int c2 = c + 1; c2 < p->k; c2++)
            if (slot_of[c] == slot_of[c2])
                return false;
    return true;
}

/* Group c of resolved layer p with entry pl (of any plan), as the writer stores it; `ranked`:
 * its ranks are stored (a rank-keeping method, or auto's choice of one). */
static int64_t group_params(const tui_state *s, const tui_layer *p, const sm_plan_layer *pl, int cluster, bool ranked)
{
    const sm_plan_cluster *gc = find_cluster(pl, cluster);
    int64_t tot = 0;
    for (int j = 0; j < 3; j++) {
        int64_t out = j == 2 ? s->hidden : s->inter, in = j == 2 ? s->inter : s->hidden;
        sm_rank rank = gc && gc->rank.set[j] ? gc->rank.r[j] : p->rank[j];
        int64_t r = ranked ? tui_rank_value(s, p, rank, j, tui_cluster_size(p, cluster)) : 0;
        tot += sm_rank_factored(r, out, in) ? r * (out + in) : out * in; /* the writer's rule */
    }
    return tot;
}

int64_t tui_group_params(const tui_state *s, int layer, int cluster)
{
    const tui_layer *p = &s->res[layer];
    return group_params(s, p, tui_entry_c(s, layer), cluster, stores_ranks(p) || auto_built_ranks(s, layer));
}

int64_t tui_entry_params(const tui_state *s, const tui_layer *p, const sm_plan_layer *pl)
{
    int64_t per = 3 * s->hidden * s->inter;
    if (p->method == SM_MERGE_KEEP && !p->is_auto)
        return per * p->n;
    if (stores_ranks(p)) { /* factors below the break-even, by each group's rank */
        int64_t tot = 0;
        for (int c = 0; c < p->k; c++)
            tot += group_params(s, p, pl, c, true);
        return tot;
    }
    return per * p->k;
}

void tui_spectrum_marks(const double *sv, int len, int64_t out, int64_t in, tui_spec_marks *m)
{
    static const double keep[3] = {0.90, 0.95, 0.99};
    double total = 0, cum = 0;
    for (int i = 0; i < len; i++)
        total += sv[i] * sv[i];
    for (int q = 0; q < 3; q++)
        m->energy[q] = len;
    for (int i = 0, q = 0; i < len && q < 3; i++) {
        cum += sv[i] * sv[i];
        while (q < 3 && cum >= keep[q] * total * (1 - 1e-12)) /* smallest rank keeping that share */
            m->energy[q++] = i + 1;
    }
    /* sm_rank_factored is monotone in the rank: the last rank it accepts */
    int64_t lo = 0, hi = out < in ? out : in;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (sm_rank_factored(mid, out, in))
            lo = mid;
        else
            hi = mid - 1;
    }
    m->break_even = lo;
}

int64_t tui_plan_params(const tui_state *s, int layer)
{
    if (tui_preview_fresh(s, layer) && s->data[layer].params_after > 0)
        return s->data[layer].params_after;
    return tui_entry_params(s, &s->res[layer], tui_entry_c(s, layer));
}

int64_t tui_model_params_after(const tui_state *s)
{
    int64_t before = 0, after = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l]) {
            before += (int64_t)s->res[l].n * 3 * s->hidden * s->inter;
            after += tui_plan_params(s, l);
        }
    return s->total_params - before + after;
}
