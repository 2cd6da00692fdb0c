/* router_report: the routers of one merged layer side by side (issue 18, DESIGN §2.9) — for each
 * of remap, collapse-lstsq, collapse-kl and collapse-mean, fitted on the calibration fit rows and
 * measured on held-out rows: the KL of the summed member probabilities to the router's cluster
 * distribution (router_kl.h; 0 for remap, which reproduces them exactly), the top-k agreement of
 * the clusters, and the relative MoE-block output error (sm_engine_error) of the merged experts
 * with that router. The merged experts are the layer's own; only the router changes. */
#ifndef SM_ROUTER_REPORT_H
#define SM_ROUTER_REPORT_H

#include "engine/engine.h"

typedef struct sm_router_score {
    sm_router_mode mode;
    double kl, agree, output_error;
} sm_router_score;

#define SM_ROUTER_REPORT_MODES 4

/* A merged layer `l` of source `src` (a merge: every original expert in a cluster). freq: the
 * members' frequencies (collapse-mean, the lstsq prior; NULL = uniform). out[i] in the order remap,
 * collapse-lstsq, collapse-kl, collapse-mean. 0, or -1 with a message. */
int sm_router_report(const sm_moe_block *src, const sm_merged_layer *l, const double *freq, const float *fit,
                     int64_t m_fit, const float *held, int64_t m_held, const sm_monitor *mon,
                     sm_router_score out[SM_ROUTER_REPORT_MODES]);

/* The collapse of least held-out output error among out[] (the router to use where the format
 * needs a collapse). */
sm_router_mode sm_router_report_best_collapse(const sm_router_score out[SM_ROUTER_REPORT_MODES]);

#endif
