#include "engine/router_report.h"

#include <stdlib.h>
#include <string.h>

#include "engine/router_kl.h"
#include "util/diag.h"
#include "util/mem.h"

static const sm_router_mode report_modes[SM_ROUTER_REPORT_MODES] = {
    SM_ROUTER_REMAP, SM_ROUTER_COLLAPSE_LSTSQ, SM_ROUTER_COLLAPSE_KL, SM_ROUTER_COLLAPSE_MEAN};

/* Collapsed rows (k × hidden) of one mode, fitted on the fit rows. */
static int collapse(const sm_moe_block *src, const sm_merged_layer *l, sm_router_mode mode, const double *freq,
                    const float *fit, int64_t m_fit, const sm_monitor *mon, float *rows)
{
    const int n = l->n_original, k = l->n_experts;
    const int64_t h = l->hidden;
    if (mode == SM_ROUTER_COLLAPSE_MEAN)
        return sm_router_collapse_mean(src->router, n, h, l->cluster_of, k, freq, rows);
    if (mode == SM_ROUTER_COLLAPSE_LSTSQ)
        return sm_router_collapse_lstsq(src->router, n, h, l->cluster_of, k, freq, fit, m_fit, 0, rows);
    return sm_router_collapse_kl(src->router, n, h, l->cluster_of, k, freq, fit, m_fit, 0, mon, rows);
}

int sm_router_report(const sm_moe_block *src, const sm_merged_layer *l, const double *freq, const float *fit,
                     int64_t m_fit, const float *held, int64_t m_held, const sm_monitor *mon,
                     sm_router_score out[SM_ROUTER_REPORT_MODES])
{
    if (!l->mats || !l->cluster_of || l->n_original != src->n_experts)
        return sm_err("router report: the layer is not a merge");
    if (!fit || m_fit < 1 || !held || m_held < 1)
        return sm_err("router report: needs calibration fit and held-out rows");
    const int n = l->n_original, k = l->n_experts;
    const int64_t h = l->hidden;
    float *rows = sm_alloc_f32((size_t)(k * h));
    int *map = sm_alloc((size_t)n, sizeof(int));
    if (!rows || !map) {
        free(rows), free(map);
        return -1;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < SM_ROUTER_REPORT_MODES; i++) {
        sm_monitor_span span;
        const sm_monitor *sub = sm_monitor_span_init(&span, mon, (double)i / SM_ROUTER_REPORT_MODES,
                                                     (i + 1.0) / SM_ROUTER_REPORT_MODES);
        sm_merged_layer v = *l; /* the same merged experts under another router (a view: not freed) */
        out[i] = (sm_router_score){.mode = report_modes[i], .kl = 0.0, .agree = 1.0};
        if (report_modes[i] == SM_ROUTER_REMAP) {
            memcpy(map, l->cluster_of, sizeof(int) * (size_t)n);
            v.n_router = n, v.router = (float *)src->router, v.expert_map = map;
        } else {
            rc = collapse(src, l, report_modes[i], freq, fit, m_fit, sub, rows);
            rc = rc ? rc
                    : sm_router_collapse_measure(src->router, n, h, l->cluster_of, k, rows, held, m_held,
                                                 src->rule.top_k, &out[i].kl, &out[i].agree);
            v.n_router = k, v.router = rows, v.expert_map = NULL;
        }
        v.router_mode = report_modes[i];
        rc = rc ? rc : sm_engine_error(src, &v, held, m_held, sub, &out[i].output_error);
    }
    free(rows), free(map);
    return rc;
}

sm_router_mode sm_router_report_best_collapse(const sm_router_score out[SM_ROUTER_REPORT_MODES])
{
    int best = -1;
    for (int i = 0; i < SM_ROUTER_REPORT_MODES; i++)
        if (out[i].mode != SM_ROUTER_REMAP && (best < 0 || out[i].output_error < out[best].output_error))
            best = i;
    return out[best].mode;
}
