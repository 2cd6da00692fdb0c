/* Pre-tokenizers (see tok_pretok.h). Every splitting pre-tokenizer is a pattern (regex, literal
 * or character class) plus one of the reference's split behaviours, applied by split_piece. */
#define _GNU_SOURCE /* memmem */
#include "text/tok_pretok.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* --- GPT-2 byte <-> character table ----------------------------------------------------- */

static char byte_utf8[256][3];
static unsigned char byte_utf8_len[256];
static int16_t char_to_byte[512];
static pthread_once_t bytes_once = PTHREAD_ONCE_INIT;

static void bytes_setup(void)
{
    int n = 0;
    for (int i = 0; i < 512; i++)
        char_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : 256 + n++;
        byte_utf8_len[b] = (unsigned char)sm_tok_utf8_put(cp, byte_utf8[b]);
        char_to_byte[cp] = (int16_t)b;
    }
}

const char *sm_tok_byte_char(unsigned b, size_t *len)
{
    pthread_once(&bytes_once, bytes_setup);
    *len = byte_utf8_len[b & 255];
    return byte_utf8[b & 255];
}

int sm_tok_char_byte(int32_t cp)
{
    pthread_once(&bytes_once, bytes_setup);
    return cp >= 0 && cp < 512 ? char_to_byte[cp] : -1;
}

/* --- reading ----------------------------------------------------------------------------- */

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static void add_step(sm_tok_pretok *pt, sm_tok_pre_step st)
{
    pt->steps = xrealloc(pt->steps, (pt->n + 1) * sizeof *pt->steps);
    pt->steps[pt->n++] = st;
}

static int compile(const sm_tok_jctx *c, const char *key, const char *pattern, sm_tok_regex **out)
{
    char err[256];
    *out = sm_tok_regex_new(pattern, strlen(pattern), err, sizeof err);
    return *out ? 0 : sm_tok_jerr(c, key, "invalid regular expression: %s", err);
}

static int read_behavior(const sm_tok_jctx *c, json_t *v, sm_tok_split_behavior def, sm_tok_split_behavior *out)
{
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *s;
    if (sm_tok_jstr(c, v, "behavior", false, NULL, &s))
        return -1;
    if (!s) {
        *out = def;
        return 0;
    }
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (sm_tok_split_behavior)i;
            return 0;
        }
    return sm_tok_jerr(c, "behavior", "unknown split behaviour \"%s\"", s);
}

static int read_split(const sm_tok_jctx *c, json_t *v, sm_tok_pre_step *st)
{
    static const char *const keys[] = {"type", "pattern", "behavior", "invert", NULL};
    json_t *pat;
    const char *s;
    st->kind = SM_TOK_PRE_SPLIT;
    if (sm_tok_jonly(c, v, keys) || sm_tok_jobj(c, v, "pattern", true, &pat) ||
        read_behavior(c, v, SM_TOK_SPLIT_REMOVED, &st->behavior) || sm_tok_jbool(c, v, "invert", false, &st->invert))
        return -1;
    if (!json_object_get(v, "behavior"))
        return sm_tok_jerr(c, "behavior", "required string is missing");
    char *pp = sm_tok_jpath_key(c->path, "pattern");
    sm_tok_jctx pc = {c->file, pp};
    int rc = -1;
    if (json_object_get(pat, "Regex")) {
        if (!sm_tok_jstr(&pc, pat, "Regex", true, NULL, &s))
            rc = compile(&pc, "Regex", s, &st->regex);
    } else if (json_object_get(pat, "String")) {
        if (!sm_tok_jstr(&pc, pat, "String", true, NULL, &s)) {
            if (!*s)
                sm_tok_jerr(&pc, "String", "an empty pattern is not supported");
            else
                st->literal = xstrdup(s), rc = 0;
        }
    } else
        sm_tok_jerr(&pc, NULL, "must hold \"String\" or \"Regex\"");
    free(pp);
    return rc;
}

static int read_metaspace(const sm_tok_jctx *c, json_t *v, sm_tok_pre_step *st)
{
    static const char *const keys[] = {"type", "replacement", "prepend_scheme", "split", "add_prefix_space",
                                       "str_rep", NULL};
    const char *rep, *scheme;
    bool add_prefix;
    st->kind = SM_TOK_PRE_METASPACE;
    if (sm_tok_jonly(c, v, keys) || sm_tok_jstr(c, v, "replacement", true, NULL, &rep) ||
        sm_tok_jstr(c, v, "prepend_scheme", false, NULL, &scheme) || sm_tok_jbool(c, v, "split", true, &st->split) ||
        sm_tok_jbool(c, v, "add_prefix_space", true, &add_prefix))
        return -1;
    size_t l = 0;
    if (!*rep || (sm_tok_utf8_next(rep, strlen(rep), &l), l != strlen(rep)))
        return sm_tok_jerr(c, "replacement", "must be one character");
    memcpy(st->replacement, rep, l);
    if (!scheme) /* files written before prepend_scheme existed */
        st->prepend = add_prefix ? SM_TOK_PREPEND_ALWAYS : SM_TOK_PREPEND_NEVER;
    else if (!strcmp(scheme, "always"))
        st->prepend = SM_TOK_PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first"))
        st->prepend = SM_TOK_PREPEND_FIRST;
    else if (!strcmp(scheme, "never"))
        st->prepend = SM_TOK_PREPEND_NEVER;
    else
        return sm_tok_jerr(c, "prepend_scheme", "unknown scheme \"%s\" (always, first, never)", scheme);
    return 0;
}

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_pretok *pt);

static int read_element(const sm_tok_jctx *c, json_t *e, void *arg) { return read_one(c, e, arg); }

static int read_sequence(const sm_tok_jctx *c, json_t *v, sm_tok_pretok *pt)
{
    return sm_tok_jsequence(c, v, "pretokenizers", read_element, pt);
}

static int read_one(const sm_tok_jctx *c, json_t *v, sm_tok_pretok *pt)
{
    static const char *const only_type[] = {"type", NULL};
    const char *type;
    if (sm_tok_jtype(c, v, &type))
        return -1;
    sm_tok_pre_step st = {0};
    int rc;
    if (!strcmp(type, "Sequence"))
        return read_sequence(c, v, pt);
    if (!strcmp(type, "Split"))
        rc = read_split(c, v, &st);
    else if (!strcmp(type, "ByteLevel")) {
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
        bool use_regex, trim;
        st.kind = SM_TOK_PRE_BYTELEVEL;
        rc = sm_tok_jonly(c, v, keys) || sm_tok_jbool(c, v, "add_prefix_space", true, &st.add_prefix_space) ||
             sm_tok_jbool(c, v, "trim_offsets", true, &trim) || sm_tok_jbool(c, v, "use_regex", true, &use_regex);
        if (!rc && use_regex)
            rc = compile(c, NULL, GPT2_PATTERN, &st.regex);
        st.behavior = SM_TOK_SPLIT_ISOLATED;
    } else if (!strcmp(type, "Metaspace"))
        rc = read_metaspace(c, v, &st);
    else if (!strcmp(type, "Digits")) {
        static const char *const keys[] = {"type", "individual_digits", NULL};
        st.kind = SM_TOK_PRE_DIGITS;
        rc = sm_tok_jonly(c, v, keys) || sm_tok_jbool(c, v, "individual_digits", false, &st.individual);
        st.behavior = st.individual ? SM_TOK_SPLIT_ISOLATED : SM_TOK_SPLIT_CONTIGUOUS;
    } else if (!strcmp(type, "Punctuation")) {
        static const char *const keys[] = {"type", "behavior", NULL};
        st.kind = SM_TOK_PRE_PUNCTUATION;
        rc = sm_tok_jonly(c, v, keys) || read_behavior(c, v, SM_TOK_SPLIT_ISOLATED, &st.behavior);
    } else if (!strcmp(type, "Whitespace")) {
        /* \w+|[^\w\s]+ in the reference's regex crate, whose \w (with Join_Control) is not
         * Oniguruma's: matched by character class in find_events */
        st.kind = SM_TOK_PRE_WHITESPACE;
        rc = sm_tok_jonly(c, v, only_type);
        st.behavior = SM_TOK_SPLIT_REMOVED;
        st.invert = true;
    } else if (!strcmp(type, "WhitespaceSplit") || !strcmp(type, "BertPreTokenizer")) {
        st.kind = SM_TOK_PRE_WHITESPACE_SPLIT;
        st.behavior = SM_TOK_SPLIT_REMOVED;
        rc = sm_tok_jonly(c, v, only_type);
        if (!rc && !strcmp(type, "BertPreTokenizer")) { /* whitespace split, then punctuation isolated */
            add_step(pt, st);
            st = (sm_tok_pre_step){.kind = SM_TOK_PRE_PUNCTUATION, .behavior = SM_TOK_SPLIT_ISOLATED};
        }
    } else
        return sm_tok_jerr(c, "type", "unsupported pre-tokenizer \"%s\" (supported: ByteLevel, Split, Metaspace, "
                           "Digits, Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer, Sequence)", type);
    if (rc) {
        sm_tok_regex_free(st.regex);
        free(st.literal);
        return -1;
    }
    add_step(pt, st);
    return 0;
}

int sm_tok_pretok_read(const sm_tok_jctx *c, json_t *v, sm_tok_pretok *out)
{
    memset(out, 0, sizeof *out);
    if (!v || json_is_null(v))
        return 0;
    if (read_one(c, v, out)) {
        sm_tok_pretok_free(out);
        return -1;
    }
    return 0;
}

void sm_tok_pretok_free(sm_tok_pretok *pt)
{
    for (size_t i = 0; i < pt->n; i++) {
        sm_tok_regex_free(pt->steps[i].regex);
        free(pt->steps[i].literal);
    }
    free(pt->steps);
    memset(pt, 0, sizeof *pt);
}


/* --- splitting ------------------------------------------------------------------------- */

typedef struct {
    size_t start, end;
    bool match;
} event;

typedef struct splitter {
    event *ev, *kept;   /* the pattern's events; the ranges after the behaviour */
    size_t n, cap, nkept, kcap;
    sm_tok_span *spans;
    size_t spans_cap;
} splitter;

static void push_event(splitter *sp, size_t s, size_t e, bool m)
{
    if (sp->n == sp->cap) {
        sp->cap = sp->cap ? sp->cap * 2 : 64;
        sp->ev = xrealloc(sp->ev, sp->cap * sizeof *sp->ev);
    }
    sp->ev[sp->n++] = (event){s, e, m};
}

static void push_piece(sm_tok_pieces *out, size_t off, size_t len, bool first)
{
    if (!len) /* the reference drops empty splits */
        return;
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 64;
        out->v = xrealloc(out->v, out->cap * sizeof *out->v);
    }
    out->v[out->n++] = (sm_tok_piece){off, len, first};
}

static bool char_matches(const sm_tok_pre_step *st, const char *s, size_t n, size_t *len)
{
    int32_t c = sm_tok_utf8_next(s, n, len);
    switch (st->kind) {
    case SM_TOK_PRE_DIGITS: return sm_tok_is_numeric(c);
    case SM_TOK_PRE_PUNCTUATION: return sm_tok_is_punctuation(c);
    case SM_TOK_PRE_WHITESPACE_SPLIT: return sm_tok_is_whitespace(c);
    default: return strlen(st->replacement) == *len && !memcmp(s, st->replacement, *len); /* Metaspace */
    }
}

/* Whitespace's \w+|[^\w\s]+: the spans of word runs and of runs of other non-space characters. */
static long word_runs(const char *s, size_t n, splitter *sp)
{
    long k = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        int32_t c = sm_tok_utf8_next(s + i, n - i, &l);
        if (sm_tok_is_whitespace(c)) {
            i += l;
            continue;
        }
        bool word = sm_tok_is_word(c);
        size_t start = i;
        for (i += l; i < n; i += l) {
            c = sm_tok_utf8_next(s + i, n - i, &l);
            if (sm_tok_is_whitespace(c) || sm_tok_is_word(c) != word)
                break;
        }
        if ((size_t)k == sp->spans_cap) {
            sp->spans_cap = sp->spans_cap ? sp->spans_cap * 2 : 64;
            sp->spans = xrealloc(sp->spans, sp->spans_cap * sizeof *sp->spans);
        }
        sp->spans[k++] = (sm_tok_span){start, i};
    }
    return k;
}

/* The pattern's matches in s as events covering all of s: (range, is_match), gaps included. */
static int find_events(const sm_tok_pre_step *st, const char *s, size_t n, splitter *sp)
{
    sp->n = 0;
    size_t prev = 0;
    if (st->regex || st->literal || st->kind == SM_TOK_PRE_WHITESPACE) {
        long k;
        if (st->kind == SM_TOK_PRE_WHITESPACE) {
            k = word_runs(s, n, sp);
        } else if (st->regex) {
            k = sm_tok_regex_find_all(st->regex, s, n, &sp->spans, &sp->spans_cap);
            if (k < 0)
                return -1;
        } else {
            size_t plen = strlen(st->literal);
            k = 0;
            for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), st->literal, plen)) != NULL; p += plen) {
                if ((size_t)k == sp->spans_cap) {
                    sp->spans_cap = sp->spans_cap ? sp->spans_cap * 2 : 64;
                    sp->spans = xrealloc(sp->spans, sp->spans_cap * sizeof *sp->spans);
                }
                sp->spans[k++] = (sm_tok_span){(size_t)(p - s), (size_t)(p - s) + plen};
            }
        }
        for (long i = 0; i < k; i++) {
            if (prev != sp->spans[i].start)
                push_event(sp, prev, sp->spans[i].start, false);
            push_event(sp, sp->spans[i].start, sp->spans[i].end, true);
            prev = sp->spans[i].end;
        }
    } else {
        for (size_t i = 0; i < n;) {
            size_t l;
            if (char_matches(st, s + i, n - i, &l)) {
                if (prev < i)
                    push_event(sp, prev, i, false);
                push_event(sp, i, i + l, true);
                prev = i + l;
            }
            i += l;
        }
    }
    if (prev != n)
        push_event(sp, prev, n, false);
    if (st->invert)
        for (size_t i = 0; i < sp->n; i++)
            sp->ev[i].match = !sp->ev[i].match;
    return 0;
}

static void keep(splitter *sp, size_t *o, event e)
{
    if (*o == sp->kcap) {
        sp->kcap = sp->kcap ? sp->kcap * 2 : 64;
        sp->kept = xrealloc(sp->kept, sp->kcap * sizeof *sp->kept);
    }
    sp->kept[(*o)++] = (event){e.start, e.end, false};
}

/* Apply the behaviour: sp->kept gets the resulting ranges, match = to be removed. */
static void apply_behavior(sm_tok_split_behavior b, splitter *sp)
{
    size_t o = 0;
    bool prev_match = false;
    switch (b) {
    case SM_TOK_SPLIT_REMOVED:
    case SM_TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) {
            keep(sp, &o, sp->ev[i]);
            sp->kept[o - 1].match = b == SM_TOK_SPLIT_REMOVED && sp->ev[i].match;
        }
        break;
    case SM_TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            event e = sp->ev[i];
            if (e.match == prev_match && o > 0)
                sp->kept[o - 1].end = e.end;
            else
                keep(sp, &o, e);
            prev_match = e.match;
        }
        break;
    case SM_TOK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < sp->n; i++) {
            event e = sp->ev[i];
            if (e.match && !prev_match && o > 0)
                sp->kept[o - 1].end = e.end;
            else
                keep(sp, &o, e);
            prev_match = e.match;
        }
        break;
    case SM_TOK_SPLIT_MERGED_WITH_NEXT: /* the mirror image: walk backwards, then restore order */
        for (size_t i = sp->n; i-- > 0;) {
            event e = sp->ev[i];
            if (e.match && !prev_match && o > 0)
                sp->kept[o - 1].start = e.start;
            else
                keep(sp, &o, e);
            prev_match = e.match;
        }
        for (size_t i = 0; i < o / 2; i++) {
            event t = sp->kept[i];
            sp->kept[i] = sp->kept[o - 1 - i];
            sp->kept[o - 1 - i] = t;
        }
        break;
    }
    sp->nkept = o;
}

static int split_piece(const sm_tok_pre_step *st, sm_tok_split_behavior b, sm_tok_prework *w, sm_tok_piece p,
                       sm_tok_pieces *out)
{
    if (find_events(st, w->arena.p + p.off, p.len, w->sp))
        return -1;
    splitter *sp = w->sp;
    apply_behavior(b, sp);
    for (size_t i = 0; i < sp->nkept; i++)
        if (!sp->kept[i].match)
            push_piece(out, p.off + sp->kept[i].start, sp->kept[i].end - sp->kept[i].start,
                       p.first && sp->kept[i].start == 0);
    return 0;
}

/* The piece's text with a space in front (ByteLevel's add_prefix_space), as a new piece. */
static sm_tok_piece prefix_space(sm_tok_prework *w, sm_tok_piece p)
{
    if (w->arena.p[p.off] == ' ')
        return p;
    sm_tok_buf_reserve(&w->arena, p.len + 1);
    size_t off = w->arena.len;
    w->arena.p[off] = ' ';
    memcpy(w->arena.p + off + 1, w->arena.p + p.off, p.len);
    w->arena.len += p.len + 1;
    return (sm_tok_piece){off, p.len + 1, p.first};
}

static sm_tok_piece map_bytes(sm_tok_prework *w, sm_tok_piece p)
{
    sm_tok_buf_reserve(&w->arena, p.len * 2);
    size_t off = w->arena.len, l;
    const unsigned char *s = (const unsigned char *)w->arena.p + p.off;
    char *o = w->arena.p + off;
    for (size_t i = 0; i < p.len; i++) {
        const char *c = sm_tok_byte_char(s[i], &l);
        *o++ = c[0];
        if (l > 1)
            *o++ = c[1];
    }
    w->arena.len = (size_t)(o - w->arena.p);
    return (sm_tok_piece){off, w->arena.len - off, p.first};
}

static sm_tok_piece metaspace(const sm_tok_pre_step *st, sm_tok_prework *w, sm_tok_piece p)
{
    size_t rl = strlen(st->replacement);
    sm_tok_buf_reserve(&w->arena, p.len * rl + rl);
    size_t off = w->arena.len;
    const char *s = w->arena.p + p.off;
    char *o = w->arena.p + off;
    bool starts = p.len >= rl && !memcmp(s, st->replacement, rl);
    if (p.len && s[0] == ' ')
        starts = true;
    if (!starts && (st->prepend == SM_TOK_PREPEND_ALWAYS || (st->prepend == SM_TOK_PREPEND_FIRST && p.first)))
        memcpy(o, st->replacement, rl), o += rl;
    for (size_t i = 0; i < p.len; i++) {
        if (s[i] == ' ')
            memcpy(o, st->replacement, rl), o += rl;
        else
            *o++ = s[i];
    }
    w->arena.len = (size_t)(o - w->arena.p);
    return (sm_tok_piece){off, w->arena.len - off, p.first};
}

static int run_step(const sm_tok_pre_step *st, sm_tok_prework *w, const sm_tok_pieces *in, sm_tok_pieces *out)
{
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        sm_tok_piece p = in->v[i];
        if (st->kind == SM_TOK_PRE_BYTELEVEL) {
            if (st->add_prefix_space)
                p = prefix_space(w, p);
            if (!st->regex) {
                sm_tok_piece q = map_bytes(w, p);
                push_piece(out, q.off, q.len, q.first);
                continue;
            }
            size_t from = out->n;
            if (split_piece(st, SM_TOK_SPLIT_ISOLATED, w, p, out))
                return -1;
            for (size_t j = from; j < out->n; j++)
                out->v[j] = map_bytes(w, out->v[j]);
        } else if (st->kind == SM_TOK_PRE_METASPACE) {
            p = metaspace(st, w, p);
            if (!st->split)
                push_piece(out, p.off, p.len, p.first);
            else if (split_piece(st, SM_TOK_SPLIT_MERGED_WITH_NEXT, w, p, out))
                return -1;
        } else if (split_piece(st, st->behavior, w, p, out))
            return -1;
    }
    return 0;
}

int sm_tok_pretokenize(const sm_tok_pretok *pt, const char *s, size_t n, bool first, sm_tok_prework *w)
{
    if (!w->sp)
        w->sp = xcalloc(1, sizeof *w->sp);
    w->arena.len = 0;
    sm_tok_buf_add(&w->arena, s, n);
    w->out.n = 0;
    push_piece(&w->out, 0, n, first);
    for (size_t i = 0; i < pt->n; i++) {
        sm_tok_pieces t = w->out;
        w->out = w->tmp;
        w->tmp = t;
        if (run_step(&pt->steps[i], w, &w->tmp, &w->out))
            return -1;
    }
    return 0;
}

void sm_tok_prework_free(sm_tok_prework *w)
{
    free(w->arena.p);
    free(w->out.v);
    free(w->tmp.v);
    if (w->sp) {
        free(w->sp->ev);
        free(w->sp->kept);
        free(w->sp->spans);
        free(w->sp);
    }
    memset(w, 0, sizeof *w);
}
