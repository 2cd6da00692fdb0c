/* submoe diff: per-tensor relative error between two models, e.g. a source and its merge. */
#include "cmd/cmd.h"
#include "model/model.h"
#include "model/st.h"
#include "util/diag.h"
#include "util/jsonout.h"
#include "util/mem.h"
#include "util/signals.h"

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
            "shapes. Useful to check a merge: `submoe diff MODEL MERGED` with an hf-expanded MERGED\n"
            "shows which experts changed and by how much. Exit status 0 whatever the differences; 1,\n"
            "with no report, when a tensor holds an Inf or NaN (the message names it).\n"
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

static bool same_shape(const sm_tensor *a, const sm_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

static void shape_str(const sm_tensor *t, char *buf, size_t n)
{
    size_t u = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && u < n; i++)
        u += (size_t)snprintf(buf + u, n - u, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    snprintf(buf + u, u < n ? n - u : 0, "]");
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
    json_t *jt = json_array(), *only_a = json_array(), *only_b = json_array(), *shapes = json_array();
    int compared = 0, differ = 0;
    double worst = 0;
    const char *worst_name = "";
    char sa[96], sb[96];
    bool failed = false;
    int building_failed = 0; /* an entry the JSON report could not hold (a name that is not UTF-8) */
    for (int f = 0; f < sm_model_file_count(a) && !sm_interrupted() && !failed; f++) {
        const st_file *sf = sm_model_file(a, f);
        for (size_t i = 0; i < st_count(sf) && !sm_interrupted(); i++) {
            const sm_tensor *ta = st_tensor(sf, i), *tb = find_in(b, ta->name);
            shape_str(ta, sa, sizeof sa);
            if (!tb) {
                building_failed |= sm_json_append(only_a, json_string(ta->name), "only_in_a");
                continue;
            }
            if (!same_shape(ta, tb)) {
                shape_str(tb, sb, sizeof sb);
                json_t *o = json_object();
                building_failed |= sm_json_set(o, "name", json_string(ta->name)) |
                                   sm_json_set(o, "a", json_string(sa)) | sm_json_set(o, "b", json_string(sb)) |
                                   sm_json_append(shapes, o, "shape_differs");
                continue;
            }
            double e = 0;
            if (rel_error(ta, tb, fa, fb, &e)) {
                failed = true;
                break;
            }
            compared++;
            differ += e > 0;
            if (e > worst || !*worst_name)
                worst = e, worst_name = ta->name;
            if (e > 0 || all) {
                json_t *o = json_object();
                building_failed |= sm_json_set(o, "name", json_string(ta->name)) |
                                   sm_json_set(o, "shape", json_string(sa)) |
                                   sm_json_set(o, "rel_error", sm_json_number(e)) | sm_json_append(jt, o, "tensors");
            }
        }
    }
    for (int f = 0; f < sm_model_file_count(b); f++) {
        const st_file *sf = sm_model_file(b, f);
        for (size_t i = 0; i < st_count(sf); i++)
            if (!find_in(a, st_tensor(sf, i)->name))
                building_failed |= sm_json_append(only_b, json_string(st_tensor(sf, i)->name), "only_in_b");
    }
    int rc = 0;
    if (sm_interrupted() || failed) { /* SIGINT/SIGTERM or a non-finite value: no partial report */
        fprintf(stderr, "submoe diff: %s\n", failed ? sm_errmsg() : sm_signals_errmsg());
        rc = 1;
    } else if (json) {
        json_t *root = json_object(); /* every field or an error (util/jsonout.h) */
        int bad = sm_json_set(root, "a", json_string(argv[optind])) |
                  sm_json_set(root, "b", json_string(argv[optind + 1])) |
                  sm_json_set(root, "compared", json_integer(compared)) |
                  sm_json_set(root, "differ", json_integer(differ)) |
                  sm_json_set(root, "max_rel_error", sm_json_number(worst)) |
                  sm_json_set(root, "tensors", json_incref(jt)) | sm_json_set(root, "only_in_a", json_incref(only_a)) |
                  sm_json_set(root, "only_in_b", json_incref(only_b)) |
                  sm_json_set(root, "shape_differs", json_incref(shapes));
        if (bad || building_failed ||
            sm_json_print(stdout, root, JSON_INDENT(2) | JSON_PRESERVE_ORDER, "the comparison")) {
            fprintf(stderr, "submoe diff: %s\n", sm_errmsg());
            rc = 1;
        }
        json_decref(root);
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(jt, i, v)
            printf("%-64s %-16s %.6g\n", json_string_value(json_object_get(v, "name")),
                   json_string_value(json_object_get(v, "shape")), json_real_value(json_object_get(v, "rel_error")));
        json_array_foreach(only_a, i, v)
            printf("only in A: %s\n", json_string_value(v));
        json_array_foreach(only_b, i, v)
            printf("only in B: %s\n", json_string_value(v));
        json_array_foreach(shapes, i, v)
            printf("shape differs: %s %s vs %s\n", json_string_value(json_object_get(v, "name")),
                   json_string_value(json_object_get(v, "a")), json_string_value(json_object_get(v, "b")));
        printf("%d tensors compared, %d differ (max relative error %.6g%s%s%s); %zu only in A, %zu only in B, "
               "%zu of different shapes\n",
               compared, differ, worst, *worst_name ? " in " : "", worst_name, "", json_array_size(only_a),
               json_array_size(only_b), json_array_size(shapes));
    }
    json_decref(jt);
    json_decref(only_a);
    json_decref(only_b);
    json_decref(shapes);
    free(fa);
    free(fb);
    sm_model_close(a);
    sm_model_close(b);
    return rc;
}
