/* test_plan: YAML plans — every key of a complete plan, write/read round trip and byte
 * determinism, and malformed plans in tests/plans/bad-*.yaml: each must fail with exactly the
 * message on its first line ("# expect: ..."), from the parser or, for model-dependent errors,
 * from sm_plan_check_model against data/demo. */
#include "plan/plan.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "fixture.h"
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static void test_full(void)
{
    sm_plan p;
    int rc = fx_test_plan("full.yaml", &p);
    CHECK(rc == 0, "full.yaml parses %s", rc ? sm_errmsg() : "");
    if (rc)
        return;
    CHECK_STR(p.model_path, "../../data/demo", "model.path");
    char *res = sm_plan_resolve_path(&p, p.model_path);
    CHECK(strstr(res, "tests/plans/../../data/demo") != NULL, "model path resolves against the plan's dir (%s)", res);
    free(res);
    CHECK(p.calib.samples == 16 && p.calib.seq_len == 128 && p.calib.keep == 2048 && p.calib.heldout == 512 &&
              p.calib.sample == 256 && p.calib.seed == 7,
          "calibration numbers");
    CHECK_STR(p.calib.tokens, "../../data/calib.u32", "calibration.tokens");
    CHECK_STR(p.calib.stats, "demo.stats", "calibration.stats");
    const sm_plan_settings *d = &p.defaults;
    CHECK(d->has_method && !d->method_auto && d->method == SM_MERGE_SUBMOE, "defaults.method");
    CHECK(d->has_clustering && d->clustering == SM_CLUSTER_HIERARCHICAL, "defaults.clustering");
    CHECK(d->has_router && d->router == SM_ROUTER_COLLAPSE_LSTSQ, "defaults.router");
    CHECK(d->has_similarity && d->similarity == SM_SIM_OUTPUT, "defaults.similarity");
    CHECK(d->rank.set[0] && d->rank.r[0].kind == SM_RANK_FRACTION && d->rank.r[0].fraction == 0.5 &&
              d->rank.r[2].kind == SM_RANK_FULL,
          "defaults.rank per matrix");
    CHECK(d->has_align && !d->align && p.merge.has_damping && p.merge.damping == 0.02 && p.has_seed && p.seed == 3,
          "align, damping, seed");
    CHECK(p.merge.has_svd && p.merge.svd == SM_USVD_EIGEN, "defaults.svd: exact");
    CHECK(p.has_ratio && p.ratio == 0.25 && p.adaptive && p.window == 2, "ratio, allocation, window");
    CHECK(p.n_layers == 3, "3 layer entries");
    const sm_plan_layer *l1 = sm_plan_find_layer(&p, 1), *l2 = sm_plan_find_layer(&p, 2),
                        *l3 = sm_plan_find_layer(&p, 3);
    CHECK(l1 && l1->s.has_experts && l1->s.experts == 4 && l1->s.method == SM_MERGE_PRUNE_FREQUENCY,
          "layer 1: 4 experts by prune-frequency");
    CHECK(l2 && l2->n_groups == 4 && l2->group_len[2] == 3 && l2->groups[2][2] == 5 &&
              l2->s.method == SM_MERGE_SUBMOE_WHITENED && l2->s.router == SM_ROUTER_REMAP &&
              l2->s.rank.r[1].count == 64,
          "layer 2: groups, method, router, rank");
    CHECK(l2 && l2->n_clusters == 2 && l2->clusters[1].index == 2 && l2->clusters[1].rank.set[2] &&
              !l2->clusters[1].rank.set[0] && l2->clusters[1].rank.r[2].fraction == 0.25,
          "layer 2: per-cluster ranks");
    CHECK(l2 && l2->s.has_refit && !l2->s.refit && l2->clusters[0].has_refit && !l2->clusters[0].refit &&
              !l2->clusters[1].has_refit && !d->has_refit,
          "layer 2: refit: none, and per cluster");
    CHECK(l2 && l2->pos.line == 31 && l2->pos.col == 3, "layer 2 remembers its position (%d:%d)", l2 ? l2->pos.line : 0,
          l2 ? l2->pos.col : 0);
    CHECK(l3 && l3->s.method_auto && l3->s.align && l3->chosen && strstr(l3->chosen, "aligned"),
          "layer 3: auto with provenance");
    CHECK(p.output.format == SM_OUT_SUBMOE && p.output.dtype == SM_DT_BF16 && p.output.shard_size == 500u << 20,
          "output format, dtype, shard size");
    /* Round trip: format -> parse -> format gives the same bytes, and the same values. */
    char *t1, *t2;
    size_t n1, n2;
    sm_plan_format(&p, &t1, &n1);
    sm_plan q;
    rc = sm_plan_parse(t1, n1, "roundtrip.yaml", &q);
    CHECK(rc == 0, "written plan parses back %s", rc ? sm_errmsg() : "");
    sm_plan_format(&q, &t2, &n2);
    CHECK(n1 == n2 && !memcmp(t1, t2, n1), "write -> read -> write is byte-identical (%zu bytes)", n1);
    CHECK(q.n_layers == 3 && q.layers[1].n_groups == 4 && q.layers[1].clusters[1].rank.r[2].fraction == 0.25 &&
              q.defaults.rank.r[0].fraction == 0.5 && q.output.shard_size == p.output.shard_size,
          "round trip keeps the values");
    free(t1);
    free(t2);
    sm_plan_free(&q);
    sm_plan_free(&p);
}

static int bad_cases(const char *dir, const char *demo)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return 0;
    sm_model *m = sm_model_open(demo);
    CHECK(m != NULL, "demo opens %s", m ? "" : sm_errmsg());
    char fp[32] = "";
    if (m)
        sm_model_fingerprint(m, fp);
    struct dirent *e;
    int n = 0;
    char *names[256];
    while ((e = readdir(dh)) && n < 256)
        if (!strncmp(e->d_name, "bad-", 4) && strstr(e->d_name, ".yaml"))
            names[n++] = strdup(e->d_name);
    closedir(dh);
    for (int i = 0; i < n; i++) { /* stable order */
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    }
    for (int i = 0; i < n; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *text = sm_read_file(path, 1 << 20, &len);
        char want[700] = "";
        if (text && !strncmp(text, "# expect: ", 10)) {
            const char *s = text + 10, *nl = strchr(s, '\n');
            snprintf(want, sizeof want, "%.*s", (int)(nl ? nl - s : (long)strlen(s)), s);
        }
        /* placeholders for model-dependent text */
        char exp[1400] = "";
        for (const char *s = want; *s;) {
            if (!strncmp(s, "DEMO", 4))
                strcat(exp, demo), s += 4;
            else if (!strncmp(s, "FP", 2))
                strcat(exp, fp), s += 2;
            else {
                size_t k = strlen(exp);
                exp[k] = *s++;
                exp[k + 1] = 0;
            }
        }
        sm_plan p;
        int rc = sm_plan_parse(text ? text : "", text ? len : 0, names[i], &p);
        if (rc == 0 && m)
            rc = sm_plan_check_model(&p, m);
        bool same = rc != 0 && *want && !strcmp(sm_errmsg(), exp);
        CHECK(same, "%s: %s", names[i], rc ? sm_errmsg() : "(accepted)");
        if (!same)
            printf("#   want: %s\n", exp);
        sm_plan_free(&p);
        free(text);
        free(names[i]);
    }
    /* the good plan passes the model checks */
    sm_plan p;
    int rc = fx_test_plan("full.yaml", &p);
    rc = rc ? rc : m ? sm_plan_check_model(&p, m) : -1;
    CHECK(rc == 0, "full.yaml passes the model checks %s", rc ? sm_errmsg() : "");
    sm_plan_free(&p);
    sm_model_close(m);
    return n;
}

/* Issue 18: a plan that names no router gets the best its output format holds. */
static void test_default_router(void)
{
    const char *text = "submoe_plan: 1\nmodel: { path: m }\nlayers:\n  1: { router: collapse-mean }\n";
    const struct {
        const char *format; /* NULL: none given */
        sm_router_mode want;
    } cases[] = {{NULL, SM_ROUTER_REMAP},
                 {"submoe", SM_ROUTER_REMAP},
                 {"hf-expanded", SM_ROUTER_REMAP},
                 {"hf", SM_ROUTER_COLLAPSE_KL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sm_plan p;
        if (sm_plan_parse(text, strlen(text), "router.yaml", &p) != 0) {
            CHECK(0, "parse: %s", sm_errmsg());
            return;
        }
        if (cases[i].format) {
            p.output.has_format = true;
            sm_out_format_parse(cases[i].format, &p.output.format);
        }
        sm_plan_effective dflt, layer;
        sm_plan_effective_settings(&p, NULL, &dflt);
        sm_plan_effective_settings(&p, sm_plan_find_layer(&p, 1), &layer);
        CHECK(dflt.router == cases[i].want && layer.router == SM_ROUTER_COLLAPSE_MEAN,
              "format %s: default router %s (want %s), a layer's own router kept (%s)",
              cases[i].format ? cases[i].format : "(none)", sm_router_mode_name(dflt.router),
              sm_router_mode_name(cases[i].want), sm_router_mode_name(layer.router));
        sm_plan_free(&p);
    }
}

int main(void)
{
    test_default_router();
    const char *demo = getenv("DEMO");
    char *dir = fx_srcpath("tests/plans");
    test_full();
    int n = bad_cases(dir, demo ? demo : "data/demo");
    CHECK(n >= 15, "%d malformed plans checked", n);
    uint64_t v;
    CHECK(sm_parse_size("4G", &v) == 0 && v == 4ull << 30 && sm_parse_size("500MB", &v) == 0 && v == 500ull << 20 &&
              sm_parse_size("12", &v) == 0 && v == 12 && sm_parse_size("4X", &v) != 0 && sm_parse_size("-1", &v) != 0,
          "sizes");
    free(dir);
    return tu_done();
}
