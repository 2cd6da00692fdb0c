/* submoe tokenize: text files to token ids through a model's tokenizer.json (the ids Hugging
 * Face tokenizers gives), or token-id files back to text with --decode. */
#include "cmd/cmd.h"
#include "model/tokens.h"
#include "text/tok.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/iopaths.h"
#include "util/publish.h"
#include "util/mem.h"
#include "util/signals.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT_BYTES ((size_t)1 << 31)

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: submoe tokenize MODEL FILE... [-o IDS.u32] [--no-special] [--strict-utf8]\n"
            "       submoe tokenize MODEL --decode IDS...\n"
            "\n"
            "Encode UTF-8 text files with MODEL's tokenizer.json (MODEL is a model directory holding\n"
            "tokenizer.json and optionally tokenizer_config.json, or the tokenizer.json file itself),\n"
            "giving the ids of Hugging Face tokenizers. Each FILE is one document: it gets the\n"
            "BOS/EOS tokens of the tokenizer's post-processor and tokenizer_config.json. Invalid UTF-8\n"
            "is replaced by U+FFFD (as Python's decode(errors='replace')) with a warning naming the\n"
            "file and byte offset.\n"
            "\n"
            "  -o, --output FILE  write the ids as little-endian uint32 (the token-file format of eval\n"
            "                     and calibrate), replaced atomically; default: decimal ids on\n"
            "                     standard output, one line per FILE\n"
            "      --no-special   no BOS/EOS (add_special_tokens=False)\n"
            "      --strict-utf8  invalid UTF-8 is an error instead of replaced\n"
            "      --decode       the FILEs are token-id files: print their text (for display)\n"
            "  -h, --help         show this help\n");
}

typedef struct {
    const char *output;
    bool no_special, strict, decode;
} tok_opts;

static int encode_file(sm_tok *tok, const char *path, const tok_opts *o, sm_tok_ids *ids)
{
    size_t len, fixed_len, first_bad, n_bad;
    char *raw = sm_read_file(path, MAX_TEXT_BYTES, &len);
    if (!raw)
        return -1;
    char *text = sm_tok_utf8_repair(raw, len, &fixed_len, &first_bad, &n_bad);
    free(raw);
    if (n_bad && o->strict) {
        free(text);
        return sm_err("%s: invalid UTF-8 at byte offset %zu", path, first_bad);
    }
    if (n_bad)
        fprintf(stderr, "submoe tokenize: warning: %s: invalid UTF-8 at byte offset %zu (%zu ill-formed "
                "sequence%s replaced by U+FFFD)\n", path, first_bad, n_bad, n_bad == 1 ? "" : "s");
    int rc = sm_tok_encode(tok, text, fixed_len, !o->no_special, ids);
    free(text);
    if (rc)
        sm_err_prefix("%s", path);
    return rc;
}

static int run_encode(sm_tok *tok, char **files, int n, const tok_opts *o)
{
    sm_tok_ids all = {0}, one = {0};
    int rc = 0;
    char *lines = NULL;
    size_t lines_len = 0;
    FILE *mem = o->output ? NULL : open_memstream(&lines, &lines_len);
    if (!o->output && !mem)
        return sm_err("out of memory");
    for (int i = 0; i < n && !rc; i++) {
        one.n = 0;
        if (sm_interrupted())
            rc = sm_err("%s", sm_signals_errmsg());
        else
            rc = encode_file(tok, files[i], o, &one);
        for (size_t k = 0; !rc && k < one.n; k++) {
            if (mem)
                fprintf(mem, k ? " %d" : "%d", one.v[k]);
            else
                sm_tok_ids_push(&all, one.v[k]);
        }
        if (!rc && mem)
            fputc('\n', mem);
    }
    if (mem)
        fclose(mem);
    if (!rc && o->output) { /* uint32 little-endian, whole file at once: never partial */
        uint8_t *buf = xmalloc(all.n * 4 + 1);
        for (size_t k = 0; k < all.n; k++) {
            uint32_t v = (uint32_t)all.v[k];
            buf[4 * k] = (uint8_t)v, buf[4 * k + 1] = (uint8_t)(v >> 8);
            buf[4 * k + 2] = (uint8_t)(v >> 16), buf[4 * k + 3] = (uint8_t)(v >> 24);
        }
        rc = sm_interrupted() ? sm_err("%s", sm_signals_errmsg()) : sm_write_file_atomic(o->output, buf, all.n * 4);
        free(buf);
    } else if (!rc && lines_len)
        fwrite(lines, 1, lines_len, stdout);
    free(lines);
    free(all.v);
    free(one.v);
    return rc;
}

/* -o never lands on the tokenizer, the model it belongs to or a text file (util/iopaths.h). */
static int check_output(const char *model, char **files, int n, const char *output)
{
    sm_paths inputs = {0}, outputs = {0};
    if (sm_is_dir(model))
        sm_paths_add_model(&inputs, model);
    else
        sm_paths_add(&inputs, "tokenizer", model);
    for (int i = 0; i < n; i++)
        sm_paths_add(&inputs, "text file", files[i]);
    sm_paths_add(&outputs, "token file", output);
    int rc = sm_check_output_paths(&inputs, &outputs);
    sm_paths_free(&inputs);
    sm_paths_free(&outputs);
    return rc;
}

static int run_decode(sm_tok *tok, char **files, int n)
{
    for (int i = 0; i < n; i++) {
        sm_tokens t;
        if (sm_tokens_read(files[i], sm_tok_vocab_size(tok), &t))
            return -1;
        char *s = sm_tok_decode(tok, t.ids, t.n, false);
        fputs(s, stdout);
        free(s);
        sm_tokens_free(&t);
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"no-special", no_argument, NULL, 'n'},
        {"strict-utf8", no_argument, NULL, 's'},  {"decode", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    tok_opts o = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': o.output = optarg; break;
        case 'n': o.no_special = true; break;
        case 's': o.strict = true; break;
        case 'd': o.decode = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind < 2 || (o.decode && o.output)) {
        fprintf(stderr, "submoe tokenize: %s\n",
                o.decode && o.output ? "--decode prints text; it takes no -o" : "expected MODEL and at least one FILE");
        usage(stderr);
        return 2;
    }
    char **files = argv + optind + 1;
    int n = argc - optind - 1;
    if (o.output && check_output(argv[optind], files, n, o.output)) {
        fprintf(stderr, "submoe tokenize: %s\n", sm_errmsg());
        return 1;
    }
    sm_tok *tok = sm_tok_load(argv[optind]);
    if (!tok) {
        fprintf(stderr, "submoe tokenize: %s\n", sm_errmsg());
        return 1;
    }
    int rc = o.decode ? run_decode(tok, files, n) : run_encode(tok, files, n, &o);
    sm_tok_free(tok);
    if (rc) {
        fprintf(stderr, "submoe tokenize: %s\n", sm_errmsg());
        return 1;
    }
    return 0;
}
