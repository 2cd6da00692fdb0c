/* tui_dialog: the workbench's dialogs (quit, commit, replace, save, open, rank), drawn as a framed
 * box in the middle of the screen over the frame, and the full-screen help and message log. */
#include "tui/tui_curses.h"
#include "tui/tui_views.h"

#include <stdio.h>
#include <string.h>

static void frame(int y0, int x0, int h, int w, const char *title)
{
    tc_on(TC_PAIR_TITLE, A_BOLD);
    for (int y = y0; y < y0 + h; y++) {
        mvhline(y, x0, ' ', w);
        if (y == y0 || y == y0 + h - 1) {
            tc_hrule(y, x0 + 1, w - 2);
            mvaddstr(y, x0, y == y0 ? tc_g("\u250c", "+") : tc_g("\u2514", "+"));
            mvaddstr(y, x0 + w - 1, y == y0 ? tc_g("\u2510", "+") : tc_g("\u2518", "+"));
        } else {
            mvaddstr(y, x0, tc_g("\u2502", "|"));
            mvaddstr(y, x0 + w - 1, tc_g("\u2502", "|"));
        }
    }
    if (title && *title)
        tc_put(y0, x0 + 2, w - 4, " %s ", title);
    tc_off(TC_PAIR_TITLE, A_BOLD);
}

/* The text field: its label, then the tail of the text when it is too long, and a cursor. */
static void field(int y, int x, int w, const char *label, const char *text)
{
    int lw = tc_put(y, x, w, "%s ", label);
    int room = w - lw - 1, tw = tui_strwidth(text);
    const char *t = text;
    while (tw > room && *t) { /* keep the end visible */
        t++;
        while (((unsigned char)*t & 0xC0) == 0x80)
            t++;
        tw--;
    }
    tc_on(0, A_UNDERLINE | A_BOLD);
    int n = tc_put(y, x + lw, room, "%s", t);
    tc_off(0, A_UNDERLINE | A_BOLD);
    tc_on(0, A_REVERSE);
    mvaddstr(y, x + lw + n, " ");
    tc_off(0, A_REVERSE);
}

/* A full-screen overlay of `n` text lines (the help's page, the log's window) with its footer. */
static void overlay_box(int cols, int rows, const char *title, char (*lines)[TUI_WRAP_LINE], const bool *is_error, int n,
                    const char *footer)
{
    int w = cols, h = rows;
    frame(0, 0, h, w, title);
    for (int i = 0; i < n && i < h - 3; i++) {
        if (is_error && is_error[i])
            tc_on(TC_PAIR_ERROR, A_BOLD);
        tc_put(1 + i, 2, w - 4, "%s", lines[i]);
        if (is_error && is_error[i])
            tc_off(TC_PAIR_ERROR, A_BOLD);
    }
    tc_on(TC_PAIR_DIM, 0);
    tc_put(h - 2, 2, w - 4, "%s", footer);
    tc_off(TC_PAIR_DIM, 0);
}

/* The help, a page at a time when it does not fit (tui_keys.c's help_key turns the pages). */
static void help_draw(const tui_state *s, int cols, int rows)
{
    int per = rows - 4 > 1 ? rows - 4 : 1;
    if (per > 128)
        per = 128;
    int total = tui_help_lines(cols - 4, 0, NULL, 0);
    int pages = (total + per - 1) / per;
    int page = s->help_page < pages ? s->help_page : pages - 1;
    static char lines[128][TUI_WRAP_LINE];
    int n = tui_help_lines(cols - 4, page * per, lines, per) - page * per;
    n = n < per ? n : per;
    char title[64];
    if (pages > 1)
        snprintf(title, sizeof title, "keys, page %d of %d", page + 1, pages);
    else
        snprintf(title, sizeof title, "keys");
    overlay_box(cols, rows, title, lines, NULL, n,
                page + 1 < pages ? (cols >= 56 ? "Space/PgDn: next page  PgUp: back  other keys close"
                                               : "Space: next page  other keys close")
                                 : "any key closes this help");
}

/* The log: the newest messages at the bottom, log_scroll lines up from there. */
static void log_draw(const tui_state *s, int cols, int rows)
{
    int per = rows - 4 > 1 ? rows - 4 : 1;
    if (per > 128)
        per = 128;
    int total = tui_log_lines(s, cols - 4, 0, NULL, NULL, 0);
    int scroll = s->log_scroll < total - per ? s->log_scroll : total - per;
    int first = total - per - (scroll > 0 ? scroll : 0);
    first = first < 0 ? 0 : first;
    static char lines[128][TUI_WRAP_LINE];
    bool err[128] = {false};
    int n = tui_log_lines(s, cols - 4, first, lines, err, per) - first;
    n = n < per ? n : per;
    char title[64];
    snprintf(title, sizeof title, "messages: %d, lines %d-%d of %d", s->n_log, total ? first + 1 : 0, first + n, total);
    if (!s->n_log)
        snprintf(lines[n++], TUI_WRAP_LINE, "(no messages yet)");
    overlay_box(cols, rows, title, lines, err, n,
                cols >= 64 ? "j/k line  PgUp/PgDn page  g/G start/end  Esc, q or L closes"
                           : "j/k  PgUp/PgDn  g/G  Esc closes");
}

void tui_dialog_draw(const tui_state *s, int cols, int rows)
{
    if (s->dialog == TUI_DIALOG_HELP) {
        help_draw(s, cols, rows);
        return;
    }
    if (s->dialog == TUI_DIALOG_LOG) {
        log_draw(s, cols, rows);
        return;
    }
    static const char *const fmts[3] = {"submoe (native: any plan, low-rank factors)", "hf (standard layout)",
                                        "hf-expanded (original expert count)"};
    static const char *const mats[3] = {"gate", "up", "down"};
    const char *title = "";
    const char *lines[24];
    char buf[6][640];
    int n = 0, input_row = -1;
    const char *input_label = NULL;
    switch (s->dialog) {
    case TUI_DIALOG_QUIT:
        title = "quit";
        lines[n++] = "The plan has unsaved edits.";
        lines[n++] = "Quit and discard them? (y/n)";
        break;
    case TUI_DIALOG_DISCARD:
        title = "open a plan";
        lines[n++] = "The plan has unsaved edits.";
        snprintf(buf[0], sizeof buf[0], "Discard them and open %.500s? (y/n)", s->input);
        lines[n++] = buf[0];
        break;
    case TUI_DIALOG_OVERWRITE:
        title = "replace?";
        snprintf(buf[0], sizeof buf[0], "%.500s already exists.", s->commit_dir);
        lines[n++] = buf[0];
        lines[n++] = "Replace it with the merged model? (y/n)";
        break;
    case TUI_DIALOG_COMMIT:
        title = "commit: write the merged model";
        snprintf(buf[0], sizeof buf[0], "format     %s", fmts[s->commit_format % 3]);
        lines[n++] = buf[0];
        input_row = n, input_label = "directory ";
        lines[n++] = "";
        lines[n++] = "";
        lines[n++] = "Enter writes   Tab changes the format   Esc cancels";
        break;
    case TUI_DIALOG_SAVE:
        title = "save the plan (YAML)";
        input_row = n, input_label = "file";
        lines[n++] = "";
        lines[n++] = "";
        lines[n++] = "Enter saves   Esc cancels   (submoe apply FILE -o DIR runs it)";
        break;
    case TUI_DIALOG_OPEN:
        title = "open a plan";
        input_row = n, input_label = "file";
        lines[n++] = "";
        lines[n++] = "";
        lines[n++] = "Enter opens   Esc cancels";
        break;
    case TUI_DIALOG_COMPARE:
        title = "compare with a plan";
        input_row = n, input_label = "file";
        lines[n++] = "";
        lines[n++] = "";
        lines[n++] = "Enter opens it beside this plan (view 5)   Esc cancels";
        break;
    case TUI_DIALOG_EXPORT:
        title = "export this view as figures";
        input_row = n, input_label = "directory";
        lines[n++] = "";
        lines[n++] = "";
        lines[n++] = "Enter writes SVG, PDF, PNG and CSV there   Esc cancels";
        break;
    case TUI_DIALOG_RANK:
        title = "rank";
        if (s->rank_matrix == TUI_RANK_EVERY_LAYER)
            snprintf(buf[0], sizeof buf[0], "Rank of gate, up and down in every group of every %slayer:",
                     tui_any_marked(s) ? "marked " : "");
        else if (s->rank_matrix < 0)
            snprintf(buf[0], sizeof buf[0], "Rank of gate, up and down in every group of layer %d:", s->layer);
        else
            snprintf(buf[0], sizeof buf[0], "Rank of %s in group %d of layer %d:", mats[s->rank_matrix % 3],
                     s->spec_cluster, s->layer);
        lines[n++] = buf[0];
        input_row = n, input_label = "rank";
        lines[n++] = "";
        lines[n++] = "full, a count (64), or a fraction (0.25) of the largest rank";
        lines[n++] = "Enter sets   Esc cancels";
        break;
    case TUI_DIALOG_EXPERT:
        title = "jump to an expert";
        snprintf(buf[0], sizeof buf[0], "Expert of layer %d (0..%d):", s->layer, s->res[s->layer].n - 1);
        lines[n++] = buf[0];
        input_row = n, input_label = "expert";
        lines[n++] = "";
        lines[n++] = "Enter jumps   Esc cancels";
        break;
    default:
        return;
    }
    int w = 0;
    for (int i = 0; i < n; i++) {
        int lw = tui_strwidth(lines[i]);
        w = lw > w ? lw : w;
    }
    w += 4;
    if (input_row >= 0 && w < 64)
        w = 64;
    if (w > cols - 2)
        w = cols - 2;
    int h = n + 2 > rows ? rows : n + 2;
    int y0 = (rows - h) / 2, x0 = (cols - w) / 2;
    frame(y0, x0, h, w, title);
    for (int i = 0; i < n && i + 1 < h - 1; i++) {
        if (i == input_row)
            field(y0 + 1 + i, x0 + 2, w - 4, input_label, s->input);
        else
            tc_put(y0 + 1 + i, x0 + 2, w - 4, "%s", lines[i]);
    }
}
