#include "engine/router_kl.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dense.h"
#include "engine/router.h"
#include "moe/route.h"
#include "util/diag.h"
#include "util/mem.h"

/* Rows per block of an evaluation (the monitor is checked between blocks). */
#define KL_BLOCK 1024
/* L-BFGS pairs kept. */
#define KL_PAIRS 8
/* Trial steps per line search. */
#define KL_BACKTRACKS 10
/* The relative decrease of f below which a step has stalled (see sm_router_kl_solve). */
#define KL_STALL 1e-6

struct sm_router_kl {
    const float *x;
    int64_t m, h;
    int k;
    float *p;          /* m × k targets */
    double plogp;      /* (1/m) Σ_t Σ_c p log p: f's constant part */
    double lambda;
    double *prior;     /* k × h: W̄ */
    float *wf, *zblk;  /* k × h, KL_BLOCK × k */
    float *gblk;       /* k × h */
};

void sm_router_kl_free(sm_router_kl *p)
{
    if (!p)
        return;
    free(p->p), free(p->prior), free(p->wf), free(p->zblk), free(p->gblk);
    free(p);
}

/* Targets p (m × k) from the original router's logits, in blocks; returns (1/m) Σ p log p. */
static double targets(const float *router, int n, int64_t h, const int *cluster_of, int k, const float *x,
                      int64_t m, float *zn, float *pn, double *acc, float *p)
{
    double plogp = 0.0;
    for (int64_t t0 = 0; t0 < m; t0 += KL_BLOCK) {
        const int mb = (int)(m - t0 < KL_BLOCK ? m - t0 : KL_BLOCK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, n, (int)h, 1.0f, x + t0 * h, (int)h, router,
                    (int)h, 0.0f, zn, n);
        for (int t = 0; t < mb; t++) {
            sm_route_softmax(zn + (int64_t)t * n, n, pn);
            float *pt = p + (t0 + t) * k;
            memset(acc, 0, sizeof(double) * (size_t)k);
            for (int i = 0; i < n; i++)
                acc[cluster_of[i]] += pn[i];
            for (int c = 0; c < k; c++) {
                pt[c] = (float)acc[c];
                if (acc[c] > 0.0)
                    plogp += acc[c] * log(acc[c]);
            }
        }
    }
    return plogp / (double)m;
}

sm_router_kl *sm_router_kl_new(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                               const double *freq, const float *prior, const float *x, int64_t m, double ridge)
{
    if (!router || !x || m < 1 || hidden <= 0 || hidden > INT_MAX / 2 || m > INT64_MAX / hidden) {
        sm_err("collapse-kl: no calibration inputs or an invalid router");
        return NULL;
    }
    if (sm_router_check_partition(cluster_of, n, k) != 0)
        return NULL;
    sm_router_kl *p = sm_zalloc(1, sizeof *p);
    float *mean = sm_alloc_f32((size_t)(k * hidden));
    float *zn = sm_alloc_f32((size_t)KL_BLOCK * n), *pn = sm_alloc_f32((size_t)n);
    double *acc = sm_alloc((size_t)k, sizeof(double));
    if (!p || !mean || !zn || !pn || !acc)
        goto fail;
    p->x = x, p->m = m, p->h = hidden, p->k = k;
    p->p = sm_alloc_f32((size_t)(m * k));
    p->prior = sm_alloc((size_t)(k * hidden), sizeof(double));
    p->wf = sm_alloc_f32((size_t)(k * hidden));
    p->zblk = sm_alloc_f32((size_t)KL_BLOCK * k);
    p->gblk = sm_alloc_f32((size_t)(k * hidden));
    if (!p->p || !p->prior || !p->wf || !p->zblk || !p->gblk ||
        (!prior && sm_router_collapse_mean(router, n, hidden, cluster_of, k, freq, mean) != 0))
        goto fail;
    for (int64_t e = 0; e < k * hidden; e++)
        p->prior[e] = prior ? prior[e] : mean[e];
    p->plogp = targets(router, n, hidden, cluster_of, k, x, m, zn, pn, acc, p->p);
    double tr = 0.0; /* mean diag(XᵀX)/m = mean squared input entry */
    for (int64_t e = 0; e < m * hidden; e++)
        tr += (double)x[e] * x[e];
    tr /= (double)(m * hidden);
    p->lambda = (ridge > 0.0 ? ridge : SM_ROUTER_KL_RIDGE_DEFAULT) * (tr > 0.0 ? tr : 1.0);
    free(mean), free(zn), free(pn), free(acc);
    return p;
fail:
    free(mean), free(zn), free(pn), free(acc);
    sm_router_kl_free(p);
    return NULL;
}

int sm_router_kl_eval(sm_router_kl *p, const double *w, double *grad, const sm_monitor *mon, double *f)
{
    const int64_t h = p->h, kh = p->k * h;
    const int k = p->k;
    for (int64_t e = 0; e < kh; e++)
        p->wf[e] = (float)w[e];
    if (grad)
        memset(grad, 0, sizeof(double) * (size_t)kh);
    double cross = 0.0; /* Σ_t Σ_c p log q */
    for (int64_t t0 = 0; t0 < p->m; t0 += KL_BLOCK) {
        if (sm_monitor_check(mon))
            return -1;
        const int mb = (int)(p->m - t0 < KL_BLOCK ? p->m - t0 : KL_BLOCK);
        const float *xb = p->x + t0 * h;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, k, (int)h, 1.0f, xb, (int)h, p->wf, (int)h, 0.0f,
                    p->zblk, k);
        for (int t = 0; t < mb; t++) {
            float *z = p->zblk + (int64_t)t * k;
            const float *pt = p->p + (t0 + t) * k;
            double mx = -INFINITY, s = 0.0;
            for (int c = 0; c < k; c++)
                mx = z[c] > mx ? z[c] : mx;
            for (int c = 0; c < k; c++)
                s += exp(z[c] - mx);
            const double lse = mx + log(s);
            for (int c = 0; c < k; c++) {
                cross += pt[c] * (z[c] - lse);
                z[c] = (float)(exp(z[c] - lse) - pt[c]); /* q − p: the logits' gradient */
            }
        }
        if (grad) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, (int)h, mb, 1.0f, p->zblk, k, xb, (int)h, 0.0f,
                        p->gblk, (int)h);
            for (int64_t e = 0; e < kh; e++)
                grad[e] += p->gblk[e];
        }
    }
    double ridge = 0.0;
    for (int64_t e = 0; e < kh; e++) {
        const double d = w[e] - p->prior[e];
        ridge += d * d;
        if (grad)
            grad[e] = grad[e] / (double)p->m + 2.0 * p->lambda * d;
    }
    *f = p->plogp - cross / (double)p->m + p->lambda * ridge;
    return isfinite(*f) ? 0 : sm_err("collapse-kl: the objective is not finite (inputs overflow float32)");
}

/* The preconditioner: ∇²f's diagonal blocks approximated as s_c·C + 2λI, with C = XᵀX/m the
 * inputs' second moment and s_c = mean_t q_c(1 − q_c) at the warm start. C's eigenvectors V
 * (once, H×H) make every block diagonal: P g_c = ((g_c V) ⊘ (s_c σ + 2λ)) Vᵀ, two k×H×H products.
 * Why: hidden states are strongly correlated (a few large shared directions), so the Hessian's
 * condition follows C's (σ spans orders of magnitude), and clusters' curvatures differ by
 * their routing mass s_c; an unscaled L-BFGS crosses both in many small steps. */
typedef struct {
    int k;
    int64_t h;
    float *vt;     /* h × h row-major: row j is C's eigenvector j */
    double *scale; /* k × h: 1 / (s_c σ_j + 2λ) */
    float *a, *b;  /* k × h work */
} kl_precond;

static void precond_free(kl_precond *pc)
{
    free(pc->vt), free(pc->scale), free(pc->a), free(pc->b);
    memset(pc, 0, sizeof *pc);
}

static int precond_new(sm_router_kl *p, const double *w, const sm_monitor *mon, kl_precond *pc)
{
    const int64_t h = p->h, kh = p->k * h;
    const int k = p->k;
    memset(pc, 0, sizeof *pc);
    pc->k = k, pc->h = h;
    /* the eigendecomposition (about 10 H³ flops) where it costs less than the ~100 evaluations
     * (4 m H k flops each) an unpreconditioned solve takes; else C ≈ its mean eigenvalue · I */
    bool eig = (double)h * (double)h <= 40.0 * (double)p->m * k;
    pc->vt = eig ? sm_alloc_f32((size_t)(h * h)) : NULL;
    pc->scale = sm_alloc((size_t)kh, sizeof(double));
    pc->a = sm_alloc_f32((size_t)kh), pc->b = sm_alloc_f32((size_t)kh);
    float *sigma = sm_alloc_f32((size_t)h);
    double *s = sm_zalloc((size_t)k, sizeof(double));
    int rc = -1;
    if ((eig && !pc->vt) || !pc->scale || !pc->a || !pc->b || !sigma || !s)
        goto done;
    for (int64_t e = 0; e < kh; e++)
        p->wf[e] = (float)w[e];
    for (int64_t t0 = 0; t0 < p->m; t0 += KL_BLOCK) {
        if (sm_monitor_check(mon))
            goto done;
        const int mb = (int)(p->m - t0 < KL_BLOCK ? p->m - t0 : KL_BLOCK);
        const float *xb = p->x + t0 * h;
        if (eig)
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)h, mb, 1.0f / (float)p->m, xb, (int)h,
                        t0 ? 1.0f : 0.0f, pc->vt, (int)h);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, k, (int)h, 1.0f, xb, (int)h, p->wf, (int)h, 0.0f,
                    p->zblk, k);
        for (int t = 0; t < mb; t++) {
            const float *z = p->zblk + (int64_t)t * k;
            double mx = -INFINITY, sum = 0.0;
            for (int c = 0; c < k; c++)
                mx = z[c] > mx ? z[c] : mx;
            for (int c = 0; c < k; c++)
                sum += exp(z[c] - mx);
            for (int c = 0; c < k; c++) {
                const double q = exp(z[c] - mx) / sum;
                s[c] += q * (1.0 - q) / (double)p->m;
            }
        }
    }
    /* row-major upper = column-major lower; the vectors come back as columns = rows of vt */
    if (sm_monitor_check(mon))
        goto done;
    if (eig && sm_eigh_f32((int)h, pc->vt, true, sigma)) { /* LAPACK did not converge: the cheap form */
        sm_err_clear();
        free(pc->vt);
        pc->vt = NULL, eig = false;
    }
    if (!eig) {
        double tr = 0.0; /* trace(C)/h = the mean squared input entry */
        for (int64_t e = 0; e < p->m * h; e++)
            tr += (double)p->x[e] * p->x[e];
        for (int64_t j = 0; j < h; j++)
            sigma[j] = (float)(tr / (double)(p->m * h));
    }
    for (int c = 0; c < k; c++)
        for (int64_t j = 0; j < h; j++)
            pc->scale[c * h + j] = 1.0 / (s[c] * (sigma[j] > 0.0f ? sigma[j] : 0.0) + 2.0 * p->lambda);
    rc = 0;
done:
    free(sigma), free(s);
    if (rc)
        precond_free(pc);
    return rc;
}

/* d ← P d (k × h, in place). */
static void precond_apply(const kl_precond *pc, double *d)
{
    const int64_t h = pc->h, kh = pc->k * h;
    if (!pc->vt) {
        for (int64_t e = 0; e < kh; e++)
            d[e] *= pc->scale[e];
        return;
    }
    for (int64_t e = 0; e < kh; e++)
        pc->b[e] = (float)d[e];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, pc->k, (int)h, (int)h, 1.0f, pc->b, (int)h, pc->vt, (int)h,
                0.0f, pc->a, (int)h);
    for (int64_t e = 0; e < kh; e++)
        pc->a[e] = (float)(pc->a[e] * pc->scale[e]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pc->k, (int)h, (int)h, 1.0f, pc->a, (int)h, pc->vt,
                (int)h, 0.0f, pc->b, (int)h);
    for (int64_t e = 0; e < kh; e++)
        d[e] = pc->b[e];
}

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* L-BFGS memory and the two-loop recursion (Nocedal & Wright, Algorithm 7.4). */
typedef struct {
    double *s[KL_PAIRS], *y[KL_PAIRS], rho[KL_PAIRS];
    int used, next;
} lbfgs_mem;

/* d = −H g (Nocedal & Wright, Algorithm 7.4 with H₀ = γ P), γ = sᵀy / yᵀPy from the newest pair,
 * else 1: the first step is the preconditioned Newton step. `py`: work, n. */
static void lbfgs_direction(const lbfgs_mem *L, const kl_precond *pc, const double *g, int64_t n, double *py,
                            double *d)
{
    double alpha[KL_PAIRS];
    for (int64_t i = 0; i < n; i++)
        d[i] = -g[i];
    for (int j = 0; j < L->used; j++) {
        const int q = (L->next - 1 - j + KL_PAIRS) % KL_PAIRS;
        alpha[q] = L->rho[q] * dot(L->s[q], d, n);
        for (int64_t i = 0; i < n; i++)
            d[i] -= alpha[q] * L->y[q][i];
    }
    double gamma = 1.0;
    if (L->used) {
        const int newest = (L->next - 1 + KL_PAIRS) % KL_PAIRS;
        memcpy(py, L->y[newest], sizeof(double) * (size_t)n);
        precond_apply(pc, py);
        const double ypy = dot(L->y[newest], py, n);
        gamma = ypy > 0.0 ? 1.0 / (L->rho[newest] * ypy) : 1.0;
    }
    precond_apply(pc, d);
    for (int64_t i = 0; i < n; i++)
        d[i] *= gamma;
    for (int j = L->used - 1; j >= 0; j--) {
        const int q = (L->next - 1 - j + KL_PAIRS) % KL_PAIRS;
        const double beta = L->rho[q] * dot(L->y[q], d, n);
        for (int64_t i = 0; i < n; i++)
            d[i] += (alpha[q] - beta) * L->s[q][i];
    }
}

/* Record s = w1 − w0, y = g1 − g0 (skipped unless sᵀy > 0, which strict convexity gives). */
static void lbfgs_push(lbfgs_mem *L, const double *w0, const double *w1, const double *g0, const double *g1,
                       int64_t n)
{
    double *s = L->s[L->next], *y = L->y[L->next];
    for (int64_t i = 0; i < n; i++)
        s[i] = w1[i] - w0[i], y[i] = g1[i] - g0[i];
    const double sy = dot(s, y, n);
    if (!(sy > 1e-300))
        return;
    L->rho[L->next] = 1.0 / sy;
    L->next = (L->next + 1) % KL_PAIRS;
    L->used += L->used < KL_PAIRS;
}

int sm_router_kl_solve(sm_router_kl *p, const float *start, const sm_monitor *mon, float *rows,
                       sm_router_kl_info *info)
{
    const int max_iter = SM_ROUTER_KL_MAX_ITER;
    const int64_t n = p->k * p->h;
    lbfgs_mem L = {.used = 0};
    double *w = sm_alloc((size_t)n, sizeof(double)), *g = sm_alloc((size_t)n, sizeof(double));
    double *wn = sm_alloc((size_t)n, sizeof(double)), *gn = sm_alloc((size_t)n, sizeof(double));
    double *d = sm_alloc((size_t)n, sizeof(double)), *py = sm_alloc((size_t)n, sizeof(double));
    kl_precond pc = {0};
    bool ok = w && g && wn && gn && d && py;
    for (int j = 0; ok && j < KL_PAIRS; j++)
        ok = (L.s[j] = sm_alloc((size_t)n, sizeof(double))) && (L.y[j] = sm_alloc((size_t)n, sizeof(double)));
    sm_router_kl_info st = {0};
    int rc = -1;
    double f;
    if (!ok)
        goto done;
    for (int64_t i = 0; i < n; i++)
        w[i] = start[i];
    if (sm_router_kl_eval(p, w, g, mon, &f) || precond_new(p, w, mon, &pc))
        goto done;
    st.evaluations = 1, st.f_start = f;
    const double g0 = sqrt(dot(g, g, n));
    bool stalled = false;
    for (; st.iterations < max_iter; st.iterations++) {
        sm_monitor_report(mon, (double)st.iterations / max_iter, "collapse-kl");
        if (sqrt(dot(g, g, n)) <= 1e-6 * g0)
            break;
        lbfgs_direction(&L, &pc, g, n, py, d);
        double gd = dot(g, d, n);
        if (!(gd < 0.0)) { /* not a descent direction (rounding): restart from −P g */
            L.used = 0;
            lbfgs_direction(&L, &pc, g, n, py, d);
            gd = dot(g, d, n);
        }
        /* Armijo backtracking; the next trial is the minimiser of the quadratic through f, f'(0)
         * and the rejected value, kept within [0.1 t, 0.5 t] */
        double t = 1.0, fn = f;
        bool stepped = false;
        for (int bt = 0; bt < KL_BACKTRACKS; bt++) {
            for (int64_t i = 0; i < n; i++)
                wn[i] = w[i] + t * d[i];
            if (sm_router_kl_eval(p, wn, gn, mon, &fn))
                goto done;
            st.evaluations++;
            if (fn <= f + 1e-4 * t * gd) {
                stepped = true;
                break;
            }
            const double curv = fn - f - gd * t, tq = curv > 0.0 ? -gd * t * t / (2.0 * curv) : 0.5 * t;
            t = fmax(0.1 * t, fmin(0.5 * t, tq));
        }
        if (!stepped) /* no step along d lowers f: it is at float precision */
            break;
        lbfgs_push(&L, w, wn, g, gn, n);
        const double drop = f - fn;
        memcpy(w, wn, sizeof(double) * (size_t)n);
        memcpy(g, gn, sizeof(double) * (size_t)n);
        f = fn;
        /* two steps in a row that move f by less than KL_STALL of itself: the logits are single
         * precision, so below that the gradient is mostly rounding */
        const bool small = drop <= KL_STALL * fabs(f);
        if (small && stalled) {
            st.iterations++;
            break;
        }
        stalled = small;
    }
    st.f_end = f;
    for (int64_t i = 0; i < n; i++)
        rows[i] = (float)w[i];
    if (info)
        *info = st;
    rc = 0;
done:
    for (int j = 0; j < KL_PAIRS; j++)
        free(L.s[j]), free(L.y[j]);
    free(w), free(g), free(wn), free(gn), free(d), free(py);
    precond_free(&pc);
    return rc;
}

int sm_router_collapse_kl(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                          const double *freq, const float *x, int64_t m, double ridge, const sm_monitor *mon,
                          float *rows)
{
    if (sm_router_collapse_lstsq(router, n, hidden, cluster_of, k, freq, x, m, ridge, rows) != 0)
        return -1;
    float *lsq = sm_alloc_f32((size_t)(k * hidden));
    if (!lsq)
        return -1;
    memcpy(lsq, rows, sizeof(float) * (size_t)(k * hidden));
    sm_router_kl *p = sm_router_kl_new(router, n, hidden, cluster_of, k, freq, lsq, x, m,
                                       ridge > 0.0 ? ridge : SM_ROUTER_KL_RIDGE_DEFAULT);
    int rc = p ? sm_router_kl_solve(p, lsq, mon, rows, NULL) : -1;
    sm_router_kl_free(p);
    free(lsq);
    return rc;
}

int sm_router_collapse_measure(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                               const float *rows, const float *x, int64_t m, int top_k, double *kl,
                               double *agree)
{
    if (sm_router_check_partition(cluster_of, n, k) != 0)
        return -1;
    if (m < 1)
        return sm_err("collapse measure: no rows");
    top_k = top_k < 1 ? 1 : top_k > k ? k : top_k;
    float *zn = sm_alloc_f32((size_t)n), *pn = sm_alloc_f32((size_t)n);
    float *zc = sm_alloc_f32((size_t)k), *pc = sm_alloc_f32((size_t)k), *qc = sm_alloc_f32((size_t)k);
    int *op = sm_alloc((size_t)top_k, sizeof(int)), *oq = sm_alloc((size_t)top_k, sizeof(int));
    unsigned char *taken = sm_alloc((size_t)k, 1);
    int rc = -1;
    if (!zn || !pn || !zc || !pc || !qc || !op || !oq || !taken)
        goto done;
    double kl_sum = 0.0, hits = 0.0;
    for (int64_t t = 0; t < m; t++) {
        const float *xt = x + t * hidden;
        sm_route_logits(xt, 1, hidden, router, n, zn);
        sm_route_softmax(zn, n, pn);
        memset(pc, 0, sizeof(float) * (size_t)k);
        for (int i = 0; i < n; i++)
            pc[cluster_of[i]] += pn[i];
        sm_route_logits(xt, 1, hidden, rows, k, zc);
        double mx = -INFINITY, s = 0.0;
        for (int c = 0; c < k; c++)
            mx = zc[c] > mx ? zc[c] : mx;
        for (int c = 0; c < k; c++)
            s += exp(zc[c] - mx);
        for (int c = 0; c < k; c++) {
            const double logq = zc[c] - mx - log(s);
            qc[c] = (float)exp(logq);
            if (pc[c] > 0.0f)
                kl_sum += pc[c] * (log(pc[c]) - logq);
        }
        sm_route_rank(pc, k, top_k, taken, op);
        sm_route_rank(qc, k, top_k, taken, oq);
        for (int a = 0; a < top_k; a++)
            for (int b = 0; b < top_k; b++)
                hits += op[a] == oq[b];
    }
    *kl = kl_sum / (double)m;
    *agree = hits / ((double)m * top_k);
    rc = 0;
done:
    free(zn), free(pn), free(zc), free(pc), free(qc), free(op), free(oq), free(taken);
    return rc;
}
