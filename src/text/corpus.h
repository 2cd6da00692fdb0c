/* corpus: text files as one token stream, the input of `--text` on eval, calibrate, plan and the
 * workbench (one loader for all four).
 *
 * Files: a name ending in .jsonl or .ndjson (any case) is JSON Lines: one JSON object per
 * non-blank line, its `field` (default "text") a string holding one document; documents that are
 * empty strings are skipped. Any other file is plain UTF-8 text and one document.
 * Invalid UTF-8 is an error naming the file and the byte offset (and the line in JSON Lines): a
 * corpus with broken bytes is usually a file in another encoding, and replacing them would
 * silently change what the statistics are computed on (`submoe tokenize` replaces them instead,
 * as Python's errors="replace" does, for scripts).
 *
 * The stream: every document is encoded with the model's tokenizer.json without the
 * post-processor's special tokens and preceded by one separator token: tokenizer_config.json's
 * bos_token, or its eos_token when it has no BOS. That is lm-eval-harness's prefix_token_id, the
 * token its loglikelihood_rolling puts before every document, and what Hugging Face's run_clm
 * gives a BOS-adding tokenizer (Llama, Mixtral) when it tokenizes documents and concatenates them.
 * A tokenizer with neither (the demo's byte vocabulary) joins the documents directly.
 *
 * Digests (FNV-1a 64, "fnv1a64:" and 16 hex digits, like model fingerprints): the text digest
 * covers every file's bytes in order and the field; the tokenizer digest covers tokenizer.json
 * and tokenizer_config.json. Stats files and plans record both, so a changed byte in either is
 * noticed. */
#ifndef SM_CORPUS_H
#define SM_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sm_text_source {
    const char *const *files;
    int n_files;
    const char *field;      /* JSON Lines field; NULL: "text" */
} sm_text_source;

#define SM_CORPUS_DIGEST_LEN 32

typedef struct sm_corpus {
    int32_t *ids;           /* the document stream */
    size_t n;
    size_t docs;
    int32_t separator;      /* the id before every document, or -1 */
    const char *separator_kind; /* "bos", "eos" or "none" */
    char text_digest[SM_CORPUS_DIGEST_LEN], tokenizer_digest[SM_CORPUS_DIGEST_LEN];
} sm_corpus;

/* Read and tokenize the files with the tokenizer of model directory `model` (tokenizer.json and
 * tokenizer_config.json). vocab > 0: every id must be below it (a tokenizer of another model is
 * refused). 0, or -1 with one message naming the file (and line or byte offset). */
int sm_corpus_load(const sm_text_source *src, const char *model, int32_t vocab, sm_corpus *out);
void sm_corpus_free(sm_corpus *c);

/* Only the digests (reads the files, does not tokenize). 0 or -1. */
int sm_corpus_digests(const sm_text_source *src, const char *model, char *text_digest, char *tokenizer_digest);

/* Calibration windows drawn from the stream: its non-overlapping windows of seq_len tokens are
 * shuffled with `seed` (util/rng.h); the first `samples` of them, in stream order, then up to
 * `extra` more (in stream order within each run of SM_CORPUS_EXTRA_RUN, so that drawing more
 * keeps the first ones: auto's held-out windows, then its plan guard's) are copied into *ids
 * (malloc'ed; *n_windows >= samples windows). -1 with a message when the stream holds fewer
 * than `samples` windows. */
#define SM_CORPUS_EXTRA_RUN 8
int sm_corpus_windows(const sm_corpus *c, const char *what, int samples, int seq_len, int extra, uint64_t seed,
                      int32_t **ids, int *n_windows);

/* "a.txt b.jsonl" (malloc'ed): the files for messages and metadata. */
char *sm_text_source_names(const sm_text_source *src);

#endif
