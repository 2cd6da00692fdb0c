/* submoe eval: perplexity of a model on a token file with the built-in forward pass. */
#include "cmd/cmd.h"
#include "forward/eval.h"
#include "model/model.h"
#include "model/tokens.h"
#include "util/diag.h"
#include "util/jsonout.h"
#include "util/signals.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe eval MODEL --tokens FILE [OPTIONS]\n"
            "\n"
            "Perplexity of MODEL on the token ids in FILE (raw little-endian uint32, or .npy int32/int64),\n"
            "over non-overlapping windows of --seq-len tokens: tokens 1..N-1 of each window are predicted\n"
            "from the preceding ones in the window; trailing tokens that do not fill a window are dropped.\n"
            "For byte-level models (vocabulary 256) also bits per byte (= log2 perplexity).\n"
            "\n"
            "  -t, --tokens FILE     token file (required)\n"
            "  -n, --seq-len N       window length (256)\n"
            "  -m, --max-tokens N    use at most the first N tokens (all)\n"
            "  -q, --quiet           print only the perplexity; no progress bar\n"
            "  -j, --json            print a JSON object (implies no progress bar)\n"
            "  -h, --help            show this help\n");
}

static int parse_count(const char *opt, const char *s, long long lo, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo)
        return sm_err("%s: '%s' is not an integer >= %lld", opt, s, lo);
    *out = v;
    return 0;
}

/* The result as one JSON object: every field or an error (util/jsonout.h), never `{}`. */
static int print_json(const char *dir, const char *tokens, const sm_eval_result *r)
{
    json_t *j = json_object();
    int bad = sm_json_set(j, "model", json_string(dir)) | sm_json_set(j, "tokens_file", json_string(tokens)) |
              sm_json_set(j, "seq_len", json_integer(r->seq_len)) |
              sm_json_set(j, "windows", json_integer(r->windows)) |
              sm_json_set(j, "tokens", json_integer((json_int_t)r->tokens)) |
              sm_json_set(j, "predicted", json_integer((json_int_t)r->predicted)) |
              sm_json_set(j, "nll", sm_json_number(r->nll)) | sm_json_set(j, "perplexity", sm_json_number(r->ppl)) |
              sm_json_set(j, "seconds", sm_json_number(r->seconds)) |
              sm_json_set(j, "tokens_per_second", sm_json_number(r->seconds > 0 ? r->tokens / r->seconds : 0.0));
    if (!isnan(r->bits_per_byte))
        bad |= sm_json_set(j, "bits_per_byte", sm_json_number(r->bits_per_byte));
    int rc = bad ? -1 : sm_json_print(stdout, j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10), "the eval result");
    json_decref(j);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tokens", required_argument, NULL, 't'}, {"seq-len", required_argument, NULL, 'n'},
        {"max-tokens", required_argument, NULL, 'm'}, {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *tokens = NULL;
    long long seq_len = 256, max_tokens = 0;
    bool quiet = false, json = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:n:m:qjh", opts, NULL)) != -1) {
        switch (ch) {
        case 't': tokens = optarg; break;
        case 'n':
            if (parse_count("--seq-len", optarg, 2, &seq_len) || seq_len > 1 << 24) {
                if (seq_len > 1 << 24)
                    sm_err("--seq-len: %lld is too large", seq_len);
                fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
                return 2;
            }
            break;
        case 'm':
            if (parse_count("--max-tokens", optarg, 2, &max_tokens)) {
                fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
                return 2;
            }
            break;
        case 'q': quiet = true; break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || !tokens) {
        fprintf(stderr, "submoe eval: %s\n", !tokens ? "--tokens FILE is required" : "expected one MODEL directory");
        usage(stderr);
        return 2;
    }
    const char *dir = argv[optind];
    sm_model *m = sm_model_open(dir);
    if (!m) {
        fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
        return 1;
    }
    sm_tokens t;
    if (sm_tokens_read(tokens, sm_model_config(m)->vocab, &t)) {
        fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
        sm_model_close(m);
        return 1;
    }
    sm_eval_result r;
    int rc = sm_eval_perplexity_mon(m, t.ids, t.n, (int)seq_len, (size_t)max_tokens, quiet || json,
                                    sm_signals_monitor(), &r);
    if (!rc && sm_interrupted()) /* finished just as a signal arrived: no result either */
        rc = -1;
    if (rc) {
        fprintf(stderr, "submoe eval: %s\n", sm_signals_errmsg());
    } else if (json) {
        rc = print_json(dir, tokens, &r);
        if (rc)
            fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
    } else if (quiet) {
        printf("%.6f\n", r.ppl);
    } else {
        printf("perplexity      %.6f\n", r.ppl);
        printf("nll             %.6f nats/token\n", r.nll);
        if (!isnan(r.bits_per_byte))
            printf("bits per byte   %.6f\n", r.bits_per_byte);
        printf("windows         %d x %d tokens (%llu predicted)\n", r.windows, r.seq_len,
               (unsigned long long)r.predicted);
        printf("time            %.2f s (%.0f tokens/s)\n", r.seconds, r.seconds > 0 ? r.tokens / r.seconds : 0.0);
    }
    sm_tokens_free(&t);
    sm_model_close(m);
    return rc ? 1 : 0;
}
