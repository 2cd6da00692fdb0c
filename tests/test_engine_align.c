/* test_engine_align: neuron alignment (engine/align.h) — the assignment solver against brute
 * force, permuted experts computing the same function, planted permutations of a synth model
 * recovered exactly, the aligned merge equal to the merge of the unpermuted model, and the large-I
 * matching path. */
#include "engine/align.h"
#include "engine/engine.h"
#include "forward/moelayer.h"
#include "model/synth.h"
#include "util/diag.h"
#include "util/mem.h"
#include "util/rng.h"
#include "engine/reference.h"
#include "fixture.h"
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

/* perm = a uniformly random permutation of 0..n-1 (Fisher–Yates). */
static void shuffle(sm_rng *r, int *perm, int n)
{
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sm_rng_below(r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

static double brute(const double *c, int n, int *best)
{
    int p[8], used[8] = {0};
    double bestv = INFINITY;
    /* iterative permutations by recursion on a small stack */
    int depth = 0;
    p[0] = -1;
    while (depth >= 0) {
        if (depth == n) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += c[i * n + p[i]];
            if (s < bestv) {
                bestv = s;
                memcpy(best, p, sizeof(int) * (size_t)n);
            }
            depth--;
            continue;
        }
        if (p[depth] >= 0)
            used[p[depth]] = 0;
        int j = p[depth] + 1;
        while (j < n && used[j])
            j++;
        if (j >= n) {
            p[depth] = -1;
            depth--;
            continue;
        }
        p[depth] = j;
        used[j] = 1;
        depth++;
        if (depth < n)
            p[depth] = -1;
    }
    return bestv;
}

static void test_solver(void)
{
    sm_rng r;
    sm_rng_seed(&r, 5);
    int agree = 0, trials = 0;
    for (int n = 1; n <= 7; n++)
        for (int t = 0; t < 20; t++) {
            double c[64];
            for (int i = 0; i < n * n; i++)
                c[i] = (double)sm_rng_below(&r, 1000) / 10.0;
            int a[8], b[8];
            double vb = brute(c, n, b);
            int rc = sm_assignment_solve(c, n, a);
            double va = 0;
            int perm_ok = 1, seen[8] = {0};
            for (int i = 0; i < n; i++) {
                va += c[i * n + a[i]];
                perm_ok &= a[i] >= 0 && a[i] < n && !seen[a[i]]++;
            }
            trials++;
            agree += rc == 0 && perm_ok && fabs(va - vb) < 1e-9;
        }
    CHECK(agree == trials, "Hungarian = brute force on %d random matrices (n = 1..7)", trials);
    /* a planted permutation under noise, n = 300 */
    int n = 300, *planted = xmalloc(sizeof(int) * n), *got = xmalloc(sizeof(int) * n);
    double *c = xmalloc(sizeof(double) * n * n);
    for (int i = 0; i < n; i++)
        planted[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sm_rng_below(&r, (uint64_t)i + 1), t = planted[i];
        planted[i] = planted[j], planted[j] = t;
    }
    for (int i = 0; i < n * n; i++)
        c[i] = 0.5 + 0.3 * ((double)sm_rng_below(&r, 1000) / 1000.0);
    for (int i = 0; i < n; i++)
        c[i * n + planted[i]] = 0.1;
    int ok = sm_assignment_solve(c, n, got) == 0 && !memcmp(got, planted, sizeof(int) * n);
    CHECK(ok, "planted 300x300 permutation recovered");
    free(planted), free(got), free(c);
}

/* A random dense expert (I × H) and its permuted copy compute the same function. */
static void test_permuted_function(void)
{
    int64_t H = 48, I = 80, m = 33;
    sm_rng r;
    sm_rng_seed(&r, 11);
    float *w = sm_alloc_f32((size_t)(3 * I * H)), *p = sm_alloc_f32((size_t)(3 * I * H));
    float *x = sm_alloc_f32((size_t)(m * H)), *y0 = sm_alloc_f32((size_t)(m * H)), *y1 = sm_alloc_f32((size_t)(m * H));
    sm_rng_fill_normal(&r, w, (size_t)(3 * I * H), 0.2f);
    sm_rng_fill_normal(&r, x, (size_t)(m * H), 1.0f);
    int perm[80];
    shuffle(&r, perm, (int)I);
    sm_expert e = sm_expert_dense(H, I, w, w + I * H, w + 2 * I * H);
    sm_expert_permute(&e, perm, p, p + I * H, p + 2 * I * H);
    sm_expert ep = sm_expert_dense(H, I, p, p + I * H, p + 2 * I * H);
    sm_expert_forward(&e, x, m, y0);
    sm_expert_forward(&ep, x, m, y1);
    double mx = 0, ref = 0;
    for (int64_t i = 0; i < m * H; i++) {
        mx = fmax(mx, fabs((double)y0[i] - y1[i]));
        ref = fmax(ref, fabs((double)y0[i]));
    }
    CHECK(mx <= 1e-5 * ref, "a permuted expert computes the same outputs (max diff %.3g of %.3g)", mx, ref);
    free(w), free(p), free(x), free(y0), free(y1);
}

/* The candidate matching against the exact Hungarian matching on noisy correlations, like
 * those of experts trained from scratch: reference activations are Gaussian, member neuron π(i)
 * follows reference neuron i with a correlation ρ_i uniform in [0, 0.9] (some far below the
 * ~0.14 of the best spurious pair among 768 at 512 rows), columns standardised. The candidate
 * matching must reach 99% of the exact objective Σ C[i, π(i)] and recover nearly as many
 * planted pairs. I = 768 is Qwen3-30B-A3B's width, where production uses the exact method; the
 * candidate path runs above SM_ALIGN_EXACT_MAX, where the exact one is too slow to compare. */
static void test_candidates_noisy(void)
{
    const int n = 768, rows = 512;
    sm_rng r;
    sm_rng_seed(&r, 41);
    float *hr = sm_alloc_f32((size_t)rows * n), *hm = sm_alloc_f32((size_t)rows * n), *c = sm_alloc_f32((size_t)n * n);
    int *planted = xmalloc(sizeof(int) * n), *pe = xmalloc(sizeof(int) * n), *pc = xmalloc(sizeof(int) * n);
    double *rho = xmalloc(sizeof(double) * n);
    for (int i = 0; i < n; i++)
        planted[i] = i, rho[i] = 0.9 * sm_rng_uniform(&r);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sm_rng_below(&r, (uint64_t)i + 1), t = planted[i];
        planted[i] = planted[j], planted[j] = t;
    }
    sm_rng_fill_normal(&r, hr, (size_t)rows * n, 1.0f);
    for (int t = 0; t < rows; t++)
        for (int i = 0; i < n; i++)
            hm[(size_t)t * n + planted[i]] =
                (float)(rho[i] * hr[(size_t)t * n + i] + sqrt(1 - rho[i] * rho[i]) * sm_rng_normal(&r));
    float *hs[2] = {hr, hm};
    for (int q = 0; q < 2; q++) /* standardise columns */
        for (int i = 0; i < n; i++) {
            double s = 0, ss = 0;
            for (int t = 0; t < rows; t++)
                s += hs[q][(size_t)t * n + i];
            double mean = s / rows;
            for (int t = 0; t < rows; t++)
                ss += (hs[q][(size_t)t * n + i] - mean) * (hs[q][(size_t)t * n + i] - mean);
            double sd = sqrt(ss / rows);
            for (int t = 0; t < rows; t++)
                hs[q][(size_t)t * n + i] = (float)((hs[q][(size_t)t * n + i] - mean) / sd);
        }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double d = 0;
            for (int t = 0; t < rows; t++)
                d += (double)hr[(size_t)t * n + i] * hm[(size_t)t * n + j];
            c[(size_t)i * n + j] = (float)(d / rows);
        }
    int rc = sm_align_match(c, n, true, NULL, pe) | sm_align_match(c, n, false, NULL, pc);
    double oe = 0, oc = 0;
    int re = 0, rcnd = 0, valid = 1, seen_c[768] = {0};
    for (int i = 0; i < n && !rc; i++) {
        oe += c[(size_t)i * n + pe[i]], oc += c[(size_t)i * n + pc[i]];
        re += pe[i] == planted[i], rcnd += pc[i] == planted[i];
        valid &= pc[i] >= 0 && pc[i] < n && !seen_c[pc[i]]++;
    }
    CHECK(rc == 0 && valid && oc <= oe + 1e-3, "candidate matching on I = %d noisy correlations: a permutation", n);
    CHECK(rc == 0 && oc >= 0.99 * oe && rcnd >= re - n / 100,
          "candidates reach %.4f of the exact objective (mean matched corr %.4f vs %.4f; ≥ 0.99), planted pairs "
          "%d vs exact %d (≥ exact − 1%%)",
          oe > 0 ? oc / oe : 0, oc / n, oe / n, rcnd, re);
    free(hr), free(hm), free(c), free(planted), free(pe), free(pc), free(rho);
}

/* ---- progress and cancellation ----------------------------------------------------------- */

typedef struct {
    int calls, monotone, after_cancel;
    double last;
    const char *cancel_on; /* cancel at the first report whose label starts with this ... */
    double cancel_above;   /* ... and whose fraction exceeds this */
    volatile int stop;
    int seen[3];           /* reports of activations, correlations, assignment/candidates */
} watch;

static void on_watch(void *ctx, double f, const char *what)
{
    watch *w = ctx;
    if (w->stop)
        w->after_cancel++;
    w->monotone &= f >= w->last - 1e-12;
    w->last = f;
    w->calls++;
    w->seen[0] += strstr(what, "activations") != NULL;
    w->seen[1] += strstr(what, "correlations") != NULL;
    w->seen[2] += strstr(what, "assignment") != NULL || strstr(what, "candidates") != NULL;
    if (w->cancel_on && !strncmp(what, w->cancel_on, strlen(w->cancel_on)) && f > w->cancel_above)
        w->stop = 1;
}

static void watch_init(watch *w, const char *cancel_on, double above)
{
    memset(w, 0, sizeof *w);
    w->monotone = 1;
    w->cancel_on = cancel_on;
    w->cancel_above = above;
}

static void synth_opts(bool permute, sm_synth_opts *o)
{
    sm_synth_defaults(o, SM_ARCH_MIXTRAL);
    o->layers = 1, o->hidden = 64, o->intermediate = 96, o->experts = 8, o->clusters = 4;
    o->heads = 4, o->kv_heads = 2, o->vocab = 64, o->noise = 0.1, o->seed = 21, o->quiet = true;
    o->dtype = SM_DT_F32;
    o->permute = permute;
}

static int open_synth(const char *dir, bool permute, sm_synth_opts *o)
{
    synth_opts(permute, o);
    return fx_synth(o, dir);
}

static void test_synth_alignment(const char *tmp)
{
    char dp[300], du[300];
    snprintf(dp, sizeof dp, "%s/perm", tmp);
    snprintf(du, sizeof du, "%s/plain", tmp);
    sm_synth_opts op, ou;
    CHECK(open_synth(dp, true, &op) == 0 && open_synth(du, false, &ou) == 0, "synth models with and without "
                                                                             "--permute %s", sm_errmsg());
    sm_model *mp = sm_model_open(dp), *mu = sm_model_open(du);
    sm_moe_layer lp, lu;
    if (!mp || !mu || sm_moe_layer_load(mp, 0, &lp) || sm_moe_layer_load(mu, 0, &lu)) {
        CHECK(0, "models load: %s", sm_errmsg());
        return;
    }
    int64_t m = 512, H = 64, I = 96;
    float *x = sm_alloc_f32((size_t)(m * H));
    sm_rng r;
    sm_rng_seed(&r, 3);
    sm_rng_fill_normal(&r, x, (size_t)(m * H), 1.0f);
    int assign[8];
    sm_synth_assignment(&op, 0, assign);
    /* Every member against its cluster's first (unpermuted) member. */
    int recovered = 0, members = 0, moved = 0;
    for (int e = 0; e < 8; e++) {
        int first = e;
        for (int q = 0; q < 8; q++)
            if (assign[q] == assign[e] && q < first)
                first = q;
        if (first == e)
            continue;
        int planted[96], inv[96], got[96];
        sm_synth_permutation(&op, 0, e, planted);
        for (int i = 0; i < I; i++)
            inv[planted[i]] = i;
        double corr;
        members++;
        if (sm_align_pair(&lp.experts[first], &lp.experts[e], x, m, NULL, got, &corr) == 0 &&
            !memcmp(got, inv, sizeof inv))
            recovered++;
        for (int i = 0; i < I; i++)
            moved += planted[i] != i;
    }
    CHECK(members == 4 && moved > 300 && recovered == members,
          "alignment recovers every planted permutation exactly (%d of %d members, %d neurons moved)", recovered,
          members, moved);
    /* The aligned merge of the permuted model equals the plain merge of the unpermuted one. */
    sm_layer_spec spec = {.method = SM_MERGE_SUBMOE, .router = SM_ROUTER_COLLAPSE_MEAN};
    for (int j = 0; j < 3; j++)
        spec.matrix[j].rank = (sm_rank){.kind = SM_RANK_COUNT, .count = 48};
    sm_merged_layer a, b, c;
    spec.align = true;
    int rc = sm_engine_merge(&lp.block, NULL, assign, 4, &spec, x, m, NULL, &a);
    spec.align = false;
    rc |= sm_engine_merge(&lu.block, NULL, assign, 4, &spec, x, m, NULL, &b);
    rc |= sm_engine_merge(&lp.block, NULL, assign, 4, &spec, x, m, NULL, &c);
    CHECK(rc == 0, "merges run %s", rc ? sm_errmsg() : "");
    if (!rc) {
        double worst = 0, plain = 0, unaligned = 0;
        for (int q = 0; q < 4; q++)
            for (int j = 0; j < 3; j++)
                for (int i = 0; i < a.mats[q][j].n_members; i++) {
                    worst = fmax(worst, fabs(a.mats[q][j].member_err[i] - b.mats[q][j].member_err[i]));
                    plain += b.mats[q][j].member_err[i];
                    unaligned += c.mats[q][j].member_err[i];
                }
        CHECK(worst < 1e-5, "aligned merge member errors = unpermuted merge's (max diff %.2g)", worst);
        CHECK(unaligned > 2 * plain, "without alignment the permuted model merges badly (error sum %.3f vs %.3f)",
              unaligned, plain);
        CHECK(a.align_corr > 0.9, "matched neurons correlate (mean %.3f)", a.align_corr);
        double e1, e2;
        sm_engine_error(&lp.block, &a, x, m, NULL, &e1);
        sm_engine_error(&lp.block, &c, x, m, NULL, &e2);
        CHECK(e1 < e2, "aligned merge has the lower MoE-block output error (%.4f < %.4f)", e1, e2);
        sm_merged_layer_free(&a), sm_merged_layer_free(&b), sm_merged_layer_free(&c);
    }
    /* Whitened: the aligned merge of the permuted model equals the whitened merge of the
     * unpermuted one. Both analyses see the same routing (same router, same inputs); the
     * permuted members' down-projection Grams must be permuted along with the neurons. Member
     * errors and block errors agree to float rounding (a Gram left unpermuted changes them at
     * the 1e-2 level). */
    {
        sm_analysis_opts ao = {.grams = true};
        sm_layer_analysis ap, au;
        int arc = sm_engine_analyse(&lp.block, x, m, &ao, NULL, &ap);
        arc |= sm_engine_analyse(&lu.block, x, m, &ao, NULL, &au);
        CHECK(arc == 0 && !memcmp(ap.counts, au.counts, sizeof(int64_t) * 8), "analyses with Grams, same routing %s",
              arc ? sm_errmsg() : "");
        sm_layer_spec ws = {.method = SM_MERGE_SUBMOE_WHITENED, .router = SM_ROUTER_REMAP};
        for (int j = 0; j < 3; j++)
            ws.matrix[j].rank = (sm_rank){.kind = SM_RANK_COUNT, .count = 24};
        ws.align = true;
        int wrc = arc ? -1 : sm_engine_merge(&lp.block, &ap, assign, 4, &ws, x, m, NULL, &a);
        ws.align = false;
        wrc |= arc ? -1 : sm_engine_merge(&lu.block, &au, assign, 4, &ws, x, m, NULL, &b);
        CHECK(wrc == 0, "whitened merges run %s", wrc ? sm_errmsg() : "");
        if (wrc == 0) {
            double worst = 0, e1 = 0, e2 = 0;
            for (int q = 0; q < 4; q++)
                for (int j = 0; j < 3; j++)
                    for (int i = 0; i < a.mats[q][j].n_members; i++)
                        worst = fmax(worst, fabs(a.mats[q][j].member_err[i] - b.mats[q][j].member_err[i]));
            sm_engine_error(&lp.block, &a, x, m, NULL, &e1);
            sm_engine_error(&lu.block, &b, x, m, NULL, &e2);
            CHECK(worst < 1e-5 && fabs(e1 - e2) <= 1e-5 * e2,
                  "aligned whitened merge = unpermuted whitened merge: member errors max diff %.2g, block error %.6f vs "
                  "%.6f",
                  worst, e1, e2);
            sm_merged_layer_free(&a), sm_merged_layer_free(&b);
        }
        sm_layer_analysis_free(&ap), sm_layer_analysis_free(&au);
    }
    /* The reference is the most frequent member: with the last member of every cluster the most
     * frequent, the merged expert (full rank: the weighted mean of the aligned members) is in
     * that member's neuron order, close to it and far from the others; with no frequencies
     * (uniform, ties to the lower index) it is in the first member's order. */
    {
        double f[8];
        int last[4] = {-1, -1, -1, -1}, first[4] = {-1, -1, -1, -1};
        for (int e = 0; e < 8; e++) {
            last[assign[e]] = e;
            if (first[assign[e]] < 0)
                first[assign[e]] = e;
        }
        for (int e = 0; e < 8; e++)
            f[e] = last[assign[e]] == e ? 0.4 : 0.2;
        sm_layer_analysis fa = {.n = 8, .freq = f};
        sm_layer_spec fs = {.method = SM_MERGE_SUBMOE, .router = SM_ROUTER_REMAP, .align = true};
        int frc = sm_engine_merge(&lp.block, &fa, assign, 4, &fs, x, m, NULL, &a);
        frc |= sm_engine_merge(&lp.block, NULL, assign, 4, &fs, x, m, NULL, &b);
        CHECK(frc == 0, "aligned merges with and without frequencies %s", frc ? sm_errmsg() : "");
        if (frc == 0) {
            double near_last = 0, far_first = INFINITY, near_first = 0, far_last = INFINITY;
            for (int q = 0; q < 4; q++) {
                const float *gl = lp.experts[last[q]].gate.w, *gf = lp.experts[first[q]].gate.w;
                near_last = fmax(near_last, ref_rel_diff_ff(a.mats[q][0].w, gl, I * H));
                far_first = fmin(far_first, ref_rel_diff_ff(a.mats[q][0].w, gf, I * H));
                near_first = fmax(near_first, ref_rel_diff_ff(b.mats[q][0].w, gf, I * H));
                far_last = fmin(far_last, ref_rel_diff_ff(b.mats[q][0].w, gl, I * H));
            }
            /* Members are noisy copies (noise 0.1): the mean is within ~0.1 of its reference;
             * in another member's neuron order it is ~√2 away. */
            CHECK(near_last < 0.3 && far_first > 1.0,
                  "most frequent member (last) is the reference: merged gate %.3f from it, ≥ %.3f from the first",
                  near_last, far_first);
            CHECK(near_first < 0.3 && far_last > 1.0,
                  "no frequencies: the first member is the reference (%.3f from it, ≥ %.3f from the last)", near_first,
                  far_last);
            sm_merged_layer_free(&a), sm_merged_layer_free(&b);
        }
    }
    /* Alignment inside sm_engine_merge reports progress through the merge's monitor ... */
    watch wt;
    watch_init(&wt, NULL, 0);
    sm_monitor mon = {on_watch, &wt, &wt.stop};
    spec.align = true;
    rc = sm_engine_merge(&lp.block, NULL, assign, 4, &spec, x, m, &mon, &a);
    CHECK(rc == 0 && wt.monotone && wt.last == 1.0 && wt.seen[0] > 0 && wt.seen[2] > 0,
          "aligned merge progress: %d reports, monotone, ends at 1, includes alignment (%d activations, %d "
          "assignment)",
          wt.calls, wt.seen[0], wt.seen[2]);
    if (rc == 0)
        sm_merged_layer_free(&a);
    /* ... and is cancellable in the middle: the merge returns "cancelled" and owns nothing. */
    watch_init(&wt, "alignment: assignment", 0.3);
    rc = sm_engine_merge(&lp.block, NULL, assign, 4, &spec, x, m, &mon, &a);
    CHECK(rc == -1 && !strcmp(sm_errmsg(), "cancelled") && wt.stop && wt.after_cancel == 0 && !a.mats &&
              !a.experts && !a.router && !a.cluster_of,
          "aligned merge cancelled during a later cluster's assignment (at %.3f): 'cancelled', owns nothing",
          wt.last);
    free(x);
    sm_moe_layer_free(&lp), sm_moe_layer_free(&lu);
    sm_model_close(mp), sm_model_close(mu);
}

/* A random expert e (weights N(0, 0.3²)), inputs x (m × H, N(0, 1)) and ep: e with its neurons
 * permuted by perm, plus N(0, noise²) on every weight when noise > 0. The rng goes on from there. */
typedef struct {
    int64_t H, I, m;
    sm_rng r;
    float *w, *p, *x;
    int *perm;
    sm_expert e, ep;
} perm_pair;

static void perm_pair_make(perm_pair *f, int64_t H, int64_t I, int64_t m, uint64_t seed, double noise)
{
    f->H = H, f->I = I, f->m = m;
    sm_rng_seed(&f->r, seed);
    f->w = sm_alloc_f32((size_t)(3 * I * H)), f->p = sm_alloc_f32((size_t)(3 * I * H));
    f->x = sm_alloc_f32((size_t)(m * H));
    f->perm = xmalloc(sizeof(int) * (size_t)I);
    sm_rng_fill_normal(&f->r, f->w, (size_t)(3 * I * H), 0.3f);
    sm_rng_fill_normal(&f->r, f->x, (size_t)(m * H), 1.0f);
    shuffle(&f->r, f->perm, (int)I);
    f->e = sm_expert_dense(H, I, f->w, f->w + I * H, f->w + 2 * I * H);
    sm_expert_permute(&f->e, f->perm, f->p, f->p + I * H, f->p + 2 * I * H);
    if (noise > 0)
        for (int64_t q = 0; q < 3 * I * H; q++)
            f->p[q] += (float)(noise * sm_rng_normal(&f->r));
    f->ep = sm_expert_dense(H, I, f->p, f->p + I * H, f->p + 2 * I * H);
}

static void perm_pair_free(perm_pair *f)
{
    free(f->w), free(f->p), free(f->x), free(f->perm);
}

/* I above SM_ALIGN_EXACT_MAX takes the candidate matching: still exact on a clear planted case. */
static void test_large(void)
{
    perm_pair f;
    perm_pair_make(&f, 24, SM_ALIGN_EXACT_MAX + 300, 256, 17, 0);
    int64_t I = f.I;
    int *got = xmalloc(sizeof(int) * (size_t)I), *inv = xmalloc(sizeof(int) * (size_t)I);
    for (int i = 0; i < I; i++)
        inv[f.perm[i]] = i;
    double corr;
    int rc = sm_align_pair(&f.e, &f.ep, f.x, f.m, NULL, got, &corr);
    int right = 0;
    for (int i = 0; i < I; i++) /* ref neuron i is member neuron inv[i] */
        right += got[i] == inv[i];
    CHECK(rc == 0 && right == I, "I = %lld (candidate matching): %d of %lld neurons matched, mean corr %.3f",
          (long long)I, right, (long long)I, corr);
    perm_pair_free(&f);
    free(got), free(inv);
}

/* Correlations of I × rows ≥ 2^20 go through util/matmul on transposed activations: a planted
 * permutation is still recovered exactly. */
static void test_large_correlations(void)
{
    perm_pair f;
    perm_pair_make(&f, 64, 512, SM_ALIGN_MAX_ROWS, 23, 0);
    int *got = xmalloc(sizeof(int) * (size_t)f.I), right = 0;
    double corr = 0;
    int rc = sm_align_pair(&f.e, &f.ep, f.x, f.m, NULL, got, &corr);
    for (int i = 0; i < f.I; i++)
        right += f.perm[got[i]] == i;
    CHECK(rc == 0 && right == f.I && corr > 0.999, "I = 512 on %d rows (oneDNN correlations): %d of 512 neurons "
                                                   "matched, mean corr %.4f",
          SM_ALIGN_MAX_ROWS, right, corr);
    perm_pair_free(&f);
    free(got);
}

/* On the large path a memo keeps each expert's activations: pairs sharing an expert (a reference
 * with two members, a member met again in another pair) then match exactly as separate
 * sm_align_pair calls do, perm and mean correlation. */
static void test_memo_activations(void)
{
    perm_pair f, g;
    perm_pair_make(&f, 64, 512, SM_ALIGN_MAX_ROWS, 29, 0.05);
    perm_pair_make(&g, 64, 512, 16, 31, 0.05);
    sm_expert ex[3] = {f.e, f.ep, g.ep};
    sm_moe_block b = {.hidden = 64, .n_experts = 3, .experts = ex};
    sm_align_memo *memo = sm_align_memo_new(3);
    const int pairs[5][2] = {{0, 1}, {0, 2}, {1, 2}, {2, 1}, {0, 1}};
    int *want = xmalloc(sizeof(int) * 512), *got = xmalloc(sizeof(int) * 512), same = 0;
    for (int q = 0; q < 5; q++) {
        double cw = 0, cg = -1;
        bool moved;
        int rc = sm_align_pair(&ex[pairs[q][0]], &ex[pairs[q][1]], f.x, f.m, NULL, want, &cw) ||
                 sm_align_pair_memo(memo, &b, pairs[q][0], pairs[q][1], f.x, f.m, NULL, got, &cg, &moved);
        same += !rc && !memcmp(want, got, sizeof(int) * 512) && cw == cg;
    }
    CHECK(same == 5, "pairs through the memo's kept activations == sm_align_pair: %d of 5", same);
    sm_align_memo_free(memo);
    perm_pair_free(&f), perm_pair_free(&g);
    free(want), free(got);
}

static bool merged_equal(const sm_merged_layer *a, const sm_merged_layer *b)
{
    if (a->n_experts != b->n_experts || a->n_router != b->n_router ||
        memcmp(a->router, b->router, sizeof(float) * (size_t)(a->n_router * a->hidden)))
        return false;
    for (int q = 0; q < a->n_experts; q++)
        for (int j = 0; j < 3; j++) {
            const sm_merged *x = &a->mats[q][j], *y = &b->mats[q][j];
            if (x->rank != y->rank || !x->w != !y->w || (x->w && memcmp(x->w, y->w, sizeof(float) * (size_t)(x->out * x->in))))
                return false;
        }
    return true;
}

/* The alignment memo (method auto's candidates share one per layer): an aligned merge through it
 * equals one without it, byte for byte, also when every pair comes from the memo; the moves it
 * counts are the planted ones; and where alignment moves nothing, the aligned merge is the
 * unaligned one byte for byte (so auto may take the unaligned twin's score). */
static void test_memo(const char *tmp)
{
    char dp[300], du[300];
    snprintf(dp, sizeof dp, "%s/perm", tmp);
    snprintf(du, sizeof du, "%s/plain", tmp);
    sm_synth_opts op; /* the models test_synth_alignment wrote */
    synth_opts(true, &op);
    sm_model *mp = sm_model_open(dp), *mu = sm_model_open(du);
    sm_moe_layer lp, lu;
    if (!mp || !mu || sm_moe_layer_load(mp, 0, &lp) || sm_moe_layer_load(mu, 0, &lu)) {
        CHECK(0, "models load: %s", sm_errmsg());
        return;
    }
    int64_t m = 512, H = 64;
    float *x = sm_alloc_f32((size_t)(m * H));
    sm_rng r;
    sm_rng_seed(&r, 3);
    sm_rng_fill_normal(&r, x, (size_t)(m * H), 1.0f);
    int assign[8];
    sm_synth_assignment(&op, 0, assign);
    sm_align_memo *memo = sm_align_memo_new(8), *memo_u = sm_align_memo_new(8);
    int moved_p = -1, moved_u = -1;
    int rc = sm_align_moves(&lp.block, NULL, assign, 4, x, m, memo, NULL, &moved_p) ||
             sm_align_moves(&lu.block, NULL, assign, 4, x, m, memo_u, NULL, &moved_u);
    CHECK(rc == 0 && moved_p == 4 && moved_u == 0,
          "alignments counted: %d of 4 members moved on the permuted synth, %d on the plain one %s", moved_p, moved_u,
          rc ? sm_errmsg() : "");
    sm_layer_spec spec = {.method = SM_MERGE_SUBMOE, .router = SM_ROUTER_COLLAPSE_MEAN, .align = true};
    sm_merged_layer fresh, cached, again, plain_aligned, plain;
    rc = sm_engine_merge(&lp.block, NULL, assign, 4, &spec, x, m, NULL, &fresh);
    spec.align_memo = memo;
    rc |= sm_engine_merge(&lp.block, NULL, assign, 4, &spec, x, m, NULL, &cached);
    rc |= sm_engine_merge(&lp.block, NULL, assign, 4, &spec, x, m, NULL, &again);
    spec.align_memo = memo_u;
    rc |= sm_engine_merge(&lu.block, NULL, assign, 4, &spec, x, m, NULL, &plain_aligned);
    spec.align = false, spec.align_memo = NULL;
    rc |= sm_engine_merge(&lu.block, NULL, assign, 4, &spec, x, m, NULL, &plain);
    CHECK(rc == 0, "merges run %s", rc ? sm_errmsg() : "");
    if (!rc) {
        CHECK(merged_equal(&fresh, &cached) && merged_equal(&fresh, &again),
              "aligned merge through the memo (filled by the count, then by itself) == without it, byte for byte");
        CHECK(merged_equal(&plain_aligned, &plain), "alignment moving nothing: aligned merge == unaligned, byte for byte");
    }
    sm_merged_layer_free(&fresh), sm_merged_layer_free(&cached), sm_merged_layer_free(&again);
    sm_merged_layer_free(&plain_aligned), sm_merged_layer_free(&plain);
    sm_align_memo_free(memo), sm_align_memo_free(memo_u);
    free(x);
    sm_moe_layer_free(&lp), sm_moe_layer_free(&lu);
    sm_model_close(mp), sm_model_close(mu);
}

/* A random expert and a permuted noisy copy: I = 300 neurons, so the Hungarian method reports
 * every 64 of its 300 rows and the activations come in two blocks of rows. */
static void test_align_monitor(void)
{
    perm_pair f;
    perm_pair_make(&f, 32, 300, 300, 23, 0.05);
    int64_t I = f.I, m = f.m;
    const float *x = f.x;
    const sm_expert e = f.e, ep = f.ep;
    int *got = xmalloc(sizeof(int) * (size_t)I), *quiet = xmalloc(sizeof(int) * (size_t)I);

    watch wt;
    watch_init(&wt, NULL, 0);
    sm_monitor mon = {on_watch, &wt, &wt.stop};
    int rc = sm_align_pair(&e, &ep, x, m, NULL, quiet, NULL);
    rc |= sm_align_pair(&e, &ep, x, m, &mon, got, NULL);
    CHECK(rc == 0 && !memcmp(got, quiet, sizeof(int) * (size_t)I), "alignment with a monitor = without one");
    CHECK(wt.monotone && wt.last == 1.0 && wt.seen[0] >= 4 && wt.seen[1] >= 1 && wt.seen[2] >= 5,
          "alignment progress: %d reports, monotone, ends at 1 (%d activations, %d correlations, %d assignment)",
          wt.calls, wt.seen[0], wt.seen[1], wt.seen[2]);

    /* Cancelled between the Hungarian method's rows (after row 64 of 300: fraction > 0.75). */
    const struct {
        const char *on;
        double above;
    } at[3] = {{"alignment: activations", 0.0}, {"alignment: correlations", 0.0}, {"alignment: assignment", 0.75}};
    for (int q = 0; q < 3; q++) {
        watch_init(&wt, at[q].on, at[q].above);
        for (int i = 0; i < I; i++)
            got[i] = -7;
        rc = sm_align_pair(&e, &ep, x, m, &mon, got, NULL);
        int untouched = 1;
        for (int i = 0; i < I; i++)
            untouched &= got[i] == -7;
        CHECK(rc == -1 && !strcmp(sm_errmsg(), "cancelled") && wt.stop && wt.after_cancel == 0 && untouched &&
                  wt.last < 1.0,
              "cancelled at '%s' (fraction %.3f): stops before the next report, perm untouched", at[q].on, wt.last);
    }

    /* The candidate matching is cancellable too and leaves perm untouched. */
    int n = 2100;
    float *c = sm_alloc_f32((size_t)n * n);
    int *pm = xmalloc(sizeof(int) * (size_t)n);
    sm_rng_fill_normal(&f.r, c, (size_t)n * n, 0.1f);
    watch_init(&wt, "alignment: candidates", -1.0);
    for (int i = 0; i < n; i++)
        pm[i] = -7;
    rc = sm_align_match(c, n, false, &mon, pm);
    int untouched = 1;
    for (int i = 0; i < n; i++)
        untouched &= pm[i] == -7;
    CHECK(rc == -1 && !strcmp(sm_errmsg(), "cancelled") && wt.after_cancel == 0 && untouched,
          "candidate matching is cancellable, perm untouched");
    free(c), free(pm);
    perm_pair_free(&f);
    free(got), free(quiet);
}

int main(void)
{
    char *tmp = fx_tmpdir("test_align");
    if (!tmp)
        return 1;
    test_solver();
    test_permuted_function();
    test_synth_alignment(tmp);
    test_large();
    test_large_correlations();
    test_memo_activations();
    test_memo(tmp);
    test_align_monitor();
    test_candidates_noisy();
    fx_tmpdir_remove(tmp);
    return tu_done();
}
