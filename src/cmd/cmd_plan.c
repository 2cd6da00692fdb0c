/* submoe plan: calibrate (or reuse the stats file), allocate experts over the layers, cluster
 * every MoE layer and write a complete, explicit YAML plan with the statistics behind it as
 * comments. */
#include "cmd/cmd.h"
#include "cmd/text_args.h"
#include "engine/router_report.h"
#include "pipeline/guard.h"
#include "pipeline/resolve.h"
#include "plan/plan.h"
#include "util/datadir.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/iopaths.h"
#include "util/publish.h"
#include "util/mem.h"
#include "util/signals.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe plan MODEL (--experts N | --ratio R) -o PLAN [OPTIONS]\n"
            "       submoe plan MODEL (--experts N | --ratio R) --text FILE... -o PLAN [OPTIONS]\n"
            "\n"
            "Calibrate MODEL (or reuse --calib), decide how many experts every MoE layer keeps, cluster\n"
            "its experts and write PLAN, a complete submoe-plan(5) document: every layer's expert count,\n"
            "groups, method and ranks spelled out, with the routing frequencies, within-cluster\n"
            "similarities and held-out MoE-block output error that justify them as comments. Run it with\n"
            "`submoe apply PLAN`, or open it in the workbench.\n"
            "\n"
            "Target (one of):\n"
            "  -e, --experts N          experts kept per MoE layer\n"
            "  -r, --ratio R            fraction of each layer's experts removed, in [0, 1)\n"
            "Allocation and clustering:\n"
            "      --allocation A       uniform (default) or adaptive (by marginal clustering cost)\n"
            "      --window W           adaptive window in MoE layers (2; 0 = whole model)\n"
            "      --clustering C       kmeans (default), hierarchical, kmedoids, dominant (the most-routed\n"
            "                           experts as centres, for skewed routing) or reap (the most\n"
            "                           REAP-salient experts as centres)\n"
            "      --similarity S       output (default), weight or logit\n"
            "      --seed S             clustering seed (1)\n"
            "Merging:\n"
            "  -m, --method M           auto (default: per layer, the best of submoe with and without\n"
            "                           neuron alignment, on the clustering's groups, on dominant and on\n"
            "                           reap ones, prune-frequency, prune-output and prune-reap, by held-out\n"
            "                           loss with the layer swapped in), or one of submoe, submoe-whitened,\n"
            "                           freq-average, average, prune-frequency, prune-output, prune-reap\n"
            "                           (the most REAP-salient experts), keep for every layer\n"
            "      --router R           remap, collapse-lstsq, collapse-kl or collapse-mean (default: the\n"
            "                           best the output format holds: remap for submoe and hf-expanded,\n"
            "                           collapse-kl for hf)\n"
            "      --routers            compare the routers on every merged layer: held-out KL, top-k\n"
            "                           agreement and MoE-block output error of remap, collapse-lstsq,\n"
            "                           collapse-kl and collapse-mean, as comments on the layer\n"
            "      --rank RANK          full (default), an integer or a fraction, for gate, up and down;\n"
            "                           or gate=RANK,up=RANK,down=RANK\n"
            "      --damping D          whitening damping for submoe-whitened (0.01)\n"
            "      --svd S              union-SVD subspace: auto (default), exact or randomized\n"
            "      --align              align the members' intermediate neurons before merging (for\n"
            "                           experts trained from scratch; auto tries both)\n"
            "      --refit[=down|none]  refit each merged expert's down projection by ridge least squares\n"
            "                           so it reproduces its members' routing-weighted outputs on the\n"
            "                           calibration rows (refit: down; auto tries both)\n"
            "Calibration:\n"
            "  -t, --tokens FILE        calibration tokens (default: the bundled data/calib.u32, bytes of\n"
            "                           English text: only for a byte vocabulary, else refused)\n"
            "      --text FILE...       calibration text instead, tokenized with MODEL's tokenizer.json, windows\n"
            "                           drawn with seed 1 (as submoe calibrate --text); the plan records the\n"
            "                           files and the text and tokenizer digests\n"
            "      --text-field NAME    the JSON Lines field holding the text (text)\n"
            "  -c, --calib FILE         stats file: an existing one is read as it is (from submoe calibrate\n"
            "                           or an activations file made elsewhere); with --tokens, or when it\n"
            "                           does not exist, it caches the capture (reused when it matches)\n"
            "      --samples N, --seq-len N, --keep M, --heldout M\n"
            "                           as for submoe calibrate (32, 256, 4096, a quarter)\n"
            "Output (recorded in the plan):\n"
            "      --format F           hf, hf-expanded or submoe (default submoe)\n"
            "      --dtype D            source (default), f32, f16 or bf16\n"
            "      --shard-size SIZE    e.g. 4G (default 4G)\n"
            "      --out-dir DIR        output.path for apply\n"
            "  -o, --out PLAN           the plan file to write (required)\n"
            "  -q, --quiet              no progress bar or summary\n"
            "  -h, --help               show this help\n");
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi))
        return sm_err("%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
    *out = v;
    return 0;
}

/* An integer option (no fraction, no exponent games). */
static int parse_int(const char *opt, const char *s, double lo, double hi, double *out)
{
    if (parse_num(opt, s, lo, hi, out))
        return -1;
    if (*out != (double)(int64_t)*out)
        return sm_err("%s: '%s' is not a whole number", opt, s);
    return 0;
}

static int parse_ranks(const char *s, sm_plan_ranks *rk)
{
    if (!strchr(s, '=')) {
        sm_rank r;
        if (sm_rank_parse(s, &r))
            return sm_err_prefix("--rank");
        for (int j = 0; j < 3; j++)
            rk->r[j] = r, rk->set[j] = true;
        return 0;
    }
    char *dup = xstrdup(s), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(dup, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        int j = !eq ? -1 : !strncmp(t, "gate=", 5) ? 0 : !strncmp(t, "up=", 3) ? 1 : !strncmp(t, "down=", 5) ? 2 : -1;
        if (j < 0)
            rc = sm_err("--rank: '%s' is not gate=R, up=R or down=R", t);
        else if (sm_rank_parse(eq + 1, &rk->r[j]))
            rc = sm_err_prefix("--rank");
        else
            rk->set[j] = true;
    }
    free(dup);
    return rc;
}

static void layer_comment(sm_plan_layer *pl, const sm_resolved_plan *r, const sm_resolved_layer *rl,
                          const sm_layer_build *b)
{
    char text[4096];
    size_t n = 0;
    const sm_layer_analysis *a = b->analysis;
    n += (size_t)snprintf(text + n, sizeof text - n, "layer %d: %d -> %d experts, %s%s", rl->layer, rl->n,
                          b->merged.n_experts, sm_merge_method_name(b->merged.method),
                          b->merged.align_corr > 0 ? " aligned" : "");
    if (b->merged.align_corr > 0)
        n += (size_t)snprintf(text + n, sizeof text - n, " (matched neurons correlate %.3f)", b->merged.align_corr);
    if (b->merged.refit_clusters > 0)
        n += (size_t)snprintf(text + n, sizeof text - n, ", down projection refitted in %d cluster%s",
                              b->merged.refit_clusters, b->merged.refit_clusters > 1 ? "s" : "");
    if (sm_merge_method_merges(b->merged.method))
        n += (size_t)snprintf(text + n, sizeof text - n, ", router %s", sm_router_mode_name(rl->job.spec.router));
    if (b->output_error >= 0)
        n += (size_t)snprintf(text + n, sizeof text - n, "; held-out MoE-block output error %.4f", b->output_error);
    int n_rand = 0, n_usvd = 0;
    for (int s = 0; b->merged.mats && s < b->merged.n_experts; s++)
        for (int q = 0; q < 3; q++) {
            n_rand += b->merged.mats[s][q].solver == SM_USVD_RANDOMIZED;
            n_usvd += b->merged.mats[s][q].solver != SM_USVD_AUTO;
        }
    if (n_rand) /* say so: the merge is then an approximation of the paper's formula */
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "\nunion subspaces: %d of %d randomized (approximate; defaults.svd: exact for the literal formula)",
                              n_rand, n_usvd);
    if (a) {
        n += (size_t)snprintf(text + n, sizeof text - n, "\nrouting frequency:");
        for (int i = 0; i < a->n && n < sizeof text - 16; i++)
            n += (size_t)snprintf(text + n, sizeof text - n, " %d:%.3f", i, a->freq[i]);
    }
    if (a && a->saliency) { /* REAP (DESIGN §2.8): what prune-reap and reap groups rank by */
        n += (size_t)snprintf(text + n, sizeof text - n, "\nREAP saliency:");
        for (int i = 0; i < a->n && n < sizeof text - 20; i++)
            n += (size_t)snprintf(text + n, sizeof text - n, " %d:%.4g", i, a->saliency[i]);
    }
    if (a && sm_merge_method_merges(b->merged.method)) {
        n += (size_t)snprintf(text + n, sizeof text - n, "\nmean output similarity within groups:");
        for (int q = 0; q < b->k && n < sizeof text - 24; q++) {
            double s = 0;
            int pairs = 0;
            for (int i = 0; i < a->n; i++)
                for (int j = i + 1; j < a->n; j++)
                    if (b->assign[i] == q && b->assign[j] == q)
                        s += a->sim_output[i * a->n + j], pairs++;
            n += (size_t)(pairs ? snprintf(text + n, sizeof text - n, " %d:%.3f", q, s / pairs)
                                : snprintf(text + n, sizeof text - n, " %d:-", q));
        }
    }
    (void)r;
    pl->comment = xstrdup(text);
}

/* hf holds dense experts only: a group stored as rank-r factors (sm_rank_factored) is refused,
 * naming the layer. Non-zero (with the message) when it has one. */
static int hf_factors(const sm_resolved_plan *r, const sm_resolved_layer *rl, sm_merge_method m)
{
    int64_t(*ranks)[3] = xcalloc((size_t)rl->job.k, sizeof *ranks);
    int n = sm_resolve_stored_ranks(r->model, rl, m, ranks);
    static const char *const mat[3] = {"gate", "up", "down"};
    for (int q = 0; n > 0 && q < rl->job.k; q++)
        for (int k = 0; k < 3; k++)
            if (ranks[q][k]) {
                sm_err("--format hf: layer %d stores %d matrices as low-rank factors (%s merge at rank %lld, e.g. "
                       "group %d's %s), which hf cannot hold; use --format submoe, or hf-expanded, or rank full",
                       rl->layer, n, sm_merge_method_name(m), (long long)ranks[q][k], q, mat[k]);
                q = rl->job.k;
                break;
            }
    free(ranks);
    return n != 0;
}

/* hf needs one expert count in every MoE layer, a collapsed router and dense experts;
 * hf-expanded needs every original expert mapped to a merged one (no pruning). */
static int check_format(const sm_plan *p, const sm_resolved_plan *r)
{
    if (!p->output.has_format || p->output.format == SM_OUT_SUBMOE)
        return 0;
    int k0 = -1;
    for (int i = 0; i < p->n_layers; i++) {
        const sm_plan_layer *pl = &p->layers[i];
        const sm_resolved_layer *rl = &r->layers[pl->layer];
        sm_merge_method m = pl->s.method;
        if (pl->s.method_auto && pl->chosen) {
            bool al;
            sm_auto_choice_parse(pl->chosen, &m, &al);
        }
        bool merges = sm_merge_method_merges(m);
        if (p->output.format == SM_OUT_HF_EXPANDED && !merges && m != SM_MERGE_KEEP)
            return sm_err("--format hf-expanded: layer %d is pruned (%s), and hf-expanded keeps every original "
                          "expert; use --format submoe or hf, or -m submoe",
                          pl->layer, sm_merge_method_name(m));
        if (p->output.format == SM_OUT_HF) {
            if (k0 >= 0 && pl->s.experts != k0)
                return sm_err("--format hf: layers keep different numbers of experts (%d and %d), which the "
                              "standard layout cannot hold; use --format submoe, or --allocation uniform",
                              k0, pl->s.experts);
            k0 = pl->s.experts;
            if (merges && rl->job.spec.router == SM_ROUTER_REMAP)
                return sm_err("--format hf: the remap router keeps every original router row; use --router "
                              "collapse-lstsq, or --format hf-expanded or submoe");
            if (merges && hf_factors(r, rl, m))
                return -1;
        }
    }
    return 0;
}

/* Before any work: the plan, and the stats file when it caches a capture, never land on the
 * model, the tokens or the stats file read (plan m -c m.stats -o m.stats). */
static int check_paths(const sm_plan *p, const char *model, const char *out)
{
    sm_paths inputs = {0}, outputs = {0};
    sm_paths_add_model(&inputs, model);
    sm_paths_add(&inputs, "tokens file", p->calib.tokens);
    for (int i = 0; i < p->calib.n_text; i++)
        sm_paths_add(&inputs, "text file", p->calib.text[i]);
    sm_paths_add(p->calib.tokens || p->calib.n_text ? &outputs : &inputs, "stats file", p->calib.stats);
    sm_paths_add(&outputs, "plan", out);
    int rc = sm_check_output_paths(&inputs, &outputs);
    sm_paths_free(&inputs);
    sm_paths_free(&outputs);
    return rc;
}

enum { O_ALLOC = 256, O_WINDOW, O_CLUSTERING, O_SIMILARITY, O_SEED, O_ROUTER, O_RANK, O_DAMPING, O_SAMPLES,
       O_SEQ_LEN, O_KEEP, O_HELDOUT, O_FORMAT, O_DTYPE, O_SHARD, O_OUTDIR, O_ALIGN,
       O_SVD, O_TEXT, O_TEXT_FIELD,
       O_REFIT,
       O_ROUTERS };
static const struct option plan_options[] = {
    {"experts", required_argument, NULL, 'e'},    {"ratio", required_argument, NULL, 'r'},
    {"allocation", required_argument, NULL, O_ALLOC}, {"window", required_argument, NULL, O_WINDOW},
    {"clustering", required_argument, NULL, O_CLUSTERING}, {"similarity", required_argument, NULL, O_SIMILARITY},
    {"seed", required_argument, NULL, O_SEED},    {"method", required_argument, NULL, 'm'},
    {"router", required_argument, NULL, O_ROUTER}, {"rank", required_argument, NULL, O_RANK},
    {"damping", required_argument, NULL, O_DAMPING}, {"svd", required_argument, NULL, O_SVD},
    {"tokens", required_argument, NULL, 't'},
    {"calib", required_argument, NULL, 'c'},      {"samples", required_argument, NULL, O_SAMPLES},
    {"seq-len", required_argument, NULL, O_SEQ_LEN}, {"keep", required_argument, NULL, O_KEEP},
    {"heldout", required_argument, NULL, O_HELDOUT}, {"format", required_argument, NULL, O_FORMAT},
    {"dtype", required_argument, NULL, O_DTYPE},  {"shard-size", required_argument, NULL, O_SHARD},
    {"out-dir", required_argument, NULL, O_OUTDIR}, {"out", required_argument, NULL, 'o'},
    {"align", no_argument, NULL, O_ALIGN},
    {"refit", optional_argument, NULL, O_REFIT},
    {"text", required_argument, NULL, O_TEXT},    {"text-field", required_argument, NULL, O_TEXT_FIELD},
    {"quiet", no_argument, NULL, 'q'},            {"help", no_argument, NULL, 'h'},
    {"routers", no_argument, NULL, O_ROUTERS},
    {NULL, 0, NULL, 0},
};

/* The command line's file names and flags that are not plan settings. */
typedef struct plan_args {
    const char *out, *tokens, *calib;
    bool quiet;
    cmd_text_args text;
    bool routers; /* --routers: the router report on every merged layer */
} plan_args;

/* One option into the plan or the arguments; non-zero (with the message set) when its value is bad. */
static int parse_option(int ch, sm_plan *p, plan_args *a)
{
    int bad = 0;
    double v;
    switch (ch) {
    case 'e':
        bad = parse_int("--experts", optarg, 1, 1 << 20, &v);
        p->defaults.has_experts = true, p->defaults.experts = (int)v;
        break;
    case 'r':
        bad = parse_num("--ratio", optarg, 0, 0.999999, &v);
        p->has_ratio = true, p->ratio = v;
        break;
    case O_ALLOC:
        p->has_allocation = true;
        p->adaptive = !strcmp(optarg, "adaptive");
        if (!p->adaptive && strcmp(optarg, "uniform"))
            bad = sm_err("--allocation: expected uniform or adaptive, got '%s'", optarg);
        break;
    case O_WINDOW:
        bad = parse_int("--window", optarg, 0, 1 << 20, &v);
        p->has_window = true, p->window = (int)v;
        break;
    case O_CLUSTERING:
        p->defaults.has_clustering = true;
        bad = sm_cluster_algo_parse(optarg, &p->defaults.clustering);
        break;
    case O_SIMILARITY:
        p->defaults.has_similarity = true;
        bad = sm_similarity_kind_parse(optarg, &p->defaults.similarity);
        break;
    case O_SEED:
        bad = parse_int("--seed", optarg, 0, 9007199254740992.0, &v);
        p->has_seed = true, p->seed = (uint64_t)v;
        break;
    case 'm':
        p->defaults.has_method = true;
        if (!strcmp(optarg, "auto"))
            p->defaults.method_auto = true;
        else
            bad = sm_merge_method_parse(optarg, &p->defaults.method);
        break;
    case O_ROUTER:
        p->defaults.has_router = true;
        bad = sm_router_mode_parse(optarg, &p->defaults.router);
        break;
    case O_RANK: bad = parse_ranks(optarg, &p->defaults.rank); break;
    case O_ALIGN: p->defaults.has_align = p->defaults.align = true; break;
    case O_REFIT:
        p->defaults.has_refit = true, p->defaults.refit = true;
        if (optarg && sm_plan_refit_parse(optarg, &p->defaults.refit))
            bad = sm_err("--refit: expected down or none, got '%s'", optarg);
        break;
    case O_DAMPING:
        bad = parse_num("--damping", optarg, 1e-12, 1e6, &p->merge.damping);
        p->merge.has_damping = true;
        break;
    case O_SVD:
        p->merge.has_svd = true;
        bad = sm_plan_svd_parse(optarg, &p->merge.svd);
        break;
    case 't': a->tokens = optarg; break;
    case O_TEXT: a->text.files[a->text.n++] = optarg, a->text.given = true; break;
    case O_TEXT_FIELD: a->text.field = optarg; break;
    case 'c': a->calib = optarg; break;
    case O_SAMPLES:
        bad = parse_int("--samples", optarg, 1, 1 << 20, &v);
        p->calib.has_samples = true, p->calib.samples = (int)v;
        break;
    case O_SEQ_LEN:
        bad = parse_int("--seq-len", optarg, 2, 1 << 24, &v);
        p->calib.has_seq_len = true, p->calib.seq_len = (int)v;
        break;
    case O_KEEP:
        bad = parse_int("--keep", optarg, 0, INT32_MAX, &v);
        p->calib.has_keep = true, p->calib.keep = (int64_t)v;
        break;
    case O_HELDOUT:
        bad = parse_int("--heldout", optarg, 0, INT32_MAX, &v);
        p->calib.has_heldout = true, p->calib.heldout = (int64_t)v;
        break;
    case O_FORMAT:
        p->output.has_format = true;
        bad = sm_out_format_parse(optarg, &p->output.format);
        break;
    case O_DTYPE: {
        sm_dtype d;
        p->output.has_dtype = true;
        if (!strcmp(optarg, "source"))
            p->output.dtype = -1;
        else if (!strcmp(optarg, "f32") || !strcmp(optarg, "f16") || !strcmp(optarg, "bf16"))
            sm_dtype_parse(optarg, &d), p->output.dtype = (int)d;
        else
            bad = sm_err("--dtype: expected source, f32, f16 or bf16, got '%s'", optarg);
        break;
    }
    case O_SHARD:
        p->output.has_shard_size = true;
        if (sm_parse_size(optarg, &p->output.shard_size) || p->output.shard_size < (1u << 20))
            bad = sm_err("--shard-size: expected a size of at least 1M like 4G or 500M, got '%s'", optarg);
        break;
    case O_OUTDIR: p->output.path = sm_path_absolute(optarg); break;
    case 'o': a->out = optarg; break;
    case 'q': a->quiet = true; break;
    case O_ROUTERS: a->routers = true; break;
    }
    return bad;
}

/* The plan's file, model and calibration paths, absolute. True when the tokens are the bundled
 * default (none given). */
static bool set_paths(sm_plan *p, const char *model, const plan_args *a)
{
    const char *tokens = a->tokens;
    p->file = xstrdup(a->out);
    p->model_path = sm_path_absolute(model);
    char *dflt = NULL;
    /* --calib alone names an existing stats/activations file to read as it is; otherwise the
     * tokens (the bundled ones by default) are captured, with --calib as the cache. */
    if (a->text.given) { /* text: the files, the field and the window seed recorded */
        p->calib.text = xcalloc((size_t)a->text.n, sizeof *p->calib.text);
        for (int i = 0; i < a->text.n; i++)
            p->calib.text[p->calib.n_text++] = sm_path_absolute(a->text.files[i]);
        if (a->text.field)
            p->calib.text_field = xstrdup(a->text.field);
        if (!p->calib.has_seed)
            p->calib.has_seed = true, p->calib.seed = 1;
    } else if (!tokens && !(a->calib && sm_exists(a->calib)))
        tokens = dflt = sm_path_join(sm_data_dir(), "calib.u32");
    if (tokens)
        p->calib.tokens = sm_path_absolute(tokens);
    /* absolute, the file itself for an existing one (a cache refreshed in place of the file, not
     * of a link to it), or the absolute name it will have */
    if (a->calib)
        p->calib.stats = sm_path_absolute(a->calib);
    bool bundled = dflt != NULL;
    free(dflt);
    return bundled;
}

/* The model's fingerprint into the plan, --experts checked against its MoE layers, and the
 * bundled byte tokens (`bundled`: the default, not named) refused for another vocabulary. */
static int check_model(sm_plan *p, bool bundled)
{
    sm_model *m = sm_model_open(p->model_path);
    if (!m)
        return -1;
    sm_model_fingerprint(m, p->fingerprint);
    p->has_fingerprint = true;
    const sm_config *mc = sm_model_config(m);
    int most = 0;
    for (int l = 0; l < mc->n_layers; l++)
        if (mc->is_moe[l] && sm_model_layer_experts(m, l) > most)
            most = sm_model_layer_experts(m, l);
    sm_plan_effective eff; /* as the plan checks read it (plan.c) */
    sm_plan_effective_settings(p, NULL, &eff);
    bool remap_merge = !eff.is_auto && sm_merge_method_merges(eff.method) && eff.router == SM_ROUTER_REMAP;
    int rc = bundled ? sm_bundled_tokens_check(mc->vocab, p->calib.tokens, "--tokens") : 0;
    if (!rc && p->defaults.has_experts && (p->defaults.experts > most || (p->defaults.experts < mc->top_k && !remap_merge))) {
        if (p->defaults.experts > most)
            sm_err("--experts %d: the model's MoE layers have %d experts", p->defaults.experts, most);
        else
            sm_err("--experts %d: fewer than the %d experts each token is routed to (only -m submoe and the "
                   "like with --router remap keep the router's rows)",
                   p->defaults.experts, mc->top_k);
        rc = -1;
    }
    sm_model_close(m);
    return rc;
}

/* Every MoE layer built and spelled out in the plan, with the statistics and preview as comments;
 * n_moe, err_sum: the layers with a held-out output error and its sum. */
/* --routers: the routers of a merged layer side by side, appended to its comment. */
static int router_comment(sm_plan_layer *pl, sm_resolved_plan *r, const sm_layer_build *b, const sm_monitor *mon)
{
    const float *fit, *held;
    int64_t m_fit, m_held;
    sm_router_score sc[SM_ROUTER_REPORT_MODES];
    if (sm_calib_inputs(r->calib, b->layer, &fit, &m_fit, &held, &m_held) ||
        sm_router_report(&b->src.block, &b->merged, b->analysis ? b->analysis->freq : NULL, fit, m_fit, held,
                         m_held, mon, sc))
        return sm_err_prefix("layer %d: --routers", b->layer);
    char text[1024];
    size_t n = (size_t)snprintf(text, sizeof text,
                                "%s\nrouters on %" PRId64 " held-out rows (KL of the summed member probabilities in "
                                "nats/row, top-%d agreement, MoE-block output error):",
                                pl->comment ? pl->comment : "", m_held, b->src.block.rule.top_k);
    for (int i = 0; i < SM_ROUTER_REPORT_MODES && n < sizeof text; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s %s %.5f %.3f %.4f", i ? "," : "",
                              sm_router_mode_name(sc[i].mode), sc[i].kl, sc[i].agree, sc[i].output_error);
    if (n < sizeof text)
        snprintf(text + n, sizeof text - n, "; best collapse %s",
                 sm_router_mode_name(sm_router_report_best_collapse(sc)));
    free(pl->comment);
    pl->comment = xstrdup(text);
    return 0;
}

/* An auto layer's `why` when the plan guard kept uniform candidate X over the per-layer choice
 * ("Y (metric: scores)"): "X (metric; the plan guard kept uniform X ... over this layer's own
 * choice Y: scores)" — X first (what apply builds), the layer's scores kept. */
static void guard_why(const sm_guard *g, const char *prior, char *why, size_t len)
{
    const char *x = sm_guard_choice(g), *rest = prior ? strstr(prior, " (") : NULL,
               *colon = rest ? strstr(rest, ": ") : NULL;
    if (!colon) {
        snprintf(why, len, "%s (the plan guard kept uniform %s)", x, x);
        return;
    }
    char per_layer[96];
    if (g->dropped[0])
        snprintf(per_layer, sizeof per_layer, "the per-layer choices %.4f above the best on the first %d windows",
                 g->first[0] - g->best_first, g->n_first);
    else
        snprintf(per_layer, sizeof per_layer, "%.4f for the per-layer choices", g->loss[0]);
    snprintf(why, len, "%s (%.*s; the plan guard kept uniform %s, whole-model held-out loss %.4f against %s, over "
                       "this layer's own choice %.*s: %s",
             x, (int)(colon - rest - 2), rest + 2, x, g->loss[g->best], per_layer, (int)(rest - prior), prior,
             colon + 2);
}

/* Every MoE layer built and spelled out in the plan, with the statistics and preview as comments;
 * n_moe, err_sum: the layers with a held-out output error and its sum. With a guard that kept a
 * uniform candidate, auto layers build it (their own per-layer choice is prior[layer]). */
static int spell_out_layers(sm_plan *p, sm_resolved_plan *r, const sm_monitor *mon, bool routers,
                            const sm_guard *g, char *const *prior, int *n_moe, double *err_sum)
{
    const char *force = g ? sm_guard_choice(g) : NULL;
    for (int l = 0; l < r->n_layers; l++) {
        sm_resolved_layer *rl = &r->layers[l];
        if (!rl->n)
            continue;
        sm_layer_build b;
        char why[1400] = "";
        sm_layer_job forced;
        int brc;
        if (rl->is_auto && force) {
            guard_why(g, prior[l], why, sizeof why);
            brc = sm_guard_candidate_job(&rl->job, force, &forced) ? sm_err("layer %d: no candidate %s", l, force)
                                                                    : sm_layer_build_run(r->model, r->calib, &forced,
                                                                                         mon, &b);
        } else {
            brc = rl->is_auto ? sm_layer_build_auto(r->model, r->calib, &rl->job, mon, &b, why, sizeof why)
                              : sm_layer_build_run(r->model, r->calib, &rl->job, mon, &b);
        }
        if (!brc && sm_layer_build_check(&b)) {
            sm_layer_build_free(&b);
            brc = -1;
        }
        if (brc)
            return -1;
        p->layers = xrealloc(p->layers, sizeof *p->layers * (size_t)(p->n_layers + 1));
        sm_plan_layer *pl = &p->layers[p->n_layers++];
        /* the groups merged: auto may have chosen other groups than the clustering's (dominant
         * ones); a pruned layer records the clustering's */
        if (sm_merge_method_merges(b.merged.method) && rl->assign)
            memcpy(rl->assign, b.assign, sizeof(int) * (size_t)rl->n);
        if (!rl->is_auto)
            rl->job.spec.method = b.merged.method;
        sm_resolve_layer_entry(rl, rl->is_auto, why, false, pl); /* the router is the defaults' */
        layer_comment(pl, r, rl, &b);
        if (routers && sm_merge_method_merges(b.merged.method) && router_comment(pl, r, &b, mon)) {
            sm_layer_build_free(&b);
            return -1;
        }
        if (b.output_error >= 0)
            *err_sum += b.output_error, (*n_moe)++;
        sm_layer_build_free(&b);
        /* one layer's inputs and statistics at a time: the stats file's mapped outputs (256 MiB a
         * layer at OLMoE's shape) and the converted rows stayed resident layer after layer */
        sm_calib_release(r->calib, l);
    }
    return 0;
}

/* auto's plan guard (pipeline/guard.h) over the layers just spelled out: auto layers are scored
 * on their own groups (`own`, saved before spell_out_layers recorded the merged ones in
 * rl->assign), and when a uniform candidate wins the layers are spelled out again with it. `note`: the guard's scores for
 * the plan's header (NULL when it did not run). */
static int plan_guard(sm_plan *p, sm_resolved_plan *r, int *const *own, const sm_monitor *mon, bool routers,
                      int *n_moe, double *err_sum, char **note)
{
    sm_guard_layer *gl = xcalloc((size_t)r->n_layers, sizeof *gl);
    sm_layer_job *jobs = xcalloc((size_t)r->n_layers, sizeof *jobs);
    char **prior = xcalloc((size_t)r->n_layers, sizeof *prior);
    for (int i = 0; i < p->n_layers; i++) {
        sm_resolved_layer *rl = &r->layers[p->layers[i].layer];
        jobs[rl->layer] = rl->job;
        if (own[rl->layer])
            jobs[rl->layer].groups = own[rl->layer];
        gl[rl->layer].job = &jobs[rl->layer];
        if (rl->is_auto)
            gl[rl->layer].chosen = prior[rl->layer] = xstrdup(p->layers[i].chosen ? p->layers[i].chosen : "");
    }
    sm_guard g;
    int rc = sm_guard_run(r->model, r->calib, gl, r->n_layers, mon, &g);
    if (!rc && g.n_plans) {
        char text[2048];
        sm_guard_note(&g, text, sizeof text);
        *note = xstrdup(text);
    }
    if (!rc && sm_guard_choice(&g)) {
        for (int i = 0; i < p->n_layers; i++) {
            sm_resolved_layer *rl = &r->layers[p->layers[i].layer];
            if (own[rl->layer]) /* the candidate's own groups, not the ones the per-layer choice merged */
                memcpy(rl->assign, own[rl->layer], sizeof(int) * (size_t)rl->n);
            sm_plan_layer_free(&p->layers[i]);
        }
        p->n_layers = 0;
        *n_moe = 0, *err_sum = 0;
        rc = spell_out_layers(p, r, mon, routers, &g, prior, n_moe, err_sum);
    }
    for (int l = 0; l < r->n_layers; l++)
        free(prior[l]);
    free(prior);
    free(jobs);
    free(gl);
    return rc;
}

/* The digests of the text the statistics came from (the stats file's metadata) into the plan. */
static void record_text_digests(sm_plan *p, const sm_resolved_plan *r)
{
    const char *td = r->calib ? sm_calib_metadata(r->calib, "text_digest") : NULL,
               *kd = r->calib ? sm_calib_metadata(r->calib, "tokenizer_digest") : NULL;
    if (!p->calib.n_text || !td || !kd)
        return;
    free(p->calib.text_digest);
    free(p->calib.tokenizer_digest);
    p->calib.text_digest = xstrdup(td);
    p->calib.tokenizer_digest = xstrdup(kd);
}

int cmd_plan(int argc, char **argv)
{
    sm_plan p;
    sm_plan_init(&p);
    plan_args a = {NULL, NULL, NULL, false, {0}, false};
    cmd_text_args_init(&a.text, argc);
    int ch, bad = 0;
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "e:r:m:t:c:o:qh", plan_options, NULL)) != -1) {
        switch (ch) {
        case 'h': usage(stdout); sm_plan_free(&p); cmd_text_args_free(&a.text); return 0;
        case '?': usage(stderr); sm_plan_free(&p); cmd_text_args_free(&a.text); return 2;
        default: bad = parse_option(ch, &p, &a); break;
        }
    }
    const char *out = a.out;
    const char *err = bad ? sm_errmsg()
                      : cmd_text_args_finish(&a.text, argc, argv, optind) ? sm_errmsg()
                      : a.text.given && a.tokens ? "--tokens and --text do not go together"
                      : !out ? "-o PLAN is required"
                      : p.defaults.has_experts == p.has_ratio ? "give --experts N or --ratio R (one of them)"
                                                               : NULL;
    if (err) {
        fprintf(stderr, "submoe plan: %s\n", err);
        if (!bad)
            usage(stderr);
        sm_plan_free(&p);
        cmd_text_args_free(&a.text);
        return 2;
    }
    bool bundled = set_paths(&p, argv[optind], &a);

    int rc = 1;
    sm_resolved_plan r;
    memset(&r, 0, sizeof r);
    const sm_monitor *mon = sm_signals_monitor(); /* SIGINT/SIGTERM stop the work */
    char *target = NULL, *guard_note = NULL;
    int **own = NULL;
    bool direct;
    if (sm_output_target(out, &target, &direct) || check_paths(&p, argv[optind], out) || check_model(&p, bundled))
        goto out;
    if (sm_plan_resolve(&p, mon, a.quiet, &r))
        goto out;
    record_text_digests(&p, &r);
    int n_moe = 0;
    double err_sum = 0;
    own = xcalloc((size_t)r.n_layers, sizeof *own); /* auto layers' own groups, for the guard */
    for (int l = 0; l < r.n_layers; l++)
        if (r.layers[l].n && r.layers[l].is_auto && r.layers[l].assign)
            own[l] = memcpy(xmalloc(sizeof(int) * (size_t)r.layers[l].n), r.layers[l].assign,
                            sizeof(int) * (size_t)r.layers[l].n);
    if (spell_out_layers(&p, &r, mon, a.routers, NULL, NULL, &n_moe, &err_sum) ||
        plan_guard(&p, &r, own, mon, a.routers, &n_moe, &err_sum, &guard_note))
        goto out;
    /* An output format the plan cannot be applied in is refused now, not at apply time. */
    if (check_format(&p, &r))
        goto out;
    char *hc = xasprintf("submoe plan for %s (%d MoE layers)\ncalibration statistics: %s%s%s", p.model_path, n_moe,
                         r.calib ? sm_calib_path(r.calib) : "none (every layer kept)", guard_note ? "\n" : "",
                         guard_note ? guard_note : "");
    p.header_comment = hc;
    if (sm_check_interrupt() || sm_plan_write(&p, out))
        goto out;
    if (!a.quiet)
        printf("wrote %s: %d MoE layers, mean held-out MoE-block output error %.4f\n", out, n_moe,
               n_moe ? err_sum / n_moe : 0.0);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "submoe plan: %s\n", sm_signals_errmsg());
    free(target);
    for (int l = 0; own && l < r.n_layers; l++)
        free(own[l]);
    free(own);
    free(guard_note);
    sm_resolved_plan_free(&r);
    sm_plan_free(&p);
    cmd_text_args_free(&a.text);
    return rc;
}
