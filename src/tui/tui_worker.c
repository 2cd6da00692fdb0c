/* tui_worker: the workbench's application object (see tui_worker.h) — its job queue, status line
 * and warnings, its input files, and the conversions between plans and the edited state. Used by
 * the loop (tui_app.c) and by the jobs (tui_jobs.c); calls neither. */
#include "tui/tui_worker.h"

#include "pipeline/apply.h"
#include "util/diag.h"
#include "util/mem.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- queue --------------------------------------------------------------------------------- */

void tui_push(tui_app *a, tui_job j)
{
    pthread_mutex_lock(&a->mu);
    int at = -1;
    for (int i = 0; i < a->nq; i++)
        if (a->q[i].kind == j.kind && a->q[i].layer == j.layer && a->q[i].cluster == j.cluster) {
            at = i;
            break;
        }
    if (at >= 0) { /* merge: keep the stronger request */
        j.force |= a->q[at].force;
        j.background &= a->q[at].background;
        memmove(a->q + at, a->q + at + 1, sizeof a->q[0] * (size_t)(a->nq - at - 1));
        a->nq--;
    }
    if (a->nq < TUI_QUEUE) {
        int pos = a->nq;
        if (!j.background) /* ahead of the background work, behind earlier user jobs */
            for (pos = 0; pos < a->nq && !a->q[pos].background; pos++)
                ;
        memmove(a->q + pos + 1, a->q + pos, sizeof a->q[0] * (size_t)(a->nq - pos));
        a->q[pos] = j;
        a->nq++;
    }
    a->s.queued = a->nq;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

void tui_status(tui_app *a, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&a->mu);
    vsnprintf(a->s.status, sizeof a->s.status, fmt, ap);
    a->s.status_error = error;
    pthread_mutex_unlock(&a->mu);
    va_end(ap);
}

const char *tui_take_warning(tui_app *a)
{
    static _Thread_local char taken[sizeof a->last_warning];
    snprintf(taken, sizeof taken, "%s", a->last_warning);
    a->last_warning[0] = '\0';
    return taken;
}

void tui_app_set_text(tui_app *a, const char *const *files, int n, const char *field)
{
    for (int i = 0; i < a->n_text; i++)
        free(a->text[i]);
    free(a->text);
    free(a->text_field);
    a->text = n ? xcalloc((size_t)n, sizeof *a->text) : NULL;
    for (int i = 0; i < n; i++)
        a->text[i] = xstrdup(files[i]);
    a->n_text = n;
    a->text_field = field ? xstrdup(field) : NULL;
    a->text_src = (sm_text_source){(const char *const *)a->text, n, a->text_field};
    a->spec.text = n ? &a->text_src : NULL;
}

void tui_app_inputs(const tui_app *a, sm_paths *inputs)
{
    sm_paths_add_model(inputs, a->s.model);
    sm_paths_add(inputs, "tokens file", a->calib_file[0] || a->n_text ? NULL : a->tokens);
    for (int i = 0; !a->calib_file[0] && i < a->n_text; i++)
        sm_paths_add(inputs, "text file", a->text[i]);
    sm_paths_add(inputs, "task file", a->task);
    sm_paths_add(inputs, "held-out tokens file", a->heldout);
    sm_paths_add(inputs, "stats file", a->calib_file);
}

/* Esc: stop the running job and drop the queued background work. */
void tui_cancel_work(tui_app *a)
{
    pthread_mutex_lock(&a->mu);
    a->cancel = 1;
    int n = 0;
    for (int i = 0; i < a->nq; i++)
        if (!a->q[i].background)
            a->q[n++] = a->q[i];
    a->nq = n;
    a->s.queued = n;
    snprintf(a->s.status, sizeof a->s.status, "cancelled");
    a->s.status_error = false;
    pthread_mutex_unlock(&a->mu);
}

/* ---- plans --------------------------------------------------------------------------------- */

void tui_default_layer_plan(tui_layer_plan *p, int n, int top_k)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    int k = (int)lround(n * 0.75);
    k = k < top_k ? top_k : k;
    p->k = k > n ? n : k < 1 ? 1 : k; /* no empty group, even with fewer experts than top-k */
    for (int i = 0; i < n; i++)
        p->assign[i] = i % p->k; /* until calibration clusters them */
    p->is_auto = SM_APPLY_DEFAULT_AUTO;
    p->groups_auto = true;
    p->method = SM_APPLY_DEFAULT_METHOD;
    p->router = SM_APPLY_DEFAULT_ROUTER;
    for (int q = 0; q < 3; q++)
        p->rank[q] = (sm_rank){SM_RANK_FULL, 0, 0};
}

int tui_app_load_plan(tui_app *a, const char *path)
{
    sm_plan p;
    if (sm_plan_read(path, &p) || sm_plan_check_model(&p, a->model)) {
        sm_plan_free(&p);
        return -1;
    }
    const sm_config *c = sm_model_config(a->model);
    bool target = p.defaults.has_experts || p.has_ratio;
    pthread_mutex_lock(&a->mu);
    tui_state *s = &a->s;
    a->planner_pending = false;
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->is_moe[l])
            continue;
        const sm_plan_layer *pl = sm_plan_find_layer(&p, l);
        tui_layer_plan *tp = &s->plan[l];
        tui_default_layer_plan(tp, tp->n, s->top_k);
        sm_plan_effective eff; /* what apply makes of the layer */
        sm_plan_effective_settings(&p, pl, &eff);
        tp->is_auto = eff.is_auto;
        tp->method = eff.method;
        tp->router = eff.router;
        tp->align = eff.align;
        memcpy(tp->rank, eff.rank, sizeof tp->rank);
        a->algo[l] = eff.clustering;
        a->sim[l] = eff.similarity;
        a->have_groups[l] = false;
        if (pl && pl->n_groups) { /* sm_plan_check_model: every expert in exactly one group */
            int assign[TUI_MAX_EXPERTS] = {0};
            for (int g = 0; g < pl->n_groups; g++)
                for (int e = 0; e < pl->group_len[g]; e++)
                    assign[pl->groups[g][e]] = g;
            tui_plan_set_groups(tp, assign);
            a->have_groups[l] = true;
            tp->groups_auto = false;
        } else if (pl && pl->s.has_experts) {
            tui_plan_group_count(tp, pl->s.experts); /* until calibration clusters them */
        } else if (target) {
            a->planner_pending = true; /* counts and groups from the planner after calibration */
        }
        for (int q = 0; pl && q < pl->n_clusters; q++)
            for (int m = 0; m < 3; m++)
                if (pl->clusters[q].rank.set[m] && tp->n_group_ranks < TUI_MAX_GROUP_RANKS) {
                    int i = tp->n_group_ranks++;
                    tp->group_ranks[i].cluster = pl->clusters[q].index;
                    tp->group_ranks[i].matrix = m;
                    tp->group_ranks[i].r = pl->clusters[q].rank.r[m];
                } else if (pl->clusters[q].rank.set[m]) {
                    pthread_mutex_unlock(&a->mu);
                    sm_plan_free(&p);
                    return sm_err("%s: layer %d: the workbench keeps at most %d group ranks per layer", path, l,
                                  TUI_MAX_GROUP_RANKS);
                }
        free(a->decided_why[l]);
        a->decided_why[l] = NULL;
        sm_merge_method mm;
        bool al;
        if (tp->is_auto && pl && pl->chosen && sm_auto_choice_parse(pl->chosen, &mm, &al) == 0) {
            tp->decided = true, tp->decided_method = mm, tp->decided_align = al;
            a->decided_why[l] = xstrdup(pl->chosen);
        }
        s->plan_gen[l]++;
        s->data[l].have_preview = false;
    }
    if (a->planner_pending)
        a->planner = (sm_planner_opts){.experts = p.defaults.has_experts ? p.defaults.experts : 0,
                                       .ratio = p.has_ratio ? p.ratio : 0,
                                       .adaptive = p.adaptive,
                                       .window = p.has_window ? p.window : 2,
                                       .algo = p.defaults.has_clustering ? p.defaults.clustering : SM_CLUSTER_KMEANS,
                                       .sim = p.defaults.has_similarity ? p.defaults.similarity : SM_SIM_OUTPUT,
                                       .seed = p.has_seed ? p.seed : 1};
    if (p.calib.stats) {
        char *t = sm_plan_resolve_path(&p, p.calib.stats);
        snprintf(a->calib_file, sizeof a->calib_file, "%s", t);
        free(t);
    } else {
        a->calib_file[0] = 0;
        char **text = xcalloc((size_t)p.calib.n_text + 1, sizeof *text);
        for (int i = 0; i < p.calib.n_text; i++)
            text[i] = sm_plan_resolve_path(&p, p.calib.text[i]);
        if (p.calib.n_text || p.calib.tokens) /* the plan's source replaces ours */
            tui_app_set_text(a, (const char *const *)text, p.calib.n_text, p.calib.text_field);
        for (int i = 0; i < p.calib.n_text; i++)
            free(text[i]);
        free(text);
        if (p.calib.tokens) {
            char *t = sm_plan_resolve_path(&p, p.calib.tokens);
            snprintf(a->tokens, sizeof a->tokens, "%s", t);
            free(t);
            a->tokens_default = false;
        }
        if (p.calib.has_samples)
            a->spec.samples = p.calib.samples;
        if (p.calib.has_seq_len)
            a->spec.seq_len = p.calib.seq_len;
        if (p.calib.has_keep)
            a->spec.keep = p.calib.keep;
        if (p.calib.has_heldout)
            a->spec.heldout = p.calib.heldout;
        if (p.calib.has_sample)
            a->spec.sample = p.calib.sample;
        if (p.calib.has_seed)
            a->spec.seed = p.calib.seed;
    }
    a->spec.tokens = a->tokens;
    s->seed = p.has_seed ? p.seed : 1;
    a->merge = p.merge;
    if (p.output.has_format)
        s->commit_format = p.output.format == SM_OUT_HF ? 1 : p.output.format == SM_OUT_HF_EXPANDED ? 2 : 0;
    if (p.output.path) {
        char *o = sm_plan_resolve_path(&p, p.output.path);
        snprintf(s->commit_dir, sizeof s->commit_dir, "%s", o);
        free(o);
    }
    snprintf(s->plan_path, sizeof s->plan_path, "%s", path);
    s->modified = false;
    s->ppl_plan = -1;
    s->acc_plan = -1;
    s->layer = s->layer >= 0 && s->layer < s->n_layers && s->is_moe[s->layer] ? s->layer : 0;
    s->ci = s->cj = s->spec_cluster = 0;
    tui_clear_history(s);
    pthread_mutex_unlock(&a->mu);
    sm_plan_free(&p);
    return 0;
}

void tui_app_plan(tui_app *a, sm_plan *p, const char *file)
{
    sm_plan_init(p);
    p->file = xstrdup(file);
    p->model_path = xstrdup(a->s.model);
    sm_model_fingerprint(a->model, p->fingerprint);
    p->has_fingerprint = true;
    if (a->calib_file[0]) { /* read as it is, with its own held-out split */
        p->calib.stats = xstrdup(a->calib_file);
    } else {
        if (a->n_text) { /* the text and, once calibrated, the digests the statistics came from */
            p->calib.text = xcalloc((size_t)a->n_text, sizeof *p->calib.text);
            for (int i = 0; i < a->n_text; i++)
                p->calib.text[p->calib.n_text++] = xstrdup(a->text[i]);
            p->calib.text_field = a->text_field ? xstrdup(a->text_field) : NULL;
            const char *td = a->calib ? sm_calib_metadata(a->calib, "text_digest") : NULL,
                       *kd = a->calib ? sm_calib_metadata(a->calib, "tokenizer_digest") : NULL;
            p->calib.text_digest = td ? xstrdup(td) : NULL;
            p->calib.tokenizer_digest = kd ? xstrdup(kd) : NULL;
        } else
            p->calib.tokens = xstrdup(a->tokens);
        p->calib.has_samples = p->calib.has_seq_len = p->calib.has_keep = p->calib.has_heldout = true;
        p->calib.has_sample = p->calib.has_seed = true;
        p->calib.samples = a->spec.samples, p->calib.seq_len = a->spec.seq_len;
        p->calib.keep = a->spec.keep, p->calib.heldout = a->spec.heldout;
        p->calib.sample = a->spec.sample, p->calib.seed = a->spec.seed;
    }
    p->has_seed = true;
    p->seed = a->s.seed;
    p->merge = a->merge;
    static const sm_out_format fmts[3] = {SM_OUT_SUBMOE, SM_OUT_HF, SM_OUT_HF_EXPANDED};
    p->output.has_format = true;
    p->output.format = fmts[a->s.commit_format % 3];
    const tui_state *s = &a->s;
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->is_moe[l])
            continue;
        const tui_layer_plan *tp = &s->plan[l];
        p->layers = xrealloc(p->layers, sizeof *p->layers * (size_t)(p->n_layers + 1));
        sm_plan_layer *pl = &p->layers[p->n_layers++];
        memset(pl, 0, sizeof *pl);
        pl->layer = l;
        pl->s.has_method = true;
        pl->s.method_auto = tp->is_auto;
        pl->s.method = tp->method;
        if (tp->is_auto && tp->decided && a->decided_why[l])
            pl->chosen = xstrdup(a->decided_why[l]);
        bool merges = !tp->is_auto && sm_merge_method_merges(tp->method);
        if (merges)
            pl->s.has_align = true, pl->s.align = tp->align;
        pl->s.has_router = true;
        pl->s.router = tp->router;
        for (int q = 0; q < 3; q++)
            pl->s.rank.r[q] = tp->rank[q], pl->s.rank.set[q] = true;
        bool keep = tp->method == SM_MERGE_KEEP && !tp->is_auto;
        pl->s.has_experts = true;
        pl->s.experts = keep ? tp->n : tp->k;
        if (tp->is_auto || merges) {
            pl->n_groups = tp->k;
            pl->group_len = xcalloc((size_t)tp->k, sizeof(int));
            pl->groups = xcalloc((size_t)tp->k, sizeof(int *));
            for (int g = 0; g < tp->k; g++) {
                pl->groups[g] = xcalloc((size_t)tp->n, sizeof(int));
                for (int e = 0; e < tp->n; e++)
                    if (tp->assign[e] == g)
                        pl->groups[g][pl->group_len[g]++] = e;
            }
            for (int g = 0; g < tp->k; g++) {
                bool any = tui_group_rank_set(tp, g, 0) || tui_group_rank_set(tp, g, 1) || tui_group_rank_set(tp, g, 2);
                if (!any)
                    continue;
                pl->clusters = xrealloc(pl->clusters, sizeof *pl->clusters * (size_t)(pl->n_clusters + 1));
                sm_plan_cluster *pc = &pl->clusters[pl->n_clusters++];
                memset(pc, 0, sizeof *pc);
                pc->index = g;
                for (int q = 0; q < 3; q++)
                    pc->rank.set[q] = tui_group_rank_set(tp, g, q), pc->rank.r[q] = tui_group_rank(tp, g, q);
            }
        }
    }
    p->header_comment = xasprintf("saved from the submoe workbench");
}
