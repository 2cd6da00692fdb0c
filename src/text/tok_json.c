/* Typed tokenizer.json reads that name file and JSON path on failure (see tok_json.h). */
#include "text/tok_json.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sm_tok_jpath_key(const char *path, const char *key)
{
    return path && *path ? xasprintf("%s.%s", path, key) : xstrdup(key);
}

char *sm_tok_jpath_index(const char *path, size_t i)
{
    return xasprintf("%s[%zu]", path ? path : "", i);
}

int sm_tok_jerr(const sm_tok_jctx *c, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *p = c->path && *c->path ? c->path : NULL;
    if (key && p)
        return sm_err("%s: %s.%s: %s", c->file, p, key, msg);
    if (key || p)
        return sm_err("%s: %s: %s", c->file, key ? key : p, msg);
    return sm_err("%s: %s", c->file, msg);
}

static json_t *get(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

int sm_tok_jstr(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, const char *def, const char **out)
{
    json_t *v = get(obj, key);
    if (!v) {
        if (required)
            return sm_tok_jerr(c, key, "required string is missing");
        *out = def;
        return 0;
    }
    if (!json_is_string(v))
        return sm_tok_jerr(c, key, "must be a string");
    *out = json_string_value(v);
    return 0;
}

int sm_tok_jbool(const sm_tok_jctx *c, json_t *obj, const char *key, bool def, bool *out)
{
    json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return sm_tok_jerr(c, key, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

int sm_tok_jint(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, long long lo, long long hi,
                long long *out)
{
    json_t *v = get(obj, key);
    if (!v) {
        if (required)
            return sm_tok_jerr(c, key, "required integer is missing");
        return 0;
    }
    if (!json_is_integer(v))
        return sm_tok_jerr(c, key, "must be an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return sm_tok_jerr(c, key, "%lld is outside [%lld, %lld]", x, lo, hi);
    *out = x;
    return 0;
}

int sm_tok_jobj(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, json_t **out)
{
    json_t *v = get(obj, key);
    *out = NULL;
    if (!v)
        return required ? sm_tok_jerr(c, key, "required object is missing") : 0;
    if (!json_is_object(v))
        return sm_tok_jerr(c, key, "must be an object");
    *out = v;
    return 0;
}

int sm_tok_jarr(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, json_t **out)
{
    json_t *v = get(obj, key);
    *out = NULL;
    if (!v)
        return required ? sm_tok_jerr(c, key, "required list is missing") : 0;
    if (!json_is_array(v))
        return sm_tok_jerr(c, key, "must be a list");
    *out = v;
    return 0;
}

int sm_tok_jtype(const sm_tok_jctx *c, json_t *v, const char **type)
{
    if (!json_is_object(v))
        return sm_tok_jerr(c, NULL, "must be an object");
    return sm_tok_jstr(c, v, "type", true, NULL, type);
}

int sm_tok_jsequence(const sm_tok_jctx *c, json_t *obj, const char *key, sm_tok_jeach_fn read_one, void *arg)
{
    const char *const keys[] = {"type", key, NULL};
    json_t *arr, *e;
    size_t i;
    if (sm_tok_jonly(c, obj, keys) || sm_tok_jarr(c, obj, key, true, &arr))
        return -1;
    char *ap = sm_tok_jpath_key(c->path, key);
    int rc = 0;
    json_array_foreach(arr, i, e) {
        char *p = sm_tok_jpath_index(ap, i);
        sm_tok_jctx ec = {c->file, p};
        rc = read_one(&ec, e, arg);
        free(p);
        if (rc)
            break;
    }
    free(ap);
    return rc;
}

int sm_tok_jonly(const sm_tok_jctx *c, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, key);
        if (!ok)
            return sm_tok_jerr(c, key, "field not supported by this tokenizer implementation");
    }
    return 0;
}
