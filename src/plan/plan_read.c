/* plan_read: parse and validate a `submoe_plan: 1` document (see plan.h). */
#include "plan/plan.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct {
    const char *file;
    yaml_document_t *doc;
} rd;

static int fail_at(const rd *r, const yaml_node_t *n, const char *key, const char *fmt, ...) SM_PRINTF(4, 5);
static int fail_at(const rd *r, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sm_err("%s:%zu:%zu: %s: %s", r->file, n->start_mark.line + 1, n->start_mark.column + 1, key, msg);
}

static sm_plan_pos pos_of(const yaml_node_t *n)
{
    return (sm_plan_pos){(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static const char *type_name(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool quoted(const yaml_node_t *n)
{
    return n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
           n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

static int want_scalar(const rd *r, const yaml_node_t *n, const char *key, const char **out)
{
    if (!(*out = scalar(n)))
        return fail_at(r, n, key, "expected a scalar, got %s", type_name(n));
    return 0;
}

static int want_string(const rd *r, const yaml_node_t *n, const char *key, char **out)
{
    const char *s;
    if (want_scalar(r, n, key, &s))
        return -1;
    if (!*s)
        return fail_at(r, n, key, "must not be empty");
    free(*out);
    *out = xstrdup(s);
    return 0;
}

static int want_int(const rd *r, const yaml_node_t *n, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const char *s;
    if (want_scalar(r, n, key, &s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (quoted(n) || !*s || *end || errno || isspace((unsigned char)*s))
        return fail_at(r, n, key, "expected an integer, got '%s'", s);
    if (v < lo || v > hi)
        return fail_at(r, n, key, "%lld is out of range [%" PRId64 ", %" PRId64 "]", v, lo, hi);
    *out = v;
    return 0;
}

static int want_int32(const rd *r, const yaml_node_t *n, const char *key, int lo, int hi, int *out)
{
    int64_t v;
    if (want_int(r, n, key, lo, hi, &v))
        return -1;
    *out = (int)v;
    return 0;
}

static int want_double(const rd *r, const yaml_node_t *n, const char *key, double *out)
{
    const char *s;
    if (want_scalar(r, n, key, &s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (quoted(n) || !*s || *end || errno || !isfinite(v))
        return fail_at(r, n, key, "expected a number, got '%s'", s);
    *out = v;
    return 0;
}

static int want_bool(const rd *r, const yaml_node_t *n, const char *key, bool *out)
{
    const char *s;
    if (want_scalar(r, n, key, &s))
        return -1;
    if (!quoted(n) && !strcmp(s, "true"))
        *out = true;
    else if (!quoted(n) && !strcmp(s, "false"))
        *out = false;
    else
        return fail_at(r, n, key, "expected true or false, got '%s'", s);
    return 0;
}

/* ---- integer sets (duplicate detection in linear time) ------------------------------------- */

/* Open addressing, int64 keys, each with an int value (where it was first seen). A plan can hold
 * about a million keys or group members (SM_PLAN_MAX_BYTES), so pairwise comparison is out. */
typedef struct {
    int64_t *key;
    int *val;
    unsigned char *used;
    size_t cap, n;
} int_set;

static void int_set_free(int_set *s)
{
    free(s->key);
    free(s->val);
    free(s->used);
    memset(s, 0, sizeof *s);
}

static size_t int_set_slot(const int_set *s, int64_t k)
{
    uint64_t h = (uint64_t)k * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 17) & (s->cap - 1);
    while (s->used[i] && s->key[i] != k)
        i = (i + 1) & (s->cap - 1);
    return i;
}

/* Adds k with value v. Returns true if k was already there (its first value in *first). */
static bool int_set_add(int_set *s, int64_t k, int v, int *first)
{
    if (2 * (s->n + 1) > s->cap) {
        int_set old = *s;
        s->cap = old.cap ? old.cap * 2 : 16;
        s->key = xcalloc(s->cap, sizeof *s->key);
        s->val = xcalloc(s->cap, sizeof *s->val);
        s->used = xcalloc(s->cap, 1);
        s->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.used[i]) {
                size_t j = int_set_slot(s, old.key[i]);
                s->used[j] = 1, s->key[j] = old.key[i], s->val[j] = old.val[i], s->n++;
            }
        int_set_free(&old);
    }
    size_t i = int_set_slot(s, k);
    if (s->used[i]) {
        if (first)
            *first = s->val[i];
        return true;
    }
    s->used[i] = 1, s->key[i] = k, s->val[i] = v, s->n++;
    return false;
}

/* The integer an unquoted scalar key stands for (as want_int reads it); false if it is none. */
static bool int_key(const yaml_node_t *n, int64_t *out)
{
    const char *s = scalar(n);
    if (!s || !*s || quoted(n) || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno)
        return false;
    *out = v;
    return true;
}

/* Iterate a mapping, refusing duplicate and unknown keys. `allowed` is NULL-terminated (at most 64
 * names); NULL allowed means integer keys (layers, clusters: the callback parses them), compared
 * as numbers, so `2` and `02` are the same key, as they are once read. */
typedef int (*pair_fn)(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx);

static int each_pair(const rd *r, yaml_node_t *map, const char *path, const char *const *allowed, pair_fn fn,
                     void *ctx)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail_at(r, map, path, "expected a mapping, got %s", type_name(map));
    uint64_t seen = 0;  /* allowed names seen so far */
    int_set ints = {0}; /* integer keys seen so far -> index of their pair */
    int rc = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top && !rc; p++) {
        yaml_node_t *kn = yaml_document_get_node(r->doc, p->key), *vn = yaml_document_get_node(r->doc, p->value);
        const char *key = scalar(kn);
        if (!key) {
            rc = fail_at(r, kn, path, "keys must be scalars, got %s", type_name(kn));
            break;
        }
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        if (allowed) {
            int idx = -1;
            char list[512] = "";
            for (const char *const *a = allowed; *a; a++) {
                if (!strcmp(*a, key))
                    idx = (int)(a - allowed);
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", a == allowed ? "" : ", ", *a);
            }
            if (idx < 0)
                rc = fail_at(r, kn, sub, "unknown key (expected one of: %s)", list);
            else if (idx < 64 && (seen >> idx & 1))
                rc = fail_at(r, kn, path, "duplicate key '%s'", key);
            else if (idx < 64)
                seen |= (uint64_t)1 << idx;
        } else {
            int64_t v;
            int first;
            if (int_key(kn, &v) && int_set_add(&ints, v, (int)(p - map->data.mapping.pairs.start), &first)) {
                const char *k1 = scalar(yaml_document_get_node(r->doc, map->data.mapping.pairs.start[first].key));
                if (strcmp(k1, key))
                    rc = fail_at(r, kn, path, "duplicate key '%s' (the same number as '%s')", key, k1);
                else
                    rc = fail_at(r, kn, path, "duplicate key '%s'", key);
            }
        }
        if (!rc && fn(r, sub, key, kn, vn, ctx))
            rc = -1;
    }
    int_set_free(&ints);
    return rc;
}

/* ---- ranks and settings -------------------------------------------------------------------- */

static const char *const matrix_names[3] = {"gate", "up", "down"};

static int rank_scalar(const rd *r, const yaml_node_t *n, const char *path, sm_rank *out)
{
    const char *s;
    if (want_scalar(r, n, path, &s))
        return -1;
    if (sm_rank_parse(s, out))
        return fail_at(r, n, path, "%s", sm_errmsg());
    return 0;
}

static int rank_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx)
{
    (void)kn;
    sm_plan_ranks *rk = ctx;
    for (int j = 0; j < 3; j++)
        if (!strcmp(key, matrix_names[j])) {
            rk->set[j] = true;
            rk->pos[j] = pos_of(vn);
            return rank_scalar(r, vn, path, &rk->r[j]);
        }
    return 0;
}

static int read_ranks(const rd *r, yaml_node_t *n, const char *path, sm_plan_ranks *rk)
{
    if (n->type == YAML_SCALAR_NODE) {
        sm_rank v;
        if (rank_scalar(r, n, path, &v))
            return -1;
        for (int j = 0; j < 3; j++) {
            rk->r[j] = v;
            rk->set[j] = true;
            rk->pos[j] = pos_of(n);
        }
        return 0;
    }
    static const char *const keys[] = {"gate", "up", "down", NULL};
    return each_pair(r, n, path, keys, rank_pair, rk);
}

typedef struct {
    sm_plan *p;
    sm_plan_settings *s;
    sm_plan_layer *layer; /* NULL for defaults */
} settings_ctx;

static int read_enum(const rd *r, yaml_node_t *vn, const char *path, int (*parse)(const char *, void *), void *out)
{
    const char *s;
    if (want_scalar(r, vn, path, &s))
        return -1;
    if (parse(s, out))
        return fail_at(r, vn, path, "%s", sm_errmsg());
    return 0;
}

static int parse_method(const char *s, void *out) { return sm_merge_method_parse(s, out); }
static int parse_sim(const char *s, void *out) { return sm_similarity_kind_parse(s, out); }
static int parse_algo(const char *s, void *out) { return sm_cluster_algo_parse(s, out); }
static int parse_router(const char *s, void *out) { return sm_router_mode_parse(s, out); }
static int parse_svd(const char *s, void *out) { return sm_plan_svd_parse(s, out); }
static int parse_refit(const char *s, void *out) { return sm_plan_refit_parse(s, out); }

static int groups_read(const rd *r, yaml_node_t *vn, const char *path, sm_plan_layer *l);
static int clusters_read(const rd *r, yaml_node_t *vn, const char *path, sm_plan_layer *l);

static int settings_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn,
                         void *vctx)
{
    (void)kn;
    settings_ctx *c = vctx;
    sm_plan_settings *s = c->s;
    if (!strcmp(key, "method")) {
        const char *v = scalar(vn);
        if (v && !strcmp(v, "auto")) {
            s->has_method = s->method_auto = true;
            return 0;
        }
        s->has_method = true;
        s->method_auto = false;
        return read_enum(r, vn, path, parse_method, &s->method);
    }
    if (!strcmp(key, "similarity"))
        return s->has_similarity = true, read_enum(r, vn, path, parse_sim, &s->similarity);
    if (!strcmp(key, "clustering"))
        return s->has_clustering = true, read_enum(r, vn, path, parse_algo, &s->clustering);
    if (!strcmp(key, "router"))
        return s->has_router = true, read_enum(r, vn, path, parse_router, &s->router);
    if (!strcmp(key, "align"))
        return s->has_align = true, want_bool(r, vn, path, &s->align);
    if (!strcmp(key, "refit"))
        return s->has_refit = true, s->pos_refit = pos_of(vn), read_enum(r, vn, path, parse_refit, &s->refit);
    if (!strcmp(key, "rank"))
        return read_ranks(r, vn, path, &s->rank);
    if (!strcmp(key, "experts")) {
        s->has_experts = true;
        s->pos_experts = pos_of(vn);
        return want_int32(r, vn, path, 1, 1 << 20, &s->experts);
    }
    sm_plan *p = c->p;
    if (!c->layer) { /* defaults only */
        if (!strcmp(key, "ratio")) {
            if (want_double(r, vn, path, &p->ratio))
                return -1;
            if (!(p->ratio >= 0 && p->ratio < 1))
                return fail_at(r, vn, path, "%g is out of range [0, 1)", p->ratio);
            p->has_ratio = true;
            return 0;
        }
        if (!strcmp(key, "allocation")) {
            const char *v;
            if (want_scalar(r, vn, path, &v))
                return -1;
            if (strcmp(v, "uniform") && strcmp(v, "adaptive"))
                return fail_at(r, vn, path, "expected uniform or adaptive, got '%s'", v);
            p->has_allocation = true;
            p->adaptive = !strcmp(v, "adaptive");
            return 0;
        }
        if (!strcmp(key, "window"))
            return p->has_window = true, want_int32(r, vn, path, 0, 1 << 20, &p->window);
        if (!strcmp(key, "svd")) {
            p->merge.has_svd = true;
            return read_enum(r, vn, path, parse_svd, &p->merge.svd);
        }
        if (!strcmp(key, "damping")) {
            if (want_double(r, vn, path, &p->merge.damping))
                return -1;
            if (!(p->merge.damping > 0))
                return fail_at(r, vn, path, "must be positive, got %g", p->merge.damping);
            p->merge.has_damping = true;
            return 0;
        }
        if (!strcmp(key, "seed")) {
            int64_t v;
            if (want_int(r, vn, path, 0, INT64_MAX, &v))
                return -1;
            p->seed = (uint64_t)v;
            p->has_seed = true;
            return 0;
        }
        return 0;
    }
    sm_plan_layer *l = c->layer;
    if (!strcmp(key, "groups"))
        return groups_read(r, vn, path, l);
    if (!strcmp(key, "clusters"))
        return clusters_read(r, vn, path, l);
    if (!strcmp(key, "chosen"))
        return want_string(r, vn, path, &l->chosen);
    return 0;
}

static int groups_read(const rd *r, yaml_node_t *vn, const char *path, sm_plan_layer *l)
{
    if (vn->type != YAML_SEQUENCE_NODE)
        return fail_at(r, vn, path, "expected a list of groups like [[0, 3], [1, 2]], got %s", type_name(vn));
    int ng = (int)(vn->data.sequence.items.top - vn->data.sequence.items.start);
    if (ng < 1)
        return fail_at(r, vn, path, "must hold at least one group");
    l->pos_groups = pos_of(vn);
    l->n_groups = ng;
    l->group_len = xcalloc((size_t)ng, sizeof *l->group_len);
    l->groups = xcalloc((size_t)ng, sizeof *l->groups);
    int_set members = {0}; /* expert -> the group it first appeared in */
    int rc = 0;
    for (int g = 0; g < ng && !rc; g++) {
        yaml_node_t *gn = yaml_document_get_node(r->doc, vn->data.sequence.items.start[g]);
        char sub[300];
        snprintf(sub, sizeof sub, "%s[%d]", path, g);
        if (gn->type != YAML_SEQUENCE_NODE) {
            rc = fail_at(r, gn, sub, "a group is a list of expert indices, got %s", type_name(gn));
            break;
        }
        int n = (int)(gn->data.sequence.items.top - gn->data.sequence.items.start);
        if (n < 1) {
            rc = fail_at(r, gn, sub, "a group must hold at least one expert");
            break;
        }
        l->group_len[g] = n;
        l->groups[g] = xcalloc((size_t)n, sizeof(int));
        for (int i = 0; i < n && !rc; i++) {
            yaml_node_t *en = yaml_document_get_node(r->doc, gn->data.sequence.items.start[i]);
            int e, g2;
            if (want_int32(r, en, sub, 0, 1 << 20, &e))
                rc = -1;
            else if (int_set_add(&members, e, g, &g2)) /* the same expert twice, within or across groups */
                rc = g2 == g ? fail_at(r, en, sub, "expert %d appears twice in group %d", e, g)
                             : fail_at(r, en, sub, "expert %d appears in groups %d and %d", e, g2, g);
            else
                l->groups[g][i] = e;
        }
    }
    int_set_free(&members);
    return rc;
}

static int cluster_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx)
{
    sm_plan_layer *l = ctx;
    int64_t idx;
    if (want_int(r, kn, path, 0, 1 << 20, &idx))
        return -1;
    (void)key;
    l->clusters = xrealloc(l->clusters, sizeof *l->clusters * (size_t)(l->n_clusters + 1));
    sm_plan_cluster *c = &l->clusters[l->n_clusters++];
    memset(c, 0, sizeof *c);
    c->index = (int)idx;
    c->pos = pos_of(kn);
    if (vn->type != YAML_MAPPING_NODE)
        return fail_at(r, vn, path, "expected a mapping like {rank: 64}, got %s", type_name(vn));
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        yaml_node_t *k2 = yaml_document_get_node(r->doc, p->key), *v2 = yaml_document_get_node(r->doc, p->value);
        char sub[300];
        snprintf(sub, sizeof sub, "%s.%s", path, scalar(k2) ? scalar(k2) : "?");
        if (scalar(k2) && !strcmp(scalar(k2), "refit")) {
            c->has_refit = true, c->pos_refit = pos_of(v2);
            if (read_enum(r, v2, sub, parse_refit, &c->refit))
                return -1;
            continue;
        }
        if (!scalar(k2) || strcmp(scalar(k2), "rank"))
            return fail_at(r, k2, sub, "unknown key (expected one of: rank, refit)");
        if (read_ranks(r, v2, sub, &c->rank))
            return -1;
    }
    return 0;
}

static int clusters_read(const rd *r, yaml_node_t *vn, const char *path, sm_plan_layer *l)
{
    return each_pair(r, vn, path, NULL, cluster_pair, l);
}

/* ---- sections ------------------------------------------------------------------------------ */

static int layer_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx)
{
    (void)key;
    sm_plan *p = ctx;
    int64_t L;
    if (want_int(r, kn, "layers", 0, 1 << 20, &L))
        return -1;
    p->layers = xrealloc(p->layers, sizeof *p->layers * (size_t)(p->n_layers + 1));
    sm_plan_layer *l = &p->layers[p->n_layers++];
    memset(l, 0, sizeof *l);
    l->layer = (int)L;
    l->pos = pos_of(kn);
    static const char *const keys[] = {"experts", "method", "similarity", "clustering", "router", "align",
                                       "rank", "groups", "clusters", "chosen",
                                       "refit",
                                       NULL};
    settings_ctx c = {p, &l->s, l};
    if (each_pair(r, vn, path, keys, settings_pair, &c))
        return -1;
    if (l->n_groups && l->s.has_experts && l->n_groups != l->s.experts)
        return fail_at(r, yaml_document_get_node(r->doc, vn->data.mapping.pairs.start->key), path,
                       "%d groups but experts: %d", l->n_groups, l->s.experts);
    for (int i = 0; i < l->n_clusters; i++)
        if (l->n_groups && l->clusters[i].index >= l->n_groups)
            return sm_err("%s:%d:%d: %s.clusters.%d: no such group (the layer has %d)", r->file, l->clusters[i].pos.line,
                          l->clusters[i].pos.col, path, l->clusters[i].index, l->n_groups);
    return 0;
}

static int model_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx)
{
    (void)kn;
    sm_plan *p = ctx;
    if (!strcmp(key, "path")) {
        p->pos_model = pos_of(vn);
        return want_string(r, vn, path, &p->model_path);
    }
    const char *s;
    if (want_scalar(r, vn, path, &s))
        return -1;
    size_t n = strlen(s);
    bool ok = n == 24 && !strncmp(s, "fnv1a64:", 8);
    for (size_t i = 8; ok && i < n; i++)
        ok = isxdigit((unsigned char)s[i]) && !isupper((unsigned char)s[i]);
    if (!ok)
        return fail_at(r, vn, path, "expected \"fnv1a64:\" and 16 lowercase hex digits, got '%s'", s);
    memcpy(p->fingerprint, s, n + 1);
    p->has_fingerprint = true;
    p->pos_fingerprint = pos_of(vn);
    return 0;
}

/* calibration.text: one file or a list of them. */
static int text_read(const rd *r, yaml_node_t *vn, const char *path, sm_plan *p)
{
    if (vn->type == YAML_SCALAR_NODE) {
        p->calib.text = xcalloc(1, sizeof *p->calib.text);
        p->calib.n_text = 1;
        return want_string(r, vn, path, &p->calib.text[0]);
    }
    if (vn->type != YAML_SEQUENCE_NODE)
        return fail_at(r, vn, path, "expected a text file or a list of them, got %s", type_name(vn));
    int n = (int)(vn->data.sequence.items.top - vn->data.sequence.items.start);
    if (n < 1)
        return fail_at(r, vn, path, "must name at least one text file");
    p->calib.text = xcalloc((size_t)n, sizeof *p->calib.text);
    p->calib.n_text = n;
    for (int i = 0; i < n; i++)
        if (want_string(r, yaml_document_get_node(r->doc, vn->data.sequence.items.start[i]), path, &p->calib.text[i]))
            return -1;
    return 0;
}

static int want_digest(const rd *r, yaml_node_t *vn, const char *path, char **out)
{
    if (want_string(r, vn, path, out))
        return -1;
    const char *s = *out;
    bool ok = strlen(s) == 24 && !strncmp(s, "fnv1a64:", 8) && strspn(s + 8, "0123456789abcdef") == 16;
    return ok ? 0 : fail_at(r, vn, path, "expected \"fnv1a64:\" and 16 lowercase hex digits, got '%s'", s);
}

static int calib_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx)
{
    (void)kn;
    sm_plan *p = ctx;
    int64_t v;
    if (!strcmp(key, "tokens"))
        return want_string(r, vn, path, &p->calib.tokens);
    if (!strcmp(key, "text"))
        return text_read(r, vn, path, p);
    if (!strcmp(key, "text_field"))
        return want_string(r, vn, path, &p->calib.text_field);
    if (!strcmp(key, "text_digest"))
        return want_digest(r, vn, path, &p->calib.text_digest);
    if (!strcmp(key, "tokenizer_digest"))
        return want_digest(r, vn, path, &p->calib.tokenizer_digest);
    if (!strcmp(key, "stats"))
        return want_string(r, vn, path, &p->calib.stats);
    if (!strcmp(key, "samples"))
        return p->calib.has_samples = true, want_int32(r, vn, path, 1, 1 << 20, &p->calib.samples);
    if (!strcmp(key, "seq_len"))
        return p->calib.has_seq_len = true, want_int32(r, vn, path, 2, 1 << 24, &p->calib.seq_len);
    if (!strcmp(key, "keep"))
        return p->calib.has_keep = true, want_int(r, vn, path, 0, INT32_MAX, &p->calib.keep);
    if (!strcmp(key, "heldout"))
        return p->calib.has_heldout = true, want_int(r, vn, path, 0, INT32_MAX, &p->calib.heldout);
    if (!strcmp(key, "sample"))
        return p->calib.has_sample = true, want_int(r, vn, path, 1, 1 << 20, &p->calib.sample);
    if (want_int(r, vn, path, 0, INT64_MAX, &v))
        return -1;
    p->calib.seed = (uint64_t)v;
    p->calib.has_seed = true;
    return 0;
}

static int output_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx)
{
    (void)kn;
    sm_plan *p = ctx;
    const char *s;
    if (!strcmp(key, "path"))
        return want_string(r, vn, path, &p->output.path);
    if (want_scalar(r, vn, path, &s))
        return -1;
    if (!strcmp(key, "format")) {
        if (sm_out_format_parse(s, &p->output.format))
            return fail_at(r, vn, path, "%s", sm_errmsg());
        p->output.has_format = true;
    } else if (!strcmp(key, "dtype")) {
        sm_dtype d;
        if (!strcmp(s, "source"))
            p->output.dtype = -1;
        else if (!strcmp(s, "f32") || !strcmp(s, "f16") || !strcmp(s, "bf16"))
            sm_dtype_parse(s, &d), p->output.dtype = (int)d;
        else
            return fail_at(r, vn, path, "expected source, f32, f16 or bf16, got '%s'", s);
        p->output.has_dtype = true;
    } else {
        if (quoted(vn) || sm_parse_size(s, &p->output.shard_size))
            return fail_at(r, vn, path, "expected a size like 4G, 500M or 1073741824, got '%s'", s);
        if (p->output.shard_size < (1u << 20))
            return fail_at(r, vn, path, "%s is below the minimum shard size of 1M", s);
        p->output.has_shard_size = true;
    }
    return 0;
}

static int root_pair(const rd *r, const char *path, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ctx)
{
    (void)kn;
    sm_plan *p = ctx;
    if (!strcmp(key, "submoe_plan")) {
        int64_t v;
        const char *s = scalar(vn);
        if (s && !quoted(vn) && strspn(s, "0123456789") == strlen(s) && *s && strcmp(s, "1"))
            return fail_at(r, vn, path, "unsupported version %s (this submoe reads version 1)", s);
        return want_int(r, vn, path, 1, 1, &v);
    }
    if (!strcmp(key, "model")) {
        static const char *const keys[] = {"path", "fingerprint", NULL};
        return each_pair(r, vn, path, keys, model_pair, p);
    }
    if (!strcmp(key, "calibration")) {
        static const char *const keys[] = {"tokens", "samples", "seq_len", "keep", "heldout", "sample",
                                           "seed", "stats", "text", "text_field", "text_digest",
                                           "tokenizer_digest", NULL};
        if (each_pair(r, vn, path, keys, calib_pair, p))
            return -1;
        if (p->calib.tokens && p->calib.n_text)
            return fail_at(r, vn, path, "tokens and text do not go together (one calibration source)");
        if (!p->calib.n_text && (p->calib.text_field || p->calib.text_digest || p->calib.tokenizer_digest))
            return fail_at(r, vn, path, "text_field, text_digest and tokenizer_digest need text");
        return 0;
    }
    if (!strcmp(key, "defaults")) {
        static const char *const keys[] = {"method", "similarity", "clustering", "router", "rank", "align",
                                           "damping", "svd", "seed", "experts", "ratio", "allocation", "window",
                                           "refit",
                                           NULL};
        settings_ctx c = {p, &p->defaults, NULL};
        if (each_pair(r, vn, path, keys, settings_pair, &c))
            return -1;
        if (p->defaults.has_experts && p->has_ratio)
            return fail_at(r, vn, path, "give experts or ratio, not both");
        return 0;
    }
    if (!strcmp(key, "layers"))
        return each_pair(r, vn, path, NULL, layer_pair, p);
    static const char *const keys[] = {"format", "dtype", "shard_size", "path", NULL};
    return each_pair(r, vn, path, keys, output_pair, p);
}

/* Syntax, nesting depth, aliases and document count, with the event parser (the document API
 * would silently resolve aliases, stop after the first document, and scan the whole of a deeply
 * nested file before anything could be checked). */
static int prescan(const char *text, size_t len, const char *file)
{
    yaml_parser_t ps;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&ps))
        return sm_err("%s: out of memory", file);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    int docs = 0, depth = 0, rc = 0;
    for (;;) {
        if (!yaml_parser_parse(&ps, &ev)) {
            rc = sm_err("%s:%zu:%zu: YAML syntax error: %s%s%s", file, ps.problem_mark.line + 1,
                        ps.problem_mark.column + 1, ps.problem ? ps.problem : "malformed",
                        ps.context ? " " : "", ps.context ? ps.context : "");
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_ALIAS_EVENT || ((t == YAML_SCALAR_EVENT && ev.data.scalar.anchor) ||
                                      (t == YAML_SEQUENCE_START_EVENT && ev.data.sequence_start.anchor) ||
                                      (t == YAML_MAPPING_START_EVENT && ev.data.mapping_start.anchor)))
            rc = sm_err("%s:%zu:%zu: anchors and aliases are not supported in plans", file, ev.start_mark.line + 1,
                        ev.start_mark.column + 1);
        else if ((t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) && ++depth > SM_PLAN_MAX_DEPTH)
            rc = sm_err("%s:%zu:%zu: lists and mappings nested more than %d deep", file, ev.start_mark.line + 1,
                        ev.start_mark.column + 1, SM_PLAN_MAX_DEPTH);
        else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT)
            depth--;
        else if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1)
            rc = sm_err("%s:%zu:%zu: a plan file holds one YAML document", file, ev.start_mark.line + 1,
                        ev.start_mark.column + 1);
        yaml_event_delete(&ev);
        if (rc || t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&ps);
    return rc;
}

int sm_plan_parse(const char *text, size_t len, const char *filename, sm_plan *out)
{
    sm_plan_init(out);
    out->file = xstrdup(filename ? filename : "");
    if (len > SM_PLAN_MAX_BYTES)
        return sm_err("%s: %zu bytes is larger than a plan can be (%u)", filename, len, SM_PLAN_MAX_BYTES);
    if (memchr(text, 0, len))
        return sm_err("%s: not a text file (contains NUL bytes)", filename);
    if (prescan(text, len, out->file))
        return -1;
    yaml_parser_t ps;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&ps))
        return sm_err("%s: out of memory", filename);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    int rc = -1;
    if (!yaml_parser_load(&ps, &doc)) {
        sm_err("%s:%zu:%zu: YAML syntax error: %s", out->file, ps.problem_mark.line + 1, ps.problem_mark.column + 1,
               ps.problem ? ps.problem : "malformed");
        yaml_parser_delete(&ps);
        return -1;
    }
    rd r = {out->file, &doc};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        sm_err("%s: empty document (a plan starts with 'submoe_plan: 1')", out->file);
        goto done;
    }
    static const char *const keys[] = {"submoe_plan", "model", "calibration", "defaults", "layers", "output", NULL};
    if (root->type != YAML_MAPPING_NODE) {
        fail_at(&r, root, "(document)", "a plan is a mapping starting with 'submoe_plan: 1', got %s", type_name(root));
        goto done;
    }
    if (each_pair(&r, root, "", keys, root_pair, out))
        goto done;
    bool has_version = false, has_model = false;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(&doc, p->key));
        has_version |= !strcmp(k, "submoe_plan");
        has_model |= !strcmp(k, "model");
    }
    if (!has_version || !has_model || !out->model_path) {
        sm_err("%s:%zu:%zu: %s: missing (a plan needs 'submoe_plan: 1' and 'model: {path: ...}')", out->file,
               root->start_mark.line + 1, root->start_mark.column + 1,
               !has_version ? "submoe_plan" : !has_model ? "model" : "model.path");
        goto done;
    }
    rc = 0;
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return rc;
}

int sm_plan_read(const char *path, sm_plan *out)
{
    size_t len;
    char *text = sm_read_file(path, SM_PLAN_MAX_BYTES, &len);
    if (!text) {
        sm_plan_init(out);
        return -1;
    }
    int rc = sm_plan_parse(text, len, path, out);
    free(text);
    return rc;
}
