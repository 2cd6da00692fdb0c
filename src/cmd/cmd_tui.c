/* submoe tui: the interactive workbench (src/tui). */
#include "cmd/cmd.h"
#include "tui/tui_app.h"
#include "util/diag.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe tui [MODEL] [--plan PLAN] [--calib FILE]\n"
            "\n"
            "The workbench: calibrate MODEL (default: the bundled demo) on the bundled tokens, show every\n"
            "layer's expert similarity heatmap and each cluster's singular-value spectrum, edit clusters,\n"
            "ranks, methods and router modes with live error previews, compute the plan's perplexity,\n"
            "save the plan (w) and commit the merged model (C). Press ? inside for every key.\n"
            "`submoe` with no arguments on a terminal opens it on the demo.\n"
            "\n"
            "  -p, --plan PLAN    open this plan (it is saved there); default submoe-plan.yaml\n"
            "  -c, --calib FILE   use this stats or activations file instead of calibrating\n"
            "      --frames N     exit after drawing N screens (for tests)\n"
            "  -h, --help         show this help\n");
}

int cmd_tui(int argc, char **argv)
{
    static const struct option opts[] = {{"plan", required_argument, NULL, 'p'},
                                         {"calib", required_argument, NULL, 'c'},
                                         {"frames", required_argument, NULL, 'F'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *plan = NULL, *calib = NULL;
    int frames = 0, ch;
    const char *env = getenv("SUBMOE_TUI_FRAMES");
    if (env && *env)
        frames = atoi(env);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "p:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'p': plan = optarg; break;
        case 'c': calib = optarg; break;
        case 'F': frames = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc - 1) {
        usage(stderr);
        return 2;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "submoe tui: the workbench needs a terminal (see submoe --help for the commands)\n");
        return 2;
    }
    const char *model = optind < argc ? argv[optind] : sm_demo_dir();
    if (tui_run(model, plan, calib, frames)) {
        fprintf(stderr, "submoe tui: %s\n", sm_errmsg());
        return 1;
    }
    return 0;
}
