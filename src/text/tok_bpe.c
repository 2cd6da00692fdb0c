/* BPE model (see tok_bpe.h). */
#include "text/tok_bpe.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ID ((1 << 24) - 1)
#define CACHE_MAX_WORD 256        /* as the reference: longer words are not cached */
#define CACHE_MAX_ENTRIES (1u << 20)

typedef struct {
    int32_t id;
    int32_t prev, next;
    uint32_t len;
} symbol;

typedef struct {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
} merge;

typedef struct bpe_work {
    symbol *sym;
    size_t nsym, capsym;
    merge *heap;
    size_t nheap, capheap;
} bpe_work;

static int read_vocab(const sm_tok_jctx *c, json_t *model, sm_tok_bpe *m)
{
    json_t *vocab, *v;
    const char *key;
    if (sm_tok_jobj(c, model, "vocab", true, &vocab))
        return -1;
    m->max_id = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_ID) {
            char *p = sm_tok_jpath_key(c->path, "vocab");
            sm_tok_jctx vc = {c->file, p};
            sm_tok_jerr(&vc, NULL, "the id of \"%s\" must be an integer in [0, %d]", key, MAX_ID);
            free(p);
            return -1;
        }
        int32_t id = (int32_t)json_integer_value(v);
        sm_tok_strmap_put(&m->vocab, key, strlen(key), id);
        if (id > m->max_id)
            m->max_id = id;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = sm_tok_strmap_get(&m->vocab, name, 6);
    }
    return 0;
}

static int merge_parts(json_t *e, const char **a, size_t *alen, const char **b, size_t *blen)
{
    if (json_is_string(e)) {
        const char *s = json_string_value(e), *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return -1;
        *a = s, *alen = (size_t)(sp - s), *b = sp + 1, *blen = strlen(sp + 1);
        return 0;
    }
    if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
        json_is_string(json_array_get(e, 1))) {
        *a = json_string_value(json_array_get(e, 0)), *alen = json_string_length(json_array_get(e, 0));
        *b = json_string_value(json_array_get(e, 1)), *blen = json_string_length(json_array_get(e, 1));
        return 0;
    }
    return -1;
}

static int read_merges(const sm_tok_jctx *c, json_t *model, sm_tok_bpe *m)
{
    json_t *arr, *e;
    size_t i, plen = strlen(m->prefix);
    if (sm_tok_jarr(c, model, "merges", false, &arr))
        return -1;
    sm_tok_pairmap_init(&m->merges, arr ? json_array_size(arr) : 0);
    if (!arr)
        return 0;
    char *mp = sm_tok_jpath_key(c->path, "merges");
    sm_tok_buf joined = {0};
    int rc = 0;
    json_array_foreach(arr, i, e) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        char *p = NULL; /* the entry's path, built only for a message */
        sm_tok_jctx ec = {c->file, NULL};
#define ENTRY (p = p ? p : sm_tok_jpath_index(mp, i), ec.path = p, &ec)
        if (merge_parts(e, &a, &al, &b, &bl))
            rc = sm_tok_jerr(ENTRY, NULL, "a merge must be \"A B\" or [\"A\", \"B\"]");
        int32_t ia = rc ? -1 : sm_tok_strmap_get(&m->vocab, a, al), ib = rc ? -1 : sm_tok_strmap_get(&m->vocab, b, bl);
        if (!rc && (ia < 0 || ib < 0))
            rc = sm_tok_jerr(ENTRY, NULL, "merge token \"%.*s\" is not in the vocabulary", (int)(ia < 0 ? al : bl),
                             ia < 0 ? a : b);
        if (!rc && bl < plen)
            rc = sm_tok_jerr(ENTRY, NULL, "merge token \"%.*s\" is shorter than continuing_subword_prefix", (int)bl, b);
        if (!rc) {
            sm_tok_buf_set(&joined, a, al);
            sm_tok_buf_add(&joined, b + plen, bl - plen);
            int32_t id = sm_tok_strmap_get(&m->vocab, joined.p, joined.len);
            if (id < 0)
                rc = sm_tok_jerr(ENTRY, NULL, "merged token \"%s\" is not in the vocabulary", joined.p);
            else
                sm_tok_pairmap_put(&m->merges, ia, ib, (uint32_t)i, id);
        }
#undef ENTRY
        free(p);
        if (rc)
            break;
    }
    free(joined.p);
    free(mp);
    return rc;
}

int sm_tok_bpe_read(const sm_tok_jctx *c, json_t *model, sm_tok_bpe *m)
{
    static const char *const keys[] = {"type", "dropout", "unk_token", "continuing_subword_prefix",
                                       "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges",
                                       "vocab", "merges", NULL};
    memset(m, 0, sizeof *m);
    sm_tok_strmap_init(&m->vocab);
    sm_tok_strmap_init(&m->cache);
    const char *unk, *prefix, *suffix;
    json_t *drop = json_object_get(model, "dropout");
    if (sm_tok_jonly(c, model, keys) || sm_tok_jstr(c, model, "unk_token", false, NULL, &unk) ||
        sm_tok_jstr(c, model, "continuing_subword_prefix", false, "", &prefix) ||
        sm_tok_jstr(c, model, "end_of_word_suffix", false, "", &suffix) ||
        sm_tok_jbool(c, model, "fuse_unk", false, &m->fuse_unk) ||
        sm_tok_jbool(c, model, "byte_fallback", false, &m->byte_fallback) ||
        sm_tok_jbool(c, model, "ignore_merges", false, &m->ignore_merges))
        goto fail;
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0.0)) {
        sm_tok_jerr(c, "dropout", "BPE dropout is random and not supported (must be null)");
        goto fail;
    }
    m->unk_token = unk ? xstrdup(unk) : NULL;
    m->prefix = xstrdup(prefix);
    m->suffix = xstrdup(suffix);
    if (read_vocab(c, model, m) || read_merges(c, model, m))
        goto fail;
    m->work = xcalloc(1, sizeof *m->work);
    return 0;
fail:
    sm_tok_bpe_free(m);
    return -1;
}

void sm_tok_bpe_free(sm_tok_bpe *m)
{
    sm_tok_strmap_free(&m->vocab);
    sm_tok_strmap_free(&m->cache);
    sm_tok_pairmap_free(&m->merges);
    free(m->unk_token);
    free(m->prefix);
    free(m->suffix);
    free(m->cache_pool);
    free(m->cache_off);
    free(m->cache_n);
    if (m->work) {
        free(m->work->sym);
        free(m->work->heap);
        free(m->work);
    }
    memset(m, 0, sizeof *m);
}

/* --- the word's initial symbols (the reference's merge_word) --------------------------- */

static void add_symbol(bpe_work *w, int32_t id, uint32_t len)
{
    if (w->nsym == w->capsym) {
        w->capsym = w->capsym ? w->capsym * 2 : 64;
        w->sym = xrealloc(w->sym, w->capsym * sizeof *w->sym);
    }
    int32_t i = (int32_t)w->nsym;
    w->sym[w->nsym++] = (symbol){id, i - 1, i + 1, len};
}

static int initial_symbols(sm_tok_bpe *m, const char *s, size_t n)
{
    bpe_work *w = m->work;
    w->nsym = 0;
    int32_t unk_id = -1;
    uint32_t unk_len = 0;
    bool have_unk = false;
    size_t plen = strlen(m->prefix), slen = strlen(m->suffix);
    sm_tok_buf sb = {0};
    for (size_t i = 0; i < n;) {
        size_t l;
        sm_tok_utf8_next(s + i, n - i, &l);
        bool is_first = i == 0, is_last = i + l >= n;
        const char *key = s + i;
        size_t klen = l;
        if ((!is_first && plen) || (is_last && slen)) {
            sb.len = 0;
            if (!is_first)
                sm_tok_buf_add(&sb, m->prefix, plen);
            sm_tok_buf_add(&sb, s + i, l);
            if (is_last)
                sm_tok_buf_add(&sb, m->suffix, slen);
            key = sb.p, klen = sb.len;
        }
        int32_t id = sm_tok_strmap_get(&m->vocab, key, klen);
        i += l;
        if (id >= 0) {
            if (have_unk)
                add_symbol(w, unk_id, unk_len), have_unk = false;
            add_symbol(w, id, (uint32_t)l);
            continue;
        }
        if (m->byte_fallback) { /* every byte of the key as <0xXX>, when all exist */
            bool all = true;
            for (size_t k = 0; k < klen && all; k++)
                all = m->byte_ids[(unsigned char)key[k]] >= 0;
            if (all) {
                for (size_t k = 0; k < klen; k++)
                    add_symbol(w, m->byte_ids[(unsigned char)key[k]], 1);
                continue; /* a pending unknown stays pending, as in the reference */
            }
        }
        if (!m->unk_token)
            continue;
        if (have_unk && m->fuse_unk) {
            unk_len += (uint32_t)l;
            continue;
        }
        if (have_unk)
            add_symbol(w, unk_id, unk_len);
        unk_id = sm_tok_strmap_get(&m->vocab, m->unk_token, strlen(m->unk_token));
        if (unk_id < 0) {
            free(sb.p);
            return sm_err("model.unk_token \"%s\" is not in the vocabulary", m->unk_token);
        }
        unk_len = (uint32_t)l, have_unk = true;
    }
    if (have_unk)
        add_symbol(w, unk_id, unk_len);
    free(sb.p);
    if (w->nsym)
        w->sym[w->nsym - 1].next = -1;
    return 0;
}

/* --- merging: a binary min-heap on (rank, pos) --------------------------------------------- */

static bool before(merge a, merge b)
{
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(bpe_work *w, merge x)
{
    if (w->nheap == w->capheap) {
        w->capheap = w->capheap ? w->capheap * 2 : 64;
        w->heap = xrealloc(w->heap, w->capheap * sizeof *w->heap);
    }
    size_t i = w->nheap++;
    while (i > 0 && before(x, w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = x;
}

static merge heap_pop(bpe_work *w)
{
    merge top = w->heap[0], x = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(w->heap[c + 1], w->heap[c]))
            c++;
        if (!before(w->heap[c], x))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = x;
    return top;
}

static void push_pair(sm_tok_bpe *m, int32_t pos)
{
    bpe_work *w = m->work;
    int32_t next = w->sym[pos].next;
    uint32_t rank;
    int32_t id;
    if (next >= 0 && sm_tok_pairmap_get(&m->merges, w->sym[pos].id, w->sym[next].id, &rank, &id))
        heap_push(w, (merge){rank, pos, id});
}

static void merge_all(sm_tok_bpe *m)
{
    bpe_work *w = m->work;
    w->nheap = 0;
    for (size_t i = 0; i + 1 < w->nsym; i++)
        push_pair(m, (int32_t)i);
    while (w->nheap) {
        merge top = heap_pop(w);
        symbol *cur = &w->sym[top.pos];
        if (cur->len == 0 || cur->next < 0)
            continue;
        symbol right = w->sym[cur->next];
        uint32_t rank;
        int32_t id;
        if (!sm_tok_pairmap_get(&m->merges, cur->id, right.id, &rank, &id) || id != top.new_id)
            continue; /* stale: a neighbour changed since this pair was queued */
        w->sym[cur->next].len = 0;
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0)
            w->sym[right.next].prev = top.pos;
        if (cur->prev >= 0)
            push_pair(m, cur->prev);
        push_pair(m, top.pos);
    }
}

static void cache_put(sm_tok_bpe *m, const char *word, size_t n, const int32_t *ids, size_t k)
{
    if (n > CACHE_MAX_WORD || m->cache_entries >= CACHE_MAX_ENTRIES || k == 0)
        return;
    if (m->cache_entries == m->cache_cap) {
        m->cache_cap = m->cache_cap ? m->cache_cap * 2 : 1024;
        m->cache_off = xrealloc(m->cache_off, m->cache_cap * sizeof *m->cache_off);
        m->cache_n = xrealloc(m->cache_n, m->cache_cap * sizeof *m->cache_n);
    }
    if (m->cache_pool_len + k > m->cache_pool_cap) {
        m->cache_pool_cap = (m->cache_pool_len + k) * 2;
        m->cache_pool = xrealloc(m->cache_pool, m->cache_pool_cap * sizeof *m->cache_pool);
    }
    memcpy(m->cache_pool + m->cache_pool_len, ids, k * sizeof *ids);
    m->cache_off[m->cache_entries] = (uint32_t)m->cache_pool_len;
    m->cache_n[m->cache_entries] = (uint32_t)k;
    m->cache_pool_len += k;
    sm_tok_strmap_put(&m->cache, word, n, (int32_t)m->cache_entries++);
}

int sm_tok_bpe_encode(sm_tok_bpe *m, const char *word, size_t n, sm_tok_ids *out)
{
    if (!n)
        return 0;
    if (m->ignore_merges) {
        int32_t id = sm_tok_strmap_get(&m->vocab, word, n);
        if (id >= 0) {
            sm_tok_ids_push(out, id);
            return 0;
        }
    }
    int32_t e = n <= CACHE_MAX_WORD ? sm_tok_strmap_get(&m->cache, word, n) : -1;
    if (e >= 0) {
        for (uint32_t i = 0; i < m->cache_n[e]; i++)
            sm_tok_ids_push(out, m->cache_pool[m->cache_off[e] + i]);
        return 0;
    }
    if (initial_symbols(m, word, n))
        return -1;
    merge_all(m);
    size_t from = out->n;
    for (size_t i = 0; i < m->work->nsym; i++)
        if (m->work->sym[i].len)
            sm_tok_ids_push(out, m->work->sym[i].id);
    cache_put(m, word, n, out->v + from, out->n - from);
    return 0;
}
