/* resolve: a plan's meaning, and its inverse (see resolve.h). */
#include "pipeline/resolve.h"
#include "util/diag.h"
#include "util/hash.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

/* ---- plan-wide rules ----------------------------------------------------------------------- */

void sm_resolve_calib_spec(const sm_plan *p, sm_calib_spec *s)
{
    if (p->calib.has_samples)
        s->samples = p->calib.samples;
    if (p->calib.has_seq_len)
        s->seq_len = p->calib.seq_len;
    if (p->calib.has_keep)
        s->keep = p->calib.keep;
    if (p->calib.has_heldout)
        s->heldout = p->calib.heldout;
    if (p->calib.has_sample)
        s->sample = p->calib.sample;
    if (p->calib.has_seed)
        s->seed = p->calib.seed;
    s->expect_text_digest = p->calib.text_digest;
    s->expect_tokenizer_digest = p->calib.tokenizer_digest;
}

char **sm_resolve_calib_text(const sm_plan *p)
{
    char **files = xcalloc((size_t)p->calib.n_text + 1, sizeof *files);
    for (int i = 0; i < p->calib.n_text; i++)
        files[i] = sm_plan_resolve_path(p, p->calib.text[i]);
    return files;
}

void sm_resolve_calib_text_free(const sm_plan *p, char **files)
{
    for (int i = 0; files && i < p->calib.n_text; i++)
        free(files[i]);
    free(files);
}

bool sm_resolve_planner_opts(const sm_plan *p, sm_planner_opts *o)
{
    sm_plan_effective eff; /* the clustering and similarity of a layer that says nothing */
    sm_plan_effective_settings(p, NULL, &eff);
    *o = (sm_planner_opts){.experts = p->defaults.has_experts ? p->defaults.experts : 0,
                           .ratio = p->has_ratio ? p->ratio : 0,
                           .adaptive = p->adaptive,
                           .window = p->has_window ? p->window : 2,
                           .algo = eff.clustering,
                           .sim = eff.similarity,
                           .seed = p->has_seed ? p->seed : 1};
    return p->defaults.has_experts || p->has_ratio;
}

int64_t sm_resolve_rank_max(int64_t out, int64_t in, int members)
{
    int64_t wide = (int64_t)(members > 0 ? members : 1) * in;
    return out < wide ? out : wide;
}

int64_t sm_resolve_rank_value(const sm_rank *r, sm_merge_method m, int64_t out, int64_t in, int members)
{
    int64_t max = sm_resolve_rank_max(out, in, members), v = max;
    if (m != SM_MERGE_SUBMOE && m != SM_MERGE_SUBMOE_WHITENED)
        m = SM_MERGE_SUBMOE;
    /* a rank the engine refuses (a count below 1, a fraction outside (0, 1]) is shown clamped */
    if (r->kind == SM_RANK_COUNT && r->count < 1)
        v = 1;
    else if (r->kind == SM_RANK_FRACTION && !(r->fraction > 0.0 && r->fraction <= 1.0))
        v = r->fraction > 1.0 ? max : 1;
    else if (sm_rank_resolve(r, m, out, in, members > 0 ? members : 1, &v) || v == 0)
        v = max; /* full, or submoe's exact merge */
    return v > max ? max : v < 1 ? 1 : v;
}

int sm_resolve_stored_ranks(const sm_model *m, const sm_resolved_layer *rl, sm_merge_method method,
                            int64_t (*ranks)[3])
{
    const sm_layer_job *j = &rl->job;
    memset(ranks, 0, sizeof *ranks * (size_t)j->k);
    if (method != SM_MERGE_SUBMOE && method != SM_MERGE_SUBMOE_WHITENED)
        return 0;
    sm_weight g;
    if (!rl->assign)
        return sm_err("layer %d: groups not known yet", rl->layer);
    if (sm_model_weight(m, SM_W_EXPERT_GATE, rl->layer, 0, &g))
        return -1;
    const int64_t I = g.rows, H = g.cols;
    int factored = 0;
    for (int q = 0; q < j->k; q++) {
        int members = 0;
        for (int e = 0; e < rl->n; e++)
            members += rl->assign[e] == q;
        for (int mm = 0; mm < 3; mm++) {
            const sm_merge_opts *o = j->spec.cluster ? &j->spec.cluster[q][mm] : &j->spec.matrix[mm];
            const int64_t out = mm == 2 ? H : I, in = mm == 2 ? I : H;
            int64_t r;
            if (sm_rank_resolve(&o->rank, method, out, in, members, &r))
                return sm_err_prefix("layer %d group %d", rl->layer, q);
            ranks[q][mm] = sm_rank_factored(r, out, in) ? r : 0;
            factored += ranks[q][mm] > 0;
        }
    }
    return factored;
}

/* ---- one layer ------------------------------------------------------------------------------ */

void sm_resolved_layer_free(sm_resolved_layer *rl)
{
    if (!rl)
        return;
    free(rl->assign);
    free(rl->cluster);
    free(rl->cluster_refit);
    free(rl->auto_why);
    free(rl->clusters);
    memset(rl, 0, sizeof *rl);
}

/* The layer's per-group ranks over its matrices' options (k groups). */
static void resolve_cluster_ranks(const sm_plan_layer *pl, sm_resolved_layer *rl)
{
    sm_layer_job *j = &rl->job;
    if (!pl || !pl->n_clusters)
        return;
    rl->cluster = xcalloc((size_t)j->k, sizeof *rl->cluster);
    for (int q = 0; q < j->k; q++)
        memcpy(rl->cluster[q], j->spec.matrix, sizeof rl->cluster[q]);
    for (int q = 0; q < pl->n_clusters; q++)
        for (int m = 0; m < 3; m++)
            if (pl->clusters[q].rank.set[m] && pl->clusters[q].index < j->k) /* checked against the model */
                rl->cluster[pl->clusters[q].index][m].rank = pl->clusters[q].rank.r[m];
    j->spec.cluster = (const sm_merge_opts(*)[3])rl->cluster;
    j->spec.n_cluster = j->k;
    bool any_refit = false;
    for (int q = 0; q < pl->n_clusters; q++)
        any_refit |= pl->clusters[q].has_refit;
    if (!any_refit)
        return;
    rl->cluster_refit = xcalloc((size_t)j->k, sizeof *rl->cluster_refit);
    for (int q = 0; q < j->k; q++)
        rl->cluster_refit[q] = j->spec.refit;
    for (int q = 0; q < pl->n_clusters; q++)
        if (pl->clusters[q].has_refit && pl->clusters[q].index < j->k)
            rl->cluster_refit[pl->clusters[q].index] = pl->clusters[q].refit;
    j->spec.cluster_refit = rl->cluster_refit;
}

void sm_resolve_layer(const sm_plan *p, const sm_plan_layer *pl, int layer, int n, int target_k,
                      const int *clustered, sm_resolved_layer *rl)
{
    memset(rl, 0, sizeof *rl);
    rl->layer = layer;
    rl->n = n;
    sm_plan_effective eff;
    sm_plan_effective_settings(p, pl, &eff);
    rl->is_auto = eff.is_auto;
    sm_layer_job *j = &rl->job;
    j->layer = layer;
    j->spec.method = eff.method;
    j->spec.router = eff.router;
    j->spec.align = eff.align;
    j->spec.refit = eff.refit;
    j->algo = eff.clustering;
    j->sim = eff.similarity;
    j->seed = p->has_seed ? p->seed : 1;
    for (int q = 0; q < 3; q++)
        j->spec.matrix[q] = sm_plan_matrix_opts(&p->merge, eff.rank[q]);
    /* k: the layer's own count or groups, else the target's. */
    j->k = pl && pl->s.has_experts ? pl->s.experts : pl && pl->n_groups ? pl->n_groups : target_k > 0 ? target_k : 0;
    if (j->spec.method == SM_MERGE_KEEP && !rl->is_auto)
        j->k = n;
    bool grouped = sm_merge_method_merges(j->spec.method) || rl->is_auto;
    if (pl && pl->n_groups) { /* sm_plan_check_model: every expert in exactly one group */
        rl->assign = xcalloc((size_t)n, sizeof *rl->assign);
        for (int g = 0; g < pl->n_groups; g++)
            for (int e = 0; e < pl->group_len[g]; e++)
                rl->assign[pl->groups[g][e]] = g;
    } else if (j->k >= 1 && grouped) {
        rl->assign = xcalloc((size_t)n, sizeof *rl->assign);
        if (clustered && target_k == j->k && !(pl && (pl->s.has_clustering || pl->s.has_similarity)))
            memcpy(rl->assign, clustered, sizeof(int) * (size_t)n);
        else
            rl->groups_pending = true;
    }
    if (j->k >= 1 && grouped) {
        j->groups = rl->assign;
        resolve_cluster_ranks(pl, rl);
        /* groups from a clustering, not the plan: auto may also try dominant groups */
        j->regroup = !(pl && pl->n_groups);
    }
    if (pl && pl->n_clusters) { /* as given, for the inverse and the workbench */
        rl->n_clusters = pl->n_clusters;
        rl->clusters = xcalloc((size_t)pl->n_clusters, sizeof *rl->clusters);
        memcpy(rl->clusters, pl->clusters, sizeof *rl->clusters * (size_t)pl->n_clusters);
    }
    sm_merge_method mm;
    bool al;
    if (rl->is_auto && pl && pl->chosen && sm_auto_choice_parse(pl->chosen, &mm, &al) == 0) {
        rl->auto_why = xstrdup(pl->chosen);
        j->spec.method = mm;
        j->spec.align = al;
        j->spec.refit = sm_auto_choice_refit(pl->chosen), j->spec.cluster_refit = NULL;
        rl->is_auto = false; /* decided in the plan */
    }
}

/* ---- the inverse --------------------------------------------------------------------------- */

void sm_resolve_layer_entry(const sm_resolved_layer *rl, bool is_auto, const char *chosen, bool router,
                            sm_plan_layer *pl)
{
    const sm_layer_job *j = &rl->job;
    bool merges = !is_auto && sm_merge_method_merges(j->spec.method);
    memset(pl, 0, sizeof *pl);
    pl->layer = rl->layer;
    pl->s.has_experts = true;
    pl->s.experts = !is_auto && j->spec.method == SM_MERGE_KEEP ? rl->n : j->k;
    pl->s.has_method = true;
    pl->s.method_auto = is_auto;
    pl->s.method = j->spec.method;
    if (is_auto && chosen)
        pl->chosen = xstrdup(chosen);
    if (merges)
        pl->s.has_align = true, pl->s.align = j->spec.align;
    if (merges)
        pl->s.has_refit = true, pl->s.refit = j->spec.refit;
    if (router)
        pl->s.has_router = true, pl->s.router = j->spec.router;
    for (int q = 0; q < 3; q++)
        pl->s.rank.set[q] = true, pl->s.rank.r[q] = j->spec.matrix[q].rank;
    if (!(is_auto || merges))
        return;
    if (rl->n_clusters) {
        pl->n_clusters = rl->n_clusters;
        pl->clusters = xcalloc((size_t)rl->n_clusters, sizeof *pl->clusters);
        memcpy(pl->clusters, rl->clusters, sizeof *pl->clusters * (size_t)rl->n_clusters);
    }
    if (!rl->assign)
        return;
    pl->n_groups = j->k;
    pl->group_len = xcalloc((size_t)j->k, sizeof(int));
    pl->groups = xcalloc((size_t)j->k, sizeof(int *));
    for (int g = 0; g < j->k; g++) {
        pl->groups[g] = xcalloc((size_t)rl->n, sizeof(int));
        for (int e = 0; e < rl->n; e++)
            if (rl->assign[e] == g)
                pl->groups[g][pl->group_len[g]++] = e;
    }
}

/* ---- the whole plan ------------------------------------------------------------------------ */

void sm_resolved_plan_free(sm_resolved_plan *r)
{
    if (!r)
        return;
    for (int l = 0; r->layers && l < r->n_layers; l++)
        sm_resolved_layer_free(&r->layers[l]);
    free(r->layers);
    free(r->outdir);
    sm_calib_free(r->calib);
    sm_model_close(r->model);
    memset(r, 0, sizeof *r);
}

static int calibrate(const sm_plan *p, sm_resolved_plan *r, const sm_monitor *mon, bool quiet)
{
    sm_calib_spec s;
    sm_calib_spec_default(&s);
    sm_resolve_calib_spec(p, &s);
    s.quiet = quiet;
    char *tokens = sm_plan_resolve_path(p, p->calib.tokens), *stats = sm_plan_resolve_path(p, p->calib.stats);
    s.tokens = tokens;
    char **files = sm_resolve_calib_text(p);
    sm_text_source text = {(const char *const *)files, p->calib.n_text, p->calib.text_field};
    s.text = p->calib.n_text ? &text : NULL;
    if (tokens || s.text)
        r->calib = sm_calib_capture(r->model, &s, stats, mon, &r->calib_reused);
    else if (stats)
        r->calib = sm_calib_read(r->model, stats, p->calib.has_heldout ? p->calib.heldout : -1);
    else
        sm_err("%s: calibration.tokens, text or stats is required to merge or prune", p->file);
    sm_resolve_calib_text_free(p, files);
    free(tokens);
    free(stats);
    return r->calib ? 0 : -1;
}

/* The model, the plan checked against it, and the output settings. */
static int open_plan(const sm_plan *p, sm_resolved_plan *r)
{
    char *mpath = sm_plan_resolve_path(p, p->model_path);
    r->model = sm_model_open(mpath);
    free(mpath);
    if (!r->model)
        return sm_err_prefix("%s: model.path", p->file);
    const sm_config *c = sm_model_config(r->model);
    if (sm_plan_check_model(p, r->model))
        return -1;
    r->n_layers = c->n_layers;
    r->layers = xcalloc((size_t)c->n_layers, sizeof *r->layers);
    r->format = p->output.has_format ? p->output.format : SM_RESOLVE_DEFAULT_FORMAT;
    r->dtype = p->output.dtype;
    r->shard_size = p->output.has_shard_size ? p->output.shard_size : 0;
    r->outdir = sm_plan_resolve_path(p, p->output.path);
    char *text;
    size_t len;
    if (sm_plan_format_bare(p, &text, &len) == 0) {
        r->plan_hash = sm_fnv1a(SM_FNV_OFFSET, text, len);
        free(text);
    }
    return 0;
}

/* Every MoE layer resolved; layers whose groups the plan leaves to a clustering clustered. */
static int resolve_layers(const sm_plan *p, sm_resolved_plan *r, const sm_planned_layer *planned,
                          const sm_monitor *mon)
{
    const sm_config *c = sm_model_config(r->model);
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->is_moe[l])
            continue;
        sm_resolved_layer *rl = &r->layers[l];
        sm_resolve_layer(p, sm_plan_find_layer(p, l), l, sm_model_layer_experts(r->model, l),
                         planned ? planned[l].k : 0, planned ? planned[l].assign : NULL, rl);
        if (rl->job.k < 1)
            return sm_err("%s: layer %d: no expert count (give defaults.experts or defaults.ratio, or the layer's "
                          "experts or groups)",
                          p->file, l);
        if (rl->groups_pending) {
            sm_moe_layer ml;
            if (sm_moe_layer_load_mon(r->model, l, mon, &ml))
                return -1;
            int rc = sm_layer_cluster(r->calib, &ml, &rl->job, mon, rl->assign);
            sm_moe_layer_free(&ml);
            if (rc)
                return -1;
            rl->groups_pending = false;
        }
    }
    return 0;
}

int sm_plan_resolve(const sm_plan *p, const sm_monitor *mon, bool quiet, sm_resolved_plan *r)
{
    memset(r, 0, sizeof *r);
    if (open_plan(p, r))
        goto fail;
    const sm_config *c = sm_model_config(r->model);
    bool needs_calib = false;
    for (int l = 0; l < c->n_layers; l++) {
        sm_plan_effective eff;
        sm_plan_effective_settings(p, sm_plan_find_layer(p, l), &eff);
        needs_calib |= c->is_moe[l] && (eff.is_auto || eff.method != SM_MERGE_KEEP);
    }
    sm_monitor_span span;
    if (needs_calib && calibrate(p, r, sm_monitor_span_init(&span, mon, 0, 0.7), quiet))
        goto fail;

    /* Experts per layer from the defaults' target (uniform, or adaptive through the planner). */
    sm_planned_layer *planned = NULL;
    sm_planner_opts po;
    if (sm_resolve_planner_opts(p, &po) && needs_calib) {
        planned = xcalloc((size_t)c->n_layers, sizeof *planned);
        if (sm_planner_run(r->model, r->calib, &po, sm_monitor_span_init(&span, mon, 0.7, 0.8), planned)) {
            free(planned);
            goto fail;
        }
    }
    int rc = resolve_layers(p, r, planned, mon);
    for (int l = 0; planned && l < c->n_layers; l++)
        sm_planned_layer_free(&planned[l]);
    free(planned);
    if (rc)
        goto fail;
    return 0;
fail:
    sm_resolved_plan_free(r);
    return -1;
}
