/* tui_layout: where everything goes on the screen, as pure functions of sizes and state (see
 * tui_state.h), so that they are tested without a terminal. */
#include "tui/tui_state.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

tui_layout tui_layout_compute(int cols, int rows)
{
    tui_layout L;
    memset(&L, 0, sizeof L);
    L.too_small = cols < TUI_MIN_COLS || rows < TUI_MIN_ROWS;
    if (L.too_small)
        return L;
    L.header = (tui_rect){0, 0, 2, cols};
    L.status = (tui_rect){rows - 1, 0, 1, cols};
    int dh = rows >= 30 ? 6 : rows >= 20 ? 5 : 4;
    int body = rows - 2 - dh - 1;
    /* The layer list: 30 columns hold layer, experts, method and error; from 110 columns it
     * also shows the saving and the router. The rest goes to the heatmap / spectrum / plan. */
    int left = cols >= 110 ? 44 : 30;
    if (left > cols * 2 / 5)
        left = cols * 2 / 5;
    L.wide = left >= 44;
    L.layers = (tui_rect){2, 0, body, left};
    L.main = (tui_rect){2, left, body, cols - left};
    L.detail = (tui_rect){2 + body, 0, dh, cols};
    return L;
}

static int digits(int v)
{
    int d = 1;
    while (v >= 10)
        v /= 10, d++;
    return d;
}

/* How many columns from col0 fit in `avail` columns with cell width cw, group boundaries
 * taking one column each (the drawing walks the same way). */
static int fit_from(const tui_layer *p, const int *order, int col0, int cw, int avail)
{
    int x = 0, c = col0;
    for (; c < p->n; c++) {
        int sep = c > col0 && p->assign[order[c]] != p->assign[order[c - 1]];
        if (x + sep + cw > avail)
            break;
        x += sep + cw;
    }
    return c - col0;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The grid; `one`: cells one character wide and tall (the overview). */
static tui_heat_geom geometry(const tui_layer *p, int ci, int cj, int w, int h, bool one)
{
    tui_heat_geom g;
    memset(&g, 0, sizeof g);
    int n = p->n, seps = p->k > 0 ? p->k - 1 : 0, d = digits(n > 0 ? n - 1 : 0);
    if (n <= 0 || w < 4 || h < 2)
        return g;
    g.label_w = d + 1;
    int avail = w - g.label_w;
    int order[TUI_MAX_EXPERTS];
    tui_cluster_order(p, order);
    g.cw = 0;
    g.ch = 1;
    int cwmax = n + seps <= avail ? (avail - seps) / n : 0;
    if (cwmax > (one ? 1 : 8))
        cwmax = one ? 1 : 8;
    if (cwmax) {
        /* everything fits across: cells as large as the panel allows, about square (a cell of
         * ch rows is 2·ch columns wide; one-row cells up to 4) */
        int avail_h = h - 1; /* one row of labels */
        for (int ch = 4; ch >= 2; ch--)
            if (n * ch + seps <= avail_h && 2 * ch <= cwmax) {
                g.ch = ch;
                break;
            }
        g.cw = g.ch == 1 ? (cwmax < 4 ? cwmax : 4) : 2 * g.ch;
        g.col0 = 0;
        g.ncols = n;
    } else { /* scroll: cells two wide, the cursor's column near the middle */
        g.cw = avail >= 2 && !one ? 2 : 1;
        int v = avail / (g.cw + 1); /* columns that fit whatever the boundaries */
        v = v < 1 ? 1 : v;
        g.col0 = clampi(cj - v / 2, 0, n - v > 0 ? n - v : 0);
        g.ncols = fit_from(p, order, g.col0, g.cw, avail);
        if (g.ncols < 1)
            g.ncols = 1;
    }
    g.label_rows = 1; /* horizontal numbers, as many as fit (tui_view_heatmap.c) */
    if (g.label_rows >= h)
        g.label_rows = 0;
    int avail_h = h - g.label_rows;
    if (n * g.ch + seps <= avail_h) {
        g.sep_rows = seps > 0;
        g.row0 = 0;
        g.nrows = n;
    } else if (n <= avail_h) {
        g.ch = 1; /* (tall cells were only chosen when the boundary rows fit too) */
        g.row0 = 0;
        g.nrows = n;
    } else {
        g.nrows = avail_h > 0 ? avail_h : 0;
        g.row0 = clampi(ci - g.nrows / 2, 0, n - g.nrows);
    }
    g.scrolled = g.nrows < n || g.ncols < n;
    return g;
}

tui_heat_geom tui_heat_geometry(const tui_layer *p, int ci, int cj, int w, int h)
{
    return geometry(p, ci, cj, w, h, false);
}

tui_heat_geom tui_heat_view_geometry(const tui_state *s, int w, int h, tui_layer *units, int *uci, int *ucj)
{
    const tui_layer *p = &s->res[s->layer];
    *units = *p;
    *uci = s->ci, *ucj = s->cj;
    if (!s->heat_overview)
        return geometry(p, s->ci, s->cj, w, h, false);
    int n = p->n, d = digits(n > 0 ? n - 1 : 0), avail = w - d - 1;
    tui_heat_geom g;
    if (n + p->k - 1 <= avail) { /* one column per expert, with the group boundaries */
        g = geometry(p, s->ci, s->cj, w, h, true);
    } else if (n <= avail) { /* one column per expert, boundaries left out */
        memset(units->assign, 0, sizeof units->assign);
        units->k = 1;
        g = geometry(units, s->ci, s->cj, w, h, true);
    } else { /* one column per group */
        int order[TUI_MAX_EXPERTS];
        tui_cluster_order(p, order);
        *uci = p->assign[order[s->ci]], *ucj = p->assign[order[s->cj]];
        memset(units->assign, 0, sizeof units->assign);
        units->n = p->k, units->k = 1;
        g = geometry(units, *uci, *ucj, w, h, true);
        g.by_group = true;
    }
    g.overview = true;
    return g;
}

int tui_shade(double v, double lo, double hi, int levels)
{
    if (!(hi > lo))
        return levels - 1;
    double t = (v - lo) / (hi - lo);
    int i = (int)(t * levels);
    return i < 0 ? 0 : i >= levels ? levels - 1 : i;
}

const char *tui_method_short(sm_merge_method m)
{
    static const char *const names[SM_MERGE_METHOD_COUNT] = {"submoe", "sub-whit", "freq-avg", "average",
                                                              "prune-f", "prune-o", "keep",
                                                              "prune-r"};
    return (int)m >= 0 && m < SM_MERGE_METHOD_COUNT ? names[m] : "?";
}

int tui_strwidth(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

size_t tui_bytes_for(const char *s, int cols)
{
    size_t i = 0;
    int w = 0;
    while (s[i]) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (w == cols)
                break;
            w++;
        }
        i++;
    }
    return i;
}

int tui_wrap(const char *text, int width, char out[][TUI_WRAP_LINE], int max_lines, bool utf8)
{
    if (width < 1 || max_lines < 1)
        return 0;
    if (width > TUI_WRAP_LINE / 4 - 1)
        width = TUI_WRAP_LINE / 4 - 1; /* every column fits even as a 4-byte code point */
    int n = 0;
    const char *s = text;
    while (*s == ' ')
        s++;
    while (*s && n < max_lines) {
        size_t take;
        if (tui_strwidth(s) <= width) {
            take = strlen(s);
        } else {
            take = tui_bytes_for(s, width);
            /* break after the last space that fits, if there is one, else after a '/' (a path) */
            size_t sp = take;
            while (sp > 0 && s[sp] != ' ')
                sp--;
            size_t sl = take - 1;
            while (sl > 0 && s[sl] != '/')
                sl--;
            if (sp > 0)
                take = sp;
            else if (sl > 0)
                take = sl + 1;
        }
        memcpy(out[n], s, take);
        out[n][take] = 0;
        while (take > 0 && out[n][take - 1] == ' ')
            out[n][--take] = 0;
        s += take;
        while (*s == ' ')
            s++;
        n++;
        if (*s && n == max_lines) { /* cut: the last line ends in whole words, then " …" */
            const char *ell = utf8 ? " \u2026" : " ...";
            int ew = utf8 ? 2 : 4;
            char *last = out[n - 1];
            while (tui_strwidth(last) + ew > width) {
                char *sp = strrchr(last, ' ');
                if (!sp) { /* one word wider than the line: keep what fits */
                    last[tui_bytes_for(last, width - ew > 0 ? width - ew : 0)] = 0;
                    break;
                }
                *sp = 0;
            }
            if (tui_strwidth(last) + ew <= width)
                strcat(last, ell);
        }
    }
    return n;
}

void tui_short_path(const char *path, int width, char *out, size_t n, bool utf8)
{
    if (n == 0)
        return;
    int w = tui_strwidth(path);
    if (w <= width || width < 4) {
        snprintf(out, n, "%s", path);
        return;
    }
    const char *ell = utf8 ? "\u2026" : "...";
    int ew = utf8 ? 1 : 3;
    /* the last width − ew columns, starting at a '/' when one is near */
    const char *tail = path + tui_bytes_for(path, w - (width - ew));
    const char *slash = strchr(tail, '/');
    if (slash && tui_strwidth(slash) >= (width - ew) / 2)
        tail = slash;
    snprintf(out, n, "%s%s", ell, tail);
}

int tui_message_lines(const char *msg, int cols, int keys_w, char out[][TUI_WRAP_LINE], int max_lines, bool utf8)
{
    if (max_lines < 1)
        return 0;
    if (tui_strwidth(msg) <= cols - keys_w - 1) {
        snprintf(out[0], TUI_WRAP_LINE, "%s", msg);
        return 1;
    }
    return tui_wrap(msg, cols - 2, out, max_lines, utf8);
}

void tui_fmt_fit(double v, int width, char *out, size_t n)
{
    static const char *const fixed[] = {"%.4f", "%.3f", "%.2f"};
    char t[64];
    for (int i = 0; i < 3; i++) {
        snprintf(t, sizeof t, fixed[i], v);
        /* only while it still shows a non-zero digit of a non-zero value */
        if ((int)strlen(t) <= width && (v == 0 || strpbrk(t, "123456789"))) {
            snprintf(out, n, "%s", t);
            return;
        }
        if (v > 0 && v < 1 && t[0] == '0' && (int)strlen(t) - 1 <= width && strpbrk(t, "123456789")) {
            snprintf(out, n, "%s", t + 1); /* ".153" */
            return;
        }
    }
    if (v > 0 && v < 1e-1) { /* small: one digit and an exponent ("2e-3") */
        snprintf(t, sizeof t, "%.0e", v);
        char *e = strchr(t, 'e'); /* "2e-03" -> "2e-3" */
        if (e && e[1] == '-' && e[2] == '0')
            memmove(e + 2, e + 3, strlen(e + 3) + 1);
        if ((int)strlen(t) <= width) {
            snprintf(out, n, "%s", t);
            return;
        }
        snprintf(out, n, "%s", width >= 5 ? "<1e-4" : "~0");
        return;
    }
    snprintf(t, sizeof t, "%.0f", v);
    snprintf(out, n, "%s", (int)strlen(t) <= width ? t : "big");
}

int tui_log_lines(const tui_state *s, int width, int first, char (*out)[TUI_WRAP_LINE], bool *is_error,
                  int max_lines)
{
    enum { STAMP = 9 }; /* "HH:MM:SS " */
    int total = 0;
    for (int m = 0; m < s->n_log; m++) {
        char lines[64][TUI_WRAP_LINE];
        int nl = tui_wrap(s->log[m].text, width - STAMP > 8 ? width - STAMP : 8, lines, 64, s->utf8);
        for (int i = 0; i < nl; i++, total++) {
            int at = total - first;
            if (at < 0 || at >= max_lines || !out)
                continue;
            char stamp[16] = "";
            if (i == 0) {
                time_t t = (time_t)s->log[m].time;
                struct tm tm;
                localtime_r(&t, &tm);
                strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
            }
            snprintf(out[at], TUI_WRAP_LINE, "%-*s%s", STAMP, stamp, lines[i]);
            if (is_error)
                is_error[at] = s->log[m].error;
        }
    }
    return total;
}

/* Whether text wraps into at most max_lines lines of width columns, no word cut. */
static bool wraps_within(const char *text, int width, int max_lines)
{
    static _Thread_local char lines[64][TUI_WRAP_LINE];
    if (max_lines > 63)
        max_lines = 63;
    return tui_wrap(text, width, lines, max_lines + 1, true) <= max_lines;
}

int tui_fit_items(char *out, size_t len, const char *prefix, const char *const *items, int n, const char *sep,
                  int width, int max_lines)
{
    for (int k = n; k >= 0; k--) {
        size_t at = (size_t)snprintf(out, len, "%s", prefix);
        for (int i = 0; i < k && at < len; i++)
            at += (size_t)snprintf(out + at, len - at, "%s%s", i ? sep : "", items[i]);
        if (k < n && at < len)
            at += (size_t)snprintf(out + at, len - at, "%s(+%d more)", k ? " " : "", n - k);
        if (at < len && wraps_within(out, width, max_lines))
            return k;
    }
    return 0; /* not even the count fits: it is left to the wrap */
}

int tui_fit_priority(char *out, size_t len, const char *const *items, const int *prio, int n, const char *sep,
                     int width)
{
    bool keep[64];
    n = n < 64 ? n : 64;
    for (int i = 0; i < n; i++)
        keep[i] = true;
    for (int kept = n;; kept--) {
        size_t at = 0;
        out[0] = 0;
        for (int i = 0, first = 1; i < n && at < len; i++)
            if (keep[i]) {
                at += (size_t)snprintf(out + at, len - at, "%s%s", first ? "" : sep, items[i]);
                first = 0;
            }
        if (at < len && tui_strwidth(out) <= width)
            return kept;
        if (kept == 0)
            return 0;
        int drop = -1; /* the least important item left, the last of equals */
        for (int i = 0; i < n; i++)
            if (keep[i] && (drop < 0 || prio[i] >= prio[drop]))
                drop = i;
        keep[drop] = false;
    }
}
