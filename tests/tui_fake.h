/* tui_fake: a workbench state as calibration leaves it (statistics, similarities, spectra) for a
 * small mixtral-like model, a checker of everything the views rely on, and drawing into a
 * curses screen that goes to /dev/null — so the state, the keys and the real drawing code run
 * in-process, without a terminal or a model. Shared by several state tests; the helpers are
 * static inline so a test that uses some of them builds without unused-function warnings. */
#ifndef SM_TUI_FAKE_H
#define SM_TUI_FAKE_H

#include <curses.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/tui_draw.h"
#include "tui/tui_state.h"

/* Layer l's entry as an opened plan gives it: its own groups (labels `assign`), or only a count
 * k (assign NULL); the rest the plan's defaults. Resolved as tui_app_load_plan resolves it. */
static inline void fake_entry(tui_state *s, int l, int n, int k, const int *assign)
{
    if (s->entry[l] < 0)
        tui_plan_layer_init(s, l, n);
    sm_plan_layer *pl = tui_entry(s, l);
    sm_plan_layer_free(pl);
    pl->layer = l;
    pl->s.has_experts = true;
    pl->s.experts = k < 1 ? 1 : k > n ? n : k;
    tui_layer g = {.n = n};
    if (assign && tui_plan_set_groups(&g, assign) == 0) {
        pl->s.experts = pl->n_groups = g.k;
        pl->group_len = calloc((size_t)g.k, sizeof(int));
        pl->groups = calloc((size_t)g.k, sizeof(int *));
        for (int c = 0; c < g.k; c++) {
            pl->groups[c] = calloc((size_t)n, sizeof(int));
            for (int i = 0; i < n; i++)
                if (g.assign[i] == c)
                    pl->groups[c][pl->group_len[c]++] = i;
        }
    }
    tui_plan_layer_init(s, l, n);
}

/* Layer l's groups as a clustering gave them (labels 0..k-1, none empty), at the entry's count. */
static inline void fake_clustered(tui_state *s, int l, int k, const int *assign)
{
    sm_plan_layer *pl = tui_entry(s, l);
    pl->s.has_experts = true;
    pl->s.experts = k;
    memcpy(s->clustered[l], assign, sizeof(int) * (size_t)s->res[l].n);
    tui_layer_refresh(s, l);
}

/* n experts per MoE layer (layer 1 dense), top-2, groups {0,1} {2,3} ... as clustering gave. */
static inline void fake_state(tui_state *s, int n_layers, int n)
{
    tui_state_free_data(s);
    tui_state_init(s);
    snprintf(s->model, sizeof s->model, "/tmp/fake-model");
    snprintf(s->arch, sizeof s->arch, "mixtral");
    s->n_layers = n_layers;
    s->top_k = 2;
    s->n_experts = n;
    s->hidden = 64;
    s->inter = 32;
    s->total_params = 1000000;
    s->calibrated = true;
    for (int l = 0; l < n_layers; l++) {
        s->is_moe[l] = l != 1;
        if (!s->is_moe[l])
            continue;
        tui_plan_layer_init(s, l, n); /* auto, full ranks: the plan's defaults */
        int pairs[TUI_MAX_EXPERTS];
        for (int i = 0; i < n; i++)
            pairs[i] = i / 2;
        fake_clustered(s, l, (n + 1) / 2, pairs);
        const tui_layer *p = &s->res[l];
        tui_layer_data *d = &s->data[l];
        d->have_stats = true;
        d->n = n;
        for (int i = 0; i < n; i++)
            d->freq[i] = 1.0 / n;
        for (int q = 0; q < 3; q += 2) { /* output and logit; no weight similarity */
            d->sim[q] = malloc(sizeof(double) * (size_t)n * (size_t)n);
            for (int i = 0; i < n * n; i++)
                d->sim[q][i] = i / n == i % n ? 1 : 0.1 + 0.8 * (double)((i * 7919) % 97) / 97;
        }
        /* the spectrum of group 0, as the worker would have computed it */
        d->have_spectrum = true;
        d->spec_cluster = 0;
        for (int i = 0; i < n; i++)
            d->spec_member[i] = p->assign[i] == 0;
        for (int q = 0; q < 3; q++) {
            d->spec_len[q] = 40;
            d->spec[q] = malloc(sizeof(double) * 40);
            for (int i = 0; i < 40; i++)
                d->spec[q][i] = 10.0 / (1 + i);
        }
    }
    s->layer = 0;
    snprintf(s->status, sizeof s->status, "calibrated on calib.u32");
}

/* What the views walk must agree with what they are told: for every MoE layer 1 ≤ k ≤ n, every
 * label in [0, k), no empty group, tui_cluster_order a permutation of all n experts; the cursors
 * inside the selected layer. Prints the first problem (with `ctx`) and returns false. */
static inline bool fake_consistent(const tui_state *s, const char *ctx)
{
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->is_moe[l])
            continue;
        const tui_layer *p = &s->res[l];
        int size[TUI_MAX_EXPERTS] = {0}, order[TUI_MAX_EXPERTS], seen[TUI_MAX_EXPERTS] = {0};
        if (p->n < 1 || p->n > TUI_MAX_EXPERTS || p->k < 1 || p->k > p->n) {
            printf("# %s: layer %d: %d experts in %d groups\n", ctx, l, p->n, p->k);
            return false;
        }
        for (int i = 0; i < p->n; i++) {
            if (p->assign[i] < 0 || p->assign[i] >= p->k) {
                printf("# %s: layer %d: expert %d in group %d of %d\n", ctx, l, i, p->assign[i], p->k);
                return false;
            }
            size[p->assign[i]]++;
        }
        for (int c = 0; c < p->k; c++)
            if (!size[c]) {
                printf("# %s: layer %d: group %d of %d is empty\n", ctx, l, c, p->k);
                return false;
            }
        int m = tui_cluster_order(p, order);
        for (int i = 0; i < m && m == p->n; i++)
            if (order[i] < 0 || order[i] >= p->n || seen[order[i]]++) {
                m = -1;
                break;
            }
        if (m != p->n) {
            printf("# %s: layer %d: cluster order has %d of %d experts\n", ctx, l, m, p->n);
            return false;
        }
    }
    if (s->layer < 0 || s->layer >= s->n_layers) {
        printf("# %s: selected layer %d of %d\n", ctx, s->layer, s->n_layers);
        return false;
    }
    const tui_layer *p = &s->res[s->layer];
    if (s->is_moe[s->layer] && (s->ci < 0 || s->ci >= p->n || s->cj < 0 || s->cj >= p->n ||
                                s->spec_cluster < 0 || s->spec_cluster >= p->k)) {
        printf("# %s: cursor (%d, %d), group %d, in %d experts, %d groups\n", ctx, s->ci, s->cj, s->spec_cluster,
               p->n, p->k);
        return false;
    }
    return true;
}

/* A curses screen writing to /dev/null, for the real drawing code. false without terminfo. */
static inline bool fake_term_open(void)
{
    static const char *const terms[] = {"xterm-256color", "xterm", "vt100", "ansi", "dumb"};
    FILE *out = fopen("/dev/null", "w"), *in = fopen("/dev/null", "r");
    if (!out || !in)
        return false;
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++)
        if (newterm(terms[i], out, in)) {
            return true;
        }
    return false;
}

/* Draw the state at cols × rows (the screen resized to it), as the loop does every frame. */
static inline void fake_draw(const tui_state *s, int cols, int rows)
{
    resizeterm(rows, cols);
    tui_draw(s, cols, rows);
}

#endif
