/* submoe calibrate: capture the MoE-block inputs of calibration tokens into an activations file. */
#include "cmd/cmd.h"
#include "forward/activations.h"
#include "model/model.h"
#include "model/tokens.h"
#include "util/diag.h"
#include "util/fileio.h"

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
            "\n"
            "Run MODEL on --samples windows of --seq-len consecutive tokens from FILE (from the start,\n"
            "non-overlapping; raw little-endian uint32 or .npy int32/int64) with the built-in forward\n"
            "pass and write, per MoE layer, the MoE-block inputs, router logits and top-k choices to OUT,\n"
            "a safetensors activations file (layers.L.moe_input [m, H], layers.L.router_logits [m, E],\n"
            "layers.L.topk [m, k]). OUT records a fingerprint of the model, the settings and the tokens:\n"
            "if it already matches, nothing is recomputed.\n"
            "\n"
            "  -t, --tokens FILE     calibration token file (required)\n"
            "  -o, --out FILE        activations file to write (required)\n"
            "  -s, --samples N       calibration sequences (16)\n"
            "  -n, --seq-len N       tokens per sequence (256)\n"
            "  -k, --keep M          keep a uniform sample of M tokens per layer (all)\n"
            "      --seed S          sampling seed (1)\n"
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
    enum { O_SEED = 256 };
    static const struct option opts[] = {
        {"tokens", required_argument, NULL, 't'}, {"out", required_argument, NULL, 'o'},
        {"samples", required_argument, NULL, 's'}, {"seq-len", required_argument, NULL, 'n'},
        {"keep", required_argument, NULL, 'k'}, {"seed", required_argument, NULL, O_SEED},
        {"force", no_argument, NULL, 'f'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *tokens = NULL, *out = NULL;
    long long samples = 16, seq_len = 256, keep = 0, seed = 1;
    bool force = false, quiet = false;
    int ch, bad = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:o:s:n:k:fqh", opts, NULL)) != -1) {
        switch (ch) {
        case 't': tokens = optarg; break;
        case 'o': out = optarg; break;
        case 's': bad |= parse_ll("--samples", optarg, 1, 1 << 20, &samples); break;
        case 'n': bad |= parse_ll("--seq-len", optarg, 1, 1 << 24, &seq_len); break;
        case 'k': bad |= parse_ll("--keep", optarg, 1, INT32_MAX, &keep); break;
        case O_SEED: bad |= parse_ll("--seed", optarg, 0, INT64_MAX, &seed); break;
        case 'f': force = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
            return 2;
        }
    }
    if (optind != argc - 1 || !tokens || !out) {
        fprintf(stderr, "submoe calibrate: %s\n",
                !tokens ? "--tokens FILE is required" : !out ? "-o OUT is required" : "expected one MODEL directory");
        usage(stderr);
        return 2;
    }
    sm_model *m = sm_model_open(argv[optind]);
    if (!m) {
        fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
        return 1;
    }
    sm_tokens t;
    if (sm_tokens_read(tokens, sm_model_config(m)->vocab, &t)) {
        fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
        sm_model_close(m);
        return 1;
    }
    sm_calib_opts o = {.samples = (int)samples, .seq_len = (int)seq_len, .keep = (size_t)keep,
                       .seed = (uint64_t)seed, .quiet = quiet, .tokens_name = tokens};
    int rc = 0;
    uint64_t have;
    if (!force && sm_exists(out) && sm_calib_file_fingerprint(out, &have) == 0 &&
        have == sm_calib_fingerprint(m, t.ids, t.n, &o)) {
        if (!quiet)
            printf("%s is up to date (fingerprint %016" PRIx64 ")\n", out, have);
    } else if (sm_calib_write(m, t.ids, t.n, &o, out)) {
        fprintf(stderr, "submoe calibrate: %s\n", sm_errmsg());
        rc = 1;
    } else if (!quiet) {
        const sm_config *c = sm_model_config(m);
        long long kept = keep && keep < samples * seq_len ? keep : samples * seq_len;
        printf("%s: %d MoE layers x %lld tokens (%lld samples x %lld) captured\n", out, c->n_moe_layers, kept,
               samples, seq_len);
    }
    sm_tokens_free(&t);
    sm_model_close(m);
    return rc;
}
