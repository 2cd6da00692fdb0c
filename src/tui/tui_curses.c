/* tui_curses: the drawing helpers of tui_curses.h, below the frame (tui_draw.c) and the views. */
#include "tui/tui_curses.h"

#include <stdarg.h>
#include <stdio.h>

bool tc_utf8 = true, tc_color = true;

static const char *const mono_utf8[TC_MONO_RAMP] = {" ", "\u2591", "\u2591", "\u2592", "\u2592", "\u2593", "\u2593", "\u2588"};
static const char *const mono_ascii[TC_MONO_RAMP] = {" ", ".", ":", "-", "=", "+", "#", "@"};

const char *tc_mono_shade(int i)
{
    i = i < 0 ? 0 : i >= TC_MONO_RAMP ? TC_MONO_RAMP - 1 : i;
    return tc_utf8 ? mono_utf8[i] : mono_ascii[i];
}

void tc_on(int pair, attr_t attrs)
{
    attron(attrs | (tc_color && pair ? COLOR_PAIR(pair) : 0));
}

void tc_off(int pair, attr_t attrs)
{
    attroff(attrs | (tc_color && pair ? COLOR_PAIR(pair) : 0));
}

int tc_put(int y, int x, int maxw, const char *fmt, ...)
{
    if (maxw <= 0)
        return 0;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* cut at maxw display columns, never inside a UTF-8 sequence */
    size_t i = tui_bytes_for(buf, maxw);
    int w = tui_strwidth(buf) < maxw ? tui_strwidth(buf) : maxw;
    mvaddnstr(y, x, buf, (int)i);
    return w;
}

void tc_hrule(int y, int x, int w)
{
    for (int i = 0; i < w; i++)
        mvaddstr(y, x + i, tc_g("\u2500", "-"));
}

void tc_title(const tui_rect *r, const char *title, bool active)
{
    if (r->h < 1 || r->w < 4)
        return;
    attr_t a = active ? A_BOLD : 0;
    tc_on(active ? TC_PAIR_TITLE : TC_PAIR_DIM, a);
    tc_hrule(r->y, r->x, r->w);
    tc_put(r->y, r->x + 1, r->w - 2, " %s ", title);
    tc_off(active ? TC_PAIR_TITLE : TC_PAIR_DIM, a);
}

void tc_fmt_params(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fB", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else
        snprintf(buf, n, "%.0fk", v / 1e3);
}
