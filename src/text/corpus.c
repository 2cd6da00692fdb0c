/* corpus: text files as one token stream (see corpus.h). */
#include "text/corpus.h"
#include "text/tok.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/rng.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TEXT_BYTES ((size_t)1 << 31)
#define MAX_TOKENIZER_BYTES ((size_t)1 << 30)

static bool is_jsonl(const char *path)
{
    size_t n = strlen(path);
    return (n > 6 && !strcasecmp(path + n - 6, ".jsonl")) || (n > 7 && !strcasecmp(path + n - 7, ".ndjson"));
}

static const char *field_of(const sm_text_source *src)
{
    return src->field ? src->field : "text";
}

/* The first ill-formed byte of s[0..n), or SIZE_MAX. */
static size_t first_invalid(const char *s, size_t n)
{
    size_t len;
    for (size_t pos = 0; pos < n; pos += len)
        if (!(len = sm_tok_utf8_valid_len((const unsigned char *)s + pos, n - pos, NULL)))
            return pos;
    return SIZE_MAX;
}

static void put_digest(char *out, uint64_t h)
{
    snprintf(out, SM_CORPUS_DIGEST_LEN, "fnv1a64:%016" PRIx64, h);
}

static uint64_t hash_file_bytes(uint64_t h, const char *data, size_t len)
{
    uint64_t n = len;
    h = sm_fnv1a(h, &n, sizeof n); /* the length first: file boundaries count */
    return sm_fnv1a(h, data, len);
}

static int tokenizer_digest(const char *model, char *out)
{
    uint64_t h = SM_FNV_OFFSET;
    const char *names[2] = {"tokenizer.json", "tokenizer_config.json"};
    for (int k = 0; k < 2; k++) {
        char *path = sm_path_join(model, names[k]);
        size_t len = 0;
        char *data = NULL;
        if (k == 0 || sm_exists(path)) {
            if (!(data = sm_read_file(path, MAX_TOKENIZER_BYTES, &len))) {
                free(path);
                return -1;
            }
        }
        h = hash_file_bytes(h, data ? data : "", len);
        free(data);
        free(path);
    }
    put_digest(out, h);
    return 0;
}

/* Encode one document into the stream: the separator, then its ids. */
static int add_document(sm_tok *tok, const char *text, size_t n, sm_corpus *c, sm_tok_ids *stream)
{
    if (c->separator >= 0)
        sm_tok_ids_push(stream, c->separator);
    c->docs++;
    return sm_tok_encode(tok, text, n, false, stream);
}

/* One JSON Lines line (not blank): its field, encoded. */
static int jsonl_line(sm_tok *tok, const char *path, int line, const char *s, size_t n, const char *field,
                      sm_corpus *c, sm_tok_ids *stream)
{
    json_error_t je;
    json_t *j = json_loadb(s, n, 0, &je);
    if (!j)
        return sm_err("%s:%d: malformed JSON at column %d: %s", path, line, je.column, je.text);
    int rc = 0;
    json_t *v = json_is_object(j) ? json_object_get(j, field) : NULL;
    if (!json_is_object(j))
        rc = sm_err("%s:%d: expected a JSON object with a \"%s\" string", path, line, field);
    else if (!v)
        rc = sm_err("%s:%d: no \"%s\" field (--text-field chooses another)", path, line, field);
    else if (!json_is_string(v))
        rc = sm_err("%s:%d: \"%s\" is not a string", path, line, field);
    else if (json_string_length(v) > 0 && add_document(tok, json_string_value(v), json_string_length(v), c, stream))
        rc = sm_err_prefix("%s:%d", path, line);
    json_decref(j);
    return rc;
}

static int read_jsonl(sm_tok *tok, const char *path, const char *data, size_t len, const char *field,
                      sm_corpus *c, sm_tok_ids *stream)
{
    size_t docs0 = c->docs;
    int line = 1;
    for (size_t pos = 0; pos < len; line++) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        size_t b = pos;
        while (b < end && (data[b] == ' ' || data[b] == '\t' || data[b] == '\r'))
            b++;
        if (b < end && jsonl_line(tok, path, line, data + pos, end - pos, field, c, stream))
            return -1;
        pos = end + 1;
    }
    if (c->docs == docs0)
        return sm_err("%s: no document: every line is blank or its \"%s\" is empty", path, field);
    return 0;
}

/* Read one file (UTF-8 checked), hash it, and add its documents to the stream when tok is set. */
static int read_one(sm_tok *tok, const sm_text_source *src, int i, uint64_t *h, sm_corpus *c, sm_tok_ids *stream)
{
    const char *path = src->files[i];
    size_t len;
    char *data = sm_read_file(path, MAX_TEXT_BYTES, &len);
    if (!data)
        return -1;
    int rc = 0;
    size_t bad = first_invalid(data, len);
    if (len == 0)
        rc = sm_err("%s: empty: no text to tokenize", path);
    else if (bad != SIZE_MAX) {
        int line = 1;
        for (size_t k = 0; k < bad; k++)
            line += data[k] == '\n';
        rc = sm_err("%s:%d: invalid UTF-8 at byte offset %zu (text must be UTF-8)", path, line, bad);
    }
    *h = hash_file_bytes(*h, data, len);
    if (!rc && tok)
        rc = is_jsonl(path) ? read_jsonl(tok, path, data, len, field_of(src), c, stream)
                            : add_document(tok, data, len, c, stream) ? sm_err_prefix("%s", path) : 0;
    free(data);
    return rc;
}

static int load(const sm_text_source *src, const char *model, sm_tok *tok, sm_corpus *c, sm_tok_ids *stream)
{
    if (src->n_files < 1)
        return sm_err("no text file given");
    uint64_t h = SM_FNV_OFFSET;
    for (int i = 0; i < src->n_files; i++)
        if (read_one(tok, src, i, &h, c, stream))
            return -1;
    const char *field = field_of(src);
    h = sm_fnv1a(h, field, strlen(field) + 1);
    put_digest(c->text_digest, h);
    return tokenizer_digest(model, c->tokenizer_digest);
}

int sm_corpus_digests(const sm_text_source *src, const char *model, char *text_digest, char *tok_digest)
{
    sm_corpus c;
    memset(&c, 0, sizeof c);
    if (load(src, model, NULL, &c, NULL))
        return -1;
    memcpy(text_digest, c.text_digest, SM_CORPUS_DIGEST_LEN);
    memcpy(tok_digest, c.tokenizer_digest, SM_CORPUS_DIGEST_LEN);
    return 0;
}

int sm_corpus_load(const sm_text_source *src, const char *model, int32_t vocab, sm_corpus *out)
{
    memset(out, 0, sizeof *out);
    sm_tok *tok = sm_tok_load(model);
    if (!tok)
        return sm_err_prefix("--text needs the model's tokenizer");
    int32_t bos, eos;
    sm_tok_special_ids(tok, &bos, &eos);
    out->separator = bos >= 0 ? bos : eos;
    out->separator_kind = bos >= 0 ? "bos" : eos >= 0 ? "eos" : "none";
    sm_tok_ids stream = {0};
    int rc = load(src, model, tok, out, &stream);
    for (size_t i = 0; !rc && vocab > 0 && i < stream.n; i++)
        if (stream.v[i] >= vocab)
            rc = sm_err("%s/tokenizer.json gives token id %d, outside the model's vocabulary of %d (a tokenizer "
                        "of another model?)", model, stream.v[i], vocab);
    if (!rc && stream.n == 0) {
        char *names = sm_text_source_names(src);
        rc = sm_err("%s: the text encodes to no tokens", names);
        free(names);
    }
    sm_tok_free(tok);
    if (rc) {
        free(stream.v);
        memset(out, 0, sizeof *out);
        return -1;
    }
    out->ids = stream.v;
    out->n = stream.n;
    return 0;
}

void sm_corpus_free(sm_corpus *c)
{
    if (!c)
        return;
    free(c->ids);
    memset(c, 0, sizeof *c);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int sm_corpus_windows(const sm_corpus *c, const char *what, int samples, int seq_len, int extra, uint64_t seed,
                      int32_t **ids, int *n_windows)
{
    if (samples < 1 || seq_len < 1 || extra < 0)
        return sm_err("internal: %d windows of %d tokens", samples, seq_len);
    size_t slots = c->n / (size_t)seq_len;
    if (slots < (size_t)samples)
        return sm_err("%s holds %zu tokens (%zu windows of %d); %d samples x %d tokens need %lld", what, c->n, slots,
                      seq_len, samples, seq_len, (long long)samples * seq_len);
    if (slots > (size_t)INT32_MAX)
        return sm_err("%s: %zu windows are too many", what, slots);
    int n = (int)slots, take = samples + (extra < n - samples ? extra : n - samples);
    int *perm = xmalloc(sizeof *perm * (size_t)n);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int i = 0; i < take; i++) { /* the first `take` of a Fisher-Yates shuffle */
        int j = i + (int)sm_rng_below(&r, (uint64_t)(n - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    qsort(perm, (size_t)samples, sizeof *perm, cmp_int);
    for (int r0 = samples; r0 < take; r0 += SM_CORPUS_EXTRA_RUN)
        qsort(perm + r0, (size_t)(take - r0 < SM_CORPUS_EXTRA_RUN ? take - r0 : SM_CORPUS_EXTRA_RUN), sizeof *perm,
              cmp_int);
    *ids = xmalloc(sizeof **ids * (size_t)take * (size_t)seq_len);
    for (int w = 0; w < take; w++)
        memcpy(*ids + (size_t)w * seq_len, c->ids + (size_t)perm[w] * seq_len, sizeof **ids * (size_t)seq_len);
    *n_windows = take;
    free(perm);
    return 0;
}

char *sm_text_source_names(const sm_text_source *src)
{
    size_t len = 1;
    for (int i = 0; i < src->n_files; i++)
        len += strlen(src->files[i]) + 1;
    char *s = xmalloc(len);
    s[0] = 0;
    for (int i = 0; i < src->n_files; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, src->files[i]);
    }
    return s;
}
