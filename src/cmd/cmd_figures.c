/* submoe figures: the figures for a paper, from a model's calibration statistics and (with --plan)
 * what the plan builds — every MoE layer's similarity heatmaps, the singular-value spectra of each
 * merged group with the plan's ranks, and the whole-model chart — as SVG, PDF and PNG, each with a
 * CSV of the numbers it draws (src/figures). The directory is written under a temporary name and
 * renamed when complete (util/outdir.h): a failure leaves nothing behind. */
#include "cmd/cmd.h"
#include "figures/fig_heatmap.h"
#include "figures/fig_model.h"
#include "figures/fig_spectrum.h"
#include "forward/moelayer.h"
#include "pipeline/resolve.h"
#include "plan/plan.h"
#include "util/datadir.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/iopaths.h"
#include "util/mem.h"
#include "util/outdir.h"
#include "util/signals.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe figures MODEL [--plan PLAN] [--calib FILE | --tokens FILE] -o DIR [OPTIONS]\n"
            "\n"
            "Write figures for papers into DIR (a new directory, created complete or not at all), each\n"
            "as SVG, PDF and PNG with a CSV of every number it draws:\n"
            "  layerL-similarity-{output,weight,logit}  the experts' similarity heatmaps (experts in the\n"
            "                           plan's groups with --plan)\n"
            "  layerL-groupG-spectrum   with --plan: the singular values of each merged group's union\n"
            "                           matrices (gate, up, down), the plan's ranks and the ranks keeping\n"
            "                           90/95/99%% of the energy\n"
            "  model                    per MoE layer: experts kept, parameters saved, routing-frequency\n"
            "                           distribution and (with --plan) the held-out output error, computed\n"
            "                           as `submoe plan` previews it; model-frequency.csv the frequencies\n"
            "\n"
            "Options:\n"
            "  -p, --plan PLAN          a submoe-plan(5) file for MODEL: its groups, ranks and previews\n"
            "  -c, --calib FILE         an existing stats file (submoe calibrate) to read\n"
            "  -t, --tokens FILE        calibration tokens to capture (default: the bundled data/calib.u32,\n"
            "                           bytes of English text: only for a byte vocabulary)\n"
            "  -o, --out DIR            the directory to write (required; must not exist unless --force)\n"
            "  -f, --force              replace an existing DIR\n"
            "  -q, --quiet              no progress or summary\n"
            "  -h, --help               show this help\n");
}

typedef struct fig_args {
    const char *model, *plan, *calib, *tokens, *out;
    bool force, quiet;
} fig_args;

/* What the figures are drawn from: the plan resolved (model, calibration, layers), or the model
 * and its calibration alone. */
typedef struct fig_source {
    bool has_plan;
    sm_plan plan;
    sm_resolved_plan r;
    sm_model *model;   /* without a plan (with one: r.model) */
    sm_calib *calib;   /* without a plan (with one: r.calib) */
} fig_source;

static int open_plain(const fig_args *a, fig_source *s, const sm_monitor *mon)
{
    if (!(s->model = sm_model_open(a->model)))
        return -1;
    if (a->calib)
        return (s->calib = sm_calib_read(s->model, a->calib, -1)) ? 0 : -1;
    sm_calib_spec spec;
    sm_calib_spec_default(&spec);
    char *dflt = a->tokens ? NULL : sm_path_join(sm_data_dir(), "calib.u32");
    spec.tokens = a->tokens ? a->tokens : dflt;
    spec.quiet = a->quiet;
    bool reused;
    int rc = dflt && sm_bundled_tokens_check(sm_model_config(s->model)->vocab, dflt, "--tokens");
    if (!rc)
        rc = (s->calib = sm_calib_capture(s->model, &spec, NULL, mon, &reused)) ? 0 : -1;
    free(dflt);
    return rc;
}

static int open_source(const fig_args *a, fig_source *s, const sm_monitor *mon)
{
    if (!a->plan)
        return open_plain(a, s, mon);
    s->has_plan = true;
    if (sm_plan_read(a->plan, &s->plan))
        return -1;
    free(s->plan.model_path); /* the plan for this model (its fingerprint is checked) */
    s->plan.model_path = sm_path_absolute(a->model);
    if (a->calib || a->tokens) { /* the statistics named here instead of the plan's */
        free(s->plan.calib.tokens);
        s->plan.calib.tokens = a->tokens ? sm_path_absolute(a->tokens) : NULL;
        free(s->plan.calib.stats);
        s->plan.calib.stats = a->calib ? sm_path_absolute(a->calib) : NULL;
    }
    if (sm_plan_resolve(&s->plan, mon, a->quiet, &s->r)) /* its messages name the plan */
        return -1;
    s->model = s->r.model, s->calib = s->r.calib;
    return 0;
}

static void close_source(fig_source *s)
{
    if (s->has_plan) {
        sm_resolved_plan_free(&s->r);
    } else {
        if (s->calib)
            sm_calib_free(s->calib);
        if (s->model)
            sm_model_close(s->model);
    }
    sm_plan_free(&s->plan);
}

/* The three similarity heatmaps of a layer (weight only when the statistics have it). */
static int heatmaps(const char *dir, int l, const sm_layer_analysis *an, const int *group, const char *grouping,
                    fig_written *wr)
{
    static const char *const kind[3] = {"output", "weight", "logit"};
    const double *sim[3] = {an->sim_output, an->sim_weight, an->sim_logit};
    for (int q = 0; q < 3; q++) {
        if (!sim[q])
            continue;
        char title[160], base[64];
        snprintf(title, sizeof title, "layer %d: %s similarity of %d experts%s", l, kind[q], an->n, grouping);
        snprintf(base, sizeof base, "layer%d-similarity-%s", l, kind[q]);
        fig_heatmap h = {title, an->n, sim[q], group};
        if (fig_heatmap_write(dir, base, &h, wr))
            return -1;
    }
    return 0;
}

/* The rank group c's matrix q is merged at, as a number of directions (the resolver's rule). */
static int64_t group_rank(const sm_resolved_layer *rl, sm_merge_method m, int c, int q, int64_t out, int64_t in,
                          int members)
{
    const sm_layer_spec *sp = &rl->job.spec;
    const sm_rank *r = sp->cluster && c < sp->n_cluster ? &sp->cluster[c][q].rank : &sp->matrix[q].rank;
    return sm_resolve_rank_value(r, m, out, in, members);
}

/* The spectra of every merged group of two or more members. */
static int spectra(const char *dir, const sm_layer_build *b, const sm_resolved_layer *rl, const sm_monitor *mon,
                   fig_written *wr)
{
    const sm_moe_layer *ml = &b->src;
    if (!sm_merge_method_merges(b->merged.method) || !b->assign || !ml->gate)
        return 0;
    const float **w[3];
    for (int q = 0; q < 3; q++)
        w[q] = xcalloc((size_t)b->n, sizeof *w[q]);
    int rc = 0;
    for (int c = 0; c < b->k && !rc; c++) {
        int nm = 0;
        char members[512] = "";
        size_t mn = 0;
        for (int i = 0; i < b->n; i++)
            if (b->assign[i] == c) {
                w[0][nm] = ml->gate[i], w[1][nm] = ml->up[i], w[2][nm] = ml->down[i], nm++;
                if (mn < sizeof members - 8)
                    mn += (size_t)snprintf(members + mn, sizeof members - mn, " %d", i);
            }
        if (nm < 2)
            continue;
        fig_spectrum fs = {NULL, {NULL, NULL, NULL}, {0, 0, 0}, {0, 0, 0}};
        for (int q = 0; q < 3 && !rc; q++) {
            int64_t out = q == 2 ? ml->block.hidden : ml->inter, in = q == 2 ? ml->inter : ml->block.hidden;
            sm_matset set = {nm, out, in, w[q]};
            fs.len[q] = (int)sm_usvd_max_rank(&set);
            double *sv = xmalloc(sizeof(double) * (size_t)fs.len[q]);
            fs.sv[q] = sv;
            rc = sm_usvd_spectrum(&set, mon, sv);
            fs.rank[q] = group_rank(rl, b->merged.method, c, q, out, in, nm);
        }
        char title[640], base[64];
        snprintf(title, sizeof title, "layer %d, group %d (experts%s): %s", b->layer, c, members,
                 sm_merge_method_name(b->merged.method));
        snprintf(base, sizeof base, "layer%d-group%d-spectrum", b->layer, c);
        fs.title = title;
        if (!rc)
            rc = fig_spectrum_write(dir, base, &fs, wr);
        for (int q = 0; q < 3; q++)
            free((double *)fs.sv[q]);
    }
    for (int q = 0; q < 3; q++)
        free(w[q]);
    return rc;
}

/* A planned layer: built as `submoe plan` previews it; its heatmaps in the built groups, its
 * spectra and its row of the model chart (*freq: a copy the row points at). */
static int plan_layer(fig_source *s, int l, const char *dir, const sm_monitor *mon, fig_model_layer *row,
                      double **freq, fig_written *wr)
{
    sm_resolved_layer *rl = &s->r.layers[l];
    sm_layer_build b;
    char why[600] = "";
    int rc = rl->is_auto ? sm_layer_build_auto(s->model, s->calib, &rl->job, mon, &b, why, sizeof why)
                         : sm_layer_build_run(s->model, s->calib, &rl->job, mon, &b);
    if (rc)
        return -1;
    const sm_layer_analysis *an = b.analysis;
    if (sm_layer_build_check(&b) || (!an && sm_calib_analysis(s->calib, l, &b.src.block, false, mon, &an))) {
        sm_layer_build_free(&b);
        return -1;
    }
    bool merges = sm_merge_method_merges(b.merged.method);
    int *group = xmalloc(sizeof(int) * (size_t)b.n);
    for (int i = 0; i < b.n; i++) /* a pruned layer: its kept experts, then the dropped ones */
        group[i] = merges && b.assign ? b.assign[i] : b.merged.cluster_of && b.merged.cluster_of[i] < 0 ? 1 : 0;
    rc = heatmaps(dir, l, an, group, merges ? ", in the plan's groups" : ", kept experts first", wr);
    if (!rc)
        rc = spectra(dir, &b, rl, mon, wr);
    *freq = xmalloc(sizeof(double) * (size_t)an->n);
    memcpy(*freq, an->freq, sizeof(double) * (size_t)an->n);
    *row = (fig_model_layer){l, b.n, b.merged.n_experts, sm_merge_method_name(b.merged.method), b.params_before,
                             b.params_after, b.output_error, *freq};
    free(group);
    sm_layer_build_free(&b);
    sm_calib_release(s->calib, l);
    return rc;
}

/* A layer without a plan: its heatmaps in expert order and its frequencies. */
static int plain_layer(fig_source *s, int l, const char *dir, const sm_monitor *mon, fig_model_layer *row,
                       double **freq, fig_written *wr)
{
    sm_moe_layer ml;
    const sm_layer_analysis *an;
    /* a stats file has the statistics: the layer's weights are not needed */
    if (sm_calib_has_stats(s->calib) ? sm_moe_layer_load_shell(s->model, l, &ml)
                                     : sm_moe_layer_load_mon(s->model, l, mon, &ml))
        return -1;
    int rc = sm_calib_analysis(s->calib, l, &ml.block, false, mon, &an);
    if (!rc)
        rc = heatmaps(dir, l, an, NULL, "", wr);
    if (!rc) {
        *freq = xmalloc(sizeof(double) * (size_t)an->n);
        memcpy(*freq, an->freq, sizeof(double) * (size_t)an->n);
        int64_t params = (int64_t)an->n * 3 * ml.inter * ml.block.hidden;
        *row = (fig_model_layer){l, an->n, -1, NULL, params, -1, -1, *freq};
    }
    sm_moe_layer_free(&ml);
    sm_calib_release(s->calib, l);
    return rc;
}

static int write_figures(fig_source *s, const fig_args *a, const char *dir, const sm_monitor *mon, int *n_files)
{
    const sm_config *mc = sm_model_config(s->model);
    fig_model_layer *rows = xcalloc((size_t)mc->n_layers, sizeof *rows);
    double **freq = xcalloc((size_t)mc->n_layers, sizeof *freq);
    fig_written wr;
    int n = 0, rc = 0;
    for (int l = 0; l < mc->n_layers && !rc; l++) {
        if (!mc->is_moe[l] || (s->has_plan && !s->r.layers[l].n))
            continue;
        memset(&wr, 0, sizeof wr);
        rc = s->has_plan ? plan_layer(s, l, dir, mon, &rows[n], &freq[n], &wr)
                         : plain_layer(s, l, dir, mon, &rows[n], &freq[n], &wr);
        rc = rc ? rc : sm_check_interrupt();
        *n_files += wr.n_files;
        if (!rc && !a->quiet)
            fprintf(stderr, "layer %d: %d files\n", l, wr.n_files);
        n += !rc;
    }
    char title[600];
    snprintf(title, sizeof title, "%s: %d MoE layers%s%s", sm_basename(a->model), n, a->plan ? ", plan " : "",
             a->plan ? sm_basename(a->plan) : "");
    fig_model fm = {title, n, rows};
    memset(&wr, 0, sizeof wr);
    if (!rc)
        rc = fig_model_write(dir, "model", &fm, &wr);
    *n_files += wr.n_files;
    for (int i = 0; i < mc->n_layers; i++)
        free(freq[i]);
    free(freq);
    free(rows);
    return rc;
}

static const struct option fig_options[] = {
    {"plan", required_argument, NULL, 'p'}, {"calib", required_argument, NULL, 'c'},
    {"tokens", required_argument, NULL, 't'}, {"out", required_argument, NULL, 'o'},
    {"force", no_argument, NULL, 'f'},      {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
};

/* 0 parsed, 1 help shown, 2 usage error (said). */
static int parse_args(int argc, char **argv, fig_args *a)
{
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "p:c:t:o:fqh", fig_options, NULL)) != -1) {
        switch (ch) {
        case 'p': a->plan = optarg; break;
        case 'c': a->calib = optarg; break;
        case 't': a->tokens = optarg; break;
        case 'o': a->out = optarg; break;
        case 'f': a->force = true; break;
        case 'q': a->quiet = true; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
    }
    const char *err = optind >= argc       ? "MODEL is required"
                      : optind + 1 < argc  ? "one MODEL only"
                      : !a->out            ? "-o DIR is required"
                      : a->calib && a->tokens ? "--calib and --tokens do not go together"
                                            : NULL;
    if (err) {
        fprintf(stderr, "submoe figures: %s\n", err);
        usage(stderr);
        return 2;
    }
    a->model = argv[optind];
    return 0;
}

/* The output never lands on an input (figures m -o m). */
static int check_paths(const fig_args *a)
{
    sm_paths inputs = {0}, outputs = {0};
    sm_paths_add_model(&inputs, a->model);
    sm_paths_add(&inputs, "plan", a->plan);
    sm_paths_add(&inputs, "stats file", a->calib);
    sm_paths_add(&inputs, "tokens file", a->tokens);
    sm_paths_add(&outputs, "output directory", a->out);
    int rc = sm_check_output_paths(&inputs, &outputs);
    sm_paths_free(&inputs);
    sm_paths_free(&outputs);
    return rc;
}

int cmd_figures(int argc, char **argv)
{
    fig_args a = {0};
    int prc = parse_args(argc, argv, &a);
    if (prc)
        return prc == 1 ? 0 : 2;
    const sm_monitor *mon = sm_signals_monitor();
    fig_source src;
    memset(&src, 0, sizeof src);
    sm_plan_init(&src.plan);
    sm_outdir od;
    bool begun = false;
    int n_files = 0, rc = 1;
    if (check_paths(&a) || open_source(&a, &src, mon))
        goto out;
    if (sm_outdir_begin(&od, a.out, a.force))
        goto out;
    begun = true;
    if (write_figures(&src, &a, sm_outdir_path(&od), mon, &n_files))
        goto out;
    begun = false; /* the commit removes the temporary directory itself when it fails */
    if (sm_outdir_commit(&od))
        goto out;
    if (!a.quiet)
        printf("wrote %s: %d files\n", a.out, n_files);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "submoe figures: %s\n", sm_signals_errmsg());
    if (begun)
        sm_outdir_abort(&od);
    close_source(&src);
    fig_render_cleanup();
    return rc;
}
