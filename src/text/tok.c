/* tokenizer.json loading and the encoding pipeline (see tok.h). The order is the reference's:
 * raw added tokens out of the text; normalize each remaining stretch; normalized added tokens out
 * of that; pre-tokenize; BPE each word; then the post-processor's special tokens. */
#include "text/tok.h"
#include "text/tok_added.h"
#include "text/tok_bpe.h"
#include "text/tok_decoder.h"
#include "text/tok_json.h"
#include "text/tok_normalizer.h"
#include "text/tok_post.h"
#include "text/tok_pretok.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENIZER_BYTES (1u << 30)
#define MAX_CONFIG_BYTES (64u << 20)

struct sm_tok {
    sm_tok_normalizer norm;
    sm_tok_pretok pre;
    sm_tok_bpe bpe;
    sm_tok_added added;
    sm_tok_post post;
    sm_tok_decoder dec;
    char **id_token;          /* id -> token string (added tokens over the vocabulary) */
    bool *id_special;
    int32_t n_ids;
    int32_t bos_id, eos_id;   /* tokenizer_config.json's bos_token / eos_token, or -1 */
    /* scratch, reused between calls */
    sm_tok_segs raw, norm_segs;
    sm_tok_buf nbuf, ntmp;
    sm_tok_prework pw;
};

static int read_model(const sm_tok_jctx *c, json_t *root, sm_tok *t)
{
    json_t *model;
    const char *type;
    if (sm_tok_jobj(c, root, "model", true, &model))
        return -1;
    sm_tok_jctx mc = {c->file, "model"};
    if (sm_tok_jstr(&mc, model, "type", true, NULL, &type))
        return -1;
    if (strcmp(type, "BPE"))
        return sm_tok_jerr(&mc, "type", "unsupported model type \"%s\" (supported: BPE)", type);
    return sm_tok_bpe_read(&mc, model, &t->bpe);
}

static int check_top(const sm_tok_jctx *c, json_t *root)
{
    static const char *const keys[] = {"version", "truncation", "padding", "added_tokens", "normalizer",
                                       "pre_tokenizer", "post_processor", "decoder", "model", NULL};
    if (!json_is_object(root))
        return sm_tok_jerr(c, NULL, "the top level must be a JSON object");
    if (sm_tok_jonly(c, root, keys))
        return -1;
    /* Truncation and padding change the ids of a single text: refuse rather than ignore them. */
    if (json_object_get(root, "truncation") && !json_is_null(json_object_get(root, "truncation")))
        return sm_tok_jerr(c, "truncation", "truncation is not supported (must be null)");
    if (json_object_get(root, "padding") && !json_is_null(json_object_get(root, "padding")))
        return sm_tok_jerr(c, "padding", "padding is not supported (must be null)");
    return 0;
}

static void build_id_table(sm_tok *t)
{
    int32_t n = t->bpe.max_id + 1;
    for (size_t i = 0; i < t->added.n; i++)
        if (t->added.tok[i].id + 1 > n)
            n = t->added.tok[i].id + 1;
    t->n_ids = n;
    t->id_token = xcalloc((size_t)n + 1, sizeof *t->id_token);
    t->id_special = xcalloc((size_t)n + 1, sizeof *t->id_special);
    const sm_tok_strmap *v = &t->bpe.vocab;
    for (size_t e = 0; e < v->n; e++)
        t->id_token[v->val[e]] = v->keys + v->key_off[e];
    for (size_t i = 0; i < t->added.n; i++) {
        t->id_token[t->added.tok[i].id] = t->added.tok[i].content;
        t->id_special[t->added.tok[i].id] = t->added.tok[i].special;
    }
}

/* The post-processor's ids must be tokens: an id outside the vocabulary would reach the model. */
static int check_post_ids(const sm_tok *t, const char *name)
{
    const sm_tok_ids *lists[2] = {&t->post.prefix, &t->post.suffix};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < lists[k]->n; i++) {
            int32_t id = lists[k]->v[i];
            if (id >= t->n_ids || !t->id_token[id])
                return sm_err("%s: post_processor: special token id %d is not in the vocabulary", name, id);
        }
    return 0;
}

/* tokenizer_config.json: add_bos_token / add_eos_token with bos_token / eos_token (a string or
 * {"content": ...}). Other keys are transformers' business and ignored. */
static int read_config(sm_tok *t, const char *name, const char *text, size_t len)
{
    json_error_t je;
    /* integers as reals: model_max_length is often 1e30, beyond jansson's integers */
    json_t *root = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &je);
    if (!root)
        return sm_err("%s: malformed JSON at line %d column %d: %s", name, je.line, je.column, je.text);
    sm_tok_jctx c = {name, ""};
    int rc = json_is_object(root) ? 0 : sm_tok_jerr(&c, NULL, "the top level must be a JSON object");
    int add[2] = {-1, -1};
    int32_t id[2] = {-1, -1};
    const char *keys[2][2] = {{"add_bos_token", "bos_token"}, {"add_eos_token", "eos_token"}};
    for (int k = 0; k < 2 && !rc; k++) {
        bool b = false;
        json_t *tok = json_object_get(root, keys[k][1]);
        if (json_is_object(tok))
            tok = json_object_get(tok, "content");
        if (json_is_string(tok)) { /* the token is known even when it is not added (lm-eval's prefix token) */
            const char *s = json_string_value(tok);
            for (size_t i = 0; i < t->added.n && id[k] < 0; i++)
                if (!strcmp(t->added.tok[i].content, s))
                    id[k] = t->added.tok[i].id;
            if (id[k] < 0)
                id[k] = sm_tok_strmap_get(&t->bpe.vocab, s, strlen(s));
        }
        if (!json_object_get(root, keys[k][0]) || json_is_null(json_object_get(root, keys[k][0])))
            continue;
        if ((rc = sm_tok_jbool(&c, root, keys[k][0], false, &b)) != 0)
            break;
        add[k] = b;
        if (json_is_string(tok) && id[k] < 0 && add[k] == 1)
            rc = sm_tok_jerr(&c, keys[k][1], "token \"%s\" is not in the tokenizer's vocabulary",
                             json_string_value(tok));
    }
    t->bos_id = id[0];
    t->eos_id = id[1];
    if (!rc)
        sm_tok_post_override(&t->post, add[0], id[0], add[1], id[1]);
    json_decref(root);
    return rc;
}

sm_tok *sm_tok_load_mem(const char *name, const char *text, size_t len, const char *config_name,
                        const char *config, size_t config_len)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) {
        sm_err("%s: malformed JSON at line %d column %d: %s", name, je.line, je.column, je.text);
        return NULL;
    }
    sm_tok *t = xcalloc(1, sizeof *t);
    t->bos_id = t->eos_id = -1;
    sm_tok_jctx c = {name, ""};
    json_t *added = NULL;
    int rc = check_top(&c, root) || read_model(&c, root, t);
    sm_tok_jctx nc = {name, "normalizer"}, pc = {name, "pre_tokenizer"}, ac = {name, "added_tokens"},
                qc = {name, "post_processor"}, dc = {name, "decoder"};
    rc = rc || sm_tok_normalizer_read(&nc, json_object_get(root, "normalizer"), &t->norm) ||
         sm_tok_pretok_read(&pc, json_object_get(root, "pre_tokenizer"), &t->pre) ||
         sm_tok_jarr(&c, root, "added_tokens", false, &added) ||
         sm_tok_added_read(&ac, added, &t->norm, &t->added) ||
         sm_tok_post_read(&qc, json_object_get(root, "post_processor"), &t->post) ||
         sm_tok_decoder_read(&dc, json_object_get(root, "decoder"), &t->dec);
    json_decref(root);
    if (!rc && t->bpe.max_id < 0 && t->added.n == 0)
        rc = sm_err("%s: model.vocab: the vocabulary is empty", name);
    if (!rc)
        build_id_table(t);
    if (!rc)
        rc = check_post_ids(t, name);
    if (!rc && config)
        rc = read_config(t, config_name, config, config_len);
    if (rc) {
        sm_tok_free(t);
        return NULL;
    }
    return t;
}

sm_tok *sm_tok_load(const char *path)
{
    bool dir_given = sm_is_dir(path);
    char *file = dir_given ? sm_path_join(path, "tokenizer.json") : xstrdup(path);
    if (dir_given && !sm_exists(file)) {
        sm_err("%s: no such file (the model directory has no tokenizer.json)", file);
        free(file);
        return NULL;
    }
    char *dir = xstrdup(file), *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = 0;
    else
        dir[0] = 0;
    char *cfg_name = xasprintf("%stokenizer_config.json", dir);
    sm_tok *t = NULL;
    size_t len = 0, cfg_len = 0;
    char *text = sm_read_file(file, MAX_TOKENIZER_BYTES, &len), *cfg = NULL;
    if (text && sm_exists(cfg_name))
        cfg = sm_read_file(cfg_name, MAX_CONFIG_BYTES, &cfg_len);
    if (text && (cfg || !sm_exists(cfg_name)))
        t = sm_tok_load_mem(file, text, len, cfg_name, cfg, cfg_len);
    free(text);
    free(cfg);
    free(cfg_name);
    free(dir);
    free(file);
    return t;
}

void sm_tok_free(sm_tok *t)
{
    if (!t)
        return;
    sm_tok_normalizer_free(&t->norm);
    sm_tok_pretok_free(&t->pre);
    sm_tok_bpe_free(&t->bpe);
    sm_tok_added_free(&t->added);
    sm_tok_post_free(&t->post);
    sm_tok_decoder_free(&t->dec);
    free(t->id_token);
    free(t->id_special);
    free(t->raw.v);
    free(t->norm_segs.v);
    free(t->nbuf.p);
    free(t->ntmp.p);
    sm_tok_prework_free(&t->pw);
    free(t);
}

/* One stretch of text outside the raw added tokens. */
static int encode_stretch(sm_tok *t, const char *s, size_t n, bool at_start, sm_tok_ids *out)
{
    if (sm_tok_normalize(&t->norm, s, n, &t->nbuf, &t->ntmp))
        return -1;
    t->norm_segs.n = 0;
    sm_tok_added_split(&t->added, true, t->nbuf.p, t->nbuf.len, &t->norm_segs);
    for (size_t i = 0; i < t->norm_segs.n; i++) {
        sm_tok_seg g = t->norm_segs.v[i];
        if (g.id >= 0) {
            sm_tok_ids_push(out, g.id);
            continue;
        }
        if (g.end == g.start)
            continue;
        if (sm_tok_pretokenize(&t->pre, t->nbuf.p + g.start, g.end - g.start, at_start && g.start == 0, &t->pw))
            return -1;
        for (size_t k = 0; k < t->pw.out.n; k++) {
            sm_tok_piece p = t->pw.out.v[k];
            if (sm_tok_bpe_encode(&t->bpe, t->pw.arena.p + p.off, p.len, out))
                return -1;
        }
    }
    return 0;
}

int sm_tok_encode(sm_tok *t, const char *text, size_t n, bool add_special, sm_tok_ids *out)
{
    if (add_special)
        for (size_t i = 0; i < t->post.prefix.n; i++)
            sm_tok_ids_push(out, t->post.prefix.v[i]);
    t->raw.n = 0;
    sm_tok_added_split(&t->added, false, text, n, &t->raw);
    for (size_t i = 0; i < t->raw.n; i++) {
        sm_tok_seg g = t->raw.v[i];
        if (g.id >= 0)
            sm_tok_ids_push(out, g.id);
        else if (g.end > g.start && encode_stretch(t, text + g.start, g.end - g.start, g.start == 0, out))
            return -1;
    }
    if (add_special)
        for (size_t i = 0; i < t->post.suffix.n; i++)
            sm_tok_ids_push(out, t->post.suffix.v[i]);
    return 0;
}

char *sm_tok_decode(const sm_tok *t, const int32_t *ids, size_t n, bool skip_special)
{
    const char **toks = xcalloc(n + 1, sizeof *toks);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->id_token[ids[i]])
            continue;
        if (skip_special && t->id_special[ids[i]])
            continue;
        toks[k++] = t->id_token[ids[i]];
    }
    sm_tok_buf out = {0};
    sm_tok_decode_tokens(&t->dec, toks, k, &out);
    free(toks);
    return out.p;
}

int32_t sm_tok_vocab_size(const sm_tok *t) { return t->n_ids; }

const char *sm_tok_id_token(const sm_tok *t, int32_t id)
{
    return id >= 0 && id < t->n_ids ? t->id_token[id] : NULL;
}

void sm_tok_special_ids(const sm_tok *t, int32_t *bos, int32_t *eos)
{
    *bos = t->bos_id;
    *eos = t->eos_id;
}
