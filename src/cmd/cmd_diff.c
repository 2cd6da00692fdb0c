/* submoe diff: per-tensor relative error between two models, e.g. a source and its merge, with
 * the merge's experts matched through its provenance record (apply's expert_slots). */
#include "cmd/cmd.h"
#include "model/model.h"
#include "model/st.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/jsonout.h"
#include "util/mem.h"
#include "util/signals.h"

#include <cblas.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1u << 20)

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe diff A B [--json] [--all]\n"
            "\n"
            "Compare two models tensor by tensor: for every tensor present in both with the same shape,\n"
            "the relative error ||A - B||_F / ||A||_F (absolute when A is zero), computed in double\n"
            "precision from the stored values; then the tensors only in A, only in B, or of different\n"
            "shapes. Useful to check a merge: `submoe diff MODEL MERGED` shows which experts changed\n"
            "and by how much. When MERGED was made from MODEL by apply, its provenance (expert_slots)\n"
            "matches each expert of MODEL with the slot holding it (factors multiplied out), so a\n"
            "pruned copy shows 0. Exit status 0 whatever the differences; 1, with no report, when a\n"
            "tensor holds an Inf or NaN or the provenance is malformed (the message names it).\n"
            "\n"
            "      --all       list identical tensors too (default: only the ones that differ)\n"
            "      --json      one JSON object\n"
            "  -h, --help      show this help\n");
}

static const sm_tensor *find_in(const sm_model *m, const char *name)
{
    for (int f = 0; f < sm_model_file_count(m); f++) {
        const sm_tensor *t = st_find(sm_model_file(m, f), name);
        if (t)
            return t;
    }
    return NULL;
}

/* The report as it is built: one entry per compared pair, the names on one side only, and the
 * pairs of different shapes. */
typedef struct diff_out {
    json_t *tensors, *only_a, *only_b, *shapes;
    int compared, differ;
    double worst;
    char worst_name[256];
    bool all;             /* list identical pairs too */
    int building_failed;  /* an entry the JSON report could not hold (a name that is not UTF-8) */
} diff_out;

static json_t *shape_json(const int64_t *dims, int nd)
{
    json_t *a = json_array();
    for (int i = 0; i < nd; i++)
        json_array_append_new(a, json_integer(dims[i]));
    return a;
}

static void shape_text(const json_t *a, char *buf, size_t n)
{
    size_t u = (size_t)snprintf(buf, n, "[");
    for (size_t i = 0; i < json_array_size(a) && u < n; i++)
        u += (size_t)snprintf(buf + u, n - u, "%s%" JSON_INTEGER_FORMAT, i ? ", " : "",
                              json_integer_value(json_array_get(a, i)));
    snprintf(buf + u, u < n ? n - u : 0, "]");
}

/* One compared pair: `b_name` when B's tensor has another name (an expert mapped to its slot). */
static void add_result(diff_out *d, const char *name, const char *b_name, json_t *shape, double e)
{
    d->compared++;
    d->differ += e > 0;
    if (e > d->worst || !d->worst_name[0])
        d->worst = e, snprintf(d->worst_name, sizeof d->worst_name, "%s", name);
    if (!(e > 0 || d->all)) {
        json_decref(shape);
        return;
    }
    json_t *o = json_object();
    d->building_failed |= sm_json_set(o, "name", json_string(name)) |
                          (b_name ? sm_json_set(o, "b_name", json_string(b_name)) : 0) |
                          sm_json_set(o, "shape", shape) | sm_json_set(o, "rel_error", sm_json_number(e)) |
                          sm_json_append(d->tensors, o, "tensors");
}

static void add_shape_differs(diff_out *d, const char *name, json_t *sa, json_t *sb)
{
    json_t *o = json_object();
    d->building_failed |= sm_json_set(o, "name", json_string(name)) | sm_json_set(o, "a", sa) |
                          sm_json_set(o, "b", sb) | sm_json_append(d->shapes, o, "shape_differs");
}

static bool same_shape(const sm_tensor *a, const sm_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

/* A tensor with an Inf or NaN has no relative error to report: -1 naming its file and tensor
 * (found in the conversion pass itself). */
static int rel_error(const sm_tensor *a, const sm_tensor *b, float *fa, float *fb, double *out)
{
    double num = 0, den = 0;
    size_t ea = sm_dtype_size(a->dtype), eb = sm_dtype_size(b->dtype);
    for (uint64_t i = 0; i < a->numel && !sm_interrupted(); i += CHUNK) {
        size_t n = a->numel - i < CHUNK ? (size_t)(a->numel - i) : CHUNK;
        size_t ba = sm_to_f32(a->dtype, (const char *)a->data + i * ea, fa, n);
        size_t bb = sm_to_f32(b->dtype, (const char *)b->data + i * eb, fb, n);
        if (ba < n || bb < n) {
            const sm_tensor *t = ba < n ? a : b;
            size_t j = ba < n ? ba : bb;
            return sm_err("%s: tensor '%s' has a non-finite value (%s) at element %llu", t->file, t->name,
                          sm_nonfinite_name((ba < n ? fa : fb)[j]), (unsigned long long)(i + j));
        }
        for (size_t j = 0; j < n; j++) {
            double d = (double)fa[j] - fb[j];
            num += d * d;
            den += (double)fa[j] * fa[j];
        }
    }
    *out = den > 0 ? sqrt(num / den) : sqrt(num);
    return 0;
}

/* ---- experts through B's provenance -------------------------------------------------------- */

/* Where A's experts went in B: slots[L][i] is the slot of B's layer L holding (the group of) A's
 * expert i, -1 when it was dropped; a NULL row compares that layer by name. `handled` lists the
 * expert tensors of both models in mapped layers (sorted after loading), which the by-name pass
 * skips. */
typedef struct expert_slots {
    int n_layers;
    int **slots;
    const sm_tensor **handled;
    size_t n_handled, cap;
    char note[200]; /* why experts are compared by name though B has a provenance record */
} expert_slots;

static const sm_wrole expert_roles[3] = {SM_W_EXPERT_GATE, SM_W_EXPERT_UP, SM_W_EXPERT_DOWN};

static void slots_free(expert_slots *x)
{
    for (int l = 0; x->slots && l < x->n_layers; l++)
        free(x->slots[l]);
    free(x->slots);
    free(x->handled);
}

static void mark_handled(expert_slots *x, const sm_tensor *t)
{
    if (x->n_handled == x->cap)
        x->handled = xrealloc(x->handled, sizeof *x->handled * (x->cap = x->cap ? 2 * x->cap : 256));
    x->handled[x->n_handled++] = t;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const sm_tensor *const *)a, y = (uintptr_t) * (const sm_tensor *const *)b;
    return x < y ? -1 : x > y;
}

static bool is_handled(const expert_slots *x, const sm_tensor *t)
{
    return x->n_handled && bsearch(&t, x->handled, x->n_handled, sizeof *x->handled, cmp_ptr);
}

/* Layer L's slots from B's "expert_slots" record (`rec`, or NULL) or, without one, B's remap
 * expert map; NULL when neither applies. A malformed record: -1 naming the file. */
static int layer_slots(const sm_model *a, const sm_model *b, int l, const json_t *rec, const char *cfg,
                       int **out)
{
    const int n = sm_model_layer_experts(a, l), nb = sm_model_layer_experts(b, l);
    char key[16];
    snprintf(key, sizeof key, "%d", l);
    const json_t *arr = rec ? json_object_get(rec, key) : NULL;
    *out = NULL;
    if (arr) {
        if (!json_is_array(arr) || json_array_size(arr) != (size_t)n)
            return sm_err("%s: submoe_provenance.expert_slots.%d: expected an array of %d slots (one per expert "
                          "of the first model's layer %d)",
                          cfg, l, n, l);
        *out = xcalloc((size_t)n, sizeof **out);
        for (int i = 0; i < n; i++) {
            const json_t *v = json_array_get(arr, (size_t)i);
            json_int_t s = json_is_integer(v) ? json_integer_value(v) : -2;
            if (s < -1 || s >= nb)
                return sm_err("%s: submoe_provenance.expert_slots.%d[%d]: expected a slot in -1..%d", cfg, l, i,
                              nb - 1);
            (*out)[i] = (int)s;
        }
        return 0;
    }
    const int *map = sm_model_expert_map(b, l);
    if (map && sm_model_router_rows(b, l) == n) {
        *out = xcalloc((size_t)n, sizeof **out);
        memcpy(*out, map, sizeof *map * (size_t)n);
    }
    return 0;
}

/* B's record of where the source's experts went, if B names A (by fingerprint) as its source. */
static int load_slots(const sm_model *a, const sm_model *b, expert_slots *x)
{
    const sm_config *ca = sm_model_config(a), *cb = sm_model_config(b);
    memset(x, 0, sizeof *x);
    if (ca->n_layers != cb->n_layers)
        return 0;
    char *cfg = sm_path_join(sm_model_dir(b), "config.json");
    char *text = sm_read_file(cfg, 64u << 20, NULL);
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    const json_t *prov = json_object_get(root, "submoe_provenance");
    const char *fp = json_string_value(json_object_get(prov, "source_fingerprint"));
    char afp[32];
    sm_model_fingerprint(a, afp);
    int rc = 0;
    if (!prov) {
        /* not a submoe output: by name */
    } else if (fp && strcmp(fp, afp) != 0) {
        snprintf(x->note, sizeof x->note, "B was made from another model (%s, not A's %s): experts by name", fp,
                 afp);
    } else {
        x->n_layers = ca->n_layers;
        x->slots = xcalloc((size_t)x->n_layers, sizeof *x->slots);
        const json_t *rec = json_object_get(prov, "expert_slots");
        bool any = false;
        for (int l = 0; l < ca->n_layers && !rc; l++)
            if (ca->is_moe[l] && cb->is_moe[l] && !(rc = layer_slots(a, b, l, rec, cfg, &x->slots[l])))
                any |= x->slots[l] != NULL;
        if (!rc && !any) { /* nothing to map through: by name, and said so */
            slots_free(x);
            memset(x, 0, sizeof *x);
            snprintf(x->note, sizeof x->note, "B's provenance has no expert_slots (an older output): experts by name");
        }
    }
    json_decref(root);
    free(cfg);
    return rc;
}

/* A view of B's slot matrix: dense, or factors A·B (native format). */
typedef struct slot_matrix {
    sm_weight w, fa, fb;
    bool factored;
} slot_matrix;

static int slot_matrix_get(const sm_model *b, int l, int slot, int mat, slot_matrix *m)
{
    int f = sm_model_expert_factors(b, l, slot, mat, &m->fa, &m->fb);
    if (f < 0)
        return -1;
    m->factored = f == 1;
    if (m->factored)
        m->w = (sm_weight){NULL, 0, m->fa.rows, m->fb.cols};
    return m->factored ? 0 : sm_model_weight(b, expert_roles[mat], l, slot, &m->w);
}

/* ||A − B|| / ||A|| of an expert matrix and its slot's, by chunks of rows (factors multiplied
 * out chunk by chunk). */
static int matrix_error(const sm_weight *wa, const slot_matrix *mb, double *out)
{
    const int64_t cols = wa->cols, rank = mb->factored ? mb->fa.cols : 0;
    const int64_t step = cols >= CHUNK ? 1 : CHUNK / cols;
    float *fa = sm_alloc_f32((size_t)(step * cols)), *fb = sm_alloc_f32((size_t)(step * cols));
    float *ra = rank ? sm_alloc_f32((size_t)(step * rank)) : NULL, *bf = rank ? sm_alloc_f32((size_t)(rank * cols)) : NULL;
    int rc = !fa || !fb || (rank && (!ra || !bf)) ? -1 : rank ? sm_weight_to_f32(&mb->fb, bf) : 0;
    double num = 0, den = 0;
    for (int64_t r0 = 0; !rc && r0 < wa->rows && !sm_interrupted(); r0 += step) {
        int64_t nr = wa->rows - r0 < step ? wa->rows - r0 : step;
        rc = sm_weight_rows_to_f32(wa, r0, nr, fa);
        if (!rc && rank && !(rc = sm_weight_rows_to_f32(&mb->fa, r0, nr, ra)))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)cols, (int)rank, 1.0f, ra,
                        (int)rank, bf, (int)cols, 0.0f, fb, (int)cols);
        else if (!rc)
            rc = sm_weight_rows_to_f32(&mb->w, r0, nr, fb);
        for (int64_t j = 0; !rc && j < nr * cols; j++) {
            double d = (double)fa[j] - fb[j];
            num += d * d;
            den += (double)fa[j] * fa[j];
        }
    }
    free(fa), free(fb), free(ra), free(bf);
    *out = den > 0 ? sqrt(num / den) : sqrt(num);
    return rc;
}

/* Name of one expert's matrix: its tensor's, indexed when the tensor holds every expert (fused). */
static void weight_label(const sm_weight *w, int index, char *buf, size_t n)
{
    if (w->tensor->numel == (uint64_t)(w->rows * w->cols))
        snprintf(buf, n, "%s", w->tensor->name);
    else
        snprintf(buf, n, "%s[%d]", w->tensor->name, index);
}

/* Every expert matrix of A's layer L against its slot's in B; dropped experts are only in A. */
static int diff_layer_experts(const sm_model *a, const sm_model *b, int l, expert_slots *x, diff_out *d)
{
    const int n = sm_model_layer_experts(a, l), nb = sm_model_layer_experts(b, l);
    for (int c = 0; c < nb; c++) /* B's side of the layer, whichever slots A's experts reach */
        for (int k = 0; k < 3; k++) {
            slot_matrix mb;
            if (slot_matrix_get(b, l, c, k, &mb))
                return -1;
            if (mb.factored)
                mark_handled(x, mb.fa.tensor), mark_handled(x, mb.fb.tensor);
            else
                mark_handled(x, mb.w.tensor);
        }
    for (int i = 0; i < n && !sm_interrupted(); i++)
        for (int k = 0; k < 3; k++) {
            sm_weight wa;
            slot_matrix mb;
            char la[256], lb[256];
            if (sm_model_weight(a, expert_roles[k], l, i, &wa))
                return -1;
            mark_handled(x, wa.tensor);
            weight_label(&wa, i, la, sizeof la);
            const int c = x->slots[l][i];
            if (c < 0) {
                d->building_failed |= sm_json_append(d->only_a, json_string(la), "only_in_a");
                continue;
            }
            if (slot_matrix_get(b, l, c, k, &mb))
                return -1;
            if (mb.factored)
                snprintf(lb, sizeof lb, "%s·%s", mb.fa.tensor->name, mb.fb.tensor->name);
            else
                weight_label(&mb.w, c, lb, sizeof lb);
            const int64_t da[2] = {wa.rows, wa.cols}, db[2] = {mb.w.rows, mb.w.cols};
            if (da[0] != db[0] || da[1] != db[1]) {
                add_shape_differs(d, la, shape_json(da, 2), shape_json(db, 2));
                continue;
            }
            double e;
            if (matrix_error(&wa, &mb, &e))
                return -1;
            add_result(d, la, strcmp(la, lb) ? lb : NULL, shape_json(da, 2), e);
        }
    return 0;
}

/* A pruned layer's router (every slot holds one expert, one row per slot): B's row c against A's
 * row of the expert in slot c. Other layers' routers (refit or remapped) are compared by name. */
static int diff_layer_router(const sm_model *a, const sm_model *b, int l, expert_slots *x, diff_out *d)
{
    const int n = sm_model_layer_experts(a, l), nb = sm_model_layer_experts(b, l);
    int *src = xcalloc((size_t)nb, sizeof *src), rc = 0;
    bool single = sm_model_router_rows(b, l) == nb && !sm_model_expert_map(b, l);
    for (int c = 0; c < nb; c++)
        src[c] = -1;
    for (int i = 0; single && i < n; i++) {
        int c = x->slots[l][i];
        if (c >= 0)
            single = src[c] < 0, src[c] = i;
    }
    for (int c = 0; single && c < nb; c++)
        single = src[c] >= 0;
    sm_weight ra, rb;
    if (!single || sm_model_weight(a, SM_W_ROUTER, l, 0, &ra) || sm_model_weight(b, SM_W_ROUTER, l, 0, &rb) ||
        ra.cols != rb.cols) {
        free(src);
        return 0; /* by name */
    }
    float *fa = sm_alloc_f32((size_t)ra.cols), *fb = sm_alloc_f32((size_t)ra.cols);
    double num = 0, den = 0;
    rc = fa && fb ? 0 : -1;
    for (int c = 0; !rc && c < nb; c++) {
        rc = sm_weight_rows_to_f32(&ra, src[c], 1, fa) || sm_weight_rows_to_f32(&rb, c, 1, fb) ? -1 : 0;
        for (int64_t j = 0; !rc && j < ra.cols; j++) {
            double e = (double)fa[j] - fb[j];
            num += e * e;
            den += (double)fa[j] * fa[j];
        }
    }
    if (!rc) {
        char la[256];
        snprintf(la, sizeof la, "%s (rows of the kept experts)", ra.tensor->name);
        const int64_t dims[2] = {nb, ra.cols};
        add_result(d, la, NULL, shape_json(dims, 2), den > 0 ? sqrt(num / den) : sqrt(num));
        mark_handled(x, ra.tensor), mark_handled(x, rb.tensor);
    }
    free(fa), free(fb), free(src);
    return rc;
}

/* ---- the comparison ------------------------------------------------------------------------ */

/* Every tensor of A against B's of the same name, except the expert tensors compared above. */
static int diff_by_name(const sm_model *a, const sm_model *b, const expert_slots *x, float *fa, float *fb,
                        diff_out *d)
{
    for (int f = 0; f < sm_model_file_count(a) && !sm_interrupted(); f++) {
        const st_file *sf = sm_model_file(a, f);
        for (size_t i = 0; i < st_count(sf) && !sm_interrupted(); i++) {
            const sm_tensor *ta = st_tensor(sf, i), *tb = find_in(b, ta->name);
            if (is_handled(x, ta))
                continue;
            if (!tb) {
                d->building_failed |= sm_json_append(d->only_a, json_string(ta->name), "only_in_a");
                continue;
            }
            if (!same_shape(ta, tb)) {
                add_shape_differs(d, ta->name, shape_json(ta->shape, ta->ndim), shape_json(tb->shape, tb->ndim));
                continue;
            }
            double e = 0;
            if (rel_error(ta, tb, fa, fb, &e))
                return -1;
            add_result(d, ta->name, NULL, shape_json(ta->shape, ta->ndim), e);
        }
    }
    for (int f = 0; f < sm_model_file_count(b); f++) {
        const st_file *sf = sm_model_file(b, f);
        for (size_t i = 0; i < st_count(sf); i++) {
            const sm_tensor *t = st_tensor(sf, i);
            if (!is_handled(x, t) && !find_in(a, t->name))
                d->building_failed |= sm_json_append(d->only_b, json_string(t->name), "only_in_b");
        }
    }
    return 0;
}

static int print_json(const char *na, const char *nb, const diff_out *d, const expert_slots *x)
{
    json_t *root = json_object(); /* every field or an error (util/jsonout.h) */
    int bad = sm_json_set(root, "a", json_string(na)) | sm_json_set(root, "b", json_string(nb)) |
              sm_json_set(root, "experts_mapped", json_boolean(x->slots != NULL)) |
              (x->note[0] ? sm_json_set(root, "note", json_string(x->note)) : 0) |
              sm_json_set(root, "compared", json_integer(d->compared)) |
              sm_json_set(root, "differ", json_integer(d->differ)) |
              sm_json_set(root, "max_rel_error", sm_json_number(d->worst)) |
              sm_json_set(root, "tensors", json_incref(d->tensors)) |
              sm_json_set(root, "only_in_a", json_incref(d->only_a)) |
              sm_json_set(root, "only_in_b", json_incref(d->only_b)) |
              sm_json_set(root, "shape_differs", json_incref(d->shapes));
    int rc = bad || d->building_failed ||
                     sm_json_print(stdout, root, JSON_INDENT(2) | JSON_PRESERVE_ORDER, "the comparison")
                 ? -1
                 : 0;
    json_decref(root);
    return rc;
}

static void print_text(const diff_out *d, const expert_slots *x)
{
    size_t i;
    json_t *v;
    char sa[96], sb[96];
    if (x->slots)
        printf("experts matched through B's provenance (expert_slots, else remap expert maps): A's expert i "
               "against the slot holding it\n");
    if (x->note[0])
        printf("note: %s\n", x->note);
    json_array_foreach(d->tensors, i, v) {
        const char *bn = json_string_value(json_object_get(v, "b_name"));
        shape_text(json_object_get(v, "shape"), sa, sizeof sa);
        printf("%-64s %-16s %.6g%s%s\n", json_string_value(json_object_get(v, "name")), sa,
               json_real_value(json_object_get(v, "rel_error")), bn ? "  vs " : "", bn ? bn : "");
    }
    json_array_foreach(d->only_a, i, v)
        printf("only in A: %s\n", json_string_value(v));
    json_array_foreach(d->only_b, i, v)
        printf("only in B: %s\n", json_string_value(v));
    json_array_foreach(d->shapes, i, v) {
        shape_text(json_object_get(v, "a"), sa, sizeof sa);
        shape_text(json_object_get(v, "b"), sb, sizeof sb);
        printf("shape differs: %s %s vs %s\n", json_string_value(json_object_get(v, "name")), sa, sb);
    }
    printf("%d tensors compared, %d differ (max relative error %.6g%s%s); %zu only in A, %zu only in B, "
           "%zu of different shapes\n",
           d->compared, d->differ, d->worst, d->worst_name[0] ? " in " : "", d->worst_name,
           json_array_size(d->only_a), json_array_size(d->only_b), json_array_size(d->shapes));
}

int cmd_diff(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"all", no_argument, NULL, 'a'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    bool json = false, all = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'a': all = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 2) {
        fprintf(stderr, "submoe diff: expected two model directories\n");
        usage(stderr);
        return 2;
    }
    sm_model *a = sm_model_open(argv[optind]), *b = a ? sm_model_open(argv[optind + 1]) : NULL;
    if (!a || !b) {
        fprintf(stderr, "submoe diff: %s\n", sm_errmsg());
        sm_model_close(a);
        return 1;
    }
    float *fa = sm_alloc_f32(CHUNK), *fb = sm_alloc_f32(CHUNK);
    if (!fa || !fb)
        sm_die("%s", sm_errmsg());
    diff_out d = {json_array(), json_array(), json_array(), json_array(), 0, 0, 0, "", all, 0};
    expert_slots x;
    bool failed = load_slots(a, b, &x) != 0;
    for (int l = 0; !failed && x.slots && l < x.n_layers && !sm_interrupted(); l++)
        failed = x.slots[l] && (diff_layer_experts(a, b, l, &x, &d) || diff_layer_router(a, b, l, &x, &d));
    if (x.n_handled)
        qsort(x.handled, x.n_handled, sizeof *x.handled, cmp_ptr);
    failed = failed || diff_by_name(a, b, &x, fa, fb, &d);
    int rc = 0;
    if (sm_interrupted() || failed) { /* SIGINT/SIGTERM, a non-finite value or a bad record: no partial report */
        fprintf(stderr, "submoe diff: %s\n", failed ? sm_errmsg() : sm_signals_errmsg());
        rc = 1;
    } else if (json ? print_json(argv[optind], argv[optind + 1], &d, &x) : (print_text(&d, &x), 0)) {
        fprintf(stderr, "submoe diff: %s\n", sm_errmsg());
        rc = 1;
    }
    slots_free(&x);
    json_decref(d.tensors);
    json_decref(d.only_a);
    json_decref(d.only_b);
    json_decref(d.shapes);
    free(fa);
    free(fb);
    sm_model_close(a);
    sm_model_close(b);
    return rc;
}
