/* ansi2png: a terminal capture with its colours (tmux capture-pane -e -p) drawn as a PNG, for the
 * workbench's screenshots (tools/screenshots.sh). Built by make, never run by the tests.
 *
 *   tools/ansi2png COLS ROWS IN.ansi OUT.png
 *
 * Each character is one cell of a monospace grid (DejaVu Sans Mono through cairo's toy text API,
 * the cairo src/figures loads); SGR attributes follow xterm: 16 + 216 + 24 indexed colours, 24-bit
 * colours, bold, dim, underline, reverse. tmux writes an attribute only where it changes, so the
 * state carries over from one line to the next. Block elements (▁…█, ▌) are filled rectangles and
 * light box-drawing characters lines, so that bars and frames touch as they do in a terminal. */
#include "config.h"

#include "figures/fig_cairo.h"
#include "util/diag.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FONT_PX = 15, DEFAULT_FG = -1, DEFAULT_BG = -2 };
static const char *progname = "ansi2png";

typedef struct rgb {
    double r, g, b;
} rgb;

typedef struct sgr_state {
    int fg, bg;        /* a palette index, DEFAULT_*, or 0x1000000 + 0xRRGGBB */
    bool bold, dim, underline, reverse;
} sgr_state;

static rgb palette_color(int c)
{
    static const unsigned char base[16][3] = {
        {0, 0, 0},       {205, 49, 49},  {13, 188, 121}, {229, 229, 16},
        {36, 114, 200},  {188, 63, 188}, {17, 168, 205}, {229, 229, 229},
        {102, 102, 102}, {241, 76, 76},  {35, 209, 139}, {245, 245, 67},
        {59, 142, 234},  {214, 112, 214}, {41, 184, 219}, {255, 255, 255},
    };
    unsigned char v[3];
    if (c == DEFAULT_FG)
        v[0] = v[1] = v[2] = 214;
    else if (c == DEFAULT_BG)
        v[0] = 24, v[1] = 24, v[2] = 28;
    else if (c >= 0x1000000)
        v[0] = (c >> 16) & 255, v[1] = (c >> 8) & 255, v[2] = c & 255;
    else if (c < 16)
        memcpy(v, base[c], 3);
    else if (c < 232) { /* the 6x6x6 cube */
        static const unsigned char level[6] = {0, 95, 135, 175, 215, 255};
        v[0] = level[(c - 16) / 36], v[1] = level[(c - 16) / 6 % 6], v[2] = level[(c - 16) % 6];
    } else
        v[0] = v[1] = v[2] = (unsigned char)(8 + 10 * (c - 232));
    return (rgb){v[0] / 255.0, v[1] / 255.0, v[2] / 255.0};
}

/* Apply one CSI ... m sequence's parameters (p: the text between "[" and "m"). */
static void apply_sgr(sgr_state *st, const char *p, size_t len)
{
    int a[32], n = 0;
    char buf[128];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    for (char *s = buf, *tok; n < 32 && (tok = strsep(&s, ";:"));)
        a[n++] = *tok ? atoi(tok) : 0;
    if (!n)
        a[n++] = 0;
    for (int i = 0; i < n; i++) {
        int v = a[i];
        if (v == 0)
            *st = (sgr_state){.fg = DEFAULT_FG, .bg = DEFAULT_BG};
        else if (v == 1)
            st->bold = true;
        else if (v == 2)
            st->dim = true;
        else if (v == 4)
            st->underline = true;
        else if (v == 7)
            st->reverse = true;
        else if (v == 22)
            st->bold = st->dim = false;
        else if (v == 24)
            st->underline = false;
        else if (v == 27)
            st->reverse = false;
        else if (v >= 30 && v <= 37)
            st->fg = v - 30;
        else if (v >= 40 && v <= 47)
            st->bg = v - 40;
        else if (v >= 90 && v <= 97)
            st->fg = v - 90 + 8;
        else if (v >= 100 && v <= 107)
            st->bg = v - 100 + 8;
        else if (v == 39)
            st->fg = DEFAULT_FG;
        else if (v == 49)
            st->bg = DEFAULT_BG;
        else if ((v == 38 || v == 48) && i + 2 < n && a[i + 1] == 5) {
            *(v == 38 ? &st->fg : &st->bg) = a[i + 2] & 255;
            i += 2;
        } else if ((v == 38 || v == 48) && i + 4 < n && a[i + 1] == 2) {
            *(v == 38 ? &st->fg : &st->bg) =
                0x1000000 + ((a[i + 2] & 255) << 16) + ((a[i + 3] & 255) << 8) + (a[i + 4] & 255);
            i += 4;
        }
    }
}

/* One UTF-8 character at s (n bytes available): its length (1 for a stray byte). */
static int utf8_len(const unsigned char *s, size_t n, unsigned *cp)
{
    int len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 1;
    if ((size_t)len > n)
        len = 1;
    *cp = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (int i = 1; i < len; i++)
        *cp = (*cp << 6) | (s[i] & 0x3f);
    return len;
}

typedef struct grid {
    cairo_t *cr;
    double cw, ch, ascent;
} grid;

/* Block elements as rectangles: lower eighths U+2581-2588, left eighths U+2589-258F, upper half
 * U+2580, right half U+2590. false for any other character. */
static bool draw_block(const grid *g, double x, double y, unsigned cp)
{
    double fx = 0, fy = 0, fw = 1, fh = 1;
    if (cp >= 0x2581 && cp <= 0x2588)
        fh = (cp - 0x2580) / 8.0, fy = 1 - fh;
    else if (cp >= 0x2589 && cp <= 0x258f)
        fw = (0x2590 - cp) / 8.0;
    else if (cp == 0x2580)
        fh = 0.5;
    else if (cp == 0x2590)
        fx = 0.5, fw = 0.5;
    else
        return false;
    cairo_rectangle(g->cr, x + fx * g->cw, y + fy * g->ch, fw * g->cw, fh * g->ch);
    cairo_fill(g->cr);
    return true;
}

/* Light box-drawing lines (─ │ ┌ ┐ └ ┘ ├ ┤ ┬ ┴ ┼) through the cell's middle, to its edges, so that
 * frames join without the gaps a font's glyphs leave. false for any other character. */
static bool draw_box(const grid *g, double x, double y, unsigned cp)
{
    enum { UP = 1, DOWN = 2, LEFT = 4, RIGHT = 8 };
    static const struct {
        unsigned cp;
        int arms;
    } box[] = {
        {0x2500, LEFT | RIGHT},      {0x2502, UP | DOWN},         {0x250c, RIGHT | DOWN},
        {0x2510, LEFT | DOWN},       {0x2514, UP | RIGHT},        {0x2518, UP | LEFT},
        {0x251c, UP | DOWN | RIGHT}, {0x2524, UP | DOWN | LEFT},  {0x252c, LEFT | RIGHT | DOWN},
        {0x2534, LEFT | RIGHT | UP}, {0x253c, UP | DOWN | LEFT | RIGHT},
    };
    int arms = 0;
    for (size_t i = 0; i < sizeof box / sizeof box[0]; i++)
        if (box[i].cp == cp)
            arms = box[i].arms;
    if (!arms)
        return false;
    double cx = x + (int)(g->cw / 2) + 0.5, cy = y + (int)(g->ch / 2) + 0.5;
    cairo_set_line_width(g->cr, 1);
    if (arms & (LEFT | RIGHT)) {
        cairo_move_to(g->cr, arms & LEFT ? x : cx, cy);
        cairo_line_to(g->cr, arms & RIGHT ? x + g->cw : cx, cy);
    }
    if (arms & (UP | DOWN)) {
        cairo_move_to(g->cr, cx, arms & UP ? y : cy);
        cairo_line_to(g->cr, cx, arms & DOWN ? y + g->ch : cy);
    }
    cairo_stroke(g->cr);
    return true;
}

static void draw_cell(const grid *g, int col, int row, const sgr_state *st, const char *ch, int chlen, unsigned cp)
{
    rgb fg = palette_color(st->fg), bg = palette_color(st->bg); /* bold is the font's, not brighter */
    if (st->reverse) {
        rgb t = fg;
        fg = bg, bg = t;
    }
    if (st->dim)
        fg.r *= 0.6, fg.g *= 0.6, fg.b *= 0.6;
    double x = col * g->cw, y = row * g->ch;
    cairo_set_source_rgb(g->cr, bg.r, bg.g, bg.b);
    cairo_rectangle(g->cr, x, y, g->cw + 0.5, g->ch + 0.5);
    cairo_fill(g->cr);
    cairo_set_source_rgb(g->cr, fg.r, fg.g, fg.b);
    if (cp != ' ' && !draw_block(g, x, y, cp) && !draw_box(g, x, y, cp)) {
        char text[8];
        memcpy(text, ch, (size_t)chlen);
        text[chlen] = 0;
        cairo_select_font_face(g->cr, "DejaVu Sans Mono", CAIRO_FONT_SLANT_NORMAL,
                               st->bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
        cairo_move_to(g->cr, x, y + g->ascent);
        cairo_show_text(g->cr, text);
    }
    if (st->underline) {
        cairo_rectangle(g->cr, x, y + g->ch - 2, g->cw, 1);
        cairo_fill(g->cr);
    }
}

/* Draw the capture's text (n bytes) into the grid: cols x rows cells, the rest cut. */
static void draw_capture(const grid *g, const char *text, size_t n, int cols, int rows)
{
    sgr_state st = {.fg = DEFAULT_FG, .bg = DEFAULT_BG};
    int row = 0, col = 0;
    for (size_t i = 0; i < n && row < rows;) {
        const unsigned char *s = (const unsigned char *)text + i;
        if (s[0] == '\n') {
            row++, col = 0, i++;
            continue;
        }
        if (s[0] == 0x1b && i + 1 < n && s[1] == '[') {
            size_t j = i + 2;
            while (j < n && (text[j] < 0x40 || text[j] > 0x7e))
                j++;
            if (j < n && text[j] == 'm')
                apply_sgr(&st, text + i + 2, j - i - 2);
            i = j + 1;
            continue;
        }
        unsigned cp;
        int len = utf8_len(s, n - i, &cp);
        if (cp >= 0x20 && col < cols)
            draw_cell(g, col++, row, &st, (const char *)s, len, cp);
        i += (size_t)len;
    }
}

static cairo_status_t write_png(void *closure, const unsigned char *data, unsigned int length)
{
    return fwrite(data, 1, length, closure) == length ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) {
            char *more = realloc(buf, cap *= 2);
            if (!more)
                free(buf);
            buf = more;
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    *n = len;
    return buf;
}

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "%s: %s: %s\n", progname, path, what);
    return 1;
}

int main(int argc, char **argv)
{
    char *end1, *end2;
    long cols = argc == 5 ? strtol(argv[1], &end1, 10) : 0, rows = argc == 5 ? strtol(argv[2], &end2, 10) : 0;
    if (argc != 5 || *end1 || *end2 || cols < 1 || cols > 1000 || rows < 1 || rows > 500) {
        fprintf(stderr, "usage: %s COLS ROWS IN.ansi OUT.png (COLS 1-1000, ROWS 1-500)\n", progname);
        return 2;
    }
    size_t n;
    char *text = read_all(argv[3], &n);
    if (!text)
        return fail("cannot be read", argv[3]);
    if (fig_cairo_load()) {
        free(text);
        return fail(sm_errmsg(), "cairo");
    }
    /* measure the cell on a scratch surface */
    cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *pc = cairo_create(probe);
    cairo_select_font_face(pc, "DejaVu Sans Mono", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(pc, FONT_PX);
    cairo_text_extents_t ex;
    cairo_text_extents(pc, "M", &ex);
    grid g = {.cw = (int)(ex.x_advance + 0.5), .ch = (int)(FONT_PX * 1.25 + 0.5), .ascent = FONT_PX * 0.95};
    cairo_destroy(pc);
    cairo_surface_destroy(probe);

    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)(cols * g.cw), (int)(rows * g.ch));
    g.cr = cairo_create(surf);
    cairo_set_font_size(g.cr, FONT_PX);
    rgb bg = palette_color(DEFAULT_BG);
    cairo_set_source_rgb(g.cr, bg.r, bg.g, bg.b);
    cairo_paint(g.cr);
    draw_capture(&g, text, n, (int)cols, (int)rows);
    free(text);
    cairo_destroy(g.cr);
    cairo_surface_flush(surf);
    int rc = 0;
    FILE *out = fopen(argv[4], "wb");
    if (!out)
        rc = fail("cannot be written", argv[4]);
    else {
        cairo_status_t st = cairo_surface_write_to_png_stream(surf, write_png, out);
        if (fclose(out) || st != CAIRO_STATUS_SUCCESS) {
            rc = fail("cannot be written", argv[4]);
            remove(argv[4]);
        }
    }
    cairo_surface_destroy(surf);
    fig_cairo_release();
    return rc;
}
