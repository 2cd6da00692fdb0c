/* Hash maps for vocabularies and merges (see tok_strmap.h). */
#include "text/tok_strmap.h"
#include "util/hash.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

void sm_tok_strmap_init(sm_tok_strmap *m)
{
    memset(m, 0, sizeof *m);
    m->mask = 1023;
    m->slots = xcalloc(m->mask + 1, sizeof *m->slots);
}

void sm_tok_strmap_free(sm_tok_strmap *m)
{
    free(m->slots);
    free(m->keys);
    free(m->key_off);
    free(m->key_len);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(const sm_tok_strmap *m, const char *key, size_t len)
{
    size_t i = sm_fnv1a(SM_FNV_OFFSET, key, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint32_t e = m->slots[i];
        if (!e)
            return i;
        e--;
        if (m->key_len[e] == len && !memcmp(m->keys + m->key_off[e], key, len))
            return i;
    }
}

static void grow(sm_tok_strmap *m)
{
    size_t nmask = m->mask * 2 + 1;
    uint32_t *old = m->slots;
    size_t omask = m->mask;
    m->slots = xcalloc(nmask + 1, sizeof *m->slots);
    m->mask = nmask;
    for (size_t i = 0; i <= omask; i++)
        if (old[i]) {
            uint32_t e = old[i] - 1;
            m->slots[find_slot(m, m->keys + m->key_off[e], m->key_len[e])] = old[i];
        }
    free(old);
}

void sm_tok_strmap_put(sm_tok_strmap *m, const char *key, size_t len, int32_t val)
{
    size_t i = find_slot(m, key, len);
    if (m->slots[i]) {
        m->val[m->slots[i] - 1] = val;
        return;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->key_off = xrealloc(m->key_off, m->cap * sizeof *m->key_off);
        m->key_len = xrealloc(m->key_len, m->cap * sizeof *m->key_len);
        m->val = xrealloc(m->val, m->cap * sizeof *m->val);
    }
    if (m->keys_len + len + 1 > m->keys_cap) {
        m->keys_cap = (m->keys_len + len + 1) * 2;
        m->keys = xrealloc(m->keys, m->keys_cap);
    }
    memcpy(m->keys + m->keys_len, key, len);
    m->keys[m->keys_len + len] = 0;
    m->key_off[m->n] = m->keys_len;
    m->key_len[m->n] = (uint32_t)len;
    m->val[m->n] = val;
    m->keys_len += len + 1;
    m->slots[i] = (uint32_t)++m->n;
    if (m->n * 2 > m->mask)
        grow(m);
}

int32_t sm_tok_strmap_get(const sm_tok_strmap *m, const char *key, size_t len)
{
    uint32_t e = m->slots[find_slot(m, key, len)];
    return e ? m->val[e - 1] : -1;
}

static size_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

void sm_tok_pairmap_init(sm_tok_pairmap *m, size_t expected)
{
    size_t cap = 1024;
    while (cap < expected * 2 + 16)
        cap *= 2;
    m->mask = cap - 1;
    m->n = 0;
    m->keys = xcalloc(cap, sizeof *m->keys);
    m->rank = xcalloc(cap, sizeof *m->rank);
    m->id = xcalloc(cap, sizeof *m->id);
}

void sm_tok_pairmap_free(sm_tok_pairmap *m)
{
    free(m->keys);
    free(m->rank);
    free(m->id);
    memset(m, 0, sizeof *m);
}

void sm_tok_pairmap_put(sm_tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    if ((m->n + 1) * 2 > m->mask) { /* keep the load under one half */
        sm_tok_pairmap big;
        sm_tok_pairmap_init(&big, (m->mask + 1));
        for (size_t i = 0; i <= m->mask; i++)
            if (m->keys[i]) {
                uint64_t k = m->keys[i] - 1;
                sm_tok_pairmap_put(&big, (int32_t)(k >> 32), (int32_t)(uint32_t)k, m->rank[i], m->id[i]);
            }
        sm_tok_pairmap_free(m);
        *m = big;
    }
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (size_t i = pair_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == k) {
            m->rank[i] = rank;
            m->id[i] = id;
            return;
        }
        if (!m->keys[i]) {
            m->keys[i] = k;
            m->rank[i] = rank;
            m->id[i] = id;
            m->n++;
            return;
        }
    }
}

int sm_tok_pairmap_get(const sm_tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (size_t i = pair_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == k) {
            *rank = m->rank[i];
            *id = m->id[i];
            return 1;
        }
        if (!m->keys[i])
            return 0;
    }
}
