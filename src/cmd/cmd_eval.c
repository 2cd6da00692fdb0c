/* submoe eval: perplexity of a model on a token file with the built-in forward pass, or
 * zero-shot multiple-choice accuracy on task files (--task; cmd/eval_task.c). */
#include "cmd/cmd.h"
#include "cmd/eval_task.h"
#include "cmd/text_args.h"
#include "forward/eval.h"
#include "model/model.h"
#include "model/tokens.h"
#include "text/tok_utf8.h"
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
            "       submoe eval MODEL --text FILE... [--text-field NAME] [OPTIONS]\n"
            "       submoe eval MODEL --task FILE.jsonl [--task FILE.jsonl ...] [OPTIONS]\n"
            "\n"
            "Perplexity of MODEL on the token ids in FILE (raw little-endian uint32, or .npy int32/int64),\n"
            "over non-overlapping windows of --seq-len tokens: tokens 1..N-1 of each window are predicted\n"
            "from the preceding ones in the window; trailing tokens that do not fill a window are dropped.\n"
            "For byte-level models (vocabulary 256) also bits per byte (= log2 perplexity).\n"
            "\n"
            "  -t, --tokens FILE     token file\n"
            "      --text FILE...    text instead: UTF-8 plain text (a file is a document) or JSON Lines\n"
            "                        (.jsonl: a document per line), tokenized with MODEL's tokenizer.json,\n"
            "                        each document after the tokenizer's BOS (else EOS); see submoe(1), TEXT\n"
            "      --text-field NAME the JSON Lines field holding the text (text)\n"
            "  -n, --seq-len N       window length (256)\n"
            "  -m, --max-tokens N    use at most the first N tokens (all)\n"
            "  -P, --precision P     products of the weights: auto (bf16 where faster than fp32: AMX,\n"
            "                        or AVX512-BF16 on AMD; else fp32), fp32 or bf16 (fp32 accumulation) (auto)\n"
            "\n"
            "With --task: zero-shot multiple choice as lm-eval-harness's multiple_choice: each line of\n"
            "FILE is {\"context\": ..., \"choices\": [...], \"gold\": N}; a choice scores the sum of\n"
            "log p(delimiter + choice | context); acc and acc_norm (score / characters of the choice)\n"
            "with standard errors, per file and their mean. Needs MODEL/tokenizer.json.\n"
            "\n"
            "  -T, --task FILE       a task file (JSONL); repeat for several\n"
            "      --delimiter STR   target delimiter between context and choice (\" \")\n"
            "      --no-special      encode without the tokenizer's BOS/EOS (lm-eval's add_bos_token=False;\n"
            "                        by default they are added, as lm-eval's HFLM does when it is unset)\n"
            "      --items FILE      write every choice's log-likelihood as TSV to FILE\n"
            "      --max-length N    left-truncate longer items to N tokens as lm-eval does (default: the\n"
            "                        config's max_position_embeddings, else 2048)\n"
            "  -q, --quiet           print only the perplexity (with --task: acc acc_norm per file)\n"
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
static int print_json(const char *dir, const char *tokens, const sm_corpus *text, const sm_eval_result *r)
{
    json_t *j = json_object();
    int bad = sm_json_set(j, "model", json_string(dir));
    if (text)
        bad |= sm_json_set(j, "text_digest", json_string(text->text_digest)) |
               sm_json_set(j, "tokenizer_digest", json_string(text->tokenizer_digest)) |
               sm_json_set(j, "documents", json_integer((json_int_t)text->docs));
    else
        bad |= sm_json_set(j, "tokens_file", json_string(tokens));
    bad |= 
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

static bool valid_utf8(const char *s)
{
    size_t n = strlen(s), len;
    for (size_t pos = 0; pos < n; pos += len)
        if (!(len = sm_tok_utf8_valid_len((const unsigned char *)s + pos, n - pos, NULL)))
            return false;
    return true;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tokens", required_argument, NULL, 't'}, {"seq-len", required_argument, NULL, 'n'},
        {"max-tokens", required_argument, NULL, 'm'}, {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {"task", required_argument, NULL, 'T'},
        {"delimiter", required_argument, NULL, 'D'}, {"no-special", no_argument, NULL, 'B'},
        {"items", required_argument, NULL, 'I'}, {"precision", required_argument, NULL, 'P'},
        {"text", required_argument, NULL, 'X'}, {"text-field", required_argument, NULL, 'F'},
        {"max-length", required_argument, NULL, 'L'}, {NULL, 0, NULL, 0},
    };
    cmd_text_args text;
    cmd_text_args_init(&text, argc);
    const char *task_files[argc > 0 ? argc : 1]; /* at most one per argument */
    sm_eval_task_args ta = {.files = task_files, .add_special = true};
    bool task_opts = false;
    const char *tokens = NULL;
    long long seq_len = 256, max_tokens = 0;
    bool quiet = false, json = false;
    const char *precision = "auto";
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:n:m:qjhT:P:", opts, NULL)) != -1) {
        switch (ch) {
        case 'P': precision = optarg; break;
        case 'T': ta.files[ta.n_files++] = optarg; break;
        case 'D': ta.delimiter = optarg; task_opts = true; break;
        case 'B': ta.add_special = false; task_opts = true; break;
        case 'I': ta.items_out = optarg; task_opts = true; break;
        case 'L': {
            long long v = 0;
            if (parse_count("--max-length", optarg, 1, &v) || v > 1 << 24) {
                fprintf(stderr, "submoe eval: %s\n", v > 1 << 24 ? "--max-length: too large" : sm_errmsg());
                cmd_text_args_free(&text);
                return 2;
            }
            ta.max_length = (int)v;
            task_opts = true;
            break;
        }
        case 't': tokens = optarg; break;
        case 'X': text.files[text.n++] = optarg, text.given = true; break;
        case 'F': text.field = optarg; break;
        case 'n':
            if (parse_count("--seq-len", optarg, 2, &seq_len) || seq_len > 1 << 24) {
                if (seq_len > 1 << 24)
                    sm_err("--seq-len: %lld is too large", seq_len);
                fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
                cmd_text_args_free(&text);
                return 2;
            }
            break;
        case 'm':
            if (parse_count("--max-tokens", optarg, 2, &max_tokens)) {
                fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
                cmd_text_args_free(&text);
                return 2;
            }
            break;
        case 'q': quiet = true; break;
        case 'j': json = true; break;
        case 'h': usage(stdout); cmd_text_args_free(&text); return 0;
        default: usage(stderr); cmd_text_args_free(&text); return 2;
        }
    }
    int sources = !!tokens + !!ta.n_files + text.given;
    const char *problem = cmd_text_args_finish(&text, argc, argv, optind) ? sm_errmsg()
                          : sources == 0 ? "--tokens FILE, --text FILE or --task FILE is required"
                          : sources > 1  ? "--tokens, --text and --task do not go together (give one)"
                          : task_opts && !ta.n_files       ? "--delimiter, --no-special, --items and --max-length need --task"
                          : ta.delimiter && !valid_utf8(ta.delimiter) ? "--delimiter is not valid UTF-8"
                                                           : NULL;
    if (problem) {
        fprintf(stderr, "submoe eval: %s\n", problem);
        usage(stderr);
        cmd_text_args_free(&text);
        return 2;
    }
    sm_precision prec;
    if (sm_precision_parse(precision, &prec)) {
        fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
        cmd_text_args_free(&text);
        return 2;
    }
    ta.precision = prec;
    const char *dir = argv[optind];
    if (ta.n_files) {
        ta.model = dir;
        ta.quiet = quiet;
        ta.json = json;
        cmd_text_args_free(&text);
        return sm_eval_tasks(&ta);
    }
    sm_model *m = sm_model_open(dir);
    if (!m) {
        fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
        cmd_text_args_free(&text);
        return 1;
    }
    sm_tokens t = {0};
    sm_corpus corpus = {0};
    if (text.given ? sm_corpus_load(&text.src, dir, sm_model_config(m)->vocab, &corpus)
                   : sm_tokens_read(tokens, sm_model_config(m)->vocab, &t)) {
        fprintf(stderr, "submoe eval: %s\n", sm_errmsg());
        sm_model_close(m);
        cmd_text_args_free(&text);
        return 1;
    }
    if (text.given) /* the stream stands for the token file */
        t.ids = corpus.ids, t.n = corpus.n, corpus.ids = NULL;
    sm_eval_result r;
    int rc = sm_eval_perplexity_prec(m, t.ids, t.n, (int)seq_len, (size_t)max_tokens, quiet || json, prec,
                                     sm_signals_monitor(), &r);
    if (!rc && sm_interrupted()) /* finished just as a signal arrived: no result either */
        rc = -1;
    if (rc) {
        fprintf(stderr, "submoe eval: %s\n", sm_signals_errmsg());
    } else if (json) {
        rc = print_json(dir, tokens, text.given ? &corpus : NULL, &r);
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
        printf("time            %.2f s (%.0f tokens/s, %s products)\n", r.seconds,
               r.seconds > 0 ? r.tokens / r.seconds : 0.0, sm_precision_name(prec));
    }
    sm_tokens_free(&t);
    sm_corpus_free(&corpus);
    cmd_text_args_free(&text);
    sm_model_close(m);
    return rc ? 1 : 0;
}
