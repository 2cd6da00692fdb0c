/* tui_view_compare: view 5, the plan beside another one (O opens it) — per MoE layer what differs
 * in groups, method, router, rank and held-out error ("this→other", the differences bright), and
 * the totals: parameters, and perplexity and accuracy where they were computed. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <stdio.h>
#include <string.h>

static const char *router_short(sm_router_mode m)
{
    const char *n = sm_router_mode_name(m);
    return strncmp(n, "collapse-", 9) ? n : n + 9;
}

/* A layer's ranks: "full", "64/full/full" (gate/up/down), or "mixed" where a group has a rank of
 * its own (entry pl) or, with `short_form`, where the matrices differ. */
static void rank_text(const tui_layer *p, const sm_plan_layer *pl, bool short_form, char *buf, size_t n)
{
    char r[3][24];
    for (int j = 0; j < 3; j++)
        sm_rank_format(&p->rank[j], r[j], sizeof r[j]);
    bool same = !strcmp(r[0], r[1]) && !strcmp(r[1], r[2]);
    if (tui_entry_group_ranks(pl, p) || (!same && short_form))
        snprintf(buf, n, "mixed");
    else if (same)
        snprintf(buf, n, "%s", r[0]);
    else
        snprintf(buf, n, "%s/%s/%s", r[0], r[1], r[2]);
}

static void method_text(const tui_layer *p, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s", p->is_auto ? "auto" : tui_method_short(p->method),
             !p->is_auto && p->align && sm_merge_method_merges(p->method) ? "+a" : "");
}

/* The other plan's value not built yet: "…" while it is being built, "?" once Esc stopped that. */
static const char *pending(const tui_other *o)
{
    return o->stopped ? "?" : tc_g("\u2026", "...");
}

/* One cell: "a" when both say it, else "a→b" bright (dim while b is pending). On the selected row
 * the row's colours stay (a colour pair of its own would end the highlight at the cell), a
 * difference underlined. */
static void cell(int y, int x, int w, bool sel, bool differs, bool wait, const char *a, const char *b)
{
    attr_t at = sel ? (differs ? A_UNDERLINE : 0) : differs && !wait ? A_BOLD : 0;
    int pair = sel ? 0 : differs && !wait ? TC_PAIR_WARN : TC_PAIR_DIM;
    tc_on(pair, at);
    if (differs)
        tc_put(y, x, w - 1, "%s%s%s", a, tc_g("\u2192", ">"), b);
    else
        tc_put(y, x, w - 1, "%s", a);
    tc_off(pair, at);
}

typedef struct {
    int l, groups, method, router, rank;
} columns;

static void draw_row(const tui_state *s, int l, int y, const tui_rect *r, const columns *c)
{
    const tui_other *o = s->other;
    const tui_layer *a = &s->res[l], *b = &o->res[l];
    unsigned d = tui_compare_layer(s, l);
    bool sel = l == s->layer;
    attr_t sel_at = A_BOLD | (s->color ? 0 : A_REVERSE);
    if (sel) { /* the row's colours under every cell (cell() keeps them) */
        tc_on(TC_PAIR_SELECT, sel_at);
        mvhline(y, r->x, ' ', r->w);
    }
    int x = r->x;
    tc_put(y, x, c->l, "%s%3d", d ? "*" : " ", l);
    x += c->l;
    char ta[80], tb[80];
    if (d & TUI_DIFF_GROUPS) {
        int moved = o->grouped[l] ? tui_groups_moved(a, b) : -1;
        snprintf(ta, sizeof ta, "%d", a->k);
        if (moved >= 0 && a->k == b->k)
            snprintf(tb, sizeof tb, "%d, %d moved", b->k, moved);
        else
            snprintf(tb, sizeof tb, "%d", b->k);
    } else {
        snprintf(ta, sizeof ta, "%d%s", a->k, o->grouped[l] ? " same" : "");
    }
    cell(y, x, c->groups, sel, d & TUI_DIFF_GROUPS, false, ta, tb);
    x += c->groups;
    method_text(a, ta, sizeof ta);
    method_text(b, tb, sizeof tb);
    cell(y, x, c->method, sel, d & (TUI_DIFF_METHOD | TUI_DIFF_ALIGN), false, ta, tb);
    x += c->method;
    cell(y, x, c->router, sel, d & TUI_DIFF_ROUTER, false, router_short(a->router), router_short(b->router));
    x += c->router;
    const sm_plan_layer *pa = tui_entry_c(s, l), *pb = tui_other_entry(s, l);
    rank_text(a, pa, false, ta, sizeof ta);
    rank_text(b, pb, false, tb, sizeof tb);
    if (tui_strwidth(ta) + tui_strwidth(tb) + 1 > c->rank - 1) { /* "64/128/full" gives way to "mixed" */
        rank_text(a, pa, true, ta, sizeof ta);
        rank_text(b, pb, true, tb, sizeof tb);
    }
    cell(y, x, c->rank, sel, d & TUI_DIFF_RANK, false, ta, tb);
    x += c->rank;
    /* errors: this plan's preview (~ stale), the other's as the worker built it */
    const tui_layer_data *da = &s->data[l];
    char ea[16] = "-", eb[16];
    snprintf(eb, sizeof eb, "%s", pending(o));
    if (da->have_preview) {
        tui_fmt_fit(da->output_error, 6, ea, sizeof ea);
        strcat(ea, tui_preview_fresh(s, l) ? "" : "~");
    }
    if (o->have_error[l])
        tui_fmt_fit(o->error[l], 6, eb, sizeof eb);
    bool differs = !o->have_error[l] || !da->have_preview || strcmp(ea, eb);
    cell(y, x, r->x + r->w - x, sel, differs, !o->have_error[l], ea, eb);
    if (sel)
        tc_off(TC_PAIR_SELECT, sel_at);
}

/* On the rule above the totals: what "a→b" says, and what the other's pending value means. */
static void draw_legend(const tui_state *s, int y, const tui_rect *r, const int *rows, int n)
{
    bool wait = false;
    for (int i = 0; i < n; i++)
        wait = wait || !s->other->have_error[rows[i]];
    const char *arrow = tc_g("\u2192", "->"), *p = pending(s->other);
    char forms[3][160];
    if (!wait) {
        snprintf(forms[0], sizeof forms[0], " a%sb: this plan%sthe other ", arrow, arrow);
        snprintf(forms[1], sizeof forms[1], " this%sother ", arrow);
    } else if (s->other->stopped) {
        snprintf(forms[0], sizeof forms[0], " a%sb: this plan%sthe other, a%s%s cancelled (Esc): p computes them ",
                 arrow, arrow, arrow, p);
        snprintf(forms[1], sizeof forms[1], " this%sother, %s%s cancelled: p computes ", arrow, arrow, p);
    } else {
        snprintf(forms[0], sizeof forms[0], " a%sb: this plan%sthe other, a%s%s still computing ", arrow, arrow, arrow, p);
        snprintf(forms[1], sizeof forms[1], " this%sother, %s%s computing ", arrow, arrow, p);
    }
    snprintf(forms[2], sizeof forms[2], " this%sother ", arrow);
    int f = 0;
    while (f < 2 && tui_strwidth(forms[f]) > r->w - 4)
        f++;
    tc_on(TC_PAIR_DIM, 0);
    tc_put(y, r->x + 1, r->w - 2, "%s", forms[f]);
    tc_off(TC_PAIR_DIM, 0);
}

/* "5.123" or "not computed", for a figure < 0 when not computed. */
static void figure(char *buf, size_t n, double v, bool stale)
{
    if (v < 0)
        snprintf(buf, n, "not computed");
    else
        snprintf(buf, n, "%.3f%s", v, stale ? " (before edits)" : "");
}

static void draw_totals(const tui_state *s, int y, const tui_rect *r)
{
    char a[32], b[32], o[32], t[48], u[48], v[48], ratio[48] = "";
    tc_fmt_params(a, sizeof a, (double)tui_model_params_after(s));
    tc_fmt_params(b, sizeof b, (double)tui_other_model_params(s));
    tc_fmt_params(o, sizeof o, (double)s->total_params);
    int x = r->x + 1, w = r->w - 2;
    const char *dot = tc_g("\u00b7", "-");
    tc_put(y, x, w, "params      this %s %s other %s (original %s)", a, dot, b, o);
    /* both perplexities are P's, on the same held-out windows: their ratio when both are known */
    bool stale = s->ppl_plan >= 0 && !tui_ppl_fresh(s);
    figure(t, sizeof t, s->ppl_plan, stale);
    figure(v, sizeof v, s->other->ppl, false);
    if (s->ppl_plan > 0 && s->other->ppl > 0)
        snprintf(ratio, sizeof ratio, " %s other/this %.3f", dot, s->other->ppl / s->ppl_plan);
    char line[256];
    snprintf(line, sizeof line, "perplexity  this %s %s other %s%s", t, dot, v, s->other->ppl < 0 ? " (P)" : ratio);
    if (tui_strwidth(line) > w) { /* narrow: the same numbers, "~" for "before edits", "-" not computed */
        if (s->ppl_plan < 0)
            snprintf(t, sizeof t, "-");
        else
            snprintf(t, sizeof t, "%.3f%s", s->ppl_plan, stale ? "~" : "");
        if (s->other->ppl < 0)
            snprintf(v, sizeof v, "- (P)");
        else
            snprintf(v, sizeof v, "%.3f", s->other->ppl);
        snprintf(line, sizeof line, "perplexity  this %s %s other %s%s", t, dot, v, ratio);
    }
    tc_put(y + 1, x, w, "%s", line);
    figure(u, sizeof u, s->acc_plan, s->acc_plan >= 0 && s->acc_gen != tui_plan_gen_sum(s));
    tc_put(y + 2, x, w, "accuracy    this %s (A) %s other not computed", u, dot);
}

/* "{e0 e1} {e2} ..." of a layer's groups. */
static void groups_text(const tui_layer *p, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int c = 0; c < p->k && at + 16 < n; c++) {
        at += (size_t)snprintf(buf + at, n - at, "%s{", c ? " " : "");
        bool first = true;
        for (int i = 0; i < p->n && at + 16 < n; i++)
            if (p->assign[i] == c) {
                at += (size_t)snprintf(buf + at, n - at, "%se%d", first ? "" : " ", i);
                first = false;
            }
        at += (size_t)snprintf(buf + at, n - at, "}");
    }
}

/* Below the rows when there is room: the selected layer's groups in both plans, wrapped. */
static void draw_groups(const tui_state *s, int y, int ymax, const tui_rect *r)
{
    const tui_other *o = s->other;
    int l = s->layer;
    if (ymax - y < 4 || !s->is_moe[l])
        return;
    char text[2048], lines[8][TUI_WRAP_LINE];
    tc_on(TC_PAIR_DIM, 0);
    tc_put(y++, r->x + 1, r->w - 2, "layer %d's groups", l);
    tc_off(TC_PAIR_DIM, 0);
    for (int side = 0; side < 2 && y < ymax; side++) {
        const tui_layer *p = side ? &o->res[l] : &s->res[l];
        if (side && !o->grouped[l])
            snprintf(text, sizeof text, "%d groups, by its clustering (computing)", p->k);
        else
            groups_text(p, text, sizeof text);
        int room = (ymax - y) / (2 - side); /* half for each plan */
        int nl = tui_wrap(text, r->w - 10, lines, room < 8 ? room : 8, tc_utf8);
        for (int i = 0; i < nl && y < ymax; i++, y++) {
            if (i == 0)
                tc_put(y, r->x + 1, 7, "%s", side ? "other" : "this");
            tc_put(y, r->x + 8, r->w - 9, "%s", lines[i]);
        }
    }
}

void tui_view_compare_draw(const tui_state *s, const tui_rect *r)
{
    const tui_other *o = s->other;
    if (!o) {
        tc_title(r, "compare plans", true);
        char lines[6][TUI_WRAP_LINE];
        int nl = tui_wrap("no plan to compare against: O opens one (a plan of this model, e.g. one saved before "
                          "with w); its layers are resolved as this one's.",
                          r->w - 4, lines, r->h - 3 < 6 ? r->h - 3 : 6, tc_utf8);
        for (int i = 0; i < nl; i++)
            tc_put(r->y + 2 + i, r->x + 2, r->w - 4, "%s", lines[i]);
        return;
    }
    int rows[TUI_MAX_LAYERS], n = 0, differ = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->is_moe[l]) {
            rows[n++] = l;
            differ += tui_compare_layer(s, l) != 0;
        }
    char title[600], path[512], counts[64];
    snprintf(counts, sizeof counts, " (%d of %d layers differ)", differ, n);
    /* the path shortened to what the title rule leaves: "─ compare: this plan → " and the counts */
    tui_short_path(o->path, r->w - 26 - tui_strwidth(counts), path, sizeof path, s->utf8);
    snprintf(title, sizeof title, "compare: this plan %s %s%s", tc_g("\u2192", "->"), path, counts);
    tc_title(r, title, true);
    bool wide = r->w >= 110;
    /* the method's column holds the longest change whole: "freq-avg+a→sub-whit+a" */
    columns c = wide ? (columns){5, 20, 24, 18, 20} : (columns){5, 13, 22, 12, 11};
    /* narrow (60 columns): the router's column, then the rank's, give way to the error's
     * ("0.0131→0.1639~"); a layer that differs in them still has its "*" and the detail line */
    enum { ERROR_W = 14 };
    if (c.l + c.groups + c.method + c.router + c.rank + ERROR_W > r->w)
        c.router = 0;
    if (c.l + c.groups + c.method + c.router + c.rank + ERROR_W > r->w)
        c.rank = 0;
    int avail = r->h - 2 - 4; /* title, header; a rule and three lines of totals */
    int first = 0, cur = 0;
    for (int i = 0; i < n; i++)
        if (rows[i] == s->layer)
            cur = i;
    if (n > avail && avail > 0) {
        first = cur - avail / 2;
        first = first < 0 ? 0 : first > n - avail ? n - avail : first;
    }
    tc_on(TC_PAIR_DIM, 0);
    int x = r->x;
    tc_put(r->y + 1, x, c.l, "    L");
    x += c.l;
    tc_put(r->y + 1, x + 1, c.groups, "groups");
    x += c.groups;
    tc_put(r->y + 1, x, c.method, "method");
    x += c.method;
    tc_put(r->y + 1, x, c.router, "router");
    x += c.router;
    tc_put(r->y + 1, x, c.rank, "rank");
    x += c.rank;
    tc_put(r->y + 1, x, r->x + r->w - x, "error");
    tc_off(TC_PAIR_DIM, 0);
    int y = r->y + 2;
    for (int i = first; i < n && y < r->y + 2 + avail; i++, y++)
        draw_row(s, rows[i], y, r, &c);
    int ty = r->y + r->h - 3;
    draw_groups(s, y + 1, ty - 1, r);
    tc_hrule(ty - 1, r->x, r->w);
    draw_legend(s, ty - 1, r, rows, n);
    draw_totals(s, ty, r);
}

void tui_view_compare_detail(const tui_state *s, int y, int x, int w)
{
    if (!s->other) {
        tc_put(y, x, w, "O opens a plan to compare against");
        return;
    }
    unsigned d = tui_compare_layer(s, s->layer);
    tc_put(y, x, w, "layer %d: %s%s%s%s%s%s", s->layer, d ? "differs in" : "the same in both plans",
           d & TUI_DIFF_GROUPS ? " groups" : "", d & TUI_DIFF_METHOD ? " method" : "", d & TUI_DIFF_ALIGN ? " alignment" : "",
           d & TUI_DIFF_ROUTER ? " router" : "", d & TUI_DIFF_RANK ? " rank" : "");
}
