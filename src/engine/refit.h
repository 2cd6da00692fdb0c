/* refit: output-preserving refit of a merged expert's down projection (DESIGN §2.10, `refit: down`).
 *
 * After cluster c is merged into (G_c, U_c, D_c), with h_c(x) = silu(G_c x) ⊙ U_c x,
 * s_c(x) = Σ_{i∈c∩topk(x)} g_i(x) and the target y(x) = Σ_{i∈c∩topk(x)} g_i(x) E_i(x) (g the source
 * router's weights after its own rule, E_i the original members):
 *
 *     D_c = argmin_D  Σ_x ‖y(x) − s_c(x) D h_c(x)‖² + λ‖D − D_c⁰‖²
 *
 * over the calibration rows whose top-k contains a member of c. The normal equations
 * D (A + λI) = B + λ D_c⁰ with A = Σ (s h)(s h)ᵀ (I×I) and B = Σ y (s h)ᵀ (H×I) are accumulated in
 * double and solved by Cholesky (LAPACK dpotrf/dpotrs). λ = ridge · trace(A)/I (relative, so it
 * does not depend on the activations' scale). Because D_c⁰ is a feasible point, the fitted
 * residual never exceeds D_c⁰'s on the fit rows; identical members (D_c⁰ exact) refit to themselves.
 *
 * Cost per cluster: the members' forwards on their routed rows, the Gram (rows · I² flops), the
 * Cholesky (I³/3) and the solve (2·I²·H). Memory: A (I² doubles) and B (H·I doubles) — at
 * Qwen3-30B-A3B (I 768, H 2048) 17 MB. With fewer routed rows n than neurons I (Mixtral-8x7B:
 * I 14336, ~700 rows) the same D is solved in the rows' space (refit.c): an n × n double system
 * and two fp32 n × H × I products, instead of ~3 TFLOP and 2.1 GB. Every step is cut into pieces
 * with cancellation checks between them. */
#ifndef SM_REFIT_H
#define SM_REFIT_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/merge.h"
#include "moe/moe.h"
#include "util/monitor.h"

#define SM_REFIT_RIDGE_DEFAULT 1e-2

/* The source router's top-k selection of every calibration row, computed once per layer and shared
 * by the clusters' refits. */
typedef struct sm_refit_routes {
    int64_t m;
    int k;
    int *idx; /* m × k router rows (= original experts) */
    float *w; /* m × k routing weights after the rule (renormalisation, scaling) */
} sm_refit_routes;

int sm_refit_route(const sm_moe_block *src, const float *x, int64_t m, const sm_monitor *mon,
                   sm_refit_routes *out);
void sm_refit_routes_free(sm_refit_routes *r);

typedef struct sm_refit_info {
    int64_t rows;  /* fit rows routed to the cluster (0: nothing to fit, D unchanged) */
    double lambda; /* absolute ridge used */
    /* The cluster's relative fit residual sqrt(Σ‖y − s D h‖² / Σ‖y‖²) on its rows before (D⁰) and
     * after: two extra H·I² products, so only computed when an info is passed. */
    double resid_before, resid_after;
    bool dual; /* solved in the routed rows' space (refit.c), not the intermediate neurons' */
} sm_refit_info;

/* How the normal equations are solved: AUTO takes the row space (an n × n system for n routed
 * rows) when there are fewer routed rows than intermediate neurons, else the I × I one. Both
 * give the same D up to rounding; PRIMAL and DUAL force one (tests compare them). */
typedef enum { SM_REFIT_SOLVE_AUTO, SM_REFIT_SOLVE_PRIMAL, SM_REFIT_SOLVE_DUAL } sm_refit_solve;

/* Refit cluster c's down projection in place. src: the original layer (its experts give the
 * targets); assign: cluster of each original expert; merged: the cluster's merged expert (its gate
 * and up give h_c; dense or factored); down: its merged down projection, which must be dense
 * (submoe-whitened's factored down is refused with a message: refit before factoring is not
 * supported). x: the fit rows the routes were computed on. ridge: relative λ (0 = default).
 * info may be NULL. 0, or -1 with a message (nothing changed). */
int sm_refit_down(const sm_moe_block *src, const int *assign, int c, const sm_expert *merged, sm_merged *down,
                  const float *x, const sm_refit_routes *routes, double ridge, const sm_monitor *mon,
                  sm_refit_info *info);

int sm_refit_down_solve(const sm_moe_block *src, const int *assign, int c, const sm_expert *merged, sm_merged *down,
                        const float *x, const sm_refit_routes *routes, double ridge, sm_refit_solve how,
                        const sm_monitor *mon, sm_refit_info *info);

/* sm_refit_down on a merged cluster: mats its merged gate, up, down, e their expert view (e->down is
 * re-pointed), members the members' down projections as merged (aligned copies where aligned) for
 * the per-member errors, which are recomputed. A lone member merged exactly is left as it is (its
 * refit is the identity): returns 1. 0 when refitted, -1 with a message. */
int sm_refit_merged(const sm_moe_block *src, const int *assign, int c, const sm_matset *members, sm_merged mats[3],
                    sm_expert *e, const float *x, const sm_refit_routes *routes, double ridge,
                    const sm_monitor *mon);

#endif
