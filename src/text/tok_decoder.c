/* Decoders (see tok_decoder.h). The chain works on a list of strings, as the reference's
 * decode_chain does; the result is their concatenation. */
#define _GNU_SOURCE /* memmem */
#include "text/tok_decoder.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

static void add_step(sm_tok_decoder *d, sm_tok_dec_step st)
{
    d->steps = xrealloc(d->steps, (d->n + 1) * sizeof *d->steps);
    d->steps[d->n++] = st;
}

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_decoder *d);

static int read_element(const sm_tok_jctx *c, json_t *e, void *arg) { return read_one(c, e, arg); }

static int read_sequence(const sm_tok_jctx *c, json_t *v, sm_tok_decoder *d)
{
    return sm_tok_jsequence(c, v, "decoders", read_element, d);
}

static int read_replace(const sm_tok_jctx *c, json_t *v, sm_tok_dec_step *st)
{
    static const char *const keys[] = {"type", "pattern", "content", NULL};
    json_t *pat;
    const char *s, *content;
    if (sm_tok_jonly(c, v, keys) || sm_tok_jobj(c, v, "pattern", true, &pat) ||
        sm_tok_jstr(c, v, "content", true, NULL, &content))
        return -1;
    char *pp = sm_tok_jpath_key(c->path, "pattern");
    sm_tok_jctx pc = {c->file, pp};
    int rc = sm_tok_jstr(&pc, pat, "String", true, NULL, &s);
    if (!rc && !*s)
        rc = sm_tok_jerr(&pc, "String", "an empty pattern is not supported");
    free(pp);
    if (rc)
        return -1;
    st->a = xstrdup(s);
    st->b = xstrdup(content);
    return 0;
}

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_decoder *d)
{
    const char *type, *s;
    if (sm_tok_jtype(c, v, &type))
        return -1;
    sm_tok_dec_step st = {0};
    if (!strcmp(type, "Sequence"))
        return read_sequence(c, v, d);
    if (!strcmp(type, "ByteLevel"))
        st.kind = SM_TOK_DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback"))
        st.kind = SM_TOK_DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse"))
        st.kind = SM_TOK_DEC_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        const char *scheme;
        bool add_prefix;
        st.kind = SM_TOK_DEC_METASPACE;
        if (sm_tok_jstr(c, v, "replacement", true, NULL, &s) ||
            sm_tok_jstr(c, v, "prepend_scheme", false, NULL, &scheme) ||
            sm_tok_jbool(c, v, "add_prefix_space", true, &add_prefix))
            return -1;
        st.a = xstrdup(s);
        st.prepend = scheme ? strcmp(scheme, "never") != 0 : add_prefix;
    } else if (!strcmp(type, "Strip")) {
        long long start = 0, stop = 0;
        st.kind = SM_TOK_DEC_STRIP;
        if (sm_tok_jstr(c, v, "content", true, NULL, &s) || sm_tok_jint(c, v, "start", false, 0, 1 << 20, &start) ||
            sm_tok_jint(c, v, "stop", false, 0, 1 << 20, &stop))
            return -1;
        st.a = xstrdup(s);
        st.start = (int)start, st.stop = (int)stop;
    } else if (!strcmp(type, "Replace")) {
        st.kind = SM_TOK_DEC_REPLACE;
        if (read_replace(c, v, &st))
            return -1;
    } else if (!strcmp(type, "BPEDecoder")) {
        st.kind = SM_TOK_DEC_BPE;
        if (sm_tok_jstr(c, v, "suffix", false, "</w>", &s))
            return -1;
        st.a = xstrdup(s);
    } else
        return sm_tok_jerr(c, "type", "unsupported decoder \"%s\" (supported: ByteLevel, Metaspace, ByteFallback, "
                           "Fuse, Strip, Replace, BPEDecoder, Sequence)", type);
    add_step(d, st);
    return 0;
}

int sm_tok_decoder_read(const sm_tok_jctx *c, json_t *v, sm_tok_decoder *out)
{
    memset(out, 0, sizeof *out);
    if (!v || json_is_null(v))
        return 0;
    out->present = true;
    if (read_one(c, v, out)) {
        sm_tok_decoder_free(out);
        return -1;
    }
    return 0;
}

void sm_tok_decoder_free(sm_tok_decoder *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->steps[i].a);
        free(d->steps[i].b);
    }
    free(d->steps);
    memset(d, 0, sizeof *d);
}

/* --- the chain over a list of strings ------------------------------------------------------ */

typedef struct {
    sm_tok_buf *v;
    size_t n, cap;
} strlist;

static sm_tok_buf *list_add(strlist *l)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n] = (sm_tok_buf){0};
    sm_tok_buf_reserve(&l->v[l->n], 0);
    l->v[l->n].p[0] = 0;
    return &l->v[l->n++];
}

static void list_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].p);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void add_lossy(sm_tok_buf *o, const char *s, size_t n)
{
    size_t len, first, k;
    char *fixed = sm_tok_utf8_repair(s, n, &len, &first, &k);
    sm_tok_buf_add(o, fixed, len);
    free(fixed);
}

static void byte_level(const strlist *in, strlist *out)
{
    sm_tok_buf raw = {0};
    for (size_t i = 0; i < in->n; i++) {
        const sm_tok_buf *t = &in->v[i];
        size_t start = raw.len;
        bool ok = true;
        for (size_t j = 0; j < t->len && ok;) {
            size_t l;
            int b = sm_tok_char_byte(sm_tok_utf8_next(t->p + j, t->len - j, &l));
            if (b < 0)
                ok = false;
            else {
                unsigned char c = (unsigned char)b;
                sm_tok_buf_add(&raw, &c, 1);
            }
            j += l;
        }
        if (!ok) { /* a token with other characters is taken as it is */
            raw.len = start;
            sm_tok_buf_add(&raw, t->p, t->len);
        }
    }
    add_lossy(list_add(out), raw.p ? raw.p : "", raw.len);
    free(raw.p);
}

static void byte_fallback(const strlist *in, strlist *out)
{
    sm_tok_buf bytes = {0};
    for (size_t i = 0; i <= in->n; i++) {
        const sm_tok_buf *t = i < in->n ? &in->v[i] : NULL;
        if (t && t->len == 6 && !memcmp(t->p, "<0x", 3) && t->p[5] == '>') {
            char hex[3] = {t->p[3], t->p[4], 0}, *end;
            long b = strtol(hex, &end, 16);
            if (!*end) {
                unsigned char c = (unsigned char)b;
                sm_tok_buf_add(&bytes, &c, 1);
                continue;
            }
        }
        if (bytes.len) { /* valid UTF-8 as one string, else one U+FFFD per byte */
            bool valid = true;
            for (size_t k = 0; k < bytes.len && valid;) {
                size_t l = sm_tok_utf8_valid_len((const unsigned char *)bytes.p + k, bytes.len - k, NULL);
                valid = l > 0, k += l;
            }
            if (valid)
                sm_tok_buf_add(list_add(out), bytes.p, bytes.len);
            else
                for (size_t k = 0; k < bytes.len; k++)
                    sm_tok_buf_add(list_add(out), "\xEF\xBF\xBD", 3);
            bytes.len = 0;
        }
        if (t)
            sm_tok_buf_add(list_add(out), t->p, t->len);
    }
    free(bytes.p);
}

static void replace_all(const char *s, size_t n, const char *pat, const char *with, sm_tok_buf *o)
{
    size_t pl = strlen(pat), wl = strlen(with), last = 0;
    for (const char *p = s; n && (p = memmem(p, n - (size_t)(p - s), pat, pl)) != NULL; p += pl) {
        sm_tok_buf_add(o, s + last, (size_t)(p - s) - last);
        sm_tok_buf_add(o, with, wl);
        last = (size_t)(p - s) + pl;
    }
    sm_tok_buf_add(o, s + last, n - last);
}

static void per_token(const sm_tok_dec_step *st, const strlist *in, strlist *out)
{
    for (size_t i = 0; i < in->n; i++) {
        const sm_tok_buf *t = &in->v[i];
        sm_tok_buf *o = list_add(out);
        if (st->kind == SM_TOK_DEC_REPLACE)
            replace_all(t->p, t->len, st->a, st->b, o);
        else if (st->kind == SM_TOK_DEC_BPE)
            replace_all(t->p, t->len, st->a, i + 1 == in->n ? "" : " ", o);
        else if (st->kind == SM_TOK_DEC_METASPACE) {
            bool drop = i == 0 && st->prepend;
            replace_all(t->p, t->len, st->a, drop ? "" : " ", o);
        } else { /* Strip: up to start leading and stop trailing copies of the content */
            size_t cl = strlen(st->a), a = 0, b = t->len;
            for (int k = 0; k < st->start && b - a >= cl && !memcmp(t->p + a, st->a, cl); k++)
                a += cl;
            for (int k = 0; k < st->stop && b - a >= cl && !memcmp(t->p + b - cl, st->a, cl); k++)
                b -= cl;
            sm_tok_buf_add(o, t->p + a, b - a);
        }
    }
}

void sm_tok_decode_tokens(const sm_tok_decoder *d, const char *const *tokens, size_t n, sm_tok_buf *out)
{
    strlist cur = {0}, next = {0};
    for (size_t i = 0; i < n; i++)
        sm_tok_buf_add(list_add(&cur), tokens[i], strlen(tokens[i]));
    for (size_t s = 0; s < d->n; s++) {
        const sm_tok_dec_step *st = &d->steps[s];
        if (st->kind == SM_TOK_DEC_BYTELEVEL)
            byte_level(&cur, &next);
        else if (st->kind == SM_TOK_DEC_BYTEFALLBACK)
            byte_fallback(&cur, &next);
        else if (st->kind == SM_TOK_DEC_FUSE) {
            sm_tok_buf *o = list_add(&next);
            for (size_t i = 0; i < cur.n; i++)
                sm_tok_buf_add(o, cur.v[i].p, cur.v[i].len);
        } else
            per_token(st, &cur, &next);
        list_free(&cur);
        cur = next;
        next = (strlist){0};
    }
    out->len = 0;
    sm_tok_buf_reserve(out, 0);
    out->p[0] = 0;
    for (size_t i = 0; i < cur.n; i++) {
        if (i && !d->present)
            sm_tok_buf_add(out, " ", 1);
        sm_tok_buf_add(out, cur.v[i].p, cur.v[i].len);
    }
    list_free(&cur);
}
