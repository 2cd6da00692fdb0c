/* figures_check: what tests/test_figures.sh asks of `submoe figures`' output, without Python.
 *   figures_check png FILE W H MIN_COLOURS
 *       FILE is a PNG of W × H pixels (cairo's loader) with at least MIN_COLOURS distinct pixel
 *       values (not blank)
 *   figures_check stats MODEL STATS DIR
 *       every DIR/layerL-similarity-{output,weight,logit}.csv cell equals the similarity in the
 *       stats file (sm_calib_read, as plan reads it) to 1e-6; DIR/model-frequency.csv holds every
 *       expert's routing frequency as in the stats file, and each layer's sum to top-k
 * Prints one line per failure; exit 0 when all hold. */
#include "forward/moelayer.h"
#include "pipeline/calib.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int check_png(const char *file, int w, int h, int min_colours)
{
    cairo_surface_t *sf = cairo_image_surface_create_from_png(file);
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
        printf("%s: not a PNG cairo reads: %s\n", file, cairo_status_to_string(cairo_surface_status(sf)));
        cairo_surface_destroy(sf);
        return 1;
    }
    int sw = cairo_image_surface_get_width(sf), sh = cairo_image_surface_get_height(sf);
    int stride = cairo_image_surface_get_stride(sf);
    const unsigned char *px = cairo_image_surface_get_data(sf);
    uint32_t *v = malloc(sizeof(uint32_t) * (size_t)sw * (size_t)sh);
    for (int y = 0; y < sh; y++)
        memcpy(v + (size_t)y * sw, px + (size_t)y * stride, sizeof(uint32_t) * (size_t)sw);
    qsort(v, (size_t)sw * (size_t)sh, sizeof *v, cmp_u32);
    int distinct = sw * sh > 0;
    for (size_t i = 1; i < (size_t)sw * (size_t)sh; i++)
        distinct += v[i] != v[i - 1];
    free(v);
    cairo_surface_destroy(sf);
    int bad = 0;
    if (sw != w || sh != h)
        printf("%s: %dx%d, expected %dx%d\n", file, sw, sh, w, h), bad = 1;
    if (distinct < min_colours)
        printf("%s: %d distinct pixel values, expected at least %d\n", file, distinct, min_colours), bad = 1;
    return bad;
}

/* The CSV's cells against sim (n × n); -1 when the file is missing. Counts the cells seen. */
static int check_sim_csv(const char *path, const double *sim, int n, int *bad)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    int cells = 0;
    if (!fgets(line, sizeof line, f) || strncmp(line, "row_expert,col_expert,", 22))
        printf("%s: no header\n", path), (*bad)++;
    int i, j, gi, gj;
    double s;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%d,%d,%d,%d,%lf", &i, &j, &gi, &gj, &s) != 5 || i < 0 || j < 0 || i >= n || j >= n) {
            printf("%s: bad line %s", path, line), (*bad)++;
            break;
        }
        if (fabs(s - sim[(size_t)i * n + j]) > 1e-6 && (*bad)++ < 5)
            printf("%s: cell %d,%d is %.9g, the stats file has %.9g\n", path, i, j, s, sim[(size_t)i * n + j]);
        cells++;
    }
    fclose(f);
    if (cells != n * n)
        printf("%s: %d cells, expected %d\n", path, cells, n * n), (*bad)++;
    return cells;
}

static int check_freq(const char *dir, int layer, const sm_layer_analysis *an, int top_k, int *bad)
{
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/model-frequency.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("%s: missing\n", path);
        return ++*bad;
    }
    int l, e, pos, seen = 0;
    double v, sum = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%d,%d,%lf,%d", &l, &e, &v, &pos) == 4 && l == layer) {
            if (e < 0 || e >= an->n || fabs(v - an->freq[e]) > 1e-7)
                printf("%s: layer %d expert %d frequency %.9g, the stats file has %.9g\n", path, l, e, v,
                       e >= 0 && e < an->n ? an->freq[e] : NAN), (*bad)++;
            sum += v, seen++;
        }
    fclose(f);
    if (seen != an->n)
        printf("%s: layer %d has %d frequencies, expected %d\n", path, layer, seen, an->n), (*bad)++;
    if (fabs(sum - top_k) > 1e-5)
        printf("%s: layer %d frequencies sum to %.9g, expected top-k %d\n", path, layer, sum, top_k), (*bad)++;
    return 0;
}

static int check_stats(const char *model, const char *stats, const char *dir)
{
    sm_model *m = sm_model_open(model);
    sm_calib *c = m ? sm_calib_read(m, stats, -1) : NULL;
    if (!c) {
        printf("cannot read %s with %s\n", stats, model);
        return 1;
    }
    const sm_config *mc = sm_model_config(m);
    static const char *const kind[3] = {"output", "weight", "logit"};
    int bad = 0, layers = 0;
    for (int l = 0; l < mc->n_layers; l++) {
        if (!mc->is_moe[l])
            continue;
        sm_moe_layer ml;
        const sm_layer_analysis *an;
        if (sm_moe_layer_load_shell(m, l, &ml) || sm_calib_analysis(c, l, &ml.block, false, NULL, &an)) {
            printf("layer %d: no statistics\n", l);
            return 1;
        }
        const double *sim[3] = {an->sim_output, an->sim_weight, an->sim_logit};
        for (int q = 0; q < 3; q++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/layer%d-similarity-%s.csv", dir, l, kind[q]);
            if (sim[q] && check_sim_csv(path, sim[q], an->n, &bad) < 0)
                printf("%s: missing\n", path), bad++;
        }
        check_freq(dir, l, an, mc->top_k, &bad);
        sm_moe_layer_free(&ml);
        sm_calib_release(c, l);
        layers++;
    }
    printf("%d MoE layers checked against %s\n", layers, stats);
    sm_calib_free(c);
    sm_model_close(m);
    return bad != 0 || layers == 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "png"))
        return check_png(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 5 && !strcmp(argv[1], "stats"))
        return check_stats(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: figures_check png FILE W H MIN_COLOURS | stats MODEL STATS DIR\n");
    return 2;
}
