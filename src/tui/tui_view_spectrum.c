/* tui_view_spectrum: view 3, the singular values of one cluster's concatenated weights W_cat
 * (the union SVD's spectrum) for gate, up or down on a log scale, the cumulative energy curve,
 * and the chosen rank with the energy it keeps and the truncation error it costs; marks for the
 * rank chooser (tui_spectrum_marks): the ranks keeping 90/95/99% of the energy, the break-even
 * below which the writer stores factors, and what the group and the layer store at the ranks. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mats[3] = {"gate", "up", "down"};

/* The chosen rank of the shown matrix, clamped to the spectrum's length. */
static int64_t shown_rank(const tui_state *s, int len)
{
    const tui_layer *p = &s->res[s->layer];
    int members = tui_cluster_size(p, s->spec_cluster);
    int64_t rk = tui_rank_value(s, p, tui_group_rank(s, s->layer, s->spec_cluster, s->spec_matrix), s->spec_matrix,
                                members);
    return rk > len ? len : rk;
}

/* The shown matrix's shape: gate and up are inter × hidden, down hidden × inter. */
static void shown_shape(const tui_state *s, int64_t *out, int64_t *in)
{
    *out = s->spec_matrix == 2 ? s->hidden : s->inter;
    *in = s->spec_matrix == 2 ? s->inter : s->hidden;
}

/* Column of the plot where rank rk ends (the first column past its values). */
static int rank_col(int64_t rk, int len, int W)
{
    int c = (int)ceil((double)rk * W / len);
    return c > W ? W : c;
}

/* The first of n forms (longest first) that fits in w columns; the last one when none does. */
static const char *first_fit(char (*forms)[320], int n, int w)
{
    for (int i = 0; i < n - 1; i++)
        if (tui_strwidth(forms[i]) <= w)
            return forms[i];
    return forms[n - 1];
}

/* The rank chooser's rows under the axis, from row y to ymax (exclusive): the marks' ranks, what
 * the group and the layer store at the current ranks (tui_group_params, tui_plan_params: the
 * writer's rule) and, in a row left over, the legend. Each line in its longest form that fits;
 * where even the marks' shortest does not, its two halves take a row each and the legend gives
 * way. */
static void draw_marks(const tui_state *s, const tui_rect *r, int y, int ymax, const tui_spec_marks *mk)
{
    int w = r->w - 2;
    char m[3][320];
    const char *bar = tc_g("\u2506", ":");
    snprintf(m[0], sizeof m[0], "90%% r%lld  95%% r%lld  99%% r%lld  %s break-even r%lld", (long long)mk->energy[0],
             (long long)mk->energy[1], (long long)mk->energy[2], bar, (long long)mk->break_even);
    snprintf(m[1], sizeof m[1], "90/95/99%% r%lld/%lld/%lld %s break-even r%lld", (long long)mk->energy[0],
             (long long)mk->energy[1], (long long)mk->energy[2], bar, (long long)mk->break_even);
    snprintf(m[2], sizeof m[2], "90/95/99%% r%lld/%lld/%lld", (long long)mk->energy[0], (long long)mk->energy[1],
             (long long)mk->energy[2]);
    bool split = tui_strwidth(m[1]) > w; /* the break-even on a row of its own */
    tc_on(TC_PAIR_OK, 0);
    tc_put(y++, r->x + 1, w, "%s", split ? m[2] : first_fit(m, 2, w));
    if (split && y < ymax)
        tc_put(y++, r->x + 1, w, "%s break-even r%lld", bar, (long long)mk->break_even);
    tc_off(TC_PAIR_OK, 0);
    char g[16], dense[16], layer[16], p[3][320];
    tc_fmt_params(g, sizeof g, (double)tui_group_params(s, s->layer, s->spec_cluster));
    tc_fmt_params(dense, sizeof dense, 3.0 * (double)s->hidden * (double)s->inter);
    tc_fmt_params(layer, sizeof layer, (double)tui_plan_params(s, s->layer));
    snprintf(p[0], sizeof p[0], "group %d %s params (dense %s), layer %s", s->spec_cluster, g, dense, layer);
    snprintf(p[1], sizeof p[1], "group %d %s, layer %s params", s->spec_cluster, g, layer);
    snprintf(p[2], sizeof p[2], "group %d %s params", s->spec_cluster, g);
    if (y < ymax)
        tc_put(y++, r->x + 1, w, "%s", first_fit(p, 3, w));
    if (y >= ymax)
        return;
    const char *items[4] = {tc_g("\u2588 singular value (log)", "# singular value (log)"),
                            tc_g("\u2022 energy kept", "* energy kept"), tc_g("\u2502 rank", "| rank"),
                            tc_g("\u25b4 90/95/99%", "^ 90/95/99%")};
    static const int prio[4] = {0, 1, 1, 2};
    char legend[160];
    tui_fit_priority(legend, sizeof legend, items, prio, 4, "  ", w);
    tc_on(TC_PAIR_DIM, 0);
    tc_put(y, r->x + 1, w, "%s", legend);
    tc_off(TC_PAIR_DIM, 0);
}

/* "r=RANK" under the axis near the rank's column (x0 + mark), within [lo, hi), a column clear of
 * each ▴ tick on either side, so that it neither hides a tick nor runs into one; "RANK" alone
 * where "r=RANK" finds no room, nothing where neither does (the detail line says the rank). */
static void rank_label(int64_t rk, int at, int lo, int hi, const int *ticks, int y)
{
    char rb[2][32];
    snprintf(rb[0], sizeof rb[0], "r=%lld", (long long)rk);
    snprintf(rb[1], sizeof rb[1], "%lld", (long long)rk);
    for (int f = 0; f < 2; f++) {
        int len = (int)strlen(rb[f]), best = -1;
        for (int x = lo; x + len <= hi; x++) {
            bool clear = true;
            for (int q = 0; q < 3; q++)
                clear = clear && (ticks[q] < x - 1 || ticks[q] > x + len);
            int want = at - len / 2;
            if (clear && (best < 0 || abs(x - want) < abs(best - want)))
                best = x;
        }
        if (best >= 0) {
            tc_on(TC_PAIR_WARN, A_BOLD);
            tc_put(y, best, len, "%s", rb[f]);
            tc_off(TC_PAIR_WARN, A_BOLD);
            return;
        }
    }
}

static void energy(const double *sv, int len, int64_t rk, double *kept, double *total)
{
    *kept = *total = 0;
    for (int i = 0; i < len; i++) {
        *total += sv[i] * sv[i];
        if (i < rk)
            *kept += sv[i] * sv[i];
    }
}

void tui_view_spectrum_draw(const tui_state *s, const tui_rect *r)
{
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer *p = &s->res[s->layer];
    /* the title: the matrices (the shown one in brackets), the group, the layer, as many as fit */
    char title[160], layer[32], group[48], matrices[48];
    snprintf(layer, sizeof layer, "layer %d", s->layer);
    snprintf(group, sizeof group, "group %d of %d", s->spec_cluster, p->k);
    snprintf(matrices, sizeof matrices, "%s%s%s %s%s%s %s%s%s", s->spec_matrix == 0 ? "[" : "", mats[0],
             s->spec_matrix == 0 ? "]" : "", s->spec_matrix == 1 ? "[" : "", mats[1], s->spec_matrix == 1 ? "]" : "",
             s->spec_matrix == 2 ? "[" : "", mats[2], s->spec_matrix == 2 ? "]" : "");
    const char *items[3] = {layer, group, matrices};
    static const int prio[3] = {2, 1, 0};
    tui_fit_priority(title, sizeof title, items, prio, 3, tc_g(" \u00b7 ", " - "), r->w - 4);
    tc_title(r, title, true);
    if (!s->is_moe[s->layer]) {
        tc_put(r->y + 2, r->x + 2, r->w - 4, "a dense layer: no experts");
        return;
    }
    if (!tui_spectrum_fresh(s, s->layer) || !d->spec[s->spec_matrix]) {
        tc_put(r->y + 2, r->x + 2, r->w - 4, "computing the spectrum of group %d...", s->spec_cluster);
        return;
    }
    const double *sv = d->spec[s->spec_matrix];
    int len = d->spec_len[s->spec_matrix];
    int64_t rk = shown_rank(s, len);
    double kept, tot;
    energy(sv, len, rk, &kept, &tot);
    int px = r->x + 7, W = r->w - 7 - 6, H = r->h - 5;
    if (W < 8 || H < 3 || len < 1) {
        tc_put(r->y + 1, r->x + 1, r->w - 2, "rank %lld of %d", (long long)rk, len);
        return;
    }
    /* the axis spans the values themselves (largest at the top), eight decades at most */
    double top = sv[0] > 0 ? log10(sv[0]) : 0, bot = top;
    for (int i = 0; i < len; i++)
        if (sv[i] > 0)
            bot = fmin(bot, log10(sv[i]));
    bot = fmax(bot, top - 8); /* the rest sits on the axis */
    if (bot >= top)
        bot = top - 1;
    int mark = rank_col(rk, len, W);
    int64_t out, in;
    shown_shape(s, &out, &in);
    tui_spec_marks mk;
    tui_spectrum_marks(sv, len, out, in, &mk);
    /* the break-even, dotted, where bars and the curve leave room (drawn first, under them) */
    int be = mk.break_even > 0 && mk.break_even < len ? rank_col(mk.break_even, len, W) : -1;
    tc_on(TC_PAIR_OK, 0);
    for (int y = 0; be >= 0 && y < H; y++)
        mvaddstr(r->y + H - y, px + be, tc_g("\u2506", ":"));
    tc_off(TC_PAIR_OK, 0);
    double cum = 0;
    for (int c = 0; c < W; c++) {
        int i0 = (int)((double)c * len / W), i1 = (int)((double)(c + 1) * len / W);
        double v = 0;
        if (i1 <= i0) /* fewer values than columns: repeat the value, add no energy */
            v = sv[i0 < len ? i0 : len - 1];
        for (int i = i0; i < i1 && i < len; i++) {
            v = fmax(v, sv[i]);
            cum += sv[i] * sv[i];
        }
        int hbar = v > 0 ? (int)((log10(v) - bot) / (top - bot) * H + 0.5) : 0;
        int he = tot > 0 ? (int)(cum / tot * (H - 1) + 0.5) : 0;
        bool keptcol = c < mark;
        for (int y = 0; y < H; y++) {
            int yy = r->y + H - y;
            /* a dot inside a kept bar: on the bar's colour, not a hole in it */
            int pair = y == he ? (y < hbar && keptcol ? TC_PAIR_SPEC_DOT : TC_PAIR_OK)
                               : keptcol ? TC_PAIR_SPEC_BAR : TC_PAIR_DIM;
            if (y == he || y < hbar) {
                tc_on(pair, y == he ? A_BOLD : 0);
                mvaddstr(yy, px + c, y == he ? tc_g("\u2022", "*") : keptcol ? tc_g("\u2588", "#") : tc_g("\u2591", ":"));
                tc_off(pair, y == he ? A_BOLD : 0);
            }
        }
    }
    /* the rank marker (past the plot at full rank) */
    tc_on(TC_PAIR_WARN, A_BOLD);
    for (int y = 0; y < H; y++)
        mvaddstr(r->y + H - y, px + mark, tc_g("\u2502", "|"));
    tc_off(TC_PAIR_WARN, A_BOLD);
    /* axes */
    tc_on(TC_PAIR_DIM, 0);
    tc_put(r->y + 1, r->x + 1, 6, "%-6.2g", pow(10, top));
    tc_put(r->y + H, r->x + 1, 6, "%-6.2g", pow(10, bot));
    tc_put(r->y + 1, px + W + 2, 4, "100%%");
    tc_put(r->y + H, px + W + 2, 4, "0%%");
    int ax = r->y + H + 1;
    tc_on(TC_PAIR_OK, 0); /* ticks under the energy marks */
    for (int q = 0; q < 3; q++)
        mvaddstr(ax, px + rank_col(mk.energy[q], len, W) - (mk.energy[q] > 0), tc_g("\u25b4", "^"));
    tc_off(TC_PAIR_OK, 0);
    tc_put(ax, px, 6, "1");
    char lenbuf[16];
    snprintf(lenbuf, sizeof lenbuf, "%d", len);
    tc_put(ax, px + W - (int)strlen(lenbuf), (int)strlen(lenbuf), "%s", lenbuf);
    tc_off(TC_PAIR_DIM, 0);
    int ticks[3];
    for (int q = 0; q < 3; q++)
        ticks[q] = px + rank_col(mk.energy[q], len, W) - (mk.energy[q] > 0);
    rank_label(rk, mark + px, px + 2, px + W - (int)strlen(lenbuf) - 1, ticks, ax);
    draw_marks(s, r, ax + 1, ax + 4, &mk);
}

void tui_view_spectrum_detail(const tui_state *s, int y, int x, int w)
{
    const tui_layer_data *d = &s->data[s->layer];
    const tui_layer *p = &s->res[s->layer];
    char members[256] = "";
    size_t n = 0;
    for (int i = 0; i < p->n && n < sizeof members - 8; i++)
        if (p->assign[i] == s->spec_cluster)
            n += (size_t)snprintf(members + n, sizeof members - n, "%se%d", n ? " " : "", i);
    char f[4][320];
    if (!tui_spectrum_fresh(s, s->layer) || !d->spec[s->spec_matrix]) {
        snprintf(f[0], sizeof f[0], "group %d (%s): spectrum being computed", s->spec_cluster, members);
        snprintf(f[1], sizeof f[1], "group %d: spectrum being computed", s->spec_cluster);
        tc_put(y, x, w, "%s", first_fit(f, 2, w));
        return;
    }
    int len = d->spec_len[s->spec_matrix];
    int64_t rk = shown_rank(s, len);
    double kept, tot;
    energy(d->spec[s->spec_matrix], len, rk, &kept, &tot);
    const tui_layer_data *dd = &s->data[s->layer];
    bool pruned = tui_preview_fresh(s, s->layer) &&
                  (dd->built_method == SM_MERGE_PRUNE_FREQUENCY || dd->built_method == SM_MERGE_PRUNE_OUTPUT ||
                   dd->built_method == SM_MERGE_PRUNE_REAP || dd->built_method == SM_MERGE_KEEP);
    /* the longest form that fits */
    const char *mat = mats[s->spec_matrix];
    double pct = tot > 0 ? 100 * kept / tot : 100.0;
    if (pruned) {
        const char *what = dd->built_method == SM_MERGE_KEEP ? "kept" : "pruned";
        snprintf(f[0], sizeof f[0], "%s, group %d: rank %lld/%d, %.2f%% energy; layer %s: ranks unused (M)", mat,
                 s->spec_cluster, (long long)rk, len, pct, what);
        snprintf(f[1], sizeof f[1], "%s, group %d: rank %lld/%d; layer %s: ranks unused (M)", mat, s->spec_cluster,
                 (long long)rk, len, what);
        snprintf(f[2], sizeof f[2], "group %d: layer %s, ranks unused (M)", s->spec_cluster, what);
        tc_put(y, x, w, "%s", first_fit(f, 3, w));
        return;
    }
    double err = tot > 0 ? sqrt(fmax(0, 1 - kept / tot)) : 0.0;
    snprintf(f[0], sizeof f[0], "%s, group %d (%s): rank %lld/%d keeps %.2f%% of the energy, error %.4f", mat,
             s->spec_cluster, members, (long long)rk, len, pct, err);
    snprintf(f[1], sizeof f[1], "%s, group %d: rank %lld/%d keeps %.2f%% of the energy, error %.4f", mat,
             s->spec_cluster, (long long)rk, len, pct, err);
    snprintf(f[2], sizeof f[2], "%s, group %d: rank %lld/%d, %.2f%% energy, error %.4f", mat, s->spec_cluster,
             (long long)rk, len, pct, err);
    snprintf(f[3], sizeof f[3], "%s, group %d: rank %lld/%d, %.2f%% energy", mat, s->spec_cluster, (long long)rk,
             len, pct);
    tc_put(y, x, w, "%s", first_fit(f, 4, w));
}
