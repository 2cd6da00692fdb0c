/* tui_view_spectrum: view 3, the singular values of one cluster's concatenated weights W_cat
 * (the union SVD's spectrum) for gate, up or down on a log scale, the cumulative energy curve,
 * and the chosen rank with the energy it keeps and the truncation error it costs; marks for the
 * rank chooser (tui_spectrum_marks): the ranks keeping 90/95/99% of the energy, the break-even
 * below which the writer stores factors, and what the group and the layer store at the ranks. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <math.h>
#include <stdio.h>
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

/* The rank chooser's rows under the axis: the marks' ranks, and what the group and the layer
 * store at the current ranks (tui_group_params, tui_plan_params: the writer's rule). */
static void draw_marks(const tui_state *s, const tui_rect *r, int y, const tui_spec_marks *mk)
{
    char line[160];
    const char *bar = tc_g("\u2506", ":");
    snprintf(line, sizeof line, "90%% r%lld  95%% r%lld  99%% r%lld  %s break-even r%lld", (long long)mk->energy[0],
             (long long)mk->energy[1], (long long)mk->energy[2], bar, (long long)mk->break_even);
    if (tui_strwidth(line) > r->w - 2) /* narrow: the same numbers, closer */
        snprintf(line, sizeof line, "90/95/99%% r%lld/%lld/%lld %s break-even r%lld", (long long)mk->energy[0],
                 (long long)mk->energy[1], (long long)mk->energy[2], bar, (long long)mk->break_even);
    tc_on(TC_PAIR_OK, 0);
    tc_put(y, r->x + 1, r->w - 2, "%s", line);
    tc_off(TC_PAIR_OK, 0);
    char g[16], dense[16], layer[16];
    tc_fmt_params(g, sizeof g, (double)tui_group_params(s, s->layer, s->spec_cluster));
    tc_fmt_params(dense, sizeof dense, 3.0 * (double)s->hidden * (double)s->inter);
    tc_fmt_params(layer, sizeof layer, (double)tui_plan_params(s, s->layer));
    tc_put(y + 1, r->x + 1, r->w - 2, "group %d %s params (dense %s), layer %s", s->spec_cluster, g, dense, layer);
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
    char title[160];
    snprintf(title, sizeof title, "layer %d %s group %d of %d %s %s%s%s %s%s%s %s%s%s", s->layer, tc_g("\u00b7", "-"),
             s->spec_cluster, p->k, tc_g("\u00b7", "-"), s->spec_matrix == 0 ? "[" : "", mats[0],
             s->spec_matrix == 0 ? "]" : "", s->spec_matrix == 1 ? "[" : "", mats[1], s->spec_matrix == 1 ? "]" : "",
             s->spec_matrix == 2 ? "[" : "", mats[2], s->spec_matrix == 2 ? "]" : "");
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
            if (y == he) {
                tc_on(TC_PAIR_OK, A_BOLD);
                mvaddstr(yy, px + c, tc_g("\u2022", "*"));
                tc_off(TC_PAIR_OK, A_BOLD);
            } else if (y < hbar) {
                if (!keptcol)
                    tc_on(TC_PAIR_DIM, 0);
                mvaddstr(yy, px + c, keptcol ? tc_g("\u2588", "#") : tc_g("\u2591", ":"));
                if (!keptcol)
                    tc_off(TC_PAIR_DIM, 0);
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
    char rb[32];
    snprintf(rb, sizeof rb, "r=%lld", (long long)rk);
    int rx = px + mark - (int)strlen(rb) / 2;
    rx = rx < px + 2 ? px + 2 : rx;
    rx = rx + (int)strlen(rb) > px + W - (int)strlen(lenbuf) - 1 ? px + W - (int)strlen(lenbuf) - 1 - (int)strlen(rb) : rx;
    tc_on(TC_PAIR_WARN, A_BOLD);
    tc_put(ax, rx, (int)strlen(rb), "%s", rb);
    tc_off(TC_PAIR_WARN, A_BOLD);
    tc_on(TC_PAIR_DIM, 0);
    tc_put(ax + 3, r->x + 1, r->w - 2, "%s singular value (log)  %s energy kept  %s rank%s",
           tc_g("\u2588", "#"), tc_g("\u2022", "*"), tc_g("\u2502", "|"), r->w < 62 ? "" : tc_utf8 ? "  \u25b4 90/95/99%" : "  ^ 90/95/99%");
    tc_off(TC_PAIR_DIM, 0);
    draw_marks(s, r, ax + 1, &mk);
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
    if (!tui_spectrum_fresh(s, s->layer) || !d->spec[s->spec_matrix]) {
        tc_put(y, x, w, "group %d (%s): spectrum being computed", s->spec_cluster, members);
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
    if (pruned) {
        tc_put(y, x, w, "%s, group %d: rank %lld/%d, %.2f%% energy; layer %s: ranks unused (M)",
               mats[s->spec_matrix], s->spec_cluster, (long long)rk, len, tot > 0 ? 100 * kept / tot : 100.0,
               dd->built_method == SM_MERGE_KEEP ? "kept" : "pruned");
        return;
    }
    tc_put(y, x, w, "%s, group %d (%s): rank %lld/%d keeps %.2f%% of the energy, error %.4f", mats[s->spec_matrix],
           s->spec_cluster, members, (long long)rk, len, tot > 0 ? 100 * kept / tot : 100.0,
           tot > 0 ? sqrt(fmax(0, 1 - kept / tot)) : 0.0);
}
