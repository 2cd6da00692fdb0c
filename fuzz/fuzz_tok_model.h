/* fuzz_tok_model: small tokenizer.json documents for the tokenizer harnesses, built with jansson:
 * byte-level (qwen-like regex Split + ByteLevel, added tokens with lstrip/rstrip/single_word),
 * SentencePiece-like (Prepend/Replace, byte_fallback, fuse_unk) and a "components" one (NFKD,
 * Lowercase, Strip, Replace, WhitespaceSplit, Punctuation, Digits, Split behaviours, Metaspace,
 * subword prefix and word suffix, ignore_merges). Each has merges for a few words. */
#ifndef SM_FUZZ_TOK_MODEL_H
#define SM_FUZZ_TOK_MODEL_H

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "text/tok_pretok.h"

static const char *const fuzz_tok_words[] = {"the", "and", "LORD", "ing", "hello", "of", "12", "日本"};

static void fuzz_tok_add(json_t *vocab, const char *tok)
{
    if (!json_object_get(vocab, tok))
        json_object_set_new(vocab, tok, json_integer((json_int_t)json_object_size(vocab)));
}

/* Merges that build each word (with a leading lead, when given) left to right, char by char. */
static void fuzz_tok_merges(json_t *vocab, json_t *merges, const char *lead, const char *prefix)
{
    for (size_t w = 0; w < sizeof fuzz_tok_words / sizeof *fuzz_tok_words; w++) {
        char word[64], acc[64], piece[16];
        snprintf(word, sizeof word, "%s%s", lead, fuzz_tok_words[w]);
        size_t n = strlen(word), i = 0, l = 1;
        while (l < n && ((unsigned char)word[l] & 0xC0) == 0x80)
            l++;
        memcpy(acc, word, l);
        acc[l] = 0;
        fuzz_tok_add(vocab, acc);
        for (i = l; i < n; i += l) {
            l = 1;
            while (i + l < n && ((unsigned char)word[i + l] & 0xC0) == 0x80)
                l++;
            snprintf(piece, sizeof piece, "%s%.*s", prefix, (int)l, word + i);
            fuzz_tok_add(vocab, piece);
            /* acc is a prefix of word, so acc + the next char fits in word's size */
            char joined[sizeof word];
            size_t al = strlen(acc);
            memcpy(joined, acc, al);
            memcpy(joined + al, word + i, l);
            joined[al + l] = 0;
            fuzz_tok_add(vocab, joined);
            json_array_append_new(merges, json_pack("[s,s]", acc, piece));
            memcpy(acc, joined, al + l + 1);
        }
    }
}

static json_t *fuzz_tok_added(void)
{
    return json_pack("[{s:i,s:s,s:b,s:b,s:b,s:b,s:b},{s:i,s:s,s:b,s:b,s:b,s:b,s:b},{s:i,s:s,s:b,s:b,s:b,s:b,s:b}]",
                     "id", 5000, "content", "<|endoftext|>", "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                     "special", 1, "id", 5001, "content", "<mask>", "single_word", 0, "lstrip", 1, "rstrip", 1,
                     "normalized", 0, "special", 1, "id", 5002, "content", "hello", "single_word", 1, "lstrip", 0,
                     "rstrip", 0, "normalized", 1, "special", 0);
}

static json_t *fuzz_tok_bpe(json_t *vocab, json_t *merges)
{
    return json_pack("{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE", "dropout", "unk_token",
                     "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                     "ignore_merges", 0, "vocab", vocab, "merges", merges);
}

/* which: 0 byte-level, 1 SentencePiece-like, 2 components. Returns a malloc'ed JSON text. */
static char *fuzz_tok_json(int which)
{
    json_t *vocab = json_object(), *merges = json_array(), *root, *model;
    if (which == 0) {
        for (unsigned b = 0; b < 256; b++) {
            size_t l;
            const char *c = sm_tok_byte_char(b, &l);
            char s[4] = {0};
            memcpy(s, c, l);
            json_object_set_new(vocab, s, json_integer(b));
        }
        fuzz_tok_merges(vocab, merges, "\xC4\xA0", ""); /* Ġ: a space in byte-level text */
        fuzz_tok_merges(vocab, merges, "", "");
        model = fuzz_tok_bpe(vocab, merges);
        root = json_pack("{s:s,s:n,s:n,s:o,s:{s:s},s:{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]},"
                         "s:{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:{s:{s:s,s:[i],s:[s]}}},s:{s:s},s:o}",
                         "version", "1.0", "truncation", "padding", "added_tokens", fuzz_tok_added(), "normalizer",
                         "type", "NFC", "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern",
                         "Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                         "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
                         "use_regex", 0, "post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id",
                         "<|endoftext|>", "type_id", 0, "Sequence", "id", "A", "type_id", 0, "special_tokens",
                         "<|endoftext|>", "id", "<|endoftext|>", "ids", 5000, "tokens", "<|endoftext|>", "decoder",
                         "type", "ByteLevel", "model", model);
    } else if (which == 1) {
        fuzz_tok_add(vocab, "<unk>");
        fuzz_tok_add(vocab, "<s>");
        fuzz_tok_add(vocab, "</s>");
        for (unsigned b = 0; b < 256; b++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", b);
            fuzz_tok_add(vocab, s);
        }
        fuzz_tok_merges(vocab, merges, "\xE2\x96\x81", ""); /* ▁ */
        model = fuzz_tok_bpe(vocab, merges);
        json_object_set_new(model, "unk_token", json_string("<unk>"));
        json_object_set_new(model, "byte_fallback", json_true());
        json_object_set_new(model, "fuse_unk", json_true());
        root = json_pack("{s:s,s:n,s:n,s:o,s:{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]},s:n,s:n,"
                         "s:{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s},{s:s,s:s,s:i,s:i}]},s:o}",
                         "version", "1.0", "truncation", "padding", "added_tokens", fuzz_tok_added(), "normalizer",
                         "type", "Sequence", "normalizers", "type", "Prepend", "prepend", "\xE2\x96\x81", "type", "Replace",
                         "pattern", "String", " ", "content", "\xE2\x96\x81", "pre_tokenizer", "post_processor", "decoder",
                         "type", "Sequence", "decoders", "type", "Replace", "pattern", "String", "\xE2\x96\x81", "content",
                         " ", "type", "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0,
                         "model", model);
    } else {
        fuzz_tok_add(vocab, "[UNK]");
        fuzz_tok_add(vocab, "[CLS]");
        fuzz_tok_add(vocab, "[SEP]");
        for (char c = 'a'; c <= 'z'; c++) {
            char s[8];
            snprintf(s, sizeof s, "%c", c);
            fuzz_tok_add(vocab, s);
            snprintf(s, sizeof s, "##%c", c);
            fuzz_tok_add(vocab, s);
        }
        fuzz_tok_merges(vocab, merges, "", "##");
        model = fuzz_tok_bpe(vocab, merges);
        json_object_set_new(model, "unk_token", json_string("[UNK]"));
        json_object_set_new(model, "continuing_subword_prefix", json_string("##"));
        json_object_set_new(model, "ignore_merges", json_true());
        root = json_pack("{s:s,s:n,s:n,s:o,s:{s:s,s:[{s:s},{s:s},{s:s,s:b,s:b},{s:s,s:{s:s},s:s}]},"
                         "s:{s:s,s:[{s:s},{s:s,s:s},{s:s,s:b},{s:s,s:{s:s},s:s,s:b},{s:s,s:{s:s},s:s,s:b},"
                         "{s:s,s:s,s:s,s:b}]},s:{s:s,s:[s,i],s:[s,i]},s:{s:s,s:s},s:o}",
                         "version", "1.0", "truncation", "padding", "added_tokens", fuzz_tok_added(), "normalizer",
                         "type", "Sequence", "normalizers", "type", "NFKD", "type", "Lowercase", "type", "Strip",
                         "strip_left", 1, "strip_right", 1, "type", "Replace", "pattern", "Regex", "\\s+", "content", " ",
                         "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "WhitespaceSplit", "type",
                         "Punctuation", "behavior", "Contiguous", "type", "Digits", "individual_digits", 1, "type", "Split",
                         "pattern", "String", "-", "behavior", "MergedWithNext", "invert", 0, "type", "Split", "pattern",
                         "Regex", "[aeiou]", "behavior", "MergedWithPrevious", "invert", 1, "type", "Metaspace",
                         "replacement", "\xE2\x96\x81", "prepend_scheme", "first", "split", 1, "post_processor", "type",
                         "BertProcessing", "sep", "[SEP]", 2, "cls", "[CLS]", 1, "decoder", "type", "BPEDecoder",
                         "suffix", "</w>", "model", model);
    }
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

#endif
