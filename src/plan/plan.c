/* plan: the plan structure, model checks and the YAML writer (see plan.h). */
#include "plan/plan.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/publish.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const format_names[SM_OUT_FORMAT_COUNT] = {"hf", "hf-expanded", "submoe"};

const char *sm_out_format_name(sm_out_format f)
{
    return (unsigned)f < SM_OUT_FORMAT_COUNT ? format_names[f] : "?";
}

int sm_out_format_parse(const char *s, sm_out_format *out)
{
    for (int i = 0; i < SM_OUT_FORMAT_COUNT; i++)
        if (!strcmp(s, format_names[i])) {
            *out = (sm_out_format)i;
            return 0;
        }
    return sm_err("unknown output format '%s' (expected hf, hf-expanded or submoe)", s);
}

/* Plan words for the union-basis solvers: "exact" says what a user gets (the literal formula up
 * to rounding), not which LAPACK routine gives it. */
static const char *const svd_names[] = {"auto", "exact", "randomized"};

const char *sm_plan_svd_name(sm_usvd_solver s)
{
    return (unsigned)s < 3 ? svd_names[s] : "?";
}

int sm_plan_svd_parse(const char *s, sm_usvd_solver *out)
{
    const sm_usvd_solver v[3] = {SM_USVD_AUTO, SM_USVD_EIGEN, SM_USVD_RANDOMIZED};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, svd_names[v[i]])) {
            *out = v[i];
            return 0;
        }
    return sm_err("unknown svd solver '%s' (expected auto, exact or randomized)", s ? s : "");
}

sm_merge_opts sm_plan_matrix_opts(const sm_plan_merge *m, sm_rank rank)
{
    sm_merge_opts o;
    memset(&o, 0, sizeof o);
    o.rank = rank;
    o.damping = m->has_damping ? m->damping : 0;
    o.usvd.solver = m->has_svd ? m->svd : SM_USVD_AUTO;
    return o;
}

void sm_plan_init(sm_plan *p)
{
    memset(p, 0, sizeof *p);
    p->output.dtype = -1;
}

void sm_plan_layer_free(sm_plan_layer *l)
{
    if (!l)
        return;
    for (int g = 0; g < l->n_groups; g++)
        free(l->groups[g]);
    free(l->groups);
    free(l->group_len);
    free(l->clusters);
    free(l->chosen);
    free(l->comment);
    memset(l, 0, sizeof *l);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void sm_plan_layer_copy(sm_plan_layer *dst, const sm_plan_layer *src)
{
    *dst = *src;
    dst->chosen = dup_or_null(src->chosen);
    dst->comment = dup_or_null(src->comment);
    dst->clusters = NULL;
    if (src->n_clusters) {
        dst->clusters = xcalloc((size_t)src->n_clusters, sizeof *dst->clusters);
        memcpy(dst->clusters, src->clusters, sizeof *dst->clusters * (size_t)src->n_clusters);
    }
    dst->group_len = NULL, dst->groups = NULL;
    if (src->n_groups) {
        dst->group_len = xcalloc((size_t)src->n_groups, sizeof *dst->group_len);
        dst->groups = xcalloc((size_t)src->n_groups, sizeof *dst->groups);
        for (int g = 0; g < src->n_groups; g++) {
            dst->group_len[g] = src->group_len[g];
            dst->groups[g] = xcalloc((size_t)(src->group_len[g] > 0 ? src->group_len[g] : 1), sizeof(int));
            memcpy(dst->groups[g], src->groups[g], sizeof(int) * (size_t)src->group_len[g]);
        }
    }
}

void sm_plan_free(sm_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_layers; i++)
        sm_plan_layer_free(&p->layers[i]);
    free(p->layers);
    free(p->file);
    free(p->model_path);
    free(p->calib.tokens);
    free(p->calib.stats);
    for (int i = 0; i < p->calib.n_text; i++)
        free(p->calib.text[i]);
    free(p->calib.text);
    free(p->calib.text_field);
    free(p->calib.text_digest);
    free(p->calib.tokenizer_digest);
    free(p->output.path);
    free(p->header_comment);
    sm_plan_init(p);
}

char *sm_plan_resolve_path(const sm_plan *p, const char *written)
{
    if (!written)
        return NULL;
    if (written[0] == '/' || !p->file || !*p->file || !strchr(p->file, '/'))
        return xstrdup(written);
    const char *slash = strrchr(p->file, '/');
    return xasprintf("%.*s/%s", (int)(slash - p->file), p->file, written);
}

const sm_plan_layer *sm_plan_find_layer(const sm_plan *p, int layer)
{
    for (int i = 0; i < p->n_layers; i++)
        if (p->layers[i].layer == layer)
            return &p->layers[i];
    return NULL;
}

const char *sm_plan_refit_name(bool refit)
{
    return refit ? "down" : "none";
}

int sm_plan_refit_parse(const char *s, bool *out)
{
    if (!strcmp(s, "down") || !strcmp(s, "none"))
        return *out = !strcmp(s, "down"), 0;
    return sm_err("unknown refit '%s' (expected down or none)", s);
}

sm_router_mode sm_plan_default_router(const sm_plan *p)
{
    return p->output.has_format && p->output.format == SM_OUT_HF ? SM_PLAN_DEFAULT_COLLAPSE : SM_PLAN_DEFAULT_ROUTER;
}

#define PICK(field, has, dflt) (pl && pl->s.has) ? pl->s.field : p->defaults.has ? p->defaults.field : (dflt)

void sm_plan_effective_settings(const sm_plan *p, const sm_plan_layer *pl, sm_plan_effective *out)
{
    out->is_auto = PICK(method_auto, has_method, SM_PLAN_DEFAULT_AUTO);
    out->method = out->is_auto ? SM_PLAN_DEFAULT_METHOD : PICK(method, has_method, SM_PLAN_DEFAULT_METHOD);
    out->router = PICK(router, has_router, sm_plan_default_router(p));
    out->align = PICK(align, has_align, false);
    out->refit = PICK(refit, has_refit, SM_PLAN_DEFAULT_REFIT);
    out->clustering = PICK(clustering, has_clustering, SM_CLUSTER_KMEANS);
    out->similarity = PICK(similarity, has_similarity, SM_SIM_OUTPUT);
    for (int j = 0; j < 3; j++)
        out->rank[j] = pl && pl->s.rank.set[j]  ? pl->s.rank.r[j]
                       : p->defaults.rank.set[j] ? p->defaults.rank.r[j]
                                                 : (sm_rank){SM_RANK_FULL, 0, 0};
}

#undef PICK

int sm_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30, end++;
    else if (*end == 'T' || *end == 't')
        mul = 1ull << 40, end++;
    if (mul > 1 && (*end == 'B' || *end == 'b'))
        end++;
    if (*end || (v && mul > UINT64_MAX / v))
        return -1;
    *out = v * mul;
    return 0;
}

/* ---- model checks -------------------------------------------------------------------------- */

static int at(const sm_plan *p, sm_plan_pos pos, const char *fmt, ...) SM_PRINTF(3, 4);
static int at(const sm_plan *p, sm_plan_pos pos, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pos.line > 0)
        return sm_err("%s:%d:%d: %s", p->file, pos.line, pos.col, msg);
    return sm_err("%s: %s", p->file && *p->file ? p->file : "plan", msg);
}

static int check_ranks(const sm_plan *p, const sm_plan_ranks *rk, const char *key, int64_t inter, int64_t hidden,
                       int members)
{
    for (int j = 0; j < 3; j++) {
        if (!rk->set[j] || rk->r[j].kind != SM_RANK_COUNT)
            continue;
        int64_t out = j == 2 ? hidden : inter, in = j == 2 ? inter : hidden;
        int64_t max = out < members * in ? out : members * in;
        static const char *const mat[3] = {"gate", "up", "down"};
        if (rk->r[j].count > max)
            return at(p, rk->pos[j], "%s.%s: rank %" PRId64 " exceeds the maximum %" PRId64
                                     " for a cluster of %d (%" PRId64 "x%" PRId64 " matrices)",
                      key, mat[j], rk->r[j].count, max, members, out, in);
    }
    return 0;
}

/* refit: down rewrites a dense down projection; submoe-whitened below full rank stores it as two
 * factors (refit before factoring is not supported). */
static int check_refit(const sm_plan *p, const sm_plan_effective *eff, bool refit, const sm_rank *down,
                       sm_plan_pos pos, const char *key)
{
    if (!refit || eff->is_auto || eff->method != SM_MERGE_SUBMOE_WHITENED || down->kind == SM_RANK_FULL)
        return 0;
    char r[32];
    sm_rank_format(down, r, sizeof r);
    return at(p, pos, "%s: refit: down needs a dense down projection, but submoe-whitened at rank %s stores it as "
                      "two factors; give the down projection rank full or set refit: none", key, r);
}

int sm_plan_check_model(const sm_plan *p, const sm_model *m)
{
    const sm_config *c = sm_model_config(m);
    if (p->has_fingerprint) {
        char fp[32];
        sm_model_fingerprint(m, fp);
        if (strcmp(fp, p->fingerprint))
            return at(p, p->pos_fingerprint,
                      "model.fingerprint: %s does not match the model in %s (%s): the plan was made for another "
                      "model or the model changed",
                      p->fingerprint, sm_model_dir(m), fp);
    }
    int64_t H = c->hidden;
    int first_moe = -1;
    for (int l = 0; l < c->n_layers && first_moe < 0; l++)
        if (c->is_moe[l])
            first_moe = l;
    if (p->defaults.has_experts && first_moe >= 0 && p->defaults.experts > sm_model_layer_experts(m, first_moe))
        return at(p, p->defaults.pos_experts, "defaults.experts: %d is more than the %d experts of a layer",
                  p->defaults.experts, sm_model_layer_experts(m, first_moe));
    /* Fewer experts than each token is routed to leave fewer router rows than top-k: only a
     * merge that keeps every router row (remap) can do that. */
    sm_plan_effective dflt;
    sm_plan_effective_settings(p, NULL, &dflt);
    bool dflt_remap_merge = !dflt.is_auto && sm_merge_method_merges(dflt.method) && dflt.router == SM_ROUTER_REMAP;
    if (check_refit(p, &dflt, dflt.refit, &dflt.rank[2],
                    p->defaults.has_refit ? p->defaults.pos_refit : p->defaults.rank.pos[2], "defaults.refit"))
        return -1;
    if (p->defaults.has_experts && p->defaults.experts < c->top_k && !dflt_remap_merge)
        return at(p, p->defaults.pos_experts,
                  "defaults.experts: %d is fewer than the %d experts each token is routed to (only a merge with "
                  "router: remap keeps the router's rows)",
                  p->defaults.experts, c->top_k);
    for (int i = 0; i < p->n_layers; i++) {
        const sm_plan_layer *l = &p->layers[i];
        char key[64];
        snprintf(key, sizeof key, "layers.%d", l->layer);
        for (int j = 0; j < i; j++)
            if (p->layers[j].layer == l->layer)
                return at(p, l->pos, "%s: layer given twice", key);
        if (l->layer >= c->n_layers || !c->is_moe[l->layer])
            return at(p, l->pos, "%s: the model has no MoE layer %d (%d layers%s)", key, l->layer, c->n_layers,
                      l->layer < c->n_layers ? "; that one is dense" : "");
        int n = sm_model_layer_experts(m, l->layer);
        sm_weight w;
        if (sm_model_weight(m, SM_W_EXPERT_GATE, l->layer, 0, &w))
            return -1;
        int64_t inter = w.rows;
        if (l->s.has_experts && l->s.experts > n)
            return at(p, l->s.pos_experts, "%s.experts: %d is more than the layer's %d experts", key, l->s.experts,
                      n);
        sm_plan_effective eff;
        sm_plan_effective_settings(p, l, &eff);
        int kk = l->n_groups ? l->n_groups : l->s.has_experts ? l->s.experts : 0;
        if (kk && kk < c->top_k && (eff.is_auto || eff.method != SM_MERGE_KEEP) &&
            !(!eff.is_auto && sm_merge_method_merges(eff.method) && eff.router == SM_ROUTER_REMAP))
            return at(p, l->s.has_experts ? l->s.pos_experts : l->pos_groups,
                      "%s.%s: %d, fewer than the %d experts each token is routed to (only a merge with router: "
                      "remap keeps the router's rows)",
                      key, l->s.has_experts ? "experts" : "groups", kk, c->top_k);
        int *seen = NULL;
        if (l->n_groups) {
            seen = xcalloc((size_t)n, sizeof *seen);
            for (int g = 0; g < l->n_groups; g++)
                for (int e = 0; e < l->group_len[g]; e++) {
                    int x = l->groups[g][e];
                    if (x >= n) {
                        free(seen);
                        return at(p, l->pos_groups, "%s.groups: expert %d is out of range (the layer has %d: 0..%d)",
                                  key, x, n, n - 1);
                    }
                    seen[x] = 1;
                }
            for (int e = 0; e < n; e++)
                if (!seen[e]) {
                    free(seen);
                    return at(p, l->pos_groups, "%s.groups: expert %d is in no group (every expert must be in "
                                                "exactly one)",
                              key, e);
                }
            free(seen);
        }
        /* Ranks: at the layer level against the largest cluster, per cluster against its own. */
        int maxm = 1;
        for (int g = 0; g < l->n_groups; g++)
            maxm = l->group_len[g] > maxm ? l->group_len[g] : maxm;
        if (!l->n_groups)
            maxm = n;
        char rk[100];
        snprintf(rk, sizeof rk, "%s.rank", key);
        if (check_ranks(p, &l->s.rank, rk, inter, H, maxm))
            return -1;
        snprintf(rk, sizeof rk, "%s.refit", key);
        if (check_refit(p, &eff, eff.refit, &eff.rank[2],
                        l->s.has_refit ? l->s.pos_refit : l->s.rank.set[2] ? l->s.rank.pos[2] : l->pos, rk))
            return -1;
        for (int q = 0; q < l->n_clusters; q++) {
            const sm_plan_cluster *cl = &l->clusters[q];
            if (!l->n_groups)
                return at(p, cl->pos, "%s.clusters.%d: per-cluster settings need explicit groups", key, cl->index);
            for (int q2 = 0; q2 < q; q2++)
                if (l->clusters[q2].index == cl->index)
                    return at(p, cl->pos, "%s.clusters.%d: cluster given twice", key, cl->index);
            snprintf(rk, sizeof rk, "%s.clusters.%d.rank", key, cl->index);
            if (check_ranks(p, &cl->rank, rk, inter, H, l->group_len[cl->index]))
                return -1;
            snprintf(rk, sizeof rk, "%s.clusters.%d.refit", key, cl->index);
            if (check_refit(p, &eff, cl->has_refit ? cl->refit : eff.refit,
                            cl->rank.set[2] ? &cl->rank.r[2] : &eff.rank[2],
                            cl->has_refit ? cl->pos_refit : cl->rank.set[2] ? cl->rank.pos[2] : cl->pos, rk))
                return -1;
        }
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) SM_PRINTF(2, 3);
static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->buf = xrealloc(b->buf, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* YAML scalar for a string: plain when safe, else double-quoted. */
static void put_str(sbuf *b, const char *s)
{
    bool plain = *s && !strchr(":#{}[],&*!|>'\"%@`", s[0]) && s[0] != '-' && s[0] != ' ';
    for (const char *c = s; plain && *c; c++)
        plain = (unsigned char)*c >= 0x20 && *c != '#' && !(c[0] == ':' && (c[1] == ' ' || !c[1]));
    plain = plain && s[strlen(s) - 1] != ' ' && strcmp(s, "true") && strcmp(s, "false") && strcmp(s, "null");
    if (plain) {
        char *end;
        strtod(s, &end);
        plain = *end != 0; /* a string that reads as a number must be quoted */
    }
    if (plain) {
        put(b, "%s", s);
        return;
    }
    put(b, "\"");
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\')
            put(b, "\\%c", *c);
        else if ((unsigned char)*c < 0x20)
            put(b, "\\x%02x", (unsigned char)*c);
        else
            put(b, "%c", *c);
    }
    put(b, "\"");
}

/* Shortest representation that reads back equal. */
static void put_double(sbuf *b, double v)
{
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    if (!strpbrk(tmp, ".eEn"))
        strcat(tmp, ".0");
    put(b, "%s", tmp);
}

static void put_rank(sbuf *b, const sm_rank *r)
{
    if (r->kind == SM_RANK_FRACTION)
        put_double(b, r->fraction);
    else if (r->kind == SM_RANK_COUNT)
        put(b, "%" PRId64, r->count);
    else
        put(b, "full");
}

static void put_ranks(sbuf *b, const sm_plan_ranks *rk)
{
    bool all = rk->set[0] && rk->set[1] && rk->set[2] && sm_rank_equal(&rk->r[0], &rk->r[1]) &&
               sm_rank_equal(&rk->r[0], &rk->r[2]);
    if (all) {
        put_rank(b, &rk->r[0]);
        return;
    }
    static const char *const mat[3] = {"gate", "up", "down"};
    put(b, "{");
    int first = 1;
    for (int j = 0; j < 3; j++)
        if (rk->set[j]) {
            put(b, "%s%s: ", first ? "" : ", ", mat[j]);
            put_rank(b, &rk->r[j]);
            first = 0;
        }
    put(b, "}");
}

static bool any_rank(const sm_plan_ranks *rk)
{
    return rk->set[0] || rk->set[1] || rk->set[2];
}

static void put_comment(sbuf *b, const char *indent, const char *text)
{
    for (const char *s = text; s && *s;) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        put(b, "%s# %.*s\n", indent, (int)n, s);
        s = nl ? nl + 1 : s + n;
    }
}

static void put_settings(sbuf *b, const char *ind, const sm_plan_settings *s)
{
    if (s->has_experts)
        put(b, "%sexperts: %d\n", ind, s->experts);
    if (s->has_method)
        put(b, "%smethod: %s\n", ind, s->method_auto ? "auto" : sm_merge_method_name(s->method));
    if (s->has_similarity)
        put(b, "%ssimilarity: %s\n", ind, sm_similarity_kind_name(s->similarity));
    if (s->has_clustering)
        put(b, "%sclustering: %s\n", ind, sm_cluster_algo_name(s->clustering));
    if (s->has_router)
        put(b, "%srouter: %s\n", ind, sm_router_mode_name(s->router));
    if (s->has_align)
        put(b, "%salign: %s\n", ind, s->align ? "true" : "false");
    if (s->has_refit)
        put(b, "%srefit: %s\n", ind, sm_plan_refit_name(s->refit));
    if (any_rank(&s->rank)) {
        put(b, "%srank: ", ind);
        put_ranks(b, &s->rank);
        put(b, "\n");
    }
}

static int format(const sm_plan *p, bool comments, char **text, size_t *len);

int sm_plan_format(const sm_plan *p, char **text, size_t *len)
{
    return format(p, true, text, len);
}

int sm_plan_format_bare(const sm_plan *p, char **text, size_t *len)
{
    return format(p, false, text, len);
}

static int format(const sm_plan *p, bool comments, char **text, size_t *len)
{
    sbuf b = {0};
    if (p->header_comment && comments)
        put_comment(&b, "", p->header_comment);
    put(&b, "submoe_plan: %d\n", SM_PLAN_VERSION);
    put(&b, "model:\n  path: ");
    put_str(&b, p->model_path ? p->model_path : "");
    put(&b, "\n");
    if (p->has_fingerprint)
        put(&b, "  fingerprint: \"%s\"\n", p->fingerprint);
    const typeof(p->calib) *c = &p->calib;
    if (c->tokens || c->stats || c->n_text || c->has_samples || c->has_seq_len || c->has_keep || c->has_heldout ||
        c->has_sample || c->has_seed) {
        put(&b, "calibration:\n");
        if (c->tokens)
            put(&b, "  tokens: "), put_str(&b, c->tokens), put(&b, "\n");
        if (c->n_text)
            put(&b, "  text:\n");
        for (int i = 0; i < c->n_text; i++)
            put(&b, "    - "), put_str(&b, c->text[i]), put(&b, "\n");
        if (c->text_field)
            put(&b, "  text_field: "), put_str(&b, c->text_field), put(&b, "\n");
        if (c->text_digest)
            put(&b, "  text_digest: "), put_str(&b, c->text_digest), put(&b, "\n");
        if (c->tokenizer_digest)
            put(&b, "  tokenizer_digest: "), put_str(&b, c->tokenizer_digest), put(&b, "\n");
        if (c->has_samples)
            put(&b, "  samples: %d\n", c->samples);
        if (c->has_seq_len)
            put(&b, "  seq_len: %d\n", c->seq_len);
        if (c->has_keep)
            put(&b, "  keep: %" PRId64 "\n", c->keep);
        if (c->has_heldout)
            put(&b, "  heldout: %" PRId64 "\n", c->heldout);
        if (c->has_sample)
            put(&b, "  sample: %" PRId64 "\n", c->sample);
        if (c->has_seed)
            put(&b, "  seed: %" PRIu64 "\n", c->seed);
        if (c->stats)
            put(&b, "  stats: "), put_str(&b, c->stats), put(&b, "\n");
    }
    sbuf d = {0};
    put_settings(&d, "  ", &p->defaults);
    if (p->has_ratio)
        put(&d, "  ratio: "), put_double(&d, p->ratio), put(&d, "\n");
    if (p->has_allocation)
        put(&d, "  allocation: %s\n", p->adaptive ? "adaptive" : "uniform");
    if (p->has_window)
        put(&d, "  window: %d\n", p->window);
    if (p->merge.has_damping)
        put(&d, "  damping: "), put_double(&d, p->merge.damping), put(&d, "\n");
    if (p->merge.has_svd)
        put(&d, "  svd: %s\n", sm_plan_svd_name(p->merge.svd));
    if (p->has_seed)
        put(&d, "  seed: %" PRIu64 "\n", p->seed);
    if (d.len)
        put(&b, "defaults:\n%s", d.buf);
    free(d.buf);
    if (p->n_layers) {
        put(&b, "layers:\n");
        for (int i = 0; i < p->n_layers; i++) {
            const sm_plan_layer *l = &p->layers[i];
            if (l->comment && comments)
                put_comment(&b, "  ", l->comment);
            put(&b, "  %d:\n", l->layer);
            size_t body = b.len; /* a layer with nothing set is written as an empty mapping */
            put_settings(&b, "    ", &l->s);
            if (l->n_groups) {
                put(&b, "    groups: [");
                for (int g = 0; g < l->n_groups; g++) {
                    put(&b, "%s[", g ? ", " : "");
                    for (int e = 0; e < l->group_len[g]; e++)
                        put(&b, "%s%d", e ? ", " : "", l->groups[g][e]);
                    put(&b, "]");
                }
                put(&b, "]\n");
            }
            if (l->n_clusters) {
                put(&b, "    clusters:\n");
                for (int q = 0; q < l->n_clusters; q++) {
                    const sm_plan_cluster *cl = &l->clusters[q];
                    put(&b, "      %d: {", cl->index);
                    if (any_rank(&cl->rank))
                        put(&b, "rank: "), put_ranks(&b, &cl->rank);
                    if (cl->has_refit)
                        put(&b, "%srefit: %s", any_rank(&cl->rank) ? ", " : "", sm_plan_refit_name(cl->refit));
                    put(&b, "}\n");
                }
            }
            if (l->chosen)
                put(&b, "    chosen: "), put_str(&b, l->chosen), put(&b, "\n");
            if (b.len == body) {
                b.len--; /* the newline after "N:" */
                put(&b, " {}\n");
            }
        }
    }
    const typeof(p->output) *o = &p->output;
    if (o->has_format || o->has_dtype || o->has_shard_size || o->path) {
        put(&b, "output:\n");
        if (o->has_format)
            put(&b, "  format: %s\n", sm_out_format_name(o->format));
        if (o->has_dtype)
            put(&b, "  dtype: %s\n", o->dtype < 0 ? "source" : o->dtype == SM_DT_F32 ? "f32" : o->dtype == SM_DT_F16 ? "f16" : "bf16");
        if (o->has_shard_size)
            put(&b, "  shard_size: %" PRIu64 "\n", o->shard_size);
        if (o->path)
            put(&b, "  path: "), put_str(&b, o->path), put(&b, "\n");
    }
    *text = b.buf;
    *len = b.len;
    return 0;
}

int sm_plan_write(const sm_plan *p, const char *path)
{
    char *text;
    size_t len;
    if (sm_plan_format(p, &text, &len))
        return -1;
    int rc = sm_write_file_atomic(path, text, len);
    free(text);
    return rc;
}
