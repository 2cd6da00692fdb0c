/* Unit tests of the tokenizer pieces (issue 17): UTF-8 repair as Python's errors="replace" (the
 * expected strings are Python 3's), the GPT-2 byte table, in-memory loading errors with JSON paths,
 * decoding, and tokenizer_config.json's BOS/EOS switches. The parity with the reference library
 * is tests/test_tokenize.sh. */
#include "testutil.h"
#include "text/tok.h"
#include "text/tok_pretok.h"
#include "text/tok_utf8.h"
#include "util/diag.h"

#include <stdint.h>

static void check_repair(const char *in, size_t n, const char *want, size_t want_bad, size_t want_first)
{
    size_t len, first, nbad;
    char *out = sm_tok_utf8_repair(in, n, &len, &first, &nbad);
    CHECK(len == strlen(want) && !memcmp(out, want, len) && nbad == want_bad && first == want_first,
          "repair of %zu bytes: %zu replacements from offset %zu", n, nbad, first);
    free(out);
}

#define FFFD "\xEF\xBF\xBD"

static void test_repair(void)
{
    check_repair("plain", 5, "plain", 0, SIZE_MAX);
    check_repair("\xed\xa0\x80x", 4, FFFD FFFD FFFD "x", 3, 0); /* a surrogate: three subparts */
    check_repair("ab\xc3", 3, "ab" FFFD, 1, 2);                 /* cut short at the end */
    check_repair("\xf0\x9f\x98", 3, FFFD, 1, 0);                /* a truncated 4-byte form is one */
    check_repair("\xe2(\xa1", 3, FFFD "(" FFFD, 2, 0);
    check_repair("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD, 4, 0); /* beyond U+10FFFF */
    check_repair("\xc0\xaf", 2, FFFD FFFD, 2, 0);                   /* overlong */
    check_repair("\xe0\x80\xaf", 3, FFFD FFFD FFFD, 3, 0);
    check_repair("\xf1\x80\x80\xe4\xb8\xad", 6, FFFD "\xe4\xb8\xad", 1, 0);
    size_t len, first, nbad;
    char *out = sm_tok_utf8_repair("ok\0nul\x80", 7, &len, &first, &nbad);
    CHECK(len == 9 && !memcmp(out, "ok\0nul" FFFD, 9) && first == 6, "NUL bytes are kept");
    free(out);
}

static void test_byte_table(void)
{
    size_t l;
    const char *c = sm_tok_byte_char(' ', &l);
    CHECK(l == 2 && !memcmp(c, "\xC4\xA0", 2), "space is U+0120");
    c = sm_tok_byte_char('A', &l);
    CHECK(l == 1 && c[0] == 'A', "printable ASCII stands for itself");
    int ok = 1;
    for (unsigned b = 0; b < 256; b++) {
        size_t k;
        c = sm_tok_byte_char(b, &k);
        ok &= sm_tok_char_byte(sm_tok_utf8_next(c, k, &k)) == (int)b;
    }
    CHECK(ok, "the table inverts for all 256 bytes");
}

static const char *load_error(const char *json)
{
    sm_tok *t = sm_tok_load_mem("t.json", json, strlen(json), NULL, NULL, 0);
    sm_tok_free(t);
    return t ? "(loaded)" : sm_errmsg();
}

static void test_errors(void)
{
    CHECK_STR(load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}"),
              "t.json: model.type: unsupported model type \"WordPiece\" (supported: BPE)", "unknown model");
    CHECK_STR(load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": 2}]}}"),
              "t.json: pre_tokenizer.pretokenizers[0].individual_digits: must be true or false", "wrong type, nested");
    CHECK_STR(load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}"),
              "t.json: model.vocab: the vocabulary is empty", "empty vocabulary");
    const char *e = load_error("{\"model\": ");
    CHECK(!strncmp(e, "t.json: malformed JSON at line 1 column 10: ", 44), "malformed: %s", e);
}

/* A byte-level tokenizer with one merge and a <s> added token, BOS by template. */
static const char *const TINY =
    "{\"added_tokens\": [{\"id\": 300, \"content\": \"<s>\", \"special\": true}],"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
    "   {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [300]}}},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"h\": 0, \"i\": 1, \"hi\": 2, \"\\u0120\": 3, \"!\": 4}, \"merges\": [\"h i\"]}}";

static void test_encode_decode(void)
{
    sm_tok *t = sm_tok_load_mem("tiny.json", TINY, strlen(TINY), NULL, NULL, 0);
    CHECK(t != NULL, "tiny tokenizer loads: %s", t ? "" : sm_errmsg());
    if (!t)
        return;
    sm_tok_ids ids = {0};
    CHECK(sm_tok_encode(t, "hi <s>!", 7, true, &ids) == 0 && ids.n == 5 && ids.v[0] == 300 && ids.v[1] == 2 &&
              ids.v[2] == 3 && ids.v[3] == 300 && ids.v[4] == 4,
          "BOS, merge, space, added token, char: %zu ids", ids.n);
    char *s = sm_tok_decode(t, ids.v, ids.n, false);
    CHECK_STR(s, "<s>hi <s>!", "decode keeps special tokens");
    free(s);
    s = sm_tok_decode(t, ids.v, ids.n, true);
    CHECK_STR(s, "hi !", "decode skips special tokens");
    free(s);
    sm_tok_free(t);
    const char *cfg = "{\"add_bos_token\": false, \"bos_token\": {\"content\": \"<s>\"}, \"model_max_length\": 1e30}";
    t = sm_tok_load_mem("tiny.json", TINY, strlen(TINY), "cfg.json", cfg, strlen(cfg));
    ids.n = 0;
    CHECK(t && sm_tok_encode(t, "hi", 2, true, &ids) == 0 && ids.n == 1 && ids.v[0] == 2,
          "add_bos_token false drops the template's BOS");
    sm_tok_free(t);
    free(ids.v);
}

int main(void)
{
    test_repair();
    test_byte_table();
    test_errors();
    test_encode_decode();
    return tu_failures ? 1 : 0;
}
