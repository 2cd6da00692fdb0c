/* Layer allocation (DESIGN §2.2): greedy smallest-marginal-cost merges, globally and per
 * window, against hand-worked cases. */
#include "engine/allocate.h"
#include "testutil.h"
#include "util/diag.h"

int main(void)
{
    /* Increments when reducing k from 4: L0 2, 3, 5; L1 1, 1, 2; L2 7.5, 0.5, 1. */
    const double j0[5] = {0, 10, 5, 2, 0}, j1[5] = {0, 4, 2, 1, 0}, j2[5] = {0, 9, 8, 7.5, 0};
    sm_layer_cost layers[3] = {{4, j0}, {4, j1}, {4, j2}};
    int k[3];

    /* Budget 8 (4 merges), whole model: L1 (1), L1 (1), tie L0/L1 at 2 → L0, then L1 (2). */
    CHECK(sm_allocate_nonuniform(layers, 3, 8, 0, 1, k) == 0 && k[0] == 3 && k[1] == 1 &&
              k[2] == 4,
          "global budget 8 → [%d %d %d] (want [3 1 4])", k[0], k[1], k[2]);

    /* Window of 2 layers: shares 8·8/12 = 5.33 and 8·4/12 = 2.67 → floors 5 + 2, the larger
     * remainder gets the last expert → budgets 5 and 3. Window 0 drops 3: L1, L1, L0 (tie at
     * 2, lower layer); window 1 drops one from L2. */
    CHECK(sm_allocate_nonuniform(layers, 3, 8, 2, 1, k) == 0 && k[0] == 3 && k[1] == 2 &&
              k[2] == 3,
          "window 2, budget 8 → [%d %d %d] (want [3 2 3])", k[0], k[1], k[2]);

    /* k_min 2 stops L1 at 2: merges L1, L1, L0 (2), then L0 (3) since L1 is at its floor. */
    CHECK(sm_allocate_nonuniform(layers, 3, 8, 0, 2, k) == 0 && k[0] == 2 && k[1] == 2 &&
              k[2] == 4,
          "k_min 2 → [%d %d %d] (want [2 2 4])", k[0], k[1], k[2]);

    /* Full budget keeps everything; the floor budget leaves one per layer. */
    CHECK(sm_allocate_nonuniform(layers, 3, 12, 0, 1, k) == 0 && k[0] + k[1] + k[2] == 12,
          "budget = all experts");
    CHECK(sm_allocate_nonuniform(layers, 3, 3, 0, 1, k) == 0 && k[0] == 1 && k[1] == 1 &&
              k[2] == 1,
          "budget = one per layer");
    CHECK(sm_allocate_nonuniform(layers, 3, 2, 0, 1, k) == -1 &&
              sm_allocate_nonuniform(layers, 3, 13, 0, 1, k) == -1,
          "infeasible budgets rejected: '%s'", sm_errmsg());

    /* A non-monotone J (k-means local optimum) gives a negative increment, treated as 0:
     * J(2) < J(3) makes the 3→2 merge free. */
    const double jn[4] = {0, 5, 0.5, 1.0};
    const double jm[4] = {0, 3, 2, 0};
    sm_layer_cost nm[2] = {{3, jn}, {3, jm}};
    /* Budget 4 (2 merges): L0 3→2 is free (J(2) − J(3) = −0.5 → 0); then L1 3→2 costs 2
     * against L0 2→1 at 4.5 → L1. */
    CHECK(sm_allocate_nonuniform(nm, 2, 4, 0, 1, k) == 0 && k[0] == 2 && k[1] == 2,
          "non-monotone J → [%d %d] (want [2 2])", k[0], k[1]);

    const double bad[3] = {0, 1, NAN};
    sm_layer_cost lb[1] = {{2, bad}};
    CHECK(sm_allocate_nonuniform(lb, 1, 1, 0, 1, k) == -1, "non-finite cost rejected");

    int n[3] = {4, 2, 8};
    CHECK(sm_allocate_uniform(3, n, 3, k) == 0 && k[0] == 3 && k[1] == 2 && k[2] == 3,
          "uniform k=3 over [4 2 8] → [%d %d %d]", k[0], k[1], k[2]);
    return tu_done();
}
