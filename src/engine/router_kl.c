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
    int64_t m_all, h;  /* rows given */
    int64_t r0, m;     /* the rows f is over: [r0, r0 + m) (all, or a validation split's part) */
    int k;
    float *p;          /* m_all × k targets */
    double *plogp_row; /* m_all: Σ_c p log p of each row (f's constant part) */
    double plogp;      /* (1/m) Σ over the active rows */
    double msq;        /* mean squared input entry over all rows */
    double lambda;
    double *prior;     /* k × h: W⁰ */
    float *wf, *zblk;  /* k × h, KL_BLOCK × k */
    float *gblk;       /* k × h */
    /* the preconditioner's basis, C = XᵀX/m_all, on first use: C's eigenvectors (rows of vt)
     * and eigenvalues, or (vt NULL) sigma = msq, C taken as its mean eigenvalue times I */
    float *vt, *sigma;
};

void sm_router_kl_free(sm_router_kl *p)
{
    if (!p)
        return;
    free(p->p), free(p->plogp_row), free(p->prior), free(p->wf), free(p->zblk), free(p->gblk);
    free(p->vt), free(p->sigma);
    free(p);
}

/* Targets p (m × k) from the original router's logits, in blocks, and each row's Σ_c p log p. */
static void targets(const float *router, int n, int64_t h, const int *cluster_of, int k, const float *x,
                    int64_t m, float *zn, float *pn, double *acc, float *p, double *plogp_row)
{
    for (int64_t t0 = 0; t0 < m; t0 += KL_BLOCK) {
        const int mb = (int)(m - t0 < KL_BLOCK ? m - t0 : KL_BLOCK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, n, (int)h, 1.0f, x + t0 * h, (int)h, router,
                    (int)h, 0.0f, zn, n);
        for (int t = 0; t < mb; t++) {
            sm_route_softmax(zn + (int64_t)t * n, n, pn);
            float *pt = p + (t0 + t) * k;
            double plogp = 0.0;
            memset(acc, 0, sizeof(double) * (size_t)k);
            for (int i = 0; i < n; i++)
                acc[cluster_of[i]] += pn[i];
            for (int c = 0; c < k; c++) {
                pt[c] = (float)acc[c];
                if (acc[c] > 0.0)
                    plogp += acc[c] * log(acc[c]);
            }
            plogp_row[t0 + t] = plogp;
        }
    }
}

/* f over rows [r0, r0 + m) from now on. */
static void kl_set_rows(sm_router_kl *p, int64_t r0, int64_t m)
{
    double plogp = 0.0;
    for (int64_t t = r0; t < r0 + m; t++)
        plogp += p->plogp_row[t];
    p->r0 = r0, p->m = m, p->plogp = plogp / (double)m;
}

/* λ from the relative ridge (≤ 0: SM_ROUTER_KL_RIDGE_DEFAULT). */
static void kl_set_ridge(sm_router_kl *p, double ridge)
{
    p->lambda = (ridge > 0.0 ? ridge : SM_ROUTER_KL_RIDGE_DEFAULT) * (p->msq > 0.0 ? p->msq : 1.0);
}

static void kl_set_prior(sm_router_kl *p, const float *prior)
{
    for (int64_t e = 0; e < p->k * p->h; e++)
        p->prior[e] = prior[e];
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
    p->x = x, p->m_all = m, p->h = hidden, p->k = k;
    p->p = sm_alloc_f32((size_t)(m * k));
    p->plogp_row = sm_alloc((size_t)m, sizeof(double));
    p->prior = sm_alloc((size_t)(k * hidden), sizeof(double));
    p->wf = sm_alloc_f32((size_t)(k * hidden));
    p->zblk = sm_alloc_f32((size_t)KL_BLOCK * k);
    p->gblk = sm_alloc_f32((size_t)(k * hidden));
    if (!p->p || !p->plogp_row || !p->prior || !p->wf || !p->zblk || !p->gblk ||
        (!prior && sm_router_collapse_mean(router, n, hidden, cluster_of, k, freq, mean) != 0))
        goto fail;
    kl_set_prior(p, prior ? prior : mean);
    targets(router, n, hidden, cluster_of, k, x, m, zn, pn, acc, p->p, p->plogp_row);
    kl_set_rows(p, 0, m);
    double tr = 0.0; /* mean diag(XᵀX)/m = mean squared input entry */
    for (int64_t e = 0; e < m * hidden; e++)
        tr += (double)x[e] * x[e];
    p->msq = tr / (double)(m * hidden);
    kl_set_ridge(p, ridge);
    free(mean), free(zn), free(pn), free(acc);
    return p;
fail:
    free(mean), free(zn), free(pn), free(acc);
    sm_router_kl_free(p);
    return NULL;
}

/* The KL term (1/m) Σ_t KL(p_t ‖ softmax(W x_t)) over the active rows in *kl and, when grad is
 * not NULL, its gradient (k × h, double). */
static int kl_term(sm_router_kl *p, const double *w, double *grad, const sm_monitor *mon, double *kl)
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
        const float *xb = p->x + (p->r0 + t0) * h;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, k, (int)h, 1.0f, xb, (int)h, p->wf, (int)h, 0.0f,
                    p->zblk, k);
        for (int t = 0; t < mb; t++) {
            float *z = p->zblk + (int64_t)t * k;
            const float *pt = p->p + (p->r0 + t0 + t) * k;
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
    if (grad)
        for (int64_t e = 0; e < kh; e++)
            grad[e] /= (double)p->m;
    *kl = p->plogp - cross / (double)p->m;
    return isfinite(*kl) ? 0 : sm_err("collapse-kl: the objective is not finite (inputs overflow float32)");
}

int sm_router_kl_eval(sm_router_kl *p, const double *w, double *grad, const sm_monitor *mon, double *f)
{
    double kl;
    if (kl_term(p, w, grad, mon, &kl))
        return -1;
    double ridge = 0.0;
    for (int64_t e = 0; e < p->k * p->h; e++) {
        const double d = w[e] - p->prior[e];
        ridge += d * d;
        if (grad)
            grad[e] += 2.0 * p->lambda * d;
    }
    *f = kl + p->lambda * ridge;
    return 0;
}

/* The preconditioner: ∇²f's diagonal blocks approximated as s_c·C + 2λI, with C = XᵀX/m the
 * inputs' second moment and s_c = mean_t q_c(1 − q_c) at the warm start. C's eigenvectors V
 * (once, H×H) make every block diagonal: P g_c = ((g_c V) ⊘ (s_c σ + 2λ)) Vᵀ, two k×H×H products.
 * Why: hidden states are strongly correlated (a few large shared directions), so the Hessian's
 * condition follows C's (σ spans orders of magnitude), and clusters' curvatures differ by
 * their routing mass s_c; an unscaled L-BFGS crosses both in many small steps. C is taken over
 * all the problem's rows, once: the solves of a validation (sm_router_collapse_kl_choose) share
 * it, and a basis from a subset of the rows serves as well (P only changes the path, not the
 * minimiser). */
typedef struct {
    int k;
    int64_t h;
    const float *vt; /* h × h row-major: row j is C's eigenvector j (the problem's), or NULL */
    double *scale;   /* k × h: 1 / (s_c σ_j + 2λ) */
    float *a, *b;    /* k × h work */
} kl_precond;

static void precond_free(kl_precond *pc)
{
    free(pc->scale), free(pc->a), free(pc->b);
    memset(pc, 0, sizeof *pc);
}

/* p->vt and p->sigma, once. */
static int precond_basis(sm_router_kl *p, const sm_monitor *mon)
{
    if (p->sigma)
        return 0;
    const int64_t h = p->h;
    /* the eigendecomposition (about 10 H³ flops) where it costs less than the ~100 evaluations
     * (4 m H k flops each) an unpreconditioned solve takes; else C ≈ its mean eigenvalue · I */
    bool eig = (double)h * (double)h <= 40.0 * (double)p->m_all * p->k;
    float *vt = eig ? sm_alloc_f32((size_t)(h * h)) : NULL, *sigma = sm_alloc_f32((size_t)h);
    if ((eig && !vt) || !sigma)
        goto fail;
    for (int64_t t0 = 0; eig && t0 < p->m_all; t0 += KL_BLOCK) {
        if (sm_monitor_check(mon))
            goto fail;
        const int mb = (int)(p->m_all - t0 < KL_BLOCK ? p->m_all - t0 : KL_BLOCK);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)h, mb, 1.0f / (float)p->m_all, p->x + t0 * h,
                    (int)h, t0 ? 1.0f : 0.0f, vt, (int)h);
    }
    /* row-major upper = column-major lower; the vectors come back as columns = rows of vt */
    if (sm_monitor_check(mon))
        goto fail;
    if (eig && sm_eigh_f32((int)h, vt, true, sigma)) { /* LAPACK did not converge: the cheap form */
        sm_err_clear();
        free(vt);
        vt = NULL;
    }
    if (!vt)
        for (int64_t j = 0; j < h; j++)
            sigma[j] = (float)p->msq; /* trace(C)/h */
    p->vt = vt, p->sigma = sigma;
    return 0;
fail:
    free(vt), free(sigma);
    return -1;
}

static int precond_new(sm_router_kl *p, const double *w, const sm_monitor *mon, kl_precond *pc)
{
    const int64_t h = p->h, kh = p->k * h;
    const int k = p->k;
    memset(pc, 0, sizeof *pc);
    if (precond_basis(p, mon))
        return -1;
    pc->k = k, pc->h = h, pc->vt = p->vt;
    pc->scale = sm_alloc((size_t)kh, sizeof(double));
    pc->a = sm_alloc_f32((size_t)kh), pc->b = sm_alloc_f32((size_t)kh);
    double *s = sm_zalloc((size_t)k, sizeof(double));
    int rc = -1;
    if (!pc->scale || !pc->a || !pc->b || !s)
        goto done;
    for (int64_t e = 0; e < kh; e++)
        p->wf[e] = (float)w[e];
    for (int64_t t0 = 0; t0 < p->m; t0 += KL_BLOCK) {
        if (sm_monitor_check(mon))
            goto done;
        const int mb = (int)(p->m - t0 < KL_BLOCK ? p->m - t0 : KL_BLOCK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, k, (int)h, 1.0f, p->x + (p->r0 + t0) * h, (int)h,
                    p->wf, (int)h, 0.0f, p->zblk, k);
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
    for (int c = 0; c < k; c++)
        for (int64_t j = 0; j < h; j++)
            pc->scale[c * h + j] = 1.0 / (s[c] * (p->sigma[j] > 0.0f ? p->sigma[j] : 0.0) + 2.0 * p->lambda);
    rc = 0;
done:
    free(s);
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

/* The relative ridges the validation tries, from the prior (collapse-lstsq) outward. */
static const double kl_ridges[SM_ROUTER_KL_RIDGES] = {10.0, 1.0, 1e-1, 1e-2, 1e-3};

/* The KL term of w (float, k × h) on the active rows. */
static int kl_of_rows(sm_router_kl *p, const float *w, double *wd, const sm_monitor *mon, double *kl)
{
    for (int64_t e = 0; e < p->k * p->h; e++)
        wd[e] = w[e];
    return kl_term(p, wd, NULL, mon, kl);
}

/* The fixed-ridge form: collapse-lstsq (its default ridge) on all rows as prior and start, one solve. */
static int collapse_kl_fixed(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                             const double *freq, const float *x, int64_t m, double ridge, const sm_monitor *mon,
                             float *rows, sm_router_kl_choice *ch)
{
    if (sm_router_collapse_lstsq(router, n, hidden, cluster_of, k, freq, x, m, 0.0, rows) != 0)
        return -1;
    float *lsq = sm_alloc_f32((size_t)(k * hidden));
    if (!lsq)
        return -1;
    memcpy(lsq, rows, sizeof(float) * (size_t)(k * hidden));
    ch->ridge = ridge > 0.0 ? ridge : SM_ROUTER_KL_RIDGE_DEFAULT;
    sm_router_kl *p = sm_router_kl_new(router, n, hidden, cluster_of, k, freq, lsq, x, m, ch->ridge);
    sm_router_kl_info info = {0};
    int rc = p ? sm_router_kl_solve(p, lsq, mon, rows, &info) : -1;
    ch->evaluations = info.evaluations;
    sm_router_kl_free(p);
    free(lsq);
    return rc;
}

/* Every ridge of the grid on the training part (rows [0, m_tr)), each solve warm-started from the
 * previous one's result, scored on the validation part beside collapse-lstsq's rows (the limit of
 * an infinite ridge). best: the best ridge's result (k × h), unless that is collapse-lstsq. */
static int validate(sm_router_kl *p, int64_t m_tr, const float *lsq_tr, const sm_monitor *mon, float *w,
                    double *wd, float *best, sm_router_kl_choice *ch)
{
    const int64_t kh = p->k * p->h, m_val = p->m_all - m_tr;
    kl_set_rows(p, m_tr, m_val);
    if (kl_of_rows(p, lsq_tr, wd, mon, &ch->val_kl_lstsq))
        return -1;
    memcpy(w, lsq_tr, sizeof(float) * (size_t)kh);
    double best_kl = ch->val_kl_lstsq; /* the limit of an infinite ridge */
    ch->lstsq = true, ch->ridge = INFINITY;
    for (int i = 0; i < SM_ROUTER_KL_RIDGES; i++) {
        sm_monitor_span span;
        const double parts = SM_ROUTER_KL_RIDGES + 1.0; /* the grid's solves and the refit */
        const sm_monitor *sub = sm_monitor_span_init(&span, mon, i / parts, (i + 1.0) / parts);
        sm_router_kl_info info = {0};
        kl_set_ridge(p, kl_ridges[i]);
        kl_set_rows(p, 0, m_tr);
        if (sm_router_kl_solve(p, w, sub, w, &info))
            return -1;
        ch->evaluations += info.evaluations;
        kl_set_rows(p, m_tr, m_val);
        double v;
        if (kl_of_rows(p, w, wd, mon, &v))
            return -1;
        ch->ridges[i] = kl_ridges[i], ch->val_kl[i] = v, ch->tried = i + 1;
        if (v < best_kl) {
            best_kl = v, ch->ridge = kl_ridges[i], ch->lstsq = false;
            memcpy(best, w, sizeof(float) * (size_t)kh);
        }
    }
    return 0;
}

/* The chosen ridge on every row, toward collapse-lstsq on every row (lsq_all, also the result),
 * from the validation's result moved by the same change of prior. */
static int refit_all(sm_router_kl *p, float *lsq_all, const float *lsq_tr, const float *best,
                     const sm_monitor *mon, float *w, sm_router_kl_choice *ch)
{
    kl_set_prior(p, lsq_all);
    kl_set_ridge(p, ch->ridge);
    kl_set_rows(p, 0, p->m_all);
    for (int64_t e = 0; e < p->k * p->h; e++)
        w[e] = best[e] + (lsq_all[e] - lsq_tr[e]);
    sm_monitor_span span;
    const sm_monitor *sub = sm_monitor_span_init(&span, mon, SM_ROUTER_KL_RIDGES / (SM_ROUTER_KL_RIDGES + 1.0), 1.0);
    sm_router_kl_info info = {0};
    int rc = sm_router_kl_solve(p, w, sub, lsq_all, &info);
    ch->evaluations += info.evaluations;
    return rc;
}

int sm_router_collapse_kl_choose(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                                 const double *freq, const float *x, int64_t m, double ridge,
                                 const sm_monitor *mon, float *rows, sm_router_kl_choice *choice)
{
    sm_router_kl_choice ch = {0};
    const int64_t m_val = m / SM_ROUTER_KL_VAL_PART, m_tr = m - m_val, kh = k * hidden;
    if (ridge > 0.0 || m_val < SM_ROUTER_KL_VAL_MIN || hidden <= 0 || hidden > INT_MAX / 2) {
        int rc = collapse_kl_fixed(router, n, hidden, cluster_of, k, freq, x, m, ridge, mon, rows, &ch);
        if (choice)
            *choice = ch;
        return rc;
    }
    ch.validated = true, ch.m_train = m_tr, ch.m_val = m_val;
    sm_router_fit *fit = sm_router_fit_new(router, n, hidden, cluster_of, k);
    float *lsq_tr = sm_alloc_f32((size_t)kh), *w = sm_alloc_f32((size_t)kh), *best = sm_alloc_f32((size_t)kh);
    double *wd = sm_alloc((size_t)kh, sizeof(double));
    sm_router_kl *p = NULL;
    int rc = -1;
    /* collapse-lstsq on the training part (the validation's prior) and on every row (the result's
     * prior, exactly what collapse-lstsq gives) */
    if (!fit || !lsq_tr || !w || !best || !wd || sm_router_fit_add(fit, x, m_tr) ||
        sm_router_fit_solve(fit, freq, 0.0, lsq_tr) ||
        sm_router_collapse_lstsq(router, n, hidden, cluster_of, k, freq, x, m, 0.0, rows))
        goto done;
    if (!(p = sm_router_kl_new(router, n, hidden, cluster_of, k, freq, lsq_tr, x, m, kl_ridges[0])) ||
        validate(p, m_tr, lsq_tr, mon, w, wd, best, &ch))
        goto done;
    /* no ridge beat collapse-lstsq's own rows on the validation rows: they are the result */
    rc = ch.lstsq ? 0 : refit_all(p, rows, lsq_tr, best, mon, w, &ch);
done:
    sm_router_kl_free(p);
    sm_router_fit_free(fit);
    free(lsq_tr), free(w), free(best), free(wd);
    if (choice)
        *choice = ch;
    return rc;
}

int sm_router_collapse_kl(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                          const double *freq, const float *x, int64_t m, double ridge, const sm_monitor *mon,
                          float *rows)
{
    return sm_router_collapse_kl_choose(router, n, hidden, cluster_of, k, freq, x, m, ridge, mon, rows, NULL);
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
