#!/usr/bin/env python3
"""Regenerate tests/corrupt-tok/: broken tokenizer files (issue 17).

Each case is a directory holding a tokenizer.json (and maybe a tokenizer_config.json) derived from
one tiny valid byte-level BPE, plus `expected`: text that the single error line of
`submoe tokenize CASE TEXT -o OUT` must contain (file name and JSON path). tests/test_tokenize.sh
checks each: exit status 1, one line on stderr, no output file. Plain Python 3:

    python3 tools/make_corrupt_tok_corpus.py tests/corrupt-tok
"""
import copy
import json
import os
import shutil
import sys

LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
GOOD = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 5, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": LEVEL,
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                 {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [5], "tokens": ["<s>"]}}},
    "decoder": LEVEL,
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4}, "merges": [["a", "b"], ["\u0120", "ab"]]},
}


def case(name, expected, edit=None, raw=None, config=None, missing=False):
    def make(out):
        d = os.path.join(out, name)
        os.makedirs(d)
        if not missing:
            with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
                if raw is not None:
                    f.write(raw)
                else:
                    t = copy.deepcopy(GOOD)
                    edit(t)
                    json.dump(t, f, ensure_ascii=False)
        if config is not None:
            open(os.path.join(d, "tokenizer_config.json"), "w").write(config)
        open(os.path.join(d, "expected"), "w").write(expected + "\n")
    return make


def setp(path, value):
    def edit(t):
        o = t
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = value
    return edit


CASES = [
    case("missing", "tokenizer.json: no such file (the model directory has no tokenizer.json)", missing=True),
    case("empty", "tokenizer.json: malformed JSON", raw=""),
    case("malformed", "tokenizer.json: malformed JSON at line 1", raw='{"model": {"type": "BPE",'),
    case("not-object", "tokenizer.json: the top level must be a JSON object", raw="[1, 2]"),
    case("no-model", "tokenizer.json: model: required object is missing", edit=lambda t: t.pop("model")),
    case("model-unigram", 'tokenizer.json: model.type: unsupported model type "Unigram"', edit=setp(["model", "type"], "Unigram")),
    case("model-type-number", "tokenizer.json: model.type: must be a string", edit=setp(["model", "type"], 3)),
    case("vocab-not-object", "tokenizer.json: model.vocab: must be an object", edit=setp(["model", "vocab"], [1])),
    case("vocab-id-string", 'tokenizer.json: model.vocab: the id of "a" must be an integer', edit=setp(["model", "vocab", "a"], "0")),
    case("vocab-id-huge", 'tokenizer.json: model.vocab: the id of "b" must be an integer', edit=setp(["model", "vocab", "b"], 10 ** 12)),
    case("merges-not-list", "tokenizer.json: model.merges: must be a list", edit=setp(["model", "merges"], 5)),
    case("merge-unknown", 'tokenizer.json: model.merges[1]: merge token "c" is not in the vocabulary', edit=setp(["model", "merges", 1], ["c", "a"])),
    case("merge-shape", "tokenizer.json: model.merges[0]: a merge must be", edit=setp(["model", "merges", 0], ["a", "b", "c"])),
    case("byte-fallback-string", "tokenizer.json: model.byte_fallback: must be true or false", edit=setp(["model", "byte_fallback"], "yes")),
    case("dropout", "tokenizer.json: model.dropout: BPE dropout is random", edit=setp(["model", "dropout"], 0.1)),
    case("model-unknown-field", "tokenizer.json: model.vocab_file: field not supported", edit=setp(["model", "vocab_file"], "x")),
    case("truncation", "tokenizer.json: truncation: truncation is not supported", edit=setp(["truncation"], {"max_length": 512})),
    case("normalizer-bert", 'tokenizer.json: normalizer.type: unsupported normalizer "BertNormalizer"', edit=setp(["normalizer"], {"type": "BertNormalizer"})),
    case("normalizer-seq-item", "tokenizer.json: normalizer.normalizers[1]: must be an object",
         edit=setp(["normalizer"], {"type": "Sequence", "normalizers": [{"type": "NFC"}, "NFD"]})),
    case("pretok-unknown", 'tokenizer.json: pre_tokenizer.pretokenizers[0].type: unsupported pre-tokenizer "UnicodeScripts"',
         edit=setp(["pre_tokenizer"], {"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}]})),
    case("split-bad-regex", "tokenizer.json: pre_tokenizer.pattern.Regex: invalid regular expression",
         edit=setp(["pre_tokenizer"], {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": False})),
    case("split-behavior", 'tokenizer.json: pre_tokenizer.behavior: unknown split behaviour "Sideways"',
         edit=setp(["pre_tokenizer"], {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways", "invert": False})),
    case("metaspace-replacement", "tokenizer.json: pre_tokenizer.replacement: must be one character",
         edit=setp(["pre_tokenizer"], {"type": "Metaspace", "replacement": "ab", "prepend_scheme": "always", "split": True})),
    case("bytelevel-regex-type", "tokenizer.json: pre_tokenizer.use_regex: must be true or false", edit=setp(["pre_tokenizer", "use_regex"], 1)),
    case("added-not-list", "tokenizer.json: added_tokens: must be a list", edit=setp(["added_tokens"], {"id": 5})),
    case("added-id-string", "tokenizer.json: added_tokens[0].id: must be an integer", edit=setp(["added_tokens", 0, "id"], "5")),
    case("added-no-content", "tokenizer.json: added_tokens[0].content: required string is missing", edit=lambda t: t["added_tokens"][0].pop("content")),
    case("post-unknown-special", 'tokenizer.json: post_processor.single[0]: special token "<s>" is not in special_tokens',
         edit=setp(["post_processor", "special_tokens"], {})),
    case("post-id-outside", "tokenizer.json: post_processor: special token id 99 is not in the vocabulary",
         edit=setp(["post_processor", "special_tokens", "<s>", "ids"], [99])),
    case("post-unknown-type", 'tokenizer.json: post_processor.type: unsupported post-processor "Foo"', edit=setp(["post_processor"], {"type": "Foo"})),
    case("decoder-wordpiece", 'tokenizer.json: decoder.type: unsupported decoder "WordPiece"', edit=setp(["decoder"], {"type": "WordPiece", "prefix": "##"})),
    case("config-malformed", "tokenizer_config.json: malformed JSON", edit=lambda t: None, config='{"add_bos_token": tru'),
    case("config-bos-type", "tokenizer_config.json: add_bos_token: must be true or false", edit=lambda t: None,
         config='{"add_bos_token": "yes", "bos_token": "<s>"}'),
    case("config-bos-unknown", 'tokenizer_config.json: bos_token: token "<bos>" is not in the tokenizer', edit=lambda t: None,
         config='{"add_bos_token": true, "bos_token": "<bos>"}'),
]


def main():
    out = sys.argv[1]
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for make in CASES:
        make(out)


if __name__ == "__main__":
    main()
