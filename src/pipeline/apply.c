/* apply: resolve a plan and write the merged model (see apply.h). */
#include "config.h"
#include "pipeline/apply.h"
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
        j->spec.refit = sm_auto_choice_refit(why), j->spec.cluster_refit = NULL;
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
    *ranks = xcalloc((size_t)j->k, sizeof **ranks);
    int factored = sm_resolve_stored_ranks(r->model, rl, m, *ranks);
    if (factored < 0)
        return -1;
    if (factored)
        s->rank = (const int64_t(*)[3]) * ranks;
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

/* config.json "submoe_provenance" as JSON text; NULL with a message. `slots` (per model layer,
 * or NULL before the layers are built) gives every MoE layer's output slot of each original
 * expert, -1 when dropped: "expert_slots", which `diff` maps experts through. */
static char *provenance(const sm_plan *p, const sm_resolved_plan *r, int *const *slots)
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
    json_t *slot_map = json_object();
    for (int l = 0; slots && l < r->n_layers; l++) {
        if (!slots[l])
            continue;
        char key[16];
        snprintf(key, sizeof key, "%d", l);
        json_t *a = json_array();
        for (int i = 0; i < r->layers[l].n; i++)
            bad |= sm_json_append(a, json_integer(slots[l][i]), "expert_slots");
        bad |= sm_json_set(slot_map, key, a);
    }
    if (slots)
        bad |= sm_json_set(o, "expert_slots", slot_map);
    else
        json_decref(slot_map);
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
    char **text = sm_resolve_calib_text(p);
    for (int i = 0; i < p->calib.n_text; i++)
        sm_paths_add(&inputs, "text file", text[i]);
    sm_resolve_calib_text_free(p, text);
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
    /* --format: a layer that names no router gets the one this format holds (plan.h), so the
     * plan is resolved as if it said the format; its hash stays the plan's own */
    sm_plan as_written = *p; /* a view: freed with p */
    if (o->format >= 0)
        as_written.output.has_format = true, as_written.output.format = (sm_out_format)o->format;
    if (sm_plan_resolve(&as_written, sm_monitor_span_init(&span, o->mon, 0, 0.3), o->quiet, &r))
        return -1;
    if (o->format >= 0) {
        char *text;
        size_t len;
        if (sm_plan_format_bare(p, &text, &len) == 0) {
            r.plan_hash = sm_fnv1a(SM_FNV_OFFSET, text, len);
            free(text);
        }
    }
    const char *outdir = o->outdir ? o->outdir : r.outdir;
    int rc = -1;
    sm_export_shape *shapes = xcalloc((size_t)r.n_layers, sizeof *shapes);
    int64_t(**ranks)[3] = xcalloc((size_t)r.n_layers, sizeof *ranks);
    int **slots = xcalloc((size_t)r.n_layers, sizeof *slots);
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
    if (!(prov = provenance(p, &r, NULL))) /* refused now, before any work, if it cannot be written */
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
        slots[l] = xcalloc((size_t)rl->n, sizeof *slots[l]);
        for (int i = 0; i < rl->n; i++) /* hf-expanded: original slot i holds expert i's group */
            slots[l][i] = r.format == SM_OUT_HF_EXPANDED || !b.merged.cluster_of ? i : b.merged.cluster_of[i];
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
    free(prov);
    if (!(prov = provenance(p, &r, slots)))
        goto out;
    sm_export_set_provenance(x, prov);
    rc = sm_export_finish(x);
    x = NULL;
out:
    if (prog_on)
        sm_progress_end(&prog, rc == 0);
    sm_export_abort(x);
    for (int l = 0; l < r.n_layers; l++)
        free(ranks[l]), free(slots[l]);
    free(ranks);
    free(slots);
    free(shapes);
    free(prov);
    sm_resolved_plan_free(&r);
    return rc;
}
