/* tui_dialog: the workbench's dialogs (quit, commit, replace, save, open, rank) and the help
 * overlay, drawn as a framed box in the middle of the screen over the frame. */
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

void tui_dialog_draw(const tui_state *s, int cols, int rows)
{
    static const char *const fmts[3] = {"submoe (native: any plan, low-rank factors)", "hf (standard layout)",
                                        "hf-expanded (original expert count)"};
    static const char *const mats[3] = {"gate", "up", "down"};
    const char *title = "";
    const char *lines[24];
    char buf[6][640];
    int n = 0, input_row = -1;
    const char *input_label = NULL;
    switch (s->dialog) {
    case TUI_DIALOG_HELP:
        title = "keys";
        for (int i = 0; tui_key_help[i] && n < (int)(sizeof lines / sizeof lines[0]); i++)
            lines[n++] = tui_key_help[i];
        break;
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
    case TUI_DIALOG_EXPORT:
        title = "export this view as figures";
        input_row = n, input_label = "directory";
        lines[n++] = "";
        lines[n++] = "";
        lines[n++] = "Enter writes SVG, PDF, PNG and CSV there   Esc cancels";
        break;
    case TUI_DIALOG_RANK:
        title = "rank";
        if (s->rank_matrix < 0)
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
