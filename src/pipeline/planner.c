/* planner: experts per layer and clusters for `submoe plan` (see planner.h). */
#include "pipeline/planner.h"
#include "forward/moelayer.h"
#include "util/diag.h"
#include "util/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sm_planned_layer_free(sm_planned_layer *p)
{
    if (!p)
        return;
    free(p->assign);
    free(p->freq);
    free(p->within);
    memset(p, 0, sizeof *p);
    p->layer = -1;
}

int sm_planner_target_k(int experts, double ratio, int n, int top_k)
{
    int k = experts > 0 ? experts : (int)lround((double)n * (1.0 - ratio));
    if (k < top_k)
        k = top_k;
    return k > n ? n : k < 1 ? 1 : k;
}

/* Statistics of a layer, computing them from its weights when the calib has none (or, with
 * `saliency`, has none of the REAP saliencies: a stats file from before them). */
static int layer_analysis(const sm_model *m, sm_calib *c, int l, bool saliency, const sm_monitor *mon,
                          const sm_layer_analysis **a)
{
    if (sm_calib_has_stats(c)) {
        int rc = sm_calib_analysis(c, l, NULL, false, mon, a);
        if (rc || !saliency || (*a)->saliency)
            return rc;
    }
    sm_moe_layer ml;
    if (sm_moe_layer_load_mon(m, l, mon, &ml))
        return -1;
    int rc = sm_calib_analysis(c, l, &ml.block, false, mon, a);
    sm_moe_layer_free(&ml);
    return rc;
}

int sm_planner_run(const sm_model *m, sm_calib *c, const sm_planner_opts *o, const sm_monitor *mon,
                   sm_planned_layer *out)
{
    const sm_config *cfg = sm_model_config(m);
    int L = cfg->n_layers, nm = 0;
    if (o->experts < 0 || (o->experts == 0 && !(o->ratio >= 0 && o->ratio < 1)))
        return sm_err("the target must be a positive expert count or a ratio in [0, 1)");
    for (int l = 0; l < L; l++) {
        memset(&out[l], 0, sizeof out[l]);
        out[l].layer = -1;
    }
    int *moe = sm_alloc((size_t)L, sizeof *moe), *kk = sm_alloc((size_t)L, sizeof *kk);
    double **curve = sm_zalloc((size_t)L, sizeof *curve);
    sm_layer_cost *costs = sm_alloc((size_t)L, sizeof *costs);
    int rc = -1;
    if (!moe || !kk || !curve || !costs)
        goto done;
    for (int l = 0; l < L; l++)
        if (cfg->is_moe[l])
            moe[nm++] = l;
    int64_t budget = 0;
    for (int i = 0; i < nm; i++) {
        int n = sm_model_layer_experts(m, moe[i]);
        kk[i] = sm_planner_target_k(o->experts, o->ratio, n, cfg->top_k);
        budget += kk[i];
    }
    sm_kmeans_opts ko = {.seed = o->seed};
    if (o->adaptive) {
        /* J_l(k) for every k, then spend the budget by marginal cost. */
        for (int i = 0; i < nm; i++) {
            int l = moe[i], n = sm_model_layer_experts(m, l);
            const sm_layer_analysis *a;
            sm_monitor_span span;
            double lo = 0.8 * i / nm, hi = 0.8 * (i + 1) / nm;
            if (layer_analysis(m, c, l, false, sm_monitor_span_init(&span, mon, lo, (lo + hi) / 2), &a))
                goto done;
            if (!(curve[i] = sm_zalloc((size_t)n + 1, sizeof(double))))
                goto done;
            sm_outputs so = sm_layer_analysis_outputs(a);
            const double *s = o->sim == SM_SIM_OUTPUT ? a->sim_output : o->sim == SM_SIM_WEIGHT ? a->sim_weight
                                                                                                : a->sim_logit;
            if (sm_cluster_cost_curve(&so, s, o->algo == SM_CLUSTER_HIERARCHICAL ? SM_CLUSTER_HIERARCHICAL
                                                                                  : SM_CLUSTER_KMEANS,
                                      1, n, &ko, sm_monitor_span_init(&span, mon, (lo + hi) / 2, hi), curve[i]))
                goto done;
            costs[i] = (sm_layer_cost){n, curve[i]};
            sm_calib_release(c, l); /* statistics of one layer at a time (recomputed or re-read later) */
        }
        if (sm_allocate_nonuniform(costs, nm, budget, o->window, cfg->top_k, kk))
            goto done;
    }
    for (int i = 0; i < nm; i++) {
        int l = moe[i], n = sm_model_layer_experts(m, l), k = kk[i];
        sm_planned_layer *p = &out[l];
        p->layer = l;
        p->n = n;
        p->k = k;
        const sm_layer_analysis *a;
        sm_monitor_span span;
        double lo = 0.8 + 0.2 * i / nm;
        if (layer_analysis(m, c, l, o->algo == SM_CLUSTER_REAP, sm_monitor_span_init(&span, mon, lo, lo + 0.1 / nm), &a))
            goto done;
        p->assign = sm_alloc((size_t)n, sizeof *p->assign);
        p->freq = sm_alloc((size_t)n, sizeof *p->freq);
        p->within = sm_alloc((size_t)k, sizeof *p->within);
        if (!p->assign || !p->freq || !p->within)
            goto done;
        memcpy(p->freq, a->freq, sizeof(double) * (size_t)n);
        if (sm_engine_cluster(a, o->algo, o->sim, k, o->seed, sm_monitor_span_init(&span, mon, lo + 0.1 / nm,
                                                                                  lo + 0.2 / nm),
                              p->assign))
            goto done;
        sm_outputs so = sm_layer_analysis_outputs(a);
        sm_monitor quiet = {NULL, NULL, mon ? mon->cancel : NULL}; /* cancellable, progress silent */
        if (sm_cluster_cost(&so, p->assign, k, &quiet, &p->cost))
            goto done;
        for (int q = 0; q < k; q++) {
            double s = 0;
            int pairs = 0;
            for (int i2 = 0; i2 < n; i2++)
                for (int j2 = i2 + 1; j2 < n; j2++)
                    if (p->assign[i2] == q && p->assign[j2] == q) {
                        s += a->sim_output[i2 * n + j2];
                        pairs++;
                    }
            p->within[q] = pairs ? s / pairs : 1.0;
        }
        sm_calib_release(c, l);
    }
    rc = 0;
done:
    if (rc)
        for (int l = 0; l < L; l++)
            sm_planned_layer_free(&out[l]);
    for (int i = 0; curve && i < L; i++)
        free(curve[i]);
    free(curve);
    free(costs);
    free(moe);
    free(kk);
    return rc;
}
