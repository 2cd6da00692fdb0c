/* tui_view_plan: view 1, the selected layer's plan — method (and what auto chose, with the
 * scores that decided it), router, ranks, alignment, REAP saliencies, and the groups with
 * routing shares. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ".62" for a share in [0, 1): two decimals without the leading zero; "<.01" for a routed expert
 * below that (".00" read as never routed). */
static void share(char *buf, size_t n, double f)
{
    char t[16];
    if (f > 0 && f < 0.005) {
        snprintf(buf, n, "<.01");
        return;
    }
    snprintf(t, sizeof t, "%.2f", f);
    snprintf(buf, n, "%s", t[0] == '0' ? t + 1 : t);
}

/* "e3 1.21", "e0 .84", ...: experts by REAP saliency, descending (ties: lower index). */
static int salient_items(const tui_layer_data *d, char (*item)[24], const char **items)
{
    bool used[TUI_MAX_EXPERTS] = {false};
    for (int r = 0; r < d->n; r++) {
        int best = -1;
        for (int i = 0; i < d->n; i++)
            if (!used[i] && (best < 0 || d->saliency[i] > d->saliency[best]))
                best = i;
        used[best] = true;
        snprintf(item[r], 24, "e%d %.3g", best, d->saliency[best]);
        items[r] = item[r];
    }
    return d->n;
}

static const char *const matrix_names[3] = {"gate", "up", "down"};

static double score_of(const char *item)
{
    const char *sp = strrchr(item, ' ');
    return sp ? strtod(sp + 1, NULL) : 0;
}

/* auto's "<method> (<metric>: <candidate> <score>, ...)" as "<method>, by <metric>: " and the
 * candidates best first (the lowest loss or error), as many as fit in the field's lines. */
static void chosen_text(const char *chosen, char *text, size_t len, int width, int max_lines)
{
    char buf[600];
    snprintf(buf, sizeof buf, "%s", chosen);
    char *paren = strchr(buf, '(');
    if (!paren) {
        snprintf(text, len, "%s", buf);
        return;
    }
    *paren = 0; /* buf: the method, without the space before "(" */
    if (paren > buf && paren[-1] == ' ')
        paren[-1] = 0;
    char *rest = paren + 1;
    size_t n = strlen(rest);
    if (n && rest[n - 1] == ')')
        rest[n - 1] = 0;
    char *colon = strstr(rest, ": "), *scores = colon ? colon + 2 : rest;
    if (colon)
        *colon = 0;
    const char *items[64];
    int k = 0;
    for (char *save = NULL, *t = strtok_r(scores, ",", &save); t && k < 64; t = strtok_r(NULL, ",", &save))
        items[k++] = t + strspn(t, " ");
    for (int i = 1; i < k; i++) /* insertion sort: best first, ties in their order */
        for (int j = i; j > 0 && score_of(items[j]) < score_of(items[j - 1]); j--) {
            const char *t = items[j];
            items[j] = items[j - 1], items[j - 1] = t;
        }
    char prefix[700];
    snprintf(prefix, sizeof prefix, "%s, by %s: ", buf, colon ? rest : "score");
    tui_fit_items(text, len, prefix, items, k, ", ", width, max_lines);
}

/* label column, then the text wrapped under it; returns the next row */
static int field(int y, int ymax, const tui_rect *r, const char *label, const char *text, int max_lines)
{
    char lines[6][TUI_WRAP_LINE];
    int w = r->w - 10;
    int n = tui_wrap(text, w, lines, max_lines < 6 ? max_lines : 6, tc_utf8);
    for (int i = 0; i < n && y < ymax; i++, y++) {
        if (i == 0) {
            tc_on(TC_PAIR_DIM, 0);
            tc_put(y, r->x + 1, 8, "%s", label);
            tc_off(TC_PAIR_DIM, 0);
        }
        tc_put(y, r->x + 9, w, "%s", lines[i]);
    }
    return y;
}

void tui_view_plan_draw(const tui_state *s, const tui_rect *r)
{
    char title[64];
    snprintf(title, sizeof title, "layer %d plan", s->layer);
    tc_title(r, title, true);
    if (!s->is_moe[s->layer]) {
        tc_put(r->y + 2, r->x + 2, r->w - 4, "a dense layer: nothing to merge");
        return;
    }
    const tui_layer *p = &s->res[s->layer];
    const tui_layer_data *d = &s->data[s->layer];
    int y = r->y + 1, ymax = r->y + r->h;
    char text[800];
    bool fresh = tui_preview_fresh(s, s->layer);
    bool merges = p->is_auto || sm_merge_method_merges(p->method);

    if (p->is_auto)
        snprintf(text, sizeof text, "auto (M): merge or prune, least loss");
    else
        snprintf(text, sizeof text, "%s (M)", sm_merge_method_name(p->method));
    y = field(y, ymax, r, "method", text, 2);
    if (p->is_auto) {
        if (fresh && d->chosen[0]) {
            int lines = r->h >= 14 ? 4 : 3;
            chosen_text(d->chosen, text, sizeof text, r->w - 10, lines);
            y = field(y, ymax, r, "chose", text, r->h >= 14 ? 6 : 3);
        } else {
            y = field(y, ymax, r, "chose", s->calibrated ? "(previewing...)" : "(after calibration)", 1);
        }
    }
    if (merges) {
        snprintf(text, sizeof text, "%s (r)", sm_router_mode_name(p->router));
        y = field(y, ymax, r, "router", text, 1);
        char rk[3][24];
        for (int j = 0; j < 3; j++)
            sm_rank_format(&p->rank[j], rk[j], sizeof rk[j]);
        snprintf(text, sizeof text, "gate %s %s up %s %s down %s (=)", rk[0], tc_g("\u00b7", "-"), rk[1],
                 tc_g("\u00b7", "-"), rk[2]);
        y = field(y, ymax, r, "ranks", text, 2);
        if (tui_has_group_ranks(s, s->layer)) { /* the groups' own ranks */
            size_t n = 0;
            text[0] = 0;
            for (int c = 0; c < p->k && n < sizeof text - 64; c++)
                for (int j = 0; j < 3; j++)
                    if (tui_group_rank_set(s, s->layer, c, j)) {
                        char rb[24];
                        sm_rank r = tui_group_rank(s, s->layer, c, j);
                        sm_rank_format(&r, rb, sizeof rb);
                        n += (size_t)snprintf(text + n, sizeof text - n, "%sg%d %s %s", n ? ", " : "", c,
                                              matrix_names[j], rb);
                    }
            y = field(y, ymax, r, "", text, 2);
        }
        if (!p->is_auto) {
            y = field(y, ymax, r, "align", p->align ? "on: neurons matched before merging (a)" : "off (a)", 1);
            sm_plan_effective eff;
            sm_plan_effective_settings(&s->plan, tui_entry_c(s, s->layer), &eff);
            y = field(y, ymax, r, "refit", eff.refit ? "down: fitted to the members' outputs (R)" : "none (R)", 1);
        }
    }
    /* what the preview built, when it dropped experts */
    bool pruned = fresh && (d->built_method == SM_MERGE_PRUNE_FREQUENCY || d->built_method == SM_MERGE_PRUNE_OUTPUT ||
                            d->built_method == SM_MERGE_PRUNE_REAP);
    static char item[TUI_MAX_EXPERTS][24];
    const char *items[TUI_MAX_EXPERTS];
    if (pruned) {
        for (int pass = 0; pass < 2; pass++) {
            int n = 0;
            for (int i = 0; i < p->n; i++)
                if ((d->built_slot[i] < 0) == (pass == 1)) {
                    snprintf(item[n], sizeof item[n], "e%d", i);
                    items[n] = item[n], n++;
                }
            tui_fit_items(text, sizeof text, "", items, n, " ", r->w - 10, 2);
            y = field(y, ymax, r, pass ? "drops" : "keeps", n ? text : "none", 2);
        }
    } else if (!p->is_auto && p->method == SM_MERGE_KEEP) {
        y = field(y, ymax, r, "keeps", "every expert, unchanged", 1);
    }
    if (d->have_stats && d->have_saliency) { /* REAP: the most salient first (prune-reap keeps, reap centres) */
        int n = salient_items(d, item, items);
        tui_fit_items(text, sizeof text, "", items, n, "  ", r->w - 10, 2);
        y = field(y, ymax, r, "salient", text, 2);
    }
    if (!p->is_auto && !sm_merge_method_merges(p->method))
        return;
    /* the groups: expert and its routing share */
    if (y < ymax) {
        tc_on(TC_PAIR_DIM, 0);
        tc_put(y++, r->x + 1, r->w - 2, "groups  %d%s: expert, share of tokens", p->k,
               pruned ? " (if merged)" : "");
        tc_off(TC_PAIR_DIM, 0);
    }
    int w = r->w - 7;
    for (int c = 0; c < p->k && y < ymax; c++) {
        int n = 0;
        for (int i = 0; i < p->n; i++)
            if (p->assign[i] == c) {
                char f[16] = "";
                if (d->have_stats)
                    share(f, sizeof f, d->freq[i]);
                snprintf(item[n], sizeof item[n], "e%d %s", i, f);
                items[n] = item[n], n++;
            }
        int room = ymax - y < 8 ? ymax - y : 8;
        char line[2048];
        tui_fit_items(line, sizeof line, "", items, n, "  ", w, room);
        char lines[8][TUI_WRAP_LINE];
        bool last_group_rows = ymax - y == 1 && c + 1 < p->k;
        if (last_group_rows) { /* no room for the rest: say how many are hidden */
            tc_on(TC_PAIR_DIM, 0);
            char more[96];
            snprintf(more, sizeof more, "%s %d more groups: the heatmap (2) shows them all", tc_g("\u2026", "..."), p->k - c);
            if (tui_strwidth(more) > r->w - 4)
                snprintf(more, sizeof more, "%s %d more (2: heatmap)", tc_g("\u2026", "..."), p->k - c);
            tc_put(y++, r->x + 3, r->w - 4, "%s", more);
            tc_off(TC_PAIR_DIM, 0);
            break;
        }
        int nl = tui_wrap(line, w, lines, room, tc_utf8);
        for (int i = 0; i < nl && y < ymax; i++, y++) {
            if (i == 0)
                tc_put(y, r->x + 1, 5, "%4d", c);
            tc_put(y, r->x + 7, w, "%s", lines[i]);
        }
    }
}

void tui_view_plan_detail(const tui_state *s, int y, int x, int w)
{
    const tui_layer *p = &s->res[s->layer];
    int largest = 0, single = 0;
    for (int c = 0; c < p->k; c++) {
        int m = tui_cluster_size(p, c);
        largest = m > largest ? m : largest;
        single += m == 1;
    }
    char rk[3][24];
    for (int j = 0; j < 3; j++)
        sm_rank_format(&p->rank[j], rk[j], sizeof rk[j]);
    char groups[128], ranks[128];
    snprintf(groups, sizeof groups, "%d experts %s %d groups (largest %d, %d alone)", p->n, tc_g("\u2192", "->"), p->k,
             largest, single);
    snprintf(ranks, sizeof ranks, " %s ranks %s %s/%s %s/%s %s", tc_g("\u00b7", "-"), matrix_names[0], rk[0],
             matrix_names[1], rk[1], matrix_names[2], rk[2]);
    /* the ranks only when they fit whole (the plan view above shows them too) */
    tc_put(y, x, w, "%s%s", groups, tui_strwidth(groups) + tui_strwidth(ranks) <= w ? ranks : "");
}
