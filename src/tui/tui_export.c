/* tui_export: see tui_export.h. */
#include "tui/tui_export.h"

#include "figures/fig_heatmap.h"
#include "figures/fig_spectrum.h"
#include "util/diag.h"
#include "util/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const sim_kinds[3] = {"output", "weight", "logit"};

static void prepare_heatmap(const tui_state *s, tui_export *x)
{
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer *p = &s->res[s->layer];
    int q = s->sim_kind >= 0 && s->sim_kind < 3 ? s->sim_kind : 0;
    if (!d->have_stats || !d->sim[q] || d->n != p->n) {
        snprintf(x->why, sizeof x->why, "nothing to export yet: layer %d's %s similarities are not computed",
                 s->layer, sim_kinds[q]);
        return;
    }
    x->kind = TUI_EXPORT_HEATMAP;
    x->n = d->n;
    x->sim = xmalloc(sizeof(double) * (size_t)x->n * (size_t)x->n);
    memcpy(x->sim, d->sim[q], sizeof(double) * (size_t)x->n * (size_t)x->n);
    memcpy(x->group, p->assign, sizeof(int) * (size_t)x->n);
    snprintf(x->base, sizeof x->base, "layer%d-similarity-%s", s->layer, sim_kinds[q]);
    snprintf(x->title, sizeof x->title, "layer %d: %s similarity of %d experts, in the plan's %d groups", s->layer,
             sim_kinds[q], x->n, p->k);
}

static void prepare_spectrum(const tui_state *s, tui_export *x)
{
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer *p = &s->res[s->layer];
    int c = s->spec_cluster, members = tui_cluster_size(p, c);
    if (!tui_spectrum_fresh(s, s->layer) || !d->spec[0] || !d->spec[1] || !d->spec[2]) {
        snprintf(x->why, sizeof x->why, "nothing to export yet: the spectrum of group %d is being computed", c);
        return;
    }
    x->kind = TUI_EXPORT_SPECTRUM;
    for (int q = 0; q < 3; q++) {
        x->len[q] = d->spec_len[q];
        x->sv[q] = xmalloc(sizeof(double) * (size_t)x->len[q]);
        memcpy(x->sv[q], d->spec[q], sizeof(double) * (size_t)x->len[q]);
        x->rank[q] = tui_rank_value(s, p, tui_group_rank(s, s->layer, c, q), q, members);
    }
    char list[160] = "";
    size_t n = 0;
    for (int i = 0; i < p->n && n < sizeof list - 8; i++)
        if (p->assign[i] == c)
            n += (size_t)snprintf(list + n, sizeof list - n, " %d", i);
    snprintf(x->base, sizeof x->base, "layer%d-group%d-spectrum", s->layer, c);
    snprintf(x->title, sizeof x->title, "layer %d, group %d (experts%s)", s->layer, c, list);
}

void tui_export_prepare_model(const tui_state *s, const char *dir, tui_export *x)
{
    memset(x, 0, sizeof *x);
    snprintf(x->dir, sizeof x->dir, "%s", dir);
    x->rows = xcalloc((size_t)s->n_layers + 1, sizeof *x->rows);
    x->freq = xcalloc((size_t)s->n_layers + 1, sizeof *x->freq);
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->is_moe[l])
            continue;
        const tui_layer_data *d = &s->data[l];
        const tui_layer *p = &s->res[l];
        bool fresh = tui_preview_fresh(s, l);
        sm_merge_method m = fresh ? d->built_method : p->method;
        fig_model_layer *row = &x->rows[x->n_rows];
        row->layer = l, row->experts = p->n;
        row->kept = m == SM_MERGE_KEEP ? p->n : p->k;
        row->method = fresh || !p->is_auto ? sm_merge_method_name(m) : "auto";
        row->params_before = fresh ? d->params_before : (int64_t)p->n * 3 * s->inter * s->hidden;
        row->params_after = tui_plan_params(s, l);
        row->error = fresh ? d->output_error : -1;
        if (d->have_stats && d->n == p->n) {
            memcpy(x->freq[x->n_rows], d->freq, sizeof(double) * (size_t)p->n);
            row->freq = x->freq[x->n_rows];
        }
        x->n_rows++;
    }
    if (!x->n_rows) {
        snprintf(x->why, sizeof x->why, "nothing to export: the model has no MoE layer");
        return;
    }
    x->kind = TUI_EXPORT_MODEL;
    snprintf(x->base, sizeof x->base, "model");
    const char *slash = strrchr(s->model, '/');
    snprintf(x->title, sizeof x->title, "%.120s: %d MoE layers, the workbench's plan%s", slash ? slash + 1 : s->model,
             x->n_rows, s->modified ? " (unsaved)" : "");
}

void tui_export_prepare(const tui_state *s, const char *dir, tui_export *x)
{
    if (s->view != TUI_VIEW_HEATMAP && s->view != TUI_VIEW_SPECTRUM) { /* the plan view, a model view */
        tui_export_prepare_model(s, dir, x);
        return;
    }
    memset(x, 0, sizeof *x);
    snprintf(x->dir, sizeof x->dir, "%s", dir);
    if (!s->is_moe[s->layer]) {
        snprintf(x->why, sizeof x->why, "nothing to export: layer %d is dense", s->layer);
        return;
    }
    if (s->view == TUI_VIEW_HEATMAP)
        prepare_heatmap(s, x);
    else
        prepare_spectrum(s, x);
}

bool tui_export_write(const tui_export *x, char *msg, size_t n)
{
    if (x->kind == TUI_EXPORT_NONE) {
        snprintf(msg, n, "%s", x->why);
        return true;
    }
    if (mkdir(x->dir, 0777) && errno != EEXIST) {
        snprintf(msg, n, "export: cannot create %.200s: %s", x->dir, strerror(errno));
        return true;
    }
    fig_written wr = {0};
    int rc;
    if (x->kind == TUI_EXPORT_HEATMAP) {
        fig_heatmap h = {x->title, x->n, x->sim, x->group};
        rc = fig_heatmap_write(x->dir, x->base, &h, &wr);
    } else if (x->kind == TUI_EXPORT_SPECTRUM) {
        fig_spectrum sp = {x->title, {x->sv[0], x->sv[1], x->sv[2]}, {x->len[0], x->len[1], x->len[2]},
                           {x->rank[0], x->rank[1], x->rank[2]}};
        rc = fig_spectrum_write(x->dir, x->base, &sp, &wr);
    } else {
        fig_model m = {x->title, x->n_rows, x->rows};
        rc = fig_model_write(x->dir, x->base, &m, &wr);
    }
    if (rc) {
        snprintf(msg, n, "export failed: %s", sm_errmsg());
        return true;
    }
    /* the files written (a long path wraps in the message area) */
    snprintf(msg, n, "exported %.150s/%s.{svg,pdf,png,csv}%s", x->dir, x->base,
             x->kind == TUI_EXPORT_MODEL ? ", model-frequency.csv" : "");
    return false;
}

void tui_export_free(tui_export *x)
{
    free(x->sim);
    for (int q = 0; q < 3; q++)
        free(x->sv[q]);
    free(x->rows);
    free(x->freq);
    memset(x, 0, sizeof *x);
}
