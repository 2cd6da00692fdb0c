/* Added tokens (see tok_added.h). */
#include "text/tok_added.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

typedef struct trie_node {
    int32_t child, sibling; /* first child, next sibling; -1 none */
    int32_t term;           /* index of the token ending here, -1 none */
    unsigned char byte;
} trie_node;

static void trie_init(sm_tok_trie *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 256; i++)
        t->root[i] = -1;
}

static int32_t new_node(sm_tok_trie *t, unsigned char b)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->nodes = xrealloc(t->nodes, t->cap * sizeof *t->nodes);
    }
    t->nodes[t->n] = (trie_node){-1, -1, -1, b};
    return (int32_t)t->n++;
}

static void trie_add(sm_tok_trie *t, const char *s, size_t n, int32_t term)
{
    if (!n)
        return;
    const unsigned char *u = (const unsigned char *)s;
    if (t->root[u[0]] < 0)
        t->root[u[0]] = new_node(t, u[0]);
    int32_t node = t->root[u[0]];
    for (size_t i = 1; i < n; i++) {
        int32_t c = t->nodes[node].child;
        while (c >= 0 && t->nodes[c].byte != u[i])
            c = t->nodes[c].sibling;
        if (c < 0) {
            c = new_node(t, u[i]);
            t->nodes[c].sibling = t->nodes[node].child;
            t->nodes[node].child = c;
        }
        node = c;
    }
    if (t->nodes[node].term < 0) /* the first of equal patterns wins */
        t->nodes[node].term = term;
}

/* The longest pattern starting at s[0]: its token index (and *len), or -1. */
static int32_t trie_longest(const sm_tok_trie *t, const unsigned char *s, size_t n, size_t *len)
{
    int32_t node = t->root[s[0]], best = -1;
    for (size_t i = 1;; i++) {
        if (t->nodes[node].term >= 0)
            best = t->nodes[node].term, *len = i;
        if (i >= n)
            break;
        int32_t c = t->nodes[node].child;
        while (c >= 0 && t->nodes[c].byte != s[i])
            c = t->nodes[c].sibling;
        if (c < 0)
            break;
        node = c;
    }
    return best;
}

static int read_token(const sm_tok_jctx *c, json_t *e, sm_tok_added_token *t)
{
    static const char *const keys[] = {"id", "content", "single_word", "lstrip", "rstrip", "normalized",
                                       "special", NULL};
    const char *content;
    long long id = 0;
    if (!json_is_object(e))
        return sm_tok_jerr(c, NULL, "must be an object");
    if (sm_tok_jonly(c, e, keys) || sm_tok_jint(c, e, "id", true, 0, (1 << 24) - 1, &id) ||
        sm_tok_jstr(c, e, "content", true, NULL, &content) || sm_tok_jbool(c, e, "special", false, &t->special) ||
        sm_tok_jbool(c, e, "single_word", false, &t->single_word) || sm_tok_jbool(c, e, "lstrip", false, &t->lstrip) ||
        sm_tok_jbool(c, e, "rstrip", false, &t->rstrip))
        return -1;
    /* The reference's default: special tokens are not normalized, others are. */
    if (sm_tok_jbool(c, e, "normalized", !t->special, &t->normalized))
        return -1;
    t->len = json_string_length(json_object_get(e, "content")); /* may hold \u0000 */
    t->content = xmalloc(t->len + 1);
    memcpy(t->content, content, t->len + 1);
    t->id = (int32_t)id;
    return 0;
}

int sm_tok_added_read(const sm_tok_jctx *c, json_t *arr, const sm_tok_normalizer *nz, sm_tok_added *out)
{
    memset(out, 0, sizeof *out);
    trie_init(&out->raw);
    trie_init(&out->norm);
    if (!arr)
        return 0;
    out->tok = xcalloc(json_array_size(arr) + 1, sizeof *out->tok);
    size_t i;
    json_t *e;
    sm_tok_buf nb = {0}, tmp = {0};
    json_array_foreach(arr, i, e) {
        char *p = sm_tok_jpath_index(c->path, i);
        sm_tok_jctx ec = {c->file, p};
        int rc = read_token(&ec, e, &out->tok[out->n]);
        free(p);
        if (rc)
            goto fail;
        sm_tok_added_token *t = &out->tok[out->n++];
        if (!t->normalized) {
            trie_add(&out->raw, t->content, t->len, (int32_t)(out->n - 1));
            continue;
        }
        if (sm_tok_normalize(nz, t->content, t->len, &nb, &tmp))
            goto fail;
        trie_add(&out->norm, nb.p, nb.len, (int32_t)(out->n - 1));
    }
    free(nb.p);
    free(tmp.p);
    return 0;
fail:
    free(nb.p);
    free(tmp.p);
    sm_tok_added_free(out);
    return -1;
}

void sm_tok_added_free(sm_tok_added *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->tok[i].content);
    free(a->tok);
    free(a->raw.nodes);
    free(a->norm.nodes);
    memset(a, 0, sizeof *a);
}

const sm_tok_added_token *sm_tok_added_by_id(const sm_tok_added *a, int32_t id)
{
    for (size_t i = a->n; i-- > 0;)
        if (a->tok[i].id == id)
            return &a->tok[i];
    return NULL;
}

static void push_seg(sm_tok_segs *o, size_t s, size_t e, int32_t id)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 16;
        o->v = xrealloc(o->v, o->cap * sizeof *o->v);
    }
    o->v[o->n++] = (sm_tok_seg){s, e, id};
}

/* The code point ending at s[end) (end > 0). */
static int32_t char_before(const char *s, size_t end)
{
    size_t j = end - 1, l;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80)
        j--;
    return sm_tok_utf8_next(s + j, end - j, &l);
}

void sm_tok_added_split(const sm_tok_added *a, bool normalized_set, const char *s, size_t n, sm_tok_segs *out)
{
    const sm_tok_trie *t = normalized_set ? &a->norm : &a->raw;
    const unsigned char *u = (const unsigned char *)s;
    size_t start_offset = 0;
    for (size_t i = 0; i < n && t->n;) {
        size_t len = 0;
        int32_t k = t->root[u[i]] >= 0 ? trie_longest(t, u + i, n - i, &len) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const sm_tok_added_token *tok = &a->tok[k];
        size_t start = i, stop = i + len, l;
        i = stop; /* matching resumes after this match, whether it is kept or not */
        if (tok->single_word) {
            bool start_space = start == 0 || !sm_tok_is_word(char_before(s, start));
            bool stop_space = stop == n || !sm_tok_is_word(sm_tok_utf8_next(s + stop, n - stop, &l));
            if (!start_space || !stop_space)
                continue;
        }
        if (tok->lstrip) {
            size_t ns = start;
            while (ns > 0 && sm_tok_is_whitespace(char_before(s, ns))) {
                ns--;
                while (ns > 0 && (u[ns] & 0xC0) == 0x80)
                    ns--;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (tok->rstrip)
            while (stop < n && sm_tok_is_whitespace(sm_tok_utf8_next(s + stop, n - stop, &l)))
                stop += l;
        if (start_offset < start)
            push_seg(out, start_offset, start, -1);
        push_seg(out, start, stop, tok->id);
        start_offset = stop;
    }
    if (start_offset < n || n == 0)
        push_seg(out, start_offset, n, -1);
}
