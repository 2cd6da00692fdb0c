/* test_parallel: util/parallel's loop (every item once, the lowest failing item's message,
 * cancellation, small loops on the calling thread) and the work it spreads over threads giving the same bytes on 1, 2 and 3
 * threads as the serial computation: the weighted sum and member errors of a merge, prune-output's
 * subset errors (batched against one at a time, with the cache's extensions), its greedy choice,
 * and the alignment memo's matchings (against sm_align_pair), on a synth layer calibrated with
 * the forward pass. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/align.h"
#include "engine/merge.h"
#include "engine/prune.h"
#include "engine/subset.h"
#include "engine/unionsvd.h"
#include "forward/moelayer.h"
#include "model/synth.h"
#include "pipeline/calib.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/parallel.h"
#include "util/rng.h"

static const int thread_counts[] = {1, 2, 3};
#define N_COUNTS 3

typedef struct {
    int *hits;
    int fail_a, fail_b; /* items that fail (-1: none) */
} loop_ctx;

static int count_item(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    loop_ctx *c = ctx;
    __atomic_add_fetch(&c->hits[i], 1, __ATOMIC_RELAXED);
    if (i == c->fail_a || i == c->fail_b)
        return sm_err("item %lld failed", (long long)i);
    return 0;
}

static int on_caller_item(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    return pthread_equal(*(const pthread_t *)ctx, pthread_self()) ? 0 : sm_err("item %lld ran on another thread", (long long)i);
}

static void check_loop(void)
{
    enum { N = 1000 };
    static int hits[N];
    for (int t = 0; t < N_COUNTS; t++) {
        sm_parallel_set_threads(thread_counts[t]);
        memset(hits, 0, sizeof hits);
        loop_ctx c = {hits, -1, -1};
        int rc = sm_parallel_for(N, 1, count_item, &c, NULL, NULL), once = 1;
        for (int i = 0; i < N; i++)
            once &= hits[i] == 1;
        CHECK(rc == 0 && once, "%d threads: every item runs once", thread_counts[t]);
        c.fail_a = 700, c.fail_b = 300;
        rc = sm_parallel_for(N, 1, count_item, &c, NULL, NULL);
        CHECK(rc == -1 && !strcmp(sm_errmsg(), "item 300 failed"), "%d threads: the lowest failing item's message (%s)",
              thread_counts[t], sm_errmsg());
        volatile int cancel = 1;
        sm_monitor mon = {.cancel = &cancel};
        memset(hits, 0, sizeof hits);
        c.fail_a = c.fail_b = -1;
        rc = sm_parallel_for(N, 1, count_item, &c, &mon, NULL);
        int ran = 0;
        for (int i = 0; i < N; i++)
            ran += hits[i];
        CHECK(rc == -1 && !strcmp(sm_errmsg(), "cancelled") && ran == 0, "%d threads: cancelled before any item (%s, %d ran)",
              thread_counts[t], sm_errmsg(), ran);
    }
    /* below the work bound a loop does not start the pool: every item on the calling thread */
    sm_parallel_set_threads(2);
    int64_t prev = sm_parallel_set_min_work(-1);
    pthread_t self = pthread_self();
    int rc = sm_parallel_for(N, SM_PARALLEL_MIN_WORK - 1, on_caller_item, &self, NULL, NULL);
    CHECK(rc == 0, "a loop below SM_PARALLEL_MIN_WORK runs every item on the calling thread");
    sm_parallel_set_min_work(prev);
    sm_parallel_set_threads(0);
}

/* The weighted sum and member errors of 3 random 300 × 257 members against the formulas. */
static void check_merge_sums(void)
{
    enum { OUT = 300, IN = 257, NM = 3 };
    static float w[NM][OUT * IN], dst[N_COUNTS][OUT * IN], ref[OUT * IN];
    sm_rng r;
    sm_rng_seed(&r, 5);
    for (int i = 0; i < NM; i++)
        for (int e = 0; e < OUT * IN; e++)
            w[i][e] = (float)((double)(sm_rng_u64(&r) >> 11) / 9007199254740992.0 - 0.5);
    const float *p[NM] = {w[0], w[1], w[2]};
    const sm_matset s = {NM, OUT, IN, p};
    const double wt[NM] = {0.5, 0.3, 0.2};
    for (int e = 0; e < OUT * IN; e++) {
        double acc = 0.0;
        for (int i = 0; i < NM; i++)
            acc += wt[i] * w[i][e];
        ref[e] = (float)acc;
    }
    double err[N_COUNTS][NM], eref[NM];
    for (int i = 0; i < NM; i++) {
        double num = 0.0, den = 0.0;
        for (int e = 0; e < OUT * IN; e++) {
            double d = (double)w[i][e] - ref[e];
            num += d * d;
            den += (double)w[i][e] * w[i][e];
        }
        eref[i] = sqrt(num / den);
    }
    for (int t = 0; t < N_COUNTS; t++) {
        sm_parallel_set_threads(thread_counts[t]);
        sm_weighted_sum(&s, wt, dst[t]);
        int rc = sm_member_errors(&s, dst[t], err[t]);
        CHECK(rc == 0 && !memcmp(dst[t], ref, sizeof ref) && !memcmp(err[t], eref, sizeof eref),
              "%d threads: weighted sum and member errors are the serial formulas' bytes", thread_counts[t]);
    }
    sm_parallel_set_threads(0);
}

#define SUBSETS 40

/* Batched subset errors on every thread count = one at a time on a fresh cache (the extensions
 * in the same order), and prune-output's greedy choice likewise. */
static void check_subsets(const sm_moe_block *b, const float *x, int64_t m)
{
    const int n = b->n_experts, min_keep = n / 2;
    sm_rng r;
    sm_rng_seed(&r, 9);
    static int keeps[SUBSETS * 256];
    for (int s = 0; s < SUBSETS; s++) { /* random subsets of min_keep experts, ascending */
        int *keep = keeps + s * min_keep, in[256] = {0};
        for (int got = 0; got < min_keep;) {
            int e = (int)(sm_rng_u64(&r) % (uint64_t)n);
            got += !in[e], in[e] = 1;
        }
        for (int i = 0, j = 0; i < n; i++)
            if (in[i])
                keep[j++] = i;
    }
    double one[SUBSETS], batch[SUBSETS];
    sm_subset_cache *c = sm_subset_cache_new(b, x, m, min_keep, NULL);
    int bad = c ? 0 : -1;
    for (int s = 0; c && s < SUBSETS && !bad; s++)
        bad = sm_subset_cache_error(c, keeps + s * min_keep, min_keep, &one[s]);
    CHECK(!bad, "%d subsets of %d experts one at a time%s%s", SUBSETS, min_keep, bad ? ": " : "", bad ? sm_errmsg() : "");
    sm_subset_cache_free(c);
    int keep1[256], keepn[256];
    sm_prune_result r1, rn;
    c = sm_subset_cache_new(b, x, m, min_keep, NULL);
    bad = !c || sm_prune_output(n, min_keep, sm_subset_cache_error, c, 1, NULL, keep1, &r1) != 0;
    CHECK(!bad, "the greedy search one subset at a time%s%s", bad ? ": " : "", bad ? sm_errmsg() : "");
    sm_subset_cache_free(c);
    for (int t = 0; t < N_COUNTS; t++) {
        sm_parallel_set_threads(thread_counts[t]);
        c = sm_subset_cache_new(b, x, m, min_keep, NULL);
        bad = !c || sm_subset_cache_errors(c, keeps, SUBSETS, min_keep, NULL, batch) != 0;
        CHECK(!bad && !memcmp(one, batch, sizeof one), "%d threads: %d subsets' batched errors are the one-at-a-time bytes",
              thread_counts[t], SUBSETS);
        sm_subset_cache_free(c);
        c = sm_subset_cache_new(b, x, m, min_keep, NULL);
        bad = !c || sm_prune_output_batch(n, min_keep, sm_subset_cache_errors, c, 1, NULL, keepn, &rn) != 0;
        CHECK(!bad && !memcmp(keep1, keepn, sizeof(int) * (size_t)min_keep) && r1.error == rn.error &&
                  r1.evaluations == rn.evaluations,
              "%d threads: the batched greedy search keeps the same %d experts at the same error (%.9g)",
              thread_counts[t], min_keep, rn.error);
        sm_subset_cache_free(c);
    }
    sm_parallel_set_threads(0);
}

/* The memo's alignments of a grouping, made on every thread count, against sm_align_pair. */
static void check_align(const sm_moe_block *b, const float *x, int64_t m)
{
    const int n = b->n_experts, k = n / 4;
    int assign[256];
    for (int i = 0; i < n; i++)
        assign[i] = (i * 7) % k; /* clusters of 4 scattered members */
    const int64_t ni = b->experts[0].gate.out;
    int *perm = malloc(sizeof(int) * (size_t)ni), *direct = malloc(sizeof(int) * (size_t)ni);
    int moved_ref = -1;
    for (int t = 0; perm && direct && t < N_COUNTS; t++) {
        sm_parallel_set_threads(thread_counts[t]);
        sm_align_memo *memo = sm_align_memo_new(n);
        int moved = -1, same = 1, pairs = 0;
        same = memo && sm_align_moves(b, NULL, assign, k, x, m, memo, NULL, &moved) == 0;
        for (int i = 0; memo && i < n; i++) {
            const int ref = sm_align_reference(NULL, assign, n, assign[i]);
            if (i == ref)
                continue;
            double corr = 0, corr_direct = 0;
            bool mv;
            sm_parallel_set_threads(1);
            same &= sm_align_pair_memo(memo, b, ref, i, x, m, NULL, perm, &corr, &mv) == 0 &&
                    sm_align_pair(&b->experts[ref], &b->experts[i], x, m, NULL, direct, &corr_direct) == 0 &&
                    !memcmp(perm, direct, sizeof(int) * (size_t)ni) && corr == corr_direct;
            sm_parallel_set_threads(thread_counts[t]);
            pairs++;
        }
        CHECK(same && pairs == n - k && (t == 0 || moved == moved_ref),
              "%d threads: the memo's %d alignments are sm_align_pair's (%d move)", thread_counts[t], pairs, moved);
        moved_ref = t == 0 ? moved : moved_ref;
        sm_align_memo_free(memo);
    }
    free(perm), free(direct);
    sm_parallel_set_threads(0);
}

int main(void)
{
    const char *srcdir = getenv("SRCDIR");
    if (!srcdir) {
        printf("SRCDIR must be set (make check sets it)\n");
        return 1;
    }
    /* every loop on the threads, whatever its size (the shapes here are small) */
    sm_parallel_set_min_work(0);
    check_loop();
    check_merge_sums();
    char dir[] = "/tmp/submoe-test-parallel-XXXXXX", tokens[4096];
    snprintf(tokens, sizeof tokens, "%s/data/calib.u32", srcdir);
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return tu_done();
    }
    sm_synth_opts o;
    sm_synth_defaults(&o, SM_ARCH_OLMOE);
    o.layers = 1, o.hidden = 64, o.intermediate = 96, o.experts = 32, o.top_k = 4, o.clusters = 8;
    o.vocab = 256, o.heads = 4, o.kv_heads = 4, o.quiet = true, o.dtype = SM_DT_F32, o.seed = 3;
    sm_model *mdl = NULL;
    sm_calib *cal = NULL;
    sm_calib_spec s;
    sm_calib_spec_default(&s);
    s.tokens = tokens, s.samples = 4, s.seq_len = 128, s.keep = 500, s.heldout = 0, s.sample = 64, s.quiet = true;
    sm_moe_layer ml;
    const float *x;
    int64_t m;
    if (sm_synth_write(&o, dir) || !(mdl = sm_model_open(dir)) || !(cal = sm_calib_capture(mdl, &s, NULL, NULL, NULL)) ||
        sm_moe_layer_load(mdl, 0, &ml) || sm_calib_inputs(cal, 0, &x, &m, NULL, NULL)) {
        CHECK(0, "synth layer: %s", sm_errmsg());
    } else {
        check_subsets(&ml.block, x, m);
        check_align(&ml.block, x, m);
        sm_moe_layer_free(&ml);
    }
    sm_calib_free(cal);
    sm_model_close(mdl);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "removing %s", dir);
    return tu_done();
}
