/* tui_prompt: the keys of the workbench's dialogs: typed paths and values (a rank or an expert
 * refused on the spot when out of range) and the yes/no questions. The help's and the log's
 * pages are tui_keys.c's (they read the help text beside its bindings). */
#include "tui/tui_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tui_prompt_open(tui_state *s, tui_dialog d, const char *initial)
{
    s->dialog = d;
    snprintf(s->input, sizeof s->input, "%s", initial);
}

/* Text field editing shared by the dialogs that ask for a path or a value. Returns true when the
 * key was an edit. */
static bool edit_input(tui_state *s, int key)
{
    size_t n = strlen(s->input);
    if (key == TUI_KEY_BACKSPACE || key == 127 || key == 8) {
        while (n > 0 && ((unsigned char)s->input[n - 1] & 0xC0) == 0x80) /* a whole UTF-8 character */
            n--;
        if (n)
            s->input[n - 1] = 0;
        return true;
    }
    if (key == 21) { /* Ctrl-U: clear */
        s->input[0] = 0;
        return true;
    }
    if (key >= 32 && key < 256 && key != 127 && n + 1 < sizeof s->input) {
        s->input[n] = (char)key;
        s->input[n + 1] = 0;
        return true;
    }
    return false;
}

static const char *const matrix_names[3] = {"gate", "up", "down"};

/* The largest rank the rank prompt accepts: the shown group's matrix (rank_matrix ≥ 0), else the
 * smallest over the layer's groups and matrices (the rank is set for all of them). */
static int64_t rank_prompt_max(const tui_state *s)
{
    if (s->rank_matrix == TUI_RANK_EVERY_LAYER)
        return tui_apply_rank_max(s);
    const tui_layer *p = &s->res[s->layer];
    int64_t max = -1;
    for (int c = 0; c < p->k; c++)
        for (int j = 0; j < 3; j++)
            if ((s->rank_matrix < 0 || (s->rank_matrix == j && c == s->spec_cluster))) {
                int64_t m = tui_rank_max(s, j, tui_cluster_size(p, c));
                max = max < 0 || m < max ? m : max;
            }
    return max < 1 ? 1 : max;
}

/* A rank typed so far: refused on the spot when it is a count outside [1, max]. */
static bool rank_input_ok(tui_state *s, const char *text, bool whole)
{
    int64_t max = rank_prompt_max(s), v = 0;
    const char *t = text;
    for (; *t >= '0' && *t <= '9'; t++)
        v = v > max ? v : v * 10 + (*t - '0');
    bool count = t != text && !*t;
    if (count && (v > max || (whole && v < 1))) {
        tui_say(s, true, "rank %s is outside 1..%lld (full: %lld); or a fraction like 0.25", text, (long long)max,
               (long long)max);
        return false;
    }
    return true;
}

/* An expert number typed so far into the / prompt: refused on the spot outside the layer. */
static bool expert_input_ok(tui_state *s, const char *text)
{
    int n = s->res[s->layer].n;
    long v = 0;
    const char *t = text;
    for (; *t >= '0' && *t <= '9'; t++)
        v = v >= n ? v : v * 10 + (*t - '0');
    if (*t || v >= n) {
        tui_say(s, true, "expert %s is not in layer %d: its experts are 0..%d", text, s->layer, n - 1);
        return false;
    }
    return true;
}

/* The heatmap's cursor onto expert e (row and column), found in cluster order. */
static void jump_to_expert(tui_state *s, int e)
{
    const tui_layer *p = &s->res[s->layer];
    int order[TUI_MAX_EXPERTS], n = tui_cluster_order(p, order);
    for (int q = 0; q < n; q++)
        if (order[q] == e)
            s->ci = s->cj = q;
    int members = tui_cluster_size(p, p->assign[e]);
    tui_say(s, false, "expert %d: group %d of %d (%d member%s)", e, p->assign[e], p->k, members,
            members == 1 ? "" : "s");
}

int tui_prompt_key(tui_state *s, int key)
{
    bool enter = key == TUI_KEY_ENTER || key == '\r';
    switch (s->dialog) {
    case TUI_DIALOG_QUIT:
        s->dialog = TUI_DIALOG_NONE;
        if (key == 'y' || key == 'Y')
            return TUI_ACT_QUIT;
        tui_say(s, false, "quit cancelled");
        return TUI_ACT_REDRAW;
    case TUI_DIALOG_OVERWRITE:
        s->dialog = TUI_DIALOG_NONE;
        if (key == 'y' || key == 'Y')
            return TUI_ACT_COMMIT | TUI_ACT_FORCE | TUI_ACT_REDRAW;
        tui_say(s, false, "commit cancelled: %.200s exists", s->commit_dir);
        return TUI_ACT_REDRAW;
    case TUI_DIALOG_DISCARD:
        s->dialog = TUI_DIALOG_NONE;
        if (key == 'y' || key == 'Y')
            return TUI_ACT_OPEN | TUI_ACT_REDRAW;
        tui_say(s, false, "open cancelled: the edits are kept");
        return TUI_ACT_REDRAW;
    case TUI_DIALOG_COMMIT:
    case TUI_DIALOG_SAVE:
    case TUI_DIALOG_OPEN:
    case TUI_DIALOG_RANK:
    case TUI_DIALOG_EXPERT:
    case TUI_DIALOG_COMPARE:
    case TUI_DIALOG_EXPORT:
        break;
    default:
        s->dialog = TUI_DIALOG_NONE;
        return TUI_ACT_REDRAW;
    }
    /* the dialogs with a text field */
    tui_dialog d = s->dialog;
    if (key == TUI_KEY_ESC) {
        s->dialog = TUI_DIALOG_NONE;
        tui_say(s, false, "%s cancelled", d == TUI_DIALOG_COMMIT ? "commit" : d == TUI_DIALOG_SAVE ? "save"
                                         : d == TUI_DIALOG_OPEN ? "open" : d == TUI_DIALOG_COMPARE ? "compare"
                                         : d == TUI_DIALOG_EXPORT ? "export" : d == TUI_DIALOG_EXPERT ? "jump" : "rank");
        return TUI_ACT_REDRAW;
    }
    if (key == TUI_KEY_TAB && d == TUI_DIALOG_COMMIT) { /* previews follow the format's router */
        return tui_set_commit_format(s, s->commit_format + 1) ? TUI_ACT_REDRAW | TUI_ACT_PREVIEW : TUI_ACT_REDRAW;
    }
    if (!enter) {
        char before[sizeof s->input];
        snprintf(before, sizeof before, "%s", s->input);
        if (edit_input(s, key) && d == TUI_DIALOG_RANK && !rank_input_ok(s, s->input, false))
            snprintf(s->input, sizeof s->input, "%s", before); /* the key is refused */
        if (d == TUI_DIALOG_EXPERT && strcmp(before, s->input) && !expert_input_ok(s, s->input))
            snprintf(s->input, sizeof s->input, "%s", before);
        return TUI_ACT_REDRAW;
    }
    s->dialog = TUI_DIALOG_NONE;
    if (!s->input[0]) {
        tui_say(s, true, "nothing entered: cancelled");
        return TUI_ACT_REDRAW;
    }
    switch (d) {
    case TUI_DIALOG_COMMIT:
        snprintf(s->commit_dir, sizeof s->commit_dir, "%s", s->input);
        return TUI_ACT_COMMIT | TUI_ACT_REDRAW;
    case TUI_DIALOG_SAVE:
        snprintf(s->plan_path, sizeof s->plan_path, "%s", s->input);
        return TUI_ACT_SAVE | TUI_ACT_REDRAW;
    case TUI_DIALOG_EXPORT:
        snprintf(s->export_dir, sizeof s->export_dir, "%s", s->input);
        return TUI_ACT_EXPORT | TUI_ACT_REDRAW;
    case TUI_DIALOG_OPEN:
        if (s->modified) {
            s->dialog = TUI_DIALOG_DISCARD;
            return TUI_ACT_REDRAW;
        }
        return TUI_ACT_OPEN | TUI_ACT_REDRAW;
    case TUI_DIALOG_EXPERT:
        if (expert_input_ok(s, s->input))
            jump_to_expert(s, atoi(s->input));
        return TUI_ACT_REDRAW;
    case TUI_DIALOG_COMPARE:
        return TUI_ACT_COMPARE | TUI_ACT_REDRAW;
    case TUI_DIALOG_RANK: {
        sm_rank r;
        if (!rank_input_ok(s, s->input, true))
            return TUI_ACT_REDRAW;
        if (sm_rank_parse(s->input, &r)) {
            tui_say(s, true, "not a rank: '%.60s' (full, a count like 64, or a fraction like 0.25)", s->input);
            return TUI_ACT_REDRAW;
        }
        char buf[32];
        sm_rank_format(&r, buf, sizeof buf);
        if (s->rank_matrix == TUI_RANK_EVERY_LAYER) {
            int n = tui_apply_rank(s, r);
            tui_say(s, false, "rank %s for gate, up and down on %d layer%s (u undoes them all)", buf, n, n == 1 ? "" : "s");
            return TUI_ACT_REDRAW | TUI_ACT_PREVIEW_ALL;
        }
        if (s->rank_matrix >= 0) {
            if (tui_set_group_rank(s, s->layer, s->spec_cluster, s->rank_matrix, r)) {
                tui_say(s, true, "layer %d has no group %d", s->layer, s->spec_cluster);
                return TUI_ACT_REDRAW;
            }
            tui_say(s, false, "layer %d group %d: %s rank %s", s->layer, s->spec_cluster, matrix_names[s->rank_matrix],
                   buf);
        } else {
            tui_set_rank(s, s->layer, -1, r);
            tui_say(s, false, "layer %d: rank %s for gate, up and down of every group", s->layer, buf);
        }
        return TUI_ACT_REDRAW | TUI_ACT_PREVIEW;
    }
    default:
        return TUI_ACT_REDRAW;
    }
}
