/* Post-processors (see tok_post.h). Only ids matter here: offsets and type ids are not kept. */
#include "text/tok_post.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_post *p);

/* TemplateProcessing's "single": SpecialToken entries before/after the one Sequence "A". */
static int read_template(const sm_tok_jctx *c, json_t *v, sm_tok_post *p)
{
    static const char *const keys[] = {"type", "single", "pair", "special_tokens", NULL};
    json_t *single, *specials, *e;
    size_t i;
    if (sm_tok_jonly(c, v, keys) || sm_tok_jarr(c, v, "single", true, &single) ||
        sm_tok_jobj(c, v, "special_tokens", false, &specials))
        return -1;
    char *sp = sm_tok_jpath_key(c->path, "single");
    bool seen_a = false;
    int rc = 0;
    json_array_foreach(single, i, e) {
        char *ep = sm_tok_jpath_index(sp, i);
        sm_tok_jctx ec = {c->file, ep};
        json_t *tok = json_object_get(e, "SpecialToken"), *seq = json_object_get(e, "Sequence");
        const char *name;
        if (seq && json_is_object(seq)) {
            if (seen_a || !json_is_string(json_object_get(seq, "id")) ||
                strcmp(json_string_value(json_object_get(seq, "id")), "A"))
                rc = sm_tok_jerr(&ec, NULL, "a single-sequence template holds the sequence A once");
            seen_a = true;
        } else if (tok && json_is_object(tok) && json_is_string(json_object_get(tok, "id"))) {
            name = json_string_value(json_object_get(tok, "id"));
            json_t *st = specials ? json_object_get(specials, name) : NULL, *ids = st ? json_object_get(st, "ids") : NULL;
            if (!ids || !json_is_array(ids))
                rc = sm_tok_jerr(&ec, NULL, "special token \"%s\" is not in special_tokens", name);
            for (size_t k = 0; !rc && k < json_array_size(ids); k++) {
                json_t *id = json_array_get(ids, k);
                if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 24))
                    rc = sm_tok_jerr(&ec, NULL, "special token \"%s\": ids must be token ids", name);
                else
                    sm_tok_ids_push(seen_a ? &p->suffix : &p->prefix, (int32_t)json_integer_value(id));
            }
        } else
            rc = sm_tok_jerr(&ec, NULL, "must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
        free(ep);
        if (rc)
            break;
    }
    if (!rc && !seen_a)
        rc = sm_tok_jerr(c, "single", "the template has no sequence A");
    free(sp);
    return rc;
}

/* BertProcessing / RobertaProcessing: [CLS] A [SEP], each given as ["token", id]. */
static int read_cls_sep(const sm_tok_jctx *c, json_t *v, sm_tok_post *p, const char *const *keys)
{
    if (sm_tok_jonly(c, v, keys))
        return -1;
    const char *which[2] = {"cls", "sep"};
    for (int k = 0; k < 2; k++) {
        json_t *e = json_object_get(v, which[k]);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_integer(json_array_get(e, 1)) ||
            json_integer_value(json_array_get(e, 1)) < 0 || json_integer_value(json_array_get(e, 1)) >= (1 << 24))
            return sm_tok_jerr(c, which[k], "must be [\"token\", id]");
        sm_tok_ids_push(k ? &p->suffix : &p->prefix, (int32_t)json_integer_value(json_array_get(e, 1)));
    }
    return 0;
}

/* One processor of a Sequence: a later processor wraps what the earlier ones produced. */
static int read_wrapping(const sm_tok_jctx *c, json_t *e, void *arg)
{
    sm_tok_post *p = arg, inner = {0};
    if (read_one(c, e, &inner)) {
        sm_tok_post_free(&inner);
        return -1;
    }
    sm_tok_ids pre = {0};
    for (size_t k = 0; k < inner.prefix.n; k++)
        sm_tok_ids_push(&pre, inner.prefix.v[k]);
    for (size_t k = 0; k < p->prefix.n; k++)
        sm_tok_ids_push(&pre, p->prefix.v[k]);
    free(p->prefix.v);
    p->prefix = pre;
    for (size_t k = 0; k < inner.suffix.n; k++)
        sm_tok_ids_push(&p->suffix, inner.suffix.v[k]);
    sm_tok_post_free(&inner);
    return 0;
}

static int read_sequence(const sm_tok_jctx *c, json_t *v, sm_tok_post *p)
{
    return sm_tok_jsequence(c, v, "processors", read_wrapping, p);
}

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_post *p)
{
    const char *type;
    if (sm_tok_jtype(c, v, &type))
        return -1;
    if (!strcmp(type, "TemplateProcessing"))
        return read_template(c, v, p);
    if (!strcmp(type, "ByteLevel")) { /* offsets only */
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
        return sm_tok_jonly(c, v, keys);
    }
    if (!strcmp(type, "BertProcessing")) {
        static const char *const keys[] = {"type", "cls", "sep", NULL};
        return read_cls_sep(c, v, p, keys);
    }
    if (!strcmp(type, "RobertaProcessing")) {
        static const char *const keys[] = {"type", "cls", "sep", "trim_offsets", "add_prefix_space", NULL};
        return read_cls_sep(c, v, p, keys);
    }
    if (!strcmp(type, "Sequence"))
        return read_sequence(c, v, p);
    return sm_tok_jerr(c, "type", "unsupported post-processor \"%s\" (supported: TemplateProcessing, ByteLevel, "
                       "BertProcessing, RobertaProcessing, Sequence)", type);
}

int sm_tok_post_read(const sm_tok_jctx *c, json_t *v, sm_tok_post *out)
{
    memset(out, 0, sizeof *out);
    if (!v || json_is_null(v))
        return 0;
    if (read_one(c, v, out)) {
        sm_tok_post_free(out);
        return -1;
    }
    return 0;
}

void sm_tok_post_override(sm_tok_post *p, int add_bos, int32_t bos, int add_eos, int32_t eos)
{
    if (bos >= 0 && add_bos >= 0) {
        bool has = p->prefix.n && p->prefix.v[0] == bos;
        if (add_bos && !has) {
            sm_tok_ids_push(&p->prefix, bos);
            memmove(p->prefix.v + 1, p->prefix.v, (p->prefix.n - 1) * sizeof *p->prefix.v);
            p->prefix.v[0] = bos;
        } else if (!add_bos && has) {
            memmove(p->prefix.v, p->prefix.v + 1, (p->prefix.n - 1) * sizeof *p->prefix.v);
            p->prefix.n--;
        }
    }
    if (eos >= 0 && add_eos >= 0) {
        bool has = p->suffix.n && p->suffix.v[p->suffix.n - 1] == eos;
        if (add_eos && !has)
            sm_tok_ids_push(&p->suffix, eos);
        else if (!add_eos && has)
            p->suffix.n--;
    }
}

void sm_tok_post_free(sm_tok_post *p)
{
    free(p->prefix.v);
    free(p->suffix.v);
    memset(p, 0, sizeof *p);
}
