/* mctask: reading multiple-choice task files (see mctask.h). */
#include "eval/mctask.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TASK_BYTES ((size_t)1 << 31)
#define MAX_CHOICES 4096

static void item_free(sm_mc_item *it)
{
    free(it->context);
    for (int i = 0; i < it->n_choices; i++)
        free(it->choices[i]);
    free(it->choices);
    memset(it, 0, sizeof *it);
}

static int item_from_json(const char *name, int line, json_t *o, sm_mc_item *it)
{
    if (!json_is_object(o))
        return sm_err("%s:%d: expected a JSON object", name, line);
    json_t *ctx = json_object_get(o, "context"), *ch = json_object_get(o, "choices"),
           *gold = json_object_get(o, "gold");
    if (!ctx || !ch || !gold)
        return sm_err("%s:%d: missing \"%s\" (each line needs \"context\", \"choices\" and \"gold\")", name,
                      line, !ctx ? "context" : !ch ? "choices" : "gold");
    if (!json_is_string(ctx))
        return sm_err("%s:%d: \"context\" is not a string", name, line);
    if (!json_is_array(ch))
        return sm_err("%s:%d: \"choices\" is not an array", name, line);
    size_t n = json_array_size(ch);
    if (n == 0)
        return sm_err("%s:%d: \"choices\" is empty", name, line);
    if (n > MAX_CHOICES)
        return sm_err("%s:%d: %zu choices (at most %d)", name, line, n, MAX_CHOICES);
    if (!json_is_integer(gold))
        return sm_err("%s:%d: \"gold\" is not an integer", name, line);
    json_int_t g = json_integer_value(gold);
    if (g < 0 || (size_t)g >= n)
        return sm_err("%s:%d: \"gold\" %lld is out of range (%zu choices, indices 0..%zu)", name, line,
                      (long long)g, n, n - 1);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(ch, i);
        if (!json_is_string(c))
            return sm_err("%s:%d: choices[%zu] is not a string", name, line, i);
        /* acc_norm divides by the choice's length */
        if (json_string_length(c) == 0)
            return sm_err("%s:%d: choices[%zu] is empty", name, line, i);
    }
    it->line = line;
    it->gold = (int)g;
    it->context = xstrdup(json_string_value(ctx));
    it->choices = xcalloc(n, sizeof *it->choices);
    it->n_choices = (int)n;
    for (size_t i = 0; i < n; i++)
        it->choices[i] = xstrdup(json_string_value(json_array_get(ch, i)));
    return 0;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

int sm_mc_task_parse(const char *name, const char *text, size_t len, sm_mc_task *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    int line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (line == INT_MAX) {
            sm_mc_task_free(out);
            return sm_err("%s: too many lines", name);
        }
        line++;
        const char *s = text + pos;
        size_t n = end - pos;
        pos = end + 1;
        if (is_blank(s, n))
            continue;
        json_error_t je;
        /* JSON_ALLOW_NUL off: a \u0000 in a string is refused, so texts stay C strings */
        json_t *o = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
        if (!o && strstr(je.text, "\\u0000")) {
            sm_err("%s:%d: a string holds \\u0000 (NUL), which texts cannot contain", name, line);
            sm_mc_task_free(out);
            return -1;
        }
        if (!o) {
            sm_err("%s:%d: not valid JSON: %s (column %d)", name, line, je.text, je.column);
            sm_mc_task_free(out);
            return -1;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            out->items = xrealloc(out->items, cap * sizeof *out->items);
        }
        sm_mc_item *it = &out->items[out->n];
        memset(it, 0, sizeof *it);
        int rc = item_from_json(name, line, o, it);
        json_decref(o);
        if (rc) {
            sm_mc_task_free(out);
            return -1;
        }
        out->n++;
    }
    if (out->n == 0) {
        sm_mc_task_free(out);
        return sm_err("%s: no items (an empty task file)", name);
    }
    out->path = xstrdup(name);
    return 0;
}

int sm_mc_task_read(const char *path, sm_mc_task *out)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = sm_read_file(path, MAX_TASK_BYTES, &len);
    if (!text)
        return -1;
    int rc = sm_mc_task_parse(path, text, len, out);
    free(text);
    return rc;
}

void sm_mc_task_free(sm_mc_task *t)
{
    for (size_t i = 0; i < t->n; i++)
        item_free(&t->items[i]);
    free(t->items);
    free(t->path);
    memset(t, 0, sizeof *t);
}
