/* tui_app: the workbench's loop, its job queue and worker thread, and the conversions between
 * plans and the edited state (see tui_app.h, tui_worker.h).
 *
 * The UI thread owns the terminal: it draws the state under the lock, reads keys with a 100 ms
 * timeout (so progress repaints) and turns actions into jobs. The worker runs one job at a time,
 * reports progress through an sm_monitor (Esc sets its cancel flag) and publishes results into
 * the state under the lock. */
#include "tui/tui_app.h"
#include "pipeline/apply.h"
#include "tui/tui_draw.h"
#include "tui/tui_worker.h"
#include "util/datadir.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mapguard.h"
#include "util/mem.h"
#include "util/signals.h"

#include <curses.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
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

/* sm_warn while the workbench owns the terminal (stderr would draw over the screen). */
static void on_warning(const char *msg, void *ctx)
{
    tui_app *a = ctx;
    pthread_mutex_lock(&a->mu);
    size_t have = a->warnings ? strlen(a->warnings) : 0, n = strlen(msg);
    a->warnings = xrealloc(a->warnings, have + n + 2);
    memcpy(a->warnings + have, msg, n);
    memcpy(a->warnings + have + n, "\n", 2);
    snprintf(a->last_warning, sizeof a->last_warning, "; warning: %s", msg);
    pthread_mutex_unlock(&a->mu);
}

const char *tui_take_warning(tui_app *a)
{
    static _Thread_local char taken[sizeof a->last_warning];
    snprintf(taken, sizeof taken, "%s", a->last_warning);
    a->last_warning[0] = '\0';
    return taken;
}

void tui_app_inputs(const tui_app *a, sm_paths *inputs)
{
    sm_paths_add_model(inputs, a->s.model);
    sm_paths_add(inputs, "tokens file", a->calib_file[0] ? NULL : a->tokens);
    sm_paths_add(inputs, "held-out tokens file", a->heldout);
    sm_paths_add(inputs, "stats file", a->calib_file);
}

static void on_progress(void *ctx, double f, const char *what)
{
    (void)what;
    tui_app *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->s.progress = f;
    pthread_mutex_unlock(&a->mu);
}

static void *worker(void *arg)
{
    tui_app *a = arg;
    static const char *const names[] = {"", "calibrating", "preview", "re-clustering", "spectrum",
                                        "perplexity", "saving", "opening", "committing"};
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->nq && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->stop) {
            pthread_mutex_unlock(&a->mu);
            return NULL;
        }
        tui_job j = a->q[0];
        memmove(a->q, a->q + 1, sizeof a->q[0] * (size_t)--a->nq);
        a->s.queued = a->nq;
        a->cancel = 0;
        a->s.busy = true;
        a->s.progress = 0;
        if (j.kind == TUI_JOB_PREVIEW || j.kind == TUI_JOB_RECLUSTER || j.kind == TUI_JOB_SPECTRUM)
            snprintf(a->s.job, sizeof a->s.job, "%s L%d", names[j.kind], j.layer);
        else
            snprintf(a->s.job, sizeof a->s.job, "%s", names[j.kind]);
        pthread_mutex_unlock(&a->mu);
        sm_monitor mon = {on_progress, a, &a->cancel};
        if (tui_job_run(a, &j, &mon))
            tui_status(a, true, "%s", a->cancel ? "cancelled" : sm_errmsg());
        pthread_mutex_lock(&a->mu);
        a->s.busy = a->nq > 0;
        /* the background previews are done: say so, unless the status line moved on */
        char *tail = strstr(a->s.status, "; previewing every layer");
        if (!a->nq && j.background && tail)
            snprintf(tail, sizeof a->s.status - (size_t)(tail - a->s.status), "; every layer previewed (P: perplexity)");
        pthread_mutex_unlock(&a->mu);
    }
}

/* Esc: stop the running job and drop the queued background work. */
static void cancel_work(tui_app *a)
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

static void default_layer_plan(tui_layer_plan *p, int n, int top_k)
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
        default_layer_plan(tp, tp->n, s->top_k);
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

/* ---- setup --------------------------------------------------------------------------------- */

static int setup(tui_app *a, const tui_options *o)
{
    char abs[PATH_MAX];
    const char *model_dir = o->model ? o->model : sm_demo_dir();
    if (!realpath(model_dir, abs))
        snprintf(abs, sizeof abs, "%s", model_dir);
    if (!(a->model = sm_model_open(abs)))
        return -1;
    const sm_config *c = sm_model_config(a->model);
    tui_state *s = &a->s;
    if (c->n_layers > TUI_MAX_LAYERS || c->n_experts > TUI_MAX_EXPERTS)
        return sm_err("%s: the workbench handles up to %d layers of up to %d experts", abs, TUI_MAX_LAYERS,
                      TUI_MAX_EXPERTS);
    snprintf(s->model, sizeof s->model, "%.500s", abs);
    snprintf(s->arch, sizeof s->arch, "%s", sm_arch_name(c->arch));
    s->n_layers = c->n_layers;
    s->top_k = c->top_k;
    s->n_experts = c->n_experts;
    s->hidden = c->hidden;
    s->inter = c->expert_intermediate;
    s->total_params = (int64_t)sm_model_param_count(a->model);
    s->layer = -1;
    for (int l = 0; l < c->n_layers; l++) {
        s->is_moe[l] = c->is_moe[l];
        a->algo[l] = SM_CLUSTER_KMEANS;
        a->sim[l] = SM_SIM_OUTPUT;
        if (!c->is_moe[l])
            continue;
        if (s->layer < 0)
            s->layer = l;
        default_layer_plan(&s->plan[l], sm_model_layer_experts(a->model, l), c->top_k);
    }
    if (s->layer < 0)
        return sm_err("%s: the model has no MoE layers", abs);
    sm_calib_spec_default(&a->spec);
    a->spec.samples = 16;
    a->spec.keep = 2048;
    a->spec.heldout = 512;
    a->spec.quiet = true;
    a->tokens_default = !o->tokens;
    char *t = o->tokens ? xstrdup(o->tokens) : sm_path_join(sm_data_dir(), "calib.u32");
    char *h = o->heldout ? xstrdup(o->heldout) : sm_path_join(sm_data_dir(), "heldout.u32");
    if (!realpath(t, a->tokens))
        snprintf(a->tokens, sizeof a->tokens, "%s", t);
    if (!realpath(h, a->heldout))
        snprintf(a->heldout, sizeof a->heldout, "%s", h);
    free(t);
    free(h);
    a->spec.tokens = a->tokens;
    if (o->calib && !realpath(o->calib, a->calib_file))
        return sm_err("%s: cannot open: %s", o->calib, strerror(errno));
    snprintf(s->plan_path, sizeof s->plan_path, "%s", o->plan ? o->plan : "submoe-plan.yaml");
    snprintf(s->commit_dir, sizeof s->commit_dir, "%.200s-merged", sm_basename(abs));
    if (o->plan && sm_exists(o->plan)) {
        char cf[PATH_MAX];
        snprintf(cf, sizeof cf, "%s", a->calib_file);
        if (tui_app_load_plan(a, o->plan))
            return -1;
        if (o->calib) /* --calib wins over the plan's calibration */
            snprintf(a->calib_file, sizeof a->calib_file, "%s", cf);
    }
    snprintf(s->status, sizeof s->status, "calibrating on %.200s ... (? for help)",
             a->calib_file[0] ? a->calib_file : a->tokens);
    return 0;
}

static int translate(int ch)
{
    switch (ch) {
    case KEY_UP: return TUI_KEY_UP;
    case KEY_DOWN: return TUI_KEY_DOWN;
    case KEY_LEFT: return TUI_KEY_LEFT;
    case KEY_RIGHT: return TUI_KEY_RIGHT;
    case KEY_PPAGE: return TUI_KEY_PGUP;
    case KEY_NPAGE: return TUI_KEY_PGDN;
    case KEY_HOME: return TUI_KEY_HOME;
    case KEY_END: return TUI_KEY_END;
    case KEY_BACKSPACE: return TUI_KEY_BACKSPACE;
    case KEY_RESIZE: return TUI_KEY_RESIZE;
    case KEY_ENTER: case '\r': return TUI_KEY_ENTER;
    default: return ch;
    }
}

static void free_app(tui_app *a)
{
    tui_state_free_data(&a->s);
    sm_calib_free(a->calib);
    sm_model_close(a->model);
    for (int l = 0; l < TUI_MAX_LAYERS; l++)
        free(a->decided_why[l]);
    free(a->warnings);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}

int tui_run(const tui_options *o)
{
    tui_app *a = xcalloc(1, sizeof *a);
    tui_state_init(&a->s);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (setup(a, o)) {
        free_app(a);
        return -1;
    }
    setlocale(LC_ALL, "");
    const char *cs = nl_langinfo(CODESET);
    a->s.utf8 = cs && (!strcmp(cs, "UTF-8") || !strcmp(cs, "utf8"));
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc)
        a->s.color = false;
    /* The worker first, while the terminal is untouched: a thread that cannot be created
     * (thread or address-space limits) is one message, not a workbench that never answers. */
    pthread_t th;
    int err = pthread_create(&th, NULL, worker, a);
    if (err) {
        sm_err("cannot start the workbench's worker thread: %s", strerror(err));
        free_app(a);
        return -1;
    }
    sm_signals_save_terminal(); /* for a second Ctrl-C while a step cannot be cancelled */
    sm_warn_handler_set(on_warning, a);
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    set_escdelay(25);
    timeout(100);
    curs_set(0);
    tui_draw_init_colors(&a->s);
    tui_push(a, (tui_job){TUI_JOB_CALIB, 0, 0, false, false});
    int frame = 0;
    bool quit = false;
    struct { int layer, cluster; unsigned gen; } asked = {-1, -1, 0};
    while (!quit && (o->frames <= 0 || frame < o->frames) && !sm_interrupted()) {
        int cols, rows;
        getmaxyx(stdscr, rows, cols);
        pthread_mutex_lock(&a->mu);
        tui_selection_settle(&a->s); /* the worker may have changed what the cursors select */
        tui_draw(&a->s, cols, rows);
        /* the spectrum view asks for its spectrum whenever the shown group's members changed */
        const tui_state *s = &a->s;
        bool want = s->calibrated && s->view == TUI_VIEW_SPECTRUM && s->is_moe[s->layer] &&
                    !tui_spectrum_fresh(s, s->layer) &&
                    (asked.layer != s->layer || asked.cluster != s->spec_cluster || asked.gen != s->plan_gen[s->layer]);
        if (want)
            asked.layer = s->layer, asked.cluster = s->spec_cluster, asked.gen = s->plan_gen[s->layer];
        pthread_mutex_unlock(&a->mu);
        if (want)
            tui_push(a, (tui_job){TUI_JOB_SPECTRUM, asked.layer, asked.cluster, false, false});
        frame++;
        int ch = getch();
        if (ch == ERR)
            continue;
        pthread_mutex_lock(&a->mu);
        int act = tui_key(&a->s, translate(ch));
        int layer = a->s.layer;
        bool busy = a->s.busy;
        if (act & TUI_ACT_OPEN)
            snprintf(a->open_path, sizeof a->open_path, "%s", a->s.input);
        pthread_mutex_unlock(&a->mu);
        if (act & TUI_ACT_QUIT)
            quit = true;
        if ((act & TUI_ACT_CANCEL) && busy)
            cancel_work(a);
        if (act & TUI_ACT_RECLUSTER)
            tui_push(a, (tui_job){TUI_JOB_RECLUSTER, layer, 0, false, false});
        else if (act & TUI_ACT_PREVIEW)
            tui_push(a, (tui_job){TUI_JOB_PREVIEW, layer, 0, (act & TUI_ACT_FORCE) != 0, false});
        if (act & TUI_ACT_PERPLEXITY)
            tui_push(a, (tui_job){TUI_JOB_PPL, 0, 0, false, false});
        if (act & TUI_ACT_SAVE)
            tui_push(a, (tui_job){TUI_JOB_SAVE, 0, 0, false, false});
        if (act & TUI_ACT_OPEN)
            tui_push(a, (tui_job){TUI_JOB_OPEN, 0, 0, false, false});
        if (act & TUI_ACT_COMMIT)
            tui_push(a, (tui_job){TUI_JOB_COMMIT, 0, 0, (act & TUI_ACT_FORCE) != 0, false});
    }
    pthread_mutex_lock(&a->mu);
    a->cancel = 1;
    a->stop = true;
    bool busy = a->s.busy;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (busy) { /* most steps stop within a second; one long LAPACK call cannot */
        int cols, rows;
        getmaxyx(stdscr, rows, cols);
        move(rows - 1, 0);
        clrtoeol();
        addnstr("Stopping: waiting for the current step (Ctrl-C again quits at once)", cols - 1);
        refresh();
    }
    pthread_join(th, NULL);
    endwin();
    sm_warn_handler_set(NULL, NULL);
    for (char *line = a->warnings, *nl; line && (nl = strchr(line, '\n')); line = nl + 1)
        sm_warn("%.*s", (int)(nl - line), line);
    if (a->s.committed[0])
        printf("committed: %s\n", a->s.committed);
    free_app(a);
    /* the loop also ends when a model file changed under a step: fail with that message */
    return sm_mapguard_tripped() ? -1 : 0;
}
