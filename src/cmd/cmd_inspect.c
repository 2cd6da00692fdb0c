/* submoe inspect MODEL [--json]: what a model is, without touching its weights. */
#include "cmd/cmd.h"
#include "model/model.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/jsonout.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "Usage: submoe inspect [--json] MODEL\n"
                 "\n"
                 "Describe a model directory: architecture, layers, which are MoE, experts per layer, top-k,\n"
                 "routing rule, shared experts, dtypes, parameter counts (total, per expert, active per\n"
                 "token) and file sizes. Reads only the headers: instant even for very large models.\n"
                 "\n"
                 "  --json      machine-readable output on stdout\n"
                 "  -h, --help  show this help\n");
}

static void human_count(char *buf, size_t n, double v, const char *unit)
{
    const char *sfx[] = {"", " K", " M", " G", " T"};
    int i = 0;
    double div = strcmp(unit, "B") ? 1000.0 : 1024.0;
    while (v >= div && i < 4) {
        v /= div;
        i++;
    }
    if (!strcmp(unit, "B"))
        snprintf(buf, n, i ? "%.1f %ciB" : "%.0f B", v, " KMGT"[i]);
    else
        snprintf(buf, n, "%.2f%s", v, sfx[i]);
}

static const char *layout_name(sm_layout l) { return l == SM_LAYOUT_FUSED ? "fused (gate_up_proj/down_proj)" : "per-expert tensors"; }

static char *dtype_list(unsigned mask, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int t = 0; t < SM_DT_COUNT; t++)
        if (mask & (1u << t)) {
            if (buf[0])
                strncat(buf, ", ", n - strlen(buf) - 1);
            strncat(buf, sm_dtype_name((sm_dtype)t), n - strlen(buf) - 1);
        }
    return buf;
}

static void shared_desc(const sm_config *c, char *buf, size_t n)
{
    if (!c->n_shared)
        snprintf(buf, n, "none");
    else if (c->arch == SM_ARCH_QWEN2_MOE)
        snprintf(buf, n, "1 shared expert (intermediate %d), scaled by sigmoid(shared_expert_gate . x)",
                 c->shared_intermediate);
    else
        snprintf(buf, n, "%d always-on shared experts (intermediate %d in total)", c->n_shared, c->shared_intermediate);
}

static int print_json(const sm_model *m)
{
    const sm_config *c = sm_model_config(m);
    json_t *j = json_object();
    int bad = 0; /* every field or an error (util/jsonout.h) */
    bad |= sm_json_set(j, "path", json_string(sm_model_dir(m)));
    bad |= sm_json_set(j, "architecture", json_string(sm_arch_name(c->arch)));
    bad |= sm_json_set(j, "layers", json_integer(c->n_layers));
    bad |= sm_json_set(j, "hidden_size", json_integer(c->hidden));
    bad |= sm_json_set(j, "vocab_size", json_integer(c->vocab));
    bad |= sm_json_set(j, "attention_heads", json_integer(c->n_heads));
    bad |= sm_json_set(j, "kv_heads", json_integer(c->n_kv_heads));
    bad |= sm_json_set(j, "head_dim", json_integer(c->head_dim));
    json_t *moe = json_array(), *per = json_array();
    for (int l = 0; l < c->n_layers; l++) {
        if (c->is_moe[l])
            bad |= sm_json_append(moe, json_integer(l), "moe_layers");
        bad |= sm_json_append(per, json_integer(sm_model_layer_experts(m, l)), "experts_per_layer");
    }
    bad |= sm_json_set(j, "moe_layers", moe);
    bad |= sm_json_set(j, "experts_per_layer", per);
    bad |= sm_json_set(j, "experts", json_integer(c->n_experts));
    bad |= sm_json_set(j, "top_k", json_integer(c->top_k));
    bad |= sm_json_set(j, "expert_intermediate_size", json_integer(c->expert_intermediate));
    bad |= sm_json_set(j, "dense_intermediate_size", json_integer(c->dense_intermediate));
    bad |= sm_json_set(j, "routing", json_pack("{s:s, s:b, s:f}", "rule", sm_arch_routing_rule(c), "renormalize_topk",
                                               c->renorm_topk, "routed_scaling_factor", c->routed_scaling));
    bad |= sm_json_set(j, "shared_experts", json_pack("{s:i, s:i, s:b}", "count", c->n_shared, "intermediate_size",
                                                      c->shared_intermediate, "sigmoid_gate", c->shared_gate));
    bad |= sm_json_set(j, "expert_layout", json_string(sm_model_layout(m) == SM_LAYOUT_FUSED ? "fused" : "per-expert"));
    json_t *dts = json_array();
    for (int t = 0; t < SM_DT_COUNT; t++)
        if (sm_model_dtypes(m) & (1u << t))
            bad |= sm_json_append(dts, json_string(sm_dtype_name((sm_dtype)t)), "dtypes");
    bad |= sm_json_set(j, "dtypes", dts);
    bad |= sm_json_set(j, "parameters", json_pack("{s:I, s:I, s:I}", "total", (json_int_t)sm_model_param_count(m),
                                                  "per_expert", (json_int_t)sm_model_expert_params(m),
                                                  "active_per_token", (json_int_t)sm_model_active_params(m)));
    json_t *files = json_array();
    uint64_t total = 0;
    for (int i = 0; i < sm_model_file_count(m); i++) {
        const st_file *f = sm_model_file(m, i);
        total += st_file_size(f);
        bad |= sm_json_append(files,
                              json_pack("{s:s, s:I, s:I}", "name", sm_basename(st_path(f)), "bytes",
                                        (json_int_t)st_file_size(f), "tensors", (json_int_t)st_count(f)),
                              "files");
    }
    bad |= sm_json_set(j, "files", files);
    bad |= sm_json_set(j, "total_bytes", json_integer((json_int_t)total));
    int rc = bad ? -1 : sm_json_print(stdout, j, JSON_INDENT(2), "the model description");
    json_decref(j);
    return rc;
}

static void print_human(const sm_model *m)
{
    const sm_config *c = sm_model_config(m);
    char a[64], b[64], d[64], buf[256];
    printf("Model          %s\n", sm_model_dir(m));
    printf("Architecture   %s\n", sm_arch_name(c->arch));
    printf("Layers         %d (%d MoE, %d dense)\n", c->n_layers, c->n_moe_layers, c->n_layers - c->n_moe_layers);
    printf("Hidden size    %d; %d attention heads (%d key/value, head_dim %d); vocabulary %d\n", c->hidden, c->n_heads,
           c->n_kv_heads, c->head_dim, c->vocab);
    if (c->native)
        printf("Experts        per layer (submoe native format; see below), top-%d, intermediate %d; "
               "source had %d\n",
               c->top_k, c->expert_intermediate, c->n_experts);
    else
        printf("Experts        %d per MoE layer, top-%d, intermediate %d (%s)\n", c->n_experts, c->top_k,
               c->expert_intermediate, layout_name(sm_model_layout(m)));
    printf("Routing        %s", sm_arch_routing_rule(c));
    if (c->routed_scaling != 1.0)
        printf(", routed_scaling_factor %g", c->routed_scaling);
    printf("\n");
    shared_desc(c, buf, sizeof buf);
    printf("Shared experts %s\n", buf);
    if (c->n_moe_layers < c->n_layers)
        printf("Dense layers   intermediate %d\n", c->dense_intermediate);
    printf("Dtypes         %s\n", dtype_list(sm_model_dtypes(m), buf, sizeof buf));
    human_count(a, sizeof a, (double)sm_model_param_count(m), "");
    human_count(b, sizeof b, (double)sm_model_expert_params(m), "");
    human_count(d, sizeof d, (double)sm_model_active_params(m), "");
    printf("Parameters     %s total (%llu); %s per expert; %s active per token\n", a,
           (unsigned long long)sm_model_param_count(m), b, d);
    uint64_t total = 0;
    for (int i = 0; i < sm_model_file_count(m); i++)
        total += st_file_size(sm_model_file(m, i));
    human_count(a, sizeof a, (double)total, "B");
    printf("Files          %d, %s\n", sm_model_file_count(m), a);
    for (int i = 0; i < sm_model_file_count(m); i++) {
        const st_file *f = sm_model_file(m, i);
        human_count(a, sizeof a, (double)st_file_size(f), "B");
        printf("  %-40s %10s  %zu tensors\n", sm_basename(st_path(f)), a, st_count(f));
    }
    if (c->native) {
        printf("\nLayer  kind   experts  router rows  stored experts\n");
        for (int l = 0; l < c->n_layers; l++) {
            if (!c->is_moe[l]) {
                printf("%5d  dense        -            -  -\n", l);
                continue;
            }
            int n = sm_model_layer_experts(m, l), fact = 0;
            int64_t rmin = 0, rmax = 0;
            for (int e = 0; e < n; e++)
                for (int k = 0; k < 3; k++) {
                    sm_weight fa, fb;
                    if (sm_model_expert_factors(m, l, e, k, &fa, &fb) == 1) {
                        rmin = !fact || fa.cols < rmin ? fa.cols : rmin;
                        rmax = fa.cols > rmax ? fa.cols : rmax;
                        fact++;
                    }
                }
            char st[96];
            if (!fact)
                snprintf(st, sizeof st, "dense");
            else if (rmin == rmax)
                snprintf(st, sizeof st, "%d of %d matrices as A.B, rank %lld", fact, 3 * n, (long long)rmin);
            else
                snprintf(st, sizeof st, "%d of %d matrices as A.B, ranks %lld-%lld", fact, 3 * n, (long long)rmin,
                         (long long)rmax);
            printf("%5d  MoE    %7d  %11d  %s%s\n", l, n, sm_model_router_rows(m, l), st,
                   sm_model_expert_map(m, l) ? " (expert map)" : "");
        }
        return;
    }
    printf("\nLayer  kind   experts  top-k\n");
    for (int l = 0; l < c->n_layers; l++) {
        if (c->is_moe[l])
            printf("%5d  MoE    %7d  %5d\n", l, sm_model_layer_experts(m, l), c->top_k);
        else
            printf("%5d  dense        -      -\n", l);
    }
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "submoe inspect: expected exactly one MODEL directory\n");
        usage(stderr);
        return 2;
    }
    sm_model *m = sm_model_open(argv[optind]);
    if (!m) {
        sm_report();
        return 1;
    }
    int rc = 0;
    if (json)
        rc = print_json(m);
    else
        print_human(m);
    if (rc)
        sm_report();
    sm_model_close(m);
    return rc ? 1 : 0;
}
