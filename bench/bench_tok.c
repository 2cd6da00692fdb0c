/* bench_tok TOKENIZER TEXT [REPEATS]: single-document encoding speed of the tokenizer.json
 * encoder (the whole TEXT as one document, REPEATS times; the first run warms the word cache as
 * the reference's does). Prints MB/s of the best and the median run. */
#include "text/tok.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tok TOKENIZER TEXT [REPEATS]\n");
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 10;
    if (reps < 1 || reps > 1000)
        reps = 10;
    double t0 = now();
    sm_tok *t = sm_tok_load(argv[1]);
    if (!t) {
        fprintf(stderr, "bench_tok: %s\n", sm_errmsg());
        return 1;
    }
    double load = now() - t0;
    size_t len, fixed_len, first, nbad;
    char *raw = sm_read_file(argv[2], (size_t)1 << 30, &len);
    if (!raw) {
        fprintf(stderr, "bench_tok: %s\n", sm_errmsg());
        return 1;
    }
    char *text = sm_tok_utf8_repair(raw, len, &fixed_len, &first, &nbad);
    double *secs = calloc((size_t)reps, sizeof *secs);
    sm_tok_ids ids = {0};
    for (int r = 0; r < reps; r++) {
        ids.n = 0;
        double a = now();
        if (sm_tok_encode(t, text, fixed_len, true, &ids)) {
            fprintf(stderr, "bench_tok: %s\n", sm_errmsg());
            return 1;
        }
        secs[r] = now() - a;
    }
    qsort(secs, (size_t)reps, sizeof *secs, cmp_double);
    printf("submoe     load %6.2f s  encode %zu bytes -> %zu ids  best %7.2f MB/s  median %7.2f MB/s\n", load,
           fixed_len, ids.n, fixed_len / secs[0] / 1e6, fixed_len / secs[reps / 2] / 1e6);
    free(secs);
    free(ids.v);
    free(text);
    free(raw);
    sm_tok_free(t);
    return 0;
}
