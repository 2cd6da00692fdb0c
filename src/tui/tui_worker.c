/* tui_worker: the workbench's application object (see tui_worker.h) — its job queue, status line
 * and warnings, its input files, and plans opened (kept as the state's plan) and saved (each layer
 * resolved, then written by the resolver's inverse, pipeline/resolve.h), so the state means what
 * `submoe apply` makes of the saved plan. Used by the loop (tui_app.c) and by the jobs
 * (tui_jobs.c); calls neither. */
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
    tui_say_v(&a->s, error, fmt, ap);
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
    bool other = a->running_now && a->running.kind == TUI_JOB_OTHER; /* the compared plan's layers */
    for (int i = 0; i < a->nq; i++)
        if (!a->q[i].background)
            a->q[n++] = a->q[i];
        else
            other = other || a->q[i].kind == TUI_JOB_OTHER;
    a->nq = n;
    a->s.queued = n;
    if (other && a->s.other) { /* said, and shown in view 5: not left waiting for ever */
        a->s.other->stopped = true;
        tui_say(&a->s, false, "cancelled; the compared plan's errors not built yet: p in view 5 builds them");
    } else {
        tui_say(&a->s, false, "cancelled");
    }
    pthread_mutex_unlock(&a->mu);
}

/* ---- plans ---------------------------------------------------------------------------------- */

void tui_app_calib_settings(tui_app *a)
{
    sm_plan *p = &a->s.plan;
    sm_calib_spec d;
    sm_calib_spec_default(&d);
#define TUI_CALIB_DEFAULT(field, value) \
    if (!p->calib.has_##field)          \
        p->calib.has_##field = true, p->calib.field = (value);
    TUI_CALIB_DEFAULT(samples, 16)
    TUI_CALIB_DEFAULT(seq_len, d.seq_len)
    TUI_CALIB_DEFAULT(keep, 2048)
    TUI_CALIB_DEFAULT(heldout, 512)
    TUI_CALIB_DEFAULT(sample, d.sample)
    TUI_CALIB_DEFAULT(seed, d.seed)
#undef TUI_CALIB_DEFAULT
    sm_resolve_calib_spec(p, &a->spec);
    /* the workbench recalibrates on changed text (the plan it saves records the new digests);
     * the plan's digests would not outlive it */
    a->spec.expect_text_digest = a->spec.expect_tokenizer_digest = NULL;
}

/* An opened plan's calibration sources and output settings into the app. Under mu. */
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
    }
    a->spec.tokens = a->tokens;
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
    load_settings(a, &p, path);
    sm_planner_opts po;
    bool target = sm_resolve_planner_opts(&p, &po);
    tui_clear_history(s);
    sm_plan_free(&s->plan);
    s->plan = p; /* the state's plan from now on */
    if (!s->plan.has_seed) /* the resolver's default, kept visible for `c` */
        s->plan.has_seed = true, s->plan.seed = 1;
    tui_app_calib_settings(a);
    a->planner_pending = false;
    for (int l = 0; l < c->n_layers; l++) {
        s->entry[l] = -1;
        if (!c->is_moe[l])
            continue;
        const sm_plan_layer *pl = sm_plan_find_layer(&s->plan, l);
        a->have_groups[l] = pl && pl->n_groups;
        /* counts and groups from the planner after calibration */
        a->planner_pending |= target && !(pl && (pl->n_groups || pl->s.has_experts));
        tui_plan_layer_init(s, l, sm_model_layer_experts(a->model, l));
        s->plan_gen[l]++;
        s->data[l].have_preview = false;
    }
    s->modified = false;
    s->ppl_plan = -1;
    s->acc_plan = -1;
    s->layer = s->layer >= 0 && s->layer < s->n_layers && s->is_moe[s->layer] ? s->layer : 0;
    s->ci = s->cj = s->spec_cluster = 0;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* Auto's choice for layer l to record in a saved plan: the plan's own, else a fresh preview's. */
static const char *saved_choice(const tui_state *s, int l)
{
    const sm_plan_layer *pl = tui_entry_c(s, l);
    const tui_layer_data *d = &s->data[l];
    sm_merge_method m;
    bool al;
    if (pl->chosen || !s->res[l].is_auto)
        return pl->chosen;
    return tui_preview_fresh(s, l) && d->chosen[0] && sm_auto_choice_parse(d->chosen, &m, &al) == 0 ? d->chosen
                                                                                                  : NULL;
}

void tui_app_plan(tui_app *a, sm_plan *p, const char *file)
{
    sm_plan_init(p); /* the plan-wide settings a layer is resolved with: the seed and the merge options */
    p->has_seed = true;
    p->seed = a->s.plan.seed;
    p->merge = a->s.plan.merge;
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
        const sm_plan *sp = &a->s.plan; /* the numbers: every one given (tui_app_calib_settings) */
        p->calib.has_samples = p->calib.has_seq_len = p->calib.has_keep = p->calib.has_heldout = true;
        p->calib.has_sample = p->calib.has_seed = true;
        p->calib.samples = sp->calib.samples, p->calib.seq_len = sp->calib.seq_len;
        p->calib.keep = sp->calib.keep, p->calib.heldout = sp->calib.heldout;
        p->calib.sample = sp->calib.sample, p->calib.seed = sp->calib.seed;
    }
    static const sm_out_format fmts[3] = {SM_OUT_SUBMOE, SM_OUT_HF, SM_OUT_HF_EXPANDED};
    p->output.has_format = true;
    p->output.format = fmts[a->s.commit_format % 3];
    const tui_state *s = &a->s;
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->is_moe[l])
            continue;
        sm_resolved_layer rl;
        tui_layer_resolve(s, l, NULL, &rl);
        p->layers = xrealloc(p->layers, sizeof *p->layers * (size_t)(p->n_layers + 1));
        /* the router only where the layer names one: else the output format's default holds (remap for
         * submoe and hf-expanded, the best collapse for hf: plan.h) */
        sm_resolve_layer_entry(&rl, s->res[l].is_auto, saved_choice(s, l), tui_entry_c(s, l)->s.has_router,
                               &p->layers[p->n_layers++]);
        sm_resolved_layer_free(&rl);
    }
    p->header_comment = xasprintf("saved from the submoe workbench");
}
