/* tui_app: the workbench's loop and its worker thread (see tui_app.h).
 *
 * The UI thread owns the terminal: it draws the state under the lock, reads keys with a 100 ms
 * timeout (so progress repaints) and turns actions into jobs. The worker owns the model, the
 * calibration data and the engine: it runs one job at a time, reports progress through an
 * sm_monitor (Esc sets its cancel flag) and publishes results into the state under the lock. */
#include "tui/tui_app.h"
#include "cmd/cmd.h"
#include "forward/moelayer.h"
#include "model/tokens.h"
#include "pipeline/apply.h"
#include "pipeline/build.h"
#include "pipeline/calib.h"
#include "plan/plan.h"
#include "tui/tui_draw.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/signals.h"

#include <curses.h>
#include <errno.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { J_CALIB = 1, J_PREVIEW, J_RECLUSTER, J_SPECTRUM, J_PPL, J_SAVE, J_COMMIT };

typedef struct {
    int kind, layer, cluster;
    bool force;
} job;

typedef struct {
    tui_state s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job q[64];
    int nq;
    bool stop;
    volatile int cancel;
    sm_model *model;
    sm_calib *calib;
    sm_calib_spec spec;
    char tokens[PATH_MAX], heldout[PATH_MAX], calib_file[PATH_MAX];
    bool have_plan_groups[512];
} app;

/* ---- jobs queue ---- */

static void push(app *a, job j)
{
    pthread_mutex_lock(&a->mu);
    for (int i = 0; i < a->nq; i++) /* coalesce identical requests */
        if (a->q[i].kind == j.kind && a->q[i].layer == j.layer && a->q[i].cluster == j.cluster) {
            pthread_mutex_unlock(&a->mu);
            return;
        }
    if (a->nq < 64)
        a->q[a->nq++] = j;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void on_progress(void *ctx, double f, const char *what)
{
    app *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->s.progress = f;
    if (what)
        snprintf(a->s.job, sizeof a->s.job, "%s", what);
    pthread_mutex_unlock(&a->mu);
}

static void set_status(app *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_status(app *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&a->mu);
    vsnprintf(a->s.status, sizeof a->s.status, fmt, ap);
    pthread_mutex_unlock(&a->mu);
    va_end(ap);
}

/* The engine job of a layer from the edited plan (snapshot taken under the lock). */
static sm_layer_job layer_job(const tui_layer_plan *p, int layer, uint64_t seed)
{
    sm_layer_job j;
    memset(&j, 0, sizeof j);
    j.layer = layer;
    j.k = p->k;
    j.groups = p->assign;
    j.algo = SM_CLUSTER_KMEANS;
    j.sim = SM_SIM_OUTPUT;
    j.seed = seed;
    j.spec.method = p->is_auto ? SM_MERGE_SUBMOE : p->method;
    j.spec.router = p->router;
    for (int q = 0; q < 3; q++)
        j.spec.matrix[q].rank = p->rank[q];
    return j;
}

static int build_layer(app *a, int l, const tui_layer_plan *p, uint64_t seed, const sm_monitor *mon,
                       sm_layer_build *b, char *why, size_t wn)
{
    sm_layer_job j = layer_job(p, l, seed);
    why[0] = 0;
    return p->is_auto ? sm_layer_build_auto(a->model, a->calib, &j, mon, b, why, wn)
                      : sm_layer_build_run(a->model, a->calib, &j, mon, b);
}

static int job_calibrate(app *a, const sm_monitor *mon)
{
    bool reused;
    a->calib = a->calib_file[0] ? sm_calib_read(a->model, a->calib_file, -1)
                                : sm_calib_capture(a->model, &a->spec, NULL, mon, &reused);
    if (!a->calib)
        return -1;
    const sm_config *c = sm_model_config(a->model);
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->is_moe[l])
            continue;
        sm_moe_layer ml;
        const sm_layer_analysis *an;
        if (sm_moe_layer_load(a->model, l, &ml) || sm_calib_analysis(a->calib, l, &ml.block, false, NULL, &an)) {
            sm_moe_layer_free(&ml);
            return -1;
        }
        int n = an->n, assign[TUI_MAX_EXPERTS];
        pthread_mutex_lock(&a->mu);
        tui_layer_plan p = a->s.plan[l];
        pthread_mutex_unlock(&a->mu);
        int rc = a->have_plan_groups[l] ? 0 : sm_engine_cluster(an, SM_CLUSTER_KMEANS, SM_SIM_OUTPUT, p.k, 1, NULL, assign);
        pthread_mutex_lock(&a->mu);
        tui_layer_data *d = &a->s.data[l];
        d->n = n;
        memcpy(d->freq, an->freq, sizeof(double) * (size_t)n);
        const double *src[3] = {an->sim_output, an->sim_weight, an->sim_logit};
        for (int q = 0; q < 3; q++) {
            free(d->sim[q]);
            d->sim[q] = src[q] ? xmalloc(sizeof(double) * (size_t)(n * n)) : NULL;
            if (src[q])
                memcpy(d->sim[q], src[q], sizeof(double) * (size_t)(n * n));
        }
        d->have_stats = true;
        if (!rc && !a->have_plan_groups[l])
            memcpy(a->s.plan[l].assign, assign, sizeof(int) * (size_t)n);
        pthread_mutex_unlock(&a->mu);
        sm_moe_layer_free(&ml);
        if (rc)
            return -1;
    }
    return 0;
}

static int job_preview(app *a, int l, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    tui_layer_plan p = a->s.plan[l];
    unsigned gen = a->s.plan_gen[l];
    uint64_t seed = a->s.seed;
    pthread_mutex_unlock(&a->mu);
    sm_layer_build b;
    char why[600];
    if (build_layer(a, l, &p, seed, mon, &b, why, sizeof why))
        return -1;
    pthread_mutex_lock(&a->mu);
    tui_layer_data *d = &a->s.data[l];
    d->have_preview = true;
    d->preview_gen = gen;
    d->output_error = b.output_error;
    d->member_error = b.mean_member_error;
    d->params_before = b.params_before;
    d->params_after = b.params_after;
    snprintf(d->chosen, sizeof d->chosen, "%.150s", why);
    pthread_mutex_unlock(&a->mu);
    sm_layer_build_free(&b);
    return 0;
}

static int job_recluster(app *a, int l, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    int k = a->s.plan[l].k;
    uint64_t seed = a->s.seed;
    pthread_mutex_unlock(&a->mu);
    sm_moe_layer ml;
    const sm_layer_analysis *an;
    int assign[TUI_MAX_EXPERTS];
    if (sm_moe_layer_load(a->model, l, &ml))
        return -1;
    int rc = sm_calib_analysis(a->calib, l, &ml.block, false, NULL, &an) ||
             sm_engine_cluster(an, SM_CLUSTER_KMEANS, SM_SIM_OUTPUT, k, seed, mon, assign);
    sm_moe_layer_free(&ml);
    if (rc)
        return -1;
    pthread_mutex_lock(&a->mu);
    memcpy(a->s.plan[l].assign, assign, sizeof(int) * (size_t)a->s.plan[l].n);
    a->s.plan[l].k = k;
    a->s.plan_gen[l]++;
    pthread_mutex_unlock(&a->mu);
    return job_preview(a, l, mon);
}

static int job_spectrum(app *a, int l, int cluster, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    tui_layer_plan p = a->s.plan[l];
    pthread_mutex_unlock(&a->mu);
    if (cluster >= p.k)
        return 0;
    sm_moe_layer ml;
    if (sm_moe_layer_load(a->model, l, &ml))
        return -1;
    const float *w[3][TUI_MAX_EXPERTS];
    int nm = 0;
    for (int i = 0; i < p.n; i++)
        if (p.assign[i] == cluster) {
            w[0][nm] = ml.gate[i], w[1][nm] = ml.up[i], w[2][nm] = ml.down[i];
            nm++;
        }
    double *sv[3] = {NULL, NULL, NULL};
    int len[3] = {0, 0, 0}, rc = 0;
    for (int q = 0; q < 3 && !rc; q++) {
        int64_t out = q == 2 ? ml.block.hidden : ml.inter, in = q == 2 ? ml.inter : ml.block.hidden;
        sm_matset set = {nm, out, in, w[q]};
        len[q] = (int)sm_usvd_max_rank(&set);
        sv[q] = xmalloc(sizeof(double) * (size_t)len[q]);
        sm_monitor_span span;
        rc = sm_usvd_spectrum(&set, sm_monitor_span_init(&span, mon, q / 3.0, (q + 1) / 3.0), sv[q]);
    }
    sm_moe_layer_free(&ml);
    pthread_mutex_lock(&a->mu);
    tui_layer_data *d = &a->s.data[l];
    for (int q = 0; q < 3; q++) {
        free(d->spec[q]);
        d->spec[q] = rc ? NULL : sv[q];
        d->spec_len[q] = len[q];
        if (rc)
            free(sv[q]);
    }
    d->have_spectrum = !rc;
    d->spec_cluster = cluster;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static int job_ppl(app *a, const sm_monitor *mon)
{
    const sm_config *c = sm_model_config(a->model);
    sm_tokens t;
    if (sm_tokens_read(a->heldout, c->vocab, &t))
        return -1;
    int T = 256, n_seq = (int)(t.n / (size_t)T < 16 ? t.n / (size_t)T : 16);
    const sm_moe_block **blocks = xcalloc((size_t)c->n_layers, sizeof *blocks);
    sm_layer_build *b = xcalloc((size_t)c->n_layers, sizeof *b);
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    double orig = a->s.ppl_original;
    uint64_t seed = a->s.seed;
    unsigned gen = 0;
    for (int l = 0; l < c->n_layers; l++)
        gen += a->s.plan_gen[l];
    pthread_mutex_unlock(&a->mu);
    sm_monitor_span span;
    if (n_seq < 1)
        rc = sm_err("%s holds fewer than %d tokens", a->heldout, T);
    if (!rc && orig < 0)
        rc = sm_perplexity_with(a->model, t.ids, n_seq, T, blocks, sm_monitor_span_init(&span, mon, 0, 0.2), &orig);
    for (int l = 0; !rc && l < c->n_layers; l++) {
        if (!c->is_moe[l])
            continue;
        pthread_mutex_lock(&a->mu);
        tui_layer_plan p = a->s.plan[l];
        pthread_mutex_unlock(&a->mu);
        char why[600];
        rc = build_layer(a, l, &p, seed, sm_monitor_span_init(&span, mon, 0.2 + 0.6 * l / c->n_layers,
                                                               0.2 + 0.6 * (l + 1) / c->n_layers),
                         &b[l], why, sizeof why);
        if (!rc)
            blocks[l] = &b[l].block;
    }
    double pp = -1;
    if (!rc)
        rc = sm_perplexity_with(a->model, t.ids, n_seq, T, blocks, sm_monitor_span_init(&span, mon, 0.8, 1), &pp);
    for (int l = 0; l < c->n_layers; l++)
        sm_layer_build_free(&b[l]);
    free(b);
    free(blocks);
    sm_tokens_free(&t);
    pthread_mutex_lock(&a->mu);
    a->s.ppl_original = orig;
    if (!rc) {
        a->s.ppl_plan = pp;
        a->s.ppl_gen = gen;
        snprintf(a->s.status, sizeof a->s.status, "perplexity on %d x %d held-out tokens: original %.3f, plan %.3f",
                 n_seq, T, orig, pp);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* The edited plan as a submoe_plan document. */
static void state_to_plan(app *a, sm_plan *p, const char *file)
{
    sm_plan_init(p);
    p->file = xstrdup(file);
    p->model_path = xstrdup(a->s.model);
    sm_model_fingerprint(a->model, p->fingerprint);
    p->has_fingerprint = true;
    if (a->calib_file[0]) /* read as it is, with its own held-out split */
        p->calib.stats = xstrdup(a->calib_file);
    else
        p->calib.tokens = xstrdup(a->tokens);
    bool spec = !a->calib_file[0];
    p->calib.has_samples = p->calib.has_seq_len = p->calib.has_keep = p->calib.has_heldout = spec;
    p->calib.has_sample = p->calib.has_seed = spec;
    p->calib.samples = a->spec.samples, p->calib.seq_len = a->spec.seq_len;
    p->calib.keep = a->spec.keep, p->calib.heldout = a->spec.heldout;
    p->calib.sample = a->spec.sample, p->calib.seed = a->spec.seed;
    p->has_seed = true;
    p->seed = a->s.seed;
    p->output.has_format = true;
    p->output.format = SM_OUT_SUBMOE;
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
        pl->s.has_router = true;
        pl->s.router = tp->router;
        for (int q = 0; q < 3; q++)
            pl->s.rank.r[q] = tp->rank[q], pl->s.rank.set[q] = true;
        bool keep = tp->method == SM_MERGE_KEEP && !tp->is_auto;
        pl->s.has_experts = true;
        pl->s.experts = keep ? tp->n : tp->k;
        if (!keep) {
            pl->n_groups = tp->k;
            pl->group_len = xcalloc((size_t)tp->k, sizeof(int));
            pl->groups = xcalloc((size_t)tp->k, sizeof(int *));
            for (int g = 0; g < tp->k; g++) {
                pl->groups[g] = xcalloc((size_t)tp->n, sizeof(int));
                for (int e = 0; e < tp->n; e++)
                    if (tp->assign[e] == g)
                        pl->groups[g][pl->group_len[g]++] = e;
            }
        }
    }
    p->header_comment = xasprintf("saved from the submoe workbench");
}

static int job_save(app *a)
{
    pthread_mutex_lock(&a->mu);
    char path[512];
    snprintf(path, sizeof path, "%s", a->s.plan_path);
    sm_plan p;
    state_to_plan(a, &p, path);
    pthread_mutex_unlock(&a->mu);
    int rc = sm_plan_write(&p, path);
    sm_plan_free(&p);
    pthread_mutex_lock(&a->mu);
    if (!rc) {
        a->s.modified = false;
        snprintf(a->s.status, sizeof a->s.status, "plan saved to %.100s (submoe apply %.100s -o DIR)", path, path);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static int job_commit(app *a, bool force, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", a->s.input);
    sm_plan p;
    state_to_plan(a, &p, "(workbench plan)");
    pthread_mutex_unlock(&a->mu);
    if (!force && sm_exists(dir)) {
        sm_plan_free(&p);
        pthread_mutex_lock(&a->mu);
        a->s.dialog = TUI_DIALOG_OVERWRITE;
        pthread_mutex_unlock(&a->mu);
        return 0;
    }
    pthread_mutex_lock(&a->mu);
    static const sm_out_format fmts[3] = {SM_OUT_SUBMOE, SM_OUT_HF, SM_OUT_HF_EXPANDED};
    sm_out_format fmt = fmts[a->s.commit_format % 3];
    pthread_mutex_unlock(&a->mu);
    sm_apply_opts o = {.outdir = dir, .format = (int)fmt, .force = force, .quiet = true, .mon = mon};
    sm_apply_report rep;
    int rc = sm_apply(&p, &o, &rep);
    sm_plan_free(&p);
    if (!rc) {
        pthread_mutex_lock(&a->mu);
        snprintf(a->s.committed, sizeof a->s.committed, "%.500s", dir);
        snprintf(a->s.status, sizeof a->s.status, "committed to %.150s (%s): %.1f MB, routed experts %.1f%% of the original",
                 dir, sm_out_format_name(fmt), rep.bytes / 1e6,
                 rep.params_before ? 100.0 * rep.params_after / rep.params_before : 0);
        pthread_mutex_unlock(&a->mu);
    }
    return rc;
}

static void *worker(void *arg)
{
    app *a = arg;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->nq && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->stop) {
            pthread_mutex_unlock(&a->mu);
            return NULL;
        }
        job j = a->q[0];
        memmove(a->q, a->q + 1, sizeof a->q[0] * (size_t)--a->nq);
        a->cancel = 0;
        a->s.busy = true;
        a->s.progress = 0;
        static const char *const names[] = {"", "calibrating", "preview", "re-clustering", "spectrum",
                                            "perplexity", "saving", "committing"};
        snprintf(a->s.job, sizeof a->s.job, "%s", names[j.kind]);
        bool ready = a->calib != NULL;
        pthread_mutex_unlock(&a->mu);
        sm_monitor mon = {on_progress, a, &a->cancel};
        int rc = 0;
        if (!ready && j.kind != J_CALIB && j.kind != J_SAVE)
            rc = 0; /* dropped: nothing to work on */
        else if (j.kind == J_CALIB) {
            rc = job_calibrate(a, &mon);
            if (!rc)
                set_status(a, "calibrated on %.120s: Tab for the heatmap, ? for every key",
                           a->calib_file[0] ? a->calib_file : a->tokens);
        }
        else if (j.kind == J_PREVIEW)
            rc = job_preview(a, j.layer, &mon);
        else if (j.kind == J_RECLUSTER)
            rc = job_recluster(a, j.layer, &mon);
        else if (j.kind == J_SPECTRUM)
            rc = job_spectrum(a, j.layer, j.cluster, &mon);
        else if (j.kind == J_PPL)
            rc = job_ppl(a, &mon);
        else if (j.kind == J_SAVE)
            rc = job_save(a);
        else if (j.kind == J_COMMIT)
            rc = job_commit(a, j.force, &mon);
        if (rc)
            set_status(a, "%s", sm_errmsg());
        pthread_mutex_lock(&a->mu);
        a->s.busy = a->nq > 0;
        pthread_mutex_unlock(&a->mu);
    }
}

/* ---- setup ---- */

static int load_plan(app *a, const char *path)
{
    sm_plan p;
    if (sm_plan_read(path, &p) || sm_plan_check_model(&p, a->model)) {
        sm_plan_free(&p);
        return -1;
    }
    tui_state *s = &a->s;
    for (int i = 0; i < p.n_layers; i++) {
        const sm_plan_layer *pl = &p.layers[i];
        tui_layer_plan *tp = &s->plan[pl->layer];
        if (pl->s.has_method)
            tp->is_auto = pl->s.method_auto, tp->method = pl->s.method;
        if (pl->s.has_router)
            tp->router = pl->s.router;
        for (int q = 0; q < 3; q++)
            if (pl->s.rank.set[q])
                tp->rank[q] = pl->s.rank.r[q];
        if (pl->s.has_experts)
            tp->k = pl->s.experts;
        if (pl->n_groups) {
            tp->k = pl->n_groups;
            for (int g = 0; g < pl->n_groups; g++)
                for (int e = 0; e < pl->group_len[g]; e++)
                    tp->assign[pl->groups[g][e]] = g;
            a->have_plan_groups[pl->layer] = true;
        }
    }
    if (p.calib.tokens) {
        char *t = sm_plan_resolve_path(&p, p.calib.tokens);
        snprintf(a->tokens, sizeof a->tokens, "%s", t);
        free(t);
    }
    if (p.calib.has_samples)
        a->spec.samples = p.calib.samples;
    if (p.calib.has_seq_len)
        a->spec.seq_len = p.calib.seq_len;
    if (p.calib.has_keep)
        a->spec.keep = p.calib.keep;
    if (p.calib.has_heldout)
        a->spec.heldout = p.calib.heldout;
    if (p.has_seed)
        s->seed = p.seed;
    sm_plan_free(&p);
    return 0;
}

static int setup(app *a, const char *model_dir, const char *plan_path)
{
    char abs[PATH_MAX];
    if (!realpath(model_dir, abs))
        snprintf(abs, sizeof abs, "%s", model_dir);
    if (!(a->model = sm_model_open(abs)))
        return -1;
    const sm_config *c = sm_model_config(a->model);
    tui_state *s = &a->s;
    if (c->n_layers > 512 || c->n_experts > TUI_MAX_EXPERTS)
        return sm_err("%s: the workbench handles up to 512 layers of up to %d experts", abs, TUI_MAX_EXPERTS);
    snprintf(s->model, sizeof s->model, "%.500s", abs);
    snprintf(s->arch, sizeof s->arch, "%s", sm_arch_name(c->arch));
    s->n_layers = c->n_layers;
    s->top_k = c->top_k;
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
        tui_layer_plan *p = &s->plan[l];
        p->n = sm_model_layer_experts(a->model, l);
        p->k = (int)lround(p->n * 0.75);
        p->k = p->k < c->top_k ? c->top_k : p->k;
        for (int i = 0; i < p->n; i++)
            p->assign[i] = i % p->k; /* until calibration clusters them */
        p->is_auto = true;
        p->method = SM_MERGE_SUBMOE;
        p->router = SM_ROUTER_COLLAPSE_LSTSQ;
        for (int q = 0; q < 3; q++)
            p->rank[q] = (sm_rank){SM_RANK_FULL, 0, 0};
    }
    if (s->layer < 0)
        return sm_err("%s: the model has no MoE layers", abs);
    sm_calib_spec_default(&a->spec);
    a->spec.samples = 16;
    a->spec.keep = 2048;
    a->spec.heldout = 512;
    a->spec.quiet = true;
    char *t = sm_path_join(sm_data_dir(), "calib.u32"), *h = sm_path_join(sm_data_dir(), "heldout.u32");
    snprintf(a->tokens, sizeof a->tokens, "%s", t);
    snprintf(a->heldout, sizeof a->heldout, "%s", h);
    free(t);
    free(h);
    if (plan_path && sm_exists(plan_path) && load_plan(a, plan_path))
        return -1;
    a->spec.tokens = a->tokens;
    snprintf(s->plan_path, sizeof s->plan_path, "%s", plan_path ? plan_path : "submoe-plan.yaml");
    char base[256];
    snprintf(base, sizeof base, "%s", sm_basename(abs));
    snprintf(s->input, sizeof s->input, "%s-merged", base);
    snprintf(s->status, sizeof s->status, "calibrating on %.180s ... (? for help)", a->tokens);
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
    case KEY_BACKSPACE: return TUI_KEY_BACKSPACE;
    case KEY_RESIZE: return TUI_KEY_RESIZE;
    case KEY_ENTER: case '\r': return TUI_KEY_ENTER;
    default: return ch;
    }
}

int tui_run(const char *model_dir, const char *plan_path, const char *calib_path, int frames)
{
    app *a = xcalloc(1, sizeof *a);
    tui_state_init(&a->s);
    if (calib_path && !realpath(calib_path, a->calib_file)) {
        sm_err("%s: cannot open: %s", calib_path, strerror(errno));
        free(a);
        return -1;
    }
    if (setup(a, model_dir, plan_path)) {
        sm_model_close(a->model);
        free(a);
        return -1;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    setlocale(LC_ALL, "");
    const char *cs = nl_langinfo(CODESET);
    a->s.utf8 = cs && (!strcmp(cs, "UTF-8") || !strcmp(cs, "utf8"));
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc)
        a->s.color = false;
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    set_escdelay(25);
    timeout(100);
    curs_set(0);
    tui_draw_init_colors(&a->s);
    pthread_t th;
    pthread_create(&th, NULL, worker, a);
    push(a, (job){J_CALIB, 0, 0, false});
    push(a, (job){J_PREVIEW, a->s.layer, 0, false});
    int frame = 0;
    bool quit = false;
    while (!quit && (frames <= 0 || frame < frames) && !sm_interrupted()) {
        int cols, rows;
        getmaxyx(stdscr, rows, cols);
        pthread_mutex_lock(&a->mu);
        tui_draw(&a->s, cols, rows);
        pthread_mutex_unlock(&a->mu);
        frame++;
        int ch = getch();
        if (ch == ERR)
            continue;
        pthread_mutex_lock(&a->mu);
        int act = tui_key(&a->s, translate(ch));
        int layer = a->s.layer, cluster = a->s.spec_cluster;
        bool busy = a->s.busy;
        pthread_mutex_unlock(&a->mu);
        if (act & TUI_ACT_QUIT)
            quit = true;
        if ((act & TUI_ACT_CANCEL) && busy)
            a->cancel = 1;
        if (act & TUI_ACT_RECLUSTER)
            push(a, (job){J_RECLUSTER, layer, 0, false});
        else if (act & TUI_ACT_PREVIEW)
            push(a, (job){J_PREVIEW, layer, 0, false});
        if (act & TUI_ACT_SPECTRUM)
            push(a, (job){J_SPECTRUM, layer, cluster, false});
        if (act & TUI_ACT_PERPLEXITY)
            push(a, (job){J_PPL, 0, 0, false});
        if (act & TUI_ACT_SAVE)
            push(a, (job){J_SAVE, 0, 0, false});
        if (act & TUI_ACT_COMMIT) /* from the overwrite question ('y'): replace; else ask if it exists */
            push(a, (job){J_COMMIT, 0, 0, ch == 'y' || ch == 'Y'});
    }
    a->cancel = 1;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(th, NULL);
    endwin();
    int rc = 0;
    if (a->s.committed[0])
        printf("committed: %s\n", a->s.committed);
    tui_state_free_data(&a->s);
    sm_calib_free(a->calib);
    sm_model_close(a->model);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
    return rc;
}
