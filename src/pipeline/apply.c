/* apply: resolve a plan and write the merged model (see apply.h). */
#include "config.h"
#include "pipeline/apply.h"
#include "pipeline/planner.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/hash.h"
#include "util/jsonout.h"
#include "util/mem.h"
#include "util/progress.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

void sm_resolved_plan_free(sm_resolved_plan *r)
{
    if (!r)
        return;
    for (int l = 0; r->layers && l < r->n_layers; l++) {
        free(r->layers[l].assign);
        free(r->layers[l].cluster);
        free(r->layers[l].auto_why);
    }
    free(r->layers);
    free(r->outdir);
    sm_calib_free(r->calib);
    sm_model_close(r->model);
    memset(r, 0, sizeof *r);
}

static int calibrate(const sm_plan *p, sm_resolved_plan *r, const sm_monitor *mon, bool quiet)
{
    sm_calib_spec s;
    sm_calib_spec_default(&s);
    if (p->calib.has_samples)
        s.samples = p->calib.samples;
    if (p->calib.has_seq_len)
        s.seq_len = p->calib.seq_len;
    if (p->calib.has_keep)
        s.keep = p->calib.keep;
    if (p->calib.has_heldout)
        s.heldout = p->calib.heldout;
    if (p->calib.has_sample)
        s.sample = p->calib.sample;
    if (p->calib.has_seed)
        s.seed = p->calib.seed;
    s.quiet = quiet;
    char *tokens = sm_plan_resolve_path(p, p->calib.tokens), *stats = sm_plan_resolve_path(p, p->calib.stats);
    s.tokens = tokens;
    /* calibration.text: the files relative to the plan, and the digests it recorded checked */
    char **files = xcalloc((size_t)p->calib.n_text + 1, sizeof *files);
    for (int i = 0; i < p->calib.n_text; i++)
        files[i] = sm_plan_resolve_path(p, p->calib.text[i]);
    sm_text_source text = {(const char *const *)files, p->calib.n_text, p->calib.text_field};
    s.text = p->calib.n_text ? &text : NULL;
    s.expect_text_digest = p->calib.text_digest;
    s.expect_tokenizer_digest = p->calib.tokenizer_digest;
    if (tokens || s.text)
        r->calib = sm_calib_capture(r->model, &s, stats, mon, &r->calib_reused);
    else if (stats)
        r->calib = sm_calib_read(r->model, stats, p->calib.has_heldout ? p->calib.heldout : -1);
    else
        sm_err("%s: calibration.tokens, text or stats is required to merge or prune", p->file);
    for (int i = 0; i < p->calib.n_text; i++)
        free(files[i]);
    free(files);
    free(tokens);
    free(stats);
    return r->calib ? 0 : -1;
}

int sm_plan_resolve(const sm_plan *p, const sm_monitor *mon, bool quiet, sm_resolved_plan *r)
{
    memset(r, 0, sizeof *r);
    char *mpath = sm_plan_resolve_path(p, p->model_path);
    r->model = sm_model_open(mpath);
    free(mpath);
    if (!r->model)
        return sm_err_prefix("%s: model.path", p->file);
    const sm_config *c = sm_model_config(r->model);
    if (sm_plan_check_model(p, r->model))
        goto fail;
    r->n_layers = c->n_layers;
    r->layers = xcalloc((size_t)c->n_layers, sizeof *r->layers);
    r->format = p->output.has_format ? p->output.format : SM_APPLY_DEFAULT_FORMAT;
    r->dtype = p->output.dtype;
    r->shard_size = p->output.has_shard_size ? p->output.shard_size : 0;
    r->outdir = sm_plan_resolve_path(p, p->output.path);
    char *text;
    size_t len;
    if (sm_plan_format_bare(p, &text, &len) == 0) {
        r->plan_hash = sm_fnv1a(SM_FNV_OFFSET, text, len);
        free(text);
    }
    bool needs_calib = false;
    for (int l = 0; l < c->n_layers; l++) {
        sm_plan_effective eff;
        sm_plan_effective_settings(p, sm_plan_find_layer(p, l), &eff);
        needs_calib |= c->is_moe[l] && (eff.is_auto || eff.method != SM_MERGE_KEEP);
    }
    sm_monitor_span span;
    if (needs_calib && calibrate(p, r, sm_monitor_span_init(&span, mon, 0, 0.7), quiet))
        goto fail;

    /* Experts per layer from the defaults' target (uniform, or adaptive through the planner). */
    sm_planned_layer *planned = NULL;
    bool target = p->defaults.has_experts || p->has_ratio;
    if (target && needs_calib) {
        planned = xcalloc((size_t)c->n_layers, sizeof *planned);
        sm_planner_opts po = {.experts = p->defaults.has_experts ? p->defaults.experts : 0,
                              .ratio = p->has_ratio ? p->ratio : 0,
                              .adaptive = p->adaptive,
                              .window = p->has_window ? p->window : 2,
                              .algo = p->defaults.has_clustering ? p->defaults.clustering : SM_CLUSTER_KMEANS,
                              .sim = p->defaults.has_similarity ? p->defaults.similarity : SM_SIM_OUTPUT,
                              .seed = p->has_seed ? p->seed : 1};
        if (sm_planner_run(r->model, r->calib, &po, sm_monitor_span_init(&span, mon, 0.7, 0.8), planned)) {
            free(planned);
            goto fail;
        }
    }
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        if (!c->is_moe[l])
            continue;
        const sm_plan_layer *pl = sm_plan_find_layer(p, l);
        sm_resolved_layer *rl = &r->layers[l];
        rl->layer = l;
        rl->n = sm_model_layer_experts(r->model, l);
        sm_plan_effective eff;
        sm_plan_effective_settings(p, pl, &eff);
        rl->is_auto = eff.is_auto;
        sm_layer_job *j = &rl->job;
        j->layer = l;
        j->spec.method = eff.method;
        j->spec.router = eff.router;
        j->algo = eff.clustering;
        j->sim = eff.similarity;
        j->seed = p->has_seed ? p->seed : 1;
        for (int q = 0; q < 3; q++)
            j->spec.matrix[q] = sm_plan_matrix_opts(&p->merge, eff.rank[q]);
        j->spec.align = eff.align;
        /* k: the layer's own count or groups, else the defaults' target. */
        int k = pl && pl->s.has_experts ? pl->s.experts : pl && pl->n_groups ? pl->n_groups
                : planned                ? planned[l].k
                                         : 0;
        if (j->spec.method == SM_MERGE_KEEP && !rl->is_auto)
            k = rl->n;
        if (k < 1) {
            rc = sm_err("%s: layer %d: no expert count (give defaults.experts or defaults.ratio, or the layer's "
                        "experts or groups)",
                        p->file, l);
            break;
        }
        j->k = k;
        if (sm_merge_method_merges(j->spec.method) || rl->is_auto) {
            rl->assign = xcalloc((size_t)rl->n, sizeof *rl->assign);
            if (pl && pl->n_groups) {
                for (int g = 0; g < pl->n_groups; g++)
                    for (int e = 0; e < pl->group_len[g]; e++)
                        rl->assign[pl->groups[g][e]] = g;
            } else if (planned && planned[l].k == k && !(pl && (pl->s.has_clustering || pl->s.has_similarity))) {
                memcpy(rl->assign, planned[l].assign, sizeof(int) * (size_t)rl->n);
            } else {
                sm_moe_layer ml;
                if (sm_moe_layer_load(r->model, l, &ml) == 0) {
                    rc = sm_layer_cluster(r->calib, &ml, j, mon, rl->assign);
                    sm_moe_layer_free(&ml);
                } else {
                    rc = -1;
                }
                if (rc)
                    break;
            }
            j->groups = rl->assign;
            /* Per-cluster rank overrides. */
            if (pl && pl->n_clusters) {
                rl->cluster = xcalloc((size_t)k, sizeof *rl->cluster);
                for (int q = 0; q < k; q++)
                    memcpy(rl->cluster[q], j->spec.matrix, sizeof rl->cluster[q]);
                for (int q = 0; q < pl->n_clusters; q++)
                    for (int m = 0; m < 3; m++)
                        if (pl->clusters[q].rank.set[m])
                            rl->cluster[pl->clusters[q].index][m].rank = pl->clusters[q].rank.r[m];
                j->spec.cluster = (const sm_merge_opts(*)[3])rl->cluster;
                j->spec.n_cluster = k;
            }
            /* groups from a clustering, not the plan: auto may also try dominant groups */
            j->regroup = !(pl && pl->n_groups);
        }
        if (rl->is_auto && pl && pl->chosen) {
            sm_merge_method mm;
            bool al;
            if (sm_auto_choice_parse(pl->chosen, &mm, &al) == 0) {
                rl->auto_why = xstrdup(pl->chosen);
                j->spec.method = mm;
                j->spec.align = al;
                rl->is_auto = false; /* decided in the plan */
            }
        }
    }
    for (int l = 0; planned && l < c->n_layers; l++)
        sm_planned_layer_free(&planned[l]);
    free(planned);
    if (rc)
        goto fail;
    return 0;
fail:
    sm_resolved_plan_free(r);
    return -1;
}

/* ---- apply --------------------------------------------------------------------------------- */

static sm_export_format export_format(sm_out_format f)
{
    return f == SM_OUT_HF ? SM_EXPORT_HF : f == SM_OUT_HF_EXPANDED ? SM_EXPORT_HF_EXPANDED : SM_EXPORT_SUBMOE;
}

/* The output shape a resolved layer will have (pass 1). Auto layers are decided here. */
static int layer_shape(sm_resolved_plan *r, sm_resolved_layer *rl, sm_out_format fmt, const sm_monitor *mon,
                       sm_export_shape *s, int64_t (**ranks)[3])
{
    sm_layer_job *j = &rl->job;
    if (rl->is_auto) {
        sm_layer_build b;
        char why[600];
        if (sm_layer_build_auto(r->model, r->calib, j, mon, &b, why, sizeof why))
            return -1;
        sm_merge_method mm;
        bool al = false;
        j->spec.method = sm_auto_choice_parse(why, &mm, &al) == 0 ? mm : b.merged.method;
        j->spec.align = al;
        if (sm_merge_method_merges(b.merged.method) && rl->assign) /* the groups it merged on */
            memcpy(rl->assign, b.assign, sizeof(int) * (size_t)rl->n);
        rl->auto_why = xstrdup(why);
        rl->is_auto = false;
        sm_layer_build_free(&b);
    }
    int n = rl->n;
    sm_merge_method m = j->spec.method;
    *ranks = NULL;
    if (fmt == SM_OUT_HF_EXPANDED) {
        *s = (sm_export_shape){n, n, NULL, NULL};
        return 0;
    }
    if (m == SM_MERGE_KEEP) {
        *s = (sm_export_shape){n, n, NULL, NULL};
        return 0;
    }
    if (!sm_merge_method_merges(m)) {
        *s = (sm_export_shape){j->k, j->k, NULL, NULL};
        return 0;
    }
    bool remap = j->spec.router == SM_ROUTER_REMAP;
    *s = (sm_export_shape){remap ? n : j->k, j->k, remap ? rl->assign : NULL, NULL};
    if (m == SM_MERGE_SUBMOE_WHITENED) {
        sm_weight g;
        if (sm_model_weight(r->model, SM_W_EXPERT_GATE, rl->layer, 0, &g))
            return -1;
        int64_t I = g.rows, H = g.cols;
        *ranks = xcalloc((size_t)j->k, sizeof **ranks);
        for (int q = 0; q < j->k; q++) {
            int members = 0;
            for (int e = 0; e < n; e++)
                members += rl->assign[e] == q;
            for (int mm = 0; mm < 3; mm++) {
                const sm_merge_opts *o = j->spec.cluster ? &j->spec.cluster[q][mm] : &j->spec.matrix[mm];
                if (sm_rank_resolve(&o->rank, m, mm == 2 ? H : I, mm == 2 ? I : H, members, &(*ranks)[q][mm]))
                    return sm_err_prefix("layer %d cluster %d", rl->layer, q);
            }
        }
        s->rank = (const int64_t(*)[3]) * ranks;
    }
    return 0;
}

static sm_export_matrix matrix_of(const sm_linear *l)
{
    return (sm_export_matrix){l->w, l->a, l->b, l->w ? 0 : l->rank};
}

/* y (out×in) = a·b; cancellable between rows (a large expert takes seconds). */
static int multiply_out(const sm_linear *l, float *y, const sm_monitor *mon)
{
    for (int64_t i = 0; i < l->out; i++) {
        if (sm_monitor_check(mon))
            return -1;
        for (int64_t j = 0; j < l->in; j++) {
            double s = 0;
            for (int64_t q = 0; q < l->rank; q++)
                s += (double)l->a[i * l->rank + q] * l->b[q * l->in + j];
            y[i * l->in + j] = (float)s;
        }
    }
    return 0;
}

static int write_layer(sm_exporter *x, const sm_resolved_layer *rl, sm_out_format fmt, const sm_layer_build *b,
                       const sm_monitor *mon)
{
    const sm_merged_layer *ml = &b->merged;
    int slots = fmt == SM_OUT_HF_EXPANDED ? rl->n : ml->n_experts;
    sm_export_matrix (*mats)[3] = xcalloc((size_t)slots, sizeof *mats);
    float **dense = NULL;
    int rc = 0;
    if (fmt == SM_OUT_HF_EXPANDED) {
        dense = xcalloc((size_t)ml->n_experts * 3, sizeof *dense);
        for (int i = 0; i < rl->n && !rc; i++) {
            int c = ml->cluster_of[i];
            if (c < 0) {
                rc = sm_err("layer %d: hf-expanded needs every original expert mapped, but expert %d was pruned; use "
                            "--format submoe or hf",
                            rl->layer, i);
                break;
            }
            const sm_expert *e = &ml->experts[c];
            const sm_linear *lin[3] = {&e->gate, &e->up, &e->down};
            for (int k = 0; k < 3; k++) {
                if (lin[k]->w) {
                    mats[i][k] = (sm_export_matrix){lin[k]->w, NULL, NULL, 0};
                    continue;
                }
                float **d = &dense[c * 3 + k];
                if (!*d) {
                    *d = sm_alloc_f32((size_t)(lin[k]->out * lin[k]->in));
                    if (!*d) {
                        rc = -1;
                        break;
                    }
                    if (multiply_out(lin[k], *d, mon)) {
                        rc = -1;
                        break;
                    }
                }
                mats[i][k] = (sm_export_matrix){*d, NULL, NULL, 0};
            }
        }
    } else {
        for (int s = 0; s < slots; s++) {
            mats[s][0] = matrix_of(&ml->experts[s].gate);
            mats[s][1] = matrix_of(&ml->experts[s].up);
            mats[s][2] = matrix_of(&ml->experts[s].down);
        }
    }
    const float *router = fmt == SM_OUT_HF_EXPANDED ? b->src.router : ml->router;
    if (!rc)
        rc = sm_export_layer(x, rl->layer, router, (const sm_export_matrix(*)[3])mats);
    for (int i = 0; dense && i < ml->n_experts * 3; i++)
        free(dense[i]);
    free(dense);
    free(mats);
    return rc;
}

/* config.json "submoe_provenance" as JSON text; NULL with a message. */
static char *provenance(const sm_plan *p, const sm_resolved_plan *r)
{
    char fp[32];
    sm_model_fingerprint(r->model, fp);
    json_t *o = json_object();
    int bad = 0; /* every field or an error (util/jsonout.h): a path that is not UTF-8 */
    bad |= sm_json_set(o, "tool", json_string("submoe " PACKAGE_VERSION));
    bad |= sm_json_set(o, "method", json_string("Sub-MoE (arXiv 2506.23266) subspace expert merging"));
    char h[32];
    snprintf(h, sizeof h, "fnv1a64:%016" PRIx64, r->plan_hash);
    bad |= sm_json_set(o, "plan", json_string(h));
    bad |= sm_json_set(o, "source_model", json_string(p->model_path));
    bad |= sm_json_set(o, "source_fingerprint", json_string(fp));
    bad |= sm_json_set(o, "format", json_string(sm_out_format_name(r->format)));
    json_t *layers = json_object();
    for (int l = 0; l < r->n_layers; l++) {
        const sm_resolved_layer *rl = &r->layers[l];
        if (!rl->n)
            continue;
        char key[16], desc[800];
        snprintf(key, sizeof key, "%d", l);
        snprintf(desc, sizeof desc, "%s%s, %d -> %d experts, router %s%s%s", sm_merge_method_name(rl->job.spec.method),
                 rl->job.spec.align ? " (aligned)" : "",
                 rl->n, rl->job.spec.method == SM_MERGE_KEEP ? rl->n : rl->job.k,
                 sm_router_mode_name(rl->job.spec.router), rl->auto_why ? "; auto: " : "",
                 rl->auto_why ? rl->auto_why : "");
        bad |= sm_json_set(layers, key, json_string(desc));
    }
    bad |= sm_json_set(o, "layers", layers);
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text && !bad)
        sm_err("the provenance record could not be encoded as JSON");
    if (!text)
        sm_err_prefix("%s", p->file);
    return text;
}

/* Before any work: the output directory (and the stats file when it caches a capture) never
 * lands on the plan's inputs, and an existing output needs --force. */
static int check_outdir(const sm_plan *p, const char *outdir, const sm_apply_opts *o)
{
    char *model = sm_plan_resolve_path(p, p->model_path), *tokens = sm_plan_resolve_path(p, p->calib.tokens),
         *stats = sm_plan_resolve_path(p, p->calib.stats);
    sm_paths inputs = {0}, outputs = {0};
    sm_paths_add_model(&inputs, model);
    sm_paths_add(&inputs, "plan", p->file);
    sm_paths_add(&inputs, "tokens file", tokens);
    for (int i = 0; i < p->calib.n_text; i++) {
        char *t = sm_plan_resolve_path(p, p->calib.text[i]);
        sm_paths_add(&inputs, "text file", t);
        free(t);
    }
    sm_paths_add(tokens || p->calib.n_text ? &outputs : &inputs, "stats file", stats);
    for (int i = 0; o->inputs && i < o->inputs->n; i++)
        sm_paths_add(&inputs, o->inputs->v[i].what, o->inputs->v[i].path);
    sm_paths_add(&outputs, "output directory", outdir);
    int rc = sm_check_output_paths(&inputs, &outputs);
    if (!rc && !o->force && sm_exists(outdir))
        rc = sm_err("%s: already exists (use --force to replace it)", outdir);
    sm_paths_free(&inputs);
    sm_paths_free(&outputs);
    free(model);
    free(tokens);
    free(stats);
    return rc;
}

int sm_apply(const sm_plan *p, const sm_apply_opts *o, sm_apply_report *rep)
{
    memset(rep, 0, sizeof *rep);
    sm_resolved_plan r;
    sm_monitor_span span;
    char *early = o->outdir ? NULL : sm_plan_resolve_path(p, p->output.path);
    const char *want = o->outdir ? o->outdir : early;
    int crc = want ? check_outdir(p, want, o) : 0;
    free(early);
    if (crc)
        return -1;
    if (sm_plan_resolve(p, sm_monitor_span_init(&span, o->mon, 0, 0.3), o->quiet, &r))
        return -1;
    if (o->format >= 0)
        r.format = (sm_out_format)o->format;
    const char *outdir = o->outdir ? o->outdir : r.outdir;
    int rc = -1;
    sm_export_shape *shapes = xcalloc((size_t)r.n_layers, sizeof *shapes);
    int64_t(**ranks)[3] = xcalloc((size_t)r.n_layers, sizeof *ranks);
    sm_exporter *x = NULL;
    char *prov = NULL;
    sm_progress prog;
    bool prog_on = false;
    if (!outdir) {
        sm_err("%s: no output directory (give -o DIR or output.path in the plan)", p->file);
        goto out;
    }
    snprintf(rep->outdir, sizeof rep->outdir, "%s", outdir);
    for (int l = 0; l < r.n_layers; l++)
        if (r.layers[l].n && (sm_monitor_check(o->mon) || /* cancellable; progress stays where it is */
                              layer_shape(&r, &r.layers[l], r.format, sm_monitor_span_init(&span, o->mon, 0.3, 0.3),
                                          &shapes[l], &ranks[l])))
            goto out;
    if (!(prov = provenance(p, &r)))
        goto out;
    sm_export_opts eo = {.format = export_format(r.format), .dtype = r.dtype, .shard_size = r.shard_size,
                         .provenance = prov, .force = o->force};
    if (!(x = sm_export_begin(r.model, outdir, &eo, shapes)))
        goto out;
    rep->bytes = sm_export_total_bytes(x);
    const sm_config *c = sm_model_config(r.model);
    sm_progress_start(&prog, "apply", (uint64_t)c->n_moe_layers, o->quiet);
    prog_on = true;
    int done = 0, with_err = 0;
    double err_sum = 0;
    for (int l = 0; l < r.n_layers; l++) {
        sm_resolved_layer *rl = &r.layers[l];
        if (!rl->n)
            continue;
        sm_layer_build b;
        double lo = 0.3 + 0.7 * done / c->n_moe_layers, hi = 0.3 + 0.7 * (done + 1) / c->n_moe_layers;
        if (sm_monitor_check(o->mon) ||
            sm_layer_build_run(r.model, r.calib, &rl->job, sm_monitor_span_init(&span, o->mon, lo, hi), &b))
            goto out;
        int wrc = write_layer(x, rl, r.format, &b, o->mon);
        rep->params_before += b.params_before;
        rep->params_after += b.params_after;
        if (b.output_error >= 0) {
            err_sum += b.output_error;
            with_err++;
        }
        sm_layer_build_free(&b);
        if (r.calib)
            sm_calib_release(r.calib, l);
        if (wrc)
            goto out;
        sm_progress_update(&prog, (uint64_t)++done);
    }
    rep->mean_output_error = with_err ? err_sum / with_err : -1;
    if (sm_monitor_check(o->mon)) /* cancelled during the last layer: publish nothing */
        goto out;
    rc = sm_export_finish(x);
    x = NULL;
out:
    if (prog_on)
        sm_progress_end(&prog, rc == 0);
    sm_export_abort(x);
    for (int l = 0; l < r.n_layers; l++)
        free(ranks[l]);
    free(ranks);
    free(shapes);
    free(prov);
    sm_resolved_plan_free(&r);
    return rc;
}
