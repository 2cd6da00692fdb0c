/* tui_state: workbench state without curses — the groups' arithmetic, the selection, what is
 * fresh, the rank rule as the views count it (see tui_state.h). The plan and its edits, undo and
 * costs are tui_plan.c's; keys are tui_keys.c's, layouts tui_layout.c's. */
#include "tui/tui_state.h"
#include "pipeline/resolve.h"
#include "util/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tui_state_init(tui_state *s)
{
    memset(s, 0, sizeof *s);
    s->ppl_original = s->ppl_plan = -1;
    s->acc_original = s->acc_plan = -1;
    sm_plan_init(&s->plan);
    s->plan.has_seed = true;
    s->plan.seed = 1;
    for (int l = 0; l < TUI_MAX_LAYERS; l++)
        s->entry[l] = -1;
    s->color = true;
    s->utf8 = true;
    s->rank_matrix = -1;
}

void tui_state_free_data(tui_state *s)
{
    for (int l = 0; l < s->n_layers && l < TUI_MAX_LAYERS; l++) {
        for (int q = 0; q < 3; q++) {
            free(s->data[l].sim[q]);
            free(s->data[l].spec[q]);
            s->data[l].sim[q] = s->data[l].spec[q] = NULL;
        }
    }
    tui_clear_history(s);
    tui_other_close(s);
    sm_plan_free(&s->plan);
    for (int i = 0; i < s->n_log; i++)
        free(s->log[i].text);
    free(s->log);
    s->log = NULL;
    s->n_log = s->cap_log = 0;
    for (int l = 0; l < TUI_MAX_LAYERS; l++)
        s->entry[l] = -1;
}

void tui_say_v(tui_state *s, bool error, const char *fmt, va_list ap)
{
    vsnprintf(s->status, sizeof s->status, fmt, ap);
    s->status_error = error;
    if (!s->status[0])
        return;
    if (s->n_log == s->cap_log) {
        s->cap_log = s->cap_log ? 2 * s->cap_log : 64;
        s->log = xrealloc(s->log, sizeof *s->log * (size_t)s->cap_log);
    }
    s->log[s->n_log++] = (tui_message){(long long)time(NULL), error, xstrdup(s->status)};
}

void tui_say(tui_state *s, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tui_say_v(s, error, fmt, ap);
    va_end(ap);
}

void tui_say_clear(tui_state *s)
{
    s->status[0] = 0;
    s->status_error = false;
}

int tui_plan_set_groups(tui_layer *p, const int *assign)
{
    bool used[TUI_MAX_EXPERTS] = {false};
    for (int i = 0; i < p->n; i++) {
        if (assign[i] < 0 || assign[i] >= TUI_MAX_EXPERTS)
            return -1;
        used[assign[i]] = true;
    }
    /* labels in their order, without the empty ones: 0..k-1 */
    int map[TUI_MAX_EXPERTS], k = 0;
    for (int c = 0; c < TUI_MAX_EXPERTS; c++)
        map[c] = used[c] ? k++ : -1;
    for (int i = 0; i < p->n; i++)
        p->assign[i] = map[assign[i]];
    p->k = k;
    return 0;
}

bool tui_plan_consistent(const tui_layer *p)
{
    if (p->n < 1 || p->n > TUI_MAX_EXPERTS || p->k < 1 || p->k > p->n)
        return false;
    int size[TUI_MAX_EXPERTS] = {0};
    for (int i = 0; i < p->n; i++) {
        if (p->assign[i] < 0 || p->assign[i] >= p->k)
            return false;
        size[p->assign[i]]++;
    }
    for (int c = 0; c < p->k; c++)
        if (!size[c])
            return false;
    return true;
}

/* The smallest (largest) group; ties go to the later label, so the first groups keep their
 * members. */
static int group_by_size(const tui_layer *p, bool largest, int except)
{
    int best = -1, best_size = 0;
    for (int c = 0; c < p->k; c++) {
        int m = tui_cluster_size(p, c);
        if (c != except && (best < 0 || (largest ? m >= best_size : m <= best_size)))
            best = c, best_size = m;
    }
    return best;
}

void tui_plan_group_count(tui_layer *p, int k)
{
    if (p->n < 1)
        return;
    k = k < 1 ? 1 : k > p->n ? p->n : k;
    if (!tui_plan_consistent(p) && tui_plan_set_groups(p, p->assign) != 0) {
        for (int i = 0; i < p->n; i++) /* labels out of range: start from a round robin */
            p->assign[i] = i % k;
        p->k = k;
    }
    while (p->k > k) { /* the two smallest groups become one */
        int a = group_by_size(p, false, -1), b = group_by_size(p, false, a);
        int keep = a < b ? a : b, gone = a < b ? b : a;
        for (int i = 0; i < p->n; i++)
            p->assign[i] = p->assign[i] == gone ? keep : p->assign[i] > gone ? p->assign[i] - 1 : p->assign[i];
        p->k--;
    }
    while (p->k < k) { /* the largest group's last member starts a new one (k < n: it has two) */
        int big = group_by_size(p, true, -1), i = p->n - 1;
        while (i >= 0 && p->assign[i] != big)
            i--;
        if (i < 0)
            break; /* never: every group has a member */
        p->assign[i] = p->k++;
    }
}

void tui_undo_step_free(tui_undo_step *st)
{
    for (int i = 0; i < st->n; i++)
        sm_plan_layer_free(&st->l[i].before);
    free(st->l);
    st->l = NULL;
    st->n = 0;
}

void tui_clear_history(tui_state *s)
{
    for (int i = 0; i < s->n_undo; i++)
        tui_undo_step_free(&s->undo[i]);
    for (int i = 0; i < s->n_redo; i++)
        tui_undo_step_free(&s->redo[i]);
    s->n_undo = s->n_redo = 0;
    s->batch_open = false;
}

void tui_other_close(tui_state *s)
{
    if (!s->other)
        return;
    sm_plan_free(&s->other->plan);
    free(s->other);
    s->other = NULL;
    s->other_gen++;
}

int tui_cluster_order(const tui_layer *p, int *order)
{
    int pos = 0;
    for (int c = 0; c < p->k; c++)
        for (int i = 0; i < p->n; i++)
            if (p->assign[i] == c)
                order[pos++] = i;
    /* every caller walks n entries: experts of a group beyond k (never, with the groups set
     * through tui_plan_set_groups) go last rather than leave the tail unset */
    for (int i = 0; i < p->n; i++)
        if (p->assign[i] < 0 || p->assign[i] >= p->k)
            order[pos++] = i;
    return pos;
}

void tui_selection_settle(tui_state *s)
{
    if (s->n_layers < 1)
        return;
    s->layer = s->layer < 0 ? 0 : s->layer >= s->n_layers ? s->n_layers - 1 : s->layer;
    const tui_layer *p = &s->res[s->layer];
    int last = p->n > 0 ? p->n - 1 : 0;
    s->ci = s->ci < 0 ? 0 : s->ci > last ? last : s->ci;
    s->cj = s->cj < 0 ? 0 : s->cj > last ? last : s->cj;
    if (s->spec_cluster < 0 || s->spec_cluster >= p->k)
        s->spec_cluster = 0;
}

int tui_cluster_size(const tui_layer *p, int c)
{
    int m = 0;
    for (int i = 0; i < p->n; i++)
        m += p->assign[i] == c;
    return m;
}

bool tui_preview_fresh(const tui_state *s, int layer)
{
    return s->data[layer].have_preview && s->data[layer].preview_gen == s->plan_gen[layer];
}

bool tui_spectrum_fresh(const tui_state *s, int layer)
{
    const tui_layer_data *d = &s->data[layer];
    const tui_layer *p = &s->res[layer];
    if (!d->have_spectrum || d->spec_cluster != s->spec_cluster)
        return false;
    for (int i = 0; i < p->n; i++)
        if (d->spec_member[i] != (p->assign[i] == s->spec_cluster))
            return false;
    return true;
}

unsigned tui_plan_gen_sum(const tui_state *s)
{
    unsigned g = 0;
    for (int l = 0; l < s->n_layers; l++)
        g += s->plan_gen[l];
    return g;
}

bool tui_ppl_fresh(const tui_state *s)
{
    return s->ppl_plan > 0 && s->ppl_gen == tui_plan_gen_sum(s);
}

int64_t tui_rank_max(const tui_state *s, int matrix, int members)
{
    return sm_resolve_rank_max(matrix == 2 ? s->hidden : s->inter, matrix == 2 ? s->inter : s->hidden, members);
}

int64_t tui_rank_value(const tui_state *s, const tui_layer *p, sm_rank r, int matrix, int members)
{
    return sm_resolve_rank_value(&r, p->is_auto ? SM_PLAN_DEFAULT_METHOD : p->method, matrix == 2 ? s->hidden : s->inter,
                                 matrix == 2 ? s->inter : s->hidden, members);
}

