/* submoe apply: run a YAML plan and write the merged model (pipeline/apply.h). */
#include "cmd/cmd.h"
#include "pipeline/apply.h"
#include "plan/plan.h"
#include "util/diag.h"
#include "util/signals.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe apply PLAN [-o OUTDIR] [OPTIONS]\n"
            "\n"
            "Run the plan (see submoe-plan(5)): open its model, calibrate or reuse its stats file, merge,\n"
            "prune or keep every MoE layer as the plan says, and write the result to OUTDIR (default: the\n"
            "plan's output.path) layer by layer. The output is written under a temporary name and renamed\n"
            "into place when complete; the source model is never modified; the same plan gives the same\n"
            "bytes.\n"
            "\n"
            "  -o, --out DIR         output directory (refused if it exists, unless --force)\n"
            "      --format FMT      hf, hf-expanded or submoe (default: the plan's output.format, else submoe)\n"
            "  -f, --force           replace an existing output directory\n"
            "  -q, --quiet           no progress bar or summary\n"
            "  -h, --help            show this help\n");
}

int cmd_apply(int argc, char **argv)
{
    enum { O_FORMAT = 256 };
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'}, {"format", required_argument, NULL, O_FORMAT},
        {"force", no_argument, NULL, 'f'},     {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0},
    };
    sm_apply_opts o = {.format = -1, .mon = sm_signals_monitor()}; /* SIGINT/SIGTERM stop the work */
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:fqh", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': o.outdir = optarg; break;
        case O_FORMAT: {
            sm_out_format f;
            if (sm_out_format_parse(optarg, &f)) {
                fprintf(stderr, "submoe apply: --format: %s\n", sm_errmsg());
                return 2;
            }
            o.format = (int)f;
            break;
        }
        case 'f': o.force = true; break;
        case 'q': o.quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "submoe apply: expected one PLAN file\n");
        usage(stderr);
        return 2;
    }
    sm_plan p;
    if (sm_plan_read(argv[optind], &p)) {
        fprintf(stderr, "submoe apply: %s\n", sm_errmsg());
        sm_plan_free(&p);
        return 1;
    }
    sm_apply_report rep;
    int rc = sm_apply(&p, &o, &rep);
    if (rc) {
        fprintf(stderr, "submoe apply: %s\n", sm_signals_errmsg());
    } else if (!o.quiet) {
        printf("wrote %s: %.1f MB of tensors; routed-expert parameters %" PRId64 " -> %" PRId64 " (%.1f%%)",
               rep.outdir, rep.bytes / 1e6, rep.params_before, rep.params_after,
               rep.params_before ? 100.0 * rep.params_after / rep.params_before : 0.0);
        if (rep.mean_output_error >= 0)
            printf("; mean held-out MoE-block output error %.4f", rep.mean_output_error);
        printf("\n");
    }
    sm_plan_free(&p);
    return rc ? 1 : 0;
}
