/* test_build: the shared layer-building step on the demo model — identities that must hold
 * end to end (keep changes nothing; full-rank submoe equals freq-average; remap at k = n with
 * singleton clusters is exact), the perplexity-with-overrides path equals eval, and errors are
 * ordered the way the ranks say. */
#include "forward/eval.h"
#include "model/synth.h"
#include "model/tokens.h"
#include "forward/moelayer.h"
#include "pipeline/build.h"
#include "pipeline/planner.h"
#include "util/diag.h"
#include "fixture.h"
#include "testutil.h"

#include <stdlib.h>

static sm_layer_job job_for(int layer, sm_merge_method method, int k, sm_router_mode router)
{
    sm_layer_job j;
    memset(&j, 0, sizeof j);
    j.layer = layer;
    j.k = k;
    j.algo = SM_CLUSTER_KMEANS;
    j.sim = SM_SIM_OUTPUT;
    j.seed = 1;
    j.spec.method = method;
    j.spec.router = router;
    return j;
}

/* method auto on models with shared experts (qwen2_moe's gated one, deepseek's always-on ones):
 * the build auto returns is a complete layer — its block's shared expert is its own (a struct
 * copy once left it pointing into a dead stack frame) — and as an override it gives exactly the
 * perplexity of building the chosen method directly. */
static void test_auto_shared(const char *tokens, const char *held, sm_arch arch)
{
    char *dir = fx_tmpdir("submoe-test-build");
    if (!dir) {
        CHECK(0, "mkdtemp");
        return;
    }
    sm_synth_opts o;
    fx_small_synth_opts(&o, arch, 8, 5);
    sm_model *m = NULL;
    sm_calib *c = NULL;
    if (fx_synth(&o, dir) || !(m = sm_model_open(dir))) {
        CHECK(0, "%s synth: %s", sm_arch_name(arch), sm_errmsg());
        goto out;
    }
    sm_calib_spec s;
    fx_calib_spec(&s, tokens, 4, 128);
    s.keep = 400, s.heldout = 100, s.sample = 64;
    if (!(c = sm_calib_capture(m, &s, NULL, NULL, NULL))) {
        CHECK(0, "%s capture: %s", sm_arch_name(arch), sm_errmsg());
        goto out;
    }
    sm_layer_job j = job_for(1, SM_MERGE_SUBMOE, 4, SM_ROUTER_COLLAPSE_LSTSQ);
    sm_layer_build b, d;
    char why[600];
    if (sm_layer_build_auto(m, c, &j, NULL, &b, why, sizeof why)) {
        CHECK(0, "%s auto: %s", sm_arch_name(arch), sm_errmsg());
        goto out;
    }
    CHECK(b.src.shared_inter > 0 && b.src.block.shared == &b.src.shared && b.block.shared == &b.src.shared,
          "%s auto (%.40s): the build's blocks use its own shared expert", sm_arch_name(arch), why);
    sm_merge_method mm;
    bool al;
    sm_auto_choice_parse(why, &mm, &al);
    j.spec.method = mm, j.spec.align = al;
    j.spec.refit = sm_auto_choice_refit(why);
    CHECK(sm_layer_build_run(m, c, &j, NULL, &d) == 0, "%s: the chosen method built directly", sm_arch_name(arch));
    sm_tokens t;
    const sm_config *cfg = sm_model_config(m);
    if (sm_tokens_read(held, cfg->vocab, &t) == 0) {
        const sm_moe_block *blocks[2] = {NULL, &b.block};
        double pa = 0, pd = 0;
        int rc = sm_perplexity_with(m, t.ids, 2, 128, blocks, NULL, &pa);
        blocks[1] = &d.block;
        rc |= sm_perplexity_with(m, t.ids, 2, 128, blocks, NULL, &pd);
        CHECK(rc == 0 && pa == pd && pa > 0, "%s: auto's layer as an override = the chosen method's (%.6f, %.6f)",
              sm_arch_name(arch), pa, pd);
        sm_tokens_free(&t);
    }
    sm_layer_build_free(&b);
    sm_layer_build_free(&d);
out:
    sm_calib_free(c);
    sm_model_close(m);
    fx_tmpdir_remove(dir);
}

/* Builders for sm_perplexity_built: every MoE layer merged 8 -> 4 (mode 0), none (1), or an
 * error at layer 2 (2). */
typedef struct {
    sm_model *m;
    sm_calib *c;
    int mode, built;
} built_ctx;

static int build_each(void *ctx, int layer, const sm_monitor *mon, sm_layer_build *out)
{
    built_ctx *b = ctx;
    if (b->mode == 1)
        return 1;
    if (b->mode == 2 && layer == 2)
        return sm_err("no build for this layer");
    sm_layer_job j = job_for(layer, SM_MERGE_SUBMOE, 4, SM_ROUTER_COLLAPSE_LSTSQ);
    b->built++;
    return sm_layer_build_run(b->m, b->c, &j, mon, out);
}

int main(void)
{
    if (!getenv("DEMO") || !getenv("SRCDIR")) {
        CHECK(0, "DEMO and SRCDIR must be set");
        return tu_done();
    }
    sm_model *m = fx_demo_open();
    CHECK(m != NULL, "demo opens");
    if (!m)
        return tu_done();
    char *tokens = fx_srcpath("data/calib.u32"), *held = fx_srcpath("data/heldout.u32");
    sm_calib_spec s;
    fx_calib_spec(&s, tokens, 8, 128);
    s.keep = 800;
    s.heldout = 200;
    s.sample = 128;
    sm_calib *c = sm_calib_capture(m, &s, NULL, NULL, NULL);
    CHECK(c != NULL, "capture %s", c ? "" : sm_errmsg());
    if (!c)
        return tu_done();

    /* keep: identical layer, zero error. */
    sm_layer_build b;
    sm_layer_job j = job_for(1, SM_MERGE_KEEP, 8, SM_ROUTER_REMAP);
    CHECK(sm_layer_build_run(m, c, &j, NULL, &b) == 0 && b.output_error == 0.0 && b.params_after == b.params_before,
          "keep: output error %g, params %lld = %lld", b.output_error, (long long)b.params_after,
          (long long)b.params_before);
    sm_layer_build_free(&b);

    /* k = n singleton clusters with remap: exact. */
    int single[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    j = job_for(2, SM_MERGE_SUBMOE, 8, SM_ROUTER_REMAP);
    j.groups = single;
    CHECK(sm_layer_build_run(m, c, &j, NULL, &b) == 0 && b.output_error < 1e-6,
          "singleton clusters + remap: output error %.3g", b.output_error);
    sm_layer_build_free(&b);

    /* Full-rank submoe == freq-average, same clusters. */
    sm_layer_build a1, a2;
    j = job_for(2, SM_MERGE_SUBMOE, 4, SM_ROUTER_COLLAPSE_LSTSQ);
    sm_layer_job j2 = job_for(2, SM_MERGE_FREQ_AVERAGE, 4, SM_ROUTER_COLLAPSE_LSTSQ);
    int ok = sm_layer_build_run(m, c, &j, NULL, &a1) == 0 && sm_layer_build_run(m, c, &j2, NULL, &a2) == 0;
    CHECK(ok, "submoe and freq-average build %s", ok ? "" : sm_errmsg());
    if (ok) {
        CHECK(memcmp(a1.assign, a2.assign, sizeof(int) * 8) == 0, "same clusters");
        CHECK_NEAR(a1.output_error, a2.output_error, 1e-5, "full-rank submoe output error = freq-average");
        CHECK(a1.output_error > 0 && a1.output_error < 1, "merging 8 -> 4 costs something (%.4f)", a1.output_error);
        CHECK(a1.params_after * 2 == a1.params_before, "8 -> 4 halves the routed parameters");
    }
    /* dominant groups (M-SMoE): the 4 most-routed experts of layer 1 are the centres, every other
     * expert joins its most similar centre; on the demo (skewed routing) that merge beats the
     * k-means one, and auto with regroup tries it, choosing no worse than without. */
    {
        sm_moe_layer ml;
        const sm_layer_analysis *an = NULL;
        int dom[8], rc = sm_moe_layer_load(m, 1, &ml);
        if (!rc)
            rc = sm_calib_analysis(c, 1, &ml.block, false, NULL, &an);
        if (!rc)
            rc = sm_engine_cluster(an, SM_CLUSTER_DOMINANT, SM_SIM_OUTPUT, 4, 1, NULL, dom);
        CHECK(rc == 0, "dominant clustering of layer 1 %s", rc ? sm_errmsg() : "");
        if (!rc) {
            int centre[4], nc = 0, okc = 1;
            for (int i = 0; i < 8; i++) { /* a centre: no member is routed more often than it */
                int more = 0;
                for (int q = 0; q < 8; q++)
                    more += an->freq[q] > an->freq[i];
                if (more < 4)
                    centre[nc < 4 ? nc++ : 3] = i;
            }
            for (int a = 0; a < nc; a++)
                for (int b2 = a + 1; b2 < nc; b2++)
                    okc &= dom[centre[a]] != dom[centre[b2]];
            for (int i = 0; i < 8; i++) { /* a non-centre joins its most similar centre */
                bool is_c = false;
                int best = -1;
                for (int a = 0; a < nc; a++) {
                    is_c |= centre[a] == i;
                    if (best < 0 || an->sim_output[i * 8 + centre[a]] > an->sim_output[i * 8 + best])
                        best = centre[a];
                }
                okc &= is_c || dom[i] == dom[best];
            }
            CHECK(nc == 4 && okc, "dominant: the 4 most-routed experts head separate groups, the others join "
                  "their most similar head");
            sm_layer_build kb, db, ab;
            sm_layer_job jk = job_for(1, SM_MERGE_SUBMOE, 4, SM_ROUTER_REMAP), jd = jk;
            jd.groups = dom;
            int r1 = sm_layer_build_run(m, c, &jk, NULL, &kb), r2 = sm_layer_build_run(m, c, &jd, NULL, &db);
            CHECK(r1 == 0 && r2 == 0 && db.output_error < kb.output_error,
                  "layer 1 merged on dominant groups: output error %.4f < k-means groups %.4f", db.output_error,
                  kb.output_error);
            sm_layer_job ja = jk;
            int kgroups[8];
            memcpy(kgroups, kb.assign, sizeof kgroups);
            ja.groups = kgroups;
            char why[600], why2[600];
            sm_layer_build nb;
            int r3 = sm_layer_build_auto(m, c, &ja, NULL, &nb, why, sizeof why);
            ja.regroup = true;
            int r4 = sm_layer_build_auto(m, c, &ja, NULL, &ab, why2, sizeof why2);
            CHECK(r3 == 0 && r4 == 0 && strstr(why2, "/dominant ") && !strstr(why, "/dominant"),
                  "auto with regroup also scores dominant groups: %s", why2);
            if (r3 == 0 && r4 == 0) {
                sm_merge_method mm;
                bool al;
                CHECK(sm_auto_choice_parse(why2, &mm, &al) == 0 &&
                          (strstr(why2, "/dominant (") ? memcmp(ab.assign, dom, sizeof dom) == 0 : 1),
                      "the chosen dominant build carries its groups");
                sm_layer_build_free(&nb);
                sm_layer_build_free(&ab);
            }
            if (!r1)
                sm_layer_build_free(&kb);
            if (!r2)
                sm_layer_build_free(&db);
        }
        sm_moe_layer_free(&ml);
    }
    /* Lower rank: more weight error, fewer parameters (whitened factors). */
    sm_layer_build lo;
    int prc;
    j = job_for(2, SM_MERGE_SUBMOE_WHITENED, 4, SM_ROUTER_COLLAPSE_LSTSQ);
    for (int q = 0; q < 3; q++)
        j.spec.matrix[q].rank = (sm_rank){.kind = SM_RANK_COUNT, .count = 16};
    prc = sm_layer_build_run(m, c, &j, NULL, &lo);
    CHECK(prc == 0, "whitened rank 16 builds %s", prc ? sm_errmsg() : "");
    if (ok) {
        CHECK(lo.mean_member_error > a1.mean_member_error, "rank 16 member error %.4f > full rank %.4f",
              lo.mean_member_error, a1.mean_member_error);
        CHECK(lo.params_after < a1.params_after, "rank 16 factors store fewer parameters (%lld < %lld)",
              (long long)lo.params_after, (long long)a1.params_after);
    }

    /* Perplexity with overrides: no override = eval; the merged layer changes it. */
    sm_tokens t;
    CHECK(sm_tokens_read(held, sm_model_config(m)->vocab, &t) == 0, "held-out tokens");
    const sm_config *cfg = sm_model_config(m);
    const sm_moe_block **blocks = calloc((size_t)cfg->n_layers, sizeof *blocks);
    double p0 = 0, p1 = 0, pk = 0;
    sm_eval_result er;
    CHECK(sm_perplexity_with(m, t.ids, 4, 256, blocks, NULL, &p0) == 0 &&
              sm_eval_perplexity(m, t.ids, 4 * 256, 256, 0, true, &er) == 0,
          "perplexity runs");
    CHECK_NEAR(p0, er.ppl, 1e-9, "no override = submoe eval");
    if (ok) {
        blocks[2] = &a1.block;
        CHECK(sm_perplexity_with(m, t.ids, 4, 256, blocks, NULL, &p1) == 0 && p1 > p0,
              "merged layer 2: perplexity %.4f > original %.4f", p1, p0);
        sm_layer_build kb;
        j = job_for(2, SM_MERGE_KEEP, 8, SM_ROUTER_REMAP);
        sm_layer_build_run(m, c, &j, NULL, &kb);
        blocks[2] = &kb.block;
        CHECK(sm_perplexity_with(m, t.ids, 4, 256, blocks, NULL, &pk) == 0 && pk == p0,
              "a kept layer as override: same perplexity (%.9g)", pk);
        sm_layer_build_free(&kb);
    }
    /* Cancellation stops the run with "cancelled". */
    volatile int cancel = 1;
    sm_monitor mon = {NULL, NULL, &cancel};
    blocks[2] = NULL;
    CHECK(sm_perplexity_with(m, t.ids, 4, 256, blocks, &mon, &p1) != 0 && strstr(sm_errmsg(), "cancelled"),
          "a cancelled perplexity stops: %s", sm_errmsg());
    /* Layers built as the forward pass reaches them = all of them built first (bit for bit); a
     * builder that keeps every layer = the original; a builder's error stops the run. */
    {
        built_ctx bc = {m, c, 0, 0};
        sm_layer_build all[8];
        int n_built = 0, brc = 0;
        const sm_moe_block **bl = calloc((size_t)cfg->n_layers, sizeof *bl);
        for (int l = 0; l < cfg->n_layers && !brc; l++)
            if (cfg->is_moe[l]) {
                sm_layer_job jl = job_for(l, SM_MERGE_SUBMOE, 4, SM_ROUTER_COLLAPSE_LSTSQ);
                brc = sm_layer_build_run(m, c, &jl, NULL, &all[n_built]);
                if (!brc)
                    bl[l] = &all[n_built++].block;
            }
        double pa = 0, ps = 0, pn = 0;
        brc |= sm_perplexity_with(m, t.ids, 4, 256, bl, NULL, &pa);
        brc |= sm_perplexity_built(m, t.ids, 4, 256, build_each, &bc, NULL, &ps);
        CHECK(!brc && ps == pa && pa > p0 && bc.built == n_built,
              "streamed builds (%d layers): perplexity %.9g = all built first %.9g", bc.built, ps, pa);
        bc.mode = 1;
        CHECK(sm_perplexity_built(m, t.ids, 4, 256, build_each, &bc, NULL, &pn) == 0 && pn == p0,
              "a builder keeping every layer: the original perplexity (%.9g)", pn);
        bc.mode = 2;
        CHECK(sm_perplexity_built(m, t.ids, 4, 256, build_each, &bc, NULL, &pn) != 0 &&
                  strstr(sm_errmsg(), "layer 2") && strstr(sm_errmsg(), "no build for this layer"),
              "a builder's error stops the run: %s", sm_errmsg());
        for (int i = 0; i < n_built; i++)
            sm_layer_build_free(&all[i]);
        free(bl);
    }
    /* A bad job: more clusters than experts. */
    j = job_for(1, SM_MERGE_SUBMOE, 9, SM_ROUTER_REMAP);
    CHECK(sm_layer_build_run(m, c, &j, NULL, &b) != 0 && strstr(sm_errmsg(), "layer 1"),
          "9 clusters of 8: %s", sm_errmsg());
    /* Planner: uniform and adaptive allocation spend the same total. */
    sm_planned_layer pl[8];
    sm_planner_opts po = {.experts = 0, .ratio = 0.5, .algo = SM_CLUSTER_KMEANS, .sim = SM_SIM_OUTPUT, .seed = 1};
    prc = sm_planner_run(m, c, &po, NULL, pl);
    CHECK(prc == 0, "uniform plan %s", prc ? sm_errmsg() : "");
    int tot = 0, uni = 1;
    for (int l = 0; l < cfg->n_layers; l++)
        if (pl[l].layer >= 0) {
            tot += pl[l].k;
            uni &= pl[l].k == 4;
        }
    CHECK(uni && tot == 16, "ratio 0.5: 4 experts in each of 4 layers (total %d)", tot);
    int k_uni[8];
    for (int l = 0; l < cfg->n_layers; l++) {
        k_uni[l] = pl[l].k;
        sm_planned_layer_free(&pl[l]);
    }
    po.adaptive = true;
    prc = sm_planner_run(m, c, &po, NULL, pl);
    CHECK(prc == 0, "adaptive plan %s", prc ? sm_errmsg() : "");
    tot = 0;
    int differs = 0, legal = 1;
    double jsum_a = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        if (pl[l].layer >= 0) {
            tot += pl[l].k;
            differs |= pl[l].k != k_uni[l];
            legal &= pl[l].k >= cfg->top_k && pl[l].k <= 8;
            jsum_a += pl[l].cost;
            printf("# adaptive layer %d: k %d, J %.4f\n", l, pl[l].k, pl[l].cost);
        }
    CHECK(tot == 16 && legal, "adaptive keeps the same total (%d) with top-k <= k <= n in every layer", tot);
    CHECK(differs, "adaptive allocation differs from uniform on the demo");
    for (int l = 0; l < cfg->n_layers; l++)
        sm_planned_layer_free(&pl[l]);
    po.experts = 9;
    CHECK(sm_planner_run(m, c, &po, NULL, pl) == 0, "a target above n clamps to n");
    for (int l = 0; l < cfg->n_layers; l++)
        sm_planned_layer_free(&pl[l]);
    free(blocks);
    sm_tokens_free(&t);
    sm_layer_build_free(&lo);
    if (ok) {
        sm_layer_build_free(&a1);
        sm_layer_build_free(&a2);
    }
    sm_calib_free(c);
    sm_model_close(m);
    test_auto_shared(tokens, held, SM_ARCH_QWEN2_MOE);
    test_auto_shared(tokens, held, SM_ARCH_DEEPSEEK);
    free(tokens), free(held);
    return tu_done();
}
