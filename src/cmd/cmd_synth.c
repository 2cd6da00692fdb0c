/* submoe synth: write a synthetic model with planted expert clusters. */
#include "cmd/cmd.h"
#include "model/synth.h"
#include "util/diag.h"
#include "util/iopaths.h"
#include "util/outdir.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe synth --arch ARCH --out DIR [OPTIONS]\n"
            "\n"
            "Write a synthetic model in the Hugging Face layout of ARCH (mixtral, qwen2_moe, qwen3_moe,\n"
            "olmoe, deepseek) with planted expert clusters: the experts of a cluster are a shared base\n"
            "plus small noise. The planted assignment is recorded in config.json (\"submoe_synth\").\n"
            "\n"
            "  --arch ARCH              architecture (required)\n"
            "  -o, --out DIR            output directory (required; refused if it exists, unless --force)\n"
            "  --layers N               decoder layers (2)\n"
            "  --hidden H               hidden size (64)\n"
            "  --intermediate I         routed expert intermediate size (128)\n"
            "  --experts E              routed experts per MoE layer (8)\n"
            "  --top-k K                experts per token (2)\n"
            "  --heads N, --kv-heads N  attention heads (4) and key/value heads (2)\n"
            "  --head-dim D             head dimension (hidden/heads)\n"
            "  --vocab V                vocabulary size (256)\n"
            "  --dense-intermediate N   FFN width of dense layers (256)\n"
            "  --shared-intermediate N  qwen2_moe shared expert width (256)\n"
            "  --shared-experts N       deepseek always-on shared experts (2)\n"
            "  --first-dense N          deepseek first_k_dense_replace (1)\n"
            "  --sparse-step N          qwen decoder_sparse_step (1)\n"
            "  --norm-topk              set norm_topk_prob (qwen3_moe default)\n"
            "  --no-norm-topk           clear norm_topk_prob\n"
            "  --tie-embeddings         share the embedding with the output head\n"
            "  --layout per-expert|fused  expert tensor layout (per-expert)\n"
            "  --dtype f32|f16|bf16     stored dtype (f32)\n"
            "  --clusters K             planted clusters per MoE layer (4; = experts for none)\n"
            "  --noise EPS              member deviation relative to the cluster base (0.05)\n"
            "  --seed S                 random seed (1)\n"
            "  --permute                permute the intermediate neurons of every cluster member but the\n"
            "                           first (as in experts trained from scratch; see neuron alignment)\n"
            "  --shard-size SIZE        split into shards of at most SIZE bytes (e.g. 2G); writes an index\n"
            "  --force                  replace an existing output directory\n"
            "  -q, --quiet              no progress bar\n"
            "  -h, --help               show this help\n");
}

static int parse_int(const char *opt, const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L)
        return sm_err("%s: '%s' is not an integer", opt, s);
    *out = (int)v;
    return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1e3; break;
        case 'M': mul = 1e6; break;
        case 'G': mul = 1e9; break;
        case 'T': mul = 1e12; break;
        default: mul = 0;
        }
        if (mul && end[1] && strcasecmp(end + 1, "B"))
            mul = 0;
    }
    if (errno || end == s || mul == 0 || !(v > 0) || v * mul > 1e15)
        return sm_err("--shard-size: '%s' is not a size such as 500M or 2G", s);
    *out = (uint64_t)(v * mul);
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    enum { O_ARCH = 256, O_LAYERS, O_HIDDEN, O_INTER, O_EXPERTS, O_TOPK, O_HEADS, O_KV, O_HEADDIM, O_VOCAB, O_DENSE,
           O_SHAREDI, O_SHAREDN, O_FIRSTD, O_STEP, O_NORM, O_NONORM, O_TIE, O_LAYOUT, O_DTYPE, O_CLUSTERS, O_NOISE,
           O_SEED, O_SHARD, O_FORCE, O_PERMUTE };
    static const struct option opts[] = {
        {"arch", required_argument, 0, O_ARCH}, {"out", required_argument, 0, 'o'},
        {"layers", required_argument, 0, O_LAYERS}, {"hidden", required_argument, 0, O_HIDDEN},
        {"intermediate", required_argument, 0, O_INTER}, {"experts", required_argument, 0, O_EXPERTS},
        {"top-k", required_argument, 0, O_TOPK}, {"heads", required_argument, 0, O_HEADS},
        {"kv-heads", required_argument, 0, O_KV}, {"head-dim", required_argument, 0, O_HEADDIM},
        {"vocab", required_argument, 0, O_VOCAB}, {"dense-intermediate", required_argument, 0, O_DENSE},
        {"shared-intermediate", required_argument, 0, O_SHAREDI}, {"shared-experts", required_argument, 0, O_SHAREDN},
        {"first-dense", required_argument, 0, O_FIRSTD}, {"sparse-step", required_argument, 0, O_STEP},
        {"norm-topk", no_argument, 0, O_NORM}, {"no-norm-topk", no_argument, 0, O_NONORM},
        {"tie-embeddings", no_argument, 0, O_TIE}, {"layout", required_argument, 0, O_LAYOUT},
        {"dtype", required_argument, 0, O_DTYPE}, {"clusters", required_argument, 0, O_CLUSTERS},
        {"noise", required_argument, 0, O_NOISE}, {"seed", required_argument, 0, O_SEED},
        {"permute", no_argument, 0, O_PERMUTE},
        {"shard-size", required_argument, 0, O_SHARD}, {"force", no_argument, 0, O_FORCE},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    /* Two passes: --arch first, because the defaults depend on it. */
    sm_arch arch = SM_ARCH_COUNT;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--arch") && i + 1 < argc)
            v = argv[i + 1];
        else if (!strncmp(argv[i], "--arch=", 7))
            v = argv[i] + 7;
        if (v && sm_arch_parse(v, &arch) != 0) {
            fprintf(stderr, "submoe synth: --arch '%s' is not one of mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek\n", v);
            return 2;
        }
    }
    sm_synth_opts o;
    sm_synth_defaults(&o, arch == SM_ARCH_COUNT ? SM_ARCH_MIXTRAL : arch);
    const char *out = NULL;
    bool force = false;
    int ch, rc = 0;
    optind = 1;
    while (rc == 0 && (ch = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        const char *name = NULL;
        int *target = NULL;
        switch (ch) {
        case O_ARCH: break;
        case 'o': out = optarg; break;
        case O_LAYERS: name = "--layers"; target = &o.layers; break;
        case O_HIDDEN: name = "--hidden"; target = &o.hidden; break;
        case O_INTER: name = "--intermediate"; target = &o.intermediate; break;
        case O_EXPERTS: name = "--experts"; target = &o.experts; break;
        case O_TOPK: name = "--top-k"; target = &o.top_k; break;
        case O_HEADS: name = "--heads"; target = &o.heads; break;
        case O_KV: name = "--kv-heads"; target = &o.kv_heads; break;
        case O_HEADDIM: name = "--head-dim"; target = &o.head_dim; break;
        case O_VOCAB: name = "--vocab"; target = &o.vocab; break;
        case O_DENSE: name = "--dense-intermediate"; target = &o.dense_intermediate; break;
        case O_SHAREDI: name = "--shared-intermediate"; target = &o.shared_intermediate; break;
        case O_SHAREDN: name = "--shared-experts"; target = &o.shared_experts; break;
        case O_FIRSTD: name = "--first-dense"; target = &o.first_dense; break;
        case O_STEP: name = "--sparse-step"; target = &o.sparse_step; break;
        case O_CLUSTERS: name = "--clusters"; target = &o.clusters; break;
        case O_NORM: o.norm_topk = true; break;
        case O_NONORM: o.norm_topk = false; break;
        case O_TIE: o.tie_embeddings = true; break;
        case O_FORCE: force = true; break;
        case 'q': o.quiet = true; break;
        case O_LAYOUT:
            if (!strcmp(optarg, "per-expert"))
                o.layout = SM_LAYOUT_PER_EXPERT;
            else if (!strcmp(optarg, "fused"))
                o.layout = SM_LAYOUT_FUSED;
            else
                rc = sm_err("--layout: '%s' is not per-expert or fused", optarg);
            break;
        case O_DTYPE:
            if (sm_dtype_parse(optarg, &o.dtype) != 0)
                rc = sm_err("--dtype: '%s' is not f32, f16 or bf16", optarg);
            break;
        case O_NOISE: {
            char *end;
            o.noise = strtod(optarg, &end);
            if (*end || end == optarg)
                rc = sm_err("--noise: '%s' is not a number", optarg);
            break;
        }
        case O_SEED: {
            char *end;
            errno = 0;
            o.seed = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg)
                rc = sm_err("--seed: '%s' is not a non-negative integer", optarg);
            break;
        }
        case O_SHARD: rc = parse_size(optarg, &o.shard_size); break;
        case O_PERMUTE: o.permute = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (target)
            rc = parse_int(name, optarg, target);
    }
    if (rc) {
        fprintf(stderr, "submoe synth: %s\n", sm_errmsg());
        return 2;
    }
    if (arch == SM_ARCH_COUNT || !out || optind != argc) {
        fprintf(stderr, "submoe synth: %s\n", arch == SM_ARCH_COUNT ? "--arch is required"
                                              : !out                ? "--out DIR is required"
                                                                    : "unexpected argument");
        usage(stderr);
        return 2;
    }
    if (sm_synth_check(&o)) {
        fprintf(stderr, "submoe synth: %s\n", sm_errmsg());
        return 2;
    }
    sm_paths inputs = {0}, outputs = {0}; /* no inputs: reports what earlier runs left */
    sm_paths_add(&outputs, "output directory", out);
    int guard = sm_check_output_paths(&inputs, &outputs);
    sm_paths_free(&outputs);
    sm_outdir od;
    if (guard || sm_outdir_begin(&od, out, force)) {
        sm_report();
        return 1;
    }
    if (sm_synth_write(&o, sm_outdir_path(&od)) || sm_outdir_commit(&od)) {
        sm_report();
        sm_outdir_abort(&od);
        return 1;
    }
    return 0;
}
