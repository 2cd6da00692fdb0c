#!/usr/bin/env python3
"""make_tok_fixtures.py -- the tokenizer parity fixtures of issue 17 (tests/fixtures/tok/).

Needs the reference: PyPI tokenizers 0.22.1 (python3 -m venv /tmp/venv-tok &&
/tmp/venv-tok/bin/pip install tokenizers==0.22.1; run with /tmp/venv-tok/bin/python). Tests never
need Python: they compare `submoe tokenize` with the ids written here.

  1. trains five small tokenizers of different build on KJV text (data/calib.u32, public domain)
     and the parity text: neox (GPT-NeoX/OLMoE byte-level BPE), spm (Mixtral-style SentencePiece
     BPE with byte_fallback), deepseek (DeepSeek-V3-style Split sequence), wordy (subword prefix
     and word suffix, NFKD, Lowercase, Bert pieces), meta (Metaspace, split behaviours, NFD/NFKC);
  2. copies the real qwen3 and gpt-oss tokenizers (gzip-compressed) from SHARED;
  3. writes, for every tokenizer NAME: NAME.text.u32 (the ids of text.txt as one document,
     uint32 little-endian), NAME.edge.txt (the ids of each edge/*.txt, one line each) and
     NAME.decode.sha256 (the SHA-256 of the reference's decode of NAME.text.u32, special tokens kept).
Text files are read as Python does with errors="replace" (submoe's stated policy).

usage: make_tok_fixtures.py REPO [SHARED=/work/shared/tokenizers]
"""
import gzip
import hashlib
import json
import os
import shutil
import struct
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

assert tokenizers.__version__ == "0.22.1", tokenizers.__version__

DS_PATTERN = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
              " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")

EDGE = ["", " ", "  ", "\n", "a", "Hello", " Hello", "Hello ", "<s>", "<s> ", " <s>", "<s><s>x</s>",
        "<|endoftext|>", "text<|endoftext|>more", "<mask>  x", "x  <mask> y", "LORD", "THE LORD God",
        "LORDship", "hello world", "say hello", "Jesus Christ", "Jesus Christs", "\ufb01nance",
        "\u0130stanbul \u03a3\u039f\u03a6\u039f\u03a3 \u03a3", "e\u0301 \u00e9 \u212b", "123456789 1,000.5",
        "a-b-c 1-2--3", "(x) [y] A.B, c;d: E-F", "\t\tx", "\u3000x", "x\u00a0y", " " * 300 + "x",
        "a" * 1000, "9" * 500, "\U0001F468\u200D\U0001F469\u200D\U0001F467 \U0001F44D\U0001F3FD",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938\u094d\u0924\u0947",
        "don't I'LL we'Ve", "\r\n\r\n  \n", "x\n\n\n", "   leading", "trailing   ", "MiXeD CaSe WORDS",
        "\uff21\uff22\uff23\uff11\uff12\uff13", "<\uff5cbegin\u2581of\u2581sentence\uff5c>hi", "\u2581x \u2581",
        "<unk><unk>", "[CLS] x [SEP]", "\u0000nul\u0000"]
EDGE_BYTES = [b"\xff\xfe", b"ab\xc3", b"\xed\xa0\x80x", b"\xe4\xb8\xadok\x80"]


def kjv(repo):
    data = open(os.path.join(repo, "data/calib.u32"), "rb").read()
    return bytes(struct.unpack("<%dI" % (len(data) // 4), data)).decode("ascii").split("\n")


def corpus(repo):
    text = open(os.path.join(repo, "tests/fixtures/tok/text.txt"), "rb").read().decode("utf-8", "replace")
    return kjv(repo) + text.split("\n")


def strip_byte_tokens(path):
    """Mixtral's layout: <0x00>..<0xFF> are vocabulary entries, not added tokens."""
    d = json.load(open(path, encoding="utf-8"))
    d["added_tokens"] = [t for t in d["added_tokens"] if not (t["content"].startswith("<0x") and len(t["content"]) == 6)]
    json.dump(d, open(path, "w", encoding="utf-8"), ensure_ascii=False, indent=1)


def save(tok, out, config):
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    if config is not None:
        json.dump(config, open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)


def train(tok, trainer, lines):
    tok.train_from_iterator(lines, trainer=trainer)


def build_neox(lines, out):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    train(tok, trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|endoftext|>", "<|padding|>"],
                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), lines)
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", eot)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.add_tokens([AddedToken("Jesus Christ", single_word=True, normalized=True),
                    AddedToken("LORD", single_word=True, rstrip=True, normalized=False), AddedToken("\ufb01", normalized=True)])
    save(tok, out, {"add_bos_token": False, "add_eos_token": True, "eos_token": "<|endoftext|>"})


def build_spm(lines, out):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    specials = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    train(tok, trainers.BpeTrainer(vocab_size=2000, special_tokens=specials, limit_alphabet=120), lines)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    save(tok, out, {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>"})
    strip_byte_tokens(os.path.join(out, "tokenizer.json"))


def build_deepseek(lines, out):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\\p{N}{1,3}"), "isolated"),
        pre_tokenizers.Split(Regex("[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"), "isolated"),
        pre_tokenizers.Split(Regex(DS_PATTERN), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    bos, eos = "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"
    train(tok, trainers.BpeTrainer(vocab_size=3000, special_tokens=[bos, eos, "<\uff5c\u2581pad\u2581\uff5c>"],
                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), lines)
    tok.post_processor = processors.TemplateProcessing(single=bos + " $A", special_tokens=[(bos, 0)])
    save(tok, out, {"add_bos_token": True, "add_eos_token": False, "bos_token": {"content": bos}, "eos_token": eos})


def build_wordy(lines, out):
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase(), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    train(tok, trainers.BpeTrainer(vocab_size=2500, special_tokens=["[UNK]", "[CLS]", "[SEP]"], limit_alphabet=150,
                                   continuing_subword_prefix="##", end_of_word_suffix="</w>"), lines)
    tok.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    tok.add_tokens([AddedToken("hello", single_word=True, normalized=True), AddedToken("LORD", normalized=True)])
    save(tok, out, None)


def build_meta(lines, out):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, ignore_merges=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Replace(Regex(" {2,}"), " "),
                                           normalizers.NFKC(), normalizers.Strip(left=False, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("-", "merged_with_next"),
        pre_tokenizers.Split(Regex("[0-9]"), "contiguous"),
        pre_tokenizers.Split(Regex("[,.;:]"), "merged_with_previous"),
        pre_tokenizers.Split(Regex("[()\\[\\]]"), "removed"),
        pre_tokenizers.Split(Regex("[A-Z]+"), "isolated", invert=True),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    train(tok, trainers.BpeTrainer(vocab_size=2500, special_tokens=["<unk>", "<mask>"], limit_alphabet=120), lines)
    save(tok, out, None)


def legacy_merges(fix):
    """spm-legacy/: spm with its merges in the older "A B" string form (as Mixtral's file has them);
    the reference must give the same ids, and so must submoe (tests compare with spm.text.u32)."""
    d = json.load(open(os.path.join(fix, "spm/tokenizer.json"), encoding="utf-8"))
    assert all(" " not in a and " " not in b for a, b in d["model"]["merges"])
    d["model"]["merges"] = [a + " " + b for a, b in d["model"]["merges"]]
    os.makedirs(os.path.join(fix, "spm-legacy"), exist_ok=True)
    path = os.path.join(fix, "spm-legacy/tokenizer.json")
    json.dump(d, open(path, "w", encoding="utf-8"), ensure_ascii=False, indent=1)
    shutil.copy(os.path.join(fix, "spm/tokenizer_config.json"), os.path.join(fix, "spm-legacy/tokenizer_config.json"))
    a = Tokenizer.from_file(path).encode(read_text(os.path.join(fix, "text.txt"))).ids
    b = Tokenizer.from_file(os.path.join(fix, "spm/tokenizer.json")).encode(read_text(os.path.join(fix, "text.txt"))).ids
    assert a == b


VARIANTS = {  # var-NAME: the pre-tokenizer (and model/post options) each small variant is built with
    "prefix": lambda: dict(pre=pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)),
    "whitespace": lambda: dict(pre=pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])),
    "always": lambda: dict(pre=pre_tokenizers.Metaspace(prepend_scheme="always", split=False), fallback=True),
    "never": lambda: dict(pre=pre_tokenizers.Metaspace(prepend_scheme="never", split=True), fallback=True),
    "punct": lambda: dict(pre=pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation("contiguous"), pre_tokenizers.Split(Regex("\\s+"), "removed"),
        pre_tokenizers.Digits(individual_digits=False), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])),
    "invert": lambda: dict(pre=pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("[aeiou]"), "merged_with_previous", invert=True),
        pre_tokenizers.Split(" ", "contiguous", invert=True),
        pre_tokenizers.Split(Regex("\\p{L}+"), "merged_with_next", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)]),
        post=processors.RobertaProcessing(("<|endoftext|>", 0), ("<|padding|>", 1))),
    "bert": lambda: dict(pre=pre_tokenizers.BertPreTokenizer(), norm=normalizers.Lowercase(), fallback=True),
}


def build_variants(lines, fix):
    """Small tokenizers (vocab 600), one per pre-tokenizer setting the seven main ones leave out;
    var-NAME.txt holds the reference's ids for slice.txt and each edge case, one line each."""
    inputs = [os.path.join(fix, "slice.txt")] + sorted(os.path.join(fix, "edge", e) for e in os.listdir(os.path.join(fix, "edge")))
    for name, make in VARIANTS.items():
        v = make()
        fb = v.get("fallback", False)
        tok = Tokenizer(models.BPE(unk_token="<unk>" if fb else None, byte_fallback=fb))
        if "norm" in v:
            tok.normalizer = v["norm"]
        tok.pre_tokenizer = v["pre"]
        specials = ["<|endoftext|>", "<|padding|>"] + (["<unk>"] + ["<0x%02X>" % b for b in range(256)] if fb else [])
        alphabet = [] if fb else pre_tokenizers.ByteLevel.alphabet()
        tok.train_from_iterator(lines, trainer=trainers.BpeTrainer(vocab_size=600 if not fb else 900, special_tokens=specials,
                                                                   initial_alphabet=alphabet, limit_alphabet=100))
        if "post" in v:
            tok.post_processor = v["post"]
        out = os.path.join(fix, "var-" + name)
        save(tok, out, None)
        if fb:
            strip_byte_tokens(os.path.join(out, "tokenizer.json"))
        tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
        with open(os.path.join(fix, "var-%s.txt" % name), "w") as f:
            for p in inputs:
                f.write(" ".join(map(str, tok.encode(read_text(p)).ids)) + "\n")


def copy_real(shared, name, out):
    os.makedirs(out, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(shared, name, f), "rb") as src, gzip.GzipFile(os.path.join(out, f + ".gz"), "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)


def read_text(path):
    return open(path, "rb").read().decode("utf-8", "replace")


def expected(fix, name, tok_path):
    tok = Tokenizer.from_file(tok_path)
    ids = tok.encode(read_text(os.path.join(fix, "text.txt"))).ids
    with open(os.path.join(fix, name + ".text.u32"), "wb") as f:
        f.write(struct.pack("<%dI" % len(ids), *ids))
    edge_dir = os.path.join(fix, "edge")
    with open(os.path.join(fix, name + ".edge.txt"), "w") as f:
        for e in sorted(os.listdir(edge_dir)):
            f.write(" ".join(map(str, tok.encode(read_text(os.path.join(edge_dir, e))).ids)) + "\n")


def decoded_digest(fix, name, tok_path):
    tok = Tokenizer.from_file(tok_path)
    data = open(os.path.join(fix, name + ".text.u32"), "rb").read()
    ids = list(struct.unpack("<%dI" % (len(data) // 4), data))
    text = tok.decode(ids, skip_special_tokens=False).encode("utf-8")
    open(os.path.join(fix, name + ".decode.sha256"), "w").write(hashlib.sha256(text).hexdigest() + "\n")


def main():
    repo = sys.argv[1]
    shared = sys.argv[2] if len(sys.argv) > 2 else "/work/shared/tokenizers"
    fix = os.path.join(repo, "tests/fixtures/tok")
    edge_dir = os.path.join(fix, "edge")
    os.makedirs(edge_dir, exist_ok=True)
    for i, e in enumerate([s.encode("utf-8") for s in EDGE] + EDGE_BYTES):
        open(os.path.join(edge_dir, "%02d.txt" % i), "wb").write(e)
    lines = corpus(repo)
    builders = {"neox": build_neox, "spm": build_spm, "deepseek": build_deepseek, "wordy": build_wordy, "meta": build_meta}
    for name, build in builders.items():
        build(lines, os.path.join(fix, name))
    legacy_merges(fix)
    open(os.path.join(fix, "slice.txt"), "wb").write(open(os.path.join(fix, "text.txt"), "rb").read()[:30000])
    build_variants(lines, fix)
    for name in ("qwen3", "gpt-oss"):
        copy_real(shared, name, os.path.join(fix, name))
    for name in list(builders) + ["qwen3", "gpt-oss"]:
        path = os.path.join(fix, name, "tokenizer.json")
        if not os.path.exists(path):
            path = os.path.join(shared, name, "tokenizer.json")
        expected(fix, name, path)
        decoded_digest(fix, name, path)
        print(name, "done")


if __name__ == "__main__":
    main()
