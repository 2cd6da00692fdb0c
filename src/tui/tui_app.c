/* tui_app: the workbench's loop and its worker thread (see tui_app.h); the queue, opening and
 * saving plans are tui_worker.c's, the plan and its edits tui_plan.c's, the jobs tui_jobs.c's.
 *
 * The UI thread owns the terminal: it draws the state under the lock, reads keys with a 100 ms
 * timeout (so progress repaints) and turns actions into jobs. The worker runs one job at a time,
 * reports progress through an sm_monitor (Esc sets its cancel flag) and publishes results into
 * the state under the lock. */
#include "tui/tui_app.h"
#include "pipeline/apply.h"
#include "tui/tui_draw.h"
#include "figures/fig_render.h"
#include "tui/tui_export.h"
#include "tui/tui_jobs.h"
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
                                        "perplexity", "saving", "opening", "committing", "accuracy",
                                        "reading the plan to compare", "comparing"};
    _Static_assert(sizeof names / sizeof names[0] == TUI_JOB_LAST + 1, "a name for every job kind");
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
        a->running = j;
        a->running_now = true;
        a->preempted = false;
        a->s.busy = true;
        a->s.progress = 0;
        if (j.kind == TUI_JOB_PREVIEW || j.kind == TUI_JOB_RECLUSTER || j.kind == TUI_JOB_SPECTRUM ||
            j.kind == TUI_JOB_OTHER)
            snprintf(a->s.job, sizeof a->s.job, "%s L%d", names[j.kind], j.layer);
        else
            snprintf(a->s.job, sizeof a->s.job, "%s", names[j.kind]);
        pthread_mutex_unlock(&a->mu);
        sm_monitor mon = {on_progress, a, &a->cancel};
        int rc = tui_job_run(a, &j, &mon);
        pthread_mutex_lock(&a->mu);
        bool preempted = a->preempted; /* queued again behind the user's job: not an error */
        a->running_now = a->preempted = false;
        pthread_mutex_unlock(&a->mu);
        if (rc && !preempted && !a->cancel) /* cancelled: Esc said so (tui_cancel_work) */
            tui_status(a, true, "%s", sm_errmsg());
        pthread_mutex_lock(&a->mu);
        a->s.busy = a->nq > 0;
        /* the background previews are done: say so, unless the status line moved on to another
         * message (a cleared one had only lost its context) */
        char *tail = strstr(a->s.status, "; previewing every layer");
        if (!a->nq && j.background && (tail || !a->s.status[0])) {
            char said[TUI_STATUS_MAX];
            snprintf(said, sizeof said, "%.*s", tail ? (int)(tail - a->s.status) : 0, a->s.status);
            tui_say(&a->s, false, "%s%severy layer previewed (P: perplexity)", said, said[0] ? "; " : "");
        }
        pthread_mutex_unlock(&a->mu);
    }
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
        if (!c->is_moe[l])
            continue;
        if (s->layer < 0)
            s->layer = l;
        tui_plan_layer_init(s, l, sm_model_layer_experts(a->model, l)); /* the plan's defaults */
    }
    if (s->layer < 0)
        return sm_err("%s: the model has no MoE layers", abs);
    sm_calib_spec_default(&a->spec);
    a->spec.quiet = true;
    a->spec.precision = o->precision;
    tui_app_calib_settings(a); /* the numbers are the plan's */
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
    a->heldout_given = o->heldout != NULL;
    char **text = xcalloc((size_t)o->n_text + 1, sizeof *text);
    for (int i = 0; i < o->n_text; i++)
        text[i] = sm_path_absolute(o->text[i]);
    tui_app_set_text(a, (const char *const *)text, o->n_text, o->text_field);
    for (int i = 0; i < o->n_text; i++)
        free(text[i]);
    free(text);
    char *task = o->task ? xstrdup(o->task) : sm_path_join(sm_data_dir(), "demo-task.jsonl");
    if (!realpath(task, a->task))
        snprintf(a->task, sizeof a->task, "%s", task);
    free(task);
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
    tui_say(s, false, "calibrating on %s%s ... (? for help)",
             a->calib_file[0] ? a->calib_file : a->n_text ? a->text[0] : a->tokens,
             !a->calib_file[0] && a->n_text > 1 ? " and more text" : "");
    return 0;
}

/* E: the view's figures, drawn here (a fraction of a second) rather than queued behind the
 * background previews; the state's lock is held only to copy what the view shows. */
static void export_view(tui_app *a)
{
    tui_export x;
    pthread_mutex_lock(&a->mu);
    tui_export_prepare(&a->s, a->s.export_dir, &x);
    pthread_mutex_unlock(&a->mu);
    char msg[256];
    bool err = tui_export_write(&x, msg, sizeof msg);
    tui_status(a, err, "%s", msg);
    tui_export_free(&x);
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
    free(a->warnings);
    tui_app_set_text(a, NULL, 0, NULL);
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
    /* tmux and screen send these for Home and End whatever TERM says; undecoded, "ESC [ 4 ~" would
     * be four keys, and 4 shows the model view */
    define_key("\033[1~", KEY_HOME);
    define_key("\033[4~", KEY_END);
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
        a->s.screen_cols = cols, a->s.screen_rows = rows; /* the log's and help's pages */
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
        if (act & TUI_ACT_COMPARE)
            snprintf(a->compare_path, sizeof a->compare_path, "%s", a->s.input);
        bool unbuilt[TUI_MAX_LAYERS] = {false}; /* the compared plan's layers without their error */
        for (int l = 0; (act & TUI_ACT_OTHER_ERRORS) && a->s.other && l < a->s.n_layers; l++)
            unbuilt[l] = a->s.is_moe[l] && !a->s.other->have_error[l];
        if ((act & TUI_ACT_OTHER_ERRORS) && a->s.other)
            a->s.other->stopped = false;
        bool stale[TUI_MAX_LAYERS] = {false}; /* several layers changed at once: their previews */
        for (int l = 0; (act & TUI_ACT_PREVIEW_ALL) && l < a->s.n_layers; l++)
            stale[l] = a->s.is_moe[l] && !tui_preview_fresh(&a->s, l);
        pthread_mutex_unlock(&a->mu);
        if (act & TUI_ACT_QUIT)
            quit = true;
        if ((act & TUI_ACT_CANCEL) && busy)
            tui_cancel_work(a);
        if (act & TUI_ACT_RECLUSTER)
            tui_push(a, (tui_job){TUI_JOB_RECLUSTER, layer, 0, false, false});
        else if (act & TUI_ACT_PREVIEW)
            tui_push(a, (tui_job){TUI_JOB_PREVIEW, layer, 0, (act & TUI_ACT_FORCE) != 0, false});
        if (act & TUI_ACT_PREVIEW_ALL) { /* the selected layer first, the others behind the user's work */
            tui_push(a, (tui_job){TUI_JOB_PREVIEW, layer, 0, false, false});
            for (int l = 0; l < TUI_MAX_LAYERS; l++)
                if (stale[l] && l != layer)
                    tui_push(a, (tui_job){TUI_JOB_PREVIEW, l, 0, false, true});
        }
        if (act & TUI_ACT_COMPARE)
            tui_push(a, (tui_job){TUI_JOB_COMPARE, 0, 0, false, false});
        for (int l = 0; l < TUI_MAX_LAYERS; l++)
            if (unbuilt[l])
                tui_push(a, (tui_job){TUI_JOB_OTHER, l, 0, false, true});
        if (act & TUI_ACT_PERPLEXITY)
            tui_push(a, (tui_job){TUI_JOB_PPL, 0, act & TUI_ACT_PPL_BOTH ? TUI_PPL_BOTH : 0, false, false});
        if (act & TUI_ACT_ACCURACY)
            tui_push(a, (tui_job){TUI_JOB_ACCURACY, 0, 0, false, false});
        if (act & TUI_ACT_SAVE)
            tui_push(a, (tui_job){TUI_JOB_SAVE, 0, 0, false, false});
        if (act & TUI_ACT_OPEN)
            tui_push(a, (tui_job){TUI_JOB_OPEN, 0, 0, false, false});
        if (act & TUI_ACT_COMMIT)
            tui_push(a, (tui_job){TUI_JOB_COMMIT, 0, 0, (act & TUI_ACT_FORCE) != 0, false});
        if (act & TUI_ACT_EXPORT)
            export_view(a);
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
    fig_render_cleanup(); /* the fonts E's figures loaded */
    /* the loop also ends when a model file changed under a step: fail with that message */
    return sm_mapguard_tripped() ? -1 : 0;
}
