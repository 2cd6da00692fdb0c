/* tok_json: typed reads from a tokenizer.json tree. Every failure names the file and the JSON
 * path of the offending value ("pre_tokenizer.pretokenizers[1].pattern"), so an unsupported or
 * malformed component is one clear message instead of a silent difference. */
#ifndef SM_TOK_JSON_H
#define SM_TOK_JSON_H

#include <jansson.h>
#include <stdbool.h>

/* Where we are: the file and the JSON path of the object being read. */
typedef struct sm_tok_jctx {
    const char *file;
    const char *path;
} sm_tok_jctx;

/* "path.key" / "path[i]" (malloc'ed). */
char *sm_tok_jpath_key(const char *path, const char *key);
char *sm_tok_jpath_index(const char *path, size_t i);

/* Missing or null keys take the default (or fail when required). Returns 0 or -1 (message set). */
int sm_tok_jstr(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, const char *def, const char **out);
int sm_tok_jbool(const sm_tok_jctx *c, json_t *obj, const char *key, bool def, bool *out);
int sm_tok_jint(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, long long lo, long long hi,
                long long *out);
/* The value at key must be an object / array (or missing/null when !required: *out = NULL). */
int sm_tok_jobj(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, json_t **out);
int sm_tok_jarr(const sm_tok_jctx *c, json_t *obj, const char *key, bool required, json_t **out);
/* Refuse keys outside the NULL-terminated list (a field we do not implement). */
int sm_tok_jonly(const sm_tok_jctx *c, json_t *obj, const char *const *allowed);
/* A component (normalizer, pre-tokenizer, ...): an object with a string "type". 0 or -1. */
int sm_tok_jtype(const sm_tok_jctx *c, json_t *v, const char **type);
/* A "Sequence" component: an object with only "type" and the list `key`; read_one is called on
 * each element with the element's own path ("normalizer.normalizers[2]"), stopping at the
 * first failure. 0 or -1. */
typedef int (*sm_tok_jeach_fn)(const sm_tok_jctx *c, json_t *element, void *arg);
int sm_tok_jsequence(const sm_tok_jctx *c, json_t *obj, const char *key, sm_tok_jeach_fn read_one, void *arg);
/* An error at c->path (or path.key when key is not NULL). Returns -1. */
int sm_tok_jerr(const sm_tok_jctx *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
