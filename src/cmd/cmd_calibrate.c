/* submoe calibrate: capture the MoE-block inputs of calibration tokens and the engine's
 * statistics on them into a stats file (pipeline/calib.h). */
#include "cmd/cmd.h"
#include "cmd/text_args.h"
#include "model/model.h"
#include "pipeline/calib.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/iopaths.h"
#include "util/publish.h"
#include "util/signals.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe calibrate MODEL --tokens FILE -o OUT [OPTIONS]\n"
            "       submoe calibrate MODEL --text FILE... -o OUT [OPTIONS]\n"
            "\n"
            "Run MODEL on --samples windows of --seq-len consecutive tokens from FILE (from the start,\n"
            "non-overlapping; raw little-endian uint32 or .npy int32/int64) with the built-in forward\n"
            "pass and write a stats file OUT (safetensors): per MoE layer the MoE-block inputs, router\n"
            "logits and top-k choices of the kept rows, and the statistics `plan`, `apply` and the\n"
            "workbench use (routing counts, every expert's outputs on a sample of rows, output, logit\n"
            "and weight similarity). The last --heldout kept rows are held out for error previews.\n"
            "OUT records a fingerprint of the model, the settings and the tokens: if it already\n"
            "matches, nothing is recomputed. See submoe(1), FILES.\n"
            "\n"
            "  -t, --tokens FILE     calibration token file\n"
            "      --text FILE...    calibration text instead: UTF-8 plain text (a file is a document) or\n"
            "                        JSON Lines (.jsonl: a document per line), tokenized with MODEL's\n"
            "                        tokenizer.json, each document after the tokenizer's BOS (else EOS);\n"
            "                        the windows are drawn from the stream with --seed (see submoe(1), TEXT)\n"
            "      --text-field NAME the JSON Lines field holding the text (text)\n"
            "  -o, --out FILE        stats file to write (required)\n"
            "  -s, --samples N       calibration sequences (32)\n"
            "  -n, --seq-len N       tokens per sequence (256)\n"
            "  -k, --keep M          keep a uniform sample of M rows per layer (4096; 0 = all)\n"
            "      --heldout M       rows of those held out for previews (a quarter)\n"
            "      --sample M        rows every expert runs on for output similarity (512)\n"
            "      --seed S          sampling seed: rows, and with --text the windows (1)\n"
            "  -P, --precision P     the forward pass's and the statistics' products: auto (bf16\n"
            "                        where faster: AMX, or AVX512-BF16 on AMD; else fp32), fp32 or bf16 (auto)\n"
            "  -f, --force           recompute even if OUT is up to date\n"
            "  -q, --quiet           no progress bar or summary\n"
            "  -h, --help            show this help\n");
}

static int parse_ll(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return sm_err("%s: '%s' is not an integer in [%lld, %lld]", opt, s, lo, hi);
    *out = v;
    return 0;
}

int cmd_calibrate(int argc, char **argv)
{
    enum { O_SEED = 256, O_HELDOUT, O_SAMPLE, O_TEXT, O_TEXT_FIELD };
    static const struct option opts[] = {
        {"tokens", required_argument, NULL, 't'}, {"out", required_argument, NULL, 'o'},
        {"samples", required_argument, NULL, 's'}, {"seq-len", required_argument, NULL, 'n'},
        {"keep", required_argument, NULL, 'k'}, {"seed", required_argument, NULL, O_SEED},
        {"heldout", required_argument, NULL, O_HELDOUT}, {"sample", required_argument, NULL, O_SAMPLE},
        {"force", no_argument, NULL, 'f'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'}, {"precision", required_argument, NULL, 'P'},
        {"text", required_argument, NULL, O_TEXT}, {"text-field", required_argument, NULL, O_TEXT_FIELD},
        {NULL, 0, NULL, 0},
    };
    const char *tokens = NULL, *out = NULL, *precision = "auto";
    cmd_text_args text;
    cmd_text_args_init(&text, argc);
    sm_calib_spec spec;
    sm_calib_spec_default(&spec);
    long long samples = spec.samples, seq_len = spec.seq_len, keep = spec.keep, seed = (long long)spec.seed;
    long long heldout = -1, sample = spec.sample;
    bool force = false, quiet = false;
    int ch, bad = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:o:s:n:k:fqhP:", opts, NULL)) != -1) {
        switch (ch) {
        case 'P': precision = optarg; break;
        case 't': tokens = optarg; break;
        case 'o': out = optarg; break;
        case 's': bad |= parse_ll("--samples", optarg, 1, 1 << 20, &samples); break;
        case 'n': bad |= parse_ll("--seq-len", optarg, 2, 1 << 24, &seq_len); break;
        case 'k': bad |= parse_ll("--keep", optarg, 0, INT32_MAX, &keep); break;
        case O_HELDOUT: bad |= parse_ll("--heldout", optarg, 0, INT32_MAX, &heldout); break;
        case O_SAMPLE: bad |= parse_ll("--sample", optarg, 1, 1 << 20, &sample); break;
        case O_SEED: bad |= parse_ll("--seed", optarg, 0, INT64_MAX, &seed); break;
        case 'f': force = true; break;
        case 'q': quiet = true; break;
        case O_TEXT: text.files[text.n++] = optarg, text.given = true; break;
        case O_TEXT_FIELD: text.field = optarg; break;
        case 'h': usage(stdout); cmd_text_args_free(&text); return 0;
        default: usage(stderr); cmd_text_args_free(&text); return 2;
        }
        if (bad) {
            fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
            cmd_text_args_free(&text);
            return 2;
        }
    }
    if (sm_precision_parse(precision, &spec.precision)) {
        fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
        cmd_text_args_free(&text);
        return 2;
    }
    const char *problem = cmd_text_args_finish(&text, argc, argv, optind) ? sm_errmsg()
                          : !tokens && !text.given                           ? "--tokens FILE or --text FILE is required"
                          : tokens && text.given                             ? "--tokens and --text do not go together"
                          : !out                                             ? "-o OUT is required"
                                                                             : NULL;
    if (problem) {
        fprintf(stderr, "submoe calibrate: %s\n", problem);
        usage(stderr);
        cmd_text_args_free(&text);
        return 2;
    }
    /* The stats file is replaced atomically: through a symbolic link to its regular file (the
     * link stays); never in place of a device or other special file. */
    char *target = NULL;
    bool direct = false;
    if (sm_output_target(out, &target, &direct) || direct) {
        if (direct)
            sm_err("%s: not a regular file: the stats file must be one (it is written under a temporary name "
                   "and renamed into place)", out);
        fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
        free(target);
        cmd_text_args_free(&text);
        return 1;
    }
    /* never over the model or the tokens (calibrate m -o m/model.safetensors) */
    sm_paths inputs = {0}, outputs = {0};
    sm_paths_add_model(&inputs, argv[optind]);
    sm_paths_add(&inputs, "tokens file", tokens);
    for (int i = 0; i < text.n; i++)
        sm_paths_add(&inputs, "text file", text.files[i]);
    sm_paths_add(&outputs, "stats file", out);
    int guard = sm_check_output_paths(&inputs, &outputs);
    sm_paths_free(&inputs);
    sm_paths_free(&outputs);
    sm_model *m = guard ? NULL : sm_model_open(argv[optind]);
    if (!m) {
        fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
        free(target);
        cmd_text_args_free(&text);
        return 1;
    }
    spec.tokens = tokens;
    spec.text = text.given ? &text.src : NULL;
    spec.samples = (int)samples;
    spec.seq_len = (int)seq_len;
    spec.keep = keep;
    spec.heldout = heldout;
    spec.sample = sample;
    spec.seed = (uint64_t)seed;
    spec.quiet = quiet;
    spec.refresh = force;
    int rc = 0;
    bool reused = false;
    sm_calib *c = sm_calib_capture(m, &spec, target, sm_signals_monitor(), &reused);
    if (!c || sm_interrupted()) {
        fprintf(stderr, "submoe calibrate: %s\n", sm_signals_errmsg());
        rc = 1;
    } else if (!quiet) {
        const sm_config *cfg = sm_model_config(m);
        uint64_t fp = 0;
        sm_calib_file_fingerprint(target, &fp);
        int64_t m_fit = 0, m_held = 0; /* rows in the file (all of them feed the statistics) */
        for (int l = 0; l < cfg->n_layers; l++)
            if (cfg->is_moe[l]) {
                sm_calib_rows(c, l, &m_fit, &m_held, NULL, NULL);
                break;
            }
        if (reused)
            printf("%s is up to date (fingerprint %016" PRIx64 ")\n", out, fp);
        else
            printf("%s: %d MoE layers x %" PRId64 " rows (%" PRId64 " fit, %" PRId64
                   " held out) from %lld samples x %lld tokens%s, with statistics\n",
                   out, cfg->n_moe_layers, m_fit + m_held, m_fit, m_held, samples, seq_len,
                   text.given ? " drawn from the text" : "");
        if (text.given)
            printf("text digest %s, tokenizer digest %s\n", sm_calib_metadata(c, "text_digest"),
                   sm_calib_metadata(c, "tokenizer_digest"));
    }
    sm_calib_free(c);
    sm_model_close(m);
    free(target);
    cmd_text_args_free(&text);
    return rc;
}
