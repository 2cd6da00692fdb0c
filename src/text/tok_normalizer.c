/* Normalizers (see tok_normalizer.h). Unicode normal forms come from utf8proc. */
#define _GNU_SOURCE /* memmem */
#include "text/tok_normalizer.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static void add_step(sm_tok_normalizer *nz, sm_tok_norm_step st)
{
    nz->steps = xrealloc(nz->steps, (nz->n + 1) * sizeof *nz->steps);
    nz->steps[nz->n++] = st;
}

/* Replace's pattern: {"String": "..."} or {"Regex": "..."}. Shared shape with Split. */
static int read_replace(const sm_tok_jctx *c, json_t *v, sm_tok_norm_step *st)
{
    static const char *const keys[] = {"type", "pattern", "content", NULL};
    json_t *pat;
    const char *content, *s;
    if (sm_tok_jonly(c, v, keys) || sm_tok_jobj(c, v, "pattern", true, &pat) ||
        sm_tok_jstr(c, v, "content", true, NULL, &content))
        return -1;
    char *pp = sm_tok_jpath_key(c->path, "pattern");
    sm_tok_jctx pc = {c->file, pp};
    int rc = -1;
    if (json_object_get(pat, "String")) {
        if (!sm_tok_jstr(&pc, pat, "String", true, NULL, &s)) {
            if (!*s)
                sm_tok_jerr(&pc, "String", "an empty pattern is not supported");
            else
                st->literal = xstrdup(s), rc = 0;
        }
    } else if (json_object_get(pat, "Regex")) {
        if (!sm_tok_jstr(&pc, pat, "Regex", true, NULL, &s)) {
            char err[256];
            st->regex = sm_tok_regex_new(s, strlen(s), err, sizeof err);
            if (!st->regex)
                sm_tok_jerr(&pc, "Regex", "invalid regular expression: %s", err);
            else
                rc = 0;
        }
    } else
        sm_tok_jerr(&pc, NULL, "must hold \"String\" or \"Regex\"");
    free(pp);
    if (rc)
        return -1;
    st->text = xstrdup(content);
    return 0;
}

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_normalizer *nz);

static int read_element(const sm_tok_jctx *c, json_t *e, void *arg) { return read_one(c, e, arg); }

static int read_sequence(const sm_tok_jctx *c, json_t *v, sm_tok_normalizer *nz)
{
    return sm_tok_jsequence(c, v, "normalizers", read_element, nz);
}

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_normalizer *nz)
{
    static const char *const only_type[] = {"type", NULL};
    const char *type;
    if (sm_tok_jtype(c, v, &type))
        return -1;
    sm_tok_norm_step st = {0};
    static const struct { const char *name; sm_tok_norm_kind kind; } simple[] = {
        {"NFC", SM_TOK_NORM_NFC}, {"NFD", SM_TOK_NORM_NFD}, {"NFKC", SM_TOK_NORM_NFKC},
        {"NFKD", SM_TOK_NORM_NFKD}, {"Lowercase", SM_TOK_NORM_LOWERCASE}};
    for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
        if (!strcmp(type, simple[i].name)) {
            if (sm_tok_jonly(c, v, only_type))
                return -1;
            st.kind = simple[i].kind;
            add_step(nz, st);
            return 0;
        }
    if (!strcmp(type, "Sequence"))
        return read_sequence(c, v, nz);
    if (!strcmp(type, "Strip")) {
        static const char *const keys[] = {"type", "strip_left", "strip_right", NULL};
        st.kind = SM_TOK_NORM_STRIP;
        if (sm_tok_jonly(c, v, keys) || sm_tok_jbool(c, v, "strip_left", false, &st.strip_left) ||
            sm_tok_jbool(c, v, "strip_right", false, &st.strip_right))
            return -1;
    } else if (!strcmp(type, "Prepend")) {
        static const char *const keys[] = {"type", "prepend", NULL};
        const char *s;
        st.kind = SM_TOK_NORM_PREPEND;
        if (sm_tok_jonly(c, v, keys) || sm_tok_jstr(c, v, "prepend", true, NULL, &s))
            return -1;
        st.text = xstrdup(s);
    } else if (!strcmp(type, "Replace")) {
        st.kind = SM_TOK_NORM_REPLACE;
        if (read_replace(c, v, &st))
            return -1;
    } else
        return sm_tok_jerr(c, "type", "unsupported normalizer \"%s\" (supported: NFC, NFD, NFKC, NFKD, Lowercase, "
                           "Strip, Prepend, Replace, Sequence)", type);
    add_step(nz, st);
    return 0;
}

int sm_tok_normalizer_read(const sm_tok_jctx *c, json_t *v, sm_tok_normalizer *out)
{
    memset(out, 0, sizeof *out);
    if (!v || json_is_null(v))
        return 0;
    if (read_one(c, v, out)) {
        sm_tok_normalizer_free(out);
        return -1;
    }
    return 0;
}

void sm_tok_normalizer_free(sm_tok_normalizer *nz)
{
    for (size_t i = 0; i < nz->n; i++) {
        free(nz->steps[i].text);
        free(nz->steps[i].literal);
        sm_tok_regex_free(nz->steps[i].regex);
    }
    free(nz->steps);
    memset(nz, 0, sizeof *nz);
}

static bool all_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

static int unicode_form(sm_tok_norm_kind k, const char *s, size_t n, sm_tok_buf *out)
{
    if (all_ascii(s, n)) { /* every normal form of ASCII is itself */
        sm_tok_buf_set(out, s, n);
        return 0;
    }
    int opt = UTF8PROC_STABLE;
    opt |= (k == SM_TOK_NORM_NFC || k == SM_TOK_NORM_NFKC) ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (k == SM_TOK_NORM_NFKC || k == SM_TOK_NORM_NFKD)
        opt |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opt);
    if (r < 0)
        return sm_err("Unicode normalization failed: %s", utf8proc_errmsg(r));
    sm_tok_buf_set(out, dst, (size_t)r);
    free(dst);
    return 0;
}

/* Character by character, as the reference's NormalizedString::lowercase (char::to_lowercase):
 * no final-sigma rule, unlike str::to_lowercase. */
static void lowercase(const char *s, size_t n, sm_tok_buf *out)
{
    out->len = 0;
    sm_tok_buf_reserve(out, n + 8);
    for (size_t i = 0; i < n;) {
        size_t l;
        int32_t c = sm_tok_utf8_next(s + i, n - i, &l);
        char tmp[8];
        if (c < 0x80) {
            char ch = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            sm_tok_buf_add(out, &ch, 1);
        } else if (c == 0x130) { /* the one unconditional multi-character lowercase mapping */
            sm_tok_buf_add(out, "i\xCC\x87", 3);
        } else
            sm_tok_buf_add(out, tmp, sm_tok_utf8_put(utf8proc_tolower(c), tmp));
        i += l;
    }
}

static void strip(const sm_tok_norm_step *st, const char *s, size_t n, sm_tok_buf *out)
{
    size_t a = 0, b = n;
    while (st->strip_left && a < b) {
        size_t l;
        if (!sm_tok_is_whitespace(sm_tok_utf8_next(s + a, b - a, &l)))
            break;
        a += l;
    }
    while (st->strip_right && b > a) {
        size_t j = b - 1;
        while (j > a && ((unsigned char)s[j] & 0xC0) == 0x80)
            j--;
        size_t l;
        if (!sm_tok_is_whitespace(sm_tok_utf8_next(s + j, b - j, &l)))
            break;
        b = j;
    }
    sm_tok_buf_set(out, s + a, b - a);
}

static int replace(const sm_tok_norm_step *st, const char *s, size_t n, sm_tok_buf *out)
{
    out->len = 0;
    sm_tok_buf_reserve(out, n);
    size_t clen = strlen(st->text), last = 0;
    if (st->literal) {
        size_t plen = strlen(st->literal);
        for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), st->literal, plen)) != NULL; p += plen) {
            sm_tok_buf_add(out, s + last, (size_t)(p - s) - last);
            sm_tok_buf_add(out, st->text, clen);
            last = (size_t)(p - s) + plen;
        }
    } else {
        sm_tok_span *sp = NULL;
        size_t cap = 0;
        long k = sm_tok_regex_find_all(st->regex, s, n, &sp, &cap);
        for (long i = 0; i < k; i++) {
            sm_tok_buf_add(out, s + last, sp[i].start - last);
            sm_tok_buf_add(out, st->text, clen);
            last = sp[i].end;
        }
        free(sp);
        if (k < 0)
            return -1;
    }
    sm_tok_buf_add(out, s + last, n - last);
    return 0;
}

static int apply_step(const sm_tok_norm_step *st, const char *s, size_t n, sm_tok_buf *out)
{
    switch (st->kind) {
    case SM_TOK_NORM_NFC:
    case SM_TOK_NORM_NFD:
    case SM_TOK_NORM_NFKC:
    case SM_TOK_NORM_NFKD:
        return unicode_form(st->kind, s, n, out);
    case SM_TOK_NORM_LOWERCASE:
        lowercase(s, n, out);
        return 0;
    case SM_TOK_NORM_STRIP:
        strip(st, s, n, out);
        return 0;
    case SM_TOK_NORM_PREPEND:
        out->len = 0;
        if (n) /* the reference prepends to non-empty text only */
            sm_tok_buf_add(out, st->text, strlen(st->text));
        sm_tok_buf_add(out, s, n);
        return 0;
    case SM_TOK_NORM_REPLACE:
        return replace(st, s, n, out);
    }
    return sm_err("internal: unknown normalizer step");
}

int sm_tok_normalize(const sm_tok_normalizer *nz, const char *s, size_t n, sm_tok_buf *out, sm_tok_buf *tmp)
{
    sm_tok_buf_set(out, s, n);
    for (size_t i = 0; i < nz->n; i++) {
        if (apply_step(&nz->steps[i], out->p, out->len, tmp))
            return -1;
        sm_tok_buf t = *out;
        *out = *tmp;
        *tmp = t;
    }
    return 0;
}
