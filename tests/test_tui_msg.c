/* test_tui_msg: the workbench's messages without a terminal (issue 19 item 6) — every message
 * goes to the log with its time, the message area wraps instead of cutting, a message clears
 * when its context changes (layer, view, new work) unless the key says something new, the log
 * (L) and the help (?) scroll by pages, values fit narrow columns without reading "0", lists are
 * shortened by whole items with a count of the rest. */
#include "tui/tui_state.h"
#include "testutil.h"
#include "tui_fake.h"

#include <time.h>

static tui_state s; /* large: not on the stack */

static int key(int k)
{
    return tui_key(&s, k);
}

/* Whether every line has at most `width` columns, and joined by spaces they are `text`. */
static bool whole(char (*lines)[TUI_WRAP_LINE], int n, int width, const char *text)
{
    char joined[4096] = "";
    for (int i = 0; i < n; i++) {
        if (tui_strwidth(lines[i]) > width)
            return false;
        strcat(joined, i ? " " : "");
        strcat(joined, lines[i]);
    }
    return !strcmp(joined, text);
}

static void test_log(void)
{
    fake_state(&s, 4, 8);
    long long t0 = (long long)time(NULL);
    tui_say(&s, false, "first %d", 1);
    tui_say(&s, true, "second");
    CHECK(s.n_log == 2 && !strcmp(s.log[0].text, "first 1") && s.log[1].error && !strcmp(s.status, "second") &&
              s.status_error && s.log[0].time >= t0 && s.log[1].time <= (long long)time(NULL),
          "tui_say shows the message and logs it with its time and kind (%d messages)", s.n_log);
    key('M');
    CHECK(s.n_log == 3 && strstr(s.log[2].text, "method") && !strcmp(s.status, s.log[2].text),
          "a key's status line is logged too (%s)", s.status);

    /* context: the layer, the view, new work */
    key('j'); /* layer 0 -> 2 in the plan view, says nothing */
    CHECK(s.layer == 2 && !s.status[0] && !s.status_error && s.n_log == 3,
          "a layer change clears the message; the log keeps it");
    tui_say(&s, true, "a failure of layer 2");
    key('2');
    CHECK(s.view == TUI_VIEW_HEATMAP && !s.status[0] && !s.status_error, "a view change clears it");
    tui_say(&s, false, "something");
    key('P');
    CHECK(!s.status[0], "new work (P) clears it");
    key('1');
    int said = s.n_log;
    key('M');
    CHECK(s.n_log == said + 1 && s.status[0], "a key that says something keeps its own message (%s)", s.status);
    tui_say(&s, false, "kept");
    key('?');
    key('x');
    CHECK(!strcmp(s.status, "kept"), "opening and closing the help keeps the message");

    /* the log view */
    for (int i = 0; i < 60; i++)
        tui_say(&s, false, "message %d of a long session", i);
    s.screen_cols = 80, s.screen_rows = 24;
    CHECK((key('L') & TUI_ACT_REDRAW) && s.dialog == TUI_DIALOG_LOG && s.log_scroll == 0,
          "L opens the log at its end");
    key('k');
    key('k');
    CHECK(s.log_scroll == 2, "k scrolls up a line at a time (%d)", s.log_scroll);
    key('j');
    CHECK(s.log_scroll == 1, "j down");
    key(TUI_KEY_PGUP);
    CHECK(s.log_scroll == 21, "PgUp a page of 20 rows at 80x24 (%d)", s.log_scroll);
    int total = tui_log_lines(&s, 76, 0, NULL, NULL, 0);
    for (int i = 0; i < 20; i++)
        key(TUI_KEY_PGUP);
    CHECK(s.log_scroll == total - 20, "scrolling stops at the first message (%d of %d lines)", s.log_scroll, total);
    key(TUI_KEY_END);
    CHECK(s.log_scroll == 0 && s.dialog == TUI_DIALOG_LOG, "End: back to the newest");
    CHECK(key(TUI_KEY_ESC) == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_NONE, "Esc closes the log");
    key('L');
    CHECK(key('q') == TUI_ACT_REDRAW && s.dialog == TUI_DIALOG_NONE, "q closes the log (and does not quit)");

    char lines[4][TUI_WRAP_LINE];
    bool err[4];
    int n = tui_log_lines(&s, 76, 0, lines, err, 4);
    CHECK(n == total && lines[0][2] == ':' && lines[0][5] == ':' && strstr(lines[0], "first 1") && !err[0] &&
              err[1] && strstr(lines[1], "second"),
          "log lines: HH:MM:SS, the text, errors flagged ('%s')", lines[0]);
    tui_say(&s, false, "%s", "a message long enough to wrap: it goes on and on about the layer, its experts, "
                             "its groups and what the commit wrote to which directory");
    total = tui_log_lines(&s, 40, 0, NULL, NULL, 0);
    n = tui_log_lines(&s, 40, total - 4, lines, NULL, 4);
    bool ok = true;
    for (int i = 0; i < 4; i++)
        ok &= tui_strwidth(lines[i]) <= 40;
    CHECK(ok && !strncmp(lines[3], "         ", 9) && lines[3][9] != ' ', "continuation lines indented under the text");
}

static void test_message_area(void)
{
    char lines[16][TUI_WRAP_LINE];
    const char *msg = "plan saved to /home/someone/experiments/qwen3-30b/submoe-plan.yaml (submoe apply "
                      "/home/someone/experiments/qwen3-30b/submoe-plan.yaml -o DIR runs it)";
    int n = tui_message_lines("short", 80, 23, lines, 8, true);
    CHECK(n == 1 && !strcmp(lines[0], "short"), "a short message: one line beside the keys");
    n = tui_message_lines(msg, 80, 23, lines, 8, true);
    CHECK(n == 2 && whole(lines, n, 78, msg), "a long one wraps whole at 80 columns (%d lines)", n);
    n = tui_message_lines(msg, 60, 23, lines, 8, true);
    CHECK(n >= 3 && whole(lines, n, 58, msg), "and at 60 (%d lines)", n);
    n = tui_message_lines(msg, 200, 41, lines, 8, true);
    CHECK(n == 1, "at 200 columns it fits beside the keys");

    /* the wrap's own cut: whole words and " …" (never "ex…" or "al") */
    n = tui_wrap("hf-expanded needs every original expert mapped, but experts 3 and 7 are not", 30, lines, 2, true);
    CHECK(n == 2 && tui_strwidth(lines[1]) <= 30 && strstr(lines[1], " \u2026") &&
              !strcmp(lines[1], "original expert mapped, but \u2026"),
          "a cut wrap ends in whole words and ' \u2026' ('%s')", lines[1]);
}

static void test_fit(void)
{
    char b[32];
    tui_fmt_fit(0.0131, 6, b, sizeof b);
    CHECK_STR(b, "0.0131", "6 columns: four decimals");
    tui_fmt_fit(0.0131, 5, b, sizeof b);
    CHECK_STR(b, ".0131", "5: without the leading zero");
    tui_fmt_fit(0.0131, 4, b, sizeof b);
    CHECK_STR(b, ".013", "4");
    tui_fmt_fit(0.0021, 4, b, sizeof b);
    CHECK_STR(b, ".002", "4, small");
    tui_fmt_fit(0.00021, 4, b, sizeof b);
    CHECK_STR(b, "2e-4", "4, smaller: an exponent, not 0");
    tui_fmt_fit(7e-8, 6, b, sizeof b);
    CHECK_STR(b, "7e-8", "6, tiny: an exponent, not 0.0000");
    tui_fmt_fit(0, 6, b, sizeof b);
    CHECK_STR(b, "0.0000", "an exact zero is 0.0000");
    tui_fmt_fit(1.5, 4, b, sizeof b);
    CHECK_STR(b, "1.50", "above one");
    tui_fmt_fit(3e-12, 4, b, sizeof b);
    CHECK(strcmp(b, "0") && strlen(b) <= 4, "never a bare 0 (%s)", b);

    const char *items[] = {"e0 .09", "e1 .62", "e3 .32", "e6 .58", "e12 .01", "e17 .20"};
    char out[256];
    int k = tui_fit_items(out, sizeof out, "", items, 6, "  ", 80, 1);
    CHECK(k == 6 && !strstr(out, "more"), "a list that fits is whole (%s)", out);
    k = tui_fit_items(out, sizeof out, "", items, 6, "  ", 24, 1);
    CHECK(k == 2 && !strcmp(out, "e0 .09  e1 .62 (+4 more)"), "a list that does not: whole items and a count (%s)",
          out);

    /* by priority (titles, hint lines): the least important out first, the last of equals first */
    const char *hint[] = {"m move", "n new", "/ jump", "z overview", "PgUp/PgDn page"};
    const int prio[] = {0, 3, 1, 1, 1};
    k = tui_fit_priority(out, sizeof out, hint, prio, 5, "  ", 80);
    CHECK(k == 5 && !strcmp(out, "m move  n new  / jump  z overview  PgUp/PgDn page"), "all that fit stay (%s)", out);
    k = tui_fit_priority(out, sizeof out, hint, prio, 5, "  ", 43);
    CHECK(k == 4 && !strcmp(out, "m move  / jump  z overview  PgUp/PgDn page"), "the least important goes first (%s)",
          out);
    k = tui_fit_priority(out, sizeof out, hint, prio, 5, "  ", 41);
    CHECK(k == 3 && !strcmp(out, "m move  / jump  z overview"), "then the last of equals (%s)", out);
    k = tui_fit_priority(out, sizeof out, hint, prio, 5, "  ", 6);
    CHECK(k == 1 && !strcmp(out, "m move"), "the most important alone (%s)", out);
    k = tui_fit_priority(out, sizeof out, hint, prio, 5, "  ", 5);
    CHECK(k == 0 && !strcmp(out, ""), "nothing rather than a cut item (%s)", out);
}

static void test_help_pages(void)
{
    fake_state(&s, 4, 8);
    s.screen_cols = 80, s.screen_rows = 24;
    int lines80 = tui_help_lines(76, 0, NULL, 0);
    CHECK(lines80 <= 20, "the help fits one page at 80x24 (%d lines)", lines80);
    char out[64][TUI_WRAP_LINE];
    int n = tui_help_lines(56, 0, out, 64);
    bool ok = n > lines80;
    for (int i = 0; i < n && i < 64; i++)
        ok &= tui_strwidth(out[i]) <= 56;
    CHECK(ok, "at 60 columns the help wraps to %d lines within 56 columns", n);
    bool found = false;
    for (int i = 0; i < n && i < 64; i++)
        found |= strstr(out[i], "L the log") != NULL;
    CHECK(found, "the help names L");
    s.screen_cols = 60, s.screen_rows = 16;
    key('?');
    CHECK(s.dialog == TUI_DIALOG_HELP && s.help_page == 0, "? opens the help's first page");
    key(' ');
    CHECK(s.dialog == TUI_DIALOG_HELP && s.help_page == 1, "Space: the next page at 60x16");
    key(TUI_KEY_PGUP);
    CHECK(s.help_page == 0, "PgUp: back");
    int pages = (n + 11) / 12;
    for (int i = 0; i < pages; i++)
        key(TUI_KEY_PGDN);
    CHECK(s.dialog == TUI_DIALOG_NONE, "paging past the last page closes it (%d pages)", pages);
    key('?');
    key('x');
    CHECK(s.dialog == TUI_DIALOG_NONE, "any other key closes it");
}

int main(void)
{
    test_log();
    test_message_area();
    test_fit();
    test_help_pages();
    tui_state_free_data(&s);
    return tu_done();
}
