#include "moe/route.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"

sm_route_rule sm_route_rule_from_config(const sm_config *c)
{
    sm_route_rule r = {c->top_k, c->renorm_topk, 1.0f};
    switch (c->arch) {
    case SM_ARCH_MIXTRAL:
        r.renorm = true;
        break;
    case SM_ARCH_DEEPSEEK:
        r.renorm = c->renorm_topk && c->top_k > 1;
        if (c->routed_scaling > 0.0)
            r.scaling = (float)c->routed_scaling;
        break;
    default:
        break;
    }
    return r;
}

void sm_route_logits(const float *x, int64_t m, int64_t hidden, const float *router, int n,
                     float *z)
{
    if (m <= 0 || n <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, n, (int)hidden, 1.0f, x,
                (int)hidden, router, (int)hidden, 0.0f, z, n);
}

void sm_route_softmax(const float *z, int n, float *p)
{
    float mx = z[0];
    for (int i = 1; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        p[i] = expf(z[i] - mx);
        sum += p[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++)
        p[i] *= inv;
}

void sm_route_rank(const float *p, int n, int k, unsigned char *taken, int *order)
{
    /* One pass keeping the best so far in order: an expert enters only when strictly above the
     * current k-th and goes after every kept one it does not exceed, so among equal probabilities
     * the lower index (seen first) stays ahead — what k passes of a strict '>' scan give, at about
     * n comparisons instead of k·n (prune-output's search ranks rows by the million). */
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        const float v = p[i];
        if (v != v) /* NaN: the scan's own answer below */
            goto scan;
        if (cnt == k && !(v > p[order[k - 1]]))
            continue;
        int j = cnt < k ? cnt++ : k - 1;
        for (; j > 0 && v > p[order[j - 1]]; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    return;
scan:
    /* k passes of a strict '>' scan: the lowest index wins among equal probabilities. */
    memset(taken, 0, (size_t)n);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!taken[i] && (best < 0 || p[i] > p[best]))
                best = i;
        taken[best] = 1;
        order[j] = best;
    }
}

void sm_route_select_row(const sm_route_rule *r, const float *z, int n, float *p, unsigned char *taken, int *idx,
                         float *w)
{
    const int k = r->top_k;
    sm_route_softmax(z, n, p);
    sm_route_rank(p, n, k, taken, idx);
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        w[j] = p[idx[j]];
        sum += p[idx[j]];
    }
    for (int j = 0; j < k; j++) {
        if (r->renorm)
            w[j] /= sum;
        w[j] *= r->scaling;
    }
}

int sm_route_select(const sm_route_rule *r, const float *z, int64_t m, int n, int *idx, float *w)
{
    const int k = r->top_k;
    if (n <= 0 || k < 1 || k > n || k > 64)
        return sm_err("routing: top-%d of %d experts is invalid", k, n);
    float *p = sm_alloc_f32((size_t)n);
    unsigned char *taken = sm_alloc((size_t)n, 1);
    if (!p || !taken) {
        free(p), free(taken);
        return -1;
    }
    for (int64_t t = 0; t < m; t++)
        sm_route_select_row(r, z + t * n, n, p, taken, idx + t * k, w + t * k);
    free(p), free(taken);
    return 0;
}

int sm_route_fold(const int *idx, const float *w, int k, const int *expert_map, int *slots, float *sw)
{
    int nd = 0;
    for (int j = 0; j < k; j++) {
        const int s = expert_map ? expert_map[idx[j]] : idx[j];
        int d = 0;
        while (d < nd && slots[d] != s)
            d++;
        if (d == nd)
            slots[nd] = s, sw[nd++] = 0.0f;
        sw[d] += w[j];
    }
    return nd;
}

void sm_route_count(const int *idx, int64_t m, int k, int n, int64_t *counts)
{
    for (int64_t e = 0; e < m * k; e++)
        if (idx[e] >= 0 && idx[e] < n)
            counts[idx[e]]++;
}

void sm_route_frequencies(const int64_t *counts, int64_t tokens, int n, double *f)
{
    for (int i = 0; i < n; i++)
        f[i] = tokens > 0 ? (double)counts[i] / (double)tokens : 0.0;
}
