#include "engine/allocate.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"

int sm_allocate_uniform(int n_layers, const int *n_experts, int k, int *k_out)
{
    if (n_layers <= 0 || k < 1)
        return sm_err("uniform allocation needs k ≥ 1 over at least one layer");
    for (int l = 0; l < n_layers; l++) {
        if (n_experts[l] < 1)
            return sm_err("layer %d has no experts", l);
        k_out[l] = k < n_experts[l] ? k : n_experts[l];
    }
    return 0;
}

static double increment(const sm_layer_cost *c, int k)
{
    double d = c->cost[k - 1] - c->cost[k];
    return d > 0.0 ? d : 0.0;
}

/* Greedy merges over layers [l0, l1) until their kept total is `budget`. */
static void greedy_window(const sm_layer_cost *layers, int l0, int l1, int64_t budget, int k_min,
                          int *k_out)
{
    int64_t kept = 0;
    for (int l = l0; l < l1; l++)
        kept += k_out[l] = layers[l].n_experts;
    while (kept > budget) {
        int best = -1;
        double bd = INFINITY;
        for (int l = l0; l < l1; l++) {
            int floor_l = k_min < layers[l].n_experts ? k_min : layers[l].n_experts;
            if (k_out[l] <= floor_l)
                continue;
            double d = increment(&layers[l], k_out[l]);
            if (d < bd) {
                bd = d;
                best = l;
            }
        }
        if (best < 0)
            break; /* cannot happen when the budget was validated */
        k_out[best]--;
        kept--;
    }
}

int sm_allocate_nonuniform(const sm_layer_cost *layers, int n_layers, int64_t budget, int window,
                           int k_min, int *k_out)
{
    if (n_layers <= 0)
        return sm_err("allocation over no layers");
    if (k_min < 1)
        k_min = 1;
    int64_t total = 0, floor_total = 0;
    for (int l = 0; l < n_layers; l++) {
        const sm_layer_cost *c = &layers[l];
        if (c->n_experts < 1 || !c->cost)
            return sm_err("layer %d has no cost curve", l);
        for (int k = 1; k <= c->n_experts; k++)
            if (!isfinite(c->cost[k]))
                return sm_err("layer %d: clustering cost J(%d) is not finite", l, k);
        total += c->n_experts;
        floor_total += k_min < c->n_experts ? k_min : c->n_experts;
    }
    if (budget > total || budget < floor_total)
        return sm_err("budget of %lld experts is outside [%lld, %lld] for these layers",
                      (long long)budget, (long long)floor_total, (long long)total);
    if (window <= 0 || window >= n_layers) {
        greedy_window(layers, 0, n_layers, budget, k_min, k_out);
        return 0;
    }
    /* Per-window budgets: proportional shares, largest remainders, each within its window's
     * feasible range (the clamp moves surplus to windows that can take it). */
    const int n_win = (n_layers + window - 1) / window;
    int64_t *wb = sm_zalloc((size_t)n_win, sizeof(int64_t)), *wn = sm_zalloc((size_t)n_win, sizeof(int64_t));
    int64_t *wf = sm_zalloc((size_t)n_win, sizeof(int64_t));
    double *rem = sm_alloc((size_t)n_win, sizeof(double));
    if (!wb || !wn || !wf || !rem) {
        free(wb), free(wn), free(wf), free(rem);
        return -1;
    }
    for (int l = 0; l < n_layers; l++) {
        wn[l / window] += layers[l].n_experts;
        wf[l / window] += k_min < layers[l].n_experts ? k_min : layers[l].n_experts;
    }
    int64_t given = 0;
    for (int w = 0; w < n_win; w++) {
        double share = (double)budget * wn[w] / total;
        wb[w] = (int64_t)floor(share);
        rem[w] = share - wb[w];
        if (wb[w] < wf[w])
            wb[w] = wf[w], rem[w] = -1.0;
        if (wb[w] > wn[w])
            wb[w] = wn[w], rem[w] = -1.0;
        given += wb[w];
    }
    while (given != budget) {
        int pick = -1;
        for (int w = 0; w < n_win; w++) {
            bool room = given < budget ? wb[w] < wn[w] : wb[w] > wf[w];
            if (!room)
                continue;
            double key = given < budget ? rem[w] : -rem[w];
            if (pick < 0 || key > (given < budget ? rem[pick] : -rem[pick]))
                pick = w;
        }
        if (given < budget)
            wb[pick]++, given++, rem[pick] -= 1.0;
        else
            wb[pick]--, given--, rem[pick] += 1.0;
    }
    for (int w = 0; w < n_win; w++) {
        int l0 = w * window, l1 = l0 + window < n_layers ? l0 + window : n_layers;
        greedy_window(layers, l0, l1, wb[w], k_min, k_out);
    }
    free(wb), free(wn), free(wf), free(rem);
    return 0;
}
