/* tui_worker: the workbench's application object (see tui_worker.h) — its job queue, status line
 * and warnings, its input files, and the edited layers as plan entries: each layer is written by
 * the resolver's inverse and read (and built) by the resolver (pipeline/resolve.h), so the edited
 * state means what `submoe apply` makes of the saved plan. Used by the loop (tui_app.c) and by the
 * jobs (tui_jobs.c); calls neither. */
#include "tui/tui_worker.h"

#include "pipeline/apply.h"
#include "pipeline/resolve.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- queue --------------------------------------------------------------------------------- */

/* Queue j under the lock; front: first among the background jobs (a pre-empted one). */
static void push_locked(tui_app *a, tui_job j, bool front)
{
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
        if (!j.background || front) /* ahead of the background work, behind earlier user jobs */
            for (pos = 0; pos < a->nq && !a->q[pos].background; pos++)
                ;
        memmove(a->q + pos + 1, a->q + pos, sizeof a->q[0] * (size_t)(a->nq - pos));
        a->q[pos] = j;
        a->nq++;
    }
    a->s.queued = a->nq;
}

void tui_push(tui_app *a, tui_job j)
{
    pthread_mutex_lock(&a->mu);
    push_locked(a, j, false);
    /* A user's request does not wait behind a background preview (seconds per layer at real
     * shapes): cancel it and run it again later, unless it is the very job asked for. */
    const tui_job *r = &a->running;
    bool same = r->kind == j.kind && r->layer == j.layer && r->cluster == j.cluster && !j.force;
    if (!j.background && a->running_now && r->background && !a->preempted && !same) {
        a->preempted = true;
        a->cancel = 1;
        push_locked(a, *r, true);
    }
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

/* ---- plans ---------------------------------------------------------------------------------- */

void tui_default_layer_plan(tui_layer_plan *p, int n, int top_k)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    /* no empty group, even with fewer experts than top-k */
    p->k = sm_planner_target_k(0, TUI_DEFAULT_RATIO, n, top_k);
    for (int i = 0; i < n; i++)
        p->assign[i] = i % p->k; /* until calibration clusters them */
    p->is_auto = SM_APPLY_DEFAULT_AUTO;
    p->groups_auto = true;
    p->method = SM_APPLY_DEFAULT_METHOD;
    p->router = SM_APPLY_DEFAULT_ROUTER;
    for (int q = 0; q < 3; q++)
        p->rank[q] = (sm_rank){SM_RANK_FULL, 0, 0};
}

const char *tui_decided_why(const tui_app *a, int l, const tui_layer_plan *tp)
{
    return tp->is_auto && tp->decided ? a->decided_why[l] : NULL;
}

/* An edited layer as a plan entry, through the resolver's inverse: the edits are then what a
 * saved plan says, and what resolving it builds. `groups`: write the groups. */
static void plan_add_layer(sm_plan *p, int l, const tui_layer_plan *tp, const char *chosen, bool groups)
{
    sm_resolved_layer rl;
    memset(&rl, 0, sizeof rl);
    rl.layer = l;
    rl.n = tp->n;
    rl.job.k = tp->k;
    rl.job.spec.method = tp->method;
    rl.job.spec.align = tp->align;
    rl.job.spec.router = tp->router;
    for (int q = 0; q < 3; q++)
        rl.job.spec.matrix[q].rank = tp->rank[q];
    int assign[TUI_MAX_EXPERTS];
    memcpy(assign, tp->assign, sizeof(int) * (size_t)tp->n);
    rl.assign = groups ? assign : NULL;
    sm_plan_cluster clusters[TUI_MAX_EXPERTS];
    for (int g = 0; g < tp->k; g++) { /* the groups' own ranks */
        sm_plan_cluster *pc = &clusters[rl.n_clusters];
        memset(pc, 0, sizeof *pc);
        pc->index = g;
        for (int q = 0; q < 3; q++)
            pc->rank.set[q] = tui_group_rank_set(tp, g, q), pc->rank.r[q] = tui_group_rank(tp, g, q);
        rl.n_clusters += pc->rank.set[0] || pc->rank.set[1] || pc->rank.set[2];
    }
    rl.clusters = clusters;
    p->layers = xrealloc(p->layers, sizeof *p->layers * (size_t)(p->n_layers + 1));
    sm_resolve_layer_entry(&rl, tp->is_auto, chosen, true, &p->layers[p->n_layers++]);
}

/* The plan-wide settings a layer is resolved with: the seed and the merge options. */
static void plan_head(const tui_app *a, uint64_t seed, sm_plan *p)
{
    sm_plan_init(p);
    p->has_seed = true;
    p->seed = seed;
    p->merge = a->merge;
}

void tui_layer_resolve(const tui_app *a, int l, const tui_layer_plan *tp, uint64_t seed, const char *chosen,
                       sm_resolved_layer *rl)
{
    sm_plan p;
    plan_head(a, seed, &p);
    /* groups a clustering made are the resolver's `clustered` (auto may then regroup), as when
     * `submoe apply` clusters a plan that gives none */
    plan_add_layer(&p, l, tp, chosen, !tp->groups_auto);
    sm_resolve_layer(&p, &p.layers[0], l, tp->n, tp->k, tp->groups_auto ? tp->assign : NULL, rl);
    rl->job.algo = a->algo[l];
    rl->job.sim = a->sim[l];
    sm_plan_free(&p);
}

/* Layer l of an opened plan into the state, as the resolver reads it. Under mu. */
static int load_layer(tui_app *a, const sm_plan *p, int l, bool target)
{
    tui_state *s = &a->s;
    const sm_plan_layer *pl = sm_plan_find_layer(p, l);
    tui_layer_plan *tp = &s->plan[l];
    tui_default_layer_plan(tp, tp->n, s->top_k);
    sm_resolved_layer rl;
    sm_resolve_layer(p, pl, l, tp->n, 0, NULL, &rl);
    sm_plan_effective eff; /* an auto layer's own alignment, for when its method is set */
    sm_plan_effective_settings(p, pl, &eff);
    tp->decided = rl.auto_why != NULL;
    tp->is_auto = rl.is_auto || tp->decided;
    tp->method = tp->is_auto ? SM_APPLY_DEFAULT_METHOD : rl.job.spec.method;
    tp->align = eff.align;
    tp->decided_method = rl.job.spec.method, tp->decided_align = rl.job.spec.align;
    tp->router = rl.job.spec.router;
    for (int q = 0; q < 3; q++)
        tp->rank[q] = rl.job.spec.matrix[q].rank;
    a->algo[l] = rl.job.algo;
    a->sim[l] = rl.job.sim;
    a->have_groups[l] = rl.assign && !rl.groups_pending;
    if (a->have_groups[l]) { /* sm_plan_check_model: every expert in exactly one group */
        tui_plan_set_groups(tp, rl.assign);
        tp->groups_auto = false;
    } else if (pl && pl->s.has_experts) {
        tui_plan_group_count(tp, pl->s.experts); /* until calibration clusters them */
    } else if (target) {
        a->planner_pending = true; /* counts and groups from the planner after calibration */
    }
    int rc = 0;
    for (int q = 0; q < rl.n_clusters && !rc; q++)
        for (int m = 0; m < 3 && !rc; m++)
            if (rl.clusters[q].rank.set[m] && tp->n_group_ranks < TUI_MAX_GROUP_RANKS) {
                int i = tp->n_group_ranks++;
                tp->group_ranks[i].cluster = rl.clusters[q].index;
                tp->group_ranks[i].matrix = m;
                tp->group_ranks[i].r = rl.clusters[q].rank.r[m];
            } else if (rl.clusters[q].rank.set[m]) {
                rc = sm_err("%s: layer %d: the workbench keeps at most %d group ranks per layer", p->file, l,
                            TUI_MAX_GROUP_RANKS);
            }
    free(a->decided_why[l]);
    a->decided_why[l] = rl.auto_why; /* auto: the choice recorded in the plan */
    rl.auto_why = NULL;
    sm_resolved_layer_free(&rl);
    s->plan_gen[l]++;
    s->data[l].have_preview = false;
    return rc;
}

/* An opened plan's calibration and output settings into the app. Under mu. */
static void load_settings(tui_app *a, const sm_plan *p, const char *path)
{
    tui_state *s = &a->s;
    if (p->calib.stats) {
        char *t = sm_plan_resolve_path(p, p->calib.stats);
        snprintf(a->calib_file, sizeof a->calib_file, "%s", t);
        free(t);
    } else {
        a->calib_file[0] = 0;
        char **text = sm_resolve_calib_text(p);
        if (p->calib.n_text || p->calib.tokens) /* the plan's source replaces ours */
            tui_app_set_text(a, (const char *const *)text, p->calib.n_text, p->calib.text_field);
        sm_resolve_calib_text_free(p, text);
        if (p->calib.tokens) {
            char *t = sm_plan_resolve_path(p, p->calib.tokens);
            snprintf(a->tokens, sizeof a->tokens, "%s", t);
            free(t);
            a->tokens_default = false;
        }
        sm_resolve_calib_spec(p, &a->spec);
        /* the workbench recalibrates on changed text (the plan it saves records the new digests);
         * the plan's digests would not outlive it */
        a->spec.expect_text_digest = a->spec.expect_tokenizer_digest = NULL;
    }
    a->spec.tokens = a->tokens;
    s->seed = p->has_seed ? p->seed : 1;
    a->merge = p->merge;
    if (p->output.has_format)
        s->commit_format = p->output.format == SM_OUT_HF ? 1 : p->output.format == SM_OUT_HF_EXPANDED ? 2 : 0;
    if (p->output.path) {
        char *o = sm_plan_resolve_path(p, p->output.path);
        snprintf(s->commit_dir, sizeof s->commit_dir, "%s", o);
        free(o);
    }
    snprintf(s->plan_path, sizeof s->plan_path, "%s", path);
}

int tui_app_load_plan(tui_app *a, const char *path)
{
    sm_plan p;
    if (sm_plan_read(path, &p) || sm_plan_check_model(&p, a->model)) {
        sm_plan_free(&p);
        return -1;
    }
    const sm_config *c = sm_model_config(a->model);
    pthread_mutex_lock(&a->mu);
    tui_state *s = &a->s;
    a->planner_pending = false;
    bool target = sm_resolve_planner_opts(&p, &a->planner);
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++)
        if (c->is_moe[l])
            rc = load_layer(a, &p, l, target);
    if (!rc) {
        load_settings(a, &p, path);
        s->modified = false;
        s->ppl_plan = -1;
        s->acc_plan = -1;
        s->layer = s->layer >= 0 && s->layer < s->n_layers && s->is_moe[s->layer] ? s->layer : 0;
        s->ci = s->cj = s->spec_cluster = 0;
        tui_clear_history(s);
    }
    pthread_mutex_unlock(&a->mu);
    sm_plan_free(&p);
    return rc;
}

void tui_app_plan(tui_app *a, sm_plan *p, const char *file)
{
    plan_head(a, a->s.seed, p);
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
    static const sm_out_format fmts[3] = {SM_OUT_SUBMOE, SM_OUT_HF, SM_OUT_HF_EXPANDED};
    p->output.has_format = true;
    p->output.format = fmts[a->s.commit_format % 3];
    const tui_state *s = &a->s;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l])
            plan_add_layer(p, l, &s->plan[l], tui_decided_why(a, l, &s->plan[l]), true);
    p->header_comment = xasprintf("saved from the submoe workbench");
}
