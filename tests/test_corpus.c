/* corpus: the calibration windows drawn from a document stream (sm_corpus_windows) — seeded and
 * reproducible, non-overlapping windows of the stream, the calibration ones then the extra
 * ones each in stream order, a stream too short refused with the text's name. */
#include "testutil.h"
#include "text/corpus.h"
#include "util/diag.h"

#include <stdint.h>
#include <stdlib.h>

enum { N = 1000, L = 10, SAMPLES = 20, EXTRA = 8 };

/* Window w of the draw as a slot of the stream (its first id / L), or -1 if it is not one. */
static int slot_of(const int32_t *ids, int w)
{
    const int32_t *v = ids + (size_t)w * L;
    for (int i = 1; i < L; i++)
        if (v[i] != v[0] + i)
            return -1;
    return v[0] % L == 0 ? v[0] / L : -1;
}

int main(void)
{
    sm_corpus c = {0};
    c.n = N + 5; /* 100 whole windows and 5 tokens over */
    c.ids = malloc(sizeof *c.ids * c.n);
    for (size_t i = 0; i < c.n; i++)
        c.ids[i] = (int32_t)i;
    int32_t *a = NULL, *b = NULL, *d = NULL;
    int na = 0, nb = 0, nd = 0;
    CHECK(sm_corpus_windows(&c, "t.txt", SAMPLES, L, EXTRA, 1, &a, &na) == 0 && na == SAMPLES + EXTRA,
          "%d windows drawn (%d asked)", na, SAMPLES + EXTRA);
    CHECK(sm_corpus_windows(&c, "t.txt", SAMPLES, L, EXTRA, 1, &b, &nb) == 0 && nb == na &&
              !memcmp(a, b, sizeof *a * (size_t)na * L),
          "the same seed draws the same windows");
    CHECK(sm_corpus_windows(&c, "t.txt", SAMPLES, L, EXTRA, 2, &d, &nd) == 0 && nd == na &&
              memcmp(a, d, sizeof *a * (size_t)na * L),
          "another seed draws other windows");
    int used[N / L] = {0}, ok = 1, sorted = 1, spread = 0;
    for (int w = 0; w < na; w++) {
        int s = slot_of(a, w);
        ok &= s >= 0 && !used[s];
        if (s >= 0)
            used[s] = 1;
        if (w > 0 && w != SAMPLES)
            sorted &= slot_of(a, w - 1) < s;
        spread |= s >= N / L / 2;
    }
    CHECK(ok, "every window is a whole, distinct non-overlapping window of the stream");
    CHECK(sorted, "calibration windows, then the extra ones, each in stream order");
    CHECK(spread, "drawn from the whole stream, not only its start");
    free(b);
    CHECK(sm_corpus_windows(&c, "t.txt", N / L, L, EXTRA, 1, &b, &nb) == 0 && nb == N / L,
          "all 100 windows: no room for extra ones");
    free(b);
    b = NULL;
    CHECK(sm_corpus_windows(&c, "t.txt", N / L + 1, L, 0, 1, &b, &nb) == -1 && !b &&
              strstr(sm_errmsg(), "t.txt holds 1005 tokens (100 windows of 10); 101 samples x 10 tokens need 1010"),
          "a stream shorter than the windows asked for: %s", sm_errmsg());
    const char *files[2] = {"a.txt", "b.jsonl"};
    sm_text_source src = {files, 2, NULL};
    char *names = sm_text_source_names(&src);
    CHECK_STR(names, "a.txt b.jsonl", "the files named for messages");
    free(names);
    free(a);
    free(b);
    free(d);
    free(c.ids);
    return tu_done();
}
