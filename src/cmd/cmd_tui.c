/* submoe tui: the interactive workbench (src/tui). */
#include "cmd/cmd.h"
#include "tui/tui_app.h"
#include "util/datadir.h"
#include "util/diag.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe tui [MODEL] [--plan PLAN] [--calib FILE] [--tokens FILE | --text FILE...]\n"
            "                  [--heldout FILE] [--task FILE]\n"
            "\n"
            "The workbench: calibrate MODEL (default: the bundled demo), show every layer's expert\n"
            "similarity heatmap and each group's singular-value spectrum, edit groups, ranks, methods\n"
            "and router modes with live error previews, compute the plan's perplexity, save and open\n"
            "plans (w, o) and commit the merged model (C). Press ? inside for every key.\n"
            "`submoe` with no arguments on a terminal opens it on the demo; `submoe MODEL` on MODEL.\n"
            "\n"
            "  -p, --plan PLAN    open this plan (and save there); default submoe-plan.yaml\n"
            "  -c, --calib FILE   a stats or activations file (submoe calibrate -o FILE) instead of\n"
            "                     calibrating when the workbench opens\n"
            "  -t, --tokens FILE  calibration tokens (raw uint32 or .npy; default: the bundled\n"
            "                     data/calib.u32, bytes of English text: give your model's own tokens)\n"
            "      --text FILE    calibration text instead of tokens (repeat for more files): UTF-8 plain\n"
            "                     text or JSON Lines (.jsonl), tokenized with MODEL's tokenizer.json, as\n"
            "                     submoe calibrate --text; perplexity then uses the text's windows after\n"
            "                     the calibration ones unless --heldout is given\n"
            "      --text-field NAME  the JSON Lines field holding the text (text)\n"
            "      --heldout FILE held-out tokens for perplexity (default: data/heldout.u32)\n"
            "  -P, --precision P  the calibration's, the statistics', the plan perplexity's and\n"
            "                     accuracy's products: auto (bf16 where faster), fp32 or bf16 (auto)\n"
            "      --task FILE    task file (JSONL, as submoe eval --task) for the accuracy key A\n"
            "                     (default: the bundled data/demo-task.jsonl)\n"
            "      --frames N     exit after drawing N screens (for tests)\n"
            "  -h, --help         show this help\n");
}

int cmd_tui(int argc, char **argv)
{
    static const struct option opts[] = {{"plan", required_argument, NULL, 'p'},
                                         {"calib", required_argument, NULL, 'c'},
                                         {"tokens", required_argument, NULL, 't'},
                                         {"heldout", required_argument, NULL, 'H'},
                                         {"frames", required_argument, NULL, 'F'},
                                         {"precision", required_argument, NULL, 'P'},
                                         {"text", required_argument, NULL, 'X'},
                                         {"text-field", required_argument, NULL, 'Y'},
                                         {"task", required_argument, NULL, 'T'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    tui_options o = {0};
    const char **text = calloc((size_t)argc + 1, sizeof *text);
    int ch;
    if (!text)
        return 1;
    o.text = text;
    const char *env = getenv("SUBMOE_TUI_FRAMES");
    if (env && *env)
        o.frames = atoi(env);
    optind = 1;
    const char *precision = "auto";
    while ((ch = getopt_long(argc, argv, "p:c:t:hP:", opts, NULL)) != -1) {
        switch (ch) {
        case 'P': precision = optarg; break;
        case 'p': o.plan = optarg; break;
        case 'c': o.calib = optarg; break;
        case 't': o.tokens = optarg; break;
        case 'H': o.heldout = optarg; break;
        case 'F': o.frames = atoi(optarg); break;
        case 'X': text[o.n_text++] = optarg; break;
        case 'Y': o.text_field = optarg; break;
        case 'T': o.task = optarg; break;
        case 'h': usage(stdout); free(text); return 0;
        default: usage(stderr); free(text); return 2;
        }
    }
    const char *problem = optind < argc - 1                 ? "expected at most one MODEL (repeat --text for more files)"
                          : o.n_text && o.tokens            ? "--tokens and --text do not go together"
                          : o.text_field && !o.n_text       ? "--text-field needs --text"
                                                            : NULL;
    if (problem) {
        fprintf(stderr, "submoe tui: %s\n", problem);
        usage(stderr);
        free(text);
        return 2;
    }
    if (sm_precision_parse(precision, &o.precision)) {
        fprintf(stderr, "submoe tui: %s\n", sm_errmsg());
        free(text);
        return 2;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "submoe tui: the workbench needs a terminal (see submoe --help for the commands)\n");
        free(text);
        return 2;
    }
    o.model = optind < argc ? argv[optind] : sm_demo_dir();
    int rc = tui_run(&o);
    if (rc)
        fprintf(stderr, "submoe tui: %s\n", sm_errmsg());
    free(text);
    return rc ? 1 : 0;
}
