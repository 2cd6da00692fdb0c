/* guard: method auto's plan-level guard (see guard.h). */
#include "pipeline/guard.h"
#include "engine/align.h"
#include "util/diag.h"
#include "util/mem.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* The first word of an auto `why` (the candidate's name) into buf; false when it does not fit. */
static bool first_word(const char *why, char *buf, size_t len)
{
    size_t n = strcspn(why, " ");
    if (n == 0 || n >= len)
        return false;
    memcpy(buf, why, n);
    buf[n] = 0;
    return true;
}

int sm_guard_candidate_job(const sm_layer_job *job, const char *name, sm_layer_job *out)
{
    char word[SM_GUARD_NAME_LEN];
    sm_merge_method method;
    bool align;
    if (!first_word(name, word, sizeof word) || sm_auto_choice_parse(word, &method, &align))
        return -1;
    const char *tag = strchr(word, '/');
    if (tag && strcmp(tag, "/dominant") && strcmp(tag, "/reap"))
        return -1;
    *out = *job;
    out->spec.method = method;
    out->spec.align = align;
    out->spec.refit = sm_auto_choice_refit(word); /* a candidate's refit is the whole layer's */
    out->spec.cluster_refit = NULL;
    out->spec.align_memo = NULL;
    out->regroup = false;
    if (tag) { /* as auto made them: from the output similarity, whatever the job clusters on */
        out->groups = NULL;
        out->algo = !strcmp(tag, "/dominant") ? SM_CLUSTER_DOMINANT : SM_CLUSTER_REAP;
        out->sim = SM_SIM_OUTPUT;
    }
    return 0;
}

/* The uniform candidates: every name auto scored on some layer ("<choice> (<metric>: name score,
 * name score, ...)"), in order of first appearance, except refits (auto refits its best merge of
 * each layer, so "+refit" is no single method). */
static void collect_candidates(const sm_guard_layer *layers, int n_layers, sm_guard *g)
{
    for (int l = 0; l < n_layers; l++) {
        const char *s = layers[l].job && layers[l].chosen ? strstr(layers[l].chosen, ": ") : NULL;
        while (s && g->n_plans < SM_GUARD_MAX_PLANS) {
            s += 2;
            char word[SM_GUARD_NAME_LEN];
            bool known = false;
            if (first_word(s, word, sizeof word) && !strstr(word, "+refit")) {
                for (int i = 1; i < g->n_plans && !known; i++)
                    known = !strcmp(g->name[i], word);
                if (!known)
                    snprintf(g->name[g->n_plans++], SM_GUARD_NAME_LEN, "%s", word);
            }
            s = strstr(s, ", ");
        }
    }
}

/* One layer's builds, kept for every plan when they fit (see guard_prebuild). */
typedef struct {
    sm_moe_layer src;                       /* loaded once, borrowed by every build */
    bool loaded;
    sm_layer_build *b[SM_GUARD_MAX_PLANS];  /* [i]: uniform candidate i; [0]: the layer's own choice
                                             * (auto, when it is no uniform candidate) or its job */
} guard_layer_builds;

typedef struct {
    const sm_model *m;
    sm_calib *c;
    const sm_guard_layer *layers;
    int n_layers;
    const sm_guard *g;
    const char *uniform;       /* the candidate on every auto layer, or NULL: each layer's own choice */
    guard_layer_builds *kept;  /* n_layers, or NULL: every plan builds its layers as the pass reaches them */
    const sm_moe_block **blocks;
} guard_ctx;

/* The job layer l has in plan `uniform` (NULL: the per-layer plan). */
static int layer_job(const guard_ctx *x, int l, const char *uniform, sm_layer_job *j)
{
    const sm_guard_layer *gl = &x->layers[l];
    *j = *gl->job;
    j->no_output_error = true; /* only the block runs */
    if (gl->chosen && sm_guard_candidate_job(j, uniform ? uniform : gl->chosen, j))
        return sm_err("layer %d: auto's choice \"%.60s\" names no candidate", l, gl->chosen);
    return 0;
}

static int guard_build(void *ctx, int layer, const sm_monitor *mon, sm_layer_build *out)
{
    const guard_ctx *x = ctx;
    sm_layer_job j;
    if (layer >= x->n_layers || !x->layers[layer].job)
        return 1;
    return layer_job(x, layer, x->uniform, &j) || sm_layer_build_run(x->m, x->c, &j, mon, out) ? -1 : 0;
}

/* The index of the uniform candidate an auto layer chose, or 0 when it is none (a refit). */
static int chosen_index(const sm_guard *g, const char *chosen)
{
    char word[SM_GUARD_NAME_LEN];
    for (int i = 1; i < g->n_plans && first_word(chosen, word, sizeof word); i++)
        if (!strcmp(g->name[i], word))
            return i;
    return 0;
}

/* Builds kept for every plan at most this many bytes (the model's parameters in fp32 once per
 * plan: pruned layers point into the source, merged ones hold fewer experts than it). */
#define GUARD_KEEP_BYTES ((uint64_t)2 << 30)

/* Every build every plan needs, layer by layer, each once: the layer's weights loaded once and one
 * alignment memo for its candidates, as auto's search shares them. */
static int guard_prebuild(guard_ctx *x, const sm_monitor *mon)
{
    const sm_guard *g = x->g;
    for (int l = 0; l < x->n_layers; l++) {
        const sm_guard_layer *gl = &x->layers[l];
        guard_layer_builds *k = &x->kept[l];
        if (!gl->job)
            continue;
        sm_monitor_span span;
        if (sm_moe_layer_load_mon(x->m, l, sm_monitor_span_init(&span, mon, (double)l / x->n_layers,
                                                                (double)l / x->n_layers), &k->src))
            return -1;
        k->loaded = true;
        sm_align_memo *memo = gl->chosen ? sm_align_memo_new(sm_model_layer_experts(x->m, l)) : NULL;
        int rc = gl->chosen && !memo ? -1 : 0;
        for (int i = 0; i < g->n_plans && !rc; i++) {
            if (gl->chosen ? i == 0 && chosen_index(g, gl->chosen) : i > 0)
                continue;
            sm_layer_job j;
            rc = layer_job(x, l, gl->chosen && i ? g->name[i] : NULL, &j) || !(k->b[i] = sm_zalloc(1, sizeof *k->b[i]));
            j.spec.align_memo = memo;
            rc = rc ? -1
                    : sm_layer_build_on(x->m, x->c, &j,
                                        sm_monitor_span_init(&span, mon, (l + (double)i / g->n_plans) / x->n_layers,
                                                             (l + (i + 1.0) / g->n_plans) / x->n_layers),
                                        &k->src, k->b[i]);
            if (rc && k->b[i]) {
                free(k->b[i]);
                k->b[i] = NULL;
            }
        }
        sm_align_memo_free(memo);
        if (rc)
            return -1;
    }
    return 0;
}

static void guard_kept_free(guard_ctx *x)
{
    for (int l = 0; x->kept && l < x->n_layers; l++) {
        for (int i = 0; i < SM_GUARD_MAX_PLANS; i++)
            if (x->kept[l].b[i]) {
                sm_layer_build_free(x->kept[l].b[i]);
                free(x->kept[l].b[i]);
            }
        if (x->kept[l].loaded)
            sm_moe_layer_free(&x->kept[l].src);
    }
    free(x->kept);
    free(x->blocks);
    x->kept = NULL, x->blocks = NULL;
}

/* Whether every auto layer chose `name` (the uniform plan is the composed one). */
static bool composed_is(const sm_guard_layer *layers, int n_layers, const char *name)
{
    char word[SM_GUARD_NAME_LEN];
    for (int l = 0; l < n_layers; l++)
        if (layers[l].job && layers[l].chosen &&
            !(first_word(layers[l].chosen, word, sizeof word) && !strcmp(word, name)))
            return false;
    return true;
}

/* Held-out loss (nats/token) of plan i of g on n windows from ids. */
static int plan_loss(const sm_guard *g, guard_ctx *x, int i, const int32_t *ids, int n, const sm_monitor *mon,
                     double *loss)
{
    x->uniform = i ? g->name[i] : NULL;
    double ppl;
    int rc;
    if (x->kept) {
        for (int l = 0; l < x->n_layers; l++) {
            const guard_layer_builds *k = &x->kept[l];
            int b = !x->layers[l].job ? -1 : !x->layers[l].chosen ? 0 : i ? i : chosen_index(g, x->layers[l].chosen);
            x->blocks[l] = b >= 0 ? &k->b[b]->block : NULL;
        }
        rc = sm_perplexity_with(x->m, ids, n, g->seq_len, x->blocks, mon, &ppl);
    } else {
        rc = sm_perplexity_built(x->m, ids, n, g->seq_len, guard_build, x, mon, &ppl);
    }
    if (rc)
        return -1;
    *loss = log(ppl);
    if (!isfinite(*loss))
        return sm_err("auto's plan guard: the held-out loss of %s is not finite: the calibration inputs or the "
                      "merged weights overflow float32", i ? g->name[i] : "the per-layer choice");
    return 0;
}

int sm_guard_run(const sm_model *m, sm_calib *c, const sm_guard_layer *layers, int n_layers, const sm_monitor *mon,
                 sm_guard *g)
{
    memset(g, 0, sizeof *g);
    const int32_t *ids;
    int n_auto = 0;
    for (int l = 0; l < n_layers; l++)
        if (layers[l].job && layers[l].chosen) {
            if (!strstr(layers[l].chosen, "(held-out loss"))
                return 0; /* scored by block error: no forward pass to compare whole plans by */
            n_auto++;
        }
    if (!n_auto || sm_calib_guard_windows(c, &ids, &g->n_windows, &g->seq_len))
        return 0;
    snprintf(g->name[0], SM_GUARD_NAME_LEN, "per-layer");
    g->n_plans = 1;
    collect_candidates(layers, n_layers, g);
    guard_ctx x = {m, c, layers, n_layers, g, NULL, NULL, NULL};
    if ((uint64_t)sm_model_param_count(m) * sizeof(float) * (uint64_t)g->n_plans <= GUARD_KEEP_BYTES) {
        x.kept = sm_zalloc((size_t)n_layers, sizeof *x.kept);
        x.blocks = sm_zalloc((size_t)n_layers, sizeof *x.blocks);
        sm_monitor_span span;
        if (!x.kept || !x.blocks || guard_prebuild(&x, sm_monitor_span_init(&span, mon, 0.0, 0.4))) {
            guard_kept_free(&x);
            g->n_plans = 0;
            return -1;
        }
    }
    /* every plan on the first half of the windows, those within SM_GUARD_DROP of the best there
     * on the second half too; every window has seq_len − 1 predictions, so the loss over all is
     * the windows-weighted mean of the two */
    g->n_first = (g->n_windows + 1) / 2;
    const int n_second = g->n_windows - g->n_first;
    const int n = g->n_plans;
    double best_first = INFINITY;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        g->same[i] = i > 0 && composed_is(layers, n_layers, g->name[i]); /* the per-layer plan again */
        sm_monitor_span span;
        if (!g->same[i])
            rc = plan_loss(g, &x, i, ids, g->n_first, sm_monitor_span_init(&span, mon, 0.4 + 0.4 * i / n, 0.4 + 0.4 * (i + 1) / n),
                           &g->first[i]);
        else
            g->first[i] = g->first[0];
        best_first = fmin(best_first, g->first[i]);
    }
    g->best_first = best_first;
    for (int i = 0; i < n && !rc; i++) {
        g->loss[i] = g->first[i];
        g->dropped[i] = g->first[i] > best_first + SM_GUARD_DROP;
        sm_monitor_span span;
        double second = g->first[i];
        if (!g->dropped[i] && n_second > 0)
            rc = g->same[i] ? (second = g->second0, 0)
                            : plan_loss(g, &x, i, ids + (size_t)g->n_first * (size_t)g->seq_len, n_second,
                                        sm_monitor_span_init(&span, mon, 0.8 + 0.2 * i / n, 0.8 + 0.2 * (i + 1) / n),
                                        &second);
        if (i == 0)
            g->second0 = second;
        g->loss[i] = (g->first[i] * g->n_first + second * n_second) / g->n_windows;
        if (!g->dropped[i] && (g->dropped[g->best] || g->loss[i] < g->loss[g->best]))
            g->best = i;
    }
    guard_kept_free(&x);
    if (rc)
        g->n_plans = 0;
    return rc;
}

const char *sm_guard_choice(const sm_guard *g)
{
    return g->n_plans > 0 && g->best > 0 ? g->name[g->best] : NULL;
}

void sm_guard_note(const sm_guard *g, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len,
                                "auto's plan guard, held-out loss on %d windows of %d tokens the per-layer choice did "
                                "not see (nats/token; a plan more than %g above the best on the first %d is dropped "
                                "there, shown by how much):",
                                g->n_windows, g->seq_len, SM_GUARD_DROP, g->n_first);
    for (int i = 0; i < g->n_plans && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s %s%s %s%.4f", i ? "," : "", i ? "uniform " : "", g->name[i],
                              g->dropped[i] ? "dropped +" : "", g->dropped[i] ? g->first[i] - g->best_first : g->loss[i]);
    if (n < len)
        snprintf(buf + n, len - n, "; kept: %s%s", g->best ? "uniform " : "", g->name[g->best]);
}
