/* submoe: compress Mixture-of-Experts models by merging experts (Sub-MoE). Command dispatch. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

#include "cmd/cmd.h"
#include "util/datadir.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/limits.h"
#include "util/mapguard.h"
#include "util/signals.h"

const sm_command sm_commands[] = {
    {"inspect", cmd_inspect, "describe a model: architecture, layers, experts, parameters, files", false},
    {"synth", cmd_synth, "write a synthetic model with planted expert clusters", false},
    {"eval", cmd_eval, "perplexity of a model on a token file (built-in CPU forward pass)", true},
    {"calibrate", cmd_calibrate, "calibration inputs and expert statistics into a stats file", true},
    {"plan", cmd_plan, "cluster and allocate experts; write a YAML plan", true},
    {"apply", cmd_apply, "run a YAML plan and write the merged model", true},
    {"diff", cmd_diff, "per-tensor relative error between two models", false},
    {"tokenize", cmd_tokenize, "text files to token ids with a model's tokenizer.json (and back)", false},
    {"tui", cmd_tui, "the interactive workbench (also: submoe with no arguments on a terminal)", true},
    {"figures", cmd_figures, "figures for papers: similarity heatmaps, spectra, the model chart (SVG, PDF, PNG, CSV)", true},
    {NULL, NULL, NULL, false},
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe [MODEL]\n"
            "       submoe COMMAND [OPTIONS] ...\n"
            "\n"
            "Compress Mixture-of-Experts language models by merging experts (Sub-MoE).\n"
            "Without a command, opens the workbench on MODEL (default: the bundled demo model) when run on\n"
            "a terminal, and prints its overview otherwise.\n"
            "\n"
            "Commands:\n");
    for (const sm_command *c = sm_commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out,
            "\n"
            "Run 'submoe COMMAND --help' for a command's options; 'man submoe' for the manual.\n"
            "Options:\n"
            "  -h, --help     show this help\n"
            "  -V, --version  show the version\n");
}

static int run(int argc, char **argv);

/* Results printed on standard output must have arrived: a full disk (> /dev/full), a closed
 * descriptor or an I/O error makes the command fail with one message instead of exiting 0 with
 * the output lost. (A closed pipe ends the process with SIGPIPE, as usual.) */
static int close_stdout(void)
{
    errno = 0;
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (fclose(stdout) != 0 && !bad && errno != EBADF) /* EBADF: never opened, nothing written */
        bad = 1, e = errno;
    if (!bad)
        return 0;
    fprintf(stderr, "submoe: cannot write the output to standard output: %s\n", strerror(e ? e : EIO));
    return -1;
}

int main(int argc, char **argv)
{
    gsl_set_error_handler_off();
    sm_signals_install();
    int rc = run(argc, argv);
    sm_signals_reraise(); /* an interrupted command has cleaned up; exit as the signal says */
    if (sm_mapguard_tripped() && rc == 0) { /* a command that did not notice: it still failed */
        fprintf(stderr, "submoe: %s\n", sm_mapguard_message());
        rc = 1;
    }
    if (close_stdout() && rc == 0)
        rc = 1;
    return rc;
}

static int run(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version"))) {
        printf("submoe %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (argc >= 2) {
        for (const sm_command *c = sm_commands; c->name; c++)
            if (!strcmp(argv[1], c->name))
                return sm_limits_check(c->name, c->uses_blas) ? 1 : c->run(argc - 1, argv + 1);
        if (argv[1][0] == '-') {
            fprintf(stderr, "submoe: unknown option '%s'\n", argv[1]);
            usage(stderr);
            return 2;
        }
        if (!sm_is_dir(argv[1])) {
            fprintf(stderr, "submoe: '%s' is neither a command nor a model directory (see submoe --help)\n", argv[1]);
            return 2;
        }
    }
    /* No command: the workbench on a terminal (submoe [MODEL] [--plan P] [--calib F]), else the
     * model's overview (scripts, pipes). */
    char *model = (char *)(argc >= 2 ? argv[1] : sm_demo_dir());
    bool workbench = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    if (sm_limits_check(NULL, workbench))
        return 1;
    if (workbench) {
        char *tui_argv[16] = {"tui", model};
        int n = 2;
        for (int i = 2; i < argc && n < 15; i++)
            tui_argv[n++] = argv[i];
        tui_argv[n] = NULL;
        return cmd_tui(n, tui_argv);
    }
    char *inspect_argv[] = {"inspect", model, NULL};
    return cmd_inspect(2, inspect_argv);
}
